#!/usr/bin/python3
"""Independent reference of convpca's image preprocessing (dataset/image.go), for its tests.

Pillow only decodes; the geometry, the resampling (Pillow's BILINEAR convention, antialiased,
in float64 without rounding) and the normalisation are numpy. Writes the samples of the images,
in the order given, to an .npy file of float32.

    image_reference.py --size HxW --mode stretch|crop|pad [--crop-ratio R] [--pad-value V]
        [--scale S] [--mean M[,M,M]] [--std S[,S,S]] [--channels rgb|bgr|gray]
        [--layout nchw|nhwc] --out OUT.npy IMAGE...
    image_reference.py --pixels --out OUT.npy IMAGE    # step 1 only: h x w x 3 RGB, float64
"""
import argparse
import math

import numpy as np
from PIL import Image


def pixels(path, gray):
    """Step 1: h x w x C values on a 0-255 scale (C = 1 for gray, else 3)."""
    im = Image.open(path)
    im.load()
    if im.mode == "L":
        a = np.asarray(im, dtype=np.float64)[..., None]
    elif im.mode == "1":
        a = np.asarray(im, dtype=np.float64)[..., None] * 255
    elif im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im).astype(np.float64)[..., None] / 257
    else:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float64)
        if gray:
            r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
            return (0.299 * r + 0.587 * g + 0.114 * b)[..., None]
        return rgb
    return a if gray else np.repeat(a, 3, axis=2)


def place(h, w, H, W, mode, ratio):
    """Step 2: resized size rh x rw, crop offsets top, left, and the placed size oh x ow."""
    if mode == "crop":
        Rh, Rw = int(math.floor(H / ratio)), int(math.floor(W / ratio))
        if Rh * w >= Rw * h:
            rh, rw = Rh, int(Rh * w / h)
        else:
            rh, rw = int(Rw * h / w), Rw
        rh, rw = max(rh, H), max(rw, W)
        top = int(round((rh - H) / 2.0))  # Python rounds half to even, as torchvision does
        left = int(round((rw - W) / 2.0))
        return rh, rw, top, left, H, W
    if mode == "pad":
        c = math.ceil(H * (w / h))
        if c > W:
            rh = min(H, max(1, int(math.ceil(W * (h / w)))))
            return rh, W, 0, 0, rh, W
        return H, int(c), 0, 0, H, int(c)
    return H, W, 0, 0, H, W


def taps(n, m, first, count):
    """Step 3: the count x n matrix of weights of output pixels first.. of a resize n -> m."""
    scale = n / m
    fs = max(scale, 1.0)
    support = fs
    out = np.zeros((count, n))
    for k in range(count):
        center = (first + k + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n)
        ws = []
        for j in range(lo, hi):
            x = abs((j - center + 0.5) / fs)
            ws.append(1 - x if x < 1 else 0.0)
        s = 0.0
        for v in ws:
            s += v
        if s != 0:
            ws = [v / s for v in ws]
        out[k, lo:hi] = ws
    return out


def sample(path, a):
    H, W = a.size
    gray = a.channels == "gray"
    img = pixels(path, gray)
    h, w, c = img.shape
    rh, rw, top, left, oh, ow = place(h, w, H, W, a.mode, a.crop_ratio)
    wy = taps(h, rh, top, oh)
    wx = taps(w, rw, left, ow)
    tmp = np.einsum("xw,hwc->hxc", wx, img)
    res = np.einsum("yh,hxc->yxc", wy, tmp)
    if a.channels == "bgr":
        res = res[..., ::-1]
    mean = np.array(a.mean if len(a.mean) == c else a.mean * c, dtype=np.float64)
    std = np.array(a.std if len(a.std) == c else a.std * c, dtype=np.float64)
    vals = (res * a.scale - mean) / std
    out = np.full((H, W, c), a.pad_value, dtype=np.float64)
    out[:oh, :ow, :] = vals
    out = out.astype(np.float32)
    if a.layout == "nchw":
        out = out.transpose(2, 0, 1)
    return out


def floats(s):
    return [float(v) for v in s.split(",")]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=lambda s: tuple(int(v) for v in s.split("x")))
    p.add_argument("--mode", default="stretch")
    p.add_argument("--crop-ratio", type=float, default=0.875)
    p.add_argument("--pad-value", type=float, default=0.0)
    p.add_argument("--scale", type=float, default=1 / 255)
    p.add_argument("--mean", type=floats, default=[0.0])
    p.add_argument("--std", type=floats, default=[1.0])
    p.add_argument("--channels", default="rgb")
    p.add_argument("--layout", default="nchw")
    p.add_argument("--pixels", action="store_true")
    p.add_argument("--out", required=True)
    p.add_argument("images", nargs="+")
    a = p.parse_args()
    if a.pixels:
        np.save(a.out, pixels(a.images[0], False))
        return
    np.save(a.out, np.stack([sample(path, a) for path in a.images]))


if __name__ == "__main__":
    main()
