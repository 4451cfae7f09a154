"""PyTorch reference of libgrad's grid feature store (docs/method.md sections 4-7).

Run with Debian's /usr/bin/python3 (it has torch; the python3 first on PATH
may not). Import it from a fixture script in tests/:

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from grad_reference import GradStore, fusion_loss, read_safetensors, ...

GradStore follows docs/method.md, not the official code line by line; its
state_dict() names, prefixed with "store.", are the model file's tensor
names (store_tensors() / load_store_tensors()). Safetensors files are read
and written by hand (json + struct), so nothing beyond torch is needed.
"""

import json
import math
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

PREFIX = "store."
CONFIG_KEYS = ("channels", "height", "width", "local_res", "global_res", "blocks")


# ---- safetensors -----------------------------------------------------------

_DTYPES = {"F32": (torch.float32, 4), "F64": (torch.float64, 8), "F16": (torch.float16, 2)}


def read_safetensors(path):
    """Returns ({name: float32 tensor}, {metadata key: value})."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        dtype, size = _DTYPES[info["dtype"]]
        start, end = info["data_offsets"]
        data = bytearray(blob[base + start:base + end])
        t = torch.frombuffer(data, dtype=dtype) if end > start else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(info["shape"]).to(torch.float32).clone()
    return tensors, meta


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: tensor} as little-endian F32, in the given order."""
    header, chunks, offset = {}, [], 0
    for name, t in tensors.items():
        data = t.detach().to(torch.float32).contiguous().cpu().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # keep the data 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)


# ---- the model ---------------------------------------------------------------

class BasicBlock(nn.Module):
    """ResNet BasicBlock at `ch` channels, stride 1, no downsample."""

    def __init__(self, ch):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch, eps=1e-5, momentum=0.1)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch, eps=1e-5, momentum=0.1)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + x)


def hard_swish(x):
    return x * F.relu6(x + 3.0) / 6.0


def hard_sigmoid(x):
    return F.relu6(x + 3.0) / 6.0


class SqueezeExcite(nn.Module):
    """x * hsigmoid(W2 relu(W1 mean(x))), reduction 4, no biases (CRAD's SEModule)."""

    def __init__(self, ch):
        super().__init__()
        self.reduce = nn.Linear(ch, ch // 4, bias=False)
        self.expand = nn.Linear(ch // 4, ch, bias=False)
        self.trace = None

    def forward(self, x):
        pre = self.reduce(x.mean(dim=(2, 3)))
        gate = self.expand(F.relu(pre))
        if self.trace is not None:
            self.trace += [("SE ReLU input", pre, (0.0,)), ("hard sigmoid input", gate, (-3.0, 3.0))]
        return x * hard_sigmoid(gate)[:, :, None, None]


class Bottleneck(nn.Module):
    """CRAD's decoder block: MobileNetV3 bottleneck at `ch` channels, expansion
    `exp`, 3x3 depthwise, SE before the second hard-swish, BN on the
    projection, residual without activation (docs/store.md). trace, when a
    list, receives (name, tensor, kinks) of every piecewise function's input."""

    def __init__(self, ch, exp):
        super().__init__()
        self.expand = nn.Conv2d(ch, exp, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(exp, eps=1e-5, momentum=0.1)
        self.depthwise = nn.Conv2d(exp, exp, 3, 1, 1, groups=exp, bias=False)
        self.bn2 = nn.BatchNorm2d(exp, eps=1e-5, momentum=0.1)
        self.se = SqueezeExcite(exp)
        self.project = nn.Conv2d(exp, ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(ch, eps=1e-5, momentum=0.1)
        self.trace = None

    def forward(self, x):
        self.se.trace = self.trace
        h1 = self.bn1(self.expand(x))
        m = self.se(self.bn2(self.depthwise(hard_swish(h1))))
        if self.trace is not None:
            self.trace += [("hard-swish input", h1, (-3.0, 3.0)),
                           ("hard-swish input", m, (-3.0, 3.0))]
        return x + self.bn3(self.project(hard_swish(m)))


class GradStore(nn.Module):
    """Grids, coordinate nets and decoder: F (n x C x H x W) -> R.
    decoder "basic": `blocks` BasicBlocks; "crad": `blocks` bottlenecks of
    expansion `expansion`."""

    def __init__(self, channels, height, width, local_res=8, global_res=4, blocks=7,
                 decoder="basic", expansion=0):
        super().__init__()
        c, h, w = channels, height, width
        self.config = dict(channels=c, height=h, width=w, local_res=local_res,
                           global_res=global_res, blocks=blocks)
        self.decoder_type, self.expansion = decoder, expansion
        # Shapes as grid_sample inputs: 1 x C x Rl x Rl and 1 x CHW x Rg x Rg.
        self.local_grid = nn.Parameter(torch.empty(1, c, local_res, local_res))
        self.global_grid = nn.Parameter(torch.empty(1, c * h * w, global_res, global_res))
        self.local_net = nn.ModuleList([nn.Conv2d(c, c, 1), nn.Conv2d(c, 2, 1)])
        self.global_net = nn.ModuleList([nn.Linear(c, c), nn.Linear(c, 2)])
        if decoder == "crad":
            self.decoder = nn.ModuleList([Bottleneck(2 * c, expansion) for _ in range(blocks)])
        else:
            self.decoder = nn.ModuleList([BasicBlock(2 * c) for _ in range(blocks)])
        self.out = nn.Conv2d(2 * c, c, 1, bias=False)
        method_init(self)

    def coordinates(self, feats):
        u = torch.tanh(self.local_net[1](torch.tanh(self.local_net[0](feats))))
        g = feats.mean(dim=(2, 3))
        v = torch.tanh(self.global_net[1](torch.tanh(self.global_net[0](g))))
        return u, v

    def forward(self, feats, coord_noise=None):
        n, c, h, w = feats.shape
        u, v = self.coordinates(feats)
        if coord_noise is not None:
            u = u + coord_noise
        # grid[..., 0] is x (width), grid[..., 1] is y (height).
        glob = F.grid_sample(self.global_grid, v.view(1, n, 1, 2), mode="bilinear",
                             padding_mode="zeros", align_corners=False)
        glob = glob.permute(2, 3, 0, 1).reshape(n, c, h, w)
        loc = F.grid_sample(self.local_grid.expand(n, -1, -1, -1), u.permute(0, 2, 3, 1),
                            mode="bilinear", padding_mode="zeros", align_corners=False)
        x = torch.cat([glob, loc], dim=1)
        for block in self.decoder:
            x = block(x)
        return self.out(x)

    def store_tensors(self):
        """{model-file name: tensor}: parameters and running statistics."""
        return {PREFIX + k: v.detach().clone() for k, v in self.state_dict().items()
                if not k.endswith("num_batches_tracked")}

    def load_store_tensors(self, tensors):
        state = {k[len(PREFIX):]: v for k, v in tensors.items() if k.startswith(PREFIX)}
        for k, v in self.state_dict().items():
            if k.endswith("num_batches_tracked"):
                state[k] = v
        self.load_state_dict(state, strict=True)

    def metadata(self):
        crad = self.decoder_type == "crad"
        meta = {PREFIX + "format": "2" if crad else "1"}
        meta.update({PREFIX + k: str(v) for k, v in self.config.items()})
        if crad:
            meta[PREFIX + "decoder"] = "crad"
            meta[PREFIX + "expansion"] = str(self.expansion)
        return meta

    def grid_parameters(self):
        return [self.local_grid, self.global_grid]

    def net_parameters(self):
        grids = {id(p) for p in self.grid_parameters()}
        return [p for p in self.parameters() if id(p) not in grids]


def method_init(store):
    """docs/method.md section 6 with torch's generator: conv and linear weights
    N(0, 0.01^2), biases 0, BatchNorm 1 / 0, grids Xavier-normal."""
    with torch.no_grad():
        nn.init.xavier_normal_(store.local_grid)
        nn.init.xavier_normal_(store.global_grid)
        for m in store.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()
                m.reset_running_stats()


def store_from_tensors(tensors, metadata):
    cfg = {k: int(metadata[PREFIX + k]) for k in CONFIG_KEYS}
    if metadata.get(PREFIX + "decoder", "basic") == "crad":
        cfg.update(decoder="crad", expansion=int(metadata[PREFIX + "expansion"]))
    store = GradStore(**cfg)
    store.load_store_tensors(tensors)
    return store


def fusion_weights(rec, feats):
    """s per position (n x 1 x H x W), as docs/method.md section 7."""
    e = torch.mean((rec - feats) ** 2, dim=1)
    m = 1 - torch.round((e * 0.05).clamp(0, 1))
    cos = F.cosine_similarity(rec, feats, dim=1)
    return (0.3 * m + 0.7 * cos).unsqueeze(1)


def fusion_loss(rec, feats):
    """The training loss: MSE between the fused reconstruction and F."""
    s = fusion_weights(rec, feats)
    fused = s * feats + (1 - s) * rec
    return F.mse_loss(fused, feats)


def xavier_std(shape):
    """torch's xavier_normal_ std for a 1 x K x R x R grid."""
    field = shape[2] * shape[3]
    return math.sqrt(2.0 / (shape[1] * field + shape[0] * field))
