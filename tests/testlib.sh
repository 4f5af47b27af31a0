# What the shell tests share (source it after checking NTK_SOURCE_DIR): a temporary directory $tmp
# removed at exit, and counting of checks.
#   ok                      one check passed
#   bad WHAT                one failed: prints "FAIL: WHAT"
#   check WHAT CMD [ARG..]  ok if CMD succeeds, else bad WHAT
#   finish [NAME]           prints "[NAME: ]N passed, M failed" and returns 1 if any failed
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
check() { local what=$1; shift; if "$@"; then ok; else bad "$what"; fi; }
finish() { echo "${1:+$1: }$passed passed, $failed failed"; ((failed == 0)); }
