//! A temporary project to run the real `runner` binary in.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub const SENTINEL: &str = "sentinel-Pa55-w0rd-7f3c";

pub struct Project {
    dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Project {
    pub fn new() -> Self {
        Project {
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> &Self {
        let path = self.file(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    pub fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.file(name)).ok()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner"));
        cmd.args(args)
            .current_dir(self.path())
            .env("DB_PASSWORD", SENTINEL)
            .env("NO_COLOR", "1")
            .env_remove("RUNNER_STATE_DIR")
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        finish(self.command(args))
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runner starts")
    }

    /// Every journal line of every run, oldest run first (run ids sort by start), as one text.
    pub fn journals(&self) -> String {
        let runs = self.file(".runner/runs");
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        dirs.sort();
        dirs.iter()
            .map(|d| std::fs::read_to_string(d.join("journal.jsonl")).unwrap_or_default())
            .collect()
    }

    /// Waits (bounded) until a file exists.
    pub fn wait_for(&self, name: &str) {
        for _ in 0..200 {
            if self.file(name).exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("{name} never appeared");
    }
}

impl Run {
    /// Fails with the whole output when the exit code is not `code`.
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Project {
    /// Like `run`, with the test secret unset.
    pub fn run_without_secret(&self, args: &[&str]) -> Run {
        let mut command = self.command(args);
        command.env_remove("DB_PASSWORD");
        finish(command)
    }
}

/// Runs a command to the end and keeps what it printed.
pub fn finish(mut command: Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("runner starts");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// The secrets the shipped playbooks declare, with test values.
pub fn example_secrets() -> Vec<(&'static str, &'static str)> {
    vec![
        ("ENCRYPTION_KEY", "test-encryption-key-32-characters"),
        ("REDIS_PASSWORD", "test-redis-password"),
        ("POSTGRES_PASSWORD", "test-postgres-password"),
        ("ALERT_WEBHOOK_URL", "http://127.0.0.1:9/hook"),
    ]
}

/// A service address from scripts/services.sh. Never skips: a missing service fails the test.
pub fn service(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: start the test services with scripts/services.sh and source its env file (scripts/test.sh does both)")
    })
}

/// Runs SQL through psql and returns its unaligned output.
pub fn psql(url: &str, sql: &str) -> String {
    let mut command = Command::new("psql");
    command.args([url, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql]);
    tool_output(command)
}

/// What a tool printed, trimmed; fails the test if the tool failed.
pub fn tool_output(mut command: Command) -> String {
    let out = command.output().expect("the tool runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{command:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A new, empty database on the test server; returns its URL.
pub fn fresh_database(name: &str) -> String {
    let admin = service("RUNNER_TEST_PG_URL");
    let db = format!("t_{name}_{}", std::process::id());
    psql(
        &admin,
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
    psql(&admin, &format!("CREATE DATABASE {db}"));
    admin
        .rsplit_once('/')
        .map(|(base, _)| format!("{base}/{db}"))
        .unwrap()
}

/// redis-cli against the test server's database `db`.
pub fn redis_cli(db: u8, args: &[&str]) -> String {
    let url = url::Url::parse(&service("RUNNER_TEST_REDIS_URL")).expect("a Redis URL");
    let (port, db) = (url.port().unwrap().to_string(), db.to_string());
    let mut command = Command::new("redis-cli");
    command
        .args(["-h", url.host_str().unwrap(), "-p", &port, "-n", &db])
        .env("REDISCLI_AUTH", url.password().unwrap_or_default())
        .args(args);
    tool_output(command)
}

/// Serves `answer(n, path)` (status, body, delay in ms) to the n-th request (from 0), a thread
/// per connection, one request per connection; returns its port on 127.0.0.1.
pub fn serve(
    answer: impl Fn(usize, &str) -> (u16, &'static str, u64) + Send + Sync + 'static,
) -> u16 {
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
                let _ = reader.read_line(&mut line);
                let path = line.split(' ').nth(1).unwrap_or("").to_string();
                line.clear();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let (status, body, delay) = answer(count.fetch_add(1, Ordering::SeqCst), &path);
                std::thread::sleep(Duration::from_millis(delay));
                // One write: in pieces, Nagle's algorithm and delayed ACKs add 40 ms.
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = (&stream).write_all(answer.as_bytes());
            });
        }
    });
    port
}

/// The process groups of steps' commands that the journal does not see exit.
pub fn child_groups(p: &Project) -> Vec<i32> {
    let events: Vec<serde_json::Value> = p
        .journals()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let pids = |kind: &str| -> Vec<i32> {
        events
            .iter()
            .filter(|v| v["event"] == kind)
            .map(|v| v["pid"].as_i64().unwrap() as i32)
            .collect()
    };
    let exited = pids("child_exited");
    pids("child_started")
        .into_iter()
        .filter(|pid| !exited.contains(pid))
        .collect()
}

pub fn group_alive(pgid: i32) -> bool {
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), None).is_ok()
}
