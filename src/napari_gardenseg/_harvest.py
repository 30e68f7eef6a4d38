"""Single plants and bare soil from unlabelled photos: the material of :func:`napari_gardenseg.adapt`.

A top-down photo of plants on soil tells plant pixels from soil by colour
(:func:`~napari_gardenseg._vegetation.vegetation_map`); what it cannot tell is
where one plant ends and the next begins. A vegetation component (connected
plant-coloured pixels) is taken to be *one plant* when three views agree:

* colour: the component is of plausible size, does not touch the frame, and
  has no holes large enough to be soil between plants;
* the model: exactly one confident detection lies in it, matching it
  (mask IoU >= ``MIN_IOU``), and no other detection claims part of it;
* the dense CRF: that detection's refined mask matches it as well.

The three views are not independent where the model merges two touching
plants: its one detection then matches their joint component and the CRF
follows it, so a harvested "plant" can be two (README, *Adapt to your
photos*, gives the measured share).

Components that no detection claims but whose shape is that of a single
compact plant (high solidity, size within the range of the agreed plants)
are kept as a second tier, marked ``"shape"``.

Soil is the same photo with its vegetation filled in from the surrounding
soil (normalised convolution for the light, soil texture copied from
elsewhere in the photo for the grain), so training scenes are built on the
photo's own ground, light and scale.

Everything here works on photos already resized to the network's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._instances import Instances
from ._vegetation import is_nodata, vegetation_map

__all__ = ["Plant", "PhotoMaterial", "harvest_photo", "soil_fill", "shape_singles"]

# a detection and a component are the same plant above this mask IoU
MIN_IOU = 0.5
# a detection this confident may vouch for a component; weaker ones may only object
VOUCH_SCORE = 0.4
OBJECT_SCORE = 0.25
# pseudo-labels: detections at least this confident are kept as labels of a photo
PSEUDO_SCORE = 0.7
# shape tier: convex-hull fill of a component that is surely one compact plant
SHAPE_SOLIDITY = 0.85
# ... and the widest circle inside it has at least this share of the radius of a disc of its area
SHAPE_ROUNDNESS = 0.8
MIN_AREA = 16  # pixels at network resolution: smaller components are specks


@dataclass
class Plant:
    """One harvested plant: its pixels cut from a photo (network resolution).

    ``rgb`` uint8 (h, w, 3) of the plant's box (plus a margin), ``mask`` bool
    (h, w) its pixels, ``cls`` the class name it is trained as, ``photo`` the
    index of the photo it came from, ``tier`` "model" (colour, model and CRF
    agree), "shape" (colour and shape only) or "painted" (a user's label);
    ``offset`` (y, x) of the box in the photo.
    """

    rgb: np.ndarray
    mask: np.ndarray
    cls: str
    photo: int
    tier: str
    offset: tuple = (0, 0)

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass
class PhotoMaterial:
    """What one photo gives to training: its soil, its single plants and its pseudo-labels.

    ``rgb`` uint8 (H, W, 3) at network resolution; ``soil`` the same with
    vegetation filled in from soil (None when the photo has too little soil);
    ``plants`` the harvested single plants; ``pseudo`` int32 (H, W) labels of
    harvested plants and confident detections, ``pseudo_classes`` their class
    names, ``pseudo_image`` the photo with unlabelled vegetation replaced by
    soil (so that no plant is shown to the model as background).
    """

    rgb: np.ndarray
    vegetation: np.ndarray
    informative: bool
    reason: str
    soil: np.ndarray | None = None
    plants: list = field(default_factory=list)
    pseudo: np.ndarray | None = None
    pseudo_classes: dict = field(default_factory=dict)
    pseudo_image: np.ndarray | None = None
    counts: dict = field(default_factory=dict)
    index: int = -1


def vegetation(rgb_u8: np.ndarray):
    """(bool (H, W) plant mask, VegetationMap) of a uint8 photo: the segmentation's own
    cleaned plant mask (:attr:`._vegetation.VegetationMap.plants`), so that a harvested
    plant is what ``segment``'s vegetation stage would call one."""
    veg = vegetation_map(rgb_u8.astype(np.float32) / 255)
    return veg.plants, veg


def soil_fill(rgb_u8: np.ndarray, plant: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """The photo with the pixels of ``plant`` (bool (H, W), dilated here) replaced by soil.

    Light: normalised convolution of the soil pixels at growing widths (the
    narrowest that has soil nearby wins). Grain: the soil's high-pass copied
    from a random offset where that offset lands on soil. Returns uint8
    (H, W, 3), or None when less than 5% of the photo is soil.
    """
    from scipy import ndimage
    from skimage import morphology

    hole = morphology.dilation(plant, morphology.disk(2))
    soil = ~hole
    if soil.mean() < 0.05:
        return None
    img = rgb_u8.astype(np.float32)
    w = soil.astype(np.float32)
    out = img.copy()
    todo = hole.copy()
    for sigma in (4, 12, 36, 108):
        den = ndimage.gaussian_filter(w, sigma)
        ok = todo & (den > 0.05)
        if ok.any():
            for c in range(3):
                num = ndimage.gaussian_filter(img[..., c] * w, sigma)
                out[..., c][ok] = num[ok] / den[ok]
        todo &= ~ok
        if not todo.any():
            break
    if todo.any():
        out[todo] = img[soil].mean(0)
    # soil grain: high-pass of the soil, from a random offset that lands on soil
    smooth = np.stack([ndimage.gaussian_filter(img[..., c], 2) for c in range(3)], -1)
    grain = (img - smooth) * soil[..., None]
    h, wd = plant.shape
    left = hole.copy()
    for _ in range(4):
        dy, dx = int(rng.integers(h // 8 + 1, h // 2 + 2)), int(rng.integers(wd // 8 + 1, wd // 2 + 2))
        src_ok = np.roll(soil, (dy, dx), (0, 1)) & left
        out[src_ok] += np.roll(grain, (dy, dx), (0, 1))[src_ok]
        left &= ~src_ok
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _overlaps(found: Instances, comps: np.ndarray, n_comps: int, mask_threshold: float = 0.5):
    """(overlap (N, C+1) pixels of each detection in each component, detection areas (N,))."""
    over = np.zeros((len(found), n_comps + 1), np.int64)
    areas = np.zeros(len(found), np.int64)
    for i in range(len(found)):
        m = found.masks[i] > mask_threshold
        if m.size == 0:
            continue
        areas[i] = int(m.sum())
        over[i] = np.bincount(comps[found.region(i)][m], minlength=n_comps + 1)
    return over, areas


def shape_singles(comps: np.ndarray, props, size_range) -> list[int]:
    """Components (1-based ids) that look like one compact plant: in ``size_range`` (pixels), off the
    frame edge, solid, and round inside (two touching round plants are solid too, but the widest
    circle inside them is much smaller than a disc of their area)."""
    from scipy import ndimage

    h, w = comps.shape
    out = []
    for p in props:
        y0, x0, y1, x1 = p.bbox
        if y0 == 0 or x0 == 0 or y1 == h or x1 == w:
            continue
        if not size_range[0] <= p.area <= size_range[1] or p.solidity < SHAPE_SOLIDITY:
            continue
        inscribed = float(ndimage.distance_transform_edt(np.pad(p.image, 1)).max())
        if inscribed >= SHAPE_ROUNDNESS * np.sqrt(p.area / np.pi):
            out.append(int(p.label))
    return out


def harvest_photo(
    model,
    rgb_u8: np.ndarray,
    index: int,
    rng: np.random.Generator,
    *,
    crf_params=None,
    cancel=None,
    pseudo_score: float = PSEUDO_SCORE,
) -> PhotoMaterial:
    """Single plants, soil and pseudo-labels of one photo (uint8 (H, W, 3) at network resolution).

    ``model``: a loaded :class:`~napari_gardenseg._models.Model`; it runs once
    on the photo at its own pixels (``scale=1.0``). ``index`` is stored in
    each :class:`Plant`. Raises :class:`~napari_gardenseg.Cancelled` when
    ``cancel`` is set.
    """
    from skimage import measure

    from ._inference import predict_instances, suppress_duplicates

    plant_mask, veg = vegetation(rgb_u8)
    mat = PhotoMaterial(rgb_u8, plant_mask, veg.informative, veg.reason, index=index)
    if not veg.informative:
        mat.counts = {"components": 0, "model": 0, "shape": 0, "pseudo": 0}
        return mat
    rgb = rgb_u8.astype(np.float32) / 255
    # leaf edges below the threshold would leave green rims on the soil: fill a looser mask;
    # nodata (an orthomosaic's corners) is filled too, so no scene is built on a black "soil"
    mat.soil = soil_fill(rgb_u8, plant_mask | (veg.probability > 0.2) | is_nodata(rgb), rng)
    found = predict_instances(model, rgb, scale=1.0, min_score=OBJECT_SCORE, cancel=cancel)
    # one plant is often detected once per class (the detector's NMS is per class): classes do not count here
    found = suppress_duplicates(found, 0.5)
    comps = measure.label(plant_mask, connectivity=2)
    props = measure.regionprops(comps)
    n = len(props)
    h, w = comps.shape
    max_area = 0.25 * h * w
    over, det_area = _overlaps(found, comps, n)
    comp_area = np.zeros(n + 1, np.int64)
    for p in props:
        comp_area[p.label] = p.area
    # the detections inside each component (most of the detection's mask lies in it)
    inside = (over[:, 1:] >= 0.3 * np.maximum(det_area, 1)[:, None]) | (over[:, 1:] >= 0.3 * comp_area[None, 1:])
    candidates: dict[int, int] = {}
    for p in props:
        c = p.label
        y0, x0, y1, x1 = p.bbox
        if y0 == 0 or x0 == 0 or y1 == h or x1 == w or not MIN_AREA * 4 <= p.area <= max_area:
            continue
        dets = np.flatnonzero(inside[:, c - 1]) if len(found) else np.zeros(0, int)
        if len(dets) != 1 or found.scores[dets[0]] < VOUCH_SCORE:
            continue
        d = int(dets[0])
        iou = over[d, c] / max(det_area[d] + comp_area[c] - over[d, c], 1)
        if iou >= MIN_IOU:
            candidates[c] = d
    # the CRF's view: the refined claim of the vouching detection must match the component too
    agreed: dict[int, int] = {}
    if candidates:
        from .crf import CRFParams, refine_masks

        params = CRFParams.from_any(crf_params, defaults=model.meta.get("crf"))
        order = list(candidates.items())
        claims = refine_masks(rgb_u8, found.take([d for _, d in order]), params, cancel=cancel)
        for k, (c, d) in enumerate(order):
            m = claims.masks[k]
            if m.size == 0:
                continue
            ry, rx = claims.region(k)
            inter = int(np.count_nonzero(m & (comps[ry, rx] == c)))
            iou = inter / max(int(m.sum()) + int(comp_area[c]) - inter, 1)
            if iou >= MIN_IOU:
                agreed[c] = d
    names = model.class_names
    cls_of = {c: names[int(found.class_ids[d])] for c, d in agreed.items()}
    if agreed:
        areas = comp_area[list(agreed)]
        size_range = (max(MIN_AREA * 4, 0.5 * areas.min()), min(max_area, 2.0 * areas.max()))
    else:
        size_range = (MIN_AREA * 4, min(max_area, 0.02 * h * w))
    claimed_any = (over[:, 1:] > 0).any(0) if len(found) else np.zeros(n, bool)
    shape_tier = [c for c in shape_singles(comps, props, size_range) if c not in agreed and not claimed_any[c - 1]]
    common = max(set(cls_of.values()), key=list(cls_of.values()).count) if cls_of else names[1]
    for c in shape_tier:
        cls_of[c] = common
    for p in props:
        if p.label not in cls_of:
            continue
        y0, x0, y1, x1 = p.bbox
        y0, x0, y1, x1 = max(0, y0 - 2), max(0, x0 - 2), min(h, y1 + 2), min(w, x1 + 2)
        mat.plants.append(
            Plant(
                rgb_u8[y0:y1, x0:x1].copy(),
                comps[y0:y1, x0:x1] == p.label,
                cls_of[p.label],
                index,
                "model" if p.label in agreed else "shape",
                (y0, x0),
            )
        )
    _pseudo_labels(mat, found, comps, cls_of, names, pseudo_score)
    mat.counts = {"components": n, "model": len(agreed), "shape": len(shape_tier), "pseudo": len(mat.pseudo_classes)}
    return mat


def _pseudo_labels(mat: PhotoMaterial, found: Instances, comps, cls_of: dict, names, pseudo_score: float) -> None:
    """Labels of a photo from its harvested plants and the model's confident detections (gated to
    vegetation); vegetation that no label covers is replaced by soil in ``pseudo_image``."""
    from skimage import morphology

    labels = np.zeros(comps.shape, np.int32)
    classes: dict[int, str] = {}
    k = 0
    for c, cls in cls_of.items():
        k += 1
        labels[comps == c] = k
        classes[k] = cls
    gate = morphology.dilation(mat.vegetation, morphology.disk(1))
    for i in np.flatnonzero(found.scores >= pseudo_score):  # scores are sorted: best first
        m = found.masks[i] > 0.5
        if m.size == 0:
            continue
        ry, rx = found.region(i)
        m = m & gate[ry, rx]
        free = m & (labels[ry, rx] == 0)
        if m.sum() < MIN_AREA or free.sum() < 0.6 * m.sum():
            continue
        k += 1
        sub = labels[ry, rx]
        sub[free] = k
        classes[k] = names[int(found.class_ids[i])]
    if mat.soil is None:
        return
    covered = morphology.dilation(labels > 0, morphology.disk(2))
    image = mat.rgb.copy()
    replace = mat.vegetation & ~covered
    image[replace] = mat.soil[replace]
    mat.pseudo, mat.pseudo_classes, mat.pseudo_image = labels, classes, image
