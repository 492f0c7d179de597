#!/usr/bin/env bash
# The reliability suite as CI runs it (.ci/run calls it after the unit tests):
# builds the images, then runs every scenario of integration/ three times in
# a row against the docker-compose stack and prints
#   integration: N passed, M failed
#
# Without Docker (or compose) it skips with a message, except under CI=true,
# where that is a failure. OUTBOX_IT_ROUNDS changes the number of rounds;
# extra arguments go to `go test` (e.g. -run TestDiskQuota).
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"
rounds="${OUTBOX_IT_ROUNDS:-3}"
scenarios=$(grep -c "^func Test.*testing\.T)" integration/scenarios_test.go)

missing=""
if ! command -v docker >/dev/null 2>&1; then
  missing="docker is not installed"
elif ! docker info >/dev/null 2>&1; then
  missing="the docker daemon does not answer (docker info failed)"
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1 && docker-compose version >/dev/null 2>&1; then
  compose=(docker-compose)
else
  missing="neither 'docker compose' nor 'docker-compose' is installed"
fi
if [ -n "$missing" ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "integration: FAILED: CI=true and $missing"
    echo "integration: 0 passed, 1 failed"
    exit 1
  fi
  echo "integration: SKIPPED: $missing; the unit tests (go test ./...) do not need it"
  echo "integration: 0 passed, 0 failed, $((scenarios * rounds)) skipped"
  exit 0
fi

# Whatever happens, leave no container, network or volume of the suite behind.
cleanup() { "${compose[@]}" -f docker-compose.yml -p outboxit down -v --remove-orphans -t 3 >/dev/null 2>&1 || true; }
trap cleanup EXIT INT TERM

start=$(date +%s)
echo "== make images"
if ! make images; then
  echo "integration: 0 passed, 1 failed"
  exit 1
fi

log=$(mktemp)
results=$(mktemp)
echo "== go test -tags integration -count=$rounds -v ./integration/ (${compose[*]})"
OUTBOX_IT_RESULTS="$results" go test -tags integration -count="$rounds" -v -timeout 45m ./integration/ "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

passed=$(grep -cE '^--- PASS: Test' "$log")
failed=$(grep -cE '^--- FAIL: Test' "$log")
skipped=$(grep -cE '^--- SKIP: Test' "$log")
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1 # the run broke outside a test (build error, panic, timeout)
fi
echo "== figures of the passing runs"
sed 's/^FIGURES //' "$results"
echo "== integration suite took $(( $(date +%s) - start ))s"
echo "integration: ${passed} passed, ${failed} failed, ${skipped} skipped"
rm -f "$log" "$results"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
