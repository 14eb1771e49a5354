//! `compose_up` and `compose_down`: the services of a rendered compose file, created, replaced
//! or stopped through the Docker API, in dependency order, with compose's labels so that
//! `docker-compose ps` shows them. Before any change the current container of each service is
//! journaled; a replaced or stopped container is kept (stopped, renamed) so that rollback puts
//! the very same container back. A stack `docker-compose up` started is adopted: its containers
//! found by compose's labels, each left alone when its config is what runner would create
//! (adopt.rs), its volumes used as they are.

mod adopt;
mod compare;
pub(crate) mod dotenv;
mod engine;
pub(crate) mod interpolate;
pub(crate) mod model;
mod wait;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::time::Duration;

use tokio::time::Instant;

use serde::{Deserialize, Serialize};
use toml::Spanned;

pub(crate) use self::adopt::Live;
use self::model::Project;
use super::docker_build::{Recipe, Tags, build};
use super::{Intent, StepCx, StepError, Undo};
use crate::check::Checker;
use crate::context::Lent;
use crate::diagnostic::{Problem, Source};
use crate::docker::{self, describe};
use crate::steps::Observed;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    /// The compose file, relative to the workdir.
    file: Spanned<String>,
    /// Where `${VAR}` values come from (default: `.env` beside the compose file).
    env_file: Option<Spanned<String>>,
    /// The compose project (default: the `name:` of the file, else its folder's name).
    project: Option<Spanned<String>>,
    /// The services to act on (default: all of them, for compose_up).
    services: Option<Spanned<Vec<String>>>,
    /// How long each service may take to become healthy (default 2m).
    wait: Option<Spanned<String>>,
    /// The compose profiles to enable (default: `COMPOSE_PROFILES` of the env file, else of
    /// runner's environment).
    profiles: Option<Spanned<Vec<String>>>,
}

#[derive(Debug)]
pub(crate) struct Compose {
    file: String,
    env_file: String,
    project: Option<String>,
    services: Vec<String>,
    wait: Duration,
    profiles: Option<Vec<String>>,
}

/// The container each service had before the step, for rollback.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Containers {
    wait_ms: u64,
    services: Vec<Before>,
    /// The images the tags of services with `build:` named before, as `docker_build` keeps
    /// them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    images: Option<Tags>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Before {
    service: String,
    container: String,
    previous: Option<Previous>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Previous {
    id: String,
    running: bool,
    /// Its name, when it is not the service's `container` (docker compose v2 names it
    /// `<project>-<service>-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

impl Compose {
    pub(crate) fn validate(raw: Raw, cx: &mut Checker<'_>, down: bool) -> Option<Self> {
        let file = cx.file_path(&raw.file)?;
        let env_file = match &raw.env_file {
            Some(f) => cx.file_path(f)?,
            None => match file.rsplit_once('/') {
                Some((dir, _)) => format!("{dir}/.env"),
                None => ".env".into(),
            },
        };
        let project = match &raw.project {
            Some(p) => Some(cx.text(p)?),
            None => None,
        };
        let wait = match &raw.wait {
            Some(w) => cx.duration(w)?,
            None => Duration::from_secs(120),
        };
        let services = raw
            .services
            .as_ref()
            .map(|s| s.get_ref().clone())
            .unwrap_or_default();
        if down && services.is_empty() {
            cx.problem(
                raw.file.span(),
                "compose_down needs the `services` to stop",
                "name them: services = [\"app\"]",
            );
            return None;
        }
        let compose = Compose {
            file,
            env_file,
            project,
            services,
            wait,
            profiles: raw.profiles.map(Spanned::into_inner),
        };
        compose.check(cx, raw.file.span());
        Some(compose)
    }

    /// Reads the compose file at validate time, as it will be when the step runs (rendered by
    /// an earlier template step, or on disk); one that does not exist yet is checked when the
    /// plan is made. A YAML or interpolation error points into the file (or into its env file);
    /// the keys runner ignores are warnings. A file that holds a secret is not quoted: its
    /// problems give the line and column.
    fn check(&self, cx: &mut Checker<'_>, field: Range<usize>) {
        let Some(text) = cx.planned_file(&self.file) else {
            return;
        };
        let dotenv = cx.planned_file(&self.env_file);
        // Its warnings come again with the project's, below.
        let vars = match self.vars(dotenv.as_deref(), &mut Vec::new()) {
            Ok(vars) => vars,
            Err(e) => {
                let dotenv = dotenv.unwrap_or_default();
                let at = point(&dotenv, e.offset);
                let p = pointed(
                    cx,
                    &self.env_file,
                    &dotenv,
                    at,
                    format!("`{}`: {e}", self.env_file),
                );
                return cx.push(p);
            }
        };
        let mut value: serde_yaml::Value = match serde_yaml::from_str(&text) {
            Ok(value) => value,
            Err(e) => {
                let at = e
                    .location()
                    .map_or(0, |l| offset(&text, l.line(), l.column()));
                let at = point(&text, at);
                let p = pointed(
                    cx,
                    &self.file,
                    &text,
                    at,
                    format!("`{}` is not valid YAML: {e}", self.file),
                );
                return cx.push(p);
            }
        };
        if let Err(e) = interpolate::tree(&mut value, &vars) {
            let at = match text.find(&e.template) {
                Some(i) => i..i + e.template.len(),
                None => point(&text, 0),
            };
            let p = pointed(cx, &self.file, &text, at, format!("`{}`: {e}", self.file));
            return cx.push(p);
        }
        match self.load(
            text.as_bytes(),
            dotenv.as_deref().map(str::as_bytes),
            cx.workdir(),
        ) {
            Ok((project, _)) => {
                for w in project.warnings {
                    cx.warn(w);
                }
                for (name, service) in &project.services {
                    if let Some(special) = service.special_env_file() {
                        let why = format!("service `{name}`: {special}");
                        cx.problem(field.clone(), why, "this compose file");
                    }
                }
            }
            Err(why) => {
                let why = cx.redact(&why);
                cx.problem(field, why, "this compose file");
            }
        }
    }

    pub(crate) fn observes(&self) -> Vec<&str> {
        vec![self.file.as_str(), self.env_file.as_str()]
    }

    /// The interpolation variables: the env file's, read as compose reads a project `.env`
    /// (only from it: runner does not read its own environment into containers).
    fn vars(
        &self,
        dotenv: Option<&str>,
        warnings: &mut Vec<String>,
    ) -> Result<HashMap<String, String>, dotenv::Error> {
        let Some(text) = dotenv else {
            return Ok(HashMap::new());
        };
        let mut found = Vec::new();
        let vars = dotenv::read(text, &|_| None, &mut found)?;
        warnings.extend(
            found
                .into_iter()
                .map(|w| format!("`{}`: {w}", self.env_file)),
        );
        Ok(vars)
    }

    /// The project, its interpolation variables, and the selected services checked.
    fn load(
        &self,
        text: &[u8],
        dotenv: Option<&[u8]>,
        workdir: &std::path::Path,
    ) -> Result<(Project, HashMap<String, String>), String> {
        let utf8 = |bytes, name: &str| {
            std::str::from_utf8(bytes).map_err(|_| format!("`{name}` is not UTF-8"))
        };
        let text = utf8(text, &self.file)?;
        let dotenv = dotenv.map(|d| utf8(d, &self.env_file)).transpose()?;
        let mut warnings = Vec::new();
        let vars = self
            .vars(dotenv, &mut warnings)
            .map_err(|e| format!("`{}`: {e}", self.env_file))?;
        let profiles = match &self.profiles {
            Some(p) => p.clone(),
            None => vars
                .get("COMPOSE_PROFILES")
                .cloned()
                .or_else(|| std::env::var("COMPOSE_PROFILES").ok())
                .map(|p| p.split(',').map(|p| p.trim().to_string()).collect())
                .unwrap_or_default(),
        };
        let selection = model::Selection {
            profiles: &profiles,
            named: &self.services,
        };
        let mut project = model::load(
            &self.file,
            text,
            &vars,
            self.project.as_deref(),
            workdir,
            &selection,
        )?;
        for w in &project.warnings {
            warnings.push(format!("`{}`: {w}", self.file));
        }
        project.warnings = warnings;
        for s in &self.services {
            if !project.services.contains_key(s) {
                return Err(format!("`{}` has no service `{s}`", self.file));
            }
        }
        Ok((project, vars))
    }

    /// The selected services, each after those it depends on.
    fn order(&self, project: &Project) -> Result<Vec<String>, String> {
        let selected: BTreeSet<&str> = if self.services.is_empty() {
            project.services.keys().map(String::as_str).collect()
        } else {
            self.services.iter().map(String::as_str).collect()
        };
        let mut order: Vec<String> = Vec::new();
        let mut pending: Vec<&str> = selected.iter().copied().collect();
        while !pending.is_empty() {
            let before = pending.len();
            pending.retain(|name| {
                let ready = project.services[*name]
                    .depends_on
                    .keys()
                    .all(|d| !selected.contains(d.as_str()) || order.contains(d));
                if ready {
                    order.push(name.to_string());
                }
                !ready
            });
            if pending.len() == before {
                return Err(format!(
                    "services {} depend on each other in a cycle",
                    pending.join(", ")
                ));
            }
        }
        Ok(order)
    }

    /// The plan of the step; `live` is what `observe` read of the project's containers (with
    /// `--refresh`), from which it says which containers it adopts and which it replaces.
    pub(crate) fn plan(
        &self,
        observed: &Observed,
        live: Option<&Result<adopt::Live, String>>,
        workdir: &std::path::Path,
        down: bool,
    ) -> Intent {
        let Some(text) = observed.current(&self.file) else {
            let mut intent = Intent::new(format!("act on the services of `{}`", self.file), true);
            intent.refusal = Some(format!(
                "`{}` does not exist and no earlier step writes it",
                self.file
            ));
            return intent;
        };
        let loaded = self
            .load(text, observed.current(&self.env_file), workdir)
            .and_then(|(p, _)| Ok((self.order(&p)?, p)));
        let (order, project) = match loaded {
            Ok(loaded) => loaded,
            Err(why) => {
                let mut intent =
                    Intent::new(format!("act on the services of `{}`", self.file), true);
                intent.refusal = Some(why);
                return intent;
            }
        };
        let mut action = if down {
            format!(
                "stop {} of project `{}` (containers kept for rollback)",
                order.iter().rev().cloned().collect::<Vec<_>>().join(", "),
                project.name
            )
        } else {
            format!(
                "create or replace, in order, {} of project `{}` from `{}`; wait up to {} for each to be healthy",
                order.join(", "),
                project.name,
                self.file,
                humantime::format_duration(self.wait)
            )
        };
        if !down {
            for name in &order {
                let service = &project.services[name];
                if let Some(b) = &service.more.build {
                    action.push_str(&format!(
                        "; build `{}` from `{}` for {name}",
                        service.image,
                        b.context.join(&b.dockerfile).display()
                    ));
                }
            }
        }
        match live {
            Some(Ok(live)) if !down => {
                for line in order
                    .iter()
                    .filter_map(|n| adopt::foresee(live, &project, n))
                {
                    action.push_str(&format!("; {line}"));
                }
            }
            Some(Err(why)) if !down => action.push_str(&format!("; containers not read: {why}")),
            _ => {}
        }
        for (name, profiles) in &project.disabled {
            action.push_str(&format!(
                "; {name} is left out (profiles {} not enabled)",
                profiles.join(", ")
            ));
        }
        for w in &project.warnings {
            action.push_str(&format!("; warning: {w}"));
        }
        let mut intent = Intent::new(action, true);
        intent.compose = Some(model::view::yaml(&project));
        intent
    }

    /// Reads the project's containers and their images, for the plan (`--refresh`). The project
    /// is named as the file on disk names it: a file rendered by an earlier step is not
    /// written yet.
    pub(crate) async fn observe(
        &self,
        workdir: &std::path::Path,
        lent: &Lent,
    ) -> Result<adopt::Live, String> {
        let file = crate::fs::read_optional(&workdir.join(&self.file))
            .ok()
            .flatten();
        let dotenv = crate::fs::read_optional(&workdir.join(&self.env_file))
            .ok()
            .flatten();
        let loaded = file.and_then(|f| self.load(&f, dotenv.as_deref(), workdir).ok());
        let name = match (loaded, &self.project) {
            (Some((project, _)), _) => project.name,
            (None, Some(p)) => model::normalize(p),
            (None, None) => {
                let dir = workdir.join(&self.file);
                let dir = dir.parent().and_then(|d| d.file_name()).unwrap_or_default();
                model::normalize(&dir.to_string_lossy())
            }
        };
        adopt::observe(&name, lent).await
    }

    /// Records the container each selected service has now.
    pub(crate) async fn prepare(&self, cx: &StepCx<'_>) -> Result<Undo, StepError> {
        let (project, _) = self.read(cx)?;
        let order = self.order(&project)?;
        let docker = cx
            .lent
            .docker()
            .await
            .map_err(|e| format!("services {}: {e}", order.join(", ")))?;
        let mut services = Vec::new();
        for name in order {
            let service = &project.services[&name];
            let container = service.container_name.clone();
            let found = adopt::locate(&docker, &project.name, service).await?;
            let previous = found.map(|c| Previous {
                name: Some(adopt::name(&c).to_string()).filter(|n| *n != container),
                id: c.id.unwrap_or_default(),
                running: c.state.and_then(|s| s.running).unwrap_or(false),
            });
            services.push(Before {
                service: name,
                container,
                previous,
            });
        }
        let built: Vec<String> = project
            .services
            .values()
            .filter(|s| s.more.build.is_some() && services.iter().any(|b| b.service == s.name))
            .map(|s| s.image.clone())
            .collect();
        let images = if built.is_empty() {
            None
        } else {
            Some(Tags::now(&docker, &built).await?)
        };
        Ok(Undo::Containers(Containers {
            wait_ms: self.wait.as_millis() as u64,
            services,
            images,
        }))
    }

    fn read(&self, cx: &StepCx<'_>) -> Result<(Project, HashMap<String, String>), StepError> {
        let text = std::fs::read(cx.resolve(&self.file))
            .map_err(StepError::io(format!("cannot read `{}`", self.file)))?;
        let dotenv = crate::fs::read_optional(&cx.resolve(&self.env_file))
            .map_err(StepError::io(format!("cannot read `{}`", self.env_file)))?;
        Ok(self.load(&text, dotenv.as_deref(), cx.workdir)?)
    }

    pub(crate) async fn up(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let (mut project, vars) = self.read(cx)?;
        for (name, service) in project.services.iter_mut() {
            let found = service
                .read_env_files(&vars)
                .map_err(|e| format!("service `{name}`: {e}"))?;
            project
                .warnings
                .extend(found.into_iter().map(|w| format!("service `{name}`: {w}")));
        }
        for w in &project.warnings {
            cx.warn(w.clone());
        }
        let order = self.order(&project)?;
        let docker = cx.lent.docker().await?;
        let mut outcomes: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for name in &order {
            let service = &project.services[name];
            let in_service = |e: String| format!("service `{name}`: {e}");
            for (dep, condition) in &service.depends_on {
                let Some(dependency) = project.services.get(dep) else {
                    continue; // `required: false`, and not in the file
                };
                if !order.contains(dep) {
                    let found = adopt::locate(&docker, &project.name, dependency).await?;
                    let container = found
                        .as_ref()
                        .map_or(&*dependency.container_name, adopt::name);
                    let deadline = Instant::now() + self.wait;
                    let completes = condition == "service_completed_successfully";
                    wait::wait_ready(&docker, dep, container, deadline, completes, cx)
                        .await
                        .map_err(|e| {
                            in_service(format!(
                                "it depends on `{dep}` ({condition}), which is not ready: {e}"
                            ))
                        })?;
                }
            }
            engine::ensure_resources(&docker, &project, service)
                .await
                .map_err(in_service)?;
            let image = match &service.more.build {
                Some(b) => {
                    let context = b.context.to_string_lossy();
                    let recipe = Recipe {
                        dir: b.context.clone(),
                        context: &context,
                        dockerfile: &b.dockerfile,
                        tags: std::slice::from_ref(&service.image),
                        args: &b.args,
                        target: b.target.as_deref(),
                        labels: &b.labels,
                        platform: service.more.platform.as_deref(),
                    };
                    cx.say(format!("{name}: building {}", service.image));
                    build(&docker, cx, &recipe)
                        .await
                        .map_err(|e| in_service(e.message))?
                }
                None => docker::ensure_image(&docker, &service.image, |line| cx.say(line))
                    .await
                    .map_err(in_service)?,
            };
            let hash = engine::config_hash(service, &image);
            let existing = adopt::locate(&docker, &project.name, service).await?;
            let deadline = Instant::now() + self.wait;
            let mut container = service.container_name.clone();
            let outcome = match existing {
                None => {
                    engine::create(&docker, &project, service, &hash, &[])
                        .await
                        .map_err(in_service)?;
                    "created"
                }
                Some(c) => {
                    let image = docker.inspect_image(&image).await.map_err(|e| {
                        in_service(format!("cannot inspect image `{image}`: {}", describe(&e)))
                    })?;
                    let old = adopt::name(&c).to_string();
                    let id = c.id.clone().unwrap_or_default();
                    match adopt::judge(&project, service, Some(&image), &c, true) {
                        adopt::Verdict::Unchanged => {
                            container = old;
                            "unchanged"
                        }
                        adopt::Verdict::Adopted => {
                            cx.say(format!(
                                "{name}: adopting `{old}` ({}): its config is what runner would create",
                                docker::short(&id)
                            ));
                            container = old;
                            "adopted"
                        }
                        adopt::Verdict::Replaced(why) => {
                            cx.say(format!(
                                "{name}: stopping `{old}` ({}) to replace it: differs in {}",
                                docker::short(&id),
                                why.join(", ")
                            ));
                            engine::keep(&docker, &id, &old, service.stop_grace_seconds)
                                .await
                                .map_err(in_service)?;
                            let inherited = engine::inherited(&c, service);
                            engine::create(&docker, &project, service, &hash, &inherited)
                                .await
                                .map_err(in_service)?;
                            "replaced"
                        }
                    }
                }
            };
            let completes = project.services.values().any(|s| {
                s.depends_on.get(name).map(String::as_str) == Some("service_completed_successfully")
            });
            wait::wait_ready(&docker, name, &container, deadline, completes, cx).await?;
            cx.say(format!("{name}: {outcome}, ready"));
            outcomes.entry(outcome).or_default().push(name.clone());
        }
        Ok(outcomes
            .iter()
            .map(|(outcome, names)| format!("{outcome}: {}", names.join(", ")))
            .collect::<Vec<_>>()
            .join("; "))
    }

    pub(crate) async fn down(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let (project, _) = self.read(cx)?;
        let docker = cx.lent.docker().await?;
        let mut stopped = Vec::new();
        for name in self.order(&project)?.iter().rev() {
            let service = &project.services[name];
            if let Some(c) = adopt::locate(&docker, &project.name, service).await? {
                let id = c.id.clone().unwrap_or_default();
                let old = adopt::name(&c);
                engine::keep(&docker, &id, old, service.stop_grace_seconds).await?;
                cx.say(format!(
                    "{name}: stopped, kept as {}",
                    engine::kept_name(old, &id)
                ));
                stopped.push(name.clone());
            }
        }
        Ok(format!(
            "stopped {}",
            if stopped.is_empty() {
                "nothing".into()
            } else {
                stopped.join(", ")
            }
        ))
    }
}

/// A problem at `at` of a file that is not the playbook; without the file's text when it holds
/// a secret.
fn pointed(cx: &Checker<'_>, name: &str, text: &str, at: Range<usize>, message: String) -> Problem {
    if cx.holds_secret(text) {
        let (line, column) = line_column(text, at.start);
        return Problem::bare(format!(
            "`{name}`, line {line}, column {column}: {}",
            cx.redact(&message)
        ));
    }
    Source::new(name, text).problem(at, message, "here")
}

/// The byte offset of a 1-based line and column (in characters), clamped to the text.
fn offset(text: &str, line: usize, column: usize) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum();
    let start = start.min(text.len());
    text[start..]
        .char_indices()
        .nth(column.saturating_sub(1))
        .map_or(text.len(), |(i, _)| start + i)
}

/// The character at a byte offset (the last one when the offset is at the end).
fn point(text: &str, at: usize) -> Range<usize> {
    match text[at..].chars().next() {
        Some(c) => at..at + c.len_utf8(),
        None => text[..at]
            .char_indices()
            .last()
            .map_or(at..at, |(i, _)| i..at),
    }
}

/// The 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

impl Containers {
    /// Puts each service's previous container back (in reverse order), removing what the step
    /// created in its place.
    pub(crate) async fn restore(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let docker = cx.lent.docker().await?;
        let mut restarted = Vec::new();
        for before in self.services.iter().rev() {
            let current = engine::find(&docker, &before.container).await?;
            let current_id = current.and_then(|c| c.id).unwrap_or_default();
            let previous_id = before.previous.as_ref().map(|p| p.id.as_str());
            if !current_id.is_empty() && Some(current_id.as_str()) != previous_id {
                engine::remove(&docker, &current_id).await?;
            }
            let Some(previous) = &before.previous else {
                continue;
            };
            let kept = engine::find(&docker, &previous.id).await?.ok_or_else(|| {
                format!(
                    "the previous container of `{}` ({}) no longer exists; it cannot be put back",
                    before.service,
                    docker::short(&previous.id)
                )
            })?;
            let name = previous.name.as_ref().unwrap_or(&before.container);
            if adopt::name(&kept) != name {
                let options =
                    bollard::query_parameters::RenameContainerOptions { name: name.clone() };
                docker
                    .rename_container(&previous.id, options)
                    .await
                    .map_err(|e| {
                        format!(
                            "cannot rename {} back to `{name}`: {}",
                            docker::short(&previous.id),
                            describe(&e)
                        )
                    })?;
            }
            let running = kept.state.and_then(|s| s.running).unwrap_or(false);
            if previous.running && !running {
                engine::start(&docker, &previous.id, docker::short(&previous.id)).await?;
                restarted.push(before.service.clone());
            }
        }
        if let Some(images) = &self.images {
            images.restore(cx).await?;
        }
        let deadline = Instant::now() + Duration::from_millis(self.wait_ms);
        for before in &self.services {
            if restarted.contains(&before.service) {
                let previous = before.previous.as_ref().and_then(|p| p.name.as_ref());
                wait::wait_ready(
                    &docker,
                    &before.service,
                    previous.unwrap_or(&before.container),
                    deadline,
                    false,
                    cx,
                )
                .await?;
            }
        }
        Ok(format!(
            "put back the containers of {} service(s); restarted {}",
            self.services.len(),
            if restarted.is_empty() {
                "none".into()
            } else {
                restarted.join(", ")
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_env_file_and_env_files_are_read_by_composes_rules() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("app.env"),
            "TITLE=\"$WEB_TITLE\"\nURL=http://${HOST:-localhost}/$TAG\nKEEP=from file\nLOST=$NOPE\n",
        )
        .unwrap();
        let step = Compose {
            file: "docker-compose.yml".into(),
            env_file: ".env".into(),
            project: Some("p".into()),
            services: vec!["app".into()],
            profiles: None,
            wait: Duration::from_secs(1),
        };
        let compose = "services:\n  app:\n    image: relay:${TAG}\n    env_file: app.env\n    environment: { KEEP: mine }\n";
        let dotenv = "\u{feff}WEB_TITLE=Claude Relay Service # the relay's own .env.example\nexport TAG='1.0'\n";
        let (mut project, vars) = step
            .load(compose.as_bytes(), Some(dotenv.as_bytes()), dir.path())
            .unwrap();
        assert_eq!(project.warnings, Vec::<String>::new());
        let app = project.services.get_mut("app").unwrap();
        assert_eq!(app.image, "relay:1.0");
        let warnings = app.read_env_files(&vars).unwrap();
        assert_eq!(app.env["TITLE"], "Claude Relay Service");
        assert_eq!(app.env["URL"], "http://localhost/1.0");
        assert_eq!(app.env["KEEP"], "mine");
        assert_eq!(app.env["LOST"], "");
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].ends_with(
                "app.env`: line 4: The \"NOPE\" variable is not set. Defaulting to a blank string."
            ),
            "{warnings:?}"
        );
        let err = step
            .load(compose.as_bytes(), Some(b"A=1\nB='open\n"), dir.path())
            .unwrap_err();
        assert_eq!(err, "`.env`: line 2: unterminated quoted value");
    }
}
