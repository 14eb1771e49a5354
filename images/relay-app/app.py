"""A stand-in for the relay service, configured like it from its environment.

GET /health -> 200 {"status": "healthy", ...} when every store it is configured to use
answers, 503 {"status": "unhealthy", ...} otherwise.
"""

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import redis


def flag(name):
    return os.environ.get(name, "false").strip().lower() in ("1", "true", "yes", "on")


SETTINGS = {
    "port": int(os.environ.get("PORT", "3000")),
    "mode": os.environ.get("MIGRATION_MODE", "redis_only"),
    "enable_postgres": flag("ENABLE_POSTGRES"),
    "dual_write": flag("ENABLE_DUAL_WRITE"),
}


def redis_client():
    return redis.Redis(
        host=os.environ.get("REDIS_HOST", "redis"),
        port=int(os.environ.get("REDIS_PORT", "6379")),
        password=os.environ.get("REDIS_PASSWORD") or None,
        db=int(os.environ.get("REDIS_DB", "0")),
        socket_timeout=1,
        socket_connect_timeout=1,
    )


def redis_answers():
    try:
        return bool(redis_client().ping())
    except redis.RedisError as error:
        print(f"redis: {error}", file=sys.stderr)
        return False


def postgres_answers():
    try:
        conn = psycopg2.connect(
            host=os.environ.get("POSTGRES_HOST", "postgres"),
            port=int(os.environ.get("POSTGRES_PORT", "5432")),
            dbname=os.environ.get("POSTGRES_DATABASE", "postgres"),
            user=os.environ.get("POSTGRES_USER", "postgres"),
            password=os.environ.get("POSTGRES_PASSWORD", ""),
            connect_timeout=1,
        )
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                return cur.fetchone() == (1,)
        finally:
            conn.close()
    except psycopg2.Error as error:
        print(f"postgres: {error}".strip(), file=sys.stderr)
        return False


class Handler(BaseHTTPRequestHandler):
    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
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
                **checks,
            },
        )

    def log_message(self, fmt, *args):
        print(f"{self.address_string()} {fmt % args}", file=sys.stderr)


def main():
    server = ThreadingHTTPServer(("0.0.0.0", SETTINGS["port"]), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"relay stand-in listening on {SETTINGS['port']} in mode {SETTINGS['mode']}")
    server.serve_forever()


if __name__ == "__main__":
    main()
