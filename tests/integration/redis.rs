//! The Redis steps against the real server of scripts/services.sh.

use std::time::Instant;

use crate::support::{Project, finish, redis_cli, service};

#[test]
fn redis_backup_then_flush_then_rollback_restores_keys_types_values_and_ttls() {
    let db = 5;
    redis_cli(db, &["FLUSHDB"]);
    redis_cli(db, &["SET", "plain", "value with spaces"]);
    redis_cli(db, &["SET", "expiring", "soon", "EX", "300"]);
    redis_cli(
        db,
        &[
            "HSET",
            "apikey:1",
            "name",
            "team-a",
            "isActive",
            "true",
            "permissions",
            "[\"claude\"]",
        ],
    );
    redis_cli(db, &["EXPIRE", "apikey:1", "31536000"]);
    redis_cli(db, &["RPUSH", "usage:records:1", "{\"a\":1}", "{\"b\":2}"]);
    redis_cli(db, &["SADD", "account_group_members:g", "x", "y", "z"]);
    redis_cli(db, &["ZADD", "concurrency:1", "1", "r1", "2", "r2"]);
    bulk_load(db, 2500);
    // Every key but the bulk ones, with what it holds and whether it expires.
    let snapshot = |db| {
        let mut held = contents(db);
        held.retain(|k, _| !k.starts_with(b"bulk:"));
        held
    };
    let before = snapshot(db);
    let ttl_before = redis_cli(db, &["TTL", "apikey:1"]).parse::<i64>().unwrap();
    let started = Instant::now();

    let out = backup_flush_then_fail(db);
    assert!(out.stdout.contains("saved 2506 key(s)"), "{}", out.stdout);
    assert!(
        out.stdout.contains("restored 2506 key(s)"),
        "{}",
        out.stdout
    );
    assert_eq!(snapshot(db), before);
    assert_eq!(redis_cli(db, &["DBSIZE"]), "2506");
    assert_eq!(
        redis_cli(db, &["HGET", "apikey:1", "permissions"]),
        "[\"claude\"]"
    );
    assert_eq!(
        redis_cli(db, &["LRANGE", "usage:records:1", "0", "-1"]),
        "{\"a\":1}\n{\"b\":2}"
    );
    let ttl_after = redis_cli(db, &["TTL", "apikey:1"]).parse::<i64>().unwrap();
    let elapsed = started.elapsed().as_secs() as i64;
    assert!(
        (ttl_before - elapsed - ttl_after).abs() <= 1,
        "TTL {ttl_before} then {ttl_after} after {elapsed}s"
    );
    assert_eq!(redis_cli(db, &["TTL", "plain"]), "-1");
    assert!(!out.stdout.contains("runner-test-redis-password"));
}

/// Applies a playbook that snapshots Redis database `db`, flushes it and fails, so that its
/// rollback restores the snapshot; the run's output.
fn backup_flush_then_fail(db: u8) -> crate::support::Run {
    let p = Project::new();
    p.write(
        "pb.toml",
        &format!(
            r#"[playbook]
name = "redis"
[secrets]
REDIS_URL = {{ env = "TEST_REDIS_URL" }}

[[steps]]
id = "snapshot"
kind = "redis_backup"
url = "{{{{secrets.REDIS_URL}}}}/{db}"

[[steps]]
id = "flush"
kind = "exec"
command = ["redis-cli", "-u", "{{{{secrets.REDIS_URL}}}}/{db}", "--no-auth-warning", "FLUSHDB"]
rollback = "none"
reason = "the snapshot is the rollback"

[[steps]]
id = "fail"
kind = "exec"
command = ["false"]
rollback = "none"
reason = "test"
"#
        ),
    );
    let mut command = p.command(&["apply", "pb.toml", "--yes"]);
    command.env("TEST_REDIS_URL", service("RUNNER_TEST_REDIS_URL"));
    finish(command).expect(4)
}

/// What a key holds, byte for byte: its type and contents (a hash's fields and a set's
/// members sorted: DUMP's own bytes follow a hash table's order, which a RESTORE may change).
type Held = (String, Vec<Vec<u8>>, bool);

/// Every key of database `db` (its bytes), with what it holds and whether it has an expiry.
fn contents(db: u8) -> std::collections::BTreeMap<Vec<u8>, Held> {
    let url = format!("{}/{db}", service("RUNNER_TEST_REDIS_URL"));
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    keys.into_iter()
        .map(|key| {
            let kind: String = redis::cmd("TYPE").arg(&key).query(&mut conn).unwrap();
            let mut read = |args: &[&str]| -> Vec<Vec<u8>> {
                let mut cmd = redis::cmd(args[0]);
                cmd.arg(&key).arg(&args[1..]);
                cmd.query(&mut conn).unwrap()
            };
            let mut items = match kind.as_str() {
                "string" => vec![read(&["GET"]).concat()],
                "hash" => read(&["HGETALL"]),
                "list" => read(&["LRANGE", "0", "-1"]),
                "set" => read(&["SMEMBERS"]),
                _ => read(&["ZRANGE", "0", "-1", "WITHSCORES"]),
            };
            if kind == "hash" {
                let mut pairs: Vec<Vec<u8>> = items
                    .chunks(2)
                    .map(|p| [&p[0].len().to_le_bytes()[..], &p[0], &p[1]].concat())
                    .collect();
                pairs.sort();
                items = pairs;
            } else if kind == "set" {
                items.sort();
            }
            let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
            (key, (kind, items, ttl > 0))
        })
        .collect()
}

#[test]
fn redis_backup_restores_the_generators_hostile_data_byte_for_byte() {
    // Keys and values that are not UTF-8, NUL bytes, 100 KB values, the relay's TTLs.
    let db = 7;
    redis_cli(db, &["FLUSHDB"]);
    let mut generator = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/relay-data.py"
    ));
    let manifest = tempfile::NamedTempFile::new().unwrap();
    generator
        .args([
            "--url",
            &format!("{}/{db}", service("RUNNER_TEST_REDIS_URL")),
        ])
        .args(["--api-keys", "200", "--hostile", "--manifest"])
        .arg(manifest.path());
    crate::support::tool_output(generator);
    let before = contents(db);
    let binary = before
        .keys()
        .filter(|k| std::str::from_utf8(k).is_err())
        .count();
    let expiring = before.values().filter(|(_, _, ttl)| *ttl).count();
    let out = backup_flush_then_fail(db);
    assert!(
        out.stdout
            .contains(&format!("restored {} key(s)", before.len())),
        "{}",
        out.stdout
    );
    let after = contents(db);
    let differ: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| {
            let side = |m: &std::collections::BTreeMap<Vec<u8>, Held>| {
                m.get(k)
                    .map(|(kind, items, ttl)| (kind.clone(), items.len(), *ttl))
            };
            format!(
                "{}: {:?} -> {:?}",
                String::from_utf8_lossy(k),
                side(&before),
                side(&after)
            )
        })
        .take(10)
        .collect();
    assert!(differ.is_empty(), "keys not as they were: {differ:#?}");
    eprintln!(
        "{} keys restored byte for byte ({binary} with a key that is not UTF-8, {expiring} with an expiry)",
        before.len()
    );
    assert!(expiring > 100, "the generator gives most keys an expiry");
}

/// Sets `bulk:0` .. `bulk:{n-1}`, 500 keys per MSET.
fn bulk_load(db: u8, n: usize) {
    let pairs: Vec<String> = (0..n)
        .flat_map(|i| [format!("bulk:{i}"), i.to_string()])
        .collect();
    for chunk in pairs.chunks(1000) {
        let mut args = vec!["MSET"];
        args.extend(chunk.iter().map(String::as_str));
        redis_cli(db, &args);
    }
}

#[test]
fn preflight_lists_every_check_and_reports_all_failures_together() {
    let p = Project::new();
    let pg = service("RUNNER_TEST_PG_URL");
    let redis = service("RUNNER_TEST_REDIS_URL");
    p.write("present.txt", "x").write(
        "pb.toml",
        r#"[playbook]
name = "preflight"
[secrets]
PG_URL = { env = "TEST_PG_URL" }
REDIS_URL = { env = "TEST_REDIS_URL" }

[[steps]]
id = "check"
kind = "preflight"
env = ["DB_PASSWORD", "RUNNER_SURELY_UNSET"]
files = ["present.txt", "missing.txt"]
docker = true
postgres = "{{secrets.PG_URL}}"
redis = "{{secrets.REDIS_URL}}"
within = "1s"
"#,
    );
    let mut good = p.command(&["apply", "pb.toml", "--yes"]);
    good.env("TEST_PG_URL", &pg).env("TEST_REDIS_URL", &redis);
    let out = finish(good).expect(4);
    assert!(
        out.stdout.contains("2 of 7 check(s) failed"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("FAIL  environment variable RUNNER_SURELY_UNSET: not set"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("FAIL  file `missing.txt`: missing"),
        "{}",
        out.stdout
    );

    let mut bad = p.command(&["apply", "pb.toml", "--yes"]);
    bad.env("TEST_PG_URL", pg.replace("runner-test-pg-password", "nope"))
        .env(
            "TEST_REDIS_URL",
            redis.replace("runner-test-redis-password", "nope"),
        );
    let out = finish(bad).expect(4);
    assert!(
        out.stdout.contains("4 of 7 check(s) failed"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("password authentication failed"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("FAIL  Redis 127.0.0.1:16379/0"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("ok    Docker engine"), "{}", out.stdout);
}
