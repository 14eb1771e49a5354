//! `http_check` against real HTTP servers on 127.0.0.1 started by the tests.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

use crate::support::{Project, serve};

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
    let flapping = serve(|n, _| match n {
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

    let slow = serve(|_, _| (200, r#"{"status":"healthy","checks":{"redis":true}}"#, 3000));
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

    let malformed = serve(|_, _| (200, r#"{"status": "healthy""#, 0));
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

    let pathless = serve(|_, _| (200, r#"{"status":"healthy"}"#, 0));
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

/// A webhook receiver on 127.0.0.1 that answers 200 and keeps every request body.
fn receiver() -> (u16, Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    use std::io::Read;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let (mut line, mut length) = (String::new(), 0);
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if let Some(v) = line.to_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                line.clear();
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            kept.lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            let mut stream = &stream;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    (port, bodies)
}

const ALERTS: &str = r#"[playbook]
name = "alerts"

[secrets]
HOOK = { env = "HOOK_URL" }

[notify]
webhook = "{{secrets.HOOK}}"
on = ["failure", "rollback", "success"]
service = "claude-relay"

[[steps]]
id = "tell"
kind = "notify"
title = "p95 latency is high"
text = "the load probe measured 250 ms"
level = "warning"
metric = "p95_latency_ms"
value = "250"
threshold = "200"
"#;

#[test]
fn alerts_reach_the_webhook_in_slack_shape_and_a_dead_webhook_never_fails_the_run() {
    let p = Project::new();
    let (port, bodies) = receiver();
    let hook = format!("http://127.0.0.1:{port}/hooks/secret-token-9f2e");
    p.write("ok.toml", ALERTS).write(
        "fail.toml",
        &format!("{ALERTS}\n[[steps]]\nid = \"boom\"\nkind = \"exec\"\ncommand = [\"false\"]\nrollback = \"none\"\nreason = \"a test\"\n"),
    );
    let mut command = p.command(&["apply", "--yes", "fail.toml"]);
    command.env("HOOK_URL", &hook);
    let run = crate::support::finish(command).expect(4);
    let got = bodies.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "the step's alert, then the run's: {got:?}");
    let attachment = |i: usize| got[i]["attachments"][0].clone();
    assert_eq!(got[0]["text"], "[WARNING] p95 latency is high");
    assert_eq!(attachment(0)["color"], "#ffaa00");
    assert_eq!(attachment(0)["text"], "the load probe measured 250 ms");
    let fields: Vec<(String, String)> = attachment(0)["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["title"].as_str().unwrap().into(),
                f["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        fields[..4],
        [
            ("service".into(), "claude-relay".into()),
            ("metric".into(), "p95_latency_ms".into()),
            ("value".into(), "250".into()),
            ("threshold".into(), "200".into())
        ]
    );
    assert_eq!(fields[4].0, "time");
    assert!(attachment(0)["ts"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(attachment(1)["color"], "#ff0000");
    assert!(
        attachment(1)["title"]
            .as_str()
            .unwrap()
            .contains("failed and was rolled back")
    );
    assert!(
        attachment(1)["text"]
            .as_str()
            .unwrap()
            .contains("step `boom` failed")
    );
    for text in [&run.stdout, &run.stderr, &p.journals()] {
        assert!(!text.contains("secret-token-9f2e"), "{text}");
    }

    // Nobody listens on the webhook's port: the alerts are reported, the run still succeeds.
    let dead = format!("http://127.0.0.1:{}/hooks/secret-token-9f2e", {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    });
    let mut command = p.command(&["apply", "--yes", "ok.toml"]);
    command.env("HOOK_URL", &dead);
    let run = crate::support::finish(command).expect(0);
    assert!(
        run.stdout.contains("not delivered (not fatal)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("warning: the info alert: the alert was not delivered after 3 attempts"),
        "{}",
        run.stdout
    );
    for text in [&run.stdout, &run.stderr, &p.journals()] {
        assert!(!text.contains("secret-token-9f2e"), "{text}");
    }
}

/// The webhook's secret is optional: unset, the playbook is valid, says once that it sends no
/// alerts, and the run (and its notify step) succeeds without delivering anything; set, the
/// alerts go out.
#[test]
fn an_optional_webhook_that_is_not_set_turns_alerts_off_and_says_so_once() {
    let p = Project::new();
    let (port, bodies) = receiver();
    p.write(
        "pb.toml",
        &ALERTS.replace(
            r#"HOOK = { env = "HOOK_URL" }"#,
            r#"HOOK = { env = "HOOK_URL", optional = true }"#,
        ),
    );
    let note = "note: alerts are off: the [notify] webhook is empty";
    let mut command = p.command(&["validate", "pb.toml"]);
    command.env_remove("HOOK_URL");
    let run = crate::support::finish(command).expect(0);
    assert_eq!(run.stderr.matches(note).count(), 1, "{}", run.stderr);
    let mut command = p.command(&["plan", "pb.toml"]);
    command.env_remove("HOOK_URL");
    let run = crate::support::finish(command).expect(0);
    assert!(
        run.stdout
            .contains("not post the alert `p95 latency is high`: no webhook is set"),
        "{}",
        run.stdout
    );
    let mut command = p.command(&["apply", "--yes", "pb.toml"]);
    command.env_remove("HOOK_URL");
    let run = crate::support::finish(command).expect(0);
    assert_eq!(run.stderr.matches(note).count(), 1, "{}", run.stderr);
    assert!(
        run.stdout.contains("not sent: no webhook is set"),
        "{}",
        run.stdout
    );
    assert!(bodies.lock().unwrap().is_empty());

    let mut command = p.command(&["apply", "--yes", "pb.toml"]);
    command.env(
        "HOOK_URL",
        format!("http://127.0.0.1:{port}/hooks/secret-token-9f2e"),
    );
    let run = crate::support::finish(command).expect(0);
    assert!(!run.stderr.contains(note), "{}", run.stderr);
    assert_eq!(
        bodies.lock().unwrap().len(),
        2,
        "the step's alert and the run's"
    );

    // Not optional, it is still required.
    p.write("required.toml", ALERTS);
    let mut command = p.command(&["validate", "required.toml"]);
    command.env_remove("HOOK_URL");
    let run = crate::support::finish(command).expect(2);
    assert!(
        run.stderr
            .contains("environment variable `HOOK_URL` is not set"),
        "{}",
        run.stderr
    );
}

/// A secret with both sources: the environment wins, else the env file (which a demo wrote).
#[test]
fn a_secret_is_read_from_the_environment_first_then_from_its_file() {
    let p = Project::new();
    p.write(".runner/secrets.env", "TOKEN=from-the-file-0123\n").write(
        "pb.toml",
        "[playbook]\nname = \"s\"\n\n[secrets]\nTOKEN = { env = \"TOKEN\", file = \".runner/secrets.env\" }\n\n[[steps]]\nid = \"show\"\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"printf %s \\\"$T\\\" > seen\"]\nenv = { T = \"{{secrets.TOKEN}}\" }\nrollback = { command = [\"rm\", \"seen\"] }\n",
    );
    let mut command = p.command(&["apply", "--yes", "pb.toml"]);
    command.env_remove("TOKEN");
    crate::support::finish(command).expect(0);
    assert_eq!(p.read("seen").unwrap(), "from-the-file-0123");
    let mut command = p.command(&["apply", "--yes", "pb.toml"]);
    command.env("TOKEN", "from-the-environment-42");
    crate::support::finish(command).expect(0);
    assert_eq!(p.read("seen").unwrap(), "from-the-environment-42");
    std::fs::remove_file(p.file(".runner/secrets.env")).unwrap();
    let mut command = p.command(&["validate", "pb.toml"]);
    command.env_remove("TOKEN");
    let run = crate::support::finish(command).expect(2);
    assert!(
        run.stderr
            .contains("environment variable `TOKEN` is not set, and `TOKEN` in `.runner/"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_load_probe_reports_percentiles_and_gates_on_the_error_rate() {
    let p = Project::new();
    let fine = serve(|_, _| (200, r#"{"ok":true}"#, 1));
    let flaky = serve(|n, _| {
        if n % 5 == 0 {
            (500, "{}", 0)
        } else {
            (200, "{}", 0)
        }
    });
    let probe = |port: u16| {
        format!(
            "[playbook]\nname = \"probe\"\n\n[[steps]]\nid = \"probe\"\nkind = \"verify\"\nload = {{ url = \"http://127.0.0.1:{port}/api/v1/messages\", method = \"POST\", body = '{{\"model\":\"claude\"}}', headers = {{ content-type = \"application/json\" }}, rate = 200, requests = 200, p95_ms = 1000, error_rate = 0.001 }}\n"
        )
    };
    p.write("fine.toml", &probe(fine))
        .write("flaky.toml", &probe(flaky));
    let run = p.run(&["apply", "--yes", "fine.toml"]).expect(0);
    assert!(
        run.stdout.contains("3 check(s): 3 ok, 0 warning(s)"),
        "{}",
        run.stdout
    );
    let journal = p.journals();
    let figures = journal
        .lines()
        .find_map(|l| {
            let event: serde_json::Value = serde_json::from_str(l).ok()?;
            let sample = event["event"]["sample"]
                .as_str()
                .or(event["sample"].as_str())?;
            let json = sample.strip_prefix("load measured: ")?;
            serde_json::from_str::<serde_json::Value>(json).ok()
        })
        .unwrap_or_else(|| panic!("the measured figures are journaled:\n{journal}"));
    assert_eq!(figures["requests"], 200);
    assert_eq!(figures["errors"], 0);
    let ms = |k: &str| figures[k].as_f64().unwrap();
    assert!(
        ms("p50_ms") <= ms("p95_ms")
            && ms("p95_ms") <= ms("p99_ms")
            && ms("p99_ms") <= ms("max_ms"),
        "{figures}"
    );
    assert!(ms("p50_ms") >= 1.0, "the server waits 1 ms: {figures}");

    let run = p.run(&["apply", "--yes", "flaky.toml"]).expect(4);
    assert!(
        run.stdout
            .contains("load.error_rate: 20.000 % (40 of 200) (threshold: < 0.1 %) critical"),
        "{}",
        run.stdout
    );
}

#[test]
fn an_answer_slower_than_max_ms_is_a_wrong_one() {
    let p = Project::new();
    let body = r#"{"status":"healthy","checks":{"redis":true}}"#;
    let slow = serve(move |_, _| (200, body, 700));
    p.write(
        "slow.toml",
        &gate(slow, "max_ms = 300\nfailure_limit = 2\ntimeout = \"20s\""),
    );
    let run = p.run(&["apply", "--yes", "slow.toml"]).expect(4);
    assert!(
        run.stdout.contains("failed: 2 wrong answer(s)")
            && run.stdout.contains("over the 300 ms limit"),
        "{}",
        run.stdout
    );
    let fast = serve(move |_, _| (200, body, 0));
    p.write("fast.toml", &gate(fast, "max_ms = 300\nfailure_limit = 2"));
    p.run(&["apply", "--yes", "fast.toml"]).expect(0);
}
