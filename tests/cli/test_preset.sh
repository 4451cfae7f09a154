#!/bin/sh
# grad train --preset: listed in --help, unknown or repeated names refused;
# without the EfficientNet backbone a clear refusal (never a silent
# fallback); with it, CRAD-s trains end to end (tiny sizes given after and
# before the preset override it) and the model scores.
. "$(dirname "$0")/lib.sh"

run 0 train --help
for p in grad crad crad-s; do has "  $p " "$out"; done
run 2 train --preset nope -o "$work/m.grad" -d "$work"
has "unknown --preset 'nope'" "$err"
run 2 train --preset crad --preset=crad-s -o "$work/m.grad" -d "$work"
has "--preset given 2 times" "$err"

"$grad" synth -o "$work/d" --size 64 --train 8 --test 4 --category weave >/dev/null 2>&1 ||
  fail "synth"
"$grad" train --epochs 1 --preset crad-s -o "$work/m.grad" -d "$work/d/weave" --size 64 \
  --batch 4 --blocks 2 -j 1 >"$out" 2>"$err"
rc=$?
if grep -qF "needs the EfficientNet-b4 backbone" "$err"; then
  [ "$rc" -eq 2 ] || fail "refusal exited $rc, expected 2"
  has "(efficientnet_b4_same)" "$err"
  [ ! -e "$work/m.grad" ] || fail "a model was written without its backbone"
  echo "EfficientNet backbone absent: the preset's refusal checked"
  exit 0
fi
[ "$rc" -eq 0 ] || fail "grad train --preset crad-s exited $rc"
run 0 info "$work/m.grad"
has "efficientnet_b4_same" "$out"
has "store.decoder = crad" "$out"
has "store.expansion = 216" "$out"
# --epochs before the preset and the rest after it override it; the others hold.
has '"epochs":1,"batch":4,' "$out"
has '"input_size":64' "$out"
has '"channels":216,"decoder":"crad","blocks":2,' "$out"
has '"lr_step_epochs":40' "$out"
run 0 score -m "$work/m.grad" "$work/d/weave/test/good"
