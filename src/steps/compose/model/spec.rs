//! The Compose Specification's keys that runner carries out, as serde types. Where the
//! specification allows a short and a long form, or a string where a number or boolean is
//! meant (compose-go casts interpolated strings at known paths), these types take both.
//! `docker-compose-types` 0.24 was not enough: it has no `platform`, service `cpus`, long-form
//! `env_file`, map `extra_hosts`, integer `expose`, top-level `configs` or typed casts.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_yaml::Value;

pub(crate) use super::scalar::{Bool, Int, OneOrMany, Pairs, Scalar, Words};

/// Service keys runner carries out (any other is a warning that names it).
pub(crate) const SERVICE_KEYS: &[&str] = &[
    "image",
    "build",
    "container_name",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "expose",
    "volumes",
    "tmpfs",
    "networks",
    "network_mode",
    "depends_on",
    "healthcheck",
    "restart",
    "labels",
    "working_dir",
    "user",
    "hostname",
    "stop_grace_period",
    "stop_signal",
    "profiles",
    "platform",
    "extra_hosts",
    "cap_add",
    "cap_drop",
    "sysctls",
    "ulimits",
    "init",
    "privileged",
    "read_only",
    "tty",
    "stdin_open",
    "cpus",
    "mem_limit",
    "deploy",
    "configs",
    "secrets",
];
pub(crate) const TOP_KEYS: &[&str] = &[
    "version", "name", "services", "networks", "volumes", "configs", "secrets",
];

#[derive(Deserialize, Default)]
pub(crate) struct File {
    #[serde(default)]
    pub(crate) networks: BTreeMap<String, Option<Network>>,
    #[serde(default)]
    pub(crate) volumes: BTreeMap<String, Option<Volume>>,
    #[serde(default)]
    pub(crate) configs: BTreeMap<String, Option<FileObject>>,
    #[serde(default)]
    pub(crate) secrets: BTreeMap<String, Option<FileObject>>,
}

#[derive(Deserialize, Default)]
pub(crate) struct Service {
    pub(crate) image: Option<String>,
    #[serde(default, deserialize_with = "build")]
    pub(crate) build: Option<Build>,
    pub(crate) container_name: Option<String>,
    pub(crate) command: Option<Words>,
    pub(crate) entrypoint: Option<Words>,
    #[serde(default)]
    pub(crate) environment: Pairs,
    #[serde(default)]
    pub(crate) env_file: OneOrMany<EnvFile>,
    #[serde(default)]
    pub(crate) ports: Vec<PortSpec>,
    #[serde(default)]
    pub(crate) expose: Vec<Scalar>,
    #[serde(default)]
    pub(crate) volumes: Vec<VolumeSpec>,
    #[serde(default)]
    pub(crate) tmpfs: OneOrMany<String>,
    #[serde(default)]
    pub(crate) networks: ServiceNetworks,
    pub(crate) network_mode: Option<String>,
    #[serde(default)]
    pub(crate) depends_on: DependsOn,
    pub(crate) healthcheck: Option<Healthcheck>,
    pub(crate) restart: Option<String>,
    #[serde(default)]
    pub(crate) labels: Pairs,
    pub(crate) working_dir: Option<String>,
    pub(crate) user: Option<Scalar>,
    pub(crate) hostname: Option<String>,
    pub(crate) stop_grace_period: Option<String>,
    pub(crate) stop_signal: Option<String>,
    #[serde(default)]
    pub(crate) profiles: Vec<String>,
    pub(crate) platform: Option<String>,
    #[serde(default)]
    pub(crate) extra_hosts: Pairs,
    #[serde(default)]
    pub(crate) cap_add: Vec<String>,
    #[serde(default)]
    pub(crate) cap_drop: Vec<String>,
    #[serde(default)]
    pub(crate) sysctls: Pairs,
    #[serde(default)]
    pub(crate) ulimits: BTreeMap<String, Ulimit>,
    pub(crate) init: Option<Bool>,
    pub(crate) privileged: Option<Bool>,
    pub(crate) read_only: Option<Bool>,
    pub(crate) tty: Option<Bool>,
    pub(crate) stdin_open: Option<Bool>,
    pub(crate) cpus: Option<Scalar>,
    pub(crate) mem_limit: Option<Scalar>,
    pub(crate) deploy: Option<Deploy>,
    #[serde(default)]
    pub(crate) configs: Vec<FileRef>,
    #[serde(default)]
    pub(crate) secrets: Vec<FileRef>,
}

#[derive(Deserialize, Default, Clone)]
pub(crate) struct Build {
    pub(crate) context: Option<String>,
    pub(crate) dockerfile: Option<String>,
    #[serde(default)]
    pub(crate) args: Pairs,
    pub(crate) target: Option<String>,
    #[serde(default)]
    pub(crate) labels: Pairs,
    /// Other build keys (cache_from, ssh, ...): named in a warning.
    #[serde(flatten)]
    pub(crate) other: BTreeMap<String, Value>,
}

fn build<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Build>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Context(String),
        Long(Build),
    }
    Ok(Some(match Form::deserialize(d)? {
        Form::Context(context) => Build {
            context: Some(context),
            ..Default::default()
        },
        Form::Long(b) => b,
    }))
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum EnvFile {
    Path(String),
    Long {
        path: String,
        required: Option<Bool>,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum PortSpec {
    Short(Scalar),
    Long {
        target: Int,
        published: Option<Scalar>,
        host_ip: Option<String>,
        protocol: Option<String>,
        mode: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum VolumeSpec {
    Short(String),
    Long(LongVolume),
}

#[derive(Deserialize)]
pub(crate) struct LongVolume {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) source: Option<String>,
    pub(crate) target: String,
    pub(crate) read_only: Option<Bool>,
    pub(crate) bind: Option<BindOptions>,
    pub(crate) volume: Option<VolumeOptions>,
    pub(crate) tmpfs: Option<TmpfsOptions>,
}

#[derive(Deserialize)]
pub(crate) struct BindOptions {
    pub(crate) propagation: Option<String>,
    pub(crate) selinux: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct VolumeOptions {
    pub(crate) nocopy: Option<Bool>,
}

#[derive(Deserialize)]
pub(crate) struct TmpfsOptions {
    pub(crate) size: Option<Scalar>,
}

/// A service's `networks`: a list of names, or names with settings.
#[derive(Default)]
pub(crate) struct ServiceNetworks(pub(crate) BTreeMap<String, Attachment>);

#[derive(Deserialize, Default, Clone)]
pub(crate) struct Attachment {
    #[serde(default)]
    pub(crate) aliases: Vec<String>,
    pub(crate) ipv4_address: Option<String>,
    pub(crate) ipv6_address: Option<String>,
}

impl<'de> Deserialize<'de> for ServiceNetworks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            List(Vec<String>),
            Map(BTreeMap<String, Option<Attachment>>),
        }
        Ok(ServiceNetworks(match Form::deserialize(d)? {
            Form::List(names) => names
                .into_iter()
                .map(|n| (n, Attachment::default()))
                .collect(),
            Form::Map(map) => map
                .into_iter()
                .map(|(n, a)| (n, a.unwrap_or_default()))
                .collect(),
        }))
    }
}

/// `depends_on`: names, or names with `condition`, `required` and `restart`.
#[derive(Default)]
pub(crate) struct DependsOn(pub(crate) BTreeMap<String, Dependency>);

#[derive(Deserialize, Clone)]
pub(crate) struct Dependency {
    #[serde(default = "started")]
    pub(crate) condition: String,
    pub(crate) required: Option<Bool>,
    pub(crate) restart: Option<Bool>,
}

fn started() -> String {
    "service_started".into()
}

impl<'de> Deserialize<'de> for DependsOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            List(Vec<String>),
            Map(BTreeMap<String, Dependency>),
        }
        Ok(DependsOn(match Form::deserialize(d)? {
            Form::List(names) => names
                .into_iter()
                .map(|n| {
                    let dep = Dependency {
                        condition: started(),
                        required: None,
                        restart: None,
                    };
                    (n, dep)
                })
                .collect(),
            Form::Map(map) => map,
        }))
    }
}

#[derive(Deserialize)]
pub(crate) struct Healthcheck {
    pub(crate) test: Option<Words>,
    pub(crate) interval: Option<String>,
    pub(crate) timeout: Option<String>,
    pub(crate) retries: Option<Int>,
    pub(crate) start_period: Option<String>,
    pub(crate) start_interval: Option<String>,
    pub(crate) disable: Option<Bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Ulimit {
    Single(Int),
    Pair { soft: Int, hard: Int },
}

#[derive(Deserialize)]
pub(crate) struct Deploy {
    pub(crate) resources: Option<Resources>,
    #[serde(flatten)]
    pub(crate) other: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
pub(crate) struct Resources {
    pub(crate) limits: Option<Limits>,
    #[serde(flatten)]
    pub(crate) other: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
pub(crate) struct Limits {
    pub(crate) cpus: Option<Scalar>,
    pub(crate) memory: Option<Scalar>,
    #[serde(flatten)]
    pub(crate) other: BTreeMap<String, Value>,
}

/// A service's reference to a top-level config or secret.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum FileRef {
    Name(String),
    Long {
        source: String,
        target: Option<String>,
    },
}

/// A top-level config or secret.
#[derive(Deserialize)]
pub(crate) struct FileObject {
    pub(crate) file: Option<String>,
    pub(crate) external: Option<Value>,
    pub(crate) environment: Option<String>,
    pub(crate) content: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct Network {
    pub(crate) name: Option<String>,
    pub(crate) driver: Option<String>,
    pub(crate) external: Option<External>,
    pub(crate) ipam: Option<Ipam>,
    pub(crate) internal: Option<Bool>,
    #[serde(default)]
    pub(crate) labels: Pairs,
    #[serde(default)]
    pub(crate) driver_opts: BTreeMap<String, Scalar>,
}

#[derive(Deserialize, Default)]
pub(crate) struct Volume {
    pub(crate) name: Option<String>,
    pub(crate) driver: Option<String>,
    pub(crate) external: Option<External>,
    #[serde(default)]
    pub(crate) labels: Pairs,
    #[serde(default)]
    pub(crate) driver_opts: BTreeMap<String, Scalar>,
}

/// `external: true` or the older `external: { name: x }`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum External {
    Flag(Bool),
    Named { name: String },
}

#[derive(Deserialize, Clone, Debug, serde::Serialize)]
pub(crate) struct Ipam {
    pub(crate) driver: Option<String>,
    #[serde(default)]
    pub(crate) config: Vec<IpamPool>,
}

#[derive(Deserialize, Clone, Debug, serde::Serialize)]
pub(crate) struct IpamPool {
    pub(crate) subnet: Option<String>,
    pub(crate) gateway: Option<String>,
    pub(crate) ip_range: Option<String>,
}
