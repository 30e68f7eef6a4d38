"""Procedural top-down garden photos with exact instance labels.

``garden_scene(seed)`` draws a bed of soil, grass, gravel or mulch and places
plants of three kinds on it, the later ones partly covering the earlier ones:

* ``rosette``   - broad leaves radiating from a centre (lettuce, hosta, plantain)
* ``flowering`` - a lumpy leafy mound dotted with flowers of one colour
* ``weed``      - a tuft of thin, curved blades a few pixels wide (grasses, dandelion leaves)

Each plant casts a soft shadow, and every scene has its own light level, colour
cast and brightness gradient. Everything is numpy, deterministic per seed.
``style="photo"`` makes photograph-like scenes (dense plants, soil, a camera).
Seeds from :data:`EVAL_SEED_START` up are for evaluation only: training and
tuning never use them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["garden_scene", "CLASS_NAMES", "EXTRA_KINDS", "EVAL_SEED_START"]

CLASS_NAMES = ("rosette", "flowering", "weed")
EVAL_SEED_START = 9_000_000

_GROUNDS = {
    # base RGB (0..1), texture strength, grain size in pixels
    "soil": ((0.36, 0.25, 0.16), 0.10, 3),
    "mulch": ((0.25, 0.15, 0.09), 0.16, 5),
    "gravel": ((0.58, 0.56, 0.52), 0.14, 2),
    "grass": ((0.42, 0.52, 0.25), 0.10, 1),
}


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


def _ground(rng, shape) -> np.ndarray:
    h, w = shape
    kinds = list(_GROUNDS)
    first = kinds[rng.integers(len(kinds))]
    layer = _ground_texture(rng, shape, first)
    if rng.random() < 0.6:  # a second surface: a path, a lawn edge, a mulched bed
        second = kinds[rng.integers(len(kinds))]
        other = _ground_texture(rng, shape, second)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ang = rng.uniform(0, np.pi)
        d = (xx - w / 2) * np.cos(ang) + (yy - h / 2) * np.sin(ang) + rng.uniform(-0.3, 0.3) * w
        d += 12 * _value_noise(rng, shape, 40)
        m = (d > 0).astype(np.float32)[..., None]
        layer = layer * (1 - m) + other * m
    return layer


def _ground_texture(rng, shape, kind: str) -> np.ndarray:
    base, strength, grain = _GROUNDS[kind]
    base = np.array(base, np.float32) * rng.uniform(0.85, 1.15, 3).astype(np.float32)
    tex = 0.6 * _fbm(rng, shape, 24, 3) + 0.4 * rng.uniform(-1, 1, shape).astype(np.float32)
    if grain > 1:
        tex = 0.5 * tex + 0.5 * _box_blur(rng.uniform(-1, 1, shape).astype(np.float32), grain // 2) * 2
    if kind == "grass":  # short strokes: strong high-frequency green texture
        strokes = _box_blur(rng.uniform(-1, 1, shape).astype(np.float32), 1)
        tex = 0.5 * tex + strokes
    img = base[None, None, :] * (1 + strength * 2.0 * tex[..., None])
    return img.astype(np.float32)


class _Plant:
    """One plant rendered in a local crop: mask, colour and where the crop sits."""

    def __init__(self, mask, colour, y0, x0):
        self.mask, self.colour, self.y0, self.x0 = mask, colour, y0, x0


def _polar(size: int):
    r = np.arange(size, dtype=np.float32) - (size - 1) / 2
    yy, xx = np.meshgrid(r, r, indexing="ij")
    return np.hypot(yy, xx), np.arctan2(yy, xx)


def _rosette(rng, radius: float) -> tuple[np.ndarray, np.ndarray]:
    size = int(2 * radius + 5)
    rho, th = _polar(size)
    n = int(rng.integers(5, 10))
    phase = rng.uniform(0, 2 * np.pi)
    # leaf outline: each of n leaves is a lobe of the rose curve, slightly irregular
    jitter = 1 + 0.12 * np.sin(th * 3 + rng.uniform(0, 6))
    lobe = np.abs(np.cos(n * (th - phase) / 2)) ** 0.6
    limit = radius * (0.3 + 0.7 * lobe) * jitter
    mask = rho < limit
    hue = np.array([0.22, rng.uniform(0.45, 0.7), 0.12], np.float32) * rng.uniform(0.8, 1.2, 3)
    # lighter centre, darker midribs along each leaf's axis
    shade = 0.75 + 0.35 * (1 - rho / radius)
    vein = np.abs(np.sin(n * (th - phase) / 2)) < 0.06
    shade = shade * np.where(vein & (rho > radius * 0.2), 0.75, 1.0)
    colour = hue[None, None] * shade[..., None]
    return mask, colour.astype(np.float32)


def _flowering(rng, radius: float) -> tuple[np.ndarray, np.ndarray]:
    size = int(2 * radius * 1.2 + 5)
    rho, th = _polar(size)
    wobble = 1 + 0.12 * np.sin(th * rng.integers(3, 7) + rng.uniform(0, 6)) + 0.06 * np.sin(th * 11)
    mask = rho < radius * wobble
    leafy = _fbm(rng, (size, size), 6, 2)
    foliage = np.array([0.12, rng.uniform(0.3, 0.42), 0.1], np.float32)
    colour = foliage[None, None] * (1 + 0.45 * leafy[..., None]) * (1.05 - 0.3 * (rho / radius))[..., None]
    petals = np.array(
        [[0.9, 0.15, 0.2], [0.95, 0.8, 0.1], [0.75, 0.3, 0.85], [0.95, 0.92, 0.95], [0.95, 0.5, 0.1]],
        np.float32,
    )[rng.integers(5)]
    for _ in range(int(rng.integers(8, 20))):
        ang, dist = rng.uniform(0, 2 * np.pi), radius * np.sqrt(rng.uniform(0, 0.8))
        cy, cx = (size - 1) / 2 + dist * np.sin(ang), (size - 1) / 2 + dist * np.cos(ang)
        yy, xx = np.ogrid[0:size, 0:size]
        dot = (yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(2.5, 5.5) ** 2
        colour[dot & mask] = petals * rng.uniform(0.85, 1.0)
    return mask, colour.astype(np.float32)


def _weed(rng, radius: float) -> tuple[np.ndarray, np.ndarray]:
    size = int(2 * radius + 7)
    c = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dist = np.full((size, size), np.inf, np.float32)
    width = np.zeros((size, size), np.float32)
    n = int(rng.integers(6, 14))
    for k in range(n):
        ang = 2 * np.pi * k / n + rng.uniform(-0.3, 0.3)
        length = radius * rng.uniform(0.65, 1.0)
        bend = rng.uniform(-0.6, 0.6)
        half_w = rng.uniform(1.3, 2.6)
        t = np.linspace(0, 1, 8, dtype=np.float32)
        a = ang + bend * t
        py, px = c + length * t * np.sin(a), c + length * t * np.cos(a)
        for i in range(len(t) - 1):  # distance to each polyline segment, blade tapers to the tip
            d, s = _segment_distance(yy, xx, py[i], px[i], py[i + 1], px[i + 1])
            w = half_w * (1 - 0.7 * (t[i] + s * (t[i + 1] - t[i])))
            closer = d - w < dist - width
            dist = np.where(closer, d, dist)
            width = np.where(closer, w, width)
    mask = (dist <= width) | (np.hypot(yy - c, xx - c) < 3.0)
    hue = np.array([rng.uniform(0.5, 0.75), rng.uniform(0.72, 0.9), rng.uniform(0.15, 0.3)], np.float32)
    shade = 0.85 + 0.3 * rng.uniform(0, 1, (size, size)).astype(np.float32) * 0.3
    colour = hue[None, None] * shade[..., None]
    return mask, colour.astype(np.float32)


def _succulent(rng, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Not in the bundled model's classes: for fine-tuning demos (``kinds=EXTRA_KINDS``)."""
    size = int(2 * radius + 5)
    rho, th = _polar(size)
    n = int(rng.integers(12, 20))
    phase = rng.uniform(0, 2 * np.pi)
    # two rings of pointed leaves: sharp lobes (high power of |cos|)
    outer = radius * (0.45 + 0.55 * np.abs(np.cos(n * (th - phase) / 2)) ** 3)
    inner = radius * 0.6 * (0.5 + 0.5 * np.abs(np.cos(n * (th - phase - np.pi / n) / 2)) ** 3)
    mask = rho < np.maximum(outer, inner)
    hue = np.array([0.42, 0.58, 0.6], np.float32) * rng.uniform(0.85, 1.15, 3)
    shade = 0.7 + 0.5 * (rho / radius).clip(0, 1)  # pale tips, darker heart
    colour = hue[None, None] * shade[..., None]
    return mask, colour.astype(np.float32)


def _segment_distance(yy, xx, y0, x0, y1, x1):
    dy, dx = y1 - y0, x1 - x0
    s = np.clip(((yy - y0) * dy + (xx - x0) * dx) / max(dy * dy + dx * dx, 1e-6), 0, 1)
    return np.hypot(yy - (y0 + s * dy), xx - (x0 + s * dx)), s


_DRAW = {"rosette": _rosette, "flowering": _flowering, "weed": _weed, "succulent": _succulent}
_RADII = {"rosette": (20, 60), "flowering": (18, 55), "weed": (22, 55), "succulent": (18, 45)}
EXTRA_KINDS = ("succulent",)


def garden_scene(seed: int, shape=(512, 512), n_plants: tuple[int, int] | None = None, kinds=CLASS_NAMES,
                 style: str = "garden"):
    """One synthetic garden photo.

    Returns ``(image, labels, classes)``: RGB uint8 (H, W, 3); int32 (H, W)
    instance ids (0 = ground); ``classes`` a dict from each id to its class name
    (one of ``kinds``, by default :data:`CLASS_NAMES`; ``"succulent"`` is an
    extra kind the bundled model never saw). Plants overlap, but each keeps at
    least 60% of its area visible so that every label is a recognisable plant.

    ``style="photo"`` draws photograph-like scenes instead (see the photo-style
    section below): dense seedlings, rosettes, grasses and carrot-like plants from
    a few pixels to a large part of the frame, each keeping 40% of its area
    visible, on photographic soil, seen through a simulated camera. ``n_plants``
    defaults to (4, 12) for ``"garden"`` and (5, 60) for ``"photo"``.
    """
    if style not in ("garden", "photo"):
        raise ValueError(f"style must be 'garden' or 'photo', got {style!r}")
    rng = np.random.default_rng(int(seed))
    if style == "photo":
        return _photo_scene(rng, shape, n_plants or (5, 60), tuple(kinds))
    n_plants = n_plants or (4, 12)
    h, w = int(shape[0]), int(shape[1])
    image = _ground(rng, (h, w))
    labels = np.zeros((h, w), np.int32)
    classes: dict[int, str] = {}
    full_area: dict[int, int] = {}
    shade = np.ones((h, w), np.float32)
    shadow_dy, shadow_dx = rng.uniform(-8, 8, 2)
    scale = min(h, w) / 512
    wanted = int(rng.integers(n_plants[0], n_plants[1] + 1))
    next_id = 1
    for _ in range(wanted * 6):  # rejection sampling: give up on a scene too crowded
        if next_id > wanted:
            break
        kind = kinds[rng.integers(len(kinds))]
        lo, hi = _RADII[kind]
        radius = rng.uniform(lo, hi) * scale
        mask, colour = _DRAW[kind](rng, radius)
        ph, pw = mask.shape
        y0 = int(rng.integers(-ph // 4, h - 3 * ph // 4))
        x0 = int(rng.integers(-pw // 4, w - 3 * pw // 4))
        ys, xs, mys, mxs = _clip(y0, x0, ph, pw, h, w)
        m = mask[mys, mxs]
        if m.sum() < 0.6 * mask.sum() or m.sum() < 80:  # mostly off the frame
            continue
        under = labels[ys, xs][m]
        covered = np.bincount(under, minlength=next_id)[1:]
        ok = all(
            covered[i - 1] == 0 or (labels == i).sum() - covered[i - 1] >= 0.6 * full_area[i]
            for i in np.unique(under[under > 0])
        )
        if not ok:
            continue
        # shadow first (it falls on what is below), then the plant itself
        sy, sx, smy, smx = _clip(y0 + int(shadow_dy * scale), x0 + int(shadow_dx * scale), ph, pw, h, w)
        shade[sy, sx] = np.minimum(shade[sy, sx], np.where(mask[smy, smx], 0.55, 1.0))
        _draw_plant(image, labels, shade, (ys, xs), m, colour[mys, mxs], next_id)
        classes[next_id] = kind
        full_area[next_id] = int(m.sum())
        next_id += 1
    shade = _box_blur(shade, max(1, int(3 * scale)))
    ground = labels == 0
    image[ground] *= shade[ground][:, None]
    # scene lighting: exposure, colour cast, a gradient across the frame, sensor noise
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    grad = 1 + rng.uniform(0, 0.25) * ((xx / w - 0.5) * np.cos(ang) + (yy / h - 0.5) * np.sin(ang))
    image *= rng.uniform(0.75, 1.2) * grad[..., None] * rng.uniform(0.92, 1.08, 3).astype(np.float32)
    image += rng.normal(0, 0.015, image.shape).astype(np.float32)
    image = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)
    labels, classes = _drop_small(labels, classes, min_area=int(60 * scale * scale))
    return image, labels, classes


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


# --- photo style --------------------------------------------------------------------------
# ``style="photo"``: scenes made to look like camera photographs of beds and seed trays:
# dense, touching and overlapping plants of many sizes; soil clods, stones, straw, mulch and
# perlite; hard shadows, specular highlights; then a camera: oblique perspective, defocus or
# motion blur, exposure and white-balance errors, a colour response unlike sRGB (sometimes
# false colour), sensor noise and JPEG compression. Same three classes as the garden style.

_PHOTO_FORMS = {
    # form: (class, radius range at 512 px)
    "arabidopsis": ("rosette", (8, 60)),
    "seedling": ("rosette", (5, 22)),
    "broadleaf": ("rosette", (12, 55)),
    "carrot": ("weed", (10, 60)),
    "grass": ("weed", (12, 70)),
    "mound": ("flowering", (15, 55)),
}


def _leaf_green(rng) -> np.ndarray:
    kind = rng.random()
    if kind < 0.6:  # fresh green
        c = (rng.uniform(0.15, 0.4), rng.uniform(0.4, 0.75), rng.uniform(0.05, 0.25))
    elif kind < 0.85:  # dark or bluish green
        c = (rng.uniform(0.08, 0.2), rng.uniform(0.22, 0.4), rng.uniform(0.1, 0.25))
    else:  # yellow-green or reddish-tinged
        c = (rng.uniform(0.35, 0.6), rng.uniform(0.45, 0.7), rng.uniform(0.05, 0.2))
    return np.array(c, np.float32)


def _ellipse_leaves(rng, size, leaves, petiole_w):
    """Union of leaves (each a petiole from the centre plus an elliptic blade), with a
    lighting term per pixel: brighter towards the light, a midrib, a highlight."""
    c = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy -= c
    xx -= c
    mask = np.zeros((size, size), bool)
    light = np.zeros((size, size), np.float32)
    lang = rng.uniform(0, 2 * np.pi)
    for ang, dist, blade_l, blade_w in leaves:
        ca, sa = np.cos(ang), np.sin(ang)
        u = xx * ca + yy * sa  # along the leaf
        v = -xx * sa + yy * ca
        e = ((u - dist) / blade_l) ** 2 + (v / blade_w) ** 2
        blade = e < 1
        stalk = (u > 0) & (u < dist) & (np.abs(v) < petiole_w)
        part = blade | stalk
        # a domed blade: light from one side, a darker midrib, a specular spot near the top
        dome = np.sqrt(np.clip(1 - e, 0, 1))
        side = ((u - dist) * np.cos(lang - ang) + v * np.sin(lang - ang)) / max(blade_l, 1)
        shade = 0.75 + 0.25 * dome + 0.2 * side
        shade = np.where(np.abs(v) < max(0.6, blade_w * 0.07), shade * 0.82, shade)
        mask |= part
        light = np.where(part, shade, light)  # later leaves lie on top
    return mask, light


def _photo_rosette(rng, radius, form):
    size = int(2 * radius + 5)
    if form == "seedling":
        n = int(rng.integers(2, 5))
        base = rng.uniform(0, 2 * np.pi)
        angs = [base + 2 * np.pi * k / n + rng.uniform(-0.3, 0.3) for k in range(n)]
        leaves = [(a, radius * 0.45, radius * rng.uniform(0.4, 0.55), radius * rng.uniform(0.25, 0.4)) for a in angs]
        pw = max(0.6, radius * 0.05)
    elif form == "broadleaf":
        n = int(rng.integers(3, 7))
        angs = np.sort(rng.uniform(0, 2 * np.pi, n))
        leaves = [(a, radius * rng.uniform(0.4, 0.55), radius * rng.uniform(0.4, 0.5), radius * rng.uniform(0.25, 0.45)) for a in angs]
        pw = max(0.8, radius * 0.04)
    else:  # arabidopsis-like: round blades on long petioles, younger leaves inside
        n = int(rng.integers(5, 14))
        golden = 2.39996
        base = rng.uniform(0, 2 * np.pi)
        leaves = []
        for k in range(n):
            age = 1 - k / n
            length = radius * (0.45 + 0.55 * age) * rng.uniform(0.85, 1.05)
            bl = length * rng.uniform(0.28, 0.36)
            leaves.append((base + golden * k, length - bl, bl, bl * rng.uniform(0.7, 0.95)))
        pw = max(0.7, radius * 0.035)
    mask, light = _ellipse_leaves(rng, size, leaves, pw)
    green = _leaf_green(rng)
    tex = 1 + 0.08 * _value_noise(rng, (size, size), max(2.0, radius / 6))
    colour = green[None, None] * (light * tex)[..., None]
    spec = (light > 1.05) & (rng.random() < 0.6)
    colour[spec] = colour[spec] * 0.5 + 0.5 * rng.uniform(0.7, 1.0)
    return mask, colour.astype(np.float32)


def _photo_carrot(rng, radius):
    """Finely divided, feathery leaves: fronds of short leaflets along curved stalks."""
    size = int(2 * radius + 7)
    c = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dist = np.full((size, size), np.inf, np.float32)
    segs = []
    for k in range(int(rng.integers(2, 7))):
        ang = rng.uniform(0, 2 * np.pi)
        length = radius * rng.uniform(0.6, 1.0)
        bend = rng.uniform(-0.5, 0.5)
        t = np.linspace(0, 1, 6, dtype=np.float32)
        a = ang + bend * t
        py, px = c + length * t * np.sin(a), c + length * t * np.cos(a)
        w = max(0.5, radius * 0.02)
        segs += [(py[i], px[i], py[i + 1], px[i + 1], w) for i in range(len(t) - 1)]
        # leaflets: short side segments along the outer part of the stalk, both sides
        for tt in np.linspace(0.25, 0.95, int(rng.integers(4, 9))):
            i = min(int(tt * 5), 4)
            by, bx = c + length * tt * np.sin(ang + bend * tt), c + length * tt * np.cos(ang + bend * tt)
            ll = radius * rng.uniform(0.12, 0.3) * (1.1 - tt * 0.5)
            for sgn in (-1, 1):
                la = ang + bend * tt + sgn * rng.uniform(0.6, 1.1)
                segs.append((by, bx, by + ll * np.sin(la), bx + ll * np.cos(la), max(0.6, radius * rng.uniform(0.015, 0.035))))
            del i
    width = np.zeros((size, size), np.float32)
    for y0, x0, y1, x1, w in segs:
        lo_y, hi_y = int(max(0, min(y0, y1) - 4)), int(min(size, max(y0, y1) + 5))
        lo_x, hi_x = int(max(0, min(x0, x1) - 4)), int(min(size, max(x0, x1) + 5))
        if hi_y <= lo_y or hi_x <= lo_x:
            continue
        d, _ = _segment_distance(yy[lo_y:hi_y, lo_x:hi_x], xx[lo_y:hi_y, lo_x:hi_x], y0, x0, y1, x1)
        sub_d, sub_w = dist[lo_y:hi_y, lo_x:hi_x], width[lo_y:hi_y, lo_x:hi_x]
        closer = d - w < sub_d - sub_w
        sub_d[closer], sub_w[closer] = d[closer], w
    mask = dist <= width
    green = _leaf_green(rng)
    shade = 0.8 + 0.35 * rng.uniform(0, 1, (size, size)).astype(np.float32) * (1 - dist / (width + 1e-3)).clip(0, 1)
    colour = green[None, None] * shade[..., None]
    return mask, colour.astype(np.float32)


def _photo_grass(rng, radius):
    mask, colour = _weed(rng, radius)
    size = mask.shape[0]
    if rng.random() < 0.6:  # thinner blades: erode the one-pixel rim away
        thin = mask.copy()
        thin[1:-1, 1:-1] &= mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
        mask = thin if thin.sum() > 0.25 * mask.sum() else mask
    green = _leaf_green(rng)
    streak = 1 + 0.15 * _value_noise(rng, (size, size), 3)
    colour = green[None, None] * streak[..., None] * rng.uniform(0.85, 1.2)
    return mask, colour.astype(np.float32)


def _photo_mound(rng, radius):
    mask, colour = _flowering(rng, radius)
    green = _leaf_green(rng)
    size = mask.shape[0]
    leafy = 1 + 0.35 * _fbm(rng, (size, size), max(2.0, radius / 8), 2)
    is_leaf = (colour[..., 1] > colour[..., 0]) & (colour[..., 1] > colour[..., 2] * 0.9)
    colour = np.where(is_leaf[..., None], green[None, None] * leafy[..., None], colour)
    return mask, colour.astype(np.float32)


def _photo_plant(rng, form, radius):
    if form in ("arabidopsis", "seedling", "broadleaf"):
        return _photo_rosette(rng, radius, form)
    if form == "carrot":
        return _photo_carrot(rng, radius)
    if form == "grass":
        return _photo_grass(rng, radius)
    return _photo_mound(rng, radius)


def _photo_ground(rng, shape) -> np.ndarray:
    h, w = shape
    tone = rng.random()
    if tone < 0.55:  # brown soil, from dark moist to pale dry
        base = np.array([0.32, 0.22, 0.15], np.float32) * rng.uniform(0.45, 1.5)
    elif tone < 0.75:  # dark potting mix
        base = np.array([0.16, 0.12, 0.1], np.float32) * rng.uniform(0.7, 1.3)
    elif tone < 0.9:  # grey or sandy
        base = np.array([0.45, 0.42, 0.38], np.float32) * rng.uniform(0.7, 1.3)
    else:  # reddish clay
        base = np.array([0.45, 0.26, 0.16], np.float32) * rng.uniform(0.7, 1.2)
    base = base * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    # clods: cellular lumps lit from one side, plus fine grain
    clod = _fbm(rng, shape, rng.uniform(6, 30), 3)
    relief = np.zeros_like(clod)
    relief[1:, 1:] = clod[1:, 1:] - clod[:-1, :-1]
    grain = _box_blur(rng.uniform(-1, 1, shape).astype(np.float32), int(rng.integers(0, 2)))
    tex = 1 + 0.25 * clod + rng.uniform(0.5, 3) * relief + rng.uniform(0.05, 0.25) * grain
    img = base[None, None] * tex[..., None]
    img *= (1 + 0.3 * _value_noise(rng, shape, rng.uniform(60, 200)))[..., None]  # moist patches
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # stones, perlite specks, straw and mulch chips
    n_stones = int(rng.integers(0, 30) * h * w / 512**2) if rng.random() < 0.6 else 0
    for _ in range(n_stones):
        r = rng.uniform(2, 14)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ys, xs = slice(max(0, int(cy - r - 1)), min(h, int(cy + r + 2))), slice(max(0, int(cx - r - 1)), min(w, int(cx + r + 2)))
        e = ((yy[ys, xs] - cy) / r) ** 2 + ((xx[ys, xs] - cx) / (r * rng.uniform(0.6, 1.4))) ** 2
        m = e < 1
        tone_s = rng.uniform(0.35, 0.8) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
        lit = 0.8 + 0.4 * np.sqrt(np.clip(1 - e, 0, 1)) + 0.2 * ((yy[ys, xs] - cy) / r)
        img[ys, xs][m] = (tone_s[None] * lit[m][:, None])
    if rng.random() < 0.4:  # perlite / vermiculite: small pale specks
        n = int(rng.uniform(0.002, 0.02) * h * w)
        py, px = rng.integers(0, h, n), rng.integers(0, w, n)
        img[py, px] = rng.uniform(0.6, 0.95, (n, 1)) * np.array([1.0, 0.97, 0.9], np.float32)
        if rng.random() < 0.5:
            img[np.minimum(py + 1, h - 1), px] = img[py, px] * 0.9
    for _ in range(int(rng.integers(0, 25)) if rng.random() < 0.4 else 0):  # straw and mulch
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ang, length = rng.uniform(0, np.pi), rng.uniform(8, 60)
        half = rng.uniform(0.6, 3.5)
        ys = slice(max(0, int(cy - length)), min(h, int(cy + length + 1)))
        xs = slice(max(0, int(cx - length)), min(w, int(cx + length + 1)))
        d, s = _segment_distance(yy[ys, xs], xx[ys, xs], cy, cx, cy + length * np.sin(ang), cx + length * np.cos(ang))
        m = d < half
        col = (np.array([0.85, 0.75, 0.45], np.float32) if rng.random() < 0.6 else np.array([0.4, 0.27, 0.15], np.float32))
        img[ys, xs][m] = col * rng.uniform(0.6, 1.1) * (0.85 + 0.15 * (1 - d[m] / half))[:, None]
    if rng.random() < 0.1:  # the dark plastic walls of a seed tray
        cell = rng.uniform(0.2, 0.5) * min(h, w)
        wall = rng.uniform(3, 10)
        off = rng.uniform(0, cell, 2)
        on = ((yy + off[0]) % cell < wall) | ((xx + off[1]) % cell < wall)
        img[on] = rng.uniform(0.05, 0.2) * np.ones(3, np.float32)
    return img.astype(np.float32)


def _perspective(rng, image, labels):
    """An oblique view: a random homography (the far edge shrinks), image bilinear, labels nearest."""
    h, w = labels.shape
    tilt = rng.uniform(0.1, 0.45)
    side = rng.integers(4)
    # destination pixel -> source pixel: near rows are magnified, far rows shrunk (all inside the frame)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = xx / max(w - 1, 1) - 0.5, yy / max(h - 1, 1) - 0.5
    if side == 1:
        u, v = v, u
    if side >= 2:
        v = -v
    depth = 1 - tilt * (0.5 - v)  # 1 at the far edge, 1 - tilt at the near one
    su, sv = u * depth, v + tilt * (0.25 - v * v)
    if side >= 2:
        sv = -sv
    if side == 1:
        su, sv = sv, su
    sx = np.clip((su + 0.5) * (w - 1), 0, w - 1.001)
    sy = np.clip((sv + 0.5) * (h - 1), 0, h - 1.001)
    x0, y0 = sx.astype(int), sy.astype(int)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    out = (image[y0, x0] * (1 - fx) * (1 - fy) + image[y0, x0 + 1] * fx * (1 - fy)
           + image[y0 + 1, x0] * (1 - fx) * fy + image[y0 + 1, x0 + 1] * fx * fy)
    lab = labels[np.rint(sy).astype(int), np.rint(sx).astype(int)]
    return out.astype(np.float32), lab


def _camera(rng, image) -> np.ndarray:
    """Blur, exposure, white balance, colour response, noise: linear-ish float in, uint8 out."""
    h, w = image.shape[:2]
    r = rng.random()
    if r < 0.3:  # defocus
        rad = int(rng.integers(1, 3))
        image = np.stack([_box_blur(image[..., c], rad) for c in range(3)], -1)
    elif r < 0.45:  # motion blur along a random axis
        n = int(rng.integers(2, 7))
        axis = int(rng.integers(2))
        acc = np.zeros_like(image)
        for k in range(n):
            acc += np.roll(image, k - n // 2, axis=axis)
        image = acc / n
    elif r < 0.6:  # slight softness everywhere
        image = 0.5 * image + 0.5 * np.stack([_box_blur(image[..., c], 1) for c in range(3)], -1)
    # colour response: a mixing matrix near identity; sometimes far from it (false colour)
    m = np.eye(3, dtype=np.float32) + rng.normal(0, 0.08, (3, 3)).astype(np.float32)
    if rng.random() < 0.12:
        m = np.eye(3, dtype=np.float32)[rng.permutation(3)] * rng.uniform(0.6, 1.4, 3).astype(np.float32)
        if rng.random() < 0.5:  # vegetation glows: boost green's excess
            m = m + np.array([[0, 0.8, 0], [0, 0.6, 0], [0, 0.5, 0]], np.float32) * rng.uniform(0.3, 1.0)
    image = image @ m.T
    wb = rng.uniform(0.8, 1.25, 3).astype(np.float32)
    image = image * wb * rng.uniform(0.55, 1.8)  # white balance and exposure error
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    vig = 1 - rng.uniform(0, 0.35) * (((yy / h - 0.5) ** 2 + (xx / w - 0.5) ** 2) * 2)
    image = image * vig[..., None]
    image = np.clip(image, 0, None) ** rng.uniform(0.75, 1.25)  # tone curve
    level = rng.uniform(0.003, 0.04)
    image = image + rng.normal(0, 1, image.shape).astype(np.float32) * level * np.sqrt(np.clip(image, 0.02, 1))
    out = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.6:  # JPEG artefacts
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=int(rng.integers(25, 92)))
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).copy()
    return out


def _photo_scene(rng, shape, n_plants, kinds):
    h, w = int(shape[0]), int(shape[1])
    scale = min(h, w) / 512
    image = _photo_ground(rng, (h, w))
    labels = np.zeros((h, w), np.int32)
    classes: dict[int, str] = {}
    full_area = [0]
    visible = [0]
    shade = np.ones((h, w), np.float32)
    sun = rng.random() < 0.6  # hard shadows in sun, soft ones under cloud
    shadow_dy, shadow_dx = rng.uniform(-1, 1, 2) * (rng.uniform(3, 14) if sun else 4)
    shadow_depth = rng.uniform(0.35, 0.6) if sun else rng.uniform(0.7, 0.85)
    forms = [f for f, (cls, _) in _PHOTO_FORMS.items() if cls in kinds]
    if not forms:
        raise ValueError(f"style='photo' draws the classes {sorted({c for c, _ in _PHOTO_FORMS.values()})}; got kinds={kinds}")
    # most scenes favour one or two forms (a crop row, a tray of one species) plus weeds
    weights = rng.dirichlet(np.full(len(forms), 0.5))
    size_bias = rng.uniform(0.35, 1.0)  # small seedlings in some scenes, big plants in others
    wanted = int(rng.integers(n_plants[0], n_plants[1] + 1))
    # plants cluster in rows or patches some of the time
    row = rng.random() < 0.35
    row_ang, row_off = rng.uniform(0, np.pi), rng.uniform(-0.2, 0.2) * min(h, w)
    next_id = 1
    for _ in range(wanted * 4):
        if next_id > wanted:
            break
        form = forms[rng.choice(len(forms), p=weights)]
        cls, (lo, hi) = _PHOTO_FORMS[form]
        radius = float(np.exp(rng.uniform(np.log(lo), np.log(lo + (hi - lo) * size_bias)))) * scale
        radius = max(radius, 4.0)
        mask, colour = _photo_plant(rng, form, radius)
        ph, pw = mask.shape
        if row:
            t = rng.uniform(-0.7, 0.7) * max(h, w)
            cy = h / 2 + row_off * np.cos(row_ang) + t * np.sin(row_ang) + rng.normal(0, radius)
            cx = w / 2 - row_off * np.sin(row_ang) + t * np.cos(row_ang) + rng.normal(0, radius)
            y0 = int(np.clip(cy - ph / 2, -ph // 3, h - 2 * ph // 3))
            x0 = int(np.clip(cx - pw / 2, -pw // 3, w - 2 * pw // 3))
        else:
            y0 = int(rng.integers(-ph // 3, h - 2 * ph // 3))
            x0 = int(rng.integers(-pw // 3, w - 2 * pw // 3))
        ys, xs, mys, mxs = _clip(y0, x0, ph, pw, h, w)
        m = mask[mys, mxs]
        area = int(m.sum())
        if area < 0.5 * mask.sum() or area < 12:
            continue
        under = labels[ys, xs][m]
        covered = np.bincount(under, minlength=next_id)
        # dense scenes: touching and overlapping, but each earlier plant keeps 40% visible
        hit = np.nonzero(covered[1:])[0] + 1
        if any(visible[i] - covered[i] < 0.4 * full_area[i] for i in hit):
            continue
        for i in hit:
            visible[i] -= int(covered[i])
        sy0, sx0 = y0 + int(shadow_dy * scale), x0 + int(shadow_dx * scale)
        if -ph < sy0 < h and -pw < sx0 < w:  # the shadow falls at least partly inside the frame
            sy, sx, smy, smx = _clip(sy0, sx0, ph, pw, h, w)
            shade[sy, sx] = np.minimum(shade[sy, sx], np.where(mask[smy, smx], shadow_depth, 1.0))
        _draw_plant(image, labels, shade, (ys, xs), m, colour[mys, mxs], next_id)
        classes[next_id] = cls
        full_area.append(area)
        visible.append(area)
        next_id += 1
    shade = _box_blur(shade, 0 if sun else max(1, int(3 * scale)))
    ground = labels == 0
    image[ground] *= shade[ground][:, None]
    if rng.random() < 0.4:
        image, labels = _perspective(rng, image, labels)
    image = _camera(rng, image)
    labels, classes = _drop_small(labels, classes, min_area=max(8, int(12 * scale * scale)))
    return image, labels, classes
