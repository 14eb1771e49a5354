#!/usr/bin/env bash
# The verify step's load probe against wrk, in one run, on the same local endpoint: an nginx
# (Debian's nginx-light, one worker) answering a small JSON body on 127.0.0.1. Prints both
# tools' throughput and percentiles, and their ratio (the target: within 30 % of wrk).
#   benches/load_probe.sh [connections] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-50}
seconds=${2:-10}
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
command -v nginx >/dev/null || apt-get install -y -qq nginx-light >/dev/null
cargo build --release --quiet --bin runner

work=$(mktemp -d /tmp/runner-probe.XXXXXX)
trap 'nginx -p "$work" -c nginx.conf -s stop 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/logs"
cat >"$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/logs/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$port;
        location / { default_type application/json; return 200 '{"status":"healthy"}'; }
    }
}
CONF
nginx -p "$work" -c nginx.conf
url="http://127.0.0.1:$port/health"

cat >"$work/probe.toml" <<TOML
[playbook]
name = "probe"

[[steps]]
id = "probe"
kind = "verify"
load = { url = "$url", concurrency = $connections, duration = "${seconds}s" }
TOML
runner=$PWD/target/release/runner
(cd "$work" && "$runner" apply --yes --format json probe.toml) >"$work/probe.jsonl"
wrk -t2 -c"$connections" -d"${seconds}s" --latency "$url" >"$work/wrk.txt"

python3 - "$work/probe.jsonl" "$work/wrk.txt" "$connections" "$seconds" <<'PY'
import json, re, sys
probe = None
for line in open(sys.argv[1]):
    event = json.loads(line)
    sample = event.get("sample", "")
    if sample.startswith("load measured: "):
        probe = json.loads(sample[len("load measured: "):])
wrk = open(sys.argv[2]).read()
def ms(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1))
pct = {p: ms(re.search(rf"\s{p}%\s+(\S+)", wrk).group(1)) for p in ("50", "90", "99")}
print(f"load probe vs wrk: {sys.argv[3]} connections, {sys.argv[4]} s, nginx on 127.0.0.1")
print(f"  runner probe: {probe['throughput']:.0f} req/s, p50 {probe['p50_ms']:.2f} ms, p95 {probe['p95_ms']:.2f} ms, "
      f"p99 {probe['p99_ms']:.2f} ms, max {probe['max_ms']:.2f} ms, errors {probe['errors']} of {probe['requests']}")
print(f"  wrk:          {rps:.0f} req/s, p50 {pct['50']:.2f} ms, p90 {pct['90']:.2f} ms, p99 {pct['99']:.2f} ms")
ratio = probe["throughput"] / rps
ordered = probe["p50_ms"] <= probe["p95_ms"] <= probe["p99_ms"] <= probe["max_ms"]
print(f"  throughput ratio probe/wrk: {ratio:.2f} (target 0.70 to 1.30); percentiles ordered: {ordered}")
sys.exit(0 if 0.7 <= ratio <= 1.3 and ordered else 1)
PY
