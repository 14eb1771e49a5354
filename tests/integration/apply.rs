//! Apply, failure and rollback, resume after SIGKILL, the lock, and secrets kept out of output.

use std::os::unix::fs::PermissionsExt;

use crate::support::{Project, SENTINEL};

const ENV_BEFORE: &str = "# keep me\nA=1\nexport B=two words\n";

/// A project with the demo playbook; `extra` steps are appended.
fn project(extra: &str) -> Project {
    let p = Project::new();
    p.write(
        "pb.toml",
        &format!(
            r#"[playbook]
name = "demo"
phase = "hybrid"

[vars]
port = 3000

[secrets]
DB_PASSWORD = {{ env = "DB_PASSWORD" }}

[[steps]]
id = "save"
kind = "backup"
paths = [".env", "app.conf"]

[[steps]]
id = "render"
kind = "template"
template = "templates/app.conf.hbs"
dest = "app.conf"
mode = "0600"

[[steps]]
id = "flags"
kind = "env"
file = ".env"
set = {{ ENABLE_POSTGRES = true, DB_PASSWORD = "{{{{secrets.DB_PASSWORD}}}}" }}

[[steps]]
id = "mark"
kind = "exec"
command = ["sh", "-c", "echo ran >> marks.log; echo the secret is $PW"]
env = {{ PW = "{{{{secrets.DB_PASSWORD}}}}" }}
rollback = {{ command = ["sh", "-c", "rm marks.log; echo undo knows $PW"], env = {{ PW = "{{{{secrets.DB_PASSWORD}}}}" }} }}
{extra}"#
        ),
    )
    .write("templates/app.conf.hbs", "port={{vars.port}}\npassword={{secrets.DB_PASSWORD}}\nphase={{run.phase}}\n")
    .write(".env", ENV_BEFORE);
    std::fs::set_permissions(p.file(".env"), std::fs::Permissions::from_mode(0o640)).unwrap();
    p
}

const FAILING: &str = r#"
[[steps]]
id = "boom"
kind = "exec"
command = ["sh", "-c", "echo about to fail; exit 3"]
rollback = "none"
reason = "it changes nothing"
"#;

fn mode(p: &Project, name: &str) -> u32 {
    std::fs::metadata(p.file(name))
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn apply_runs_every_step_in_order() {
    let p = project("");
    let run = p.run(&["apply", "pb.toml", "--yes"]).expect(0);
    assert_eq!(
        p.read("app.conf").unwrap(),
        format!("port=3000\npassword={SENTINEL}\nphase=hybrid\n")
    );
    assert_eq!(mode(&p, "app.conf"), 0o600);
    let env = p.read(".env").unwrap();
    assert!(env.starts_with(ENV_BEFORE), "other lines kept: {env}");
    assert!(
        env.contains("ENABLE_POSTGRES=true\n")
            && env.contains(&format!("DB_PASSWORD={SENTINEL}\n"))
    );
    assert_eq!(p.read("marks.log").unwrap(), "ran\n");
    assert!(run.stdout.contains("run succeeded"), "{}", run.stdout);
    for step in ["save", "render", "flags", "mark"] {
        assert!(
            run.stdout.contains(&format!("ok      {step}")),
            "{}",
            run.stdout
        );
    }
}

#[test]
fn a_failing_step_rolls_back_every_file_byte_for_byte() {
    let p = project(FAILING);
    let run = p.run(&["apply", "pb.toml", "--yes"]).expect(4);
    assert_eq!(p.read(".env").unwrap(), ENV_BEFORE);
    assert_eq!(mode(&p, ".env"), 0o640);
    assert!(
        !p.file("app.conf").exists(),
        "a file that did not exist is removed"
    );
    assert!(
        !p.file("marks.log").exists(),
        "the exec step's rollback command ran"
    );
    assert!(run.stdout.contains("FAILED  boom"), "{}", run.stdout);
    assert!(
        run.stdout.contains("about to fail"),
        "the failure quotes the output: {}",
        run.stdout
    );
    let undone: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("undone"))
        .collect();
    let order: Vec<&str> = undone
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        order,
        ["mark", "flags", "render", "save"],
        "reverse order: {}",
        run.stdout
    );
    assert!(run.stdout.contains("run rolled back"));
    let status = p.run(&["status"]).expect(0);
    assert!(status.stdout.contains("rolled back"), "{}", status.stdout);
}

#[test]
fn rollback_in_a_new_process_works_from_the_journal() {
    let p = project("");
    p.run(&["apply", "pb.toml", "--yes"]).expect(0);
    // The playbook is gone: rollback needs only the journal.
    std::fs::remove_file(p.file("pb.toml")).unwrap();
    let run = p.run(&["rollback", "--yes"]).expect(0);
    assert_eq!(p.read(".env").unwrap(), ENV_BEFORE);
    assert_eq!(mode(&p, ".env"), 0o640);
    assert!(!p.file("app.conf").exists());
    assert!(!p.file("marks.log").exists());
    assert!(run.stdout.contains("run rolled back"), "{}", run.stdout);
    let again = p.run(&["rollback", "--yes"]).expect(3);
    assert!(
        again.stderr.contains("already rolled back"),
        "{}",
        again.stderr
    );
}

#[test]
fn the_secret_never_appears_in_output_journal_or_plans() {
    let p = project(FAILING);
    let mut seen = String::new();
    for format in ["human", "json", "markdown"] {
        let plan = p.run(&["plan", "pb.toml", "--format", format]).expect(0);
        seen.push_str(&plan.stdout);
        seen.push_str(&plan.stderr);
    }
    p.run(&["plan", "pb.toml", "--out", "plan.json"]).expect(0);
    seen.push_str(&p.read("plan.json").unwrap());
    for format in ["json", "human", "markdown"] {
        let run = p
            .run(&["apply", "pb.toml", "--yes", "--format", format])
            .expect(4);
        seen.push_str(&run.stdout);
        seen.push_str(&run.stderr);
    }
    let status = p.run(&["status", "--format", "json"]).expect(0);
    seen.push_str(&status.stdout);
    seen.push_str(&p.journals());
    assert!(seen.contains("<redacted>"), "the secret is shown redacted");
    assert!(
        seen.contains("the secret is <redacted>"),
        "command output is redacted, not dropped"
    );
    assert!(!seen.contains(SENTINEL), "the secret leaked");
    // It was really used: the rendered file held it before the rollback.
    let apply = p.run(&["apply", "pb.toml", "--yes"]).expect(4);
    assert!(!apply.stdout.contains(SENTINEL) && !apply.stderr.contains(SENTINEL));
    assert!(
        p.journals().contains("\"sealed\":\"undo/mark.json\""),
        "the secret-bearing undo record is sealed"
    );
}

#[test]
fn the_rendered_file_holds_the_secret() {
    let p = project("");
    p.run(&["apply", "pb.toml", "--yes", "--format", "json"])
        .expect(0);
    assert!(p.read("app.conf").unwrap().contains(SENTINEL));
    assert!(!p.journals().contains(SENTINEL));
}

#[test]
fn resume_after_sigkill_runs_each_completed_step_once() {
    let extra = r#"
[[steps]]
id = "long"
kind = "exec"
command = ["sh", "-c", "echo long >> marks.log; touch long.started; while [ ! -f go ]; do sleep 0.05; done"]
rollback = "none"
reason = "test step"

[[steps]]
id = "last"
kind = "exec"
command = ["sh", "-c", "echo last >> marks.log"]
rollback = "none"
reason = "test step"
"#;
    let p = project(extra);
    let mut child = p.spawn(&["apply", "pb.toml", "--yes"]);
    p.wait_for("long.started");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let status = p.run(&["status"]).expect(0);
    assert!(status.stdout.contains("unfinished"), "{}", status.stdout);
    p.write("go", "");
    let run = p.run(&["resume", "--yes"]).expect(0);
    assert!(
        run.stderr.contains("is gone; lock taken over")
            || run.stdout.contains("is gone; lock taken over"),
        "the dead holder is detected: {}{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        p.read("marks.log").unwrap(),
        "ran\nlong\nlong\nlast\n",
        "completed steps ran once, the interrupted one again"
    );
    for step in ["save", "render", "flags", "mark"] {
        assert!(
            run.stdout.contains(&format!("skip    {step}")),
            "{}",
            run.stdout
        );
    }
    // The snapshots taken before the crash still hold: rollback restores the original files.
    p.run(&["rollback", "--yes"]).expect(0);
    assert_eq!(p.read(".env").unwrap(), ENV_BEFORE);
    assert!(!p.file("app.conf").exists());
}

#[test]
fn a_second_apply_is_refused_while_one_runs() {
    let extra = r#"
[[steps]]
id = "wait"
kind = "exec"
command = ["sh", "-c", "touch wait.started; while [ ! -f go ]; do sleep 0.05; done"]
rollback = "none"
reason = "test step"
"#;
    let p = project(extra);
    let mut first = p.spawn(&["apply", "pb.toml", "--yes"]);
    p.wait_for("wait.started");
    let second = p.run(&["apply", "pb.toml", "--yes"]).expect(3);
    assert!(
        second.stderr.contains(&format!("pid {}", first.id())),
        "names the holder: {}",
        second.stderr
    );
    p.write("go", "");
    assert!(first.wait().unwrap().success());
}

#[test]
fn pause_then_resume_and_resume_refuses_a_changed_playbook() {
    let extra = r#"
[[steps]]
id = "gate"
kind = "exec"
command = ["sh", "-c", "test -f fixed"]
rollback = "none"
reason = "a check"
"#;
    let p = project(extra);
    let text = p.read("pb.toml").unwrap().replace(
        "phase = \"hybrid\"",
        "phase = \"hybrid\"\non_failure = \"pause\"",
    );
    p.write("pb.toml", &text);
    p.run(&["apply", "pb.toml", "--yes"]).expect(7);
    assert!(p.file("app.conf").exists(), "pause keeps what was done");
    p.write("pb.toml", &format!("{text}\n# edited\n"));
    let refused = p.run(&["resume", "--yes"]).expect(3);
    assert!(
        refused
            .stderr
            .contains("changed since it started: `pb.toml`"),
        "{}",
        refused.stderr
    );
    p.write("pb.toml", &text).write("fixed", "");
    p.run(&["resume", "--yes"]).expect(0);
    assert_eq!(p.read("marks.log").unwrap(), "ran\n");
    let nothing = p.run(&["resume", "--yes"]).expect(3);
    assert!(
        nothing.stderr.contains("nothing to resume"),
        "{}",
        nothing.stderr
    );
}

#[test]
fn retries_with_backoff_then_succeeds() {
    let extra = r#"
[[steps]]
id = "flaky"
kind = "exec"
command = ["sh", "-c", "echo try >> tries.log; [ $(wc -l < tries.log) -ge 3 ]"]
retries = 3
backoff = "10ms"
rollback = "none"
reason = "a check"
"#;
    let p = project(extra);
    let run = p.run(&["apply", "pb.toml", "--yes"]).expect(0);
    assert_eq!(p.read("tries.log").unwrap().lines().count(), 3);
    assert_eq!(
        run.stdout.matches("will retry").count(),
        2,
        "{}",
        run.stdout
    );
}

#[test]
fn a_timeout_fails_the_step() {
    let extra = r#"
[[steps]]
id = "slow"
kind = "exec"
command = ["sleep", "5"]
timeout = "200ms"
rollback = "none"
reason = "a check"
"#;
    let p = project(extra);
    let run = p.run(&["apply", "pb.toml", "--yes"]).expect(4);
    assert!(
        run.stdout.contains("timed out after 200ms"),
        "{}",
        run.stdout
    );
}

#[test]
fn apply_without_yes_and_without_a_terminal_refuses_to_guess() {
    let p = project("");
    let run = p.run(&["apply", "pb.toml"]).expect(2);
    assert!(run.stderr.contains("pass --yes"), "{}", run.stderr);
    assert!(!p.file("app.conf").exists());
}

/// The journal files of the project's runs, oldest first.
fn journal_files(p: &Project) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(p.file(".runner/runs"))
        .unwrap()
        .map(|e| e.unwrap().path().join("journal.jsonl"))
        .collect();
    files.sort();
    files
}

fn append(path: &std::path::Path, bytes: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes.as_bytes()).unwrap();
}

/// Every line of a journal is whole JSON.
fn assert_whole(path: &std::path::Path) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.ends_with('\n'), "{text}");
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("a damaged line {line:?}: {e}"));
    }
}

#[test]
fn a_torn_last_line_is_cut_before_rollback_and_resume_append() {
    // A crash while the last line was written, then rollback: the torn bytes go, noted.
    let p = project("");
    p.run(&["apply", "pb.toml", "--yes"]).expect(0);
    let first = journal_files(&p).remove(0);
    append(
        &first,
        r#"{"seq":99,"at":"2026-12-01T00:00:00.000Z","event":"step_sta"#,
    );
    p.run(&["status"]).expect(0);
    p.run(&["rollback", "--yes"]).expect(0);
    assert_eq!(p.read(".env").unwrap(), ENV_BEFORE);
    assert!(!p.file("marks.log").exists());
    assert_whole(&first);
    let journal = std::fs::read_to_string(&first).unwrap();
    assert!(
        journal.contains("the journal's last line was torn") && journal.contains("cut its"),
        "{journal}"
    );
    let status = p.run(&["status"]).expect(0);
    assert!(status.stdout.contains("rolled back"), "{}", status.stdout);
    p.run(&["apply", "pb.toml", "--yes"]).expect(0);

    // The same with resume of a paused run; a last line whole but for its newline is kept.
    let extra = "\n[[steps]]\nid = \"gate\"\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"test -f fixed\"]\nrollback = \"none\"\nreason = \"a check\"\n";
    let p = project(extra);
    let text = p.read("pb.toml").unwrap().replace(
        "phase = \"hybrid\"",
        "phase = \"hybrid\"\non_failure = \"pause\"",
    );
    p.write("pb.toml", &text);
    p.run(&["apply", "pb.toml", "--yes"]).expect(7);
    let journal = journal_files(&p).remove(0);
    append(
        &journal,
        r#"{"seq":99,"at":"2026-12-01T00:00:00.000Z","event":"warning","message":"whole"}"#,
    );
    p.run(&["status"]).expect(0);
    p.write("fixed", "");
    p.run(&["resume", "--yes"]).expect(0);
    assert_whole(&journal);
    assert!(
        std::fs::read_to_string(&journal)
            .unwrap()
            .contains(r#""message":"whole""#)
    );
    append(&journal, "{\"seq\":");
    p.run(&["rollback", "--yes"]).expect(0);
    assert_whole(&journal);
    assert_eq!(p.read(".env").unwrap(), ENV_BEFORE);
}

#[test]
fn a_damaged_journal_affects_only_its_own_run() {
    let p = project("");
    p.run(&["apply", "pb.toml", "--yes"]).expect(0);
    p.run(&["rollback", "--yes"]).expect(0);
    let damaged = journal_files(&p).remove(0);
    let text = std::fs::read_to_string(&damaged).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[2] = "not json at all";
    std::fs::write(&damaged, lines.join("\n") + "\n").unwrap();
    let old = damaged
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();

    p.run(&["apply", "pb.toml", "--yes"]).expect(0);
    let status = p.run(&["status"]).expect(0);
    assert!(
        status.stdout.contains(&format!("{old}  damaged: journal")),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("succeeded"), "{}", status.stdout);
    let json = p.run(&["status", "--format", "json"]).expect(0);
    assert!(
        json.stdout.contains(r#""status": "damaged""#),
        "{}",
        json.stdout
    );
    p.run(&["rollback", "--yes"]).expect(0);
    assert_eq!(p.read(".env").unwrap(), ENV_BEFORE);
    let refused = p.run(&["rollback", "--yes", "--run", &old]).expect(3);
    assert!(
        refused
            .stderr
            .contains(&format!("the journal of run {old} cannot be read")),
        "{}",
        refused.stderr
    );
    let shown = p.run(&["status", "--run", &old]).expect(0);
    assert!(shown.stdout.contains("damaged"), "{}", shown.stdout);
}

#[test]
fn sigkill_inside_an_exec_step_is_undone_and_its_children_stopped() {
    let extra = r#"
[[steps]]
id = "writer"
kind = "exec"
command = ["sh", "-c", "(while true; do date >> out.log; sleep 0.05; done) & touch started; sleep 60"]
rollback = { command = ["sh", "-c", "rm -f out.log started"] }
"#;
    let p = project(extra);
    let mut child = p.spawn(&["apply", "pb.toml", "--yes"]);
    p.wait_for("started");
    child.kill().unwrap(); // SIGKILL, in the middle of the step
    child.wait().unwrap();
    let groups = crate::support::child_groups(&p);
    assert_eq!(groups.len(), 1, "{}", p.journals());
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        crate::support::group_alive(groups[0]),
        "the step's children outlive the runner"
    );

    let run = p.run(&["rollback", "--yes"]).expect(0);
    assert!(
        run.stderr
            .contains(&format!("stopped process group {}", groups[0])),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("undone  writer"), "{}", run.stdout);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(
        !p.file("out.log").exists(),
        "the orphan wrote again after the rollback"
    );
    assert!(!crate::support::group_alive(groups[0]));
    assert_eq!(p.read(".env").unwrap(), ENV_BEFORE);
    assert!(!p.file("marks.log").exists());
}

#[test]
fn command_output_is_read_as_bytes_and_bounded() {
    let extra = r#"
[[steps]]
id = "bytes"
kind = "exec"
command = ["sh", "-c", "printf 'caf\\351\\n'; sleep 0.2; echo after; head -c 200000000 /dev/zero | tr '\\0' a; echo; echo end"]
rollback = "none"
reason = "prints only"
"#;
    let p = project(extra);
    let run = p.run(&["apply", "pb.toml", "--yes"]).expect(0);
    assert!(run.stdout.contains("ok      bytes"), "{}", run.stdout);
    let usage =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    let peak_mb = usage.max_rss() / 1024;
    eprintln!("peak RSS of the runner with a 200 MB output line: {peak_mb} MB");
    assert!(peak_mb < 100, "a 200 MB line took {peak_mb} MB");
}

/// A command that prints 50,000 lines: 10,000 are shown (`-v` shows every line), the rest
/// counted, the step succeeds; if it fails, its last lines are quoted all the same.
#[test]
fn command_output_is_bounded_in_total() {
    let extra = r#"
[[steps]]
id = "chatty"
kind = "exec"
command = ["sh", "-c", "seq -f 'line %g' 1 50000"]
rollback = "none"
reason = "prints only"

[[steps]]
id = "chatty-fails"
kind = "exec"
command = ["sh", "-c", "seq -f 'failing %g' 1 20000; exit 3"]
rollback = "none"
reason = "prints only"
"#;
    let p = project(extra);
    let run = p.run(&["-v", "apply", "pb.toml", "--yes"]).expect(4);
    let shown = run.stdout.matches("line ").count();
    assert!(
        run.stdout.contains("line 10000\n") && !run.stdout.contains("line 10001\n"),
        "the first 10,000 lines are shown ({shown} are)"
    );
    assert!(
        run.stdout
            .contains("[40000 more line(s) of output, 400000 byte(s), not shown;"),
        "{}",
        &run.stdout[run.stdout.len().saturating_sub(2000)..]
    );
    assert!(
        run.stdout.contains("failing 20000"),
        "the failure quotes the last lines"
    );
}
