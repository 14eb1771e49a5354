//! Runs that stop where no one planned: the disk under the state dir fills up mid-run.

use std::process::Command;

use crate::support::Project;

/// A tmpfs mounted for the test's life (tests run as root, as CI does).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: std::path::PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs needs root, as CI runs");
        Tmpfs(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The state dir's disk fills while steps run: the run stops at the append that fails, and
/// a later `rollback` (space freed) undoes every step that ran, including the one whose
/// success could not be written.
#[test]
fn a_full_disk_stops_the_run_and_a_later_rollback_leaves_nothing_behind() {
    let p = Project::new();
    let _state = Tmpfs::mount(p.file("st"), "256k");
    let mut playbook = String::from(
        r#"[playbook]
name = "full"

[[steps]]
id = "file"
kind = "template"
template = "t.hbs"
dest = "out.txt"

[[steps]]
id = "fill"
kind = "exec"
command = ["sh", "-c", "touch made-by-fill; head -c 1000000 /dev/zero > st/filler; true"]
rollback = { command = ["rm", "-f", "made-by-fill"] }
"#,
    );
    for i in 0..30 {
        playbook.push_str(&format!(
            "\n[[steps]]\nid = \"after{i}\"\nkind = \"exec\"\ncommand = [\"touch\", \"after{i}\"]\nrollback = {{ command = [\"rm\", \"-f\", \"after{i}\"] }}\n"
        ));
    }
    p.write("t.hbs", "rendered\n").write("pb.toml", &playbook);
    let before: Vec<String> = listing(&p);

    let run = p.run(&["--state-dir", "st", "apply", "--yes", "pb.toml"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr.contains("cannot write the journal")
            && run.stderr.contains("No space left on device"),
        "{}",
        run.stderr
    );
    assert!(
        !p.file("after29").exists(),
        "the run stopped at the failed append"
    );
    assert!(p.file("out.txt").exists() && p.file("made-by-fill").exists());

    std::fs::remove_file(p.file("st/filler")).unwrap();
    let undo = p.run(&["--state-dir", "st", "rollback", "--yes"]).expect(0);
    assert_eq!(listing(&p), before, "{}", undo.stdout);
    let status = p.run(&["--state-dir", "st", "status"]).expect(0);
    assert!(status.stdout.contains("rolled back"), "{}", status.stdout);
}

/// The project's files outside the state dir.
fn listing(p: &Project) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(p.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "st")
        .collect();
    names.sort();
    names
}

/// Every file of the project outside the state dir and the test's control files: its content,
/// mode and owner.
fn files(p: &Project) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut found = Vec::new();
    let mut dirs = vec![p.path().to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = path.strip_prefix(p.path()).unwrap().display().to_string();
            if name == ".runner" || name == "ctl" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                dirs.push(path.clone());
            }
            let content = if meta.is_file() {
                String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned()
            } else {
                String::new()
            };
            found.push(format!(
                "{name} mode {:o} owner {}:{} {content:?}",
                meta.mode(),
                meta.uid(),
                meta.gid()
            ));
        }
    }
    found.sort();
    found
}

const KINDS: &[&str] = &["save", "render", "flags", "writer", "schema"];

/// A project whose playbook has a backup, a template, an env edit, an exec whose child keeps
/// writing, and tracked SQL, with a gate before each (`ctl/at-<step>`, then waits for
/// `ctl/go-<step>`) so that a kill can land exactly on a step boundary.
fn matrix_project(db: &str) -> Project {
    use std::os::unix::fs::PermissionsExt;
    let p = Project::new();
    let mut playbook = String::from(
        r#"[playbook]
name = "matrix"

[secrets]
PG_URL = { env = "TEST_DB_URL" }
"#,
    );
    let steps = [
        r#"kind = "backup"
paths = [".env", "app.conf"]"#,
        r#"kind = "template"
template = "app.conf.hbs"
dest = "app.conf""#,
        r#"kind = "env"
file = ".env"
set = { ENABLE_POSTGRES = true, POOL = 20 }"#,
        r#"kind = "exec"
command = ["sh", "-c", "(for i in $(seq 30); do echo tick >> out.log; sleep 0.05; done) & touch ctl/writing; wait"]
rollback = { command = ["rm", "-f", "out.log"] }"#,
        r#"kind = "sql"
url = "{{secrets.PG_URL}}"
files = ["sql/*.up.sql"]"#,
    ];
    for (id, body) in KINDS.iter().zip(steps) {
        playbook.push_str(&format!(
            "\n[[steps]]\nid = \"gate-{id}\"\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"touch ctl/at-{id}; while [ ! -f ctl/go-{id} ]; do sleep 0.02; done\"]\nrollback = \"none\"\nreason = \"it only waits\"\n\n[[steps]]\nid = \"{id}\"\n{body}\n"
        ));
    }
    p.write("pb.toml", &playbook)
        .write("app.conf.hbs", "pool = 20\nname = \"金丝雀 🐤\"\n")
        .write("app.conf", "pool = 5\r\n")
        .write(".env", "# the relay's\r\nREDIS_HOST=redis\r\nWEB_TITLE=Claude Relay\r\n")
        .write(
            "sql/001_table.up.sql",
            "CREATE TABLE crash_t (id int PRIMARY KEY, name text);\nINSERT INTO crash_t VALUES (1, '金丝雀');\n",
        )
        .write("sql/001_table.down.sql", "DROP TABLE crash_t;\n")
        .write(
            "sql/002_slow.up.sql",
            "INSERT INTO crash_t VALUES (2, 'slow');\nSELECT pg_sleep(1.5);\n",
        )
        .write("sql/002_slow.down.sql", "DELETE FROM crash_t WHERE id = 2;\n");
    std::fs::create_dir_all(p.file("ctl")).unwrap();
    std::fs::set_permissions(p.file(".env"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(p.file(".env"), Some(1234), Some(1234)).unwrap();
    std::os::unix::fs::chown(p.file("app.conf"), Some(1234), Some(1234)).unwrap();
    let _ = db;
    p
}

fn open_gates(p: &Project) {
    for id in KINDS {
        p.write(&format!("ctl/go-{id}"), "");
    }
}

/// The test table's ids and the SQL history's length ("-" for a table that is not there).
fn rows(db: &str) -> String {
    let psql = |sql: &str| crate::support::psql(db, sql);
    let exists = |t: &str| psql(&format!("SELECT to_regclass('{t}') IS NOT NULL")) == "t";
    let ids = if exists("crash_t") {
        psql("SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM crash_t")
    } else {
        "-".into()
    };
    let history = if exists("runner_sql_history") {
        psql("SELECT count(*) FROM runner_sql_history")
    } else {
        "-".into()
    };
    format!("{ids}|{history}")
}

/// Where a run is killed: on the boundary before a step (its gate reached), or inside the
/// exec step (its child writing) or inside the SQL step (its second file sleeping).
#[derive(Debug, Clone, Copy)]
enum Kill {
    Before(&'static str),
    InsideWriter,
    InsideSql,
}

fn kill_at(p: &Project, db: &str, at: Kill) {
    let mut command = p.command(&["apply", "--yes", "pb.toml"]);
    command.env("TEST_DB_URL", db);
    let mut child = command.spawn().unwrap();
    let open_until = |last: &str| {
        for id in KINDS {
            if *id == last {
                break;
            }
            p.write(&format!("ctl/go-{id}"), "");
        }
    };
    match at {
        Kill::Before(step) => {
            open_until(step);
            p.wait_for(&format!("ctl/at-{step}"));
        }
        Kill::InsideWriter => {
            open_until("schema");
            p.wait_for("ctl/writing");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        Kill::InsideSql => {
            open_until("schema");
            p.write("ctl/go-schema", "");
            // 001 is quick; 002 sleeps 1.5 s inside its transaction.
            for _ in 0..200 {
                if crate::support::psql(
                    db,
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(1.5)%' AND pid <> pg_backend_pid()",
                ) == "1"
                {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// SIGKILL at every step boundary and inside the steps that take time; after each, `rollback`
/// exits 0 and leaves every file as it was (content, mode, owner), no row, no process; and
/// `resume` after the same kill ends as an uninterrupted run does.
#[test]
fn sigkill_anywhere_then_rollback_restores_everything_and_resume_matches_a_clean_run() {
    let kills = [
        Kill::Before("save"),
        Kill::Before("render"),
        Kill::Before("flags"),
        Kill::Before("writer"),
        Kill::InsideWriter,
        Kill::Before("schema"),
        Kill::InsideSql,
    ];
    // The uninterrupted run, for what resume must reach.
    let clean_db = crate::support::fresh_database("crash_clean");
    let clean = matrix_project(&clean_db);
    open_gates(&clean);
    let mut command = clean.command(&["apply", "--yes", "pb.toml"]);
    command.env("TEST_DB_URL", &clean_db);
    crate::support::finish(command).expect(0);
    let clean_files = files(&clean);
    let clean_rows = rows(&clean_db);
    assert_eq!(clean_rows, "1,2|2");

    for (n, at) in kills.into_iter().enumerate() {
        let db = crate::support::fresh_database(&format!("crash{n}"));
        let p = matrix_project(&db);
        let before = files(&p);
        kill_at(&p, &db, at);
        let groups = crate::support::child_groups(&p);
        let mut command = p.command(&["rollback", "--yes"]);
        command.env("TEST_DB_URL", &db);
        let undo = crate::support::finish(command);
        assert_eq!(undo.code, 0, "{at:?}: {}\n{}", undo.stdout, undo.stderr);
        std::thread::sleep(std::time::Duration::from_secs(5));
        let alive: Vec<_> = groups
            .into_iter()
            .filter(|g| crate::support::group_alive(*g))
            .collect();
        assert!(
            alive.is_empty(),
            "{at:?}: processes of the killed run live on: {alive:?}"
        );
        let after = files(&p);
        let changed: Vec<_> = after.iter().filter(|f| !before.contains(f)).collect();
        let lost: Vec<_> = before.iter().filter(|f| !after.contains(f)).collect();
        assert!(
            changed.is_empty() && lost.is_empty(),
            "{at:?}: the files are not as they were: now {changed:#?}, before {lost:#?}"
        );
        let left = rows(&db);
        assert!(
            left == "-|-" || left == "-|0",
            "{at:?}: rows or history remain: {left}"
        );

        let db = crate::support::fresh_database(&format!("crash{n}r"));
        let p = matrix_project(&db);
        let before = files(&p);
        kill_at(&p, &db, at);
        open_gates(&p);
        let mut command = p.command(&["resume", "--yes"]);
        command.env("TEST_DB_URL", &db);
        let resumed = crate::support::finish(command);
        assert_eq!(
            resumed.code, 0,
            "{at:?}: {}\n{}",
            resumed.stdout, resumed.stderr
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
        let after = files(&p);
        let changed: Vec<_> = after.iter().filter(|f| !clean_files.contains(f)).collect();
        let lost: Vec<_> = clean_files.iter().filter(|f| !after.contains(f)).collect();
        assert!(
            changed.is_empty() && lost.is_empty(),
            "{at:?}: resume does not end as a clean run: now {changed:#?}, clean {lost:#?}"
        );
        assert_eq!(rows(&db), clean_rows, "{at:?}");
        // And the resumed run rolls back to where the first attempt started.
        let mut command = p.command(&["rollback", "--yes"]);
        command.env("TEST_DB_URL", &db);
        let undo = crate::support::finish(command);
        assert_eq!(undo.code, 0, "{at:?}: {}\n{}", undo.stdout, undo.stderr);
        let after = files(&p);
        let changed: Vec<_> = after.iter().filter(|f| !before.contains(f)).collect();
        assert!(
            changed.is_empty(),
            "{at:?}: after resume and rollback: {changed:#?}"
        );
        assert_eq!(rows(&db), "-|0", "{at:?}");
    }
}
