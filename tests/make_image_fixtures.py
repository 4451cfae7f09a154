#!/usr/bin/python3
"""Writes the image fixtures of tests/test_image.c into tests/fixtures/image.

Usage: /usr/bin/python3 tests/make_image_fixtures.py [SHARED_DATA_DIR]

Needs Debian's /usr/bin/python3 with python3-pil (Pillow 9.4), numpy, and
python3-torch + python3-torchvision for the two ToTensor/Normalize goldens.
SHARED_DATA_DIR defaults to ../shared/data/real (MVTec layout); without it
the goldens computed from real images are not written.

What it writes (all small):
- png_*.png: every PNG variant (bit depths 1-16, gray, gray+alpha, RGB,
  RGBA, palette, tRNS, Adam7), encoded by the small writer below so every
  variant and all five row filters are present. Each has a *.raw with the
  pixels libgrad must return (computed from the known content, and checked
  here against PIL's decoding wherever PIL decodes faithfully).
- jpeg_*.jpg: baseline 4:2:0 / 4:4:4, progressive, gray, Adobe CMYK and
  YCCK, written by PIL; *.raw is PIL's decoding + convert("RGB"/"L").
- bad_*: corrupt, truncated, empty, oversized and non-image files.
- golden_*: PIL BILINEAR / NEAREST resizes of a synthetic pattern (the C
  test regenerates it) and of real images, PIL mode "F" resizes of a float
  plane, torchvision Resize+ToTensor+Normalize tensors, and FNV-1a hashes
  of PIL's decoding of a few real images.
"""
import io
import os
import struct
import sys
import warnings
import zlib

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "image")
SHARED = (sys.argv[1] if len(sys.argv) > 1
          else os.path.join(HERE, "..", "..", "shared", "data", "real"))


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


# ---- a minimal PNG encoder ------------------------------------------------

def chunk(kind, data):
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def ihdr(w, h, depth, color, interlace=0):
    return chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, interlace))


SIGNATURE = b"\x89PNG\r\n\x1a\n"
SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # samples per pixel by colour type


def pack_row(samples, depth):
    if depth == 8:
        return bytes(samples)
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    per = 8 // depth
    out = bytearray()
    for i in range(0, len(samples), per):
        byte = 0
        group = samples[i:i + per]
        for j, s in enumerate(group):
            byte |= s << (8 - depth * (j + 1))
        out.append(byte)
    return bytes(out)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_rows(rows, bpp):
    """Filters each row with type (index % 5): all five filters get used."""
    out = bytearray()
    prev = bytes(len(rows[0])) if rows else b""
    for i, row in enumerate(rows):
        kind = i % 5
        line = bytearray([kind])
        for x in range(len(row)):
            a = row[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]
            line.append((row[x] - pred) & 0xFF)
        out += line
        prev = row
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]


def encode_png(pixels, depth, color, palette=None, trns=None, interlace=False):
    """pixels: h x w x samples integers."""
    h, w, _ = pixels.shape
    spp = SAMPLES[color]
    bpp = max(1, spp * depth // 8)
    raw = b""
    if interlace:
        for x0, y0, dx, dy in ADAM7:
            sub = pixels[y0::dy, x0::dx]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue
            rows = [pack_row(list(r.reshape(-1)), depth) for r in sub]
            raw += filter_rows(rows, bpp)
    else:
        rows = [pack_row(list(r.reshape(-1)), depth) for r in pixels]
        raw = filter_rows(rows, bpp)
    data = SIGNATURE + ihdr(w, h, depth, color, 1 if interlace else 0)
    if palette is not None:
        data += chunk(b"PLTE", bytes(np.asarray(palette, np.uint8).reshape(-1)))
    if trns is not None:
        data += chunk(b"tRNS", trns)
    data += chunk(b"tEXt", b"Comment\x00libgrad test fixture")
    data += chunk(b"IDAT", zlib.compress(raw, 9))
    data += chunk(b"IEND", b"")
    return data


# ---- known content --------------------------------------------------------

W, H = 7, 5


def pattern(w, h, samples, maxval):
    y, x = np.mgrid[0:h, 0:w]
    planes = [((x * 37 + y * 53 + c * 91 + x * y * 7) % (maxval + 1)) for c in range(samples)]
    return np.stack(planes, axis=-1).astype(np.int64)


def pattern16(w, h, samples):
    y, x = np.mgrid[0:h, 0:w]
    planes = [((x * 9001 + y * 4093 + c * 20011 + x * y * 613) % 65536) for c in range(samples)]
    return np.stack(planes, axis=-1).astype(np.int64)


def syn(w, h, ch):
    """The synthetic image the C test also computes (test_image.c: syn_pixel)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    planes = [((x * x * 3 + y * y * 5 + x * y + c * 77) ^ (x * 7 + y * 3)) & 255
              for c in range(ch)]
    return np.stack(planes, axis=-1).astype(np.uint8)


def pil_of(arr):
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)


def save_raw(name, arr):
    write(name, np.ascontiguousarray(arr, dtype=np.uint8).tobytes())


def check_pil(name, expect):
    """PIL's decoding of a fixture, converted as libgrad converts, must equal expect."""
    im = Image.open(os.path.join(OUT, name))
    got = np.asarray(im.convert("L" if expect.shape[2] == 1 else "RGB"))
    got = got.reshape(expect.shape)
    if not np.array_equal(got, expect):
        raise SystemExit("%s: PIL decodes it differently" % name)


def png_fixtures():
    scale = {1: 255, 2: 85, 4: 17}
    for depth in (1, 2, 4):
        g = pattern(W, H, 1, (1 << depth) - 1)
        write("png_gray%d.png" % depth, encode_png(g, depth, 0))
        save_raw("png_gray%d.raw" % depth, g * scale[depth])
        check_pil("png_gray%d.png" % depth, g * scale[depth])
    cases = []  # (name, pixels, depth, colour, expected, pil_agrees, extra)
    g8 = pattern(W, H, 1, 255)
    cases.append(("png_gray8", g8, 8, 0, g8, True, {}))
    cases.append(("png_gray8_trns", g8, 8, 0, g8, True, {"trns": struct.pack(">H", 53)}))
    g16 = pattern16(W, H, 1)
    # PIL opens 16-bit gray as mode "I" and clips to 255 when converting;
    # libgrad keeps the high byte, as PIL does for every other 16-bit type.
    cases.append(("png_gray16", g16, 16, 0, g16 >> 8, False, {}))
    ga8 = pattern(W, H, 2, 255)
    cases.append(("png_graya8", ga8, 8, 4, ga8[:, :, :1], True, {}))
    ga16 = pattern16(W, H, 2)
    cases.append(("png_graya16", ga16, 16, 4, ga16[:, :, :1] >> 8, True, {}))
    rgb8 = pattern(W, H, 3, 255)
    cases.append(("png_rgb8", rgb8, 8, 2, rgb8, True, {}))
    cases.append(("png_rgb8_trns", rgb8, 8, 2, rgb8, True,
                  {"trns": struct.pack(">HHH", 37, 53, 91)}))
    rgb16 = pattern16(W, H, 3)
    cases.append(("png_rgb16", rgb16, 16, 2, rgb16 >> 8, True, {}))
    rgba8 = pattern(W, H, 4, 255)
    cases.append(("png_rgba8", rgba8, 8, 6, rgba8[:, :, :3], True, {}))
    rgba16 = pattern16(W, H, 4)
    cases.append(("png_rgba16", rgba16, 16, 6, rgba16[:, :, :3] >> 8, True, {}))
    pal = np.array([[(i * 67) % 256, (i * 139 + 11) % 256, (255 - i * 29) % 256]
                    for i in range(256)], np.int64)
    for depth in (1, 2, 4, 8):
        idx = pattern(W, H, 1, (1 << depth) - 1)
        n = 1 << depth
        cases.append(("png_pal%d" % depth, idx, depth, 3, pal[idx[:, :, 0]], True,
                      {"palette": pal[:n]}))
    idx = pattern(W, H, 1, 15)
    cases.append(("png_pal4_trns", idx, 4, 3, pal[idx[:, :, 0]], True,
                  {"palette": pal[:16], "trns": bytes(range(0, 160, 10))}))
    # Adam7: a 7x5 image touches every one of the seven passes.
    cases.append(("png_adam7_rgb8", rgb8, 8, 2, rgb8, True, {"interlace": True}))
    cases.append(("png_adam7_rgba16", rgba16, 16, 6, rgba16[:, :, :3] >> 8, True,
                  {"interlace": True}))
    cases.append(("png_adam7_pal4", idx, 4, 3, pal[idx[:, :, 0]], True,
                  {"palette": pal[:16], "interlace": True}))
    g2 = pattern(W, H, 1, 3)
    cases.append(("png_adam7_gray2", g2, 2, 0, g2 * 85, True, {"interlace": True}))
    for name, px, depth, color, expect, pil_agrees, extra in cases:
        write(name + ".png", encode_png(px, depth, color, **extra))
        save_raw(name + ".raw", expect)
        if pil_agrees:
            check_pil(name + ".png", expect.astype(np.uint8))
    # One file from PIL's own encoder (its filter choices, its zlib stream).
    buf = io.BytesIO()
    pil_of(syn(33, 21, 3)).save(buf, "PNG")
    write("png_pil_rgb.png", buf.getvalue())
    save_raw("png_pil_rgb.raw", syn(33, 21, 3))


def find_marker(data, marker):
    pos = data.find(b"\xff" + bytes([marker]))
    if pos < 0:
        raise SystemExit("marker %02x not found" % marker)
    return pos


def jpeg_fixtures():
    jw, jh = 21, 13  # partial MCUs on both axes
    rgb = pattern(jw, jh, 3, 255).astype(np.uint8)
    y, x = np.mgrid[0:jh, 0:jw]
    smooth = np.stack([x * 12, y * 19, (x + y) * 7 + 30], -1).astype(np.uint8)
    variants = [
        ("jpeg_rgb_420", Image.fromarray(smooth), dict(quality=90)),
        ("jpeg_rgb_444", Image.fromarray(rgb), dict(quality=95, subsampling=0)),
        ("jpeg_rgb_422", Image.fromarray(smooth), dict(quality=85, subsampling=1)),
        ("jpeg_progressive", Image.fromarray(smooth), dict(quality=90, progressive=True)),
        ("jpeg_gray", Image.fromarray(smooth[:, :, 1]), dict(quality=90)),
    ]
    # Adobe CMYK: PIL stores inverted samples and an APP14 marker.
    cmyk = np.concatenate([smooth, (x * 5 + 40).astype(np.uint8)[:, :, None]], -1)
    variants.append(("jpeg_cmyk", Image.fromarray(cmyk, "CMYK"), dict(quality=95)))
    for name, im, opts in variants:
        buf = io.BytesIO()
        im.save(buf, "JPEG", **opts)
        write(name + ".jpg", buf.getvalue())
    # YCCK: PIL cannot write it, so store YCC samples as "CMYK" and mark the
    # Adobe transform as 2 (YCCK). The decoder must turn them back into
    # D (its inverted-CMYK output): D_cmy = 255 - RGB(Y, Cb, Cr), D_k = K.
    d = np.concatenate([smooth, (200 + x * 2).astype(np.uint8)[:, :, None]], -1).astype(float)
    r, g, b = 255 - d[:, :, 0], 255 - d[:, :, 1], 255 - d[:, :, 2]
    yy = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168735892 * r - 0.331264108 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418687589 * g - 0.081312411 * b + 128
    stored = np.clip(np.rint(np.stack([yy, cb, cr, d[:, :, 3]], -1)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(255 - stored, "CMYK").save(buf, "JPEG", quality=100, subsampling=0)
    data = bytearray(buf.getvalue())
    app14 = find_marker(data, 0xEE)
    assert data[app14 + 4:app14 + 9] == b"Adobe" and data[app14 + 15] == 0
    data[app14 + 15] = 2
    write("jpeg_ycck.jpg", bytes(data))
    # Sanity: PIL must read it as YCCK, giving about D_k * D_c / 255.
    got = np.asarray(Image.open(io.BytesIO(bytes(data))).convert("RGB")).astype(float)
    want = d[:, :, 3:4] * d[:, :, :3] / 255
    assert np.abs(got - want).max() < 8, np.abs(got - want).max()
    for name in [v[0] for v in variants] + ["jpeg_ycck"]:
        im = Image.open(os.path.join(OUT, name + ".jpg"))
        mode = "L" if im.mode == "L" else "RGB"
        save_raw(name + ".raw", np.asarray(im.convert(mode)))


def bad_fixtures():
    good = open(os.path.join(OUT, "png_pil_rgb.png"), "rb").read()
    write("bad_truncated.png", good[:len(good) * 6 // 10])
    flipped = bytearray(open(os.path.join(OUT, "png_rgb8.png"), "rb").read())
    flipped[16 + 3] ^= 0x01  # low byte of the IHDR width: CRC no longer matches
    write("bad_ihdr_bitflip.png", bytes(flipped))
    write("bad_signature.png", good.replace(b"\r\n", b"\n", 1))  # text-mode transfer
    raw = zlib.compress(b"\x00" * 10)
    broken = bytearray(raw)
    broken[2] ^= 0xFF  # a bad deflate block, correct chunk CRC
    write("bad_zlib.png", SIGNATURE + ihdr(3, 3, 8, 0) + chunk(b"IDAT", bytes(broken)) +
          chunk(b"IEND", b""))
    tiny_idat = chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b"")
    write("bad_huge.png", SIGNATURE + ihdr(100000, 100000, 8, 2) + tiny_idat)
    write("bad_wide.png", SIGNATURE + ihdr(2000000, 1, 8, 0) + tiny_idat)
    write("bad_zero_width.png", SIGNATURE + ihdr(0, 5, 8, 0) + tiny_idat)
    write("bad_empty.png", b"")
    write("bad_text.png", b"This is a text file, not an image.\n")
    jpg = open(os.path.join(OUT, "jpeg_rgb_420.jpg"), "rb").read()
    sos = find_marker(jpg, 0xDA)
    write("bad_truncated.jpg", jpg[:sos + (len(jpg) - sos) // 2])
    sof = bytearray(jpg)
    pos = find_marker(jpg, 0xC0)
    sof[pos + 3] ^= 0x01  # SOF0 length 17 -> 16
    write("bad_sof_bitflip.jpg", bytes(sof))
    deep = bytearray(jpg)
    deep[pos + 4] = 12  # sample precision 8 -> 12
    write("bad_12bit.jpg", bytes(deep))
    lossless = bytearray(jpg)
    lossless[pos + 1] = 0xC3  # SOF0 -> SOF3 (lossless)
    write("bad_lossless.jpg", bytes(lossless))
    huge = bytearray(open(os.path.join(OUT, "jpeg_gray.jpg"), "rb").read())
    pos = find_marker(huge, 0xC0)
    huge[pos + 5:pos + 9] = struct.pack(">HH", 60000, 60000)  # height, width
    write("bad_huge.jpg", bytes(huge))


# ---- resize goldens -------------------------------------------------------

def save_png(name, arr):
    pil_of(arr).save(os.path.join(OUT, name), "PNG", optimize=True)


def torch_tensor(im, size):
    import torch
    from torchvision import transforms
    t = transforms.Compose([
        transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.ToTensor(),
        transforms.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))])
    with torch.no_grad():
        return t(im.convert("RGB")).numpy().astype("<f4")


def resize_goldens():
    for ch, tag in ((3, "rgb"), (1, "gray")):
        big, mid, small = syn(300, 200, ch), syn(120, 80, ch), syn(40, 30, ch)
        # down both ways, one axis only, up, and down one way / up the other
        for src, w, h in ((big, 64, 64), (big, 97, 33), (mid, 120, 23), (mid, 17, 80),
                          (small, 123, 77), (small, 23, 77)):
            for flt, fname in ((Image.BILINEAR, "bilinear"), (Image.NEAREST, "nearest")):
                out = pil_of(src).resize((w, h), flt)
                arr = np.asarray(out).reshape(h, w, ch)
                save_png("golden_syn_%s_%dx%d_%dx%d_%s.png" % (
                    tag, src.shape[1], src.shape[0], w, h, fname), arr)
    write("golden_syn_rgb_tensor48.f32", torch_tensor(pil_of(syn(300, 200, 3)), 48).tobytes())
    # Float planes: PIL mode "F" resizes.
    y, x = np.mgrid[0:28, 0:28]
    plane = (np.sin(x * 0.7) * np.cos(y * 0.45) * 3 + (x * y) % 5).astype("<f4")
    write("golden_plane_28x28.f32", plane.tobytes())
    for w, h in ((97, 61), (13, 9), (28, 57), (5, 28)):
        out = Image.fromarray(plane, "F").resize((w, h), Image.BILINEAR)
        write("golden_plane_%dx%d.f32" % (w, h), np.asarray(out, "<f4").tobytes())


REAL = [
    "kolektorsdd/train/good/kos04_Part4.jpg",
    "magnetic_tile/test/crack/exp1_num_249594.jpg",
    "magnetic_tile/train/good/exp3_num_326615.jpg",
    "magnetic_tile/train/good/exp4_num_2657.jpg",
]
REAL_MASK = "magnetic_tile/ground_truth/crack/exp1_num_249594_mask.png"


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def real_goldens():
    if not os.path.exists(os.path.join(SHARED, "SOURCES.md")):
        print("no shared data at %s: real-image goldens not written" % SHARED)
        return
    lines = []
    for rel in REAL:
        im = Image.open(os.path.join(SHARED, rel))
        mode = "L" if im.mode in ("L", "LA", "I", "1") else "RGB"
        arr = np.asarray(im.convert(mode))
        ch = 1 if mode == "L" else 3
        data = np.frombuffer(arr.tobytes(), np.uint8).tobytes()
        lines.append("%s %d %d %d %016x" % (rel, im.size[0], im.size[1], ch, fnv1a64(data)))
    write("golden_real_decode.txt", ("\n".join(lines) + "\n").encode())
    kos = Image.open(os.path.join(SHARED, REAL[0])).convert("RGB")
    mt = Image.open(os.path.join(SHARED, REAL[1])).convert("RGB")
    # Gray sources: after convert("RGB") all three channels are equal, so
    # the goldens store one channel.
    for im, tag, sizes in ((kos, "kos", ((224, 224), (64, 64))), (mt, "mt", ((64, 64), (97, 61)))):
        for w, h in sizes:
            arr = np.asarray(im.resize((w, h), Image.BILINEAR))
            assert (arr[:, :, 0] == arr[:, :, 1]).all() and (arr[:, :, 0] == arr[:, :, 2]).all()
            save_png("golden_real_%s_%dx%d.png" % (tag, w, h), arr[:, :, :1])
    write("golden_real_kos_tensor32.f32", torch_tensor(kos, 32).tobytes())
    mask = Image.open(os.path.join(SHARED, REAL_MASK))
    for w, h in ((224, 224), (64, 64)):
        arr = np.asarray(mask.resize((w, h), Image.NEAREST))
        save_png("golden_real_mask_%dx%d.png" % (w, h), arr[:, :, None])


def main():
    # PIL suggests converting palette+tRNS images to RGBA; not wanted here.
    warnings.simplefilter("ignore", UserWarning)
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        os.remove(os.path.join(OUT, name))
    png_fixtures()
    jpeg_fixtures()
    bad_fixtures()
    resize_goldens()
    real_goldens()
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print("wrote %d files, %d bytes, to %s" % (len(os.listdir(OUT)), total, OUT))


if __name__ == "__main__":
    main()
