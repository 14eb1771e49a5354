//! The verify step's load probe (open model, endpoints, the comparison gate) against real HTTP
//! servers on 127.0.0.1 started by the tests.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{Project, serve};

const HEADER: &str = "[playbook]\nname = \"probe\"\n";

fn verify(id: &str, load: &str) -> String {
    format!("\n[[steps]]\nid = \"{id}\"\nkind = \"verify\"\nload = {{ {load} }}\n")
}

/// The figures of every probe of the project's runs, in journal order.
fn measured(p: &Project) -> Vec<serde_json::Value> {
    p.journals()
        .lines()
        .filter_map(|l| {
            let event: serde_json::Value = serde_json::from_str(l).ok()?;
            let sample = event["sample"].as_str()?;
            serde_json::from_str(sample.strip_prefix("load measured: ")?).ok()
        })
        .collect()
}

/// Fails with the whole output unless it holds every one of `texts`.
fn shows(out: &str, texts: &[&str]) {
    for text in texts {
        assert!(out.contains(text), "no `{text}` in:\n{out}");
    }
}

fn ms(figures: &serde_json::Value, key: &str) -> f64 {
    figures[key].as_f64().unwrap()
}

#[test]
fn a_stall_counts_for_every_request_due_during_it() {
    let p = Project::new();
    // The 40th request (0.4 s in) stalls the whole server for 1 s: everything that arrives
    // meanwhile waits until the stall ends.
    let until: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let port = serve(move |n, _| {
        let wait = {
            let mut until = until.lock().unwrap();
            if n == 40 {
                *until = Some(Instant::now() + Duration::from_secs(1));
            }
            until.map(|u| u.saturating_duration_since(Instant::now()))
        };
        std::thread::sleep(wait.unwrap_or_default());
        (200, "{}", 0)
    });
    let load = format!(
        "url = \"http://127.0.0.1:{port}/health\", rate = 100, duration = \"3s\", connections = 256"
    );
    p.write("pb.toml", &(HEADER.to_string() + &verify("probe", &load)));
    p.run(&["apply", "--yes", "pb.toml"]).expect(0);
    let figures = &measured(&p)[0];
    assert_eq!(figures["requests"], 300, "{figures}");
    assert_eq!(figures["errors"], 0, "{figures}");
    // About 100 of the 300 requests were due during the stall, their latencies spread from
    // 1 s down to 0: the top 5 % are all above 0.8 s. A closed-model probe with a few
    // connections would have timed only the few requests in flight when the stall began.
    assert!(ms(figures, "p95_ms") >= 600.0, "{figures}");
    assert!(ms(figures, "p99_ms") >= 900.0, "{figures}");
    assert!(ms(figures, "max_ms") >= 950.0, "{figures}");
    assert!(ms(figures, "p50_ms") < 100.0, "{figures}");
    assert!(ms(figures, "achieved_rps") >= 90.0, "{figures}");
}

#[test]
fn the_achieved_rate_is_reported_against_the_target() {
    let p = Project::new();
    let quick = serve(|_, _| (200, "{}", 0));
    let slow = serve(|_, _| (200, "{}", 50));
    let kept = format!("url = \"http://127.0.0.1:{quick}/\", rate = 150, duration = \"2s\"");
    // One connection to a server that takes 50 ms: at most 20 req/s of the 100 asked.
    let starved =
        format!("url = \"http://127.0.0.1:{slow}/\", rate = 100, requests = 60, connections = 1");
    p.write("kept.toml", &(HEADER.to_string() + &verify("probe", &kept)))
        .write(
            "starved.toml",
            &(HEADER.to_string() + &verify("probe", &starved)),
        );
    let run = p.run(&["apply", "--yes", "kept.toml"]).expect(0);
    let figures = &measured(&p)[0];
    assert_eq!(figures["target_rps"], 150.0);
    assert!(
        (135.0..=165.0).contains(&ms(figures, "achieved_rps")),
        "{figures}"
    );
    shows(&run.stdout, &["3 check(s): 3 ok, 0 warning(s)"]);

    let run = p.run(&["apply", "--yes", "starved.toml"]).expect(0);
    let figures = &measured(&p)[1];
    assert!(ms(figures, "achieved_rps") < 25.0, "{figures}");
    // Each request waited for the one connection: its latency runs from when it was due.
    assert!(ms(figures, "max_ms") > 2000.0, "{figures}");
    let journal = p.journals();
    shows(
        &journal,
        &[
            "req/s achieved of 100 req/s targeted",
            "(threshold: >= 90 % of the target) warning",
        ],
    );
    shows(&run.stdout, &["1 warning(s)"]);
}

#[test]
fn an_unexpected_status_is_an_error_and_an_expected_404_is_not() {
    let p = Project::new();
    let port = serve(|_, path| match path {
        "/key/known" => (200, r#"{"key":"known"}"#, 0),
        "/key/unknown" => (404, r#"{"error":"not found"}"#, 0),
        _ => (500, "{}", 0),
    });
    let load = |broken: &str| {
        format!(
            "rate = 100, requests = 100, error_rate = 0.01, endpoints = [\
             {{ url = \"http://127.0.0.1:{port}/key/known\", weight = 3 }}, \
             {{ url = \"http://127.0.0.1:{port}/key/unknown\", expect_status = [200, 404] }}{broken}]"
        )
    };
    p.write("fine.toml", &(HEADER.to_string() + &verify("probe", &load(""))))
        .write(
            "broken.toml",
            &(HEADER.to_string()
                + &verify(
                    "probe",
                    &load(&format!(
                        ", {{ url = \"http://127.0.0.1:{port}/boom\", method = \"POST\", body = \"{{}}\" }}"
                    )),
                )),
        );
    p.run(&["apply", "--yes", "fine.toml"]).expect(0);
    let figures = &measured(&p)[0];
    assert_eq!(figures["errors"], 0, "{figures}");
    let counts: Vec<u64> = figures["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["requests"].as_u64().unwrap())
        .collect();
    assert_eq!(
        counts,
        [75, 25],
        "the weights share the requests: {figures}"
    );

    let run = p.run(&["apply", "--yes", "broken.toml"]).expect(4);
    let figures = &measured(&p)[1];
    let boom = &figures["endpoints"][2];
    assert_eq!(boom["requests"], 20, "{figures}");
    assert_eq!(boom["errors"], 20, "{figures}");
    assert_eq!(boom["failures"]["status 500"], 20, "{figures}");
    assert_eq!(figures["endpoints"][1]["errors"], 0, "{figures}");
    shows(
        &run.stdout,
        &["load.error_rate: 20.000 % (20 of 100) (threshold: < 1 %) critical"],
    );
    shows(
        &run.stdout,
        &[&format!(
            "load.endpoint `POST http://127.0.0.1:{port}/boom`: 20 requests, 20 errors (status 500 x20)"
        )],
    );
}

/// A server that answers the same way, fast or 3x slower (or failing) after the playbook's
/// switch step wrote its mode to `mode` in the project.
fn switchable(p: &Project) -> u16 {
    let mode = p.file("mode");
    serve(
        move |n, _| match std::fs::read_to_string(&mode).unwrap_or_default().trim() {
            "slow" => (200, r#"{"status":"healthy"}"#, 150),
            "failing" if n % 10 == 0 => (500, "{}", 50),
            _ => (200, r#"{"status":"healthy"}"#, 50),
        },
    )
}

/// Baseline, switch to `mode` (undone by rollback), the same load compared. The floor is
/// above the fast server's 50 ms: on a loaded machine its p95 jumps by tens of ms from one
/// probe to the next, which the gate must not call a regression; 3x slower stays one.
fn gated(port: u16, mode: &str, wait: bool) -> String {
    let load = format!("url = \"http://127.0.0.1:{port}/health\", rate = 50, duration = \"2s\"");
    let hold = if wait {
        "; touch switched; while [ ! -f go ]; do sleep 0.05; done"
    } else {
        ""
    };
    format!(
        "{HEADER}{}\n[[steps]]\nid = \"switch\"\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo {mode} > mode{hold}\"]\nrollback = {{ command = [\"rm\", \"-f\", \"mode\"] }}\n{}",
        verify("probe-before", &load),
        verify(
            "probe-after",
            "same_as = \"probe-before\", p95_ratio_max = 1.5, p95_floor_ms = 80, error_rate_max_increase = 0.0"
        )
    )
}

#[test]
fn the_comparison_gate_rolls_back_a_slower_or_failing_app_and_passes_an_equal_one() {
    let p = Project::new();
    let port = switchable(&p);
    p.write("slow.toml", &gated(port, "slow", false))
        .write("failing.toml", &gated(port, "failing", false))
        .write("same.toml", &gated(port, "same", false));

    let run = p.run(&["apply", "--yes", "slow.toml"]).expect(4);
    shows(
        &run.stdout,
        &[
            "load.compare.p95: p95 ",
            " ms before (`probe-before`)",
            "critical",
            "(threshold: <= 1.5x before, not called under 80 ms",
        ],
    );
    assert!(!p.file("mode").exists(), "the switch was rolled back");
    let figures = measured(&p);
    let ratio = ms(&figures[1], "p95_ms") / ms(&figures[0], "p95_ms");
    assert!(ratio > 1.5, "3x slower: {} {}", figures[0], figures[1]);

    let run = p.run(&["apply", "--yes", "failing.toml"]).expect(4);
    shows(
        &run.stdout,
        &[
            "load.compare.error_rate: 0.000 % before, 10.000 % after (threshold: <= before + 0 %) critical",
        ],
    );

    let run = p.run(&["apply", "--yes", "same.toml"]).expect(0);
    shows(
        &run.stdout,
        &[
            "5 check(s): 5 ok, 0 warning(s); load: p95 ",
            "ms after; errors 0.000 % before, 0.000 % after",
        ],
    );
    // The figures of both sides are journaled with the step's success.
    let journal = p.journals();
    let after = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "step_succeeded" && e["step"] == "probe-after")
        .unwrap_or_else(|| panic!("{journal}"));
    let figures = &after["figures"];
    assert_eq!(figures["baseline"]["step"], "probe-before", "{figures}");
    assert_eq!(
        figures["baseline"]["figures"]["load"]["requests"], 100,
        "{figures}"
    );
    assert_eq!(figures["load"]["requests"], 100, "{figures}");
}

#[test]
fn a_resumed_run_compares_with_the_baseline_from_its_journal() {
    let p = Project::new();
    let port = switchable(&p);
    p.write("pb.toml", &gated(port, "slow", true));
    let mut child = p.spawn(&["apply", "pb.toml", "--yes"]);
    p.wait_for("switched");
    child.kill().unwrap(); // SIGKILL, between the baseline and the comparison
    child.wait().unwrap();
    p.write("go", "");
    let run = p.run(&["resume", "--yes"]).expect(4);
    shows(&run.stdout, &["skip    probe-before"]);
    shows(
        &run.stdout,
        &[
            "load.compare.p95: p95 ",
            " ms before (`probe-before`)",
            "critical",
        ],
    );
    assert!(!p.file("mode").exists(), "the switch was rolled back");
}

#[test]
fn bad_probe_fields_are_pointed_at() {
    let p = Project::new();
    let url = "url = \"http://127.0.0.1:9/\"";
    let cases = [
        (
            format!("{url}, concurrency = 8, duration = \"5s\""),
            "`concurrency` (a closed-model probe, which under-reports a stall) is gone",
        ),
        (
            url.to_string(),
            "a load probe needs `rate` (requests per second, sent on schedule)",
        ),
        (
            format!("{url}, rate = 0"),
            "`rate` must be from 0.1 to 1000000, not 0",
        ),
        (
            format!("{url}, rate = 5, connections = 0"),
            "`connections` must be from 1 to 10000, not 0",
        ),
        (
            format!("{url}, rate = 5, requests = 10, duration = \"1s\""),
            "give `duration` or `requests`, not both",
        ),
        (
            "rate = 5, endpoints = []".to_string(),
            "a load probe needs `url` or a non-empty `endpoints` list",
        ),
        (
            format!("rate = 5, endpoints = [{{ {url}, expect_status = 999 }}]"),
            "`expect_status` must list HTTP statuses (100 to 599)",
        ),
        (
            format!("{url}, rate = 5, p95_ratio_max = 1.2"),
            "a comparison needs `same_as`",
        ),
        (
            "same_as = \"later\"".to_string(),
            "there is no valid step `later` before this one",
        ),
        (
            "same_as = \"mark\"".to_string(),
            "step `mark` is a `exec` step, not a verify step with `load`",
        ),
        (
            "same_as = \"base\", rate = 9".to_string(),
            "`same_as` repeats the load of step `base` exactly, so `rate` cannot be given here",
        ),
        (
            "same_as = \"base\", p95_ratio_max = 0.5".to_string(),
            "0.5 is out of range",
        ),
    ];
    let earlier = format!(
        "{HEADER}\n[[steps]]\nid = \"mark\"\nkind = \"exec\"\ncommand = [\"true\"]\nrollback = \"none\"\nreason = \"test\"\n{}",
        verify("base", &format!("{url}, rate = 5"))
    );
    for (load, message) in cases {
        let text = format!(
            "{earlier}{}{}",
            verify("probe", &load),
            verify("later", &format!("{url}, rate = 5"))
        );
        p.write("pb.toml", &text);
        let run = p.run(&["validate", "pb.toml"]).expect(2);
        assert!(run.stderr.contains(message), "{load}: {}", run.stderr);
    }
}

#[test]
fn the_plan_says_what_is_probed_how_fast_and_what_it_is_compared_with() {
    let p = Project::new();
    p.write("pb.toml", &gated(9, "slow", false));
    let run = p.run(&["plan", "pb.toml"]).expect(0);
    shows(
        &run.stdout,
        &[
            "load probe: GET http://127.0.0.1:9/health (expect 200) at 50 req/s, 100 requests (2s), up to 64 connections",
        ],
    );
    shows(
        &run.stdout,
        &[
            "compared with step `probe-before`: p95 <= 1.5x before (not called under 80 ms), error rate <= before + 0 %",
        ],
    );
}
