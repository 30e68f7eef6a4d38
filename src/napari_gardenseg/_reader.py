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
  intensity rule (:func:`~napari_gardenseg._images.intensity_range`).
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
:class:`~napari_gardenseg._images.ImageError` saying so and what to do.

Axes the file does not name (tifffile's ``Q`` and ``I``) on an axis longer
than 1 raise :class:`~napari_gardenseg._images.ImageError` naming the shape
and how to say what it is (``axes="TYX"`` in the API, ``--axes TYX`` on the
command line); ``axes`` also overrides what a TIFF or zarr file states.
Letters: ``T`` time, ``Z`` depth, ``C`` channel (planes), ``S`` colour
samples, ``Y``, ``X``.

The result, :class:`ImageFile`, holds the pixels with the plane axes first
and colour last (``...YX`` or ``...YXS``), and ``applied``: what was done, for
the run record.
"""

from __future__ import annotations

import io
import os
import shlex
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._files import ZARR_METADATA as _ZARR_METADATA  # the files that make a folder a zarr store
from ._georeference import geotiff_note, geotiff_tags
from ._images import ImageError, alpha_used, blank_transparent
from ._label_files import photo_stem

__all__ = ["ImageFile", "read_image", "kept_sidecars", "image_files", "expand_folders", "TIFF_SUFFIXES", "AXES_LETTERS"]

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".ome.tif")
# the photo format of phones (iPhones since iOS 11): Pillow reads it through the pillow-heif plugin
HEIF_SUFFIXES = (".heic", ".heif", ".hif")
# what a folder of images is taken to hold (image_files): the photo and scan formats these libraries read
IMAGE_SUFFIXES = (
    ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".webp", ".bmp", ".gif", ".avif", ".jp2",
    ".tga", ".ppm", ".pgm", ".pnm", *TIFF_SUFFIXES, *HEIF_SUFFIXES,
)  # fmt: skip
# the image files a batch writes beside its run record <name>_run.json (_batch_outputs.output_files)
OUTPUT_IMAGE_TAILS = ("_labels.tif", "_labels_crf.tif", "_overlay.png", "_labels.zarr")
# cameras' raw files: Pillow would read only the small preview some of them hold
RAW_SUFFIXES = (".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".orf", ".rw2", ".raf", ".pef", ".srw", ".raw")
# files people take for images that are not: a drone's or phone's video, a scanner's PDF
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".m4v", ".mts", ".m2ts", ".webm", ".3gp", ".wmv")
AXES_LETTERS = "TZCSYX"
PLANE_AXES = "TZC"
# TIFF, zarr and .npy files at most this big are read whole unless lazy=True
LAZY_BYTES = 256 * 2**20

# TIFF ExtraSamples values that say a sample is opacity (associated, unassociated alpha)
_ALPHA = (1, 2)

# TIFF colour spaces that Pillow converts and tifffile hands out raw
_PILLOW_PHOTOMETRIC = ("SEPARATED", "YCBCR", "CIELAB", "ICCLAB", "ITULAB")


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

    def record(self) -> dict:
        """What the run record says about the reading."""
        return {"axes": self.axes, "shape": [int(s) for s in self.data.shape], **self.applied}


def read_image(path, *, axes: str | None = None, lazy: bool | None = False) -> ImageFile:
    """Read an image file (see the module's docstring for what is done to it).

    ``axes``: the letters of the file's axes in its own order (``"TYX"``,
    ``"ZYX"``, ``"CYX"``, ``"SYX"``, ``"YXS"``...), for TIFF, zarr and .npy files
    that do not say or say it wrongly; files Pillow reads have fixed axes and
    ignore it. ``lazy``: TIFF/zarr/.npy pixels stay on disk and are read window by
    window (True), always (zarr stores are always lazy), or when the file is
    over 256 MB (None).

    Raises FileNotFoundError, :class:`~napari_gardenseg._images.ImageError`
    (axes unknown or contradicting the shape; a file that is empty, truncated or
    not an image Pillow or tifffile reads; a HEIC photo without pillow-heif; a camera
    raw file (DNG, CR2, NEF...: develop it first); a video or a PDF (the message says how to
    make images of it); a folder that is not a zarr store; a
    .npy file of Python objects or of no pixel type).
    """
    path = Path(path).expanduser()
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
    if path.is_dir() or name.endswith(".zarr"):
        return _read_zarr(path, axes)
    if name.endswith(".npy"):
        return _read_npy(path, axes, lazy)
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
    if name.endswith(".pdf"):
        raise ImageError(
            f"{path.name} is a PDF document: export its pages as images (e.g. `pdftoppm -png -r 300 "
            f"{shlex.quote(path.name)} page`, or the scanner's software set to PNG or TIFF) and segment those"
        )
    image = _read_tiff(path, axes, lazy) if name.endswith(TIFF_SUFFIXES) else _read_pillow(path)
    if not image.georeference:
        _add_sidecar_georeference(image)
    return image


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
    if turned or _exif_turns(path):
        return (
            None,
            f"not kept: {', '.join(geo.sources)} place the unturned pixels, and the EXIF orientation turned them",
        )
    return geo, geo.note()


def image_files(folder, *, recursive: bool = False, exclude=()) -> list[Path]:
    """The image files directly in ``folder``, sorted by name; with ``recursive``, then those of
    its subfolders at any depth, folder by folder in name order.

    Image files: the suffixes of :data:`IMAGE_SUFFIXES` (any case) and
    ``*.zarr`` stores; not ``.npy`` files, which :func:`read_image` reads when
    named but which beside photos are side files (Cellpose's ``_seg.npy``). Hidden files are skipped (``.DS_Store``, and macOS's
    ``._IMG_0001.JPG`` copies of a photo's metadata on shared drives). So
    are the label images of photos in the same folder (``a_labels.tif`` and
    ``a_labels_crf.tif`` beside ``a.jpg``: painted for ``gardenseg train``, or
    this plugin's outputs), which are not photos, and a batch's outputs (``a_overlay.png``
    and the label images beside the run record ``a_run.json``). ``recursive`` leaves out
    hidden subfolders and those in ``exclude`` (the output folder).
    Raises NotADirectoryError, and :class:`~napari_gardenseg._images.ImageError` when
    the folder holds no image file (naming its subfolders when it has some).
    """
    return [path for path, _ in folder_entries(folder, recursive=recursive, exclude=exclude)]


def is_zarr_store(path) -> bool:
    """Whether ``path`` is a zarr store (one image, read as such): a folder named ``*.zarr``, or
    one holding zarr's metadata (a store saved without the suffix), not a folder of photos."""
    path = Path(path)
    return path.is_dir() and (path.suffix.lower() == ".zarr" or any((path / f).is_file() for f in _ZARR_METADATA))


def folder_entries(folder, *, recursive: bool = False, exclude=()) -> list[tuple[Path, str]]:
    """:func:`image_files` with each file's folder relative to ``folder`` (POSIX, ``""`` for
    ``folder`` itself), which a batch's outputs mirror."""
    from ._run_record import RUN_SUFFIX

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    skipped = {Path(p).expanduser().resolve() for p in exclude}
    entries, subfolders, seen, n_outputs = [], [], set(), 0
    pending = [folder]
    while pending:
        here = pending.pop(0)
        resolved = here.resolve()
        if resolved in seen or (here != folder and resolved in skipped):  # seen: a link back up the tree
            continue
        seen.add(resolved)
        visible = [c for c in sorted(here.iterdir()) if not c.name.startswith(".")]
        found = [p for p in visible if is_zarr_store(p) or (p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))]
        # a batch's outputs are named after its run record: <name>_labels.tif etc. beside <name>_run.json
        runs = [c.name[: -len(RUN_SUFFIX)] for c in visible if c.name.endswith(RUN_SUFFIX)]
        outputs = {f"{run}{tail}" for run in runs for tail in OUTPUT_IMAGE_TAILS}
        stems = {p.stem for p in found}
        photos = [p for p in found if photo_stem(p.stem) not in stems and p.name not in outputs]
        n_outputs += sum(p.name in outputs for p in found)
        relative = here.relative_to(folder).as_posix() if here != folder else ""
        entries += [(p, relative) for p in photos]
        inner = [c for c in visible if c.is_dir() and not is_zarr_store(c)]
        if here == folder:
            subfolders = inner
        if recursive:
            pending = inner + pending  # depth first: a subfolder's files before the next one's
    if not entries:
        hint = "give the files or a folder that holds them"
        if n_outputs:
            hint = "it holds a batch's outputs (label images and overlays beside run records), not photos: " + hint
        elif subfolders and not recursive:
            names = ", ".join(f"{c.name}/" for c in subfolders[:3]) + (", ..." if len(subfolders) > 3 else "")
            hint = (
                f"its subfolders ({names}) are not searched: give them (e.g. {folder}/*/); "
                "--recursive (`gardenseg segment`, `adapt` and `train`; segment_files(recursive=True)) searches them all"
            )
        raise ImageError(
            f"no image files in the folder {folder} ({', '.join(IMAGE_SUFFIXES[:6])}..., TIFF, HEIC, zarr); {hint}"
        )
    return entries


def expand_folders(items, *, recursive: bool = False, exclude=()) -> list:
    """``items`` (paths or arrays) with every folder that is not a ``.zarr`` store replaced by its
    :func:`image_files` (``recursive`` and ``exclude`` as there)."""
    return [item for item, _ in expand_entries(items, recursive=recursive, exclude=exclude)]


def expand_entries(items, *, recursive: bool = False, exclude=()) -> list[tuple]:
    """:func:`expand_folders` with each item's folder relative to the folder it was found in
    (:func:`folder_entries`; ``""`` for items given themselves)."""
    out = []
    for item in items:
        path = Path(item).expanduser() if isinstance(item, (str, os.PathLike)) else None
        is_folder = path is not None and path.is_dir() and not is_zarr_store(path)
        out += folder_entries(path, recursive=recursive, exclude=exclude) if is_folder else [(item, "")]
    return out


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


# ----------------------------------------------------------------------------- Pillow


_PIXEL_LIMIT = threading.Lock()


def open_pillow(path):
    """``PIL.Image.open(path)`` without Pillow's decompression-bomb limit: a big photo is no bomb
    here (memory is checked where pixels are decoded). The limit is lifted for this call only,
    as it is Pillow's global, which napari and other plugins rely on."""
    from PIL import Image

    with _PIXEL_LIMIT:
        before, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = before


def _read_pillow(path: Path) -> ImageFile:
    from PIL import UnidentifiedImageError

    if path.name.lower().endswith(HEIF_SUFFIXES):
        _register_heif(path)
    try:
        with open_pillow(path) as im:
            fmt = im.format
            n_frames = getattr(im, "n_frames", 1)
            # an MPO's extra frames are previews; a HEIC's are a burst or depth map: the first is the photo
            frames = range(n_frames) if n_frames > 1 and fmt not in ("MPO", "HEIF") else [0]
            planes, applied = [], {}
            for k in frames:
                im.seek(k)
                try:
                    plane, applied = _pillow_pixels(im)
                except MemoryError:
                    w, h = im.size
                    raise ImageError(
                        f"{path.name} is {w} x {h} pixels ({w * h * 3 / 1e9:.1f} GB as RGB), more than this "
                        "machine's free memory: save it as a tiled TIFF, which is read window by window"
                    ) from None
                planes.append(plane)
    except UnidentifiedImageError:
        raise ImageError(
            f"{path.name} is not an image Pillow can read (PNG, JPEG, TIFF, BMP, GIF, WebP, HEIC with pillow-heif): "
            "open it in an image editor and save it as PNG or JPEG"
        ) from None
    except OSError as err:  # Pillow says "image file is truncated" / "Truncated File Read", no type of its own
        if err.errno is not None:  # the system's (no such file, permission): not the file's contents
            raise
        if "truncated" in str(err).lower():
            raise _truncated(path) from None
        raise _damaged(path, err) from None
    applied = {"format": fmt, **applied}
    if len(planes) == 1:
        data = planes[0]
        return ImageFile(path, data, "YXS" if data.ndim == 3 else "YX", applied)
    if len({p.shape for p in planes}) > 1:
        raise ImageError(f"{path.name}: its {len(planes)} frames differ in size; save the frames as separate images")
    applied["frames"] = len(planes)
    data = np.stack(planes)
    return ImageFile(path, data, "TYXS" if data.ndim == 4 else "TYX", applied)


def _truncated(path: Path) -> ImageError:
    return ImageError(
        f"{path.name} stops before its image ends (truncated: a copy or download was cut short); copy the file again"
    )


def _damaged(path: Path, err: BaseException) -> ImageError:
    return ImageError(
        f"{path.name} is damaged or cut short ({type(err).__name__}: {str(err)[:100]}); copy the file again, "
        "or open it in an image editor and save it again"
    )


def _register_heif(path: Path) -> None:
    """Let Pillow open HEIC/HEIF files (pillow-heif's opener); ImageError saying how to get it when it is missing."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        raise ImageError(
            f"{path.name} is a HEIC/HEIF photo (a phone's format): reading it needs pillow-heif, "
            "`pip install pillow-heif` (or `pip install napari-gardenseg[all]`), or export the photo as JPEG"
        ) from None
    register_heif_opener()


def _turns(im) -> bool:
    """Whether an image's EXIF Orientation turns or mirrors its pixels (read upright here).

    Never a TIFF's: its pixels are read as stored (tifffile's way, and GDAL's, so its world file
    still places them), whichever library decodes them; Pillow 13 would turn some TIFFs itself
    while loading them, so the tag is removed from an opened TIFF here.
    """
    if im.format == "TIFF":
        if im.tag_v2.pop(0x0112, None) in (5, 6, 7, 8) and hasattr(im, "_tile_size"):
            im._size = im._tile_size  # Pillow 13 swapped the size it gives for the turn it planned
        im.getexif().pop(0x0112, None)
        return False
    return im.getexif().get(0x0112) not in (None, 1)


def _exif_turns(path) -> bool:
    """Whether reading the photo ``path`` turns its pixels upright (its EXIF orientation), from its
    header only; False for a file Pillow cannot open (reading it says why)."""

    path = Path(path)
    try:
        if path.name.lower().endswith(HEIF_SUFFIXES):
            _register_heif(path)
        with open_pillow(path) as im:
            return _turns(im)
    except Exception:  # noqa: BLE001
        return False


def _pillow_pixels(im) -> tuple[np.ndarray, dict]:
    """One frame as RGB uint8, grey, or the numbers of modes I/I;16/F, upright; and what was done."""
    from PIL import ImageOps

    applied = {"mode": im.mode}
    if _turns(im):  # exif_transpose copies even an upright image: a photo's size more at peak
        applied["exif_orientation"] = int(im.getexif()[0x0112])
        im = ImageOps.exif_transpose(im)  # turned as the EXIF tag says (tag removed)
    alpha = _pillow_alpha(im)  # before the ICC conversion, which drops it
    icc = im.info.get("icc_profile")
    if icc:
        im, applied["icc_profile"] = _to_srgb(im, icc)
    mode = im.mode
    if mode in ("1", "L", "LA", "La"):
        arr = np.asarray(im.getchannel(0) if mode != "1" else im.convert("L"))
    elif mode in ("I", "F") or mode.startswith("I;16"):
        arr = np.asarray(im)
        arr = arr.astype(arr.dtype.newbyteorder("="))  # I;16B is big-endian
    else:
        arr = np.asarray(im if mode == "RGB" else im.convert("RGB"))  # convert() copies even RGB
    if applied["mode"] not in ("L", "RGB", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"):
        applied["converted"] = f"{applied['mode']} -> {'grey' if arr.ndim == 2 else 'RGB'}"
    arr = np.ascontiguousarray(arr)
    if alpha is not None and alpha_used(alpha) and not alpha.all():
        arr = blank_transparent(arr.copy() if not arr.flags.writeable else arr, alpha)
        applied["transparent"] = f"{int((alpha == 0).sum())} fully transparent pixels read as black (nodata)"
    return arr, applied


def _pillow_alpha(im) -> np.ndarray | None:
    """The (h, w) alpha of a Pillow image that has one (RGBA, LA, PA, a palette's or PNG's transparent colour), else None."""
    if im.mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        return np.asarray(im.getchannel(im.mode[-1]))
    if "transparency" in im.info and im.mode in ("P", "L", "RGB"):
        return np.asarray(im.convert("RGBA").getchannel("A"))
    return None


def _to_srgb(im, icc: bytes):
    """``im`` converted from its embedded ICC profile to sRGB, and what was done (a profile already sRGB: nothing)."""
    from PIL import ImageCms

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = (ImageCms.getProfileDescription(profile) or "").strip()
    except (OSError, ImageCms.PyCMSError) as exc:
        return im, f"unreadable, ignored ({exc})"
    if "srgb" in description.lower():
        return im, f"{description} (sRGB already)"
    if im.mode not in ("RGB", "RGBA", "CMYK", "L", "LAB"):
        return im, f"{description}: not applied to mode {im.mode}"
    try:
        out_mode = "RGB" if im.mode != "L" else "L"
        src = im.convert("RGB") if im.mode == "RGBA" else im
        converted = ImageCms.profileToProfile(src, profile, ImageCms.createProfile("sRGB"), outputMode=out_mode)
    except (OSError, ValueError, ImageCms.PyCMSError) as exc:
        return im, f"{description}: could not convert ({exc}); read as if sRGB"
    return converted, f"{description} -> sRGB"


# ----------------------------------------------------------------------------- TIFF


def _read_tiff(path: Path, axes: str | None, lazy: bool | None) -> ImageFile:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            page = series.keyframe
            file_axes = series.axes
            shape = tuple(int(s) for s in series.shape)
            photometric = page.photometric.name
            bits = int(page.bitspersample) if isinstance(page.bitspersample, (int, np.integer)) else None
            dtype = np.dtype(series.dtype)
            kind = "OME-TIFF" if tif.is_ome else "ImageJ TIFF" if tif.is_imagej else "TIFF"
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            colormap = page.colormap if photometric == "PALETTE" else None
            extra = tuple(int(e) for e in (page.extrasamples or ()))
            nodata = _gdal_nodata(page)
            georeference = geotiff_tags(page)
            mask = _transparency_mask(tif, shape, file_axes)
            single = sum(s > 1 for s, a in zip(shape, file_axes) if a not in "YXS") == 0
            big = lazy or (lazy is None and nbytes > LAZY_BYTES)
            # JPEG-compressed YCbCr (the compact orthomosaic GeoTIFF): imagecodecs decodes it to RGB
            # window by window, so a big one stays lazy; Pillow would read it whole, and cannot
            # open a file with a mask IFD at all
            jpeg_ycbcr = photometric == "YCBCR" and int(page.compression) == 7
            by_pillow = photometric in _PILLOW_PHOTOMETRIC and single and axes is None
            by_pillow = by_pillow and not (jpeg_ycbcr and (big or mask is not None))
            if by_pillow:
                data = None
            elif big:
                import zarr

                z = zarr.open(tifffile.imread(path, aszarr=True, series=0), mode="r")
                data = z if hasattr(z, "shape") else z[sorted(z.array_keys())[0]]  # a pyramid: level 0
            else:
                data = series.asarray()
            if mask is not None and (by_pillow or isinstance(data, np.ndarray)):
                mask = mask.asarray()
            elif mask is not None:  # its own store, open after this file closes, as the image's
                mask = zarr.open(tifffile.imread(path, aszarr=True, key=mask.index), mode="r")
    except tifffile.TiffFileError as err:
        raise ImageError(
            f"{path.name} is not a TIFF file tifffile can read ({err}): open it in an image editor and save it again"
        ) from None
    except ValueError as err:  # tifffile's "failed to read N bytes": the file ends inside its data
        if "failed to read" not in str(err):
            raise
        raise _truncated(path) from None
    except (IndexError, struct.error) as err:  # a header that promises pages or entries it does not hold
        raise _damaged(path, err) from None
    except RuntimeError as err:  # imagecodecs' decoders (DeflateError, ...): data that does not decode
        if not type(err).__module__.startswith("imagecodecs"):
            raise
        raise _damaged(path, err) from None
    if by_pillow:
        try:
            image = _read_pillow(path)
        except ImageError:
            # Pillow's failure is not the file's when tifffile reads all of its pixels (Pillow before
            # 13 calls some whole uncompressed YCbCr TIFFs truncated)
            if _tifffile_reads(path):
                import PIL

                colours = {"YCBCR": "YCbCr", "SEPARATED": "CMYK"}.get(photometric, photometric)
                raise ImageError(
                    f"{path.name}: Pillow {PIL.__version__} cannot read this TIFF's {colours} pixels (the "
                    "file is whole); update Pillow (pip install -U pillow) or save the image as RGB"
                ) from None
            raise
        image.applied["format"] = f"{kind} ({photometric}, read by Pillow)"
        if georeference and "exif_orientation" not in image.applied:  # a turned image is off its grid
            image.georeference = georeference
            image.applied["georeference"] = geotiff_note(georeference)
        if mask is not None and image.data.shape[:2] == mask.shape:
            image.data = _blank_masked(image.data, mask)
            image.applied["mask"] = _MASK_NOTE
        return image
    applied = {"format": kind, "file_axes": file_axes, "photometric": photometric}
    if jpeg_ycbcr:
        applied["converted"] = "JPEG YCbCr -> RGB (imagecodecs)"
        photometric = "RGB"  # what imagecodecs hands out
    given = axes is not None
    # the sample the file marks as alpha (ExtraSamples 1 or 2), after the colour samples
    marked = next((i for i, e in enumerate(extra) if e in _ALPHA), None)
    samples = shape[file_axes.index("S")] if "S" in file_axes else 0
    alpha = samples - len(extra) + marked if marked is not None and samples else None
    data, out_axes, note = _arrange(data, axes or file_axes, path, given=given, photometric=photometric, alpha=alpha)
    if given:
        applied["axes_given"] = axes
    # two or four samples: the last is alpha only where the file marks it (of five or more, _arrange
    # put the marked one last)
    alpha_last = alpha is not None and (samples > 4 or alpha == samples - 1)
    if out_axes.endswith("S") and data.shape[-1] in (2, 4) and not alpha_last:
        # the last sample is not marked as alpha (a multispectral band): only marked alpha blanks pixels
        data = data[..., :-1] if isinstance(data, np.ndarray) else _as_dask(data)[..., :-1]
        note = (note + "; " if note else "") + "the last sample is not marked as alpha (ExtraSamples): ignored"
    if note:
        applied["samples"] = note
    if mask is not None and out_axes.rstrip("S") == "YX" and data.shape[:2] == mask.shape:
        if isinstance(data, np.ndarray):
            data = _blank_masked(data, mask)
        else:
            import dask.array as da

            d = _as_dask(data)
            m = da.from_zarr(mask).rechunk(d.chunks[:2])
            data = da.where(m[..., None] if d.ndim == 3 else m, d, d.dtype.type(0))
        applied["mask"] = _MASK_NOTE
    if nodata is not None:
        colour = out_axes.endswith("S")
        if colour and not isinstance(data, np.ndarray):
            data = _as_dask(data).rechunk({data.ndim - 1: -1})  # each block holds a pixel's every sample
        data = _lazy_or_numpy(data, lambda a: _blank_nodata(a, nodata, colour))
        applied["nodata"] = f"GDAL_NODATA {nodata:g}: pixels of that value in every sample read as black (nodata)"
    if photometric == "MINISWHITE":
        data = _lazy_or_numpy(data, _white_is_zero)
        applied["converted"] = "MINISWHITE inverted"
    elif colormap is not None and "S" not in out_axes:
        cmap = np.asarray(colormap)  # (3, 2**bits) uint16
        data = _lazy_or_numpy(data, lambda a: np.moveaxis(cmap[:, a], 0, -1))
        out_axes += "S"
        applied["converted"] = "PALETTE -> RGB"
    elif bits and dtype.kind == "u" and bits < 8 * dtype.itemsize and bits not in (1,):
        top = float(2**bits - 1)
        data = _lazy_or_numpy(data, lambda a: a.astype(np.float32) / np.float32(top))
        applied["converted"] = f"{bits} bits per sample: divided by {2**bits - 1}"
    if georeference:
        applied["georeference"] = geotiff_note(georeference)
    return ImageFile(path, data, out_axes, applied, georeference)


_MASK_NOTE = "pixels outside the file's transparency mask (a mask IFD, as GDAL writes) read as black (nodata)"


def _transparency_mask(tif, shape, axes: str):
    """The TIFF page holding the image's transparency mask (NewSubfileType mask, photometric MASK:
    the internal mask GDAL writes for nodata, as a JPEG-compressed orthomosaic needs), for a
    single-plane image of ``shape`` / ``axes``; None when there is none."""
    if "Y" not in axes or "X" not in axes or any(s > 1 for s, a in zip(shape, axes) if a not in "YXS"):
        return None
    hw = (shape[axes.index("Y")], shape[axes.index("X")])
    # tifffile hands out light TiffFrames for some files' pages: they hold no mask flag
    found = (p for p in tif.pages if getattr(p, "is_mask", False) and p.ndim == 2 and tuple(p.shape) == hw)
    return next(found, None)


def _blank_masked(a: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``a`` with the pixels where ``mask`` (bool, ``a``'s shape without its samples) is False set
    to 0, the nodata the vegetation stage leaves out; ``a`` itself when none is."""
    hide = ~np.asarray(mask, bool)
    if not hide.any():
        return a
    out = np.array(a, copy=True)
    out[hide] = 0
    return out


def _gdal_nodata(page) -> float | None:
    """A GeoTIFF's nodata value (its GDAL_NODATA tag), or None when it has none, it is 0 or NaN (read as black already)."""
    tag = page.tags.get("GDAL_NODATA")
    if tag is None:
        return None
    try:
        value = float(str(tag.value).strip("\x00 "))
    except ValueError:
        return None
    return value if np.isfinite(value) and value != 0 else None


def _blank_nodata(a: np.ndarray, value: float, colour: bool) -> np.ndarray:
    """``a`` with the pixels equal to ``value`` (in every sample when ``colour``) set to 0.

    GDAL's nodata (an orthomosaic's area outside the survey, often -10000 or 65535 in float and
    16-bit exports): 0 makes it black, the nodata the vegetation stage leaves out, and keeps it
    out of the intensity range, which a value such as -10000 would otherwise stretch the photo by.
    """
    hit = a == value
    return _blank_masked(a, ~(hit.all(axis=-1) if colour else hit))


def _white_is_zero(a: np.ndarray) -> np.ndarray:
    """MINISWHITE pixels as MINISBLACK ones, as Pillow reads them (1-bit masks are bool here)."""
    if a.dtype == bool:
        return ~a
    return np.iinfo(a.dtype).max - a if a.dtype.kind in "ui" else a.max() - a


def _tifffile_reads(path: Path) -> bool:
    import tifffile

    try:
        tifffile.imread(path, series=0)
    except Exception:  # noqa: BLE001  (any failure: the file may well be broken)
        return False
    return True


def _lazy_or_numpy(data, fn):
    """Apply ``fn`` to a numpy array, or block by block to a lazy one (through dask)."""
    if isinstance(data, np.ndarray):
        return fn(data)
    d = _as_dask(data)
    return d.map_blocks(fn, dtype=np.result_type(fn(np.zeros((1,) * d.ndim, d.dtype))))


def _arrange(data, axes: str, path: Path, *, given: bool, photometric: str | None = None, alpha: int | None = None):
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
            f"(RGB), e.g. --axes {letters.replace('?', 'T', 1)} on the command line or "
            f"axes={letters.replace('?', 'T', 1)!r} in the API"
        )
    if len(keep) < len(shape):
        if not isinstance(data, np.ndarray):
            data = _as_dask(data)  # indexing a zarr array would read it
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
        data = data[pick] if isinstance(data, np.ndarray) else _as_dask(data)[pick]
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
        data = np.transpose(data, order) if isinstance(data, np.ndarray) else _as_dask(data).transpose(order)
    return data, "".join(lead) + "YX" + ("S" if colour else ""), note


def _as_dask(data):
    import dask.array as da

    return data if isinstance(data, da.Array) else da.from_zarr(data)


# ----------------------------------------------------------------------------- zarr


_NGFF_LETTERS = {"t": "T", "time": "T", "c": "C", "channel": "C", "z": "Z", "y": "Y", "x": "X"}


def _read_zarr(path: Path, axes: str | None) -> ImageFile:
    import zarr

    z = zarr.open(str(path), mode="r")
    file_axes = None
    if hasattr(z, "shape"):
        array = z
    else:
        z = _image_group(z)
        attrs = dict(z.attrs)
        multiscales = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
        if multiscales:
            array = z[multiscales[0]["datasets"][0]["path"]]  # OME-Zarr: level 0
            names = [a.get("name", "") if isinstance(a, dict) else str(a) for a in multiscales[0].get("axes", [])]
            if names:
                file_axes = "".join(_NGFF_LETTERS.get(n.lower(), "Q") for n in names)
        else:
            keys = sorted(z.array_keys())
            if not keys:
                groups = sorted(z.group_keys())
                raise ImageError(
                    f"{path} is a zarr group with no arrays at its top"
                    + (
                        f" (its groups: {', '.join(groups[:5])}): give the group of the image, e.g. {path}/{groups[0]}"
                        if groups
                        else ""
                    )
                )
            array = z[keys[0]]
    shape = tuple(int(s) for s in array.shape)
    if file_axes is None:
        if len(shape) == 2:
            file_axes = "YX"
        elif len(shape) == 3 and shape[2] in (3, 4) and min(shape[:2]) > 4:
            file_axes = "YXS"
        else:
            file_axes = "Q" * (len(shape) - 2) + "YX"
    return _arranged_file(path, array, "zarr", file_axes, axes)


def _image_group(z):
    """The group of a zarr store that holds its image: bioformats2raw's layout (OME-Zarr written from
    a microscope or slide file, ``bioformats2raw.layout`` in the root's attributes) puts the first
    image in the group ``0``; other groups are their own image."""
    attrs = dict(z.attrs)
    layout = attrs.get("bioformats2raw.layout") or (attrs.get("ome") or {}).get("bioformats2raw.layout")
    if layout is not None and "0" in set(z.group_keys()):
        return z["0"]
    return z


def _arranged_file(path: Path, array, fmt: str, file_axes: str, axes: str | None) -> ImageFile:
    """The ImageFile of an array whose axes the file states (or the caller gives: ``axes``)."""
    applied = {"format": fmt, "file_axes": file_axes}
    data, out_axes, _ = _arrange(array, axes or file_axes, path, given=axes is not None)
    if axes is not None:
        applied["axes_given"] = axes
    return ImageFile(path, data, out_axes, applied)


# ----------------------------------------------------------------------------- npy


def _read_npy(path: Path, axes: str | None, lazy: bool | None) -> ImageFile:
    from numpy.lib import format as npy_format

    try:
        with open(path, "rb") as f:
            npy_format.read_magic(f)
    except ValueError:
        raise ImageError(
            f"{path.name} is not a numpy .npy file (numpy.save writes those); open the image in napari or "
            "an image editor and save it as PNG, TIFF or with numpy.save"
        ) from None
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError:  # numpy's refusal of object arrays: a pickle is never loaded
        raise ImageError(
            f"{path.name} holds Python objects (e.g. a dict of masks and settings, as Cellpose's _seg.npy), not "
            "an image array: save the image itself with numpy.save(path, image), an (H, W) or (H, W, 3) array"
        ) from None
    if array.ndim < 2 or array.dtype.kind not in "biuf":
        raise ImageError(
            f"{path.name} holds an array of {array.dtype} values and shape {array.shape}, not an image: save an (H, W), "
            "(H, W, 3) or (3, H, W) array of bool, integer or float pixels"
        )
    file_axes = _npy_axes(array.shape)
    if lazy is False or (lazy is None and path.stat().st_size <= LAZY_BYTES):
        array = np.array(array)  # read whole, as a small TIFF is: the file is free again
    else:
        import dask.array as da

        array = da.from_array(array, chunks="auto")  # windows read from the memory map
    return _arranged_file(path, array, "npy", file_axes, axes)


def _npy_axes(shape) -> str:
    """The axes of a saved array, by the rule arrays passed to the API follow
    (:func:`~napari_gardenseg._images.image_layout`: (H, W), (H, W, C), (C, H, W));
    more axes are unknown (``Q``), for ``axes`` to name."""
    from ._images import image_layout

    try:
        return {"hw": "YX", "hwc": "YXS", "chw": "SYX"}[image_layout(shape)]
    except ImageError:
        return "Q" * (len(shape) - 2) + "YX"


def is_image_path(value) -> bool:
    """True for a str or path-like (a file to read), False for an array."""
    return isinstance(value, (str, os.PathLike))
