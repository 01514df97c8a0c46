#!/usr/bin/env bash
# Builds cove and runs every test suite, installing what is missing first:
#   1. ctest: unit tests and privileged tests against the real kernel
#   2. tests/e2e: pytest against the real coved (Debian's /usr/bin/python3)
#   3. tests/conformance: Cloudflare's @cloudflare/sandbox client against coved
# Prints a summary; exits non-zero when the build or any suite fails.
# Environment: COVE_SKIP_DEPS=1 skips the install step; COVE_PYTEST_ARGS adds
# pytest arguments (e.g. "-m 'not slow'").
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${COVE_SKIP_DEPS:-0}" != 1 ]; then
  scripts/install-deps.sh || { echo "test.sh: installing dependencies failed" >&2; exit 1; }
fi

summary=()
failed=0
run() {  # run NAME COMMAND...
  local name=$1 start rc
  shift
  echo
  echo "=== $name: $*"
  start=$(date +%s)
  "$@"
  rc=$?
  if [ $rc -eq 0 ]; then
    summary+=("PASS  $name ($(( $(date +%s) - start ))s)")
  else
    summary+=("FAIL  $name (exit $rc, $(( $(date +%s) - start ))s)")
    failed=1
  fi
  return $rc
}

if run build bash -c 'cmake -S . -B build -G Ninja >/dev/null && ninja -C build'; then
  run ctest ctest --test-dir build --output-on-failure --timeout 600
  # shellcheck disable=SC2086
  run e2e /usr/bin/python3 -m pytest tests/e2e -p timeout --timeout 600 ${COVE_PYTEST_ARGS:-}
  run conformance bash -c 'cd tests/conformance && npm test'
fi

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
exit $failed
