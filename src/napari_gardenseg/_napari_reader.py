"""napari reader for photographs: the picture as a photo viewer shows it.

napari's own reader hands a JPEG's stored pixels to the canvas, so a phone
photo taken in portrait opens on its side and a photo with a wide-gamut ICC
profile opens in the wrong colours, and a phone's HEIC photo does not open at
all. This reader opens ``*.jpg``, ``*.jpeg``, ``*.jpe``, ``*.jfif``, ``*.mpo``,
``*.avif`` and ``*.heic`` / ``*.heif`` / ``*.hif`` files through the plugin's one reader
(:func:`._image_reader.read_image`: Pillow, EXIF orientation applied, ICC profile
converted to sRGB; HEIC through pillow-heif), so the layer holds the pixels that ``gardenseg segment``
and :func:`~napari_gardenseg.segment_files` see for the same file, and the
labels of either line up with it. Other formats stay with napari's readers.

Label images (``*_labels.tif``, ``*_labels_crf.tif``, ``*_labels.png``: what
``gardenseg segment`` writes, and what ``gardenseg train`` reads) open as
Labels layers, not as grey images: :func:`read_label_layers`, with the
instances' class names and scores as the layer's features when the batch's
``<name>_instances.csv`` lies beside them, so that a corrected batch result
can be trained on in the *Train on my labels* widget.

COCO instance annotation files (``*.json``: what CVAT, Label Studio or
Roboflow export) open as each annotated photo and its Labels layer, the
annotations' categories as the ``class_name`` feature: :func:`read_coco_layers`.
A YOLO segmentation dataset's ``data.yaml`` likewise, its ``train`` split:
:func:`read_yolo_layers`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._image_reader import HEIF_SUFFIXES

# the photo formats whose pixels napari's own reader shows unturned (EXIF orientation; an AVIF's
# irot/imir, which Pillow gives as one) or cannot open (HEIC); PNG and WebP stay with napari's
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".avif", *HEIF_SUFFIXES)


def get_reader(path):
    """The npe2 reader command: :func:`read_photos` for a photo path (or a list of them), else None."""
    paths = path if isinstance(path, (list, tuple)) else [path]
    if not paths or not all(isinstance(p, (str, Path)) and str(p).lower().endswith(PHOTO_SUFFIXES) for p in paths):
        return None
    return read_photos


def read_photos(path) -> list[tuple]:
    """napari layer data, one image layer per photo: ``(pixels, {"name", "rgb", "metadata"}, "image")``;
    one layer of the photos stacked, planes first, for a list of several (napari's *Open Files as
    Stack*, :func:`_stacked`).

    pixels: uint8 (H, W, 3) for colour photos, (H, W) for grey ones, upright
    as the EXIF orientation says. ``metadata["gardenseg_read"]`` is what the
    reader did (the run record's ``image`` entry: format, EXIF orientation,
    colour conversion). Raises FileNotFoundError and :class:`~napari_gardenseg._image_arrays.ImageError` (see ``read_image``).
    """
    from ._image_reader import read_image

    layers = []
    for p in path if isinstance(path, (list, tuple)) else [path]:
        image = read_image(p)
        meta = {"name": Path(p).stem, "rgb": image.axes.endswith("S"), "metadata": {"gardenseg_read": image.record()}}
        layers.append((image.data, meta, "image"))
    if isinstance(path, (list, tuple)) and len(layers) > 1:
        return [_stacked(layers, path)]
    return layers


def _stacked(layers: list[tuple], paths) -> tuple:
    """The photos napari was asked to open as a stack (*File > Open Files as Stack*: npe2 hands a
    list only then) as one layer, planes first, named after the first, as napari's own reader
    stacks them. Raises ImageError when they differ in size or colour."""
    import numpy as np

    from ._image_arrays import ImageError

    shapes = {data.shape for data, _, _ in layers}
    if len(shapes) > 1:
        raise ImageError(
            f"cannot open these {len(layers)} photos as one stack: they differ in size or colour "
            f"({', '.join(sorted(str(s) for s in shapes))}); open them without 'as stack' (one layer each)"
        )
    reads = [m["metadata"]["gardenseg_read"] for _, m, _ in layers]
    meta = {**layers[0][1], "metadata": {"gardenseg_read": reads, "gardenseg_stack": [str(p) for p in paths]}}
    return np.stack([data for data, _, _ in layers]), meta, "image"


def _label_file(p) -> bool:
    from ._label_files import LABEL_SUFFIXES, photo_stem

    p = Path(p)
    return p.suffix.lower() in LABEL_SUFFIXES and photo_stem(p.stem) is not None


def _label_store(p) -> bool:
    """Whether ``p`` is a batch's zarr store of labels (``<name>_labels.zarr``: arrays ``labels``
    and ``refined``), which napari's own zarr reader takes for one pyramid's levels and refuses."""
    p = Path(p)
    return p.name.endswith("_labels.zarr") and p.is_dir() and any((p / "labels" / f).exists() for f in _ZARR_ARRAY)


# the metadata file of a zarr array: v3, v2
_ZARR_ARRAY = ("zarr.json", ".zarray")


def get_labels_reader(path):
    """The npe2 reader command for label images: :func:`read_label_layers` when every path is one, else None."""
    paths = path if isinstance(path, (list, tuple)) else [path]
    if not paths or not all(isinstance(p, (str, Path)) and (_label_file(p) or _label_store(p)) for p in paths):
        return None
    return read_label_layers


def read_label_layers(path) -> list[tuple]:
    """napari layer data, one Labels layer per file: ``(ids, {"name", "metadata", "features"}, "labels")``.

    ids: int32, (H, W) or, for a stack's labels, planes first
    (:func:`~napari_gardenseg._label_files.read_labels` with ``planes=True``); one plane of a
    stack saved from the segmentation widget's *current plane* result, ``(1, H, W)`` placed back
    on its plane (``translate``, as the table's ``axis_0`` says).
    features: from ``<name>_instances.csv`` beside the file (``<name>`` the
    file's name without ``_labels`` / ``_labels_crf``), as the segmentation
    widget sets them (``area`` of the refined masks for ``_labels_crf``);
    none when there is no such table or it does not have the batch's columns.
    Raises FileNotFoundError and :class:`~napari_gardenseg._image_arrays.ImageError`.
    """
    from ._label_files import batch_features, label_measures, label_placement, read_labels
    from ._layers import META_KEY
    from ._pixel_size import PixelSize

    layers = []
    for p in path if isinstance(path, (list, tuple)) else [path]:
        p = Path(p)
        if _label_store(p):
            layers += _store_layers(p)
            continue
        # this plugin's writer gives the labels the file's georeferencing when they are saved again
        meta = {"name": p.stem, "metadata": {META_KEY: {"georeference_source": str(p), "label_file": str(p)}}}
        measures = label_measures(p)  # area_mm2, or map_x, map_y and area_m2, following the brush
        meta["metadata"][META_KEY].update(measures)
        features = batch_features(p, PixelSize.from_record(measures.get("pixel_size")))
        data = read_labels(p, planes=True)
        placed = _plane_of(features, data)
        if placed:  # one plane of a stack (the widget's current-plane result, saved): back on that plane
            data = data.reshape((1,) * len(placed) + data.shape)
            meta["translate"] = (*placed, 0.0, 0.0)
        placement = label_placement(p)  # where its layer lay, when saved by this plugin's writer
        if placement and len(placement["scale"]) > data.ndim:  # a one-plane layer: its planes axis back
            data = data.reshape((1,) * (len(placement["scale"]) - data.ndim) + data.shape)
        meta.update(_placement_kwargs(placement, data.ndim))
        if features is not None:
            meta["features"] = _measured(features, data, measures)
        layers.append((data, meta, "labels"))
    _follow_layers_inserted()
    return layers


def _placement_kwargs(placement: dict | None, ndim: int) -> dict:
    """napari layer keywords of a label TIFF's saved placement (:func:`_label_files.label_placement`)
    for labels of ``ndim`` axes: {} for none, or one of another number of axes; units and axis
    labels only in a napari that has them (0.6)."""
    if not placement or len(placement["scale"]) != ndim:
        return {}
    from napari.layers import Labels

    kwargs = {}
    for key in ("scale", "translate", "rotate", "shear", "affine", "units", "axis_labels"):
        if key in placement and (key not in ("units", "axis_labels") or hasattr(Labels, key)):
            kwargs[key] = (
                tuple(placement[key]) if key in ("scale", "translate", "units", "axis_labels") else placement[key]
            )
    return kwargs


def _store_layers(store: Path) -> list[tuple]:
    """The Labels layers of a batch's ``<name>_labels.zarr``: ``<name>_labels`` and, with the CRF,
    ``<name>_labels_crf``, read lazily (a pyramid of strided views for a big plane, as the
    segmentation widget shows a big result), with the batch's table as features (its figures:
    a lazily read image is not measured again)."""
    import zarr

    from ._label_files import batch_features
    from ._layers import META_KEY
    from ._plane_run import _lazy_pyramid

    group = zarr.open_group(str(store), mode="r")
    stem = store.name[: -len(".zarr")]
    layers = []
    for array, name in (("labels", stem), ("refined", f"{stem}_crf")):
        if array not in group:
            continue
        data = group[array]
        if data.ndim == 2:
            levels = _lazy_pyramid(data, ())
            data = levels if len(levels) > 1 else levels[0]
        meta = {"name": name, "metadata": {META_KEY: {"label_file": str(store)}}}
        features = batch_features(store.with_name(f"{name}.zarr"))
        if features is not None:
            meta["features"] = features
        layers.append((data, meta, "labels"))
    return layers


def _plane_of(features, labels) -> tuple[int, ...]:
    """The stack plane a single plane of labels lies on, as its table's ``axis_<k>`` columns say
    (one value each), where it is not the first; else ()."""
    if features is None or getattr(labels, "ndim", 0) != 2:
        return ()
    axes = sorted(
        (c for c in features.columns if str(c).startswith("axis_") and str(c)[5:].isdigit()), key=lambda c: int(c[5:])
    )
    values = [features[c].dropna().unique() for c in axes]
    if not axes or any(len(v) != 1 for v in values) or not any(int(v[0]) for v in values):
        return ()
    return tuple(int(v[0]) for v in values)


def _measured(features, labels, measures=None):
    """``features`` with ``area``, ``centroid_y`` and ``centroid_x`` measured on ``labels`` (in
    memory) as the brush will keep them (:func:`~napari_gardenseg._paint_features.recompute_features`:
    rows of ids no longer in the labels dropped, ids painted since added): a batch's table describes
    its ``_labels.tif``, and the refined ``_labels_crf.tif`` (or a file edited in another program)
    has pixels of its own. Lazily read images keep the table's figures."""
    if not isinstance(labels, np.ndarray) or not {"area", "centroid_y"} <= set(features):
        return features
    from ._paint_features import measured_again, recompute_features

    return measured_again(recompute_features(labels, features), measures or {})


def _follow_layers_inserted() -> None:
    """Let the label layers napari is about to add (from a reader) follow the brush (their
    features' areas and centroids), with or without a dock widget open: a hook on every open
    viewer's layer list (the reader is not told which viewer opens the file, and the current one
    need not be it), connected once per viewer."""
    try:
        import napari
    except ImportError:
        return
    viewers = list(getattr(napari.Viewer, "_instances", ())) or [napari.current_viewer()]
    for viewer in viewers:
        if viewer is not None:
            viewer.layers.events.inserted.connect(_follow_inserted)  # napari connects a callback only once


def _follow_inserted(event) -> None:
    from ._paint_features import follow_if_ours

    follow_if_ours(event.value)


# napari holds every photo opened in memory: a bigger COCO file or YOLO dataset is for gardenseg train
MAX_ANNOTATED_PHOTOS = 20


def get_coco_reader(path):
    """The npe2 reader command for COCO instance annotations: :func:`read_coco_layers`, else None.

    Only a ``.json`` file whose top level holds ``images``, ``annotations`` and
    ``categories`` is taken (:func:`~napari_gardenseg._coco_labels.load_coco`;
    the reader is handed what it read); other JSON files are left to other readers.
    """
    from functools import partial

    from ._coco_labels import load_coco
    from ._image_arrays import ImageError

    if not isinstance(path, (str, Path)) or not str(path).lower().endswith(".json"):
        return None
    try:
        coco = load_coco(path)
    except (OSError, ImageError):
        return None
    return partial(read_coco_layers, coco=coco)


def read_coco_layers(path, coco: dict | None = None) -> list[tuple]:
    """napari layer data for a COCO file: per annotated photo, its image layer, then its Labels layer.

    The photo as :func:`read_photos` gives it, named after its file; the
    labels ((H, W), int16 where the ids fit, :func:`~napari_gardenseg._coco_labels.read_coco`)
    named ``<photo name>_labels``, so the *Train on my labels* widget pairs
    them, with ``label`` and ``class_name`` features. ``coco``: the file's
    contents when already read. Raises ValueError for a
    file of more than :data:`MAX_ANNOTATED_PHOTOS` annotated photos (napari would
    hold them all), and what ``read_coco`` raises.
    """
    from ._coco_labels import read_coco

    return _annotated_layers(read_coco, path, "--coco", coco=coco)


def get_yolo_reader(path):
    """The npe2 reader command for a YOLO segmentation dataset's YAML file: :func:`read_yolo_layers`, else None.

    Only a ``.yaml``/``.yml`` file whose top level names the classes
    (``names``) and a ``train`` split is taken; other YAML files are left to other readers.
    """
    from functools import partial

    from ._image_arrays import ImageError
    from ._yolo_labels import load_dataset

    if not isinstance(path, (str, Path)) or not str(path).lower().endswith((".yaml", ".yml")):
        return None
    try:
        dataset = load_dataset(path)
    except (OSError, ImageError):
        return None
    if not dataset.get("train"):
        return None
    return partial(read_yolo_layers, dataset=dataset)


def read_yolo_layers(path, dataset: dict | None = None) -> list[tuple]:
    """napari layer data for a YOLO dataset's ``train`` split, as :func:`read_coco_layers` gives a COCO
    file's (:func:`~napari_gardenseg._yolo_labels.read_yolo`); ``dataset``: the YAML file's contents
    when already read. Raises ValueError for more than :data:`MAX_ANNOTATED_PHOTOS` photos, and what
    ``read_yolo`` raises."""
    from ._yolo_labels import read_yolo

    return _annotated_layers(read_yolo, path, "--yolo", dataset=dataset)


def _annotated_layers(read, path, cli_option: str, **kwargs) -> list[tuple]:
    """Per sample of ``read(path, max_photos=MAX_ANNOTATED_PHOTOS, **kwargs)`` (read_coco, read_yolo):
    the photo's image layer, then its ``<photo>_labels`` Labels layer with ``label`` and
    ``class_name`` features (what *Train on my labels* pairs and reads)."""
    import pandas as pd

    from ._coco_labels import TooManyPhotos

    try:
        samples = read(path, max_photos=MAX_ANNOTATED_PHOTOS, **kwargs)
    except TooManyPhotos as exc:  # more photos than napari should hold
        raise ValueError(
            f"{exc}: napari opens at most {MAX_ANNOTATED_PHOTOS} at once. "
            f"Train on all of them with: gardenseg train {cli_option} {Path(path).name} --out MODEL.pt"
        ) from exc

    layers = []
    for photo, labels, classes in samples:
        [(pixels, meta, kind)] = read_photos(photo)
        ids = sorted(classes)
        features = pd.DataFrame({"index": ids, "label": ids, "class_name": [classes[k] for k in ids]})
        layers.append((pixels, meta, kind))
        layers.append((labels, {"name": f"{meta['name']}_labels", "features": features}, "labels"))
    return layers
