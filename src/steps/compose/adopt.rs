//! A stack that runner did not start (`docker-compose up`, v1 or v2): its containers found by
//! compose's labels, and each judged against what runner would create. Compose's config hash
//! is computed over compose's own serialization of the service, which runner cannot
//! reproduce, so a container runner did not make is judged by the fields of its config that
//! runner sets (`compare`); one runner made is judged by runner's config hash.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, HealthConfig, ImageInspect, MountPointTypeEnum};
use bollard::query_parameters::ListContainersOptions;
use serde_json::{Value, json};

use super::engine::{self, CONFIG_HASH, MADE_BY, PROJECT, SERVICE};
use super::model::{Project, Service};
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
pub(crate) async fn observe(project: &str) -> Result<Live, String> {
    let docker = crate::docker::connect().await?;
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

/// The fields of the container's config that differ from what runner would create for the
/// service with `image`, each named (the image with both ids, the environment with the
/// variables that differ, never their values).
pub(crate) fn compare(
    project: &Project,
    service: &Service,
    image: Option<&ImageInspect>,
    container: &ContainerInspectResponse,
    env_read: bool,
) -> Vec<String> {
    let mut why = Vec::new();
    let runs = container.image.as_deref().unwrap_or_default();
    match image.and_then(|i| i.id.as_deref()) {
        Some(id) if id == runs => {}
        Some(id) => why.push(format!(
            "image (it runs {}, `{}` is {})",
            short(runs),
            service.image,
            short(id)
        )),
        None => why.push(format!(
            "image (it runs {}, `{}` is not known yet)",
            short(runs),
            service.image
        )),
    }
    let from_image = image.and_then(|i| i.config.as_ref());
    let config = container.config.clone().unwrap_or_default();
    let host = container.host_config.clone().unwrap_or_default();
    let env = |list: Option<&Vec<String>>| -> BTreeMap<String, String> {
        list.into_iter()
            .flatten()
            .filter(|e| !e.starts_with("affinity:")) // v1's scheduling hint on a recreate
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.clone(), String::new()),
            })
            .collect()
    };
    let mut wanted_env = env(from_image.and_then(|i| i.env.as_ref()));
    wanted_env.extend(service.env.clone());
    let mut found_env = env(config.env.as_ref());
    if !env_read {
        wanted_env.retain(|k, _| service.env.contains_key(k));
        found_env.retain(|k, _| service.env.contains_key(k));
    }
    let keys: BTreeSet<&str> = wanted_env
        .keys()
        .chain(found_env.keys())
        .filter(|k| wanted_env.get(*k) != found_env.get(*k))
        .map(String::as_str)
        .collect();
    if !keys.is_empty() {
        let keys: Vec<&str> = keys.into_iter().collect();
        why.push(format!("environment ({})", keys.join(", ")));
    }
    let image_config = from_image.cloned().unwrap_or_default();
    for (field, wanted, found) in fields(project, service, &image_config, container, &config, &host)
    {
        if wanted != found {
            why.push(field.to_string());
        }
    }
    why
}

type Field = (&'static str, Value, Value);

/// The compared fields but the image and the environment: what runner would set (the image's
/// value where the service sets none), and what the container has, normalized alike.
fn fields(
    project: &Project,
    service: &Service,
    image: &bollard::models::ImageConfig,
    container: &ContainerInspectResponse,
    config: &bollard::models::ContainerConfig,
    host: &bollard::models::HostConfig,
) -> Vec<Field> {
    let more = &service.more;
    let list = |v: Option<&Vec<String>>| v.cloned().unwrap_or_default();
    // An entrypoint of the service's own drops the image's command, as the engine does.
    let command = match (&service.command, &service.entrypoint) {
        (Some(c), _) => c.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => list(image.cmd.as_ref()),
    };
    let entrypoint = service
        .entrypoint
        .clone()
        .unwrap_or_else(|| list(image.entrypoint.as_ref()));
    let health = |h: Option<&HealthConfig>| {
        h.map(|h| {
            json!([
                h.test.clone().unwrap_or_default(),
                h.interval.unwrap_or(0),
                h.timeout.unwrap_or(0),
                h.retries.unwrap_or(0),
                h.start_period.unwrap_or(0)
            ])
        })
        .unwrap_or(Value::Null)
    };
    // The engine fills what the service leaves out from the image's healthcheck.
    let wanted_health = match (&service.healthcheck, image.healthcheck.clone()) {
        (Some(h), from_image) => {
            let i = from_image.unwrap_or_default();
            health(Some(&HealthConfig {
                test: Some(h.test.clone()).filter(|t| !t.is_empty()).or(i.test),
                interval: h.interval.or(i.interval),
                timeout: h.timeout.or(i.timeout),
                retries: h.retries.or(i.retries),
                start_period: h.start_period.or(i.start_period),
                start_interval: None,
            }))
        }
        (None, from_image) => health(from_image.as_ref()),
    };
    let mut wanted_ports: Vec<(String, String, String)> = service
        .ports
        .iter()
        .map(|p| (p.container.clone(), p.host_ip.clone(), p.host_port.clone()))
        .collect();
    wanted_ports.sort();
    let mut found_ports: Vec<(String, String, String)> = host
        .port_bindings
        .iter()
        .flatten()
        .flat_map(|(port, bindings)| {
            bindings.iter().flatten().map(move |b| {
                (
                    port.clone(),
                    b.host_ip.clone().unwrap_or_default(),
                    b.host_port.clone().unwrap_or_default(),
                )
            })
        })
        .collect();
    found_ports.sort();
    let (wanted_mounts, found_mounts) = mounts(service, container, host);
    let networks = match &more.network_mode {
        Some(mode) => (json!(mode), json!(host.network_mode)),
        None => networks(project, service, container),
    };
    let restart = |name: &str, max: i64| json!([if name.is_empty() { "no" } else { name }, max]);
    let found_restart = host.restart_policy.clone().unwrap_or_default();
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let labels: BTreeMap<&String, Option<&String>> = service
        .labels
        .keys()
        .map(|k| (k, config.labels.as_ref().and_then(|l| l.get(k))))
        .collect();
    let own = |value: &Option<String>, from_image: &Option<String>| {
        value
            .clone()
            .or_else(|| from_image.clone())
            .unwrap_or_default()
    };
    let mut fields: Vec<Field> = vec![
        ("command", json!(command), json!(list(config.cmd.as_ref()))),
        (
            "entrypoint",
            json!(entrypoint),
            json!(list(config.entrypoint.as_ref())),
        ),
        (
            "healthcheck",
            wanted_health,
            health(config.healthcheck.as_ref()),
        ),
        ("ports", json!(wanted_ports), json!(found_ports)),
        ("mounts", wanted_mounts, found_mounts),
        ("networks", networks.0, networks.1),
        (
            "restart",
            match &service.restart {
                Some((name, max)) => restart(name, *max),
                None => restart("", 0),
            },
            restart(
                &found_restart
                    .name
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                found_restart.maximum_retry_count.unwrap_or(0),
            ),
        ),
        (
            "labels",
            json!(
                service
                    .labels
                    .iter()
                    .map(|(k, v)| (k, Some(v)))
                    .collect::<BTreeMap<_, _>>()
            ),
            json!(labels),
        ),
        (
            "user",
            json!(own(&service.user, &image.user)),
            json!(config.user.clone().unwrap_or_default()),
        ),
        (
            "working_dir",
            json!(own(&service.working_dir, &image.working_dir)),
            json!(config.working_dir.clone().unwrap_or_default()),
        ),
        (
            "privileged",
            json!(more.privileged),
            json!(host.privileged.unwrap_or(false)),
        ),
        (
            "read_only",
            json!(more.read_only),
            json!(host.readonly_rootfs.unwrap_or(false)),
        ),
        (
            "cap_add",
            json!(sorted(more.cap_add.clone())),
            json!(sorted(list(host.cap_add.as_ref()))),
        ),
        (
            "cap_drop",
            json!(sorted(more.cap_drop.clone())),
            json!(sorted(list(host.cap_drop.as_ref()))),
        ),
        (
            "init",
            json!(more.init.unwrap_or(false)),
            json!(host.init.unwrap_or(false)),
        ),
        (
            "cpus",
            json!(more.nano_cpus.unwrap_or(0)),
            json!(host.nano_cpus.unwrap_or(0)),
        ),
        (
            "mem_limit",
            json!(more.memory.unwrap_or(0)),
            json!(host.memory.unwrap_or(0)),
        ),
        (
            "extra_hosts",
            json!(sorted(more.extra_hosts.clone())),
            json!(sorted(list(host.extra_hosts.as_ref()))),
        ),
        (
            "sysctls",
            json!(more.sysctls),
            json!(
                host.sysctls
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect::<BTreeMap<_, _>>()
            ),
        ),
        (
            "ulimits",
            json!(
                more.ulimits
                    .iter()
                    .map(|(n, (s, h))| (n.clone(), (*s, *h)))
                    .collect::<BTreeMap<_, _>>()
            ),
            json!(
                host.ulimits
                    .iter()
                    .flatten()
                    .map(|u| (
                        u.name.clone().unwrap_or_default(),
                        (u.soft.unwrap_or(0), u.hard.unwrap_or(0))
                    ))
                    .collect::<BTreeMap<_, _>>()
            ),
        ),
        (
            "tmpfs",
            json!(more.tmpfs),
            json!(
                host.tmpfs
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect::<BTreeMap<_, _>>()
            ),
        ),
        ("tty", json!(more.tty), json!(config.tty.unwrap_or(false))),
        (
            "stdin_open",
            json!(more.stdin_open),
            json!(config.open_stdin.unwrap_or(false)),
        ),
    ];
    if let Some(hostname) = &service.hostname {
        fields.push(("hostname", json!(hostname), json!(config.hostname)));
    }
    fields
}

/// Binds as `source:target:mode` (compose v1 writes `rw` where runner writes no mode), and the
/// anonymous volumes by their target. A bind of an anonymous volume at a target the service does
/// not mount is compose carrying a replaced container's volume over, and is not a difference.
fn mounts(
    service: &Service,
    container: &ContainerInspectResponse,
    host: &bollard::models::HostConfig,
) -> (Value, Value) {
    let normal = |bind: &str| -> (String, String) {
        let mut parts = bind.splitn(3, ':');
        let source = parts.next().unwrap_or_default();
        let target = parts.next().unwrap_or_default();
        let mode = parts.next().filter(|m| !m.is_empty()).unwrap_or("rw");
        (target.to_string(), format!("{source}:{mode}"))
    };
    let mut wanted: BTreeMap<String, String> = service.binds.iter().map(|b| normal(b)).collect();
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    for bind in host.binds.iter().flatten() {
        let (target, source) = normal(bind);
        let anonymous = source
            .split(':')
            .next()
            .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        if !anonymous || wanted.contains_key(&target) {
            found.insert(target, source);
        }
    }
    let volumes: Vec<&str> = container
        .mounts
        .iter()
        .flatten()
        .filter(|m| m.typ == Some(MountPointTypeEnum::VOLUME))
        .filter_map(|m| m.destination.as_deref())
        .collect();
    for target in &service.anonymous_volumes {
        wanted.insert(target.clone(), "(anonymous volume)".into());
        if volumes.contains(&target.as_str()) && !found.contains_key(target) {
            found.insert(target.clone(), "(anonymous volume)".into());
        }
    }
    (json!(wanted), json!(found))
}

/// The networks by engine name, each with the aliases and address the service gives it (the
/// container may have more aliases: compose adds its short id).
fn networks(
    project: &Project,
    service: &Service,
    container: &ContainerInspectResponse,
) -> (Value, Value) {
    let attached = container
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.clone())
        .unwrap_or_default();
    let mut wanted = BTreeMap::new();
    let mut found = BTreeMap::new();
    for (key, aliases) in &service.networks {
        let name = project.networks[key].name.clone();
        let address = service.more.ipv4_address.get(key).cloned();
        wanted.insert(name.clone(), json!([aliases, address]));
        if let Some(endpoint) = attached.get(&name) {
            let has = endpoint.aliases.clone().unwrap_or_default();
            let kept: Vec<&String> = aliases.iter().filter(|a| has.contains(a)).collect();
            let ip = endpoint
                .ipam_config
                .as_ref()
                .and_then(|i| i.ipv4_address.clone())
                .filter(|_| address.is_some());
            found.insert(name, json!([kept, ip]));
        }
    }
    for name in attached.keys() {
        found.entry(name.clone()).or_insert(json!("attached"));
    }
    (json!(wanted), json!(found))
}

#[cfg(test)]
mod tests {
    use bollard::models::{
        ContainerConfig, ContainerState, EndpointSettings, HostConfig, ImageConfig,
        NetworkSettings, PortBinding, RestartPolicy, RestartPolicyNameEnum,
    };

    use super::*;
    use crate::steps::compose::model::{self, Selection};

    const FILE: &str = "services:\n  cache:\n    image: redis:7-alpine\n    environment: { MODE: master }\n    ports: [\"127.0.0.1:6380:6379\"]\n    volumes: [\"data:/data\", \"./redis.conf:/etc/redis.conf:ro\"]\n    restart: unless-stopped\nvolumes:\n  data:\n";

    fn project(text: &str) -> Project {
        let selection = Selection {
            profiles: &[],
            named: &[],
        };
        let workdir = std::path::Path::new("/srv");
        model::load(
            "stack/c.yml",
            text,
            &Default::default(),
            Some("p"),
            workdir,
            &selection,
        )
        .unwrap()
    }

    fn image() -> ImageInspect {
        ImageInspect {
            id: Some("sha256:aaa".into()),
            config: Some(ImageConfig {
                env: Some(vec!["PATH=/usr/bin".into()]),
                cmd: Some(vec!["redis-server".into()]),
                entrypoint: Some(vec!["docker-entrypoint.sh".into()]),
                working_dir: Some("/data".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The container docker-compose 1.29 makes of FILE, as `docker inspect` shows it, after
    /// a recreate (its `affinity:` hint, and an anonymous volume carried over).
    fn made_by_compose() -> ContainerInspectResponse {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let labels = [
            ("com.docker.compose.project", "p"),
            ("com.docker.compose.service", "cache"),
            ("com.docker.compose.version", "1.29.2"),
            ("com.docker.compose.config-hash", "0b0cea51"),
        ];
        let anonymous = "f".repeat(64);
        ContainerInspectResponse {
            id: Some("c0ffee".into()),
            name: Some("/p_cache_1".into()),
            image: Some("sha256:aaa".into()),
            state: Some(ContainerState {
                running: Some(true),
                ..Default::default()
            }),
            config: Some(ContainerConfig {
                env: Some(strings(&[
                    "MODE=master",
                    "affinity:container==1234",
                    "PATH=/usr/bin",
                ])),
                cmd: Some(strings(&["redis-server"])),
                entrypoint: Some(strings(&["docker-entrypoint.sh"])),
                working_dir: Some("/data".into()),
                user: Some(String::new()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                binds: Some(vec![
                    "/srv/stack/redis.conf:/etc/redis.conf:ro".into(),
                    "p_data:/data:rw".into(),
                    format!("{anonymous}:/extra:rw"),
                ]),
                port_bindings: Some(HashMap::from([(
                    "6379/tcp".to_string(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some("6380".into()),
                    }]),
                )])),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: Some(0),
                }),
                network_mode: Some("p_default".into()),
                ..Default::default()
            }),
            network_settings: Some(NetworkSettings {
                networks: Some(HashMap::from([(
                    "p_default".to_string(),
                    EndpointSettings {
                        aliases: Some(strings(&["c0ffee", "cache"])),
                        ..Default::default()
                    },
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn verdict(text: &str, c: &ContainerInspectResponse, image: &ImageInspect) -> Verdict {
        let project = project(text);
        judge(&project, &project.services["cache"], Some(image), c, true)
    }

    #[test]
    fn a_container_compose_made_with_the_config_runner_would_create_is_adopted() {
        assert_eq!(
            verdict(FILE, &made_by_compose(), &image()),
            Verdict::Adopted
        );
        let project = project(FILE);
        let live = Live {
            containers: vec![made_by_compose()],
            images: BTreeMap::from([("redis:7-alpine".to_string(), image())]),
        };
        assert_eq!(
            foresee(&live, &project, "cache").unwrap(),
            "cache: adopts `p_cache_1` (c0ffee), made by docker-compose 1.29.2: its config is what runner would create"
        );
    }

    #[test]
    fn each_difference_is_named_and_the_environment_by_its_variables_only() {
        let changed = FILE
            .replace("MODE: master", "MODE: replica, EXTRA: secret-value")
            .replace(":/etc/redis.conf:ro", ":/etc/redis.conf")
            .replace("unless-stopped", "always");
        let Verdict::Replaced(why) = verdict(&changed, &made_by_compose(), &image()) else {
            panic!("replaced");
        };
        assert_eq!(why, ["environment (EXTRA, MODE)", "mounts", "restart"]);
        let mut newer = image();
        newer.id = Some("sha256:bbb".into());
        let mut stopped = made_by_compose();
        stopped.state = Some(ContainerState::default());
        let Verdict::Replaced(why) = verdict(FILE, &stopped, &newer) else {
            panic!("replaced");
        };
        assert_eq!(
            why,
            [
                "image (it runs aaa, `redis:7-alpine` is bbb)",
                "state (it is not running)"
            ]
        );
    }

    #[test]
    fn a_container_runner_made_is_judged_by_runners_config_hash() {
        let project = project(FILE);
        let service = &project.services["cache"];
        let mut c = made_by_compose();
        let labels = c.config.as_mut().unwrap().labels.as_mut().unwrap();
        labels.insert(MADE_BY.into(), "runner".into());
        assert_eq!(
            judge(&project, service, Some(&image()), &c, true),
            Verdict::Replaced(vec!["config hash".into()]),
            "the same config, another hash: a key runner does not compare changed"
        );
        let labels = c.config.as_mut().unwrap().labels.as_mut().unwrap();
        labels.insert(
            CONFIG_HASH.into(),
            engine::config_hash(service, "sha256:aaa"),
        );
        assert_eq!(
            judge(&project, service, Some(&image()), &c, true),
            Verdict::Unchanged
        );
    }
}
