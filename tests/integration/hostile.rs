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
    p.write(
        "pb.toml",
        &PLAYBOOK.replace("name = \"pipes\"", "name = \"pipes\"\n\n[vars]\nn = \"p\""),
    );
    for (template, message) in [
        (
            "top\n{{#*inline \"p\"}}{{> p}}{{/inline}}{{> p}}\n",
            "includes partial `p` in itself (p → p)",
        ),
        // Named by an expression, a partial could name itself only once rendered: refused.
        (
            "{{#*inline \"p\"}}{{> (lookup vars \"n\")}}{{/inline}}{{> p}}\n",
            "names a partial by an expression (`lookup`)",
        ),
    ] {
        p.write("t.hbs", template);
        let out = p.run(&["validate", "pb.toml"]).expect(2);
        assert!(out.stderr.contains(message), "{}", out.stderr);
    }
}

#[test]
fn special_files_directories_and_empty_paths_are_refused_at_validate() {
    let p = Project::new();
    let fifo = p.file("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::create_dir(p.file("dir")).unwrap();
    p.write("t.hbs", "x\n").write(
        "compose.yml",
        "services:\n  app:\n    image: runner-base:bookworm\n    env_file: fifo\n",
    );
    let cases = [
        (
            "kind = \"backup\"\npaths = [\"fifo\"]",
            "`fifo` is a FIFO, not a regular file",
        ),
        (
            "kind = \"backup\"\npaths = [\"dir\"]",
            "`dir` is a directory, not a regular file",
        ),
        (
            "kind = \"template\"\ntemplate = \"t.hbs\"\ndest = \"\"",
            "the path is empty",
        ),
        (
            "kind = \"template\"\ntemplate = \"t.hbs\"\ndest = \"dir\"",
            "`dir` is a directory",
        ),
        (
            "kind = \"template\"\ntemplate = \"fifo\"\ndest = \"out\"",
            "`fifo` is a FIFO",
        ),
        (
            "kind = \"env\"\nfile = \"dir\"\nset = { A = \"1\" }",
            "`dir` is a directory",
        ),
        (
            "kind = \"backup\"\npaths = [\"/dev/null\"]",
            "`/dev/null` is a device",
        ),
        // Files read to load the playbook, and a log the traffic gate follows.
        (
            "kind = \"template\"\ntemplate = \"t.hbs\"\ndest = \"out\"\n\n[secrets]\nS = { file = \"fifo\" }",
            "`fifo` is a FIFO, not a regular file",
        ),
        (
            "kind = \"compose_up\"\nfile = \"compose.yml\"\nproject = \"special\"",
            "/fifo` is a FIFO, not a regular file",
        ),
        (
            "kind = \"monitor\"\nwindow = \"60s\"\ninterval = \"10s\"\ntraffic = { access_log = \"fifo\" }",
            "`fifo` is a FIFO, not a regular file",
        ),
    ];
    for (step, message) in cases {
        p.write(
            "pb.toml",
            &format!("[playbook]\nname = \"special\"\n\n[[steps]]\nid = \"s\"\n{step}\n"),
        );
        for command in ["validate", "plan"] {
            let mut child = p
                .command(&[command, "pb.toml"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let start = std::time::Instant::now();
            while child.try_wait().unwrap().is_none() {
                if start.elapsed() > std::time::Duration::from_secs(20) {
                    child.kill().unwrap();
                    panic!("`runner {command}` hangs on {step:?}");
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {step:?}: {stderr}");
            assert!(stderr.contains(message), "{command} {step:?}: {stderr}");
        }
    }
}

#[test]
fn the_state_dir_and_files_holding_secrets_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Project, name: &str| {
        std::fs::metadata(p.file(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    let p = Project::new();
    p.write(
        "pb.toml",
        r#"[playbook]
name = "modes"

[secrets]
PW = { env = "DB_PASSWORD" }

[[steps]]
id = "secret"
kind = "template"
template = "secret.hbs"
dest = "out/secret.conf"

[[steps]]
id = "plain"
kind = "template"
template = "plain.hbs"
dest = "out/plain.conf"

[[steps]]
id = "env"
kind = "env"
file = "out/.env"
set = { A = "1" }
"#,
    )
    .write("secret.hbs", "password={{secrets.PW}}\n")
    .write("plain.hbs", "port=1\n");
    p.run(&["apply", "--yes", "pb.toml"]).expect(0);
    assert_eq!(mode(&p, ".runner"), 0o700);
    assert_eq!(mode(&p, "out/secret.conf"), 0o600, "it holds a secret");
    assert_eq!(mode(&p, "out/plain.conf"), 0o644);
    assert_eq!(mode(&p, "out/.env"), 0o600);
}

/// Every form a secret may take once formatted.
fn forms(secret: &str) -> Vec<String> {
    use base64::Engine;
    let json = serde_json::to_string(secret).unwrap();
    let mut forms = vec![
        secret.to_string(),
        json[1..json.len() - 1].to_string(),
        shlex::try_quote(secret).unwrap().into_owned(),
        percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
        url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
        base64::engine::general_purpose::STANDARD.encode(secret),
    ];
    forms.extend(secret.lines().filter(|l| l.len() >= 8).map(str::to_string));
    forms
}

#[test]
fn a_secret_shows_in_none_of_its_forms_and_a_short_one_is_refused() {
    let quoted = "Sent X\"Y$Z\\W 'q' %41";
    let pem = "-----BEGIN TEST KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nAoIBAQC7VJTUt9Us8cKjMzEfYyjiWA4R\n-----END TEST KEY-----";
    let p = Project::new();
    p.write(
        "pb.toml",
        r#"[playbook]
name = "leaks"
on_failure = "pause"

[secrets]
QUOTED = { env = "QUOTED" }
PEM = { env = "PEM" }

[[steps]]
id = "argv"
kind = "exec"
command = ["sh", "-c", "echo \"arg: $1\"; printf '%s\n' \"$PEM\"", "sh", "{{secrets.QUOTED}}"]
env = { PEM = "{{secrets.PEM}}" }
rollback = "none"
reason = "prints only"

[[steps]]
id = "env"
kind = "env"
file = ".env"
set = { TOKEN = "{{secrets.QUOTED}}", KEY = "{{secrets.PEM}}" }

[[steps]]
id = "call"
kind = "http_check"
url = "http://127.0.0.1:9/?token={{secrets.QUOTED}}"
timeout = "1s"
on_inconclusive = "pause"
"#,
    );
    let run = |args: &[&str]| {
        let mut command = p.command(args);
        command.env("QUOTED", quoted).env("PEM", pem);
        crate::support::finish(command)
    };
    let mut shown = String::new();
    for format in ["human", "json", "markdown"] {
        let out = run(&["plan", "pb.toml", "--format", format]).expect(0);
        shown.push_str(&out.stdout);
        shown.push_str(&out.stderr);
    }
    let out = run(&["plan", "pb.toml", "--out", "plan.json"]).expect(0);
    shown.push_str(&out.stdout);
    let out = run(&["apply", "--yes", "pb.toml"]).expect(7);
    shown.push_str(&out.stdout);
    shown.push_str(&out.stderr);
    assert!(out.stdout.contains("ok      argv"), "{}", out.stdout);
    assert!(
        p.read(".env").unwrap().contains("TOKEN="),
        "the env step ran"
    );
    shown.push_str(&p.read("plan.json").unwrap());
    shown.push_str(&p.journals());
    for secret in [quoted, pem] {
        for form in forms(secret) {
            assert!(
                !shown.contains(&form),
                "`{form}` of a secret shows:\n{shown}"
            );
        }
    }

    let out = {
        let mut command = p.command(&["validate", "pb.toml"]);
        command.env("QUOTED", "st").env("PEM", pem);
        crate::support::finish(command)
    }
    .expect(2);
    assert!(
        out.stderr
            .contains("secret `QUOTED` is 2 character(s) long"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("\"st\""), "{}", out.stderr);
}
