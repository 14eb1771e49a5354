//! Runs that stop where no one planned: the disk under the state dir fills up mid-run.

use std::process::Command;

use crate::migrate::{MAPPING, SQL};
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

const KINDS: &[&str] = &["save", "render", "flags", "writer", "schema", "migrate"];

/// The Redis database the matrix's migration reads, seeded once per test and only read (no
/// other test uses it).
const REDIS_DB: u8 = 6;

/// A project whose playbook has a backup, a template, an env edit, an exec whose child keeps
/// writing, tracked SQL (the test's table and the shipped schema, its role `vars.app_user`) and
/// a migration from Redis database `REDIS_DB`, with a gate before each (`ctl/at-<step>`, then
/// waits for `ctl/go-<step>`) so that a kill can land exactly on a step boundary.
fn matrix_project() -> Project {
    use std::os::unix::fs::PermissionsExt;
    let p = Project::new();
    let mut playbook = String::from(
        r#"[playbook]
name = "matrix"

[vars]
app_user = "claude_app"

[secrets]
PG_URL = { env = "TEST_DB_URL" }
"#,
    );
    let steps = [
        r#"kind = "backup"
paths = [".env", "app.conf"]"#
            .to_string(),
        r#"kind = "template"
template = "app.conf.hbs"
dest = "app.conf""#
            .to_string(),
        r#"kind = "env"
file = ".env"
set = { ENABLE_POSTGRES = true, POOL = 20 }"#
            .to_string(),
        r#"kind = "exec"
command = ["sh", "-c", "(for i in $(seq 30); do echo tick >> out.log; sleep 0.05; done) & touch ctl/writing; wait"]
rollback = { command = ["rm", "-f", "out.log"] }"#
            .to_string(),
        format!(
            r#"kind = "sql"
url = "{{{{secrets.PG_URL}}}}"
files = ["sql/*.up.sql", "{SQL}"]
settings = {{ "runner.app_user" = "{{{{vars.app_user}}}}", "runner.app_password" = "crash-app-password" }}"#
        ),
        format!(
            r#"kind = "migrate"
redis = "{redis}/{REDIS_DB}"
postgres = "{{{{secrets.PG_URL}}}}"
mapping = "{MAPPING}"
batch_size = {MIGRATE_BATCH}"#,
            redis = crate::support::service("RUNNER_TEST_REDIS_URL"),
        ),
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
    p
}

/// Keys a migration page (and transaction): small, so that the migration checkpoints often
/// and a kill can land between two checkpoints.
const MIGRATE_BATCH: usize = 20;

/// `--api-keys` of the seeded relay dataset: enough for the migration to take a second or
/// two, so that a kill lands inside it.
const SEED_KEYS: &str = "100";

/// The shipped schema's login role for database `db` (roles are the server's, databases come
/// and go: one each, which the schema's rollback drops).
fn app_role(db: &str) -> String {
    format!("app_{}", db.rsplit('/').next().unwrap())
}

/// `runner apply` of the matrix into database `db`.
fn apply(p: &Project, db: &str) -> Command {
    let user = format!("app_user={}", app_role(db));
    let mut command = p.command(&["apply", "--yes", "--var", &user, "pb.toml"]);
    command.env("TEST_DB_URL", db);
    command
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

/// Each migration table's row count and a checksum of its keys and values in key order, or
/// None when the schema is not there.
fn migrated(db: &str) -> Option<Vec<(String, u64, String)>> {
    let psql = |sql: &str| crate::support::psql(db, sql);
    if psql("SELECT to_regclass('claude_data.migration_runs') IS NULL") == "t" {
        return None;
    }
    let sql = crate::migrate::TABLES
        .iter()
        .map(|t| {
            format!(
                "SELECT '{t}', count(*), md5(coalesce(string_agg(source_key || E'\\t' || source::text, E'\\n' ORDER BY source_key), '')) FROM claude_data.{t}"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    Some(
        psql(&sql)
            .lines()
            .map(|line| {
                let cells: Vec<&str> = line.split('|').collect();
                (cells[0].into(), cells[1].parse().unwrap(), cells[2].into())
            })
            .collect(),
    )
}

/// No row in the migration's tables, or no tables.
fn no_migrated_rows(db: &str) -> bool {
    migrated(db).is_none_or(|tables| tables.iter().all(|(_, n, _)| *n == 0))
}

/// Whether the journal of `p`'s runs says `step` succeeded.
fn succeeded(p: &Project, step: &str) -> bool {
    p.journals()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|v| v["event"] == "step_succeeded" && v["step"] == step)
}

/// Where a run is killed: on the boundary before a step (its gate reached), or inside the
/// exec step (its child writing), inside the SQL step (its second file sleeping) or inside the
/// migration (a checkpoint journaled, its success not).
#[derive(Debug, Clone, Copy)]
enum Kill {
    Before(&'static str),
    InsideWriter,
    InsideSql,
    InsideMigrate,
}

fn kill_at(p: &Project, db: &str, at: Kill) {
    let mut child = apply(p, db).spawn().unwrap();
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
        Kill::InsideMigrate => {
            open_gates(p);
            let start = std::time::Instant::now();
            while !p.journals().contains("checkpoint cursor") {
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "the run ended before the migration checkpointed"
                );
                assert!(
                    start.elapsed() < std::time::Duration::from_secs(120),
                    "the migration never checkpointed"
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    if let Kill::InsideMigrate = at {
        assert!(
            !succeeded(p, "migrate"),
            "the kill landed after the migration's success was journaled, not inside it: give it more keys or a smaller MIGRATE_BATCH"
        );
    }
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
        Kill::Before("migrate"),
        Kill::InsideMigrate,
    ];
    // The migration's source, read by every run and written by none.
    crate::migrate::seed(REDIS_DB, &["--api-keys", SEED_KEYS]);
    // The uninterrupted run, for what resume must reach.
    let clean_db = crate::support::fresh_database("crash_clean");
    let clean = matrix_project();
    open_gates(&clean);
    let run = crate::support::finish(apply(&clean, &clean_db)).expect(0);
    let migration = run.stdout.lines().find(|l| l.contains("keys scanned"));
    eprintln!(
        "the clean run's migration: {}",
        migration.unwrap_or(&run.stdout)
    );
    let clean_files = files(&clean);
    let clean_rows = rows(&clean_db);
    assert_eq!(clean_rows, "1,2|9");
    let clean_migrated = migrated(&clean_db).unwrap();
    assert!(
        clean_migrated.iter().map(|(_, n, _)| n).sum::<u64>() > 1000,
        "{clean_migrated:?}"
    );

    for (n, at) in kills.into_iter().enumerate() {
        let db = crate::support::fresh_database(&format!("crash{n}"));
        let p = matrix_project();
        let before = files(&p);
        kill_at(&p, &db, at);
        let groups = crate::support::child_groups(&p);
        let mut command = p.command(&["rollback", "--yes"]);
        command.env("TEST_DB_URL", &db);
        let undo = crate::support::finish(command);
        assert_eq!(undo.code, 0, "{at:?}: {}\n{}", undo.stdout, undo.stderr);
        if let Kill::InsideMigrate = at {
            // The interrupted migration's own undo ran (before the schema's), on rows it wrote.
            let line = undo.stdout.lines().find(|l| l.contains("undone  migrate"));
            assert!(
                line.is_some_and(|l| l.contains("removed the ") && !l.contains(" 0 row(s)")),
                "{at:?}: the migration's rows were not removed by its own undo: {}",
                undo.stdout
            );
        }
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
        assert!(
            no_migrated_rows(&db),
            "{at:?}: migrated rows remain: {:?}",
            migrated(&db)
        );

        let db = crate::support::fresh_database(&format!("crash{n}r"));
        let p = matrix_project();
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
        assert_eq!(
            migrated(&db).as_ref(),
            Some(&clean_migrated),
            "{at:?}: the migrated tables differ from a clean run's"
        );
        if let Kill::InsideMigrate = at {
            assert!(
                p.journals().contains("resumed from the checkpoint"),
                "{at:?}: the migration started over"
            );
        }
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
        assert!(
            no_migrated_rows(&db),
            "{at:?}: after resume and rollback: {:?}",
            migrated(&db)
        );
    }
    // The clean run's database goes, and with it what its role owns.
    let admin = crate::support::service("RUNNER_TEST_PG_URL");
    let name = clean_db.rsplit('/').next().unwrap();
    crate::support::psql(&admin, &format!("DROP DATABASE {name} WITH (FORCE)"));
    crate::support::psql(
        &admin,
        &format!("DROP ROLE IF EXISTS {}", app_role(&clean_db)),
    );
}
