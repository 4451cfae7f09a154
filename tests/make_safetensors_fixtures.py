#!/usr/bin/python3
"""Safetensors fixtures for libgrad's tests, and a checker for C-written files.

Usage (Debian's /usr/bin/python3 with numpy; torch is optional):
  /usr/bin/python3 tests/make_safetensors_fixtures.py write [OUT_DIR]
      writes OUT_DIR/small.safetensors and corrupt_overlap.safetensors
      (default OUT_DIR: tests/fixtures/safetensors)
  /usr/bin/python3 tests/make_safetensors_fixtures.py check FILE...
      parses FILE with this script's own reader (written from the format
      description, not from libgrad), validates it against the rules of the
      reference implementation, loads every tensor with numpy (and with
      torch.frombuffer when torch is installed) and prints them.

The Python `safetensors` package is not in Debian and cannot be installed
on the build machines, so this file is the independent Python side: its
writer follows the reference implementation's conventions (compact JSON,
"__metadata__" first, header padded with spaces to a multiple of 8), and
its reader applies the same checks as the reference's `read_metadata`.
To check a file written by libgrad:
  GRAD_ST_SAMPLE_OUT=/tmp/c.safetensors build-x/tests/test_safetensors
  /usr/bin/python3 tests/make_safetensors_fixtures.py check /tmp/c.safetensors
"""
import json
import os
import struct
import sys

import numpy as np

DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8,
               "U64": 8}
NUMPY_TYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4",
               "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def bf16_bytes(values):
    """Round-to-nearest-even float32 -> bfloat16, as little-endian bytes."""
    bits = np.asarray(values, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2").tobytes()


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, dtype, shape, raw little-endian bytes)."""
    header = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, dtype, shape, raw in tensors:
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        assert len(raw) == count * DTYPE_SIZES[dtype], name
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, _, raw in tensors:
            f.write(raw)


def read_safetensors(path):
    """Returns (metadata, {name: numpy array or raw bytes}); raises on any violation."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError("shorter than 8 bytes")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > 100_000_000 or 8 + n > len(blob):
        raise ValueError("bad header length %d" % n)
    text = blob[8:8 + n].decode("utf-8")

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError("duplicate key")
        return dict(pairs)

    header = json.loads(text, object_pairs_hook=no_duplicates)
    metadata = header.pop("__metadata__", {})
    assert all(isinstance(v, str) for v in metadata.values()), "metadata values must be strings"
    data = blob[8 + n:]
    entries = sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"]))
    expected, tensors = 0, {}
    for name, info in entries:
        assert set(info) == {"dtype", "shape", "data_offsets"}, name
        begin, end = info["data_offsets"]
        if begin != expected or end < begin:
            raise ValueError("tensor %s: offsets %r not contiguous" % (name, info["data_offsets"]))
        count = 1
        for d in info["shape"]:
            assert isinstance(d, int) and d >= 0, name
            count *= d
        if end - begin != count * DTYPE_SIZES[info["dtype"]]:
            raise ValueError("tensor %s: size mismatch" % name)
        raw = data[begin:end]
        if info["dtype"] in NUMPY_TYPES:
            tensors[name] = np.frombuffer(raw, dtype=NUMPY_TYPES[info["dtype"]]).reshape(info["shape"])
        elif info["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype("<u4") << 16
            tensors[name] = bits.view("<f4").reshape(info["shape"])
        else:
            tensors[name] = raw
        expected = end
    if expected != len(data):
        raise ValueError("data section has %d bytes, tensors cover %d" % (len(data), expected))
    return n, metadata, [name for name, _ in entries], tensors


def write_fixtures(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    weight = (np.arange(18, dtype=np.float32) * 0.25 - 2.0).reshape(2, 1, 3, 3)
    tensors = [
        ("conv1.weight", "F32", [2, 1, 3, 3], weight.astype("<f4").tobytes()),
        ("conv1.bias", "F32", [2], np.array([0.5, -1.5], dtype="<f4").tobytes()),
        ("head.scale", "F16", [3], np.array([1.0, -2.5, 65504.0], dtype="<f2").tobytes()),
        ("head.shift", "BF16", [1, 2], bf16_bytes([1.0, -2.5])),
    ]
    metadata = {"format": "libgrad-test",
                "note": "made by tests/make_safetensors_fixtures.py"}
    path = os.path.join(out_dir, "small.safetensors")
    write_safetensors(path, tensors, metadata)
    # The writer's output must pass this script's own reader.
    _, meta, _, loaded = read_safetensors(path)
    assert meta == metadata and np.array_equal(loaded["conv1.weight"], weight)
    print("wrote", path, os.path.getsize(path), "bytes")
    # A corrupt file for `grad info`'s exit status and a seed for fuzzing:
    # tensor b's data range [8, 24] overlaps a's [0, 16].
    text = (b'{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},'
            b'"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}')
    path = os.path.join(out_dir, "corrupt_overlap.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + bytes(range(24)))
    print("wrote", path, os.path.getsize(path), "bytes")


def check(path):
    n, metadata, names, tensors = read_safetensors(path)
    assert n % 8 == 0, "header length %d is not a multiple of 8" % n
    print("%s: header %d bytes, %d tensors, metadata %r" % (path, n, len(names), metadata))
    try:
        import torch
    except ImportError:
        torch = None
    for name in names:
        array = tensors[name]
        line = "  %s %s %s" % (name, getattr(array, "dtype", "raw"), list(getattr(array, "shape", [])))
        if (torch is not None and isinstance(array, np.ndarray) and array.dtype == np.float32
                and array.size):  # torch.frombuffer refuses an empty buffer
            t = torch.frombuffer(bytearray(array.tobytes()), dtype=torch.float32).reshape(array.shape)
            assert torch.equal(t, torch.from_numpy(array.copy())) or bool(torch.isnan(t).any())
            line += " torch ok"
        print(line, np.asarray(array).ravel()[:8].tolist())
    # libgrad's writer sorts metadata keys and stores tensors in order: the
    # same content through this script's writer must give the same bytes.
    with open(path, "rb") as f:
        blob = f.read()
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    rebuilt = [(name, header[name]["dtype"], header[name]["shape"],
                data[header[name]["data_offsets"][0]:header[name]["data_offsets"][1]])
               for name in names]
    out = path + ".py-rewrite"
    write_safetensors(out, rebuilt, dict(sorted(metadata.items())))
    same = open(out, "rb").read() == open(path, "rb").read()
    os.remove(out)
    print("  bytes identical to this script's writer:", "yes" if same else "NO")
    return same


def main(argv):
    if len(argv) >= 2 and argv[1] == "check" and len(argv) >= 3:
        ok = all([check(path) for path in argv[2:]])
        return 0 if ok else 1
    if len(argv) >= 2 and argv[1] == "write":
        here = os.path.dirname(os.path.abspath(__file__))
        write_fixtures(argv[2] if len(argv) > 2 else os.path.join(here, "fixtures", "safetensors"))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
