#!/usr/bin/env python3
"""A relay client through the load balancer: reads API keys and records usage, one request
after another, until SIGTERM or SIGINT; then prints what it saw as one JSON line. SIGHUP
reads the keys file again; with --wait-up, nothing counts until the first answer.

Requests that fail are counted with their status (or the connection error); latency is
measured per request. A key lookup (GET) sent on a kept-alive connection that the load
balancer closed before answering (nginx closes its idle connections when it reloads, and the
request may cross that close) is sent again once on a new connection, as HTTP clients do for
idempotent requests (RFC 9112, 9.3.1); such retries are counted apart. A usage write (POST) is
never sent twice: it may have been recorded, so its failure counts. Python's standard library
only.
"""

import argparse
import http.client
import json
import signal
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="the load balancer's port on 127.0.0.1")
    parser.add_argument("--keys", required=True, help="a file with one API key id per line")
    parser.add_argument("--out", required=True, help="where the figures go (JSON), on exit")
    parser.add_argument("--wait-up", action="store_true",
                        help="count nothing until the load balancer first answers 200 (a stack"
                             " being started)")
    args = parser.parse_args()

    def read_keys():
        with open(args.keys) as f:
            return [line.strip() for line in f if line.strip()]

    keys = read_keys()
    if not keys:
        sys.exit("relay-client: no keys to use")
    stop, reload = [], []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    # SIGHUP: the keys file was rewritten (e.g. once the dataset is seeded); use its keys.
    signal.signal(signal.SIGHUP, lambda *_: reload.append(1))
    up = not args.wait_up
    ok, failed, retried, worst, latencies, errors = 0, 0, 0, 0.0, [], {}
    # When the worst request was sent, in seconds from the first one counted.
    first, worst_at = None, 0.0
    conn = None
    i = 0
    while not stop:
        if reload:
            reload.clear()
            keys = read_keys() or keys
        key = keys[i % len(keys)]
        write = i % 4 == 0
        start = time.monotonic()
        for attempt in (1, 2):
            reused = conn is not None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)
                if write:
                    conn.request("POST", f"/api/usage/{key}", body=b'{"input": 3, "output": 5}',
                                 headers={"Content-Type": "application/json"})
                else:
                    conn.request("GET", f"/api/keys/{key}")
                response = conn.getresponse()
                response.read()
                status = response.status
                break
            except (OSError, http.client.HTTPException) as e:
                status = type(e).__name__
                conn = None
                closed_unanswered = isinstance(
                    e, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
                if write or not (reused and closed_unanswered and attempt == 1):
                    break
                retried += 1
        took = time.monotonic() - start
        if not up:
            # The first answer says the stack is up; it was sent before it was (it waited,
            # e.g. for a SYN to be sent again), so the count starts with the next request.
            up = status == 200
            if not up:
                time.sleep(0.2)
            continue
        first = start if first is None else first
        if took > worst:
            worst, worst_at = took, start - first
        latencies.append(took)
        if status == 200:
            ok += 1
        else:
            failed += 1
            errors[str(status)] = errors.get(str(status), 0) + 1
            time.sleep(0.05)
        i += 1
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95)] if latencies else 0.0
    figures = {"requests": ok + failed, "failed": failed, "errors": errors, "retried": retried,
               "worst_ms": round(worst * 1000, 1), "worst_at_s": round(worst_at, 1),
               "p95_ms": round(p95 * 1000, 1)}
    with open(args.out, "w") as f:
        json.dump(figures, f)


if __name__ == "__main__":
    main()
