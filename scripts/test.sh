#!/usr/bin/env bash
# Runs the whole test suite: starts what the tests need, then cargo nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo nextest run --no-fail-fast "$@"
