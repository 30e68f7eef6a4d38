"""How much to zoom a photo so that its plants have the size the model was trained on.

:func:`estimate_scale` measures the typical size of vegetation blobs (excess-green
pixels, connected components) in the photo and compares it with the same measure
on the model's training scenes, stored in the checkpoint as
``meta["blob_size_px"]`` by the training script. The measure is linear in the
zoom, so a photo twice as close gives half the scale. ``segment(..., scale="auto")``
calls it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["estimate_scale", "vegetation_mask", "blob_size"]

# for a checkpoint that stores no blob_size_px (the first garden model's training scenes, style
# "garden", 512 px, measured with blob_size); checkpoints trained since store their own
DEFAULT_BLOB_SIZE_PX = 70.0
_MIN_BLOB_PX = 9  # components smaller than this (at the measuring resolution) are specks
_MEASURE_SIDE = 1024  # large photos are measured on a shrunk copy (cheap, same answer)
SCALE_LIMITS = (0.1, 8.0)


def vegetation_mask(rgb: np.ndarray, threshold: float = 0.08) -> np.ndarray:
    """bool (H, W): excess green (:func:`._vegetation.excess_green`) above the image's
    median by ``threshold``: the median is the ground's, so a colour cast that tints the
    whole photo does not turn the ground into vegetation. A fixed margin over the median
    rather than the segmentation's Otsu threshold: blob sizes for the scale estimate must
    not jump with how a photo's histogram splits."""
    from ._vegetation import excess_green

    rgb = np.asarray(rgb, np.float32)
    exg = excess_green(rgb)
    return (exg > max(float(np.median(exg)), -0.1) + threshold) & (rgb.sum(-1) > 0.06)


def _blob_areas(rgb: np.ndarray) -> np.ndarray:
    """Areas of the vegetation blobs of ``rgb`` in its own pixels (large images measured shrunk)."""
    from scipy import ndimage

    rgb = np.asarray(rgb, np.float32)
    h, w = rgb.shape[:2]
    step = 1
    if max(h, w) > _MEASURE_SIDE:
        step = int(np.ceil(max(h, w) / _MEASURE_SIDE))
        hh, ww = h - h % step, w - w % step
        if hh == 0 or ww == 0:  # a strip thinner than one step: nothing to measure at this size
            return np.zeros(0)
        rgb = rgb[:hh, :ww].reshape(hh // step, step, ww // step, step, 3).mean((1, 3))
    labels, n = ndimage.label(vegetation_mask(rgb))
    if n == 0:
        return np.zeros(0)
    areas = np.bincount(labels.ravel())[1:].astype(np.float64)
    return areas[areas >= _MIN_BLOB_PX] * step * step


def _weighted_mean_size(areas: np.ndarray) -> float | None:
    # an area-weighted geometric mean: smooth in the blobs (a median jumps between a few blobs)
    if areas.size == 0:
        return None
    return float(np.exp(np.sum(areas * 0.5 * np.log(areas)) / np.sum(areas)))


def blob_size(rgb: np.ndarray) -> float | None:
    """Area-weighted geometric mean of sqrt(area) of vegetation blobs, in pixels; None without vegetation."""
    return _weighted_mean_size(_blob_areas(rgb))


def _source_areas(source) -> np.ndarray:
    """Blob areas of a lazy source (``.shape`` and ``.read(window)``): whole if small, else
    a grid of windows across the image (a blob cut by a window edge counts in part)."""
    h, w = source.shape[:2]
    if h * w <= 4 * _MEASURE_SIDE**2:
        return _blob_areas(source.read())
    side = 2 * _MEASURE_SIDE
    ys = np.linspace(0, h - side, max(2, min(4, h // side)), dtype=int) if h > side else [0]
    xs = np.linspace(0, w - side, max(2, min(4, w // side)), dtype=int) if w > side else [0]
    parts = [_blob_areas(source.read((y, x, min(h, y + side), min(w, x + side)))) for y in ys for x in xs]
    return np.concatenate(parts)


def estimate_scale(rgb, model=None) -> float:
    """The zoom (1.0 = native; 0.5 = shrink 2x) at which the photo's plants match the training size.

    ``rgb`` is a float (H, W, 3) image in 0..1 (uint8 is accepted too) or a lazy
    source with ``.shape`` and ``.read(window)`` (``_image_source.ImageSource``); ``model``
    a :class:`Model` (its ``meta["blob_size_px"]``) or None for the old garden
    model's reference. Returns 1.0 when the photo shows no vegetation to measure.
    """
    if hasattr(rgb, "read") and hasattr(rgb, "shape"):
        areas = _source_areas(rgb)
    else:
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[-1] != 3:
            raise ValueError(f"rgb must be an (H, W, 3) image, got shape {rgb.shape}")
        if rgb.dtype == np.uint8:
            rgb = rgb.astype(np.float32) / 255
        areas = _blob_areas(rgb)
    meta = getattr(model, "meta", None) or {}
    reference = float(meta.get("blob_size_px", DEFAULT_BLOB_SIZE_PX))
    measured = _weighted_mean_size(areas)
    if measured is None or measured <= 0:
        return 1.0
    return float(np.clip(reference / measured, *SCALE_LIMITS))
