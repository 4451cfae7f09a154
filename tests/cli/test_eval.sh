#!/bin/sh
# grad eval: categories without masks (pixel metrics absent: a dash, null),
# masks for some images only (an error naming the first missing one), JSON
# valid whatever the names, written atomically, write errors reported.
. "$(dirname "$0")/lib.sh"
make_model
m=$work/m.grad
e=$work/e
mkdir -p "$e"
cp -r "$work/d/weave" "$e/nomask"
rm -r "$e/nomask/ground_truth"
cp -r "$work/d/weave" "$e/quo\"te\\back
line"

run 0 eval -m "$m" -d "$e" --json "$work/r.json"
grep -q '^nomask  *[0-9.]*  *-  *-  *[0-9.]* ' "$out" || fail "the table has no dashes for nomask"
[ "$(grep -c 'pixel metrics absent' "$err")" -eq 1 ] || fail "the absence is not said exactly once"
has "nomask: no ground_truth folder" "$err"
python3 -c '
import json, math, sys
r = json.load(open(sys.argv[1], encoding="utf-8"))
c = {x["name"]: x for x in r["categories"]}
assert set(c) == {"nomask", "quo\"te\\back\nline"}, c.keys()
n = c["nomask"]
assert n["pixel_auroc"] is None and n["aupro"] is None and n["pixel_f1_max"] is None, n
assert 0 <= n["image_auroc"] <= 1, n
other = c["quo\"te\\back\nline"]
assert all(isinstance(other[k], float) for k in ("pixel_auroc", "aupro")), other
assert r["mean"]["pixel_auroc"] == other["pixel_auroc"], r["mean"]
' "$work/r.json" || fail "JSON report"
lines 4 "$out" # header, two categories, mean: one line each whatever the names
# The image metrics do not depend on the masks.
n_img=$(awk '$1 == "nomask" {print $2}' "$out")
w_img=$(awk '/^quo/ {print $2}' "$out")
[ -n "$n_img" ] && [ "$n_img" = "$w_img" ] || fail "image AUROC $n_img without masks, $w_img with"

# Masks for some images only: an error naming the first missing one.
cp -r "$work/d/weave" "$e/partial"
rm "$e/partial/ground_truth/crack/001_mask.png"
run 1 eval -m "$m" -d "$e/partial"
has "partial/test/crack/001.png: mask $e/partial/ground_truth/crack/001_mask.png not found" "$err"
rm -r "$e/partial"

# An unwritable --json is refused before the work; a full one says why and
# leaves the old report; symbolic links are kept.
run 1 eval -m "$m" -d "$e" --json "$work/no/dir/r.json"
has "--json $work/no/dir/r.json: cannot write there" "$err"
hasnt "images/s" "$err"
if [ -w /dev/full ]; then
  run 1 eval -m "$m" -d "$e" --json /dev/full
  has "cannot write /dev/full: No space left on device" "$err"
fi
cp "$work/r.json" "$work/old.json"
ln -s old.json "$work/link.json"
run 0 eval -m "$m" -d "$e/nomask" --json "$work/link.json"
[ -L "$work/link.json" ] || fail "the symbolic link was replaced"
grep -q '"name": "nomask"' "$work/old.json" || fail "the link's target was not written"
[ "$(ls "$work" | grep -c tmp)" -eq 0 ] || fail "a temporary file was left"
echo ok
