"""COCO JSON export of segmentation results (and of ground-truth label images)."""

from __future__ import annotations

import numpy as np

__all__ = ["to_coco", "rle_encode", "labels_to_coco_annotations"]


def rle_encode(mask: np.ndarray, offset=(0, 0), shape=None) -> dict:
    """COCO's uncompressed RLE (column-major runs, starting with zeros) of a boolean mask.

    ``mask`` may be a window of a larger image: ``offset`` (y0, x0) places it in
    an image of ``shape`` (H, W), so an instance is encoded from its box alone.
    """
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape if shape is None else (int(shape[0]), int(shape[1]))
    y0, x0 = (int(v) for v in offset)
    # run starts and ends inside each column, as indices into the column-major flattening
    padded = np.zeros((mask.shape[0] + 2, mask.shape[1]), np.int8)
    padded[1:-1] = mask
    edge = np.diff(padded, axis=0)
    ys, xs = np.nonzero(edge.T == 1)
    ye, xe = np.nonzero(edge.T == -1)
    starts = (x0 + ys) * h + y0 + xs  # nonzero on the transpose gives (column, row)
    ends = (x0 + ye) * h + y0 + xe
    if len(starts) > 1:  # a run reaching the bottom of a column goes on at the top of the next
        join = starts[1:] == ends[:-1]
        if join.any():
            starts = np.concatenate([starts[:1], starts[1:][~join]])
            ends = np.concatenate([ends[:-1][~join], ends[-1:]])
    bounds = np.empty(2 * len(starts) + 2, np.int64)
    bounds[0], bounds[-1] = 0, h * w
    bounds[1:-1:2], bounds[2:-1:2] = starts, ends
    counts = np.diff(bounds).tolist()
    return {"size": [h, w], "counts": counts}


def labels_to_coco_annotations(
    labels, class_ids, scores=None, image_id: int = 1, start_id: int = 1, boxes=None
) -> list[dict]:
    """One COCO annotation per label 1..N of ``labels`` (label i+1 has ``class_ids[i]``), with id
    ``start_id + i``: ids follow the labels (and the table's rows), also where an instance has no
    pixel (left out) in ``labels``.

    Each instance is read from its bounding box only (``boxes``: y0, x0, y1, x1
    per label as in ``SegmentationResult.table``; computed when None), so big
    or zarr-backed label images are never scanned once per instance.
    """
    from ._results import label_stats

    h, w = labels.shape
    if boxes is None:
        boxes = label_stats(labels, len(class_ids))[1]
    anns = []
    for i, cid in enumerate(class_ids):
        y0, x0, y1, x1 = boxes[i]
        if y1 <= y0 or x1 <= x0:
            continue
        mask = np.asarray(labels[y0:y1, x0:x1]) == i + 1
        area = int(mask.sum())
        if area == 0:
            continue
        ys, xs = np.nonzero(mask)
        ann = {
            "id": start_id + i,
            "image_id": image_id,
            "category_id": int(cid),
            "segmentation": rle_encode(mask, (y0, x0), (h, w)),
            "area": area,
            "bbox": [
                float(x0 + xs.min()),
                float(y0 + ys.min()),
                float(xs.max() - xs.min() + 1),
                float(ys.max() - ys.min() + 1),
            ],
            "iscrowd": 0,
        }
        if scores is not None:
            ann["score"] = float(scores[i])
        anns.append(ann)
    return anns


def to_coco(
    result,
    class_names=None,
    image_id: int = 1,
    file_name: str | None = None,
    refined: bool = True,
    *,
    features=None,
) -> dict:
    """A COCO-format dict (images, categories, annotations) for one :class:`SegmentationResult`,
    or for a label image: labels corrected in napari, or read from a label file.

    Returns ``{"info": {...}, "licenses": [], "images": [...], "categories": [...],
    "annotations": [...]}``, ready for ``json.dump``: one image (``image_id``, its width and height in pixels, ``file_name``,
    default ``"image_<image_id>"``), the categories (``id``, ``name``, ``supercategory``) and one annotation per
    instance that has pixels: ``id`` (its label id), ``image_id``, ``category_id``,
    ``segmentation``, ``area`` (pixels), ``bbox``, ``iscrowd`` 0 and ``score``. Masks are COCO's
    uncompressed RLE, ``{"size": [H, W], "counts": [...]}``: run lengths in column-major
    (Fortran) order, starting with a run of background (0 when the first pixel is the
    instance's), as pycocotools reads them. Boxes are COCO's (x, y, width, height) in pixels,
    of the instance's pixels. Scores are kept on each annotation, so the file also serves as
    COCO "results". ``refined=True`` exports the CRF masks when there are any, the raw ones
    otherwise.

    ``class_names``: the model's class names, background first (``Model.class_names``): the
    categories are then every class of the model (not ``"__background__"``, nor COCO's
    ``"N/A"``), under the model's ids, so that the files of several images share them, and
    the classes the result holds besides (a colour-only ``"plant"``); None: only the classes
    found in ``result``, under their class ids.

    ``result`` may instead be an (H, W) array of integer instance ids (0 the background; numpy,
    dask or zarr, read whole; leading axes of length 1 dropped, as a one-plane Labels layer has), with
    ``features`` naming their classes and scores as a Labels layer's table does (``label``,
    ``class_name``, ``score``; a Labels layer's ``features``, or the ``_instances.csv`` beside a
    label file): an id without a class is ``"plant"``, one without a score has none. Category
    ids are those a batch's COCO file gives the same classes, so the files of a dataset agree:
    the model's (``class_names`` given), else the features' ``class_id`` (a segmentation's layer
    or table); classes without one (painted, renamed) come after them in order of name, from 1
    when none has an id. Annotation ids are the instances' label ids.

    Raises TypeError for a ``result`` that is neither, ``class_names`` that is not a list of
    strings, an ``image_id`` that is not a whole number, or a
    ``file_name`` that is not a string; ValueError for a label image with negative ids.
    """
    from ._results import SegmentationResult

    if class_names is not None and (
        isinstance(class_names, (str, bytes))
        or not isinstance(class_names, (list, tuple))
        or not all(isinstance(n, str) for n in class_names)
    ):
        raise TypeError(f"class_names must be None or a list of class names (background first), got {class_names!r}")
    if isinstance(image_id, bool) or not isinstance(image_id, (int, np.integer)):
        raise TypeError(f"image_id must be a whole number, got {image_id!r}")
    if file_name is not None and not isinstance(file_name, str):
        raise TypeError(f"file_name must be None or a string, got {file_name!r}")
    if not isinstance(result, SegmentationResult) and hasattr(result, "shape") and hasattr(result, "dtype"):
        # a label image as napari, dask or zarr holds it; a stack's current plane as a one-plane layer;
        # looked at before it is read (a stack or a photo given by mistake can be big)
        while len(result.shape) > 2 and result.shape[0] == 1:
            result = result[0]
        if len(result.shape) == 2 and np.dtype(result.dtype).kind in "biu":
            result = np.asarray(result)
            # big-endian ('>i4', a zarr v2 store's or FITS'): skimage's relabel_sequential refuses it
            result = result.astype(result.dtype.newbyteorder("="), copy=False)
    if isinstance(result, np.ndarray) and result.ndim == 2 and result.dtype.kind in "biu":
        if result.dtype == bool:  # a mask: one instance where it is True
            result = result.astype(np.uint8)
        return _labels_to_coco(result, features, image_id, file_name, class_names)
    if not isinstance(result, SegmentationResult):
        got = f"an array of shape {result.shape} and dtype {result.dtype}" if hasattr(result, "shape") else repr(result)
        raise TypeError(
            f"result must be a SegmentationResult (what segment() returns) or an (H, W) integer label image, got {got}"
        )
    labels = result.refined if (refined and result.refined is not None) else result.labels
    names = list(class_names) if class_names is not None else None
    cats = {}
    for cid, name in zip(result.class_ids, result.class_names):
        cats[int(cid)] = name
    if names is not None:  # the model's classes, and those the result holds besides (colour-only "plant")
        found = cats
        cats = _model_classes(names)
        cats.update({i: n for i, n in found.items() if i not in cats})
    h, w = labels.shape
    return coco_document(
        [{"id": int(image_id), "width": int(w), "height": int(h), "file_name": file_name or f"image_{image_id}"}],
        sorted(cats.items()),
        labels_to_coco_annotations(labels, result.class_ids, result.scores, image_id=int(image_id)),
    )


def _labels_to_coco(labels: np.ndarray, features, image_id: int, file_name: str | None, class_names=None) -> dict:
    """:func:`to_coco` of a label image and its table (classes and scores by id)."""
    from skimage.segmentation import relabel_sequential

    from ._label_writer import instances_table

    table = instances_table(labels, features)  # one row per id present, its class and score by id
    names = [str(n).strip() or "plant" for n in table["class_name"]]
    categories = _category_ids(names, table["class_id"].tolist(), class_names)
    ids, _, inverse = relabel_sequential(np.asarray(labels))  # 1..n in the order of the table's rows
    boxes = [tuple(int(v) for v in b) for b in table["bbox"]]
    annotations = labels_to_coco_annotations(
        ids, [categories[n] for n in names], None, image_id=int(image_id), boxes=boxes
    )
    scores = table["score"].to_numpy(dtype=float)
    # each id's label id, looked up once (indexing the map one id at a time maps them all each time)
    label_ids = np.asarray(inverse[np.arange(len(table) + 1)])
    for ann in annotations:  # id k is the table's row k - 1
        if np.isfinite(scores[ann["id"] - 1]):
            ann["score"] = float(scores[ann["id"] - 1])
        ann["id"] = int(label_ids[ann["id"]])  # the instance's label id, as a batch's COCO file has it
    if class_names is not None:  # every class of the model, as for a result
        categories = {**{n: i for i, n in _model_classes(class_names).items()}, **categories}
    h, w = labels.shape
    return coco_document(
        [{"id": int(image_id), "width": int(w), "height": int(h), "file_name": file_name or f"image_{image_id}"}],
        sorted((k, n) for n, k in categories.items()),
        annotations,
    )


def coco_document(images: list, categories, annotations: list) -> dict:
    """A COCO file's dict: ``info`` and ``licenses`` (which some importers require: CVAT's before
    datumaro#104, pyodi), the images, the categories from ``(id, name)`` pairs, each with an
    empty ``supercategory`` (COCO's data format has one on each; the models know none), and the
    annotations."""
    from ._run_record import _package_version

    return {
        "info": {"description": "instances segmented by napari-gardenseg", "version": _package_version()},
        "licenses": [],
        "images": images,
        "categories": [{"id": int(i), "name": n, "supercategory": ""} for i, n in categories],
        "annotations": annotations,
    }


def _model_classes(class_names) -> dict[int, str]:
    """{id: name} of a model's classes (``class_names``, background first), without the background
    and COCO's ``"N/A"`` gaps."""
    return {i: n for i, n in enumerate(class_names) if i > 0 and n not in ("N/A", "__background__")}


def _category_ids(names: list, class_ids: list, class_names=None) -> dict[str, int]:
    """{class name: category id} of a label image's instances, the ids a batch's COCO file gives
    the same classes: the model's (``class_names``), else those the instances' ``class_id`` say
    (a layer or table of a segmentation) where every instance of that id has one name, the
    colour-only "plant" at the model's count of classes as the engine numbers it; the classes left
    (painted, renamed) after them in order of name."""
    ids = {n: i for i, n in _model_classes(class_names or []).items()}
    named: dict[int, set] = {}  # each class_id's names: a class renamed in napari keeps its old id
    for name, cid in zip(names, class_ids):
        if cid is not None and int(cid) >= 1:
            named.setdefault(int(cid), set()).add(name)
    for cid, given in sorted(named.items()):
        (name,) = given if len(given) == 1 else (None,)
        if name is not None and name not in ids and cid not in ids.values():
            ids[name] = cid
    if class_names is not None and "plant" in names and "plant" not in ids and len(class_names) not in ids.values():
        ids["plant"] = len(class_names)
    free = max(ids.values(), default=0) + 1
    for name in sorted(set(names) - set(ids)):
        ids[name], free = free, free + 1
    return {n: ids[n] for n in sorted(set(names))}
