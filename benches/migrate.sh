#!/usr/bin/env bash
# The migration benchmark, all in one run:
#   (a) runner's migrate step end to end (release build), with its peak memory;
#   (b) a naive baseline: one HGETALL/GET and one autocommitted INSERT per record, as the
#       runbook's per-entity scripts would do (measured on a slice, reported as records/s);
#   (c) the ceiling: psql \copy of the very rows (a) produced, from prepared files.
# Redis is the test service (scripts/services.sh). PostgreSQL is a cluster of its own,
# configured as the playbooks deploy it: templates/postgresql.conf.hbs rendered with the
# runbook's tuning, and the stock durability (fsync and synchronous_commit on), where the
# test service runs with fsync off for speed.
#   benches/migrate.sh [api_keys]        (default 1,000,000: 1 M key hashes + 2 M usage keys)
set -euo pipefail
cd "$(dirname "$0")/.."
keys=${1:-1000000}
scripts/services.sh >/dev/null
. "${RUNNER_SERVICES_DIR:-/tmp/runner-services}/env"
cargo build --release --quiet --bin runner
runner=$PWD/target/release/runner
db=12
redis_url="$RUNNER_TEST_REDIS_URL/$db"
work=$(mktemp -d /tmp/runner-migrate-bench.XXXXXX)
pgbin=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
trap 'as_postgres "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
[ "$(id -u)" = 0 ] && chmod 755 "$work" && chown postgres "$work"

# PostgreSQL as deployed: the shipped template, rendered by runner with the hybrid phase's
# tuning (its pg_* vars).
{
    printf '[playbook]\nname = "bench-postgres"\nphase = "hybrid"\n[vars]\n'
    grep '^pg_' playbooks/hybrid.toml
    printf '[[steps]]\nid = "conf"\nkind = "template"\n'
    printf 'template = "%s/templates/postgresql.conf.hbs"\ndest = "%s/postgresql.conf"\n' "$PWD" "$work"
} >"$work/conf.toml"
(cd "$work" && "$runner" apply --yes --state-dir "$work/state-conf" conf.toml >/dev/null)
as_postgres "$pgbin/initdb" -D "$work/pg" --username=postgres --auth=trust >/dev/null
cat >>"$work/pg/postgresql.conf" <<CONF
include '$work/postgresql.conf'
listen_addresses = '127.0.0.1'
port = 15499
unix_socket_directories = '$work'
CONF
as_postgres "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w start >/dev/null
base=postgres://postgres@127.0.0.1:15499
psql "$base/postgres" -XAtc "SELECT 'PostgreSQL: shared_buffers ' || current_setting('shared_buffers') || ', fsync ' || current_setting('fsync') || ', synchronous_commit ' || current_setting('synchronous_commit')"

export REDISCLI_AUTH=${RUNNER_TEST_REDIS_URL#redis://:}; REDISCLI_AUTH=${REDISCLI_AUTH%@*}
# The generator is deterministic: a dataset of the same size and shapes is reused (the marker
# key matches a skip rule of the mapping). Its default shapes: every API key with its 365-day
# TTL (so each row's expiry is read and written), non-ASCII names, a few 100 KB descriptions.
marker="$keys api keys, shapes with TTLs, non-ASCII, long and binary values"
if [ "$(redis-cli -p 16379 -n $db GET system:migration:bench-seed)" != "$marker" ]; then
    redis-cli -p 16379 -n $db FLUSHDB >/dev/null
    echo "seeding $keys API keys (--light) into Redis db $db"
    scripts/relay-data.py --url "$redis_url" --api-keys "$keys" --light >/dev/null
    redis-cli -p 16379 -n $db SET system:migration:bench-seed "$marker" >/dev/null
fi
total=$(redis-cli -p 16379 -n $db DBSIZE)

fresh() { # fresh <db>: a new database with the shipped schema
    psql "$base/postgres" -qXc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null 2>&1
    cat >"$work/schema.toml" <<TOML
[playbook]
name = "schema"
[[steps]]
id = "schema"
kind = "sql"
url = "$base/$1"
files = ["$PWD/sql/*.up.sql"]
settings = { "runner.app_password" = "bench" }
TOML
    (cd "$work" && "$runner" apply --yes --state-dir "$work/state-$1" schema.toml >/dev/null)
}

fresh bench_runner
cat >"$work/migrate.toml" <<TOML
[playbook]
name = "bench"
[[steps]]
id = "migrate"
kind = "migrate"
redis = "$redis_url"
postgres = "$base/bench_runner"
mapping = "$PWD/playbooks/relay-mapping.toml"
batch_size = ${BATCH:-5000}
TOML
python3 - "$runner" "$work" <<'PY' >"$work/runner.txt"
import resource, subprocess, sys, time
runner, work = sys.argv[1], sys.argv[2]
start = time.monotonic()
subprocess.run([runner, "apply", "--yes", "--state-dir", f"{work}/state", "--format", "json", "migrate.toml"],
               cwd=work, check=True, stdout=subprocess.DEVNULL)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(time.monotonic() - start, usage.ru_maxrss, usage.ru_utime + usage.ru_stime)
PY
read -r runner_s runner_kb runner_cpu <"$work/runner.txt"
rows=$(psql "$base/bench_runner" -XAtc "SELECT (SELECT count(*) FROM claude_data.api_keys) + (SELECT count(*) FROM claude_data.usage_rollups) + (SELECT count(*) FROM claude_data.cost_counters)")

# (c) the ceiling: \copy of the same rows, prepared as files.
for t in api_keys usage_rollups cost_counters; do
    psql "$base/bench_runner" -XqAc "\\copy claude_data.$t TO '$work/$t.tsv'"
done
fresh bench_copy
copy_start=$(date +%s.%N)
for t in api_keys usage_rollups cost_counters; do
    psql "$base/bench_copy" -XqAc "\\copy claude_data.$t FROM '$work/$t.tsv'"
done
copy_s=$(python3 -c "import time; print(time.time() - $copy_start)")

# (b) naive: one read and one autocommitted INSERT per record, on a slice.
fresh bench_naive
python3 -m venv "$work/venv" >/dev/null && "$work/venv/bin/pip" -q install redis psycopg2-binary >/dev/null
slice=30000
"$work/venv/bin/python" - "$redis_url" "$base/bench_naive" "$slice" <<'PY' >"$work/naive.txt"
import json, sys, time
import psycopg2, redis
r = redis.Redis.from_url(sys.argv[1], decode_responses=True)
pg = psycopg2.connect(sys.argv[2]); pg.autocommit = True
cur = pg.cursor()
limit, done = int(sys.argv[3]), 0
start = time.monotonic()
for key in r.scan_iter(match="apikey:*", count=1000):
    if key.count(":") != 1 or len(key) != 43:
        continue
    h = r.hgetall(key)
    cur.execute("INSERT INTO claude_data.api_keys (id, name, api_key_hash, created_at, source_key, source) VALUES (%s, %s, %s, %s, %s, %s)",
                (h["id"], h.get("name", ""), h["apiKey"], h["createdAt"], key, json.dumps(h)))
    done += 1
    if done >= limit:
        break
print(done, time.monotonic() - start)
PY
read -r naive_n naive_s <"$work/naive.txt"

python3 - "$total" "$rows" "$runner_s" "$runner_kb" "$copy_s" "$naive_n" "$naive_s" "$runner_cpu" <<'PY'
import sys
total, rows = int(sys.argv[1]), int(sys.argv[2])
runner_s, runner_kb, copy_s = float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
naive_n, naive_s, runner_cpu = int(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8])
r, c, n = rows / runner_s, rows / copy_s, naive_n / naive_s
print(f"migration benchmark: {total:,} Redis keys, {rows:,} rows")
print(f"  (a) runner migrate:   {runner_s:8.1f} s  {r:10,.0f} rows/s  peak RSS {runner_kb / 1024:.0f} MB, {runner_cpu:.0f} s of CPU")
print(f"  (b) naive INSERTs:    {naive_s:8.1f} s  {n:10,.0f} rows/s  ({naive_n:,} records; one read + one autocommit INSERT each)")
print(f"  (c) psql \\copy:       {copy_s:8.1f} s  {c:10,.0f} rows/s  (the same rows from prepared files)")
print(f"  runner / naive = {r / n:.1f}x (target >= 20x); runner / copy = {100 * r / c:.0f} % (target >= 70 %)")
PY
