#!/usr/bin/env bash
# The distributed Gram assembly (src/app/kernel_gram.c), driven by tests/test_kernel_inf.c:
#   - 150 training + 37 test samples, tiles of 16 (uneven edges), the 3-hidden-layer relu NTK:
#     against numpy's closed form (kernel_gram_check.py) at 1 rank;
#   - the same matrices on 1, 2 and 4 ranks, to 1e-13 (they are in fact bit for bit equal);
#   - checkpointed tiles: a job killed (SIGKILL, by the driver at an exact event: right after its
#     5th tile is saved) leaves 5 whole tile files; the 2-rank rerun loads them, computes only the
#     rest, and gives the uninterrupted matrices bit for bit; a third run (4 ranks) computes nothing;
#   - a tile file that is damaged is recomputed, not trusted.
set -uo pipefail
: "${NTK_PYTHON:?}" "${NTK_SOURCE_DIR:?}" "${NTK_KERNEL_BIN:?}"
MPIEXEC=${NTK_MPIEXEC:-mpiexec}
source "$NTK_SOURCE_DIR/tests/testlib.sh"
gram() { # np out ckpt [env]
  "$MPIEXEC" -q --oversubscribe -n "$1" "$NTK_KERNEL_BIN" gram "$2" 150 37 7 16 "$3" >"$tmp/stdout" 2>>"$tmp/log"
}
chk() { "$NTK_PYTHON" "$NTK_SOURCE_DIR/tests/kernel_gram_check.py" "$@"; }

check "1 rank" gram 1 "$tmp/g1.bin" -
check "against numpy's closed form" chk closed "$tmp/g1.bin"
check "2 ranks" gram 2 "$tmp/g2.bin" -
check "4 ranks" gram 4 "$tmp/g4.bin" -
check "1 and 2 ranks agree to 1e-13" chk same "$tmp/g1.bin" "$tmp/g2.bin" 1e-13
check "1 and 4 ranks agree to 1e-13" chk same "$tmp/g1.bin" "$tmp/g4.bin" 1e-13
check "1 and 4 ranks agree bit for bit" chk same "$tmp/g1.bin" "$tmp/g4.bin" 0

mkdir -p "$tmp/ck"
NTK_KILL_AFTER_TILES=5 gram 1 "$tmp/k.bin" "$tmp/ck"
rc=$?
check "the kill landed (exit $rc)" test $rc -ne 0
check "no output from the killed job" test ! -e "$tmp/k.bin"
n_saved=$(ls "$tmp/ck/kernel_tiles" | grep -c '^tile_.*\.bin$')
check "the killed job left its 5 tile files ($n_saved)" test "$n_saved" -eq 5
check "rerun after the kill" gram 2 "$tmp/k.bin" "$tmp/ck"
read -r _ n_tiles _ computed _ loaded _ <"$tmp/stdout"
echo "    resumed: $n_tiles tiles, $computed computed, $loaded loaded from checkpoints"
check "the rerun loaded the saved tiles" test "$loaded" -eq 5
check "the rerun computed only the rest" test $((computed + loaded)) -eq "$n_tiles" -a "$computed" -lt "$n_tiles"
check "resumed matrices equal the uninterrupted ones bit for bit" chk same "$tmp/g1.bin" "$tmp/k.bin" 0
check "third run" gram 4 "$tmp/k2.bin" "$tmp/ck"
read -r _ _ _ computed _ loaded _ <"$tmp/stdout"
check "third run computes nothing" test "$computed" -eq 0
# damage one tile: its checksum no longer matches, so it is recomputed
f=$(ls "$tmp/ck/kernel_tiles"/tile_*.bin | head -1)
printf '\x01\x02\x03\x04' | dd of="$f" bs=1 seek=100 conv=notrunc status=none
check "run with a damaged tile" gram 1 "$tmp/k3.bin" "$tmp/ck"
read -r _ _ _ computed _ loaded _ <"$tmp/stdout"
check "the damaged tile is recomputed" test "$computed" -eq 1
check "and the result is unchanged" chk same "$tmp/g1.bin" "$tmp/k3.bin" 0
finish kernel_gram
