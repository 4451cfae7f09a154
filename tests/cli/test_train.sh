#!/bin/sh
# grad train: outputs checked before training, Ctrl-C / SIGTERM stop with a
# checkpoint, a usable model and the command that resumes (exit 130 / 143),
# timed progress lines with rate and ETA, repeated folders warned about.
. "$(dirname "$0")/lib.sh"
make_model
tiny="-d $work/d/weave --size 32 --layers 1 --channels 8 --blocks 0 --batch 4 -j 1"

# Unwritable outputs are refused before any work.
# shellcheck disable=SC2086
run 1 train -o "$work/no/such/dir/m.grad" $tiny --epochs 1
has "-o $work/no/such/dir/m.grad: cannot write there" "$err"
hasnt "backbone" "$err"
# shellcheck disable=SC2086
run 1 train -o "$work" $tiny --epochs 1
has "is a folder" "$err"
# shellcheck disable=SC2086
run 1 train -o "$work/m2.grad" --checkpoint "$work/no/dir/c" $tiny --epochs 1
has "--checkpoint $work/no/dir/c: cannot write there" "$err"

# Progress when stderr is a file: a first and a last line, with rate and ETA.
# shellcheck disable=SC2086
run 0 train -o "$work/m2.grad" $tiny --epochs 3
[ "$(grep -c '^training: ' "$err")" -ge 2 ] || fail "fewer than 2 progress lines"
has "training: 100% epoch 3/3" "$err"
has "steps/s ETA" "$err"
for phase in features reduction calibration; do has "$phase: 100%" "$err"; done
[ ! -e "$work/m2.grad.checkpoint" ] || fail "the default checkpoint was left behind"

# Degenerate training: warnings on stderr, once each, and in the model.
# shellcheck disable=SC2086
run 0 train -o "$work/m2.grad" $tiny -d "$work/d/weave/" --epochs 1
has "grad train: warning: the folder $work/d/weave/ was given twice" "$err"
has "grad train: warning: the thresholds were calibrated on 2 held-out images (fewer than 10" "$err"
[ "$(grep -c 'warning' "$err")" -eq 2 ] || fail "warnings not said exactly once"
run 0 info "$work/m2.grad"
has "warning: the folder $work/d/weave/ was given twice" "$out"
has "warning: the thresholds were calibrated on 2 held-out images" "$out"
# shellcheck disable=SC2086
run 0 train -o "$work/m2.grad" $tiny --holdout 0 --epochs 1
has "warning: no image held out" "$err"

# A bad image among the training images: an error naming it by default;
# --skip-bad warns, counts, and trains on the others.
cp -r "$work/d/weave" "$work/withbad"
printf 'not an image' >"$work/withbad/train/good/bad.png"
# shellcheck disable=SC2086
run 1 train -o "$work/m3.grad" -d "$work/withbad" --size 32 --layers 1 --channels 8 --blocks 0 \
  --epochs 1 -j 1
has "withbad/train/good/bad.png: not a PNG or JPEG image" "$err"
[ ! -e "$work/m3.grad" ] || fail "a model was written despite the bad image"
run 0 train -o "$work/m3.grad" -d "$work/withbad" --skip-bad --size 32 --layers 1 --channels 8 \
  --blocks 0 --epochs 1 -j 1
has "grad train: warning: skipping $work/withbad/train/good/bad.png: not a PNG or JPEG image" "$err"
has "left out 1 of 13 images" "$err"
run 0 info "$work/m3.grad"
has "provenance.images = 11" "$out"
has "left out 1 of 13 images (undecodable)" "$out" # in the model's description

# Fine-tuning: --from continues a model (its store, not a fresh one).
run 2 train --from "$work/m.grad" -o "$work/m4.grad" -d "$work/d/weave" --channels 4
has "--channels cannot be used with it" "$err"
GRAD_PROGRESS_SECONDS=0 "$grad" train --from "$work/m.grad" -o "$work/m4.grad" \
  -d "$work/d/weave" --epochs 2 --batch 4 -j 1 >"$out" 2>"$err" || fail "--from failed"
has "continuing $work/m.grad for 2 more epochs" "$err"
first=$(sed -n 's/^training: .* loss \([0-9.]*\) .*/\1/p' "$err" | head -n1)
awk -v l="$first" 'BEGIN { exit !(l > 0 && l < 0.3) }' || fail "first loss $first: not continued"
run 0 info "$work/m4.grad"
has "provenance.more_epochs = 2" "$out"

# interrupt SIGNAL EXIT: an endless run stopped by SIGNAL once it trains.
interrupt() {
  rm -f "$work/i.grad" "$work/i.grad.checkpoint"
  # shellcheck disable=SC2086
  GRAD_PROGRESS_SECONDS=0 "$grad" train -o "$work/i.grad" $tiny --epochs 100000 \
    >"$out" 2>"$err" &
  pid=$!
  n=0
  until grep -q "^training:" "$err"; do
    n=$((n + 1))
    [ $n -lt 300 ] || { kill -9 $pid; fail "training did not start"; }
    sleep 0.1
  done
  sleep 0.3
  kill -s "$1" $pid
  wait $pid
  rc=$?
  [ $rc -eq "$2" ] || fail "exit $rc after SIG$1, expected $2"
  has "stopped by SIG$1" "$err"
  has "wrote $work/i.grad: the model of the last completed step" "$err"
  [ -f "$work/i.grad.checkpoint" ] || fail "no checkpoint after SIG$1"
  has "To resume: $grad train -o $work/i.grad" "$err"
  has " --resume $work/i.grad.checkpoint" "$err"
}
interrupt INT 130
interrupt TERM 143
# The model is usable; the printed command resumes (with fewer epochs, to end).
"$grad" score -m "$work/i.grad" "$work/d/weave/test/good/000.png" >"$out" 2>&1
rc=$?
[ $rc -eq 0 ] || [ $rc -eq 3 ] || fail "scoring with the interrupted model: exit $rc"
epoch=$(sed -n 's/^grad train: checkpoint of epoch \([0-9]*\) in .*/\1/p' "$err")
[ -n "$epoch" ] || fail "no epoch named"
cmd=$(sed -n 's/^To resume: //p' "$err" | sed "s/--epochs 100000/--epochs $((epoch + 2))/")
eval "$cmd" >"$out" 2>"$err" || fail "the resume command failed: $cmd"
has "epoch $((epoch + 2))/$((epoch + 2))" "$err"
[ ! -e "$work/i.grad.checkpoint" ] || fail "the checkpoint was left after the resumed run"
echo ok
