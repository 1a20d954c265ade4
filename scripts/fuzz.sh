#!/usr/bin/env bash
# Short coverage-guided fuzz run (docs/fuzzing.md): builds the cargo-fuzz
# targets in fuzz/ and runs each one for SECONDS (default 30, at most 60)
# from its seed corpus. A crash, a failed assertion or a hang (an input
# slower than 10 s) fails the script; the input is left in
# fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [SECONDS]
#
# Stable Rust: without a sanitizer (`-s none`) cargo-fuzz passes rustc only
# stable -C flags (no -Z), so no nightly and no RUSTC_BOOTSTRAP. Longer
# runs: cargo fuzz directly, as docs/fuzzing.md shows.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

secs=${1:-30}
if ! [[ $secs =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ] || [ "$secs" -gt 60 ]; then
  echo "usage: scripts/fuzz.sh [SECONDS], 1 to 60 (default 30)" >&2
  exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> cargo-fuzz not found; installing (compiles from source, about a minute)"
  start=$SECONDS
  cargo install cargo-fuzz --locked
  echo "==> cargo-fuzz installed in $((SECONDS - start)) s"
fi
cargo fuzz --version

# 16 codegen units instead of cargo-fuzz's 1: the build of the engine and
# its dependencies takes minutes less, the targets run a little slower.
# HERALD_FUZZ_DEV=1 (CI): an unoptimised build, ~6 minutes instead of ~20
# on 2 cores; the targets run several times slower, still coverage-guided.
if [ "${HERALD_FUZZ_DEV:-0}" = 1 ]; then
  build=(-s none --dev)
else
  build=(-s none --codegen-units 16)
fi

start=$SECONDS
cargo fuzz build "${build[@]}"
echo "==> fuzz targets built in $((SECONDS - start)) s"

failed=()
for target in $(cargo fuzz list); do
  # New inputs go to fuzz/work (ignored by git); the committed seeds in
  # fuzz/corpus stay as they are.
  mkdir -p "fuzz/work/$target"
  echo "==> fuzzing $target for $secs s"
  log=$(mktemp)
  if cargo fuzz run "${build[@]}" "$target" "fuzz/work/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$secs" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
  else
    tail -n 60 "$log"
    failed+=("$target")
  fi
  rm -f "$log"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "==> fuzzing found a failure in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "==> fuzzing: every target ran $secs s without a failure"
