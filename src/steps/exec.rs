//! `exec`: run a command (the escape hatch). It has no default rollback: the playbook must give
//! one (`rollback = { command = [...] }`) or say `rollback = "none"` with a reason.

use std::collections::{BTreeMap, VecDeque};
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use toml::Spanned;

use super::{Intent, StepCx, StepError};
use crate::playbook::{Checker, Scalar};

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

    pub(crate) fn plan(&self) -> Intent {
        Intent {
            action: format!("run {}", self.command.describe()),
            changes: true,
            diff: None,
            refusal: None,
            writes: None,
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

    /// The command line as a shell would read it.
    pub(crate) fn describe(&self) -> String {
        let line = shlex::try_join(self.argv.iter().map(String::as_str))
            .unwrap_or_else(|_| self.argv.join(" "));
        let mut out = format!("`{line}`");
        if let Some(dir) = &self.dir {
            out.push_str(&format!(" in `{dir}`"));
        }
        if !self.env.is_empty() {
            let names: Vec<&str> = self.env.keys().map(String::as_str).collect();
            out.push_str(&format!(" with {}", names.join(", ")));
        }
        out
    }

    /// Runs to completion, reporting each output line as progress.
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
            .kill_on_drop(true)
            .spawn()
            .map_err(StepError::io(format!("could not start `{}`", self.argv[0])))?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
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
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut tail = VecDeque::with_capacity(TAIL_LINES);
        while let Some(line) = rx.recv().await {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line.clone());
            cx.say(line);
        }
        let status = child.wait().await.map_err(StepError::io(format!(
            "could not wait for `{}`",
            self.argv[0]
        )))?;
        if status.success() {
            return Ok(format!("{} exited 0", self.describe()));
        }
        let mut message = format!("{} failed ({status})", self.describe());
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
