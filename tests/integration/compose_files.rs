//! `validate` reads the compose files that compose steps name, as they will be when the step
//! runs: YAML and interpolation errors are exit 2 pointing into the compose file (or its
//! `.env`), and the keys runner ignores are warnings. Secrets env files are read as Compose
//! reads `.env` files, and their errors never quote a line.

use crate::support::{Project, SENTINEL};

const PLAYBOOK: &str = r#"[playbook]
name = "stack"

[secrets]
DB_PASSWORD = { env = "DB_PASSWORD" }

[[steps]]
id = "up"
kind = "compose_up"
file = "deploy/docker-compose.yml"
"#;

const GOOD: &str = "services:\n  app:\n    image: relay:${TAG:-latest}\n";

fn project(compose: &str, dotenv: &str) -> Project {
    let p = Project::new();
    p.write("pb.toml", PLAYBOOK)
        .write("deploy/docker-compose.yml", compose)
        .write("deploy/.env", dotenv);
    p
}

#[test]
fn broken_yaml_is_exit_2_at_validate_pointing_at_the_line() {
    let compose = "services:\n  app:\n    image: relay\n   ports: [\"3000\"]\n";
    let p = project(compose, "");
    let run = p.run(&["validate", "pb.toml"]).expect(2);
    insta::assert_snapshot!(run.stderr);
    p.run(&["plan", "pb.toml"]).expect(2);
}

#[test]
fn an_interpolation_error_points_at_its_value() {
    let compose = "services:\n  app:\n    image: relay:${TAG:?give the image a tag}\n";
    let run = project(compose, "OTHER=1\n")
        .run(&["validate", "pb.toml"])
        .expect(2);
    insta::assert_snapshot!(run.stderr);
}

#[test]
fn a_malformed_env_file_points_into_it() {
    let run = project(
        GOOD,
        "# settings\nWEB_TITLE=Claude Relay Service\nBAD KEY=1\n",
    )
    .run(&["validate", "pb.toml"])
    .expect(2);
    insta::assert_snapshot!(run.stderr);
}

#[test]
fn unsupported_keys_and_unset_variables_are_warnings_at_validate() {
    let compose = "services:\n  app:\n    image: relay:$TAG\n    deploy: { replicas: 2 }\n";
    let run = project(compose, "WEB_TITLE=Claude Relay Service\n")
        .run(&["validate", "pb.toml"])
        .expect(0);
    assert_eq!(
        run.stderr,
        "warning: `deploy/docker-compose.yml`: services.app.image: The \"TAG\" variable is not set. Defaulting to a blank string.\n\
         warning: `deploy/docker-compose.yml`: service `app`: deploy key `replicas` is for swarm and is ignored by runner\n"
    );
    let run = project(GOOD, "")
        .run(&["validate", "pb.toml", "--format", "json"])
        .expect(0);
    assert!(run.stdout.contains("\"warnings\":[]"), "{}", run.stdout);
}

#[test]
fn a_compose_file_rendered_by_an_earlier_step_is_checked_as_rendered() {
    let steps = r#"[playbook]
name = "stack"

[[steps]]
id = "render"
kind = "template"
template = "templates/compose.hbs"
dest = "deploy/docker-compose.yml"

[[steps]]
id = "up"
kind = "compose_up"
file = "deploy/docker-compose.yml"
"#;
    let p = Project::new();
    p.write("pb.toml", steps)
        // What is on disk now is fine; what the template renders is not.
        .write("deploy/docker-compose.yml", GOOD)
        .write("templates/compose.hbs", "services:\n  app: [unclosed\n");
    let run = p.run(&["validate", "pb.toml"]).expect(2);
    insta::assert_snapshot!(run.stderr);
    // Not there yet and nothing renders it: checked when the plan is made.
    let p = Project::new();
    p.write("pb.toml", PLAYBOOK);
    p.run(&["validate", "pb.toml"]).expect(0);
}

#[test]
fn a_compose_file_holding_a_secret_is_not_quoted() {
    let compose = format!(
        "services:\n  app:\n    image: relay\n    environment: {{ P: {SENTINEL} }}\n   bad: [\n"
    );
    let run = project(&compose, "")
        .run(&["validate", "pb.toml"])
        .expect(2);
    assert!(!run.stderr.contains(SENTINEL), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("`deploy/docker-compose.yml`, line 5, column 4"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_malformed_secrets_env_file_names_the_line_never_its_text() {
    let p = Project::new();
    p.write(
        "pb.toml",
        "[playbook]\nname = \"s\"\n\n[secrets]\nTOKEN = { file = \"secrets.env\" }\n\n[[steps]]\nid = \"a\"\nkind = \"backup\"\npaths = [\"x\"]\n",
    )
    .write("secrets.env", "# tokens\nOTHER=1\nTOKEN=\"hunter2-unterminated-S3CRET\n");
    let run = p.run(&["validate", "pb.toml"]).expect(2);
    assert!(!run.stderr.contains("S3CRET"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("`TOKEN` in `secrets.env`: line 3: unterminated quoted value"),
        "{}",
        run.stderr
    );
    // Read as Compose reads it: an unquoted value with spaces is fine.
    p.write("secrets.env", "TOKEN=a long token with spaces # comment\n");
    p.run(&["validate", "pb.toml"]).expect(0);
    // A `$NAME` in an unquoted value is expanded, as Compose does: said, never silent.
    p.write("secrets.env", "TOKEN=token-$NOT_SET-tail\n");
    let run = p.run(&["validate", "pb.toml"]).expect(0);
    assert_eq!(
        run.stderr,
        "warning: secrets file `secrets.env`: line 1: The \"NOT_SET\" variable is not set. Defaulting to a blank string.\n"
    );
}

#[test]
fn a_fifo_as_compose_file_is_refused_not_waited_on() {
    let p = Project::new();
    p.write("pb.toml", PLAYBOOK);
    std::fs::create_dir_all(p.file("deploy")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(p.file("deploy/docker-compose.yml"))
        .status()
        .unwrap();
    assert!(made.success());
    let run = p.run(&["validate", "pb.toml"]).expect(2);
    assert!(run.stderr.contains("is a FIFO"), "{}", run.stderr);
}
