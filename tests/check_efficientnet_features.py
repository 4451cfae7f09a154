#!/usr/bin/env python3
"""By-hand check of the whole EfficientNet path at full size: a b4 state dict
of either layout -> tools/convert_torchvision.py -> `grad features --arch
efficientnet_b4[_same]` on a real image, against PyTorch on the same image.

Usage: /usr/bin/python3 tests/check_efficientnet_features.py BUILD_DIR [IMAGE]
(needs python3-torch/torchvision; a minute or two). The weights are random
(torch.manual_seed(0)) with random BatchNorm statistics, so the check is of
the arithmetic and the names, not of ImageNet accuracy. The reference for the
efficientnet_pytorch layout is make_efficientnet_golden.py's
SameEfficientNet at b4's coefficients. Prints max|diff| / max|ref| of the
features (layers 3 + 4 at stride 8) and fails above 1e-4.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from PIL import Image  # noqa: E402

from grad_reference import read_safetensors  # noqa: E402
from make_efficientnet_golden import MEAN, STD, SameEfficientNet  # noqa: E402


def preprocess(path, size):
    """As grad's image pipeline: PIL BILINEAR resize, [0, 1], ImageNet normalisation."""
    img = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
    x = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    return ((x - MEAN) / STD).transpose(2, 0, 1)[None].copy()


def randomise_bn(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 1.5)


def main():
    build = sys.argv[1]
    image = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        HERE, "..", "..", "shared", "data", "real", "kolektorsdd", "test", "defect")
    if os.path.isdir(image):
        image = os.path.join(image, sorted(os.listdir(image))[0])
    grad = os.path.join(build, "tools", "grad")
    x = torch.from_numpy(preprocess(image, 224)).double()
    worst = 0.0
    for arch in ("efficientnet_b4", "efficientnet_b4_same"):
        torch.manual_seed(0)
        if arch.endswith("_same"):
            model = SameEfficientNet(1.4, 1.8, (224, 224))
            state_model = model
        else:
            state_model = torchvision.models.efficientnet_b4()
            model = None
        randomise_bn(state_model)
        state_model.eval()
        with torch.no_grad():
            if model is not None:
                out = model.double().layers(x)
            else:
                feats, t = {}, x
                net = state_model.double()
                for i, module in enumerate(net.features[:6]):
                    t = module(t)
                    if i in (3, 5):
                        feats[3 if i == 3 else 4] = t
                out = feats
            ref = torch.cat([F.interpolate(out[k], size=(28, 28), mode="bilinear",
                                           align_corners=True) for k in (3, 4)], dim=1)[0]
        with tempfile.TemporaryDirectory() as tmp:
            pth = os.path.join(tmp, "w.pth")
            torch.save({k: v.float() for k, v in state_model.state_dict().items()}, pth)
            st = os.path.join(tmp, "w.safetensors")
            subprocess.run([sys.executable, os.path.join(HERE, "..", "tools",
                                                         "convert_torchvision.py"),
                            "--pth", pth, "--arch", arch, "-o", st], check=True)
            feat = os.path.join(tmp, "f.safetensors")
            subprocess.run([grad, "features", "--arch", arch, "--weights", st, "--layers", "3,4",
                            "--size", "224", "--stride", "8", image, "-o", feat], check=True)
            got = read_safetensors(feat)[0]["features"].numpy()
        ref = ref.float().numpy()
        err = np.abs(got - ref).max() / np.abs(ref).max()
        print("%s: features %s, max|diff| / max|ref| = %.2e" % (arch, got.shape, err))
        worst = max(worst, err)
    if worst > 1e-4:
        raise SystemExit("FAILED: %.2e > 1e-4" % worst)


if __name__ == "__main__":
    main()
