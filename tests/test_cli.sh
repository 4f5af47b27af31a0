#!/usr/bin/env bash
# Table-driven bad-input test: each malformed deck or option must give exactly one line on stderr
# naming the option or file, a non-zero exit code, and no output file (or an untouched one).
# Also: -help lists every option, and a good run leaves a readable file.
set -uo pipefail
: "${NTKHPC:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
deck="$NTK_SOURCE_DIR/tests/small_sweep.in"
base=(-widths 16 -seeds 0 -params ntk -etas 0.1 -steps 2 -n_train 50 -n_test 20 -quiet)

printf -- '-widths 16\nwidths 32\n' >"$tmp/badline.in"
printf -- '# only a comment\n-depth 2 # trailing\n' >"$tmp/comment.in"

# np | expected exit | expected text on stderr | arguments after ntkhpc
cases=(
  "1|2|deck $tmp/missing.in: cannot open|$tmp/missing.in"
  "1|2|deck $tmp/badline.in line 2: expected '-key value'|$tmp/badline.in"
  "1|2|option -widthz: unknown option|$deck -widthz 5"
  "1|2|option -depth: expected an integer, got 'abc'|$deck -depth abc"
  "1|2|option -depth: 0 is outside|$deck -depth 0"
  "1|2|option -widths: width 0 must be a positive integer|$deck -widths 0"
  "1|2|option -etas: learning rate -1 must be positive|$deck -etas -1"
  "1|2|option -etas: expected a comma-separated list|$deck -etas fast"
  "1|2|option -activation: unknown value 'sigmoid'|$deck -activation sigmoid"
  "1|2|option -params: unknown parameterization 'foo'|$deck -params ntk,foo"
  "1|2|option -params: 'ntk' is listed twice|$deck -params ntk,ntk"
  "1|2|option -sigma_w: -1 is outside|$deck -sigma_w -1"
  "1|2|option -optimizer: unknown value 'adam'|$deck -optimizer adam"
  "1|2|option -batch_size: only used with -optimizer sgd|$deck -batch_size 10"
  "1|2|option -batch_size: 5000 exceeds -n_train|$deck -optimizer sgd -batch_size 5000 -n_train 100"
  "1|2|option -momentum: 1.5 is outside|$deck -momentum 1.5"
  "1|2|option -bias: expected true or false, got 'maybe'|$deck -bias maybe"
  "1|2|option -record_every: 0 is outside|$deck -record_every 0"
  "1|2|option -lr_step_every/-lr_step_gamma: only used with -lr_schedule step|$deck -lr_step_gamma 0.5"
  "1|2|option -teacher_*: only used with -dataset teacher|$deck -teacher_dim 5"
  "1|2|option -data_dir: required for -dataset mnist|$deck -dataset mnist"
  "1|2|$tmp/nowhere|$deck -dataset mnist -data_dir $tmp/nowhere"
  "1|2|n_train|$deck -n_train 100000"
  "2|2|option -ranks_per_run: 3 exceeds the 2 MPI ranks|$deck -ranks_per_run 3"
  "1|2|$tmp/nodir/out.h5|$deck ${base[*]} -output $tmp/nodir/out.h5"
  "2|2|option -steps: expected an integer, got '1e3'|$deck -steps 1e3"
)

for c in "${cases[@]}"; do
  IFS='|' read -r np code text args <<<"$c"
  rm -f "$tmp/out.h5"
  # shellcheck disable=SC2086
  launch=("$MPIEXEC" -q --oversubscribe -n "$np")
  [[ $np -eq 1 ]] && launch=() # singleton MPI: also covers running without mpirun
  "${launch[@]}" "$NTKHPC" $args $( [[ "$args" == *"-output "* ]] || echo "-output $tmp/out.h5" ) \
    >"$tmp/stdout" 2>"$tmp/stderr" </dev/null
  rc=$?
  lines=$(grep -c . "$tmp/stderr")
  if [[ $rc -eq $code ]] && grep -qF -- "$text" "$tmp/stderr" && [[ $lines -eq 1 ]] && [[ ! -e "$tmp/out.h5" ]]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL: ntkhpc $args -> exit $rc (want $code), $lines stderr lines, want '$text':"
    sed 's/^/    /' "$tmp/stderr" | head -5
  fi
done

# A good run, then the same output again without -overwrite: refused, file untouched.
if "$MPIEXEC" -q -n 1 "$NTKHPC" "$deck" "${base[@]}" -output "$tmp/good.h5" >"$tmp/stdout" 2>"$tmp/stderr"; then
  passed=$((passed + 1))
  sum=$(md5sum <"$tmp/good.h5")
  "$MPIEXEC" -q -n 1 "$NTKHPC" "$deck" "${base[@]}" -output "$tmp/good.h5" >"$tmp/stdout" 2>"$tmp/stderr"
  rc=$?
  if [[ $rc -eq 2 ]] && grep -qF "$tmp/good.h5" "$tmp/stderr" && grep -q "exists" "$tmp/stderr" &&
     [[ $(grep -c . "$tmp/stderr") -eq 1 ]] && [[ "$(md5sum <"$tmp/good.h5")" == "$sum" ]]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); echo "FAIL: existing output not refused cleanly (exit $rc):"; cat "$tmp/stderr"
  fi
  if "$MPIEXEC" -q -n 1 "$NTKHPC" "$deck" "${base[@]}" -output "$tmp/good.h5" -overwrite >"$tmp/stdout" 2>"$tmp/stderr"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); echo "FAIL: -overwrite did not replace the file:"; cat "$tmp/stderr"
  fi
else
  failed=$((failed + 1)); echo "FAIL: a good deck failed:"; cat "$tmp/stderr"
fi

# Comments in decks are fine; -help lists every option that the effective deck records.
if "$MPIEXEC" -q -n 1 "$NTKHPC" "$tmp/comment.in" "${base[@]}" -output "$tmp/c.h5" >/dev/null 2>"$tmp/stderr"; then
  passed=$((passed + 1))
else
  failed=$((failed + 1)); echo "FAIL: a deck with comments was refused:"; cat "$tmp/stderr"
fi
"$MPIEXEC" -q -n 1 "$NTKHPC" "$deck" -help >"$tmp/help" 2>&1
rc=$?
[[ $rc -eq 0 ]] && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL: -help exit $rc"; }
keys=$("${NTK_PYTHON:-/usr/bin/python3}" -c "import h5py,sys; d=h5py.File(sys.argv[1],'r')['deck'][()]; d=d.decode() if isinstance(d,bytes) else d; print(' '.join(l.split()[0] for l in d.splitlines() if l.strip()))" "$tmp/good.h5")
nkeys=0
for k in $keys; do
  nkeys=$((nkeys + 1))
  if grep -qE -- "^ *$k[ <:]" "$tmp/help"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: -help does not list $k"; fi
done
[[ $nkeys -ge 30 ]] && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL: only $nkeys options in /deck"; }

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
