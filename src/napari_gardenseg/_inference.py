"""``segment()``: one image through Mask R-CNN and the dense CRF.

The stages are separate functions with plain array inputs and outputs so that
tiled inference (many ``predict_instances`` calls whose soft masks are merged
before the CRF) and batch runs can reuse them:

    ImageSource (in memory or lazy) -> predict_instances per tile (compact Instances)
    -> _tiling.merge_tiles -> _instances.paint -> crf.refine_masks -> paint

Nothing here holds an image-sized array per instance: masks stay local to
their boxes and only :func:`~napari_gardenseg._instances.paint` makes label
images (whole, or a zarr chunk at a time in :func:`segment_to_zarr`).
"""

from __future__ import annotations

import difflib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ._cancel import Cancelled, ProgressFn, check
from ._models import Model, load_model
from ._instances import Instances, paint, paint_image
from ._results import SegmentationResult
from ._tiling import check_tiling, detect, plan_tiles

__all__ = ["segment", "segment_to_zarr", "predict_instances", "Cancelled"]



@contextmanager
def _cancellable(net: torch.nn.Module, cancel):
    """Check ``cancel`` before every submodule runs, so a long forward pass stops within milliseconds."""
    if cancel is None:
        yield
        return

    def hook(_module, _inputs):
        check(cancel, "segmentation")

    handles = [m.register_forward_pre_hook(hook) for m in net.modules()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _check_fraction(name: str, value, *, open_low: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}") from None
    if not (0.0 < v <= 1.0 if open_low else 0.0 <= v <= 1.0) or np.isnan(v):
        bound = "above 0 and at most 1" if open_low else "between 0 and 1"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return v


def class_ids_for(model: Model, classes) -> set[int] | None:
    """Turn a class filter (names or ids) into class ids; None keeps all."""
    if classes is None:
        return None
    if isinstance(classes, (str, int, np.integer)):
        classes = [classes]
    elif not isinstance(classes, (list, tuple, set, frozenset, np.ndarray)):
        raise TypeError(
            f"classes must be None, a class name or id, or a list of them, got {classes!r} ({type(classes).__name__})"
        )
    names = model.class_names
    ids = set()
    for c in classes:
        if isinstance(c, (int, np.integer)) and 0 < int(c) < len(names):
            ids.add(int(c))
        elif isinstance(c, str) and c in names[1:]:
            ids.update(i for i, n in enumerate(names) if n == c and i > 0)
        else:
            real = sorted({n for n in names[1:] if n != "N/A"})
            close = difflib.get_close_matches(str(c), real, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(
                f"unknown class {c!r} for model {model.source!r}.{hint} "
                f"Its classes are: {', '.join(real[:40])}{' ...' if len(real) > 40 else ''}"
            )
    return ids


@contextmanager
def _network_size(net, size):
    """Make the network's transform resize its input to exactly ``size`` = (h, w), or leave it when None."""
    if size is None:
        yield
        return
    saved = net.transform.fixed_size
    net.transform.fixed_size = (int(size[1]), int(size[0]))  # torchvision wants (w, h)
    try:
        yield
    finally:
        net.transform.fixed_size = saved


def network_size(shape, scale) -> tuple[int, int] | None:
    """The (h, w) the network sees for a region of ``shape`` at ``scale`` (None: the model's own resize)."""
    if scale is None:
        return None
    return max(1, int(round(shape[0] * scale))), max(1, int(round(shape[1] * scale)))


def predict_instances(
    model: Model, rgb: np.ndarray, *, scale: float | None = None, offset=(0, 0), image_shape=None, cancel=None,
    min_score: float = 0.0, classes=None,
) -> Instances:
    """Run the network on one float RGB (h, w, 3) region in 0..1; return compact instances.

    ``scale`` None lets the model resize the region its own way (torchvision's
    ``min_size``/``max_size``); a number resizes it by that factor instead
    (1.0: native pixels). Each mask is pasted into its own box at the region's
    resolution exactly as torchvision's ``paste_masks_in_image`` would, but
    kept local to the box. ``offset`` (y, x) places the region in an image of
    ``image_shape``; instances are sorted by descending score. Detections
    below ``min_score`` or not in ``classes`` (a set of ids) are dropped before
    their masks are pasted.
    """
    from torchvision.models.detection.roi_heads import expand_boxes, expand_masks
    from torchvision.models.detection.transform import resize_boxes

    h, w = rgb.shape[:2]
    net = model.net
    tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).to(model.device)
    size = network_size((h, w), scale)
    with model.lock, torch.inference_mode(), _cancellable(net, cancel), _network_size(net, size):
        if size is not None and size != (h, w):
            # resize before the transform normalises: a 12 MP photo is not normalised at full size
            tensor = torch.nn.functional.interpolate(tensor[None], size=size, mode="bilinear", align_corners=False)[0]
        # GeneralizedRCNN.forward, stopping before its postprocess pastes every mask into a full frame
        images, _ = net.transform([tensor])
        del tensor
        features = net.backbone(images.tensors)
        proposals, _ = net.rpn(images, features)
        det = net.roi_heads(features, proposals, images.image_sizes)[0][0]
        del features, proposals, images.tensors
        boxes = resize_boxes(det["boxes"], images.image_sizes[0], (h, w))
        order = torch.argsort(det["scores"], descending=True, stable=True)
        wanted = det["scores"][order] >= min_score
        if classes is not None:
            wanted &= torch.isin(det["labels"][order], torch.as_tensor(sorted(classes), device=order.device))
        order = order[wanted]
        boxes, scores, labels = boxes[order], det["scores"][order], det["labels"][order]
        masks, factor = expand_masks(det["masks"][order], padding=1)
        pasted = expand_boxes(boxes, factor).to(dtype=torch.int64).cpu().numpy()
        local, offsets = [], []
        for m, (bx0, by0, bx1, by1) in zip(masks, pasted):
            bw, bh = max(int(bx1 - bx0 + 1), 1), max(int(by1 - by0 + 1), 1)
            x0, x1 = max(bx0, 0), min(bx1 + 1, w)
            y0, y1 = max(by0, 0), min(by1 + 1, h)
            if x1 <= x0 or y1 <= y0:
                local.append(np.zeros((0, 0), np.float32))
                offsets.append((offset[0] + max(min(by0, h), 0), offset[1] + max(min(bx0, w), 0)))
                continue
            big = torch.nn.functional.interpolate(m[None], size=(bh, bw), mode="bilinear", align_corners=False)[0, 0]
            local.append(big[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0].float().cpu().numpy())
            offsets.append((offset[0] + y0, offset[1] + x0))
    shift = np.array([offset[1], offset[0], offset[1], offset[0]], np.float32)
    return Instances(
        local,
        np.asarray(offsets, np.int64).reshape(-1, 2),
        scores.float().cpu().numpy(),
        labels.cpu().numpy(),
        boxes.float().cpu().numpy() + shift,
        image_shape if image_shape is not None else (h, w),
    )


def _check_scale(scale):
    if scale is None or (isinstance(scale, str) and scale == "auto"):
        return scale
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)):
        raise TypeError(f"scale must be None, 'auto' or a positive number, got {scale!r}")
    if not (np.isfinite(scale) and 0.01 <= float(scale) <= 16):
        raise ValueError(f"scale must be between 0.01 and 16 (1.0 = the image's own pixels), got {scale!r}")
    return float(scale)


def resolve_scale(scale, source, model):
    """``"auto"`` -> the estimated scale at which plants have the size the model was trained on."""
    if scale != "auto":
        return scale
    from ._scale import estimate_scale

    return float(estimate_scale(source, model))


def detect_instances(model, source, *, score_threshold, wanted, mask_threshold, scale, tile_size, tile_overlap,
                     merge_classes=False, cancel=None, progress=None) -> tuple[Instances, dict]:
    """The instances of a whole image (tiled or not), filtered, deduplicated; with a note of how it ran."""
    report = progress or (lambda f, m: None)
    scale = resolve_scale(scale, source, model)
    tiles, scale = plan_tiles(source.shape, tile_size, tile_overlap, scale, model)
    if tiles is None:
        report(0.0, "running Mask R-CNN")
        found = predict_instances(model, source.read(), scale=scale, cancel=cancel, min_score=score_threshold,
                                  classes=wanted)
    else:
        found = detect(model, source, tiles, scale=scale, min_score=score_threshold, classes=wanted,
                       mask_threshold=mask_threshold, cancel=cancel, progress=progress)
    if merge_classes:
        found = suppress_duplicates(found, mask_threshold)
        found.class_ids[:] = 1
    how = {"scale": scale, "tiles": 0 if tiles is None else len(tiles)}
    if tiles is not None:
        how["tile_windows"] = [t.window for t in tiles]
    return found, how


def suppress_duplicates(found: Instances, mask_threshold: float, ios: float = 0.8) -> Instances:
    """Class-agnostic: drop an instance mostly inside a better-scored one (the detector's NMS is per class)."""
    from ._tiling import _intersection

    drop = np.zeros(len(found), bool)
    ext = found.extents()
    for i in range(len(found)):
        mi = found.masks[i] > mask_threshold
        ni = int(mi.sum())
        for j in range(i):
            if drop[j] or ni == 0:
                continue
            win = _intersection(ext[i], ext[j])
            if win is None:
                continue
            inter = np.count_nonzero((found.crop(i, win) > mask_threshold) & (found.crop(j, win) > mask_threshold))
            nj = int(np.count_nonzero(found.masks[j] > mask_threshold))
            if inter and inter / min(ni, nj) >= ios:
                drop[i] = True
                break
    return found.take(~drop)


def _compact(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop ids with no pixels and renumber 1..M; return (labels, kept indices)."""
    present = np.bincount(labels.ravel(), minlength=n + 1)[1 : n + 1] > 0
    kept = np.flatnonzero(present)
    if len(kept) == n:
        return labels, kept
    lut = np.zeros(n + 1, np.int32)
    lut[kept + 1] = np.arange(1, len(kept) + 1, dtype=np.int32)
    return lut[labels], kept


def segment(
    image,
    model="coco",
    score_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    classes=None,
    crf: bool = True,
    crf_params=None,
    *,
    device="auto",
    progress: ProgressFn | None = None,
    cancel=None,
    keep_soft_masks: bool = False,
    tile_size=None,
    tile_overlap=None,
    scale=None,
    merge_classes: bool = False,
) -> SegmentationResult:
    """Segment the objects in one 2-D image.

    ``image``: any array :func:`napari_gardenseg.to_rgb_float` accepts (uint8,
    uint16, float of any range with NaN/inf, bool; grayscale, RGB, RGBA,
    channel-first), or a lazy array (dask, zarr), read tile by tile.
    ``model``: a :class:`Model` from :func:`load_model`, or anything
    ``load_model`` takes. Instances scoring below ``score_threshold``, or not
    in ``classes`` (names or ids; None keeps all), are dropped. Each pixel
    belongs to one instance (the highest score wins); an instance left with no
    pixels is dropped. With ``crf=True`` the soft masks are refined by the
    dense CRF using ``crf_params`` or, when None, the settings stored with the
    model.

    ``scale``: None lets the model resize the image its own way; a number
    resizes it by that factor first (1.0 = native pixels, 0.25 = a quarter);
    ``"auto"`` estimates it from the image. ``tile_size`` (pixels at that
    scale, or ``"auto"``) runs the network on overlapping tiles of that size
    (``tile_overlap`` pixels apart) and merges instances across tiles; see
    :mod:`napari_gardenseg._tiling`. ``merge_classes=True`` reports every
    instance as one class, ``"plant"``, and removes cross-class duplicates.

    ``progress(fraction, message)`` reports the stages; setting ``cancel``
    (an Event or a callable) raises :class:`Cancelled` within a fraction of a
    second. ``keep_soft_masks`` keeps the compact soft masks as
    ``result.instances``.
    """
    run = _Run.start(image, model, score_threshold, mask_threshold, classes, crf, crf_params, device,
                     scale, tile_size, tile_overlap, merge_classes, progress, cancel)
    found = run.detect()
    run.report(0.7, "assembling instances")
    labels = paint_image(found, run.mask_threshold)
    labels, kept = _compact(labels, len(found))
    found = found.take(kept)
    claims = run.refine(found)
    refined = None if claims is None else paint_image(claims, run.mask_threshold)
    run.report(1.0, f"{len(found)} instances")
    return run.result(found, labels, refined, claims, keep_soft_masks)


def segment_to_zarr(
    image,
    path,
    model="garden",
    score_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    classes=None,
    crf: bool = True,
    crf_params=None,
    *,
    device="auto",
    progress: ProgressFn | None = None,
    cancel=None,
    tile_size="auto",
    tile_overlap=None,
    scale=None,
    merge_classes: bool = False,
    overwrite: bool = False,
    chunk_size: int = 1024,
) -> SegmentationResult:
    """:func:`segment` for images larger than memory: labels go into a zarr store, chunk by chunk.

    ``image``: a path (TIFF/BigTIFF and zarr are read lazily) or any array
    :func:`segment` takes. Writes a zarr group at ``path`` with int32 arrays
    ``labels`` and, with the CRF, ``refined`` (chunks of ``chunk_size``²) and
    the run's settings in its attributes; the folder appears only when complete
    and an existing one is kept unless ``overwrite=True``. Returns a
    :class:`SegmentationResult` whose ``labels``/``refined`` are the zarr
    arrays (napari shows them lazily) and whose ``table`` is read band by band.
    Memory: the compact instances, one tile and a few chunks, whatever the
    image size.
    """
    import zarr

    from ._files import atomic_write, check_target
    from ._io import open_image

    check_target(path, overwrite, "zarr output")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 64:
        raise ValueError(f"chunk_size must be a whole number of pixels >= 64, got {chunk_size!r}")
    source = image if not isinstance(image, (str, os.PathLike)) else open_image(image)
    run = _Run.start(source, model, score_threshold, mask_threshold, classes, crf, crf_params, device,
                     scale, tile_size, tile_overlap, merge_classes, progress, cancel)
    found = run.detect()
    h, w = run.source.shape
    windows = [(y, x, min(y + chunk_size, h), min(x + chunk_size, w))
               for y in range(0, h, chunk_size) for x in range(0, w, chunk_size)]
    run.report(0.7, "assembling instances")
    areas = np.zeros(len(found) + 1, np.int64)
    for win in windows:  # which instances keep pixels, before any id is written
        areas += np.bincount(paint(found, run.mask_threshold, win).ravel(), minlength=len(found) + 1)
    found = found.take(np.flatnonzero(areas[1:] > 0))
    claims = run.refine(found)
    chunks = (min(chunk_size, h), min(chunk_size, w))
    with atomic_write(path, overwrite, "zarr output") as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        names = ["labels"] + ([] if claims is None else ["refined"])
        arrays = {n: group.create_array(n, shape=(h, w), chunks=chunks, dtype="int32", fill_value=0) for n in names}
        for k, win in enumerate(windows):
            check(cancel, "writing labels")
            run.report(0.95 + 0.05 * k / len(windows), f"writing chunk {k + 1} of {len(windows)}")
            y0, x0, y1, x1 = win
            arrays["labels"][y0:y1, x0:x1] = paint(found, run.mask_threshold, win)
            if claims is not None:
                arrays["refined"][y0:y1, x0:x1] = paint(claims, run.mask_threshold, win)
        group.attrs.update(_json_safe(run.meta(claims)))
    stored = zarr.open_group(str(path), mode="r")
    run.report(1.0, f"{len(found)} instances")
    return run.result(found, stored["labels"], stored["refined"] if claims is not None else None, claims, False)


def _json_safe(meta: dict) -> dict:
    import dataclasses

    out = {}
    for k, v in meta.items():
        if dataclasses.is_dataclass(v):
            v = dataclasses.asdict(v)
        out[k] = json.loads(json.dumps(v, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    return out


@dataclass
class _Run:
    """One segmentation's settings, validated once, shared by :func:`segment` and :func:`segment_to_zarr`."""

    source: object
    model: Model
    wanted: set | None
    score_threshold: float
    mask_threshold: float
    params: object
    scale: object
    tile_size: object
    tile_overlap: object
    merge_classes: bool
    report: Callable
    cancel: object
    how: dict = field(default_factory=dict)

    @classmethod
    def start(cls, image, model, score_threshold, mask_threshold, classes, crf, crf_params, device,
              scale, tile_size, tile_overlap, merge_classes, progress, cancel) -> "_Run":
        from ._io import ImageSource

        score_threshold = _check_fraction("score_threshold", score_threshold)
        mask_threshold = _check_fraction("mask_threshold", mask_threshold, open_low=True)
        if mask_threshold >= 1.0:
            raise ValueError(f"mask_threshold must be above 0 and below 1, got {mask_threshold!r}")
        scale = _check_scale(scale)
        check_tiling(tile_size, tile_overlap)
        if not isinstance(merge_classes, (bool, np.bool_)):
            raise TypeError(f"merge_classes must be True or False, got {merge_classes!r}")
        report = progress or (lambda f, m: None)
        source = image if isinstance(image, ImageSource) else ImageSource(image)
        params = None
        if crf:
            from .crf import CRFParams

            params = CRFParams.from_any(crf_params)  # bad settings fail before the model loads
        report(0.0, "loading model")
        model = load_model(model, device=device)
        wanted = class_ids_for(model, classes)
        if crf and crf_params is None:
            params = CRFParams.from_any(model.meta.get("crf"))
        check(cancel, "segmentation")
        return cls(source, model, wanted, score_threshold, mask_threshold, params, scale, tile_size,
                   tile_overlap, bool(merge_classes), report, cancel)

    def detect(self) -> Instances:
        found, self.how = detect_instances(
            self.model, self.source, score_threshold=self.score_threshold, wanted=self.wanted,
            mask_threshold=self.mask_threshold, scale=self.scale, tile_size=self.tile_size,
            tile_overlap=self.tile_overlap, merge_classes=self.merge_classes, cancel=self.cancel,
            progress=lambda f, m: self.report(0.05 + 0.65 * f, m),
        )
        return found

    def refine(self, found: Instances) -> Instances | None:
        if self.params is None:
            return None
        from .crf import refine_masks

        check(self.cancel, "segmentation")
        self.report(0.75, f"refining {len(found)} instances with the dense CRF")
        return refine_masks(
            self.source, found, self.params, self.mask_threshold, device=self.model.device,
            cancel=self.cancel, progress=lambda f, m: self.report(0.75 + 0.2 * f, m),
        )

    def meta(self, claims) -> dict:
        crf_meta = {} if claims is None else {k: v for k, v in claims.meta.items() if k.startswith("crf_")}
        return {
            "model": self.model.source,
            "score_threshold": self.score_threshold,
            "mask_threshold": self.mask_threshold,
            "crf": self.params is not None,
            "crf_params": self.params,
            **crf_meta,
            "merge_classes": self.merge_classes,
            **self.how,
        }

    def result(self, found, labels, refined, claims, keep_soft_masks) -> SegmentationResult:
        names = self.model.class_names
        class_names = ["plant"] * len(found) if self.merge_classes else [
            names[int(c)] if int(c) < len(names) else str(int(c)) for c in found.class_ids
        ]
        return SegmentationResult(
            labels=labels,
            refined=refined,
            class_ids=found.class_ids.astype(np.int64),
            class_names=class_names,
            scores=found.scores.astype(np.float32),
            boxes=found.boxes.astype(np.float32),
            instances=found if keep_soft_masks else None,
            meta=self.meta(claims),
        )
