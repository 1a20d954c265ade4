#!/usr/bin/env bash
# Run Herald's test suite: installs redis-server when missing (tests start
# their own on free ports), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_redis_server
if cargo nextest --version >/dev/null 2>&1; then
  # nextest does not run doctests; run them first so the suite's summary
  # line is the last thing printed.
  cargo test --workspace --doc --quiet
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
