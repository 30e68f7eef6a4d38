"""Label images from files, and the photos they label: what ``gardenseg train`` reads.

A label image holds one instance id per pixel, 0 for the background. It is
what napari saves for a Labels layer (TIFF, PNG), this plugin's own
``<name>_labels.tif`` outputs after a user corrected them, and the masks that
annotation tools export. :func:`read_labels` reads all of these;
:func:`labelled_photos` finds each photo's label image by name.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._image_arrays import ImageError

__all__ = [
    "LABEL_SUFFIXES",
    "LABEL_TAILS",
    "read_labels",
    "photo_stem",
    "label_path",
    "labelled_photos",
    "table_path",
    "batch_features",
    "DEFAULT_CLASS",
    "label_classes",
    "ids_dtype",
]

# The files a label image is looked for in, in this order: napari saves Labels layers as TIFF.
LABEL_SUFFIXES = (".tif", ".tiff", ".png")
# What follows a photo's name in the names of its label images: gardenseg segment's two outputs
# (raw, CRF-refined), and what gardenseg train looks for by default.
LABEL_TAILS = ("_labels", "_labels_crf")
# the class of painted instances when nothing names one
DEFAULT_CLASS = "plant"


def label_doubt(labels: np.ndarray, pieces: bool = True) -> str | None:
    """What makes a label image ((H, W) ids, 0 the background) look unlike one id per plant, in a
    sentence with what to do, or None: one instance over three quarters of the image that touches
    every border (an inverted mask: plants 0, soil 255); with ``pieces``, ids made of three or more
    separate pieces of 12 pixels or more (a mask of classes, or one id painted on several plants).
    Only warned: occluded plants come in pieces too, and so do a segmentation's own instances, whose
    leaves colour and the CRF cut off at thin stems (labels whose table names each id: ``pieces``
    False)."""
    from skimage.measure import label

    step = max(1, int(np.ceil(np.sqrt(labels.size / 4e6))))  # a few megapixels say it as well
    labels = labels[::step, ::step]
    h, w = labels.shape
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    for k, n in zip(ids, counts):
        if n > 0.75 * h * w:
            m = labels == k
            if m[0].any() and m[-1].any() and m[:, 0].any() and m[:, -1].any():
                return (
                    f"instance {k} covers {n / (h * w):.0%} of the image and touches every border: if the plants "
                    "are 0 in this mask, it is inverted (plants must be non-zero, the background 0)"
                )
    if not pieces:
        return None
    values, rank = np.unique(labels, return_inverse=True)  # ids as 0..n (uint64 ids past 2**63 too)
    rank = rank.reshape(labels.shape) + (values[0] != 0)
    values = values if values[0] == 0 else np.concatenate([np.zeros(1, values.dtype), values])
    pieces = label(rank, background=0, connectivity=2)  # regions of one id
    size = np.bincount(pieces.ravel())
    big = np.flatnonzero(size >= max(1, 12 // step**2))
    big = big[big > 0]
    if not len(big):
        return None
    first = np.zeros(len(size), np.int64)  # each piece's id, as its rank
    first[pieces.ravel()] = rank.ravel()
    many = values[np.flatnonzero(np.bincount(first[big]) >= 3)]
    if not len(many):
        return None
    shown = ", ".join(str(k) for k in many[:5]) + (", ..." if len(many) > 5 else "")
    return (
        f"ids {shown} are each three or more separate pieces: a mask of classes, or one id painted on several "
        "plants? Each plant needs its own id"
    )


def clean_class_name(name) -> str | None:
    """A class name as models keep it: Unicode composed (NFC) and without outer spaces, so that
    names that look the same are one class; None for a missing or empty one."""
    import unicodedata

    if name is None:
        return None
    name = unicodedata.normalize("NFC", str(name)).strip()
    return name or None


def ids_dtype(max_id: int) -> type:
    """The dtype a label image of instance ids up to ``max_id`` is held in: int16 where they fit
    (half of int32's memory for every photo held in training), else int32. Signed, as torch
    has no uint16 arithmetic."""
    return np.int16 if max_id <= np.iinfo(np.int16).max else np.int32


def photo_stem(stem: str) -> str | None:
    """The photo's name in a label image's name (``"a"`` for ``"a_labels"`` or ``"a_labels_crf"``); None if none."""
    for tail in LABEL_TAILS:
        if stem.endswith(tail):
            return stem[: -len(tail)]
    return None


def label_placement(path) -> dict | None:
    """Where the napari layer a label TIFF was saved from lay (scale, translate, rotate, shear,
    affine, units, axis labels: :func:`~napari_gardenseg._label_writer.layer_placement`), from the
    TIFF's description; None for another file or one saved without it."""
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            shaped = tif.shaped_metadata or ()
    except (OSError, ValueError):
        return None
    placement = shaped[0].get("placement") if shaped and isinstance(shaped[0], dict) else None
    return placement if isinstance(placement, dict) and isinstance(placement.get("scale"), list) else None


def read_labels(path, *, planes: bool = False, split: bool = True) -> np.ndarray:
    """Read a label image file: ``(H, W)`` int32 instance ids, 0 the background.

    - an integer image (8, 16 or 32 bits; a napari Labels layer saved as TIFF
      or PNG): the ids as they are; a float image of whole numbers likewise;
    - a palette PNG: the palette indices;
    - an RGB(A) image with one colour per instance: each colour an id, black and
      fully transparent pixels the background;
    - a mask with one value besides 0 (0/255 masks, 1-bit images): each
      connected component (8-connected, ``skimage.measure.label``) an instance;
    - a JPEG (whose values are not exact) of two levels or one colour on black:
      a mask, thresholded half way (warned); one of more levels or colours raises;
    - a PNG or TIFF mask with soft edges (grey levels between 0 and its one level only on a
      thin band round its plants: resized, or painted with an anti-aliased brush): thresholded
      half way too (warned);
    - in a palette PNG whose ids are all under 128, index 255 (PASCAL VOC's
      "void" band round the objects) is background (warned).

    ``planes=True`` reads the ids as stored, for viewing: an integer image of
    more than two axes (the labels of a stack, as ``gardenseg segment`` writes
    them: planes first, then Y, X) keeps all its axes, and an image with one
    id is not split into components. ``split=False`` keeps one id as stored
    too: for labels whose table names their ids (corrected labels down to one
    plant are not a mask).

    TIFF files are read with tifffile, the rest with Pillow. Raises
    FileNotFoundError, and :class:`~napari_gardenseg._image_arrays.ImageError`
    naming the file for one that is not 2-D, has negative or fractional
    values, or that neither library reads.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no such label image: {path}")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            data = tifffile.imread(path)
        else:
            from ._pillow_reader import open_pillow

            with open_pillow(path) as im:
                data = _pillow_labels(im)
                if im.mode == "P":
                    data = _without_void(data, path.name)
            if path.suffix.lower() in (".jpg", ".jpeg", ".jpe", ".jfif"):
                data = _jpeg_mask(data, path.name)
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's and tifffile's "not this format"
        raise ImageError(f"{path.name} could not be read as a label image: {exc}") from exc
    data = np.asarray(data)
    while data.ndim > 2 and data.shape[0] == 1:  # a one-plane stack
        data = data[0]
    if data.ndim == 3 and data.shape[-1] == 1:  # (H, W, 1), as some converters write one plane
        data = data[..., 0]
    if not planes and data.dtype in (np.uint8, np.uint16) and (data.ndim == 2 or data.shape[-1] in (3, 4)):
        data = _soft_mask(data, path.name)
    if data.ndim >= 3 and data.shape[-1] in (3, 4) and data.dtype in (np.uint8, np.uint16):
        data = _colours_to_ids(data)  # a colour per instance (a stack's: ids unique across its planes)
    if planes and data.ndim > 2 and data.dtype.kind in "iu":
        return _as_ids(data, path.name, split=False)
    if data.ndim != 2:
        raise ImageError(
            f"{path.name} is not a 2-D label image (shape {data.shape}): save the Labels layer of one photo"
        )
    return _as_ids(data, path.name, split=split and not planes)


def _pillow_labels(im) -> np.ndarray:
    # palette images keep their indices (the ids), not the colours
    if im.mode in ("P", "1", "L", "I", "I;16", "I;16B", "I;16L", "F", "RGB", "RGBA"):
        return np.asarray(im)
    if im.mode in ("LA", "La", "PA"):  # ids (grey values or palette indices) with an alpha: 0 where transparent
        both = np.asarray(im)
        return np.where(both[..., 1] == 0, 0, both[..., 0])
    return np.asarray(im.convert("RGBA" if "A" in im.getbands() else "RGB"))


def _without_void(indices: np.ndarray, name: str) -> np.ndarray:
    """A palette label image's indices with 255 made background when the ids are all small: the
    "void" band that PASCAL VOC's SegmentationObject PNGs draw round every object (no instance)."""
    others = indices[(indices != 255) & (indices != 0)]
    if not (indices == 255).any() or not others.size or others.max() >= 128:  # a 0/255 mask keeps its 255s
        return indices
    import warnings

    warnings.warn(f"{name}: index 255 (the VOC 'void' band round the objects) is read as background", stacklevel=4)
    return np.where(indices == 255, 0, indices)


def _jpeg_mask(data: np.ndarray, name: str) -> np.ndarray:
    """A label image saved as JPEG, whose values are no longer exact: a mask of two levels (0/255,
    0/1, one colour on black) thresholded half way between them (its plants then split into
    connected components), with a warning; ImageError for more levels (ids are not exact)."""
    import warnings

    level = (data if data.ndim == 2 else data[..., :3].max(axis=-1)).astype(np.float32)
    lo, hi = float(level.min()), float(level.max())
    span = hi - lo
    if span == 0:
        return np.zeros(level.shape, np.uint8)
    fg = level > lo + span / 2
    # one colour per instance: the foreground's hues differ (a mask's colour is one, give or take JPEG)
    hues = data[fg][:, :3] / np.maximum(level[fg, None], 1) if data.ndim == 3 and fg.any() else None
    if np.mean((level - lo <= span / 4) | (hi - level <= span / 4)) < 0.95 or (
        hues is not None and hues.std(axis=0).max() > 0.1
    ):
        raise ImageError(
            f"{name} is a label image saved as JPEG, which changes pixel values: its ids are not exact; "
            "save label images as PNG or TIFF"
        )
    warnings.warn(
        f"{name} is a JPEG, whose values are not exact: read as a mask (half way between its two levels), "
        "each connected plant an instance; save label images as PNG or TIFF",
        stacklevel=4,
    )
    return (fg * 255).astype(np.uint8)


# a mask's soft edges: grey levels between its two, on a band round the plants this wide (pixels),
# and at least this many of them (a ramp; a label map's few ids in that range are instances)
_SOFT_EDGE = 5
_SOFT_LEVELS = 8


def _soft_mask(data: np.ndarray, name: str) -> np.ndarray:
    """``data`` itself, or for a mask with soft edges (resized with interpolation, or painted with
    an anti-aliased brush: one level on 0 with in-between greys only on a thin band round its
    plants) that mask thresholded half way as 0/255, with a warning: read as it is, each grey
    level would be an instance of its own and the plants one. A label map is not one: its
    in-between ids are few, or are areas of one value (a pixel's right and lower neighbours the
    same), not a ramp of many levels along the edges."""
    level = data if data.ndim == 2 else data[..., :3].max(axis=-1)
    if data.ndim == 3 and data.shape[-1] == 4:  # a soft edge may be in the alpha alone (one colour, blended out)
        alpha = data[..., 3].astype(np.float32)
        level = np.round(level * (alpha / max(float(alpha.max()), 1.0)))
    hi = float(level.max())
    lo_px, hi_px = level <= hi / 8, level >= hi * 7 / 8  # an interpolated plant's inside is near its level
    between = ~(lo_px | hi_px)
    n_between = int(between.sum())
    # a soft edge is a thin band: most pixels are the background or the plants
    if n_between == 0 or n_between > 0.1 * level.size or not lo_px.any():
        return data
    if len(np.unique(level[between])) < _SOFT_LEVELS:
        return data
    flat = between[:-1, :-1] & (level[:-1, :-1] == level[:-1, 1:]) & (level[:-1, :-1] == level[1:, :-1])
    if flat.sum() >= 0.5 * n_between:
        return data
    if data.ndim == 3:  # one colour on black: the in-between pixels are that colour, dimmer
        colours = data[level > 0][:, :3].astype(np.float32)
        hues = colours / colours.max(axis=-1, keepdims=True)
        if hues.std(axis=0).max() > 0.1:
            return data
    from scipy import ndimage

    near = 2 * _SOFT_EDGE + 1
    beside_both = ndimage.maximum_filter(lo_px.view(np.uint8), near) & ndimage.maximum_filter(
        hi_px.view(np.uint8), near
    )
    if (beside_both.view(bool) & between).sum() < 0.9 * n_between:
        return data
    import warnings

    warnings.warn(
        f"{name} is a mask with soft edges (grey levels between 0 and {hi:.0f} round its plants, from resizing "
        "or an anti-aliased brush): read half way between its two levels, each connected plant an instance",
        stacklevel=4,
    )
    return ((level > hi / 2) * 255).astype(np.uint8)


def _colours_to_ids(rgb: np.ndarray) -> np.ndarray:
    """One id per colour, in order of first appearance (C order); black and alpha 0 are 0."""
    bits, wide = (8, np.uint32) if rgb.dtype == np.uint8 else (16, np.uint64)
    packed = (rgb[..., 0].astype(wide) << (2 * bits)) | (rgb[..., 1].astype(wide) << bits) | rgb[..., 2]
    if rgb.shape[-1] == 4:
        packed[rgb[..., 3] == 0] = 0
    colours, first, inverse = np.unique(packed, return_index=True, return_inverse=True)
    fg = np.flatnonzero(colours != 0)
    ids = np.zeros(len(colours), np.int32)
    ids[fg[np.argsort(first[fg], kind="stable")]] = np.arange(1, len(fg) + 1)
    return ids[inverse.reshape(packed.shape)]


def _as_ids(data: np.ndarray, name: str, split: bool) -> np.ndarray:
    if data.dtype == bool:
        data = data.astype(np.uint8)
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)) or np.any(data != np.round(data)):
            raise ImageError(f"{name} has fractional values: a label image holds whole instance ids")
        data = data.astype(np.int64)
    if data.dtype.kind not in "iu":
        raise ImageError(
            f"{name} is not a label image (dtype {data.dtype}): a label image holds whole instance ids, 0 the "
            "background (save a Labels layer with File > Save Selected Layers, or integer ids with tifffile)"
        )
    if data.size and data.min() < 0:
        raise ImageError(f"{name} has negative values: a label image holds ids from 0 (background) up")
    if data.size and data.max() > np.iinfo(np.int32).max:
        raise ImageError(
            f"{name} has ids above 2**31 - 1, more than label readers take: number them 1..n first "
            "(skimage.segmentation.relabel_sequential; gs.write_label_file does it when it writes them)"
        )
    values = np.unique(data)
    values = values[values > 0]
    if split and len(values) == 1:  # a mask: one instance per connected component
        from skimage.measure import label

        return label(data > 0, connectivity=2).astype(np.int32)
    return data.astype(np.int32)


# a photo's name may say it is the picture of a pair: CVPPP's leaf-segmentation sets (the plant
# phenotyping benchmark) name plant001_rgb.png beside plant001_label.png; others _image or _img
PHOTO_TAILS = ("_rgb", "_image", "_img")
# the other files of such a pair, which are not photos without labels: CVPPP's foreground masks and
# leaf centres, other sets' masks
PAIR_TAILS = ("_fg", "_centers", "_mask")


def paired_base(photo) -> str | None:
    """The name a photo named ``<base>_rgb`` (:data:`PHOTO_TAILS`) shares with its label image, or
    None: for another name, or when a photo ``<base>`` of any image format lies beside it (whose
    labels those are)."""
    from ._files import is_file
    from ._image_reader import IMAGE_SUFFIXES

    photo = Path(photo)
    tail = next((t for t in PHOTO_TAILS if photo.stem.lower().endswith(t)), None)
    if tail is None or len(photo.stem) == len(tail):
        return None
    base = photo.stem[: -len(tail)]
    # by name, not by listing the folder for each photo (thousands of photos in one folder)
    beside = any(is_file(photo.with_name(base + s)) for ext in IMAGE_SUFFIXES for s in (ext, ext.upper()))
    return None if beside else base


def label_path(photo, labels_dir=None, suffix: str = "_labels") -> Path | None:
    """The label image of ``photo``: ``<labels_dir>/<photo's stem><suffix>`` with a suffix of
    :data:`LABEL_SUFFIXES` (first found), ``labels_dir`` defaulting to the photo's folder; for a
    stem ending in one of :data:`PHOTO_TAILS` (``plant001_rgb``), then the stem without it
    (``plant001_label.png`` with ``suffix="_label"``), unless a photo of that stem lies beside it;
    None if there is none."""
    photo = Path(photo)
    folder = Path(labels_dir).expanduser() if labels_dir is not None else photo.parent
    stems = [photo.stem]
    base = paired_base(photo)
    if base is not None:
        stems.append(base)
    for stem in stems:
        for ext in LABEL_SUFFIXES + tuple(s.upper() for s in LABEL_SUFFIXES):
            candidate = folder / f"{stem}{suffix}{ext}"
            if candidate.is_file() and candidate.resolve() != photo.resolve():
                return candidate
    return None


def labelled_photos(
    items, labels_dir=None, suffix: str = "_labels", *, recursive: bool = False
) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Pair photos with their label images (:func:`label_path`).

    ``items``: photo files, or folders of them (their image files, the label
    images among them left out; ``recursive``: their subfolders' too, at any depth,
    each photo's label image then looked for in the same subfolder of ``labels_dir``,
    as ``gardenseg segment -r`` mirrors the tree). Returns ``([(photo, label image), ...],
    [photos without a label image])``. Raises ValueError for an empty
    ``suffix`` without ``labels_dir`` (each photo would be its own label image).
    """
    from ._image_folders import expand_entries

    if not suffix and labels_dir is None:
        raise ValueError("with an empty suffix the label images must be in another folder: give that folder")
    exclude = [labels_dir] if labels_dir is not None else []  # a batch's results inside the photos' tree
    entries = expand_entries([os.fspath(Path(i).expanduser()) for i in items], recursive=recursive, exclude=exclude)
    found = {
        Path(p): label_path(p, Path(labels_dir).expanduser() / sub if labels_dir is not None else None, suffix)
        for p, sub in entries
    }
    label_files = {lab.resolve() for lab in found.values() if lab is not None}
    # the other files of a pair named <base>_rgb: CVPPP's <base>_fg and <base>_centers masks
    # (a pair made by that rule: the label image's name does not begin with the photo's)
    siblings = {
        (photo.parent, photo.stem.rsplit("_", 1)[0] + tail)
        for photo, lab in found.items()
        if lab is not None and not lab.stem.startswith(photo.stem)
        for tail in PAIR_TAILS
    }
    pairs, unlabelled = [], []
    for photo, lab in found.items():
        if photo.resolve() in label_files:
            continue  # a label image listed with the photos (a folder holding both)
        if lab is None and (photo.parent, photo.stem) in siblings:
            continue
        (pairs.append((photo, lab)) if lab is not None else unlabelled.append(photo))
    return pairs, unlabelled


def table_path(label_file) -> Path:
    """A label image's own instances table, ``<its stem>_instances.csv`` beside it (what the
    Labels writer, :mod:`._label_writer`, writes with it)."""
    label_file = Path(label_file)
    return label_file.with_name(f"{label_file.stem}_instances.csv")


def batch_features(label_file, pixel_size=None):
    """The instances of a label image, from the table beside it: the file's own
    ``<file stem>_instances.csv`` (what the Labels writer, :mod:`._label_writer`, writes),
    else the batch's ``<name>_instances.csv``, ``<name>`` being the file's name without
    ``_labels`` / ``_labels_crf`` (:func:`photo_stem`). Returns the table as napari ``features``
    (:func:`~napari_gardenseg._plane_run.instance_features`: label,
    class_name, score, area, ...), ``area`` being the refined masks' for
    ``_labels_crf``; None when there is no such table or it does not have the
    batch's columns (not this plugin's). Given the file's ``pixel_size``, ``area_mm2`` too.
    """
    import pandas as pd

    from ._plane_run import instance_features, split_areas

    label_file = Path(label_file)
    own = table_path(label_file)
    table_file = table_of(label_file)
    if table_file is None:
        return None
    try:
        masks, crf = split_areas(instance_features(pd.read_csv(table_file), pixel_size=pixel_size))
    except (KeyError, ValueError, pd.errors.ParserError):  # not this plugin's table: the labels alone
        return None
    return crf if label_file.stem.endswith("_labels_crf") and table_file != own else masks


def table_of(label_file: Path) -> Path | None:
    """The instances table :func:`batch_features` reads for ``label_file``, None if none is there."""
    own = table_path(label_file)
    stem = photo_stem(label_file.stem)
    table_file = own if own.is_file() else label_file.with_name(f"{stem}_instances.csv") if stem is not None else None
    return table_file if table_file is not None and table_file.is_file() else None


def label_classes(label_file, default: str = DEFAULT_CLASS, name: str | None = None) -> dict[int, str] | str:
    """The classes of a label image's instances: ``{id: class name}``, or one name for all.

    A batch's result (corrected or not) names them in the ``<name>_instances.csv``
    beside it (:func:`batch_features`); other label images take ``name``, else
    ``default``. Where the table names some instances and not others (plants
    painted since the batch), ``name`` is the class of those without one and the
    others keep theirs; otherwise ``name`` is every instance's (as the *Train on
    my labels* panel's typed name: :func:`~napari_gardenseg._train_layers.samples_from_layers`).
    Raises ValueError naming the file and the ids when instances have no class
    and no ``name`` is given.
    """
    from ._train_layers import classes_from_features, classes_named

    classes = classes_from_features(batch_features(label_file))
    if not classes:
        return default if name is None else name
    label_file = Path(label_file)
    ids = [int(k) for k in np.unique(read_labels(label_file, split=False)) if k > 0]
    unnamed = [k for k in ids if k not in classes]
    if unnamed and name is None:
        raise ValueError(
            f"{label_file.name}: instances {unnamed[:5]}{' ...' if len(unnamed) > 5 else ''} have no class in "
            f"{table_of(label_file).name}, which names the classes of the others (painted since the batch?): "
            "give their class (gardenseg train --class-name NAME; the others keep theirs), or fill in the "
            "class_name of their rows"
        )
    return classes_named(classes, ids, name)


def label_measures(label_file) -> dict:
    """What a label image's file says of its pixels, as its layer's metadata keeps it: its
    ``pixel_size`` (:meth:`~napari_gardenseg._pixel_size.PixelSize.as_record`: the resolution
    this plugin's writer and batches put there), else its ``map_grid`` and ``ground_pixel_m2``
    (the photo's georeferencing, copied to the labels: :mod:`._georeference`); {} where it states
    none or cannot be read (:func:`~napari_gardenseg._image_reader.stated_measures`)."""
    from ._image_reader import stated_measures

    read = stated_measures(label_file)
    if read is None:
        return {}
    measures = read[1]
    if measures["map_grid"] is not None:
        return {"map_grid": list(measures["map_grid"]), "ground_pixel_m2": measures["ground_pixel_m2"]}
    return {"pixel_size": measures["pixel_size"].as_record()} if measures["pixel_size"] is not None else {}
