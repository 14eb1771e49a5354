#!/usr/bin/env bash
# The verify step's load probe against wrk on the same local endpoint: an nginx (Debian's
# nginx-light, one worker) answering a small JSON body on 127.0.0.1.
#
# wrk is a closed-model tool (each connection waits for its answer before sending the next;
# wrk2, which holds a constant rate, is not in Debian): its rate is what the server gave it,
# and its latencies leave out the requests a stall kept from being sent. The probe is an open
# model: it sends at a fixed rate and times each request from when it was due. So the
# comparison is: wrk finds the saturation rate; the probe is then run at fixed fractions of
# that rate (and at it), and both tools' latencies are printed side by side. At a rate well
# under saturation the two should agree; at saturation the probe's latencies grow with the
# queue (requests due but not yet answered), which wrk does not count.
#   benches/load_probe.sh [seconds] [wrk-connections]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
connections=${2:-50}
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
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$port;
        location / { default_type application/json; return 200 '{"status":"healthy"}'; }
    }
}
CONF
nginx -p "$work" -c nginx.conf
url="http://127.0.0.1:$port/health"
runner=$PWD/target/release/runner

wrk -t2 -c"$connections" -d"${seconds}s" --latency "$url" >"$work/wrk.txt"
wrk_rps=$(sed -n 's/^Requests\/sec:[[:space:]]*\([0-9.]*\).*/\1/p' "$work/wrk.txt")

# probe NAME RATE: the probe at RATE req/s for the same time, its figures in NAME.jsonl.
probe() {
    cat >"$work/$1.toml" <<TOML
[playbook]
name = "probe"

[[steps]]
id = "probe"
kind = "verify"
load = { url = "$url", rate = $2, duration = "${seconds}s", connections = $connections }
TOML
    (cd "$work" && "$runner" apply --yes --format json "$1.toml") >"$work/$1.jsonl"
}
rates=()
for share in 0.1 0.5 1.0; do
    rate=$(python3 -c "print(max(1, round($wrk_rps * $share)))")
    rates+=("$share:$rate")
    probe "probe-$share" "$rate"
done

python3 - "$work" "$connections" "$seconds" "${rates[@]}" <<'PY'
import json, re, sys
work, connections, seconds, rates = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
def figures(path):
    for line in open(path):
        sample = json.loads(line).get("sample", "")
        if sample.startswith("load measured: "):
            return json.loads(sample[len("load measured: "):])
def ms(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
wrk = open(f"{work}/wrk.txt").read()
wrk_rps = float(re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1))
pct = {p: ms(re.search(rf"\s{p}%\s+(\S+)", wrk).group(1)) for p in ("50", "90", "99")}
wrk_max = ms(re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", wrk).group(1))
print(f"load probe vs wrk: nginx on 127.0.0.1, {seconds} s per run, up to {connections} connections")
print(f"  {'tool':<22} {'target':>9} {'achieved':>9} {'p50 ms':>8} {'p90/95 ms':>10} {'p99 ms':>8} {'max ms':>8} {'errors':>7}")
print(f"  {'wrk (closed, sat.)':<22} {'-':>9} {wrk_rps:>9.0f} {pct['50']:>8.2f} {pct['90']:>10.2f} {pct['99']:>8.2f} {wrk_max:>8.2f} {'-':>7}")
ok = True
for item in rates:
    share, rate = item.split(":")
    f = figures(f"{work}/probe-{share}.jsonl")
    kept = f["achieved_rps"] / f["target_rps"]
    print(f"  {'probe (open) x' + share:<22} {f['target_rps']:>9.0f} {f['achieved_rps']:>9.0f} {f['p50_ms']:>8.2f} {f['p95_ms']:>10.2f} "
          f"{f['p99_ms']:>8.2f} {f['max_ms']:>8.2f} {f['errors']:>7}")
    ordered = f["p50_ms"] <= f["p95_ms"] <= f["p99_ms"] <= f["max_ms"]
    # Under saturation the probe must hold its rate and measure honestly ordered figures.
    if float(share) < 1.0:
        ok = ok and kept >= 0.9 and ordered and f["errors"] == 0
print("  (wrk shows p90, the probe p95; x<share> is the probe at that share of wrk's rate)")
sys.exit(0 if ok else 1)
PY
