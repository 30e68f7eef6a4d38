"""What is in the photo, and how a camera takes it: conditions applied to the labelled photos.

    python benchmarks/eval_real.py --held-out --condition straw --methods exg-otsu raw default

Each condition turns one labelled photo (a dict of ``eval_real.load_set``: name, rgb uint8
(H, W, 3), labels int32 (H, W)) into another with exact labels: clutter on the ground is painted
on background pixels only (plants lie on it); an object laid over plants (a hose, stakes, tags)
removes those pixels from their labels; flowers add theirs to their plant; pasted weeds are new
instances; the oblique view and the wide frame move the labels with the pixels. Deterministic:
the random generator of each photo is seeded by its name and the condition's.

Material: synthetic textures, AgIR-CVToolkit plants of the species the held-out set leaves out
(MIT, (c) 2025 Precision Sustainable Ag) and a wood-chip path of a Munich community-garden tile
(ugc-mapping, Afrasiabian et al., CC BY 4.0), both in ``../shared/real/photos`` (MANIFEST.md).
The clutter is drawn, so plants always lie on it with crisp edges; moss and grass are not in the
labels, so every detection on them counts as a false positive. Figures: docs/quality.md,
"What is in the photo".
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

# ../shared/real/photos beside the repository (eval_real.SHARED)
PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "real" / "photos"


# Clutter is drawn as a fixed number of strokes whose size is a share of the image's side, so that
# the share of the ground it covers does not change with the image's size (these counts are the
# ones a 1100 x 732 photo got when the count followed the side).
STRAW_STRANDS = 2700
PEBBLES = 1080
LEAVES = 315
GRASS_BLADES = 10800


# ----------------------------------------------------------------------------- helpers
def rng_for(name, cond):
    return np.random.default_rng(zlib.crc32(f"{name}/{cond}".encode()))


def side(shape):
    return float(np.sqrt(shape[0] * shape[1]))


def smooth_field(rng, shape, sigma):
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return (f - f.mean()) / (f.std() + 1e-9)


def coverage_mask(rng, shape, share, sigma):
    """bool (H, W): blobs covering about ``share`` of the image (a smooth field above its quantile)."""
    f = smooth_field(rng, shape, sigma)
    return f > np.quantile(f, 1 - share)


def lum(rgb):
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def on_background(p, layer, where):
    """Paint ``layer`` (float/uint8 (H, W, 3)) where ``where`` and background (labels 0): ground clutter under plants."""
    rgb = p["rgb"].copy()
    m = where & (p["labels"] == 0)
    rgb[m] = np.clip(layer[m], 0, 255).astype(np.uint8)
    return {**p, "rgb": rgb}


def over_everything(p, layer, where):
    """Paint ``layer`` where ``where``; plants under it lose those pixels."""
    rgb, labels = p["rgb"].copy(), p["labels"].copy()
    rgb[where] = np.clip(layer[where], 0, 255).astype(np.uint8)
    labels[where] = 0
    return {**p, "rgb": rgb, "labels": labels}


def draw_layer(shape, draw_fn):
    """(rgb float (H, W, 3), alpha bool (H, W)) of what ``draw_fn(ImageDraw)`` draws on an RGBA canvas."""
    h, w = shape
    im = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw_fn(ImageDraw.Draw(im))
    a = np.asarray(im)
    return a[..., :3].astype(np.float32), a[..., 3] > 0


def jitter(rng, base, amount):
    return tuple(int(np.clip(c + rng.normal(0, amount), 0, 255)) for c in base)


# ----------------------------------------------------------------------------- ground clutter
def straw(p, rng):
    """Straw mulch: pale yellow-tan strands over ~65% of the ground, in drifts."""
    h, w = p["labels"].shape
    s = side((h, w))
    cols = [(205, 185, 120), (185, 160, 95), (225, 205, 150), (160, 130, 75), (195, 170, 100)]

    def fn(d):
        for _ in range(STRAW_STRANDS):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            L, a = rng.uniform(0.03, 0.09) * s, rng.uniform(0, np.pi)
            d.line(
                [(x, y), (x + L * np.cos(a), y + L * np.sin(a))],
                fill=jitter(rng, cols[rng.integers(len(cols))], 12) + (255,),
                width=max(1, int(round(rng.uniform(0.002, 0.005) * s))),
            )

    layer, alpha = draw_layer((h, w), fn)
    # strands shaded by the light underneath
    layer *= 0.75 + 0.25 * smooth_field(rng, (h, w), 2)[..., None].clip(-1, 1)
    return on_background(p, layer, alpha & coverage_mask(rng, (h, w), 0.65, 0.05 * s))


def _woodchip_texture():
    # a wood-chip path of a community-garden orthomosaic tile (ugc-mapping crop_5_2, CC BY 4.0)
    im = Image.open(PHOTOS / "ugc-mapping" / "crop_5_2.png").convert("RGB").crop((250, 95, 420, 168))
    return np.asarray(im.resize((im.width * 2, im.height * 2), Image.BICUBIC))


def woodchips(p, rng):
    """Wood-chip mulch (a real wood-chip path, tiled with mirrors) over ~80% of the ground."""
    h, w = p["labels"].shape
    t = _woodchip_texture()
    th, tw = t.shape[:2]
    canvas = np.zeros((h, w, 3), np.uint8)
    for y in range(0, h, th):
        for x in range(0, w, tw):
            q = t
            if rng.random() < 0.5:
                q = q[:, ::-1]
            if rng.random() < 0.5:
                q = q[::-1]
            canvas[y : y + th, x : x + tw] = q[: h - y, : w - x]
    # the path photo is darker than most soils: brighten a little to a fresh chip
    layer = canvas.astype(np.float32) * 1.25
    return on_background(p, layer, coverage_mask(rng, (h, w), 0.8, 0.05 * side((h, w))))


def gravel(p, rng):
    """Gravel / stones: grey-beige pebbles with a lit top and a shadow, over ~70% of the ground."""
    h, w = p["labels"].shape
    s = side((h, w))

    def fn(d):
        for _ in range(PEBBLES):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            r = rng.uniform(0.006, 0.018) * s
            e = rng.uniform(0.6, 1.0)
            g = rng.uniform(95, 190)
            base = jitter(rng, (g + 8, g + 4, g - 6), 6)
            d.ellipse([x - r + 1, y - r * e + 2, x + r + 1, y + r * e + 2], fill=(40, 38, 35, 255))  # shadow
            d.ellipse([x - r, y - r * e, x + r, y + r * e], fill=base + (255,))
            d.ellipse(
                [x - 0.6 * r, y - 0.7 * r * e, x + 0.3 * r, y], fill=tuple(min(255, c + 25) for c in base) + (255,)
            )

    layer, alpha = draw_layer((h, w), fn)
    return on_background(p, layer, alpha & coverage_mask(rng, (h, w), 0.7, 0.05 * s))


def leaflitter(p, rng):
    """Fallen leaves (autumn litter): brown, tan, yellow and yellow-green leaves over ~45% of the ground."""
    h, w = p["labels"].shape
    s = side((h, w))
    cols = [(115, 75, 40), (150, 105, 55), (180, 140, 70), (205, 170, 60), (165, 160, 70), (95, 60, 35)]

    def fn(d):
        for _ in range(LEAVES):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            L = rng.uniform(0.015, 0.035) * s
            a = rng.uniform(0, np.pi)
            t = np.linspace(0, np.pi, 12)
            # a leaf: pointed ellipse along angle a
            xs = np.r_[np.cos(t) * L, np.cos(t[::-1]) * L]
            ys = np.r_[np.sin(t) ** 1.5 * 0.4 * L, -(np.sin(t[::-1]) ** 1.5) * 0.4 * L]
            pts = [(x + u * np.cos(a) - v * np.sin(a), y + u * np.sin(a) + v * np.cos(a)) for u, v in zip(xs, ys)]
            d.polygon(pts, fill=jitter(rng, cols[rng.integers(len(cols))], 10) + (255,))

    layer, alpha = draw_layer((h, w), fn)
    layer *= 0.85 + 0.15 * smooth_field(rng, (h, w), 1.5)[..., None].clip(-1, 1)
    return on_background(p, layer, alpha & coverage_mask(rng, (h, w), 0.45, 0.06 * s))


def moss(p, rng):
    """Moss on the soil: olive-green cushions with fine texture over ~25% of the ground, soft-edged."""
    h, w = p["labels"].shape
    s = side((h, w))
    where = coverage_mask(rng, (h, w), 0.25, 0.03 * s)
    fine = smooth_field(rng, (h, w), 1.0).clip(-2, 2)
    base = np.array([85, 105, 45], np.float32)
    layer = base * (1 + 0.18 * fine[..., None]) * (0.85 + 0.15 * smooth_field(rng, (h, w), 0.01 * s)[..., None])
    # soft edge: a blend over a few pixels with the soil beneath
    a = ndimage.gaussian_filter(where.astype(np.float32), 0.003 * s)
    blend = p["rgb"].astype(np.float32) * (1 - a[..., None]) + layer * a[..., None]
    return on_background(p, blend, a > 0.02)


def algae(p, rng):
    """Algae film / green-tinted damp soil: the ground's chroma shifted to olive (G x1.12, B x0.85)."""
    layer = p["rgb"].astype(np.float32) * np.array([0.97, 1.12, 0.85], np.float32)
    return on_background(p, layer, np.ones(p["labels"].shape, bool))


def wetsoil(p, rng):
    """Very dark wet soil: the ground x0.45 (plants unchanged)."""
    layer = p["rgb"].astype(np.float32) * 0.45
    return on_background(p, layer, np.ones(p["labels"].shape, bool))


def _grass_layer(rng, shape):
    h, w = shape
    s = side(shape)
    greens = [(70, 120, 40), (90, 140, 50), (60, 105, 35), (110, 150, 60), (80, 130, 45), (150, 140, 80)]

    def fn(d):
        d.rectangle([0, 0, w, h], fill=(45, 60, 30, 255))
        for _ in range(GRASS_BLADES):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            L, a = rng.uniform(0.01, 0.03) * s, rng.uniform(0, np.pi)
            d.line(
                [(x, y), (x + L * np.cos(a), y + L * np.sin(a))],
                fill=jitter(rng, greens[rng.integers(len(greens))], 12) + (255,),
                width=max(1, int(round(rng.uniform(0.002, 0.004) * s))),
            )

    layer, _ = draw_layer(shape, fn)
    return layer * (0.8 + 0.2 * smooth_field(rng, shape, 0.03 * s)[..., None].clip(-1.5, 1.5))


def lawn(p, rng):
    """The plants in a lawn: every ground pixel grass (synthetic blades on dark thatch)."""
    layer = _grass_layer(rng, p["labels"].shape)
    return on_background(p, layer, np.ones(p["labels"].shape, bool))


def grasspatches(p, rng):
    """A weedy bed: grass patches over ~30% of the ground."""
    shape = p["labels"].shape
    layer = _grass_layer(rng, shape)
    return on_background(p, layer, coverage_mask(rng, shape, 0.3, 0.04 * side(shape)))


_CUTOUTS = None


def weeds(p, rng):
    """Weeds between the plants: 10 small seedlings (real AgIR plants of the species the held-out
    set leaves out, cut on their masks) pasted on the ground, each a new labelled instance."""
    global _CUTOUTS
    from composites import cutouts_and_soil, resize_cutout

    if _CUTOUTS is None:
        from eval_real import HELD_OUT_SPECIES, agir_species

        others = [s for s in agir_species() if s not in HELD_OUT_SPECIES]
        _CUTOUTS = cutouts_and_soil(np.random.default_rng(1), others)[0]
    rgb, labels = p["rgb"].copy(), p["labels"].copy()
    h, w = labels.shape
    areas = np.bincount(labels.ravel())[1:]
    if not (areas > 0).any():  # no plant to size the weeds by
        return p
    med = float(np.median(areas[areas > 0]))
    nxt = int(labels.max()) + 1
    placed = tries = 0
    while placed < 10 and tries < 200:
        tries += 1
        crgb, cmask = _CUTOUTS[rng.integers(len(_CUTOUTS))]
        target = med * rng.uniform(0.08, 0.3)  # a weed seedling: a tenth to a third of a plant
        f = np.sqrt(target / cmask.sum())
        crgb, cmask = resize_cutout(crgb, cmask, f)
        if rng.random() < 0.5:
            crgb, cmask = crgb[:, ::-1], cmask[:, ::-1]
        ph, pw = cmask.shape
        if ph >= h or pw >= w or cmask.sum() < 30:
            continue
        y0, x0 = int(rng.integers(0, h - ph)), int(rng.integers(0, w - pw))
        sl = (slice(y0, y0 + ph), slice(x0, x0 + pw))
        free = cmask & (labels[sl] == 0)
        if free.sum() < 0.9 * cmask.sum():  # between the plants, not under them
            continue
        rgb[sl][free] = crgb[free]
        labels[sl][free] = nxt
        nxt += 1
        placed += 1
    return {**p, "rgb": rgb, "labels": labels}


# ----------------------------------------------------------------------------- green objects
def hose(p, rng):
    """A green garden hose snaking across the photo, over plants and ground (shaded tube, highlight)."""
    h, w = p["labels"].shape
    s = side((h, w))
    width = max(4, int(0.014 * s))
    # a smooth curve through 5 random points, entering left and leaving right
    xs = np.linspace(-0.05 * w, 1.05 * w, 5)
    ys = rng.uniform(0.15 * h, 0.85 * h, 5)
    t = np.linspace(0, 4, 400)
    from scipy.interpolate import CubicSpline

    cx, cy = CubicSpline(np.arange(5), xs)(t), CubicSpline(np.arange(5), ys)(t)
    pts = list(zip(cx, cy))

    def tube(d, wd, col):
        d.line(pts, fill=col + (255,), width=wd, joint="curve")

    dark, _ = draw_layer((h, w), lambda d: tube(d, width, (25, 95, 40)))
    _, alpha = draw_layer((h, w), lambda d: tube(d, width, (1, 1, 1)))
    mid, a_mid = draw_layer((h, w), lambda d: tube(d, max(2, int(width * 0.6)), (40, 135, 60)))
    hi, a_hi = draw_layer((h, w), lambda d: tube(d, max(1, int(width * 0.2)), (120, 200, 130)))
    layer = dark.copy()
    layer[a_mid] = mid[a_mid]
    layer[a_hi] = hi[a_hi]
    return over_everything(p, layer, alpha)


def greenobj(p, rng):
    """Green non-plant objects of a garden bed: 3 green-painted stakes and 5 green plastic plant labels,
    lying over plants and ground."""
    h, w = p["labels"].shape
    s = side((h, w))

    def fn(d):
        for _ in range(3):  # stakes lying on the bed
            x, y = rng.uniform(0.1 * w, 0.9 * w), rng.uniform(0.1 * h, 0.9 * h)
            L, a = rng.uniform(0.25, 0.45) * s, rng.uniform(0, np.pi)
            wd = max(3, int(0.01 * s))
            col = jitter(rng, (45, 110, 50), 8)
            d.line(
                [(x - L / 2 * np.cos(a), y - L / 2 * np.sin(a)), (x + L / 2 * np.cos(a), y + L / 2 * np.sin(a))],
                fill=col + (255,),
                width=wd,
            )
        for _ in range(5):  # plant labels: small bright-green plastic tags
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            a = rng.uniform(0, np.pi)
            L, Wd = 0.05 * s, 0.015 * s
            c, sn = np.cos(a), np.sin(a)
            pts = [
                (x + u * c - v * sn, y + u * sn + v * c)
                for u, v in [
                    (-L / 2, -Wd / 2),
                    (L / 2, -Wd / 2),
                    (L / 2 + Wd / 2, 0),
                    (L / 2, Wd / 2),
                    (-L / 2, Wd / 2),
                ]
            ]
            d.polygon(pts, fill=jitter(rng, (70, 175, 80), 10) + (255,))

    layer, alpha = draw_layer((h, w), fn)
    return over_everything(p, layer, alpha)


# ----------------------------------------------------------------------------- plants' own colour
def _plant_ids(p):
    return [int(k) for k in np.unique(p["labels"]) if k > 0]


def _some_plants(p, rng, share):
    """(id, box, the plant's mask in its box) of each plant, each taken with probability ``share``
    (one draw per plant, in id order, before the caller's own draws for it)."""
    objs = ndimage.find_objects(p["labels"])
    for k in _plant_ids(p):
        if rng.random() > share:
            continue
        sl = objs[k - 1]
        yield k, sl, p["labels"][sl] == k


def yellowing(p, rng):
    """Senescent / nutrient-short plants: on 60% of the plants the outer part (leaf tips, older leaves)
    turned yellow (a random 30-60% of the plant's pixels farthest from its centre)."""
    rgb = p["rgb"].astype(np.float32)
    L = lum(p["rgb"])
    for _, sl, m in _some_plants(p, rng, 0.6):
        yy, xx = np.nonzero(m)
        cy, cx = yy.mean(), xx.mean()
        d = np.hypot(yy - cy, xx - cx)
        cut = np.quantile(d, 1 - rng.uniform(0.3, 0.6))
        sel = np.zeros_like(m)
        sel[yy[d >= cut], xx[d >= cut]] = True
        sel = ndimage.gaussian_filter(sel.astype(np.float32), 2.0) * m
        yellow = L[sl][..., None] * np.array([1.3, 1.15, 0.45], np.float32)
        region = rgb[sl]
        rgb[sl] = region * (1 - 0.9 * sel[..., None]) + yellow * 0.9 * sel[..., None]
    return {**p, "rgb": np.clip(rgb, 0, 255).astype(np.uint8)}


def drybrown(p, rng):
    """Dead or dry plants: 30% of the plants turned straw-brown entirely (still plants in the labels)."""
    rgb = p["rgb"].astype(np.float32)
    L = lum(p["rgb"])
    ids = _plant_ids(p)
    if not ids:
        return p
    pick = [k for k in ids if rng.random() < 0.3] or [ids[0]]
    m = np.isin(p["labels"], pick)
    rgb[m] = L[m][:, None] * np.array([1.25, 0.95, 0.6], np.float32)
    return {**p, "rgb": np.clip(rgb, 0, 255).astype(np.uint8)}


def variegated(p, rng):
    """Variegated foliage: on half the plants a cream margin (the outer ~25% of each leaf's width) and
    cream streaks."""
    rgb = p["rgb"].astype(np.float32)
    L = lum(p["rgb"])
    for _, sl, m in _some_plants(p, rng, 0.5):
        dist = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
        inner = dist[m]
        width = max(1.5, 0.5 * np.quantile(inner, 0.9))
        sel = m & (dist <= width)
        streak = smooth_field(rng, m.shape, 3.0) > 1.2
        sel |= m & streak
        cream = (0.55 * L[sl][..., None] + 0.45 * 235) * np.array([1.0, 1.0, 0.82], np.float32)
        region = rgb[sl]
        region[sel] = cream[sel]
        rgb[sl] = region
    return {**p, "rgb": np.clip(rgb, 0, 255).astype(np.uint8)}


def flowers(p, rng):
    """Flowering plants: on half the plants 2-4 flowers (white with a yellow eye, or yellow), radius
    ~20% of the plant's own radius, part of the plant (pixels beyond it added to its label)."""
    rgb, labels = p["rgb"].copy(), p["labels"].copy()
    h, w = labels.shape
    for k, sl, m in _some_plants(p, rng, 0.5):
        yy, xx = np.nonzero(m)
        r_plant = np.sqrt(len(yy) / np.pi)
        white = rng.random() < 0.5
        for _ in range(int(rng.integers(2, 5))):
            i = rng.integers(len(yy))
            cy, cx = yy[i] + sl[0].start, xx[i] + sl[1].start
            r = max(3.0, 0.2 * r_plant * rng.uniform(0.8, 1.2))
            Y, X = np.ogrid[:h, :w]
            ang = np.arctan2(Y - cy, X - cx)
            rad = np.hypot(Y - cy, X - cx)
            petals = rad <= r * (0.75 + 0.25 * np.cos(5 * ang + rng.uniform(0, 6.3)))
            eye = rad <= r * 0.3
            col = np.array([245, 243, 235] if white else [240, 205, 40], np.float32)
            eyec = np.array([225, 185, 30] if white else [200, 120, 20], np.float32)
            shade = 0.85 + 0.15 * np.clip(1 - rad / r, 0, 1)
            rgb[petals] = np.clip(col * shade[petals][:, None], 0, 255).astype(np.uint8)
            rgb[eye] = eyec.astype(np.uint8)
            labels[petals] = k  # a flower is its plant's (over a neighbour's leaf too: it lies on top)
    return {**p, "rgb": rgb, "labels": labels}


# ----------------------------------------------------------------------------- light and view
def dappled(p, rng):
    """Dappled shade under a canopy: soft sun flecks (half the photo lit), shade x0.4 and bluish."""
    h, w = p["labels"].shape
    s = side((h, w))
    f = smooth_field(rng, (h, w), 0.025 * s)
    sun = 1 / (1 + np.exp(-(f - 0.0) / 0.25))  # soft edges
    sun = ndimage.gaussian_filter(sun, 0.004 * s)
    shade_tint = np.array([0.9, 1.0, 1.15], np.float32)
    gain = (0.4 + 0.6 * sun)[..., None] * (sun[..., None] + (1 - sun[..., None]) * shade_tint)
    rgb = np.clip(p["rgb"].astype(np.float32) * gain, 0, 255).astype(np.uint8)
    return {**p, "rgb": rgb}


def oblique(p, rng):
    """An oblique (non-top-down) view of the same scene: a perspective warp whose far (top) edge holds
    the photo's full width and near (bottom) edge its middle 60%, as a camera tilted ~35-40 degrees."""
    from skimage.transform import ProjectiveTransform, warp

    h, w = p["labels"].shape
    y1, x1, a = h - 1, w - 1, 0.2 * (w - 1)  # corners at pixel centres: nothing is read from outside
    src = np.array([[0, 0], [x1, 0], [x1 - a, y1], [a, y1]], float)  # photo points (x, y)
    dst = np.array([[0, 0], [x1, 0], [x1, y1], [0, y1]], float)  # where they land
    t = ProjectiveTransform.from_estimate(dst, src)  # output -> input, as warp wants
    rgb = np.rint(warp(p["rgb"], t, order=1, mode="edge", preserve_range=True)).astype(np.uint8)
    labels = warp(p["labels"], t, order=0, mode="edge", preserve_range=True).astype(np.int32)
    # a plant warped partly out of the frame keeps its visible part as its reference
    return {**p, "rgb": rgb, "labels": labels}


# ----------------------------------------------------------------------------- camera and frame
def noise(p, rng, sigma=8.0):
    """Sensor noise: Gaussian of ``sigma`` (of 255) added to every channel (a dim photo, a small sensor at high ISO)."""
    rgb = p["rgb"].astype(np.float32) + rng.normal(0.0, sigma, p["rgb"].shape).astype(np.float32)
    return {**p, "rgb": np.clip(np.rint(rgb), 0, 255).astype(np.uint8)}


def noise4(p, rng):
    """Sensor noise of sigma 4/255."""
    return noise(p, rng, 4.0)


def wide(p, rng, factor=3):
    """The photo in the middle of a frame ``factor`` times wider and taller, the rest its own soil
    (its plants filled in with soil, ``_harvest.soil_fill``, tiled with mirrors): plants a small
    share of the frame, as in a drone's wide shot."""
    from napari_gardenseg._harvest import soil_fill

    h, w = p["labels"].shape
    soil = soil_fill(p["rgb"], p["labels"] > 0, rng)
    if soil is None:  # under 5% soil: its median colour (tiling the photo would repeat unlabelled plants)
        ground = p["rgb"][p["labels"] == 0]
        colour = np.median(ground if len(ground) else p["rgb"].reshape(-1, 3), axis=0).astype(np.uint8)
        soil = np.broadcast_to(colour, p["rgb"].shape)
    flips = (soil, soil[:, ::-1], soil[::-1], soil[::-1, ::-1])
    rgb = np.empty((factor * h, factor * w, 3), np.uint8)
    c = factor // 2
    for i in range(factor):
        for j in range(factor):
            # mirrored so that every seam, the photo's own included, joins a tile to its mirror image
            rgb[i * h : (i + 1) * h, j * w : (j + 1) * w] = flips[((i - c) % 2) * 2 + ((j - c) % 2)]
    rgb[c * h : (c + 1) * h, c * w : (c + 1) * w] = p["rgb"]
    labels = np.zeros((factor * h, factor * w), np.int32)
    labels[c * h : (c + 1) * h, c * w : (c + 1) * w] = p["labels"]
    return {**p, "rgb": rgb, "labels": labels}


def clean(p, rng):
    """The photo as it is."""
    return p


CONDITIONS = {
    f.__name__: f
    for f in [
        clean,
        straw,
        woodchips,
        gravel,
        leaflitter,
        moss,
        algae,
        wetsoil,
        lawn,
        grasspatches,
        weeds,
        hose,
        greenobj,
        yellowing,
        drybrown,
        variegated,
        flowers,
        dappled,
        oblique,
        noise,
        noise4,
        wide,
    ]
}


def conditioned(photos: list[dict], name: str) -> list[dict]:
    """``photos`` under the condition ``name`` (a key of :data:`CONDITIONS`)."""
    return [CONDITIONS[name](p, rng_for(p["name"], name)) for p in photos]
