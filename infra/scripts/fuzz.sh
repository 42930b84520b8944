#!/usr/bin/env bash
# Builds the cargo-fuzz targets of fuzz/ and runs each for a fixed time, as many at
# a time as there are cores (each libFuzzer run is one process); fails if any target crashes (a panic, a failed property, a timeout or an
# out-of-memory), and prints the executions run per target. The `fuzz` stage of
# infra/scripts/test.sh calls it; it runs on its own the same way.
#
# Toolchain choice: CI has only the stable Rust toolchain (rustup's dist server may be
# unreachable, so no nightly). cargo-fuzz 0.13 adds `-Z` flags to rustc only for a
# sanitizer (and options not used here); with `--sanitizer none` the instrumented
# libFuzzer build (`-Cpasses=sancov-module`, `-Cllvm-args=-sanitizer-coverage-*`,
# `--cfg fuzzing`) runs on stable as is: no nightly, no RUSTC_BOOTSTRAP (checked with
# rustc 1.95). No sanitizer is lost that matters: the core is
# `#![forbid(unsafe_code)]`, so AddressSanitizer would find nothing Rust's own checks
# do not; overflow checks and debug assertions are on in the fuzz build.
# cargo-fuzz itself comes from crates.io (`cargo install --locked`, pinned below) into
# the tools dir; libFuzzer is built from the libfuzzer-sys crate with the machine's C++
# compiler.
#
# Environment:
#   RELAY_FUZZ_SECONDS   seconds per target (default 60)
#   RELAY_FUZZ_TARGETS   space-separated targets (default: all of fuzz/Cargo.toml)
#   RELAY_FUZZ_RUNS      also stop a target after this many executions (default: no limit)
#   RELAY_FUZZ_JOBS      libFuzzer -fork=N workers per target (default 0: one process)
#   RELAY_FUZZ_PARALLEL  targets run at the same time (default: the number of cores,
#                        1 with RELAY_FUZZ_JOBS)
#   RELAY_TOOLS_DIR      where cargo-fuzz is installed (default: $REPO/.tools)
#   RELAY_FIXTURES_DIR   fixtures for the seeds (default ../shared/fixtures)
#   CARGO_TARGET_DIR     the fuzz build goes to $CARGO_TARGET_DIR/fuzz (default target/fuzz)
set -euo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
cd "$REPO"
CARGO_FUZZ_VERSION=0.13.2
TOOLS=${RELAY_TOOLS_DIR:-$REPO/.tools}
SECONDS_PER_TARGET=${RELAY_FUZZ_SECONDS:-60}
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}/fuzz
LOGS=${CARGO_TARGET_DIR:-$REPO/target}/fuzz-logs
export PATH="$TOOLS/bin:$PATH"

# libFuzzer reads -max_total_time=0 as "no limit": refuse it.
case $SECONDS_PER_TARGET in
'' | *[!0-9]* | 0)
  echo "RELAY_FUZZ_SECONDS must be a whole number of seconds, at least 1" >&2
  exit 2
  ;;
esac

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  # --debug: cargo-fuzz only drives cargo and libFuzzer; its own speed does not matter,
  # and an unoptimised build of it takes half the time.
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION into $TOOLS"
  CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}/cargo-install \
    cargo install cargo-fuzz --locked --debug --version "$CARGO_FUZZ_VERSION" --root "$TOOLS"
fi
cargo fuzz --version
rustc --version

python3 fuzz/seed.py

if [ -n "${RELAY_FUZZ_TARGETS:-}" ]; then
  read -r -a TARGETS <<<"$RELAY_FUZZ_TARGETS"
else
  mapfile -t TARGETS < <(cd fuzz && cargo fuzz list)
fi

cd fuzz
cargo fmt --check # the main workspace's fmt stage does not reach this crate
started=$SECONDS
cargo fuzz build --sanitizer none --target-dir "$TARGET_DIR"
echo "built ${#TARGETS[@]} targets in $((SECONDS - started)) s"

mkdir -p "$LOGS"
# fuzz_one TARGET: runs TARGET for SECONDS_PER_TARGET into $LOGS/TARGET.log and
# writes libFuzzer's exit status to $LOGS/TARGET.rc.
fuzz_one() {
  local t=$1 dict maxlen args rc
  dict=dict/$t.dict
  [ -f "$dict" ] || dict=corpus/dict/$t.dict
  # Inputs up to 4 KiB (seed.py shrinks its seeds to fit); configs up to 16 KiB,
  # the size of the larger examples.
  maxlen=4096
  [ "$t" = config ] && maxlen=16384
  args=(-max_total_time="$SECONDS_PER_TARGET" -max_len="$maxlen" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  [ -f "$dict" ] && args+=(-dict="$dict")
  if [ -n "${RELAY_FUZZ_RUNS:-}" ]; then args+=(-runs="$RELAY_FUZZ_RUNS"); fi
  if [ "${RELAY_FUZZ_JOBS:-0}" -gt 0 ]; then args+=(-fork="$RELAY_FUZZ_JOBS"); fi
  mkdir -p "corpus/$t" "artifacts/$t"
  set +e
  cargo fuzz run --sanitizer none --target-dir "$TARGET_DIR" "$t" "corpus/$t" -- "${args[@]}" >"$LOGS/$t.log" 2>&1
  rc=$?
  set -e
  echo "$rc" >"$LOGS/$t.rc"
}

# libFuzzer runs one process per target (one core): run as many targets at a time as
# there are cores (RELAY_FUZZ_PARALLEL), each still for SECONDS_PER_TARGET.
# With -fork (RELAY_FUZZ_JOBS) each target already takes several cores: one at a time.
if [ "${RELAY_FUZZ_JOBS:-0}" -gt 0 ]; then parallel=1; else parallel=$(nproc 2>/dev/null || echo 1); fi
parallel=${RELAY_FUZZ_PARALLEL:-$parallel}
case $parallel in '' | *[!0-9]* | 0) parallel=1 ;; esac
for t in "${TARGETS[@]}"; do rm -f "$LOGS/$t.rc" "$LOGS/$t.log"; done
running=0
for t in "${TARGETS[@]}"; do
  if [ "$running" -ge "$parallel" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  echo "--- $t: ${SECONDS_PER_TARGET} s (log: $LOGS/$t.log)"
  fuzz_one "$t" &
  running=$((running + 1))
done
wait || true

failed=()
summary=()
for t in "${TARGETS[@]}"; do
  log=$LOGS/$t.log
  rc=$(cat "$LOGS/$t.rc" 2>/dev/null || true)
  [ -n "$rc" ] || rc="?"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  [ -n "$execs" ] || execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
  [ -n "$execs" ] || execs=$(grep -o '#[0-9]*' "$log" | tail -1 | tr -d '#')
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(find "corpus/$t" -type f | wc -l)
  line=$(printf '%-10s %12s execs %8s exec/s %6s corpus files  %s' "$t" "${execs:-?}" "${rate:-?}" "$corpus" \
    "$([ "$rc" = 0 ] && echo ok || echo "CRASH (exit $rc)")")
  echo "$line"
  summary+=("$line")
  if [ "$rc" != 0 ]; then
    failed+=("$t")
    echo "last lines of $log:"
    tail -40 "$log"
    ls -1 "artifacts/$t" | sed 's/^/  artifact: /'
  fi
done

echo
echo "fuzz summary (${SECONDS_PER_TARGET} s per target, ${parallel} at a time, total $((SECONDS - started)) s):"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
