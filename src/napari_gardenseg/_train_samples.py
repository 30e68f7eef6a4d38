"""Training samples: ``(image, labels, classes)`` triples checked and held as training uses them.

:func:`prepare_samples` reads photos and label images (files or arrays), says
what is wrong with a sample in its words (sizes, ids, class names, a photo
given twice, labels painted on a photo unturned), renumbers ids, and holds
each photo at the largest size training draws from it, one photo at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ._cancel import Cancelled, should_stop
from ._image_arrays import to_rgb_float
from ._label_files import ids_dtype

__all__ = ["MIN_AREA", "Sample", "check_sizes", "prepare_samples"]


class Sample:
    """One photo as training holds it, with its instance ids and their classes."""

    __slots__ = ("image", "labels", "class_of", "zoom", "held")

    def __init__(self, image, labels, class_of, zoom: float = 1.0, held: float = 1.0):
        self.image = image  # float32 (H, W, 3), or uint8 (converted crop by crop)
        self.labels = labels  # int16 or int32 (H, W)
        self.class_of = class_of  # instance id -> class name
        self.zoom = zoom  # the scale inference will see this image at (before random rescaling)
        self.held = held  # the image and labels are the photo's resized by this (zoom is of them)


def prepare_samples(
    samples: Sequence, zoom_of: Callable[[np.ndarray], float] | None = None, largest: float = 1.0, cancel=None
):
    """Check and normalise ``(image, labels, classes)`` triples; clear errors on bad ones.

    ``image`` and ``labels`` are arrays or files: a photo as
    :func:`~napari_gardenseg._image_reader.read_image` reads it, a label image as
    :func:`~napari_gardenseg._label_files.read_labels` does. Returns a list of
    ``Sample``.

    ``zoom_of(rgb)``: the scale inference sees a photo at (``_zoom_for``), and
    ``largest`` the largest random rescale training draws on top of it. A photo
    that training never sees at more than :data:`HELD_BELOW` of its pixels'
    size is held at that size (:func:`_held_at`), one photo at a time: two
    hundred 24 MP photos are never all in memory at full size. ``cancel`` is
    checked before each photo is read (raises :class:`Cancelled`).
    """
    from ._image_reader import as_path, is_image_path
    from ._label_files import clean_class_name, label_doubt

    if len(samples) == 0:
        raise ValueError("train() needs at least one (image, labels, classes) sample")
    out, first = [], {}  # first: photo file -> (sample number, its Sample)
    for i, sample in enumerate(samples):
        if should_stop(cancel):  # reading many large photos takes a while
            raise Cancelled("training was cancelled before the first iteration; nothing was saved")
        try:
            image, labels, classes = sample
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"sample {i} is not an (image, labels, classes) triple: samples is a list of them "
                "(one sample: [(image, labels, classes)])"
            ) from exc
        what = f"sample {i}"
        image, labels = as_path(image), as_path(labels)  # bytes, file://
        photo_file = Path(image).expanduser().resolve() if is_image_path(image) else None
        orientation = None  # the EXIF orientation the photo was turned upright by
        if photo_file is not None:
            from ._image_reader import read_image

            what, photo = f"{what} ({Path(image).name})", read_image(image)
            if photo.is_stack:
                raise ValueError(f"{what} holds {photo.n_planes} planes; train takes 2-D photos")
            orientation = photo.applied.get("exif_orientation")
            image, photo = photo.data, None
        # ids a table names are instances by its word (a segmentation's, corrected or not): not a class mask
        named = isinstance(classes, dict)
        if is_image_path(labels):
            from ._label_files import read_labels, table_of

            named = named or table_of(Path(labels).expanduser()) is not None
            # ids a table names are kept as stored (one plant left is not a mask to split)
            what, labels = f"{what}: {Path(labels).name}", read_labels(labels, split=not isinstance(classes, dict))
        rgb = _held_rgb(image)
        lab = np.asarray(labels)
        if lab.dtype == bool:  # a mask, as a 0/255 mask file is: each connected plant an instance
            from skimage.measure import label

            lab = label(lab, connectivity=2) if not isinstance(classes, dict) else lab.astype(np.uint8)
        if lab.dtype.kind not in "iub":
            raise ValueError(f"{what}: labels must be an integer label image, got dtype {lab.dtype}")
        if lab.ndim != 2:
            raise ValueError(
                f"{what}: labels must be one 2-D image of instance ids (H, W), got shape {lab.shape} "
                "(a label image with one colour per instance: give its file, which is read into ids)"
            )
        if lab.size and lab.min() < 0:
            raise ValueError(
                f"{what}: labels hold negative ids ({int(lab.min())}); 0 is the background, instances 1 up"
            )
        if lab.shape != rgb.shape[:2]:
            turned = lab.shape == rgb.shape[1::-1]
            hint = " (the photo is read turned upright by its EXIF orientation: were they drawn on it unturned?)"
            raise ValueError(
                f"{what}: labels of {lab.shape[0]}x{lab.shape[1]} pixels do not match the image's "
                f"{rgb.shape[0]}x{rgb.shape[1]}: paint the labels on the image they are for{hint if turned else ''}"
            )
        ids = [int(v) for v in np.unique(lab) if v > 0]
        doubt = label_doubt(lab, pieces=not named)
        if doubt is None and orientation in (5, 6, 7, 8) and lab.shape[0] == lab.shape[1]:
            doubt = _painted_unturned(rgb, lab, orientation)  # a square photo's turn does not show in its size
        if doubt is not None:
            import warnings

            warnings.warn(f"{what}: {doubt}", stacklevel=2)
        if isinstance(classes, str):  # one class for every instance
            classes = {k: classes for k in ids}
        missing = [k for k in ids if k not in classes]
        if missing:
            raise ValueError(
                f"{what}: instances {missing[:5]} have no class name; give classes as a dict "
                "{instance id: class name} or one name for all"
            )
        class_of = {k: clean_class_name(classes[k]) for k in ids}
        if None in class_of.values():
            raise ValueError(
                f"{what}: instance {next(k for k, v in class_of.items() if v is None)} has an empty class name"
            )
        if ids and ids[-1] > len(ids):  # ids 1..n: crops are resized in float32, exact to 2**24 only
            ids_now = np.array([0, *ids], dtype=lab.dtype)  # uint64 ids past 2**63 stay exact
            lab = np.searchsorted(ids_now, lab)  # each id to its rank; 0 stays 0
            class_of, ids = (
                {i: class_of[k] for i, k in enumerate(ids_now[1:].tolist(), 1)},
                list(range(1, len(ids) + 1)),
            )
        sample = Sample(rgb, _held_labels(lab, ids), class_of)
        del rgb, lab, image, labels  # the photo at full size goes before the next one is read
        if zoom_of is not None:
            sample = _held_at(sample, zoom_of(sample.image), largest)
        if photo_file is not None and photo_file in first:  # painted and annotated, or listed twice
            j, earlier = first[photo_file]
            if not _same_instances(earlier, sample):
                raise ValueError(
                    f"sample {i} and sample {j} are both {photo_file.name}, with other labels: each would teach the "
                    "other's plants as soil; give the photo once, with all its plants"
                )
            import warnings

            warnings.warn(
                f"sample {i}: {photo_file.name} was given before with the same labels; used once", stacklevel=2
            )
            continue
        if photo_file is not None:
            first[photo_file] = (i, sample)
        out.append(sample)
    if not any(s.class_of for s in out):
        raise ValueError("the samples hold no labelled instances (all labels are 0)")
    return out


# A photo that training draws at no more than this share of its size (its inference zoom times the
# largest random rescale) is held at that size: below it the memory saved is worth a second resize.
HELD_BELOW = 0.75


def _held_at(sample: Sample, zoom: float, largest: float) -> Sample:
    """``sample`` with ``zoom`` set, its image and labels resized to ``zoom * largest`` of their size
    when that is under :data:`HELD_BELOW`: the image bilinear without antialias, as inference
    resizes a photo (``_forward._linear_taps``), the labels by the nearest pixel."""
    from ._forward import _blend, _linear_taps

    h, w = sample.labels.shape
    factor = zoom * largest
    if factor >= HELD_BELOW:
        sample.zoom = zoom
        return sample
    oh, ow = round(h * factor), round(w * factor)
    if min(oh, ow) < 32:  # a narrow strip: held as it is (rounding a few rows would stretch it)
        sample.zoom = zoom
        return sample
    ry0, ry1, wy0, wy1 = _linear_taps(h, oh)
    cx0, cx1, wx0, wx1 = _linear_taps(w, ow)
    img = sample.image
    rgb = np.empty((oh, ow, 3), img.dtype)
    for y in range(0, oh, 64):  # in bands of output rows: a float copy of a band, not of the photo
        b = slice(y, y + 64)
        rows = _blend(
            img[ry0[b]].astype(np.float32), img[ry1[b]].astype(np.float32), wy0[b, None, None], wy1[b, None, None]
        )
        band = _blend(rows[:, cx0], rows[:, cx1], wx0[:, None], wx1[:, None])
        rgb[b] = np.clip(np.rint(band), 0, 255) if img.dtype == np.uint8 else band
    nearest_y = np.minimum(((np.arange(oh) + 0.5) * (h / oh)).astype(np.int64), h - 1)
    nearest_x = np.minimum(((np.arange(ow) + 0.5) * (w / ow)).astype(np.int64), w - 1)
    labels = np.ascontiguousarray(sample.labels[nearest_y][:, nearest_x])
    held = oh / h
    return Sample(rgb, labels, sample.class_of, zoom / held, held)


def _same_instances(a: Sample, b: Sample) -> bool:
    """Whether two samples' labels are the same plants of the same classes, whatever their ids."""
    la, lb = np.asarray(a.labels), np.asarray(b.labels)
    if la.shape != lb.shape or ((la == 0) != (lb == 0)).any():
        return False
    pairs = np.unique(np.stack([la[la > 0], lb[lb > 0]]), axis=1)
    one_to_one = len(pairs[0]) == len(np.unique(pairs[0])) == len(np.unique(pairs[1]))
    return one_to_one and all(a.class_of.get(int(i)) == b.class_of.get(int(j)) for i, j in pairs.T)


def _painted_unturned(rgb: np.ndarray, labels: np.ndarray, orientation: int) -> str | None:
    """What to say when ``labels`` fit the plants of ``rgb`` (a photo read upright, turned by EXIF
    ``orientation``) far better turned as the reader turns the photo: painted on its stored pixels,
    as viewers that ignore the orientation show it; else None."""
    from ._coco_labels import turn_upright
    from ._scale import vegetation_mask

    fg = labels > 0
    if fg.sum() < 100:
        return None
    plant = vegetation_mask(rgb / 255.0 if rgb.dtype == np.uint8 else rgb)
    as_given = float(plant[fg].mean())
    turned = float(plant[turn_upright(fg.astype(np.uint8), orientation) > 0].mean())
    if turned < 0.5 or turned < 2 * as_given:
        return None
    return (
        f"the photo is turned upright by its EXIF orientation, and these labels fit its plants far better "
        f"turned that way too ({turned:.0%} of their pixels plant-coloured against {as_given:.0%}): were they "
        "painted on the photo unturned (as a viewer that ignores the orientation shows it)? Paint on the photo "
        "as this plugin's reader opens it"
    )


def _held_rgb(image) -> np.ndarray:
    """The photo as training holds it: 8-bit photos as uint8 (H, W, 3), a quarter of float32's
    memory, converted crop by crop with the same division by 255 as :func:`to_rgb_float`; any
    other dtype as float32 (H, W, 3) in 0..1."""
    from ._image_arrays import to_rgb_uint8

    dtype = image.dtype if hasattr(image, "dtype") else np.asarray(image).dtype  # a lazy array is read once
    if dtype == np.uint8:  # to_rgb_uint8 of 8-bit data is exactly to_rgb_float * 255
        return to_rgb_uint8(image)
    return to_rgb_float(image)


def _held_labels(labels: np.ndarray, ids: list[int]) -> np.ndarray:
    """A copy of ``labels`` in :func:`ids_dtype` (a copy: a layer painted while training runs is not seen)."""
    return labels.astype(ids_dtype(max(ids, default=0)))


# an instance smaller than this (pixels, as the network sees the crop) is left out of a crop's targets
MIN_AREA = 12


def check_sizes(prepared: list[Sample], largest_zoom: float) -> None:
    """Raise ValueError when no labelled instance reaches :data:`MIN_AREA` pixels even at the
    largest zoom training draws (``largest_zoom`` times each sample's own): every crop's targets
    would be empty, and training would learn only that nothing is there."""
    largest = max((int(np.bincount(s.labels.ravel())[1:].max(initial=0)) * s.zoom**2 for s in prepared), default=0)
    if largest * largest_zoom**2 < MIN_AREA:
        raise ValueError(
            f"every labelled instance is under {MIN_AREA} pixels as the network sees it (the largest: "
            f"{largest:.0f}): nothing to learn from; paint the whole plant, not a dot on it, or train at a "
            "larger scale (scale=)"
        )
