//! Public compose files nobody here wrote (tests/fixtures/compose-corpus, see its SOURCES),
//! each planned by runner and compared, field by field, with what `docker-compose config`
//! (1.29, on PATH) makes of the same file, `.env` and project name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::{Project, Selection, Service, Vars, load};

/// Service keys of `docker-compose config` that are not compared, and why. Any other key
/// the output has fails the test, so none is passed over unseen.
const NOT_COMPARED: &[(&str, &str)] = &[
    (
        "deploy",
        "swarm keys; runner carries out only resources.limits (compared as cpus/mem_limit in unit tests)",
    ),
    ("logging", "not supported by runner: a warning names it"),
    (
        "profiles",
        "compared as the set of services: runner plans them all when every profile is enabled",
    ),
    (
        "secrets",
        "docker-compose 1.29 prints the references; runner's mounts are unit-tested",
    ),
    (
        "configs",
        "docker-compose 1.29 prints the references; runner's mounts are unit-tested",
    ),
    ("links", "not supported by runner: a warning names it"),
    (
        "security_opt",
        "not supported by runner: a warning names it",
    ),
    ("devices", "not supported by runner: a warning names it"),
    ("dns", "not supported by runner: a warning names it"),
    ("runtime", "not supported by runner: a warning names it"),
    ("stdin_open", "compared with the other flags below"),
];

/// Files docker-compose 1.29 cannot read, with why; runner must still plan them.
const NEWER_THAN_V1: &[(&str, &str)] = &[(
    "awesome-compose/react-rust-postgres/compose.yaml",
    "top-level `name:` came after docker-compose 1.29",
)];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose-corpus")
}

/// The corpus's compose files, from SOURCES.
fn files() -> Vec<String> {
    let sources = std::fs::read_to_string(corpus().join("SOURCES")).unwrap();
    sources
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|p| p.ends_with(".yml") || p.ends_with(".yaml"))
        .map(str::to_string)
        .collect()
}

/// A copy of the file's folder in a temporary directory, with its `.env` (the relay's
/// `.env.example`, as its instructions say), and the build contexts it names (compose
/// refuses a missing one).
fn stage(rel: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = corpus().join(rel);
    let dir = tmp.path().join(Path::new(rel).parent().unwrap());
    std::fs::create_dir_all(&dir).unwrap();
    let name = src.file_name().unwrap();
    std::fs::copy(&src, dir.join(name)).unwrap();
    for env in [".env", ".env.example"] {
        let from = src.parent().unwrap().join(env);
        if from.exists() {
            std::fs::copy(from, dir.join(".env")).unwrap();
        }
    }
    (tmp, dir.join(name))
}

fn vars(dir: &Path) -> Vars {
    let Ok(bytes) = std::fs::read(dir.join(".env")) else {
        return Vars::new();
    };
    let text = String::from_utf8(bytes).unwrap();
    crate::steps::compose::dotenv::read(&text, &|_| None, &mut Vec::new()).unwrap()
}

/// The project with every profile enabled (docker-compose 1.29's `config` shows them all).
fn runner(file: &Path) -> Project {
    let dir = file.parent().unwrap();
    let name = file.file_name().unwrap().to_str().unwrap();
    let text = std::fs::read_to_string(file).unwrap();
    let vars = vars(dir);
    let with = |profiles: &[String]| {
        let selection = Selection {
            profiles,
            named: &[],
        };
        load(name, &text, &vars, Some("corpus"), dir, &selection)
            .unwrap_or_else(|e| panic!("runner refuses {}: {e}", file.display()))
    };
    let all: Vec<String> = with(&[]).disabled.into_values().flatten().collect();
    with(&all)
}

/// Starts `docker-compose config` of the file (they run side by side: each is a slow start).
fn compose_config(file: &Path) -> std::process::Child {
    std::process::Command::new("docker-compose")
        .args(["-p", "corpus", "-f"])
        .arg(file)
        .arg("config")
        .current_dir(file.parent().unwrap())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docker-compose 1.29 is on PATH")
}

#[test]
fn public_compose_files_plan_as_docker_compose_config_reads_them() {
    let files = files();
    assert!(files.len() >= 20, "the corpus has {} files", files.len());
    let mut compared = 0;
    for chunk in files.chunks(8) {
        let staged: Vec<_> = chunk
            .iter()
            .map(|rel| {
                let (tmp, file) = stage(rel);
                let project = runner(&file);
                for s in project.services.values() {
                    if let Some(b) = &s.more.build {
                        std::fs::create_dir_all(&b.context).unwrap();
                    }
                }
                let child = compose_config(&file);
                (rel, tmp, project, child)
            })
            .collect();
        for (rel, _tmp, project, child) in staged {
            let out = child.wait_with_output().unwrap();
            if !out.status.success() {
                let e = String::from_utf8_lossy(&out.stderr);
                assert!(
                    NEWER_THAN_V1.iter().any(|(f, _)| f == rel),
                    "docker-compose refuses {rel}: {e}"
                );
                continue;
            }
            let config: Value = serde_yaml::from_slice(&out.stdout).unwrap();
            let services = config["services"].as_mapping().unwrap();
            let names: BTreeSet<String> = services
                .keys()
                .map(|k| k.as_str().unwrap().to_string())
                .collect();
            let ours: BTreeSet<String> = project.services.keys().cloned().collect();
            assert_eq!(names, ours, "{rel}: the services");
            for (name, dc) in services {
                let name = name.as_str().unwrap();
                let at = format!("{rel}: service `{name}`");
                compare(&project, &project.services[name], dc, &at);
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 89, "services compared");
}

/// A scalar of the output, whose `$` docker-compose writes as `$$`.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.replace("$$", "$"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn list(v: Option<&Value>) -> Vec<String> {
    match v {
        None => Vec::new(),
        Some(Value::Sequence(items)) => items.iter().map(text).collect(),
        Some(other) => vec![text(other)],
    }
}

/// A list of `k=v` / `k:v` or a mapping, as pairs.
fn pairs(v: Option<&Value>, sep: char) -> BTreeMap<String, Option<String>> {
    match v {
        None => BTreeMap::new(),
        Some(Value::Mapping(m)) => m
            .iter()
            .map(|(k, v)| (text(k), (!v.is_null()).then(|| text(v))))
            .collect(),
        Some(other) => list(Some(other))
            .into_iter()
            .map(|i| match i.split_once(sep) {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (i, None),
            })
            .collect(),
    }
}

fn words(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::String(s) => Some(shlex::split(&s.replace("$$", "$")).unwrap()),
        other => Some(list(Some(other))),
    }
}

fn ns(v: Option<&Value>) -> Option<i64> {
    v.map(|d| super::values::duration_ns(&text(d)).unwrap())
}

fn compare(project: &Project, s: &Service, dc: &Value, at: &str) {
    let get = |k: &str| dc.get(k);
    let more = &s.more;
    for key in dc.as_mapping().unwrap().keys() {
        let key = key.as_str().unwrap();
        let compared = [
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
            "networks",
            "network_mode",
            "healthcheck",
            "restart",
            "labels",
            "user",
            "working_dir",
            "hostname",
            "extra_hosts",
            "cap_add",
            "cap_drop",
            "tmpfs",
            "init",
            "privileged",
            "read_only",
            "tty",
            "sysctls",
            "ulimits",
            "depends_on",
            "stop_grace_period",
            "stop_signal",
            "platform",
            "cpus",
            "mem_limit",
        ];
        let listed = NOT_COMPARED.iter().find(|(k, _)| *k == key);
        assert!(
            compared.contains(&key) || listed.is_some(),
            "{at}: `{key}` is neither compared nor listed as not compared"
        );
        if listed.is_some_and(|(_, why)| why.starts_with("not supported")) {
            let warning = format!("service `{}`: key `{key}` is not supported", s.name);
            assert!(
                project.warnings.iter().any(|w| w.starts_with(&warning)),
                "{at}: no warning names `{key}`"
            );
        }
    }
    let image = get("image")
        .map(text)
        .unwrap_or_else(|| format!("corpus_{}", s.name));
    assert_eq!(s.image, image, "{at}: image");
    if let Some(b) = get("build") {
        let ours = more.build.as_ref().expect("a build");
        assert_eq!(
            ours.context,
            Path::new(&text(&b["context"])),
            "{at}: build context"
        );
        let dockerfile = b.get("dockerfile").map(text).unwrap_or("Dockerfile".into());
        assert_eq!(ours.dockerfile, dockerfile, "{at}: dockerfile");
        assert_eq!(ours.target, b.get("target").map(text), "{at}: build target");
        let args: BTreeMap<String, String> = pairs(b.get("args"), '=')
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
        assert_eq!(ours.args, args, "{at}: build args");
    }
    let name = get("container_name")
        .map(text)
        .unwrap_or(format!("corpus_{}_1", s.name));
    assert_eq!(s.container_name, name, "{at}: container_name");
    assert_eq!(s.command, words(get("command")), "{at}: command");
    assert_eq!(s.entrypoint, words(get("entrypoint")), "{at}: entrypoint");
    for (k, v) in pairs(get("environment"), '=') {
        match v {
            Some(v) => assert_eq!(s.env.get(&k), Some(&v), "{at}: environment {k}"),
            None => assert!(
                !s.env.contains_key(&k),
                "{at}: environment {k} has no value"
            ),
        }
    }
    let env_files: Vec<PathBuf> = list(get("env_file")).iter().map(PathBuf::from).collect();
    let ours: Vec<PathBuf> = s.env_files.iter().map(|f| f.path.clone()).collect();
    assert_eq!(ours, env_files, "{at}: env_file");
    compare_ports(s, get("ports"), at);
    for e in list(get("expose")) {
        let e = if e.contains('/') {
            e
        } else {
            format!("{e}/tcp")
        };
        assert!(s.exposed.contains(&e), "{at}: expose {e}");
    }
    compare_volumes(project, s, get("volumes"), at);
    let networks: BTreeMap<String, Value> = match get("networks") {
        None => BTreeMap::from([("default".into(), Value::Null)]),
        Some(Value::Sequence(n)) => n.iter().map(|n| (text(n), Value::Null)).collect(),
        Some(Value::Mapping(m)) => m.iter().map(|(k, v)| (text(k), v.clone())).collect(),
        Some(other) => panic!("{at}: networks {other:?}"),
    };
    if get("network_mode").is_some() {
        assert_eq!(
            more.network_mode,
            get("network_mode").map(text),
            "{at}: network_mode"
        );
    } else {
        let keys: BTreeSet<&String> = networks.keys().collect();
        assert_eq!(
            s.networks.keys().collect::<BTreeSet<_>>(),
            keys,
            "{at}: networks"
        );
        for (n, settings) in &networks {
            for alias in list(settings.get("aliases")) {
                assert!(s.networks[n].contains(&alias), "{at}: alias {alias} on {n}");
            }
            let ip = settings.get("ipv4_address").map(text);
            assert_eq!(
                more.ipv4_address.get(n).cloned(),
                ip,
                "{at}: ipv4_address on {n}"
            );
        }
    }
    if let Some(h) = get("healthcheck") {
        let ours = s.healthcheck.as_ref().expect("a healthcheck");
        let test = match h.get("test") {
            Some(t @ Value::String(_)) => vec!["CMD-SHELL".to_string(), text(t)],
            t => list(t),
        };
        let test = if h.get("disable").is_some_and(|d| d == &Value::Bool(true)) {
            vec!["NONE".to_string()]
        } else {
            test
        };
        assert_eq!(ours.test, test, "{at}: healthcheck test");
        assert_eq!(
            ours.interval,
            ns(h.get("interval")),
            "{at}: healthcheck interval"
        );
        assert_eq!(
            ours.timeout,
            ns(h.get("timeout")),
            "{at}: healthcheck timeout"
        );
        assert_eq!(
            ours.start_period,
            ns(h.get("start_period")),
            "{at}: start_period"
        );
        let retries = h.get("retries").map(|r| text(r).parse::<i64>().unwrap());
        assert_eq!(ours.retries, retries, "{at}: healthcheck retries");
    }
    let restart = s.restart.as_ref().map(|(p, n)| {
        if *n == 0 {
            p.clone()
        } else {
            format!("{p}:{n}")
        }
    });
    assert_eq!(restart, get("restart").map(text), "{at}: restart");
    let labels: BTreeMap<String, String> = pairs(get("labels"), '=')
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
    assert_eq!(s.labels, labels, "{at}: labels");
    assert_eq!(s.user, get("user").map(text), "{at}: user");
    assert_eq!(
        s.working_dir,
        get("working_dir").map(text),
        "{at}: working_dir"
    );
    assert_eq!(s.hostname, get("hostname").map(text), "{at}: hostname");
    let hosts: Vec<String> = pairs(get("extra_hosts"), ':')
        .into_iter()
        .map(|(k, v)| format!("{k}:{}", v.unwrap_or_default()))
        .collect();
    let mut ours = more.extra_hosts.clone();
    ours.sort();
    assert_eq!(ours, hosts, "{at}: extra_hosts");
    assert_eq!(more.cap_add, list(get("cap_add")), "{at}: cap_add");
    assert_eq!(more.cap_drop, list(get("cap_drop")), "{at}: cap_drop");
    let tmpfs: BTreeSet<String> = list(get("tmpfs"))
        .iter()
        .map(|t| t.split(':').next().unwrap().to_string())
        .collect();
    let ours: BTreeSet<String> = more.tmpfs.keys().cloned().collect();
    assert!(tmpfs.is_subset(&ours), "{at}: tmpfs {tmpfs:?} in {ours:?}");
    let flag = |k: &str| get(k).is_some_and(|v| text(v) == "true");
    assert_eq!(more.init, get("init").map(|_| flag("init")), "{at}: init");
    assert_eq!(
        (more.privileged, more.read_only, more.tty, more.stdin_open),
        (
            flag("privileged"),
            flag("read_only"),
            flag("tty"),
            flag("stdin_open")
        ),
        "{at}: privileged, read_only, tty, stdin_open"
    );
    let sysctls: BTreeMap<String, String> = pairs(get("sysctls"), '=')
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
    assert_eq!(more.sysctls, sysctls, "{at}: sysctls");
    if let Some(Value::Mapping(u)) = get("ulimits") {
        for (k, v) in u {
            let (soft, hard) = match v {
                Value::Mapping(_) => (text(&v["soft"]), text(&v["hard"])),
                n => (text(n), text(n)),
            };
            let want = (soft.parse().unwrap(), hard.parse().unwrap());
            assert_eq!(
                more.ulimits.get(&text(k)),
                Some(&want),
                "{at}: ulimit {k:?}"
            );
        }
    }
    let depends: BTreeMap<String, String> = match get("depends_on") {
        None => BTreeMap::new(),
        Some(Value::Mapping(m)) => m
            .iter()
            .map(|(k, v)| {
                (
                    text(k),
                    v.get("condition")
                        .map(text)
                        .unwrap_or("service_started".into()),
                )
            })
            .collect(),
        Some(other) => list(Some(other))
            .into_iter()
            .map(|d| (d, "service_started".into()))
            .collect(),
    };
    assert_eq!(s.depends_on, depends, "{at}: depends_on");
    let grace = ns(get("stop_grace_period")).map(|n| n / 1_000_000_000);
    assert_eq!(s.stop_grace_seconds, grace, "{at}: stop_grace_period");
    assert_eq!(
        s.stop_signal,
        get("stop_signal").map(text),
        "{at}: stop_signal"
    );
    assert_eq!(more.platform, get("platform").map(text), "{at}: platform");
    let cpus = get("cpus").map(|c| (text(c).parse::<f64>().unwrap() * 1e9).round() as i64);
    if cpus.is_some() {
        assert_eq!(more.nano_cpus, cpus, "{at}: cpus");
    }
    if get("mem_limit").is_some() {
        assert!(more.memory.is_some(), "{at}: mem_limit");
    }
}

fn compare_ports(s: &Service, ports: Option<&Value>, at: &str) {
    let mut want = BTreeSet::new();
    for p in ports.and_then(Value::as_sequence).into_iter().flatten() {
        let (container, ip, host) = match p {
            Value::Mapping(_) => {
                let proto = p.get("protocol").map(text).unwrap_or("tcp".into());
                let target = format!("{}/{proto}", text(&p["target"]));
                (
                    target,
                    p.get("host_ip").map(text).unwrap_or_default(),
                    p.get("published").map(text).unwrap_or_default(),
                )
            }
            short => {
                let short = text(short);
                let (spec, proto) = short.split_once('/').unwrap_or((&short, "tcp"));
                let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
                let (c, h, ip) = match parts.as_slice() {
                    [c] => (*c, "", ""),
                    [c, h] => (*c, *h, ""),
                    [c, h, ip] => (*c, *h, *ip),
                    _ => panic!("{at}: port {short}"),
                };
                (format!("{c}/{proto}"), ip.to_string(), h.to_string())
            }
        };
        assert!(
            s.exposed.contains(&container),
            "{at}: port {container} exposed"
        );
        if !host.is_empty() || !ip.is_empty() {
            want.insert((container, ip, host));
        }
    }
    let ours: BTreeSet<(String, String, String)> = s
        .ports
        .iter()
        .map(|p| (p.container.clone(), p.host_ip.clone(), p.host_port.clone()))
        .collect();
    assert_eq!(ours, want, "{at}: ports");
}

fn compare_volumes(project: &Project, s: &Service, volumes: Option<&Value>, at: &str) {
    let mut binds = BTreeSet::new();
    let mut anonymous = BTreeSet::new();
    for v in volumes.and_then(Value::as_sequence).into_iter().flatten() {
        let (source, target, mode) = match v {
            Value::Mapping(_) => {
                let ro = v.get("read_only").is_some_and(|r| text(r) == "true");
                (
                    v.get("source").map(text),
                    text(&v["target"]),
                    if ro { "ro" } else { "" }.to_string(),
                )
            }
            short => {
                let short = text(short);
                let parts: Vec<&str> = short.split(':').collect();
                match parts.as_slice() {
                    [t] => (None, t.to_string(), String::new()),
                    [s, t] => (Some(s.to_string()), t.to_string(), String::new()),
                    [s, t, m] => (Some(s.to_string()), t.to_string(), m.to_string()),
                    _ => panic!("{at}: volume {short}"),
                }
            }
        };
        let Some(source) = source else {
            anonymous.insert(target);
            continue;
        };
        let source = match project.volumes.get(&source) {
            Some(named) => named.name.clone(),
            None => source,
        };
        let mode = if mode == "rw" { String::new() } else { mode };
        binds.insert(if mode.is_empty() {
            format!("{source}:{target}")
        } else {
            format!("{source}:{target}:{mode}")
        });
    }
    let ours: BTreeSet<String> = s
        .binds
        .iter()
        .map(|b| b.strip_suffix(":rw").unwrap_or(b).to_string())
        .filter(|b| {
            !b.contains("/run/secrets/")
                && !project
                    .configs
                    .keys()
                    .any(|c| b.ends_with(&format!(":/{c}:ro")))
        })
        .collect();
    assert_eq!(ours, binds, "{at}: volumes");
    let ours: BTreeSet<String> = s.anonymous_volumes.iter().cloned().collect();
    assert_eq!(ours, anonymous, "{at}: anonymous volumes");
}
