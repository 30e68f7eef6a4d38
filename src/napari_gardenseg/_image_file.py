"""An image file as read (:class:`ImageFile`), and its axes put in the one order the engine takes:
plane axes first, then Y, X and colour samples last. Shared by the format readers
(:mod:`._pillow_reader`, :mod:`._tiff_reader`, :mod:`._zarr_npy_reader`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._image_arrays import ImageError

AXES_LETTERS = "TZCSYX"
PLANE_AXES = "TZC"
# TIFF, zarr and .npy files at most this big are read whole unless lazy=True
LAZY_BYTES = 256 * 2**20


@dataclass
class ImageFile:
    """An image file as read: ``data`` with the plane axes first, then Y, X and colour samples (S) last.

    ``data`` is a numpy array, or a lazy one (zarr, dask) for TIFF, zarr and .npy files
    read lazily. ``axes`` names its axes (e.g. ``"YXS"``, ``"TYX"``,
    ``"TZYX"``); ``applied`` says what the reader did (JSON-able, stored in
    the batch's run record): format, axes as the file (or the caller) gave
    them, EXIF orientation, colour conversion, ICC profile.
    """

    path: Path
    data: Any
    axes: str
    applied: dict = field(default_factory=dict)
    # a GeoTIFF's georeferencing tags as tifffile ``extratags`` (:func:`~napari_gardenseg._georeference.geotiff_tags`): the label
    # TIFFs of the file get them, so GIS software lays the labels on the photo; () for other files
    georeference: tuple = ()
    # georeferencing from files beside it (a world file, GDAL's .aux.xml) when it has no GeoTIFF
    # tags: a :class:`~napari_gardenseg._georeference.SidecarGeoreference`, whose sidecars the label
    # TIFFs get; None for other files
    sidecar_georeference: Any = None
    # the physical size of a pixel the file states (a scan's dpi, ImageJ's calibration): a
    # :class:`~napari_gardenseg._pixel_size.PixelSize`, giving areas in mm² and the label TIFFs'
    # resolution; None where it states none that is a size
    pixel_size: Any = None

    @property
    def plane_axes(self) -> str:
        """The axes in front of Y (T, Z, C): each index along them is one 2-D plane."""
        return self.axes[: self.axes.index("Y")]

    @property
    def stack_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape[: len(self.plane_axes)])

    @property
    def n_planes(self) -> int:
        return int(np.prod(self.stack_shape, dtype=np.int64))

    @property
    def plane_shape(self) -> tuple[int, int]:
        """(H, W) of each plane."""
        k = len(self.plane_axes)
        return int(self.data.shape[k]), int(self.data.shape[k + 1])

    @property
    def is_stack(self) -> bool:
        return len(self.plane_axes) > 0

    def planes(self) -> list[tuple[int, ...]]:
        """The index of each plane along the plane axes, in C order (``[()]`` for one image)."""
        return [tuple(int(v) for v in i) for i in np.ndindex(*self.stack_shape)] if self.is_stack else [()]

    def plane(self, index: tuple[int, ...] = ()):
        """One plane, (H, W) or (H, W, S); a lazy slice stays lazy."""
        return self.data[tuple(index)] if index else self.data

    def placement(self) -> tuple[tuple[float, ...] | None, float | None]:
        """``(map_grid, ground_pixel_m2)``: GDAL's GeoTransform placing the file's pixels (its
        sidecars', else its GeoTIFF tags': :func:`~napari_gardenseg._georeference.file_grid`) and,
        where its CRS is in metres, a pixel's ground area in m²
        (:func:`~napari_gardenseg._georeference.ground_pixel_m2`); ``(None, None)`` for a file
        that is not georeferenced."""
        from ._georeference import file_grid, ground_pixel_m2

        grid = file_grid(self.georeference, self.sidecar_georeference)
        return grid, ground_pixel_m2(self.georeference, self.sidecar_georeference) if grid else None

    def record(self) -> dict:
        """What the run record says about the reading."""
        return {"axes": self.axes, "shape": [int(s) for s in self.data.shape], **self.applied}


def check_axes(axes) -> str:
    """``axes`` in upper case; TypeError/ValueError unless it names Y, X and at most one of each of TZCS."""
    if not isinstance(axes, str):
        raise TypeError(f"axes must be a string of the letters {AXES_LETTERS} (e.g. 'TYX'), got {axes!r}")
    text = axes.strip().upper()
    bad = sorted(set(text) - set(AXES_LETTERS))
    if bad or text.count("Y") != 1 or text.count("X") != 1 or any(text.count(c) > 1 for c in text):
        raise ValueError(
            f"axes={axes!r}: give each axis of the file once, as letters of {AXES_LETTERS} "
            "(T time, Z depth, C channels segmented one by one, S colour samples, Y, X), e.g. 'TYX' or 'YXS'"
        )
    return text


def truncated_error(path: Path | str) -> ImageError:
    """``path``: the file, or words for what was read (a file object's bytes)."""
    return ImageError(
        f"{getattr(path, 'name', path)} stops before its image ends (truncated: a copy or download was cut short); "
        "copy the file again"
    )


def damaged_error(path: Path | str, err: BaseException) -> ImageError:
    return ImageError(
        f"{getattr(path, 'name', path)} is damaged or cut short ({type(err).__name__}: {str(err)[:100]}); copy the "
        "file again, or open it in an image editor and save it again"
    )


def lazy_or_numpy(data, fn):
    """Apply ``fn`` to a numpy array, or block by block to a lazy one (through dask)."""
    if isinstance(data, np.ndarray):
        return fn(data)
    d = as_dask(data)
    return d.map_blocks(fn, dtype=np.result_type(fn(np.zeros((1,) * d.ndim, d.dtype))))


def _axes_examples(letters: str, shape: tuple) -> str:
    """How to say what the unknown axes (``?`` in ``letters``) are, on the command line and in the API.

    A first unknown axis of 3 or 4 (of those longer than 1: the others are dropped) is offered as
    colour first: a photo stored band by band, as GDAL and rasterio give a raster's bands, is the
    commonest such file."""
    unknown = [i for i, a in enumerate(letters) if a == "?"]
    first = next((i for i in unknown if shape[i] > 1), unknown[0])

    def filled(colour_at: int | None) -> str:
        spare = [c for c in "TZC" if c not in letters]
        return "".join(
            "S" if i == colour_at else (spare.pop(0) if spare else "Q") if a == "?" else a
            for i, a in enumerate(letters)
        )

    frames = filled(None)
    if shape[first] in (3, 4) and "S" not in letters:
        example = filled(first)
        how = "stored band by band, as GDAL and rasterio give them" if first < letters.index("Y") else "each pixel's"
        said = (
            f"e.g. --axes {example} when its {shape[first]} planes along that axis are a photo's red, green, "
            f"blue{' (and alpha)' if shape[first] == 4 else ''} ({how}), --axes {frames} when they are frames"
        )
    else:
        example, said = frames, f"e.g. --axes {frames}"
    return (
        f"on the command line {said}; in the API gs.open_image(path, axes={example!r}), passed to gs.segment "
        f"or gs.segment_to_zarr, or gs.segment_files(paths, out, axes={example!r})"
    )


def arrange_axes(data, axes: str, path: Path, *, given: bool, photometric: str | None = None, alpha: int | None = None):
    """``data`` reordered to (plane axes..., Y, X[, S]) from ``axes``, singleton axes dropped; its axes; a note or None.

    ``photometric``: the TIFF's colour space, None for a file that has none (zarr). "RGB" says the
    samples are red, green, blue (of five or more, only those three are kept, and the sample
    ``alpha``, the one the file marks as alpha, after them); the note says which samples were
    taken for colour where the file does not say so.
    """
    rgb = photometric == "RGB"
    shape = tuple(int(s) for s in data.shape)
    full_axes = axes
    how = "as given" if given else "as the file states them"
    if len(axes) != len(shape):
        raise ImageError(
            f"{path.name}: axes {axes!r} ({how}) do not match its shape {shape} ({len(shape)} axes); "
            "give one letter per axis"
        )
    if "Y" not in axes or "X" not in axes:
        raise ImageError(f"{path.name}: axes {axes!r} ({how}) have no Y and X; give them, e.g. axes='TYX'")
    keep = [i for i, (a, n) in enumerate(zip(axes, shape)) if n > 1 or a in "YX"]
    unknown = [a for i, a in enumerate(axes) if i in keep and a not in AXES_LETTERS]
    if unknown:
        letters = "".join(a if a in AXES_LETTERS else "?" for a in axes)
        raise ImageError(
            f"{path.name}: the file does not say what axis {', '.join(repr(a) for a in unknown)} of its shape "
            f"{shape} is (its axes read as {axes!r}, '?' below). Say what they are, one letter per axis "
            f"({letters}): T time, Z depth, C channels (each segmented as its own plane), S colour samples "
            f"(RGB); {_axes_examples(letters, shape)}"
        )
    if len(keep) < len(shape):
        if not isinstance(data, np.ndarray):
            data = as_dask(data)  # indexing a zarr array would read it
        data = data[tuple(slice(None) if i in keep else 0 for i in range(len(shape)))]
    axes = "".join(axes[i] for i in keep)
    colour = "S" if "S" in axes else None
    if colour is None and rgb and "C" in axes and data.shape[axes.index("C")] in (3, 4):
        colour = "C"  # photometric RGB: these channels are the colours
    note = None
    if colour is not None and data.shape[axes.index(colour)] > 4:
        n = data.shape[axes.index(colour)]
        if not rgb:
            raise ImageError(
                f"{path.name}: {n} samples per pixel ({axes!r}, shape {tuple(data.shape)}), more than a colour "
                "image has (grey, grey+alpha, RGB, RGBA). The bands of a multispectral camera? Segment an image "
                "of its red, green and blue bands: save them as an RGB file (in Python, an (H, W, 3) array of "
                "the three bands in that order, with tifffile.imwrite) or pass that array to gs.segment; or give "
                f"axes with C for these bands (--axes {full_axes.replace(colour, 'C')}) to segment each as a grey image"
            )
        # an RGB file with extra samples (near-infrared, red edge...): the file says the first
        # three are red, green and blue
        keep = [0, 1, 2] + ([alpha] if alpha is not None else [])
        pick = tuple(keep if a == colour else slice(None) for a in axes)
        data = data[pick] if isinstance(data, np.ndarray) else as_dask(data)[pick]
        note = f"RGB and {n - 3} extra samples per pixel: the extra samples ignored"
        note += " but the one marked as alpha (ExtraSamples)" if alpha is not None else ""
    elif colour is not None and photometric not in (None, "RGB") and data.shape[axes.index(colour)] in (3, 4):
        # a multispectral camera's bands are often written so (GDAL writes MINISBLACK for
        # non-8-bit data): what was taken for colour is said, since the file does not say it
        n = data.shape[axes.index(colour)]
        note = f"{n} samples per pixel, which the file calls {photometric}, not RGB: the first three read as red, "
        note += "green, blue"
    lead = [a for a in axes if a not in "YX" and a != colour]
    order = [axes.index(a) for a in lead] + [axes.index("Y"), axes.index("X")]
    order += [axes.index(colour)] if colour else []
    if order != list(range(len(order))):
        data = np.transpose(data, order) if isinstance(data, np.ndarray) else as_dask(data).transpose(order)
    return data, "".join(lead) + "YX" + ("S" if colour else ""), note


def as_dask(data):
    import dask.array as da

    return data if isinstance(data, da.Array) else da.from_zarr(data)


def arranged_file(path: Path, array, fmt: str, file_axes: str, axes: str | None) -> ImageFile:
    """The ImageFile of an array whose axes the file states (or the caller gives: ``axes``)."""
    applied = {"format": fmt, "file_axes": file_axes}
    data, out_axes, _ = arrange_axes(array, axes or file_axes, path, given=axes is not None)
    if axes is not None:
        applied["axes_given"] = axes
    return ImageFile(path, data, out_axes, applied)
