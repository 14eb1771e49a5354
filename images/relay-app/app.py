"""A stand-in for the relay service, configured like it from its environment.

GET /health -> 200 {"status": "healthy", ...} when every store it is configured to use
answers, 503 {"status": "unhealthy", ...} otherwise.
GET /api/keys/{id} -> the API key's hash and its all-time usage, from the store the mode reads.
POST /api/usage/{id} {"input": n, "output": m} -> records one request's usage, in the stores
the mode writes.

Faults for runner's tests (STANDIN_FAULT, comma-separated; unset in the bundled stack), each one
that a /health check cannot see:
  lookup_errors     GET /api/keys/{id} answers 500; /health stays healthy;
  lookup_delay=MS   GET /api/keys/{id} answers MS milliseconds late;
  latency=MS        every answer (but /health) takes MS milliseconds more;
  slowdown=F        every answer takes F times as long as it would (same answers).

The three modes of the migration:
  redis_only        reads and writes Redis;
  dual_write        (ENABLE_DUAL_WRITE) writes Redis and PostgreSQL, reads Redis;
  postgres_primary  reads PostgreSQL; writes PostgreSQL, and Redis too while dual writes stay
                    on (so that a rollback to Redis loses nothing).
"""

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import psycopg2.pool
import redis


def flag(name):
    return os.environ.get(name, "false").strip().lower() in ("1", "true", "yes", "on")


SETTINGS = {
    "port": int(os.environ.get("PORT", "3000")),
    "mode": os.environ.get("MIGRATION_MODE", "redis_only"),
    "enable_postgres": flag("ENABLE_POSTGRES"),
    "dual_write": flag("ENABLE_DUAL_WRITE"),
    "instance": os.environ.get("APP_INSTANCE", os.environ.get("HOSTNAME", "")),
}
READS_POSTGRES = SETTINGS["enable_postgres"] and SETTINGS["mode"] == "postgres_primary"
WRITES_REDIS = not READS_POSTGRES or SETTINGS["dual_write"]
WRITES_POSTGRES = SETTINGS["enable_postgres"] and (SETTINGS["dual_write"] or READS_POSTGRES)
USAGE_FIELDS = {"input": "totalInputTokens", "output": "totalOutputTokens"}


def faults():
    found = {}
    for item in filter(None, os.environ.get("STANDIN_FAULT", "").split(",")):
        name, _, value = item.strip().partition("=")
        found[name] = float(value) if value else True
    unknown = set(found) - {"lookup_errors", "lookup_delay", "latency", "slowdown"}
    if unknown:
        sys.exit(f"STANDIN_FAULT: unknown fault(s) {sorted(unknown)}")
    return found


FAULTS = faults()


REDIS = redis.Redis(
    host=os.environ.get("REDIS_HOST", "redis"),
    port=int(os.environ.get("REDIS_PORT", "6379")),
    password=os.environ.get("REDIS_PASSWORD") or None,
    db=int(os.environ.get("REDIS_DB", "0")),
    socket_timeout=1,
    socket_connect_timeout=1,
    decode_responses=True,
)
POOL = None


def postgres_settings():
    return dict(
        host=os.environ.get("POSTGRES_HOST", "postgres"),
        port=int(os.environ.get("POSTGRES_PORT", "5432")),
        dbname=os.environ.get("POSTGRES_DATABASE", "postgres"),
        user=os.environ.get("POSTGRES_USER", "postgres"),
        password=os.environ.get("POSTGRES_PASSWORD", ""),
        connect_timeout=1,
    )


POOL_MAX = int(os.environ.get("POSTGRES_POOL_MAX", "20"))
# A request waits for a free connection, as with the relay's pg.Pool, instead of failing.
POOL_SLOTS = threading.BoundedSemaphore(POOL_MAX)
POOL_LOCK = threading.Lock()


def postgres(work):
    """Runs work(cursor) in one transaction on a pooled connection."""
    global POOL
    with POOL_SLOTS:
        with POOL_LOCK:
            if POOL is None:
                POOL = psycopg2.pool.ThreadedConnectionPool(1, POOL_MAX, **postgres_settings())
                # psycopg2's pool closes a connection given back while `minconn` idle ones are
                # pooled: with minconn 1, every request beyond one at a time opened a session
                # of its own (name lookup, TCP, SCRAM, a backend fork), and reads from
                # PostgreSQL were 5-18x slower under load. The relay's pg.Pool keeps its idle
                # clients; so does this one, up to POOL_MAX.
                POOL.minconn = POOL_MAX
        conn = POOL.getconn()
        try:
            with conn, conn.cursor() as cur:
                return work(cur)
        except psycopg2.Error:
            POOL.putconn(conn, close=True)
            conn = None
            raise
        finally:
            if conn is not None:
                POOL.putconn(conn)


def redis_answers():
    try:
        return bool(REDIS.ping())
    except redis.RedisError as error:
        print(f"redis: {error}", file=sys.stderr)
        return False


def postgres_answers():
    try:
        def one(cur):
            cur.execute("SELECT 1")
            return cur.fetchone() == (1,)

        return postgres(one)
    except psycopg2.Error as error:
        print(f"postgres: {error}".strip(), file=sys.stderr)
        return False


def read_key(key_id):
    """The key's hash and its all-time usage, from the store the mode reads; None if unknown."""
    if READS_POSTGRES:
        def fetch(cur):
            cur.execute(
                "SELECT (SELECT source FROM claude_data.api_keys WHERE source_key = %s),"
                " (SELECT source FROM claude_data.usage_rollups WHERE source_key = %s)",
                (f"apikey:{key_id}", f"usage:{key_id}"),
            )
            return cur.fetchone()

        key, usage = postgres(fetch)
        source = "postgres"
    else:
        key, usage = REDIS.hgetall(f"apikey:{key_id}"), REDIS.hgetall(f"usage:{key_id}")
        source = "redis"
    if not key:
        return None
    return {"id": key_id, "from": source, "key": key, "usage": usage or {}}


SECONDARY_ERRORS = {"redis": 0, "postgres": 0}


def record_usage(key_id, tokens):
    """Adds one request and its tokens to the key's all-time usage in every store written.
    The store the mode reads is the primary: it is written first, and its failure fails the
    request. A failure of the other store's write is logged and counted, as the relay does
    with dual writes.

    While Redis is the primary, the PostgreSQL write carries the whole current value (write
    through) and marks the row migrated_run = 'app': runner's migration, which may have read
    the key before this write, never overwrites such a row."""
    redis_write = ("redis", lambda: redis_usage(key_id, tokens))
    if READS_POSTGRES:
        writes = [("postgres", lambda: postgres(lambda cur: postgres_usage(cur, key_id, tokens)))]
        writes += [redis_write] if WRITES_REDIS else []
    else:
        writes = [redis_write]
        if WRITES_POSTGRES:
            writes.append(("postgres", lambda: postgres(lambda cur: postgres_through(cur, key_id))))
    for i, (store, write) in enumerate(writes):
        try:
            write()
        except (redis.RedisError, psycopg2.Error) as error:
            if i == 0:
                raise
            SECONDARY_ERRORS[store] += 1
            print(f"dual write to {store} failed: {str(error).strip()}", file=sys.stderr)


def redis_usage(key_id, tokens):
    pipe = REDIS.pipeline()
    pipe.hincrby(f"usage:{key_id}", "totalRequests", 1)
    pipe.hincrby(f"usage:{key_id}", "totalTokens", sum(tokens.values()))
    for name, field in USAGE_FIELDS.items():
        pipe.hincrby(f"usage:{key_id}", field, tokens[name])
    pipe.execute()


def number(fields, name):
    value = fields.get(name, "")
    return int(value) if value.lstrip("-").isdigit() else None


def postgres_through(cur, key_id):
    """The key's usage row set to what Redis holds now."""
    fields = REDIS.hgetall(f"usage:{key_id}")
    cur.execute(
        """
        INSERT INTO claude_data.usage_rollups AS t
          (dimension, period, api_key_id, requests, input_tokens, output_tokens, cache_create_tokens,
           cache_read_tokens, all_tokens, source_key, source, migrated_run)
        VALUES ('api_key', 'all', %(id)s, %(requests)s, %(input)s, %(output)s, %(cache_create)s,
                %(cache_read)s, %(all)s, %(key)s, %(source)s::jsonb, 'app')
        ON CONFLICT (source_key) DO UPDATE SET
          requests = EXCLUDED.requests, input_tokens = EXCLUDED.input_tokens,
          output_tokens = EXCLUDED.output_tokens, cache_create_tokens = EXCLUDED.cache_create_tokens,
          cache_read_tokens = EXCLUDED.cache_read_tokens, all_tokens = EXCLUDED.all_tokens,
          source = EXCLUDED.source, migrated_run = 'app'
        """,
        {
            "id": key_id,
            "key": f"usage:{key_id}",
            "source": json.dumps(fields, sort_keys=True),
            "requests": number(fields, "totalRequests"),
            "input": number(fields, "totalInputTokens"),
            "output": number(fields, "totalOutputTokens"),
            "cache_create": number(fields, "totalCacheCreateTokens"),
            "cache_read": number(fields, "totalCacheReadTokens"),
            "all": number(fields, "totalAllTokens"),
        },
    )


def postgres_usage(cur, key_id, tokens):
    """PostgreSQL as the primary: the counters added to the row."""
    cur.execute(
        """
        INSERT INTO claude_data.usage_rollups AS t
          (dimension, period, api_key_id, requests, input_tokens, output_tokens, source_key, source, migrated_run)
        VALUES ('api_key', 'all', %(id)s, 1, %(input)s, %(output)s, %(key)s,
                jsonb_build_object('totalRequests', '1', 'totalTokens', (%(input)s + %(output)s)::text,
                                   'totalInputTokens', %(input)s::text, 'totalOutputTokens', %(output)s::text),
                'app')
        ON CONFLICT (source_key) DO UPDATE SET
          requests = coalesce(t.requests, 0) + 1,
          input_tokens = coalesce(t.input_tokens, 0) + %(input)s,
          output_tokens = coalesce(t.output_tokens, 0) + %(output)s,
          source = t.source || jsonb_build_object(
            'totalRequests', (coalesce((t.source->>'totalRequests')::bigint, 0) + 1)::text,
            'totalTokens', (coalesce((t.source->>'totalTokens')::bigint, 0) + %(input)s + %(output)s)::text,
            'totalInputTokens', (coalesce((t.source->>'totalInputTokens')::bigint, 0) + %(input)s)::text,
            'totalOutputTokens', (coalesce((t.source->>'totalOutputTokens')::bigint, 0) + %(output)s)::text),
          migrated_run = 'app'
        """,
        {"id": key_id, "key": f"usage:{key_id}", **tokens},
    )


class Handler(BaseHTTPRequestHandler):
    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.answer(self.get)

    def do_POST(self):
        self.answer(self.post)

    def answer(self, handle):
        started = time.monotonic()
        lookup = self.command == "GET" and self.path.startswith("/api/keys/")
        if "latency" in FAULTS and self.path != "/health":
            time.sleep(FAULTS["latency"] / 1000)
        if lookup and "lookup_delay" in FAULTS:
            time.sleep(FAULTS["lookup_delay"] / 1000)
        if lookup and "lookup_errors" in FAULTS:
            self.send_json(500, {"error": "injected fault: lookup_errors"})
            return
        if "slowdown" in FAULTS:
            # The work is done, then the answer waits (F - 1) times as long as it took.
            real_send = self.send_json

            def late(status, body):
                time.sleep((FAULTS["slowdown"] - 1) * (time.monotonic() - started))
                real_send(status, body)

            self.send_json = late
        handle()

    def get(self):
        if self.path.startswith("/api/keys/"):
            try:
                found = read_key(self.path.removeprefix("/api/keys/"))
            except (redis.RedisError, psycopg2.Error) as error:
                self.send_json(503, {"error": str(error).strip()})
                return
            self.send_json(200 if found else 404, found or {"error": "no such key"})
            return
        if self.path != "/health":
            self.send_json(404, {"error": "not found"})
            return
        checks = {"redis": redis_answers()}
        checks["postgres"] = postgres_answers() if SETTINGS["enable_postgres"] else None
        healthy = all(v for v in checks.values() if v is not None)
        self.send_json(
            200 if healthy else 503,
            {
                "status": "healthy" if healthy else "unhealthy",
                "mode": SETTINGS["mode"],
                "dual_write": SETTINGS["dual_write"],
                "reads": "postgres" if READS_POSTGRES else "redis",
                "instance": SETTINGS["instance"],
                "dual_write_errors": SECONDARY_ERRORS,
                **checks,
            },
        )

    def post(self):
        if not self.path.startswith("/api/usage/"):
            self.send_json(404, {"error": "not found"})
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            tokens = {name: int(body.get(name, 0)) for name in USAGE_FIELDS}
        except (ValueError, TypeError, AttributeError):
            self.send_json(400, {"error": 'expected {"input": n, "output": m}'})
            return
        try:
            record_usage(self.path.removeprefix("/api/usage/"), tokens)
        except (redis.RedisError, psycopg2.Error) as error:
            self.send_json(503, {"error": str(error).strip()})
            return
        self.send_json(200, {"recorded": tokens})

    def log_message(self, fmt, *args):
        print(f"{self.address_string()} {fmt % args}", file=sys.stderr)


class Server(ThreadingHTTPServer):
    # Node listens with a backlog of 511. socketserver's default of 5 overflows when nginx
    # opens a connection per request under a load probe: a dropped SYN is retried after 1 s,
    # then 3 s, past nginx's 2 s connect timeout, and the request fails.
    request_queue_size = 511
    # On SIGTERM it stops accepting and answers the requests it holds before it exits (docker
    # stop's grace period bounds the wait), as a Node server closed gracefully does: requests
    # still in flight to an app being stopped after a switch are answered, not cut.
    daemon_threads = False


def main():
    server = Server(("0.0.0.0", SETTINGS["port"]), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"relay stand-in listening on {SETTINGS['port']} in mode {SETTINGS['mode']}")
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
