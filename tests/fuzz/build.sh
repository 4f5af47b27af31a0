#!/usr/bin/env bash
# Builds the libFuzzer harnesses of ntkhpc's input readers with clang
# (-fsanitize=fuzzer,address,undefined), writes small valid seed corpora and a deck dictionary,
# and optionally runs each harness. Not part of the normal CMake build (tests/fuzz.cmake runs
# the smoke mode under ctest when the compiler is clang).
#
#   tests/fuzz/build.sh OUTDIR                 build + seeds into OUTDIR
#   tests/fuzz/build.sh OUTDIR --smoke [RUNS]  ... then run each harness RUNS inputs (default 2000)
#   tests/fuzz/build.sh OUTDIR --run SECONDS   ... then fuzz each harness SECONDS (sequentially)
#
# Harnesses (docs/robustness.md): fuzz_idx (idx_read_images/idx_read_labels), fuzz_cifar
# (cifar10_read_batch), fuzz_deck (check_deck + PETSc option file reading + config_read).
# Crashes land in OUTDIR/crashes/<harness>/; corpora grow in OUTDIR/corpus/<harness>/.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?usage: build.sh OUTDIR [--smoke [RUNS] | --run SECONDS]}
mode=${2:-}
arg=${3:-}
CC=${FUZZ_CC:-clang}
PY=${NTK_PYTHON:-python3}
mkdir -p "$out/obj"
out=$(cd "$out" && pwd)

command -v "$CC" >/dev/null || { echo "build.sh: $CC not found (apt-get install clang)" >&2; exit 1; }
deps="PETSc SLEPc hdf5-openmpi openblas zlib"
cflags="-g -O1 -fno-omit-frame-pointer -std=c11 -D_XOPEN_SOURCE=700 -DNTK_VERSION=\"fuzz\" \
  -I$src/src/core -I$src/src/common -I$src/src/ops -I$src/src/io -I$src/src/measure -I$src/src/train -I$src/src/app $(pkg-config --cflags $deps) $(mpicc --showme:compile) -w"
libs="$(pkg-config --libs $deps) $(mpicc --showme:link) -lm"
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"

# Library sources: instrumented for coverage, not linked with the fuzzer main.
objs=()
while IFS= read -r c; do
  f=$(basename "$c" .c)
  o="$out/obj/$f.o"
  if [[ ! -e $o || $c -nt $o ]]; then
    $CC $cflags $san -fsanitize=fuzzer-no-link -c "$c" -o "$o"
  fi
  objs+=("$o")
done < <(find "$src/src" -name '*.c' ! -name main.c ! -name app.c | sort) # fuzz_deck includes app.c
core=("$out/obj/rng.o" "$out/obj/layers.o" "$out/obj/conv.o" "$out/obj/model.o" "$out/obj/data.o")
$CC $cflags $san -fsanitize=fuzzer "$src/tests/fuzz/fuzz_idx.c" "${core[@]}" $libs -o "$out/fuzz_idx"
$CC $cflags $san -fsanitize=fuzzer "$src/tests/fuzz/fuzz_cifar.c" "${core[@]}" $libs -o "$out/fuzz_cifar"
$CC $cflags $san -fsanitize=fuzzer "$src/tests/fuzz/fuzz_deck.c" "${objs[@]}" $libs -o "$out/fuzz_deck"

# ---- seed corpora: small valid files, plus a few near misses
rm -rf "$out/seeds"
mkdir -p "$out/seeds/idx" "$out/seeds/cifar" "$out/seeds/deck"
"$PY" - "$out/seeds" <<'PYEOF'
import gzip, os, struct, sys
d = sys.argv[1]
def put(sub, name, data):
    with open(os.path.join(d, sub, name), "wb") as f: f.write(data)
def images(n, r, c): return struct.pack(">IIII", 0x803, n, r, c) + bytes((i * 7) % 256 for i in range(n * r * c))
def labels(n, hi=10): return struct.pack(">II", 0x801, n) + bytes(i % hi for i in range(n))
put("idx", "images_3x4x4", images(3, 4, 4))
put("idx", "images_2x28x28", images(2, 28, 28))
put("idx", "images_3x4x4.gz", gzip.compress(images(3, 4, 4)))
put("idx", "labels_5", labels(5))
put("idx", "labels_5.gz", gzip.compress(labels(5)))
put("idx", "labels_255", labels(4, 256))
put("idx", "images_trunc", images(3, 4, 4)[:30])
put("idx", "images_huge_count", struct.pack(">IIII", 0x803, 0x7fffffff, 28, 28) + bytes(64))
def rec(label, k): return bytes([label]) + bytes((k + i) % 256 for i in range(3072))
put("cifar", "two", rec(3, 0) + rec(9, 1))
put("cifar", "one", rec(0, 5))
put("cifar", "two.gz", gzip.compress(rec(1, 0) + rec(2, 1)))
put("cifar", "partial", rec(4, 0)[:100])
decks = {
  "small": "-arch fc\n-depth 2\n-activation tanh\n-widths 48,96\n-seeds 3,4\n-params ntk,mup\n-etas 0.02,0.1\n-n_train 200\n-n_test 100\n-steps 20\n",
  "comments": "# comment\n\n  -depth 2 # trailing\n\t-bias false\n",
  "sgd": "-optimizer sgd\n-batch_size 10\n-n_train 100\n-lr_schedule step\n-lr_step_every 5\n-lr_step_gamma 0.5\n",
  "teacher": "-dataset teacher\n-teacher_dim 8\n-teacher_width 16\n-teacher_noise 0.1\n-n_train 10\n-n_test 5\n",
  "cosine": "-lr_schedule cosine\n-lr_min_factor 0.1\n-warmup_steps 5\n-steps 10\n-momentum 0.9\n",
  "bad": "-widths 0\n-etas nan\n",
  "empty": "",
}
for k, v in decks.items(): put("deck", k, v.encode())
PYEOF
for f in "$src"/inputs/*.in "$src"/tests/small_sweep.in; do cp "$f" "$out/seeds/deck/"; done
# Dictionary: every option name of the tables in src/app/options*.c and src/measure/*.c, and a few values.
{
  grep -ohE '"-[a-z0-9_]+"' "$src/src/app/"options*.c "$src/src/measure/"*.c | sort -u
  printf '"%s"\n' true false nan inf -inf 1e308 -1 0 , ntk sp mup sgd gd step cosine relu tanh erf \
    teacher cifar10 mnist "#" "\\x0a" "-options_file" "-prefix_push" "-prefix_pop" "-help"
} >"$out/deck.dict"

echo "build.sh: built $out/fuzz_idx $out/fuzz_cifar $out/fuzz_deck; seeds in $out/seeds"

run_one() { # harness seconds|'' runs|'' extra-flags...
  local h=$1 secs=$2 runs=$3; shift 3
  mkdir -p "$out/corpus/$h" "$out/crashes/$h"
  local lim=()
  [[ -n $secs ]] && lim+=(-max_total_time="$secs")
  [[ -n $runs ]] && lim+=(-runs="$runs")
  echo "== $h ${lim[*]}"
  "$out/$h" "${lim[@]}" -artifact_prefix="$out/crashes/$h/" -print_final_stats=1 "$@" \
    "$out/corpus/$h" "$out/seeds/${h#fuzz_}" 2>&1 | tee "$out/$h.log" | grep -E 'stat::|Done|ERROR|SUMMARY|fuzz_deck:|crash-|Test unit' || true
  # a crash makes libFuzzer exit non-zero; pipefail carries it
  ! grep -qE '^==[0-9]+==ERROR|deadly signal|SUMMARY: (Address|Undefined)' "$out/$h.log"
}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
# Open MPI and PETSc keep global allocations: leak checks would only report those.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
case "$mode" in
  "") ;;
  --smoke)
    runs=${arg:-2000}
    run_one fuzz_idx "" "$runs" -max_len=4096 || status=1
    run_one fuzz_cifar "" "$runs" -max_len=16384 || status=1
    run_one fuzz_deck "" "$runs" -max_len=2048 -dict="$out/deck.dict" || status=1 ;;
  --run)
    secs=${arg:?--run needs SECONDS}
    run_one fuzz_idx "$secs" "" -max_len=4096 || status=1
    run_one fuzz_cifar "$secs" "" -max_len=16384 || status=1
    run_one fuzz_deck "$secs" "" -max_len=2048 -dict="$out/deck.dict" || status=1 ;;
  *) echo "build.sh: unknown mode $mode" >&2; exit 2 ;;
esac
exit $status
