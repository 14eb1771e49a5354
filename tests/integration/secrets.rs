//! The sentinel-secret matrix: for each shape a secret may have and each place a playbook may
//! put one, every output runner makes (validate, plan in each format and saved, apply, the
//! journal, every file of the state dir, rollback) holds it in none of its encoded forms, and
//! the state dir's files that must hold it (backups, sealed undo records) are private.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::{Project, finish, fresh_database, serve, service};

/// The shapes: plain, quotes, `$` and `\`, `$` alone (a `.env` file quotes it alone otherwise
/// than after a `\`), spaces and `%`, non-ASCII, multi-line, 8 characters.
const SHAPES: &[(&str, &str)] = &[
    ("plain", "PlainSentinel4711"),
    ("quotes", "it's \"quoted\" 'twice'"),
    ("dollar", "a$HOME\\b$1\\n`id`"),
    ("bare-dollar", "no$backslash$HOME"),
    ("spaces", "with space %41 100%"),
    ("unicode", "pässwörd✓日本🔑"),
    (
        "multiline",
        "-----BEGIN TEST KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEF\nAoIBAQC7VJTUt9Us8cKjMzEf\n-----END TEST KEY-----",
    ),
    ("eight", "k8Zq!x2w"),
];

/// Every form a secret may take once formatted.
fn forms(secret: &str) -> Vec<String> {
    use base64::Engine;
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let json = serde_json::to_string(secret).unwrap();
    const QUERY: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'<')
        .add(b'>')
        .add(b'\'');
    let mut forms = vec![
        secret.to_string(),
        json[1..json.len() - 1].to_string(),
        shlex::try_quote(secret).unwrap().into_owned(),
        utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string(),
        utf8_percent_encode(secret, QUERY).to_string(),
        url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
        base64::engine::general_purpose::STANDARD.encode(secret),
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(secret),
    ];
    if secret.contains('\n') {
        forms.extend(secret.lines().map(str::to_string));
    }
    forms.extend(dotenv_forms(secret));
    // After a prefix, the secret is quoted as part of a larger value (an argument, a `.env`
    // value), where it shows neither as it is nor quoted alone.
    for placed in [
        format!("--pw={secret}"),
        format!("redis://:{secret}@h"),
        format!("C:\\{secret}"),
    ] {
        let quoted = shlex::try_quote(&placed).unwrap().into_owned();
        let json = serde_json::to_string(&quoted).unwrap();
        forms.push(json[1..json.len() - 1].to_string());
        forms.push(quoted);
        forms.extend(dotenv_forms(&placed));
    }
    forms
}

/// The inside of the quotes a Compose `.env` file may hold the secret in: single quotes with
/// `\'`, or double quotes with `\\`, `\"`, `\n`, `\r`, and `\$` where `$` would start a
/// reference (before `{`, `$`, `_` or a letter).
fn dotenv_forms(secret: &str) -> Vec<String> {
    let mut double = String::new();
    let mut chars = secret.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied().unwrap_or(' ');
        match c {
            '\\' | '"' => double.extend(['\\', c]),
            '\n' => double.push_str("\\n"),
            '\r' => double.push_str("\\r"),
            '$' if next == '{' || next == '$' || next == '_' || next.is_alphabetic() => {
                double.push_str("\\$")
            }
            c => double.push(c),
        }
    }
    vec![secret.replace('\'', "\\'"), double]
}

/// A playbook that puts the secret `S` everywhere a secret can go.
fn playbook(port: u16) -> String {
    format!(
        r#"[playbook]
name = "matrix"

[vars]
greeting = "hello"

[secrets]
S = {{ env = "SENTINEL" }}
DB = {{ env = "MATRIX_DB_URL" }}
# A header cannot hold a line break: the secret, its lines joined.
H = {{ env = "SENTINEL_LINE" }}

[[steps]]
id = "argv"
kind = "exec"
command = ["sh", "-c", "printf 'arg %s\n' \"$1\"; printf 'env %s\n' \"$S\"; printf %s \"$S\" | base64 -w0; echo", "sh", "{{{{secrets.S}}}}", "--pw={{{{secrets.S}}}}", "redis://:{{{{secrets.S}}}}@h"]
env = {{ S = "{{{{secrets.S}}}}", PREFIXED = "--pw={{{{secrets.S}}}}" }}
rollback = {{ command = ["sh", "-c", "printf 'undo %s\n' \"$1\"", "sh", "{{{{secrets.S}}}}", "--pw={{{{secrets.S}}}}"] }}

[[steps]]
id = "render"
kind = "template"
template = "app.hbs"
dest = "deploy/app.conf"

[[steps]]
id = "env"
kind = "env"
file = "deploy/.env"
set = {{ TOKEN = "{{{{secrets.S}}}}", GREETING = "{{{{vars.greeting}}}}", WIN = 'C:\\{{{{secrets.S}}}}' }}

[[steps]]
id = "schema"
kind = "sql"
url = "{{{{secrets.DB}}}}?application_name={{{{secrets.S}}}}"
files = ["sql/*.up.sql"]
settings = {{ "runner.matrix" = "{{{{secrets.S}}}}" }}

[[steps]]
id = "tell"
kind = "notify"
title = "deployed {{{{secrets.S}}}}"
text = "token {{{{secrets.S}}}}"
webhook = "http://127.0.0.1:9/hook?token={{{{secrets.S}}}}"

[[steps]]
id = "call"
kind = "http_check"
url = "http://127.0.0.1:{port}/health?token={{{{secrets.S}}}}"
method = "POST"
headers = {{ "X-Token" = "{{{{secrets.H}}}}" }}
body = "{{{{secrets.S}}}}"
timeout = "5s"
"#
    )
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

#[test]
fn a_secret_of_any_shape_in_any_place_shows_in_no_output_in_none_of_its_forms() {
    let admin = service("RUNNER_TEST_PG_URL");
    let port = serve(|_, _| (200, "{\"status\":\"ok\"}", 0));
    for (i, (shape, secret)) in SHAPES.iter().enumerate() {
        let db_url = fresh_database(&format!("matrix{i}"));
        let p = Project::new();
        p.write("pb.toml", &playbook(port))
            .write("app.hbs", "token = {{secrets.S}}\nuser = me\n")
            .write("deploy/.env", "KEEP=1\r\n")
            .write(
                "sql/001_matrix.up.sql",
                "CREATE TABLE matrix AS SELECT current_setting('runner.matrix') AS v;\n",
            )
            .write("sql/001_matrix.down.sql", "DROP TABLE matrix;\n");
        let run = |args: &[&str]| {
            let mut command = p.command(args);
            command
                .env("SENTINEL", secret)
                .env("SENTINEL_LINE", secret.replace('\n', " "))
                .env("MATRIX_DB_URL", &db_url);
            finish(command)
        };
        let mut shown = String::new();
        let mut keep = |out: crate::support::Run| {
            shown.push_str(&out.stdout);
            shown.push_str(&out.stderr);
            out
        };
        keep(run(&["validate", "pb.toml"]).expect(0));
        keep(run(&["validate", "pb.toml", "--format", "json"]).expect(0));
        for format in ["human", "json", "markdown"] {
            keep(run(&["plan", "pb.toml", "--format", format]).expect(0));
        }
        keep(run(&["plan", "pb.toml", "--out", "plan.json"]).expect(0));
        // A --var that holds a secret is refused: it would be kept in clear.
        let var = format!("greeting={secret}");
        let out = keep(run(&["plan", "pb.toml", "--var", &var]).expect(2));
        assert!(
            out.stderr
                .contains("--var greeting: the value holds a secret"),
            "{shape}: {}",
            out.stderr
        );
        let out = keep(run(&["apply", "--yes", "pb.toml"]));
        assert_eq!(out.code, 0, "{shape}: {}\n{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains("ok      argv"),
            "{shape}: {}",
            out.stdout
        );
        assert!(
            out.stdout.contains("<redacted>"),
            "{shape}: the exec's output is shown"
        );
        assert_eq!(
            crate::support::psql(&db_url, "SELECT v FROM matrix"),
            secret.trim(),
            "{shape}: the setting reached the server"
        );
        assert!(
            p.read("deploy/app.conf").unwrap().contains(secret),
            "{shape}: the template got the secret"
        );
        keep(run(&["status"]).expect(0));
        keep(run(&["rollback", "--yes", "--format", "json"]).expect(0));
        keep(run(&["status", "--format", "json"]).expect(0));
        shown.push_str(&p.read("plan.json").unwrap());

        // The state dir: every folder and file is private (the lock names only its holder);
        // the journal holds the secret in no form.
        for dir in walkdir::WalkDir::new(p.file(".runner"))
            .into_iter()
            .flatten()
        {
            if dir.file_type().is_dir() {
                let mode = dir.metadata().unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o700, "{shape}: {}", dir.path().display());
            }
        }
        for path in files_under(&p.file(".runner")) {
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            if !path.ends_with("lock") {
                assert_eq!(mode, 0o600, "{shape}: {}", path.display());
            }
            // Only backups and sealed undo records may hold it; everything else is checked
            // below with what was shown.
            let name = path.to_string_lossy();
            if !(name.contains("/backup/") || name.contains("/undo/")) {
                shown.push_str(&text);
            }
        }
        for form in forms(secret) {
            assert!(
                !shown.contains(&form),
                "{shape}: `{form}` of the secret shows:\n{shown}"
            );
        }
        crate::support::psql(
            &admin,
            &format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                db_url.rsplit('/').next().unwrap()
            ),
        );
    }
}

#[test]
fn a_path_rendered_from_a_secret_is_refused_at_validate() {
    let p = Project::new();
    p.write(
        "pb.toml",
        r#"[playbook]
name = "paths"

[secrets]
S = { env = "DB_PASSWORD" }

[[steps]]
id = "render"
kind = "template"
template = "templates/{{secrets.S}}.hbs"
dest = "out-{{secrets.S}}.conf"
"#,
    );
    let out = p.run(&["plan", "pb.toml", "--out", "plan.json"]).expect(2);
    assert_eq!(
        out.stderr.matches("the path holds a secret").count(),
        2,
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains(crate::support::SENTINEL),
        "{}",
        out.stderr
    );
    assert!(!p.file("plan.json").exists());
}

/// A container that prints every shape of secret (from the .env the run wrote) and never turns
/// healthy: runner shows its last log lines in the failure, and none shows a secret in any form.
#[test]
fn container_logs_shown_by_a_failed_compose_up_hold_no_secret_in_any_form() {
    let stack = crate::docker::Stack::new("logsecret");
    let names: Vec<String> = (1..=SHAPES.len()).map(|i| format!("S{i}")).collect();
    let secrets: String = names
        .iter()
        .map(|n| format!("{n} = {{ env = \"SENTINEL_{n}\" }}\n"))
        .collect();
    let set: Vec<String> = names
        .iter()
        .map(|n| format!("{n} = \"{{{{secrets.{n}}}}}\""))
        .collect();
    let p = Project::new();
    p.write(
        "pb.toml",
        &format!(
            r#"[playbook]
name = "logs"

[secrets]
{secrets}
[[steps]]
id = "env"
kind = "env"
file = "deploy/.env"
set = {{ {set} }}

[[steps]]
id = "compose-file"
kind = "template"
template = "compose.hbs"
dest = "deploy/docker-compose.yml"

[[steps]]
id = "up"
kind = "compose_up"
file = "deploy/docker-compose.yml"
project = "{project}"
wait = "8s"
"#,
            set = set.join(", "),
            project = stack.name,
        ),
    )
    .write(
        "compose.hbs",
        &format!(
            "services:\n  talker:\n    image: runner-base:bookworm\n    env_file: .env\n    command: [\"sh\", \"-c\", \"echo marker-shown; for v in {}; do printenv $$v; done; sleep 60\"]\n    healthcheck:\n      test: [\"CMD\", \"false\"]\n      interval: 1s\n      retries: 1\n",
            names.join(" ")
        ),
    );
    let mut command = p.command(&["apply", "--yes", "pb.toml"]);
    for (name, (_, secret)) in names.iter().zip(SHAPES) {
        command.env(format!("SENTINEL_{name}"), secret);
    }
    let out = finish(command).expect(4);
    let mut shown = format!("{}{}", out.stdout, out.stderr);
    assert!(
        shown.contains("service `talker` is unhealthy") && shown.contains("marker-shown"),
        "the container's last log lines are shown:\n{shown}"
    );
    assert!(shown.contains("<redacted>"), "{shown}");
    for path in files_under(&p.file(".runner")) {
        let name = path.to_string_lossy();
        if !(name.contains("/backup/") || name.contains("/undo/")) {
            shown.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    for (shape, secret) in SHAPES {
        for form in forms(secret) {
            assert!(
                !shown.contains(&form),
                "{shape}: `{form}` of the secret shows:\n{shown}"
            );
        }
    }
}
