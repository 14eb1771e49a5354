//! A stack that `docker-compose up` (v1, the machine's 1.29) started from the runbook's
//! compose file, with data in its Redis and PostgreSQL volumes, taken over by runner's first
//! `compose_up` over the same file: the containers whose config is what runner would create
//! are adopted (same ids), a changed service is replaced with its volume's data kept, and
//! rollback leaves the stack as docker-compose made it.

use std::process::Command;

use crate::compose_real::{Image, runbook_stack};
use crate::docker::{Stack, docker};
use crate::support::Project;

const FILE: &str = "stack/docker-compose.hybrid.yml";

/// `docker-compose` over the test's file and project; stdout and stderr together (it reports
/// on stderr).
fn compose(p: &Project, stack: &Stack, args: &[&str]) -> String {
    let out = Command::new("docker-compose")
        .current_dir(p.path())
        .args(["-p", &stack.name, "-f", FILE])
        .args(args)
        .output()
        .expect("docker-compose runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "docker-compose {args:?}:\n{text}");
    text
}

/// The playbook: the data services first, then the app, as `preparation` starts them.
fn playbook(stack: &Stack) -> String {
    let step = |id: &str, services: &str| {
        format!(
            "[[steps]]\nid = \"{id}\"\nkind = \"compose_up\"\nfile = \"{FILE}\"\nproject = \"{}\"\nservices = [{services}]\nwait = \"90s\"\n\n",
            stack.name
        )
    };
    format!(
        "[playbook]\nname = \"adopt\"\n\n{}{}",
        step("start-data", "\"redis\", \"postgres\""),
        step("deploy-app", "\"claude-relay\"")
    )
}

struct Names {
    redis: String,
    postgres: String,
    app: String,
}

fn id(container: &str) -> String {
    docker(&["inspect", "-f", "{{.Id}}", container])
}

fn ids(n: &Names) -> [String; 3] {
    [id(&n.redis), id(&n.postgres), id(&n.app)]
}

fn redis_get(n: &Names, key: &str) -> String {
    docker(&["exec", &n.redis, "redis-cli", "GET", key])
}

/// Runs SQL in the stack's PostgreSQL; the rows unaligned.
fn psql(n: &Names, sql: &str) -> String {
    let user = ["-U", "claude_user", "-d", "claude_relay"];
    let mut args = vec!["exec", &n.postgres, "psql"];
    args.extend(user);
    args.extend(["-qAtc", sql]);
    docker(&args)
}

fn rows(n: &Names) -> String {
    psql(n, "SELECT string_agg(note, ',' ORDER BY id) FROM adopted")
}

#[test]
fn compose_up_adopts_a_stack_docker_compose_started_and_replaces_only_what_changed() {
    let stack = Stack::new("adopt");
    let p = Project::new();
    runbook_stack(&p, &stack, "stack");
    let _image = Image(format!("{}_claude-relay", stack.name));
    p.write("up.toml", &playbook(&stack));
    compose(&p, &stack, &["up", "-d"]);
    let n = Names {
        redis: format!("{}-redis", stack.name),
        postgres: format!("{}-postgres", stack.name),
        app: format!("{}-app", stack.name),
    };
    for i in 0..50 {
        docker(&[
            "exec",
            &n.redis,
            "redis-cli",
            "SET",
            &format!("k{i}"),
            &format!("v{i}"),
        ]);
    }
    let sql = "CREATE TABLE adopted (id serial PRIMARY KEY, note text); INSERT INTO adopted (note) VALUES ('one'), ('two'), ('three')";
    psql(&n, sql);
    let made = ids(&n);
    let data = |n: &Names| {
        assert_eq!(redis_get(n, "k0"), "v0");
        assert_eq!(redis_get(n, "k49"), "v49");
        assert_eq!(rows(n), "one,two,three");
    };

    // The same file: the plan says each container is adopted, and the run keeps them.
    let plan = p.run(&["plan", "up.toml"]).expect(0);
    for (service, container) in [
        ("redis", &n.redis),
        ("postgres", &n.postgres),
        ("claude-relay", &n.app),
    ] {
        assert!(
            plan.stdout
                .contains(&format!("{service}: adopts `{container}` (")),
            "{service}:\n{}",
            plan.stdout
        );
    }
    assert!(
        plan.stdout.contains("made by docker-compose 1.29.2"),
        "{}",
        plan.stdout
    );
    let run = p.run(&["apply", "--yes", "up.toml"]).expect(0);
    assert!(
        run.stdout.contains("adopted: postgres, redis")
            && run.stdout.contains("adopted: claude-relay"),
        "{}",
        run.stdout
    );
    assert_eq!(ids(&n), made, "unchanged services keep their containers");
    data(&n);
    p.run(&["rollback", "--yes"]).expect(0);
    assert_eq!(ids(&n), made, "rollback of an adoption touches nothing");

    // Redis changed in the file: only it is replaced, and its volume's data is still there.
    let file = p.read(FILE).unwrap();
    let changed = file.replace(
        "      - REDIS_REPLICATION_MODE=master\n",
        "      - REDIS_REPLICATION_MODE=master\n      - ADOPT_CHECK=changed\n",
    );
    assert_ne!(file, changed);
    p.write(FILE, &changed);
    let plan = p.run(&["plan", "up.toml"]).expect(0);
    assert!(
        plan.stdout.contains(&format!(
            "redis: replaces `{}` ({}), made by docker-compose 1.29.2: differs in environment (ADOPT_CHECK)",
            n.redis,
            &made[0][..12]
        )),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains(&format!("postgres: adopts `{}`", n.postgres)),
        "{}",
        plan.stdout
    );
    let run = p.run(&["apply", "--yes", "up.toml"]).expect(0);
    assert!(
        run.stdout.contains("adopted: postgres; replaced: redis"),
        "{}",
        run.stdout
    );
    let now = ids(&n);
    assert_ne!(now[0], made[0], "redis was replaced");
    assert_eq!(now[1..], made[1..], "postgres and the app were not");
    data(&n);
    let volume = format!("{}-redis-data", stack.name);
    assert!(
        docker(&[
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Name}} {{end}}",
            &n.redis
        ])
        .contains(&volume),
        "the new container mounts the same volume"
    );

    // Rollback puts docker-compose's container back: docker-compose finds its stack as it
    // made it (its own config hash matches) and the data is there.
    std::fs::write(p.file(FILE), &file).unwrap();
    p.run(&["rollback", "--yes"]).expect(0);
    assert_eq!(ids(&n), made, "docker-compose's containers are back");
    data(&n);
    let up = compose(&p, &stack, &["up", "-d", "--no-build"]);
    for c in [&n.redis, &n.postgres, &n.app] {
        assert!(up.contains(&format!("{c} is up-to-date")), "{c}:\n{up}");
    }
    let label = format!("label=com.docker.compose.project={}", stack.name);
    let all = docker(&["ps", "-a", "--format", "{{.Names}}", "--filter", &label]);
    assert_eq!(
        all.lines().count(),
        3,
        "no container is left over after rollback:\n{all}"
    );
}

/// docker compose v2 names a container `<project>-<service>-1`: runner finds it by compose's
/// labels, adopts it under that name, and when it replaces it, rollback gives it its name back.
/// Its data is in the anonymous volume of the image's `VOLUME /data`, which the replacement
/// mounts again, as compose would.
#[test]
fn a_container_named_as_compose_v2_names_it_is_adopted_and_put_back_under_its_name() {
    let stack = Stack::new("adopt2");
    let p = Project::new();
    let file = "services:\n  cache:\n    image: redis:7-alpine\n    command: [redis-server, --appendonly, \"yes\", --appendfsync, always]\n    healthcheck: { test: [CMD, redis-cli, ping], interval: 1s }\n";
    p.write(FILE, file).write(
        "up.toml",
        &format!(
            "[playbook]\nname = \"v2\"\n\n[[steps]]\nid = \"up\"\nkind = \"compose_up\"\nfile = \"{FILE}\"\nproject = \"{}\"\nwait = \"30s\"\n",
            stack.name
        ),
    );
    compose(&p, &stack, &["up", "-d"]);
    let v2 = format!("{}-cache-1", stack.name);
    docker(&["rename", &format!("{}_cache_1", stack.name), &v2]);
    docker(&["exec", &v2, "redis-cli", "SET", "kept", "yes"]);
    let made = id(&v2);
    let volumes = |c: &str| docker(&["inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", c]);
    let volume = volumes(&v2);
    assert_eq!(volume.len(), 64, "an anonymous volume: {volume}");

    let run = p.run(&["apply", "--yes", "up.toml"]).expect(0);
    assert!(run.stdout.contains("adopted: cache"), "{}", run.stdout);
    assert_eq!(id(&v2), made);
    let label = format!("label=com.docker.compose.project={}", stack.name);
    let names = || docker(&["ps", "-a", "--format", "{{.Names}}", "--filter", &label]);
    assert_eq!(names(), v2, "no container of runner's naming was created");

    p.write(
        FILE,
        &file.replace(
            "    healthcheck:",
            "    environment: { X: \"1\" }\n    healthcheck:",
        ),
    );
    let plan = p.run(&["plan", "up.toml"]).expect(0);
    assert!(
        plan.stdout.contains(&format!("cache: replaces `{v2}` (")),
        "{}",
        plan.stdout
    );
    let run = p.run(&["apply", "--yes", "up.toml"]).expect(0);
    assert!(run.stdout.contains("replaced: cache"), "{}", run.stdout);
    let runners = format!("{}_cache_1", stack.name);
    assert_eq!(volumes(&runners), volume, "the same volume");
    assert_eq!(
        docker(&["exec", &runners, "redis-cli", "GET", "kept"]),
        "yes"
    );
    p.run(&["rollback", "--yes"]).expect(0);
    assert_eq!(id(&v2), made, "compose's container is back under its name");
    assert_eq!(names(), v2, "and runner's is gone");
    assert_eq!(docker(&["exec", &v2, "redis-cli", "GET", "kept"]), "yes");
}
