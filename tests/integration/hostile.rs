//! Hostile conditions around the runner: closed pipes, and the like. Nothing panics.

use std::process::Stdio;

use crate::support::Project;

const PLAYBOOK: &str = r#"[playbook]
name = "pipes"

[[steps]]
id = "render"
kind = "template"
template = "t.hbs"
dest = "out.txt"

[[steps]]
id = "say"
kind = "exec"
command = ["sh", "-c", "for i in $(seq 2000); do echo line $i; done"]
rollback = "none"
reason = "prints only"
"#;

/// Runs `args` with standard output closed before anything is written to it.
fn with_closed_stdout(p: &Project, args: &[&str]) -> (Option<i32>, String) {
    let mut child = p
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_quietly_and_a_run_goes_on() {
    let p = Project::new();
    p.write("pb.toml", PLAYBOOK)
        .write("t.hbs", &"x\n".repeat(50_000));
    for args in [
        &["plan", "pb.toml"][..],
        &["validate", "pb.toml"],
        &["status"],
    ] {
        let (code, stderr) = with_closed_stdout(&p, args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let (code, stderr) = with_closed_stdout(&p, &["apply", "--yes", "pb.toml"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(p.file("out.txt").exists());
    let status = p.run(&["status"]).expect(0);
    assert!(status.stdout.contains("succeeded"), "{}", status.stdout);
    let (code, stderr) = with_closed_stdout(&p, &["status"]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_recursive_partial_is_a_template_error_not_a_stack_overflow() {
    let p = Project::new();
    p.write("pb.toml", PLAYBOOK).write(
        "t.hbs",
        "top\n{{#*inline \"p\"}}{{> p}}{{/inline}}{{> p}}\n",
    );
    let out = p.run(&["validate", "pb.toml"]).expect(2);
    assert!(
        out.stderr
            .contains("includes partial `p` in itself (p → p)"),
        "{}",
        out.stderr
    );
}
