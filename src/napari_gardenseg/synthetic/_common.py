"""What both scene styles use: constants, noise, blur, placing and labelling a plant."""

from __future__ import annotations

import numpy as np

CLASS_NAMES = ("rosette", "flowering", "weed")
EVAL_SEED_START = 9_000_000
EXTRA_KINDS = ("succulent",)  # a kind the bundled model never saw


def _value_noise(rng, shape, cell: float) -> np.ndarray:
    """Smooth noise in -1..1 with features about ``cell`` pixels across (bilinear lattice)."""
    h, w = shape
    gh, gw = int(h / cell) + 2, int(w / cell) + 2
    grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    y = np.arange(h, dtype=np.float32) / cell
    x = np.arange(w, dtype=np.float32) / cell
    y0, x0 = y.astype(int), x.astype(int)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)  # smoothstep: no lattice creases
    a = grid[np.ix_(y0, x0)]
    b = grid[np.ix_(y0, x0 + 1)]
    c = grid[np.ix_(y0 + 1, x0)]
    d = grid[np.ix_(y0 + 1, x0 + 1)]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _fbm(rng, shape, cell: float, octaves: int = 3) -> np.ndarray:
    out = np.zeros(shape, np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        out += amp * _value_noise(rng, shape, max(cell, 1.0))
        total += amp
        amp *= 0.5
        cell /= 2
    return out / total


def _box_blur(img: np.ndarray, r: int) -> np.ndarray:
    """Separable box blur with edge clamping (cumulative sums: O(pixels))."""
    if r <= 0:
        return img
    for axis in (0, 1):
        pad = [(0, 0)] * img.ndim
        pad[axis] = (r + 1, r)
        c = np.cumsum(np.pad(img, pad, mode="edge"), axis=axis, dtype=np.float32)
        n = img.shape[axis]
        hi = np.take(c, np.arange(2 * r + 1, 2 * r + 1 + n), axis=axis)
        lo = np.take(c, np.arange(0, n), axis=axis)
        img = (hi - lo) / (2 * r + 1)
    return img


def _polar(size: int):
    r = np.arange(size, dtype=np.float32) - (size - 1) / 2
    yy, xx = np.meshgrid(r, r, indexing="ij")
    return np.hypot(yy, xx), np.arctan2(yy, xx)


def _segment_distance(yy, xx, y0, x0, y1, x1):
    dy, dx = y1 - y0, x1 - x0
    s = np.clip(((yy - y0) * dy + (xx - x0) * dx) / max(dy * dy + dx * dx, 1e-6), 0, 1)
    return np.hypot(yy - (y0 + s * dy), xx - (x0 + s * dx)), s


def _draw_plant(image, labels, shade, where, m, colour, label: int) -> None:
    """Paint a plant's pixels ``m`` (within ``where``) shaded by what lies over it, label them,
    and light them: a plant is lit where it is drawn, whatever shadow fell there before."""
    ys, xs = where
    region = image[ys, xs]
    region[m] = colour[m] * shade[ys, xs][m][:, None]
    image[ys, xs] = region
    lab = labels[ys, xs]
    lab[m] = label
    labels[ys, xs] = lab
    shade[ys, xs] = np.where(m, 1.0, shade[ys, xs])


def _clip(y0, x0, ph, pw, h, w):
    """Slices of the frame and of a (ph, pw) crop placed at (y0, x0) that overlap."""
    fy0, fx0 = max(y0, 0), max(x0, 0)
    fy1, fx1 = min(y0 + ph, h), min(x0 + pw, w)
    return (
        slice(fy0, fy1),
        slice(fx0, fx1),
        slice(fy0 - y0, fy1 - y0),
        slice(fx0 - x0, fx1 - x0),
    )


def _drop_small(labels, classes, min_area):
    """Renumber 1..N consecutively, dropping slivers too small to count as a plant."""
    areas = np.bincount(labels.ravel())
    keep = [i for i in sorted(classes) if i < len(areas) and areas[i] >= min_area]
    lut = np.zeros(len(areas), np.int32)
    new_classes = {}
    for new, old in enumerate(keep, start=1):
        lut[old] = new
        new_classes[new] = classes[old]
    return lut[labels], new_classes
