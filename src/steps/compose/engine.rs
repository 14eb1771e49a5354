//! What compose steps do to the engine: networks and volumes made on demand, containers
//! created from a resolved service with compose's labels, and the
//! keep-then-restore of replaced containers (waiting for a service: wait.rs).

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointIpamConfig, EndpointSettings,
    HealthConfig, HostConfig, Ipam, IpamConfig, NetworkConnectRequest, NetworkCreateRequest,
    NetworkingConfig, PortBinding, ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
    VolumeCreateOptions,
};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, RenameContainerOptions, StopContainerOptions,
};
use sha2::{Digest, Sha256};

use super::model::{Named, Project, Service};
use crate::docker::{describe, is_not_found, short};

pub(crate) const PROJECT: &str = "com.docker.compose.project";
pub(crate) const SERVICE: &str = "com.docker.compose.service";
pub(crate) const CONFIG_HASH: &str = "com.docker.compose.config-hash";
/// Marks the containers runner creates: those are judged by runner's config hash, the others
/// (docker-compose's) by their config (adopt.rs).
pub(crate) const MADE_BY: &str = "runner.made-by";
/// The compose release whose labels runner writes (docker-compose 1.29 reads them).
const COMPOSE_VERSION: &str = "1.29.2";

/// The container named `name`, if there is one.
pub(crate) async fn find(
    docker: &Docker,
    name: &str,
) -> Result<Option<ContainerInspectResponse>, String> {
    match docker
        .inspect_container(
            name,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
    {
        Ok(c) => Ok(Some(c)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(format!(
            "cannot inspect container `{name}`: {}",
            describe(&e)
        )),
    }
}

/// Creates the project's networks and the named volumes `service` uses, if missing.
pub(crate) async fn ensure_resources(
    docker: &Docker,
    project: &Project,
    service: &Service,
) -> Result<(), String> {
    for key in service.networks.keys() {
        let net = &project.networks[key];
        ensure_network(docker, project, key, net).await?;
    }
    for (key, volume) in &project.volumes {
        if service
            .binds
            .iter()
            .any(|b| b.starts_with(&format!("{}:", volume.name)))
        {
            ensure_volume(docker, project, key, volume).await?;
        }
    }
    Ok(())
}

async fn ensure_network(
    docker: &Docker,
    project: &Project,
    key: &str,
    net: &Named,
) -> Result<(), String> {
    match docker
        .inspect_network(
            &net.name,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
    {
        Ok(_) => return Ok(()),
        Err(e) if is_not_found(&e) => {}
        Err(e) => {
            return Err(format!(
                "cannot inspect network `{}`: {}",
                net.name,
                describe(&e)
            ));
        }
    }
    if net.external {
        return Err(format!("external network `{}` does not exist", net.name));
    }
    let mut labels: HashMap<String, String> = net.labels.clone().into_iter().collect();
    labels.extend([
        (PROJECT.to_string(), project.name.clone()),
        ("com.docker.compose.network".to_string(), key.to_string()),
        (
            "com.docker.compose.version".to_string(),
            COMPOSE_VERSION.to_string(),
        ),
    ]);
    let ipam = net.ipam.as_ref().map(|i| Ipam {
        driver: i.driver.clone(),
        config: Some(
            i.config
                .iter()
                .map(|c| IpamConfig {
                    subnet: c.subnet.clone(),
                    gateway: c.gateway.clone(),
                    ip_range: c.ip_range.clone(),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    });
    let request = NetworkCreateRequest {
        name: net.name.clone(),
        driver: Some(net.driver.clone().unwrap_or_else(|| "bridge".into())),
        internal: Some(net.internal),
        ipam,
        options: Some(net.options.clone().into_iter().collect()),
        labels: Some(labels),
        ..Default::default()
    };
    docker
        .create_network(request)
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot create network `{}`: {}", net.name, describe(&e)))
}

async fn ensure_volume(
    docker: &Docker,
    project: &Project,
    key: &str,
    volume: &Named,
) -> Result<(), String> {
    match docker.inspect_volume(&volume.name).await {
        Ok(_) => return Ok(()),
        Err(e) if is_not_found(&e) => {}
        Err(e) => {
            return Err(format!(
                "cannot inspect volume `{}`: {}",
                volume.name,
                describe(&e)
            ));
        }
    }
    if volume.external {
        return Err(format!("external volume `{}` does not exist", volume.name));
    }
    let mut labels: HashMap<String, String> = volume.labels.clone().into_iter().collect();
    labels.extend([
        (PROJECT.to_string(), project.name.clone()),
        ("com.docker.compose.volume".to_string(), key.to_string()),
        (
            "com.docker.compose.version".to_string(),
            COMPOSE_VERSION.to_string(),
        ),
    ]);
    let options = VolumeCreateOptions {
        name: Some(volume.name.clone()),
        driver: volume.driver.clone(),
        driver_opts: Some(volume.options.clone().into_iter().collect()),
        labels: Some(labels),
        ..Default::default()
    };
    docker
        .create_volume(options)
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot create volume `{}`: {}", volume.name, describe(&e)))
}

/// The hash that tells whether a running container still matches its service.
pub(crate) fn config_hash(service: &Service, image_id: &str) -> String {
    let spec = serde_json::to_string(service).expect("a service serializes");
    hex::encode(Sha256::digest(format!("{image_id}\n{spec}")))
}

/// Creates and starts the container of `service`. `inherited` binds the volumes of the
/// container it replaces that the service does not mount by name (an image's `VOLUME`, an
/// anonymous volume), as compose carries them over, so that their data stays.
pub(crate) async fn create(
    docker: &Docker,
    project: &Project,
    service: &Service,
    hash: &str,
    inherited: &[String],
) -> Result<String, String> {
    let mut labels: HashMap<String, String> = service.labels.clone().into_iter().collect();
    for (k, v) in [
        (PROJECT, project.name.clone()),
        (SERVICE, service.name.clone()),
        (CONFIG_HASH, hash.to_string()),
        (MADE_BY, "runner".into()),
        ("com.docker.compose.container-number", "1".into()),
        ("com.docker.compose.oneoff", "False".into()),
        ("com.docker.compose.version", COMPOSE_VERSION.into()),
        (
            "com.docker.compose.project.config_files",
            project.file.clone(),
        ),
        (
            "com.docker.compose.project.working_dir",
            project.dir.to_string_lossy().into_owned(),
        ),
    ] {
        labels.insert(k.to_string(), v);
    }
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &service.ports {
        port_bindings
            .entry(p.container.clone())
            .or_default()
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(p.host_ip.clone()).filter(|s| !s.is_empty()),
                host_port: Some(p.host_port.clone()),
            });
    }
    let mut networks = service.networks.iter();
    let more = &service.more;
    let endpoint = |key: &str, aliases: &[String]| {
        let ipv4 = more.ipv4_address.get(key).cloned();
        let ipv6 = more.ipv6_address.get(key).cloned();
        let ipam = (ipv4.is_some() || ipv6.is_some()).then(|| EndpointIpamConfig {
            ipv4_address: ipv4,
            ipv6_address: ipv6,
            ..Default::default()
        });
        (
            project.networks[key].name.clone(),
            EndpointSettings {
                aliases: Some(aliases.to_vec()),
                ipam_config: ipam,
                ..Default::default()
            },
        )
    };
    let first = networks.next().map(|(k, a)| endpoint(k, a));
    let body = ContainerCreateBody {
        image: Some(service.image.clone()),
        env: Some(
            service
                .env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        ),
        cmd: service.command.clone(),
        entrypoint: service.entrypoint.clone(),
        exposed_ports: Some(
            service
                .exposed
                .iter()
                .map(|p| (p.clone(), HashMap::new()))
                .collect(),
        ),
        volumes: Some(
            service
                .anonymous_volumes
                .iter()
                .map(|v| (v.clone(), HashMap::new()))
                .collect(),
        ),
        healthcheck: service.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()).filter(|t| !t.is_empty()),
            interval: h.interval,
            timeout: h.timeout,
            retries: h.retries,
            start_period: h.start_period,
            start_interval: None,
        }),
        labels: Some(labels),
        working_dir: service.working_dir.clone(),
        user: service.user.clone(),
        hostname: service.hostname.clone(),
        stop_signal: service.stop_signal.clone(),
        stop_timeout: service.stop_grace_seconds,
        tty: Some(more.tty),
        open_stdin: Some(more.stdin_open),
        host_config: Some(HostConfig {
            binds: Some(service.binds.iter().chain(inherited).cloned().collect()),
            tmpfs: Some(more.tmpfs.clone().into_iter().collect()),
            extra_hosts: Some(more.extra_hosts.clone()),
            cap_add: Some(more.cap_add.clone()),
            cap_drop: Some(more.cap_drop.clone()),
            sysctls: Some(more.sysctls.clone().into_iter().collect()),
            ulimits: Some(
                more.ulimits
                    .iter()
                    .map(|(name, (soft, hard))| ResourcesUlimits {
                        name: Some(name.clone()),
                        soft: Some(*soft),
                        hard: Some(*hard),
                    })
                    .collect(),
            ),
            init: more.init,
            privileged: Some(more.privileged),
            readonly_rootfs: Some(more.read_only),
            nano_cpus: more.nano_cpus,
            memory: more.memory,
            port_bindings: Some(port_bindings),
            restart_policy: service.restart.as_ref().map(|(name, count)| RestartPolicy {
                name: Some(match name.as_str() {
                    "always" => RestartPolicyNameEnum::ALWAYS,
                    "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
                    "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                    _ => RestartPolicyNameEnum::NO,
                }),
                maximum_retry_count: Some(*count),
            }),
            network_mode: more
                .network_mode
                .clone()
                .or_else(|| first.as_ref().map(|(name, _)| name.clone())),
            ..Default::default()
        }),
        networking_config: first.clone().map(|(name, settings)| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(name, settings)])),
        }),
        ..Default::default()
    };
    let options = CreateContainerOptions {
        name: Some(service.container_name.clone()),
        platform: more.platform.clone().unwrap_or_default(),
    };
    let created = docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| {
            format!(
                "cannot create container `{}`: {}",
                service.container_name,
                describe(&e)
            )
        })?;
    for (key, aliases) in networks {
        let (name, settings) = endpoint(key, aliases);
        let request = NetworkConnectRequest {
            container: Some(created.id.clone()),
            endpoint_config: Some(settings),
        };
        docker
            .connect_network(&name, request)
            .await
            .map_err(|e| format!("cannot connect to network `{name}`: {}", describe(&e)))?;
    }
    start(
        docker,
        &created.id,
        &format!("`{}`", service.container_name),
    )
    .await?;
    Ok(created.id)
}

/// Starts a container; `shown` names it in the error.
pub(crate) async fn start(docker: &Docker, id: &str, shown: &str) -> Result<(), String> {
    docker
        .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
        .await
        .map_err(|e| format!("cannot start container {shown}: {}", describe(&e)))
}

/// The name a replaced container is kept under until its rollback is no longer needed.
pub(crate) fn kept_name(name: &str, id: &str) -> String {
    format!("{name}-replaced-{}", short(id))
}

/// Whether a container's name is one `kept_name` gave it.
pub(crate) fn is_kept(name: &str) -> bool {
    name.rsplit_once("-replaced-")
        .is_some_and(|(_, id)| id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The volumes of `old` at targets the service does not mount otherwise (an image's `VOLUME`,
/// an anonymous volume), as binds for the container that replaces it.
pub(crate) fn inherited(old: &ContainerInspectResponse, service: &Service) -> Vec<String> {
    let target = |bind: &String| bind.split(':').nth(1).map(str::to_string);
    let mounted: Vec<String> = service.binds.iter().filter_map(target).collect();
    old.mounts
        .iter()
        .flatten()
        .filter(|m| m.typ == Some(bollard::models::MountPointTypeEnum::VOLUME))
        .filter_map(|m| Some((m.name.as_deref()?, m.destination.as_deref()?)))
        .filter(|(_, dest)| !mounted.iter().any(|t| t == dest))
        .filter(|(_, dest)| !service.more.tmpfs.contains_key(*dest))
        .map(|(name, dest)| format!("{name}:{dest}:rw"))
        .collect()
}

/// Stops a container and renames it out of the way, keeping it for rollback.
pub(crate) async fn keep(
    docker: &Docker,
    id: &str,
    name: &str,
    grace: Option<i64>,
) -> Result<(), String> {
    stop(docker, id, grace).await?;
    let options = RenameContainerOptions {
        name: kept_name(name, id),
    };
    docker.rename_container(id, options).await.map_err(|e| {
        format!(
            "cannot rename container `{name}` out of the way: {}",
            describe(&e)
        )
    })
}

pub(crate) async fn stop(docker: &Docker, id: &str, grace: Option<i64>) -> Result<(), String> {
    let options = StopContainerOptions {
        t: Some(grace.unwrap_or(10) as i32),
        signal: None,
    };
    match docker.stop_container(id, Some(options)).await {
        Ok(()) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => Ok(()),
        Err(e) => Err(format!(
            "cannot stop container {}: {}",
            short(id),
            describe(&e)
        )),
    }
}

pub(crate) async fn remove(docker: &Docker, id: &str) -> Result<(), String> {
    let options = RemoveContainerOptions {
        force: true,
        v: false,
        link: false,
    };
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(format!(
            "cannot remove container {}: {}",
            short(id),
            describe(&e)
        )),
    }
}
