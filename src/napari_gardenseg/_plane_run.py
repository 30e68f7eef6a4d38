"""Segmenting the planes of a layer, off the GUI thread: plane by plane, ids unique across the stack.

:func:`run_planes` reads one plane at a time (a dask or zarr stack is never
loaded whole), runs :func:`napari_gardenseg._inference.segment_with` on each
and assembles everything the layers need (label arrays, feature tables, box
corners, checksums) into a :class:`LayerOutput`, so that writing the layers in
the GUI thread (:mod:`napari_gardenseg._layers`) only assigns. It touches no
napari object.

* Whole stack: the output has the image's spatial shape; instance ids run on
  from plane to plane, and the feature table gets one ``axis_<i>`` column per
  leading axis giving the plane of each instance.
* A big plane (:attr:`PlaneSource.big`) is tiled (at least ``tile_size="auto"``)
  and its labels go into a zarr store under ``user_results_dir()``; the output
  is then a lazy multiscale pyramid over that store.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._cancel import ProgressFn
from ._compat import avoid_triton_llvm_clash
from ._options import DEFAULT_MODEL, DEFAULTS, SegmentOptions
from ._planes import PlaneSource

__all__ = ["run_planes", "LayerOutput", "checksum"]


@dataclass
class LayerOutput:
    """Everything :func:`write_layers` needs, computed off the GUI thread."""

    source: PlaneSource
    labels: np.ndarray  # int32, source.out_shape
    refined: np.ndarray | None
    features: Any  # pandas DataFrame for the masks layer (``index`` = label id)
    features_refined: Any  # same rows, ``area`` of the refined masks
    boxes: list[np.ndarray]  # (4, ndim) rectangle corners in the output's data coordinates
    box_features: Any
    results: list  # one SegmentationResult per plane (ids local to the plane)
    checksums: dict = field(default_factory=dict)
    lazy: bool = False  # labels/refined are multiscale lists over a zarr store (see _run_big)

    @property
    def n_instances(self) -> int:
        return len(self.features)


def checksum(data) -> tuple:
    """A cheap fingerprint of an array's content (crc32 runs at GB/s)."""
    arr = np.ascontiguousarray(np.asarray(data))
    return (arr.shape, arr.dtype.str, zlib.crc32(memoryview(arr).cast("B")))


def instance_features(table, offset: int = 0, pixel_size=None):
    """napari ``features`` of an instances table (``SegmentationResult.table`` or its CSV), one row per instance.

    Columns: ``index`` and ``label`` (the label id plus ``offset``; napari maps
    label ids through ``index``), ``class_id``, ``class_name``, ``score``,
    ``area``, ``area_refined``, ``centroid_y`` and ``centroid_x`` (the table's
    ``centroid``, pixels of the plane; NaN where the table has none) and ``source``
    ("model" or "colour": who found the instance; "model" for tables written before
    it existed), then a stack's plane indices (``axis_0``, ...) where the table has them, then
    the table's other columns (the user's, another plugin's) as they are. Given a ``pixel_size``
    (:class:`~napari_gardenseg._pixel_size.PixelSize`), ``area_mm2`` and ``area_refined_mm2``
    after ``area_refined``. Use :func:`split_areas` for the two layers. napari holds one row per id, so the rows of an
    id in several planes (a label stack's table has a row per instance and plane; ids painted
    across planes) become one: areas summed, the centroid of all its pixels, the first
    plane's indices.
    """
    import pandas as pd

    from ._results import other_columns

    if "label" in table and table["label"].duplicated().any():
        table = _one_row_per_id(table)

    labels = table["label"].to_numpy(np.int64) + offset
    centroids = np.full((len(table), 2), np.nan)
    if "centroid" in table:
        for i, c in enumerate(table["centroid"]):
            centroids[i] = _pair(c)
    features = pd.DataFrame(
        {
            "index": labels,
            "label": labels,
            "class_id": table["class_id"].to_numpy(np.int64),
            "class_name": table["class_name"].astype(object).fillna("").astype(str),  # a CSV's empty name reads as NaN
            "score": table["score"].to_numpy(np.float32),
            "area": table["area"].to_numpy(np.int64),
            "area_refined": table["area_refined"].to_numpy(float),
            "centroid_y": centroids[:, 0],
            "centroid_x": centroids[:, 1],
            "source": table["source"].astype(str) if "source" in table else ["model"] * len(table),
            **{c: table[c].to_numpy(np.int64) for c in table.columns if str(c).startswith("axis_")},
            **{c: table[c].to_numpy() for c in other_columns(table.columns)},
        }
    )
    if pixel_size is None:
        return features
    from ._pixel_size import with_areas_mm2

    return with_areas_mm2(features, pixel_size)


def _one_row_per_id(table):
    """``table`` (an instances table) with the rows of an id merged into its first."""
    import pandas as pd

    rows = []
    for _, group in table.groupby("label", sort=False):
        row = group.iloc[0].to_dict()
        if len(group) > 1:
            area = group["area"].to_numpy(np.int64)
            total = max(int(area.sum()), 1)
            if "centroid" in group:
                yx = np.asarray([_pair(c) for c in group["centroid"]])
                row["centroid"] = (round(float(yx[:, 0] @ area) / total, 2), round(float(yx[:, 1] @ area) / total, 2))
            row["area"] = int(area.sum())
            if "area_refined" in group:
                row["area_refined"] = group["area_refined"].sum(min_count=1)
        rows.append(row)
    return pd.DataFrame(rows, columns=table.columns)


def _pair(value) -> tuple[float, float]:
    """(y, x) of a centroid cell: a tuple, or its text in a CSV ("(12.5, 30.0)", "(nan, nan)")."""
    if isinstance(value, str):
        value = value.strip("()[] ").split(",")
    try:
        y, x = (float(v) for v in value)
    except (TypeError, ValueError):
        return np.nan, np.nan
    return y, x


def split_areas(table):
    """(features of the masks layer, of the refined layer): the same rows, each with its own ``area``
    (and ``area_mm2``, ``area_m2``, where the table has them)."""
    units = [c[len("area_") :] for c in ("area_mm2", "area_m2") if c in table]
    masks = table.drop(columns=["area_refined", *(f"area_refined_{u}" for u in units)])
    refined = table.drop(columns=["area", *(f"area_{u}" for u in units)])
    refined = refined.rename(columns={"area_refined": "area", **{f"area_refined_{u}": f"area_{u}" for u in units}})
    refined["area"] = refined["area"].fillna(0).astype(np.int64)
    for u in units:
        refined[f"area_{u}"] = refined[f"area_{u}"].fillna(0.0)
    return masks, refined[masks.columns]


def _feature_table(results, source: PlaneSource, offsets):
    import pandas as pd

    from ._georeference import with_map_columns
    from ._results import label_stats

    frames, refined_centroids = [], []
    for i, (res, off) in enumerate(zip(results, offsets)):
        df = with_map_columns(
            instance_features(res.table, off, source.pixel_size), source.map_grid, source.ground_pixel_m2
        )
        if source.stack:
            for ax, v in enumerate(source.planes[i]):
                df[f"axis_{ax}"] = np.full(len(df), v, dtype=np.int64)
        frames.append(df)
        # the CRF layer's rows describe its own pixels
        yx = label_stats(res.refined, len(res), centroids=True)[2] if res.refined is not None else None
        refined_centroids.append(np.full((len(res), 2), np.nan) if yx is None else np.asarray(yx, float).reshape(-1, 2))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    masks, refined = split_areas(table)
    if any(res.refined is not None for res in results):  # one row per instance, in the frames' order
        yx = np.concatenate(refined_centroids)
        refined["centroid_y"], refined["centroid_x"] = yx[:, 0], yx[:, 1]
        refined = with_map_columns(refined, source.map_grid, source.ground_pixel_m2)  # of its own centroids
    return masks, refined


def _box_corners(res, lead: tuple[int, ...]) -> list[np.ndarray]:
    """torchvision boxes (x0, y0, x1, y1; pixel edges) -> napari rectangles (pixel centres at integers)."""
    out = []
    for x0, y0, x1, y1 in np.asarray(res.boxes, dtype=float) - 0.5:
        corners = [(y0, x0), (y0, x1), (y1, x1), (y1, x0)]
        out.append(np.array([[*lead, y, x] for y, x in corners], dtype=float))
    return out


def run_planes(
    source: PlaneSource,
    model=DEFAULT_MODEL,
    options: SegmentOptions = DEFAULTS,
    *,
    progress: ProgressFn | None = None,
    cancel=None,
) -> LayerOutput:
    """Segment every plane of ``source`` with ``options``; returns a :class:`LayerOutput`.

    ``model``: a loaded :class:`~napari_gardenseg.Model` (used as it is) or
    anything :func:`~napari_gardenseg.load_model` takes (loaded here, once).
    Safe to call from a worker thread: it touches no napari object. Raises
    :class:`napari_gardenseg.Cancelled` when ``cancel`` is set (checked
    between planes and, by :func:`segment`, inside each).
    """
    avoid_triton_llvm_clash()
    from . import _inference, _models
    from ._cancel import check
    from ._results import measures_meta

    report = progress or (lambda f, m: None)
    source = dataclasses.replace(source, **_file_measures(source))  # the table's areas in mm², its map columns
    n = len(source.planes)
    if not isinstance(model, _models.Model):
        report(0.0, "loading model")
    model = _models.load_model(model, device=options.device)  # cached: cheap after the first time

    if source.big:
        return _run_big(source, model, options, report, cancel)
    labels = np.zeros(source.out_shape, np.int32)
    refined = None
    results, offsets, boxes = [], [], []
    offset = 0
    for i in range(n):
        check(cancel, "segmentation")
        where = f"plane {i + 1}/{n}: " if n > 1 else ""

        def plane_progress(frac, msg, i=i, where=where):
            report((i + frac) / n, where + msg)

        res = _inference.segment_with(source.plane(i), model, options, progress=plane_progress, cancel=cancel)
        out = source.out_index(i)
        # the stack's ids, written in place: no image-sized temporary of the shifted ids
        np.add(res.labels, offset, out=labels[out], where=res.labels > 0)
        if res.refined is not None:
            if refined is None:
                refined = np.zeros(source.out_shape, np.int32)
            np.add(res.refined, offset, out=refined[out], where=res.refined > 0)
        boxes += _box_corners(res, out)
        res.meta["plane"] = source.planes[i]
        res.meta.update(measures_meta(source))  # its table's physical columns too, as the layers' features
        results.append(res)
        offsets.append(offset)
        offset += len(res)

    report(1.0, "preparing layers")
    feats, feats_ref = _feature_table(results, source, offsets)
    box_feats = feats[["label", "class_name", "score"]].copy()
    sums = {"masks": checksum(labels)}
    if refined is not None:
        sums["crf"] = checksum(refined)
    return LayerOutput(source, labels, refined, feats, feats_ref, boxes, box_feats, results, sums)


def _file_measures(source: PlaneSource) -> dict:
    """What the layer's file says of its pixels, as PlaneSource fields: ``file_pixel_size`` (a
    scan's dpi, a calibration: :mod:`._pixel_size`; where the layer's own scale has no length
    units), ``map_grid`` and ``ground_pixel_m2`` (a georeferenced photo's grid, and its pixel's
    ground area where the CRS is in metres: :mod:`._georeference`); none where the segmented level
    is not the file's pixel grid or the file cannot be read now (moved since it was opened)."""
    from ._image_reader import stated_measures

    read = stated_measures(source.path) if source.path is not None and source.level == 0 else None
    if read is None or read[0] != tuple(source.plane_shape):
        return {}
    measures = read[1]
    return {
        "file_pixel_size": measures["pixel_size"] if source.layer_pixel_size is None else None,
        "map_grid": measures["map_grid"],
        "ground_pixel_m2": measures["ground_pixel_m2"],
    }


def _run_big(source: PlaneSource, model, options: SegmentOptions, report, cancel) -> LayerOutput:
    """One plane too big for memory: tiles in, a zarr store out, a lazy pyramid for napari."""
    import time

    from . import _inference
    from ._files import file_stem, free_path, user_results_dir, writable_folder

    stem = file_stem(source.name)
    folder = writable_folder(user_results_dir(), "set GARDENSEG_HOME to a folder you can write, and restart napari")
    path = free_path(folder / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.zarr")
    from ._image_source import ImageSource

    plane = ImageSource(source.plane(0), name=source.name)
    # kept in the store's attributes, as a batch's store keeps them
    plane.pixel_size, plane.map_grid, plane.ground_pixel_m2 = source.pixel_size, source.map_grid, source.ground_pixel_m2
    res = _inference.segment_to_zarr_with(plane, path, model, options, progress=report, cancel=cancel)
    res.meta["plane"] = source.planes[0]
    res.meta["zarr"] = str(path)
    lead = source.out_index(0)
    labels = _lazy_pyramid(res.labels, lead)
    refined = None if res.refined is None else _lazy_pyramid(res.refined, lead)
    report(1.0, "preparing layers")
    feats, feats_ref = _feature_table([res], source, [0])
    box_feats = feats[["label", "class_name", "score"]].copy()
    return LayerOutput(
        source,
        labels,
        refined,
        feats,
        feats_ref,
        _box_corners(res, lead),
        box_feats,
        [res],
        {"masks": None, "crf": None},
        lazy=True,
    )


def _lazy_pyramid(array, lead: tuple[int, ...]) -> list:
    """A zarr label image as a napari multiscale: strided dask views, halving down to about 1024 px."""
    import dask.array as da

    base = da.from_zarr(array)
    levels = [base]
    while max(levels[-1].shape) > 1024:
        levels.append(levels[-1][::2, ::2])  # nearest neighbour: labels must not be interpolated
    return [lvl.reshape((1,) * len(lead) + lvl.shape) for lvl in levels]
