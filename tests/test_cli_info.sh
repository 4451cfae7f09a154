#!/bin/sh
# `grad info` on the committed fixtures: exit codes and the key lines.
# Usage: test_cli_info.sh GRAD FIXTURES_DIR ok|corrupt
set -u
grad=$1
dir=$2/safetensors
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
fail() { echo "FAIL: $*"; echo "--- stdout"; cat "$out"; echo "--- stderr"; cat "$err"; exit 1; }
expect_line() { grep -qF -- "$1" "$2" || fail "missing '$1'"; }

case $3 in
ok)
  "$grad" info "$dir/small.safetensors" >"$out" 2>"$err"
  rc=$?
  [ $rc -eq 0 ] || fail "exit $rc on a valid file"
  expect_line "format = libgrad-test" "$out"
  expect_line "metadata (2 entries):" "$out"
  expect_line "tensors (4):" "$out"
  grep -Eq '^  conv1\.weight +F32 +\[2, 1, 3, 3\] +72$' "$out" || fail "conv1.weight row"
  grep -Eq '^  head\.scale +F16 +\[3\] +6$' "$out" || fail "head.scale row"
  grep -Eq '^  head\.shift +BF16 +\[1, 2\] +4$' "$out" || fail "head.shift row"
  expect_line "total: 4 tensors, 25 elements, 90 bytes" "$out"
  "$grad" info --help >"$out" 2>"$err" || fail "--help exit $?"
  expect_line "Usage: grad info" "$out"
  "$grad" info >"$out" 2>"$err"
  rc=$?
  [ $rc -eq 2 ] || fail "exit $rc without FILE (expected 2)"
  ;;
corrupt)
  "$grad" info "$dir/corrupt_overlap.safetensors" >"$out" 2>"$err"
  rc=$?
  [ $rc -eq 1 ] || fail "exit $rc on a corrupt file (expected 1)"
  expect_line "corrupt_overlap.safetensors: tensor 'b': field data_offsets [8, 24] overlaps tensor 'a'" "$err"
  expect_line "GRAD_E_FORMAT" "$err"
  "$grad" info "$dir/no-such-file.safetensors" >"$out" 2>"$err"
  rc=$?
  [ $rc -eq 1 ] || fail "exit $rc on a missing file (expected 1)"
  expect_line "no-such-file.safetensors: cannot open" "$err"
  ;;
*) echo "unknown mode $3"; exit 2 ;;
esac
echo "ok"
