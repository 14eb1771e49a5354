#!/usr/bin/env bash
# Runs the whole test suite: starts the services the tests need (scripts/services.sh), then
# cargo nextest. Extra arguments go to nextest (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
. "${RUNNER_SERVICES_DIR:-/tmp/runner-services}/env"
exec cargo nextest run --no-fail-fast "$@"
