//! From the raw document to a typed [`Playbook`]: every problem is collected, none stops the
//! check early, and templates are rendered here so that an undefined name is found before apply.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::DeValue;

use super::model::{OnFailure, Playbook};
use super::raw::{self, Common, Document, Header, RollbackCommand, Secret, StepParts};
use crate::check::Checker;
use crate::diagnostic::{Problem, Source};
use crate::fingerprint::{Input, InputRole};
use crate::notify::Notify;
use crate::secrets::Secrets;
use crate::steps::{
    Action, DefaultRollback, Kind, Rollback, Step, backup, compose, docker_build, docker_prune,
    env, exec, http_check, lb_switch, monitor, notify, pg_backup, pg_wait, preflight, redis_backup,
    sql, template, verify,
};
use crate::template::{Renderer, RunIdentity};

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
        planned: HashMap::new(),
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
    let mut steps: Vec<Step> = Vec::new();
    for value in document.steps {
        if let Some(step) = step(value, &mut checker, &mut seen, &steps) {
            plan_file(&mut checker, &step.action);
            steps.push(step);
        }
    }
    if steps.is_empty() && checker.problems.is_empty() {
        checker.problem(0..0, "the playbook has no steps", "add [[steps]] tables");
    }
    let Checker {
        problems,
        inputs,
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
    if let Some(what) = crate::fs::special(&path) {
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

/// Notes what a step leaves in the file it writes, for later steps that read it (compose
/// files): what a `template` step renders, the keys an `env` step sets.
fn plan_file(cx: &mut Checker<'_>, action: &Action) {
    match action {
        Action::Template(t) => {
            cx.planned.insert(t.dest.clone(), Some(t.content.clone()));
        }
        Action::Env(e) => {
            // A file the step cannot edit is refused when the plan is made.
            let edited = env::edit(
                cx.planned_file(&e.file).as_deref().unwrap_or_default(),
                &e.set,
            )
            .ok();
            cx.planned.insert(e.file.clone(), edited);
        }
        Action::Backup(_)
        | Action::Exec(_)
        | Action::Sql(_)
        | Action::PgWait(_)
        | Action::PgBackup(_)
        | Action::RedisBackup(_)
        | Action::Preflight(_)
        | Action::DockerBuild(_)
        | Action::ComposeUp(_)
        | Action::ComposeDown(_)
        | Action::LbSwitch(_)
        | Action::DockerPrune(_)
        | Action::HttpCheck(_)
        | Action::Notify(_)
        | Action::Monitor(_)
        | Action::Verify(_)
        | Action::Migrate(_) => {}
    }
}

fn step(
    value: Spanned<DeValue<'_>>,
    cx: &mut Checker<'_>,
    seen: &mut HashMap<String, Range<usize>>,
    earlier: &[Step],
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
    let action = match Kind::parse(common.kind.get_ref()) {
        Some(kind) => action(kind, kind_fields, cx, &what, earlier),
        None => {
            let names: Vec<&str> = Kind::all().map(Kind::name).collect();
            cx.problems.push(
                cx.source
                    .problem(
                        common.kind.span(),
                        format!("unknown step kind `{}`", common.kind.get_ref()),
                        "not a step kind",
                    )
                    .with_help(format!("the kinds are: {}", names.join(", "))),
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

/// The step's kind-specific fields, parsed and checked by its kind.
fn action(
    kind: Kind,
    fields: Spanned<DeValue<'_>>,
    cx: &mut Checker<'_>,
    what: &str,
    earlier: &[Step],
) -> Option<Action> {
    match kind {
        Kind::Backup => parsed(fields, cx, what)
            .and_then(|r| backup::Backup::validate(r, cx))
            .map(Action::Backup),
        Kind::Template => parsed(fields, cx, what)
            .and_then(|r| template::Template::validate(r, cx))
            .map(Action::Template),
        Kind::Env => parsed(fields, cx, what)
            .and_then(|r| env::Env::validate(r, cx))
            .map(Action::Env),
        Kind::Exec => parsed(fields, cx, what)
            .and_then(|r| exec::Exec::validate(r, cx))
            .map(Action::Exec),
        Kind::Sql => parsed(fields, cx, what)
            .and_then(|r| sql::Sql::validate(r, cx))
            .map(Action::Sql),
        Kind::PgWait => parsed(fields, cx, what)
            .and_then(|r| pg_wait::PgWait::validate(r, cx))
            .map(Action::PgWait),
        Kind::PgBackup => parsed(fields, cx, what)
            .and_then(|r| pg_backup::PgBackup::validate(r, cx))
            .map(Action::PgBackup),
        Kind::RedisBackup => parsed(fields, cx, what)
            .and_then(|r| redis_backup::RedisBackup::validate(r, cx))
            .map(Action::RedisBackup),
        Kind::Preflight => parsed(fields, cx, what)
            .and_then(|r| preflight::Preflight::validate(r, cx))
            .map(Action::Preflight),
        Kind::DockerBuild => parsed(fields, cx, what)
            .and_then(|r| docker_build::DockerBuild::validate(r, cx))
            .map(Action::DockerBuild),
        Kind::ComposeUp => parsed(fields, cx, what)
            .and_then(|r| compose::Compose::validate(r, cx, false))
            .map(Action::ComposeUp),
        Kind::ComposeDown => parsed(fields, cx, what)
            .and_then(|r| compose::Compose::validate(r, cx, true))
            .map(Action::ComposeDown),
        Kind::LbSwitch => parsed(fields, cx, what)
            .and_then(|r| lb_switch::LbSwitch::validate(r, cx))
            .map(Action::LbSwitch),
        Kind::DockerPrune => parsed(fields, cx, what)
            .and_then(|r| docker_prune::DockerPrune::validate(r, cx))
            .map(Action::DockerPrune),
        Kind::HttpCheck => parsed(fields, cx, what)
            .and_then(|r| http_check::HttpCheck::validate(r, cx))
            .map(Action::HttpCheck),
        Kind::Notify => parsed(fields, cx, what)
            .and_then(|r| notify::Notify::validate(r, cx))
            .map(Action::Notify),
        Kind::Monitor => parsed(fields, cx, what)
            .and_then(|r| monitor::Monitor::validate(r, cx))
            .map(Action::Monitor),
        Kind::Verify => parsed(fields, cx, what)
            .and_then(|r| verify::Verify::validate(r, cx, earlier))
            .map(|v| Action::Verify(Box::new(v))),
        Kind::Migrate => parsed(fields, cx, what)
            .and_then(|r| crate::migrate::Migrate::validate(r, cx))
            .map(|m| Action::Migrate(Box::new(m))),
    }
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
