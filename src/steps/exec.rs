//! `exec`: run a command (the escape hatch). It has no default rollback: the playbook must give
//! one (`rollback = { command = [...] }`) or say `rollback = "none"` with a reason.

use std::collections::{BTreeMap, VecDeque};
use std::process::Stdio;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use toml::Spanned;

use super::{Intent, StepCx, StepError};
use crate::check::{Checker, Scalar};
use crate::secrets::Secrets;

/// How many trailing output lines a failure message quotes.
const TAIL_LINES: usize = 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    command: Spanned<Vec<Spanned<String>>>,
    dir: Option<Spanned<String>>,
    env: Option<BTreeMap<String, Spanned<Scalar>>>,
}

/// A command line with its directory and extra environment (also the shape of a rollback).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Command {
    pub(crate) argv: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dir: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) env: BTreeMap<String, String>,
}

#[derive(Debug)]
pub(crate) struct Exec {
    pub(crate) command: Command,
}

impl Exec {
    pub(crate) fn validate(raw: Raw, cx: &mut Checker<'_>) -> Option<Self> {
        Some(Exec {
            command: Command::validate(&raw.command, raw.dir.as_ref(), raw.env.as_ref(), cx)?,
        })
    }

    pub(crate) fn plan(&self, secrets: &Secrets) -> Intent {
        Intent {
            action: format!("run {}", self.command.describe(secrets)),
            changes: true,
            diff: None,
            refusal: None,
            writes: None,
            compose: None,
        }
    }
}

impl Command {
    /// Checks and renders a command's fields: not empty, and its program can be found.
    pub(crate) fn validate(
        command: &Spanned<Vec<Spanned<String>>>,
        dir: Option<&Spanned<String>>,
        env: Option<&BTreeMap<String, Spanned<Scalar>>>,
        cx: &mut Checker<'_>,
    ) -> Option<Self> {
        let rendered: Vec<Option<String>> = command.get_ref().iter().map(|a| cx.text(a)).collect();
        let dir = match dir {
            Some(d) => Some(cx.text(d)?),
            None => None,
        };
        let env: Option<BTreeMap<String, String>> = env
            .into_iter()
            .flatten()
            .map(|(k, v)| Some((k.clone(), cx.scalar(v)?)))
            .collect();
        let argv: Vec<String> = rendered.into_iter().collect::<Option<_>>()?;
        let Some(program) = argv.first() else {
            cx.problem(
                command.span(),
                "the command is empty",
                "give at least the program",
            );
            return None;
        };
        if !cx.program_exists(program, dir.as_deref()) {
            cx.problem(
                command.span(),
                format!("program `{program}` was not found"),
                "not on PATH, nor a file",
            );
            return None;
        }
        Some(Command {
            argv,
            dir,
            env: env?,
        })
    }

    /// The command line as a shell would read it, each secret in it redacted. Each argument
    /// is redacted before the line is quoted: quoting a whole argument changes how a secret
    /// inside it reads (`'--pw=a$HOME'"\\b"...`), which no search for the secret then finds.
    pub(crate) fn describe(&self, secrets: &Secrets) -> String {
        let argv: Vec<String> = self.argv.iter().map(|a| secrets.redact(a)).collect();
        let line =
            shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "));
        let mut out = format!("`{line}`");
        if let Some(dir) = &self.dir {
            out.push_str(&format!(" in `{}`", secrets.redact(dir)));
        }
        if !self.env.is_empty() {
            let names: Vec<&str> = self.env.keys().map(String::as_str).collect();
            out.push_str(&format!(" with {}", names.join(", ")));
        }
        out
    }

    /// Runs to completion in its own process group, reporting each output line as progress.
    /// The group is recorded (so that a later runner can stop it if this one dies) and killed
    /// whole if the step is cancelled.
    pub(crate) async fn run(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let dir = match &self.dir {
            Some(d) => cx.resolve(d),
            None => cx.workdir.to_path_buf(),
        };
        let mut child = tokio::process::Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .current_dir(&dir)
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(StepError::io(format!("could not start `{}`", self.argv[0])))?;
        let group = child.id().map(|pid| {
            let group = ProcessGroup::new(pid);
            cx.child(group.pid, group.started);
            group
        });
        // Bounded: a command that prints faster than its lines are handled waits for them.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(256);
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            tokio::spawn(read_lines(stream, tx.clone()));
        }
        drop(tx);
        let mut tail = VecDeque::with_capacity(TAIL_LINES);
        let (mut shown, mut hidden) = (Shown::default(), Shown::default());
        while let Some(line) = rx.recv().await {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line.clone());
            if shown.lines < MAX_SHOWN_LINES && shown.bytes + line.len() <= MAX_SHOWN_BYTES {
                shown.add(&line);
                cx.say(line);
            } else {
                hidden.add(&line);
            }
        }
        if hidden.lines > 0 {
            cx.say(format!(
                "[{} more line(s) of output, {} byte(s), not shown; the last {TAIL_LINES} are quoted if the command fails]",
                hidden.lines, hidden.bytes
            ));
        }
        let status = child.wait().await.map_err(StepError::io(format!(
            "could not wait for `{}`",
            self.argv[0]
        )))?;
        if let Some(group) = group {
            // What the command left running in its group would outlive the step: it goes too.
            let pid = group.pid;
            group.stop();
            cx.child_exited(pid);
        }
        if status.success() {
            return Ok(format!("{} exited 0", self.describe(cx.secrets)));
        }
        let mut message = format!("{} failed ({status})", self.describe(cx.secrets));
        if !tail.is_empty() {
            message.push_str("; last output:");
            for line in tail {
                message.push_str("\n  ");
                message.push_str(&line);
            }
        }
        Err(StepError::from(message))
    }
}

/// The longest output line shown; the rest of a longer line is dropped (and said so).
const MAX_LINE: usize = 64 * 1024;

/// How much of a command's output is shown in all: past either bound, lines are counted, not
/// shown (a command that prints without end would fill the terminal and the run's report).
const MAX_SHOWN_LINES: usize = 10_000;
const MAX_SHOWN_BYTES: usize = 4 * 1024 * 1024;

/// Lines of output and their bytes.
#[derive(Default)]
struct Shown {
    lines: usize,
    bytes: usize,
}

impl Shown {
    fn add(&mut self, line: &str) {
        self.lines += 1;
        self.bytes += line.len();
    }
}

/// Sends each line of `stream` as text: bytes that are not UTF-8 shown lossily, a line longer
/// than [`MAX_LINE`] cut. The stream is read to its end, so the command never meets a closed pipe.
async fn read_lines(
    stream: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
    tx: tokio::sync::mpsc::Sender<String>,
) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut cut = 0usize;
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        let (take, end) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = MAX_LINE.saturating_sub(line.len());
        let body = if end { take - 1 } else { take };
        line.extend_from_slice(&chunk[..body.min(room)]);
        cut += body.saturating_sub(room);
        reader.consume(take);
        if end {
            send_line(&tx, &mut line, &mut cut).await;
        }
    }
    if !line.is_empty() || cut > 0 {
        send_line(&tx, &mut line, &mut cut).await;
    }
}

async fn send_line(tx: &tokio::sync::mpsc::Sender<String>, line: &mut Vec<u8>, cut: &mut usize) {
    let mut text = String::from_utf8_lossy(line).into_owned();
    if *cut > 0 {
        text.push_str(&format!(" [{} more byte(s) of this line not shown]", *cut));
    }
    // The receiver is gone only when the step ends; the rest is read and dropped.
    let _ = tx.send(text).await;
    line.clear();
    *cut = 0;
}

/// A child's process group, killed whole when dropped (a cancelled step) or stopped.
pub(crate) struct ProcessGroup {
    pub(crate) pid: u32,
    /// When the leader started, to tell it from a later process with the same id.
    pub(crate) started: Option<u64>,
}

impl ProcessGroup {
    fn new(pid: u32) -> Self {
        ProcessGroup {
            pid,
            started: start_time(pid),
        }
    }

    fn stop(self) {
        signal_group(self.pid, Some(Signal::SIGKILL));
        std::mem::forget(self);
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        signal_group(self.pid, Some(Signal::SIGKILL));
    }
}

/// Sends `signal` to every process of the group (`None`: only asks whether any is alive).
fn signal_group(pid: u32, signal: Option<Signal>) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal).is_ok()
}

/// A process's start time, in clock ticks since boot (`/proc/<pid>/stat`, field 22).
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Stops a process group a dead runner left behind, if it is still alive and still the one
/// recorded (not a later group that reuses the id). Returns whether one was stopped.
pub(crate) fn stop_orphan(pid: u32, started: Option<u64>) -> bool {
    let alive = || signal_group(pid, None);
    match start_time(pid) {
        // The leader lives: it is ours only if it started when recorded.
        Some(now) if started != Some(now) => return false,
        Some(_) => {}
        // The leader is gone: while any member lives, the id cannot have been reused.
        None if !alive() => return false,
        None => {}
    }
    signal_group(pid, Some(Signal::SIGTERM));
    for _ in 0..50 {
        if !alive() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    signal_group(pid, Some(Signal::SIGKILL));
    true
}
