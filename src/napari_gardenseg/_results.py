"""The result of one segmentation: label images and a per-instance table."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TABLE_COLUMNS = ("label", "class_id", "class_name", "score", "area", "area_refined", "bbox")


@dataclass
class SegmentationResult:
    """What :func:`napari_gardenseg.segment` returns.

    ``labels`` and ``refined`` share instance ids: row ``i`` of ``table`` is
    label ``i + 1`` in both. ``refined`` is None when the CRF was off.
    ``soft_masks`` keeps the model's mask probabilities (N, H, W) for callers
    that merge tiles or export; ``None`` when not kept.
    """

    labels: np.ndarray
    refined: np.ndarray | None
    class_ids: np.ndarray
    class_names: list[str]
    scores: np.ndarray
    boxes: np.ndarray  # (N, 4) as x0, y0, x1, y1 in pixels (torchvision's order)
    soft_masks: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def table(self):
        """A pandas DataFrame, one row per instance.

        Columns: label, class_id, class_name, score, area (pixels in
        ``labels``), area_refined (pixels in ``refined``, NaN without CRF) and
        bbox (y0, x0, y1, x1 of the instance's pixels in ``labels``, napari's
        axis order, end exclusive).
        """
        import pandas as pd

        n = len(self)
        ids = np.arange(1, n + 1)
        area = _areas(self.labels, n)
        area_ref = _areas(self.refined, n).astype(float) if self.refined is not None else np.full(n, np.nan)
        return pd.DataFrame(
            {
                "label": ids.astype(np.int32),
                "class_id": np.asarray(self.class_ids, dtype=np.int64),
                "class_name": list(self.class_names),
                "score": np.asarray(self.scores, dtype=np.float32),
                "area": area,
                "area_refined": area_ref,
                "bbox": _bboxes(self.labels, n),
            },
            columns=list(TABLE_COLUMNS),
        )

    def __repr__(self) -> str:
        names = ", ".join(sorted(set(self.class_names))) or "none"
        crf = "with" if self.refined is not None else "without"
        return (
            f"SegmentationResult({len(self)} instances of {names}; "
            f"labels {self.labels.shape}, {crf} CRF)"
        )


def _areas(labels: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(labels.ravel(), minlength=n + 1)[1 : n + 1].astype(np.int64)


def _bboxes(labels: np.ndarray, n: int) -> list[tuple[int, int, int, int]]:
    boxes = [(0, 0, 0, 0)] * n
    if n == 0:
        return boxes
    # One pass over rows and columns that hold each label, rather than n full scans.
    rows = np.arange(labels.shape[0])
    cols = np.arange(labels.shape[1])
    big = np.iinfo(np.int64).max
    y0 = np.full(n + 1, big)
    x0 = np.full(n + 1, big)
    y1 = np.full(n + 1, -1)
    x1 = np.full(n + 1, -1)
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    np.minimum.at(y0, lab, rows[ys])
    np.minimum.at(x0, lab, cols[xs])
    np.maximum.at(y1, lab, rows[ys])
    np.maximum.at(x1, lab, cols[xs])
    for i in range(1, n + 1):
        if y1[i] >= 0:
            boxes[i - 1] = (int(y0[i]), int(x0[i]), int(y1[i]) + 1, int(x1[i]) + 1)
    return boxes
