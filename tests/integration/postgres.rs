//! The PostgreSQL steps against the real server of scripts/services.sh: the shipped sql/ as
//! tracked migrations, failures in the middle, checksum drift, connection errors, TLS, backups.

use std::io::{Read, Write};

use crate::support::{Project, SENTINEL, fresh_database, psql, service, tool_output};

/// A project whose playbook applies `files` with a sql step to the URL in TEST_DB_URL.
fn sql_project(files: &str, on_failure: &str) -> Project {
    let p = Project::new();
    p.write(
        "pb.toml",
        &format!(
            r#"[playbook]
name = "db"
on_failure = "{on_failure}"

[secrets]
PG_URL = {{ env = "TEST_DB_URL" }}
APP_PASSWORD = {{ env = "DB_PASSWORD" }}

[[steps]]
id = "schema"
kind = "sql"
url = "{{{{secrets.PG_URL}}}}"
files = ["{files}"]
settings = {{ "runner.app_user" = "app_{pid}", "runner.app_password" = "{{{{secrets.APP_PASSWORD}}}}" }}
"#,
            pid = std::process::id()
        ),
    );
    p
}

fn run(p: &Project, url: &str, args: &[&str]) -> crate::support::Run {
    let mut command = p.command(args);
    command.env("TEST_DB_URL", url);
    crate::support::finish(command)
}

fn copy_shipped_sql(p: &Project) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        p.write(
            &format!("sql/{}", path.file_name().unwrap().to_str().unwrap()),
            &std::fs::read_to_string(&path).unwrap(),
        );
    }
}

#[test]
fn shipped_sql_applies_reapplies_as_noop_rolls_back_and_applies_again() {
    let url = fresh_database("shipped");
    let p = sql_project("sql/*.up.sql", "rollback");
    copy_shipped_sql(&p);
    let role = format!("app_{}", std::process::id());
    run(&p, &url, &["apply", "pb.toml", "--yes"]).expect(0);
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM runner_sql_history WHERE success"
        ),
        "7"
    );
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'claude_data'"
        ),
        "14"
    );
    assert_eq!(
        psql(
            &url,
            "SELECT extname FROM pg_extension WHERE extname IN ('pgcrypto', 'uuid-ossp') ORDER BY 1"
        ),
        "pgcrypto\nuuid-ossp"
    );
    // The application role logs in with the password given as a secret.
    let (base, db) = url.rsplit_once('/').unwrap();
    let host = base.rsplit_once('@').unwrap().1;
    assert_eq!(
        psql(
            &format!("postgres://{role}:{SENTINEL}@{host}/{db}"),
            "SELECT current_user"
        ),
        role
    );
    assert_eq!(
        psql(
            &url,
            "SELECT claude_data.decrypt_sensitive(claude_data.encrypt_sensitive('x', 'k'), 'k')"
        ),
        "x"
    );
    let applied_at = psql(
        &url,
        "SELECT string_agg(applied_at::text, ',' ORDER BY file) FROM runner_sql_history",
    );

    let again = run(&p, &url, &["apply", "pb.toml", "--yes"]).expect(0);
    assert!(
        again.stdout.contains("applied 0 file(s)"),
        "{}",
        again.stdout
    );
    assert_eq!(
        psql(
            &url,
            "SELECT string_agg(applied_at::text, ',' ORDER BY file) FROM runner_sql_history"
        ),
        applied_at
    );

    let nothing = run(&p, &url, &["rollback", "--yes"]).expect(0);
    assert!(
        nothing.stdout.contains("rolling back 0 step(s)"),
        "the last run changed nothing: {}",
        nothing.stdout
    );
    let runs = p.run(&["status", "--format", "json"]).expect(0).stdout;
    let first: serde_json::Value = serde_json::from_str(&runs).unwrap();
    let first_id = first[0]["run_id"].as_str().unwrap().to_string();
    run(&p, &url, &["rollback", "--yes", "--run", &first_id]).expect(0);
    assert_eq!(psql(&url, "SELECT count(*) FROM runner_sql_history"), "0");
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'claude_data'"
        ),
        "0"
    );
    assert_eq!(
        psql(
            &url,
            &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'")
        ),
        "0"
    );
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM pg_extension WHERE extname IN ('pgcrypto', 'uuid-ossp')"
        ),
        "0"
    );

    run(&p, &url, &["apply", "pb.toml", "--yes"]).expect(0);
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM runner_sql_history WHERE success"
        ),
        "7"
    );
    assert!(
        !p.journals().contains(SENTINEL),
        "the role's password stays out of the journal"
    );
}

#[test]
fn a_syntax_error_in_the_middle_keeps_the_first_file_and_leaves_nothing_of_the_second() {
    let url = fresh_database("middle");
    let p = sql_project("sql/*.up.sql", "pause");
    p.write("sql/001_a.up.sql", "CREATE TABLE a (id int);\n")
        .write("sql/001_a.down.sql", "DROP TABLE a;\n")
        .write(
            "sql/002_b.up.sql",
            "CREATE TABLE b (id int);\nINSERT INTO b VALUES (1);\nSELEC 1;\n",
        )
        .write("sql/002_b.down.sql", "DROP TABLE b;\n")
        .write("sql/003_c.up.sql", "CREATE TABLE c (id int);\n")
        .write("sql/003_c.down.sql", "DROP TABLE c;\n");
    let failed = run(&p, &url, &["apply", "pb.toml", "--yes"]).expect(7);
    assert!(
        failed
            .stdout
            .contains("`sql/002_b.up.sql` line 3, column 1: syntax error at or near \"SELEC\""),
        "{}",
        failed.stdout
    );
    assert_eq!(
        psql(&url, "SELECT string_agg(file, ',') FROM runner_sql_history"),
        "001_a.up.sql"
    );
    assert_eq!(
        psql(
            &url,
            "SELECT to_regclass('a') IS NOT NULL, to_regclass('b') IS NULL, to_regclass('c') IS NULL"
        ),
        "t|t|t"
    );
    // The journal knows what the failed step had done: rollback undoes it.
    run(&p, &url, &["rollback", "--yes"]).expect(0);
    assert_eq!(psql(&url, "SELECT count(*) FROM runner_sql_history"), "0");
    assert_eq!(psql(&url, "SELECT to_regclass('a') IS NULL"), "t");
}

#[test]
fn editing_an_applied_file_makes_plan_refuse_naming_it() {
    let url = fresh_database("drift");
    let p = sql_project("sql/*.up.sql", "rollback");
    p.write("sql/001_a.up.sql", "CREATE TABLE a (id int);\n")
        .write("sql/001_a.down.sql", "DROP TABLE a;\n");
    run(&p, &url, &["apply", "pb.toml", "--yes"]).expect(0);
    run(&p, &url, &["plan", "pb.toml", "--detailed-exitcode"]).expect(0);
    run(
        &p,
        &url,
        &["plan", "pb.toml", "--no-refresh", "--detailed-exitcode"],
    )
    .expect(6);
    p.write("sql/001_a.up.sql", "CREATE TABLE a (id bigint);\n");
    let refused = run(&p, &url, &["plan", "pb.toml"]).expect(3);
    let named = "`sql/001_a.up.sql` was changed after it was applied";
    assert!(refused.stderr.contains(named), "{}", refused.stderr);
    let refused = run(&p, &url, &["apply", "pb.toml", "--yes"]).expect(3);
    assert!(refused.stderr.contains(named), "{}", refused.stderr);
    // Without the live state, the step itself finds the drift and fails before any change.
    let failed = run(&p, &url, &["apply", "pb.toml", "--yes", "--no-refresh"]).expect(4);
    assert!(failed.stdout.contains(named), "{}", failed.stdout);
}

#[test]
fn a_no_transaction_file_that_fails_is_dirty_and_blocks() {
    let url = fresh_database("dirty");
    let p = sql_project("sql/*.up.sql", "pause");
    p.write(
        "sql/001_a.up.sql",
        "-- runner:no-transaction\nCREATE TABLE a (id int);\nSELEC;\n",
    );
    run(&p, &url, &["apply", "pb.toml", "--yes"]).expect(7);
    assert_eq!(psql(&url, "SELECT success FROM runner_sql_history"), "f");
    let refused = run(&p, &url, &["plan", "pb.toml"]).expect(3);
    assert!(
        refused.stderr.contains("may be half applied"),
        "{}",
        refused.stderr
    );
}

/// A playbook with one pg_wait step on `url`.
fn wait_for(url: &str) -> crate::support::Run {
    let p = Project::new();
    p.write(
        "pb.toml",
        "[playbook]\nname = \"wait\"\n[secrets]\nPG_URL = { env = \"TEST_DB_URL\" }\n[[steps]]\nid = \"wait\"\nkind = \"pg_wait\"\nurl = \"{{secrets.PG_URL}}\"\nwithin = \"1s\"\n",
    );
    run(&p, url, &["apply", "pb.toml", "--yes"])
}

#[test]
fn connection_failures_are_clear_and_tls_verify_full_works() {
    let admin = service("RUNNER_TEST_PG_URL");
    let ca = service("RUNNER_TEST_PG_CA");
    let ok = wait_for(&format!("{admin}?sslmode=verify-full&sslrootcert={ca}")).expect(0);
    assert!(ok.stdout.contains("answered after"), "{}", ok.stdout);

    let wrong = wait_for(&admin.replace("runner-test-pg-password", "wrong")).expect(4);
    assert!(
        wrong
            .stdout
            .contains("password authentication failed for user \"postgres\""),
        "{}",
        wrong.stdout
    );
    assert!(!wrong.stdout.contains("wrong"), "the password is redacted");

    let down = wait_for("postgres://postgres:pw@127.0.0.1:9/postgres").expect(4);
    assert!(
        down.stdout
            .contains("cannot connect to PostgreSQL at postgres@127.0.0.1:9/postgres"),
        "{}",
        down.stdout
    );
    assert!(
        down.stdout.contains("time(s) over"),
        "it retried: {}",
        down.stdout
    );

    // A server that answers the TLS request with "N" (no TLS), as PostgreSQL with ssl = off does.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten().take(20) {
            let mut request = [0u8; 8];
            if stream.read_exact(&mut request).is_ok() {
                let _ = stream.write_all(b"N");
            }
        }
    });
    let refused = wait_for(&format!(
        "postgres://postgres:pw@127.0.0.1:{port}/postgres?sslmode=require"
    ))
    .expect(4);
    assert!(
        refused.stdout.contains("server does not support TLS"),
        "{}",
        refused.stdout
    );
}

#[test]
fn pg_backup_then_a_destructive_step_then_rollback_brings_the_rows_back() {
    let url = fresh_database("backup");
    psql(
        &url,
        "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 500) g",
    );
    let digest =
        "SELECT count(*) || ':' || md5(string_agg(id || name, ',' ORDER BY id)) FROM items";
    let before = psql(&url, digest);
    let p = Project::new();
    p.write(
        "pb.toml",
        r#"[playbook]
name = "backup"
[secrets]
PG_URL = { env = "TEST_DB_URL" }

[[steps]]
id = "dump"
kind = "pg_backup"
url = "{{secrets.PG_URL}}"

[[steps]]
id = "destroy"
kind = "exec"
command = ["psql", "{{secrets.PG_URL}}", "-c", "DELETE FROM items WHERE id % 2 = 0; ALTER TABLE items ADD COLUMN junk int"]
rollback = "none"
reason = "the dump is the rollback"

[[steps]]
id = "fail"
kind = "exec"
command = ["false"]
rollback = "none"
reason = "test"
"#,
    );
    let out = run(&p, &url, &["apply", "pb.toml", "--yes"]).expect(4);
    assert!(out.stdout.contains("undone  dump"), "{}", out.stdout);
    assert_eq!(psql(&url, digest), before);
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'items'"
        ),
        "2"
    );
}

#[test]
fn verify_reads_postgres_statistics_and_a_tripped_threshold_fails_the_step() {
    let url = fresh_database("verify");
    crate::support::psql(
        &url,
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; CREATE TABLE t(x int) WITH (autovacuum_enabled = false); INSERT INTO t SELECT generate_series(1, 1000); DELETE FROM t WHERE x <= 500; ANALYZE t",
    );
    let p = Project::new();
    let step = |extra: &str| {
        format!(
            "[playbook]\nname = \"pg\"\n\n[[steps]]\nid = \"health\"\nkind = \"verify\"\npostgres = {{ url = \"{url}\"{extra} }}\n"
        )
    };
    p.write("ok.toml", &step(""))
        .write("warn.toml", &step(", bloat_warning = 0.3"))
        .write(
            "trip.toml",
            &step(", connections_warning = 0.0001, connections_critical = 0.0002"),
        );
    let ok = p.run(&["apply", "--yes", "ok.toml"]).expect(0);
    let journal = p.journals();
    for check in [
        "postgres.connections",
        "postgres.waiting",
        "postgres.mean_query_time",
        "postgres.slow_queries",
        "postgres.database_size",
        "postgres.bloat",
        "postgres.replication_lag: no replicas",
        "postgres.cache_hit_ratio",
    ] {
        assert!(journal.contains(check), "{check} is reported:\n{journal}");
    }
    assert!(
        !journal.contains("not measured"),
        "pg_stat_statements is installed"
    );
    assert!(
        ok.stdout
            .contains("postgres.bloat: 50.0 % dead rows (threshold: warning at 20 %) warning"),
        "{}",
        ok.stdout
    );
    p.run(&["apply", "--yes", "warn.toml"]).expect(0);
    let trip = p.run(&["apply", "--yes", "trip.toml"]).expect(4);
    assert!(
        trip.stdout
            .contains("1 critical check(s): postgres.connections"),
        "{}",
        trip.stdout
    );
    assert!(!trip.stdout.contains(SENTINEL));
}

#[test]
fn postgresql_15_accepts_the_rendered_configuration() {
    let p = Project::new();
    let template = concat!(env!("CARGO_MANIFEST_DIR"), "/templates/postgresql.conf.hbs");
    p.write(
        "pg.toml",
        &format!(
            r#"[playbook]
name = "pgconf"

[vars]
pg_max_connections = 200
pg_shared_buffers = "256MB"
pg_effective_cache_size = "1GB"
pg_work_mem = "4MB"
pg_maintenance_work_mem = "64MB"
pg_log_min_duration_ms = 1000

[[steps]]
id = "conf"
kind = "template"
template = "{template}"
dest = "data/postgresql.conf"
mode = "0644"
"#
        ),
    );
    // The server reads its configuration as the postgres user, like the image does.
    let as_postgres = |args: &[&str]| {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", "postgres", "--"]).args(args);
        command
    };
    let pgbin = tool_output({
        let mut c = std::process::Command::new("pg_config");
        c.arg("--bindir");
        c
    });
    let data = p.file("data");
    std::fs::create_dir_all(&data).unwrap();
    tool_output({
        let mut c = std::process::Command::new("chown");
        c.args(["-R", "postgres:postgres", p.path().to_str().unwrap()]);
        c
    });
    tool_output(as_postgres(&[
        &format!("{pgbin}/initdb"),
        "-D",
        data.to_str().unwrap(),
        "-A",
        "trust",
    ]));
    p.run(&["apply", "--yes", "pg.toml"]).expect(0);
    let read = |name: &str| {
        tool_output(as_postgres(&[
            &format!("{pgbin}/postgres"),
            "-D",
            data.to_str().unwrap(),
            "-C",
            name,
        ]))
    };
    assert_eq!(read("max_connections"), "200");
    assert_eq!(read("shared_buffers"), "32768", "256MB in 8 kB pages");
    assert_eq!(read("shared_preload_libraries"), "pg_stat_statements");
    assert_eq!(read("password_encryption"), "scram-sha-256");
}

/// A database that stores text as `SQL_ASCII` (what initdb makes without a locale) takes any
/// bytes unchecked: preflight, the sql step and the migration each refuse it, naming the
/// database, before anything is written to it.
#[test]
fn a_sql_ascii_database_is_refused_before_anything_is_written() {
    let admin = service("RUNNER_TEST_PG_URL");
    let db = format!("t_ascii_{}", std::process::id());
    psql(
        &admin,
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
    psql(
        &admin,
        &format!(
            "CREATE DATABASE {db} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        ),
    );
    let url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);
    let tables = || {
        psql(
            &url,
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')",
        )
    };
    let refusal = format!("database `{db}`");

    let p = Project::new();
    p.write(
        "preflight.toml",
        &format!(
            "[playbook]\nname = \"ascii\"\n\n[[steps]]\nid = \"preflight\"\nkind = \"preflight\"\npostgres = \"{url}\"\n"
        ),
    );
    let out = p.run(&["apply", "preflight.toml", "--yes"]).expect(4);
    assert!(out.stdout.contains(&refusal), "{}", out.stdout);
    assert!(out.stdout.contains("SQL_ASCII"), "{}", out.stdout);

    let p = sql_project("sql/*.up.sql", "rollback");
    copy_shipped_sql(&p);
    let out = run(&p, &url, &["apply", "pb.toml", "--yes"]).expect(4);
    assert!(out.stdout.contains(&refusal), "{}", out.stdout);
    assert_eq!(
        tables(),
        "0",
        "the sql step wrote nothing, not even its history table"
    );

    // The migration connects and checks before it registers its run.
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let redis = service("RUNNER_TEST_REDIS_URL");
    p.write(
        "migrate.toml",
        &format!(
            "[playbook]\nname = \"ascii\"\n\n[[steps]]\nid = \"migrate\"\nkind = \"migrate\"\nredis = \"{redis}/9\"\npostgres = \"{url}\"\nmapping = \"{}\"\n",
            repo.join("playbooks/relay-mapping.toml").display()
        ),
    );
    let out = p.run(&["apply", "migrate.toml", "--yes"]).expect(4);
    assert!(out.stdout.contains(&refusal), "{}", out.stdout);
    assert_eq!(tables(), "0");
    psql(&admin, &format!("DROP DATABASE {db} WITH (FORCE)"));
}

/// The sessions PostgreSQL counted on database `db` (read from another database, so that the
/// reading is not counted), once the count has stopped moving.
fn sessions_on(db: &str) -> i64 {
    let admin = service("RUNNER_TEST_PG_URL");
    let read = || {
        psql(
            &admin,
            &format!(
                "SELECT coalesce(sum(sessions), 0) FROM pg_stat_database WHERE datname = '{db}'"
            ),
        )
        .parse::<i64>()
        .unwrap()
    };
    // A session's statistics reach the view when its backend exits, just after the client went.
    let mut last = read();
    for _ in 0..10 {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let now = read();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

#[test]
fn one_session_serves_every_step_and_nothing_a_step_sets_outlives_it() {
    let url = fresh_database("lent");
    let db = url.rsplit('/').next().unwrap().to_string();
    let p = Project::new();
    p.write(
        "pb.toml",
        r#"[playbook]
name = "lent"

[secrets]
PG_URL = { env = "TEST_DB_URL" }

[[steps]]
id = "up"
kind = "pg_wait"
url = "{{secrets.PG_URL}}"

[[steps]]
id = "a"
kind = "sql"
url = "{{secrets.PG_URL}}"
files = ["a/*.up.sql"]
settings = { "runner.note" = "set by a" }

[[steps]]
id = "b"
kind = "sql"
url = "{{secrets.PG_URL}}"
files = ["b/*.up.sql"]

[[steps]]
id = "health"
kind = "verify"
postgres = { url = "{{secrets.PG_URL}}" }
"#,
    )
    .write(
        "a/001_t.up.sql",
        "CREATE TABLE t (step text, note text); INSERT INTO t VALUES ('a', current_setting('runner.note', true)); SET search_path = nowhere",
    )
    .write("a/001_t.down.sql", "DROP TABLE t")
    .write(
        "b/001_b.up.sql",
        // A custom setting, once defined in a session, reads as '' after RESET: its value is gone.
        "INSERT INTO public.t VALUES ('b', coalesce(nullif(current_setting('runner.note', true), ''), 'unset') || ' ' || current_setting('search_path'))",
    )
    .write("b/001_b.down.sql", "DELETE FROM public.t WHERE step = 'b'");
    let before = sessions_on(&db);
    run(&p, &url, &["apply", "pb.toml", "--yes"]).expect(0);
    // pg_wait, the plan's and each step's look at the SQL history, both sql steps and the
    // verify step: before the engine lent its sessions, that was 10 sessions.
    assert_eq!(sessions_on(&db) - before, 1);
    assert_eq!(
        psql(&url, "SELECT step || ': ' || note FROM t ORDER BY step"),
        "a: set by a\nb: unset \"$user\", public"
    );
}
