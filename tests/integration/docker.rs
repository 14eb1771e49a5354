//! The Docker steps against the real engine, with the images scripts/images.sh builds.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Project, SENTINEL, tool_output};

/// A compose project of one test, removed (containers, networks, volumes, tags) when dropped.
pub(crate) struct Stack {
    pub(crate) name: String,
}

impl Stack {
    pub(crate) fn new(test: &str) -> Self {
        Stack {
            name: format!("rt{test}{}", std::process::id()),
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let label = format!("label=com.docker.compose.project={}", self.name);
        let ids = docker(&["ps", "-aq", "--filter", &label]);
        for id in ids.split_whitespace() {
            let _ = Command::new("docker").args(["rm", "-f", "-v", id]).output();
        }
        for kind in ["network", "volume"] {
            let names = docker(&[kind, "ls", "-q", "--filter", &label]);
            for n in names.split_whitespace() {
                let _ = Command::new("docker").args([kind, "rm", n]).output();
            }
        }
        let images = docker(&[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            &format!("{}-app", self.name),
        ]);
        for tag in images.split_whitespace() {
            let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
        }
    }
}

pub(crate) fn docker(args: &[&str]) -> String {
    let mut command = Command::new("docker");
    command.args(args);
    tool_output(command)
}

fn inspect(container: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, container])
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

pub(crate) fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

const COMPOSE: &str = r#"version: "3.8"
services:
  postgres:
    image: postgres:15-alpine
    environment:
      POSTGRES_USER: relay
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
      POSTGRES_DB: relay
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U relay -d relay"]
      interval: 1s
      timeout: 3s
      retries: 30
    volumes:
      - pgdata:/var/lib/postgresql/data
  redis:
    image: redis:7-alpine
    command: redis-server --appendonly yes --requirepass ${REDIS_PASSWORD}
    healthcheck:
      test: ["CMD-SHELL", "redis-cli -a \"$$REDIS_PASSWORD\" --no-auth-warning ping | grep PONG"]
      interval: 1s
      retries: 30
    environment:
      REDIS_PASSWORD: ${REDIS_PASSWORD}
  app:
    image: {{vars.app_image}}
    env_file: [.env]
    environment:
      REDIS_HOST: redis
      ENABLE_POSTGRES: "true"
      POSTGRES_HOST: postgres
      POSTGRES_DATABASE: relay
      POSTGRES_USER: relay
    ports:
      - "127.0.0.1:${APP_PORT:-3000}:3000"
    healthcheck:
      test: ["CMD-SHELL", "curl -fsS http://127.0.0.1:3000/health"]
      interval: 1s
      timeout: 2s
      retries: 3
    restart: unless-stopped
    depends_on:
      postgres:
        condition: service_healthy
      redis:
        condition: service_healthy
    logging:
      driver: json-file
volumes:
  pgdata:
"#;

fn playbook(stack: &Stack, context: &str, wait: &str, port: u16) -> String {
    format!(
        r#"[playbook]
name = "docker"
on_failure = "rollback"

[vars]
app_image = "{name}-app:current"
app_port = {port}

[secrets]
DB_PASSWORD = {{ env = "DB_PASSWORD" }}

[[steps]]
id = "build"
kind = "docker_build"
context = "{context}"
tags = ["{name}-app:{{{{run.id}}}}", "{name}-app:current"]

[[steps]]
id = "env"
kind = "template"
template = "env.hbs"
dest = "deploy/.env"
mode = "0600"

[[steps]]
id = "compose-file"
kind = "template"
template = "compose.hbs"
dest = "deploy/docker-compose.yml"

[[steps]]
id = "up"
kind = "compose_up"
file = "deploy/docker-compose.yml"
project = "{name}"
wait = "{wait}"
"#,
        name = stack.name,
    )
}

fn project(stack: &Stack, port: u16) -> Project {
    let p = Project::new();
    let app = concat!(env!("CARGO_MANIFEST_DIR"), "/images/relay-app");
    p.write("app/Dockerfile", &std::fs::read_to_string(format!("{app}/Dockerfile")).unwrap())
        .write("app/app.py", &std::fs::read_to_string(format!("{app}/app.py")).unwrap())
        .write("app/.dockerignore", "notes/\n")
        .write("app/notes/big.txt", "left out of the build context")
        .write("broken/Dockerfile", "FROM runner-base:bookworm\nCMD [\"sleep\", \"infinity\"]\n")
        .write(
            "env.hbs",
            "REDIS_PASSWORD={{secrets.DB_PASSWORD}}\nPOSTGRES_PASSWORD={{secrets.DB_PASSWORD}}\nAPP_PORT={{vars.app_port}}\n",
        )
        .write("compose.hbs", COMPOSE)
        .write("up.toml", &playbook(stack, "app", "90s", port))
        .write("broken.toml", &playbook(stack, "broken", "6s", port));
    p
}

#[test]
fn compose_up_starts_the_stack_in_order_leaves_it_alone_then_rolls_back_a_bad_replacement() {
    let stack = Stack::new("up");
    let port = free_port();
    let p = project(&stack, port);
    let first = p.run(&["apply", "--yes", "up.toml"]).expect(0);
    assert!(!first.stdout.contains(SENTINEL) && !first.stderr.contains(SENTINEL));
    assert!(!p.journals().contains(SENTINEL));
    // The unsupported `logging` key is a journaled warning that names it.
    assert!(
        p.journals().contains("key `logging` is not supported"),
        "{}",
        p.journals()
    );

    let compose = p.file("deploy/docker-compose.yml");
    let compose = compose.to_str().unwrap();
    let cli = |args: &[&str]| {
        let mut command = Command::new("docker-compose");
        command.args(["-p", &stack.name, "-f", compose]).args(args);
        tool_output(command)
    };
    cli(&["config", "-q"]);
    let ps = cli(&["ps"]);
    for service in ["postgres", "redis", "app"] {
        let name = format!("{}_{service}_1", stack.name);
        assert!(ps.contains(&name), "docker-compose ps lists {name}:\n{ps}");
        assert_eq!(inspect(&name, "{{.State.Health.Status}}"), "healthy");
    }
    // Dependencies first: the app was created after both of its dependencies were healthy.
    let app = format!("{}_app_1", stack.name);
    let created = |c: &str| inspect(c, "{{.Created}}");
    assert!(created(&app) > created(&format!("{}_postgres_1", stack.name)));
    assert!(created(&app) > created(&format!("{}_redis_1", stack.name)));
    let health = http_get(port, "/health").expect("the app answers on its published port");
    assert!(
        health.contains(r#""redis": true"#) && health.contains(r#""postgres": true"#),
        "{health}"
    );
    // The app keeps its PostgreSQL connections: 200 requests, 8 at a time, open at most its
    // pool's 20 sessions, counted by PostgreSQL (psycopg2's pool closed each connection given
    // back beyond the first, so that every concurrent request opened a session of its own).
    let sessions = || -> u64 {
        let pg = format!("{}_postgres_1", stack.name);
        let sql = "SELECT sessions FROM pg_stat_database WHERE datname = 'relay'";
        let out = docker(&[
            "exec", &pg, "psql", "-U", "relay", "-d", "relay", "-Atc", sql,
        ]);
        out.trim().parse().expect("a count of sessions")
    };
    let before = sessions();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..25 {
                    let answer = http_get(port, "/health").unwrap_or_default();
                    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
                }
            });
        }
    });
    let opened = sessions() - before;
    assert!(
        opened <= 20,
        "200 requests opened {opened} PostgreSQL sessions"
    );
    // The build context left out what .dockerignore names.
    assert!(
        !docker(&[
            "history",
            "--no-trunc",
            &format!("{}-app:current", stack.name)
        ])
        .is_empty()
    );

    let ids = |()| {
        ["postgres", "redis", "app"].map(|s| inspect(&format!("{}_{s}_1", stack.name), "{{.Id}}"))
    };
    let before = ids(());
    let again = p.run(&["apply", "--yes", "up.toml"]).expect(0);
    assert!(
        again.stdout.contains("unchanged: postgres, redis, app"),
        "{}",
        again.stdout
    );
    assert_eq!(
        ids(()),
        before,
        "nothing changed, so no container was touched"
    );

    let image_before = inspect(&app, "{{.Image}}");
    let bad = p.run(&["apply", "--yes", "broken.toml"]).expect(4);
    assert!(
        bad.stdout.contains("service `app` is unhealthy"),
        "{}",
        bad.stdout
    );
    assert_eq!(
        inspect(&app, "{{.Id}}"),
        before[2],
        "the same container is back"
    );
    assert_eq!(inspect(&app, "{{.Image}}"), image_before);
    assert_eq!(
        docker(&[
            "image",
            "inspect",
            "-f",
            "{{.Id}}",
            &format!("{}-app:current", stack.name)
        ]),
        image_before,
        "the tag points at the previous image again"
    );
    wait_until(
        "the restored app is healthy",
        Duration::from_secs(30),
        || inspect(&app, "{{.State.Health.Status}}") == "healthy",
    );
    assert!(http_get(port, "/health").is_some_and(|h| h.contains("200 OK")));
}

#[test]
fn docker_failures_name_the_service() {
    let stack = Stack::new("err");
    let p = Project::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    p.write(
        "deploy/docker-compose.yml",
        &format!(
            "services:\n  ghost:\n    image: {}-missing:1\n  cache:\n    image: redis:7-alpine\n    ports: [\"127.0.0.1:{port}:6379\"]\n",
            stack.name
        ),
    );
    let step = |service: &str| {
        format!(
            "[playbook]\nname = \"e\"\n\n[[steps]]\nid = \"up\"\nkind = \"compose_up\"\nfile = \"deploy/docker-compose.yml\"\nproject = \"{}\"\nservices = [\"{service}\"]\nwait = \"20s\"\n",
            stack.name
        )
    };
    p.write("ghost.toml", &step("ghost"))
        .write("cache.toml", &step("cache"));

    let missing = p.run(&["apply", "--yes", "ghost.toml"]).expect(4);
    assert!(
        missing.stdout.contains(&format!(
            "service `ghost`: image `{}-missing:1` is not present and could not be pulled",
            stack.name
        )),
        "{}",
        missing.stdout
    );

    let busy = p.run(&["apply", "--yes", "cache.toml"]).expect(4);
    assert!(
        busy.stdout
            .contains("service `cache`: cannot start container"),
        "{}",
        busy.stdout
    );
    assert!(busy.stdout.contains(&port.to_string()), "{}", busy.stdout);
    let label = format!("label=com.docker.compose.project={}", stack.name);
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &label]),
        "",
        "rollback removed what was created"
    );

    let mut command = p.command(&["apply", "--yes", "cache.toml"]);
    command.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    let down = crate::support::finish(command).expect(4);
    assert!(
        down.stdout.contains(
            "services cache: the Docker engine at unix:///nonexistent/docker.sock is unreachable"
        ),
        "{}",
        down.stdout
    );
    drop(taken);
}

#[test]
fn compose_down_is_undone_by_rollback_and_a_failed_build_names_its_instruction() {
    let stack = Stack::new("down");
    let p = Project::new();
    p.write(
        "deploy/docker-compose.yml",
        "services:\n  cache:\n    image: redis:7-alpine\n    healthcheck:\n      test: [\"CMD\", \"redis-cli\", \"ping\"]\n      interval: 1s\n",
    )
    .write("bad/Dockerfile", "FROM runner-base:bookworm\nRUN echo building && false\n");
    let head = |steps: &str| {
        format!(
            "[playbook]\nname = \"d\"\n\n[[steps]]\nid = \"down\"\nkind = \"compose_{steps}\"\nfile = \"deploy/docker-compose.yml\"\nproject = \"{}\"\nservices = [\"cache\"]\n",
            stack.name
        )
    };
    p.write("up.toml", &head("up"));
    p.write(
        "down.toml",
        &format!(
            "{}\n[[steps]]\nid = \"build\"\nkind = \"docker_build\"\ncontext = \"bad\"\ntags = [\"{}-bad:1\"]\n",
            head("down"),
            stack.name
        ),
    );
    p.run(&["apply", "--yes", "up.toml"]).expect(0);
    let cache = format!("{}_cache_1", stack.name);
    let id = inspect(&cache, "{{.Id}}");

    let run = p.run(&["apply", "--yes", "down.toml"]).expect(4);
    assert!(
        run.stdout.contains("ok      down  stopped cache"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("`Step 2/2 : RUN echo building && false` failed"),
        "{}",
        run.stdout
    );
    assert_eq!(
        inspect(&cache, "{{.Id}}"),
        id,
        "rollback put the same container back"
    );
    assert_eq!(inspect(&cache, "{{.State.Running}}"), "true");
    assert_eq!(inspect(&cache, "{{.State.Health.Status}}"), "healthy");

    p.write(
        "prune.toml",
        "[playbook]\nname = \"p\"\n\n[[steps]]\nid = \"prune\"\nkind = \"docker_prune\"\n",
    );
    let pruned = p.run(&["apply", "--yes", "prune.toml"]).expect(0);
    assert!(pruned.stdout.contains("reclaimed"), "{}", pruned.stdout);
    assert_eq!(
        inspect(&cache, "{{.State.Running}}"),
        "true",
        "prune leaves used images alone"
    );
}

#[test]
fn container_stats_then_a_monitor_window_over_error_lines_trips_and_rolls_back() {
    let stack = Stack::new("mon");
    let label = format!("com.docker.compose.project={}", stack.name);
    let start = |name: &str, script: &str| {
        docker(&[
            "run",
            "-d",
            "--name",
            &format!("{}_{name}", stack.name),
            "--label",
            &label,
            "runner-base:bookworm",
            "sh",
            "-c",
            script,
        ]);
    };
    start("quiet", "echo starting; sleep infinity");
    start(
        "noisy",
        "sleep 1; while true; do echo 'ERROR upstream timed out'; sleep 0.2; done",
    );
    let p = Project::new();
    let playbook = |name: &str, window: &str| {
        format!(
            r#"[playbook]
name = "watch"

[[steps]]
id = "marker"
kind = "template"
template = "marker.hbs"
dest = "marker.txt"

[[steps]]
id = "watch"
kind = "monitor"
containers = ["{}_{name}"]
window = "{window}"
interval = "300ms"
errors_warning = 2
errors_critical = 6
"#,
            stack.name
        )
    };
    p.write("marker.hbs", "deployed\n")
        .write("quiet.toml", &playbook("quiet", "2s"))
        .write("noisy.toml", &playbook("noisy", "60s"));
    let quiet = p.run(&["apply", "--yes", "quiet.toml"]).expect(0);
    assert!(
        quiet
            .stdout
            .contains("containers ok, 0 line(s) matching /ERROR/"),
        "{}",
        quiet.stdout
    );
    std::fs::remove_file(p.file("marker.txt")).unwrap();

    let stats = |limits: &str| {
        format!(
            "[playbook]\nname = \"stats\"\n\n[[steps]]\nid = \"stats\"\nkind = \"verify\"\ncontainers = {{ names = [\"{}_quiet\"]{limits} }}\n",
            stack.name
        )
    };
    p.write("stats.toml", &stats(""))
        .write("tight.toml", &stats(", memory_max_mb = 0.001"));
    let ok = p.run(&["apply", "--yes", "stats.toml"]).expect(0);
    assert!(ok.stdout.contains("2 check(s): 2 ok"), "{}", ok.stdout);
    let tight = p.run(&["apply", "--yes", "tight.toml"]).expect(4);
    assert!(
        tight
            .stdout
            .contains(&format!("container.{}_quiet.memory", stack.name))
            && tight
                .stdout
                .contains("(threshold: below 0.001 MB) critical"),
        "{}",
        tight.stdout
    );

    let noisy = p.run(&["apply", "--yes", "noisy.toml"]).expect(4);
    assert!(noisy.stdout.contains("critical at t+"), "{}", noisy.stdout);
    assert!(
        noisy
            .stdout
            .contains("log line(s) matching /ERROR/ since the window began (critical at 6)"),
        "{}",
        noisy.stdout
    );
    assert!(
        noisy.stdout.contains("reached the warning threshold (2)"),
        "the warning came first:\n{}",
        noisy.stdout
    );
    assert!(
        p.read("marker.txt").is_none(),
        "the run rolled back the step before the monitor"
    );
    assert!(
        p.journals().contains("line(s) matching /ERROR/\""),
        "samples are journaled"
    );
}
