#!/bin/sh
# grad info on a model: the provenance as metadata lines, and --json with
# the provenance's values parsed (numbers, lists and options as JSON).
. "$(dirname "$0")/lib.sh"
SOURCE_DATE_EPOCH=86400 make_model

run 0 info "$work/m.grad"
has "provenance.library_version = $("$grad" version | sed -n 's/^libgrad \([0-9.]*\).*/\1/p')" "$out"
has "provenance.date = 1970-01-02T00:00:00Z" "$out"
has 'provenance.folders = ["weave"]' "$out"
has "provenance.epochs = 2" "$out"

run 0 info --json "$work/m.grad"
lines 1 "$out"
has '"provenance":{' "$out"
has '"date":"1970-01-02T00:00:00Z"' "$out"
has '"status":"complete"' "$out"
has '"source":"folders"' "$out"
has '"folders":["weave"]' "$out"
has '"images":11' "$out"
has '"epochs":2' "$out"
has '"model_options":{"arch":"resnet18"' "$out"
has '"train_options":{"epochs":2,"batch":4' "$out"
has '"metadata":{' "$out"
has '"tensors":[{"name":' "$out"
run 1 info --json "$work/missing.grad"
exit 0
