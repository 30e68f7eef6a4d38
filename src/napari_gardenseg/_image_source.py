"""Image sources read window by window (the label images are written by their callers).

:class:`ImageSource` wraps anything 2-D (numpy, dask, zarr, a TIFF/BigTIFF read
through tifffile's zarr interface, a napari multiscale list) and hands out
float RGB (or uint8 RGB) windows of it. Big sources are never read whole: the
intensity range used to map uint16/float pixels to 0..1 comes from a strided
overview, and every window is read on demand.
"""

from __future__ import annotations

import os

import numpy as np

from ._image_arrays import (
    ImageError,
    alpha_used,
    blank_transparent,
    host_array,
    image_layout,
    intensity_range,
    stretch,
    unmask,
)
from ._planes import MAX_PLANE_PIXELS

__all__ = ["ImageSource", "open_image", "is_lazy"]

# an overview of at most this many pixels gives the intensity range of big non-uint8 images
_OVERVIEW_PIXELS = 4_000_000
# rows of this many pixels at a time when the range is taken from every pixel of an array in memory
_RANGE_BAND_PIXELS = 1_000_000


def is_lazy(image) -> bool:
    """True for arrays that should be read window by window (not numpy, not a list of numpy)."""
    if isinstance(image, np.ndarray):
        return False
    if isinstance(image, (list, tuple)):  # napari multiscale: level 0 decides
        return bool(image) and is_lazy(image[0])
    return hasattr(image, "shape") and hasattr(image, "__getitem__") and hasattr(image, "dtype")


def _one_chunk(array, channel_first: bool) -> bool:
    """Whether a lazy array (dask or zarr) holds its (H, W) plane in a single chunk, which any
    window of it reads whole."""
    chunks = getattr(array, "chunks", None)
    if not isinstance(chunks, tuple) or len(chunks) != len(array.shape):
        return False
    y = 1 if channel_first else 0
    sizes = [chunks[y], chunks[y + 1]]
    if all(isinstance(c, tuple) for c in sizes):  # dask: the chunk sizes along each axis
        return len(sizes[0]) == 1 and len(sizes[1]) == 1
    if all(isinstance(c, (int, np.integer)) for c in sizes):  # zarr: one chunk's shape
        return int(sizes[0]) >= int(array.shape[y]) and int(sizes[1]) >= int(array.shape[y + 1])
    return False


class ImageSource:
    """A 2-D image (optionally with a channel axis) read in windows.

    ``read(window)`` returns float32 RGB (h, w, 3) in 0..1 for ``window`` =
    (y0, x0, y1, x1); ``read_uint8`` the same as uint8, which the CRF needs.
    Indexing ``source[y0:y1, x0:x1]`` is ``read_uint8`` so the CRF can crop
    the source like an array. All windows share one intensity mapping, so
    tiles of one image are treated alike: for arrays in memory it is exactly
    :func:`~napari_gardenseg.to_rgb_float`'s (range from every pixel), for lazy
    ones the range comes from a strided overview. Nothing is converted until a
    window is read: the network's input is read sampled
    (:meth:`read_sampled`, :func:`~napari_gardenseg._forward.network_input`) or
    tile by tile, and the vegetation stage reads bands and a strided overview
    (every pixel below 4 MP), so no run holds a float copy of a larger image.
    """

    def __init__(self, array, *, name: str | None = None):
        if any(c.__name__ == "Layer" and c.__module__.startswith("napari.layers") for c in type(array).__mro__):
            raise TypeError(
                f"got a napari {type(array).__name__} layer, not its pixels: use gs.segment_layer(layer), which reads "
                "any image layer (multiscale, stacks, scale) and adds the results as Labels layers, or pass layer.data"
            )
        # a multiscale layer's data: napari's MultiScaleData (layer.data), or a list of levels
        if isinstance(array, (list, tuple)) or type(array).__name__ == "MultiScaleData":
            if not array:
                raise ImageError("an empty list is not an image")
            if len(getattr(array[0], "shape", ())) >= 2:
                array = array[0]  # napari multiscale: full resolution
        array = host_array(array)  # tensors on any device; leading axes of length 1 dropped
        # anything else (nested lists of pixel values, PIL images) is converted whole
        if not hasattr(array, "shape") or not hasattr(array, "dtype"):
            array = np.asarray(array)
        # a masked array's masked values are nodata: NaN, black; its own dtype keeps choosing the rule
        array, rule_dtype = unmask(array)
        self.name = name
        self.array = array
        self.dtype = np.dtype(array.dtype)
        self.rule_dtype = rule_dtype or self.dtype
        if self.dtype.kind not in "biuf":
            raise TypeError(f"unsupported image dtype {self.dtype}: expected bool, integer or float pixels")
        if any(isinstance(s, float) and s != s for s in array.shape):  # NaN: dask's unknown chunk sizes
            raise ImageError(
                f"this array's shape {tuple(array.shape)} is not known yet (a dask array after boolean indexing "
                "or from a dataframe); call .compute_chunk_sizes() on it first, or pass a numpy array"
            )
        shape = tuple(int(s) for s in array.shape)
        if 0 in shape or len(shape) == 0:
            raise ImageError(f"the image is empty (shape {shape}); nothing to segment")
        layout = image_layout(shape)
        self.channel_first = layout == "chw"
        self.shape = shape[1:3] if self.channel_first else shape[:2]
        self.channels = 1 if layout == "hw" else (shape[0] if self.channel_first else shape[2])
        self.lazy = is_lazy(array)
        h, w = self.shape
        if self.lazy and _one_chunk(array, self.channel_first) and h * w <= MAX_PLANE_PIXELS:
            # every window of a plane stored as one chunk (dask.delayed(imread), a one-strip TIFF, a zarr
            # of one chunk) would decode all of it again: read it once
            self.array = array = np.asarray(array)
            self.lazy = False
        self._range = None
        self._overview = None  # (step, read(step=step)): the last overview, which several stages decide on
        self._alpha = None  # whether the alpha channel is used (decided once, for every window alike)
        self.applied: dict = {}  # what the file reader did (open_image), for records
        # the physical size of a pixel the file states (a scan's dpi, a calibration: _pixel_size.PixelSize)
        self.pixel_size = None
        # a georeferenced file's GeoTransform (GDAL's six numbers) and, in a metre CRS, a pixel's
        # ground area in m² (_georeference): the table's map_x, map_y and area_m2
        self.map_grid = None
        self.ground_pixel_m2 = None

    # ------------------------------------------------------------ reading
    def _raw(self, window, step: int = 1) -> np.ndarray:
        y0, x0, y1, x1 = (int(v) for v in window)
        ys, xs = slice(y0, y1, step), slice(x0, x1, step)
        if self.channel_first:
            block = self.array[:, ys, xs]
        elif len(self.array.shape) == 3:
            block = self.array[ys, xs, :]
        else:
            block = self.array[ys, xs]
        block = np.asarray(block)
        return np.moveaxis(block, 0, -1) if self.channel_first else block

    def value_range(self) -> tuple[float, float] | None:
        """The (low, high) of the finite pixel values (fixed for uint8 and bool)."""
        if self._range is None:
            self._range = self._overview_range()
        return self._range

    def _overview_step(self) -> int:
        # in memory: every pixel, so windows map exactly as to_rgb_float maps the whole image
        h, w = self.shape
        return max(1, int(np.ceil(np.sqrt(h * w / _OVERVIEW_PIXELS)))) if self.lazy else 1

    def _alpha_used(self) -> bool:
        """Whether fully transparent pixels are blanked (:func:`~napari_gardenseg._image_arrays.alpha_used`)."""
        if self._alpha is None:
            h, w = self.shape
            self._alpha = self.channels in (2, 4) and alpha_used(
                self._raw((0, 0, h, w), self._overview_step())[..., -1]
            )
        return self._alpha

    def share_above(self, value: float) -> float:
        """Share (0..1) of the finite stored values (before any mapping) above ``value``, on about a
        million of them (every step-th pixel); 1.0 for an image without one."""
        h, w = self.shape
        values = self._raw((0, 0, h, w), max(1, int(np.ceil(np.sqrt(h * w / 1e6)))))
        values = values[np.isfinite(values)]
        return float(np.mean(values > value)) if values.size else 1.0

    def _overview_range(self):
        if self.dtype in (np.uint8, np.bool_):
            return (0.0, 255.0) if self.dtype == np.uint8 else (0.0, 1.0)
        h, w = self.shape
        step = self._overview_step()
        # in memory, band by band: a float copy (and its finite mask) of one band, not of the image
        rows = h if self.lazy else max(1, _RANGE_BAND_PIXELS // w)
        lo, hi = np.inf, -np.inf
        for y0 in range(0, h, rows):
            sample = self._raw((y0, 0, min(y0 + rows, h), w), step).astype(np.float32)
            if self.channels in (2, 4):  # ignore alpha, as to_rgb_float does
                sample = sample[..., : self.channels - 1]
            good = sample[np.isfinite(sample)] if self.dtype.kind == "f" else sample
            if good.size:
                lo, hi = min(lo, float(good.min())), max(hi, float(good.max()))
        return (0.0, 0.0) if lo > hi else (lo, hi)

    def intensity_range(self) -> tuple[float, float]:
        """The (low, high) mapped to 0..1: :func:`~napari_gardenseg._image_arrays.intensity_range` of the values."""
        return intensity_range(self.rule_dtype, *self.value_range())

    def read(self, window=None, step: int = 1) -> np.ndarray:
        """Float32 RGB (h, w, 3) in 0..1 of ``window`` (y0, x0, y1, x1), or of numpy's
        ``(slice(y0, y1), slice(x0, x1))``; the whole image when None.

        ``step`` > 1 reads every ``step``-th pixel along both axes (an overview).

        Raises TypeError for a window of another form, ValueError for slices with a step
        (use ``step``) or a box with a negative or reversed corner (a box past the edge is
        clipped to it).
        """
        return self._float(self._raw(_window(window, self.shape), int(step)))

    def colourless(self) -> bool:
        """Whether a colour image's channels agree everywhere (a black-and-white photo saved as RGB,
        as phones' mono filters and editors save them): on the colour stage's overview (:meth:`overview`,
        read once for both), 99% of the pixels differ between channels by at most 2 of 255. False for
        a grey image."""
        from ._vegetation import sample_step

        if self.channels < 3:
            return False
        rgb = self.overview(sample_step(self.shape))
        spread = np.abs(rgb[..., 0] - rgb[..., 1]) + np.abs(rgb[..., 1] - rgb[..., 2])
        return bool(spread.size) and float(np.percentile(spread, 99)) <= 2 / 255

    def read_sampled(self, window, rows, cols, *, band: int = 1024) -> np.ndarray:
        """``read(window)[rows][:, cols]``: float32 RGB (len(rows), len(cols), 3), reading the
        window's raw pixels ``band`` rows at a time and converting only those picked, so that no
        float copy of the window is ever made.

        ``rows``, ``cols``: sorted int indices relative to the window. Every step of
        :meth:`read` is per pixel, so picking the pixels first changes no value.
        """
        y0, x0, y1, x1 = (int(v) for v in window)
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        parts = []
        for start in range(0, y1 - y0, band):
            pick = rows[(rows >= start) & (rows < start + band)]
            if pick.size:
                block = self._raw((y0 + start, x0, min(y0 + start + band, y1), x1))
                parts.append(np.take(block[pick - start], cols, axis=1))  # C order, unlike [:, cols]
        return self._float(np.concatenate(parts))

    def _float(self, block: np.ndarray) -> np.ndarray:
        """Raw pixels (..., channels) of this image as float32 RGB in 0..1: the mapping of :meth:`read`."""
        if block.ndim == 2:
            block = block[..., None]
        alpha = None
        if block.shape[-1] in (2, 4):
            alpha = block[..., -1] if self._alpha_used() else None
            block = block[..., : block.shape[-1] - 1]
        lo, hi = self.value_range()
        if self.dtype == np.uint8:
            data = block.astype(np.float32)
            data /= np.float32(255.0)  # exactly to_rgb_float's, without a second image-sized array
        else:
            data = block.astype(np.float32)
        nan = None
        if self.dtype.kind == "f" and not np.isfinite(data).all():
            nan = np.isnan(data)
            data = np.nan_to_num(data, nan=lo, posinf=hi, neginf=lo)
        low, high = self.intensity_range()
        if self.dtype != np.uint8 and (low, high) != (0.0, 1.0):
            data = stretch(data, low, high)
        # the overview may have missed the extremes; floats' highlights past 1 (FLOAT_OVERSHOOT) are
        # white, their dips below 0 (FLOAT_UNDERSHOOT) black
        if self.dtype != np.uint8 and (self.lazy or hi > 1.0 or lo < 0.0):
            np.clip(data, 0.0, 1.0, out=data)
        if nan is not None and nan.any():
            data[nan] = 0.0  # NaN is nodata: black, as to_rgb_float
        if alpha is not None:
            blank_transparent(data, alpha)
        if data.shape[-1] == 1:
            data = np.repeat(data, 3, axis=-1)
        return np.ascontiguousarray(data, dtype=np.float32)

    def overview(self, step: int) -> np.ndarray:
        """``read(step=step)`` of the whole image, kept until another step is asked for: the tile
        plan and the colour stage decide on the same overview, which a lazy image would otherwise
        read from disk twice. Do not write to it."""
        if self._overview is None or self._overview[0] != int(step):
            self._overview = (int(step), self.read(step=int(step)))
        return self._overview[1]

    def read_uint8(self, window=None) -> np.ndarray:
        """:meth:`read` as uint8 RGB (h, w, 3), writable; 8-bit RGB pixels are copied as they are
        (the round trip through floats gives them back unchanged)."""
        if self.dtype == np.uint8 and self.channels == 3:
            return np.array(self._raw(_window(window, self.shape)), dtype=np.uint8, order="C")
        rgb = self.read(window)
        return np.ascontiguousarray(np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8))

    def __getitem__(self, key) -> np.ndarray:
        ys, xs = key[0], key[1]
        h, w = self.shape
        y0, y1, _ = ys.indices(h)
        x0, x1, _ = xs.indices(w)
        return self.read_uint8((y0, x0, max(y0, y1), max(x0, x1)))  # numpy: a reversed slice is empty

    def __repr__(self) -> str:
        kind = "lazy" if self.lazy else "in memory"
        return f"ImageSource({self.shape[0]}x{self.shape[1]}, {self.dtype}, {kind})"


def _as_input(value):
    """What scripts pass as "a file", as open_image reads it: a path as :func:`~._image_reader.as_path`
    gives it (bytes, ``file://``; a web address is refused), an open binary file
    (``open(p, "rb")``, ``io.BytesIO``) or a photo's encoded bytes as the pixels Pillow decodes
    from them, as from a path (one image: a stack is read by its path). Anything else is returned
    as it is."""
    from ._image_reader import as_path

    if isinstance(value, (bytes, bytearray)) and not value:
        raise ImageError("the bytes given are empty: no image arrived (an upload or read cut short?)")
    value = as_path(value)
    what, holder = "the photo in the file object", "the file object holds"
    if isinstance(value, (bytes, bytearray)):
        import io

        value, what, holder = io.BytesIO(value), "the photo given as bytes", "the bytes given hold"
    if hasattr(value, "read") and not hasattr(value, "shape"):
        from PIL import UnidentifiedImageError

        from ._pillow_reader import decode, heif_missing, heif_opener, is_heif, open_pillow, photo_frames

        try:
            image = open_pillow(value)  # a big photo is no bomb here, as by its path; a HEIC by its content
        except UnidentifiedImageError:
            if is_heif(value) and not heif_opener():
                raise heif_missing(what) from None
            raise ImageError(
                f"{holder} no image Pillow reads (PNG, JPEG, WebP...): give TIFF stacks, zarr stores and .npy "
                "files by their path"
            ) from None
        frames, _ = photo_frames(image)  # the path's rule: an MPO's previews, a HEIC's other images are no planes
        if len(frames) > 1:
            raise ImageError(
                f"{holder} {len(frames)} images (a stack): give the file by its path, and "
                "segment_files([path], out_dir) or `gardenseg segment` segments it plane by plane"
            )
        image.seek(frames[0])
        return decode(image, what, source=value)[0]  # here, where a file cut short is said as by its path
    return value


def open_image(path_or_array, *, lazy: bool | None = None, axes: str | None = None) -> ImageSource:
    """An :class:`ImageSource` for an array or a file of one 2-D image.

    ``path_or_array``: an array (numpy, dask, zarr, a tensor, a PIL image) of the
    layouts :func:`~napari_gardenseg.to_rgb_float` accepts, a path (str, bytes or
    ``os.PathLike``; a ``file://`` address), or an open binary file or encoded bytes
    that Pillow reads (nothing is downloaded).
    Files are read by :func:`napari_gardenseg._image_reader.read_image` (EXIF
    orientation applied, colour modes converted, axes from the file or
    ``axes``: the letters of a TIFF, zarr or .npy file's axes in its order, such
    as ``"YXS"`` or ``"CYX"``, where the file does not state them); TIFF/BigTIFF
    files over 256 MB (or any, with ``lazy=True``; none with ``lazy=False``) and
    zarr stores (whatever ``lazy`` says: a store is read by its chunks; an
    OME-Zarr multiscale group gives its first level) are read window by window, except a plane of at most 8192 x 8192 pixels stored as
    one chunk or strip, which every window would decode whole: it is read once
    (``source.lazy`` is then False). The reader's record of what it did is
    ``source.applied``. A file holding a stack (T, Z or C planes): segment it plane
    by plane with :func:`~napari_gardenseg.segment_files` (or ``gardenseg segment``).

    Returns the :class:`ImageSource`: ``shape`` (H, W), ``channels``, ``dtype``,
    ``lazy``, ``pixel_size`` (what the file states: :class:`~napari_gardenseg._pixel_size.PixelSize`,
    or None), ``map_grid`` and ``ground_pixel_m2`` (a georeferenced file's GeoTransform and, in a
    CRS in metres, a pixel's ground area in m²; else None); ``read(window)`` gives float32 RGB (h, w, 3) in 0..1, mapped as
    :func:`~napari_gardenseg.to_rgb_float` maps the whole image, ``read_uint8(window)``
    the same as uint8.

    Raises FileNotFoundError for a path that does not exist;
    :class:`~napari_gardenseg._image_arrays.ImageError` for a web address, a file that is
    empty, truncated, damaged or not an image (a camera raw file, a video, a PDF, a
    folder that is not a zarr store, a HEIC photo without pillow-heif), a file or
    file object holding a stack, an empty array, an array of more than 3 dimensions
    or without a channel axis of length 1-4, or a dask array of unknown shape;
    TypeError for a napari layer (pass ``layer.data``), pixels that are not numbers,
    or ``axes`` that is not a string; ValueError for unknown or repeated ``axes``
    letters of a file (an array's ``axes`` are not read).
    """
    if path_or_array is None:
        raise TypeError("no image: got None (a photo's path, an array, or a file object)")
    path_or_array = _as_input(path_or_array)
    if not isinstance(path_or_array, (str, os.PathLike)):
        return ImageSource(path_or_array)
    from ._image_reader import read_image

    image = read_image(path_or_array, axes=axes, lazy=lazy)
    if image.is_stack:
        file_axes = image.applied.get("file_axes", "")
        colours = (
            f" (if its {image.n_planes} channels are a photo's red, green and blue, say so: "
            f"axes={file_axes.replace('C', 'S')!r}, S for colour)"
            if image.axes == "CYX" and image.n_planes in (3, 4) and file_axes.count("C") == 1
            else ""
        )
        raise ImageError(
            f"{image.path.name} holds {image.n_planes} planes (axes {image.axes}, shape {tuple(image.data.shape)}); "
            "open_image and segment_to_zarr take one 2-D image: segment the stack plane by plane with "
            f"segment_files([path], out_dir) or `gardenseg segment`, or pass one plane as an array{colours}"
        )
    source = file_source(image)
    source.applied = image.record()
    return source


def file_source(image) -> ImageSource:
    """The :class:`ImageSource` of an image file as read (an
    :class:`~napari_gardenseg._image_file.ImageFile` of one plane), with what the file states of
    its pixels: ``pixel_size``, ``map_grid`` and ``ground_pixel_m2`` (``ImageFile.placement``)."""
    source = ImageSource(image.data, name=image.path.name)
    source.pixel_size = image.pixel_size
    source.map_grid, source.ground_pixel_m2 = image.placement()
    return source


def _window(window, shape) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) of :meth:`ImageSource.read`'s ``window`` in an image of ``shape`` (h, w)."""
    h, w = shape
    if window is None:
        return 0, 0, h, w
    window = tuple(window)
    if len(window) == 2 and all(isinstance(s, slice) for s in window):
        (y0, y1, sy), (x0, x1, sx) = window[0].indices(h), window[1].indices(w)
        if sy != 1 or sx != 1:
            raise ValueError(f"window slices {window} have a step: read every n-th pixel with step=n instead")
        return y0, x0, max(y0, y1), max(x0, x1)
    try:
        box = tuple(int(v) for v in window) if len(window) == 4 else None
    except TypeError:
        box = None
    if box is not None:
        y0, x0, y1, x1 = box
        if min(box) < 0 or y1 < y0 or x1 < x0:  # a slice's negatives count from the end; a box's are a mistake
            raise ValueError(
                f"window {box} is not (y0, x0, y1, x1) with 0 <= y0 <= y1 and 0 <= x0 <= x1: pixels count from "
                "the top left (for ends counted from the bottom right, give slices: np.s_[10:-10, 10:-10])"
            )
        return box
    raise TypeError(f"window must be (y0, x0, y1, x1) or (slice(y0, y1), slice(x0, x1)), not {window!r}")
