#!/usr/bin/python3
"""Golden fixtures for the training code (tests/test_optim.c, tests/test_train.c).

Usage (Debian's Python, which has torch 1.13; the pyenv python3 has no torch):
    /usr/bin/python3 tests/make_train_golden.py [--only optim|store|store-crad]

Writes, under tests/fixtures/train/:
  optim_golden.safetensors  torch.optim.AdamW with two parameter groups,
      StepLR and clip_grad_norm_ over five steps on given gradients.
  store_train_golden.safetensors  the grid feature store of docs/method.md sections 4-7
      (tests/grad_reference.py, docs/method.md initialisation) trained for two
      epochs of two batches (4 images, then the partial batch of 2), StepLR
      x0.1 after the first epoch, coordinate noise on one batch, clipping at
      0.1: the initial store ("store.*" tensors and metadata, readable by
      grad__store_read), "input.features", "input.noise", the store after
      the four steps ("after.store.*") and per-step losses and gradient
      norms ("loss.K", "norm.K" metadata).
  store_train_golden_crad.safetensors  the same with CRAD's decoder (two
      MobileNetV3 bottlenecks of expansion 16) instead of the BasicBlock.
Each file stays far below 1 MB. PyTorch is the independent reference; the C
tests read only these files.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "train")


def save_safetensors(path, tensors, metadata):
    """A minimal safetensors writer (F32 only), so no extra package is needed."""
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs, offset = [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(np.shape(array)),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def optim_golden():
    torch.manual_seed(0)
    shapes = {"grid": (1, 4, 3, 3), "net": (5, 3), "net2": (7,)}
    params = {k: torch.nn.Parameter(torch.randn(*s)) for k, s in shapes.items()}
    tensors = {f"{k}.init": p.detach().numpy().copy() for k, p in params.items()}
    opt = torch.optim.AdamW([{"params": [params["grid"]], "lr": 0.1},
                             {"params": [params["net"], params["net2"]], "lr": 1e-3}],
                            betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    meta = {"steps": 5, "clip_norm": 0.1, "lr_step_epochs": 2, "lr_gamma": 0.1,
            "lr_grid": 0.1, "lr_net": 1e-3}
    # Total norms alternate above and below the clip threshold.
    scales = [0.5, 0.03, 2.0, 0.08, 1.0]
    for step, scale in enumerate(scales):
        grads = {k: torch.randn(*s) for k, s in shapes.items()}
        norm = torch.sqrt(sum((g * g).sum() for g in grads.values()))
        for k in grads:
            grads[k] = grads[k] * (scale / norm)
            tensors[f"{k}.grad.{step}"] = grads[k].numpy().copy()
            params[k].grad = grads[k].clone()
        total = torch.nn.utils.clip_grad_norm_(list(params.values()), 0.1)
        meta[f"norm.{step}"] = repr(float(total))
        opt.step()
        sched.step()  # one "epoch" per step
        for k, p in params.items():
            tensors[f"{k}.after.{step}"] = p.detach().numpy().copy()
    save_safetensors(os.path.join(OUT, "optim_golden.safetensors"), tensors, meta)


STORE = dict(channels=8, height=6, width=6, local_res=8, global_res=4, blocks=1)
STORE_CRAD = dict(STORE, blocks=2, decoder="crad", expansion=16)
BATCHES = [[0, 1, 2, 3], [4, 5]]  # one epoch: a full batch of 4, then the partial one
EPOCHS = 2                         # StepLR with step 1: lr x0.1 in the second epoch
NOISE_AT = (1, 0)                  # (epoch, batch) that gets coordinate noise


def smooth_fields(gen, n, c, h, w):
    """Random fields that vary smoothly over the map, plus a little noise."""
    coarse = torch.randn(n, c, 3, 3, generator=gen)
    fine = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear",
                                           align_corners=True)
    return fine + 0.1 * torch.randn(n, c, h, w, generator=gen)


def store_golden(config=STORE, filename="store_train_golden.safetensors"):
    sys.path.insert(0, HERE)
    from grad_reference import GradStore, fusion_loss, write_safetensors

    torch.manual_seed(1234)  # method_init draws from torch's global generator
    store = GradStore(**config)
    gen = torch.Generator().manual_seed(99)
    n = sum(len(b) for b in BATCHES)
    feats = smooth_fields(gen, n, STORE["channels"], STORE["height"], STORE["width"])
    noise = 0.05 * torch.randn(len(BATCHES[NOISE_AT[1]]), 2, STORE["height"], STORE["width"],
                               generator=gen)
    tensors = dict(store.store_tensors())
    tensors["input.features"] = feats
    tensors["input.noise"] = noise
    meta = store.metadata()
    opt = torch.optim.AdamW([{"params": store.grid_parameters(), "lr": 0.1},
                             {"params": store.net_parameters(), "lr": 1e-3}],
                            betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.1)
    store.train()
    step = 0
    for epoch in range(EPOCHS):
        for b, idx in enumerate(BATCHES):
            batch = feats[idx]
            opt.zero_grad()
            rec = store(batch, noise if (epoch, b) == NOISE_AT else None)
            loss = fusion_loss(rec, batch)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(list(store.parameters()), 0.1)
            opt.step()
            meta[f"loss.{step}"] = repr(float(loss))
            meta[f"norm.{step}"] = repr(float(norm))
            print(f"step {step}: loss {float(loss):.6g} grad norm {float(norm):.6g}")
            step += 1
        sched.step()
    meta["steps"] = str(step)
    for name, t in store.store_tensors().items():
        tensors["after." + name] = t
    path = os.path.join(OUT, filename)
    write_safetensors(path, tensors, meta)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["optim", "store", "store-crad"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    if args.only in (None, "optim"):
        optim_golden()
    if args.only in (None, "store"):
        store_golden()
    if args.only in (None, "store-crad"):
        store_golden(STORE_CRAD, "store_train_golden_crad.safetensors")


if __name__ == "__main__":
    main()
