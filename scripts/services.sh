#!/usr/bin/env bash
# Starts the services the tests use, once per machine, and writes their addresses to
# $RUNNER_SERVICES_DIR/env (default /tmp/runner-services/env):
#   - PostgreSQL 15 on 127.0.0.1:15432: scram-sha-256 passwords, TLS with a CA it generates,
#     pg_stat_statements preloaded;
#   - Redis on 127.0.0.1:16379 with requirepass (installed from Debian's packages if missing).
# Safe to run again: a service that already answers is left alone.
set -euo pipefail
DIR=${RUNNER_SERVICES_DIR:-/tmp/runner-services}
PG_PORT=15432
REDIS_PORT=16379
PG_PASSWORD=runner-test-pg-password
REDIS_PASSWORD=runner-test-redis-password
mkdir -p "$DIR"

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The report tests render runner's HTML reports in headless Chromium.
if ! command -v chromium >/dev/null; then
  echo "installing chromium" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "installing redis-server" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
if ! redis-cli -p $REDIS_PORT -a "$REDIS_PASSWORD" --no-auth-warning ping 2>/dev/null | grep -q PONG; then
  mkdir -p "$DIR/redis"
  redis-server --bind 127.0.0.1 --port $REDIS_PORT --requirepass "$REDIS_PASSWORD" --daemonize yes \
    --dir "$DIR/redis" --save "" --appendonly no --logfile "$DIR/redis/redis.log" --pidfile "$DIR/redis/redis.pid"
  for _ in $(seq 50); do
    redis-cli -p $REDIS_PORT -a "$REDIS_PASSWORD" --no-auth-warning ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
  done
fi

PGBIN=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
if ! "$PGBIN/pg_isready" -q -h 127.0.0.1 -p $PG_PORT; then
  rm -rf "$DIR/pg" "$DIR/tls"
  mkdir -p "$DIR/pg" "$DIR/tls"
  # A CA, and a server certificate it signs for 127.0.0.1 and localhost (sslmode=verify-full).
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=runner test CA" \
    -keyout "$DIR/tls/ca.key" -out "$DIR/tls/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$DIR/tls/server.key" -out "$DIR/tls/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$DIR/tls/san.ext"
  openssl x509 -req -in "$DIR/tls/server.csr" -CA "$DIR/tls/ca.crt" -CAkey "$DIR/tls/ca.key" \
    -CAcreateserial -days 3650 -extfile "$DIR/tls/san.ext" -out "$DIR/tls/server.crt" 2>/dev/null
  chmod 600 "$DIR/tls/server.key"
  echo "$PG_PASSWORD" > "$DIR/pg/pwfile"
  if [ "$(id -u)" = 0 ]; then chown -R postgres "$DIR/pg" "$DIR/tls"; chmod 755 "$DIR"; fi
  as_postgres "$PGBIN/initdb" -D "$DIR/pg/data" --username=postgres --pwfile="$DIR/pg/pwfile" \
    --auth=scram-sha-256 >/dev/null
  cat >> "$DIR/pg/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$DIR/pg'
ssl = on
ssl_cert_file = '$DIR/tls/server.crt'
ssl_key_file = '$DIR/tls/server.key'
password_encryption = 'scram-sha-256'
shared_preload_libraries = 'pg_stat_statements'
max_connections = 200
fsync = off
CONF
  as_postgres "$PGBIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/server.log" -w start >/dev/null
fi

cat > "$DIR/env" <<ENV
export RUNNER_TEST_PG_URL='postgres://postgres:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres'
export RUNNER_TEST_PG_CA='$DIR/tls/ca.crt'
export RUNNER_TEST_REDIS_URL='redis://:$REDIS_PASSWORD@127.0.0.1:$REDIS_PORT'
ENV
echo "services ready: $DIR/env" >&2
