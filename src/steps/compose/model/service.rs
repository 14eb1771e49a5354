//! One service of the compose file resolved into what its container needs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use super::mounts::{self, Mounts};
use super::ports::{self, Port};
use super::spec::{self, Bool, Scalar, Words};
use super::values::{bytes, duration_ns, health, restart};
use super::{Project, Vars};

/// One service as its container will be created. Serialized (with the image id) into the
/// config hash that tells an unchanged service from a changed one; the keys added since the
/// first release are left out when empty, so older containers keep their hash.
#[derive(Debug, Serialize, Clone)]
pub(crate) struct Service {
    pub(crate) name: String,
    pub(crate) container_name: String,
    pub(crate) image: String,
    /// The `environment` entries; those of `env_files` are added when the step runs.
    pub(crate) env: BTreeMap<String, String>,
    #[serde(serialize_with = "env_file_paths")]
    pub(crate) env_files: Vec<EnvFile>,
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
    #[serde(flatten)]
    pub(crate) more: More,
    /// Compose's profiles of the service (not part of the container).
    #[serde(skip)]
    pub(crate) profiles: Vec<String>,
    /// Dependencies with `required: false`, which may be missing.
    #[serde(skip)]
    pub(crate) optional: BTreeSet<String>,
}

/// The keys carried out since the first release (empty ones are not serialized).
#[derive(Debug, Serialize, Clone, Default)]
pub(crate) struct More {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) build: Option<Build>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) platform: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) tmpfs: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) ipv4_address: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) ipv6_address: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) network_mode: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) extra_hosts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) cap_add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) cap_drop: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) sysctls: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) ulimits: BTreeMap<String, (i64, i64)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) init: Option<bool>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) privileged: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) read_only: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) tty: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) stdin_open: bool,
    /// CPU limit in billionths of a CPU, as the engine takes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) nano_cpus: Option<i64>,
    /// Memory limit in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) memory: Option<i64>,
}

/// An `env_file`: a missing one is an error only when it is `required` (the default).
#[derive(Debug, Clone)]
pub(crate) struct EnvFile {
    pub(crate) path: PathBuf,
    pub(crate) required: bool,
}

fn env_file_paths<S: serde::Serializer>(files: &[EnvFile], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(files.iter().map(|f| &f.path))
}

/// What to build for a service with `build:`, tagged as its `image`.
#[derive(Debug, Serialize, Clone)]
pub(crate) struct Build {
    pub(crate) context: PathBuf,
    pub(crate) dockerfile: String,
    pub(crate) args: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) target: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) labels: BTreeMap<String, String>,
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

/// Resolves service `key`; what runner does differently from compose goes to `warn`.
pub(crate) fn resolve(
    project: &Project,
    key: &str,
    s: spec::Service,
    vars: &Vars,
    warn: &mut dyn FnMut(String),
) -> Result<Service, String> {
    let mut more = More::default();
    let image = match (&s.image, &s.build) {
        (Some(image), _) => image.clone(),
        // docker-compose v1's name; runner writes v1's labels and container names too.
        (None, Some(_)) => format!("{}_{key}", project.name),
        (None, None) => return Err("it has neither `image` nor `build`".into()),
    };
    if let Some(b) = s.build {
        for other in b.other.keys() {
            warn(format!(
                "build key `{other}` is not supported by runner and is ignored"
            ));
        }
        more.build = Some(Build {
            context: project
                .dir
                .join(b.context.as_deref().unwrap_or("."))
                .components()
                .collect(),
            dockerfile: b.dockerfile.unwrap_or_else(|| "Dockerfile".into()),
            args: defined(b.args, vars, "build arg", warn),
            target: b.target,
            labels: b
                .labels
                .0
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect(),
        });
    }
    let env = defined(s.environment, vars, "environment variable", warn);
    let env_files = s
        .env_file
        .into_vec()
        .into_iter()
        .map(|f| match f {
            spec::EnvFile::Path(p) => EnvFile {
                path: project.dir.join(p),
                required: true,
            },
            spec::EnvFile::Long { path, required } => EnvFile {
                path: project.dir.join(path),
                required: required.is_none_or(|Bool(b)| b),
            },
        })
        .collect();
    let (exposed, ports) = ports::resolve(&s.ports, &s.expose)?;
    let Mounts {
        binds,
        anonymous,
        tmpfs,
    } = mounts::resolve(project, &s.volumes, &s.configs, &s.secrets, warn)?;
    more.tmpfs = tmpfs;
    for t in s.tmpfs.into_vec() {
        let (path, options) = t.split_once(':').unwrap_or((&t, ""));
        more.tmpfs.insert(path.to_string(), options.to_string());
    }
    let mut networks = BTreeMap::new();
    more.network_mode = s.network_mode.clone();
    if s.network_mode.is_none() {
        let mut attached = s.networks.0;
        if attached.is_empty() {
            attached.insert("default".into(), Default::default());
        }
        for (n, a) in attached {
            if !project.networks.contains_key(&n) {
                return Err(format!("network `{n}` is not declared under `networks:`"));
            }
            let mut aliases = vec![key.to_string()];
            aliases.extend(a.aliases);
            networks.insert(n.clone(), aliases);
            if let Some(ip) = a.ipv4_address {
                more.ipv4_address.insert(n.clone(), ip);
            }
            if let Some(ip) = a.ipv6_address {
                more.ipv6_address.insert(n, ip);
            }
        }
    } else if !s.networks.0.is_empty() {
        return Err("`network_mode` and `networks` cannot both be given".into());
    }
    let mut depends_on = BTreeMap::new();
    let mut optional = BTreeSet::new();
    for (dep, d) in s.depends_on.0 {
        if ![
            "service_started",
            "service_healthy",
            "service_completed_successfully",
        ]
        .contains(&d.condition.as_str())
        {
            return Err(format!(
                "depends_on `{dep}`: condition `{}` is not one of service_started, service_healthy, service_completed_successfully",
                d.condition
            ));
        }
        if d.restart.is_some_and(|Bool(b)| b) {
            warn(format!(
                "depends_on `{dep}`: `restart: true` is not carried out (runner does not restart `{key}` when `{dep}` is replaced)"
            ));
        }
        if d.required.is_some_and(|Bool(b)| !b) {
            optional.insert(dep.clone());
        }
        depends_on.insert(dep, d.condition);
    }
    more.platform = s.platform;
    more.extra_hosts = s
        .extra_hosts
        .0
        .into_iter()
        .map(|(k, v)| match v {
            Some(ip) => format!("{k}:{ip}"),
            None => k,
        })
        .collect();
    more.cap_add = s.cap_add;
    more.cap_drop = s.cap_drop;
    more.sysctls = s
        .sysctls
        .0
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
    more.ulimits = s
        .ulimits
        .into_iter()
        .map(|(k, u)| match u {
            spec::Ulimit::Single(n) => (k, (n.0, n.0)),
            spec::Ulimit::Pair { soft, hard } => (k, (soft.0, hard.0)),
        })
        .collect();
    more.init = s.init.map(|b| b.0);
    let flag = |b: Option<Bool>| b.is_some_and(|b| b.0);
    more.privileged = flag(s.privileged);
    more.read_only = flag(s.read_only);
    more.tty = flag(s.tty);
    more.stdin_open = flag(s.stdin_open);
    let mut cpus = s.cpus;
    let mut memory = s.mem_limit;
    if let Some(deploy) = s.deploy {
        for other in deploy.other.keys() {
            warn(format!(
                "deploy key `{other}` is for swarm and is ignored by runner"
            ));
        }
        let resources = deploy.resources.map(|r| {
            for other in r.other.keys() {
                warn(format!(
                    "deploy.resources key `{other}` is not supported by runner and is ignored"
                ));
            }
            r.limits
        });
        if let Some(limits) = resources.flatten() {
            for other in limits.other.keys() {
                warn(format!(
                    "deploy.resources.limits key `{other}` is not supported by runner and is ignored"
                ));
            }
            cpus = limits.cpus.or(cpus);
            memory = limits.memory.or(memory);
        }
    }
    more.nano_cpus = cpus
        .map(|Scalar(c)| {
            c.parse::<f64>()
                .map(|c| (c * 1e9).round() as i64)
                .map_err(|_| format!("cpus `{c}` is not a number"))
        })
        .transpose()?;
    more.memory = memory.map(|Scalar(m)| bytes(&m)).transpose()?;
    let healthcheck = match s.healthcheck {
        Some(h) => health(h, warn)?,
        None => None,
    };
    Ok(Service {
        name: key.to_string(),
        container_name: s
            .container_name
            .unwrap_or_else(|| format!("{}_{key}_1", project.name)),
        image,
        env,
        env_files,
        command: s.command.map(words).transpose()?,
        entrypoint: s.entrypoint.map(words).transpose()?,
        exposed,
        ports,
        binds,
        anonymous_volumes: anonymous,
        networks,
        healthcheck,
        restart: s.restart.as_deref().map(restart).transpose()?,
        labels: s
            .labels
            .0
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect(),
        depends_on,
        working_dir: s.working_dir,
        user: s.user.map(|u| u.0),
        hostname: s.hostname,
        stop_grace_seconds: s
            .stop_grace_period
            .as_deref()
            .map(|d| duration_ns(d).map(|ns| ns / 1_000_000_000))
            .transpose()?,
        stop_signal: s.stop_signal,
        more,
        profiles: s.profiles,
        optional,
    })
}

impl Service {
    /// Why one of the service's `env_file`s cannot be read, if something is there that is not a
    /// regular file (reading a FIFO would wait forever).
    pub(crate) fn special_env_file(&self) -> Option<String> {
        self.env_files.iter().find_map(|file| {
            let what = crate::fs::special(&file.path)?;
            Some(format!(
                "env_file `{}` is {what}, not a regular file",
                file.path.display()
            ))
        })
    }

    /// Adds the variables of the service's `env_file`s (its `environment` wins over them);
    /// their values refer to the project's `vars`, then to the `environment`, as in compose.
    /// A missing file that is not `required` is passed over. Returns compose's warnings.
    pub(crate) fn read_env_files(&mut self, vars: &Vars) -> Result<Vec<String>, String> {
        if let Some(special) = self.special_env_file() {
            return Err(special);
        }
        let mut warnings = Vec::new();
        let mut read: Vars = self.env.clone().into_iter().collect();
        for file in &self.env_files {
            let (path, shown) = (&file.path, file.path.display());
            if !file.required && !path.exists() {
                continue;
            }
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("env_file `{shown}`: {e}"))?;
            let lookup = |k: &str| vars.get(k).or_else(|| self.env.get(k)).cloned();
            let mut found = Vec::new();
            crate::steps::compose::dotenv::read_into(&text, &lookup, &mut read, &mut found)
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

/// `KEY=value` pairs; a key without a value takes it from the interpolation variables, as
/// compose takes it from its environment, and is left out (with a warning) when unset.
fn defined(
    pairs: spec::Pairs,
    vars: &Vars,
    what: &str,
    warn: &mut dyn FnMut(String),
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in pairs.0 {
        match v.or_else(|| vars.get(&k).cloned()) {
            Some(v) => {
                out.insert(k, v);
            }
            None => warn(format!(
                "{what} `{k}` has no value and is not set in the env file, so it is left out"
            )),
        }
    }
    out
}

/// A command given as a list, or as one string split the way a shell would.
fn words(command: Words) -> Result<Vec<String>, String> {
    match command {
        Words::List(list) => Ok(list.into_iter().map(|w| w.0).collect()),
        Words::Text(text) => shlex::split(&text)
            .ok_or_else(|| format!("cannot split the command `{text}` into words")),
    }
}
