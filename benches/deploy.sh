#!/usr/bin/env bash
# Deploying a phase and rolling it back: runner against the runbook's own shell approach (its
# deploy script pattern: docker-compose, then sleep and curl until healthy), in one run, on the
# same bundled stack (scripts/images.sh builds its images).
#
# The stack is brought to the hybrid phase with runner (preparation, a seeded Redis, hybrid).
# Then the change to the postgres_primary phase is made, and undone, twice:
#   (a) runner: `apply playbooks/postgres_primary.toml` (incremental migration, equality check,
#       new app beside the old one, load-balancer switch, health gate, verification, a monitor
#       window of $MONITOR), then `runner rollback`;
#   (b) shell: the new .env in place, `docker-compose up -d` of the serving app (recreated in
#       place), SIGHUP to nginx (so that it resolves the new container), `sleep 10`, then curl
#       every 5 s until the health answer shows the new mode; rollback: the old .env back, the
#       same again.
# During each, a client sends requests through the load balancer; failed ones are counted.
#   benches/deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MONITOR=${MONITOR:-10s}
scripts/images.sh >/dev/null
cargo build --release --quiet --bin runner
runner=$PWD/target/release/runner
work=$(mktemp -d /tmp/runner-deploy-bench.XXXXXX)
project=deploybench
lb=18480
redis=16480
cleanup() {
    docker ps -aq --filter "label=com.docker.compose.project=$project" | xargs -r docker rm -f -v >/dev/null
    docker network ls -q --filter "label=com.docker.compose.project=$project" | xargs -r docker network rm >/dev/null
    docker volume ls -q --filter "label=com.docker.compose.project=$project" | xargs -r docker volume rm >/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
for d in templates images sql playbooks; do ln -s "$PWD/$d" "$work/$d"; done
export ENCRYPTION_KEY=bench-encryption-key-32-characters REDIS_PASSWORD=bench-redis-password
export POSTGRES_PASSWORD=bench-postgres-password ALERT_WEBHOOK_URL=http://127.0.0.1:9/hook
vars=(--var project=$project --var lb_container=$project-lb --var lb_port=$lb
      --var redis_published_port=$redis --var postgres_published_port=15480
      --var exporter_published_port=19480)
apply() { (cd "$work" && "$runner" apply --yes "${vars[@]}" "$@" >/dev/null); }

echo "setting up: preparation, 1,000 seeded API keys, hybrid"
apply playbooks/preparation.toml
scripts/relay-data.py --url "redis://:$REDIS_PASSWORD@127.0.0.1:$redis/0" --api-keys 1000 >/dev/null
apply --var monitor_window=$MONITOR playbooks/hybrid.toml
cp "$work/deploy/.env" "$work/env.hybrid"

# timed <label> <command...>: runs the command while a client sends requests through the
# load balancer; prints the time, the requests and the failed ones.
timed() {
    local label=$1; shift
    python3 - "$lb" "$label" "$@" <<'PY'
import subprocess, sys, threading, time, urllib.request
port, label, command = sys.argv[1], sys.argv[2], sys.argv[3:]
stop, counts = threading.Event(), {"ok": 0, "failed": 0}
def client():
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
                counts["ok" if r.status == 200 else "failed"] += 1
        except Exception:
            counts["failed"] += 1
            time.sleep(0.01)
thread = threading.Thread(target=client); thread.start()
start = time.monotonic()
subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
took = time.monotonic() - start
stop.set(); thread.join()
print(f"{label} {took:.1f} {counts['ok'] + counts['failed']} {counts['failed']}")
PY
}

# The runbook's deploy script pattern: <env file> <mode the health answer must show>.
cat >"$work/deploy.sh" <<SH
set -e
cd "$work/deploy"
cp "\$1" .env
docker-compose -p $project -f docker-compose.yml up -d --no-deps app-green >/dev/null 2>&1
docker kill -s HUP $project-lb >/dev/null   # nginx resolves the recreated container again
sleep 10
for _ in \$(seq 60); do
    curl -fsS http://127.0.0.1:$lb/health | grep -q "\"mode\": \"\$2\"" && exit 0
    sleep 5
done
echo "never healthy" >&2; exit 1
SH

results=$work/results
timed runner-deploy bash -c "cd '$work' && '$runner' apply --yes ${vars[*]} --var monitor_window=$MONITOR playbooks/postgres_primary.toml" >>"$results"
cp "$work/deploy/.env" "$work/env.primary"
timed runner-rollback bash -c "cd '$work' && '$runner' rollback --yes" >>"$results"
# The shell approach recreates the serving app in place (the runbook has one app container).
timed shell-deploy bash "$work/deploy.sh" "$work/env.primary" postgres_primary >>"$results"
timed shell-rollback bash "$work/deploy.sh" "$work/env.hybrid" dual_write >>"$results"

python3 - "$results" "$MONITOR" <<'PY'
import sys
rows = {l.split()[0]: l.split()[1:] for l in open(sys.argv[1])}
t = {k: float(v[0]) for k, v in rows.items()}
print(f"deploy benchmark: the change hybrid -> postgres_primary and its rollback, on the bundled stack")
for k, (s, n, f) in rows.items():
    print(f"  {k:16} {float(s):6.1f} s  {int(n):6} requests through the load balancer, {int(f)} failed")
print(f"  deploy:   runner / shell = {t['runner-deploy'] / t['shell-deploy']:.2f}  (runner also migrates, checks equality, verifies and monitors {sys.argv[2]})")
print(f"  rollback: runner / shell = {t['runner-rollback'] / t['shell-rollback']:.2f}")
PY
