//! Compose files read as compose reads them: each key of the Compose Specification runner
//! carries out, and the places errors name.

use std::path::Path;

use super::ports::Port;
use super::*;

const ALL: Selection<'static> = Selection {
    profiles: &[],
    named: &[],
};

fn vars() -> Vars {
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
    let p = load("deploy/docker-compose.yml", text, &vars(), None, dir, &ALL).unwrap();
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
        ["service `app`: deploy key `replicas` is for swarm and is ignored by runner"]
    );
}

#[test]
fn errors_name_the_place() {
    let text = "services:\n  app:\n    image: x\n    environment: [\"K=${NOPE:?}\"]\n";
    let err = load("c.yml", text, &vars(), Some("p"), Path::new("/w"), &ALL).unwrap_err();
    assert!(
        err.starts_with("`c.yml`: error while interpolating services.app.environment[0]: required variable NOPE is missing a value"),
        "{err}"
    );
    let text = "services:\n  app:\n    image: x\n    depends_on: [db]\n";
    let err = load("c.yml", text, &vars(), Some("p"), Path::new("/w"), &ALL).unwrap_err();
    assert!(
        err.contains("depends on `db`, which is not in the file"),
        "{err}"
    );
}

/// The keys of issue 16's item 1, each as compose reads it.
#[test]
fn the_specification_keys_resolve_like_compose() {
    let text = r#"
x-common: &common
  restart: ${RESTART:-on-failure:3}
  init: ${INIT:-true}
  labels: { team: "🚀 ops" }
services:
  web:
    <<: *common
    build: { context: ./app, dockerfile: Dockerfile.prod, args: [GIT=abc, FROM_ENV], target: run }
    platform: linux/amd64
    ports: [3000, "8000-8001:9000-9001/udp"]
    expose: [3306, "4000-4001"]
    extra_hosts: { db.local: 10.0.0.5 }
    env_file: [{ path: ./missing.env, required: false }, ./web.env]
    tmpfs: ["/run:size=64m"]
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    sysctls: { net.core.somaxconn: 1024 }
    ulimits: { nofile: { soft: 20000, hard: 40000 }, nproc: 65535 }
    cpus: "0.5"
    mem_limit: 512m
    privileged: ${PRIV:-false}
    volumes:
      - ~/certs:/certs:ro,z
      - { type: tmpfs, target: /scratch, tmpfs: { size: 1000 } }
      - { type: bind, source: ./conf, target: /conf, read_only: true, bind: { selinux: Z } }
    networks: { front: { ipv4_address: 172.28.0.10, aliases: [www] } }
    healthcheck: { test: [CMD, true], retries: "${R:-4}", start_period: 5s, start_interval: 1s }
    depends_on:
      migrate: { condition: service_completed_successfully }
      cache: { condition: service_started, required: false }
    configs: [nginx]
    secrets: [{ source: token, target: api-token }]
  migrate:
    image: busybox
    network_mode: none
    deploy: { resources: { limits: { cpus: "0.25", memory: 1g } } }
  monitor:
    image: grafana
    profiles: [monitoring]
  off:
    image: x
    healthcheck: { disable: true }
networks:
  front:
    ipam: { config: [{ subnet: 172.28.0.0/16 }] }
  outside: { external: true }
volumes:
  shared: { external: true }
configs:
  nginx: { file: ./nginx.conf }
secrets:
  token: { file: ./token.txt }
  swarm: { external: true }
"#;
    let vars: Vars = [("FROM_ENV", "e"), ("HOME_UNUSED", "")]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    let home = std::env::var("HOME").unwrap();
    let p = load("s/c.yml", text, &vars, Some("p"), Path::new("/w"), &ALL).unwrap();
    assert_eq!(p.disabled["monitor"], ["monitoring"]);
    assert!(!p.services.contains_key("monitor"));
    let web = &p.services["web"];
    let b = web.more.build.as_ref().unwrap();
    assert_eq!(web.image, "p_web");
    assert_eq!(b.context, Path::new("/w/s/app"));
    assert_eq!(
        (b.dockerfile.as_str(), b.target.as_deref()),
        ("Dockerfile.prod", Some("run"))
    );
    assert_eq!(b.args["GIT"], "abc");
    assert_eq!(b.args["FROM_ENV"], "e");
    assert_eq!(web.more.platform.as_deref(), Some("linux/amd64"));
    assert_eq!(web.restart, Some(("on-failure".into(), 3)));
    assert_eq!(web.more.init, Some(true));
    assert!(!web.more.privileged);
    assert_eq!(web.labels["team"], "🚀 ops");
    for port in ["3000/tcp", "3306/tcp", "4001/tcp", "9001/udp"] {
        assert!(web.exposed.contains(port), "{port}");
    }
    assert_eq!(web.ports.len(), 2);
    assert_eq!(
        (
            web.ports[1].container.as_str(),
            web.ports[1].host_port.as_str()
        ),
        ("9001/udp", "8001")
    );
    assert_eq!(web.more.extra_hosts, ["db.local:10.0.0.5"]);
    assert!(!web.env_files[0].required && web.env_files[1].required);
    assert_eq!(web.more.tmpfs["/run"], "size=64m");
    assert_eq!(web.more.tmpfs["/scratch"], "size=1000");
    assert_eq!(web.more.sysctls["net.core.somaxconn"], "1024");
    assert_eq!(web.more.ulimits["nofile"], (20000, 40000));
    assert_eq!(web.more.ulimits["nproc"], (65535, 65535));
    assert_eq!(web.more.nano_cpus, Some(500_000_000));
    assert_eq!(web.more.memory, Some(512 << 20));
    assert_eq!(
        web.binds,
        [
            format!("{home}/certs:/certs:ro,z"),
            "/w/s/conf:/conf:ro,Z".into(),
            "/w/s/nginx.conf:/nginx:ro".into(),
            "/w/s/token.txt:/run/secrets/api-token:ro".into(),
        ]
    );
    assert_eq!(web.networks["front"], ["web", "www"]);
    assert_eq!(web.more.ipv4_address["front"], "172.28.0.10");
    let health = web.healthcheck.as_ref().unwrap();
    assert_eq!(
        (health.retries, health.start_period),
        (Some(4), Some(5_000_000_000))
    );
    assert_eq!(web.depends_on["migrate"], "service_completed_successfully");
    assert!(web.optional.contains("cache"));
    let migrate = &p.services["migrate"];
    assert_eq!(migrate.more.network_mode.as_deref(), Some("none"));
    assert!(migrate.networks.is_empty());
    assert_eq!(
        (migrate.more.nano_cpus, migrate.more.memory),
        (Some(250_000_000), Some(1 << 30))
    );
    assert_eq!(
        p.services["off"].healthcheck.as_ref().unwrap().test,
        ["NONE"]
    );
    // External networks and volumes keep their own names; an ipam is kept.
    assert_eq!(
        (
            p.networks["outside"].name.as_str(),
            p.networks["outside"].external
        ),
        ("outside", true)
    );
    assert_eq!(p.volumes["shared"].name, "shared");
    assert_eq!(
        p.networks["front"].ipam.as_ref().unwrap().config[0]
            .subnet
            .as_deref(),
        Some("172.28.0.0/16")
    );
    for w in [
        "healthcheck.start_interval `1s` is not carried out",
        "secret `swarm` is external (swarm)",
    ] {
        assert!(
            p.warnings.iter().any(|x| x.contains(w)),
            "{w} in {:?}",
            p.warnings
        );
    }
    // Enabling the profile, or naming the service, plans it.
    for selection in [
        Selection {
            profiles: &["monitoring".into()],
            named: &[],
        },
        Selection {
            profiles: &[],
            named: &["monitor".into()],
        },
    ] {
        let p = load(
            "s/c.yml",
            text,
            &vars,
            Some("p"),
            Path::new("/w"),
            &selection,
        )
        .unwrap();
        assert!(p.services.contains_key("monitor") && p.disabled.is_empty());
    }
}

#[test]
fn what_compose_refuses_is_refused_with_its_place() {
    let cases = [
        (
            "services:\n  a:\n    build: .\n    init: maybe\n",
            "service `a`: `maybe` is not a boolean",
        ),
        (
            "services:\n  a:\n    image: x\n    healthcheck: { retries: many }\n",
            "service `a`: `many` is not an integer",
        ),
        (
            "services:\n  a:\n    image: x\n    mem_limit: 3 apples\n",
            "service `a`: `3 apples` is not a size",
        ),
        (
            "services:\n  a:\n    command: x\n",
            "service `a`: it has neither `image` nor `build`",
        ),
        (
            "services:\n  a:\n    image: x\n    secrets: [nope]\n",
            "secret `nope` is not declared",
        ),
        (
            "services:\n  a:\n    image: x\n    volumes: [\"~bob/x:/x\"]\n",
            "not `~user`",
        ),
        (
            "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: y\n    profiles: [debug]\n",
            "depends on `b`, whose profiles (debug) are not enabled",
        ),
        ("x: &a [1]\nservices:\n  <<: *a\n", "merge key `<<`"),
    ];
    for (text, want) in cases {
        let err = load("c.yml", text, &vars(), Some("p"), Path::new("/w"), &ALL).unwrap_err();
        assert!(
            err.starts_with("`c.yml`: ") && err.contains(want),
            "{want}: {err}"
        );
    }
}

/// The config hash's input of a service that uses none of the keys added since the first
/// release is what that release serialized, so the containers it made are not replaced.
#[test]
fn a_plain_service_hashes_as_before() {
    let text = "services:\n  app:\n    image: relay:1\n    ports: [\"127.0.0.1:80:3000\"]\n    healthcheck: { test: [CMD, x], retries: 2 }\n";
    let p = load("c.yml", text, &vars(), Some("p"), Path::new("/w"), &ALL).unwrap();
    assert_eq!(
        serde_json::to_string(&p.services["app"]).unwrap(),
        concat!(
            r#"{"name":"app","container_name":"p_app_1","image":"relay:1","env":{},"env_files":[],"#,
            r#""command":null,"entrypoint":null,"exposed":["3000/tcp"],"#,
            r#""ports":[{"container":"3000/tcp","host_ip":"127.0.0.1","host_port":"80"}],"#,
            r#""binds":[],"anonymous_volumes":[],"networks":{"default":["app"]},"#,
            r#""healthcheck":{"test":["CMD","x"],"interval":null,"timeout":null,"retries":2,"start_period":null},"#,
            r#""restart":null,"labels":{},"depends_on":{},"working_dir":null,"user":null,"#,
            r#""hostname":null,"stop_grace_seconds":null,"stop_signal":null}"#
        )
    );
}
