#!/bin/sh
# grad score: inputs (files, folders, list files, stdin), text/CSV/JSON
# output whatever the paths hold, exit codes, --maps names that never
# collide nor replace an input.
. "$(dirname "$0")/lib.sh"
make_model
m=$work/m.grad
t=$work/d/weave/test
json_ok() { # every line of $out is one JSON object with the keys given
  python3 -c '
import json, sys
keys = sys.argv[1].split(",")
for n, line in enumerate(open(sys.argv[2], encoding="utf-8"), 1):
    o = json.loads(line)
    missing = [k for k in keys if k not in o]
    assert not missing, "line %d lacks %s" % (n, missing)
' "$1" "$out" || fail "invalid JSON lines"
}

# A folder is searched recursively, in sorted order.
run 3 score -m "$m" "$t"
lines 8 "$out"
head -n1 "$out" | grep -q "^$t/crack/000.png	[0-9.e-]*	[0-9.]*	\(good\|anomalous\)$" || fail "first line"
has "8 images scored in" "$err"
has "images/s" "$err"
# The same images from a list file and from stdin, in the given order.
find "$t" -name '*.png' | sort >"$work/list"
cut -f1 "$out" >"$work/expected"
run 3 score -m "$m" --list "$work/list"
cut -f1 "$out" | cmp -s - "$work/expected" || fail "--list order"
"$grad" score -m "$m" - <"$work/list" >"$out" 2>"$err"
[ $? -eq 3 ] || fail "stdin exit"
lines 8 "$out"

# Exit codes: 0 all good, 3 some anomalous, 1 some failed (documented).
good=$(awk -F'\t' '$4 == "good" {print $1; exit}' "$out")
bad=$(awk -F'\t' '$4 == "anomalous" {print $1; exit}' "$out")
[ -n "$good" ] && [ -n "$bad" ] || fail "the tiny model needs a good and an anomalous image"
run 0 score -m "$m" "$good"
run 3 score -m "$m" "$good" "$bad"
printf 'text\n' >"$work/notes.txt"
run 1 score -m "$m" "$good" "$work/notes.txt"
has "1 failed" "$err"

# Names that break naive output: quotes, backslash, comma, newline, tab,
# bytes that are not UTF-8.
odd=$work/odd
mkdir -p "$odd"
cp "$good" "$odd/quo\"te,back\\slash.png"
cp "$good" "$odd/new
line.png"
cp "$good" "$odd/tab	x.png"
cp "$good" "$odd/$(printf 'bad\377byte').png"
cp "$work/notes.txt" "$odd/z\"broken.png"
run 1 score -m "$m" "$odd"
lines 4 "$out"
has 'new\nline.png' "$out"
has 'tab\tx.png' "$out"
has 'back\\slash' "$out"
run 1 score -m "$m" --json "$odd"
lines 5 "$out"
json_ok path,status "$out"
python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
paths = [r["path"] for r in rows]
d = sys.argv[2]
assert d + "/new\nline.png" in paths, paths
assert d + "/quo\"te,back\\slash.png" in paths, paths
assert d + "/bad\\xffbyte.png" in paths, paths
bad = [r for r in rows if r["status"] != "ok"]
assert len(bad) == 1 and bad[0]["path"] == d + "/z\"broken.png", bad
assert bad[0]["status"] == "GRAD_E_UNSUPPORTED" and "not a PNG or JPEG" in bad[0]["message"], bad
ok = [r for r in rows if r["status"] == "ok"]
assert all(isinstance(r["score"], float) and isinstance(r["anomalous"], bool) for r in ok), ok
' "$out" "$odd" || fail "JSON content"
run 1 score -m "$m" --csv "$odd"
python3 -c '
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8", errors="surrogateescape")))
assert len(rows) == 5, rows
assert any(r["path"].endswith("/new\nline.png") for r in rows), rows
assert any(r["path"].endswith("/quo\"te,back\\slash.png") for r in rows), rows
assert [r["status"] for r in rows].count("GRAD_E_UNSUPPORTED") == 1, rows
' "$out" || fail "CSV content"
run 2 score -m "$m" --csv --json "$good"

# --maps: same stems in several folders and with several extensions.
mkdir -p "$work/in/a" "$work/in/b"
cp "$good" "$work/in/a/x.png"
cp "$good" "$work/in/b/x.png"
cp "$bad" "$work/in/a/x.jpg" # the decoder reads the content, not the name
run 3 score -m "$m" --maps "$work/maps" "$work/in"
for f in a/x_png.png a/x_jpg.png b/x.png a/x_png_map.safetensors a/x_jpg_map.safetensors \
         b/x_map.safetensors; do
  [ -f "$work/maps/$f" ] || fail "--maps did not write $f"
done
[ "$(find "$work/maps" -type f | wc -l)" -eq 6 ] || fail "unexpected files in the maps folder"
# One image: its stem, as before.
run 0 score -m "$m" --maps "$work/maps1" "$work/in/a/x.png"
[ -f "$work/maps1/x.png" ] || fail "single image map name"
# An output that would replace an input is refused, and nothing is written.
sum=$(cksum <"$work/in/a/x.png")
run 1 score -m "$m" --maps "$work/in/a" "$work/in/a/x.png"
has "would replace an input image" "$err"
[ "$(cksum <"$work/in/a/x.png")" = "$sum" ] || fail "the input was overwritten"
lines 0 "$out"
echo ok
