//! Every kind of bad playbook: exit 2, a diagnostic pointing at the place (snapshot), every
//! problem at once, and nothing executed or touched.

use crate::support::Project;

const ENV_BEFORE: &str = "# untouched\nA=1\n";

/// A playbook's text with `{steps}` replaced by the given steps.
fn playbook(steps: &str) -> String {
    format!(
        r#"[playbook]
name = "bad"
phase = "preparation"

[vars]
port = 3000

[secrets]
DB_PASSWORD = {{ env = "DB_PASSWORD" }}
{steps}"#
    )
}

/// Runs validate, plan and apply on a bad playbook; returns validate's diagnostic.
fn rejected(text: &str) -> String {
    let p = Project::new();
    p.write("pb.toml", text)
        .write("templates/app.hbs", "port={{vars.port}}\n")
        .write(".env", ENV_BEFORE);
    let validate = p.run(&["validate", "pb.toml"]).expect(2);
    p.run(&["plan", "pb.toml"]).expect(2);
    let apply = p.run(&["apply", "pb.toml", "--yes"]).expect(2);
    assert!(
        !p.file(".runner").exists(),
        "a rejected playbook created state"
    );
    assert!(
        !p.file("out.txt").exists(),
        "a rejected playbook ran a step"
    );
    assert_eq!(p.read(".env").unwrap(), ENV_BEFORE);
    assert_eq!(validate.stderr, apply.stderr);
    assert!(!validate.stderr.contains("panicked"));
    validate.stderr
}

#[test]
fn toml_syntax_error() {
    let text = playbook("[[steps]]\nid = \"a\nkind = \"backup\"\n");
    insta::assert_snapshot!(rejected(&text));
}

#[test]
fn unknown_key() {
    let text =
        playbook("[[steps]]\nid = \"a\"\nkind = \"backup\"\npaths = [\".env\"]\ncompress = true\n");
    insta::assert_snapshot!(rejected(&text));
}

#[test]
fn wrong_type() {
    let text = playbook("[[steps]]\nid = \"a\"\nkind = \"backup\"\npaths = \".env\"\n");
    insta::assert_snapshot!(rejected(&text));
}

#[test]
fn unknown_step_kind() {
    let text = playbook("[[steps]]\nid = \"a\"\nkind = \"bakup\"\npaths = [\".env\"]\n");
    insta::assert_snapshot!(rejected(&text));
}

#[test]
fn duplicate_step_id() {
    let step = "[[steps]]\nid = \"save\"\nkind = \"backup\"\npaths = [\".env\"]\n";
    insta::assert_snapshot!(rejected(&playbook(&format!("{step}\n{step}"))));
}

#[test]
fn missing_required_field() {
    let text = playbook(
        "[[steps]]\nid = \"render\"\nkind = \"template\"\ntemplate = \"templates/app.hbs\"\n",
    );
    insta::assert_snapshot!(rejected(&text));
}

#[test]
fn undefined_variable_in_template_and_field() {
    let p = "[[steps]]\nid = \"render\"\nkind = \"template\"\ntemplate = \"templates/bad.hbs\"\ndest = \"{{vars.outdir}}/app.conf\"\n";
    let text = playbook(p);
    let project = Project::new();
    project
        .write("pb.toml", &text)
        .write(
            "templates/bad.hbs",
            "# header\nlisten={{vars.host}}:{{vars.port}}\n",
        )
        .write(".env", ENV_BEFORE);
    let run = project.run(&["validate", "pb.toml"]).expect(2);
    assert!(!project.file(".runner").exists());
    insta::assert_snapshot!(run.stderr);
}

#[test]
fn missing_template_file() {
    let text = playbook(
        "[[steps]]\nid = \"render\"\nkind = \"template\"\ntemplate = \"templates/nope.hbs\"\ndest = \"out.txt\"\n",
    );
    insta::assert_snapshot!(rejected(&text));
}

#[test]
fn exec_without_rollback_decision() {
    let text = playbook(
        "[[steps]]\nid = \"touch\"\nkind = \"exec\"\ncommand = [\"touch\", \"out.txt\"]\n",
    );
    insta::assert_snapshot!(rejected(&text));
}

#[test]
fn missing_secret() {
    let p = Project::new();
    p.write(
        "pb.toml",
        &playbook("[[steps]]\nid = \"a\"\nkind = \"backup\"\npaths = [\".env\"]\n"),
    );
    let run = p.run_without_secret(&["validate", "pb.toml"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    insta::assert_snapshot!(run.stderr);
}

#[test]
fn every_problem_is_reported_at_once() {
    let steps = r#"[[steps]]
id = "a"
kind = "bakup"

[[steps]]
id = "a"
kind = "exec"
command = ["touch", "out.txt"]

[[steps]]
id = "render"
kind = "template"
template = "templates/app.hbs"
dest = "out.txt"
mode = "rw"
timeout = "soon"
"#;
    let stderr = rejected(&playbook(steps));
    assert!(stderr.contains("5 problems"), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn unknown_var_override_and_missing_playbook_are_usage_errors() {
    let p = Project::new();
    p.write(
        "pb.toml",
        &playbook("[[steps]]\nid = \"a\"\nkind = \"backup\"\npaths = [\".env\"]\n"),
    );
    let run = p.run(&["plan", "pb.toml", "--var", "prot=1"]).expect(2);
    assert!(
        run.stderr
            .contains("--var prot: there is no `prot` in [vars]"),
        "{}",
        run.stderr
    );
    let run = p.run(&["plan", "nope.toml"]).expect(2);
    assert!(
        run.stderr.contains("cannot read playbook `nope.toml`"),
        "{}",
        run.stderr
    );
    p.run(&["plan"]).expect(2);
}
