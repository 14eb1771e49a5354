//! The resolved project as YAML in the shape of `docker-compose config`: what runner will
//! create, for a reviewer to compare (`runner plan --show-compose`). Paths are absolute,
//! ports one line each, durations as compose writes them, profiles that are not enabled
//! listed under `x-runner-disabled`.

use serde::Serialize;
use serde_yaml::{Mapping, Value};

use super::{Named, Project, Service};

pub(crate) fn yaml(project: &Project) -> String {
    let mut top = Mapping::new();
    put(&mut top, "name", &project.name);
    let services: Mapping = project
        .services
        .iter()
        .map(|(k, s)| (Value::from(k.as_str()), Value::Mapping(service(project, s))))
        .collect();
    top.insert("services".into(), Value::Mapping(services));
    let named = |items: &std::collections::BTreeMap<String, Named>| -> Mapping {
        items
            .iter()
            .map(|(k, n)| {
                let mut m = Mapping::new();
                put(&mut m, "name", &n.name);
                put(&mut m, "driver", &n.driver);
                put(&mut m, "external", &n.external.then_some(true));
                put(&mut m, "internal", &n.internal.then_some(true));
                put(&mut m, "ipam", &n.ipam);
                put(&mut m, "labels", &n.labels);
                put(&mut m, "driver_opts", &n.options);
                (Value::from(k.as_str()), Value::Mapping(m))
            })
            .collect()
    };
    top.insert("networks".into(), Value::Mapping(named(&project.networks)));
    put(&mut top, "volumes", &named(&project.volumes));
    put(&mut top, "x-runner-disabled", &project.disabled);
    serde_yaml::to_string(&top).expect("a mapping serializes")
}

/// Inserts `value` under `key` unless it is empty (null, "", [], {}).
fn put(map: &mut Mapping, key: &str, value: &impl Serialize) {
    let value = serde_yaml::to_value(value).expect("plain data serializes");
    let empty = match &value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Sequence(s) => s.is_empty(),
        Value::Mapping(m) => m.is_empty(),
        _ => false,
    };
    if !empty {
        map.insert(key.into(), value);
    }
}

fn service(project: &Project, s: &Service) -> Mapping {
    let mut m = Mapping::new();
    let more = &s.more;
    put(&mut m, "container_name", &s.container_name);
    put(&mut m, "image", &s.image);
    put(&mut m, "build", &more.build);
    put(&mut m, "platform", &more.platform);
    put(&mut m, "command", &s.command);
    put(&mut m, "entrypoint", &s.entrypoint);
    put(&mut m, "environment", &s.env);
    let env_files: Vec<_> = s.env_files.iter().map(|f| &f.path).collect();
    put(&mut m, "env_file", &env_files);
    let ports: Vec<String> = s
        .ports
        .iter()
        .map(|p| match (p.host_ip.as_str(), p.host_port.as_str()) {
            ("", h) => format!("{h}:{}", p.container),
            (ip, h) if ip.contains(':') => format!("[{ip}]:{h}:{}", p.container),
            (ip, h) => format!("{ip}:{h}:{}", p.container),
        })
        .collect();
    put(&mut m, "ports", &ports);
    put(&mut m, "expose", &s.exposed);
    let volumes: Vec<&String> = s.binds.iter().chain(&s.anonymous_volumes).collect();
    put(&mut m, "volumes", &volumes);
    put(&mut m, "tmpfs", &more.tmpfs);
    let networks: Mapping = s
        .networks
        .iter()
        .map(|(key, aliases)| {
            let mut n = Mapping::new();
            put(&mut n, "name", &project.networks[key].name);
            put(&mut n, "aliases", aliases);
            put(&mut n, "ipv4_address", &more.ipv4_address.get(key));
            put(&mut n, "ipv6_address", &more.ipv6_address.get(key));
            (Value::from(key.as_str()), Value::Mapping(n))
        })
        .collect();
    put(&mut m, "networks", &networks);
    put(&mut m, "network_mode", &more.network_mode);
    if let Some(h) = &s.healthcheck {
        let mut hm = Mapping::new();
        put(&mut hm, "test", &h.test);
        for (k, v) in [
            ("interval", h.interval),
            ("timeout", h.timeout),
            ("start_period", h.start_period),
        ] {
            put(&mut hm, k, &v.map(duration));
        }
        put(&mut hm, "retries", &h.retries);
        put(&mut m, "healthcheck", &hm);
    }
    let restart = s.restart.as_ref().map(|(p, n)| match n {
        0 => p.clone(),
        n => format!("{p}:{n}"),
    });
    put(&mut m, "restart", &restart);
    put(&mut m, "labels", &s.labels);
    let depends: Mapping = s
        .depends_on
        .iter()
        .map(|(d, c)| {
            let mut dm = Mapping::new();
            put(&mut dm, "condition", c);
            put(
                &mut dm,
                "required",
                &s.optional.contains(d).then_some(false),
            );
            (Value::from(d.as_str()), Value::Mapping(dm))
        })
        .collect();
    put(&mut m, "depends_on", &depends);
    put(&mut m, "working_dir", &s.working_dir);
    put(&mut m, "user", &s.user);
    put(&mut m, "hostname", &s.hostname);
    put(
        &mut m,
        "stop_grace_period",
        &s.stop_grace_seconds.map(|n| format!("{n}s")),
    );
    put(&mut m, "stop_signal", &s.stop_signal);
    put(&mut m, "extra_hosts", &more.extra_hosts);
    put(&mut m, "cap_add", &more.cap_add);
    put(&mut m, "cap_drop", &more.cap_drop);
    put(&mut m, "sysctls", &more.sysctls);
    let ulimits: Mapping = more
        .ulimits
        .iter()
        .map(|(k, (soft, hard))| {
            let mut u = Mapping::new();
            put(&mut u, "soft", soft);
            put(&mut u, "hard", hard);
            (Value::from(k.as_str()), Value::Mapping(u))
        })
        .collect();
    put(&mut m, "ulimits", &ulimits);
    put(&mut m, "init", &more.init);
    for (k, v) in [
        ("privileged", more.privileged),
        ("read_only", more.read_only),
        ("tty", more.tty),
        ("stdin_open", more.stdin_open),
    ] {
        put(&mut m, k, &v.then_some(true));
    }
    put(&mut m, "cpus", &more.nano_cpus.map(|n| n as f64 / 1e9));
    put(&mut m, "mem_limit", &more.memory);
    put(&mut m, "profiles", &s.profiles);
    m
}

/// Nanoseconds as compose writes a duration ("1m30s", "500ms").
fn duration(ns: i64) -> String {
    humantime::format_duration(std::time::Duration::from_nanos(ns as u64))
        .to_string()
        .replace(' ', "")
}
