//! The command line: parse flags, run one command, turn the outcome into an exit code.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::context::{Lent, Stop};
use crate::emitter::Emitter;
use crate::engine::{self, Resumed, Run, Sink};
use crate::error::{Error, Result, exit_code};
use crate::event::{Event, RunStatus};
use crate::fingerprint;
use crate::journal::{self, Header, Journal, RunState, lock::Lock};
use crate::plan::{self, Plan};
use crate::playbook::{self, Playbook};
use crate::report::{self, Format, Reporter};
use crate::template::RunIdentity;

const EXIT_CODES: &str = "\
Exit codes:
  0  success (plan --detailed-exitcode: nothing to do)
  1  internal error
  2  invalid input: playbook, template, secret or flag
  3  refused: lock held, playbook or plan changed since, nothing to resume
  4  a step failed and the run was rolled back cleanly
  5  a rollback failed: manual action needed
  6  plan --detailed-exitcode: there are changes
  7  a step failed and the playbook says on_failure = \"pause\": resume or roll back";

/// Apply deployment playbooks step by step, with a journal, resume and rollback.
#[derive(Parser)]
#[command(name = "runner", version, after_help = EXIT_CODES, long_about = "\
Apply deployment playbooks step by step, with a journal, resume and rollback.

A playbook (TOML) lists steps: backups, rendered templates, .env changes, commands. `plan` shows
what would change (with diffs, secrets redacted); `apply` runs the steps in order, journaling each
one under --state-dir, and rolls back the completed steps in reverse order if one fails. After a
crash, `resume` continues where the run stopped; `rollback` undoes the last run from its journal.")]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Where runs, journals, backups and the lock are kept.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = ".runner",
        env = "RUNNER_STATE_DIR"
    )]
    state_dir: PathBuf,

    /// Replace a [vars] entry of the playbook (repeatable).
    #[arg(long = "var", global = true, value_name = "KEY=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,

    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t)]
    format: Format,

    /// Do not ask for confirmation before changing anything.
    #[arg(long, short = 'y', global = true)]
    yes: bool,

    /// Show only warnings, failures, the rollback and the outcome of a run.
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    quiet: bool,

    /// Also show every line of progress and every sample of the running steps.
    #[arg(long, short = 'v', global = true)]
    verbose: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Check a playbook (syntax, fields, secrets, templates) without touching anything.
    Validate { playbook: PathBuf },
    /// Show what `apply` would do: each step, its rollback, and diffs of the files it writes.
    Plan {
        playbook: PathBuf,
        /// Also save the plan as JSON, for `runner apply PLAN.json`.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Exit 0 when nothing would change, 6 when something would.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Do not read the live state (the SQL history of `sql` steps); plan from files alone.
        #[arg(long)]
        no_refresh: bool,
        /// Also print, for each compose step, its services as runner will create them (YAML
        /// in the shape of `docker-compose config`, secrets redacted).
        #[arg(long)]
        show_compose: bool,
    },
    /// Apply a playbook, or a plan saved with `plan --out` (refused if it went stale).
    Apply {
        /// A playbook (.toml) or a saved plan (.json).
        target: PathBuf,
        /// Take the lock even if another live process holds it.
        #[arg(long)]
        force_unlock: bool,
        /// Do not read the live state before applying (a saved plan keeps its own choice).
        #[arg(long)]
        no_refresh: bool,
    },
    /// Continue the last unfinished run: completed steps are skipped, the interrupted one re-runs.
    Resume {
        #[arg(long)]
        force_unlock: bool,
    },
    /// Roll back the last run (or --run ID) from its journal, newest step first.
    Rollback {
        /// The run to roll back (see `runner status`).
        #[arg(long, value_name = "ID")]
        run: Option<String>,
        #[arg(long)]
        force_unlock: bool,
    },
    /// Show the runs in the state dir and the steps of the last one (or --run ID).
    Status {
        #[arg(long, value_name = "ID")]
        run: Option<String>,
    },
    /// The report of the last run (or --run ID) from its journal: --format html (a
    /// self-contained page) or markdown (for a pull request or an incident).
    Report {
        #[arg(long, value_name = "ID")]
        run: Option<String>,
        /// Write the report to FILE instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

fn parse_var(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

/// Runs the command line `args`; never panics on bad input, returns the exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit_code::INVALID
            } else {
                exit_code::SUCCESS
            });
        }
    };
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .color(color)
                .unicode(color)
                .width(100)
                .terminal_links(false)
                .build(),
        )
    }));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit_code::INTERNAL);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            let code = error.exit_code();
            errln!("{:?}", miette::Report::new(error));
            ExitCode::from(code)
        }
    }
}

async fn dispatch(mut cli: Cli) -> Result<u8> {
    // Journals record absolute paths, so a run can be resumed or rolled back from anywhere.
    cli.state_dir = std::path::absolute(&cli.state_dir).map_err(Error::io(format!(
        "cannot resolve state dir `{}`",
        cli.state_dir.display()
    )))?;
    let vars: BTreeMap<String, String> = cli.vars.iter().cloned().collect();
    if cli.format == Format::Html && !matches!(cli.command, Command::Report { .. }) {
        return Err(Error::Usage(
            "--format html is for `runner report`; use human, json or markdown".into(),
        ));
    }
    report::set_verbosity(if cli.quiet {
        report::Verbosity::Quiet
    } else if cli.verbose {
        report::Verbosity::Verbose
    } else {
        report::Verbosity::Normal
    });
    match &cli.command {
        Command::Validate { playbook } => validate(playbook, &vars, cli.format),
        Command::Plan {
            playbook,
            out,
            detailed_exitcode,
            no_refresh,
            show_compose,
        } => {
            let shown = Shown {
                out: out.as_deref(),
                detailed: *detailed_exitcode,
                refresh: !*no_refresh,
                compose: *show_compose,
            };
            show_plan(&cli, playbook, &vars, &shown).await
        }
        Command::Apply {
            target,
            force_unlock,
            no_refresh,
        } => apply(&cli, target, &vars, *force_unlock, !*no_refresh).await,
        Command::Resume { force_unlock } => resume(&cli, *force_unlock).await,
        Command::Rollback { run, force_unlock } => {
            rollback(&cli, run.as_deref(), *force_unlock).await
        }
        Command::Status { run } => status(&cli.state_dir, run.as_deref(), cli.format),
        Command::Report { run, out } => {
            show_report(&cli.state_dir, run.as_deref(), out.as_deref(), cli.format)
        }
    }
}

/// Loads a playbook to validate, plan or apply it, saying once when it sends no alerts.
fn loaded(
    path: &Path,
    vars: &BTreeMap<String, String>,
    run: Option<&RunIdentity>,
) -> Result<playbook::Playbook> {
    let playbook = playbook::load(path, vars, run)?;
    if playbook
        .notify
        .as_ref()
        .is_some_and(|n| n.webhook.is_none())
    {
        errln!("{}", crate::notify::Notify::OFF);
    }
    Ok(playbook)
}

fn validate(path: &Path, vars: &BTreeMap<String, String>, format: Format) -> Result<u8> {
    let playbook = loaded(path, vars, None)?;
    match format {
        Format::Json => outln!(
            "{}",
            serde_json::json!({ "valid": true, "playbook": playbook.path, "name": playbook.name, "steps": playbook.steps.len(), "warnings": playbook.warnings })
        ),
        Format::Human | Format::Markdown | Format::Html => {
            for w in &playbook.warnings {
                errln!("warning: {w}");
            }
            outln!(
                "`{}` is valid: {} step(s)",
                playbook.path,
                playbook.steps.len()
            )
        }
    }
    Ok(exit_code::SUCCESS)
}

/// The plan of a loaded playbook: what it observes now (files, SQL histories) is read here.
async fn plan_of(playbook: &Playbook, refresh: bool, lent: &Lent) -> Result<Plan> {
    let observed = plan::observe(playbook, refresh, lent).await?;
    Ok(plan::plan(playbook, &observed))
}

/// Refuses a plan in which a step must not run (exit 3), naming each.
fn refuse_if_blocked(plan: &Plan) -> Result<()> {
    let blocked: Vec<String> = plan
        .steps
        .iter()
        .filter_map(|s| s.refusal.as_ref().map(|r| format!("step `{}`: {r}", s.id)))
        .collect();
    if blocked.is_empty() {
        return Ok(());
    }
    Err(Error::refused(
        blocked.join("\n"),
        Some("nothing was applied".to_string()),
    ))
}

/// How `plan` shows the plan.
#[derive(Clone, Copy)]
struct Shown<'a> {
    out: Option<&'a Path>,
    detailed: bool,
    refresh: bool,
    compose: bool,
}

async fn show_plan(
    cli: &Cli,
    path: &Path,
    vars: &BTreeMap<String, String>,
    shown: &Shown<'_>,
) -> Result<u8> {
    let Shown {
        out,
        detailed,
        refresh,
        compose,
    } = *shown;
    let plan = plan_of(&loaded(path, vars, None)?, refresh, &Lent::default()).await?;
    out!("{}", report::plan(&plan, cli.format));
    for step in plan.steps.iter().filter(|_| compose) {
        if let Some(yaml) = &step.compose {
            out!(
                "# step `{}` ({}): the services as runner will create them\n{yaml}",
                step.id,
                step.kind
            );
        }
    }
    if let Some(out) = out {
        refuse_if_run_dependent(&plan)?;
        std::fs::write(out, plan.to_json())
            .map_err(Error::io(format!("cannot write `{}`", out.display())))?;
    }
    refuse_if_blocked(&plan)?;
    Ok(if detailed && plan.changes > 0 {
        exit_code::CHANGES
    } else {
        exit_code::SUCCESS
    })
}

/// A saved plan is applied by a run whose identity is chosen when it starts: a plan whose
/// content shows `{{run.id}}` or `{{run.started_at}}` cannot be saved (it would be stale).
fn refuse_if_run_dependent(plan: &Plan) -> Result<()> {
    let stand_in = RunIdentity::planned("");
    let json = plan.to_json();
    for (name, value) in [
        ("run.id", stand_in.id),
        ("run.started_at", stand_in.started_at),
    ] {
        if json.contains(&value) {
            return Err(Error::Usage(format!(
                "this plan uses `{{{{{name}}}}}`, which is known only when a run starts, so it cannot be saved and applied later; `runner apply {}` plans with the run's identity and asks before it changes anything",
                plan.playbook.path
            )));
        }
    }
    Ok(())
}

fn exit_for(outcome: engine::Outcome) -> u8 {
    match outcome.status {
        RunStatus::Succeeded => exit_code::SUCCESS,
        RunStatus::RolledBack if outcome.drifted => exit_code::REFUSED,
        RunStatus::RolledBack => exit_code::ROLLED_BACK,
        RunStatus::RollbackFailed => exit_code::ROLLBACK_FAILED,
        RunStatus::Paused => exit_code::PAUSED,
    }
}

/// Asks before changing anything, unless --yes. The answer is read from a terminal, or from a
/// pipe or file on stdin; with nothing to read from (`/dev/null`) it is a usage error.
fn confirm(cli: &Cli, question: &str) -> Result<bool> {
    if cli.yes {
        return Ok(true);
    }
    let answerable = std::io::stdin().is_terminal()
        || std::fs::metadata("/dev/stdin").is_ok_and(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_fifo() || m.file_type().is_file()
        });
    if !answerable {
        return Err(Error::Usage(format!(
            "{question}: there is no terminal to ask on; pass --yes to go ahead without asking"
        )));
    }
    err!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(Error::io("cannot read the answer"))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Takes the state dir's lock for this command, telling the operator about a holder it replaced.
fn take_lock(cli: &Cli, force_unlock: bool, reporter: &mut Reporter) -> Result<Lock> {
    let (lock, warning) = Lock::acquire(&cli.state_dir, &command_line(), force_unlock)?;
    if let Some(w) = warning {
        reporter.note(&w);
    }
    stop_orphans(&cli.state_dir, reporter)?;
    Ok(lock)
}

/// Stops the child process groups that runs of a runner now dead left alive (with the lock
/// held, no other runner has children here), before anything is touched.
fn stop_orphans(state_dir: &Path, reporter: &mut Reporter) -> Result<()> {
    for listed in journal::list(state_dir)? {
        let journal::Listed::Run(run) = listed else {
            continue;
        };
        for (pid, (step, started)) in &run.children {
            if crate::steps::exec::stop_orphan(*pid, *started) {
                reporter.note(&format!(
                    "stopped process group {pid} of step `{step}` of run {}: its runner died and left it running",
                    run.id()
                ));
            }
        }
    }
    Ok(())
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

async fn apply(
    cli: &Cli,
    target: &Path,
    vars: &BTreeMap<String, String>,
    force_unlock: bool,
    refresh: bool,
) -> Result<u8> {
    let saved = if target.extension().is_some_and(|e| e == "json") {
        Some(Plan::read(target)?)
    } else {
        None
    };
    let (path, vars) = match &saved {
        Some(_) if !vars.is_empty() => {
            return Err(Error::Usage(
                "a saved plan carries its own --var values; make a new plan to change them".into(),
            ));
        }
        Some(plan) => (
            PathBuf::from(&plan.playbook.path),
            plan.playbook.vars.clone(),
        ),
        None => (target.to_path_buf(), vars.clone()),
    };
    let refresh = saved.as_ref().map_or(refresh, |p| p.playbook.refreshed);
    // The playbook is loaded once, rendered for this run (an invalid one leaves no state);
    // the plan is made from it under the lock, and what is shown is what runs. What it read
    // is checked again once the answer is in.
    let playbook = loaded(&path, &vars, Some(&RunIdentity::start()))?;
    let mut reporter = Reporter::new(cli.format);
    let _lock = take_lock(cli, force_unlock, &mut reporter)?;
    let lent = Lent::default();
    let plan = plan_of(&playbook, refresh, &lent).await?;
    if let Some(saved) = &saved
        && saved.hash != plan.hash
    {
        let why = saved.differences(&plan);
        return Err(Error::refused(
            format!(
                "the plan `{}` is stale: {}",
                target.display(),
                why.join("; ")
            ),
            Some("make the plan again with `runner plan --out` and review it".to_string()),
        ));
    }
    if cli.format != Format::Json && !cli.quiet {
        out!("{}", report::plan(&plan, cli.format));
    }
    refuse_if_blocked(&plan)?;
    let question = format!(
        "apply {} step(s) of `{}`?",
        plan.steps.len(),
        plan.playbook.name
    );
    if !confirm(cli, &question)? {
        errln!("nothing applied");
        return Ok(exit_code::REFUSED);
    }
    refuse_if_drifted(&plan, &playbook)?;
    let header = Header {
        format: journal::FORMAT.into(),
        version: journal::VERSION,
        run: playbook.run.clone(),
        playbook: std::fs::canonicalize(&path)
            .map_err(Error::io(format!("cannot resolve `{}`", path.display())))?,
        workdir: playbook.workdir.clone(),
        name: playbook.name.clone(),
        vars: vars.clone(),
        inputs: playbook.inputs.clone(),
        plan_hash: plan.hash.clone(),
    };
    let dir = journal::runs_dir(&cli.state_dir).join(&header.run.id);
    let journal = Journal::create(&dir, &header)?;
    let sink = Emitter::new(journal, &mut reporter, playbook.secrets.clone()).alerting(&playbook);
    stop_on_signals(&lent.stop);
    let mut run = Run {
        playbook: &playbook,
        plan: &plan,
        dir: &dir,
        sink,
        lent: &lent,
    };
    let status = engine::execute(&mut run, None).await?;
    report::leave_report(&dir, &playbook.secrets, cli.format);
    Ok(exit_for(status))
}

/// From here on SIGINT (Ctrl-C) and SIGTERM ask the run to stop: the running step ends (its
/// child processes stopped) and the run rolls back or pauses as its playbook says. Wired once
/// the answer to the prompt is in, so that Ctrl-C at the prompt still ends runner at once.
fn stop_on_signals(stop: &Stop) {
    let stop = stop.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = async {
            match signal(SignalKind::terminate()) {
                Ok(mut term) => term.recv().await,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => stop.request("Ctrl-C"),
            _ = terminate => stop.request("SIGTERM"),
        }
    });
}

/// Refuses (exit 3, nothing applied) when a file the plan read changed while it was shown:
/// the playbook, a template or SQL file, a file a step writes.
fn refuse_if_drifted(plan: &Plan, playbook: &Playbook) -> Result<()> {
    let changed = plan::drifted(&plan.inputs, &playbook.workdir);
    if changed.is_empty() {
        return Ok(());
    }
    Err(Error::refused(
        changed.join("\n"),
        Some("nothing was applied; run the command again to see the plan as things are now".into()),
    ))
}

async fn resume(cli: &Cli, force_unlock: bool) -> Result<u8> {
    if !cli.vars.is_empty() {
        return Err(Error::Usage(
            "`resume` runs with the --var values the run started with (its journal keeps them); to change them, roll the run back and apply again".into(),
        ));
    }
    let mut reporter = Reporter::new(cli.format);
    let _lock = take_lock(cli, force_unlock, &mut reporter)?;
    let runs = journal::list(&cli.state_dir)?;
    let Some(last) = runs.into_iter().last() else {
        return Err(Error::refused(
            format!("there is no run to resume in `{}`", cli.state_dir.display()),
            None,
        ));
    };
    let state = last.readable()?;
    if let Some(status) = state.status.filter(|s| *s != RunStatus::Paused) {
        return Err(Error::refused(
            format!(
                "the last run, {}, has nothing to resume: it {}",
                state.id(),
                status.as_str()
            ),
            None,
        ));
    }
    let header = &state.header;
    let playbook = playbook::load(&header.playbook, &header.vars, Some(&header.run))?;
    let lent = Lent::default();
    let plan = plan_of(&playbook, true, &lent).await?;
    // The playbook may be named by another path now (resume runs from anywhere): match it by role.
    let same = |old: &fingerprint::Input, new: &fingerprint::Input| {
        old.role == new.role
            && old.sha256 == new.sha256
            && (old.role == fingerprint::InputRole::Playbook || old.path == new.path)
    };
    let changed: Vec<String> = header
        .inputs
        .iter()
        .filter(|old| !playbook.inputs.iter().any(|new| same(old, new)))
        .map(|old| format!("`{}`", old.path))
        .collect();
    if !changed.is_empty() || playbook.inputs.len() != header.inputs.len() {
        return Err(Error::refused(
            format!(
                "cannot resume run {}: changed since it started: {}",
                state.id(),
                changed.join(", ")
            ),
            Some(
                "put the files back as they were, or roll the run back with `runner rollback`"
                    .to_string(),
            ),
        ));
    }
    if !confirm(
        cli,
        &format!("resume run {} of `{}`?", state.id(), playbook.name),
    )? {
        errln!("nothing resumed");
        return Ok(exit_code::REFUSED);
    }
    refuse_if_drifted(&plan, &playbook)?;
    let mut sink = reopen(&state, &mut reporter, playbook.secrets.clone())?.alerting(&playbook);
    let undos = redacting(state.pending_undos()?, &mut sink);
    let resumed = Resumed {
        succeeded: state.succeeded.clone(),
        prepared: state.prepared.clone(),
        figures: state.figures.clone(),
        undos,
    };
    stop_on_signals(&lent.stop);
    let mut run = Run {
        playbook: &playbook,
        plan: &plan,
        dir: &state.dir,
        sink,
        lent: &lent,
    };
    let status = engine::execute(&mut run, Some(&resumed)).await?;
    report::leave_report(&state.dir, &playbook.secrets, cli.format);
    Ok(exit_for(status))
}

async fn rollback(cli: &Cli, id: Option<&str>, force_unlock: bool) -> Result<u8> {
    let mut reporter = Reporter::new(cli.format);
    let _lock = take_lock(cli, force_unlock, &mut reporter)?;
    let state = pick_run(&cli.state_dir, id)?;
    if state.status == Some(RunStatus::RolledBack) {
        return Err(Error::refused(
            format!("run {} is already rolled back", state.id()),
            None,
        ));
    }
    let pending = state.pending_undos()?;
    let changed = crate::steps::files::changed_notes(pending.iter().map(|(_, undo, _)| undo))
        .map_err(Error::io("cannot read the files to restore"))?;
    for note in changed {
        reporter.note(&note);
    }
    if !confirm(
        cli,
        &format!("roll back {} step(s) of run {}?", pending.len(), state.id()),
    )? {
        errln!("nothing rolled back");
        return Ok(exit_code::REFUSED);
    }
    let mut emitter = reopen(&state, &mut reporter, Default::default())?;
    let undos = redacting(pending, &mut emitter);
    let started = std::time::Instant::now();
    let ok = engine::roll_back(
        &mut emitter,
        &state.header.workdir,
        &undos,
        &Lent::default(),
    )
    .await?;
    let status = if ok {
        RunStatus::RolledBack
    } else {
        RunStatus::RollbackFailed
    };
    emitter.emit(Event::RunFinished {
        status,
        duration_ms: started.elapsed().as_millis() as u64,
    })?;
    report::leave_report(&state.dir, &run_secrets(&state), cli.format);
    Ok(if ok {
        exit_code::SUCCESS
    } else {
        exit_code::ROLLBACK_FAILED
    })
}

/// A run's undo records not carried out yet (newest first), the secrets their sealed records
/// hold added to what `emitter` redacts.
fn redacting(
    pending: Vec<(String, crate::steps::Undo, Vec<String>)>,
    emitter: &mut Emitter<'_>,
) -> Vec<(String, crate::steps::Undo)> {
    pending
        .into_iter()
        .map(|(step, undo, secrets)| {
            emitter.also_redact(&secrets);
            (step, undo)
        })
        .collect()
}

/// The journal of an earlier run, opened to append to (its torn tail mended, and said so).
fn reopen<'r>(
    state: &RunState,
    reporter: &'r mut Reporter,
    secrets: crate::secrets::Secrets,
) -> Result<Emitter<'r>> {
    let (journal, note) = Journal::reopen(state)?;
    let mut emitter = Emitter::new(journal, reporter, secrets);
    if let Some(message) = note {
        emitter.emit(Event::Warning { message })?;
    }
    Ok(emitter)
}

fn pick_run(state_dir: &Path, id: Option<&str>) -> Result<RunState> {
    find_run(journal::list(state_dir)?, state_dir, id)?.readable()
}

/// The run named, or the last one.
fn find_run(
    runs: Vec<journal::Listed>,
    state_dir: &Path,
    id: Option<&str>,
) -> Result<journal::Listed> {
    let found = match id {
        Some(id) => runs.into_iter().find(|r| r.id() == id),
        None => runs.into_iter().last(),
    };
    found.ok_or_else(|| match id {
        Some(id) => Error::Usage(format!(
            "there is no run `{id}` in `{}`",
            state_dir.display()
        )),
        None => Error::refused(
            format!("there is no run in `{}`", state_dir.display()),
            None,
        ),
    })
}

fn status(state_dir: &Path, id: Option<&str>, format: Format) -> Result<u8> {
    let runs = journal::list(state_dir)?;
    let describe = |r: &RunState| r.status.map_or("unfinished", RunStatus::as_str);
    if format == Format::Json {
        let list: Vec<_> = runs
            .iter()
            .map(|listed| match listed {
                journal::Listed::Run(r) => serde_json::json!({
                    "run_id": r.id(), "playbook": r.header.name, "phase": r.header.run.phase,
                    "started_at": r.header.run.started_at, "status": describe(r),
                    "succeeded_steps": r.succeeded.len(),
                }),
                journal::Listed::Damaged { id, why } => serde_json::json!({
                    "run_id": id, "status": "damaged", "error": why,
                }),
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&list).expect("serializes")
        );
        return Ok(exit_code::SUCCESS);
    }
    if runs.is_empty() {
        outln!("no runs in `{}`", state_dir.display());
        return Ok(exit_code::SUCCESS);
    }
    for listed in &runs {
        match listed {
            journal::Listed::Run(r) => outln!(
                "{}  {:<20} {:<18} {:<16} {} step(s) ok",
                r.id(),
                r.header.name,
                r.header.run.phase,
                describe(r),
                r.succeeded.len()
            ),
            journal::Listed::Damaged { id, why } => outln!("{id}  damaged: {why}"),
        }
    }
    let chosen = match find_run(runs, state_dir, id)? {
        journal::Listed::Run(chosen) => chosen,
        journal::Listed::Damaged { id, why } => {
            outln!("\nrun {id}: damaged: {why}");
            return Ok(exit_code::SUCCESS);
        }
    };
    outln!("\nrun {} ({}):", chosen.id(), describe(&chosen));
    for record in &chosen.records {
        let line = match &record.event {
            Event::StepSucceeded { step, summary, .. } => format!("ok      {step}: {summary}"),
            Event::StepFailed { step, error, .. } => format!(
                "failed  {step}: {}",
                error.lines().next().unwrap_or_default()
            ),
            Event::StepSkipped { step, .. } => format!("skipped {step}"),
            Event::StepRolledBack { step, summary, .. } => format!("undone  {step}: {summary}"),
            Event::StepRollbackFailed { step, error } => format!("ROLLBACK FAILED {step}: {error}"),
            _ => continue,
        };
        outln!("  {}  {line}", record.at);
    }
    Ok(exit_code::SUCCESS)
}

/// The secrets of a run's playbook, when they can still be resolved (else none: its journal is
/// redacted already).
fn run_secrets(state: &RunState) -> crate::secrets::Secrets {
    let h = &state.header;
    playbook::load(&h.playbook, &h.vars, Some(&h.run))
        .map_or_else(|_| Default::default(), |p| p.secrets)
}

fn show_report(
    state_dir: &Path,
    id: Option<&str>,
    out: Option<&Path>,
    format: Format,
) -> Result<u8> {
    let state = pick_run(state_dir, id)?;
    let text = report::run_report(&state, &run_secrets(&state), format)?;
    match out {
        Some(path) => std::fs::write(path, text)
            .map_err(Error::io(format!("cannot write `{}`", path.display())))?,
        None => out!("{text}"),
    }
    Ok(exit_code::SUCCESS)
}
