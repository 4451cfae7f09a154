#!/bin/sh
# The guide's code blocks marked <!-- file: PATH --> are exactly the
# example files CI builds and runs, so the guide cannot drift from working
# code. Usage: test_guide_code.sh SOURCE_ROOT
set -u
root=$1
guide=$root/docs/guide.md
blocks=0
for path in $(sed -n 's/^<!-- file: \(.*\) -->$/\1/p' "$guide"); do
  blocks=$((blocks + 1))
  awk -v marker="<!-- file: $path -->" '
    $0 == marker { found = 1; next }
    found == 1 && /^```/ { found = 2; next }
    found == 2 && /^```$/ { exit }
    found == 2 { print }' "$guide" >"${TMPDIR:-/tmp}/guide_block.$$"
  if ! diff -u "$root/$path" "${TMPDIR:-/tmp}/guide_block.$$"; then
    echo "FAIL: docs/guide.md's block for $path differs from the file"
    rm -f "${TMPDIR:-/tmp}/guide_block.$$"
    exit 1
  fi
done
rm -f "${TMPDIR:-/tmp}/guide_block.$$"
[ "$blocks" -ge 2 ] || { echo "FAIL: fewer than 2 marked blocks in docs/guide.md"; exit 1; }
echo "docs/guide.md: $blocks code blocks equal their example files"
