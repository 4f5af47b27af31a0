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
printf -- '-depth 2\n- depth 3\n' >"$tmp/dashspace.in"
printf -- '-depth 2\n-5\n' >"$tmp/dashdigit.in"
: >"$tmp/empty.in"
mkdir -p "$tmp/deckdir.in"
small=(-widths 16 -seeds 0 -etas 0.1 -steps 2 -n_train 20 -n_test 10 -quiet)

# ---- data fixtures, made here: tiny MNIST (IDX, raw) and CIFAR-10 directories
be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }
idx_images() { # file n rows cols [pixel-bytes]
  { be32 2051; be32 "$2"; be32 "$3"; be32 "$4"; head -c "${5:-$(($2 * $3 * $4))}" /dev/urandom; } >"$1"
}
idx_labels() { # file n [label-of-the-last-sample]
  { be32 2049; be32 "$2"; for ((i = 0; i < $2 - 1; i++)); do printf "\\x0$((i % 10))"; done
    printf "\\x$(printf %02x "${3:-1}")"; } >"$1"
}
mnist() { # dir: a valid 30 train / 20 test set
  mkdir -p "$1"
  idx_images "$1/train-images-idx3-ubyte" 30 28 28; idx_labels "$1/train-labels-idx1-ubyte" 30
  idx_images "$1/t10k-images-idx3-ubyte" 20 28 28; idx_labels "$1/t10k-labels-idx1-ubyte" 20
}
cifar_batch() { # file records [label-of-the-last-record]
  for ((i = 0; i < $2; i++)); do
    if ((i == $2 - 1)); then printf "\\x$(printf %02x "${3:-1}")"; else printf "\\x0$((i % 10))"; fi
    head -c 3072 /dev/urandom
  done >"$1"
}
cifar() { # dir: 5 train batches of 6 records, a test batch of 10
  mkdir -p "$1"
  for b in 1 2 3 4 5; do cifar_batch "$1/data_batch_$b.bin" 6; done
  cifar_batch "$1/test_batch.bin" 10
}
mdir="$tmp/mnist"; cdir="$tmp/cifar"
mnist "$mdir/ok"; cifar "$cdir/ok"
mnist "$mdir/trunc"; idx_images "$mdir/trunc/train-images-idx3-ubyte" 30 28 28 1000
mnist "$mdir/badgz"; rm "$mdir/badgz/train-images-idx3-ubyte"
{ printf '\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03'; head -c 2000 /dev/urandom; } >"$mdir/badgz/train-images-idx3-ubyte.gz"
mnist "$mdir/cutgz"; gzip -c "$mdir/cutgz/train-images-idx3-ubyte" | head -c 4000 >"$mdir/cutgz/train-images-idx3-ubyte.gz"
rm "$mdir/cutgz/train-images-idx3-ubyte"
mnist "$mdir/magic"; cp "$mdir/magic/train-labels-idx1-ubyte" "$mdir/magic/train-images-idx3-ubyte"
mnist "$mdir/count"; idx_labels "$mdir/count/train-labels-idx1-ubyte" 31
mnist "$mdir/label"; idx_labels "$mdir/label/t10k-labels-idx1-ubyte" 20 12
mnist "$mdir/nolabels"; rm "$mdir/nolabels/train-labels-idx1-ubyte"
mnist "$mdir/empty"; : >"$mdir/empty/t10k-images-idx3-ubyte"
mnist "$mdir/shape"; idx_images "$mdir/shape/train-images-idx3-ubyte" 30 27 27
mnist "$mdir/zero"; { be32 2051; be32 0; be32 28; be32 28; } >"$mdir/zero/train-images-idx3-ubyte"
mnist "$mdir/huge"; { be32 2051; be32 30; be32 65536; be32 65536; } >"$mdir/huge/train-images-idx3-ubyte"
cifar "$cdir/size"; head -c 10000 /dev/urandom >"$cdir/size/data_batch_1.bin"
cifar "$cdir/nobatch"; rm "$cdir/nobatch/data_batch_3.bin"
cifar "$cdir/notest"; rm "$cdir/notest/test_batch.bin"
cifar "$cdir/label"; cifar_batch "$cdir/label/data_batch_2.bin" 6 10
cifar "$cdir/empty"; : >"$cdir/empty/test_batch.bin"
mn=(-dataset mnist -data_dir); cf=(-dataset cifar10 -data_dir)

# np | expected exit | expected text on stderr | arguments after ntkhpc
# Decks for the rows added after the fuzzing round (docs/robustness.md)
printf -- '-depth 2 3\n' >"$tmp/extratok.in"
printf -- '-prefix_pop\n' >"$tmp/prefixpop.in"
printf -- '-options_file %s\n' "$tmp/missing.in" >"$tmp/include.in"

# Checkpoint fixtures (docs/checkpoint.md): a finished job's checkpoints (kept by -keep_checkpoints
# true), and a copy with one cut short.
"$NTKHPC" "$deck" "${small[@]}" -output "$tmp/ck.h5" -keep_checkpoints true >/dev/null 2>&1 </dev/null
cp "$tmp/ck.h5" "$tmp/cktr.h5" && cp -r "$tmp/ck.h5.ckpt" "$tmp/cktr.h5.ckpt"
truncate -s 1000 "$tmp/cktr.h5.ckpt/run_000000.h5"

cases=(
  "1|2|deck $tmp/missing.in: cannot open|$tmp/missing.in"
  # ---- checkpoints, restart, sweep parts
  "1|2|option -sweep_part: 2 must be below -sweep_parts 2|$deck ${small[*]} -sweep_part 2 -sweep_parts 2"
  "1|2|option -sweep_parts: 0 is outside [1,|$deck ${small[*]} -sweep_parts 0"
  "1|2|option -sweep_part: part 3 of 4 holds no run (the deck has 2 runs)|$deck ${small[*]} -sweep_part 3 -sweep_parts 4"
  "1|2|option -checkpoint_every: -1 is outside [0,|$deck ${small[*]} -checkpoint_every -1"
  "1|2|option -checkpoint_minutes: -1 is outside [0,|$deck ${small[*]} -checkpoint_minutes -1"
  "1|2|option -restart: expected true or false, got 'maybe'|$deck ${small[*]} -restart maybe"
  # ---- Hessian solver options (read at start, used hours later)
  "1|2|option -hess_conv: unknown value 'bogus' (value or residual)|$deck ${small[*]} -hess_conv bogus"
  # ---- measurements' own checks (validate in src/measure/*.c)
  "1|2|option -spectrum_steps: step 9 is beyond -steps 2|$deck ${small[*]} -spectrum_steps 0,9"
  "1|2|option -density_steps: step 7 is beyond -steps 2|$deck ${small[*]} -density_steps 0,7"
  "1|2|option -hess_coarse_factor: 1 is outside [2,|$deck ${small[*]} -hess_coarse_factor 1"
  "1|2|option -hess_coarse_levels: expected an integer, got 'two'|$deck ${small[*]} -hess_coarse_levels two"
  "1|2|option -hess_check_residual: expected true or false, got 'maybe'|$deck ${small[*]} -hess_check_residual maybe"
  "1|2|option -hess_chunk: 0 is outside [1,|$deck ${small[*]} -hess_chunk 0"
  "1|2|option -hess_tape_mb: expected a number, got 'lots'|$deck ${small[*]} -hess_tape_mb lots"
  "1|2|checkpoint directory $tmp/nodir/x.ckpt: cannot create it|$deck ${small[*]} -checkpoint_dir $tmp/nodir/x.ckpt"
  "1|2|checkpoint $tmp/ck.h5.ckpt/sweep.h5: written by a different deck (option -etas differs)|$deck ${small[*]} -etas 0.2 -restart -output $tmp/ck.h5"
  "2|2|checkpoint $tmp/cktr.h5.ckpt/run_000000.h5: cannot read it|$deck ${small[*]} -restart -output $tmp/cktr.h5"
  "1|2|all 2 runs already done in $tmp/ck.h5 (give -overwrite to run them again)|$deck ${small[*]} -output $tmp/ck.h5"
  # ---- -ntk_batch: a number or train (full-batch GD only)
  "1|2|option -ntk_batch: expected a positive integer or train, got 'abc'|$deck ${small[*]} -ntk_batch abc"
  "1|2|option -ntk_batch: expected a positive integer or train, got '0'|$deck ${small[*]} -ntk_batch 0"
  "1|2|option -ntk_batch: train needs full-batch training (-optimizer gd)|$deck ${small[*]} -ntk_batch train -optimizer sgd -batch_size 5"
  "1|2|option -ntk_batch: 100 exceeds -n_train 20|$deck ${small[*]} -ntk_batch 100"
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
  "1|2|option -augment: needs an image dataset (fashion_mnist, mnist or cifar10), not teacher|$deck -dataset teacher -augment true"
  "1|2|option -augment_pad: only used with -augment true|$deck -augment_pad 2"
  "1|2|option -augment_pad: 65 is outside [0, 64]|$deck -augment true -augment_pad 65"
  "1|2|option -augment: expected true or false, got 'maybe'|$deck -augment maybe"
  "1|2|option -wrn_depth: 12 is not 6n+4|$deck -arch wrn -wrn_depth 12"
  "1|2|option -wrn_depth: 4 is outside [10, 100000]|$deck -arch wrn -wrn_depth 4"
  "1|2|option -wrn_depth: only used with -arch wrn|$deck -wrn_depth 16"
  "1|2|option -batch_norm: only used with -arch wrn|$deck -batch_norm false"
  "1|2|option -batch_norm: expected true or false, got 'maybe'|$deck -arch wrn -batch_norm maybe"
  "1|2|option -bn_eps: -1 is outside [0, 1]|$deck -arch wrn -bn_eps -1"
  "1|2|option -bn_eps: only used with -batch_norm true|$deck -arch wrn -batch_norm false -bn_eps 1e-3"
  "1|2|option -arch: wrn needs an image dataset (fashion_mnist, mnist or cifar10), not teacher|$deck -arch wrn -dataset teacher"
  "1|2|option -arch: wrn needs an image dataset (fashion_mnist, mnist or cifar10), not uv|$deck -arch wrn -dataset uv"
  "1|2|option -data_dir: required for -dataset mnist|$deck -dataset mnist"
  "1|2|$tmp/nowhere|$deck -dataset mnist -data_dir $tmp/nowhere"
  "1|2|n_train|$deck -n_train 100000"
  "2|2|option -ranks_per_run: 3 exceeds the 2 MPI ranks|$deck -ranks_per_run 3"
  "1|2|$tmp/nodir/out.h5|$deck ${base[*]} -output $tmp/nodir/out.h5"
  "2|2|option -steps: expected an integer, got '1e3'|$deck -steps 1e3"
  # ---- decks
  "1|2|deck $tmp/deckdir.in: |$tmp/deckdir.in"
  "1|2|deck $tmp/dashspace.in line 2: expected '-key value', got '- depth 3'|$tmp/dashspace.in"
  "1|2|deck $tmp/dashdigit.in line 2: expected '-key value', got '-5'|$tmp/dashdigit.in"
  "1|2|option -widthz: unknown option|$tmp/empty.in -widthz 5"
  # ---- option values
  "1|2|option -ranks_per_run: 0 is outside [1,|$deck -ranks_per_run 0"
  "1|2|option -n_train: -5 is outside [0,|$deck -n_train -5"
  "1|2|option -n_test: expected an integer, got '1.5'|$deck -n_test 1.5"
  "1|2|option -etas: learning rate nan must be positive and finite|$deck -etas nan"
  "1|2|option -etas: learning rate inf must be positive and finite|$deck -etas 0.1,inf"
  "1|2|option -sigma_w: inf is outside|$deck -sigma_w inf"
  "1|2|option -momentum: nan is outside|$deck -momentum nan"
  "1|2|option -seeds: seed -1 must be >= 0|$deck -seeds -1"
  "1|2|option -steps: -1 is outside [0,|$deck -steps -1"
  "1|2|option -widths: width -16 must be a positive integer|$deck -widths 16,-16"
  "1|2|option -params: 'sp' is listed twice|$deck -params sp,mup,sp"
  "1|2|option -params: at most 5 entries|$deck -params ntk,sp,mup,abc,mf,ntk" # fuzz_deck: wrote params[PARAM_COUNT]
  "1|2|option -lr_min_factor: only used with -lr_schedule cosine|$deck -lr_min_factor 0.1"
  "1|2|option -warmup_steps: 50 exceeds -steps 10|$deck -warmup_steps 50 -steps 10"
  "1|2|option -n_train: the teacher-student set needs an explicit size|$deck -dataset teacher -n_train 0"
  "1|2|option -output: empty file name|$deck -output -quiet"
  # ---- data files (MNIST: IDX raw or gzip; CIFAR-10 binary batches)
  "1|2|$mdir/trunc/train-images-idx3-ubyte: truncated: expected 15680 bytes of pixels, found 1000|$deck ${small[*]} ${mn[*]} $mdir/trunc"
  "1|2|$mdir/badgz/train-images-idx3-ubyte.gz: corrupt gzip data|$deck ${small[*]} ${mn[*]} $mdir/badgz"
  "1|2|$mdir/cutgz/train-images-idx3-ubyte.gz: truncated: expected 15680 bytes of pixels|$deck ${small[*]} ${mn[*]} $mdir/cutgz"
  "1|2|$mdir/magic/train-images-idx3-ubyte: wrong magic 0x00000801 (expected 0x00000803 for IDX images; this is an IDX labels file)|$deck ${small[*]} ${mn[*]} $mdir/magic"
  "1|2|count mismatch: 30 images but $mdir/count/train-labels-idx1-ubyte has 31 labels|$deck ${small[*]} ${mn[*]} $mdir/count"
  "1|2|$mdir/label/t10k-labels-idx1-ubyte: label 12 at index 19 out of range [0, 9]|$deck ${small[*]} ${mn[*]} $mdir/label -n_test 20"
  "1|2|$mdir/nolabels/train-labels-idx1-ubyte.gz: not found|$deck ${small[*]} ${mn[*]} $mdir/nolabels"
  "1|2|$mdir/empty/t10k-images-idx3-ubyte: truncated header: expected 16 bytes, found 0|$deck ${small[*]} ${mn[*]} $mdir/empty"
  "1|2|$mdir/shape/train-images-idx3-ubyte: images are 27 x 27, expected 28 x 28|$deck ${small[*]} ${mn[*]} $mdir/shape"
  "1|2|$mdir/zero/train-images-idx3-ubyte: header says 0 images|$deck ${small[*]} ${mn[*]} $mdir/zero"
  "1|2|$mdir/huge/train-images-idx3-ubyte: bad image size 65536 x 65536|$deck ${small[*]} ${mn[*]} $mdir/huge"
  "1|2|n_train = 40 but $mdir/ok/train-images-idx3-ubyte holds 30 samples|$deck ${small[*]} ${mn[*]} $mdir/ok -n_train 40"
  "1|2|$cdir/size/data_batch_1.bin: corrupt: size 10000 bytes is not a multiple of the 3073-byte record|$deck ${small[*]} ${cf[*]} $cdir/size"
  "1|2|$cdir/nobatch/data_batch_3.bin: not found|$deck ${small[*]} ${cf[*]} $cdir/nobatch"
  "1|2|$cdir/notest/test_batch.bin: not found|$deck ${small[*]} ${cf[*]} $cdir/notest"
  "1|2|$cdir/label/data_batch_2.bin: label 10 in record 5 out of range [0, 9]|$deck ${small[*]} ${cf[*]} $cdir/label"
  "1|2|$cdir/empty/test_batch.bin: empty: no 3073-byte records|$deck ${small[*]} ${cf[*]} $cdir/empty"
  "1|2|n_train = 40 but data_batch_1..5.bin in $cdir/ok hold 30 samples|$deck ${small[*]} ${cf[*]} $cdir/ok -n_train 40"
  "1|2|option -data_dir: required for -dataset cifar10|$deck ${small[*]} -dataset cifar10"
  # fixed after the fuzzing round (docs/robustness.md)
  "1|2|deck $tmp/extratok.in line 1:|$tmp/extratok.in"
  "1|2|deck $tmp/prefixpop.in line 1:|$tmp/prefixpop.in"
  "1|2|deck $tmp/include.in line 1:|$tmp/include.in"
  "1|2|option -widths: |$deck ${small[*]} -widths -quiet"
  "1|2|option -etas: |$deck ${small[*]} -etas -quiet"
  "1|2|option -widths: 16 is listed twice|$deck ${small[*]} -widths 16,16"
  "1|2|option -seeds: 0 is listed twice|$deck ${small[*]} -seeds 0,0"
)
# Unreadable deck: root reads anything, so only as another user.
if [[ $(id -u) -ne 0 ]]; then
  printf -- '-depth 2\n' >"$tmp/noread.in"; chmod 000 "$tmp/noread.in"
  cases+=("1|2|deck $tmp/noread.in: cannot open: Permission denied|$tmp/noread.in")
else
  echo "SKIP: unreadable deck (running as root)"
fi

# Runs one case; 0 when it behaves: exit code, message, exactly one stderr line, no output file.
run_case() {
  local np code text args rc lines
  IFS='|' read -r np code text args <<<"$1"
  rm -f "$tmp/out.h5"
  launch=("$MPIEXEC" -q --oversubscribe -n "$np")
  [[ $np -eq 1 ]] && launch=() # singleton MPI: also covers running without mpirun
  # shellcheck disable=SC2086
  "${launch[@]}" "$NTKHPC" $args $( [[ "$args" == *"-output "* ]] || echo "-output $tmp/out.h5" ) \
    >"$tmp/stdout" 2>"$tmp/stderr" </dev/null
  rc=$?
  lines=$(grep -c . "$tmp/stderr")
  [[ $rc -eq $code ]] && grep -qF -- "$text" "$tmp/stderr" && [[ $lines -eq 1 ]] && [[ ! -e "$tmp/out.h5" ]] && return 0
  why="ntkhpc $args -> exit $rc (want $code), $lines stderr lines, want '$text'"
  return 1
}

for c in "${cases[@]}"; do
  if run_case "$c"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL: $why:"
    sed 's/^/    /' "$tmp/stderr" | head -5
  fi
done

# A good run, then the same output again without -overwrite: refused, file untouched. The finished
# job removed its checkpoint folder (no -keep_checkpoints), so "all done" comes from the output's
# /summary; -keep_checkpoints true kept ck.h5's.
if "$MPIEXEC" -q -n 1 "$NTKHPC" "$deck" "${base[@]}" -output "$tmp/good.h5" >"$tmp/stdout" 2>"$tmp/stderr"; then
  passed=$((passed + 1))
  if [[ ! -e "$tmp/good.h5.ckpt" && -f "$tmp/ck.h5.ckpt/sweep.h5" && -f "$tmp/ck.h5.ckpt/run_000001.h5" ]]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); echo "FAIL: a finished job's checkpoint folder must go by default and stay with -keep_checkpoints true:"
    ls -la "$tmp"/*.ckpt 2>&1 | head -10
  fi
  sum=$(md5sum <"$tmp/good.h5")
  "$MPIEXEC" -q -n 1 "$NTKHPC" "$deck" "${base[@]}" -output "$tmp/good.h5" >"$tmp/stdout" 2>"$tmp/stderr"
  rc=$?
  if [[ $rc -eq 2 ]] && grep -qF "$tmp/good.h5" "$tmp/stderr" && grep -q "runs already done in" "$tmp/stderr" &&
     [[ $(grep -c . "$tmp/stderr") -eq 1 ]] && [[ "$(md5sum <"$tmp/good.h5")" == "$sum" ]]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); echo "FAIL: existing output not refused cleanly (exit $rc):"; cat "$tmp/stderr"
  fi
  # another deck's finished output is not "done" for this one: refused as an existing file
  "$MPIEXEC" -q -n 1 "$NTKHPC" "$deck" "${base[@]}" -etas 0.2 -output "$tmp/good.h5" >"$tmp/stdout" 2>"$tmp/stderr"
  rc=$?
  if [[ $rc -eq 2 ]] && grep -qF "output file $tmp/good.h5 exists: refusing to overwrite" "$tmp/stderr" &&
     [[ "$(md5sum <"$tmp/good.h5")" == "$sum" ]]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); echo "FAIL: another deck's finished output not refused (exit $rc):"; cat "$tmp/stderr"
  fi
  if "$MPIEXEC" -q -n 1 "$NTKHPC" "$deck" "${base[@]}" -output "$tmp/good.h5" -overwrite >"$tmp/stdout" 2>"$tmp/stderr"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); echo "FAIL: -overwrite did not replace the file:"; cat "$tmp/stderr"
  fi
else
  failed=$((failed + 1)); echo "FAIL: a good deck failed:"; cat "$tmp/stderr"
fi

# A checkpoint folder that holds someone else's file too: only ntkhpc's files go, the folder and the
# file stay (with a warning), and the job still succeeds.
mkdir -p "$tmp/shared.ckpt" && echo notes >"$tmp/shared.ckpt/notes.txt"
if "$MPIEXEC" -q -n 1 "$NTKHPC" "$deck" "${base[@]}" -output "$tmp/shared.h5" -checkpoint_dir "$tmp/shared.ckpt" >"$tmp/stdout" 2>"$tmp/stderr" &&
   [[ -f "$tmp/shared.ckpt/notes.txt" && ! -e "$tmp/shared.ckpt/sweep.h5" ]] && ! compgen -G "$tmp/shared.ckpt/run_*" >/dev/null &&
   grep -q "checkpoint folder $tmp/shared.ckpt kept" "$tmp/stderr"; then
  passed=$((passed + 1))
else
  failed=$((failed + 1)); echo "FAIL: a checkpoint folder with a foreign file:"; ls -la "$tmp/shared.ckpt"; cat "$tmp/stderr"
fi

# The fixtures themselves are valid, and an empty deck means all defaults.
for good in "$tmp/empty.in ${small[*]}" "$deck ${small[*]} ${mn[*]} $mdir/ok" "$deck ${small[*]} ${cf[*]} $cdir/ok"; do
  rm -f "$tmp/g.h5"
  # shellcheck disable=SC2086
  if "$NTKHPC" $good -output "$tmp/g.h5" >/dev/null 2>"$tmp/stderr" </dev/null && [[ -s "$tmp/g.h5" ]] &&
     [[ ! -s "$tmp/stderr" ]]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); echo "FAIL: good input refused: ntkhpc $good"; sed 's/^/    /' "$tmp/stderr" | head -5
  fi
done

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

# -help: ntkhpc's options only, every option of the tables in src/app/options*.c and of the
# measurements (src/measure/*.c) under its module's heading with a real default; "-help petsc" (or
# "all") adds PETSc's part after ours. Nothing shows "(None)" (PETSc's mark of an option without a
# manual page) or an uninitialised default such as 4.7e-310.
check() { # description, then a command that succeeds when it holds
  local what=$1; shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: -help: $what"; fi
}
check "-help shows PETSc's options too" bash -c '! grep -q "Release Version" "$1"' _ "$tmp/help"
cp "$tmp/help" "$tmp/help_ours"
for all in petsc all; do
  "$MPIEXEC" -q -n 1 "$NTKHPC" "$deck" -help $all >"$tmp/help_$all" 2>&1
  check "-help $all: exit $?" test $? -eq 0
  petsc=$(grep -n -m1 'Release Version' "$tmp/help_$all" | cut -d: -f1) # PETSc's banner starts its part
  check "-help $all: no PETSc part" test -n "$petsc"
  check "-help $all: ntkhpc's part is not first" bash -c 'head -n "$(wc -l <"$1")" "$2" | cmp -s - "$1"' _ "$tmp/help_ours" "$tmp/help_$all"
  check "-help $all: a line shows (None)" bash -c '! grep -qF "(None)" "$1"' _ "$tmp/help_$all"
done
check "-help petsc lists no eigensolver option" grep -q -- '-hess_eps_' "$tmp/help_petsc"
# Test hooks (OPTION_HIDDEN on the descriptor's first line) are read and checked but not listed.
hidden=$(grep -ohE '\.name = "-[a-z0-9_]+".*OPTION_HIDDEN' "$NTK_SOURCE_DIR"/src/app/options*.c "$NTK_SOURCE_DIR"/src/measure/*.c | grep -oE -- '"-[a-z0-9_]+"' | tr -d '"' | sort -u)
for k in $hidden; do check "$k, a test hook, is listed by -help" bash -c '! grep -qE -- "^  $1 " "$2"' _ "$k" "$tmp/help_ours"; done
check "-pause_at_step is not found as a hidden test hook" grep -qx -- -pause_at_step <<<"$hidden"
names=$(grep -ohE '\.name = "-[a-z0-9_]+"' "$NTK_SOURCE_DIR"/src/app/options*.c "$NTK_SOURCE_DIR"/src/measure/*.c | grep -oE -- '-[a-z0-9_]+' | sort -u | grep -vxF -f <(echo "$hidden"))
check "fewer than 80 options in the tables" test "$(wc -w <<<"$names")" -ge 80
for k in $names; do
  check "$k is not in ntkhpc's part, with a default" grep -qE -- "^  $k <.+>: .+ \(default: [^)]+\)\$" "$tmp/help_ours"
done
for h in Model Data Training Sweep NTK Hessian Output Checkpoints; do
  check "no heading '$h:'" grep -qx "$h:" "$tmp/help_ours"
done
# Every option line is under a heading: no option before the first heading.
first_heading=$(grep -n -m1 -xE '[A-Z][A-Za-z]*:' "$tmp/help_ours" | cut -d: -f1)
first_option=$(grep -n -m1 -E '^  -[a-z]' "$tmp/help_ours" | cut -d: -f1)
check "an option before the first heading" test "${first_heading:-0}" -gt 0 -a "${first_option:-0}" -gt "${first_heading:-0}"
check "a line shows an uninitialised default (e-30x)" bash -c '! grep -qE "e-3[0-9][0-9]" "$1"' _ "$tmp/help"
# --help and -h are -help, and -version prints the version and runs nothing.
for flag in --help -h; do
  "$NTKHPC" $flag >"$tmp/help2" 2>&1 </dev/null
  check "$flag differs from -help in ntkhpc's part (exit $?)" bash -c 'head -n "$(wc -l <"$1")" "$2" | cmp -s - "$1"' _ "$tmp/help_ours" "$tmp/help2"
done
verre='^ntkhpc [0-9][0-9.]* \(git ([0-9a-f]+(-dirty)?|unknown)\)$' # the version and the commit built from
ver=$("$NTKHPC" -version 2>&1 </dev/null); rc=$?
check "-version: exit $rc, printed '$ver'" bash -c '[[ $1 -eq 0 && $2 =~ $3 ]]' _ "$rc" "$ver" "$verre"
ver=$("$NTKHPC" "$deck" --version 2>&1 </dev/null); rc=$?
check "--version after a deck: exit $rc, printed '$ver'" bash -c '[[ $1 -eq 0 && $2 =~ $3 ]]' _ "$rc" "$ver" "$verre"
if [[ -d $NTK_SOURCE_DIR/.git ]] && command -v git >/dev/null; then # a commit of this checkout (the build's)
  built=$(sed -E 's/.*\(git ([0-9a-f]+)(-dirty)?\)$/\1/' <<<"$ver")
  check "-version names '$ver', not a commit of this checkout" git -C "$NTK_SOURCE_DIR" cat-file -e "$built^{commit}"
fi
# No arguments: the usage on stderr, exit 2, nothing run and nothing written.
(cd "$tmp" && mkdir -p noargs && cd noargs && "$NTKHPC" >out 2>err </dev/null; echo $? >rc)
check "no arguments: exit $(cat "$tmp/noargs/rc"), want 2" test "$(cat "$tmp/noargs/rc")" -eq 2
check "no arguments: no usage on stderr" grep -q '^usage: mpirun -n R ntkhpc DECK' "$tmp/noargs/err"
check "no arguments: files left behind" test "$(ls "$tmp/noargs" | sort | tr '\n' ' ')" = "err out rc "

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
