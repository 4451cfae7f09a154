#!/usr/bin/env python3
"""Golden backbone outputs from PyTorch/torchvision for tests/test_backbone.c.

Usage: /usr/bin/python3 tests/make_backbone_golden.py [--data DIR] [--out DIR]
(Debian's python3 with python3-torch and python3-torchvision; run by hand,
never in CI; takes about three minutes, most of it drawing random weights
in pure Python). --data defaults to ../shared/data/real, --out to
tests/fixtures/backbone.

Each golden holds `input` (the exact network input, 2 real images: a
kolektorsdd and a magnetic_tile test image, PIL BILINEAR resize to S x S,
[0,1], ImageNet normalisation, computed here so the C test does not depend on
the image pipeline), the raw stage outputs `layer1`..`layer4` and neck
outputs `neck_l<stages>_s<stride>` (stages bilinearly resized with
align_corners=True to the stride's map and concatenated). References are
computed in float64 from the float32 weights, then stored as float32.

1. resnet18_s64.safetensors: torchvision resnet18, input 64, all four
   stages. Weights: "fixture weights" (below) from seed 1234, which the C
   test draws again with lib/common/rng.c, writes to a torchvision-named
   safetensors file and loads through the file loader, so BatchNorm folding
   with non-trivial statistics is covered without a 45 MB fixture.
2. bottleneck_tiny_*.safetensors: a NON-STANDARD torchvision
   ResNet(Bottleneck, [2, 2, 1, 1], width_per_group=16) (C side: a
   custom grad__resnet_arch "bottleneck_tiny"), torch.manual_seed(0)
   initialisation with random BatchNorm statistics, all rounded to float16
   values, input 32, layer1 and layer2. Its weights file (F16) is written
   by tools/convert_torchvision.py's writer and holds only
   conv1/bn1/layer1/layer2 (later stages must not be needed).
3. wide_resnet50_2_seed7.safetensors: torchvision wide_resnet50_2 with
   libgrad's own seeded initialisation (grad_backbone_options.random_seed
   = 7), replicated here bit for bit, input 32, layer1..layer3.

Random streams (lib/common/rng.c, replicated by Rng below): xoshiro256** seeded
by splitmix64; uniform = (u64 >> 11) * 2^-53; normal = Box-Muller without
caching, sqrt(-2 ln(1 - u1)) * cos(2 pi u2). Convolutions in state-dict
order get float32(0.0 + std * normal), std = sqrt(2 / (Cout * K * K))
(kaiming_normal_, fan_out, ReLU). Library init: BatchNorm weight 1, bias 0,
mean 0, var 1. Fixture weights: after each conv's weight, its BatchNorm
gets weight[c] = float32(0.5 + uniform) for all c, then bias[c] =
float32(0.2 * normal), then running_mean[c] = float32(0.2 * normal), then
running_var[c] = float32(0.5 + uniform).
"""
import argparse
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torchvision.models.resnet import Bottleneck, ResNet

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from convert_torchvision import write_safetensors  # noqa: E402

MASK = (1 << 64) - 1
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class Rng:
    """lib/common/rng.c: xoshiro256** seeded through splitmix64."""

    def __init__(self, seed):
        self.s = []
        x = seed & MASK
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & MASK
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
            self.s.append(z ^ (z >> 31))

    def _u64s(self, count):
        s0, s1, s2, s3 = self.s
        out = [0] * count
        for i in range(count):
            a = (s1 * 5) & MASK
            out[i] = ((((a << 7) | (a >> 57)) & MASK) * 9) & MASK
            t = (s1 << 17) & MASK
            s2 ^= s0
            s3 ^= s1
            s1 ^= s2
            s0 ^= s3
            s2 ^= t
            s3 = ((s3 << 45) | (s3 >> 19)) & MASK
        self.s = [s0, s1, s2, s3]
        return out

    def uniforms(self, count):
        return [(u >> 11) * 2.0 ** -53 for u in self._u64s(count)]

    def normals(self, count):
        u = self.uniforms(2 * count)
        log, cos, sqrt, two_pi = math.log, math.cos, math.sqrt, 2.0 * math.pi
        return [sqrt(-2.0 * log(1.0 - u[2 * i])) * cos(two_pi * u[2 * i + 1])
                for i in range(count)]


def conv_bn_pairs(model, last_stage):
    """(conv, bn) modules in state-dict order, stages up to last_stage."""
    pairs = [(model.conv1, model.bn1)]
    for k in range(1, last_stage + 1):
        for block in getattr(model, "layer%d" % k):
            convs = [block.conv1, block.conv2] + ([block.conv3] if hasattr(block, "conv3") else [])
            bns = [block.bn1, block.bn2] + ([block.bn3] if hasattr(block, "bn3") else [])
            pairs += list(zip(convs, bns))
            if block.downsample is not None:
                pairs.append((block.downsample[0], block.downsample[1]))
    return pairs


def seeded_weights(model, seed, last_stage, fixture_bn):
    """Library init (fixture_bn False) or fixture weights (True)."""
    rng = Rng(seed)
    with torch.no_grad():
        for conv, bn in conv_bn_pairs(model, last_stage):
            cout, _, k, _ = conv.weight.shape
            std = math.sqrt(2.0 / (cout * k * k))
            w = np.array([0.0 + std * v for v in rng.normals(conv.weight.numel())], dtype=np.float32)
            conv.weight.copy_(torch.from_numpy(w.reshape(conv.weight.shape)))
            c = bn.weight.numel()
            if fixture_bn:
                gamma = np.array([0.5 + u for u in rng.uniforms(c)], dtype=np.float32)
                beta = np.array([0.2 * v for v in rng.normals(c)], dtype=np.float32)
                mean = np.array([0.2 * v for v in rng.normals(c)], dtype=np.float32)
                var = np.array([0.5 + u for u in rng.uniforms(c)], dtype=np.float32)
            else:
                gamma, beta = np.ones(c, np.float32), np.zeros(c, np.float32)
                mean, var = np.zeros(c, np.float32), np.ones(c, np.float32)
            for t, v in ((bn.weight, gamma), (bn.bias, beta), (bn.running_mean, mean),
                         (bn.running_var, var)):
                t.copy_(torch.from_numpy(v))


def real_images(data):
    """The first (sorted) defect image of two categories, and their paths."""
    picks = []
    for sub in ("kolektorsdd/test/defect", "magnetic_tile/test/crack"):
        folder = os.path.join(data, sub)
        name = sorted(f for f in os.listdir(folder) if f.lower().endswith((".png", ".jpg")))[0]
        picks.append(os.path.join(folder, name))
    return picks


def preprocess(paths, size):
    """PIL BILINEAR resize of the whole image, [0, 1], ImageNet normalisation."""
    out = []
    for p in paths:
        img = Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)
        x = np.asarray(img, dtype=np.float32) / np.float32(255.0)
        out.append(((x - MEAN) / STD).transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def run(model, x, last_stage):
    """Stage outputs in float64."""
    model = model.double().eval()
    stages = {}
    with torch.no_grad():
        t = model.maxpool(model.relu(model.bn1(model.conv1(torch.from_numpy(x).double()))))
        for k in range(1, last_stage + 1):
            t = getattr(model, "layer%d" % k)(t)
            stages[k] = t
    return stages


def neck(stages, layers, size):
    maps = [F.interpolate(stages[k], size=(size, size), mode="bilinear", align_corners=True)
            for k in layers]
    return torch.cat(maps, dim=1)


def save_golden(path, x, stages, necks, meta):
    tensors = {"input": x}
    for k, t in stages.items():
        tensors["layer%d" % k] = t.float().numpy()
    for name, t in necks.items():
        tensors[name] = t.float().numpy()
    write_safetensors(path, tensors, meta)
    print("wrote %s (%.0f KB)" % (path, os.path.getsize(path) / 1024))


def stage_size(size, stride):
    """Side of the map at a stride (4, 8, 16, 32): ceil-halvings as the convs do."""
    s = (size - 1) // 2 + 1  # stem conv 7x7/2
    s = (s - 1) // 2 + 1     # maxpool 3x3/2
    while stride > 4:
        s = (s - 1) // 2 + 1
        stride //= 2
    return s


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data", "real"))
    parser.add_argument("--out", default=os.path.join(HERE, "fixtures", "backbone"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    paths = real_images(args.data)
    names = ",".join(os.path.relpath(p, args.data) for p in paths)

    # 1. resnet18, fixture weights, input 64, all stages.
    model = torchvision.models.resnet18()
    seeded_weights(model, 1234, 4, fixture_bn=True)
    x = preprocess(paths, 64)
    st = run(model, x, 4)
    necks = {"neck_l23_s8": neck(st, [2, 3], stage_size(64, 8)),
             "neck_l1234_s16": neck(st, [1, 2, 3, 4], stage_size(64, 16))}
    save_golden(os.path.join(args.out, "resnet18_s64.safetensors"), x, st, necks,
                {"arch": "resnet18", "weights": "fixture seed 1234", "images": names,
                 "reference": "torch %s torchvision %s float64" % (torch.__version__,
                                                                   torchvision.__version__)})

    # 2. Non-standard bottleneck net, torch's own init + random BN stats.
    torch.manual_seed(0)
    model = ResNet(Bottleneck, [2, 2, 1, 1], width_per_group=16)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
        # Every float parameter is made exactly representable in float16, so
        # the file can store F16 (half the size, and it covers the loader's
        # F16 conversion) while the reference uses the very same values.
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    keep = {k: v.half().numpy() for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")
            and (k.startswith(("conv1.", "bn1.", "layer1.", "layer2.")))}
    write_safetensors(os.path.join(args.out, "bottleneck_tiny_weights.safetensors"), keep,
                      {"arch": "bottleneck_tiny", "source": "torch.manual_seed(0)", "format": "pt"})
    x = preprocess(paths, 32)
    st = run(model, x, 2)
    save_golden(os.path.join(args.out, "bottleneck_tiny_golden.safetensors"), x, st,
                {"neck_l12_s8": neck(st, [1, 2], stage_size(32, 8))},
                {"arch": "ResNet(Bottleneck, [2, 2, 1, 1], width_per_group=16)",
                 "weights": "bottleneck_tiny_weights.safetensors", "images": names})

    # 3. wide_resnet50_2 with libgrad's seeded init (seed 7), input 32, layer1-3.
    model = torchvision.models.wide_resnet50_2()
    seeded_weights(model, 7, 3, fixture_bn=False)
    x = preprocess(paths, 32)
    st = run(model, x, 3)
    save_golden(os.path.join(args.out, "wide_resnet50_2_seed7.safetensors"), x, st,
                {"neck_l23_s8": neck(st, [2, 3], stage_size(32, 8))},
                {"arch": "wide_resnet50_2", "weights": "libgrad random seed 7", "images": names})


if __name__ == "__main__":
    main()
