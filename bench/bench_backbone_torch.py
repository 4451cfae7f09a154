#!/usr/bin/env python3
"""PyTorch side of bench_backbone: times torchvision backbones up to a stage.

Usage: /usr/bin/python3 bench/bench_backbone_torch.py --threads T --size S
         --last-stage K --input FILE
(spawned by bench_backbone; needs python3-torch and python3-torchvision).
FILE holds float32 images, N x 3 x S x S. The script then serves requests,
one per line on stdin:
  "time ARCH BATCH REPS MODE": runs the model (random torchvision
    initialisation, eval mode, cut after layerK) on the first BATCH images
    once to warm up and REPS times more, and answers with one line, the best
    time in ms per image. MODE: nchw (the default memory format), cl
    (channels_last model and input), bf16 (channels_last under
    torch.autocast("cpu", dtype=torch.bfloat16)).
  "export ARCH PATH": writes the same model as ONNX (opset 13, dynamic
    batch) for the ONNX Runtime column; answers "ok" or "fail".
It prints "ready" once torch is loaded and exits with 3 when torch cannot be
imported, so the C side interleaves its own runs with these on the same
input and threads.
"""
import argparse
import sys
import time

try:
    import numpy as np
    import torch
    import torchvision
except ImportError as e:  # the C side prints a skipped column
    print("torch unavailable: %s" % e, file=sys.stderr)
    sys.exit(3)


def build(arch, last_stage):
    m = getattr(torchvision.models, arch)().eval()
    parts = [m.conv1, m.bn1, m.relu, m.maxpool]
    parts += [getattr(m, "layer%d" % k) for k in range(1, last_stage + 1)]
    return torch.nn.Sequential(*parts).eval()


def time_model(body, x, reps, mode):
    if mode in ("cl", "bf16"):
        body = body.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    else:
        body = body.to(memory_format=torch.contiguous_format)
    best = float("inf")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                enabled=mode == "bf16"):
        body(x)  # warm-up: oneDNN primitive creation, allocator
        for _ in range(reps):
            t = time.perf_counter()
            body(x)
            best = min(best, time.perf_counter() - t)
    return best


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--last-stage", type=int, default=3)
    p.add_argument("--input", required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    data = np.fromfile(a.input, dtype=np.float32)
    models = {}
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[0] == "export":
            arch, path = words[1], words[2]
            try:
                x = torch.zeros(1, 3, a.size, a.size)
                torch.onnx.export(build(arch, a.last_stage), x, path, opset_version=13,
                                  input_names=["x"], output_names=["y"],
                                  dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
                print("ok", flush=True)
            except Exception as e:  # the C side skips the column
                print("export failed: %s" % e, file=sys.stderr)
                print("fail", flush=True)
            continue
        arch, batch, reps, mode = words[1], int(words[2]), int(words[3]), words[4]
        if arch not in models:
            models[arch] = build(arch, a.last_stage)
        x = torch.from_numpy(data[: batch * 3 * a.size * a.size].reshape(batch, 3, a.size, a.size))
        best = time_model(models[arch], x, reps, mode)
        print("%.4f" % (best * 1e3 / batch), flush=True)


if __name__ == "__main__":
    main()
