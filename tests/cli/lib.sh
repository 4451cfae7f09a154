# Shared by the CLI test scripts: a scratch folder, checks, and a tiny data
# set and model (32 px, resnet18 layer1, 2 epochs: well under a second).
# Usage in a script: . "$(dirname "$0")/lib.sh"; then "$grad" is the program.
set -u
grad=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=$work/stdout err=$work/stderr

fail() {
  echo "FAIL: $*"
  echo "--- stdout"; cat "$out" 2>/dev/null
  echo "--- stderr"; cat "$err" 2>/dev/null
  exit 1
}
# run EXPECTED_EXIT CMD...: runs "$grad" CMD... with stdout/stderr captured.
run() {
  expected=$1; shift
  "$grad" "$@" >"$out" 2>"$err"
  rc=$?
  [ "$rc" -eq "$expected" ] || fail "grad $* exited $rc, expected $expected"
}
has() { grep -qF -- "$1" "$2" || fail "'$1' not in $2"; }
hasnt() { ! grep -qF -- "$1" "$2" || fail "'$1' unexpectedly in $2"; }
lines() { n=$(wc -l <"$2"); [ "$n" -eq "$1" ] || fail "$2 has $n lines, expected $1"; }

# make_model: $work/d/weave (MVTec layout) and $work/m.grad trained on it.
make_model() {
  "$grad" synth -o "$work/d" --size 32 --train 12 --test 8 --category weave >/dev/null 2>&1 ||
    fail "synth"
  "$grad" train -o "$work/m.grad" -d "$work/d/weave" --size 32 --layers 1 --channels 8 \
    --blocks 0 --epochs 2 --batch 4 -j 1 >/dev/null 2>"$err" || fail "training the tiny model"
}
