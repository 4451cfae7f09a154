#!/usr/bin/env python3
"""PyTorch side of bench_backbone: times torchvision backbones up to a stage.

Usage: /usr/bin/python3 bench/bench_backbone_torch.py --threads T --reps R
         --size S --last-stage K --input FILE ARCH:BATCH [ARCH:BATCH ...]
(spawned by bench_backbone; needs python3-torch and python3-torchvision).
FILE holds float32 images, BATCH x 3 x S x S for the largest batch; each
run uses its first BATCH images. Prints one line per run:
"ARCH BATCH MS_PER_IMAGE". Exits 3 when torch cannot be imported.
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--last-stage", type=int, default=3)
    p.add_argument("--input", required=True)
    p.add_argument("runs", nargs="+")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    data = np.fromfile(a.input, dtype=np.float32)
    for run in a.runs:
        arch, batch = run.split(":")
        batch = int(batch)
        x = torch.from_numpy(data[: batch * 3 * a.size * a.size].reshape(batch, 3, a.size, a.size))
        m = getattr(torchvision.models, arch)().eval()
        parts = [m.conv1, m.bn1, m.relu, m.maxpool]
        parts += [getattr(m, "layer%d" % k) for k in range(1, a.last_stage + 1)]
        body = torch.nn.Sequential(*parts)
        best = float("inf")
        with torch.inference_mode():
            body(x)  # warm-up: oneDNN primitive creation, allocator
            for _ in range(a.reps):
                t = time.perf_counter()
                body(x)
                best = min(best, time.perf_counter() - t)
        print("%s %d %.3f" % (arch, batch, best * 1e3 / batch), flush=True)


if __name__ == "__main__":
    main()
