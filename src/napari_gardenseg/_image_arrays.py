"""Turn any image array a user may hand us into float32 RGB in 0..1.

Pure numpy: no torch, no Qt. Every entry point (``segment``, ``refine``,
``refine_instances``, the widget) goes through :func:`to_rgb_float` so that all
of them accept the same inputs and reject bad ones with the same messages.
"""

from __future__ import annotations

import numpy as np

__all__ = ["to_rgb_float", "to_rgb_uint8", "ImageError", "intensity_range"]


class ImageError(ValueError):
    """An array or file cannot be read as one 2-D image (a ValueError).

    Raised for empty arrays, arrays of more than 3 dimensions or without a channel
    axis of length 1-4, files that are not images (or are damaged, or hold a stack
    where one image is wanted), web addresses, and annotation or dataset files that
    are not what they should be (:func:`~napari_gardenseg.read_coco`,
    :func:`~napari_gardenseg.read_yolo`).
    """


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


# floats of 0..1 photos (reflectance, img_as_float) may pass 1 a little in their highlights; a
# 0..255 float photo whose brightest pixel is at most this is black, whichever way it is read
FLOAT_OVERSHOOT = 2.0
# a 0..1 photo resampled (bicubic, Lanczos) or sharpened dips below 0 at dark edges, by a share of
# its brightest value: read as 0..1 with those dips black, not stretched brighter from its minimum
FLOAT_UNDERSHOOT = 0.1


def intensity_range(dtype, lo: float, hi: float) -> tuple[float, float]:
    """The (low, high) that maps to 0..1 for pixels of ``dtype`` whose finite values span ``lo..hi``.

    The one intensity rule of the package (see :func:`to_rgb_float`): bool
    (0, 1); uint8 (0, 255); any other type whose values are all >= 0 the
    smallest of these ranges that holds them: (0, 1) for floats (up to
    :data:`FLOAT_OVERSHOOT`: reflectance whose highlights pass 1, which are then
    white; and down to :data:`FLOAT_UNDERSHOOT` times ``-hi``: a resampled
    photo's dips below 0, then black), (0, 255), (0, 65535); anything else
    (negative values, or above 65535) its own ``(lo, hi)``. Depends on the
    values' range only through that choice, so a uint16 copy (x257) or a float
    copy (0..255 or 0..1) of an 8-bit image maps to the same floats as the 8-bit
    image.
    """
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return (0.0, 1.0)
    if dtype == np.uint8:
        return (0.0, 255.0)
    if dtype.kind == "f" and hi <= FLOAT_OVERSHOOT and lo >= -FLOAT_UNDERSHOOT * max(hi, 0.0):
        return (0.0, 1.0)
    if lo >= 0.0:
        if hi <= 255.0:
            return (0.0, 255.0)
        if hi <= 65535.0:
            return (0.0, 65535.0)
    return (float(lo), float(hi))


def host_array(image):
    """``image`` as an array numpy reads, without copying numpy, dask or zarr arrays.

    A PIL image is read as the file reader reads an opened photo (its
    palette, CMYK, alpha, ICC profile and EXIF orientation applied). A torch
    tensor (on any device, e.g. a model's (C, H, W) input) or a CuPy
    array is copied to host memory, which ``np.asarray`` refuses for GPU
    memory. Leading axes of length 1 in front of an image of more than three
    axes are dropped: (1, H, W, 3) from a batch of one, (1, 1, H, W) from a
    (T, Z, Y, X) reader; (1, H, W) stays a one-channel image.
    """
    package = type(image).__module__.split(".")[0]
    if package == "PIL" and hasattr(image, "getexif"):  # a PIL image: as the file reader reads one
        from ._pillow_reader import pillow_pixels  # palette, CMYK, alpha, ICC profile, EXIF orientation

        return pillow_pixels(image)[0]
    if package == "torch":  # duck-typed: this module does not import torch
        image = image.detach().cpu().numpy()
    elif package == "cupy":
        image = image.get()
    while len(getattr(image, "shape", ())) > 3 and image.shape[0] == 1:
        image = image[0]
    return image


def unmask(image):
    """(pixels, dtype whose intensity rule applies) of ``image``.

    A numpy masked array (rasterio's ``read(masked=True)``, where masked values
    are nodata) becomes float with NaN at its masked values, which the
    intensity rule leaves out and makes black, the nodata the vegetation stage
    leaves out; its own dtype still chooses the rule (:func:`intensity_range`).
    Anything else is returned as it is, with None.
    """
    if not isinstance(image, np.ma.MaskedArray):
        return image, None
    dtype = np.dtype(image.dtype)
    if dtype.kind not in "biuf" or not np.ma.getmaskarray(image).any():
        return np.asarray(image.data), None
    return image.astype(np.float64 if dtype.itemsize > 4 else np.float32).filled(np.nan), dtype


def _scale_to_unit(arr: np.ndarray, rule_dtype=None) -> np.ndarray:
    """Map any numeric array to float32 0..1 by :func:`intensity_range` of its dtype (or of
    ``rule_dtype``: a masked array's own, see :func:`unmask`); see :func:`to_rgb_float`."""
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    data = arr.astype(np.float32, copy=True)
    if data.size == 0:
        return data
    finite = np.isfinite(data)
    nan = None
    if finite.all():
        lo, hi = float(data.min()), float(data.max())
    else:
        # +inf -> the brightest finite value, -inf -> the darkest, NaN -> black afterwards
        good = data[finite]
        lo = float(good.min()) if good.size else 0.0
        hi = float(good.max()) if good.size else 0.0
        nan = np.isnan(data)
        data[np.isposinf(data)] = hi
        data[~np.isfinite(data)] = lo
    low, high = intensity_range(rule_dtype or arr.dtype, lo, hi)
    if (low, high) != (0.0, 1.0):  # else floats already in 0..1: the user's values
        data = stretch(data, low, high)
    elif hi > 1.0 or lo < 0.0:  # highlights past 1 (FLOAT_OVERSHOOT) white, dips below 0 (FLOAT_UNDERSHOOT) black
        np.clip(data, 0.0, 1.0, out=data)
    if nan is not None and nan.any():
        data[nan] = 0.0  # NaN is nodata (GDAL's and rasterio's fill for floats): black
    return data


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


def blank_transparent(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Set the fully transparent pixels (``alpha`` == 0) of ``colour`` to 0 (black), in place; return it.

    ``colour``: (h, w, C) or (h, w) pixels, writable; ``alpha``: (h, w) of any
    numeric dtype. A transparent pixel shows nothing (in napari, in any image
    viewer): an orthomosaic's area outside the survey, a cut-out's background.
    Whatever colour the file stores under it, black is what the vegetation stage
    leaves out as nodata (:func:`~napari_gardenseg._vegetation.colour_classes`)
    and what the network sees as nothing. Partly transparent pixels (a feathered
    edge) keep their colour. Callers decide once per image whether its alpha is
    used at all (:func:`alpha_used`), so windows of one image agree.
    """
    clear = np.asarray(alpha) == 0
    if clear.any():
        colour[clear] = 0
    return colour


def alpha_used(alpha: np.ndarray) -> bool:
    """Whether an image's alpha (or an overview of it) marks pixels: some are visible.

    An alpha channel that is 0 everywhere would hide the whole image; it is
    taken for a fourth channel that is not opacity and ignored.
    """
    return bool(np.any(alpha))


def to_rgb_float(image) -> np.ndarray:
    """Return ``image`` as a C-contiguous float32 (H, W, 3) array in 0..1.

    What is done to each input:

    * layout: (H, W) grayscale, (H, W, C) or channel-first (C, H, W) with C =
      1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA). A last axis of length
      1-4 wins over a first one. Grey is repeated to three channels. Alpha is
      dropped after fully transparent pixels (alpha 0) are made black, the
      nodata the vegetation stage leaves out (:func:`blank_transparent`;
      unless alpha is 0 everywhere, which is ignored).
    * intensity, one rule for every dtype (:func:`intensity_range`), on all
      channels together (never per channel: colour ratios such as excess
      green stay as they are): bool is 0 or 1; uint8 is divided by 255; any
      other type with no negative value is divided by the smallest range that
      holds its maximum: floats up to 1 are kept as they are, values up to 255
      are divided by 255, up to 65535 by 65535 (uint16's range). Floats are
      read as 0..1 a little past it too: up to :data:`FLOAT_OVERSHOOT` (2,
      reflectance whose highlights pass 1: those are white) and down to
      :data:`FLOAT_UNDERSHOOT` (a tenth) of the maximum below 0 (a resampled
      photo's dips: black). So a uint16
      copy (x257, as ``skimage.util.img_as_uint`` makes it) or a float copy
      (0..255, or 0..1 as ``img_as_float`` makes it) of an 8-bit image gives
      the very same floats as the 8-bit image, and ordinary 8-bit photos are
      read exactly as the bundled model was trained (/255). This is
      scikit-image's dtype convention (``img_as_float``) and napari's for
      uint8 (contrast limits 0..255), not a per-image percentile stretch
      (cellpose, stardist), which would change how every 8-bit photo looks to
      the model. Data outside those ranges (negative values beyond those dips,
      or above 65535) is stretched linearly from its minimum to its maximum (a constant image
      then becomes mid-grey, black if 0). A 12-bit camera's uint16 image
      (0..4095) is therefore dim: divide it by 4095 first (a TIFF that states
      12 bits per sample is scaled by the reader). -inf counts as the darkest
      finite value, +inf as the brightest; NaN, the nodata of float rasters
      (GDAL, rasterio), is black, the nodata the vegetation stage leaves out,
      and so are the masked values of a numpy masked array (rasterio's
      ``read(masked=True)``: a nodata value such as -10000 neither counts in
      the range nor shows), by the rule of the array's own dtype.
    * torch tensors and CuPy arrays are copied to host memory first, and
      leading axes of length 1 are dropped from arrays of more than 3
      dimensions (:func:`host_array`).

    Read-only inputs (napari hands those out) are never written to.

    Raises TypeError for complex, object and string arrays; :class:`ImageError`
    for empty arrays, more than 3 dimensions (besides those leading 1s) and 3-D
    arrays without a channel axis of length 1-4.
    """
    image, rule_dtype = unmask(host_array(image))
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
    alpha = None
    if c in (2, 4):
        alpha = arr[..., c - 1]
        arr = arr[..., : c - 1]
    unit = _scale_to_unit(arr, rule_dtype)
    if alpha is not None and alpha_used(alpha):
        blank_transparent(unit, alpha)  # unit is a new array
    if unit.shape[-1] == 1:
        unit = np.repeat(unit, 3, axis=-1)
    return np.ascontiguousarray(unit, dtype=np.float32)


def to_rgb_uint8(image, *, rows: int = 256) -> np.ndarray:
    """Like :func:`to_rgb_float` but returns uint8 (H, W, 3), writable and C-contiguous.

    This is the form pydensecrf's bilateral kernel needs. ``image``: any array
    :func:`to_rgb_float` accepts; uint8 RGB input is copied unchanged. Other input
    is converted ``rows`` rows at a time with the
    intensity mapping of the whole image (:class:`~napari_gardenseg._image_source.ImageSource`,
    the same values as rounding ``to_rgb_float(image) * 255``), so a 16-bit or
    float photo never has a float copy of its own size.

    Raises ValueError for ``rows`` that is not a whole number >= 1, and what
    :func:`to_rgb_float` raises: TypeError for complex, object and string arrays;
    :class:`ImageError` for empty arrays, more than 3 dimensions and 3-D arrays
    without a channel axis of length 1-4.
    """
    from ._options import whole_number

    rows = whole_number("rows", rows)
    arr = np.asarray(host_array(image))
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[-1] == 3 and not np.ma.isMaskedArray(image):
        return np.array(arr, dtype=np.uint8, order="C", copy=True)
    if arr.ndim not in (2, 3) or arr.dtype.kind not in "biuf" or 0 in arr.shape:
        rgb = to_rgb_float(arr)  # its checks and messages for what is not an image
        return np.ascontiguousarray(np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8))
    from ._image_source import ImageSource  # it imports this module

    source = ImageSource(image if np.ma.isMaskedArray(image) else arr)  # masked values are nodata there
    h, w = source.shape
    out = np.empty((h, w, 3), np.uint8)
    for y0 in range(0, h, rows):
        out[y0 : y0 + rows] = source.read_uint8((y0, 0, min(y0 + rows, h), w))
    return out


# A mask or label map is a few colours: apart from its most common one (background, or the
# nodata around a photo), a handful of colours hold nearly all its pixels (a JPEG'd one's mostly
# too, unless chroma subsampling smeared a small colour map); a photo's pixels spread over
# thousands of colours (sensor noise, light), even a dark one's
_LABEL_MAP_TOP = 16  # the most common colours after the first
_LABEL_MAP_SHARE = 0.8  # their share of the pixels that are not the first colour
_LABEL_MAP_FLAT = 0.6  # the share of pixels the colour of their right neighbour, at least
_SAMPLED_PIXELS = 65_536


def _piecewise_constant(plane: np.ndarray) -> bool:
    """:func:`looks_like_label_map` for bool and integer planes other than uint8: rows spread over
    the plane, whole, since a strided sample loses the neighbours compared."""
    if plane.ndim == 3 and plane.shape[2] != 1:
        return False
    plane = plane.reshape(plane.shape[:2])
    h, w = plane.shape
    rows = plane[:: max(1, h * w // _SAMPLED_PIXELS)] if w > 1 else plane[:0]
    if rows.size < 1024:
        return False
    if plane.dtype == bool:
        return True
    return float(np.mean(rows[:, 1:] == rows[:, :-1])) >= 0.9 and bool((rows != rows.flat[0]).any())


def one_colour(plane) -> str | None:
    """The colour (``"0, 0, 0"``) of an in-memory ``plane`` ((H, W) or (H, W, C)) whose pixels are
    all one colour (a lens cap's frame, a failed export), else None: a blank image, no mask."""
    if not isinstance(plane, np.ndarray) or plane.ndim not in (2, 3) or plane.size == 0:
        return None
    first = plane[:1, :1].reshape(1, 1, -1) if plane.ndim == 3 else plane[:1, :1]
    return ", ".join(str(v) for v in first.ravel().tolist()) if (plane == first).all() else None


def looks_like_label_map(plane) -> bool:
    """Whether ``plane`` looks like a mask or label map rather than a photo.

    ``plane``: (H, W) or (H, W, C) array. Only in-memory planes are judged (a
    strided sample of about 65,536 pixels; a lazy plane, or a thumbnail under
    1,024 sampled pixels, gives False). uint8: besides the commonest colour,
    its 16 next commonest must hold at least 80% of the pixels, and 60% of the
    pixels must be the colour of their right neighbour (not a photo dithered to a
    palette: a GIF's). bool: always
    (a mask). Other integer types, one channel (the label images of napari,
    cellpose, StarDist: uint16, int32...): nine in ten pixels equal their right
    neighbour, as in areas of one id, where a camera's 12- or 16-bit values
    vary. Float planes give False. Users running a folder or a layer that
    holds masks beside photos get a note, not an error: a label map may be
    what they mean to segment.
    """
    if not isinstance(plane, np.ndarray) or plane.ndim not in (2, 3) or plane.dtype.kind not in "biu":
        return False
    if plane.dtype != np.uint8:
        return _piecewise_constant(plane)
    h, w = plane.shape[:2]
    step = max(1, int(np.sqrt(h * w / _SAMPLED_PIXELS)))
    sample = plane[::step, ::step].reshape(-1, plane.shape[2] if plane.ndim == 3 else 1)
    if len(sample) < 1024:  # a thumbnail may well be flat
        return False
    counts = np.sort(np.unique(sample, axis=0, return_counts=True)[1])[::-1]
    rest = counts.sum() - counts[0]
    if rest and counts[1 : 1 + _LABEL_MAP_TOP].sum() < _LABEL_MAP_SHARE * rest:
        return False
    # a photo in a few colours (a GIF in the web palette, posterized) has them side by side, dithered
    # or grainy: a map's neighbours are mostly one colour, also after JPEG
    if w < 2:  # a one-pixel column has no right neighbours to compare
        return False
    rows = plane[:: max(1, h * w // _SAMPLED_PIXELS)]
    same = rows[:, 1:] == rows[:, :-1]
    return float(np.mean(same.all(axis=-1) if same.ndim == 3 else same)) >= _LABEL_MAP_FLAT
