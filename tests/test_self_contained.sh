#!/usr/bin/env bash
# The repository stands on its own: its definitions live in docs/conventions.md, so no tracked file
# may name the old conventions file outside the repository (its upper-case name with ".md") or the
# shared directory beside the checkout (as a relative path from the checkout or as an absolute one).
# The forbidden strings are assembled from pieces so that this file does not contain them itself.
# Files: `git ls-files` when NTK_SOURCE_DIR is a git checkout, else every file under it (build
# trees and .git excluded). Last line "N passed, M failed"; exit 1 when anything failed.
# Standalone: NTK_SOURCE_DIR=$PWD bash tests/test_self_contained.sh
set -uo pipefail
: "${NTK_SOURCE_DIR:?NTK_SOURCE_DIR must name the source tree}"
src=$NTK_SOURCE_DIR

upper="CONVEN""TIONS"
forbidden=("${upper}.md" "../sha""red" "/work/sha""red")

pass=0
fail=0
check() { # check DESCRIPTION OK(0/1)
  if [[ $2 -eq 0 ]]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: $1"
  fi
}

files=()
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  while IFS= read -r -d '' f; do files+=("$f"); done < <(git -C "$src" ls-files -z)
  how="git ls-files"
else
  while IFS= read -r -d '' f; do files+=("${f#./}"); done < <(
    cd "$src" && find . \( -name .git -o -name 'build*' \) -prune -o -type f -print0)
  how="find"
fi
check "no files found in $src ($how)" $((${#files[@]} == 0))

# The conventions page itself must exist: the references now point there.
check "docs/conventions.md is missing" $([[ -f $src/docs/conventions.md ]]; echo $?)

for pat in "${forbidden[@]}"; do
  hits=()
  for f in "${files[@]}"; do
    [[ -f $src/$f ]] || continue # listed by git but deleted in the work tree
    grep -qF -- "$pat" "$src/$f" 2>/dev/null && hits+=("$f")
  done
  for f in "${hits[@]}"; do
    grep -nF -- "$pat" "$src/$f" | sed "s|^|  $f:|"
  done
  check "${#hits[@]} file(s) name '$pat': ${hits[*]}" $((${#hits[@]} > 0))
done

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
