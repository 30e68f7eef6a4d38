"""The photo style: photograph-like beds and seed trays seen through a simulated camera."""

from __future__ import annotations

import numpy as np

from ._common import _box_blur, _clip, _draw_plant, _drop_small, _fbm, _segment_distance, _value_noise
from ._garden import _flowering, _weed

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
        leaves = [
            (a, radius * rng.uniform(0.4, 0.55), radius * rng.uniform(0.4, 0.5), radius * rng.uniform(0.25, 0.45))
            for a in angs
        ]
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
                segs.append(
                    (by, bx, by + ll * np.sin(la), bx + ll * np.cos(la), max(0.6, radius * rng.uniform(0.015, 0.035)))
                )
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
        ys, xs = (
            slice(max(0, int(cy - r - 1)), min(h, int(cy + r + 2))),
            slice(max(0, int(cx - r - 1)), min(w, int(cx + r + 2))),
        )
        e = ((yy[ys, xs] - cy) / r) ** 2 + ((xx[ys, xs] - cx) / (r * rng.uniform(0.6, 1.4))) ** 2
        m = e < 1
        tone_s = rng.uniform(0.35, 0.8) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
        lit = 0.8 + 0.4 * np.sqrt(np.clip(1 - e, 0, 1)) + 0.2 * ((yy[ys, xs] - cy) / r)
        img[ys, xs][m] = tone_s[None] * lit[m][:, None]
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
        col = (
            np.array([0.85, 0.75, 0.45], np.float32) if rng.random() < 0.6 else np.array([0.4, 0.27, 0.15], np.float32)
        )
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
    out = (
        image[y0, x0] * (1 - fx) * (1 - fy)
        + image[y0, x0 + 1] * fx * (1 - fy)
        + image[y0 + 1, x0] * (1 - fx) * fy
        + image[y0 + 1, x0 + 1] * fx * fy
    )
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


def scene(rng, shape, n_plants, kinds):
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
        raise ValueError(
            f"style='photo' draws the classes {sorted({c for c, _ in _PHOTO_FORMS.values()})}; got kinds={kinds}"
        )
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
