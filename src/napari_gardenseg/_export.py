"""COCO JSON export of segmentation results (and of ground-truth label images)."""

from __future__ import annotations

import numpy as np

__all__ = ["to_coco", "rle_encode", "labels_to_coco_annotations"]


def rle_encode(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE of a boolean (H, W) mask (column-major runs, starting with zeros)."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts  # COCO runs always start with a (possibly empty) run of zeros
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def _bbox_xywh(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def labels_to_coco_annotations(labels, class_ids, scores=None, image_id: int = 1, start_id: int = 1) -> list[dict]:
    """One COCO annotation per label 1..N of ``labels`` (label i+1 has ``class_ids[i]``)."""
    anns = []
    for i, cid in enumerate(class_ids):
        mask = labels == i + 1
        area = int(mask.sum())
        if area == 0:
            continue
        ann = {
            "id": start_id + len(anns),
            "image_id": image_id,
            "category_id": int(cid),
            "segmentation": rle_encode(mask),
            "area": area,
            "bbox": _bbox_xywh(mask),
            "iscrowd": 0,
        }
        if scores is not None:
            ann["score"] = float(scores[i])
        anns.append(ann)
    return anns


def to_coco(result, class_names=None, image_id: int = 1, file_name: str | None = None, refined: bool = True) -> dict:
    """A COCO-format dict (images, categories, annotations) for one :class:`SegmentationResult`.

    ``refined=True`` exports the CRF masks when there are any, the raw ones otherwise.
    Scores are kept on each annotation, so the file also serves as COCO "results".
    """
    labels = result.refined if (refined and result.refined is not None) else result.labels
    names = list(class_names) if class_names is not None else None
    cats = {}
    for cid, name in zip(result.class_ids, result.class_names):
        cats[int(cid)] = name
    if names is not None:
        cats = {i: n for i, n in enumerate(names) if i > 0 and n not in ("N/A", "__background__")}
    h, w = labels.shape
    return {
        "images": [{"id": image_id, "width": int(w), "height": int(h), "file_name": file_name or f"image_{image_id}"}],
        "categories": [{"id": int(i), "name": n} for i, n in sorted(cats.items())],
        "annotations": labels_to_coco_annotations(labels, result.class_ids, result.scores, image_id=image_id),
    }
