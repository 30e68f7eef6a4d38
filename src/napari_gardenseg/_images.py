"""Turn any image array a user may hand us into float32 RGB in 0..1.

Pure numpy: no torch, no Qt. Every entry point (``segment``, ``refine``,
``refine_instances``, the widget) goes through :func:`to_rgb_float` so that all
of them accept the same inputs and reject bad ones with the same messages.
"""

from __future__ import annotations

import numpy as np

__all__ = ["to_rgb_float", "to_rgb_uint8", "ImageError"]


class ImageError(ValueError):
    """The array cannot be read as a 2-D image."""


_CHANNEL_COUNTS = (1, 2, 3, 4)


def image_layout(shape) -> str:
    """``"hw"``, ``"hwc"`` or ``"chw"`` for an image of ``shape``; :class:`ImageError` otherwise.

    A last axis of length 1-4 wins over a first one. Works on shapes alone, so
    lazy sources use the same rule without reading pixels.
    """
    shape = tuple(shape)
    if len(shape) == 2:
        return "hw"
    if len(shape) != 3:
        raise ImageError(
            f"expected a 2-D image (H, W), (H, W, C) or (C, H, W) with C in 1..4, "
            f"got an array of shape {shape} ({len(shape)} dimensions). "
            "For a stack or time series, pass one plane (e.g. image[t]) or use "
            "segment_layer(..., stack=True) in napari."
        )
    if shape[-1] in _CHANNEL_COUNTS:
        return "hwc"
    if shape[0] in _CHANNEL_COUNTS:
        return "chw"
    raise ImageError(
        f"3-D array of shape {shape} has no channel axis of length 1-4 "
        "(grayscale, gray+alpha, RGB or RGBA) first or last. If it is a z-stack "
        "or time series, pass one plane at a time."
    )


def _channels_last(arr: np.ndarray) -> np.ndarray:
    """Return (H, W, C) from (H, W), (H, W, C) or (C, H, W)."""
    layout = image_layout(arr.shape)
    if layout == "hw":
        return arr[..., None]
    return np.moveaxis(arr, 0, -1) if layout == "chw" else arr


def _scale_to_unit(arr: np.ndarray) -> np.ndarray:
    """Map any numeric array to float32 0..1; see :func:`to_rgb_float`."""
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    data = arr.astype(np.float32, copy=True)
    finite = np.isfinite(data)
    if not finite.all():
        # +inf -> brightest, -inf and NaN -> darkest (after scaling).
        good = data[finite]
        lo = float(good.min()) if good.size else 0.0
        hi = float(good.max()) if good.size else 1.0
        data[np.isposinf(data)] = hi
        data[~np.isfinite(data)] = lo
    if data.size == 0:
        return data
    lo, hi = float(data.min()), float(data.max())
    if np.issubdtype(arr.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        return data  # already 0..1: keep the user's contrast
    return stretch(data, lo, hi)


def stretch(data: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map float32 ``data`` linearly from ``lo..hi`` to 0..1 (in place where it can).

    One rule for whole images and for windows of lazy ones. A flat image
    carries no contrast: it becomes mid-grey (black if all zero) rather than a
    division by 0. A range wider than float32 can hold is computed in float64.
    """
    if hi == lo:
        return np.full_like(data, 0.5 if hi != 0 else 0.0)
    if hi - lo > float(np.finfo(np.float32).max):
        return ((data.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)
    data -= lo
    data /= hi - lo
    return data


def to_rgb_float(image) -> np.ndarray:
    """Return ``image`` as a C-contiguous float32 (H, W, 3) array in 0..1.

    What is done to each input:

    * layout: (H, W) grayscale, (H, W, C) or channel-first (C, H, W) with C =
      1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA). A last axis of length
      1-4 wins over a first one. Grey is repeated to three channels; alpha is
      dropped (the colour under it is what the model sees).
    * uint8: divided by 255. bool: 0 or 1.
    * float already in 0..1: kept as is.
    * every other integer or float type (uint16, int32, float with any range):
      stretched linearly from its min to its max. NaN and -inf become the
      minimum, +inf the maximum. A constant image becomes mid-grey (black if 0).
    * rejected with :class:`ImageError` / ``TypeError``: empty arrays, more than
      3 dimensions, 3-D arrays without a channel axis, complex, object and
      string arrays.

    Read-only inputs (napari hands those out) are never written to.
    """
    arr = np.asarray(image)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"unsupported image dtype {arr.dtype}: expected bool, integer or float "
            "pixels (complex, object and string arrays are not images; take "
            "np.abs() of complex data first)"
        )
    if arr.size == 0 or 0 in arr.shape:
        raise ImageError(f"the image is empty (shape {arr.shape}); nothing to segment")
    arr = _channels_last(arr)
    c = arr.shape[-1]
    if c in (2, 4):
        arr = arr[..., : c - 1]  # drop alpha
    unit = _scale_to_unit(arr)
    if unit.shape[-1] == 1:
        unit = np.repeat(unit, 3, axis=-1)
    return np.ascontiguousarray(unit, dtype=np.float32)


def to_rgb_uint8(image) -> np.ndarray:
    """Like :func:`to_rgb_float` but uint8 (H, W, 3), writable and C-contiguous.

    This is the form pydensecrf's bilateral kernel needs. uint8 RGB input is
    copied unchanged.
    """
    arr = np.asarray(image)
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[-1] == 3:
        return np.array(arr, dtype=np.uint8, order="C", copy=True)
    rgb = to_rgb_float(arr)
    return np.ascontiguousarray(np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8))
