#!/usr/bin/env bash
# Start Herald locally: a private redis-server, the mock provider (Twilio's
# wire format) and herald, each on a free 127.0.0.1 port; run a short load;
# leave everything running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_redis_server

echo "==> building (release; the first build takes a few minutes)"
cargo build --release --quiet -p herald-engine -p herald-loadtest -p herald-control

run=.herald-run
mkdir -p "$run"
redis_port=$(free_port); mock_port=$(free_port); http_port=$(free_port); grpc_port=$(free_port)
pids=()
cleanup() {
  trap - EXIT INT TERM
  echo; echo "==> stopping"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# Durable, as Herald requires (it refuses to send on a Redis that could
# forget a STOP): append-only file, fsync every second, in .herald-run/.
rm -rf "$PWD/$run/redis"; mkdir -p "$PWD/$run/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly yes \
  --appendfsync everysec --dir "$PWD/$run/redis" \
  --logfile "$PWD/$run/redis.log" &
pids+=($!)
wait_port "$redis_port" redis-server

target/release/herald-loadtest mock-provider --port "$mock_port" --status-callbacks \
  > "$run/mock.log" 2>&1 &
pids+=($!)
wait_port "$mock_port" "mock provider"

export HERALD_REDIS__URL="redis://127.0.0.1:$redis_port"
export HERALD_PROVIDERS__TWILIO__BASE_URL="http://127.0.0.1:$mock_port"
export HERALD_HTTP__LISTEN="127.0.0.1:$http_port"
export HERALD_CONTROL__LISTEN="127.0.0.1:$grpc_port"
export HERALD_CONTROL__TOKEN="demo-$(date +%s)-$RANDOM"
# The mock calls back with signed delivery receipts: events go sent → delivered.
export HERALD_PROVIDERS__TWILIO__STATUS_CALLBACK="http://127.0.0.1:$http_port/v1/webhooks/twilio/status"
target/release/herald serve --config config/herald.toml > "$run/herald.log" 2>&1 &
pids+=($!)
wait_port "$http_port" herald

echo "==> redis   redis://127.0.0.1:$redis_port"
echo "==> mock    http://127.0.0.1:$mock_port (Twilio wire format)  log: $run/mock.log"
echo "==> herald  http://127.0.0.1:$http_port  log: $run/herald.log"
echo "==> running config/scenarios/smoke.toml"
HERALD_LOADTEST_REDIS_URL="$HERALD_REDIS__URL" target/release/herald-loadtest run config/scenarios/smoke.toml

echo
echo "==> last events on herald:events:"
redis-cli -p "$redis_port" XREVRANGE herald:events + - COUNT 3
echo
echo "Metrics:  curl -s http://127.0.0.1:$http_port/metrics | grep herald_messages_total"
echo "Health:   curl -s http://127.0.0.1:$http_port/readyz"
echo "Queue one message:"
echo "  redis-cli -p $redis_port XADD 'herald:q:{0}' '*' msg '{\"id\":\"hello-1\",\"to\":\"+14155552671\",\"body\":\"Hello from Herald\"}'"
echo "Watch outcomes:  redis-cli -p $redis_port XREAD BLOCK 0 STREAMS herald:events '\$'"
echo "What the policy decides (quiet hours, consent, caps), e.g. marketing at 06:00 in California:"
echo "  curl -s -H \"Authorization: Bearer \$HERALD_CONTROL__TOKEN\" http://127.0.0.1:$http_port/v1/policy/evaluate \\"
echo "    -d '{\"tenant\":\"loadtest\",\"to\":\"+14155552671\",\"category\":\"marketing\",\"at\":\"2026-06-03T13:00:00Z\",\"consent\":\"express_written\"}'"
echo "  (HERALD_CONTROL__TOKEN=$HERALD_CONTROL__TOKEN)"
echo "Consent:         target/release/heraldctl --endpoint http://127.0.0.1:$grpc_port --token $HERALD_CONTROL__TOKEN consent loadtest +14155552671"
echo "Admin (gRPC):    target/release/heraldctl --endpoint http://127.0.0.1:$grpc_port --token $HERALD_CONTROL__TOKEN stats"
echo "                 target/release/heraldctl --endpoint http://127.0.0.1:$grpc_port --token $HERALD_CONTROL__TOKEN pause loadtest --reason test"
echo
echo "Herald keeps running. Press Ctrl-C to stop everything."
wait "${pids[2]}"
