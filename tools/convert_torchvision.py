#!/usr/bin/env python3
"""Convert a torchvision ResNet/WideResNet or an EfficientNet state dict
(torchvision's efficientnet_b0..b7, or efficientnet_pytorch's EfficientNet)
into the safetensors file libgrad loads (grad_backbone_options.weights_path).

Usage (needs PyTorch; on Debian use /usr/bin/python3 with python3-torch and
python3-torchvision):

  /usr/bin/python3 tools/convert_torchvision.py --model wide_resnet50_2 --pretrained \\
      -o wide_resnet50_2.safetensors          # downloads, needs internet
  /usr/bin/python3 tools/convert_torchvision.py --pth resnet18-f37072fd.pth \\
      -o resnet18.safetensors                 # a state dict saved earlier
  /usr/bin/python3 tools/convert_torchvision.py --model resnet18 --seed 0 \\
      -o resnet18-random.safetensors          # torchvision's random init
  /usr/bin/python3 tools/convert_torchvision.py --model efficientnet_b4 --pretrained \
      -o efficientnet_b4.safetensors          # torchvision layout
  /usr/bin/python3 tools/convert_torchvision.py --pth efficientnet-b4-6ed6700e.pth \
      -o efficientnet_b4_same.safetensors     # efficientnet_pytorch's weights file
  /usr/bin/python3 tools/convert_torchvision.py --model efficientnet_b4_same --pretrained \
      -o efficientnet_b4_same.safetensors     # needs the efficientnet_pytorch package

An EfficientNet state dict is recognised by its names (features.0.0.weight:
torchvision; _conv_stem.weight: efficientnet_pytorch, arch efficientnet_bN_same)
and its variant b0..b7 by the shapes (tools/efficientnet_layout.py); a state
dict that matches none is refused with each unknown, missing and mis-shaped
tensor named.

The output holds every floating-point tensor of the state dict as F32
under torchvision's names (conv1.weight, bn1.running_mean,
layer2.0.downsample.0.weight, ..., fc.weight); the integer BatchNorm
counters (num_batches_tracked) are dropped. Metadata: arch (the
architecture, inferred from the tensor shapes), source (where the weights
came from) and format=pt. The file is written by hand (8-byte header
length, JSON header, raw little-endian data), so the `safetensors` package
is not needed.
"""
import argparse
import json
import os
import re
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import efficientnet_layout  # noqa: E402

KNOWN_ARCHS = {
    # name: (bottleneck, blocks per stage, width of layer1's bottleneck)
    "resnet18": (False, (2, 2, 2, 2), 64),
    "resnet34": (False, (3, 4, 6, 3), 64),
    "resnet50": (True, (3, 4, 6, 3), 64),
    "resnet101": (True, (3, 4, 23, 3), 64),
    "wide_resnet50_2": (True, (3, 4, 6, 3), 128),
    "wide_resnet101_2": (True, (3, 4, 23, 3), 128),
}

DTYPES = {"float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32"}


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: numpy array} (float32/float16/int64/int32) and a
    {str: str} metadata map as a safetensors file, atomically (temporary
    file + rename). Tensors are stored in the dict's order."""
    import numpy as np

    header = {}
    blobs = []
    offset = 0
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        dtype = DTYPES.get(array.dtype.name)
        if dtype is None:
            raise ValueError("tensor %s has unsupported dtype %s" % (name, array.dtype))
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data section starts 8-byte aligned
    tmp = path + ".tmp%d" % os.getpid()
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def infer_arch(state):
    """The torchvision architecture whose tensor names and shapes these are."""
    bottleneck = "layer1.0.conv3.weight" in state
    blocks = []
    for k in range(1, 5):
        ids = {int(m.group(1)) for m in (re.match(r"layer%d\.(\d+)\." % k, n) for n in state) if m}
        blocks.append(len(ids))
    width = tuple(state["layer1.0.conv1.weight"].shape)[0] if "layer1.0.conv1.weight" in state else 0
    for name, spec in KNOWN_ARCHS.items():
        if spec == (bottleneck, tuple(blocks), width):
            return name
    raise SystemExit("convert_torchvision: not a torchvision ResNet/WideResNet state dict "
                     "(bottleneck=%s, blocks=%s, layer1 width=%d)" % (bottleneck, blocks, width))


def state_to_arrays(state):
    """Float tensors as float32 numpy arrays, in the state dict's order."""
    out = {}
    for name, tensor in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        if not tensor.is_floating_point():
            raise SystemExit("convert_torchvision: tensor %s is %s, expected floating point"
                             % (name, tensor.dtype))
        out[name] = tensor.detach().to("cpu").float().contiguous().numpy()
    return out


def load_pth(path):
    import torch

    state = torch.load(path, map_location="cpu")
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        state = state.state_dict()  # a whole pickled module
    return {re.sub(r"^module\.", "", k): v for k, v in state.items()}


def build_same_model(name, pretrained, seed):
    """efficientnet_pytorch's EfficientNet for efficientnet_bN_same."""
    import torch

    try:
        from efficientnet_pytorch import EfficientNet
    except ImportError:
        raise SystemExit("convert_torchvision: --model %s needs the efficientnet_pytorch package; "
                         "or save its state dict (torch.save(model.state_dict(), path)) and "
                         "pass --pth" % name)
    variant = name[len("efficientnet_"):-len("_same")]  # "b4"
    torch.manual_seed(seed)
    if pretrained:
        return (EfficientNet.from_pretrained("efficientnet-" + variant),
                "efficientnet_pytorch:efficientnet-%s:pretrained" % variant)
    return (EfficientNet.from_name("efficientnet-" + variant),
            "efficientnet_pytorch:efficientnet-%s:random-seed-%d" % (variant, seed))


def build_model(name, pretrained, weights, seed):
    import torch
    import torchvision

    if name.endswith("_same") and name[:-len("_same")] in efficientnet_layout.COEFFICIENTS:
        return build_same_model(name, pretrained, seed)
    known = list(KNOWN_ARCHS) + list(efficientnet_layout.COEFFICIENTS)
    if name not in known:
        raise SystemExit("convert_torchvision: unknown model %s (known: %s, and "
                         "efficientnet_b0_same..efficientnet_b7_same)" % (name, ", ".join(known)))
    factory = getattr(torchvision.models, name)
    torch.manual_seed(seed)
    if not pretrained:
        try:
            return factory(weights=None), "torchvision:%s:random-seed-%d" % (name, seed)
        except TypeError:  # torchvision < 0.13
            return factory(pretrained=False), "torchvision:%s:random-seed-%d" % (name, seed)
    try:
        enum = torchvision.models.get_model_weights(name)
        chosen = enum[weights] if weights else enum.DEFAULT
        return factory(weights=chosen), "torchvision:%s:%s" % (name, chosen.name)
    except AttributeError:  # torchvision < 0.14
        return factory(pretrained=True), "torchvision:%s:pretrained" % name


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert a torchvision ResNet/WideResNet or an EfficientNet state dict to "
                    "safetensors for libgrad.")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--pth", help="a state dict saved with torch.save (.pth/.pt)")
    src.add_argument("--model", help="a model name, e.g. wide_resnet50_2, efficientnet_b4 "
                                      "(torchvision) or efficientnet_b4_same (efficientnet_pytorch)")
    parser.add_argument("--pretrained", action="store_true",
                        help="with --model: torchvision's pretrained ImageNet weights (downloads)")
    parser.add_argument("--weights", default=None,
                        help="with --pretrained: a weights enum name, e.g. IMAGENET1K_V1 "
                             "(default: torchvision's DEFAULT)")
    parser.add_argument("--seed", type=int, default=0,
                        help="with --model and no --pretrained: torch.manual_seed for the random init")
    parser.add_argument("--arch", help="expected architecture; checked against the tensor shapes")
    parser.add_argument("-o", "--output", required=True, help="the .safetensors file to write")
    args = parser.parse_args(argv)

    if args.pth:
        state = load_pth(args.pth)
        source = "pth:" + os.path.basename(args.pth)
    else:
        model, source = build_model(args.model, args.pretrained, args.weights, args.seed)
        state = model.state_dict()
    if efficientnet_layout.is_efficientnet(state):
        arch = efficientnet_layout.infer(state)
    else:
        arch = infer_arch(state)
    if args.arch and args.arch != arch:
        raise SystemExit("convert_torchvision: the tensors are a %s, not a %s" % (arch, args.arch))
    arrays = state_to_arrays(state)
    write_safetensors(args.output, arrays, {"arch": arch, "source": source, "format": "pt"})
    total = sum(a.size for a in arrays.values())
    print("wrote %s: %s, %d tensors, %.1f M parameters, source %s"
          % (args.output, arch, len(arrays), total / 1e6, source))
    return 0


if __name__ == "__main__":
    sys.exit(main())
