//! `http_check` against real HTTP servers on 127.0.0.1 started by the tests.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::Project;

/// Serves `answer(n)` (status, body, delay) to the n-th request (from 0); returns its port.
fn serve(answer: impl Fn(usize) -> (u16, &'static str, u64) + Send + Sync + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (count, answer) = (count.clone(), answer.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let (status, body, delay) = answer(count.fetch_add(1, Ordering::SeqCst));
                std::thread::sleep(Duration::from_millis(delay));
                let mut stream = &stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

fn gate(port: u16, extra: &str) -> String {
    format!(
        r#"[playbook]
name = "gate"

[[steps]]
id = "health"
kind = "http_check"
url = "http://127.0.0.1:{port}/health"
interval = "100ms"
assert = [{{ path = "$.status", equals = "healthy" }}, {{ path = "$.checks.redis", exists = true }}]
{extra}
"#
    )
}

#[test]
fn http_check_passes_fails_and_is_inconclusive_as_the_answers_say() {
    let p = Project::new();
    let flapping = serve(|n| match n {
        0 | 1 => (503, r#"{"status":"starting"}"#, 0),
        _ => (200, r#"{"status":"healthy","checks":{"redis":true}}"#, 0),
    });
    p.write(
        "flapping.toml",
        &gate(flapping, "successes = 2\ntimeout = \"10s\""),
    );
    let run = p.run(&["apply", "--yes", "flapping.toml"]).expect(0);
    assert!(
        run.stdout
            .contains("passed: 2 consecutive pass(es) after 4 sample(s)"),
        "{}",
        run.stdout
    );
    let journal = p.journals();
    assert!(
        journal.contains(r#"#1 wrong"#) && journal.contains("status 503 is not the expected one"),
        "{journal}"
    );
    assert!(journal.contains("#4 pass"), "{journal}");

    let slow = serve(|_| (200, r#"{"status":"healthy","checks":{"redis":true}}"#, 3000));
    p.write(
        "slow.toml",
        &gate(slow, "timeout = \"1s\"\non_inconclusive = \"pause\""),
    );
    let run = p.run(&["apply", "--yes", "slow.toml"]).expect(7);
    assert!(
        run.stdout.contains("inconclusive: no verdict within 1s"),
        "{}",
        run.stdout
    );

    let malformed = serve(|_| (200, r#"{"status": "healthy""#, 0));
    p.write("malformed.toml", &gate(malformed, "failure_limit = 2"));
    let run = p.run(&["apply", "--yes", "malformed.toml"]).expect(4);
    assert!(
        run.stdout.contains("failed: 2 wrong answer(s)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("the response is not JSON"),
        "{}",
        run.stdout
    );

    let pathless = serve(|_| (200, r#"{"status":"healthy"}"#, 0));
    p.write("pathless.toml", &gate(pathless, "failure_limit = 2"));
    let run = p.run(&["apply", "--yes", "pathless.toml"]).expect(4);
    assert!(
        run.stdout
            .contains("assertion `$.checks.redis exists` does not hold: no value at this path"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(r#"response: 200 {"status":"healthy"}"#),
        "{}",
        run.stdout
    );
}
