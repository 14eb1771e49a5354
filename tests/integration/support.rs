//! A temporary project to run the real `runner` binary in.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

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

    /// Every journal line of every run, as one text.
    pub fn journals(&self) -> String {
        let mut out = String::new();
        let runs = self.file(".runner/runs");
        for entry in std::fs::read_dir(runs).into_iter().flatten().flatten() {
            out.push_str(
                &std::fs::read_to_string(entry.path().join("journal.jsonl")).unwrap_or_default(),
            );
        }
        out
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
