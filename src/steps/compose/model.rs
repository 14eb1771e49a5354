//! A rendered compose file, read the way docker compose reads it: `${VAR:-default}`
//! interpolation from the project's `.env`, parsed into the typed model of
//! `docker-compose-types`, then resolved into what each container needs (names, env, ports,
//! mounts, networks, healthcheck). Keys runner does not carry out are warnings that name them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use docker_compose_types as dc;
use serde::Serialize;
use serde_yaml::Value;

/// Service keys runner carries out; any other is reported (`x-` extensions are allowed).
const SERVICE_KEYS: &[&str] = &[
    "image",
    "container_name",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "expose",
    "volumes",
    "networks",
    "depends_on",
    "healthcheck",
    "restart",
    "labels",
    "working_dir",
    "user",
    "hostname",
    "stop_grace_period",
    "stop_signal",
];
const TOP_KEYS: &[&str] = &["version", "name", "services", "networks", "volumes"];

/// What the compose file says, resolved.
#[derive(Debug)]
pub(crate) struct Project {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) file: String,
    pub(crate) services: BTreeMap<String, Service>,
    pub(crate) networks: BTreeMap<String, Named>,
    pub(crate) volumes: BTreeMap<String, Named>,
    pub(crate) warnings: Vec<String>,
}

/// A network or a named volume: its engine name, driver, and whether it is external.
#[derive(Debug)]
pub(crate) struct Named {
    pub(crate) name: String,
    pub(crate) driver: Option<String>,
    pub(crate) external: bool,
}

/// One service as its container will be created. Serialized (with the image id) into the
/// config hash that tells an unchanged service from a changed one.
#[derive(Debug, Serialize)]
pub(crate) struct Service {
    pub(crate) name: String,
    pub(crate) container_name: String,
    pub(crate) image: String,
    /// The `environment` entries; those of `env_files` are added when the step runs.
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) env_files: Vec<PathBuf>,
    pub(crate) command: Option<Vec<String>>,
    pub(crate) entrypoint: Option<Vec<String>>,
    pub(crate) exposed: BTreeSet<String>,
    pub(crate) ports: Vec<Port>,
    pub(crate) binds: Vec<String>,
    pub(crate) anonymous_volumes: Vec<String>,
    /// Network keys of the project, with the aliases the container has on each.
    pub(crate) networks: BTreeMap<String, Vec<String>>,
    pub(crate) healthcheck: Option<Health>,
    pub(crate) restart: Option<(String, i64)>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) depends_on: BTreeMap<String, String>,
    pub(crate) working_dir: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) hostname: Option<String>,
    pub(crate) stop_grace_seconds: Option<i64>,
    pub(crate) stop_signal: Option<String>,
}

/// A published port: container port with protocol ("3000/tcp"), host address and port.
#[derive(Debug, Serialize, Clone, PartialEq)]
pub(crate) struct Port {
    pub(crate) container: String,
    pub(crate) host_ip: String,
    pub(crate) host_port: String,
}

/// A healthcheck, durations in nanoseconds as the engine takes them.
#[derive(Debug, Serialize, Clone)]
pub(crate) struct Health {
    pub(crate) test: Vec<String>,
    pub(crate) interval: Option<i64>,
    pub(crate) timeout: Option<i64>,
    pub(crate) retries: Option<i64>,
    pub(crate) start_period: Option<i64>,
}

/// Reads a compose file's text; `dotenv` holds the interpolation variables.
pub(crate) fn load(
    file: &str,
    text: &str,
    dotenv: &HashMap<String, String>,
    project: Option<&str>,
    workdir: &Path,
) -> Result<Project, String> {
    let at = |what: String| format!("`{file}`: {what}");
    let mut value: Value = serde_yaml::from_str(text).map_err(|e| at(e.to_string()))?;
    let mut warnings =
        super::interpolate::tree(&mut value, dotenv).map_err(|e| at(e.to_string()))?;
    warnings.extend(unsupported(&value));
    let explicit_name = value
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string);
    let compose: dc::Compose = serde_yaml::from_value(value).map_err(|e| at(e.to_string()))?;
    let path = workdir.join(file);
    let dir = path.parent().unwrap_or(workdir).to_path_buf();
    let name = project
        .map(str::to_string)
        .or(explicit_name)
        .unwrap_or_else(|| {
            dir.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        });
    let name = normalize(&name);
    if name.is_empty() {
        return Err(at(
            "cannot derive a project name; set `project` on the step".into(),
        ));
    }
    let mut project = Project {
        networks: networks(&name, &compose.networks),
        volumes: volumes(&name, &compose.volumes),
        name,
        dir,
        file: file.to_string(),
        services: BTreeMap::new(),
        warnings,
    };
    for (key, service) in &compose.services.0 {
        let Some(service) = service else {
            return Err(at(format!("service `{key}` is empty")));
        };
        let resolved =
            resolve(&project, key, service).map_err(|e| at(format!("service `{key}`: {e}")))?;
        project.services.insert(key.clone(), resolved);
    }
    for (key, service) in &project.services {
        for dep in service.depends_on.keys() {
            if !project.services.contains_key(dep) {
                return Err(at(format!(
                    "service `{key}` depends on `{dep}`, which is not in the file"
                )));
            }
        }
    }
    Ok(project)
}

/// Compose's project-name rule: lowercase letters, digits, `-` and `_`.
fn normalize(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_')
        .collect()
}

fn unsupported(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let keys = |v: &Value| -> Vec<String> {
        v.as_mapping()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    for key in keys(value) {
        if !TOP_KEYS.contains(&key.as_str()) && !key.starts_with("x-") {
            out.push(format!(
                "top-level key `{key}` is not supported by runner and is ignored"
            ));
        }
    }
    if let Some(services) = value.get("services").and_then(Value::as_mapping) {
        for (name, service) in services {
            let name = name.as_str().unwrap_or("?");
            for key in keys(service) {
                if !SERVICE_KEYS.contains(&key.as_str()) && !key.starts_with("x-") {
                    let hint = if key == "build" {
                        " (build images with a docker_build step)"
                    } else {
                        ""
                    };
                    out.push(format!(
                        "service `{name}`: key `{key}` is not supported by runner and is ignored{hint}"
                    ));
                }
            }
        }
    }
    out
}

fn networks(project: &str, networks: &dc::ComposeNetworks) -> BTreeMap<String, Named> {
    let mut out: BTreeMap<String, Named> = networks
        .0
        .iter()
        .map(|(key, settings)| {
            let settings: Option<dc::NetworkSettings> = settings.clone().into();
            let settings = settings.unwrap_or_default();
            let external = matches!(
                settings.external,
                Some(dc::ComposeNetwork::Bool(true)) | Some(dc::ComposeNetwork::Detailed(_))
            );
            let name = match (&settings.external, &settings.name) {
                (Some(dc::ComposeNetwork::Detailed(d)), _) => d.name.clone(),
                (_, Some(name)) => name.clone(),
                _ => format!("{project}_{key}"),
            };
            (
                key.clone(),
                Named {
                    name,
                    driver: settings.driver,
                    external,
                },
            )
        })
        .collect();
    out.entry("default".into()).or_insert_with(|| Named {
        name: format!("{project}_default"),
        driver: None,
        external: false,
    });
    out
}

fn volumes(project: &str, volumes: &dc::TopLevelVolumes) -> BTreeMap<String, Named> {
    volumes
        .0
        .iter()
        .map(|(key, volume)| {
            let settings: Option<dc::ComposeVolume> = volume.clone().into();
            let external = settings.as_ref().and_then(|s| s.external.as_ref());
            let name = match (external, settings.as_ref().and_then(|s| s.name.as_ref())) {
                (Some(dc::ExternalVolume::Name { name }), _) => name.clone(),
                (_, Some(name)) => name.clone(),
                _ => format!("{project}_{key}"),
            };
            (
                key.clone(),
                Named {
                    name,
                    external: matches!(
                        external,
                        Some(dc::ExternalVolume::Bool(true) | dc::ExternalVolume::Name { .. })
                    ),
                    driver: settings.and_then(|s| s.driver),
                },
            )
        })
        .collect()
}

fn resolve(project: &Project, key: &str, s: &dc::Service) -> Result<Service, String> {
    let image = s
        .image
        .clone()
        .ok_or("it has no `image` (runner starts images; build them with a docker_build step)")?;
    let mut env = BTreeMap::new();
    let env_files = match &s.env_file {
        Some(dc::StringOrList::Simple(f)) => vec![f.clone()],
        Some(dc::StringOrList::List(l)) => l.clone(),
        None => Vec::new(),
    };
    match &s.environment {
        dc::Environment::List(items) => {
            for item in items {
                let (k, v) = item
                    .split_once('=')
                    .ok_or_else(|| format!("environment entry `{item}` has no value (runner does not read its own environment into containers)"))?;
                env.insert(k.to_string(), v.to_string());
            }
        }
        dc::Environment::KvPair(map) => {
            for (k, v) in map {
                let v = v.as_ref().ok_or_else(|| format!("environment variable `{k}` has no value (runner does not read its own environment into containers)"))?;
                env.insert(k.clone(), v.to_string());
            }
        }
    }
    let (exposed, ports) = ports(&s.ports, &s.expose)?;
    let (binds, anonymous_volumes) = mounts(project, &s.volumes)?;
    let mut networks = BTreeMap::new();
    let aliases = |extra: &[String]| {
        let mut a = vec![key.to_string()];
        a.extend(extra.iter().cloned());
        a
    };
    match &s.networks {
        dc::Networks::Simple(names) if names.is_empty() => {
            networks.insert("default".to_string(), aliases(&[]));
        }
        dc::Networks::Simple(names) => {
            for n in names {
                networks.insert(n.clone(), aliases(&[]));
            }
        }
        dc::Networks::Advanced(map) => {
            for (n, settings) in &map.0 {
                let settings: Option<dc::AdvancedNetworkSettings> = settings.clone().into();
                let extra = settings.map(|s| s.aliases).unwrap_or_default();
                networks.insert(n.clone(), aliases(&extra));
            }
        }
    }
    for n in networks.keys() {
        if !project.networks.contains_key(n) {
            return Err(format!("network `{n}` is not declared under `networks:`"));
        }
    }
    let depends_on = match &s.depends_on {
        dc::DependsOnOptions::Simple(list) => list
            .iter()
            .map(|d| (d.clone(), "service_started".to_string()))
            .collect(),
        dc::DependsOnOptions::Conditional(map) => map
            .iter()
            .map(|(d, c)| (d.clone(), c.condition.clone()))
            .collect(),
    };
    for (dep, condition) in &depends_on {
        if condition != "service_started" && condition != "service_healthy" {
            return Err(format!(
                "depends_on `{dep}`: condition `{condition}` is not supported (service_started, service_healthy)"
            ));
        }
    }
    let labels = match &s.labels {
        dc::Labels::List(items) => items
            .iter()
            .map(|i| match i.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (i.clone(), String::new()),
            })
            .collect(),
        dc::Labels::Map(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    };
    Ok(Service {
        name: key.to_string(),
        container_name: s
            .container_name
            .clone()
            .unwrap_or_else(|| format!("{}_{key}_1", project.name)),
        image,
        env,
        env_files: env_files.iter().map(|f| project.dir.join(f)).collect(),
        command: words(s.command.as_ref().map(|c| match c {
            dc::Command::Simple(t) => Err(t.as_str()),
            dc::Command::Args(a) => Ok(a.clone()),
        }))?,
        entrypoint: words(s.entrypoint.as_ref().map(|c| match c {
            dc::Entrypoint::Simple(t) => Err(t.as_str()),
            dc::Entrypoint::List(a) => Ok(a.clone()),
        }))?,
        exposed,
        ports,
        binds,
        anonymous_volumes,
        networks,
        healthcheck: s.healthcheck.as_ref().map(health).transpose()?,
        restart: s.restart.as_deref().map(restart).transpose()?,
        labels,
        depends_on,
        working_dir: s.working_dir.clone(),
        user: s.user.clone(),
        hostname: s.hostname.clone(),
        stop_grace_seconds: s
            .stop_grace_period
            .as_deref()
            .map(|d| duration_ns(d).map(|ns| ns / 1_000_000_000))
            .transpose()?,
        stop_signal: s.stop_signal.clone(),
    })
}

impl Service {
    /// Adds the variables of the service's `env_file`s (its `environment` wins over them);
    /// their values refer to the project's `vars`, then to the `environment`, as in compose.
    /// Returns compose's warnings.
    pub(crate) fn read_env_files(
        &mut self,
        vars: &HashMap<String, String>,
    ) -> Result<Vec<String>, String> {
        let mut warnings = Vec::new();
        let mut read: HashMap<String, String> = self.env.clone().into_iter().collect();
        for path in &self.env_files {
            let shown = path.display();
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("env_file `{shown}`: {e}"))?;
            let lookup = |k: &str| vars.get(k).or_else(|| self.env.get(k)).cloned();
            let mut found = Vec::new();
            super::dotenv::read_into(&text, &lookup, &mut read, &mut found)
                .map_err(|e| format!("env_file `{shown}`: {e}"))?;
            warnings.extend(
                found
                    .into_iter()
                    .map(|w| format!("env_file `{shown}`: {w}")),
            );
        }
        for (k, v) in read {
            self.env.entry(k).or_insert(v);
        }
        Ok(warnings)
    }
}

/// A command given as a list (Ok) or as one string split the way a shell would (Err).
fn words(command: Option<Result<Vec<String>, &str>>) -> Result<Option<Vec<String>>, String> {
    match command {
        None => Ok(None),
        Some(Ok(list)) => Ok(Some(list)),
        Some(Err(text)) => shlex::split(text)
            .map(Some)
            .ok_or_else(|| format!("cannot split the command `{text}` into words")),
    }
}

fn ports(ports: &dc::Ports, expose: &[String]) -> Result<(BTreeSet<String>, Vec<Port>), String> {
    let with_proto = |p: &str| {
        if p.contains('/') {
            p.to_string()
        } else {
            format!("{p}/tcp")
        }
    };
    let mut exposed: BTreeSet<String> = expose.iter().map(|p| with_proto(p)).collect();
    let mut out = Vec::new();
    let mut add = |container: String, host_ip: String, host_port: String| -> Result<(), String> {
        if container.contains('-') || host_port.contains('-') {
            return Err(format!("port ranges (`{container}`) are not supported"));
        }
        exposed.insert(container.clone());
        if !host_port.is_empty() || !host_ip.is_empty() {
            out.push(Port {
                container,
                host_ip,
                host_port,
            });
        }
        Ok(())
    };
    match ports {
        dc::Ports::Short(list) => {
            for spec in list {
                let (spec_part, proto) = match spec.split_once('/') {
                    Some((s, p)) => (s, p),
                    None => (spec.as_str(), "tcp"),
                };
                let parts: Vec<&str> = spec_part.rsplitn(3, ':').collect();
                let (container, host_port, host_ip) = match parts.as_slice() {
                    [c] => (*c, "", ""),
                    [c, h] => (*c, *h, ""),
                    [c, h, ip] => (*c, *h, *ip),
                    _ => return Err(format!("cannot read the port `{spec}`")),
                };
                add(
                    format!("{container}/{proto}"),
                    host_ip.to_string(),
                    host_port.to_string(),
                )?;
            }
        }
        dc::Ports::Long(list) => {
            for p in list {
                let host_port = match &p.published {
                    Some(dc::PublishedPort::Single(n)) => n.to_string(),
                    Some(dc::PublishedPort::Range(r)) => r.clone(),
                    None => String::new(),
                };
                let proto = p.protocol.clone().unwrap_or_else(|| "tcp".into());
                add(
                    format!("{}/{proto}", p.target),
                    p.host_ip.clone().unwrap_or_default(),
                    host_port,
                )?;
            }
        }
    }
    Ok((exposed, out))
}

fn mounts(
    project: &Project,
    volumes: &[dc::Volumes],
) -> Result<(Vec<String>, Vec<String>), String> {
    let mut binds = Vec::new();
    let mut anonymous = Vec::new();
    let mut add = |source: Option<&str>, target: &str, read_only: bool| -> Result<(), String> {
        let Some(source) = source.filter(|s| !s.is_empty()) else {
            anonymous.push(target.to_string());
            return Ok(());
        };
        let host = if source.starts_with(['.', '/', '~']) {
            let path = project.dir.join(source);
            path.to_string_lossy().replace("/./", "/")
        } else {
            project
                .volumes
                .get(source)
                .map(|v| v.name.clone())
                .ok_or_else(|| format!("volume `{source}` is not declared under `volumes:`"))?
        };
        let mode = if read_only { ":ro" } else { "" };
        binds.push(format!("{host}:{target}{mode}"));
        Ok(())
    };
    for v in volumes {
        match v {
            dc::Volumes::Simple(spec) => {
                let parts: Vec<&str> = spec.split(':').collect();
                match parts.as_slice() {
                    [target] => add(None, target, false)?,
                    [source, target] => add(Some(source), target, false)?,
                    [source, target, mode] => {
                        add(Some(source), target, mode.split(',').any(|m| m == "ro"))?
                    }
                    _ => return Err(format!("cannot read the volume `{spec}`")),
                }
            }
            dc::Volumes::Advanced(a) => {
                if !["bind", "volume"].contains(&a._type.as_str()) {
                    return Err(format!(
                        "volume type `{}` is not supported (bind, volume)",
                        a._type
                    ));
                }
                add(a.source.as_deref(), &a.target, a.read_only)?;
            }
        }
    }
    Ok((binds, anonymous))
}

fn health(h: &dc::Healthcheck) -> Result<Health, String> {
    let test = if h.disable {
        vec!["NONE".to_string()]
    } else {
        match &h.test {
            Some(dc::HealthcheckTest::Single(cmd)) => vec!["CMD-SHELL".into(), cmd.clone()],
            Some(dc::HealthcheckTest::Multiple(list)) => list.clone(),
            None => return Err("healthcheck has no `test`".into()),
        }
    };
    let ns = |d: &Option<String>| d.as_deref().map(duration_ns).transpose();
    Ok(Health {
        test,
        interval: ns(&h.interval)?,
        timeout: ns(&h.timeout)?,
        retries: (h.retries > 0).then_some(h.retries),
        start_period: ns(&h.start_period)?,
    })
}

fn restart(policy: &str) -> Result<(String, i64), String> {
    match policy.split_once(':') {
        Some(("on-failure", n)) => n
            .parse()
            .map(|n| ("on-failure".into(), n))
            .map_err(|_| format!("restart `{policy}`: not a count")),
        None if ["no", "always", "on-failure", "unless-stopped"].contains(&policy) => {
            Ok((policy.to_string(), 0))
        }
        _ => Err(format!(
            "restart policy `{policy}` is not one of no, always, on-failure[:n], unless-stopped"
        )),
    }
}

/// A compose duration ("1m30s", "500ms", "10s") in nanoseconds.
fn duration_ns(text: &str) -> Result<i64, String> {
    humantime::parse_duration(text)
        .map(|d| d.as_nanos() as i64)
        .map_err(|e| format!("`{text}` is not a duration: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> HashMap<String, String> {
        [("A", "a"), ("EMPTY", ""), ("PORT", "8080")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_service_resolves_like_compose() {
        let text = r#"
services:
  app:
    image: relay:${TAG:-latest}
    ports: ["127.0.0.1:${PORT}:3000", "9000"]
    environment: { A: "1", B: "$A" }
    volumes: ["./logs:/app/logs", "data:/data:ro", "/cache"]
    depends_on: { db: { condition: service_healthy } }
    healthcheck: { test: "curl -f localhost:3000/health", interval: 2s, retries: 3 }
    restart: unless-stopped
    deploy: { replicas: 2 }
  db:
    image: postgres:15-alpine
    command: postgres -c 'max_connections=200'
volumes:
  data:
x-anchors: {}
"#;
        let dir = Path::new("/srv/Relay Stack");
        let p = load("deploy/docker-compose.yml", text, &vars(), None, dir).unwrap();
        assert_eq!(p.name, "deploy");
        let app = &p.services["app"];
        assert_eq!(app.image, "relay:latest");
        assert_eq!(app.container_name, "deploy_app_1");
        assert_eq!(app.env["B"], "a");
        assert_eq!(
            app.ports,
            [Port {
                container: "3000/tcp".into(),
                host_ip: "127.0.0.1".into(),
                host_port: "8080".into()
            }]
        );
        assert!(app.exposed.contains("9000/tcp"));
        assert_eq!(
            app.binds,
            [
                "/srv/Relay Stack/deploy/logs:/app/logs",
                "deploy_data:/data:ro"
            ]
        );
        assert_eq!(app.anonymous_volumes, ["/cache"]);
        assert_eq!(app.networks["default"], ["app"]);
        assert_eq!(app.depends_on["db"], "service_healthy");
        let health = app.healthcheck.as_ref().unwrap();
        assert_eq!(health.test[0], "CMD-SHELL");
        assert_eq!(health.interval, Some(2_000_000_000));
        assert_eq!(app.restart, Some(("unless-stopped".into(), 0)));
        assert_eq!(
            p.services["db"].command.as_deref().unwrap(),
            ["postgres", "-c", "max_connections=200"]
        );
        assert_eq!(
            p.warnings,
            ["service `app`: key `deploy` is not supported by runner and is ignored"]
        );
    }

    #[test]
    fn errors_name_the_place() {
        let text = "services:\n  app:\n    image: x\n    environment: [\"K=${NOPE:?}\"]\n";
        let err = load("c.yml", text, &vars(), Some("p"), Path::new("/w")).unwrap_err();
        assert!(
            err.starts_with("`c.yml`: error while interpolating services.app.environment[0]: required variable NOPE is missing a value"),
            "{err}"
        );
        let text = "services:\n  app:\n    image: x\n    depends_on: [db]\n";
        let err = load("c.yml", text, &vars(), Some("p"), Path::new("/w")).unwrap_err();
        assert!(
            err.contains("depends on `db`, which is not in the file"),
            "{err}"
        );
    }
}
