#!/usr/bin/env bash
# Runs the whole test suite: starts the services the tests need (scripts/services.sh), builds
# the Docker images they use (scripts/images.sh, once per machine), then cargo nextest. Extra
# arguments go to nextest (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
scripts/images.sh
. "${RUNNER_SERVICES_DIR:-/tmp/runner-services}/env"
exec cargo nextest run --no-fail-fast "$@"
