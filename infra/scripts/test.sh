#!/usr/bin/env bash
# The project's test command: `bash infra/scripts/test.sh` (CI runs it through .ci/run).
#
# Stages, in order: tools (a venv with the pinned tools of requirements-tools.txt, zig
# on PATH, the arm64 Rust target, rustfmt and clippy) -> fmt -> clippy -> moto (AWS
# emulator on a free loopback port) -> rust-tests -> doc-tests -> lambda-local (the
# functions under cargo lambda watch) -> fuzz (each cargo-fuzz target of fuzz/ for
# RELAY_FUZZ_SECONDS; see infra/scripts/fuzz.sh) -> sam-validate -> cfn-lint ->
# check-template -> lambda-build -> sam-build. A failing stage does not stop the later ones, except tools, which all of them need. The summary at the end
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
  printf '\n%-16s %-6s %9s\n' stage result seconds
  local i
  for i in "${!STAGES[@]}"; do
    printf '%-16s %-6s %9s\n' "${STAGES[i]}" "${RESULTS[i]}" "${TIMES[i]}"
  done
  printf 'logs: %s\n' "$LOGS"
  printf 'disk: %s free, target/ %s\n' "$(df -h --output=avail "$LOGS" 2>/dev/null | tail -n 1 | tr -d ' ')" \
    "$(du -sh "${CARGO_TARGET_DIR:-$REPO/target}" 2>/dev/null | cut -f1)"
  exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- stages -------------------------------------------------------------------

setup_tools() {
  if ! "$VENV/bin/python" -c '' 2>/dev/null; then
    rm -rf "$VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
  fi
  local stamp=$VENV/.requirements-tools.sha256 want
  want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "tools already installed as pinned in $REQUIREMENTS"
  else
    "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q -r "$REQUIREMENTS"
    echo "$want" >"$stamp"
  fi
  "$VENV/bin/python" -m pip freeze --disable-pip-version-check |
    grep -iE '^(moto|cargo-lambda|ziglang|aws-sam-cli|cfn-lint)=='

  # cargo-lambda looks for zig on PATH only.
  local zig
  zig=$("$VENV/bin/python" -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')
  mkdir -p "$TOOLS/bin"
  ln -sfn "$zig" "$TOOLS/bin/zig"
  echo "zig $(zig version)"

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

lambda_build() {
  local dir=${CARGO_TARGET_DIR:-target}/lambda
  rm -f "$dir/ingress/bootstrap" "$dir/worker/bootstrap" "$dir/reconciler/bootstrap"
  cargo lambda build --release --arm64 -p ingress -p worker -p reconciler
  local fn bin machine size
  for fn in ingress worker reconciler; do
    bin=$dir/$fn/bootstrap
    test -f "$bin" || { echo "$bin was not produced"; return 1; }
    machine=$(od -An -tu1 -j18 -N1 "$bin" | tr -d ' ')
    test "$machine" = 183 || { echo "$bin is not an aarch64 ELF (e_machine $machine)"; return 1; }
    size=$(stat -c %s "$bin")
    echo "$bin: $size bytes ($((size / 1024)) KiB), aarch64"
  done
}

# --- run ------------------------------------------------------------------------

run_stage tools setup_tools
if [ "$LAST_RC" -ne 0 ]; then
  echo "tools could not be set up; nothing else can run" >&2
  exit 1
fi

run_stage fmt cargo fmt --all -- --check
run_stage clippy cargo clippy --workspace --all-targets --all-features -- -D warnings

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
  # The template's own build (BuildMethod rust-cargolambda); reuses the build above.
  run_stage sam-build sam build --template template.yaml --build-dir target/sam-build
fi

for result in "${RESULTS[@]}"; do
  if [ "$result" = FAIL ]; then exit 1; fi
done
exit 0
