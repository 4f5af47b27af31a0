#!/usr/bin/env bash
# Runs the bad-input table tests/bad_input.table (issue #15 item 7) in a scratch working directory
# of fixtures. Each row must give: exactly one line on stderr, containing the row's text (which
# names the option or file); the row's exit code; no signal (exit < 128); no new file anywhere in
# the working directory; every file there unchanged (md5) and /dev/null still a character device.
# Then the good twins of some rows: a deck with a 9000-character comment, and a deck read from a
# pipe and from a FIFO giving the same output as the file (h5same.py).
set -uo pipefail
: "${NTKHPC:?}" "${NTK_SOURCE_DIR:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
source "$NTK_SOURCE_DIR/tests/testlib.sh"
table=${1:-$NTK_SOURCE_DIR/tests/bad_input.table}

w="$tmp/w"
mkdir -p "$w" && cd "$w" || exit 1
S="-widths 16 -seeds 0 -etas 0.1 -steps 2 -n_train 20 -n_test 10 -quiet"
cp "$NTK_SOURCE_DIR/tests/small_sweep.in" deck.in
printf -- '-depth 2\n-widths 16\n-depth 3\n' >dup.in
printf -- '-Depth 2\n-depth 3\n' >dupcase.in
printf -- '-depth 2\n-wid\0ths 16\n' >nul.in
{ printf -- '-depth 2\n#'; head -c 9000 /dev/zero | tr '\0' x; printf '\nwidths 16\n'; } >longbad.in
{ printf -- '-depth 2\n#'; head -c 9000 /dev/zero | tr '\0' x; printf '\n-widths 16\n'; } >longcomment.in
printf -- '-log_view :missing/dir/log.txt\n' >logview.in
mkfifo fifo.h5
mkdir dir.h5 half.h5.partial
ln -s deck.in link.h5
LONG4100="long/$(head -c 4095 /dev/zero | tr '\0' a)"
LONG4090="long/$(head -c 4085 /dev/zero | tr '\0' a)"
# A tiny MNIST (IDX) directory, so that no row ever aims at the system's data.
be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }
mkdir data
for s in train:30 t10k:20; do
  n=${s#*:}
  { be32 2051; be32 "$n"; be32 28; be32 28; head -c $((n * 784)) /dev/urandom; } >"data/${s%:*}-images-idx3-ubyte"
  { be32 2049; be32 "$n"; for ((i = 0; i < n; i++)); do printf "\\x0$((i % 10))"; done; } >"data/${s%:*}-labels-idx1-ubyte"
done
cp -r data datafifo && rm datafifo/train-images-idx3-ubyte && mkfifo datafifo/train-images-idx3-ubyte
cp -r data datadir && rm datadir/train-labels-idx1-ubyte && mkdir datadir/train-labels-idx1-ubyte
# A finished job: its output and checkpoints (another job's, for the rows that aim at them).
# shellcheck disable=SC2086
"$NTKHPC" deck.in $S -output prev.h5 -keep_checkpoints true >/dev/null 2>&1 </dev/null || { bad "the fixture job failed"; finish bad_input; exit 1; }

snapshot() { # every name in the working directory, and every regular file's md5
  find . -printf '%p %y\n' | sort
  find . -type f -exec md5sum {} + | sort -k2
  stat -c '%F' /dev/null
}
before=$(snapshot)
rows=0
while IFS= read -r line; do
  [[ -z $line || $line == \#* ]] && continue
  rows=$((rows + 1))
  IFS='|' read -r np code text args <<<"$line"
  [[ " $args " == *" -output "* ]] || args+=" -output out.h5"
  launch=("$MPIEXEC" -q --oversubscribe -n "$np")
  [[ $np -eq 1 ]] && launch=() # singleton MPI (also keeps a pipe deck's /dev/fd open for ntkhpc)
  # the arguments are bash words: $S, $(seq ...), <(printf ...) expand here
  eval "\"\${launch[@]}\" \"\$NTKHPC\" $args" >"$tmp/stdout" 2>"$tmp/stderr" </dev/null
  rc=$?
  lines=$(grep -c . "$tmp/stderr")
  after=$(snapshot)
  why=()
  ((rc == code)) || why+=("exit $rc, want $code")
  ((rc < 128)) || why+=("killed by signal $((rc - 128))")
  ((lines == 1)) || why+=("$lines lines on stderr")
  grep -qF -- "$text" "$tmp/stderr" || why+=("no '$text'")
  [[ $after == "$before" ]] || why+=("files changed: $(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | head -3 | tr '\n' ' ')")
  if ((${#why[@]} == 0)); then ok; else
    bad "row $rows (np $np: ${args:0:100}): ${why[*]}"
    sed 's/^/    /' "$tmp/stderr" | head -3 | cut -c1-300
    before=$after # one failure, not every later row too
  fi
done <"$table"
((rows >= 40)) && ok || bad "only $rows rows in $table"
echo "bad-input table: $rows rows"

# ---- the good twins, in a directory of their own
g="$tmp/good"
mkdir -p "$g" && cd "$g" || exit 1
cp "$w/deck.in" "$w/longcomment.in" .
# shellcheck disable=SC2086
check "a 9000-character comment line is a comment" "$NTKHPC" longcomment.in $S -output long.h5
# shellcheck disable=SC2086
"$NTKHPC" deck.in $S -output file.h5 >/dev/null 2>&1 </dev/null
# shellcheck disable=SC2086
check "a deck read from a pipe" "$NTKHPC" <(cat deck.in) $S -output pipe.h5
same() { "${NTK_PYTHON:-/usr/bin/python3}" "$NTK_SOURCE_DIR/tests/h5same.py" "$@" >/dev/null 2>&1; }
check "a deck from a pipe gives another output than the file" same file.h5 pipe.h5
mkfifo deck.fifo
cat deck.in >deck.fifo &
writer=$!
# shellcheck disable=SC2086
check "a deck read from a FIFO on 2 ranks" "$MPIEXEC" -q --oversubscribe -n 2 "$NTKHPC" deck.fifo $S -output fifo2.h5
wait "$writer"
# shellcheck disable=SC2086
"$MPIEXEC" -q --oversubscribe -n 2 "$NTKHPC" deck.in $S -output file2.h5 >/dev/null 2>&1 </dev/null
check "a deck from a FIFO gives another output than the file" same file2.h5 fifo2.h5
check "a finished job left <output>.partial behind" test ! -e file.h5.partial -a ! -e pipe.h5.partial
finish bad_input
