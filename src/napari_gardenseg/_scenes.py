"""Training scenes in a photo's own domain: real plants pasted crowded onto real soil.

A model that has never seen two plants of a kind touching cannot learn where
one ends; single plants cut from the user's photos (:mod:`._harvest`) pasted
next to and over each other on soil from the same photos teach it exactly
that, with the photos' scale, light and ground. Labels are exact by
construction: each pasted plant is one instance, and what later plants cover
is taken from it.
"""

from __future__ import annotations

import numpy as np

from ._train_samples import Sample

__all__ = ["PaintedScenes", "compose_scene", "cutouts_from_labels"]

# each plant keeps at least this share of its pixels visible (else it is not pasted)
MIN_VISIBLE = 0.5
MIN_PIXELS = 12


def _soil_crop(rng, soil: np.ndarray, size: int) -> np.ndarray:
    """A ``size`` x ``size`` crop of ``soil`` (mirror-tiled when the photo is smaller)."""
    h, w = soil.shape[:2]
    if h < size or w < size:
        soil = np.pad(soil, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="symmetric")
        h, w = soil.shape[:2]
    y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return soil[y0 : y0 + size, x0 : x0 + size].astype(np.float32)


def _transform(rng, rgb: np.ndarray, mask: np.ndarray, zoom: float):
    """Turn, flip and rescale a cut-out; returns float rgb (h, w, 3) and float alpha (h, w)."""
    import torch
    import torch.nn.functional as F

    k = int(rng.integers(4))
    rgb, mask = np.rot90(rgb, k), np.rot90(mask, k)
    if rng.random() < 0.5:
        rgb, mask = rgb[:, ::-1], mask[:, ::-1]
    t = np.concatenate([rgb.astype(np.float32), mask[..., None].astype(np.float32) * 255], -1)
    if abs(zoom - 1) > 0.02:
        oh, ow = max(2, round(t.shape[0] * zoom)), max(2, round(t.shape[1] * zoom))
        tt = torch.from_numpy(np.ascontiguousarray(t)).permute(2, 0, 1)[None]
        t = F.interpolate(tt, size=(oh, ow), mode="bilinear", align_corners=False, antialias=zoom < 1)[0]
        t = t.permute(1, 2, 0).numpy()
    return t[..., :3], np.clip(t[..., 3] / 255, 0, 1)


def compose_scene(
    rng: np.random.Generator,
    soil: np.ndarray,
    plants: list,
    size: int = 384,
    *,
    coverage=(0.15, 0.5),
    crowd: float = 0.7,
    zoom_range=(0.8, 1.25),
    max_plants: int = 60,
):
    """One training scene: ``plants`` pasted onto a crop of ``soil``.

    ``soil`` uint8 (H, W, 3); ``plants`` objects with ``rgb`` uint8 (h, w, 3),
    ``mask`` bool (h, w) and ``cls`` (:class:`~._harvest.Plant`). Plants are
    drawn at random and pasted, each turned, flipped and rescaled by a factor
    from ``zoom_range``, until a share of the scene drawn from ``coverage`` is
    plant; with probability ``crowd`` a plant is placed touching or
    overlapping one already there. Every plant keeps at least
    :data:`MIN_VISIBLE` of its pixels. Returns ``(image uint8 (size, size, 3),
    labels int32 (size, size), classes {id: name})``.
    """
    image = _soil_crop(rng, soil, size)
    labels = np.zeros((size, size), np.int32)
    classes: dict[int, str] = {}
    full: dict[int, int] = {}
    centres: list[tuple[float, float, float]] = []
    target = rng.uniform(*coverage) * size * size
    covered = 0
    tries = 0
    while covered < target and len(classes) < max_plants and tries < 4 * max_plants and plants:
        tries += 1
        p = plants[int(rng.integers(len(plants)))]
        zoom = float(np.exp(rng.uniform(np.log(zoom_range[0]), np.log(zoom_range[1]))))
        rgb, alpha = _transform(rng, p.rgb, p.mask, zoom)
        m = alpha > 0.5
        ph, pw = m.shape
        if ph >= size or pw >= size or m.sum() < MIN_PIXELS:
            continue
        radius = 0.5 * np.sqrt(m.sum())
        if centres and rng.random() < crowd:
            cy, cx, r = centres[int(rng.integers(len(centres)))]
            ang = rng.uniform(0, 2 * np.pi)
            d = (r + radius) * rng.uniform(0.45, 1.0)
            cy, cx = cy + d * np.sin(ang), cx + d * np.cos(ang)
        else:
            cy, cx = rng.uniform(0, size), rng.uniform(0, size)
        y0, x0 = int(round(cy - ph / 2)), int(round(cx - pw / 2))
        y0, x0 = int(np.clip(y0, 0, size - ph)), int(np.clip(x0, 0, size - pw))
        region = labels[y0 : y0 + ph, x0 : x0 + pw]
        hit = np.bincount(region[m], minlength=len(full) + 2)
        if any(
            k and hit[k] and np.count_nonzero(labels == k) - hit[k] < MIN_VISIBLE * full[k] for k in np.flatnonzero(hit)
        ):
            continue
        new = len(full) + 1
        a = alpha[..., None] * rng.uniform(0.92, 1.08)
        a = np.clip(a, 0, 1)
        patch = image[y0 : y0 + ph, x0 : x0 + pw]
        patch[:] = patch * (1 - a) + rgb * a * rng.uniform(0.92, 1.08, 3).astype(np.float32)
        region[m] = new
        classes[new] = p.cls
        full[new] = int(m.sum())
        centres.append((y0 + ph / 2, x0 + pw / 2, radius))
        covered = int(np.count_nonzero(labels))
    # a plant left as a sliver under later ones is no longer a recognisable plant
    areas = np.bincount(labels.ravel(), minlength=len(full) + 1)
    for k in list(classes):
        if areas[k] < MIN_PIXELS:
            labels[labels == k] = 0
            del classes[k]
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), labels, classes


def cutouts_from_labels(
    image_u8: np.ndarray, labels: np.ndarray, classes: dict, photo: int = 0, min_area: int = 16
) -> list:
    """Painted instances as :class:`~._harvest.Plant` cut-outs (for scenes built from labelled photos)."""
    from scipy import ndimage

    from ._harvest import Plant

    out = []
    h, w = labels.shape
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None or k not in classes:
            continue
        y0, y1 = max(0, sl[0].start - 2), min(h, sl[0].stop + 2)
        x0, x1 = max(0, sl[1].start - 2), min(w, sl[1].stop + 2)
        m = labels[y0:y1, x0:x1] == k
        if m.sum() >= min_area:
            out.append(Plant(image_u8[y0:y1, x0:x1].copy(), m, str(classes[k]), photo, "painted"))
    return out


class PaintedScenes:
    """Draws for :func:`napari_gardenseg.train`: the painted plants copied across photos and scales.

    ``samples``: the training samples (``image`` float or uint8 (H, W, 3),
    ``labels``, ``class_of``, ``zoom``). Each is brought to the scale
    inference sees it at (its ``zoom``); its painted instances become
    cut-outs and its vegetation is filled in with soil. ``draw(rng)`` returns,
    with probability ``share``, a scene of plants from every sample pasted
    crowded onto one sample's soil (see :func:`compose_scene`), else
    ``fallback(rng)``.
    """

    def __init__(self, samples, fallback, share: float, rng, size: int = 384):
        from ._harvest import soil_fill, vegetation

        self.fallback, self.share, self.size = fallback, float(share), int(size)
        self.plants, self.soils = [], []
        for i, s in enumerate(samples):
            image, labels = _at_zoom(s.image, s.labels, s.zoom)
            self.plants += cutouts_from_labels(image, labels, s.class_of, photo=i)
            veg, _ = vegetation(image)
            soil = soil_fill(image, veg | (labels > 0), rng)
            if soil is not None:
                self.soils.append(soil)

    def __call__(self, rng):
        if self.plants and self.soils and rng.random() < self.share:
            soil = self.soils[int(rng.integers(len(self.soils)))]
            image, labels, classes = compose_scene(rng, soil, self.plants, self.size)
            return Sample(image, labels, classes)
        return self.fallback(rng)


def _at_zoom(image, labels, zoom: float):
    """uint8 image and int32 labels resized by ``zoom`` (bilinear / nearest)."""
    import torch
    import torch.nn.functional as F

    img = np.asarray(image)
    img = img.astype(np.float32) / 255 if img.dtype == np.uint8 else img.astype(np.float32)
    h, w = labels.shape
    oh, ow = max(8, round(h * zoom)), max(8, round(w * zoom))
    if (oh, ow) != (h, w):
        t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
        img = F.interpolate(t, size=(oh, ow), mode="bilinear", align_corners=False, antialias=zoom < 1)[0]
        img = img.permute(1, 2, 0).numpy()
        lab = torch.from_numpy(np.ascontiguousarray(labels))[None, None].float()
        labels = F.interpolate(lab, size=(oh, ow), mode="nearest")[0, 0].numpy().astype(np.int32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), labels
