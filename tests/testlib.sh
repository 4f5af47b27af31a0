# What the shell tests share (source it after checking NTK_SOURCE_DIR): a temporary directory $tmp
# removed at exit, and counting of checks.
#   ok                      one check passed
#   bad WHAT                one failed: prints "FAIL: WHAT"
#   check WHAT CMD [ARG..]  ok if CMD succeeds, else bad WHAT
#   finish [NAME]           prints "[NAME: ]N passed, M failed" and returns 1 if any failed
#   dump_run NP OUT [OPT..] runs $NTK_FEATURES_BIN (ntkhpc + a measurement recording theta_t and the
#                           probe batch, tests/test_features_dump.c) on NP ranks, log in $tmp/log
#   py_check SCRIPT FILE..  runs a numpy checker on outputs: ok or bad, its summary indented, the
#                           first of its FAIL lines shown
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
check() { local what=$1; shift; if "$@"; then ok; else bad "$what"; fi; }
finish() { echo "${1:+$1: }$passed passed, $failed failed"; ((failed == 0)); }
dump_run() {
  local np=$1 out=$2; shift 2
  "${NTK_MPIEXEC:-mpiexec}" -q --oversubscribe -n "$np" "$NTK_FEATURES_BIN" -quiet -output "$out" "$@" >>"$tmp/log" 2>&1
}
py_check() {
  local script=$1; shift
  if "$NTK_PYTHON" "$NTK_SOURCE_DIR/tests/$script" "$@" >"$tmp/check.log" 2>&1; then ok; else bad "$script $*"; fi
  grep -v '^FAIL' "$tmp/check.log" | sed 's/^/    /'
  grep '^FAIL' "$tmp/check.log" | head -8
}
