//! A rendered compose file, read the way docker compose reads it: YAML anchors and `<<:`
//! merge keys, `${VAR:-default}` interpolation from the project's `.env`, the Compose
//! Specification's keys (spec.rs, with compose-go's casts of strings to numbers and booleans),
//! the enabled profiles, then each service resolved into what its container needs
//! (service.rs, ports.rs, mounts.rs). Keys runner does not carry out are warnings that name
//! them.

#[cfg(test)]
mod corpus;
#[cfg(test)]
mod files;
mod mounts;
mod ports;
mod scalar;
mod service;
mod spec;
mod values;
pub(crate) mod view;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_yaml::Value;

pub(crate) use self::service::{More, Service};
use self::spec::{Bool, External, SERVICE_KEYS, TOP_KEYS};

/// The interpolation variables.
pub(crate) type Vars = HashMap<String, String>;

/// What the compose file says, resolved.
#[derive(Debug)]
pub(crate) struct Project {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) file: String,
    /// The enabled services (those without profiles, or with an enabled one, or named).
    pub(crate) services: BTreeMap<String, Service>,
    /// Services left out because none of their profiles is enabled, with those profiles.
    pub(crate) disabled: BTreeMap<String, Vec<String>>,
    pub(crate) networks: BTreeMap<String, Named>,
    pub(crate) volumes: BTreeMap<String, Named>,
    /// Top-level configs and secrets: the file of each (`None`: not from a file).
    pub(crate) configs: BTreeMap<String, Option<PathBuf>>,
    pub(crate) secrets: BTreeMap<String, Option<PathBuf>>,
    pub(crate) warnings: Vec<String>,
}

/// A network or a named volume: its engine name, driver, and whether it is external.
#[derive(Debug, Default)]
pub(crate) struct Named {
    pub(crate) name: String,
    pub(crate) driver: Option<String>,
    pub(crate) external: bool,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) options: BTreeMap<String, String>,
    /// Networks only.
    pub(crate) internal: bool,
    pub(crate) ipam: Option<spec::Ipam>,
}

/// Which services to plan: those of the enabled `profiles`, and the `named` ones whatever
/// their profiles (as `docker compose up NAME` does).
pub(crate) struct Selection<'a> {
    pub(crate) profiles: &'a [String],
    pub(crate) named: &'a [String],
}

/// Reads a compose file's text; `dotenv` holds the interpolation variables.
pub(crate) fn load(
    file: &str,
    text: &str,
    dotenv: &Vars,
    project: Option<&str>,
    workdir: &Path,
    selection: &Selection<'_>,
) -> Result<Project, String> {
    let at = |what: String| format!("`{file}`: {what}");
    let mut value: Value = serde_yaml::from_str(text).map_err(|e| at(e.to_string()))?;
    value
        .apply_merge()
        .map_err(|e| at(format!("merge key `<<`: {e}")))?;
    let mut warnings =
        super::interpolate::tree(&mut value, dotenv).map_err(|e| at(e.to_string()))?;
    warnings.extend(unsupported(&value));
    let explicit_name = value
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string);
    let services = match value.get_mut("services").map(std::mem::take) {
        None | Some(Value::Null) => Default::default(),
        Some(v) => serde_yaml::from_value::<BTreeMap<String, Value>>(v)
            .map_err(|e| at(format!("services: {e}")))?,
    };
    let compose: spec::File = serde_yaml::from_value(value).map_err(|e| at(e.to_string()))?;
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
        networks: networks(&name, compose.networks),
        volumes: volumes(&name, compose.volumes),
        configs: files(&dir, "config", compose.configs, &mut warnings),
        secrets: files(&dir, "secret", compose.secrets, &mut warnings),
        name,
        dir,
        file: file.to_string(),
        services: BTreeMap::new(),
        disabled: BTreeMap::new(),
        warnings,
    };
    for (key, service) in services {
        let in_service = |e: String| at(format!("service `{key}`: {e}"));
        let service: spec::Service = match service {
            Value::Null => return Err(in_service("it is empty".into())),
            v => serde_yaml::from_value(v).map_err(|e| in_service(e.to_string()))?,
        };
        let mut warn = Vec::new();
        let resolved = service::resolve(&project, &key, service, dotenv, &mut |w| warn.push(w))
            .map_err(in_service)?;
        let enabled = resolved.profiles.is_empty()
            || resolved
                .profiles
                .iter()
                .any(|p| selection.profiles.contains(p))
            || selection.named.contains(&key);
        if enabled {
            let warn = warn.into_iter().map(|w| format!("service `{key}`: {w}"));
            project.warnings.extend(warn);
            project.services.insert(key, resolved);
        } else {
            project.disabled.insert(key, resolved.profiles);
        }
    }
    for (key, service) in &project.services {
        for dep in service.depends_on.keys() {
            if project.services.contains_key(dep) || service.optional.contains(dep) {
                continue;
            }
            return Err(at(match project.disabled.get(dep) {
                Some(profiles) => format!(
                    "service `{key}` depends on `{dep}`, whose profiles ({}) are not enabled",
                    profiles.join(", ")
                ),
                None => format!("service `{key}` depends on `{dep}`, which is not in the file"),
            }));
        }
    }
    Ok(project)
}

/// Compose's project-name rule: lowercase letters, digits, `-` and `_`.
pub(crate) fn normalize(name: &str) -> String {
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
                    out.push(format!(
                        "service `{name}`: key `{key}` is not supported by runner and is ignored"
                    ));
                }
            }
        }
    }
    out
}

/// An external network or volume is named `name`, else its key, never prefixed.
fn engine_name(
    project: &str,
    key: &str,
    name: Option<String>,
    external: &Option<External>,
) -> (String, bool) {
    match external {
        Some(External::Named { name }) => (name.clone(), true),
        Some(External::Flag(Bool(true))) => (name.unwrap_or_else(|| key.to_string()), true),
        _ => (name.unwrap_or_else(|| format!("{project}_{key}")), false),
    }
}

fn strings(pairs: spec::Pairs) -> BTreeMap<String, String> {
    pairs
        .0
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect()
}

fn networks(
    project: &str,
    networks: BTreeMap<String, Option<spec::Network>>,
) -> BTreeMap<String, Named> {
    let mut out: BTreeMap<String, Named> = networks
        .into_iter()
        .map(|(key, settings)| {
            let n = settings.unwrap_or_default();
            let (name, external) = engine_name(project, &key, n.name, &n.external);
            let named = Named {
                name,
                external,
                driver: n.driver,
                labels: strings(n.labels),
                options: n.driver_opts.into_iter().map(|(k, v)| (k, v.0)).collect(),
                internal: n.internal.is_some_and(|b| b.0),
                ipam: n.ipam,
            };
            (key, named)
        })
        .collect();
    out.entry("default".into()).or_insert_with(|| Named {
        name: format!("{project}_default"),
        ..Default::default()
    });
    out
}

fn volumes(
    project: &str,
    volumes: BTreeMap<String, Option<spec::Volume>>,
) -> BTreeMap<String, Named> {
    volumes
        .into_iter()
        .map(|(key, settings)| {
            let v = settings.unwrap_or_default();
            let (name, external) = engine_name(project, &key, v.name, &v.external);
            let named = Named {
                name,
                external,
                driver: v.driver,
                labels: strings(v.labels),
                options: v.driver_opts.into_iter().map(|(k, v)| (k, v.0)).collect(),
                ..Default::default()
            };
            (key, named)
        })
        .collect()
}

/// Top-level configs or secrets: the file of each; the others are named in a warning.
fn files(
    dir: &Path,
    kind: &str,
    objects: BTreeMap<String, Option<spec::FileObject>>,
    warnings: &mut Vec<String>,
) -> BTreeMap<String, Option<PathBuf>> {
    objects
        .into_iter()
        .map(|(key, object)| {
            let file = object.as_ref().and_then(|o| o.file.as_ref());
            if file.is_none() {
                let how = match &object {
                    Some(o) if o.external.is_some() => "external (swarm)",
                    Some(o) if o.environment.is_some() => "from the environment",
                    Some(o) if o.content.is_some() => "inline `content`",
                    _ => "without a `file`",
                };
                warnings.push(format!(
                    "{kind} `{key}` is {how}; runner mounts only {kind}s from files and ignores it"
                ));
            }
            (key, file.map(|f| mounts_path(dir, f)))
        })
        .collect()
}

fn mounts_path(dir: &Path, file: &str) -> PathBuf {
    dir.join(file).components().collect()
}
