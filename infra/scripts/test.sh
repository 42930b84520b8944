#!/usr/bin/env bash
# The project's test command: `bash infra/scripts/test.sh` (CI runs it through .ci/run).
#
# Stages, in order: rust-tools (the arm64 Rust target, rustfmt and clippy; the venv with
# the pinned Python tools of requirements-tools.txt installs meanwhile in the background)
# -> fmt -> structure (the core's module graph has no cycle) -> clippy -> python-tools
# (waits for the venv, zig on PATH) -> browser (waits for Debian's chromium, installed
# meanwhile for the console's browser test) -> moto (AWS emulator on a free loopback port) -> rust-tests -> doc-tests -> lambda-local (the
# functions under cargo lambda watch) -> fuzz (each cargo-fuzz target of fuzz/ for
# RELAY_FUZZ_SECONDS; see infra/scripts/fuzz.sh) -> sam-validate -> cfn-lint ->
# check-template -> lambda-build -> sam-build. A failing stage does not stop the later
# ones, except the tools stages, which all of them need. The summary at the end
# lists every stage; the exit status is non-zero if any failed. Stage output is kept
# in target/test-logs/.
#
# Environment:
#   RELAY_TOOLS_DIR          venv and bin/ for the tools (default: $REPO/.tools)
#   RELAY_SKIP_LAMBDA_BUILD  1 skips the arm64 Lambda and sam builds (ignored when CI=true)
#   RELAY_FIXTURES_DIR       passed on to the tests if set (they default to ../shared/fixtures)
#   RELAY_FUZZ_SECONDS       seconds per fuzz target (default 60; 0 skips the stage,
#                            ignored when CI=true)
#   PYTHON                   interpreter that creates the venv (default: python3, 3.9+)
set -euo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
cd "$REPO"
TOOLS=${RELAY_TOOLS_DIR:-$REPO/.tools}
VENV=$TOOLS/venv
REQUIREMENTS=$REPO/infra/scripts/requirements-tools.txt
LOGS=$REPO/target/test-logs
mkdir -p "$LOGS"
export PATH="$TOOLS/bin:$VENV/bin:$PATH"

# Hermetic AWS environment: dummy credentials, no profile files, no configured
# endpoint. Tests get the emulator's address as RELAY_TEST_AWS_ENDPOINT and set it on
# their clients themselves (some point clients at dead ports on purpose).
# shellcheck disable=SC2046 # one word per variable name is intended
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL $(compgen -e | grep '^AWS_ENDPOINT_URL_' || true)
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=$TOOLS/no-aws-config AWS_SHARED_CREDENTIALS_FILE=$TOOLS/no-aws-credentials
export SAM_CLI_TELEMETRY=0
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
if [ -n "${RELAY_FIXTURES_DIR:-}" ]; then export RELAY_FIXTURES_DIR; fi

# --- stage bookkeeping --------------------------------------------------------

STAGES=() RESULTS=() TIMES=()
PY_TOOLS_PID=
LAST_RC=0
MOTO_PID=

now_us() {
  local t=${EPOCHREALTIME:-}
  if [ -n "$t" ]; then echo "${t//[!0-9]/}"; else echo $((SECONDS * 1000000)); fi
}

# record NAME RESULT START_US
record() {
  local us=$(($(now_us) - $3))
  STAGES+=("$1") RESULTS+=("$2") TIMES+=("$(printf '%d.%d' $((us / 1000000)) $((us / 100000 % 10)))")
  printf '<== %s: %s (%s s)\n' "$1" "$2" "${TIMES[-1]}"
}

# run_stage NAME CMD...: runs CMD in a subshell with errexit in force (a function called
# from `if` would run with errexit off), tees its output to $LOGS/NAME.log, sets LAST_RC.
run_stage() {
  local name=$1 start
  shift
  printf '\n==> %s\n' "$name"
  start=$(now_us)
  set +e
  (
    set -e
    "$@"
  ) 2>&1 | tee "$LOGS/$name.log"
  LAST_RC=${PIPESTATUS[0]}
  set -e
  if [ "$LAST_RC" -eq 0 ]; then record "$name" pass "$start"; else record "$name" FAIL "$start"; fi
}

skip_stage() {
  printf '\n==> %s\nskipped: %s\n' "$1" "$2"
  record "$1" skip "$(now_us)"
}

fail_stage() {
  printf '\n==> %s\nnot run: %s\n' "$1" "$2"
  record "$1" FAIL "$(now_us)"
}

stop_moto() {
  [ -n "$MOTO_PID" ] || return 0
  kill "$MOTO_PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$MOTO_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$MOTO_PID" 2>/dev/null || true
  wait "$MOTO_PID" 2>/dev/null || true
  MOTO_PID=
}

on_exit() {
  local status=$?
  stop_moto
  if [ -n "$PY_TOOLS_PID" ]; then kill "$PY_TOOLS_PID" 2>/dev/null || true; fi
  printf '\n%-16s %-6s %9s\n' stage result seconds
  local i
  for i in "${!STAGES[@]}"; do
    printf '%-16s %-6s %9s\n' "${STAGES[i]}" "${RESULTS[i]}" "${TIMES[i]}"
  done
  local us=$(($(now_us) - RUN_START))
  printf '%-16s %-6s %9s\n' total '' "$((us / 1000000))"
  printf 'logs: %s\n' "$LOGS"
  printf 'disk: %s free, target/ %s\n' "$(df -h --output=avail "$LOGS" 2>/dev/null | tail -n 1 | tr -d ' ')" \
    "$(du -sh "${CARGO_TARGET_DIR:-$REPO/target}" 2>/dev/null | cut -f1)"
  exit "$status"
}
RUN_START=$(now_us)
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- stages -------------------------------------------------------------------

# The Python tools (moto, cargo-lambda, zig, SAM CLI, cfn-lint) install in the background
# while fmt, the module graph and clippy run: a download and unpack against a compile.
start_python_tools() {
  rm -f "$LOGS/python-tools.rc"
  (
    set +e
    (
      set -e
      if ! "$VENV/bin/python" -c '' 2>/dev/null; then
        rm -rf "$VENV"
        "${PYTHON:-python3}" -m venv "$VENV"
      fi
      stamp=$VENV/.requirements-tools.sha256
      want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
      if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        echo "tools already installed as pinned in $REQUIREMENTS"
      else
        "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q -r "$REQUIREMENTS"
        echo "$want" >"$stamp"
      fi
    )
    echo $? >"$LOGS/python-tools.rc"
  ) >"$LOGS/python-tools-install.log" 2>&1 &
  PY_TOOLS_PID=$!
  echo "installing the Python tools in the background (pid $PY_TOOLS_PID, log $LOGS/python-tools-install.log)"
}

# Debian's chromium and chromium-driver for the console's browser test, and pebble for
# the ACME test, install in the background too (as root with apt-get; elsewhere those
# tests skip loudly, and fail under CI=true).
start_browser() {
  rm -f "$LOGS/browser.rc"
  (
    set +e
    if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/pebble ]; then
      echo "chromium, chromedriver and pebble already installed"
    elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      # pebble: Let's Encrypt's ACME test server, for the listener's ACME test.
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver pebble
    else
      echo "not root or no apt-get: chromium is not installed; the console browser test will say it skipped"
    fi
    echo $? >"$LOGS/browser.rc"
  ) >"$LOGS/browser-install.log" 2>&1 &
  BROWSER_PID=$!
  echo "installing the browser in the background (pid $BROWSER_PID, log $LOGS/browser-install.log)"
}

finish_browser() {
  while [ ! -s "$LOGS/browser.rc" ]; do
    if ! kill -0 "$BROWSER_PID" 2>/dev/null; then
      sleep 0.5
      [ -s "$LOGS/browser.rc" ] || { echo "the browser install ended without a status"; return 1; }
    fi
    sleep 0.5
  done
  tail -n 5 "$LOGS/browser-install.log"
  test "$(cat "$LOGS/browser.rc")" -eq 0 || { echo "installing chromium failed"; return 1; }
  if [ -x /usr/bin/chromium ]; then
    /usr/bin/chromium --version 2>/dev/null | head -n 1
    /usr/bin/chromedriver --version | head -n 1
  fi
}

# Runs in run_stage's subshell, which cannot `wait` for the main shell's job: the job
# writes its exit status to a file when it ends.
finish_python_tools() {
  local rc
  while [ ! -s "$LOGS/python-tools.rc" ]; do
    if ! kill -0 "$PY_TOOLS_PID" 2>/dev/null; then
      sleep 0.5 # the status file is written just before the job ends
      [ -s "$LOGS/python-tools.rc" ] || { echo "the Python tools install ended without a status"; return 1; }
    fi
    sleep 0.5
  done
  rc=$(cat "$LOGS/python-tools.rc")
  cat "$LOGS/python-tools-install.log"
  test "$rc" -eq 0 || { echo "installing the Python tools failed (exit $rc)"; return 1; }
  "$VENV/bin/python" -m pip freeze --disable-pip-version-check |
    grep -iE '^(moto|cargo-lambda|ziglang|aws-sam-cli|cfn-lint)=='
  # cargo-lambda looks for zig on PATH only.
  local zig
  zig=$("$VENV/bin/python" -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')
  mkdir -p "$TOOLS/bin"
  ln -sfn "$zig" "$TOOLS/bin/zig"
  echo "zig $(zig version)"
}

setup_rust_tools() {
  rustup target add aarch64-unknown-linux-gnu
  rustup component add rustfmt clippy
  cargo --version
}

start_moto() {
  local start
  printf '\n==> moto\n'
  start=$(now_us)
  local port
  port=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$LOGS/moto.log" 2>&1 &
  MOTO_PID=$!
  if "$VENV/bin/python" - "$port" "$MOTO_PID" <<'EOF'; then
import os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("moto_server exited; see target/test-logs/moto.log")
    try:
        opener.open(f"http://127.0.0.1:{port}/moto-api/", timeout=2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit("moto_server did not answer within 30 s; see target/test-logs/moto.log")
EOF
    export RELAY_TEST_AWS_ENDPOINT=http://127.0.0.1:$port
    echo "moto_server (pid $MOTO_PID) at $RELAY_TEST_AWS_ENDPOINT"
    record moto pass "$start"
  else
    stop_moto
    record moto FAIL "$start"
  fi
}

check_template() {
  "$VENV/bin/python" infra/scripts/check_template.py --self-test
  "$VENV/bin/python" infra/scripts/check_template.py template.yaml
}

# The arm64 Lambda builds, made exactly as `sam build` makes them for BuildMethod
# rust-cargolambda (aws_lambda_builders' rust_cargo workflow): per function of
# template.yaml, `cargo lambda build --release --arm64 --bin <Binary>` in its CodeUri,
# with CARGO_TARGET_DIR set to cargo's target directory unless already set. Features
# are resolved per command as for SAM (one `cargo lambda build -p ingress -p worker
# -p reconciler` would unify them across the three, and SAM would then compile
# everything again). Records each bootstrap's sha256 for the sam-build stage.
LAMBDA_BUILT=$LOGS/lambda-build.sha256
# Each bootstrap's size budget in bytes (issue #20: 6 MB each): a function that grows past
# it fails the stage, so a dependency added to the functions is weighed when it is added.
BOOTSTRAP_BUDGET=6000000

lambda_build() {
  rm -f "$LAMBDA_BUILT"
  local functions line fn bin codeuri target_dir bin_path machine size over=0 bins=() codeuris=()
  functions=$("$VENV/bin/python" infra/scripts/check_template.py --cargo-lambda-functions template.yaml)
  test -n "$functions" || { echo "template.yaml has no rust-cargolambda function"; return 1; }
  mapfile -t functions <<<"$functions"
  for line in "${functions[@]}"; do
    read -r fn bin codeuri <<<"$line"
    bins+=(--bin "$bin")
    codeuris+=("$codeuri")
  done
  # SAM runs `cargo lambda build --release --arm64 --bin <Binary>` once per function in
  # its CodeUri; with one CodeUri for all (the workspace root) the features resolve the
  # same way for each, so one build of every binary is the same build (sam-build checks
  # that it compiles nothing) and lets the three final LTO links run side by side.
  codeuri=${codeuris[0]}
  for line in "${codeuris[@]}"; do
    test "$line" = "$codeuri" || { echo "functions with different CodeUri ($codeuri, $line): build each on its own"; return 1; }
  done
  target_dir=${CARGO_TARGET_DIR:-}
  if [ -z "$target_dir" ]; then
    target_dir=$(cd "$codeuri" && cargo metadata --no-deps --format-version 1 |
      "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  fi
  echo "--- cargo lambda build --release --arm64 ${bins[*]} (in $codeuri)"
  if [ -n "${RUSTFLAGS:-}${CARGO_ENCODED_RUSTFLAGS:-}" ]; then
    echo "note: RUSTFLAGS/CARGO_ENCODED_RUSTFLAGS is set and replaces the Lambda build's flags"
    echo "      in .cargo/config.toml (opt-level z): the bootstraps will be larger"
  fi
  for line in "${functions[@]}"; do
    read -r fn bin codeuri <<<"$line"
    rm -f "$target_dir/lambda/$bin/bootstrap"
  done
  (cd "$codeuri" && CARGO_TARGET_DIR=$target_dir cargo lambda build --release --arm64 "${bins[@]}")
  : >"$LAMBDA_BUILT.tmp"
  for line in "${functions[@]}"; do
    read -r fn bin codeuri <<<"$line"
    bin_path=$target_dir/lambda/$bin/bootstrap
    test -f "$bin_path" || { echo "$bin_path was not produced"; return 1; }
    machine=$(od -An -tu1 -j18 -N1 "$bin_path" | tr -d ' ')
    test "$machine" = 183 || { echo "$bin_path is not an aarch64 ELF (e_machine $machine)"; return 1; }
    size=$(stat -c %s "$bin_path")
    echo "$fn: $bin_path: $size bytes ($((size / 1024)) KiB), aarch64"
    if [ "$size" -gt "$BOOTSTRAP_BUDGET" ]; then
      echo "$fn: the bootstrap is over its budget of $BOOTSTRAP_BUDGET bytes by $((size - BOOTSTRAP_BUDGET))"
      echo "(BENCHMARKS.md, \"Lambda package\": what is in it and what was done to keep it small)"
      if [ -n "${RUSTFLAGS:-}${CARGO_ENCODED_RUSTFLAGS:-}" ]; then
        echo "(RUSTFLAGS/CARGO_ENCODED_RUSTFLAGS is set: .cargo/config.toml's flags were not used)"
      fi
      over=1
    fi
    printf '%s %s %s\n' "$(sha256sum "$bin_path" | cut -d' ' -f1)" "$fn" "$target_dir" >>"$LAMBDA_BUILT.tmp"
  done
  mv "$LAMBDA_BUILT.tmp" "$LAMBDA_BUILT" # its time stamp: when the last build finished
  return "$over"
}

# The template's own build. After lambda-build, cargo has nothing left to compile: each
# function's bootstrap must be the binary lambda-build produced and checked (same
# sha256), and no compiler output (deps/) may be newer than lambda-build's record.
# --no-cached: samconfig.toml's `cached = true` makes SAM hash the whole CodeUri (the
# repository, target/ included) once per function before building, and a cache hit
# would copy an earlier build instead of running the template's build at all.
sam_build() {
  test -s "$LAMBDA_BUILT" || { echo "no lambda-build artifacts to compare with ($LAMBDA_BUILT)"; return 1; }
  rm -rf target/sam-build
  sam build --no-cached --template template.yaml --build-dir target/sam-build
  local want fn target_dir deps= got compiled bad=0
  while read -r want fn target_dir; do
    deps=$target_dir/aarch64-unknown-linux-gnu/release/deps
    got=$(sha256sum "target/sam-build/$fn/bootstrap" | cut -d' ' -f1) || { bad=1; continue; }
    if [ "$got" != "$want" ]; then
      echo "target/sam-build/$fn/bootstrap: sha256 $got, lambda-build made $want"
      bad=1
    else
      echo "target/sam-build/$fn/bootstrap: sha256 $got, the lambda-build binary"
    fi
  done <"$LAMBDA_BUILT"
  test -d "$deps" || { echo "no compiler output in $deps"; return 1; }
  compiled=$(find "$deps" -type f -newer "$LAMBDA_BUILT" | wc -l)
  if [ "$compiled" -ne 0 ]; then
    echo "sam build compiled again ($compiled new files in $deps):"
    echo "its builds differ from lambda-build's"
    bad=1
  else
    echo "sam build compiled nothing: it reused lambda-build"
  fi
  return "$bad"
}

# --- run ------------------------------------------------------------------------

start_python_tools
start_browser
run_stage rust-tools setup_rust_tools
if [ "$LAST_RC" -ne 0 ]; then
  echo "the Rust toolchain could not be set up; nothing else can run" >&2
  exit 1
fi

run_stage fmt cargo fmt --all -- --check
# The core's module graph: no import cycle (infra/scripts/module_graph.py --edges shows it).
run_stage structure python3 infra/scripts/module_graph.py
run_stage clippy cargo clippy --workspace --all-targets --all-features -- -D warnings
run_stage python-tools finish_python_tools
if [ "$LAST_RC" -ne 0 ]; then
  echo "the Python tools could not be set up; nothing else can run" >&2
  exit 1
fi

run_stage browser finish_browser

echo
echo "fixtures: ${RELAY_FIXTURES_DIR:-default (../shared/fixtures from the repo root)}"
start_moto
if [ -z "$MOTO_PID" ]; then
  fail_stage rust-tests "moto is not running"
elif cargo nextest --version >/dev/null 2>&1; then
  run_stage rust-tests cargo nextest run --workspace --all-features --no-fail-fast
  # nextest does not run doc tests.
  run_stage doc-tests cargo test --doc --workspace --all-features
else
  run_stage rust-tests cargo test --workspace --all-features --no-fail-fast
fi
if [ -n "$MOTO_PID" ]; then
  # The functions under `cargo lambda watch` (the Lambda Runtime API and
  # function URLs, no Docker): ingress → moto SQS → worker → ServiceNow sandbox,
  # then the reconciler (moto SSM watermarks).
  run_stage lambda-local "$VENV/bin/python" infra/scripts/lambda_local.py
fi
stop_moto # frees memory before the release build

if [ "${RELAY_FUZZ_SECONDS:-60}" = 0 ] && [ "${CI:-}" != true ]; then
  skip_stage fuzz "RELAY_FUZZ_SECONDS=0"
else
  if [ "${RELAY_FUZZ_SECONDS:-60}" = 0 ]; then export RELAY_FUZZ_SECONDS=60; fi
  run_stage fuzz env RELAY_TOOLS_DIR="$TOOLS" bash infra/scripts/fuzz.sh
fi

run_stage sam-validate sam validate --lint --template template.yaml
run_stage cfn-lint cfn-lint template.yaml
run_stage check-template check_template

if [ "${RELAY_SKIP_LAMBDA_BUILD:-}" = 1 ] && [ "${CI:-}" != true ]; then
  skip_stage lambda-build "RELAY_SKIP_LAMBDA_BUILD=1"
  skip_stage sam-build "RELAY_SKIP_LAMBDA_BUILD=1"
else
  run_stage lambda-build lambda_build
  run_stage sam-build sam_build
fi

for result in "${RESULTS[@]}"; do
  if [ "$result" = FAIL ]; then exit 1; fi
done
exit 0
