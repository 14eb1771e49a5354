//! Compose files nobody here wrote, planned and applied on the real engine: the runbook's
//! (its app has `build: .` and no `image`) and the relay's own (with its `.env.example` as
//! `.env`; three services behind `profiles: [monitoring]`). No registry: the images are those
//! scripts/images.sh builds, and the app is a tiny local build. What the test changes in each
//! file is listed where it changes it (host ports, names shared by the machine, and health
//! intervals, to be fast).

use std::time::Duration;

use crate::docker::{Stack, docker, free_port, http_get, wait_until};
use crate::support::Project;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/compose-corpus");

/// The app: a build context whose image answers `/health` on port 3000 and has curl.
fn app_context(p: &Project, dir: &str) {
    p.write(
        &format!("{dir}/Dockerfile"),
        "FROM runner-base:bookworm\nRUN mkdir -p /www && echo ok > /www/health\nCMD [\"python3\", \"-m\", \"http.server\", \"3000\", \"--directory\", \"/www\"]\n",
    );
}

fn state(container: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
        container,
    ])
}

fn playbook(stack: &Stack, file: &str) -> String {
    format!(
        "[playbook]\nname = \"real\"\n\n[[steps]]\nid = \"up\"\nkind = \"compose_up\"\nfile = \"{file}\"\nproject = \"{}\"\nwait = \"90s\"\n",
        stack.name
    )
}

/// Host ports of the runbook's stack.
pub(crate) struct Ports {
    pub(crate) redis: u16,
    pub(crate) postgres: u16,
    pub(crate) app: u16,
}

/// Writes the runbook's compose file into `dir` for `stack`, with what its binds and build
/// need. Changed: host ports (the machine's own services hold 6379 and 5432), the fixed names
/// (other sessions share this engine), health intervals (30s and 40s would be slow) and
/// retries (docker-compose gives up on a dependency once it is unhealthy, and PostgreSQL's
/// first start takes more than 3s), and Redis keeps an append-only file.
pub(crate) fn runbook_stack(p: &Project, stack: &Stack, dir: &str) -> Ports {
    let text =
        std::fs::read_to_string(format!("{CORPUS}/runbook/docker-compose.hybrid.yml")).unwrap();
    let ports = Ports {
        redis: free_port(),
        postgres: free_port(),
        app: free_port(),
    };
    let text = text
        .replace("claude-relay-", &format!("{}-", stack.name))
        .replace(
            "\"6379:6379\"",
            &format!("\"127.0.0.1:{}:6379\"", ports.redis),
        )
        .replace(
            "\"5432:5432\"",
            &format!("\"127.0.0.1:{}:5432\"", ports.postgres),
        )
        .replace(
            "\"3000:3000\"",
            &format!("\"127.0.0.1:{}:3000\"", ports.app),
        )
        .replace("interval: 10s", "interval: 1s")
        .replace("interval: 30s", "interval: 1s")
        .replace("retries: 3\n", "retries: 60\n")
        .replace("start_period: 40s", "start_period: 1s");
    p.write(&format!("{dir}/docker-compose.hybrid.yml"), &text)
        .write(
            &format!("{dir}/docker/redis/redis.conf"),
            "port 6379\nbind 0.0.0.0\nappendonly yes\nappendfsync always\n",
        )
        .write(&format!("{dir}/docker/postgres/init/.keep"), "")
        .write(&format!("{dir}/docker/postgres/postgresql.conf"), "\n");
    app_context(p, dir);
    ports
}

#[test]
fn the_runbooks_compose_file_builds_its_app_and_starts_the_default_profile() {
    let stack = Stack::new("rb");
    let p = Project::new();
    let Ports { app, .. } = runbook_stack(&p, &stack, "stack");
    p.write(
        "up.toml",
        &playbook(&stack, "stack/docker-compose.hybrid.yml"),
    );
    let image = format!("{}_claude-relay", stack.name);
    let _image = Image(image.clone());

    let plan = p.run(&["plan", "--show-compose", "up.toml"]).expect(0);
    for left_out in ["redis-insight", "pgadmin", "grafana"] {
        assert!(
            plan.stdout.contains(&format!(
                "{left_out} is left out (profiles monitoring not enabled)"
            )),
            "{}",
            plan.stdout
        );
    }
    assert!(
        plan.stdout.contains(&format!("build `{image}` from")),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains(&format!("image: {image}\n")),
        "{}",
        plan.stdout
    );

    p.run(&["apply", "--yes", "up.toml"]).expect(0);
    for c in ["redis", "postgres", "app"] {
        assert_eq!(
            state(&format!("{}-{c}", stack.name)),
            "running healthy",
            "{c}"
        );
    }
    for c in ["redis-insight", "pgadmin", "grafana"] {
        let name = format!("{}-{c}", stack.name);
        assert!(
            docker(&["ps", "-aq", "--filter", &format!("name=^{name}$")]).is_empty(),
            "{c} was not created"
        );
    }
    assert!(http_get(app, "/health").is_some_and(|h| h.contains("200 OK")));
    // Built as docker-compose v1 names it, and the network and volumes under their `name:`.
    assert!(!docker(&["image", "inspect", "-f", "{{.Id}}", &image]).is_empty());
    docker(&["network", "inspect", &format!("{}-network", stack.name)]);
    docker(&["volume", "inspect", &format!("{}-redis-data", stack.name)]);

    p.run(&["rollback", "--yes"]).expect(0);
    assert!(
        docker(&["images", "-q", &image]).is_empty(),
        "rollback removes the tag the build made (it did not exist before)"
    );
    let left = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("name=^{}-app$", stack.name),
    ]);
    assert!(left.is_empty(), "and the app container it created");
}

#[test]
fn the_relays_compose_file_with_its_env_example_starts_only_the_default_profile() {
    let stack = Stack::new("rl");
    let p = Project::new();
    let dir = format!("{CORPUS}/relay");
    let text = std::fs::read_to_string(format!("{dir}/docker-compose.yml")).unwrap();
    let env = std::fs::read_to_string(format!("{dir}/.env.example")).unwrap();
    let port = free_port();
    // Changed: the image the build is tagged as (a global name), health intervals, and in the
    // `.env` the published port and address.
    let text = text
        .replace(
            "weishaw/claude-relay-service:latest",
            &format!("{}-app:latest", stack.name),
        )
        .replace("interval: 30s", "interval: 1s");
    let env = env.replace(
        "\nPORT=3000\n",
        &format!("\nPORT={port}\nBIND_HOST=127.0.0.1\n"),
    );
    p.write("relay/docker-compose.yml", &text)
        .write("relay/.env", &env)
        .write("up.toml", &playbook(&stack, "relay/docker-compose.yml"));
    app_context(&p, "relay");

    p.run(&["apply", "--yes", "up.toml"]).expect(0);
    let label = format!("label=com.docker.compose.project={}", stack.name);
    let names = docker(&["ps", "-a", "--format", "{{.Names}}", "--filter", &label]);
    let mut names: Vec<&str> = names.split_whitespace().collect();
    names.sort();
    assert_eq!(
        names,
        [
            format!("{}_claude-relay_1", stack.name),
            format!("{}_redis_1", stack.name)
        ],
        "only the default profile"
    );
    wait_until("the relay answers", Duration::from_secs(10), || {
        http_get(port, "/health").is_some_and(|h| h.contains("200 OK"))
    });
    let env = docker(&[
        "inspect",
        "-f",
        "{{range .Config.Env}}{{println .}}{{end}}",
        &format!("{}_claude-relay_1", stack.name),
    ]);
    assert!(env.contains("WEB_TITLE=Claude Relay Service\n"), "{env}");
}

/// Removes an image tag when dropped.
pub(crate) struct Image(pub(crate) String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", &self.0])
            .output();
    }
}

/// `plan --show-compose`: the services as runner will create them, in the shape of
/// `docker-compose config`, with a secret the rendered file and its `.env` hold redacted.
#[test]
fn plan_shows_the_resolved_services_with_secrets_redacted() {
    let p = Project::new();
    p.write(
        "pb.toml",
        "[playbook]\nname = \"view\"\n\n[secrets]\nDB_PASSWORD = { env = \"DB_PASSWORD\" }\n\n[[steps]]\nid = \"render\"\nkind = \"template\"\ntemplate = \"c.hbs\"\ndest = \"deploy/docker-compose.yml\"\n\n[[steps]]\nid = \"env\"\nkind = \"env\"\nfile = \"deploy/.env\"\nset = { PG = \"{{secrets.DB_PASSWORD}}\" }\n\n[[steps]]\nid = \"up\"\nkind = \"compose_up\"\nfile = \"deploy/docker-compose.yml\"\nproject = \"view\"\n",
    )
    .write(
        "c.hbs",
        "x-base: &base\n  restart: unless-stopped\nservices:\n  db:\n    <<: *base\n    image: postgres:15-alpine\n    environment: { POSTGRES_PASSWORD: \"{{secrets.DB_PASSWORD}}\", FROM_ENV: \"${PG}\", \"ÜBER\": \"日本 🚀\" }\n    ports: [5432]\n    expose: [9187]\n    healthcheck: { test: pg_isready, interval: 1m30s, retries: \"${R:-5}\" }\n  debug:\n    image: busybox\n    profiles: [debug]\n",
    );
    let plan = p.run(&["plan", "--show-compose", "pb.toml"]).expect(0);
    let out = &plan.stdout;
    let yaml = out
        .split_once("# step `up` (compose_up): the services as runner will create them\n")
        .map(|(_, y)| y)
        .unwrap_or_else(|| panic!("no compose view in:\n{out}"));
    assert!(!out.contains(crate::support::SENTINEL), "{out}");
    let view: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    let db = &view["services"]["db"];
    assert_eq!(db["container_name"], "view_db_1");
    assert_eq!(db["restart"], "unless-stopped", "the merge key applied");
    assert_eq!(db["environment"]["ÜBER"], "日本 🚀");
    for key in ["POSTGRES_PASSWORD", "FROM_ENV"] {
        let shown = db["environment"][key].as_str().unwrap();
        assert!(
            !shown.is_empty() && !shown.contains(crate::support::SENTINEL),
            "{key}: {shown}"
        );
    }
    assert_eq!(db["healthcheck"]["test"][0], "CMD-SHELL");
    assert_eq!(db["healthcheck"]["interval"], "1m30s");
    assert_eq!(db["healthcheck"]["retries"], 5);
    assert_eq!(db["networks"]["default"]["name"], "view_default");
    assert!(
        db["expose"]
            .as_sequence()
            .unwrap()
            .contains(&"9187/tcp".into())
    );
    assert_eq!(view["x-runner-disabled"]["debug"][0], "debug");
    // Without the flag the plan is as before: no view.
    let plain = p.run(&["plan", "pb.toml"]).expect(0);
    assert!(
        !plain
            .stdout
            .contains("the services as runner will create them")
    );
}

/// The keys of the Compose Specification runner carries out reach the engine: the container
/// and network as `docker inspect` shows them.
#[test]
fn the_specification_keys_reach_the_container() {
    let stack = Stack::new("keys");
    let p = Project::new();
    let subnet = format!("172.{}.0", 100 + std::process::id() % 50);
    p.write(
        "deploy/docker-compose.yml",
        &format!(
            "services:\n  box:\n    image: redis:7-alpine\n    command: [sleep, infinity]\n    init: \"true\"\n    cap_add: [NET_ADMIN]\n    cap_drop: [MKNOD]\n    tmpfs: [\"/scratch:size=1m\"]\n    extra_hosts: {{ db.local: 10.1.2.3 }}\n    ulimits: {{ nofile: {{ soft: 1024, hard: 2048 }} }}\n    sysctls: {{ net.core.somaxconn: 511 }}\n    cpus: 0.5\n    mem_limit: 64m\n    expose: [6000]\n    volumes: [\"./conf:/conf:ro,z\"]\n    secrets: [token]\n    configs: [{{ source: app, target: /etc/app.conf }}]\n    networks: {{ front: {{ ipv4_address: {subnet}.10 }} }}\n    healthcheck: {{ disable: true }}\nnetworks:\n  front:\n    ipam: {{ config: [{{ subnet: {subnet}.0/24 }}] }}\nsecrets:\n  token: {{ file: ./token.txt }}\nconfigs:\n  app: {{ file: ./app.conf }}\n"
        ),
    )
    .write("deploy/conf/x", "x")
    .write("deploy/token.txt", "t0ken")
    .write("deploy/app.conf", "k=v")
    .write("up.toml", &playbook(&stack, "deploy/docker-compose.yml"));
    p.run(&["apply", "--yes", "up.toml"]).expect(0);
    let c = format!("{}_box_1", stack.name);
    let f = |format: &str| docker(&["inspect", "-f", format, &c]);
    assert_eq!(f("{{.HostConfig.Init}}"), "true");
    assert_eq!(
        f("{{.HostConfig.CapAdd}} {{.HostConfig.CapDrop}}"),
        "[NET_ADMIN] [MKNOD]"
    );
    assert_eq!(f("{{.HostConfig.Tmpfs}}"), "map[/scratch:size=1m]");
    assert_eq!(f("{{.HostConfig.ExtraHosts}}"), "[db.local:10.1.2.3]");
    assert_eq!(
        f("{{range .HostConfig.Ulimits}}{{.Name}}={{.Soft}}/{{.Hard}}{{end}}"),
        "nofile=1024/2048"
    );
    assert_eq!(f("{{.HostConfig.Sysctls}}"), "map[net.core.somaxconn:511]");
    assert_eq!(
        f("{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}"),
        "500000000 67108864"
    );
    assert_eq!(f("{{json .Config.Healthcheck.Test}}"), r#"["NONE"]"#);
    let binds = f("{{json .HostConfig.Binds}}");
    for bind in [
        ":/conf:ro,z\"",
        "token.txt:/run/secrets/token:ro\"",
        "app.conf:/etc/app.conf:ro\"",
    ] {
        assert!(binds.contains(bind), "{bind} in {binds}");
    }
    let ip = f(&format!(
        "{{{{(index .NetworkSettings.Networks \"{}_front\").IPAddress}}}}",
        stack.name
    ));
    assert_eq!(ip, format!("{subnet}.10"));
    assert_eq!(
        docker(&["exec", &c, "cat", "/run/secrets/token", "/etc/app.conf"]),
        "t0kenk=v"
    );
}
