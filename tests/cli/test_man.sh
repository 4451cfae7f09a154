#!/bin/sh
# grad(1), generated from the --help texts: every command has its section,
# every long option of every command is there, and groff renders it
# without a warning. Usage: test_man.sh GRAD MANPAGE
. "$(dirname "$0")/lib.sh"
man=$2
[ -s "$man" ] || fail "$man missing or empty"
commands=$("$grad" --help | sed -n 's/^  \([a-z]*\)  .*/\1/p')
[ -n "$commands" ] || fail "no commands in grad --help"
for c in $commands; do
  grep -qx ".SS grad $c" "$man" || fail "no section for grad $c in $man"
  for opt in $("$grad" "$c" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
    esc=$(printf '%s' "$opt" | sed 's/-/\\\\-/g')
    grep -q -- "$esc" "$man" || fail "grad $c: $opt not in $man"
  done
done
if command -v groff >/dev/null 2>&1; then
  groff -man -Tutf8 -ww "$man" >"$out" 2>"$err" || fail "groff failed"
  [ ! -s "$err" ] || fail "groff warnings"
  has "grad train" "$out"
fi
exit 0
