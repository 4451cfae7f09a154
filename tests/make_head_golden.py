#!/usr/bin/python3
"""Golden fixtures for the scoring head and the evaluation metrics.

Usage: /usr/bin/python3 tests/make_head_golden.py [OUT_DIR]
(Debian's python3 with python3-torch; the pyenv python3 has no torch.)
Writes tests/fixtures/head/ by default: raw little-endian float32 / uint8
.bin files and expected.txt ("name value" lines). CI never runs this.

Head: for random R, F the fused anomaly map with torch ops as the official
code computes it (cosine_similarity, round, F.interpolate bilinear
align_corners=True, F.avg_pool2d(21, 1, 10) counting the padding,
F.avg_pool2d(32, 1) then max).
Metrics: reference values by brute force in numpy (pairwise AUROC, every
threshold for F1) and AUPRO re-implemented after the MVTec AD evaluation
code (argsort, cumsum, merged ties, trapezoid with interpolation at the
limit), with 8-connected regions (scipy.ndimage.label with a 3x3 structure
of ones; scipy is not installed here, so labelled by a BFS below).
"""
import os
import sys
from bisect import bisect

import numpy as np
import torch
import torch.nn.functional as F

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "fixtures", "head")
os.makedirs(OUT, exist_ok=True)
expected = []


def save(name, array, dtype):
    np.ascontiguousarray(array, dtype=dtype).astype(np.dtype(dtype).newbyteorder("<")).tofile(
        os.path.join(OUT, name))


def head_case(name, seed, c, h, w, size):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(1, c, h, w, generator=g)
    # Spatially varying noise: e_p spans both sides of 10, so m_p is 0 and 1.
    sigma = torch.linspace(0.05, 6.0, h * w)[torch.randperm(h * w, generator=g)].reshape(1, 1, h, w)
    r = f + sigma * torch.randn(1, c, h, w, generator=g)
    e = ((r - f) ** 2).mean(dim=1, keepdim=True)
    m = 1 - torch.round(torch.clamp(0.05 * e, 0, 1))
    cos = F.cosine_similarity(r, f, dim=1).unsqueeze(1)
    s = 0.3 * m + 0.7 * cos
    fused = s * f + (1 - s) * r
    a = torch.sqrt(((fused - f) ** 2).sum(dim=1, keepdim=True))
    up = F.interpolate(a, size=(size, size), mode="bilinear", align_corners=True)
    smooth = F.avg_pool2d(up, 21, stride=1, padding=10)
    score = F.avg_pool2d(smooth, 32, stride=1).max()
    save(f"{name}_R.bin", r[0].numpy(), np.float32)
    save(f"{name}_F.bin", f[0].numpy(), np.float32)
    save(f"{name}_a.bin", a[0, 0].numpy(), np.float32)
    save(f"{name}_up.bin", up[0, 0].numpy(), np.float32)
    save(f"{name}_map.bin", smooth[0, 0].numpy(), np.float32)
    expected.append((f"{name}_shape", f"{c} {h} {w} {size}"))
    expected.append((f"{name}_score", repr(float(score))))
    expected.append((f"{name}_m_zero", str(int((m == 0).sum()))))


def auroc_pairs(scores, labels):
    pos = scores[labels == 1].astype(np.float64)
    neg = scores[labels == 0].astype(np.float64)
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return (greater + 0.5 * ties) / (len(pos) * len(neg))


def f1_max_all(scores, labels):
    best, best_t = -1.0, None
    npos = labels.sum()
    for t in sorted(set(scores.tolist()), reverse=True):
        pred = scores >= t
        tp = (pred & (labels == 1)).sum()
        fp = (pred & (labels == 0)).sum()
        f1 = 2 * tp / (tp + fp + npos)
        if f1 > best:
            best, best_t = f1, t
    return best, best_t


def label8(mask):
    h, w = mask.shape
    labels = np.zeros((h, w), dtype=np.int64)
    count = 0
    for y0 in range(h):
        for x0 in range(w):
            if mask[y0, x0] and not labels[y0, x0]:
                count += 1
                labels[y0, x0] = count
                todo = [(y0, x0)]
                while todo:
                    y, x = todo.pop()
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            ny, nx = y + dy, x + dx
                            if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not labels[ny, nx]:
                                labels[ny, nx] = count
                                todo.append((ny, nx))
    return labels, count


def pro_curve(maps, masks):
    fp_changes, pro_changes, ok, regions = [], [], 0, 0
    for gt in masks:
        labels, n = label8(gt)
        regions += n
        ok_mask = labels == 0
        ok += ok_mask.sum()
        pc = np.zeros(gt.shape)
        for k in range(1, n + 1):
            region = labels == k
            pc[region] = 1.0 / region.sum()
        fp_changes.append(ok_mask.astype(np.float64))
        pro_changes.append(pc)
    scores = np.array(maps, dtype=np.float64).ravel()
    order = np.argsort(scores, kind="stable")[::-1]
    scores = scores[order]
    fprs = np.cumsum(np.array(fp_changes).ravel()[order]) / ok
    pros = np.cumsum(np.array(pro_changes).ravel()[order]) / regions
    keep = np.append(np.diff(scores) != 0, True)
    fprs, pros = np.minimum(fprs[keep], 1), np.minimum(pros[keep], 1)
    return np.concatenate(([0.0], fprs, [1.0])), np.concatenate(([0.0], pros, [1.0])), regions


def trapezoid(x, y, x_max):
    correction = 0.0
    if x_max not in x:
        ins = bisect(x, x_max)
        y_interp = y[ins - 1] + (y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1])
        correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1])
    keep = x <= x_max
    x, y = x[keep], y[keep]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction)


def metrics_case(seed):
    rng = np.random.default_rng(seed)
    # Image level: quantised scores so that ties occur across the labels.
    labels = (rng.random(200) < 0.4).astype(np.uint8)
    scores = np.round(rng.normal(labels * 0.8, 1.0) * 8) / 8
    scores = scores.astype(np.float32)
    save("metrics_scores.bin", scores, np.float32)
    save("metrics_labels.bin", labels, np.uint8)
    expected.append(("image_auroc", repr(auroc_pairs(scores, labels))))
    f1, t = f1_max_all(scores, labels)
    expected.append(("image_f1", repr(float(f1))))
    expected.append(("image_f1_threshold", repr(float(t))))

    # Pixel level: 6 maps of 24 x 32; the first two are good images.
    n, h, w = 6, 24, 32
    masks = np.zeros((n, h, w), dtype=np.uint8)
    for i in range(2, n):
        for _ in range(1 + i % 3):
            y, x = rng.integers(0, h - 6), rng.integers(0, w - 8)
            masks[i, y:y + rng.integers(1, 6), x:x + rng.integers(1, 8)] = 255
    # Two blocks touching only at a corner: one region with 8-connectivity.
    masks[5, 17:24, 25:32] = 0
    masks[5, 20:22, 28] = 255
    masks[5, 22:24, 29:31] = 255
    yy, xx = np.mgrid[0:h, 0:w]
    maps = rng.normal(0, 1, (n, h, w)) + 1.5 * (masks > 0) + 0.02 * xx
    maps = (np.round(maps * 16) / 16).astype(np.float32)  # ties
    save("metrics_maps.bin", maps, np.float32)
    save("metrics_masks.bin", masks, np.uint8)
    flat_labels = (masks.ravel() > 0).astype(np.uint8)
    expected.append(("pixel_auroc", repr(auroc_pairs(maps.ravel(), flat_labels))))
    f1, t = f1_max_all(maps.ravel(), flat_labels)
    expected.append(("pixel_f1", repr(float(f1))))
    expected.append(("pixel_f1_threshold", repr(float(t))))
    fprs, pros, regions = pro_curve(list(maps), list(masks > 0))
    expected.append(("pixel_regions", str(regions)))
    for limit in (0.3, 0.05, 1.0):
        expected.append((f"aupro_{limit}", repr(trapezoid(fprs, pros, limit) / limit)))


head_case("case1", 1, 8, 28, 28, 224)
head_case("case2", 2, 5, 7, 9, 40)
metrics_case(3)
with open(os.path.join(OUT, "expected.txt"), "w") as out:
    out.write("# made by tests/make_head_golden.py with torch %s\n" % torch.__version__)
    for key, value in expected:
        out.write(f"{key} {value}\n")
print("wrote", OUT)
