#!/bin/bash
# The official image's entrypoint, reduced to what runner's playbooks and tests use.
set -euo pipefail
if [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi
if [ "$1" != postgres ]; then exec "$@"; fi
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set (the official image requires it too)}"
    user=${POSTGRES_USER:-postgres}
    db=${POSTGRES_DB:-$user}
    auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
    pwfile=$(mktemp)
    printf '%s' "$POSTGRES_PASSWORD" >"$pwfile"
    # shellcheck disable=SC2086
    initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" --auth-local=trust \
        --auth-host="$auth" ${POSTGRES_INITDB_ARGS:-} >/dev/null
    rm -f "$pwfile"
    printf "host all all all %s\n" "$auth" >>"$PGDATA/pg_hba.conf"
    printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" -w start >/dev/null
    psql=(psql -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$user" --no-psqlrc -q)
    if [ "$db" != postgres ]; then "${psql[@]}" -d postgres -c "CREATE DATABASE \"$db\""; fi
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh) echo "running $f"; . "$f" ;;
            *.sql) echo "running $f"; "${psql[@]}" -d "$db" -f "$f" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "PostgreSQL init process complete; ready for start up."
fi
shift
exec postgres -D "$PGDATA" "$@"
