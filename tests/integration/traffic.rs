//! The `traffic` gate of monitor and verify, fed an access log in nginx's `runner` format by
//! a writer thread (and, in the last test, by the bundled nginx itself).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::Project;

/// Appends requests to an access log while it lives, as nginx would log them.
pub(crate) struct Clients {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    started: Instant,
    /// Requests answered 5xx so far.
    failed: Arc<AtomicU64>,
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn line(time: f64, status: u16, seconds: f64) -> String {
    format!(
        r#"{{"time":{time:.3},"status":{status},"request_time":{seconds:.3},"upstream_time":"{seconds:.3}","upstream":"172.18.0.5:3000","method":"GET","path":"/api/v1/keys/k1"}}"#
    )
}

/// `per_second` requests a second; the n-th, `elapsed` after the start, answers
/// `answer(elapsed, n)`: its status and request time in seconds.
pub(crate) fn clients(
    path: PathBuf,
    per_second: u32,
    answer: impl Fn(Duration, u64) -> (u16, f64) + Send + 'static,
) -> Clients {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let flag = stop.clone();
    let failed = Arc::new(AtomicU64::new(0));
    let count = failed.clone();
    let thread = std::thread::spawn(move || {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        let mut n = 0u64;
        while !flag.load(Ordering::SeqCst) {
            let due = (started.elapsed().as_secs_f64() * f64::from(per_second)) as u64;
            let mut batch = String::new();
            while n < due {
                let (status, seconds) = answer(started.elapsed(), n);
                count.fetch_add(u64::from(status >= 500), Ordering::SeqCst);
                batch.push_str(&line(epoch(), status, seconds));
                batch.push('\n');
                n += 1;
            }
            file.write_all(batch.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    Clients {
        stop,
        thread: Some(thread),
        started,
        failed,
    }
}

/// A marker file, then a monitor of real traffic only.
fn monitor(p: &Project, name: &str, window: &str, traffic: &str) -> String {
    p.write("marker.hbs", "deployed\n");
    let file = format!("{name}.toml");
    p.write(
        &file,
        &format!(
            r#"[playbook]
name = "{name}"

[[steps]]
id = "marker"
kind = "template"
template = "marker.hbs"
dest = "marker.txt"

[[steps]]
id = "watch"
kind = "monitor"
window = "{window}"
interval = "5s"
traffic = {{ access_log = "logs/lb/access.log", window = "5s", interval = "500ms", min_requests = 20{traffic} }}
"#
        ),
    );
    file
}

pub(crate) fn access_log(p: &Project) -> PathBuf {
    std::fs::create_dir_all(p.file("logs/lb")).unwrap();
    p.file("logs/lb/access.log")
}

#[test]
fn healthy_traffic_passes_the_monitor_and_every_window_is_journaled() {
    let p = Project::new();
    let _clients = clients(access_log(&p), 100, |_, _| (200, 0.004));
    let playbook = monitor(&p, "healthy", "4s", "");
    let plan = p.run(&["plan", &playbook]).expect(0);
    assert!(
        plan.stdout.contains("requests in `logs/lb/access.log`, the last 5s every 500ms (at least 20 requests, else not enough traffic: pause): 5xx < 0.05 % / 0.1 %, p95 < 150 / 200 ms"),
        "{}",
        plan.stdout
    );
    let run = p.run(&["apply", "--yes", &playbook]).expect(0);
    assert!(run.stdout.contains("window(s) judged"), "{}", run.stdout);
    let journal = p.journals();
    let samples = journal.matches("traffic t+").count();
    assert!(
        samples >= 6,
        "a sample every 500ms, got {samples}:\n{journal}"
    );
    assert!(
        journal.contains(r#"\"errors\":0,\"error_rate\":0.0"#),
        "{journal}"
    );
}

#[test]
fn failing_key_lookups_roll_the_run_back_within_one_window() {
    let p = Project::new();
    let fault_at = Duration::from_secs(3);
    // 40 % of lookups fail once the fault is in, as in the postgres_primary incident; the
    // health URL would have stayed green all along.
    let clients = clients(access_log(&p), 100, move |elapsed, n| {
        if elapsed >= fault_at && n % 5 < 2 {
            (502, 0.001)
        } else {
            (200, 0.004)
        }
    });
    let playbook = monitor(&p, "faulty", "60s", "");
    let run = crate::support::finish({
        let mut command = p.command(&["apply", "--yes", &playbook]);
        command.stdout(std::process::Stdio::piped());
        command
    });
    let detected = clients.started.elapsed().saturating_sub(fault_at);
    let failed = clients.failed.load(Ordering::SeqCst);
    let run = run.expect(4);
    assert!(
        run.stdout.contains("critical at t+") && run.stdout.contains("traffic.error_rate"),
        "{}",
        run.stdout
    );
    assert!(
        detected < Duration::from_millis(5500),
        "detected (and rolled back) {detected:?} after the fault; the window is 5s, the interval 500ms"
    );
    eprintln!(
        "5xx detected and rolled back {detected:?} after the fault; {failed} client request(s) failed by then"
    );
    assert!(p.read("marker.txt").is_none(), "the run rolled back");
}

#[test]
fn slow_answers_fail_the_monitor_on_p95() {
    let p = Project::new();
    let _clients = clients(access_log(&p), 50, |elapsed, _| {
        (
            200,
            if elapsed > Duration::from_secs(1) {
                2.0
            } else {
                0.003
            },
        )
    });
    // Only p95 judges here: the slow share is critical at 100 % (its own maths is unit-tested).
    let playbook = monitor(&p, "slow", "60s", ", slow_share_critical = 1");
    let run = p.run(&["apply", "--yes", &playbook]).expect(4);
    assert!(
        run.stdout.contains("traffic.latency")
            && run
                .stdout
                .contains("(threshold: p95 < 150 ms warning, < 200 ms critical)"),
        "{}",
        run.stdout
    );
}

#[test]
fn too_little_traffic_is_not_a_pass() {
    let paused = Project::new();
    let _few = clients(access_log(&paused), 2, |_, _| (200, 0.001));
    let playbook = monitor(&paused, "thin", "3s", "");
    let run = paused.run(&["apply", "--yes", &playbook]).expect(7);
    assert!(
        run.stdout.contains("not enough traffic: no 5s window of `logs/lb/access.log` had 20 request(s) (the busiest had"),
        "{}",
        run.stdout
    );
    assert_eq!(
        paused.read("marker.txt").as_deref(),
        Some("deployed\n"),
        "paused, not rolled back"
    );

    let p = Project::new();
    let _clients = clients(access_log(&p), 2, |_, _| (200, 0.001));
    let failing = monitor(&p, "thin-fails", "3s", ", on_not_enough = \"rollback\"");
    p.run(&["apply", "--yes", &failing]).expect(4);
    let nowhere = p
        .read(&failing)
        .unwrap()
        .replace("logs/lb/access.log", "nowhere.log");
    p.write("nowhere.toml", &nowhere);
    let run = p.run(&["apply", "--yes", "nowhere.toml"]).expect(4);
    assert!(
        run.stdout.contains("(the busiest had 0)"),
        "a log that never appears has no traffic:\n{}",
        run.stdout
    );
}

#[test]
fn verify_judges_the_window_before_it_and_waits_for_enough() {
    let p = Project::new();
    let path = access_log(&p);
    let now = epoch();
    let mut old = String::new();
    for i in 0..200 {
        old.push_str(&line(now - 60.0 + f64::from(i) / 100.0, 503, 0.001));
        old.push('\n');
    }
    for i in 0..30 {
        let status = if i == 0 { 500 } else { 200 };
        old.push_str(&line(now - 3.0 + f64::from(i) / 100.0, status, 0.002));
        old.push('\n');
    }
    std::fs::write(&path, old).unwrap();
    let verify = |extra: &str| {
        format!(
            "[playbook]\nname = \"v\"\n\n[[steps]]\nid = \"verify\"\nkind = \"verify\"\ntraffic = {{ access_log = \"logs/lb/access.log\", window = \"10s\"{extra} }}\n"
        )
    };
    p.write("recent.toml", &verify(", min_requests = 20"));
    let run = p.run(&["apply", "--yes", "recent.toml"]).expect(4);
    assert!(
        run.stdout
            .contains("traffic.error_rate: 3.3333 % (1 of 30 requests answered 5xx)"),
        "the minute-old 503s are outside the window:\n{}",
        run.stdout
    );

    p.write("thin.toml", &verify(", min_requests = 100, wait = \"4s\""));
    let _clients = clients(path, 50, |_, _| (200, 0.002));
    let waited = Instant::now();
    let run = p.run(&["apply", "--yes", "thin.toml"]);
    let run = run.expect(4);
    assert!(
        waited.elapsed() >= Duration::from_secs(1),
        "it waited for traffic"
    );
    assert!(
        run.stdout.contains("traffic.error_rate: 0.") && run.stdout.contains("critical"),
        "enough requests came within the wait; the 500 is still in the window:\n{}",
        run.stdout
    );
}

#[test]
fn bad_traffic_tables_point_at_the_field() {
    let p = Project::new();
    p.write(
        "bad.toml",
        r#"[playbook]
name = "bad"

[[steps]]
id = "watch"
kind = "monitor"
window = "1m"
traffic = { access_log = "a.log", interval = "0s", error_rate_warning = 0.01, error_rate_critical = 0.001, slow_share_warning = 5, p95_ms_critical = -1, slow_share_critical = 0.001, paths = "(", on_not_enough = "shrug", wait = "5s" }

[[steps]]
id = "nothing"
kind = "monitor"
window = "1m"
"#,
    );
    let run = p.run(&["validate", "bad.toml"]).expect(2);
    for message in [
        "the warning level 0.01 is above the critical one 0.001",
        "`5` is not a share above 0 and at most 1 (0.001 = 0.1 %)",
        "`-1` is not above 0",
        "not a regular expression",
        "`shrug` is not pause or rollback",
        "`wait` is for verify; monitor watches for its whole window",
        "a monitor needs `containers`, `health_url` or `traffic` to watch",
        "a traffic window or interval must be longer than 0s",
    ] {
        assert!(run.stderr.contains(message), "{message}:\n{}", run.stderr);
    }
    p.write("default.toml", "[playbook]\nname = \"d\"\n\n[[steps]]\nid = \"watch\"\nkind = \"monitor\"\nwindow = \"1m\"\ntraffic = { access_log = \"a.log\", p95_ms_critical = 100 }\n");
    let run = p.run(&["validate", "default.toml"]).expect(2);
    for message in [
        "the default warning level 150 is above the critical one 100",
        "warning must not exceed critical",
    ] {
        assert!(run.stderr.contains(message), "{message}:\n{}", run.stderr);
    }
}

#[test]
fn a_warning_level_alerts_once_per_breach_and_the_monitor_goes_on() {
    let p = Project::new();
    // One request in ten fails from the first second to the third: a warning, not critical.
    let _clients = clients(access_log(&p), 100, |elapsed, n| {
        let breach = elapsed > Duration::from_secs(1) && elapsed < Duration::from_secs(3);
        (if breach && n % 10 == 0 { 500 } else { 200 }, 0.002)
    });
    let playbook = monitor(
        &p,
        "warned",
        "4s",
        ", error_rate_warning = 0.05, error_rate_critical = 0.5",
    );
    let run = p.run(&["apply", "--yes", &playbook]).expect(0);
    let warned = "traffic.error_rate";
    assert_eq!(
        run.stdout
            .matches("reached its warning level (< 5 % warning, < 50 % critical); no [notify] webhook to alert")
            .count(),
        1,
        "one alert for one breach:\n{}",
        run.stdout
    );
    assert!(run.stdout.contains(warned), "{}", run.stdout);
}

/// The containers and network of the nginx test, removed when dropped.
struct Lb {
    name: String,
}

impl Drop for Lb {
    fn drop(&mut self) {
        for c in ["lb", "up"] {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", &format!("{}-{c}", self.name)])
                .output();
        }
        let _ = std::process::Command::new("docker")
            .args(["network", "rm", &self.name])
            .output();
    }
}

#[test]
fn runner_reads_the_log_the_bundled_nginx_writes_including_its_502s() {
    use crate::docker::{docker, free_port, http_get, wait_until};
    let lb = Lb {
        name: format!("rttraffic{}", std::process::id()),
    };
    let p = Project::new();
    p.write(
        "nginx.conf.hbs",
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/templates/nginx.conf.hbs"))
            .unwrap(),
    )
    .write("lb/upstream.conf", "upstream relay_app {\n    server up:8000;\n}\n")
    .write(
        "render.toml",
        "[playbook]\nname = \"lb\"\nphase = \"test\"\n\n[vars]\nlb_read_timeout_s = 5\n\n[[steps]]\nid = \"nginx\"\nkind = \"template\"\ntemplate = \"nginx.conf.hbs\"\ndest = \"lb/nginx.conf\"\n",
    );
    p.run(&["apply", "--yes", "render.toml"]).expect(0);
    access_log(&p);
    docker(&["network", "create", &lb.name]);
    docker(&[
        "run",
        "-d",
        "--name",
        &format!("{}-up", lb.name),
        "--network",
        &lb.name,
        "--network-alias",
        "up",
        "runner-base:bookworm",
        "sh",
        "-c",
        "cd /tmp && python3 -m http.server 8000 & echo $! > /run/app.pid; exec sleep infinity",
    ]);
    let port = free_port();
    let mounts = [
        format!("{}:/etc/nginx/relay:ro", p.file("lb").display()),
        format!("{}:/var/log/nginx/relay", p.file("logs/lb").display()),
    ];
    docker(&[
        "run",
        "-d",
        "--name",
        &format!("{}-lb", lb.name),
        "--network",
        &lb.name,
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "-v",
        &mounts[0],
        "-v",
        &mounts[1],
        "nginx:1.25-alpine",
        "nginx",
        "-c",
        "/etc/nginx/relay/nginx.conf",
        "-g",
        "daemon off;",
    ]);
    let status = |path: &str| {
        http_get(port, path).and_then(|t| t.split_whitespace().nth(1).map(str::to_string))
    };
    wait_until("nginx serves the upstream", Duration::from_secs(20), || {
        status("/").as_deref() == Some("200")
    });
    std::fs::write(p.file("logs/lb/access.log"), "").unwrap();
    for _ in 0..30 {
        assert_eq!(status("/").as_deref(), Some("200"));
    }
    for _ in 0..5 {
        assert_eq!(
            status("/missing?api_key=cr_query_secret").as_deref(),
            Some("404")
        );
    }
    assert_eq!(status("/lb-health").as_deref(), Some("200"));
    // runner's own probe through the same nginx: logged with its User-Agent, never counted.
    p.write(
        "probe.toml",
        &format!(
            "[playbook]\nname = \"probe\"\n\n[[steps]]\nid = \"probe\"\nkind = \"verify\"\nload = {{ rate = 20, duration = \"1s\", p95_ms = 1000, error_rate = 0.5, endpoints = [{{ url = \"http://127.0.0.1:{port}/missing\", expect_status = [404] }}] }}\n"
        ),
    );
    p.run(&["apply", "--yes", "probe.toml"]).expect(0);
    let log = p.read("logs/lb/access.log").unwrap();
    let ours = log
        .lines()
        .filter(|l| l.contains(r#""agent":"runner/"#))
        .count();
    assert_eq!(
        ours, 20,
        "the probe's requests carry runner's User-Agent:\n{log}"
    );
    docker(&[
        "exec",
        &format!("{}-up", lb.name),
        "sh",
        "-c",
        "kill $(cat /run/app.pid)",
    ]);
    for _ in 0..10 {
        assert_eq!(status("/").as_deref(), Some("502"), "the upstream is down");
    }
    let log = p.read("logs/lb/access.log").unwrap();
    let ours = log
        .lines()
        .filter(|l| l.contains(r#""agent":"runner/"#))
        .count();
    assert_eq!(
        ours, 20,
        "the probe's requests carry runner's User-Agent:\n{log}"
    );
    assert_eq!(
        log.lines().count(),
        65,
        "the health check is not traffic:\n{log}"
    );
    assert!(
        !log.contains("cr_query_secret"),
        "the query string is not logged:\n{log}"
    );

    let verify = |extra: &str| {
        format!(
            "[playbook]\nname = \"v\"\n\n[[steps]]\nid = \"verify\"\nkind = \"verify\"\ntraffic = {{ access_log = \"logs/lb/access.log\", window = \"1m\", min_requests = 5{extra} }}\n"
        )
    };
    p.write("all.toml", &verify(""))
        .write("missing.toml", &verify(", paths = \"^/missing\""));
    let all = p.run(&["apply", "--yes", "all.toml"]).expect(4);
    assert!(
        all.stdout
            .contains("traffic.error_rate: 22.2222 % (10 of 45 requests answered 5xx)"),
        "{}\n{log}",
        all.stdout
    );
    p.run(&["apply", "--yes", "missing.toml"]).expect(0);
    assert!(
        p.journals()
            .contains("traffic.error_rate: 0 % (0 of 5 requests answered 5xx)"),
        "only the 404s count"
    );
}

/// Before and after a switch, the probe's load and what users sent meanwhile, compared by the
/// same rule: users slowed 3x (the probe's server is as fast as before) or failing roll back.
#[test]
fn the_comparison_gate_compares_real_traffic_before_and_after_the_switch() {
    let p = Project::new();
    let probed = crate::support::serve(|_, _| (200, "{}", 5));
    let mode = p.file("mode");
    let _clients = clients(
        access_log(&p),
        50,
        move |_, n| match std::fs::read_to_string(&mode).unwrap_or_default().trim() {
            "slow" => (200, 0.150),
            "failing" if n % 10 == 0 => (502, 0.010),
            _ => (200, 0.010 + (n % 5) as f64 / 1000.0),
        },
    );
    let traffic = r#"traffic = { access_log = "logs/lb/access.log", window = "2s", min_requests = 20, wait = "5s" }"#;
    let gated = |mode: &str| {
        format!(
            r#"[playbook]
name = "compare"

[[steps]]
id = "probe-before"
kind = "verify"
load = {{ url = "http://127.0.0.1:{probed}/health", rate = 20, duration = "1s" }}
{traffic}

[[steps]]
id = "switch"
kind = "exec"
command = ["sh", "-c", "echo {mode} > mode"]
rollback = {{ command = ["rm", "-f", "mode"] }}

[[steps]]
id = "probe-after"
kind = "verify"
load = {{ same_as = "probe-before", p95_ratio_max = 1.5, p95_floor_ms = 20 }}
{traffic}
"#
        )
    };
    p.write("slow.toml", &gated("slow"))
        .write("failing.toml", &gated("failing"))
        .write("same.toml", &gated("same"));

    // Each run's baseline window holds the previous run's last seconds: the healthy one first.
    let run = p.run(&["apply", "--yes", "same.toml"]).expect(0);
    assert!(
        run.stdout.contains("; real traffic: p95 ")
            && run
                .stdout
                .contains("ms after; errors 0.000 % before, 0.000 % after"),
        "{}",
        run.stdout
    );
    let run = p.run(&["apply", "--yes", "slow.toml"]).expect(4);
    for shown in [
        "traffic.compare.p95: p95 ",
        " ms before (`probe-before`)",
        "(threshold: <= 1.5x before, not called under 20 ms",
    ] {
        assert!(run.stdout.contains(shown), "{shown}:\n{}", run.stdout);
    }
    // Each check's line, as the journal of this (the latest) run records it.
    let journal = p.journals();
    let check = |name: &str| {
        journal
            .lines()
            .rev()
            .find(|l| l.contains(&format!("\"{name}: ")))
            .unwrap_or_else(|| panic!("{name}:\n{journal}"))
            .to_string()
    };
    assert!(
        check("traffic.compare.p95").contains(") critical"),
        "{journal}"
    );
    assert!(
        check("load.compare.p95").contains(") ok"),
        "the probe saw no change:\n{journal}"
    );
    assert!(!p.file("mode").exists(), "the switch was rolled back");

    let run = p.run(&["apply", "--yes", "failing.toml"]).expect(4);
    assert!(
        run.stdout
            .contains("traffic.compare.error_rate: 0.000 % before, ")
            && run.stdout.contains("(threshold: <= before + 0 %) critical"),
        "{}",
        run.stdout
    );

    let journal = p.journals();
    let after = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "step_succeeded" && e["step"] == "probe-after")
        .unwrap_or_else(|| panic!("{journal}"));
    let figures = &after["figures"];
    assert!(
        figures["traffic"]["requests"].as_u64().unwrap() >= 20,
        "{figures}"
    );
    assert!(
        figures["baseline"]["figures"]["traffic"]["requests"]
            .as_u64()
            .unwrap()
            >= 20,
        "{figures}"
    );
}
