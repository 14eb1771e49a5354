//! The Redis → PostgreSQL migration of the relay's data, on the real servers.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Project, fresh_database, psql, redis_cli, service, tool_output};

const MAPPING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/playbooks/relay-mapping.toml");
const SQL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/*.up.sql");
const TABLES: &[&str] = &[
    "api_keys",
    "accounts",
    "account_groups",
    "account_group_members",
    "users",
    "usage_rollups",
    "cost_counters",
    "config_singletons",
    "quota_cards",
    "redemptions",
];

/// Fills Redis database `db` with the generator's relay dataset.
fn seed(db: u8, api_keys: u32, light: bool) {
    redis_cli(db, &["FLUSHDB"]);
    let mut command = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/relay-data.py"
    ));
    command
        .args([
            "--url",
            &format!("{}/{db}", service("RUNNER_TEST_REDIS_URL")),
        ])
        .args(["--api-keys", &api_keys.to_string()]);
    if light {
        command.arg("--light");
    }
    tool_output(command);
}

fn playbook(db: u8, pg: &str, extra: &str) -> String {
    format!(
        r#"[playbook]
name = "migrate"

[[steps]]
id = "schema"
kind = "sql"
url = "{pg}"
files = ["{SQL}"]
settings = {{ "runner.app_password" = "app-password" }}

[[steps]]
id = "migrate"
kind = "migrate"
redis = "{redis}/{db}"
postgres = "{pg}"
mapping = "{MAPPING}"
{extra}
"#,
        redis = service("RUNNER_TEST_REDIS_URL"),
    )
}

/// The value of a Redis key as JSON: a hash as an object, a set as a sorted array.
fn redis_value(db: u8, key: &str) -> Value {
    let kind = redis_cli(db, &["TYPE", key]);
    let json = |args: &[&str]| -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&redis_cli(db, &all)).unwrap()
    };
    match kind.as_str() {
        "hash" => json(&["HGETALL", key]),
        "string" => json(&["GET", key]),
        "set" => {
            let Value::Array(mut items) = json(&["SMEMBERS", key]) else {
                panic!("a set")
            };
            items.sort_by_key(|v| v.to_string());
            Value::Array(items)
        }
        other => panic!("{key} is a {other}"),
    }
}

#[test]
fn every_shape_of_the_relay_data_round_trips_and_ephemeral_keys_stay_behind() {
    let db = 10;
    seed(db, 40, false);
    let pg = fresh_database("shapes");
    let p = Project::new();
    p.write("migrate.toml", &playbook(db, &pg, "batch_size = 100"));
    let run = p.run(&["apply", "--yes", "migrate.toml"]).expect(0);
    assert!(
        run.stdout.contains(" 0 unmapped, 0 rejected"),
        "{}",
        run.stdout
    );

    // Every row keeps its Redis value whole, and every value the mapping covers has a row.
    let mut rows = 0;
    for table in TABLES {
        let dump = psql(
            &pg,
            &format!("SELECT source_key || E'\\t' || source::text FROM claude_data.{table}"),
        );
        for line in dump.lines() {
            let (key, source) = line.split_once('\t').unwrap();
            let source: Value = serde_json::from_str(source).unwrap();
            let value = redis_value(db, key);
            // A string holding JSON may be kept as its JSON (type = "json" in the mapping).
            let value = match (&source, value) {
                (Value::Object(_) | Value::Array(_), Value::String(text)) => {
                    serde_json::from_str(&text).unwrap()
                }
                (_, v) => v,
            };
            assert_eq!(source, value, "{table}: {key}");
            rows += 1;
        }
    }
    let count = |sql: &str| psql(&pg, sql).parse::<u64>().unwrap();
    assert_eq!(count("SELECT count(*) FROM claude_data.api_keys"), 40);
    assert_eq!(
        count("SELECT count(*) FROM claude_data.accounts"),
        30,
        "ten account types, three each"
    );
    assert_eq!(
        count("SELECT count(*) FROM claude_data.accounts WHERE type = 'bedrock' AND is_active"),
        3
    );
    assert_eq!(
        psql(
            &pg,
            "SELECT string_agg(DISTINCT permissions::text, ' ' ORDER BY permissions::text) FROM claude_data.api_keys"
        ),
        r#"["claude", "openai"] ["claude"] []"#,
        "a plain word, a comma list and a JSON array all become arrays (\"all\" is [])"
    );
    assert_eq!(
        psql(
            &pg,
            "SELECT bucket || ' ' || period_start FROM claude_data.usage_rollups WHERE dimension = 'global' AND period = 'day'"
        ),
        "2026-03-01 2026-02-28 16:00:00+00",
        "buckets are local (+8) labels with their UTC start"
    );
    let total_keys: u64 = redis_cli(db, &["DBSIZE"]).parse().unwrap();
    assert!(
        rows > 500 && (rows as u64) < total_keys,
        "{rows} rows of {total_keys} keys"
    );
    for ephemeral in [
        "concurrency:%",
        "rate_limit:%",
        "session:%",
        "sticky_session:%",
        "oauth:%",
        "user_session:%",
        "apikey:hash_map",
        "usage:records:%",
        "token_refresh_lock:%",
    ] {
        for table in TABLES {
            assert_eq!(
                count(&format!(
                    "SELECT count(*) FROM claude_data.{table} WHERE source_key LIKE '{ephemeral}'"
                )),
                0,
                "{ephemeral} in {table}"
            );
        }
    }

    // A second run changes nothing.
    let again = p.run(&["apply", "--yes", "migrate.toml"]).expect(0);
    assert!(
        again.stdout.contains(": 0 rows written,"),
        "{}",
        again.stdout
    );

    // Verification: keys against rows per entity, and every value against its row.
    let verify = |sample: &str| {
        format!(
            "[playbook]\nname = \"check\"\n\n[[steps]]\nid = \"check\"\nkind = \"verify\"\nmigration = {{ redis = \"{}/{db}\", postgres = \"{pg}\", mapping = \"{MAPPING}\"{sample} }}\n",
            service("RUNNER_TEST_REDIS_URL")
        )
    };
    p.write("verify.toml", &verify(""))
        .write("sample.toml", &verify(", sample = 50, seed = 3"));
    let checked = p.run(&["apply", "--yes", "verify.toml"]).expect(0);
    assert!(
        checked.stdout.contains("0 warning(s)"),
        "{}",
        checked.stdout
    );
    let journal = p.journals();
    assert!(
        journal.contains(
            "migration.api_key: 40 key(s) in Redis, 40 row(s) in PostgreSQL (threshold: equal) ok"
        ),
        "{journal}"
    );
    assert!(
        journal.contains(&format!(
            "migration.content: {rows} key(s) compared, 0 mismatch(es)"
        )),
        "{journal}"
    );
    redis_cli(db, &["HSET", "usage:global:total", "requests", "999999"]);
    p.run(&["apply", "--yes", "sample.toml"]).expect(0);
    assert!(
        p.journals()
            .contains("migration.content: 50 key(s) compared, 0 mismatch(es)")
    );
    let full = p.run(&["apply", "--yes", "verify.toml"]).expect(4);
    assert!(
        full.stdout
            .contains("`usage:global:total`: the row's source differs from Redis"),
        "{}",
        full.stdout
    );

    // Values that do not convert go to the reject table; past max_rejects the step fails and
    // the run's rows go, the rows it overwrote come back.
    redis_cli(
        db,
        &["SET", &format!("user:{}", "e".repeat(32)), "{not json"],
    );
    redis_cli(db, &["SADD", "claude:account:wrong-type", "a", "b"]);
    let key = "apikey:00000000-0000-4000-8000-00000000abcd";
    redis_cli(
        db,
        &[
            "HSET",
            key,
            "id",
            "x",
            "apiKey",
            "feed",
            "tokenLimit",
            "lots",
            "createdAt",
            "2026-01-01T00:00:00.000Z",
        ],
    );
    let before = psql(
        &pg,
        "SELECT md5(string_agg(source::text, ',' ORDER BY source_key)) FROM claude_data.api_keys",
    );
    p.write(
        "strict.toml",
        &playbook(db, &pg, "batch_size = 100\nmax_rejects = 1"),
    );
    let strict = p.run(&["apply", "--yes", "strict.toml"]).expect(4);
    assert!(
        strict
            .stdout
            .contains(" key(s) rejected, more than max_rejects = 1;"),
        "{}",
        strict.stdout
    );
    assert_eq!(
        psql(
            &pg,
            "SELECT md5(string_agg(source::text, ',' ORDER BY source_key)) FROM claude_data.api_keys"
        ),
        before
    );
    assert_eq!(
        psql(
            &pg,
            "SELECT source->>'requests' <> '999999' FROM claude_data.usage_rollups WHERE source_key = 'usage:global:total'"
        ),
        "t",
        "the overwritten row is back"
    );
    p.write(
        "lenient.toml",
        &playbook(db, &pg, "batch_size = 100\nmax_rejects = 5"),
    );
    p.run(&["apply", "--yes", "lenient.toml"]).expect(0);
    let rejects = psql(
        &pg,
        "SELECT source_key || ': ' || reason FROM claude_data.migration_rejects ORDER BY 1",
    );
    assert!(
        rejects.contains(&format!(
            "{key}: column `token_limit`: `lots` is not a number"
        )),
        "{rejects}"
    );
    assert!(
        rejects.contains(&format!("user:{}: not JSON", "e".repeat(32))),
        "{rejects}"
    );
    assert!(
        rejects.contains("claude:account:wrong-type: is a set, the mapping says Hash"),
        "{rejects}"
    );

    // Incremental: only what changed since is written, and it ends with the latest value.
    let changed = psql(
        &pg,
        "SELECT source_key FROM claude_data.api_keys ORDER BY source_key LIMIT 1",
    );
    redis_cli(
        db,
        &[
            "HSET",
            &changed,
            "name",
            "renamed",
            "lastUsedAt",
            "2026-11-25T00:00:00.000Z",
        ],
    );
    redis_cli(db, &["HSET", "usage:global:total", "requests", "1000000"]);
    p.write(
        "incremental.toml",
        &playbook(
            db,
            &pg,
            "batch_size = 100\nmax_rejects = 5\nmode = \"incremental\"",
        ),
    );
    let run = p.run(&["apply", "--yes", "incremental.toml"]).expect(0);
    assert!(run.stdout.contains(": 2 rows written,"), "{}", run.stdout);
    assert_eq!(
        psql(
            &pg,
            &format!(
                "SELECT name || ' ' || last_used_at FROM claude_data.api_keys WHERE source_key = '{changed}'"
            )
        ),
        "renamed 2026-11-25 00:00:00+00"
    );
    assert_eq!(
        psql(
            &pg,
            "SELECT requests FROM claude_data.usage_rollups WHERE source_key = 'usage:global:total'"
        ),
        "1000000"
    );
}

/// A fingerprint of everything migrated, without what differs from run to run.
fn fingerprint(pg: &str) -> BTreeMap<&'static str, String> {
    TABLES
        .iter()
        .map(|t| {
            let sql = format!(
                "SELECT count(*) || ' ' || coalesce(md5(string_agg((to_jsonb(t) - 'migrated_run' - 'updated_at')::text, ',' ORDER BY source_key)), '') FROM claude_data.{t} t"
            );
            (*t, psql(pg, &sql))
        })
        .collect()
}

/// Keys the migration has scanned and committed, 0 until its tables exist.
fn scanned(pg: &str) -> u64 {
    let out = Command::new("psql")
        .args([pg, "-X", "-At", "-c", "SELECT coalesce(max((checkpoint->'counts'->>'scanned')::bigint), 0) FROM claude_data.migration_runs"])
        .output()
        .expect("psql runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn sigkill_at_10_50_and_90_percent_then_resume_gives_the_same_tables() {
    let db = 11;
    seed(db, 70_000, true);
    let total: u64 = redis_cli(db, &["DBSIZE"]).parse().unwrap();
    assert!(total >= 200_000, "{total} keys");
    let batch = "batch_size = 5000";

    let whole = fresh_database("whole");
    let p = Project::new();
    p.write("migrate.toml", &playbook(db, &whole, batch));
    p.run(&["apply", "--yes", "migrate.toml"]).expect(0);
    let expected = fingerprint(&whole);
    assert!(expected["api_keys"].starts_with("70000 "), "{expected:?}");

    for percent in [10, 50, 90] {
        let pg = fresh_database(&format!("kill{percent}"));
        let p = Project::new();
        p.write("migrate.toml", &playbook(db, &pg, batch));
        let mut child = p.spawn(&["apply", "--yes", "migrate.toml"]);
        let started = Instant::now();
        loop {
            let scanned = scanned(&pg);
            if scanned * 100 >= total * percent {
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run ended before {percent} %"
            );
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "no progress to {percent} %"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let resumed = p.run(&["resume", "--yes"]).expect(0);
        assert!(
            p.journals().contains("resumed from the checkpoint"),
            "{}",
            resumed.stdout
        );
        assert_eq!(fingerprint(&pg), expected, "killed at {percent} %");
    }
}

/// The rollback of a migration run puts back the rows it overwrote, but never over a row the app
/// wrote since (dual writes, `migrated_run = 'app'`): that row is newer than both.
#[test]
fn rolling_back_a_migration_keeps_a_row_the_app_rewrote_since() {
    let db = 14;
    seed(db, 20, false);
    let pg = fresh_database("appwins");
    let p = Project::new();
    p.write("full.toml", &playbook(db, &pg, ""));
    p.run(&["apply", "--yes", "full.toml"]).expect(0);
    let key = psql(
        &pg,
        "SELECT source_key FROM claude_data.usage_rollups WHERE source_key LIKE 'usage:%' \
         AND source_key NOT LIKE 'usage:%:%' ORDER BY 1 LIMIT 1",
    );
    redis_cli(db, &["HSET", &key, "totalRequests", "500"]);
    p.write(
        "incremental.toml",
        &playbook(db, &pg, "mode = \"incremental\""),
    );
    let run = p.run(&["apply", "--yes", "incremental.toml"]).expect(0);
    assert!(run.stdout.contains(": 1 rows written,"), "{}", run.stdout);
    // The app, writing through, after the migration read the key.
    redis_cli(db, &["HSET", &key, "totalRequests", "501"]);
    psql(
        &pg,
        &format!(
            "UPDATE claude_data.usage_rollups SET requests = 501, \
             source = source || '{{\"totalRequests\": \"501\"}}', migrated_run = 'app' \
             WHERE source_key = '{key}'"
        ),
    );
    let rollback = p.run(&["rollback", "--yes"]).expect(0);
    assert!(
        rollback
            .stdout
            .contains("(1 kept as the app rewrote them since)"),
        "{}",
        rollback.stdout
    );
    assert_eq!(
        psql(
            &pg,
            &format!(
                "SELECT requests || ' ' || migrated_run FROM claude_data.usage_rollups WHERE source_key = '{key}'"
            )
        ),
        "501 app"
    );
}
