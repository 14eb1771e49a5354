use std::io::Write;

use super::*;

const NOW: f64 = 1_800_000_000.0;

fn traffic(access_log: &str) -> Traffic {
    Traffic {
        access_log: access_log.into(),
        window: Duration::from_secs(10),
        interval: Duration::from_secs(1),
        min_requests: 20,
        error_rate: Bound {
            warning: 0.0005,
            critical: 0.001,
        },
        p95_ms: Bound {
            warning: 150.0,
            critical: 200.0,
        },
        slow_ms: 1000.0,
        slow_share: Bound {
            warning: 0.005,
            critical: 0.01,
        },
        paths: None,
        pause_if_not_enough: true,
        wait: None,
    }
}

/// Appends `n` requests logged at `time` with this status and request time (seconds).
fn log(file: &mut std::fs::File, n: usize, time: f64, status: u16, seconds: f64, path: &str) {
    for i in 0..n {
        writeln!(
            file,
            r#"{{"time":{:.3},"status":{status},"request_time":{seconds:.3},"upstream_time":"{seconds:.3}","upstream":"10.0.0.2:3000","method":"GET","path":"{path}"}}"#,
            time + i as f64 / 1000.0
        )
        .unwrap();
    }
}

fn verdicts(look: &Look) -> Vec<(&'static str, Verdict)> {
    look.findings
        .as_ref()
        .expect("judged")
        .iter()
        .map(|f| (f.metric, f.verdict))
        .collect()
}

#[test]
fn healthy_traffic_passes_and_each_bound_trips_at_its_level() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let mut file = std::fs::File::create(&path).unwrap();
    let t = traffic("access.log");
    let mut watch = t.watch(dir.path());
    log(&mut file, 1500, NOW - 5.0, 200, 0.004, "/api/v1/key");
    let healthy = watch.look(NOW).unwrap();
    assert_eq!(healthy.sample.requests, 1500);
    assert!(verdicts(&healthy).iter().all(|(_, v)| *v == Verdict::Ok));

    log(&mut file, 1, NOW - 4.0, 502, 0.001, "/api/v1/key");
    let one = watch.look(NOW).unwrap();
    assert_eq!(
        verdicts(&one)[0],
        ("traffic.error_rate", Verdict::Warning),
        "1 in 1501 is 0.067 %"
    );
    log(&mut file, 2, NOW - 4.0, 504, 0.001, "/api/v1/key");
    let three = watch.look(NOW).unwrap();
    assert_eq!(
        verdicts(&three)[0],
        ("traffic.error_rate", Verdict::Critical)
    );
    assert!(
        three.findings.unwrap()[0]
            .value
            .starts_with("0.1996 % (3 of 1503")
    );

    let later = NOW + 10.0;
    log(&mut file, 94, later - 1.0, 200, 0.010, "/");
    log(&mut file, 6, later - 1.0, 200, 2.0, "/");
    let slow = watch.look(later).unwrap();
    assert_eq!(
        verdicts(&slow),
        [
            ("traffic.error_rate", Verdict::Ok),
            ("traffic.latency", Verdict::Critical),
            ("traffic.slow", Verdict::Critical),
        ],
        "the errors left the window; 6 % of requests took 2 s"
    );
    assert_eq!(watch.judged, 4);
}

#[test]
fn a_thin_window_has_no_verdict_even_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let mut file = std::fs::File::create(&path).unwrap();
    let t = traffic("access.log");
    let mut watch = t.watch(dir.path());
    log(&mut file, 19, NOW - 1.0, 200, 0.001, "/");
    let thin = watch.look(NOW).unwrap();
    assert!(thin.findings.is_none() && watch.judged == 0);
    assert_eq!(
        watch.too_thin(),
        "no 10s window of `access.log` had 20 request(s) (the busiest had 19)"
    );
    let error = t.inconclusive(watch.too_thin());
    assert!(error.pause && error.message.starts_with("not enough traffic: "));
}

#[test]
fn only_the_paths_named_count_and_garbage_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let mut file = std::fs::File::create(&path).unwrap();
    let mut t = traffic("access.log");
    t.paths = Some(regex::Regex::new("^/api/").unwrap());
    let mut watch = t.watch(dir.path());
    log(&mut file, 30, NOW - 2.0, 200, 0.001, "/api/v1/key");
    log(&mut file, 30, NOW - 2.0, 502, 0.001, "/static/logo.png");
    for _ in 0..5 {
        file.write_all(b"\xff\xfe not json\n").unwrap();
    }
    file.write_all(&vec![b'{'; log::MAX_LINE + 1]).unwrap();
    file.write_all(b"\n{\"time\":").unwrap();
    let look = watch.look(NOW).unwrap();
    assert_eq!(
        (
            look.sample.requests,
            look.sample.errors,
            look.sample.unparsed
        ),
        (30, 0, 6),
        "the 5xx elsewhere do not count; the torn last line is not read yet"
    );
    assert_eq!(
        verdicts(&look).last(),
        Some(&("traffic.unparsed", Verdict::Warning))
    );
}

#[test]
fn watching_starts_at_the_end_and_recent_reads_the_last_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let mut file = std::fs::File::create(&path).unwrap();
    log(&mut file, 50, NOW - 60.0, 500, 0.001, "/");
    log(&mut file, 25, NOW - 3.0, 200, 0.001, "/");
    let t = traffic("access.log");
    let from_now = t.watch(dir.path()).look(NOW).unwrap();
    assert_eq!(
        from_now.sample.requests, 0,
        "what was there before is not new"
    );
    let recent = t.watch_recent(dir.path()).look(NOW).unwrap();
    assert_eq!(
        (recent.sample.requests, recent.sample.errors),
        (25, 0),
        "the 5xx of a minute ago are outside the window"
    );
}

#[test]
fn plan_text_says_what_is_watched_and_at_which_levels() {
    assert_eq!(
        traffic("deploy/logs/lb/access.log").describe(),
        "requests in `deploy/logs/lb/access.log`, the last 10s every 1s (at least 20 requests, else not enough traffic: pause): 5xx < 0.05 % / 0.1 %, p95 < 150 / 200 ms, over 1000 ms < 0.5 % / 1 % (warning / critical)"
    );
    assert_eq!(percent(0.05), "5");
    assert_eq!(percent(0.123456), "12.3456");
}
