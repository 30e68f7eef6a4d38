"""How well a model agrees with unlabelled photos: the check of each round of :func:`~napari_gardenseg.adapt`.

Without labels nothing measures AP; what can be measured on held-back photos
is agreement with what is known about them:

* ``scenes``: F1 at mask IoU 0.5 on scenes composed from the held-back
  photos' own single plants (found once, with the base model, as
  :mod:`._harvest` finds them) on their own soil: exact labels, crowded like
  the photos, never trained on;
* ``singles``: recall at IoU 0.5 of those single plants in the held-back
  photos themselves;
* ``cover``: IoU of the union of the instances with the vegetation mask;
* ``flips``: F1 at IoU 0.5 between the instances of a photo and those of
  its mirror image (a model that has learnt the plants finds the same ones).

``agreement``, the figure :func:`~napari_gardenseg.adapt` keeps a round by, is
``scenes`` whenever there are scenes: it is the only one with exact labels,
and the one that follows AP50 on touching plants. The other three are
self-consistency: self-training raises them by construction (a model trained
on its own detections finds them again, in the mirror image too), so they rose
in a run where AP50 on touching plants fell. They are reported, and stand in
(their mean) only when the held-back photos give no scene.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._instances import paint_image

__all__ = ["CheckSet", "make_check_set", "measure_agreement", "match_f1", "mask_ious"]

SCORE = 0.5  # instances at least this confident count


@dataclass
class CheckSet:
    """Held-back material: photos (uint8 at network resolution) with their vegetation masks and
    single-plant components, and composed scenes with exact labels."""

    photos: list = field(default_factory=list)  # (rgb uint8, vegetation bool, singles int32 labels)
    scenes: list = field(default_factory=list)  # (rgb uint8, labels int32)


def mask_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) float: the mask IoU of instance ``i + 1`` of the int label image ``a`` with instance
    ``j + 1`` of ``b`` (A, B: their largest ids; 0 for ids without pixels)."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    nb = int(b.max()) + 1
    cont = np.bincount((a * nb + b).ravel(), minlength=(int(a.max()) + 1) * nb).reshape(-1, nb)
    area_a, area_b = cont.sum(1), cont.sum(0)
    inter = cont[1:, 1:]
    union = area_a[1:, None] + area_b[None, 1:] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def match_f1(a: np.ndarray, b: np.ndarray, iou: float = 0.5) -> tuple[int, int, int]:
    """(matches, instances in ``a``, instances in ``b``) of two int label images; a match is a pair
    with mask IoU above ``iou`` (unique for iou >= 0.5 since labels do not overlap)."""
    ious = mask_ious(a, b)
    count = [int(np.count_nonzero(np.bincount(np.asarray(x, np.int64).ravel())[1:])) for x in (a, b)]
    return int(np.count_nonzero(ious > iou)), count[0], count[1]


def make_check_set(
    rng, photos, size_range, model=None, n_scenes: int = 2, scene_size: int = 320, cancel=None
) -> CheckSet:
    """A :class:`CheckSet` from held-back uint8 photos: their single plants and ``n_scenes``
    composed scenes per photo that has soil and two singles or more.

    Singles: with ``model`` (the base model, once, before any training) those
    :func:`~._harvest.harvest_photo` finds (colour, model and CRF agree, or colour
    and shape); without, by colour and shape alone (:func:`~._harvest.shape_singles`).
    """
    from skimage import measure

    from ._harvest import Plant, harvest_photo, shape_singles, soil_fill, vegetation
    from ._scenes import compose_scene

    out = CheckSet()
    for rgb in photos:
        if model is not None:
            mat = harvest_photo(model, rgb, 0, rng, cancel=cancel)
            if not mat.informative:
                continue
            veg, soil, plants = mat.vegetation, mat.soil, mat.plants
            singles = np.zeros(veg.shape, np.int32)
            for k, p in enumerate(plants, start=1):
                (y0, x0), (h, w) = p.offset, p.mask.shape
                singles[y0 : y0 + h, x0 : x0 + w][p.mask] = k
        else:
            veg, vmap = vegetation(rgb)
            if not vmap.informative:
                continue
            comps = measure.label(veg, connectivity=2)
            props = measure.regionprops(comps)
            keep = set(shape_singles(comps, props, size_range))
            singles = np.zeros(veg.shape, np.int32)
            plants = []
            for p in props:
                if p.label in keep:
                    y0, x0, y1, x1 = p.bbox
                    plants.append(Plant(rgb[y0:y1, x0:x1], comps[y0:y1, x0:x1] == p.label, "plant", 0, "shape"))
                    singles[comps == p.label] = len(plants)
            soil = soil_fill(rgb, veg, rng)
        out.photos.append((rgb, veg, singles))
        if soil is None or len(plants) < 2:
            continue
        for _ in range(n_scenes):
            image, labels, _ = compose_scene(rng, soil, plants, scene_size)
            if labels.any():
                out.scenes.append((image, labels))
    return out


def _labels(model, rgb_u8, cancel=None) -> np.ndarray:
    from ._inference import predict_instances

    found = predict_instances(model, rgb_u8.astype(np.float32) / 255, scale=1.0, min_score=SCORE, cancel=cancel)
    return paint_image(found, 0.5)


def measure_agreement(model, check: CheckSet, cancel=None) -> dict:
    """The agreement measures (see the module docstring) of ``model`` on ``check``; values in 0..1."""
    sums = {"scenes": [0, 0, 0], "singles": [0, 0], "cover": [0, 0], "flips": [0, 0, 0]}
    for image, truth in check.scenes:
        m, na, nb = match_f1(truth, _labels(model, image, cancel))
        sums["scenes"] = [s + v for s, v in zip(sums["scenes"], (m, na, nb))]
    for rgb, veg, singles in check.photos:
        pred = _labels(model, rgb, cancel)
        flipped = _labels(model, np.ascontiguousarray(rgb[:, ::-1]), cancel)[:, ::-1]
        if singles.any():
            m, na, _ = match_f1(singles, pred)
            sums["singles"][0] += m
            sums["singles"][1] += na
        fg = pred > 0
        sums["cover"][0] += int(np.count_nonzero(fg & veg))
        sums["cover"][1] += int(np.count_nonzero(fg | veg))
        m, na, nb = match_f1(pred, flipped)
        sums["flips"] = [s + v for s, v in zip(sums["flips"], (m, na, nb))]
    out: dict = {}
    for key in ("scenes", "flips"):
        m, na, nb = sums[key]
        if na + nb:
            out[key] = round(2 * m / (na + nb), 4)
    if sums["singles"][1]:
        out["singles"] = round(sums["singles"][0] / sums["singles"][1], 4)
    if sums["cover"][1]:
        out["cover"] = round(sums["cover"][0] / sums["cover"][1], 4)
    if "scenes" in out:
        out["agreement"] = out["scenes"]
    else:
        out["agreement"] = round(float(np.mean(list(out.values()))), 4) if out else 0.0
    return out
