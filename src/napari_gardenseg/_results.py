"""The result of one segmentation: label images and a per-instance table."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TABLE_COLUMNS = ("label", "class_id", "class_name", "score", "area", "area_refined", "bbox", "centroid", "source")


def other_columns(columns) -> list:
    """The columns of a layer's features or an instances table that are neither TABLE_COLUMNS nor
    derived from them here (``index``, ``centroid_y``/``_x``, ``map_x``/``_y``, ``area_mm2``,
    ``area_refined_mm2``, ``area_m2``, ``area_refined_m2``, ``axis_<n>``) nor
    pandas' saved index (``Unnamed: 0``): the user's, or another plugin's, kept by the writer and reader."""
    import re

    own = re.compile(r"index|centroid_[yx]|map_[xy]|area(_refined)?_mm?2|axis_\d+|Unnamed: \d+").fullmatch
    return [c for c in columns if c not in TABLE_COLUMNS and not own(str(c))]


def measures_meta(source) -> dict:
    """The ``meta`` entries :attr:`SegmentationResult.table` reads its physical columns from, of a
    source that has ``pixel_size`` (:class:`~napari_gardenseg._pixel_size.PixelSize`), ``map_grid``
    and ``ground_pixel_m2`` (an :class:`~napari_gardenseg._image_source.ImageSource` or a layer's
    :class:`~napari_gardenseg._planes.PlaneSource`): JSON values, only those it has."""
    size, grid, ground = source.pixel_size, source.map_grid, source.ground_pixel_m2
    return {
        **({"pixel_size": size.as_record()} if size is not None else {}),  # area_mm2
        **({"map_grid": [float(v) for v in grid]} if grid is not None else {}),  # map_x, map_y
        **({"ground_pixel_m2": float(ground)} if ground is not None else {}),  # area_m2
    }


@dataclass
class SegmentationResult:
    """What :func:`napari_gardenseg.segment` returns.

    ``labels`` and ``refined`` share instance ids: row ``i`` of ``table`` is
    label ``i + 1`` in both. ``refined`` is None when the CRF was off.
    ``instances`` keeps the model's soft masks, compactly (an
    :class:`~napari_gardenseg._instances.Instances`: box-local masks with
    offsets), when ``segment(..., keep_soft_masks=True)``; otherwise None.
    ``labels`` and ``refined`` are numpy arrays, or zarr arrays for images
    segmented into a zarr store (:func:`napari_gardenseg.segment_to_zarr`).

    Fields, for N instances in an image of H x W pixels:

    - ``labels``, ``refined``: (H, W) int32 instance ids, 0 the background.
    - ``class_ids``: (N,) int64, the model's class index of each instance
      (``class_names[i]`` its name).
    - ``class_names``: N strings, each instance's class name.
    - ``scores``: (N,) float32 in 0..1, the detector's confidence (a
      colour-only instance's is low and set by the vegetation stage).
    - ``boxes``: (N, 4) float32, **x0, y0, x1, y1** in pixels (torchvision's
      order), the detector's box; ``table["bbox"]`` is the box of the pixels in
      ``labels``, in napari's **y0, x0, y1, x1** order.
    - ``sources``: N strings, "model" or "colour" (None: all "model").
    - ``instances``: the soft masks (see above), or None.
    - ``meta``: dict, how the run went (model, options, scale, tiles, the vegetation
      stage's note...), as the batch's run record gives it.
    - ``table``: a pandas DataFrame, one row per instance (a property, computed on access).
    """

    labels: np.ndarray
    refined: np.ndarray | None
    class_ids: np.ndarray
    class_names: list[str]
    scores: np.ndarray
    boxes: np.ndarray  # (N, 4) as x0, y0, x1, y1 in pixels (torchvision's order)
    instances: object | None = None
    meta: dict = field(default_factory=dict)
    # per instance: "model" (the detector's, its pixels maybe following plant colour) or "colour"
    # (a plant-coloured component no detection claimed); None: all "model"
    sources: list | None = None

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def table(self):
        """A pandas DataFrame, one row per instance.

        Columns: label, class_id, class_name, score, area (pixels in
        ``labels``), area_refined (pixels in ``refined``, NaN without CRF) and
        bbox (y0, x0, y1, x1 of the instance's pixels in ``labels``, napari's
        axis order, end exclusive), centroid ((y, x): the mean row and column of
        those pixels, as scikit-image's ``regionprops`` gives it; NaN for an
        instance with no pixel left) and source ("model": found by the network;
        "colour": a plant-coloured component that no detection claimed, added
        by the vegetation stage with a low score and class "plant": the model's
        class of that name, or the id after its last class, 4 for "garden").

        For a file that states its pixels' physical size (a scan's dpi, an
        ImageJ or OME calibration: ``meta["pixel_size"]``, in µm), also
        area_mm2 and area_refined_mm2 after area_refined, as the batch's CSV
        has them; for a georeferenced file (a GeoTIFF, a photo with a world
        file: ``meta["map_grid"]``, GDAL's GeoTransform), map_x and map_y after
        centroid, the centroid in the file's CRS, and where that CRS is in
        metres area_m2 and area_refined_m2 (``meta["ground_pixel_m2"]``).

        Computed from the label images on each access, so it follows edits to
        them; keep it in a variable rather than reading it in a loop.
        """
        import pandas as pd

        from ._georeference import with_map_columns
        from ._pixel_size import PixelSize, with_areas_mm2

        n = len(self)
        ids = np.arange(1, n + 1)
        area, boxes, centroids = label_stats(self.labels, n, centroids=True)
        area_ref = label_stats(self.refined, n)[0].astype(float) if self.refined is not None else np.full(n, np.nan)
        table = pd.DataFrame(
            {
                "label": ids.astype(np.int32),
                "class_id": np.asarray(self.class_ids, dtype=np.int64),
                # object columns however many rows: an empty table concatenates with others unchanged
                "class_name": pd.Series(list(self.class_names), dtype=object),
                "score": np.asarray(self.scores, dtype=np.float32),
                "area": area,
                "area_refined": area_ref,
                "bbox": pd.Series(list(boxes), dtype=object),
                "centroid": pd.Series(list(centroids), dtype=object),
                "source": pd.Series(list(self.sources) if self.sources is not None else ["model"] * n, dtype=object),
            },
            columns=list(TABLE_COLUMNS),
        )
        table = with_areas_mm2(table, PixelSize.from_record(self.meta.get("pixel_size")))
        return with_map_columns(table, self.meta.get("map_grid"), self.meta.get("ground_pixel_m2"))

    def __repr__(self) -> str:
        names = ", ".join(sorted(set(self.class_names))) or "none"
        crf = "with" if self.refined is not None else "without"
        return f"SegmentationResult({len(self)} instances of {names}; labels {self.labels.shape}, {crf} CRF)"


# pixels per band of a label image counted band by band: np.bincount and np.nonzero make int64
# copies (8 and 16 bytes a pixel), which of a whole big label image would be several times its size
_BAND_PIXELS = 2**22


def label_bands(labels):
    """The row slices in which :func:`label_areas` and :func:`label_stats` read ``labels`` ((H, W)
    numpy or zarr): about 4 M pixels each, whole chunks of a chunked store (each decoded once)."""
    height, width = int(labels.shape[0]), int(labels.shape[1])
    rows = max(1, _BAND_PIXELS // max(width, 1))
    chunks = getattr(labels, "chunks", None)
    if not isinstance(labels, np.ndarray) and chunks and isinstance(chunks[0], (int, np.integer)):
        rows = max(int(chunks[0]), rows // int(chunks[0]) * int(chunks[0]))
    return [slice(top, min(top + rows, height)) for top in range(0, height, rows)]


def label_areas(labels, n: int) -> np.ndarray:
    """Pixel count of each label 0..n of ``labels`` ((H, W) integer, numpy or zarr): int64 (n + 1,),
    counted band by band (:func:`label_bands`); ids above n are not counted."""
    area = np.zeros(n + 1, np.int64)
    for rows in label_bands(labels):
        area += np.bincount(np.asarray(labels[rows]).ravel(), minlength=n + 1)[: n + 1]
    return area


# ids up to this are counted directly (as napari paints them); past it the few ids of a huge range
# (a hashed or random id, 2**31 - 1) are numbered 1..n first, so no count is sized by the largest id
_DIRECT_IDS = 1 << 20


def present_label_stats(labels: np.ndarray):
    """``(ids, area, boxes, centroids)`` of the labels present in a 2-D numpy ``labels`` (ids >= 0):
    ``ids`` int64 with 0 (the background) first, then per present id (in ``ids[1:]``'s order) as
    :func:`label_stats` gives them, whatever the size of the ids."""
    top = int(labels.max()) if labels.size else 0
    if top <= _DIRECT_IDS:  # counted directly, absent ones dropped after
        area, boxes, centroids = label_stats(labels, top, centroids=True)
        present = np.flatnonzero(area)
        ids = np.concatenate([[0], present + 1]).astype(np.int64)
        return ids, area[present], [boxes[i] for i in present], [centroids[i] for i in present]
    ids, inverse = np.unique(labels, return_inverse=True)
    if ids[0] != 0:  # no background: index 0 must still mean background
        ids, inverse = np.concatenate([[0], ids]), inverse + 1
    area, boxes, centroids = label_stats(inverse.reshape(labels.shape), len(ids) - 1, centroids=True)
    return ids.astype(np.int64), area, boxes, centroids


def label_stats(labels, n: int, *, centroids: bool = False):
    """Pixel count and bounding box (y0, x0, y1, x1, end exclusive) of labels 1..n; with
    ``centroids``, also each label's centroid (y, x): the mean row and column of its pixels, in
    pixels, rounded to 0.01, (nan, nan) for an absent label.

    Reads ``labels`` (numpy or zarr) in bands of rows (:func:`label_bands`), so its extra memory
    is the band's, not the image's; (0, 0, 0, 0) for an absent label.
    Returns ``(area, boxes)`` or ``(area, boxes, centroids)``.
    """
    big = np.iinfo(np.int64).max
    area = np.zeros(n + 1, np.int64)
    y0 = np.full(n + 1, big)
    x0 = np.full(n + 1, big)
    y1 = np.full(n + 1, -1)
    x1 = np.full(n + 1, -1)
    y_sum = np.zeros(n + 1)
    x_sum = np.zeros(n + 1)
    for rows in label_bands(labels):
        top = rows.start
        band = np.asarray(labels[rows])
        area += np.bincount(band.ravel(), minlength=n + 1)[: n + 1]
        ys, xs = np.nonzero(band)
        if len(ys) == 0:
            continue
        lab = band[ys, xs]
        np.minimum.at(y0, lab, ys + top)
        np.minimum.at(x0, lab, xs)
        np.maximum.at(y1, lab, ys + top)
        np.maximum.at(x1, lab, xs)
        if centroids:
            y_sum += np.bincount(lab, weights=ys + top, minlength=n + 1)[: n + 1]
            x_sum += np.bincount(lab, weights=xs, minlength=n + 1)[: n + 1]
    boxes = [
        (int(y0[i]), int(x0[i]), int(y1[i]) + 1, int(x1[i]) + 1) if y1[i] >= 0 else (0, 0, 0, 0)
        for i in range(1, n + 1)
    ]
    if not centroids:
        return area[1:], boxes
    with np.errstate(invalid="ignore", divide="ignore"):
        cy, cx = np.round(y_sum / area, 2), np.round(x_sum / area, 2)
    return area[1:], boxes, [(float(cy[i]), float(cx[i])) for i in range(1, n + 1)]
