#!/usr/bin/env bash
# The whole migration on the bundled stand-in stack, in one command: builds the images,
# generates the secrets the stack needs (once, into .runner/secrets.env, 0600) unless they are
# exported, applies `preparation`, seeds Redis with a relay dataset, runs `hybrid` and
# `postgres_primary` with a client going through the load balancer the whole time, optionally
# rolls the last phase back, and prints a summary. Run again, it picks up where the stack is.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
usage: scripts/demo.sh [--size N] [--quick] [--rollback]

  --size N     API keys in the relay dataset seeded into Redis (default 2000)
  --quick      watch each deployment for 15 s instead of the playbooks' 60 s
  --rollback   at the end, roll the last phase back (timed), the client still running
  RUNNER=path  use this runner binary (default: cargo build --release)
Secrets: ENCRYPTION_KEY, REDIS_PASSWORD, POSTGRES_PASSWORD from the environment if exported,
else from .runner/secrets.env (generated on the first run). ALERT_WEBHOOK_URL is optional.
EOF
}

SIZE=2000
QUICK=()
ROLLBACK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --size) SIZE=${2:?--size needs a number}; shift 2 ;;
    --quick) QUICK=(--var monitor_window=15s); shift ;;
    --rollback) ROLLBACK=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "demo: unknown argument \`$1\`" >&2; usage >&2; exit 2 ;;
  esac
done
case "$SIZE" in ''|*[!0-9]*) echo "demo: --size takes a number, not \`$SIZE\`" >&2; exit 2 ;; esac

say() { printf '\n==> %s\n' "$*" >&2; }

if [ -z "${RUNNER:-}" ]; then
  say "building runner (release)"
  cargo build --release --quiet
  RUNNER=target/release/runner
fi
scripts/images.sh
if ! command -v redis-cli >/dev/null; then
  say "installing redis-tools (redis-cli, for seeding)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-tools >/dev/null
fi

SECRETS=.runner/secrets.env
mkdir -p .runner
chmod 700 .runner
if { [ -z "${ENCRYPTION_KEY:-}" ] || [ -z "${REDIS_PASSWORD:-}" ] || [ -z "${POSTGRES_PASSWORD:-}" ]; } \
  && [ ! -f "$SECRETS" ]; then
  say "generating the stack's secrets into $SECRETS (0600; reused on the next run)"
  (
    umask 077
    token() { python3 -c 'import secrets; print(secrets.token_hex(16))'; }
    printf 'ENCRYPTION_KEY=%s\nREDIS_PASSWORD=%s\nPOSTGRES_PASSWORD=%s\n' "$(token)" "$(token)" "$(token)" >"$SECRETS.tmp"
    mv "$SECRETS.tmp" "$SECRETS"
  )
fi
secret() { # the environment first, then the file, as the playbooks read it
  local value=${!1:-}
  [ -n "$value" ] || value=$(sed -n "s/^$1=//p" "$SECRETS" 2>/dev/null | tail -n 1)
  printf '%s' "$value"
}
export REDISCLI_AUTH
REDISCLI_AUTH=$(secret REDIS_PASSWORD)
REDIS_PORT=16380
LB_PORT=18080

# Where the stack is: the phase of the last run that succeeded (and was not rolled back).
current() {
  "$RUNNER" status --format json | python3 -c '
import json, sys
runs = [r for r in json.load(sys.stdin) if r.get("status") == "succeeded"]
print(runs[-1]["phase"] if runs else "none")'
}
PHASES=(preparation hybrid postgres_primary)
AT=$(current)
TODO=()
passed=0
[ "$AT" = none ] && passed=1
for phase in "${PHASES[@]}"; do
  if [ "$passed" = 1 ]; then TODO+=("$phase"); fi
  if [ "$phase" = "$AT" ]; then passed=1; fi
done
say "the stack is at: $AT; to run: ${TODO[*]:-nothing}"

WORK=$(mktemp -d)
CLIENT=""
stop_client() {
  if [ -n "$CLIENT" ]; then
    kill -TERM "$CLIENT" 2>/dev/null || true
    wait "$CLIENT" 2>/dev/null || true
    CLIENT=""
  fi
}
trap 'stop_client; rm -rf "$WORK"' EXIT

# The client's keys: 40 of the seeded API keys (the file is rewritten, and the client told
# with SIGHUP, once Redis holds them).
client_keys() {
  redis-cli -p $REDIS_PORT --scan --pattern 'apikey:*' >"$WORK/scan"
  sed -n 's/^apikey://p' "$WORK/scan" | grep -E '^[0-9a-f-]{36}$' | grep -v 00000000c0de \
    | awk 'NR <= 40' >"$WORK/keys.new" || true
  if [ ! -s "$WORK/keys.new" ]; then
    echo "demo: Redis on 127.0.0.1:$REDIS_PORT has no API keys for the client" >&2
    exit 1
  fi
  mv "$WORK/keys.new" "$WORK/keys"
  if [ -n "$CLIENT" ]; then kill -HUP "$CLIENT"; fi
}

# Users of a stack that `preparation` is about to start: they look up the canary key that
# preparation writes, from the moment the load balancer first answers.
start_client_early() {
  echo 00000000-0000-4000-8000-00000000c0de >"$WORK/keys"
  python3 scripts/relay-client.py --port $LB_PORT --keys "$WORK/keys" --out "$WORK/client.json" --wait-up &
  CLIENT=$!
}

start_client() {
  client_keys
  python3 scripts/relay-client.py --port $LB_PORT --keys "$WORK/keys" --out "$WORK/client.json" &
  CLIENT=$!
}

declare -A TOOK
apply() {
  local phase=$1 start code=0
  say "applying $phase"
  start=$(date +%s.%N)
  "$RUNNER" apply --yes "playbooks/$phase.toml" "${QUICK[@]}" || code=$?
  TOOK[$phase]=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f} s')")
  if [ "$code" != 0 ]; then
    stop_client
    echo "demo: \`$phase\` failed (exit $code); \`$RUNNER status\` says what happened" >&2
    summary
    exit "$code"
  fi
}

seed() {
  local have
  have=$(redis-cli -p $REDIS_PORT --scan --pattern 'apikey:*' | grep -c -E '^apikey:[0-9a-f-]{36}$' || true)
  if [ "$have" -gt 1 ]; then
    say "Redis already holds $have API keys: not seeding"
    return
  fi
  say "seeding Redis with a relay dataset of $SIZE API keys"
  python3 scripts/relay-data.py --url "redis://127.0.0.1:$REDIS_PORT/0" --api-keys "$SIZE"
}

summary() {
  say "summary"
  for phase in "${PHASES[@]}"; do
    if [ -n "${TOOK[$phase]:-}" ]; then printf '  %-18s %s\n' "$phase" "${TOOK[$phase]}"; fi
  done
  local hybrid
  hybrid=$("$RUNNER" status --format json | python3 -c '
import json, sys
runs = [r for r in json.load(sys.stdin) if r.get("phase") == "hybrid" and r.get("status") in ("succeeded", "rolled back")]
print(runs[-1]["run_id"] if runs else "")')
  if [ -n "$hybrid" ]; then
    "$RUNNER" status --run "$hybrid" | sed -n 's/.*ok      \(migrate\|verify-migration\): /  \1: /p'
  fi
  if [ -f "$WORK/client.json" ]; then
    python3 - "$WORK/client.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
errors = ", ".join(f"{k}: {v}" for k, v in c["errors"].items()) or "none"
print(f"  client through the load balancer: {c['requests']} requests, {c['failed']} failed"
      f" ({errors}), {c['retried']} lookup(s) sent again on a new connection after nginx"
      f" closed a kept-alive one, p95 {c['p95_ms']} ms, worst {c['worst_ms']} ms"
      f" ({c['worst_at_s']} s after the first request counted)")
EOF
  fi
  if [ -n "${TOOK[rollback]:-}" ]; then printf '  %-18s %s\n' "rollback" "${TOOK[rollback]}"; fi
  printf '  the stack is at: %s\n' "$(current)"
}

for phase in "${TODO[@]}"; do
  if [ "$phase" = preparation ]; then
    start_client_early
  elif [ -z "$CLIENT" ]; then
    seed
    start_client
  elif [ ! -s "$WORK/scan" ]; then
    seed
    client_keys
  fi
  apply "$phase"
done
if [ "$ROLLBACK" = 1 ]; then
  [ -n "$CLIENT" ] || { seed; start_client; }
  say "rolling back the last run"
  start=$(date +%s.%N)
  "$RUNNER" rollback --yes
  TOOK[rollback]=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f} s')")
fi
stop_client
summary
