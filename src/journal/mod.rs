//! The run journal: one append-only JSON Lines file per run, every event fsync'd before the
//! engine goes on, readable after a crash (a torn last line is ignored), and folded back into
//! the state `resume`, `rollback` and `status` need.

pub(crate) mod lock;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::{Event, RunStatus, StoredUndo};
use crate::fingerprint::Input;
use crate::steps::Undo;
use crate::template::RunIdentity;

pub(crate) const FORMAT: &str = "runner-journal";
pub(crate) const VERSION: u32 = 1;
const FILE: &str = "journal.jsonl";

/// The first line of a journal: what ran, from which inputs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Header {
    pub(crate) format: String,
    pub(crate) version: u32,
    pub(crate) run: RunIdentity,
    /// The playbook's absolute path, so resume works from any directory.
    pub(crate) playbook: PathBuf,
    /// Where the steps ran: rollback commands run there too.
    pub(crate) workdir: PathBuf,
    pub(crate) name: String,
    pub(crate) vars: BTreeMap<String, String>,
    /// The playbook and template files, with checksums: resume refuses if they changed.
    pub(crate) inputs: Vec<Input>,
    pub(crate) plan_hash: String,
}

/// One journal line after the header.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) seq: u64,
    pub(crate) at: String,
    #[serde(flatten)]
    pub(crate) event: Event,
}

/// An open journal, appending.
pub(crate) struct Journal {
    file: File,
    seq: u64,
}

/// Where runs live under the state dir.
pub(crate) fn runs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("runs")
}

impl Journal {
    /// Starts the journal of a new run in `dir`, header first.
    pub(crate) fn create(dir: &Path, header: &Header) -> Result<Journal> {
        crate::fs::create_private_dir(dir)
            .map_err(Error::io(format!("cannot create `{}`", dir.display())))?;
        let path = dir.join(FILE);
        // Private: file snapshots record the SHA-256 of contents that may hold a secret.
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(Error::io(format!(
                "cannot create journal `{}`",
                path.display()
            )))?;
        let mut journal = Journal { file, seq: 0 };
        journal.write_line(&serde_json::to_string(header).expect("a header serializes"))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(Error::io("cannot sync the run directory"))?;
        Ok(journal)
    }

    /// Reopens a run's journal to append to it (resume, rollback). A torn last line (a crash
    /// mid-write) is cut off first, so that nothing is appended onto it; the note says so.
    pub(crate) fn reopen(state: &RunState) -> Result<(Journal, Option<String>)> {
        let path = state.dir.join(FILE);
        let mut file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(Error::io(format!(
                "cannot open journal `{}`",
                path.display()
            )))?;
        let note = match state.tail {
            Some(Tail::Torn { kept, cut }) => {
                file.set_len(kept)
                    .and_then(|()| file.sync_data())
                    .map_err(Error::io(format!(
                        "cannot cut the torn last line of `{}`",
                        path.display()
                    )))?;
                Some(format!(
                    "the journal's last line was torn (a crash while writing it): cut its {cut} byte(s) before appending"
                ))
            }
            Some(Tail::Unterminated) => {
                file.write_all(b"\n")
                    .and_then(|()| file.sync_data())
                    .map_err(Error::io(format!(
                        "cannot end the last line of `{}`",
                        path.display()
                    )))?;
                None
            }
            None => None,
        };
        let journal = Journal {
            file,
            seq: state.last_seq(),
        };
        Ok((journal, note))
    }

    pub(crate) fn append(&mut self, event: &Event) -> Result<Record> {
        self.seq += 1;
        let record = Record {
            seq: self.seq,
            at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            event: event.clone(),
        };
        self.write_line(&serde_json::to_string(&record).expect("a record serializes"))?;
        Ok(record)
    }

    fn write_line(&mut self, line: &str) -> Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data())
            .map_err(Error::io("cannot write the journal"))
    }
}

/// A run as its journal tells it.
#[derive(Debug)]
pub(crate) struct RunState {
    pub(crate) dir: PathBuf,
    pub(crate) header: Header,
    pub(crate) records: Vec<Record>,
    pub(crate) succeeded: BTreeSet<String>,
    /// What succeeded steps measured, by step id (a resumed run compares with them).
    pub(crate) figures: BTreeMap<String, serde_json::Value>,
    /// Steps prepared but not finished: their undo records are reused when they run again
    /// (a playbook's command is undone first).
    pub(crate) prepared: BTreeSet<String>,
    /// Every undo record, in the order the steps recorded them.
    pub(crate) undos: Vec<(String, StoredUndo)>,
    pub(crate) rolled_back: BTreeSet<String>,
    /// `None`: the run never finished (it crashed or is running).
    pub(crate) status: Option<RunStatus>,
    /// A last line a crash left unfinished, mended before the next append.
    pub(crate) tail: Option<Tail>,
    /// Child process groups started and not seen to exit: the step and the leader's start time.
    pub(crate) children: BTreeMap<u32, (String, Option<u64>)>,
}

/// How a crash mid-write left the journal's last line.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Tail {
    /// Not readable: ignored, and cut off (the whole lines end at `kept`; `cut` bytes follow).
    Torn { kept: u64, cut: u64 },
    /// Readable but without its newline: kept, and ended.
    Unterminated,
}

/// A run under the state dir: readable, or with a journal that cannot be read (which affects
/// that run only).
#[derive(Debug)]
pub(crate) enum Listed {
    Run(Box<RunState>),
    Damaged { id: String, why: String },
}

impl RunState {
    pub(crate) fn id(&self) -> &str {
        &self.header.run.id
    }

    pub(crate) fn last_seq(&self) -> u64 {
        self.records.last().map_or(0, |r| r.seq)
    }

    /// Reads a run's journal; a torn last line (a crash mid-write) is dropped.
    pub(crate) fn read(dir: &Path) -> Result<RunState> {
        let path = dir.join(FILE);
        let text = fs::read_to_string(&path).map_err(Error::io(format!(
            "cannot read journal `{}`",
            path.display()
        )))?;
        let mut lines = text.split_inclusive('\n').peekable();
        let first = lines.next().unwrap_or_default();
        let header: serde_json::Value = serde_json::from_str(first).map_err(|e| {
            Error::Internal(format!(
                "journal `{}` has no readable header: {e}",
                path.display()
            ))
        })?;
        if header.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(Error::refused(
                format!(
                    "`{}` is not a runner journal (its header has no `\"format\": \"{FORMAT}\"`)",
                    path.display()
                ),
                None,
            ));
        }
        let version = header.get("version").and_then(|v| v.as_u64());
        if version != Some(u64::from(VERSION)) {
            return Err(Error::refused(
                format!(
                    "journal `{}` has format version {}; this runner reads version {VERSION} only",
                    path.display(),
                    version.map_or("(none)".into(), |v| v.to_string())
                ),
                Some("it was written by another version of runner; use that version to resume or roll it back".to_string()),
            ));
        }
        let header: Header = serde_json::from_value(header).map_err(|e| {
            Error::Internal(format!(
                "journal `{}` header is damaged: {e}",
                path.display()
            ))
        })?;
        let mut state = RunState {
            dir: dir.to_path_buf(),
            header,
            records: Vec::new(),
            succeeded: BTreeSet::new(),
            figures: BTreeMap::new(),
            prepared: BTreeSet::new(),
            undos: Vec::new(),
            rolled_back: BTreeSet::new(),
            status: None,
            tail: None,
            children: BTreeMap::new(),
        };
        let mut kept = first.len();
        while let Some(line) = lines.next() {
            let torn = lines.peek().is_none() && !line.ends_with('\n');
            match serde_json::from_str::<Record>(line) {
                Ok(record) => {
                    if torn {
                        // Whole but for its newline: kept, and ended before the next append.
                        state.tail = Some(Tail::Unterminated);
                    }
                    state.fold(record);
                }
                Err(_) if torn => {
                    state.tail = Some(Tail::Torn {
                        kept: kept as u64,
                        cut: line.len() as u64,
                    });
                    break;
                }
                Err(e) => {
                    return Err(Error::Internal(format!(
                        "journal `{}` line {} is damaged: {e}",
                        path.display(),
                        state.records.len() + 2
                    )));
                }
            }
            kept += line.len();
        }
        Ok(state)
    }

    fn fold(&mut self, record: Record) {
        match &record.event {
            Event::StepPrepared { step, undo } => {
                if self.rolled_back.remove(step) {
                    // Undone before it ran again (a resumed run's interrupted step): the older
                    // records are spent.
                    self.undos.retain(|(s, _)| s != step);
                }
                self.prepared.insert(step.clone());
                self.undos.push((step.clone(), undo.clone()));
            }
            Event::StepSucceeded {
                step,
                undo,
                figures,
                ..
            } => {
                self.prepared.remove(step);
                self.succeeded.insert(step.clone());
                if let Some(figures) = figures {
                    self.figures.insert(step.clone(), figures.clone());
                }
                if let Some(undo) = undo {
                    self.undos.push((step.clone(), undo.clone()));
                }
            }
            Event::StepFailed {
                step,
                undo: Some(undo),
                ..
            } => {
                self.undos.push((step.clone(), undo.clone()));
            }
            Event::StepRolledBack { step, .. } => {
                self.rolled_back.insert(step.clone());
            }
            Event::RunFinished { status, .. } => self.status = Some(*status),
            Event::ChildStarted { step, pid, started } => {
                self.children.insert(*pid, (step.clone(), *started));
            }
            Event::ChildExited { pid, .. } => {
                self.children.remove(pid);
            }
            _ => {}
        }
        self.records.push(record);
    }

    /// The undo records still to carry out, newest first, with sealed ones opened.
    pub(crate) fn pending_undos(&self) -> Result<Vec<(String, Undo, Vec<String>)>> {
        let mut out = Vec::new();
        for (step, stored) in self.undos.iter().rev() {
            if self.rolled_back.contains(step) {
                continue;
            }
            out.push(match stored {
                StoredUndo::Inline(record) => {
                    let undo = serde_json::from_value(record.clone()).map_err(|e| {
                        Error::Internal(format!(
                            "the undo record of step `{step}` in the journal of run {} is damaged: {e}",
                            self.id()
                        ))
                    })?;
                    (step.clone(), undo, Vec::new())
                }
                StoredUndo::Sealed { sealed } => {
                    let (undo, secrets) = unseal(&self.dir.join(sealed))?;
                    (step.clone(), undo, secrets)
                }
            });
        }
        Ok(out)
    }
}

/// A sealed undo record: the record, and the secret values it holds (to redact its output).
#[derive(Serialize, Deserialize)]
pub(crate) struct Sealed {
    pub(crate) undo: Undo,
    pub(crate) redact: Vec<String>,
}

/// Writes an undo record that holds secrets to a private file of the run; returns its name. A
/// step may leave several (the one journaled before it ran, the one of its success): each gets
/// its own file.
pub(crate) fn seal(run_dir: &Path, step: &str, sealed: &Sealed) -> Result<String> {
    crate::fs::create_private_dir(&run_dir.join("undo"))
        .map_err(Error::io("cannot create the undo dir"))?;
    let name = (1..)
        .map(|n| match n {
            1 => format!("undo/{step}.json"),
            n => format!("undo/{step}.{n}.json"),
        })
        .find(|name| !run_dir.join(name).exists())
        .expect("a free name");
    let path = run_dir.join(&name);
    let bytes = serde_json::to_vec(sealed).expect("an undo record serializes");
    crate::fs::write_atomic(&path, &bytes, Some(0o600), 0o600)
        .map_err(Error::io(format!("cannot write `{}`", path.display())))?;
    Ok(name)
}

fn unseal(path: &Path) -> Result<(Undo, Vec<String>)> {
    let bytes = fs::read(path).map_err(Error::io(format!(
        "cannot read sealed undo record `{}`",
        path.display()
    )))?;
    let sealed: Sealed = serde_json::from_slice(&bytes).map_err(|e| {
        Error::Internal(format!(
            "sealed undo record `{}` is damaged: {e}",
            path.display()
        ))
    })?;
    Ok((sealed.undo, sealed.redact))
}

/// Every run under the state dir, oldest first (run ids sort by start time). A run whose
/// journal cannot be read is listed as damaged; the others are unaffected.
pub(crate) fn list(state_dir: &Path) -> Result<Vec<Listed>> {
    let dir = runs_dir(state_dir);
    let mut names: Vec<PathBuf> = match fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.join(FILE).exists())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(format!("cannot list `{}`", dir.display()))(e)),
    };
    names.sort();
    Ok(names
        .iter()
        .map(|p| match RunState::read(p) {
            Ok(state) => Listed::Run(Box::new(state)),
            Err(e) => Listed::Damaged {
                id: p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                why: e.to_string(),
            },
        })
        .collect())
}

impl Listed {
    pub(crate) fn id(&self) -> &str {
        match self {
            Listed::Run(state) => state.id(),
            Listed::Damaged { id, .. } => id,
        }
    }

    /// The run, or a refusal naming the damage.
    pub(crate) fn readable(self) -> Result<RunState> {
        match self {
            Listed::Run(state) => Ok(*state),
            Listed::Damaged { id, why } => Err(Error::refused(
                format!("the journal of run {id} cannot be read: {why}"),
                Some("other runs are not affected; `runner status` lists them".to_string()),
            )),
        }
    }
}
