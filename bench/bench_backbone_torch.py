#!/usr/bin/env python3
"""PyTorch side of bench_backbone: times torchvision backbones up to a stage.

Usage: /usr/bin/python3 bench/bench_backbone_torch.py --threads T --size S
         --last-stage K --input FILE
(spawned by bench_backbone; needs python3-torch and python3-torchvision).
FILE holds float32 images, N x 3 x S x S. The script then serves requests,
one per line on stdin, "ARCH BATCH REPS": it runs the model (random
torchvision initialisation, eval mode, cut after layerK) on the first BATCH
images once to warm up and REPS times more, and answers with one line, the
best time in ms per image. It prints "ready" once torch is loaded and exits
with 3 when torch cannot be imported, so the C side interleaves its own
runs with these on the same input and threads.
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
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--last-stage", type=int, default=3)
    p.add_argument("--input", required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    data = np.fromfile(a.input, dtype=np.float32)
    models = {}
    print("ready", flush=True)
    for line in sys.stdin:
        arch, batch, reps = line.split()
        batch, reps = int(batch), int(reps)
        if arch not in models:
            m = getattr(torchvision.models, arch)().eval()
            parts = [m.conv1, m.bn1, m.relu, m.maxpool]
            parts += [getattr(m, "layer%d" % k) for k in range(1, a.last_stage + 1)]
            models[arch] = torch.nn.Sequential(*parts)
        body = models[arch]
        x = torch.from_numpy(data[: batch * 3 * a.size * a.size].reshape(batch, 3, a.size, a.size))
        best = float("inf")
        with torch.inference_mode():
            body(x)  # warm-up: oneDNN primitive creation, allocator
            for _ in range(reps):
                t = time.perf_counter()
                body(x)
                best = min(best, time.perf_counter() - t)
        print("%.4f" % (best * 1e3 / batch), flush=True)


if __name__ == "__main__":
    main()
