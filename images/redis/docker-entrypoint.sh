#!/bin/bash
# The official image's entrypoint: options alone start redis-server, which runs as `redis`,
# with protected mode off (the official image's build default) unless the arguments set it.
set -euo pipefail
if [ "${1:0:1}" = '-' ] || [ "${1%.conf}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    chown -R redis:redis /data
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
if [ "$1" = redis-server ] && [[ " $* " != *" --protected-mode "* ]]; then
    shift
    if [ "${1:-}" != "" ] && [ "${1%.conf}" != "$1" ]; then
        conf=$1; shift
        set -- redis-server "$conf" --protected-mode no "$@"
    else
        set -- redis-server --protected-mode no "$@"
    fi
fi
exec "$@"
