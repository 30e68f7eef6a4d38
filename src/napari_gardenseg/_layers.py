"""napari glue without Qt: from an Image layer to planes, from results to layers.

Three steps, kept apart so that the widget can run the middle one in a worker
thread and the first and last (which touch napari objects) in the GUI thread:

1. :func:`plane_source` (GUI thread, cheap): which 2-D plane(s) of an Image
   layer to segment and where the output layers go. Reads no pixels.
2. :func:`run_planes` (any thread, slow): reads the planes (``np.asarray`` of
   one plane at a time, so a dask or zarr stack is never loaded whole), runs
   :func:`napari_gardenseg.segment` on each, and assembles everything the
   layers need (label arrays, feature tables, box corners, checksums), so that
   step 3 only assigns.
3. :func:`write_layers` (GUI thread, cheap): puts that into Labels (and
   Shapes) layers, replacing our previous output in place unless the user has
   edited it.

:func:`segment_layer` chains the three for the console.

Conventions
-----------
* The last two axes of a layer (before the colour axis of an RGB image) are
  (Y, X); the axes in front of them (Z, T, ...) index planes.
* "Current plane" (``stack=False``): the plane at the viewer's dims point. The
  output layers then hold that plane only, as a one-plane slab (shape
  ``(1, ..., 1, H, W)``) translated to the plane's position: napari shows it on
  that plane and nowhere else, and a big stack costs no memory.
* "Whole stack" (``stack=True``): every plane; the output has the image's
  spatial shape and instance ids are unique across the stack (plane after
  plane, in C order). The feature table gets one ``axis_<i>`` column per
  leading axis giving the plane of each instance.
* Multiscale images: level 0 (full resolution), read tile by tile (or, when
  ``max_pixels`` is given, the finest level whose plane has at most that
  many pixels; the output's scale is then the image's scale times the level's
  downsampling factors, with napari's own multiscale convention).
* Big planes: a plane over :data:`MAX_PLANE_PIXELS` pixels is tiled (at
  least ``tile_size="auto"``) and its labels go into a zarr store under
  ``user_results_dir()`` instead of memory; the Labels layers then show that
  store lazily as a multiscale pyramid (napari reads only what it draws).
* Output layers: ``"<image> masks"`` and ``"<image> masks (CRF)"`` (Labels),
  ``"<image> boxes"`` (Shapes, optional), with the image's scale, translate,
  units and axis labels (an RGB image's colour axis is not a spatial axis in
  napari, so it is dropped already).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._cancel import ProgressFn
from ._compat import avoid_triton_llvm_clash
from ._options import DEFAULT_MODEL, DEFAULTS, SegmentOptions

__all__ = [
    "segment_layer",
    "plane_source",
    "run_planes",
    "write_layers",
    "PlaneSource",
    "LayerOutput",
    "MAX_PLANE_PIXELS",
]

# Planes above this many pixels are segmented into a zarr store, not into memory:
# two int32 label images of 64 Mpx are 512 MB before napari makes its own copies.
MAX_PLANE_PIXELS = 8192 * 8192

# Key of our bookkeeping in a layer's ``metadata``.
META_KEY = "napari_gardenseg"



# -- 1. which planes ----------------------------------------------------------------


@dataclass
class PlaneSource:
    """The plane(s) of an Image layer to segment, and where the results go.

    Holds a reference to the layer's array (one pyramid level), never its
    pixels: :meth:`read` takes one plane.
    """

    name: str  # the image layer's name: output layers are named after it
    data: Any  # array-like of the chosen level, colour axis last when rgb
    rgb: bool
    planes: list[tuple[int, ...]]  # leading-axis index of each plane to segment
    stack: bool
    scale: np.ndarray  # of the output layers (spatial axes only)
    translate: np.ndarray
    units: tuple | None = None
    axis_labels: tuple | None = None
    level: int = 0  # multiscale level read (0 = full resolution)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        shape = tuple(int(s) for s in self.data.shape)
        return shape[:-1] if self.rgb else shape

    @property
    def lead_shape(self) -> tuple[int, ...]:
        return self.spatial_shape[:-2]

    @property
    def plane_shape(self) -> tuple[int, int]:
        return self.spatial_shape[-2:]

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Shape of the output label arrays: the whole stack or a one-plane slab."""
        lead = self.lead_shape if self.stack else (1,) * len(self.lead_shape)
        return lead + self.plane_shape

    @property
    def out_translate(self) -> np.ndarray:
        """The slab of the current plane sits at that plane's position."""
        t = np.array(self.translate, dtype=float)
        if not self.stack and self.lead_shape:
            lead = np.array(self.planes[0], dtype=float)
            t[: len(lead)] += lead * np.asarray(self.scale[: len(lead)], dtype=float)
        return t

    def out_index(self, i: int) -> tuple[int, ...]:
        """Where plane ``i`` goes in the output arrays."""
        return self.planes[i] if self.stack else (0,) * len(self.lead_shape)

    def plane(self, i: int):
        """Plane ``i``: a numpy view, or a lazy slice (dask, zarr) that segment reads tile by tile."""
        data = self.data
        if isinstance(data, np.ndarray) or not self.planes[i]:
            return data[self.planes[i]] if self.planes[i] else data
        plane = data[self.planes[i]]
        return plane if hasattr(plane, "shape") and not isinstance(plane, np.ndarray) else np.asarray(plane)

    @property
    def big(self) -> bool:
        """One plane too big to hold its labels in memory (see :data:`MAX_PLANE_PIXELS`)."""
        h, w = self.plane_shape
        return h * w > MAX_PLANE_PIXELS and len(self.planes) == 1


def _levels(layer) -> list:
    return list(layer.data) if getattr(layer, "multiscale", False) else [layer.data]


def _plane_pixels(shape, rgb: bool) -> int:
    spatial = shape[:-1] if rgb else shape
    return int(np.prod(spatial[-2:], dtype=np.int64))


def _pick_level(levels, rgb: bool, max_pixels: int) -> int:
    for k, level in enumerate(levels):
        if _plane_pixels(level.shape, rgb) <= max_pixels:
            return k
    return len(levels) - 1


def current_plane(layer, point) -> tuple[int, ...]:
    """Leading-axis index (level 0) of the plane at world position ``point``.

    ``point`` is ``viewer.dims.point``; it may have more axes than the layer
    (the later ones are the layer's). Rounded and clipped like napari's own
    slicing, so it is the plane the user sees.
    """
    rgb = bool(getattr(layer, "rgb", False))
    shape0 = tuple(_levels(layer)[0].shape)
    spatial = shape0[:-1] if rgb else shape0
    nlead = len(spatial) - 2
    if nlead <= 0:
        return ()
    if point is None:
        return (0,) * nlead
    data_pos = np.asarray(layer.world_to_data(np.asarray(point, dtype=float)), dtype=float)
    idx = np.round(data_pos[-len(spatial) :][:nlead]).astype(int)
    return tuple(int(np.clip(i, 0, n - 1)) for i, n in zip(idx, spatial[:nlead]))


def plane_source(layer, *, point=None, stack: bool = False, max_pixels: int | None = None) -> PlaneSource:
    """Describe what to segment in ``layer`` (an Image layer) without reading pixels.

    ``point``: the viewer's ``dims.point`` (world coordinates), used for the
    current plane of a stack; None means the first plane.
    """
    from ._images import ImageError

    if layer is None:
        raise ValueError("no image layer to segment: open an image (or File > Open Sample > Garden) first")
    from napari.layers import Image

    if not isinstance(layer, Image):
        raise ValueError(f"layer {layer.name!r} is not an Image layer; pick an image to segment")
    rgb = bool(layer.rgb)
    levels = _levels(layer)
    shape0 = tuple(int(s) for s in levels[0].shape)
    spatial0 = shape0[:-1] if rgb else shape0
    if len(spatial0) < 2:
        raise ImageError(f"layer {layer.name!r} has {len(spatial0)} spatial axis; a 2-D image or a stack of them is needed")
    if 0 in shape0:
        raise ImageError(f"the image {layer.name!r} is empty (shape {shape0}); nothing to segment")

    k = 0 if max_pixels is None else _pick_level(levels, rgb, max_pixels)
    data = levels[k]
    spatial = tuple(int(s) for s in (data.shape[:-1] if rgb else data.shape))
    factors = np.array(spatial0, dtype=float) / np.array(spatial, dtype=float)
    scale = np.asarray(layer.scale, dtype=float) * factors
    nlead = len(spatial) - 2
    if stack:
        planes = [tuple(int(v) for v in i) for i in np.ndindex(*spatial[:nlead])] if nlead else [()]
    else:
        idx0 = current_plane(layer, point)
        # napari picks a plane of a coarser level by rounding the scaled index
        idx = tuple(int(min(round(i / f), n - 1)) for i, f, n in zip(idx0, factors[:nlead], spatial[:nlead]))
        planes = [idx]
    return PlaneSource(
        name=layer.name,
        data=data,
        rgb=rgb,
        planes=planes,
        stack=bool(stack) and nlead > 0,
        scale=scale,
        translate=np.asarray(layer.translate, dtype=float),
        units=tuple(layer.units) if getattr(layer, "units", None) is not None else None,
        axis_labels=tuple(layer.axis_labels) if getattr(layer, "axis_labels", None) is not None else None,
        level=k,
    )


# -- 2. segmenting (off the GUI thread) ----------------------------------------------


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


def _shapes_checksum(data) -> tuple:
    if len(data) == 0:
        return ("shapes", 0)
    return ("shapes", len(data), checksum(np.concatenate([np.asarray(d, dtype=float) for d in data])))


def _feature_table(results, source: PlaneSource, offsets):
    import pandas as pd

    frames = []
    for i, (res, off) in enumerate(zip(results, offsets)):
        table = res.table
        df = pd.DataFrame(
            {
                "index": table["label"].to_numpy(np.int64) + off,  # napari maps label ids through `index`
                "label": table["label"].to_numpy(np.int64) + off,
                "class_id": table["class_id"].to_numpy(np.int64),
                "class_name": table["class_name"].astype(str),
                "score": table["score"].to_numpy(np.float32),
                "area": table["area"].to_numpy(np.int64),
                "area_refined": table["area_refined"].to_numpy(float),
            }
        )
        if source.stack:
            for ax, v in enumerate(source.planes[i]):
                df[f"axis_{ax}"] = np.full(len(df), v, dtype=np.int64)
        frames.append(df)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    masks = table.drop(columns=["area_refined"])
    refined = table.drop(columns=["area"]).rename(columns={"area_refined": "area"})
    refined["area"] = refined["area"].fillna(0).astype(np.int64)
    return masks, refined[masks.columns]


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

    report = progress or (lambda f, m: None)
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
        plane = labels[out]
        np.copyto(plane, res.labels + offset, where=res.labels > 0)
        if res.refined is not None:
            if refined is None:
                refined = np.zeros(source.out_shape, np.int32)
            np.copyto(refined[out], res.refined + offset, where=res.refined > 0)
        boxes += _box_corners(res, out)
        res.meta["plane"] = source.planes[i]
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


def _run_big(source: PlaneSource, model, options: SegmentOptions, report, cancel) -> LayerOutput:
    """One plane too big for memory: tiles in, a zarr store out, a lazy pyramid for napari."""
    import time

    from . import _inference
    from ._files import free_path, user_results_dir

    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in source.name) or "image"
    path = free_path(user_results_dir() / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.zarr")
    res = _inference.segment_to_zarr_with(source.plane(0), path, model, options, progress=report, cancel=cancel)
    res.meta["plane"] = source.planes[0]
    res.meta["zarr"] = str(path)
    lead = source.out_index(0)
    labels = _lazy_pyramid(res.labels, lead)
    refined = None if res.refined is None else _lazy_pyramid(res.refined, lead)
    report(1.0, "preparing layers")
    feats, feats_ref = _feature_table([res], source, [0])
    box_feats = feats[["label", "class_name", "score"]].copy()
    return LayerOutput(source, labels, refined, feats, feats_ref, _box_corners(res, lead), box_feats, [res],
                       {"masks": None, "crf": None}, lazy=True)


def _lazy_pyramid(array, lead: tuple[int, ...]) -> list:
    """A zarr label image as a napari multiscale: strided dask views, halving down to about 1024 px."""
    import dask.array as da

    base = da.from_zarr(array)
    levels = [base]
    while max(levels[-1].shape) > 1024:
        levels.append(levels[-1][::2, ::2])  # nearest neighbour: labels must not be interpolated
    return [lvl.reshape((1,) * len(lead) + lvl.shape) for lvl in levels]


# -- 3. layers (GUI thread) ----------------------------------------------------------


def layer_names(image_name: str) -> dict[str, str]:
    return {
        "masks": f"{image_name} masks",
        "crf": f"{image_name} masks (CRF)",
        "boxes": f"{image_name} boxes",
    }


def _ours(layer, kind: str) -> bool:
    meta = getattr(layer, "metadata", None) or {}
    return isinstance(meta.get(META_KEY), dict) and meta[META_KEY].get("kind") == kind


def is_edited(layer) -> bool:
    """True if ``layer``'s data differs from what this plugin last wrote into it.

    A lazy (zarr-backed) output counts as edited: it is never replaced in place.
    """
    info = layer.metadata.get(META_KEY) or {}
    if info.get("lazy"):
        return True
    current = _shapes_checksum(layer.data) if info.get("kind") == "boxes" else checksum(layer.data)
    return current != info.get("checksum")


def _target(viewer, base: str, kind: str, layer_type: type):
    """The layer to overwrite for ``kind``, or the free name for a new one.

    Walks ``base``, ``base [2]``, ``base [3]``... and stops at the first name
    that is free or that holds an unedited layer of ours of the right type.
    Layers the user made, or ours that the user edited, are never touched.
    """
    k = 1
    while True:
        name = base if k == 1 else f"{base} [{k}]"
        if name not in viewer.layers:
            return None, name
        layer = viewer.layers[name]
        if isinstance(layer, layer_type) and _ours(layer, kind) and not is_edited(layer):
            return layer, name
        k += 1


def _spatial_kwargs(source: PlaneSource) -> dict:
    kw = {"scale": source.scale, "translate": source.out_translate}
    if source.units is not None:
        kw["units"] = source.units
    if source.axis_labels is not None:
        kw["axis_labels"] = source.axis_labels
    return kw


def _set_geometry(layer, source: PlaneSource) -> None:
    """Set scale, translate, units and axis labels, each only if it changes.

    Every assignment makes napari re-slice and redraw the layer (tens of ms on
    a big image), so unchanged values are not assigned again.
    """
    for key, value in _spatial_kwargs(source).items():
        current = getattr(layer, key)
        if key in ("scale", "translate"):
            same = np.shape(current) == np.shape(value) and np.allclose(current, value)
        else:
            same = tuple(str(v) for v in current) == tuple(str(v) for v in value)
        if not same:
            setattr(layer, key, value)


def _stamp(layer, kind: str, source: PlaneSource, check) -> None:
    layer.metadata[META_KEY] = {"kind": kind, "image": source.name, "level": source.level, "checksum": check}


def _write_labels(viewer, source: PlaneSource, kind: str, data, features, check):
    base = layer_names(source.name)[kind]
    from napari.layers import Labels

    if isinstance(data, list):  # a lazy pyramid over a zarr store: a new layer, never a replacement
        _, name = _target(viewer, base, kind, Labels)
        many = len(data) > 1
        layer = viewer.add_labels(data if many else data[0], name=name, features=features, multiscale=many,
                                  **_spatial_kwargs(source))
        layer.metadata[META_KEY] = {"kind": kind, "image": source.name, "level": source.level, "lazy": True}
        return layer
    layer, name = _target(viewer, base, kind, Labels)
    if layer is None:
        layer = viewer.add_labels(data, name=name, features=features, **_spatial_kwargs(source))
    else:
        # Geometry first: a new slab position must not flash the new data at the old plane.
        _set_geometry(layer, source)
        layer.data = data
        layer.features = features
    if layer.data is not data:  # napari converted it: fingerprint what the layer really holds
        check = checksum(layer.data)
    _stamp(layer, kind, source, check)
    return layer


_TEXT = {"string": "{class_name} {score:.2f}", "size": 9, "color": "white", "anchor": "upper_left"}


def _write_boxes(viewer, source: PlaneSource, boxes, features):
    base = layer_names(source.name)["boxes"]
    from napari.layers import Shapes

    layer, name = _target(viewer, base, "boxes", Shapes)
    ndim = len(source.out_shape)
    kw = _spatial_kwargs(source)
    if layer is None:
        layer = viewer.add_shapes(
            boxes or None, ndim=ndim, shape_type="rectangle", name=name, features=features,
            edge_color="yellow", face_color="transparent", edge_width=2, text=_TEXT, **kw,
        )
    else:
        _set_geometry(layer, source)
        layer.data = [(b, "rectangle") for b in boxes]
        layer.features = features
        layer.text = _TEXT
    _stamp(layer, "boxes", source, _shapes_checksum(layer.data))
    return layer


def write_layers(viewer, output: LayerOutput, *, boxes: bool = False, kinds=None) -> dict:
    """Show ``output`` in ``viewer``; returns the layers written by kind.

    Replaces the data of our layers from an earlier run in place (same layer
    objects) unless the user edited them since; then a new layer is added
    (``"<image> masks [2]"``...), so no edit is ever lost. ``kinds`` limits
    the writing to some of "masks", "crf", "boxes" (the widget writes one per
    event-loop turn: adding a layer to napari takes a few hundred ms).
    """
    source = output.source
    wanted = output_kinds(output, boxes=boxes) if kinds is None else list(kinds)
    layers = {}
    for kind in wanted:
        if kind == "masks":
            layers[kind] = _write_labels(viewer, source, kind, output.labels, output.features, output.checksums[kind])
        elif kind == "crf" and output.refined is not None:
            layers[kind] = _write_labels(
                viewer, source, kind, output.refined, output.features_refined, output.checksums[kind]
            )
        elif kind == "boxes":
            layers[kind] = _write_boxes(viewer, source, output.boxes, output.box_features)
    for res in output.results:
        res.meta.setdefault("layers", {}).update({k: layer.name for k, layer in layers.items()})
    return layers


def output_kinds(output: LayerOutput, *, boxes: bool = False) -> list[str]:
    """The layers a run writes: "masks", then "crf" (CRF on) and "boxes" (asked for)."""
    return ["masks"] + (["crf"] if output.refined is not None else []) + (["boxes"] if boxes else [])


# -- all three, for the console ------------------------------------------------------


def segment_layer(layer, model=DEFAULT_MODEL, *, viewer=None, stack: bool = False, boxes: bool = False,
                  progress: ProgressFn | None = None, cancel=None, **options):
    """Segment an Image layer and show the result as Labels layers (synchronously).

    ``segment_layer(viewer.layers["garden"], model="garden")`` adds (or
    updates) ``"garden masks"`` and, with the CRF on, ``"garden masks (CRF)"``;
    ``boxes=True`` adds a Shapes layer of the detection boxes. ``viewer``
    defaults to ``napari.current_viewer()``. Other keyword arguments are the
    options of :func:`napari_gardenseg.segment` (``score_threshold``,
    ``mask_threshold``, ``classes``, ``crf``, ``crf_params``, ``device``,
    ``tile_size``, ``scale``...; see :class:`~napari_gardenseg._options.SegmentOptions`).

    Returns the :class:`~napari_gardenseg.SegmentationResult` of the plane, or
    with ``stack=True`` a list of them, one per plane (their ids are local to
    each plane; the layers' ids are unique across the stack, see the
    ``axis_<i>`` feature columns). ``result.meta["layers"]`` names the layers
    written. A run that fails or is cancelled changes no layer.
    """
    avoid_triton_llvm_clash()
    opts = SegmentOptions.from_kwargs(**options)  # bad options fail before anything is read
    if viewer is None:
        import napari

        viewer = napari.current_viewer()
        if viewer is None:
            raise RuntimeError("no napari viewer is open; pass viewer=... to segment_layer")
    if isinstance(layer, str):
        layer = viewer.layers[layer]
    source = plane_source(layer, point=viewer.dims.point, stack=stack)
    output = run_planes(source, model, opts, progress=progress, cancel=cancel)
    write_layers(viewer, output, boxes=boxes)
    return output.results if source.stack else output.results[0]
