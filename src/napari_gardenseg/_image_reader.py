"""The one image-file reader: what a file holds, in the orientation, colours and axes the file states.

:func:`read_image` is used by every entry point that opens a file (the CLI,
:func:`~napari_gardenseg.segment_files`, :func:`~napari_gardenseg.open_image`,
:func:`~napari_gardenseg.segment_to_zarr`, the sample). It is built on the
libraries that know the formats, never on an array's shape alone:

* Pillow (PNG, JPEG, BMP, GIF, WebP..., and a phone's HEIC/HEIF photos
  where pillow-heif is installed, as the ``heif`` extra and ``all`` do): the
  EXIF orientation is applied
  (``PIL.ImageOps.exif_transpose``), so the pixels are the picture a viewer
  shows; an embedded ICC profile other than sRGB is converted to sRGB
  (``PIL.ImageCms``); every mode becomes RGB or grey the way Pillow converts
  it (CMYK, YCbCr, LAB, HSV, P, PA, RGBA... -> RGB; 1, L, LA -> grey; alpha is
  dropped after fully transparent pixels are made black, the nodata the
  vegetation stage leaves out), while the numeric modes I, I;16 and F keep their values for the
  intensity rule (:func:`~napari_gardenseg._image_arrays.intensity_range`).
  Frames of an animation are a time stack (an MPO's extra frames are
  previews: its first frame is the photo).
* tifffile (TIFF, BigTIFF, OME-TIFF, ImageJ hyperstacks): the axes are
  tifffile's ``series[0].axes``. ``S`` (samples) is colour; a ``C`` axis is
  colour only when the file's photometric interpretation is RGB and it holds 3
  or 4 channels, otherwise its channels are planes like ``T`` and ``Z``.
  MINISWHITE is inverted, PALETTE mapped through the colour map, a bit depth
  below the type's (e.g. 12 bits in uint16) scaled to 0..1; single-plane
  TIFFs in other colour spaces (CMYK, YCbCr, CIELab) go through Pillow.
* zarr (OME-Zarr: the ``multiscales`` axes, level 0; a plain array of shape
  (H, W) or (H, W, 3|4) is grey or colour, the layout of numpy, Pillow and
  napari's RGB images).
* numpy's ``.npy`` files (``numpy.save``; napari's own reader opens them):
  their axes by the rule arrays passed to the API follow ((H, W), (H, W, C),
  (C, H, W) with C in 1..4); read through a memory map, so a big one is read
  window by window like a TIFF. Pickled objects (e.g. Cellpose's
  ``_seg.npy``) are refused, never unpickled.

A file that is empty, cut short (truncated) or not an image raises
:class:`~napari_gardenseg._image_arrays.ImageError` saying so and what to do.

Axes the file does not name (tifffile's ``Q`` and ``I``) on an axis longer
than 1 raise :class:`~napari_gardenseg._image_arrays.ImageError` naming the shape
and how to say what it is (``axes="TYX"`` in the API, ``--axes TYX`` on the
command line); ``axes`` also overrides what a TIFF or zarr file states.
Letters: ``T`` time, ``Z`` depth, ``C`` channel (planes), ``S`` colour
samples, ``Y``, ``X``.

The result, :class:`ImageFile`, holds the pixels with the plane axes first
and colour last (``...YX`` or ``...YXS``), and ``applied``: what was done, for
the run record.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
from pathlib import Path

from ._files import ZARR_METADATA as _ZARR_METADATA  # the files that make a folder a zarr store
from ._image_arrays import ImageError
from ._image_file import AXES_LETTERS, ImageFile, check_axes
from ._pillow_reader import HEIF_SUFFIXES, exif_turns, read_pillow
from ._tiff_reader import read_tiff
from ._zarr_npy_reader import read_npy, read_zarr

__all__ = ["ImageFile", "read_image", "kept_sidecars", "TIFF_SUFFIXES", "IMAGE_SUFFIXES", "AXES_LETTERS"]

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".ome.tif")

# what a folder of images is taken to hold (image_files): the photo and scan formats these libraries read
IMAGE_SUFFIXES = (
    ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".webp", ".bmp", ".gif", ".avif", ".jp2", ".j2k",
    ".j2c", ".jpc", ".jpf", ".jpx",
    ".tga", ".ppm", ".pgm", ".pnm", *TIFF_SUFFIXES, *HEIF_SUFFIXES,
)  # fmt: skip
# the image files a batch writes beside its run record <name>_run.json (_batch_outputs.output_files)
OUTPUT_IMAGE_TAILS = ("_labels.tif", "_labels_crf.tif", "_overlay.png", "_labels.zarr")
# cameras' raw files: Pillow would read only the small preview some of them hold
RAW_SUFFIXES = (".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".orf", ".rw2", ".raf", ".pef", ".srw", ".raw")
# files people take for images that are not: a drone's or phone's video, a scanner's PDF
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".m4v", ".mts", ".m2ts", ".webm", ".3gp", ".wmv")
# files that cameras, phones and photo software write beside the photos, which a shell's IMG_* picks
# up: an iPhone's edits (.aae), Google Takeout's metadata (.json), Lightroom's and darktable's
# (.xmp), a camera's thumbnails (.thm) and low-resolution or subtitle files of its videos
# (.lrv, .srt), Windows' and Picasa's folder files (.db, .ini); JSON has its own word (annotations too)
SIDECAR_SUFFIXES = (".aae", ".xmp", ".thm", ".lrv", ".srt", ".db", ".ini")


def read_image(path, *, axes: str | None = None, lazy: bool | None = False) -> ImageFile:
    """Read an image file (see the module's docstring for what is done to it).

    ``axes``: the letters of the file's axes in its own order (``"TYX"``,
    ``"ZYX"``, ``"CYX"``, ``"SYX"``, ``"YXS"``...), for TIFF, zarr and .npy files
    that do not say or say it wrongly (a TIFF's samples per pixel stay where
    the file holds them: ``S`` on another axis is refused); files Pillow reads
    have fixed axes and ignore it. ``lazy``: TIFF/zarr/.npy pixels stay on disk and are read window by
    window (True), always (zarr stores are always lazy), or when the file is
    over 256 MB (None).

    Raises TypeError or ValueError for ``axes`` that are not letters of
    TZCSYX, each once; FileNotFoundError; :class:`~napari_gardenseg._image_arrays.ImageError`
    (axes unknown or contradicting the shape; a file that is empty, truncated or
    not an image Pillow or tifffile reads; a HEIC photo without pillow-heif; a camera
    raw file (DNG, CR2, NEF...: develop it first); a video or a PDF (the message says how to
    make images of it); a folder that is not a zarr store; a
    .npy file of Python objects or of no pixel type).
    """
    path = Path(as_path(path)).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such image file: {path}")
    if path.is_file() and path.stat().st_size == 0:
        raise ImageError(f"{path.name} is empty (0 bytes): a copy or download did not finish; copy the file again")
    if axes is not None:
        axes = check_axes(axes)
    name = path.name.lower()
    if path.is_dir() and not any((path / f).exists() for f in _ZARR_METADATA):
        raise ImageError(
            f"{path} is a folder, not an image file or zarr store: segment the images in it with "
            "segment_files(folder, out_dir) or `gardenseg segment FOLDER --out DIR`"
        )
    if path.is_file() and name.endswith(".zarr"):
        raise ImageError(f"{path.name} is a file, not a zarr store (a store is a folder): give the store's folder")
    if path.is_dir() or name.endswith((".zarr", ".zip")):
        image = read_zarr(path, axes, zipped=not (path.is_dir() or name.endswith(".zarr")))
        _keep_pixel_size(image)  # an OME-Zarr's scale in µm
        return image
    if name.endswith(".npy"):
        return read_npy(path, axes, lazy)
    if name.endswith(RAW_SUFFIXES):
        raise ImageError(
            f"{path.name} is a camera's raw file: develop it into a JPEG, PNG or 16-bit TIFF first (the "
            "camera's software, darktable, RawTherapee, or rawpy in Python) and segment that"
        )
    if name.endswith(VIDEO_SUFFIXES):
        raise ImageError(
            f"{path.name} is a video: take frames from it (e.g. `ffmpeg -i {shlex.quote(path.name)} -vf fps=1 "
            "frame_%04d.png`: one a second) and segment those"
        )
    if name.endswith(SIDECAR_SUFFIXES):
        raise ImageError(
            f"{path.name} is a file that cameras, phones or photo software keep beside a photo (its edits, "
            "metadata or thumbnail), not a photo: leave it out (give the folder, which leaves such files out, "
            "or a pattern that names only photos, such as IMG_*.JPG)"
        )
    if name.endswith(".json"):
        raise ImageError(
            f"{path.name} is a JSON file (a photo's metadata, or annotations), not a photo: give the photos; "
            "COCO annotations are read by `gardenseg train --coco` and gs.read_coco, and open in napari"
        )
    if name.endswith(".pdf"):
        raise ImageError(
            f"{path.name} is a PDF document: export its pages as images (e.g. `pdftoppm -png -r 300 "
            f"{shlex.quote(path.name)} page`, or the scanner's software set to PNG or TIFF) and segment those"
        )
    image = read_tiff(path, axes, lazy) if name.endswith(TIFF_SUFFIXES) else read_pillow(path)
    if image.georeference:
        _add_pam_over_tags(image)
    else:
        _add_sidecar_georeference(image)
    _keep_pixel_size(image)
    return image


def stated_measures(path) -> tuple[tuple[int, int], dict] | None:
    """What an image file says of the size of its pixels, read as :func:`read_image` reads it
    (lazily, its warnings not given: only its tags are wanted): ``((rows, columns), measures)``,
    the file's pixel grid and ``{"pixel_size": PixelSize or None, "map_grid": GDAL's GeoTransform
    or None, "ground_pixel_m2": float or None}`` (:mod:`._pixel_size`, :mod:`._georeference`);
    None where it cannot be read (moved, damaged, no image). Kept for the file and its sidecars as
    they are (their sizes and modification times): the widget asks at each run, and a photo is
    decoded whole to read it."""
    try:
        state = _file_state(path)
    except (OSError, TypeError, ValueError):
        return None
    if state is None:  # a folder (a zarr store): its attributes change inside it
        return _read_measures(path)
    return _measures_of(state)


def _file_state(path) -> tuple | None:
    """A file's path (as given: its sidecars lie beside it, a link's too), size and modification
    time, with those of each file beside it that places it (:func:`~napari_gardenseg._georeference.sidecar_names`:
    one added since changes its map grid); None for a folder."""
    from ._georeference import sidecar_names

    path = Path(os.path.abspath(path))
    st = path.stat()
    if path.is_dir():
        return None

    def state(p: Path):
        try:
            s = p.stat()
        except OSError:
            return None
        return s.st_size, s.st_mtime_ns

    return (str(path), st.st_size, st.st_mtime_ns, tuple(state(p) for p in sidecar_names(path)))


@functools.lru_cache(maxsize=16)  # thread-safe; the last few files
def _measures_of(state: tuple):
    return _read_measures(state[0])


def _read_measures(path) -> tuple[tuple[int, int], dict] | None:
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = read_image(path, lazy=True)
    except Exception:  # noqa: BLE001 - measures are extra: without them areas stay in pixels
        return None
    if "Y" not in image.axes:
        return None
    y = image.axes.index("Y")
    grid, ground_m2 = image.placement()
    return tuple(int(v) for v in image.data.shape[y : y + 2]), {
        "pixel_size": image.pixel_size,
        "map_grid": grid,
        "ground_pixel_m2": ground_m2,
    }


def _keep_pixel_size(image: ImageFile) -> None:
    """The physical pixel size the file stated (:mod:`._pixel_size`, read by the format's reader)
    for its pixels as read: rows and columns swap where the EXIF orientation turned them; none
    for a georeferenced photo, whose pixel is in map units (``map_x``, ``map_y``)."""
    size = image.pixel_size
    if size is None or "georeference" in image.applied:
        image.pixel_size = None
        return
    if image.applied.get("exif_orientation") in (5, 6, 7, 8):
        size = size.turned()
    image.pixel_size = size
    image.applied["pixel_size"] = size.note()


def _add_pam_over_tags(image: ImageFile) -> None:
    """Take a GeoTIFF's PAM file's grid or CRS, which GDAL reads before its tags
    (:func:`~napari_gardenseg._georeference.pam_over_tags`)."""
    from ._georeference import pam_over_tags

    geo, note = pam_over_tags(image.path, image.georeference)
    if geo is not None:
        image.sidecar_georeference = geo
        image.applied["georeference"] = note


def _add_sidecar_georeference(image: ImageFile) -> None:
    """Take the georeferencing of a photo's world file or .aux.xml (:func:`kept_sidecars`)."""
    geo, note = kept_sidecars(image.path, turned="exif_orientation" in image.applied)
    if note is not None:
        image.sidecar_georeference = geo
        image.applied["georeference"] = note


def kept_sidecars(path, *, turned: bool = False):
    """``(georeference, note)`` of the world file or .aux.xml beside the photo ``path``
    (:func:`~napari_gardenseg._georeference.read_sidecars`): ``(None, None)`` without one;
    ``(None, why)`` when the EXIF orientation turns the photo (``turned``, or its header says so),
    since the sidecars place the unturned pixels, as GDAL reads them. Decided from the file, not
    from one read of it: a TIFF read lazily is not turned, yet the outputs planned from that read
    must be the ones the full read gives."""
    from ._georeference import read_sidecars

    geo = read_sidecars(path)
    if geo is None:
        return None, None
    if turned or exif_turns(path):
        return (
            None,
            f"not kept: {', '.join(geo.sources)} place the unturned pixels, and the EXIF orientation turned them",
        )
    return geo, geo.note()


def is_image_path(value) -> bool:
    """True for a path of a file to read (:func:`as_path`), False for an array."""
    return isinstance(as_path(value), (str, os.PathLike))


def as_path(value):
    """A path given as bytes or as a ``file://`` address as the path (str) it names; any other value
    as it is. Raises :class:`~napari_gardenseg._image_arrays.ImageError` for a web address (``https://``,
    ``s3://``...): nothing here reads the network."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) >= 4096 or b"\0" in value:  # a photo's encoded bytes, not a path
            return value
        value = os.fsdecode(bytes(value))
    if isinstance(value, str) and re.match(r"[A-Za-z][A-Za-z0-9+.-]+://", value):
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        url = urlparse(value)
        if url.scheme.lower() != "file":
            raise ImageError(
                f"{value} is a web address: napari-gardenseg reads no network; download the image first "
                "(e.g. `curl -O <address>`) and give the file"
            )
        host = url.netloc if url.netloc not in ("", "localhost") else ""
        return url2pathname(f"//{host}{url.path}" if host else url.path)  # url2pathname unquotes
    return value
