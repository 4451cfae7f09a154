#!/usr/bin/env python3
"""PyTorch side of bench_efficientnet: torchvision's efficientnet_b4 up to
its stage 5 (features[0..5]: the output of libgrad's layer 4, stride 16).

Usage: /usr/bin/python3 bench/bench_efficientnet_torch.py --threads T --size S --input FILE
(spawned by bench_efficientnet; needs python3-torch and python3-torchvision).
FILE holds float32 images, N x 3 x S x S. Requests come one per line on
stdin, "BATCH REPS": the model (random torchvision initialisation, eval
mode) runs on the first BATCH images once to warm up and REPS times more;
the answer is one line, the best time in ms per image. It prints "ready"
once torch is loaded and exits with 3 when torch cannot be imported.
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
    p.add_argument("--input", required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    data = np.fromfile(a.input, dtype=np.float32)
    model = torchvision.models.efficientnet_b4().eval()
    body = torch.nn.Sequential(*list(model.features)[:6])
    print("ready", flush=True)
    for line in sys.stdin:
        batch, reps = (int(v) for v in line.split())
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
