"""Golden outputs of the grid feature store from PyTorch (tests/grad_reference.py).

Usage: /usr/bin/python3 tests/make_store_golden.py [--decoder basic|crad] [out.safetensors]
(Debian's python3 with torch; default output tests/fixtures/store/golden.safetensors,
or golden_crad.safetensors for the CRAD decoder: E = 24, so SE reduces to 6)

Writes one safetensors file holding
  - the store ("store.*" tensors and metadata), readable by grad__store_read;
  - input.features (n x C x H x W) and input.noise (n x 2 x H x W);
  - expect.eval: R in inference mode (running statistics);
  - expect.train: R in training mode with the noise (batch statistics);
  - expect.loss: the fusion loss of expect.train (shape [1]);
  - expect.grad.<param>: dLoss/dparam for every parameter;
  - expect.after.<buffer>: the running statistics after the training forward.
The reference runs in float64; the weights are random with scales chosen so
that every path matters (coordinates spread over the grids, some outside
them, some positions with m_p = 0), unlike the method's 0.01 init.
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from grad_reference import GradStore, fusion_loss, fusion_weights, write_safetensors  # noqa: E402

C, H, W, RL, RG, BLOCKS, BATCH = 8, 6, 6, 8, 4, 2, 3
EXPANSION = 24  # the CRAD fixture's bottleneck width


def randomise(store, gen):
    def normal(t, std, mean=0.0):
        t.copy_(torch.randn(t.shape, generator=gen, dtype=torch.float64) * std + mean)

    def uniform(t, lo, hi):
        t.copy_(torch.rand(t.shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo)

    with torch.no_grad():
        normal(store.local_grid, 1.0)
        normal(store.global_grid, 1.0)
        for net in (store.local_net, store.global_net):
            normal(net[0].weight, 0.6)
            normal(net[0].bias, 0.2)
            normal(net[1].weight, 0.6)
            normal(net[1].bias, 0.2)
        for block in store.decoder:
            if store.decoder_type == "crad":
                # He-like scales; SE's second layer and bn2's shift large enough
                # that the hard sigmoid sees both its slope and its flat parts.
                normal(block.expand.weight, (2.0 / (2 * C)) ** 0.5)
                normal(block.depthwise.weight, (2.0 / 9) ** 0.5)
                normal(block.se.reduce.weight, (2.0 / EXPANSION) ** 0.5)
                normal(block.se.expand.weight, 4.0)
                normal(block.project.weight, (2.0 / EXPANSION) ** 0.5)
                bns = (block.bn1, block.bn2, block.bn3)
            else:
                for conv in (block.conv1, block.conv2):
                    normal(conv.weight, (2.0 / (9 * 2 * C)) ** 0.5)
                bns = (block.bn1, block.bn2)
            for bn in bns:
                uniform(bn.weight, 0.5, 1.5)
                normal(bn.bias, 0.1)
                normal(bn.running_mean, 0.1)
                uniform(bn.running_var, 0.5, 2.0)
            if store.decoder_type == "crad":
                normal(block.bn2.bias, 1.0)
        normal(store.out.weight, 0.3)


def check_kinks(trace, decoder):
    """Every piecewise function's inputs stay clear of its kinks (float32 and
    float64 then take the same branch), and each of its pieces is used."""
    for name, t, kinks in trace:
        t = t.detach()
        gap = min(float((t - k).abs().min()) for k in kinks)
        assert gap > 1e-4, f"{name} within {gap:.2e} of a kink"
        lo, hi = min(kinks), max(kinks)
        assert bool((t < lo).any()) and bool((t > hi).any()), f"{name}: a piece is unused"
        if hi > lo:
            assert bool(((t > lo) & (t < hi)).any()), f"{name}: the middle piece is unused"
    print(f"{decoder}: {len(trace)} piecewise inputs clear of their kinks, every piece used")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decoder", choices=["basic", "crad"], default="basic")
    parser.add_argument("out", nargs="?")
    args = parser.parse_args()
    name = "golden.safetensors" if args.decoder == "basic" else "golden_crad.safetensors"
    out = args.out or os.path.join(here, "fixtures", "store", name)
    gen = torch.Generator().manual_seed(20240601)
    crad = args.decoder == "crad"
    store = GradStore(C, H, W, RL, RG, BLOCKS, decoder=args.decoder,
                      expansion=EXPANSION if crad else 0).double()
    randomise(store, gen)

    feats = torch.randn(BATCH, C, H, W, generator=gen, dtype=torch.float64)
    feats[:, :, 1, 2] *= 8.0  # a few positions far from any reconstruction: m_p = 0
    feats[0, :, 4, 4] *= 8.0
    noise = torch.randn(BATCH, 2, H, W, generator=gen, dtype=torch.float64) * 0.4
    # The C side computes in float32: hand it exactly the float32 values.
    feats = feats.float().double()
    noise = noise.float().double()
    with torch.no_grad():
        for p in store.parameters():
            p.copy_(p.float().double())
        for b in store.buffers():
            b.copy_(b.float().double())
    weights = store.store_tensors()

    store.eval()
    with torch.no_grad():
        r_eval = store(feats)

    store.train()
    with torch.no_grad():
        u, _ = store.coordinates(feats)
        coords = u + noise
    trace = []
    for block in store.decoder:
        block.trace = trace if crad else None
    r_train = store(feats, noise)
    for block in store.decoder:
        block.trace = None
    if crad:
        check_kinks(trace, args.decoder)
    loss = fusion_loss(r_train, feats)
    loss.backward()

    # Guard the fixture against borderline cases where float32 and float64
    # could disagree on a rounded step or a ReLU.
    with torch.no_grad():
        e = torch.mean((r_train - feats) ** 2, dim=1) * 0.05
        assert (e - 0.5).abs().min() > 1e-3, "a position sits on the rounding threshold"
        m0 = int((e >= 0.5).sum())
        outside = int((coords.abs() > 1).sum())
        s = fusion_weights(r_train, feats)
    assert m0 > 0 and outside > 0, (m0, outside)
    print(f"positions with m=0: {m0}, local coordinates outside [-1,1]: {outside}, "
          f"loss {loss.item():.6f}, s in [{s.min().item():.3f}, {s.max().item():.3f}]")

    tensors = dict(weights)
    tensors["input.features"] = feats
    tensors["input.noise"] = noise
    tensors["expect.eval"] = r_eval
    tensors["expect.train"] = r_train.detach()
    tensors["expect.loss"] = loss.detach().reshape(1)
    for name, p in store.named_parameters():
        tensors["expect.grad.store." + name] = p.grad
    for name, b in store.named_buffers():
        if not name.endswith("num_batches_tracked"):
            tensors["expect.after.store." + name] = b
    meta = store.metadata()
    meta["generator"] = "tests/make_store_golden.py, torch " + torch.__version__
    os.makedirs(os.path.dirname(out), exist_ok=True)
    write_safetensors(out, tensors, meta)
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
