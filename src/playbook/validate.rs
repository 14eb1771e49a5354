//! From the raw document to a typed [`Playbook`]: every problem is collected, none stops the
//! check early, and templates are rendered here so that an undefined name is found before apply.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::model::{OnFailure, Playbook, Rollback, Step};
use super::raw::{self, Common, Document, Header, RollbackCommand, Secret, StepParts};
use crate::diagnostic::{Problem, Source};
use crate::notify::Notify;
use crate::plan::{Input, InputRole};
use crate::secrets::Secrets;
use crate::steps::{
    Action, DefaultRollback, KINDS, backup, compose, docker_build, docker_prune, env, exec,
    http_check, lb_switch, monitor, notify, pg_backup, pg_wait, preflight, redis_backup, sql,
    template, verify,
};
use crate::template::{Renderer, RunIdentity};

/// A scalar TOML value given where text is expected (`ENABLE_POSTGRES = false`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Scalar {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

/// Lends the kinds what they need to check and render their fields, and collects problems.
pub(crate) struct Checker<'a> {
    source: &'a Source,
    renderer: &'a Renderer,
    secrets: &'a Secrets,
    workdir: &'a Path,
    problems: Vec<Problem>,
    files: HashMap<String, Option<Arc<str>>>,
    inputs: Vec<Input>,
    /// The `[notify]` service name, when the playbook has that section.
    notify_service: Option<String>,
    /// Whether the `[notify]` section has a webhook.
    alerts_on: bool,
    /// The valid steps checked so far, for a step that refers to an earlier one.
    steps: Vec<Step>,
    /// What a step found that is not wrong but worth saying (compose keys runner ignores).
    warnings: Vec<String>,
}

impl Checker<'_> {
    pub(crate) fn problem(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) {
        self.problems
            .push(self.source.problem(span, message, label));
    }

    /// A problem that points into another file (a compose file the playbook names).
    pub(crate) fn push(&mut self, problem: Problem) {
        self.problems.push(problem);
    }

    pub(crate) fn warn(&mut self, warning: String) {
        self.warnings.push(warning);
    }

    /// `text` with every secret value replaced.
    pub(crate) fn redact(&self, text: &str) -> String {
        self.secrets.redact(text)
    }

    /// What the file at `path` holds when the step being checked runs: what the last earlier
    /// `template` step renders there (with the keys later `env` steps set), else the file as
    /// it is now (with those keys); None when there is nothing there yet.
    pub(crate) fn planned_file(&self, path: &str) -> Option<String> {
        let full = self.workdir.join(path);
        // Only a regular file: reading a FIFO would wait forever.
        let regular = std::fs::metadata(&full).is_ok_and(|m| m.is_file());
        let mut text = regular
            .then(|| std::fs::read_to_string(&full).ok())
            .flatten();
        for step in &self.steps {
            match &step.action {
                Action::Template(t) if t.dest == path => text = Some(t.content.clone()),
                Action::Env(e) if e.file == path => {
                    // A file the step cannot edit is refused when the plan is made.
                    text = env::edit(text.as_deref().unwrap_or_default(), &e.set).ok()
                }
                _ => {}
            }
        }
        text
    }

    /// The valid step `id` before the one being checked.
    pub(crate) fn earlier_step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// A templated string field, rendered.
    pub(crate) fn text(&mut self, field: &Spanned<String>) -> Option<String> {
        self.renderer
            .render_field(self.source, field.span(), field.get_ref())
            .map_err(|p| self.problems.push(p))
            .ok()
    }

    /// A templated URL field, rendered and parsed by `parse`; returns the URL and its parse.
    pub(crate) fn url<T>(
        &mut self,
        field: &Spanned<String>,
        parse: fn(&str) -> Result<T, String>,
    ) -> Option<(String, T)> {
        let url = self.text(field)?;
        match parse(&url) {
            Ok(target) => Some((url, target)),
            Err(why) => {
                self.problem(field.span(), why, "this URL");
                None
            }
        }
    }

    pub(crate) fn scalar(&mut self, field: &Spanned<Scalar>) -> Option<String> {
        match field.get_ref() {
            Scalar::Text(t) => self.text(&Spanned::new(field.span(), t.clone())),
            Scalar::Integer(i) => Some(i.to_string()),
            Scalar::Float(f) => Some(f.to_string()),
            Scalar::Bool(b) => Some(b.to_string()),
        }
    }

    /// A templated path to a file runner reads or writes: not empty, and, where something is
    /// there already, a regular file (reading a FIFO would wait forever; a directory or a
    /// device is never what a step means).
    pub(crate) fn file_path(&mut self, field: &Spanned<String>) -> Option<String> {
        let path = self.text(field)?;
        if path.trim().is_empty() {
            self.problem(field.span(), "the path is empty", "name a file");
            return None;
        }
        self.no_secret_in_path(&path, field.span())?;
        match crate::steps::files::special(&self.workdir.join(&path)) {
            None => Some(path),
            Some(what) => {
                self.problem(
                    field.span(),
                    format!("`{path}` is {what}, not a regular file"),
                    "runner reads and writes regular files only",
                );
                None
            }
        }
    }

    /// Refuses a path rendered from a secret: paths are shown in plans and kept in journals.
    fn no_secret_in_path(&mut self, path: &str, span: Range<usize>) -> Option<()> {
        if !self.holds_secret(path) {
            return Some(());
        }
        self.problem(
            span,
            "the path holds a secret",
            "paths are shown in plans and kept in journals and saved plans: name the file without a secret",
        );
        None
    }

    /// Whether `text` holds a secret value (a file of it is then created private).
    pub(crate) fn holds_secret(&self, text: &str) -> bool {
        self.secrets.contains_secret(text)
    }

    /// A file mode written in octal, such as "0600".
    pub(crate) fn mode(&mut self, field: &Spanned<String>) -> Option<u32> {
        match u32::from_str_radix(field.get_ref(), 8) {
            Ok(mode) if mode <= 0o7777 => Some(mode),
            _ => {
                self.problem(
                    field.span(),
                    format!("`{}` is not a file mode", field.get_ref()),
                    "write it in octal, like \"0600\"",
                );
                None
            }
        }
    }

    /// A templated duration field, rendered and parsed.
    pub(crate) fn duration(&mut self, field: &Spanned<String>) -> Option<Duration> {
        let text = self.text(field)?;
        humantime::parse_duration(&text)
            .map_err(|e| {
                self.problem(
                    field.span(),
                    format!("`{text}` is not a duration: {e}"),
                    "write it like \"500ms\", \"2s\" or \"5m\"",
                )
            })
            .ok()
    }

    /// A regular expression field.
    pub(crate) fn regex(&mut self, field: &Spanned<String>) -> Option<regex::Regex> {
        regex::Regex::new(field.get_ref())
            .map_err(|e| {
                self.problem(
                    field.span(),
                    format!("not a regular expression: {e}"),
                    "this pattern",
                )
            })
            .ok()
    }

    /// What an inconclusive gate does: `"pause"` (true) or `"rollback"` (false).
    pub(crate) fn pause_or_rollback(
        &mut self,
        field: &Option<Spanned<String>>,
        pause_by_default: bool,
    ) -> Option<bool> {
        match field {
            None => Some(pause_by_default),
            Some(w) if w.get_ref() == "pause" => Some(true),
            Some(w) if w.get_ref() == "rollback" => Some(false),
            Some(w) => {
                self.problem(
                    w.span(),
                    format!("`{}` is not pause or rollback", w.get_ref()),
                    "pause | rollback",
                );
                None
            }
        }
    }

    /// The service name of the playbook's `[notify]` section, if it has one.
    pub(crate) fn notify_service(&self) -> Option<&str> {
        self.notify_service.as_deref()
    }

    /// Whether the playbook's `[notify]` section delivers alerts.
    pub(crate) fn alerts_on(&self) -> bool {
        self.alerts_on
    }

    pub(crate) fn workdir(&self) -> &Path {
        self.workdir
    }

    /// Reads (once) a file the playbook depends on, fingerprinted for the plan; a problem
    /// points at `span` if it cannot be read.
    pub(crate) fn read_input(&mut self, path: &str, span: Range<usize>) -> Option<Arc<str>> {
        if !self.files.contains_key(path) {
            if self.no_secret_in_path(path, span.clone()).is_none() {
                self.files.insert(path.to_string(), None);
                return None;
            }
            if let Some(what) = crate::steps::files::special(&self.workdir.join(path)) {
                self.problem(
                    span,
                    format!("`{path}` is {what}, not a regular file"),
                    "runner reads regular files only",
                );
                self.files.insert(path.to_string(), None);
                return None;
            }
            let loaded = match std::fs::read_to_string(self.workdir.join(path)) {
                Ok(text) => {
                    self.inputs
                        .push(Input::new(path, InputRole::File, Some(text.as_bytes())));
                    Some(Arc::from(text))
                }
                Err(e) => {
                    self.problem(
                        span,
                        format!("file `{path}` cannot be read: {e}"),
                        "this file",
                    );
                    None
                }
            };
            self.files.insert(path.to_string(), loaded);
        }
        self.files.get(path)?.clone()
    }

    /// Renders a template file; problems point into the template.
    pub(crate) fn render_template_file(
        &mut self,
        path: &str,
        span: Range<usize>,
    ) -> Option<String> {
        let text = self.read_input(path, span)?;
        let source = Source::new(path, text);
        self.renderer
            .render_file(&source, &format!("template `{path}`"))
            .map_err(|p| self.problems.push(p))
            .ok()
    }

    /// The files a templated glob pattern matches, relative to the workdir, in name order.
    pub(crate) fn glob(&mut self, pattern: &Spanned<String>) -> Option<Vec<String>> {
        let text = self.text(pattern)?;
        let full = self.workdir.join(&text);
        let matches: Vec<String> = match glob::glob(&full.to_string_lossy()) {
            Ok(paths) => paths
                .filter_map(Result::ok)
                .filter(|p| p.is_file())
                .map(|p| {
                    // Relative to the workdir when inside it; a path outside stays absolute.
                    p.strip_prefix(self.workdir)
                        .unwrap_or(&p)
                        .to_string_lossy()
                        .into_owned()
                })
                .collect(),
            Err(e) => {
                self.problem(
                    pattern.span(),
                    format!("`{text}` is not a valid pattern: {e}"),
                    "this pattern",
                );
                return None;
            }
        };
        if matches.is_empty() {
            self.problem(
                pattern.span(),
                format!("no file matches `{text}`"),
                "this pattern",
            );
            return None;
        }
        Some(matches)
    }

    /// Whether `program` can be started: on PATH, or a file relative to `dir` or the workdir.
    pub(crate) fn program_exists(&self, program: &str, dir: Option<&str>) -> bool {
        let cwd = dir
            .map(|d| self.workdir.join(d))
            .unwrap_or_else(|| self.workdir.to_path_buf());
        which::which_in(program, std::env::var_os("PATH"), cwd).is_ok()
    }
}

pub(super) fn validate(
    path: &Path,
    source: &Source,
    document: Document<'_>,
    overrides: &BTreeMap<String, String>,
    run: Option<&RunIdentity>,
) -> Result<Playbook, Vec<Problem>> {
    let mut problems = Vec::new();
    let header: Option<Header> = document.playbook.and_then(|h| {
        raw::fields(h, source, "[playbook]")
            .map_err(|p| problems.push(p))
            .ok()
    });
    let on_failure = header.as_ref().and_then(|h| h.on_failure.as_ref()).map_or(
        OnFailure::Rollback,
        |f| match f.get_ref().as_str() {
            "rollback" => OnFailure::Rollback,
            "pause" => OnFailure::Pause,
            other => {
                problems.push(source.problem(
                    f.span(),
                    format!("on_failure `{other}` is not known"),
                    "expected \"rollback\" or \"pause\"",
                ));
                OnFailure::Rollback
            }
        },
    );
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let workdir = match header.as_ref().and_then(|h| h.workdir.as_ref()) {
        Some(w) => cwd.join(base).join(w),
        None => cwd,
    };
    let vars = vars(document.vars, overrides, source, &mut problems);
    let mut warnings = Vec::new();
    let secrets = secrets(
        document.secrets,
        source,
        &workdir,
        &mut problems,
        &mut warnings,
    );
    // A `--var` is kept in the journal's header and in a saved plan, in clear, to be used again
    // by `resume` and `apply plan.json`: a secret has no place there.
    for key in overrides
        .iter()
        .filter(|(_, value)| secrets.contains_secret(value))
        .map(|(key, _)| key)
    {
        problems.push(
            Problem::bare(format!("--var {key}: the value holds a secret"))
                .with_help("a --var is kept in clear in the journal and in saved plans; declare it in [secrets]"),
        );
    }
    let phase = header
        .as_ref()
        .map(|h| h.phase.clone().unwrap_or_else(|| h.name.get_ref().clone()))
        .unwrap_or_default();
    // The run's identity takes the playbook's phase.
    let run = match run {
        Some(run) => RunIdentity {
            phase: phase.clone(),
            ..run.clone()
        },
        None => RunIdentity::planned(&phase),
    };
    let renderer = Renderer::new(&vars, &secrets, &run);
    let mut checker = Checker {
        source,
        renderer: &renderer,
        secrets: &secrets,
        workdir: &workdir,
        problems,
        files: HashMap::new(),
        inputs: vec![Input::new(
            &path.display().to_string(),
            InputRole::Playbook,
            Some(source.text().as_bytes()),
        )],
        notify_service: None,
        alerts_on: false,
        steps: Vec::new(),
        warnings,
    };
    let notify = document.notify.and_then(|n| {
        raw::fields(n, source, "[notify]")
            .map_err(|p| checker.problems.push(p))
            .ok()
            .and_then(|raw| Notify::validate(raw, &mut checker))
    });
    checker.notify_service = notify.as_ref().map(|n| n.service.clone());
    checker.alerts_on = notify.as_ref().is_some_and(|n| n.webhook.is_some());
    let mut seen: HashMap<String, Range<usize>> = HashMap::new();
    for value in document.steps {
        if let Some(step) = step(value, &mut checker, &mut seen) {
            checker.steps.push(step);
        }
    }
    if checker.steps.is_empty() && checker.problems.is_empty() {
        checker.problem(0..0, "the playbook has no steps", "add [[steps]] tables");
    }
    let Checker {
        problems,
        inputs,
        steps,
        warnings,
        ..
    } = checker;
    if !problems.is_empty() {
        return Err(problems);
    }
    let header = header.expect("a missing header is a problem");
    Ok(Playbook {
        path: path.display().to_string(),
        name: header.name.into_inner(),
        phase,
        run,
        description: header.description,
        on_failure,
        workdir,
        overrides: overrides.clone(),
        secrets,
        inputs,
        notify,
        steps,
        warnings,
    })
}

fn vars(
    value: Option<Spanned<DeValue<'_>>>,
    overrides: &BTreeMap<String, String>,
    source: &Source,
    problems: &mut Vec<Problem>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut vars: serde_json::Map<String, serde_json::Value> = value
        .and_then(|v| {
            raw::fields(v, source, "[vars]")
                .map_err(|p| problems.push(p))
                .ok()
        })
        .unwrap_or_default();
    for (key, value) in overrides {
        if vars.contains_key(key) {
            vars.insert(key.clone(), serde_json::Value::String(value.clone()));
        } else {
            let known: Vec<&str> = vars.keys().map(String::as_str).collect();
            problems.push(
                Problem::bare(format!("--var {key}: there is no `{key}` in [vars]"))
                    .with_help(format!("the variables are: {}", known.join(", "))),
            );
        }
    }
    vars
}

fn secrets(
    value: Option<Spanned<DeValue<'_>>>,
    source: &Source,
    workdir: &Path,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<String>,
) -> Secrets {
    let mut secrets = Secrets::default();
    let Some(value) = value else { return secrets };
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        problems.push(source.problem(span, "[secrets] must be a table", "here"));
        return secrets;
    };
    for (name, spec) in table {
        let (name_span, name) = (name.span(), name.into_inner().into_owned());
        let Ok(spec) = raw::fields::<Secret>(spec, source, &format!("secret `{name}`"))
            .map_err(|p| problems.push(p))
        else {
            continue;
        };
        let optional = spec.optional.unwrap_or(false);
        match secret_value(&name, &spec, workdir, warnings) {
            // Unset and optional: empty, which a webhook field takes for "no alerts".
            Err(_) if optional => secrets.insert(name.clone(), String::new()),
            Ok(value) if value.is_empty() && optional => secrets.insert(name.clone(), value),
            Ok(value) if value.chars().count() >= crate::secrets::MIN_LEN => {
                secrets.insert(name.clone(), value)
            }
            Ok(value) if value.is_empty() => problems.push(source.problem(
                name_span,
                format!("secret `{name}` is empty"),
                "this secret",
            )),
            Ok(value) => problems.push(source.problem(
                name_span,
                format!(
                    "secret `{name}` is {} character(s) long: a secret needs at least {}, since a shorter value also occurs in ordinary text, where redacting it would both mangle the output and reveal the secret",
                    value.chars().count(),
                    crate::secrets::MIN_LEN
                ),
                "this secret",
            )),
            Err(why) => problems.push(source.problem(
                name_span,
                format!("secret `{name}` is missing: {why}"),
                "this secret",
            )),
        }
        if !secrets.values().contains_key(&name) {
            // Declared but unresolved: reported once above, not again by every template using it.
            secrets.insert(name.clone(), format!("<missing secret {name}>"));
        }
    }
    secrets
}

/// The environment variable first, then the env file: a secret store's environment overrides
/// the file a demo generated.
fn secret_value(
    name: &str,
    spec: &raw::Secret,
    workdir: &Path,
    warnings: &mut Vec<String>,
) -> Result<String, String> {
    if spec.env.is_none() && spec.file.is_none() {
        return Err("give `env`, `file` or both (the environment is read first)".into());
    }
    let mut why = Vec::new();
    if let Some(var) = &spec.env {
        match std::env::var(var) {
            Ok(value) => return Ok(value),
            Err(_) => why.push(format!("environment variable `{var}` is not set")),
        }
    }
    if let Some(file) = &spec.file {
        let key = spec.key.as_deref().unwrap_or(name);
        match read_env_file(workdir, file, key, warnings) {
            Ok(value) => return Ok(value),
            Err(e) => why.push(format!("`{key}` in `{file}`: {e}")),
        }
    }
    Err(why.join(", and "))
}

/// A value of an env file, read as Compose reads `.env` files; an error names the line, never
/// its text (which may hold a secret). Compose's warnings (a `$NAME` that is not set, so that
/// the value lost it) go to `warnings`.
fn read_env_file(
    workdir: &Path,
    file: &str,
    key: &str,
    warnings: &mut Vec<String>,
) -> Result<String, String> {
    let path = workdir.join(file);
    if let Some(what) = crate::steps::files::special(&path) {
        return Err(format!("`{file}` is {what}, not a regular file"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut found = Vec::new();
    let mut vars =
        compose::dotenv::read(&text, &|_| None, &mut found).map_err(|e| e.to_string())?;
    warnings.extend(
        found
            .into_iter()
            .map(|w| format!("secrets file `{file}`: {w}")),
    );
    vars.remove(key)
        .ok_or_else(|| "not set in that file".into())
}

fn step(
    value: Spanned<DeValue<'_>>,
    cx: &mut Checker<'_>,
    seen: &mut HashMap<String, Range<usize>>,
) -> Option<Step> {
    let StepParts {
        common,
        rollback: rollback_field,
        kind: kind_fields,
    } = match raw::split_step(value) {
        Ok(parts) => parts,
        Err(span) => {
            cx.problem(
                span,
                "a step must be a table",
                "write each step as [[steps]]",
            );
            return None;
        }
    };
    let common: Common = raw::fields(common, cx.source, "step")
        .map_err(|p| cx.problems.push(p))
        .ok()?;
    let id = common.id.get_ref().clone();
    let id_ok = check_id(&common.id, cx, seen);
    let what = format!("step `{id}`");
    let kind = common.kind.get_ref().as_str();
    let action = match kind {
        "backup" => parsed(kind_fields, cx, &what)
            .and_then(|r| backup::Backup::validate(r, cx))
            .map(Action::Backup),
        "template" => parsed(kind_fields, cx, &what)
            .and_then(|r| template::Template::validate(r, cx))
            .map(Action::Template),
        "env" => parsed(kind_fields, cx, &what)
            .and_then(|r| env::Env::validate(r, cx))
            .map(Action::Env),
        "exec" => parsed(kind_fields, cx, &what)
            .and_then(|r| exec::Exec::validate(r, cx))
            .map(Action::Exec),
        "sql" => parsed(kind_fields, cx, &what)
            .and_then(|r| sql::Sql::validate(r, cx))
            .map(Action::Sql),
        "pg_wait" => parsed(kind_fields, cx, &what)
            .and_then(|r| pg_wait::PgWait::validate(r, cx))
            .map(Action::PgWait),
        "pg_backup" => parsed(kind_fields, cx, &what)
            .and_then(|r| pg_backup::PgBackup::validate(r, cx))
            .map(Action::PgBackup),
        "redis_backup" => parsed(kind_fields, cx, &what)
            .and_then(|r| redis_backup::RedisBackup::validate(r, cx))
            .map(Action::RedisBackup),
        "preflight" => parsed(kind_fields, cx, &what)
            .and_then(|r| preflight::Preflight::validate(r, cx))
            .map(Action::Preflight),
        "docker_build" => parsed(kind_fields, cx, &what)
            .and_then(|r| docker_build::DockerBuild::validate(r, cx))
            .map(Action::DockerBuild),
        "compose_up" => parsed(kind_fields, cx, &what)
            .and_then(|r| compose::Compose::validate(r, cx, false))
            .map(Action::ComposeUp),
        "compose_down" => parsed(kind_fields, cx, &what)
            .and_then(|r| compose::Compose::validate(r, cx, true))
            .map(Action::ComposeDown),
        "lb_switch" => parsed(kind_fields, cx, &what)
            .and_then(|r| lb_switch::LbSwitch::validate(r, cx))
            .map(Action::LbSwitch),
        "docker_prune" => parsed(kind_fields, cx, &what)
            .and_then(|r| docker_prune::DockerPrune::validate(r, cx))
            .map(Action::DockerPrune),
        "http_check" => parsed(kind_fields, cx, &what)
            .and_then(|r| http_check::HttpCheck::validate(r, cx))
            .map(Action::HttpCheck),
        "notify" => parsed(kind_fields, cx, &what)
            .and_then(|r| notify::Notify::validate(r, cx))
            .map(Action::Notify),
        "monitor" => parsed(kind_fields, cx, &what)
            .and_then(|r| monitor::Monitor::validate(r, cx))
            .map(Action::Monitor),
        "verify" => parsed(kind_fields, cx, &what)
            .and_then(|r| verify::Verify::validate(r, cx))
            .map(|v| Action::Verify(Box::new(v))),
        "migrate" => parsed(kind_fields, cx, &what)
            .and_then(|r| crate::migrate::Migrate::validate(r, cx))
            .map(|m| Action::Migrate(Box::new(m))),
        other => {
            cx.problems.push(
                cx.source
                    .problem(
                        common.kind.span(),
                        format!("unknown step kind `{other}`"),
                        "not a step kind",
                    )
                    .with_help(format!("the kinds are: {}", KINDS.join(", "))),
            );
            None
        }
    };
    let timeout = common.timeout.as_ref().map(|t| cx.duration(t));
    let backoff = common.backoff.as_ref().map(|b| cx.duration(b));
    let rollback = rollback(&common, rollback_field, action.as_ref(), cx);
    let action = action?;
    let rollback = rollback?;
    if !id_ok {
        return None;
    }
    Some(Step {
        id,
        description: common.description,
        timeout: timeout.flatten(),
        retries: common.retries.unwrap_or(0),
        backoff: backoff.flatten().unwrap_or(Duration::from_secs(1)),
        rollback,
        action,
    })
}

fn parsed<T: serde::de::DeserializeOwned>(
    fields: Spanned<DeValue<'_>>,
    cx: &mut Checker<'_>,
    what: &str,
) -> Option<T> {
    raw::fields(fields, cx.source, what)
        .map_err(|p| cx.problems.push(p))
        .ok()
}

fn check_id(
    id: &Spanned<String>,
    cx: &mut Checker<'_>,
    seen: &mut HashMap<String, Range<usize>>,
) -> bool {
    let text = id.get_ref();
    let well_formed = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if !well_formed {
        cx.problem(
            id.span(),
            format!("step id `{text}` is not valid"),
            "use letters, digits, `-` and `_`",
        );
        return false;
    }
    if let Some(first) = seen.get(text) {
        let first_line = cx.source.text()[..first.start].lines().count().max(1);
        cx.problems.push(
            cx.source
                .problem(id.span(), format!("duplicate step id `{text}`"), "used again here")
                .with_help(format!("it is first used on line {first_line}; step ids must be unique because the journal keys on them")),
        );
        return false;
    }
    seen.insert(text.clone(), id.span());
    true
}

fn rollback(
    common: &Common,
    field: Option<Spanned<DeValue<'_>>>,
    action: Option<&Action>,
    cx: &mut Checker<'_>,
) -> Option<Rollback> {
    let reason = common.reason.as_ref();
    let Some(field) = field else {
        if let Some(reason) = reason {
            cx.problem(
                reason.span(),
                "`reason` is only for `rollback = \"none\"`",
                "no rollback = \"none\" here",
            );
            return None;
        }
        if matches!(
            action.map(Action::default_rollback),
            Some(DefaultRollback::Required)
        ) {
            cx.problems.push(
                cx.source
                    .problem(common.id.span(), format!("step `{}` has no rollback decision", common.id.get_ref()), "this step")
                    .with_help("an exec step needs rollback = { command = [...] }, or rollback = \"none\" with reason = \"...\""),
            );
            return None;
        }
        return Some(Rollback::Default);
    };
    let span = field.span();
    match field.get_ref() {
        DeValue::String(word) if word == "none" => match reason {
            Some(reason) if !reason.get_ref().trim().is_empty() => Some(Rollback::None {
                reason: reason.get_ref().clone(),
            }),
            _ => {
                cx.problem(
                    span,
                    "rollback = \"none\" needs a `reason`",
                    "say why this step cannot be undone",
                );
                None
            }
        },
        DeValue::Table(_) => {
            let c: RollbackCommand = parsed(field, cx, "rollback")?;
            exec::Command::validate(&c.command, c.dir.as_ref(), c.env.as_ref(), cx)
                .map(Rollback::Command)
        }
        _ => {
            cx.problem(
                span,
                "rollback must be \"none\" or { command = [...] }",
                "not a rollback",
            );
            None
        }
    }
}
