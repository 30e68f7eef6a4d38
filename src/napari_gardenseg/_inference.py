"""``segment()``: one image through Mask R-CNN and the dense CRF.

The stages are separate functions with plain array inputs and outputs so that
tiled inference (many ``predict_instances`` calls whose soft masks are merged
before the CRF) and batch runs can reuse them:

    ImageSource (in memory or lazy) -> _forward.predict_instances per tile (compact
    Instances) -> _tiling.merge_tiles -> _instances.paint -> crf.refine_masks -> paint

The run's options arrive as one :class:`~napari_gardenseg._options.SegmentOptions`
(:func:`segment_with`); :func:`segment` builds it from its keyword arguments.
The stages import downward only: this module calls them, none of them calls it.

Nothing here holds an image-sized array per instance: masks stay local to
their boxes and only :func:`~napari_gardenseg._instances.paint` makes label
images (whole, or a zarr chunk at a time in :func:`segment_to_zarr`).
"""

from __future__ import annotations

import difflib
import json
import os
import warnings
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import _forward
from ._cancel import Cancelled, ProgressFn, check, check_callbacks
from ._files import OutputExistsError, atomic_write, check_target
from ._forward import predict_instances
from ._image_source import ImageSource, open_image
from ._instances import FULL_PASSES, Instances, paint, paint_image, visible_shares
from ._models import Model, load_model
from ._options import DEFAULT_MODEL, DEFAULTS, SegmentOptions, with_model_thresholds
from ._planes import MAX_PLANE_PIXELS
from ._results import SegmentationResult, label_areas, measures_meta
from ._scale import estimate_scale
from ._tiling import _intersection, detect, model_input_size, plan_tiles, seam_note
from .crf import CRFParams, refine_masks

__all__ = ["segment", "segment_to_zarr", "segment_with", "segment_to_zarr_with", "predict_instances", "Cancelled"]


def class_ids_for(model: Model, classes) -> set[int] | None:
    """Turn a class filter (names or ids) into class ids; None keeps all."""
    return class_ids_in(model.class_names, model.source, classes)


def class_ids_in(names, source, classes) -> set[int] | None:
    """:func:`class_ids_for` with a model's class names (background first) and its name ``source``:
    ValueError naming the unknown class, the closest names and the model's classes."""
    if classes is None:
        return None
    if isinstance(classes, (str, int, np.integer)):
        classes = [classes]
    elif not isinstance(classes, (list, tuple, set, frozenset, np.ndarray)):
        raise TypeError(
            f"classes must be None, a class name or id, or a list of them, got {classes!r} ({type(classes).__name__})"
        )
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
            if c == "plant" or (isinstance(c, (int, np.integer)) and int(c) == len(names)):
                # the class of plant-coloured instances no detection claimed: not the network's to filter
                hint = (
                    " 'plant' is the class of the plant-coloured instances no detection claimed, which a class "
                    "filter does not select (vegetation='off' leaves them out)."
                )
            raise ValueError(
                f"unknown class {c!r} for model {source!r}.{hint} "
                f"Its classes are: {', '.join(real[:40])}{' ...' if len(real) > 40 else ''}"
            )
    return ids


def resolve_scale(scale, source, model):
    """``"auto"`` -> the estimated scale at which plants have the size the model was trained on."""
    if scale != "auto":
        return scale
    return float(estimate_scale(source, model))


def detect_instances(
    model, source, options: SegmentOptions, wanted, *, cancel=None, progress=None
) -> tuple[Instances, dict]:
    """The instances of a whole image (tiled or not), filtered, deduplicated; with a note of how it ran.

    ``wanted``: the class ids to keep (:func:`class_ids_for`), None for all.
    """
    from ._vegetation import data_region, data_window

    report = progress or (lambda f, m: None)
    asked = resolve_scale(options.scale, source, model)
    tiles, scale = plan_tiles(source.shape, options.tile_size, options.tile_overlap, asked, model)
    window, skipped = None, 0
    if tiles is not None and (window := data_region(source)) is not None:
        # tiles over the data only: none over a nodata border
        tiles, scale = plan_tiles(source.shape, options.tile_size, options.tile_overlap, asked, model, window)
    if (seams := seam_note(tiles)) is not None:
        warnings.warn(seams, stacklevel=2)
    if tiles is None:
        report(0.0, "running Mask R-CNN")
        window = data_window(source)  # the network sees the data, not a nodata border around it
        found = _forward.predict_instances(
            model,
            _forward.network_input(source, window, scale, model.net),
            scale=scale,
            offset=window[:2],
            image_shape=source.shape,
            region_shape=(window[2] - window[0], window[3] - window[1]),
            cancel=cancel,
            min_score=options.score_threshold,
            classes=wanted,
        )
    else:
        found, skipped = detect(
            model,
            source,
            tiles,
            scale=scale,
            min_score=options.score_threshold,
            classes=wanted,
            mask_threshold=options.mask_threshold,
            cancel=cancel,
            progress=progress,
        )
    how = {"scale": scale, "tiles": 0 if tiles is None else len(tiles)}
    if tiles is None:  # how many times smaller the network saw the image (the model's resize, or scale)
        side = max(window[2] - window[0], window[3] - window[1], 1)
        how["shrink"] = round(max(1 / scale if scale else 0.0, side / model_input_size(model), 1.0), 2)
    if found.meta.get(FULL_PASSES):
        how[FULL_PASSES] = found.meta[FULL_PASSES]
    if options.merge_classes:
        found = suppress_duplicates(found, options.mask_threshold)
        found.class_ids[:] = 1
    if window is not None and window != (0, 0, *source.shape[:2]):
        how["data_window"] = list(window)
    if tiles is not None:
        how["tile_windows"] = [t.window for t in tiles]
        if skipped:
            how["nodata_tiles"] = skipped
        if seams is not None:  # kept beside the warning: a batch's record says why plants came out cut
            how["seam_note"] = seams
    return found, how


def suppress_duplicates(found: Instances, mask_threshold: float, ios: float = 0.8) -> Instances:
    """Class-agnostic: drop an instance mostly inside a better-scored one (the detector's NMS is per class)."""
    drop = np.zeros(len(found), bool)
    ext = found.extents()
    count = np.array([np.count_nonzero(m > mask_threshold) for m in found.masks], np.int64)
    for i in range(len(found)):
        if count[i] == 0:
            continue
        # the better-scored ones (found is in score order) whose regions meet this one's, not dropped
        for j in found.overlapping(ext[i]):
            if j >= i or drop[j]:
                continue
            win = _intersection(ext[i], ext[j])
            inter = np.count_nonzero((found.crop(i, win) > mask_threshold) & (found.crop(j, win) > mask_threshold))
            if inter and inter / min(count[i], count[j]) >= ios:
                drop[i] = True
                break
    return found.take(~drop)


# An instance left with less than this share of its own mask once better-scored ones are painted
# over it is a duplicate (the same plant found again under another class: the detector's NMS is
# per class) or a piece of another: it is dropped, as panoptic merging does (Kirillov et al.,
# Panoptic FPN, 2019; detectron2 drops below 0.5). Lower here: in a crowded bed a plant half
# hidden under its neighbours is still a plant.
MIN_VISIBLE_SHARE = 0.25


def _shown(visible: np.ndarray, found: Instances, mask_threshold: float) -> np.ndarray:
    """Indices of the instances the labels show: ``visible`` (int (N,)) pixels each keeps once
    painted under better-scored ones; none, or under :data:`MIN_VISIBLE_SHARE` of its own mask, and
    it is dropped."""
    share = visible_shares(found, visible, mask_threshold)
    return np.flatnonzero((visible > 0) & (share >= MIN_VISIBLE_SHARE))


def segment(
    image,
    model=DEFAULT_MODEL,
    score_threshold: float | None = DEFAULTS.score_threshold,
    mask_threshold: float | None = DEFAULTS.mask_threshold,
    classes=DEFAULTS.classes,
    crf: bool = DEFAULTS.crf,
    crf_params=DEFAULTS.crf_params,
    *,
    device=DEFAULTS.device,
    progress: ProgressFn | None = None,
    cancel=None,
    keep_soft_masks: bool = False,
    tile_size=DEFAULTS.tile_size,
    tile_overlap=DEFAULTS.tile_overlap,
    scale=DEFAULTS.scale,
    merge_classes: bool = DEFAULTS.merge_classes,
    vegetation: str = DEFAULTS.vegetation,
) -> SegmentationResult:
    """Segment the objects in one 2-D image.

    ``image``: any array :func:`napari_gardenseg.to_rgb_float` accepts (uint8,
    uint16, float of any range with NaN/inf, bool; grayscale, RGB, RGBA,
    channel-first), a lazy array (dask, zarr), read tile by tile, or the path
    of an image file, read by :func:`~napari_gardenseg.open_image` (EXIF
    orientation applied; big TIFFs and zarr stores lazily). A napari layer
    raises ``TypeError``: :func:`segment_layer` takes those.
    ``model``: a :class:`Model` from :func:`load_model`, or anything
    ``load_model`` takes (default: the bundled ``"garden"`` model, offline;
    ``"coco"`` is torchvision's everyday-objects model). A torchvision module
    passed in is left as it was (mode, device, parameters, hooks). ``device``:
    ``"auto"`` (CUDA, then MPS, then the CPU; a loaded :class:`Model` runs where
    it is), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.

    Instances scoring below ``score_threshold`` (0..1; None: the value stored
    with the model, else 0.5), or not in ``classes`` (names or ids; None keeps
    all), are dropped. A pixel belongs to an instance
    where its soft mask is above ``mask_threshold`` (above 0, below 1; None: the
    value stored with the model, else 0.5); each pixel belongs to one instance
    (the highest score wins); an instance left with no pixels is dropped. With
    ``crf=True`` the soft masks are refined by the dense CRF using
    ``crf_params`` (a :class:`CRFParams` as given; a dict of some fields over
    the settings stored with the model) or, when None, the settings stored
    with the model.

    ``scale``: None lets the model resize the image its own way; a number
    resizes it by that factor first (1.0 = native pixels, 0.25 = a quarter);
    ``"auto"`` estimates it from the image. ``tile_size`` (pixels at that
    scale, or ``"auto"``) runs the network on overlapping tiles of that size
    (``tile_overlap`` pixels apart) and merges instances across tiles; see
    :mod:`napari_gardenseg._tiling`. ``merge_classes=True`` reports every
    instance as one class, ``"plant"`` (the model's id for it, else the id
    after its last class, as plant-coloured instances get), and removes
    cross-class duplicates.

    ``progress(fraction, message)`` reports the stages; setting ``cancel``
    (an Event or a callable) raises :class:`Cancelled` within a fraction of a
    second. ``keep_soft_masks`` keeps the compact soft masks as
    ``result.instances``. ``vegetation``: plant pixels from colour, "auto",
    "on" or "off". The options are validated together, as one
    :class:`~napari_gardenseg._options.SegmentOptions` (its docstring says
    each one's range); ``result.meta["options"]`` holds it.

    Returns a :class:`SegmentationResult`: ``labels``, (H, W) int32 instance ids
    (0 the background); ``refined``, the CRF's labels with the same ids (None
    with ``crf=False``); per instance, ``class_ids``, ``class_names``,
    ``scores``, ``boxes`` and ``sources``, and the ``table`` of them; ``meta``,
    how the run went.

    Raises :class:`~napari_gardenseg.ImageError` for an image that is not one
    2-D image (empty, more than 3 dimensions, no channel axis of length 1-4, a
    file that is not an image or holds a stack, a web address);
    FileNotFoundError for a path that does not exist; TypeError for a napari
    layer, pixels that are not numbers, a ``progress`` that is not callable, a
    ``cancel`` that is neither an Event nor a callable, or an option of the wrong type (ValueError for the fractions
    ``score_threshold`` and ``mask_threshold`` and for ``vegetation``, whose
    message names what they take); ValueError for an option out of its range, a class the model does not have
    or an unknown ``crf_params`` field; :class:`~napari_gardenseg.ModelError`
    for a model that cannot be loaded; :class:`~napari_gardenseg.DeviceError`
    for a device that is unknown or not available here;
    :class:`~napari_gardenseg.CRFUnavailableError` for a CRF backend that
    cannot be imported; :class:`Cancelled` when ``cancel`` is set; MemoryError,
    saying to use :func:`segment_to_zarr`, for an image too big for memory.
    """
    options = SegmentOptions(
        score_threshold=score_threshold,
        mask_threshold=mask_threshold,
        classes=classes,
        scale=scale,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        merge_classes=merge_classes,
        crf=crf,
        crf_params=crf_params,
        device=device,
        vegetation=vegetation,
    )
    return segment_with(image, model, options, progress=progress, cancel=cancel, keep_soft_masks=keep_soft_masks)


def segment_with(
    image,
    model,
    options: SegmentOptions,
    *,
    progress: ProgressFn | None = None,
    cancel=None,
    keep_soft_masks: bool = False,
) -> SegmentationResult:
    """:func:`segment` with its options as one :class:`SegmentOptions` (what the widget, CLI and batch hand down)."""
    run = _Run.start(image, model, options, progress, cancel)
    h, w = run.source.shape[:2]
    if run.source.lazy and h * w > MAX_PLANE_PIXELS:
        warnings.warn(f"{_held_whole(h, w)} while the image is read tile by tile", stacklevel=3)
    try:
        found = run.follow_colour(run.detect())
        run.report(0.7, "assembling instances")
        labels = paint_image(found, run.mask_threshold)
        kept = _shown(label_areas(labels, len(found))[1:], found, run.mask_threshold)
        if len(kept) < len(found):  # painted again: what a dropped one covered goes to the next best
            found = found.take(kept)
            labels = paint_image(found, run.mask_threshold)
        claims = run.refine(found)
        refined = None if claims is None else paint_image(claims, run.mask_threshold)
    except MemoryError as err:
        raise MemoryError(f"out of memory segmenting a {w} x {h} image: {_held_whole(h, w)}") from err
    run.report(1.0, f"{len(found)} instances")
    return run.result(found, labels, refined, claims, keep_soft_masks)


def _held_whole(h: int, w: int) -> str:
    """Why a big image's run may not fit in memory, and what to do instead."""
    gb = h * w * 4 / 1e9
    return (
        f"segment() holds the label images of its {w} x {h} pixels in memory ({gb:.1f} GB each as int32, "
        "two with the CRF); for images this big use segment_to_zarr(image, 'labels.zarr'), which writes them "
        "chunk by chunk (`gardenseg segment` does so for big TIFFs and zarr stores)"
    )


def segment_to_zarr(
    image,
    path,
    model=DEFAULT_MODEL,
    score_threshold: float | None = DEFAULTS.score_threshold,
    mask_threshold: float | None = DEFAULTS.mask_threshold,
    classes=DEFAULTS.classes,
    crf: bool = DEFAULTS.crf,
    crf_params=DEFAULTS.crf_params,
    *,
    device=DEFAULTS.device,
    progress: ProgressFn | None = None,
    cancel=None,
    tile_size=DEFAULTS.tile_size,
    tile_overlap=DEFAULTS.tile_overlap,
    scale=DEFAULTS.scale,
    merge_classes: bool = DEFAULTS.merge_classes,
    vegetation: str = DEFAULTS.vegetation,
    overwrite: bool = False,
    chunk_size: int = 1024,
) -> SegmentationResult:
    """:func:`segment` for images larger than memory: labels go into a zarr store, chunk by chunk.

    ``image``: a path (TIFF/BigTIFF and zarr are read lazily) or any array
    :func:`segment` takes. Writes a zarr group at ``path`` with int32 arrays
    ``labels`` and, with the CRF, ``refined`` (chunks of ``chunk_size``²) and
    the run's settings in its attributes; the folder appears only when complete
    and an existing one is kept unless ``overwrite=True``, which replaces only
    a store this function wrote (never the input, nor an image's store:
    :class:`~napari_gardenseg.OutputExistsError`). Returns a
    :class:`SegmentationResult` whose ``labels``/``refined`` are the zarr
    arrays (napari shows them lazily) and whose ``table`` is read band by band.
    Memory: the compact instances, one tile and a few chunks, whatever the
    image size: ``tile_size=None`` is read as ``"auto"`` here, since the
    whole image at once is what this function exists to avoid.

    ``chunk_size``: the side of the store's square chunks, in pixels (>= 64).
    ``model``, ``score_threshold``, ``mask_threshold``, ``classes``, ``crf``,
    ``crf_params``, ``device``, ``progress``, ``cancel``, ``tile_size``,
    ``tile_overlap``, ``scale``, ``merge_classes`` and ``vegetation`` are
    :func:`segment`'s.

    Raises :class:`~napari_gardenseg.OutputExistsError`, before the run, when
    ``path`` exists and ``overwrite`` is False (or when it appears during the
    run), or is a file, a folder that is not a zarr store, a zarr store this
    function did not write, or the input (or inside it, or holding it); ValueError for a ``chunk_size`` that is not
    a whole number >= 64, and for a ``path`` ending in ``.zip`` (the store is a folder: zip it afterwards);
    what :func:`segment` raises (ImageError,
    FileNotFoundError, TypeError, ValueError, ModelError, DeviceError,
    CRFUnavailableError, Cancelled); OSError when the store cannot be written.
    """
    options = SegmentOptions(
        score_threshold=score_threshold,
        mask_threshold=mask_threshold,
        classes=classes,
        scale=scale,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        merge_classes=merge_classes,
        crf=crf,
        crf_params=crf_params,
        device=device,
        vegetation=vegetation,
    )
    return segment_to_zarr_with(
        image, path, model, options, progress=progress, cancel=cancel, overwrite=overwrite, chunk_size=chunk_size
    )


def segment_to_zarr_with(
    image,
    path,
    model,
    options: SegmentOptions,
    *,
    progress: ProgressFn | None = None,
    cancel=None,
    overwrite: bool = False,
    chunk_size: int = 1024,
) -> SegmentationResult:
    """:func:`segment_to_zarr` with its options as one :class:`SegmentOptions`."""
    import zarr  # only here: the one path that writes a store

    target = Path(path).expanduser()
    if target.suffix.lower() == ".zip":  # a folder under a zip's name: zarr's ZipStore and zip tools fail on it
        folder = target.with_suffix("") if target.stem.lower().endswith(".zarr") else target.with_suffix(".zarr")
        raise ValueError(
            f"zarr output {str(path)!r} is named as a zip file, but the store is written as a folder, chunk by chunk: "
            f"write it to {str(folder)!r}, and zip that folder afterwards if you want one file "
            f"(shutil.make_archive({str(folder)!r}, 'zip', {str(folder)!r}) makes a zip that zarr's ZipStore reads)"
        )
    check_target(path, overwrite, "zarr output", folder=True)
    _check_replaceable(image, target)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 64:
        raise ValueError(f"chunk_size must be a whole number of pixels >= 64, got {chunk_size!r}")
    if options.tile_size is None:
        options = options.replace(tile_size="auto")
    run = _Run.start(image, model, options, progress, cancel)
    found = run.follow_colour(run.detect(), windowed=True)
    h, w = run.source.shape
    windows = [
        (y, x, min(y + chunk_size, h), min(x + chunk_size, w))
        for y in range(0, h, chunk_size)
        for x in range(0, w, chunk_size)
    ]
    run.report(0.7, "assembling instances")
    areas = np.zeros(len(found) + 1, np.int64)
    for win in windows:  # which instances keep pixels, before any id is written
        areas += np.bincount(paint(found, run.mask_threshold, win).ravel(), minlength=len(found) + 1)
    found = found.take(_shown(areas[1:], found, run.mask_threshold))
    claims = run.refine(found)
    chunks = (min(chunk_size, h), min(chunk_size, w))
    with atomic_write(path, overwrite, "zarr output", folder=True) as tmp:
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


def _check_replaceable(image, path: Path) -> None:
    """OutputExistsError when the store ``path`` is the input ``image`` (or holds it, or lies in
    it), or is a zarr store this module did not write (its group has no ``labels`` array with
    the run's ``model`` in its attributes): ``overwrite`` replaces labels, never an image."""
    import zarr

    if isinstance(image, (str, os.PathLike)):
        source, target = Path(os.path.realpath(image)), Path(os.path.realpath(path))
        if source == target or target in source.parents or source in target.parents:
            raise OutputExistsError(
                f"zarr output {str(path)!r} would replace or write into the input {image}; choose another name"
            )
    if not path.is_dir() or not any(path.iterdir()):  # nothing there, or an empty folder
        return
    try:
        group = zarr.open_group(str(path), mode="r")
        ours = "labels" in group and "model" in group.attrs
    except Exception:  # noqa: BLE001  (an array, a broken store: not labels of ours)
        ours = False
    if not ours:
        raise OutputExistsError(
            f"zarr output {str(path)!r} is a zarr store segment_to_zarr did not write (an image?); not replacing "
            "it. Choose another name."
        )


def _json_safe(meta: dict) -> dict:
    out = {}
    for k, v in meta.items():
        if is_dataclass(v):
            v = asdict(v)
        out[k] = json.loads(json.dumps(v, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    return out


# a picture whose brightest value is under this share of its type's range reached the network dark
DARK_SHARE = 1 / 8
# a float image with fewer of its values above 1 than this is a 0..1 image with glints, not a 0..255 one
GLINT_SHARE = 0.01


def dark_input(source) -> dict:
    """``{"dark_input": {"brightest": value, "range": [low, high]}}`` when the image's values fill
    under :data:`DARK_SHARE` of the range its type maps to 0..1 (the dtype convention of
    :func:`~napari_gardenseg._image_arrays.intensity_range`: a 12-bit camera's uint16, a float image of
    0..1000): the network saw a dark picture though a viewer stretches it; else ``{}``. uint8 and
    bool images, whose range is fixed, are as dark as they look; a blank one has nothing to scale."""
    if source.rule_dtype in (np.uint8, np.bool_):  # a masked uint8 array too: the rule's dtype
        return {}
    lo, hi = source.value_range()
    low, high = source.intensity_range()
    if hi <= low or high <= low or (hi - low) >= DARK_SHARE * (high - low):
        return {}  # a blank image (all one value, all NaN) is not dark but empty: nothing to scale
    dark = {"brightest": float(hi), "range": [float(low), float(high)]}
    if source.rule_dtype.kind == "f" and (low, high) == (0.0, 255.0):
        # a 0..1 image that a few values above FLOAT_OVERSHOOT (glints) made be read as 0..255: nearly
        # all its values are still at most 1, where a dark 0..255 photo's are not
        above = source.share_above(1.0)
        if above < GLINT_SHARE:
            dark["above_1"] = round(above, 5)
    return {"dark_input": dark}


@dataclass
class _Run:
    """One segmentation run: its options, the loaded model and what the model makes of them.

    Shared by :func:`segment_with` and :func:`segment_to_zarr_with`.
    """

    source: object
    model: Model
    options: SegmentOptions
    wanted: set | None  # class ids to keep, None for all
    params: object  # the CRFParams the CRF runs with, None without the CRF
    report: Callable
    cancel: object
    how: dict = field(default_factory=dict)

    @classmethod
    def start(cls, image, model, options: SegmentOptions, progress, cancel) -> _Run:
        if not isinstance(options, SegmentOptions):
            raise TypeError(f"options must be a SegmentOptions, got {type(options).__name__}")
        check_callbacks(progress, cancel)
        report = progress or (lambda f, m: None)
        source = image if isinstance(image, ImageSource) else open_image(image)  # a bad image fails first
        if not isinstance(model, Model):
            report(0.0, "loading model")
        model = load_model(model, device=options.device)
        options = with_model_thresholds(options, model.meta)  # resolved once: every stage sees numbers
        wanted = class_ids_for(model, options.classes)
        params = None
        if options.crf:
            params = CRFParams.from_any(options.crf_params, defaults=model.meta.get("crf"))
        check(cancel, "segmentation")
        return cls(source, model, options, wanted, params, report, cancel)

    @property
    def mask_threshold(self) -> float:
        return self.options.mask_threshold

    def detect(self) -> Instances:
        found, self.how = detect_instances(
            self.model,
            self.source,
            self.options,
            self.wanted,
            cancel=self.cancel,
            progress=lambda f, m: self.report(0.05 + 0.65 * f, m),
        )
        return found

    def follow_colour(self, found: Instances, *, windowed: bool = False) -> Instances:
        """The vegetation stage (``options.vegetation``); see :func:`._plant_pixels.vegetation_stage`.

        ``windowed``: the run never reads the whole image (``segment_to_zarr``, or a lazy source
        read in tiles): the stage runs window by window.
        """
        from ._plant_pixels import vegetation_stage

        check(self.cancel, "segmentation")
        windowed = windowed or (self.source.lazy and bool(self.how.get("tiles")))
        found = self.leave_out_card(found)  # first: its chips would teach the stage the card's colours
        found, self.how["vegetation"] = vegetation_stage(
            found,
            self.source,
            self.options,
            classes_filtered=self.wanted is not None,
            windowed=windowed,
            report=self.report,
            cancel=self.cancel,
        )
        return self.leave_out_card(found)

    def leave_out_card(self, found: Instances) -> Instances:
        """``found`` without the instances on a colour card (:mod:`._colour_card`): the network's,
        before the vegetation stage, then the stage's own on its green chips, in the region found
        first; ``meta["colour_card"]`` says how many and where."""
        from ._colour_card import colour_card

        before = self.how.get("colour_card")
        card, region = colour_card(found, self.source, self.mask_threshold, before and tuple(before["region"]))
        if region is None or not card.any():
            return found
        left_out = int(card.sum()) + (before["instances"] if before else 0)
        self.how["colour_card"] = {"instances": left_out, "region": list(region)}
        return found.take(np.flatnonzero(~card))

    def refine(self, found: Instances) -> Instances | None:
        if self.params is None:
            return None
        check(self.cancel, "segmentation")
        self.report(0.75, f"refining {len(found)} instances with the dense CRF")
        return refine_masks(
            self.source,
            found,
            self.params,
            self.mask_threshold,
            device=self.model.device,
            cancel=self.cancel,
            progress=lambda f, m: self.report(0.75 + 0.2 * f, m),
        )

    def meta(self, claims) -> dict:
        crf_meta = {} if claims is None else {k: v for k, v in claims.meta.items() if k.startswith("crf_")}
        return {
            "model": self.model.source,
            "options": self.options,
            "score_threshold": self.options.score_threshold,
            "mask_threshold": self.options.mask_threshold,
            "crf": self.params is not None,
            "crf_params": self.params,
            **crf_meta,
            "merge_classes": self.options.merge_classes,
            "channels": self.source.channels,  # 1: grey, 2: grey + alpha, 3: RGB, 4: RGBA
            **self.how,
            **dark_input(self.source),
            **({"read": self.source.applied} if self.source.applied else {}),  # how a file was read
            **measures_meta(self.source),  # the table's area_mm2, map_x, map_y, area_m2
        }

    def result(self, found, labels, refined, claims, keep_soft_masks) -> SegmentationResult:
        names = self.model.class_names
        # colour-only instances (class id 0) have no class of the model's: they are "plant"
        class_names = (
            ["plant"] * len(found)
            if self.options.merge_classes
            else [
                names[int(c)] if 0 < int(c) < len(names) else "plant" if int(c) == 0 else str(int(c))
                for c in found.class_ids
            ]
        )
        # colour-only instances (id 0 until here) get the model's class "plant", or the id after its last
        # class: never 0, the background's (converters to other formats take COCO's category 0 for
        # background, or subtract 1); merged classes are that one class "plant" too, not id 1, which
        # is a class of the model's (to_coco with its class names would call them that)
        colour_id = names.index("plant") if "plant" in names else len(names)
        class_ids = (
            np.full(len(found), colour_id, np.int64)
            if self.options.merge_classes
            else np.where(found.class_ids == 0, colour_id, found.class_ids).astype(np.int64)
        )
        return SegmentationResult(
            labels=labels,
            refined=refined,
            class_ids=class_ids,
            class_names=class_names,
            scores=found.scores.astype(np.float32),
            boxes=found.boxes.astype(np.float32),
            instances=found if keep_soft_masks else None,
            # nothing found in a colour photo without colour: the grey image's reason, not the threshold
            meta={**self.meta(claims), **({"colourless": self.source.colourless()} if not len(found) else {})},
            sources=None if found.sources is None else [str(x) for x in found.sources],
        )
