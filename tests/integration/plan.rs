//! Plans: byte-identical for the same inputs, saved and applied, refused when stale.

use crate::support::Project;

fn project() -> Project {
    let p = Project::new();
    p.write(
        "pb.toml",
        r#"[playbook]
name = "files"
description = "render the config"

[vars]
port = 3000

[secrets]
DB_PASSWORD = { env = "DB_PASSWORD" }

[[steps]]
id = "render"
kind = "template"
template = "templates/app.conf.hbs"
dest = "app.conf"

[[steps]]
id = "flags"
kind = "env"
file = ".env"
set = { ENABLE_POSTGRES = false, POSTGRES_PASSWORD = "{{secrets.DB_PASSWORD}}" }
"#,
    )
    .write(
        "templates/app.conf.hbs",
        "port={{vars.port}}\npassword={{secrets.DB_PASSWORD}}\n",
    )
    .write(".env", "A=1\n");
    p
}

#[test]
fn the_same_inputs_give_byte_identical_plans_in_any_directory() {
    let (a, b) = (project(), project());
    for format in ["json", "markdown", "human"] {
        let first = a
            .run(&["plan", "pb.toml", "--format", format])
            .expect(0)
            .stdout;
        assert_eq!(
            first,
            a.run(&["plan", "pb.toml", "--format", format])
                .expect(0)
                .stdout
        );
        assert_eq!(
            first,
            b.run(&["plan", "pb.toml", "--format", format])
                .expect(0)
                .stdout,
            "no temp path or time in the {format} plan"
        );
    }
}

#[test]
fn markdown_plan_shows_steps_rollbacks_and_redacted_diffs() {
    let p = project();
    let md = p
        .run(&["plan", "pb.toml", "--format", "markdown"])
        .expect(0)
        .stdout;
    insta::assert_snapshot!(md);
}

#[test]
fn json_plan_is_versioned() {
    let p = project();
    let json: serde_json::Value = serde_json::from_str(
        &p.run(&["plan", "pb.toml", "--format", "json"])
            .expect(0)
            .stdout,
    )
    .unwrap();
    assert_eq!(json["format"], "runner-plan");
    assert_eq!(json["version"], 2);
    assert_eq!(json["steps"][0]["id"], "render");
    assert_eq!(json["changes"], 2);
}

#[test]
fn detailed_exitcode_says_whether_anything_would_change() {
    let p = project();
    p.run(&["plan", "pb.toml", "--detailed-exitcode"]).expect(6);
    p.run(&["apply", "pb.toml", "--yes"]).expect(0);
    p.run(&["plan", "pb.toml", "--detailed-exitcode"]).expect(0);
}

#[test]
fn a_saved_plan_applies_and_is_refused_once_stale() {
    let p = project();
    p.run(&[
        "plan",
        "pb.toml",
        "--var",
        "port=4000",
        "--out",
        "plan.json",
    ])
    .expect(0);
    let run = p.run(&["apply", "plan.json", "--yes"]).expect(0);
    assert!(run.stdout.contains("run succeeded"), "{}", run.stdout);
    assert!(
        p.read("app.conf").unwrap().starts_with("port=4000\n"),
        "the plan's --var values are used"
    );

    p.run(&["plan", "pb.toml", "--out", "plan.json"]).expect(0);
    p.write("templates/app.conf.hbs", "port={{vars.port}}\nchanged\n");
    let stale = p.run(&["apply", "plan.json", "--yes"]).expect(3);
    assert!(
        stale.stderr.contains("`templates/app.conf.hbs` changed"),
        "{}",
        stale.stderr
    );

    p.run(&["plan", "pb.toml", "--out", "plan.json"]).expect(0);
    p.write(".env", "A=2\n");
    let stale = p.run(&["apply", "plan.json", "--yes"]).expect(3);
    assert!(stale.stderr.contains("`.env` changed"), "{}", stale.stderr);
    assert_eq!(p.read(".env").unwrap(), "A=2\n", "nothing was applied");
}

#[test]
fn an_edited_or_foreign_plan_file_is_refused() {
    let p = project();
    p.run(&["plan", "pb.toml", "--out", "plan.json"]).expect(0);
    let edited = p
        .read("plan.json")
        .unwrap()
        .replace("render the config", "something else");
    p.write("plan.json", &edited);
    // Refused, as the README's exit codes say of a plan that changed since it was made.
    let run = p.run(&["apply", "plan.json", "--yes"]).expect(3);
    assert!(
        run.stderr.contains("was edited after it was made"),
        "{}",
        run.stderr
    );
    p.write(
        "other.json",
        "{\"format\": \"runner-plan\", \"version\": 99}",
    );
    let run = p.run(&["apply", "other.json", "--yes"]).expect(2);
    assert!(run.stderr.contains("format version 99"), "{}", run.stderr);
}

#[test]
fn each_step_is_planned_against_the_files_the_steps_before_it_leave() {
    let p = Project::new();
    p.write(
        "pb.toml",
        r#"[playbook]
name = "chain"

[[steps]]
id = "render"
kind = "template"
template = "t.hbs"
dest = "app.env"

[[steps]]
id = "flags"
kind = "env"
file = "app.env"
set = { B = "2" }
"#,
    )
    .write("t.hbs", "A=1\n");
    let json: serde_json::Value = serde_json::from_str(
        &p.run(&["plan", "pb.toml", "--format", "json"])
            .expect(0)
            .stdout,
    )
    .unwrap();
    let diff = json["steps"][1]["diff"].as_str().unwrap();
    assert!(
        diff.contains("\n A=1\n+B=2\n"),
        "the env step sees the rendered file: {diff}"
    );
    p.run(&["apply", "pb.toml", "--yes"]).expect(0);
    assert_eq!(p.read("app.env").unwrap(), "A=1\nB=2\n");
}
