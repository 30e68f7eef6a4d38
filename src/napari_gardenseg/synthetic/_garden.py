"""The garden style: a bed of soil, grass, gravel or mulch with drawn rosettes, flowering mounds and weeds."""

from __future__ import annotations

import numpy as np

from ._common import _box_blur, _clip, _draw_plant, _drop_small, _fbm, _polar, _segment_distance, _value_noise

_GROUNDS = {
    # base RGB (0..1), texture strength, grain size in pixels
    "soil": ((0.36, 0.25, 0.16), 0.10, 3),
    "mulch": ((0.25, 0.15, 0.09), 0.16, 5),
    "gravel": ((0.58, 0.56, 0.52), 0.14, 2),
    "grass": ((0.42, 0.52, 0.25), 0.10, 1),
}


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


_DRAW = {"rosette": _rosette, "flowering": _flowering, "weed": _weed, "succulent": _succulent}
_RADII = {"rosette": (20, 60), "flowering": (18, 55), "weed": (22, 55), "succulent": (18, 45)}


def scene(rng, shape, n_plants, kinds):
    """The garden style (see :func:`napari_gardenseg.synthetic.garden_scene`)."""
    unknown = [k for k in kinds if k not in _DRAW]
    if unknown or not len(kinds):
        raise ValueError(f"style='garden' draws the kinds {sorted(_DRAW)}; got kinds={tuple(kinds)}")
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
