#!/usr/bin/env bash
# Sequences at scale: Redis memory per enrolled sequence and the delayed
# mover's Redis time per due step (engine/tests/sequence_scale.rs).
#   scripts/bench-sequences.sh [N]      (default 100000 sequences)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_redis_server
export HERALD_SEQ_BENCH_N=${1:-100000}
export HERALD_LOG=${HERALD_LOG:-warn}
cargo test --quiet -p herald-engine --test sequence_scale -- --ignored --nocapture
