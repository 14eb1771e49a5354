//! The three shipped phase playbooks end to end on the real engine, in the runbook's order:
//! preparation; hybrid with an app image that never turns healthy (it rolls itself back);
//! hybrid killed in the middle of its migration and resumed; postgres_primary; then
//! `runner rollback` to the app that reads Redis. A client goes through the load balancer the
//! whole time (from the moment preparation's load balancer answers) and must see no failed
//! request.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::docker::{Stack, docker, free_port};
use crate::support::{Project, Run, example_secrets, finish, psql, tool_output};

const REDIS_PASSWORD: &str = "test-redis-password";
/// The API key the shipped playbooks write and look up in their health gates.
const CANARY: &str = "00000000-0000-4000-8000-00000000c0de";
/// Every app of the test answers this much later than the stand-in would, so that the
/// comparison gate's baseline is near its floor (40 ms at 2x in the shipped hybrid).
const BASE: &str = "latency=25";
/// Faults of postgres_primary's app that its /health cannot see (the stand-in's STANDIN_FAULT):
/// failing key lookups, and key lookups 2 s late.
const FAULTS: &[&str] = &["lookup_errors", "lookup_delay=2000"];
/// hybrid's app, 3x slower than the app before it (same answers).
const SLOW: &str = "latency=25,slowdown=3";

struct Phases {
    p: Project,
    stack: Stack,
    lb: u16,
    redis: u16,
    postgres: u16,
    vars: Vec<String>,
}

impl Phases {
    fn new() -> Self {
        let p = Project::new();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        for dir in ["templates", "images", "sql", "playbooks"] {
            std::os::unix::fs::symlink(repo.join(dir), p.file(dir)).unwrap();
        }
        p.write(
            "base-app/Dockerfile",
            &format!("FROM claude-relay-service:stand-in\nENV STANDIN_FAULT={BASE}\n"),
        );
        let stack = Stack::new("phases");
        let (lb, redis, postgres) = (free_port(), free_port(), free_port());
        let vars = [
            format!("project={}", stack.name),
            format!("lb_container={}-lb", stack.name),
            format!("lb_port={lb}"),
            format!("redis_published_port={redis}"),
            format!("postgres_published_port={postgres}"),
            format!("exporter_published_port={}", free_port()),
        ]
        .into_iter()
        .flat_map(|v| ["--var".to_string(), v])
        .collect();
        Phases {
            p,
            stack,
            lb,
            redis,
            postgres,
            vars,
        }
    }

    /// `runner apply` of a shipped phase playbook, the app image tagged for this test.
    fn apply(&self, phase: &str, extra: &[String]) -> Command {
        let mut command = self
            .p
            .command(&["apply", "--yes", &format!("playbooks/{phase}.toml")]);
        command
            .args(&self.vars)
            .arg("--var")
            .arg(format!("app_image={}-app:{phase}", self.stack.name))
            .args(["--var", "app_context=base-app"])
            .args(extra);
        // Each phase watches its new deployment, for a shorter while.
        command.args(["--var", "monitor_window=10s"]);
        command.envs(example_secrets());
        command
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut command = self.p.command(args);
        command.envs(example_secrets());
        finish(command)
    }

    fn redis_cli(&self, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        command
            .args(["-p", &self.redis.to_string()])
            .env("REDISCLI_AUTH", REDIS_PASSWORD)
            .args(args);
        tool_output(command)
    }

    /// A connection to the stack's Redis.
    fn redis(&self) -> redis::Connection {
        let url = format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}/0", self.redis);
        redis::Client::open(url).unwrap().get_connection().unwrap()
    }

    /// A Redis hash as the JSON object the app answers with.
    fn hash(&self, key: &str) -> Value {
        let fields: std::collections::BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(key)
            .query(&mut self.redis())
            .unwrap();
        fields
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect::<Map<_, _>>()
            .into()
    }

    /// The all-time request counter of an API key in Redis.
    fn requests(&self, id: &str) -> u64 {
        self.hash(&format!("usage:{id}"))["totalRequests"]
            .as_str()
            .map_or(0, |n| n.parse().unwrap())
    }

    /// The same counter in PostgreSQL.
    fn postgres_url(&self) -> String {
        let (_, password) = example_secrets()
            .into_iter()
            .find(|(k, _)| *k == "POSTGRES_PASSWORD")
            .unwrap();
        format!(
            "postgres://postgres:{password}@127.0.0.1:{}/claude_relay",
            self.postgres
        )
    }

    fn postgres_requests(&self, id: &str) -> u64 {
        let n = psql(
            &self.postgres_url(),
            &format!(
                "SELECT coalesce(requests, 0) FROM claude_data.usage_rollups WHERE source_key = 'usage:{id}'"
            ),
        );
        if n.is_empty() { 0 } else { n.parse().unwrap() }
    }

    /// The running containers of the stack: name and id.
    fn running(&self) -> Vec<String> {
        let label = format!("label=com.docker.compose.project={}", self.stack.name);
        let mut names: Vec<String> =
            docker(&["ps", "--filter", &label, "--format", "{{.Names}} {{.ID}}"])
                .lines()
                .map(str::to_string)
                .collect();
        names.sort();
        names
    }

    fn deploy_files(&self) -> Vec<(String, Option<String>)> {
        [
            "deploy/.env",
            "deploy/docker-compose.yml",
            "deploy/postgresql.conf",
            "deploy/lb/nginx.conf",
            "deploy/lb/upstream.conf",
        ]
        .into_iter()
        .map(|f| (f.to_string(), self.p.read(f)))
        .collect()
    }
}

/// One HTTP/1.1 request on its own connection; the status and the body.
fn request(port: u16, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| format!("read: {e}"))?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

fn get_json(port: u16, path: &str) -> Value {
    let (status, body) = request(port, "GET", path, "").expect("the load balancer answers");
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[derive(Default, Debug)]
struct Traffic {
    ok: u64,
    /// When each failed request was sent, and what it got.
    failed: Vec<(Instant, String)>,
    /// When each request that took over a second was sent.
    slow: Vec<Instant>,
    worst: Duration,
    /// Successful usage writes, per key.
    writes: BTreeMap<String, u64>,
}

impl Traffic {
    /// From the first failed or slow request to the last: how long users saw the fault.
    fn degraded_for(&self) -> Option<Duration> {
        let times = self
            .failed
            .iter()
            .map(|(t, _)| *t)
            .chain(self.slow.iter().copied());
        let (first, last) = times.fold(None, |span: Option<(Instant, Instant)>, t| {
            Some(span.map_or((t, t), |(a, b)| (a.min(t), b.max(t))))
        })?;
        Some(last - first)
    }
}

/// Reads keys and records usage through the load balancer until stopped.
struct Client {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Traffic>,
}

impl Client {
    fn start(port: u16, keys: Vec<String>) -> Self {
        Self::started(port, keys, false)
    }

    /// The users of a stack being started: nothing counts until the load balancer first
    /// answers 200.
    fn start_when_up(port: u16, keys: Vec<String>) -> Self {
        Self::started(port, keys, true)
    }

    fn started(port: u16, keys: Vec<String>, wait_up: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut traffic = Traffic::default();
            let mut i = 0;
            let mut up = !wait_up;
            while !flag.load(Ordering::Relaxed) {
                let key = &keys[i % keys.len()];
                let start = Instant::now();
                let write = i % 4 == 0;
                let result = if write {
                    let body = r#"{"input": 3, "output": 5}"#;
                    request(port, "POST", &format!("/api/usage/{key}"), body)
                } else {
                    request(port, "GET", &format!("/api/keys/{key}"), "")
                };
                let took = start.elapsed();
                if !up {
                    // The first answer says the stack is up; it was sent before it was, so
                    // the count starts with the next request.
                    up = matches!(result, Ok((200, _)));
                    if !up {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    continue;
                }
                traffic.worst = traffic.worst.max(took);
                if took > Duration::from_secs(1) {
                    traffic.slow.push(start);
                }
                match result {
                    Ok((200, _)) => {
                        traffic.ok += 1;
                        if write {
                            *traffic.writes.entry(key.clone()).or_default() += 1;
                        }
                    }
                    Ok((status, body)) => traffic.failed.push((start, format!("{status}: {body}"))),
                    Err(e) => traffic.failed.push((start, e)),
                }
                i += 1;
            }
            traffic
        });
        Client { stop, thread }
    }

    /// Stops the client and reports what it saw.
    fn stop(self, what: &str) -> Traffic {
        self.stop.store(true, Ordering::Relaxed);
        let traffic = self.thread.join().unwrap();
        eprintln!(
            "{what}: {} requests through the load balancer, {} failed, {} over 1 s, worst latency {:?}, degraded for {:?}",
            traffic.ok + traffic.failed.len() as u64,
            traffic.failed.len(),
            traffic.slow.len(),
            traffic.worst,
            traffic.degraded_for(),
        );
        assert!(traffic.ok > 0, "{what}: the client sent nothing");
        traffic
    }

    /// Stops the client, which must have seen no failure.
    fn stop_clean(self, what: &str) -> Traffic {
        let traffic = self.stop(what);
        let failed: Vec<_> = traffic.failed.iter().take(10).map(|(_, f)| f).collect();
        assert!(failed.is_empty(), "{what}: failed requests: {failed:?}");
        traffic
    }
}

#[test]
fn three_phases_with_zero_downtime_a_self_rollback_a_resume_and_a_fast_rollback() {
    let ph = Phases::new();
    // Users from the moment the load balancer answers: they look up the canary key that
    // preparation writes, and preparation's monitor judges their requests.
    let users = Client::start_when_up(ph.lb, vec![CANARY.to_string()]);
    let prepared = finish(ph.apply("preparation", &[])).expect(0);
    users.stop_clean("preparation");
    assert!(
        prepared.stdout.contains("traffic: ") && prepared.stdout.contains("window(s) judged"),
        "preparation's monitor judged real traffic: {}",
        prepared.stdout
    );
    assert_eq!(get_json(ph.lb, "/health")["reads"], "redis");

    // The relay's data as it is before the migration.
    let url = format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}/0", ph.redis);
    let seeded = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/relay-data.py"))
        .args(["--url", &url, "--api-keys", "3000"])
        .output()
        .unwrap();
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    let keys: Vec<String> = ph
        .redis_cli(&["--scan", "--pattern", "apikey:*"])
        .lines()
        .filter_map(|k| k.strip_prefix("apikey:"))
        .filter(|id| id.len() == 36 && *id != CANARY)
        .take(40)
        .map(str::to_string)
        .collect();
    assert_eq!(keys.len(), 40);
    let requests_before: BTreeMap<String, u64> =
        keys.iter().map(|k| (k.clone(), ph.requests(k))).collect();
    let mut writes: BTreeMap<String, u64> = BTreeMap::new();
    let mut count = |traffic: Traffic| {
        for (key, n) in traffic.writes {
            *writes.entry(key).or_default() += n;
        }
    };
    let client = Client::start(ph.lb, keys.clone());

    // hybrid with an app that never turns healthy: it rolls back on its own; app-blue serves on.
    let files = ph.deploy_files();
    let containers = ph.running();
    ph.p.write(
        "broken-app/Dockerfile",
        "FROM claude-relay-service:stand-in\nHEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD false\n",
    );
    let broken = ["--var".to_string(), "app_context=broken-app".to_string()];
    let failed = finish(ph.apply("hybrid", &broken)).expect(4);
    assert!(failed.stdout.contains("deploy-green"), "{}", failed.stdout);
    assert_eq!(ph.deploy_files(), files, "the stack's files are as before");
    assert_eq!(ph.running(), containers, "the same containers run");
    assert_eq!(get_json(ph.lb, "/health")["instance"], "blue");

    // hybrid with an app 3x slower than blue: the comparison with the probe before the switch
    // rolls it back.
    ph.p.write(
        "slow-app/Dockerfile",
        &format!("FROM claude-relay-service:stand-in\nENV STANDIN_FAULT={SLOW}\n"),
    );
    let slow = ["--var".to_string(), "app_context=slow-app".to_string()];
    let failed = finish(ph.apply("hybrid", &slow)).expect(4);
    let gate = failed
        .stdout
        .lines()
        .find(|l| l.contains("FAILED  verify"))
        .unwrap_or_else(|| panic!("the verify step failed: {}", failed.stdout))
        .to_string();
    eprintln!("hybrid with STANDIN_FAULT={SLOW}: {}", gate.trim());
    // The probe's figures or the real traffic's, whichever the slowdown shows first.
    assert!(
        gate.contains("load.compare.p95") || gate.contains("traffic.compare.p95"),
        "{gate}"
    );
    assert_eq!(ph.deploy_files(), files, "the stack's files are as before");
    assert_eq!(get_json(ph.lb, "/health")["instance"], "blue");

    // hybrid, killed in the middle of its migration, then resumed. (The slow attempt's journal
    // has checkpoints of its own: wait for one more.)
    let checkpoints = || ph.p.journals().matches("checkpoint cursor").count();
    let earlier = checkpoints();
    let mut child = ph
        .apply("hybrid", &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while checkpoints() <= earlier {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the migration never checkpointed"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "hybrid ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    ph.run(&["resume", "--yes"]).expect(0);
    assert!(ph.p.journals().contains("resumed from the checkpoint"));
    // The resumed run's report (the page the resume left): its timeline, the migration's rate,
    // the monitor's health probes.
    // Opened in headless Chromium: no console error, and the elements drawn.
    ph.run(&["report", "--format", "html", "--out", "hybrid.html"])
        .expect(0);
    let (page, log) = crate::report::chromium(&ph.p.file("hybrid.html"), &ph.p.file("hybrid.png"));
    assert_eq!(
        crate::report::console_errors(&log),
        Vec::<&str>::new(),
        "{log}"
    );
    for shown in [
        "<svg id=\"timeline\"",
        "aria-label=\"migration rate\"",
        "aria-label=\"health checks\"",
        "aria-label=\"real-traffic latency\"",
    ] {
        assert!(page.contains(shown), "{shown}:\n{page}");
    }
    let health = get_json(ph.lb, "/health");
    assert_eq!(
        (health["instance"].as_str(), health["reads"].as_str()),
        (Some("green"), Some("redis"))
    );
    assert_eq!(health["dual_write"], true);
    count(client.stop_clean("hybrid (failed, then killed and resumed)"));
    // Every row the migration wrote holds its key's expiry (within 2 s), or NULL for a key
    // without one; the generator gives most families a TTL.
    let (with, without) = crate::migrate::assert_expiries(&mut ph.redis(), &ph.postgres_url());
    eprintln!("after hybrid: {with} rows with their key's expiry, {without} without one");
    assert!(with > 1000 && without > 0, "{with} with, {without} without");

    // postgres_primary with an app whose fault /health cannot see: the phase's gates on real
    // requests roll it back, and the app that reads Redis serves on.
    for (n, fault) in FAULTS.iter().enumerate() {
        let context = format!("faulty-app-{n}");
        ph.p.write(
            &format!("{context}/Dockerfile"),
            &format!("FROM claude-relay-service:stand-in\nENV STANDIN_FAULT={fault}\n"),
        );
        let client = Client::start(ph.lb, keys.clone());
        let started = Instant::now();
        let run = finish(ph.apply(
            "postgres_primary",
            &["--var".to_string(), format!("app_context={context}")],
        ))
        .expect(4);
        let took = started.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        let traffic = client.stop(&format!("postgres_primary with STANDIN_FAULT={fault}"));
        let failed_step = run
            .stdout
            .lines()
            .find(|l| l.contains("FAILED"))
            .unwrap_or_default()
            .to_string();
        let degraded = traffic.degraded_for().unwrap_or_default();
        eprintln!(
            "STANDIN_FAULT={fault}: rolled back in {took:?} by `{}`; users saw it for {degraded:?}",
            failed_step.trim()
        );
        assert!(
            degraded < Duration::from_secs(15),
            "STANDIN_FAULT={fault}: users saw the fault for {degraded:?}"
        );
        let health = get_json(ph.lb, "/health");
        assert_eq!(
            (health["instance"].as_str(), health["reads"].as_str()),
            (Some("green"), Some("redis")),
            "STANDIN_FAULT={fault}: the old app serves again"
        );
        count(traffic);
    }

    let client = Client::start(ph.lb, keys.clone());
    finish(ph.apply("postgres_primary", &[])).expect(0);
    count(client.stop_clean("postgres_primary"));

    // The app now serves from PostgreSQL exactly what Redis holds.
    assert_eq!(get_json(ph.lb, "/health")["reads"], "postgres");
    for id in &keys {
        let served = get_json(ph.lb, &format!("/api/keys/{id}"));
        assert_eq!(served["from"], "postgres");
        assert_eq!(served["key"], ph.hash(&format!("apikey:{id}")), "key {id}");
        assert_eq!(
            served["usage"],
            ph.hash(&format!("usage:{id}")),
            "usage of {id}"
        );
    }

    // Back to the app that reads Redis, under traffic, within 30 seconds.
    let client = Client::start(ph.lb, keys.clone());
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    ph.run(&["rollback", "--yes"]).expect(0);
    let took = start.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    count(client.stop_clean("runner rollback of postgres_primary"));
    eprintln!("runner rollback of postgres_primary took {took:?}");
    assert!(took < Duration::from_secs(30), "rollback took {took:?}");
    let health = get_json(ph.lb, "/health");
    assert_eq!(
        (health["instance"].as_str(), health["reads"].as_str()),
        (Some("green"), Some("redis"))
    );
    let served = get_json(ph.lb, &format!("/api/keys/{}", keys[0]));
    assert_eq!(served["from"], "redis");
    assert_eq!(served["usage"], ph.hash(&format!("usage:{}", keys[0])));

    // No update lost: every key's request counter is what it was plus the writes the client
    // saw succeed, in Redis and in PostgreSQL.
    let written: u64 = writes.values().sum();
    assert!(written > 0, "the client wrote nothing");
    for id in &keys {
        let expected = requests_before[id] + writes.get(id).copied().unwrap_or(0);
        assert_eq!(ph.requests(id), expected, "Redis: requests of {id}");
        assert_eq!(
            ph.postgres_requests(id),
            expected,
            "PostgreSQL: requests of {id}"
        );
    }
    eprintln!("{written} usage writes counted, none lost in Redis or PostgreSQL");
}
