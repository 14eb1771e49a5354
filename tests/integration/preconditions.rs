//! Apply executes the plan it showed: the plan is made under the lock with the run's identity,
//! and what it observed (files read and written, SQL history) must still hold when the run and
//! each step start, or the run is refused (exit 3) naming what changed. Versioned formats.

use std::io::{Read, Write};
use std::process::Stdio;

use crate::support::{Project, fresh_database, psql};

const ENV_BEFORE: &str = "# keep me\nA=1\n";

/// A template step and an env step, with `extra` steps appended.
fn project(extra: &str) -> Project {
    let p = Project::new();
    p.write(
        "pb.toml",
        &format!(
            r#"[playbook]
name = "drift"

[[steps]]
id = "render"
kind = "template"
template = "templates/app.conf.hbs"
dest = "app.conf"

[[steps]]
id = "flags"
kind = "env"
file = ".env"
set = {{ ENABLE = true }}
{extra}"#
        ),
    )
    .write("templates/app.conf.hbs", "greeting=héllo 🚀\n")
    .write(".env", ENV_BEFORE);
    p
}

/// Runs `runner apply pb.toml` asking on a pipe: waits for its question on stderr, calls
/// `meanwhile`, then answers. Returns the exit code, stdout and stderr.
fn apply_answering(
    p: &Project,
    answer: &str,
    meanwhile: impl FnOnce(&Project),
) -> (i32, String, String) {
    let mut child = p
        .command(&["apply", "pb.toml"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runner starts");
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("[y/N]") {
        assert_eq!(
            stderr.read(&mut byte).unwrap(),
            1,
            "runner ended before asking: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.push(byte[0]);
    }
    meanwhile(p);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    stderr.read_to_end(&mut seen).unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let code = child.wait().unwrap().code().unwrap_or(-1);
    (code, stdout, String::from_utf8_lossy(&seen).into_owned())
}

#[test]
fn a_file_edited_while_the_prompt_waits_is_refused_and_nothing_is_applied() {
    let edits: [(&str, &str); 3] = [
        (
            "templates/app.conf.hbs",
            "greeting=edited while you read ✍\n",
        ),
        (".env", "# someone else's edit\nA=2\n"),
        ("pb.toml", "[playbook]\nname = \"other\"\n"),
    ];
    for (file, content) in edits {
        let p = project("");
        let before = p.read(file).unwrap();
        let (code, _, stderr) = apply_answering(&p, "y\n", |p| {
            p.write(file, content);
        });
        assert_eq!(code, 3, "{file}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "`{file}` changed since the plan was made (sha256 "
            )) && stderr.contains(&format!("{}..", &sha256(before.as_bytes())[..12]))
                && stderr.contains(&format!("{}..", &sha256(content.as_bytes())[..12])),
            "{file}: {stderr}"
        );
        assert!(stderr.contains("nothing was applied"), "{stderr}");
        assert_eq!(p.read("app.conf"), None, "{file}");
        if file != ".env" {
            assert_eq!(p.read(".env").unwrap(), ENV_BEFORE, "{file}");
        }
        assert!(
            !p.file(".runner/runs").exists()
                || std::fs::read_dir(p.file(".runner/runs")).unwrap().count() == 0,
            "{file}: no run was started"
        );
    }
}

#[test]
fn an_unchanged_playbook_applies_after_the_prompt_and_no_means_nothing() {
    let p = project("");
    let (code, _, stderr) = apply_answering(&p, "n\n", |_| {});
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("nothing applied"), "{stderr}");
    assert_eq!(p.read("app.conf"), None);
    let (code, stdout, stderr) = apply_answering(&p, "y\n", |_| {});
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(p.read("app.conf").unwrap(), "greeting=héllo 🚀\n");
}

#[test]
fn the_lock_is_held_while_the_prompt_waits() {
    let p = project("");
    let (code, _, stderr) = apply_answering(&p, "y\n", |p| {
        let second = p.run(&["apply", "pb.toml", "--yes"]).expect(3);
        assert!(second.stderr.contains("lock"), "{}", second.stderr);
    });
    assert_eq!(code, 0, "{stderr}");
}

/// The text without the whitespace and margins the error report wraps lines with.
fn compact(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && *c != '|')
        .collect()
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// An exec step before `late` edits the template `late` renders.
const EDITS_A_LATER_TEMPLATE: &str = r#"
[[steps]]
id = "meddle"
kind = "exec"
command = ["sh", "-c", "printf 'binary\\001\\377 and ünïcode\\n' >> templates/late.hbs"]
rollback = "none"
reason = "test"

[[steps]]
id = "late"
kind = "template"
template = "templates/late.hbs"
dest = "late.conf"
"#;

#[test]
fn a_file_edited_after_planning_is_refused_when_its_step_starts_and_earlier_steps_are_undone() {
    let p = project(EDITS_A_LATER_TEMPLATE);
    p.write("templates/late.hbs", "late\n");
    let run = p.run(&["apply", "pb.toml", "--yes"]).expect(3);
    assert!(
        run.stdout
            .contains("`templates/late.hbs` changed since the plan was made (sha256 "),
        "{}",
        run.stdout
    );
    let journal = p.journals();
    let failed = journal
        .lines()
        .find(|l| l.contains("\"step_failed\""))
        .expect("the refusal is journaled");
    assert!(
        failed.contains("\"step\":\"late\"")
            && failed.contains("refused: `templates/late.hbs` changed since the plan was made"),
        "{failed}"
    );
    // The steps before it were rolled back: the files are as they were.
    assert_eq!(p.read("app.conf"), None);
    assert_eq!(p.read(".env").unwrap(), ENV_BEFORE);
    assert_eq!(p.read("late.conf"), None);
    assert!(journal.contains("\"status\":\"rolled_back\""), "{journal}");
}

#[test]
fn with_on_failure_pause_a_drifted_step_pauses_and_rollback_undoes_the_earlier_steps() {
    let p = project(EDITS_A_LATER_TEMPLATE);
    p.write("templates/late.hbs", "late\n");
    let text = p
        .read("pb.toml")
        .unwrap()
        .replace(
            "name = \"drift\"",
            "name = \"drift\"\non_failure = \"pause\"",
        )
        .replace(r"printf 'binary\\001\\377 and ünïcode\\n'", "echo more");
    assert!(text.contains("echo more >>"));
    p.write("pb.toml", &text);
    let run = p.run(&["apply", "pb.toml", "--yes"]).expect(7);
    assert!(
        run.stdout.contains("`templates/late.hbs` changed since"),
        "{}",
        run.stdout
    );
    assert!(
        p.read("app.conf").is_some(),
        "the earlier steps stay, paused"
    );
    // Resuming would run a template that changed since the run started: refused.
    let resumed = p.run(&["resume", "--yes"]).expect(3);
    assert!(
        resumed
            .stderr
            .contains("changed since it started: `templates/late.hbs`"),
        "{}",
        resumed.stderr
    );
    p.run(&["rollback", "--yes"]).expect(0);
    assert_eq!(p.read("app.conf"), None);
    assert_eq!(p.read(".env").unwrap(), ENV_BEFORE);
}

#[test]
fn a_target_file_edited_by_an_earlier_step_is_refused_at_its_step() {
    let p = project(
        r#"
[[steps]]
id = "meddle"
kind = "exec"
command = ["sh", "-c", "echo INTRUDER=1 >> app.conf"]
rollback = "none"
reason = "test"

[[steps]]
id = "again"
kind = "template"
template = "templates/app.conf.hbs"
dest = "app.conf"
"#,
    );
    let run = p.run(&["apply", "pb.toml", "--yes"]).expect(3);
    assert!(
        run.stdout
            .contains("`app.conf` changed since the plan was made"),
        "{}",
        run.stdout
    );
    assert_eq!(p.read("app.conf"), None, "render was rolled back");
}

#[test]
fn sql_history_changed_before_its_step_is_refused_and_other_steps_rows_do_not_count() {
    let url = fresh_database("drift");
    let p = Project::new();
    p.write("sql/a.up.sql", "CREATE TABLE a_items (id int);\n")
        .write("sql/a.down.sql", "DROP TABLE a_items;\n")
        .write("sql/b.up.sql", "CREATE TABLE b_items (id int);\n")
        .write("sql/b.down.sql", "DROP TABLE b_items;\n")
        .write(
            "pb.toml",
            r#"[playbook]
name = "history"

[secrets]
PG_URL = { env = "TEST_DB_URL" }

[[steps]]
id = "one"
kind = "sql"
url = "{{secrets.PG_URL}}"
files = ["sql/a.up.sql"]

[[steps]]
id = "meddle"
kind = "exec"
command = ["psql", "{{secrets.PG_URL}}", "-X", "-c", "INSERT INTO public.runner_sql_history (file, checksum, duration_ms, success) VALUES ('b.up.sql', 'someone else', 0, true)"]
rollback = "none"
reason = "test"

[[steps]]
id = "two"
kind = "sql"
url = "{{secrets.PG_URL}}"
files = ["sql/b.up.sql"]
"#,
        );
    let mut command = p.command(&["apply", "pb.toml", "--yes"]);
    command.env("TEST_DB_URL", &url);
    let run = crate::support::finish(command).expect(3);
    assert!(
        run.stdout.contains(
            "the rows of its files in SQL history \"public\".\"runner_sql_history\" changed"
        ),
        "{}",
        run.stdout
    );
    // Step one ran (its rows are not drift for step two) and was rolled back.
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM pg_tables WHERE tablename IN ('a_items', 'b_items')"
        ),
        "0"
    );
    assert_eq!(
        psql(
            &url,
            "SELECT file FROM public.runner_sql_history ORDER BY file"
        ),
        "b.up.sql"
    );
    assert!(
        p.journals()
            .lines()
            .any(|l| l.contains("\"step_succeeded\"") && l.contains("\"step\":\"one\"")),
        "step one ran: its own rows were not drift for step two"
    );
}

#[test]
fn resume_with_var_is_a_usage_error_and_touches_nothing() {
    let p = project(
        r#"
[[steps]]
id = "boom"
kind = "exec"
command = ["sh", "-c", "exit 1"]
rollback = "none"
reason = "test"
"#,
    );
    let text = p.read("pb.toml").unwrap().replace(
        "name = \"drift\"",
        "name = \"drift\"\non_failure = \"pause\"",
    );
    p.write("pb.toml", &text);
    p.run(&["apply", "pb.toml", "--yes"]).expect(7);
    let journal = p.journals();
    let run = p.run(&["resume", "--yes", "--var", "x=1"]).expect(2);
    assert!(
        run.stderr.contains("--var") && run.stderr.contains("roll the run back"),
        "{}",
        run.stderr
    );
    assert_eq!(p.journals(), journal, "nothing was journaled");
}

#[test]
fn apply_renders_the_run_identity_into_the_plan_it_shows_and_a_saved_plan_cannot_depend_on_it() {
    let p = Project::new();
    p.write(
        "pb.toml",
        "[playbook]\nname = \"ident\"\n\n[[steps]]\nid = \"stamp\"\nkind = \"template\"\ntemplate = \"t.hbs\"\ndest = \"stamp.txt\"\n",
    )
    .write("t.hbs", "run={{run.id}} phase={{run.phase}}\n");
    let run = p.run(&["apply", "pb.toml", "--yes"]).expect(0);
    let id = std::fs::read_dir(p.file(".runner/runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .into_string()
        .unwrap();
    let written = format!("run={id} phase=ident\n");
    assert_eq!(p.read("stamp.txt").unwrap(), written);
    assert!(
        run.stdout.contains(&format!("+{}", written.trim_end())),
        "the plan shown holds what was written: {}",
        run.stdout
    );
    let saved = p.run(&["plan", "pb.toml", "--out", "plan.json"]).expect(2);
    assert!(
        saved.stderr.contains("{{run.id}}") && saved.stderr.contains("cannot be saved"),
        "{}",
        saved.stderr
    );
}

#[test]
fn journals_of_another_version_are_refused_naming_the_file_and_both_versions() {
    let p = project("");
    p.run(&["apply", "pb.toml", "--yes"]).expect(0);
    let dir = std::fs::read_dir(p.file(".runner/runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let path = dir.join("journal.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    for version in ["0", "2", "4294967296"] {
        let edited = text.replacen("\"version\":1,", &format!("\"version\":{version},"), 1);
        assert_ne!(edited, text);
        std::fs::write(&path, &edited).unwrap();
        let run = p.run(&["rollback", "--yes"]).expect(3);
        assert!(
            compact(&run.stderr).contains(&compact(&format!(
                "journal `{}` has format version {version}; this runner reads version 1 only",
                path.display()
            ))),
            "{}",
            run.stderr
        );
        let status = p.run(&["status"]).expect(0);
        assert!(status.stdout.contains("damaged"), "{}", status.stdout);
    }
}

#[test]
fn plans_of_another_version_are_refused_naming_both_versions() {
    let p = project("");
    p.run(&["plan", "pb.toml", "--out", "plan.json"]).expect(0);
    let text = p.read("plan.json").unwrap();
    for version in ["1", "3"] {
        p.write(
            "old.json",
            &text.replacen("\"version\": 2,", &format!("\"version\": {version},"), 1),
        );
        let run = p.run(&["apply", "old.json", "--yes"]).expect(2);
        assert!(
            run.stderr.contains(&format!(
                "plan `old.json` has format version {version}, this runner reads version 2 only"
            )),
            "{}",
            run.stderr
        );
    }
    assert_eq!(p.read("app.conf"), None);
}

#[test]
fn every_json_event_line_carries_the_stream_version() {
    let p = project("");
    let run = p
        .run(&["apply", "pb.toml", "--yes", "--format", "json"])
        .expect(0);
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(lines.len() >= 6, "{}", run.stdout);
    for line in &lines {
        assert_eq!(line["version"], 1, "{line}");
        assert!(line["event"].is_string(), "{line}");
    }
}
