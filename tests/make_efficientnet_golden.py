#!/usr/bin/env python3
"""Golden EfficientNet outputs for tests/test_efficientnet.c.

Usage: /usr/bin/python3 tests/make_efficientnet_golden.py [--data DIR] [--out DIR]
(Debian's python3 with python3-torch and python3-torchvision; run by hand,
never in CI; under a minute). --data defaults to ../shared/data/real, --out
to tests/fixtures/efficientnet.

Two reduced networks, small enough to commit, deep enough to matter:

1. tv: torchvision 0.14's own EfficientNet class (symmetric padding,
   BatchNorm eps 1e-5) built from _efficientnet_conf("efficientnet_b0",
   width_mult=0.25, depth_mult=1.0): b0's 16 blocks at a quarter width.
   C side: grad__effnet_arch {"effnet_tv_tiny", 0.25, 1.0, torchvision, 1e-5}.
2. same: SameEfficientNet below, a short re-statement of efficientnet_pytorch's
   EfficientNet (Conv2dStaticSamePadding: TF "same" padding computed for the
   image size when the model is built, BatchNorm eps 1e-3, the state-dict
   names _conv_stem, _bn0, _blocks.N._expand_conv, ...), width 0.25, depth 1.2
   (23 blocks). C side: {"effnet_same_tiny", 0.25, 1.2, same, 1e-3}.

Weights: torch.manual_seed(0) initialisation (torchvision's; the same for
the other), then every BatchNorm's affine parameters drawn (weight
U(0.5, 1.5), bias N(0, 0.2)), then the running statistics ESTIMATED ON REAL
IMAGES (one train-mode pass with momentum=None over 32 images of both
categories at 64 px). Drawing the affine part first keeps each layer's
statistics those of the inputs it sees in eval mode. With random running
statistics instead, the deep stages give the same output for every image
(to float rounding) and a golden tests nothing: the script asserts that
every layer differs across the two golden images (relative std across
images >= 5 % of the overall std). All parameters are then rounded to
float16 values, stored F16 (<name>_weights.safetensors, written by
tools/convert_torchvision.py's writer after its layout check, head and
classifier left out), and the reference uses the very same values.

Goldens <name>_s<H>x<W>.safetensors for sizes 48x48, 41x41 (square; the API
is square) and 36x53 (through the internal non-square entry): `input`
(2 real images, PIL BILINEAR resize, ImageNet normalisation, rounded to
float16 values), `layer1`..`layer5` (float64 forward, stored F32), and for
48x48 the neck `neck_l34_s8` (layers 3 and 4 resized, align_corners=True,
to the stride-8 map, concatenated).
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from PIL import Image
from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from convert_torchvision import write_safetensors  # noqa: E402
import efficientnet_layout as layout  # noqa: E402

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
SIZES = [(48, 48), (41, 41), (36, 53)]


# ---- efficientnet_pytorch's network, restated -----------------------------

class StaticSameConv(nn.Conv2d):
    """Conv2d with TF "same" zero padding fixed for an image size (as
    efficientnet_pytorch's Conv2dStaticSamePadding)."""

    def __init__(self, cin, cout, k, stride=1, groups=1, bias=False, image_size=None):
        super().__init__(cin, cout, k, stride, 0, groups=groups, bias=bias)
        pads = []
        for size in image_size:
            out = -(-size // stride)
            pads.append(max((out - 1) * stride + k - size, 0))
        ph, pw = pads
        self.static_padding = nn.ZeroPad2d((pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))

    def forward(self, x):
        return super().forward(self.static_padding(x))


class MBConv(nn.Module):
    def __init__(self, cin, cexp, csq, cout, k, stride, expand, image_size):
        super().__init__()
        bn = dict(eps=1e-3, momentum=0.01)
        self.expand = expand
        if expand:
            self._expand_conv = StaticSameConv(cin, cexp, 1, image_size=image_size)
            self._bn0 = nn.BatchNorm2d(cexp, **bn)
        self._depthwise_conv = StaticSameConv(cexp, cexp, k, stride, groups=cexp,
                                              image_size=image_size)
        self._bn1 = nn.BatchNorm2d(cexp, **bn)
        out_size = [-(-s // stride) for s in image_size]
        self._se_reduce = StaticSameConv(cexp, csq, 1, bias=True, image_size=out_size)
        self._se_expand = StaticSameConv(csq, cexp, 1, bias=True, image_size=out_size)
        self._project_conv = StaticSameConv(cexp, cout, 1, image_size=out_size)
        self._bn2 = nn.BatchNorm2d(cout, **bn)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        t = F.silu(self._bn0(self._expand_conv(x))) if self.expand else x
        t = F.silu(self._bn1(self._depthwise_conv(t)))
        s = F.adaptive_avg_pool2d(t, 1)
        s = torch.sigmoid(self._se_expand(F.silu(self._se_reduce(s))))
        t = self._bn2(self._project_conv(t * s))
        return t + x if self.residual else t  # drop_connect is training-only


class SameEfficientNet(nn.Module):
    def __init__(self, width, depth, image_size):
        super().__init__()
        stem = layout.round_channels(32, width)
        self._conv_stem = StaticSameConv(3, stem, 3, 2, image_size=image_size)
        self._bn0 = nn.BatchNorm2d(stem, eps=1e-3, momentum=0.01)
        self._blocks = nn.ModuleList()
        self.stage_ends = {}
        size = [-(-s // 2) for s in image_size]
        for (s, j, g, cin, cexp, csq, cout, k, st, expand) in layout.blocks(width, depth):
            self._blocks.append(MBConv(cin, cexp, csq, cout, k, st, expand, size))
            size = [-(-v // st) for v in size]
            self.stage_ends[s] = g
        last = cout
        head = layout.round_channels(1280, width)
        self._conv_head = StaticSameConv(last, head, 1, image_size=size)
        self._bn1 = nn.BatchNorm2d(head, eps=1e-3, momentum=0.01)
        self._fc = nn.Linear(head, 1000)

    def layers(self, x):
        out = {}
        x = F.silu(self._bn0(self._conv_stem(x)))
        ends = {g: k for k, g in ((k, self.stage_ends[s]) for k, s in layout.LAYER_STAGE.items())}
        for g, block in enumerate(self._blocks):
            x = block(x)
            if g in ends:
                out[ends[g]] = x
        return out


class TorchvisionLayers(nn.Module):
    """torchvision's EfficientNet, its features[1], [2], [3], [5], [7]."""

    def __init__(self, width, depth):
        super().__init__()
        setting, _ = _efficientnet_conf("efficientnet_b0", width_mult=width, depth_mult=depth)
        self.net = EfficientNet(setting, 0.2)

    def layers(self, x):
        out = {}
        pick = {i: k for k, i in {1: 1, 2: 2, 3: 3, 4: 5, 5: 7}.items()}
        for i, module in enumerate(self.net.features):
            if i > 7:
                break
            x = module(x)
            if i in pick:
                out[pick[i]] = x
        return out


# ---- Data -------------------------------------------------------------------

def image_paths(data, per_category):
    picks = []
    for sub in ("kolektorsdd/train/good", "magnetic_tile/train/good", "kolektorsdd/test/defect",
                "magnetic_tile/test/crack"):
        folder = os.path.join(data, sub)
        if not os.path.isdir(folder):
            continue
        names = sorted(f for f in os.listdir(folder) if f.lower().endswith((".png", ".jpg")))
        picks += [os.path.join(folder, n) for n in names[:per_category]]
    return picks


def golden_paths(data):
    out = []
    for sub in ("kolektorsdd/test/defect", "magnetic_tile/test/crack"):
        folder = os.path.join(data, sub)
        out.append(os.path.join(folder, sorted(f for f in os.listdir(folder)
                                               if f.lower().endswith((".png", ".jpg")))[0]))
    return out


def preprocess(paths, h, w):
    out = []
    for p in paths:
        img = Image.open(p).convert("RGB").resize((w, h), Image.BILINEAR)
        x = np.asarray(img, dtype=np.float32) / np.float32(255.0)
        out.append(((x - MEAN) / STD).transpose(2, 0, 1))
    return np.stack(out).astype(np.float16).astype(np.float32)  # exact in the F16 fixture


# ---- Weights ------------------------------------------------------------------

def randomise_and_estimate(model, stats_images):
    """Affine BN parameters drawn, then running statistics from real images,
    then everything rounded to float16 values."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the pass
        model.train()
        model.layers(torch.from_numpy(stats_images))
        model.eval()
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())


def run(model, x):
    with torch.no_grad():
        m = model.double().eval()
        out = m.layers(torch.from_numpy(x).double())
        model.float()
    return out


def assert_informative(name, layers):
    """Each layer must differ across the two images (not a constant map)."""
    for k, t in layers.items():
        across = t.std(dim=0).mean().item()
        overall = t.std().item()
        ratio = across / overall if overall > 0 else 0.0
        print("  %s layer%d: std across images / overall std = %.3f" % (name, k, ratio))
        assert ratio >= 0.05, "%s layer%d is (nearly) the same for every image" % (name, k)


def save(path, tensors, meta):
    write_safetensors(path, tensors, meta)
    print("wrote %s (%.0f KB)" % (path, os.path.getsize(path) / 1024))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data", "real"))
    parser.add_argument("--out", default=os.path.join(HERE, "fixtures", "efficientnet"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    stats = preprocess(image_paths(args.data, 8), 64, 64)
    goldens = golden_paths(args.data)
    names = ",".join(os.path.relpath(p, args.data) for p in goldens)
    reference = "torch %s torchvision %s float64" % (torch.__version__, torchvision.__version__)

    configs = [("tv", "torchvision", 0.25, 1.0, "effnet_tv_tiny"),
               ("same", "same", 0.25, 1.2, "effnet_same_tiny")]
    for tag, lay, width, depth, arch in configs:
        torch.manual_seed(0)
        if lay == "torchvision":
            model = TorchvisionLayers(width, depth)
            state_of = lambda m: m.net.state_dict()  # noqa: E731
        else:
            model = SameEfficientNet(width, depth, (64, 64))
            state_of = lambda m: m.state_dict()  # noqa: E731
        randomise_and_estimate(model, stats)
        state = state_of(model)
        # The converter's check: every tensor known, none missing.
        unknown, missing, wrong = layout.compare(state, layout.tensor_shapes(lay, width, depth))
        assert not unknown and not missing and not wrong, (unknown, missing, wrong)
        keep = {k: v.half().numpy() for k, v in state.items()
                if not k.endswith("num_batches_tracked")
                and layout.tensor_shapes(lay, width, depth, head=False).get(k)}
        save(os.path.join(args.out, "%s_weights.safetensors" % tag), keep,
             {"arch": arch, "source": "make_efficientnet_golden.py", "format": "pt"})
        for h, w in SIZES:
            if lay == "same":  # static padding: the model is built for the size
                sized = SameEfficientNet(width, depth, (h, w))
                sized.load_state_dict(state)
            else:
                sized = model
            x = preprocess(goldens, h, w)
            out = run(sized, x)
            assert_informative("%s %dx%d" % (tag, h, w), out)
            tensors = {"input": x.astype(np.float16)}
            for k in sorted(out):
                tensors["layer%d" % k] = out[k].float().numpy()
            if (h, w) == (48, 48):
                fs = -(-48 // 8)
                maps = [F.interpolate(out[k], size=(fs, fs), mode="bilinear", align_corners=True)
                        for k in (3, 4)]
                tensors["neck_l34_s8"] = torch.cat(maps, dim=1).float().numpy()
            save(os.path.join(args.out, "%s_s%dx%d.safetensors" % (tag, h, w)), tensors,
                 {"arch": arch, "images": names, "reference": reference})


if __name__ == "__main__":
    main()
