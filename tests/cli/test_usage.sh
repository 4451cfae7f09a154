#!/bin/sh
# Usage errors: exit 2, one message naming the fault and the valid values,
# printed before anything else; write errors on stdout are failures.
. "$(dirname "$0")/lib.sh"

run 2 train --arch resnet19 -o "$work/m.grad" -d "$work"
head -n1 "$err" | grep -q "^grad train: unknown --arch 'resnet19' (valid: resnet18, resnet34, resnet50, resnet101, wide_resnet50_2, wide_resnet101_2, efficientnet_b0, efficientnet_b1, efficientnet_b2, efficientnet_b3, efficientnet_b4, efficientnet_b5, efficientnet_b6, efficientnet_b7, efficientnet_b0_same, efficientnet_b1_same, efficientnet_b2_same, efficientnet_b3_same, efficientnet_b4_same, efficientnet_b5_same, efficientnet_b6_same, efficientnet_b7_same)$" ||
  fail "the first line does not name the valid architectures"
[ -s "$out" ] && fail "stdout not empty"
run 2 features --arch resnet19 --random-weights 1 -o "$work/f" "$work/x.png"
has "valid: resnet18" "$err"

run 2 train --bogus
lines 2 "$err"
has "unknown option '--bogus'" "$err"
hasnt "unrecognized" "$err"
run 2 score -x
has "unknown option '-x'" "$err"
lines 2 "$err"
run 2 train -o
has "option '-o' needs a value" "$err"
run 2 eval --json
has "option '--json' needs a value" "$err"

# No silent coercion: values out of range are refused with the range.
run 2 train --holdout "" -o "$work/m.grad" -d "$work"
has "give a fraction in [0, 1)" "$err"
run 2 train --holdout 1 -o "$work/m.grad" -d "$work"
run 2 train --channels 4096 -o "$work/m.grad" -d "$work"
has "resnet18 with layers 2,3 has 384 channels (valid: 1..384)" "$err"
run 2 train --channels 65 --layers 1 -o "$work/m.grad" -d "$work"
has "(valid: 1..64)" "$err"
run 2 train --channels 0 -o "$work/m.grad" -d "$work"

# Write errors on stdout: every command that prints results.
if [ -w /dev/full ]; then
  "$grad" version >/dev/full 2>"$err" && fail "version to /dev/full exited 0"
  has "cannot write the results to standard output" "$err"
  make_model
  for cmd in "info $work/m.grad" "score -m $work/m.grad $work/d/weave/test/good/000.png" \
             "eval -m $work/m.grad -d $work/d" "--help" "train --help"; do
    # shellcheck disable=SC2086
    "$grad" $cmd >/dev/full 2>"$err"
    rc=$?
    [ $rc -eq 1 ] || fail "grad $cmd >/dev/full exited $rc, expected 1"
    has "cannot write the results to standard output" "$err"
  done
fi

# A failure names the file once.
printf 'not an image\n' >"$work/notes.txt"
[ -f "$work/m.grad" ] || make_model
run 1 score -m "$work/m.grad" "$work/notes.txt"
n=$(grep -o "notes.txt" "$err" | wc -l)
[ "$n" -eq 1 ] || fail "the file is named $n times"
echo ok
