# Sourced by the test scripts: counted checks, one line each, and sections.
# Defines PASSED, FAILED, FAILURES and section/ok/fail; the script prints its own summary.

PASSED=0
FAILED=0
FAILURES=()

section() { printf '\n==== %s ====\n' "$*"; }
ok() {
    echo "ok: $*"
    PASSED=$((PASSED + 1))
}
fail() {
    echo "FAIL: $*"
    FAILED=$((FAILED + 1))
    FAILURES+=("$*")
}
