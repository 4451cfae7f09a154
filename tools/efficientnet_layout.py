"""EfficientNet b0..b7 tensor layouts for tools/convert_torchvision.py and
the golden script: the names and shapes a state dict of torchvision's
efficientnet_b* or of efficientnet_pytorch's EfficientNet holds, derived from
the width/depth coefficients as libgrad's backbone/efficientnet.c derives
them (docs/backbone.md)."""
import math

# Base network b0: expand ratio, kernel, stride, output channels, repeats.
BASE = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]

# name: (width, depth); "<name>_same" is the efficientnet_pytorch layout.
COEFFICIENTS = {
    "efficientnet_b0": (1.0, 1.0), "efficientnet_b1": (1.0, 1.1),
    "efficientnet_b2": (1.1, 1.2), "efficientnet_b3": (1.2, 1.4),
    "efficientnet_b4": (1.4, 1.8), "efficientnet_b5": (1.6, 2.2),
    "efficientnet_b6": (1.8, 2.6), "efficientnet_b7": (2.0, 3.1),
}

# The base stage whose output is libgrad's layer k (1..5).
LAYER_STAGE = {1: 1, 2: 2, 3: 3, 4: 5, 5: 7}


def round_channels(channels, width):
    v = channels * width
    r = max(8, int(v + 4) // 8 * 8)
    if r < 0.9 * v:
        r += 8
    return r


def round_repeats(repeats, depth):
    return int(math.ceil(depth * repeats - 1e-9))


def blocks(width, depth):
    """(stage, index in stage, global index, cin, cexp, csq, cout, kernel, stride, expand)."""
    out = []
    cin = round_channels(32, width)
    g = 0
    for s, (e, k, st, c, r) in enumerate(BASE, start=1):
        cout = round_channels(c, width)
        for j in range(round_repeats(r, depth)):
            out.append((s, j, g, cin, cin * e, max(1, cin // 4), cout, k, st if j == 0 else 1,
                        e != 1))
            cin = cout
            g += 1
    return out


def _bn(names, module, c):
    for part in ("weight", "bias", "running_mean", "running_var"):
        names[module + "." + part] = (c,)


def tensor_shapes(layout, width, depth, last_stage=7, head=True):
    """{name: shape} of a state dict (num_batches_tracked left out), in order.
    layout: "torchvision" or "same" (efficientnet_pytorch). Shapes of the
    classifier are None (any number of classes)."""
    names = {}
    stem = round_channels(32, width)
    tv = layout == "torchvision"
    names["features.0.0.weight" if tv else "_conv_stem.weight"] = (stem, 3, 3, 3)
    _bn(names, "features.0.1" if tv else "_bn0", stem)
    last = stem
    for (s, j, g, cin, cexp, csq, cout, k, st, expand) in blocks(width, depth):
        if s > last_stage:
            break
        if tv:
            p = "features.%d.%d.block." % (s, j)
            m = 0
            if expand:
                names[p + "0.0.weight"] = (cexp, cin, 1, 1)
                _bn(names, p + "0.1", cexp)
                m = 1
            names[p + "%d.0.weight" % m] = (cexp, 1, k, k)
            _bn(names, p + "%d.1" % m, cexp)
            names[p + "%d.fc1.weight" % (m + 1)] = (csq, cexp, 1, 1)
            names[p + "%d.fc1.bias" % (m + 1)] = (csq,)
            names[p + "%d.fc2.weight" % (m + 1)] = (cexp, csq, 1, 1)
            names[p + "%d.fc2.bias" % (m + 1)] = (cexp,)
            names[p + "%d.0.weight" % (m + 2)] = (cout, cexp, 1, 1)
            _bn(names, p + "%d.1" % (m + 2), cout)
        else:
            p = "_blocks.%d." % g
            if expand:
                names[p + "_expand_conv.weight"] = (cexp, cin, 1, 1)
                _bn(names, p + "_bn0", cexp)
            names[p + "_depthwise_conv.weight"] = (cexp, 1, k, k)
            _bn(names, p + "_bn1", cexp)
            names[p + "_se_reduce.weight"] = (csq, cexp, 1, 1)
            names[p + "_se_reduce.bias"] = (csq,)
            names[p + "_se_expand.weight"] = (cexp, csq, 1, 1)
            names[p + "_se_expand.bias"] = (cexp,)
            names[p + "_project_conv.weight"] = (cout, cexp, 1, 1)
            _bn(names, p + "_bn2", cout)
        last = cout
    if head and last_stage == 7:
        if tv:  # features.8: 1x1 to 4 x channels, BN; classifier.1: Linear
            names["features.8.0.weight"] = (4 * last, last, 1, 1)
            _bn(names, "features.8.1", 4 * last)
            names["classifier.1.weight"] = None
            names["classifier.1.bias"] = None
        else:
            h = round_channels(1280, width)
            names["_conv_head.weight"] = (h, last, 1, 1)
            _bn(names, "_bn1", h)
            names["_fc.weight"] = None
            names["_fc.bias"] = None
    return names


def is_efficientnet(state):
    return "features.0.0.weight" in state and "features.1.0.block.0.0.weight" in state \
        or "_conv_stem.weight" in state


def layout_of(state):
    return "same" if "_conv_stem.weight" in state else "torchvision"


def compare(state, expected):
    """(unknown names, missing names, [(name, expected, found)] wrong shapes)."""
    have = {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    unknown = [k for k in have if k not in expected]
    missing = [k for k in expected if k not in have]
    wrong = [(k, s, have[k]) for k, s in expected.items()
             if k in have and s is not None and tuple(s) != have[k]]
    return unknown, missing, wrong


def infer(state):
    """The libgrad arch name of an EfficientNet state dict, or SystemExit
    naming each unknown, missing and mis-shaped tensor of the closest
    candidate."""
    layout = layout_of(state)
    best = None
    for name, (width, depth) in COEFFICIENTS.items():
        unknown, missing, wrong = compare(state, tensor_shapes(layout, width, depth))
        arch = name + ("_same" if layout == "same" else "")
        if not unknown and not missing and not wrong:
            return arch
        score = len(unknown) + len(missing) + len(wrong)
        if best is None or score < best[0]:
            best = (score, arch, unknown, missing, wrong)
    _, arch, unknown, missing, wrong = best
    lines = ["convert_torchvision: not an EfficientNet b0..b7 state dict of the %s layout; "
             "closest is %s:" % (layout, arch)]
    lines += ["  unknown tensor %s" % k for k in unknown]
    lines += ["  missing tensor %s" % k for k in missing]
    lines += ["  tensor %s has shape %s, expected %s" % (k, list(f), list(s)) for k, s, f in wrong]
    raise SystemExit("\n".join(lines))
