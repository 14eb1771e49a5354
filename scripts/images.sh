#!/usr/bin/env bash
# Builds, once per machine, the images the tests and the shipped playbooks use, without a
# registry: a Debian bookworm root filesystem (debootstrap, with PostgreSQL 15, Redis 7,
# Python, nginx and the PostgreSQL exporter) imported as runner-base:bookworm, then images/* on
# top of it, tagged under the names the playbooks reference. An image is rebuilt only when its
# folder under images/ (or, for the base, the package list) changed.
set -euo pipefail
cd "$(dirname "$0")/.."

base=runner-base:bookworm
packages=python3,python3-redis,python3-psycopg2,postgresql-15,postgresql-client-15,redis-server,redis-tools,curl,ca-certificates,procps,nginx-light,prometheus-postgres-exporter
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ "$(docker image inspect -f '{{index .Config.Labels "runner.packages"}}' "$base" 2>/dev/null)" != "$packages" ]; then
    command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
    root=$(mktemp -d /tmp/runner-rootfs.XXXXXX)
    trap 'rm -rf "$root"' EXIT
    echo "images: debootstrap bookworm into $root (once per machine)"
    debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" >/dev/null
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' --change "LABEL runner.packages=$packages" - "$base" >/dev/null
fi

build() { # build <folder> <tag>...
    local dir=images/$1; shift
    local hash
    hash=$( (cd "$dir" && find . -type f -print0 | sort -z | xargs -0 sha256sum; echo "$packages") | sha256sum | cut -c1-16)
    if [ "$(docker image inspect -f '{{index .Config.Labels "runner.source"}}' "$1" 2>/dev/null)" = "$hash" ]; then
        return
    fi
    echo "images: building $*"
    local tags=()
    for t in "$@"; do tags+=(-t "$t"); done
    local out
    if ! out=$(docker build -q --label "runner.source=$hash" "${tags[@]}" "$dir" 2>&1); then
        echo "$out" >&2
        exit 1
    fi
}

build postgres postgres:15-alpine postgres:15
build redis redis:7-alpine redis:7
build relay-app claude-relay-service:stand-in
build lb nginx:1.25-alpine
build postgres-exporter prometheuscommunity/postgres-exporter:v0.15.0
echo "images ready: $base postgres:15-alpine redis:7-alpine claude-relay-service:stand-in nginx:1.25-alpine prometheuscommunity/postgres-exporter:v0.15.0"
