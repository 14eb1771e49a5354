//! What differs between a container and the one runner would create for a service: the
//! fields of its config that runner sets, each normalized alike on both sides (the image's
//! value where the service sets none, compose v1's spellings), for judging a container runner
//! did not make (adopt.rs).

use std::collections::{BTreeMap, BTreeSet};

use bollard::models::{ContainerInspectResponse, HealthConfig, ImageInspect, MountPointTypeEnum};
use serde_json::{Value, json};

use super::model::{More, Project, Service};
use crate::docker::short;

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
    ];
    if let Some(hostname) = &service.hostname {
        fields.push(("hostname", json!(hostname), json!(config.hostname)));
    }
    fields.extend(limits(more, config, host));
    fields
}

/// The privileges, limits and terminal of the container.
fn limits(
    more: &More,
    config: &bollard::models::ContainerConfig,
    host: &bollard::models::HostConfig,
) -> Vec<Field> {
    let list = |v: Option<&Vec<String>>| v.cloned().unwrap_or_default();
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    vec![
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
    ]
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
