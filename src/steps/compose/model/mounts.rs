//! `volumes` (short and long form), `tmpfs` mounts, and the file-backed `configs` and `secrets`
//! a service names, mounted read-only where compose mounts them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Project;
use super::spec::{Bool, FileRef, LongVolume, VolumeSpec};

pub(crate) struct Mounts {
    /// `source:target[:mode]` as the engine's `Binds` takes them.
    pub(crate) binds: Vec<String>,
    pub(crate) anonymous: Vec<String>,
    /// Path to its options (`size=...`).
    pub(crate) tmpfs: BTreeMap<String, String>,
}

pub(crate) fn resolve(
    project: &Project,
    volumes: &[VolumeSpec],
    configs: &[FileRef],
    secrets: &[FileRef],
    warn: &mut dyn FnMut(String),
) -> Result<Mounts, String> {
    let mut m = Mounts {
        binds: Vec::new(),
        anonymous: Vec::new(),
        tmpfs: BTreeMap::new(),
    };
    for v in volumes {
        match v {
            VolumeSpec::Short(spec) => {
                let parts: Vec<&str> = spec.split(':').collect();
                match parts.as_slice() {
                    [target] => m.anonymous.push(container_path(target)),
                    [source, target] => m.binds.push(bind(project, source, target, "")?),
                    [source, target, mode] => m.binds.push(bind(project, source, target, mode)?),
                    _ => return Err(format!("cannot read the volume `{spec}`")),
                }
            }
            VolumeSpec::Long(long) => long_form(project, long, &mut m)?,
        }
    }
    for (kind, refs, objects, base) in [
        ("config", configs, &project.configs, "/"),
        ("secret", secrets, &project.secrets, "/run/secrets/"),
    ] {
        for r in refs {
            let (source, target) = match r {
                FileRef::Name(n) => (n, None),
                FileRef::Long { source, target } => (source, target.as_ref()),
            };
            let file = objects.get(source).ok_or_else(|| {
                format!("{kind} `{source}` is not declared under the top-level `{kind}s:`")
            })?;
            let Some(file) = file else {
                warn(format!(
                    "{kind} `{source}` is not from a file, so runner does not mount it"
                ));
                continue;
            };
            let target = target.map_or(source.as_str(), String::as_str);
            let target = if target.starts_with('/') {
                target.to_string()
            } else {
                format!("{base}{target}")
            };
            m.binds
                .push(format!("{}:{target}:ro", file.to_string_lossy()));
        }
    }
    Ok(m)
}

fn long_form(project: &Project, v: &LongVolume, m: &mut Mounts) -> Result<(), String> {
    let mut modes = Vec::new();
    if v.read_only.is_some_and(|Bool(b)| b) {
        modes.push("ro".to_string());
    }
    let source = v.source.as_deref().filter(|s| !s.is_empty());
    match (v.kind.as_str(), source) {
        ("tmpfs", _) => {
            let size = v.tmpfs.as_ref().and_then(|t| t.size.as_ref());
            let options = size.map(|s| format!("size={}", s.0)).unwrap_or_default();
            m.tmpfs.insert(v.target.clone(), options);
            return Ok(());
        }
        ("volume", None) => {
            m.anonymous.push(container_path(&v.target));
            return Ok(());
        }
        ("bind", None) => return Err(format!("the bind mount at `{}` has no `source`", v.target)),
        ("bind", Some(_)) => {
            let options = v.bind.as_ref();
            modes.extend(options.and_then(|b| b.propagation.clone()));
            modes.extend(options.and_then(|b| b.selinux.clone()));
        }
        ("volume", Some(_)) => {
            if v.volume
                .as_ref()
                .and_then(|o| o.nocopy)
                .is_some_and(|b| b.0)
            {
                modes.push("nocopy".into());
            }
        }
        (other, _) => {
            return Err(format!(
                "volume type `{other}` is not supported (bind, volume, tmpfs)"
            ));
        }
    }
    let source = source.expect("a source, from the match above");
    m.binds
        .push(bind(project, source, &v.target, &modes.join(","))?);
    Ok(())
}

/// A bind of a host path (relative to the project, or `~` for the home directory) or of a
/// named volume, with its mode kept as given (`ro`, `rw`, `z`, `Z`, `ro,z`, propagation).
fn bind(project: &Project, source: &str, target: &str, mode: &str) -> Result<String, String> {
    let host = if let Some(rest) = source.strip_prefix('~') {
        if !(rest.is_empty() || rest.starts_with('/')) {
            return Err(format!(
                "`{source}`: only `~` (the home directory) is supported, not `~user`"
            ));
        }
        let home = std::env::var_os("HOME").ok_or("`~` in a bind path, and HOME is not set")?;
        clean(&Path::new(&home).join(rest.trim_start_matches('/')))
    } else if source.starts_with(['.', '/']) {
        clean(&project.dir.join(source))
    } else {
        project
            .volumes
            .get(source)
            .map(|v| v.name.clone())
            .ok_or_else(|| format!("volume `{source}` is not declared under `volumes:`"))?
    };
    let mode = if mode.is_empty() {
        String::new()
    } else {
        format!(":{mode}")
    };
    Ok(format!("{host}:{}{mode}", container_path(target)))
}

/// A path in the container without a trailing `/`, as compose writes it.
fn container_path(path: &str) -> String {
    match path.trim_end_matches('/') {
        "" => "/".into(),
        trimmed => trimmed.into(),
    }
}

/// The path without `.` and with `..` taken away from the part before it, as compose does.
fn clean(path: &Path) -> String {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.to_string_lossy().into_owned()
}
