#!/usr/bin/env bash
# Builds the libFuzzer seed corpora from the committed test fixtures, so no
# corpus needs to be committed: OUT/png, OUT/jpeg, OUT/safetensors (also
# used by fuzz_model). Usage: tests/fuzz/make_corpus.sh OUT
set -euo pipefail
out=${1:?usage: make_corpus.sh OUT}
root=$(cd "$(dirname "$0")/../.." && pwd)
fixtures=$root/tests/fixtures
mkdir -p "$out/png" "$out/jpeg" "$out/safetensors"

# Images: every fixture image under 32 KB (valid, corrupt and huge-header ones).
find "$fixtures" -type f -size -32k \( -iname '*.png' -o -iname '*.jpg' -o -iname '*.jpeg' \) |
  while read -r f; do
    case "${f,,}" in
      *.png) dir=png ;;
      *) dir=jpeg ;;
    esac
    cp "$f" "$out/$dir/$(basename "$(dirname "$f")")_$(basename "$f")"
  done

# Weight files under 200 KB; bigger ones only slow every run down.
find "$fixtures" -type f -size -200k -name '*.safetensors' |
  while read -r f; do cp "$f" "$out/safetensors/$(basename "$(dirname "$f")")_$(basename "$f")"; done

# Small hand-written files for the dtypes and corners the fixtures lack.
seed() { # NAME JSON DATA(printf escapes)
  local n=${#2} le="" i
  for i in 0 1 2 3 4 5 6 7; do le+=$(printf '\\x%02x' $(((n >> (8 * i)) & 255))); done
  printf "$le%s$3" "$2" > "$out/safetensors/seed_$1.safetensors"
}
seed empty_header '{}' ''
seed f16 '{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}' '\x00\x3c\x00\xc0'
seed bf16_scalar '{"s":{"dtype":"BF16","shape":[],"data_offsets":[0,2]}}' '\x80\x3f'
seed nan '{"n":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]}}' '\x00\x00\xc0\x7f'
seed mixed '{"__metadata__":{"format":"pt","k":"v"},"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},"i":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"h":{"dtype":"F16","shape":[1],"data_offsets":[8,10]}}' '\x01\x00\x00\x00\x00\x00\x00\x00\x00\x7c'

# Inputs that once crashed a target are seeds too, so fuzzing starts from them.
if [ -d "$fixtures/regress" ]; then
  for f in "$fixtures"/regress/*; do
    [ -f "$f" ] || continue
    case "${f,,}" in
      *.png) cp "$f" "$out/png/" ;;
      *.jpg | *.jpeg) cp "$f" "$out/jpeg/" ;;
      *) cp "$f" "$out/safetensors/" ;;
    esac
  done
fi
