//! The Redis → PostgreSQL migration of the relay's data, on the real servers.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use crate::support::{Project, fresh_database, psql, redis_cli, service, tool_output};

pub(crate) const MAPPING: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/playbooks/relay-mapping.toml");
pub(crate) const SQL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/*.up.sql");
pub(crate) const TABLES: &[&str] = &[
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

/// The generator (scripts/relay-data.py) against Redis database `db`, with these arguments.
fn generator(db: u8, args: &[&str]) -> Command {
    let mut command = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/relay-data.py"
    ));
    command
        .args([
            "--url",
            &format!("{}/{db}", service("RUNNER_TEST_REDIS_URL")),
        ])
        .args(args);
    command
}

/// Fills Redis database `db` with the generator's relay dataset.
pub(crate) fn seed(db: u8, args: &[&str]) {
    redis_cli(db, &["FLUSHDB"]);
    tool_output(generator(db, args));
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

/// A connection to Redis database `db`.
fn redis_db(db: u8) -> redis::Connection {
    redis::Client::open(format!("{}/{db}", service("RUNNER_TEST_REDIS_URL")))
        .unwrap()
        .get_connection()
        .unwrap()
}

/// Bytes as README's migration section says `source` keeps them: UTF-8 without NUL as a
/// string, anything else as {"$base64": ...}.
fn kept(bytes: Vec<u8>) -> Value {
    match String::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => Value::String(text),
        Ok(text) => serde_json::json!({ "$base64": B64.encode(text) }),
        Err(e) => serde_json::json!({ "$base64": B64.encode(e.into_bytes()) }),
    }
}

/// The bytes `source` keeps as `kept` says.
fn bytes_of(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        other => B64.decode(other["$base64"].as_str().unwrap()).unwrap(),
    }
}

/// The value of a Redis key as JSON, by its bytes: a hash as an object, a set sorted.
fn redis_value(conn: &mut redis::Connection, key: &str) -> Value {
    let kind: String = redis::cmd("TYPE").arg(key).query(conn).unwrap();
    match kind.as_str() {
        "hash" => {
            let fields: Vec<(String, Vec<u8>)> =
                redis::cmd("HGETALL").arg(key).query(conn).unwrap();
            Value::Object(fields.into_iter().map(|(k, v)| (k, kept(v))).collect())
        }
        "string" => kept(redis::cmd("GET").arg(key).query(conn).unwrap()),
        "set" => {
            let mut items: Vec<Vec<u8>> = redis::cmd("SMEMBERS").arg(key).query(conn).unwrap();
            items.sort();
            Value::Array(items.into_iter().map(kept).collect())
        }
        other => panic!("{key} is a {other}"),
    }
}

#[test]
fn every_shape_of_the_relay_data_round_trips_and_ephemeral_keys_stay_behind() {
    let db = 10;
    seed(db, &["--api-keys", "40"]);
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
    let mut conn = redis_db(db);
    let mut rows = 0;
    for table in TABLES {
        let dump = psql(
            &pg,
            &format!("SELECT source_key || E'\\t' || source::text FROM claude_data.{table}"),
        );
        for line in dump.lines() {
            let (key, source) = line.split_once('\t').unwrap();
            let source: Value = serde_json::from_str(source).unwrap();
            let value = redis_value(&mut conn, key);
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
    p.write("verify.toml", &verify_playbook(db, &pg, "")).write(
        "sample.toml",
        &verify_playbook(db, &pg, ", sample = 50, seed = 3"),
    );
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
    seed(db, &["--api-keys", "70000", "--light"]);
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
    let db = 15;
    seed(db, &["--api-keys", "20"]);
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

/// Every row's key and `source_expires_at` (epoch ms), in every table.
fn row_expiries(pg: &str) -> Vec<(String, Option<i64>)> {
    let mut rows = Vec::new();
    for table in TABLES {
        let dump = psql(
            pg,
            &format!(
                "SELECT source_key || E'\\t' || coalesce((extract(epoch FROM source_expires_at) * 1000)::bigint::text, '-') FROM claude_data.{table}"
            ),
        );
        for line in dump.lines() {
            let (key, at) = line.split_once('\t').unwrap();
            rows.push((key.to_string(), at.parse().ok()));
        }
    }
    rows
}

/// Asserts that every row's `source_expires_at` is within 2 s of its key's expiry, and NULL
/// for a key without one; returns how many rows have one and how many do not.
pub(crate) fn assert_expiries(redis: &mut redis::Connection, pg: &str) -> (usize, usize) {
    let rows = row_expiries(pg);
    let mut pipe = redis::pipe();
    for (key, _) in &rows {
        pipe.cmd("PEXPIRETIME").arg(key);
    }
    let expiries: Vec<i64> = pipe.query(redis).unwrap();
    let (mut with, mut without) = (0, 0);
    for ((key, at), expires) in rows.iter().zip(expiries) {
        match (at, expires) {
            (None, -1) => without += 1,
            (Some(at), e) if e >= 0 && (at - e).abs() <= 2000 => with += 1,
            _ => panic!("{key}: the row says {at:?}, PEXPIRETIME {expires}"),
        }
    }
    (with, without)
}

fn verify_playbook(db: u8, pg: &str, extra: &str) -> String {
    format!(
        "[playbook]\nname = \"check\"\n\n[[steps]]\nid = \"check\"\nkind = \"verify\"\nmigration = {{ redis = \"{}/{db}\", postgres = \"{pg}\", mapping = \"{MAPPING}\"{extra} }}\n",
        service("RUNNER_TEST_REDIS_URL")
    )
}

/// The mismatches the last run journaled.
fn mismatches(p: &Project) -> Vec<String> {
    let mut runs: Vec<_> = std::fs::read_dir(p.file(".runner/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    runs.sort();
    let journal = std::fs::read_to_string(runs.last().unwrap().join("journal.jsonl")).unwrap();
    let mut found = Vec::new();
    for line in journal.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        if let Some(m) = record
            .as_object()
            .into_iter()
            .flat_map(|o| o.values())
            .filter_map(Value::as_str)
            .find_map(|v| v.strip_prefix("mismatch: "))
        {
            found.push(m.to_string());
        }
    }
    found
}

#[test]
fn any_bytes_are_kept_exactly_or_rejected_by_key_and_every_row_has_its_keys_expiry() {
    let db = 13;
    let manifest = tempfile::NamedTempFile::new().unwrap();
    let path = manifest.path().to_str().unwrap();
    seed(db, &["--api-keys", "300", "--hostile", "--manifest", path]);
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let pg = fresh_database("bytes");
    let p = Project::new();
    p.write(
        "migrate.toml",
        &playbook(db, &pg, "batch_size = 50\nmax_rejects = 10"),
    );
    let run = p.run(&["apply", "--yes", "migrate.toml"]).expect(0);

    // What no row can hold is rejected by key, with the reason...
    let expected = manifest["rejected"].as_object().unwrap();
    assert!(expected.len() >= 7, "{expected:?}");
    assert!(
        run.stdout
            .contains(&format!(" {} rejected,", expected.len())),
        "{}",
        run.stdout
    );
    let dump = psql(
        &pg,
        "SELECT source_key || E'\\t' || reason FROM claude_data.migration_rejects",
    );
    let rejects: BTreeMap<&str, &str> = dump.lines().map(|l| l.split_once('\t').unwrap()).collect();
    assert_eq!(rejects.len(), expected.len(), "{rejects:#?}");
    for (key, reason) in expected {
        let got = rejects
            .get(key.as_str())
            .unwrap_or_else(|| panic!("`{key}` is not rejected: {rejects:#?}"));
        assert!(got.contains(reason.as_str().unwrap()), "`{key}`: {got}");
    }
    // ...and every other key of their pages has its row.
    let count = |sql: &str| psql(&pg, sql).parse::<u64>().unwrap();
    assert_eq!(count("SELECT count(*) FROM claude_data.api_keys"), 300);
    assert_eq!(count("SELECT count(*) FROM claude_data.accounts"), 30);
    assert_eq!(count("SELECT count(*) FROM claude_data.users"), 3);

    // Non-ASCII, 4-byte, 100 KB and binary values are kept byte for byte: the typed columns
    // hold the text, `source` the bytes (binary ones as base64).
    let dump = psql(
        &pg,
        "SELECT source_key || E'\\t' || coalesce(name, '') || E'\\t' || source::text FROM claude_data.api_keys
         UNION ALL SELECT source_key || E'\\t' || coalesce(name, '') || E'\\t' || source::text FROM claude_data.accounts",
    );
    let stored: BTreeMap<&str, (&str, Value)> = dump
        .lines()
        .map(|l| {
            let mut cells = l.splitn(3, '\t');
            let key = cells.next().unwrap();
            let name = cells.next().unwrap();
            (
                key,
                (name, serde_json::from_str(cells.next().unwrap()).unwrap()),
            )
        })
        .collect();
    let kept = manifest["kept"].as_object().unwrap();
    let mut binary = 0;
    for (key, fields) in kept {
        let (name, source) = &stored[key.as_str()];
        for (field, hex) in fields.as_object().unwrap() {
            let bytes: Vec<u8> = (0..hex.as_str().unwrap().len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex.as_str().unwrap()[i..i + 2], 16).unwrap())
                .collect();
            assert_eq!(bytes_of(&source[field]), bytes, "{key} {field}");
            if field == "name" {
                assert_eq!(name.as_bytes(), bytes, "{key}: the name column");
            }
            binary += usize::from(source[field].is_object());
        }
    }
    assert!(
        kept.len() >= 60 && binary == 2,
        "{} kept, {binary} binary",
        kept.len()
    );
    assert!(
        kept.values()
            .any(|f| f["description"].as_str().is_some_and(|d| d.len() > 200_000)),
        "a 100 KB description"
    );

    // Every row has its key's expiry (API keys 365 d, daily usage 32 d, ...), or NULL.
    let (with, without) = assert_expiries(&mut redis_db(db), &pg);
    assert!(
        with > 300 * 5 && without > 300 * 3,
        "{with} rows with an expiry, {without} without"
    );

    // Verification compares by the same rule: only the rejected keys differ; once they are
    // gone, nothing does.
    p.write("verify.toml", &verify_playbook(db, &pg, ""));
    p.run(&["apply", "--yes", "verify.toml"]).expect(4);
    let found = mismatches(&p);
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    let mut conn = redis_db(db);
    for key in expected.keys() {
        assert!(
            found.iter().any(|m| m.starts_with(&format!("`{key}`"))),
            "{key}: {found:#?}"
        );
        let name = if key.contains("\\xc3") {
            b"claude:account:bad-\xc3\x28".to_vec()
        } else {
            key.as_bytes().to_vec()
        };
        let deleted: u32 = redis::cmd("DEL").arg(name).query(&mut conn).unwrap();
        assert_eq!(deleted, 1, "{key}");
    }
    p.run(&["apply", "--yes", "verify.toml"]).expect(0);
    assert_eq!(mismatches(&p), Vec::<String>::new());

    // A real difference in bytes is still found.
    let (account, token) = kept
        .iter()
        .find_map(|(k, f)| {
            f.get("accessToken")
                .map(|t| (k.clone(), t.as_str().unwrap().to_string()))
        })
        .unwrap();
    let original = bytes_of(&stored[account.as_str()].1["accessToken"]);
    assert_eq!(original.len() * 2, token.len());
    let mut changed = original.clone();
    changed[5] ^= 1;
    let set = |value: &[u8], conn: &mut redis::Connection| {
        let _: () = redis::cmd("HSET")
            .arg(&account)
            .arg("accessToken")
            .arg(value)
            .query(conn)
            .unwrap();
    };
    set(&changed, &mut conn);
    p.run(&["apply", "--yes", "verify.toml"]).expect(4);
    assert_eq!(
        mismatches(&p),
        vec![format!("`{account}`: the row's source differs from Redis")]
    );
    set(&original, &mut conn);

    // Expiries: a TTL changed after migrating, a row's expiry moved by 5 s or lost, a key
    // that gained a TTL all trip verification; a row 1 s off is within the tolerance.
    let keys: Vec<String> = psql(
        &pg,
        "SELECT source_key FROM claude_data.api_keys ORDER BY source_key LIMIT 4",
    )
    .lines()
    .map(String::from)
    .collect();
    let _: () = redis::cmd("EXPIRE")
        .arg(&keys[0])
        .arg(100)
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("EXPIRE")
        .arg("usage:global:total")
        .arg(1000)
        .query(&mut conn)
        .unwrap();
    for (key, change) in [
        (&keys[1], "source_expires_at + interval '5 s'"),
        (&keys[2], "NULL"),
        (&keys[3], "source_expires_at - interval '1 s'"),
    ] {
        psql(
            &pg,
            &format!(
                "UPDATE claude_data.api_keys SET source_expires_at = {change} WHERE source_key = '{key}'"
            ),
        );
    }
    p.run(&["apply", "--yes", "verify.toml"]).expect(4);
    let found = mismatches(&p);
    for key in [
        &keys[0],
        &keys[1],
        &keys[2],
        &"usage:global:total".to_string(),
    ] {
        assert!(
            found
                .iter()
                .any(|m| m.starts_with(&format!("`{key}`: the row's source_expires_at ("))),
            "{key}: {found:#?}"
        );
    }
    assert_eq!(found.len(), 4, "{found:#?}");
    p.write(
        "lenient.toml",
        &verify_playbook(db, &pg, ", expiry_tolerance = \"10s\""),
    );
    p.run(&["apply", "--yes", "lenient.toml"]).expect(4);
    assert_eq!(mismatches(&p).len(), 3, "5 s off is within 10 s");
    p.write(
        "bad.toml",
        &verify_playbook(db, &pg, ", expiry_tolerance = \"soon\""),
    );
    let bad = p.run(&["apply", "--yes", "bad.toml"]).expect(2);
    assert!(
        bad.stderr.contains("`soon` is not a duration"),
        "{}",
        bad.stderr
    );

    // Incremental mode rewrites the rows whose expiry differs, however little (PEXPIRETIME is
    // exact), and leaves the rest.
    p.write(
        "incremental.toml",
        &playbook(db, &pg, "batch_size = 50\nmode = \"incremental\""),
    );
    let run = p.run(&["apply", "--yes", "incremental.toml"]).expect(0);
    assert!(run.stdout.contains(": 5 rows written,"), "{}", run.stdout);
    p.run(&["apply", "--yes", "verify.toml"]).expect(0);
    assert_expiries(&mut redis_db(db), &pg);
}

#[test]
fn keys_deleted_and_recreated_during_a_run_are_counted_and_an_incremental_run_catches_up() {
    let db = 14;
    let dataset = ["--api-keys", "5000", "--light"];
    seed(db, &dataset);
    let pg = fresh_database("churn");
    let p = Project::new();
    p.write("migrate.toml", &playbook(db, &pg, "batch_size = 100"));
    let mut churn = generator(db, &[&dataset[..], &["--churn", "15"]].concat())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let run = p.run(&["apply", "--yes", "migrate.toml"]).expect(0);
    assert!(
        churn.try_wait().unwrap().is_none(),
        "the churn ended before the run did"
    );
    let gone: u64 = run
        .stdout
        .split(" gone before read")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(gone > 0, "{}", run.stdout);
    eprintln!("{gone} key(s) gone before read");
    assert!(churn.wait().unwrap().success());

    // Once Redis is quiet, an incremental run writes what the churn changed (re-created keys
    // have new expiries, keys read while gone have no row yet), and verification agrees.
    p.write(
        "incremental.toml",
        &playbook(db, &pg, "batch_size = 100\nmode = \"incremental\""),
    );
    let caught_up = p.run(&["apply", "--yes", "incremental.toml"]).expect(0);
    assert!(
        caught_up.stdout.contains(" 0 gone before read"),
        "{}",
        caught_up.stdout
    );
    p.write("verify.toml", &verify_playbook(db, &pg, ""));
    p.run(&["apply", "--yes", "verify.toml"]).expect(0);
    assert_eq!(
        psql(&pg, "SELECT count(*) FROM claude_data.api_keys"),
        "5000"
    );
    assert_expiries(&mut redis_db(db), &pg);
    assert_eq!(
        psql(
            &pg,
            "SELECT count(*) FROM claude_data.api_keys WHERE source_expires_at > now() + interval '364 days'"
        ),
        "5000",
        "every API key has its TTL of a year"
    );
}

#[test]
fn a_migration_under_a_terminal_draws_a_progress_bar_and_plain_lines_elsewhere() {
    let db = 12;
    seed(db, &["--api-keys", "4000", "--light"]);
    let bar = regex::Regex::new(
        r"\[=+>? *\] migrate: \d+/\d+ keys, \d+ keys/s, ETA .*, [\d.]+ [KM]iB copied",
    )
    .unwrap();
    let run = |name: &str, terminal: bool, no_color: bool| {
        let pg = fresh_database(name);
        let p = Project::new();
        p.write("migrate.toml", &playbook(db, &pg, "batch_size = 100"));
        let runner = env!("CARGO_BIN_EXE_runner");
        let mut command = if terminal {
            // util-linux's `script` runs it on a pseudo-terminal and copies what it drew.
            let mut c = Command::new("script");
            c.args([
                "-qec",
                &format!("{runner} apply --yes migrate.toml"),
                "/dev/null",
            ]);
            c
        } else {
            let mut c = Command::new(runner);
            c.args(["apply", "--yes", "migrate.toml"]);
            c
        };
        command
            .current_dir(p.path())
            .env_remove("NO_COLOR")
            .env_remove("RUNNER_STATE_DIR")
            .stdin(std::process::Stdio::null());
        if no_color {
            command.env("NO_COLOR", "1");
        }
        let out = command.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("run succeeded"), "{text}");
        text
    };
    let drawn = run("bar", true, false);
    assert!(bar.is_match(&drawn), "a progress bar is drawn:\n{drawn:?}");
    assert!(drawn.contains('\x1b'), "redrawn in place:\n{drawn:?}");

    for (name, terminal, no_color) in [("nocolor", true, true), ("piped", false, false)] {
        let text = run(name, terminal, no_color);
        // A terminal ends lines with \r\n; nothing else moves the cursor.
        let plain = text.replace("\r\n", "\n");
        assert!(
            !plain.contains('\r') && !plain.contains('\x1b') && !bar.is_match(&plain),
            "{name}: plain lines:\n{text:?}"
        );
        let tenths = plain
            .lines()
            .filter(|l| l.starts_with("  migrate: ") && l.contains(" keys/s, ETA "))
            .count();
        assert!(
            (2..=11).contains(&tenths),
            "{name}: a line per tenth, got {tenths}:\n{plain}"
        );
    }
}
