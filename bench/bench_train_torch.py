#!/usr/bin/python3
"""PyTorch side of bench/bench_train.c: seconds per training step of the grid
feature store (tests/grad_reference.py) on random features.

Usage (Debian's Python, which has torch 1.13; the pyenv python3 has none):
    /usr/bin/python3 bench/bench_train_torch.py --channels 64 --blocks 2 \
        [--size 28] [--batch 16] [--steps 4] [--warm-up 1] [--threads 2]

Prints one line "seconds_per_step=S cpu_seconds_per_step=T maxrss_kb=K" (or
"SKIP: reason" and exit status 77 when torch is missing). The step is the
one bench_train.c times: training forward, fusion loss, backward, clipping
at 0.1, AdamW with the two learning rates; coordinate noise on every other
step (the method draws it with probability 0.5).
"""
import argparse
import os
import resource
import sys
import time

try:
    import torch
except ImportError as exc:  # the C bench reports this and goes on
    print(f"SKIP: torch not importable ({exc})")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from grad_reference import GradStore, fusion_loss  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--channels", type=int, required=True)
    ap.add_argument("--blocks", type=int, required=True)
    ap.add_argument("--expansion", type=int, default=0, help="0: BasicBlocks; E: CRAD's bottlenecks")
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warm-up", type=int, default=1, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    c, s, n = args.channels, args.size, args.batch
    store = GradStore(c, s, s, 8, 4, args.blocks, decoder="crad" if args.expansion else "basic",
                      expansion=args.expansion)
    store.train()
    feats = torch.randn(n, c, s, s)
    opt = torch.optim.AdamW([{"params": store.grid_parameters(), "lr": 0.1},
                             {"params": store.net_parameters(), "lr": 1e-3}],
                            betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)

    def step(k):
        noise = 0.05 * torch.randn(n, 2, s, s) if k % 2 else None
        opt.zero_grad()
        loss = fusion_loss(store(feats, noise), feats)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(store.parameters()), 0.1)
        opt.step()

    for k in range(args.warm_up):  # allocations, first-touch
        step(k)
    start, cpu_start = time.perf_counter(), time.process_time()
    for k in range(args.steps):
        step(args.warm_up + k)
    per_step = (time.perf_counter() - start) / args.steps
    cpu_per_step = (time.process_time() - cpu_start) / args.steps
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"seconds_per_step={per_step:.6f} cpu_seconds_per_step={cpu_per_step:.6f} "
          f"maxrss_kb={rss}")


if __name__ == "__main__":
    main()
