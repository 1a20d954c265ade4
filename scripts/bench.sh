#!/usr/bin/env bash
# Run a load scenario against release builds: a private redis-server on a
# free port, the scenario's mock provider, and herald spawned by the runner.
#   scripts/bench.sh throughput | concurrency | smoke
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_redis_server
scenario=${1:-throughput}
cargo build --release --quiet -p herald-engine -p herald-loadtest
run=.herald-run; mkdir -p "$run"
redis_port=$(free_port)
# Benchmarks run on a volatile Redis (no append-only file), as the figures in
# the README were measured, and say so to Herald explicitly
# (redis.allow_volatile): production Redis must be durable.
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --logfile "$PWD/$run/bench-redis.log" &
redis_pid=$!
trap 'kill $redis_pid 2>/dev/null || true' EXIT
wait_port "$redis_port" redis-server
export HERALD_LOADTEST_REDIS_URL="redis://127.0.0.1:$redis_port"
export HERALD_HTTP__LISTEN="127.0.0.1:$(free_port)"
export HERALD_CONTROL__LISTEN="127.0.0.1:$(free_port)"
export HERALD_LOG=${HERALD_LOG:-warn}
export HERALD_REDIS__ALLOW_VOLATILE=true
target/release/herald-loadtest run "config/scenarios/$scenario.toml"
