//! A stack that runner did not start (`docker-compose up`, v1 or v2): its containers found by
//! compose's labels, and each judged against what runner would create. Compose's config hash
//! is computed over compose's own serialization of the service, which runner cannot
//! reproduce, so a container runner did not make is judged by the fields of its config that
//! runner sets (`compare`); one runner made is judged by runner's config hash.

use std::collections::{BTreeMap, HashMap};

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, ImageInspect};
use bollard::query_parameters::ListContainersOptions;

use super::compare::compare;
use super::engine::{self, CONFIG_HASH, MADE_BY, PROJECT, SERVICE};
use super::model::{Project, Service};
use crate::context::Lent;
use crate::docker::{describe, short};

/// The containers of a compose project as planning found them, and the images they were
/// created from, under the name they were created from.
#[derive(Clone, Debug, Default)]
pub(crate) struct Live {
    containers: Vec<ContainerInspectResponse>,
    images: BTreeMap<String, ImageInspect>,
}

/// What `compose_up` does with a service's current container.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Runner made it from this very service and image: left alone.
    Unchanged,
    /// Made by compose (or by runner before it marked its containers), with the config runner
    /// would create: left alone, and rollback leaves it alone too.
    Adopted,
    /// Replaced, for these reasons (the fields that differ).
    Replaced(Vec<String>),
}

/// The containers of `project` (of one service, if given), inspected; without one-off
/// (`docker-compose run`) containers and those runner keeps for rollback.
pub(crate) async fn containers(
    docker: &Docker,
    project: &str,
    service: Option<&str>,
) -> Result<Vec<ContainerInspectResponse>, String> {
    let mut labels = vec![format!("{PROJECT}={project}")];
    if let Some(s) = service {
        labels.push(format!("{SERVICE}={s}"));
    }
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([("label".to_string(), labels)])),
        ..Default::default()
    };
    let listed = docker.list_containers(Some(options)).await.map_err(|e| {
        format!(
            "cannot list the containers of project `{project}`: {}",
            describe(&e)
        )
    })?;
    let mut out = Vec::new();
    for id in listed.into_iter().filter_map(|c| c.id) {
        // One removed since the listing is passed over.
        if let Some(c) = engine::find(docker, &id).await? {
            let oneoff = label(&c, "com.docker.compose.oneoff") == Some("True");
            if !oneoff && !engine::is_kept(name(&c)) {
                out.push(c);
            }
        }
    }
    Ok(out)
}

/// The current container of `service`: the one of its name, else the first that compose's
/// labels give the service (docker compose v2 names it `<project>-<service>-1`).
pub(crate) async fn locate(
    docker: &Docker,
    project: &str,
    service: &Service,
) -> Result<Option<ContainerInspectResponse>, String> {
    if let Some(c) = engine::find(docker, &service.container_name).await? {
        return Ok(Some(c));
    }
    let found = containers(docker, project, Some(&service.name)).await?;
    Ok(pick(&found, service).cloned())
}

fn pick<'a>(
    containers: &'a [ContainerInspectResponse],
    service: &Service,
) -> Option<&'a ContainerInspectResponse> {
    let number = |c: &ContainerInspectResponse| {
        label(c, "com.docker.compose.container-number").and_then(|n| n.parse::<u32>().ok())
    };
    containers
        .iter()
        .find(|c| name(c) == service.container_name)
        .or_else(|| {
            containers
                .iter()
                .filter(|c| label(c, SERVICE) == Some(service.name.as_str()))
                .min_by_key(|c| number(c))
        })
}

/// The container's name, without the engine's leading `/`.
pub(crate) fn name(c: &ContainerInspectResponse) -> &str {
    c.name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/')
}

fn label<'a>(c: &'a ContainerInspectResponse, key: &str) -> Option<&'a str> {
    let labels = c.config.as_ref()?.labels.as_ref()?;
    labels.get(key).map(String::as_str)
}

/// Reads the containers of the project and their images, for the plan.
pub(crate) async fn observe(project: &str, lent: &Lent) -> Result<Live, String> {
    let docker = lent.docker().await?;
    let containers = containers(&docker, project, None).await?;
    let mut images = BTreeMap::new();
    for c in &containers {
        let Some(image) = c.config.as_ref().and_then(|c| c.image.clone()) else {
            continue;
        };
        if let Ok(inspected) = docker.inspect_image(&image).await {
            images.insert(image, inspected);
        }
    }
    Ok(Live { containers, images })
}

/// What the plan says of each service's container: `None` when there is none (it is created).
pub(crate) fn foresee(live: &Live, project: &Project, key: &str) -> Option<String> {
    let service = &project.services[key];
    let c = pick(&live.containers, service)?;
    let image = live.images.get(&service.image);
    let env_read = service.env_files.is_empty();
    let shown = format!("`{}` ({})", name(c), short(c.id.as_deref().unwrap_or("")));
    let hedge = if env_read {
        ""
    } else {
        " (its env_file is read when the step runs)"
    };
    let built = if service.more.build.is_some() {
        " if the build gives the image it runs"
    } else {
        ""
    };
    let made = label(c, MADE_BY).is_some();
    Some(match judge(project, service, image, c, env_read) {
        Verdict::Unchanged => format!("{key}: keeps {shown}, unchanged{built}{hedge}"),
        Verdict::Adopted if made => {
            format!("{key}: keeps {shown} if runner's config hash is unchanged{hedge}")
        }
        Verdict::Adopted => format!(
            "{key}: adopts {shown}, made by {}{built}: its config is what runner would create{hedge}",
            maker(c)
        ),
        Verdict::Replaced(why) => format!(
            "{key}: replaces {shown}, made by {}: differs in {}{hedge}",
            maker(c),
            why.join(", ")
        ),
    })
}

/// Who made the container, as its labels say.
fn maker(c: &ContainerInspectResponse) -> String {
    if label(c, MADE_BY).is_some() {
        return "runner".into();
    }
    match label(c, "com.docker.compose.version") {
        Some(v) => format!("docker-compose {v}"),
        None => "another tool".into(),
    }
}

/// Judges a service's current container. `image` is the service's image now (`None`: not
/// known); without `env_read` the service's `env_file`s are not read yet, so only the
/// variables of its `environment` are compared.
pub(crate) fn judge(
    project: &Project,
    service: &Service,
    image: Option<&ImageInspect>,
    container: &ContainerInspectResponse,
    env_read: bool,
) -> Verdict {
    let running = container
        .state
        .as_ref()
        .and_then(|s| s.running)
        .unwrap_or(false);
    let made = label(container, MADE_BY).is_some();
    let hash = image
        .and_then(|i| i.id.as_deref())
        .map(|id| engine::config_hash(service, id));
    if made
        && running
        && env_read
        && hash.is_some()
        && label(container, CONFIG_HASH) == hash.as_deref()
    {
        return Verdict::Unchanged;
    }
    let mut why = compare(project, service, image, container, env_read);
    if !running {
        why.push("state (it is not running)".into());
    }
    if made && env_read && why.is_empty() {
        why.push("config hash".into());
    }
    if why.is_empty() {
        Verdict::Adopted
    } else {
        Verdict::Replaced(why)
    }
}

#[cfg(test)]
#[path = "adopt_tests.rs"]
mod tests;
