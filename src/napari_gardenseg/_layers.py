"""napari glue without Qt: from an Image layer to Labels layers.

Three steps, kept apart so that the widget can run the middle one in a worker
thread and the first and last (which touch napari objects) in the GUI thread:

1. :func:`~napari_gardenseg._planes.plane_source` (GUI thread, cheap): which
   2-D plane(s) of an Image layer to segment and where the output goes.
2. :func:`~napari_gardenseg._plane_run.run_planes` (any thread, slow): the
   planes segmented, and everything the layers need assembled.
3. :func:`write_layers` (here; GUI thread, cheap): puts that into Labels (and
   Shapes) layers, replacing our previous output in place unless the user has
   edited it.

:func:`segment_layer` chains the three for the console.

Output layers: ``"<image> masks"`` and ``"<image> masks (CRF)"`` (Labels),
``"<image> boxes"`` (Shapes, optional), with the image's scale, translate,
units and axis labels (an RGB image's colour axis is not a spatial axis in
napari, so it is dropped already). A lazy (zarr-backed) output is always a
new layer, never a replacement.
"""

from __future__ import annotations

import numpy as np

from ._cancel import ProgressFn
from ._compat import avoid_triton_llvm_clash
from ._options import DEFAULT_MODEL, SegmentOptions
from ._paint_features import follow_paint, replace_data
from ._plane_run import LayerOutput, checksum, run_planes
from ._planes import PlaneSource, plane_source, view_margins

__all__ = [
    "segment_layer",
    "write_layers",
    "output_kinds",
    "layer_names",
    "is_edited",
    "kept_layers_note",
    "unseen_layer_note",
    "label_map_note",
    "colour_planes_note",
]

# Key of our bookkeeping in a layer's ``metadata``.
META_KEY = "napari_gardenseg"


def _shapes_checksum(data) -> tuple:
    if len(data) == 0:
        return ("shapes", 0)
    return ("shapes", len(data), checksum(np.concatenate([np.asarray(d, dtype=float) for d in data])))


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
    """True if ``layer``'s data, or its features table (a class name corrected by hand), differs
    from what this plugin last wrote into it.

    A lazy (zarr-backed) output counts as edited: it is never replaced in place.
    """
    info = layer.metadata.get(META_KEY) or {}
    if info.get("lazy"):
        return True
    current = _shapes_checksum(layer.data) if info.get("kind") == "boxes" else checksum(layer.data)
    if current != info.get("checksum"):
        return True
    return "features_checksum" in info and _features_checksum(layer) != info["features_checksum"]


def _features_checksum(layer) -> int:
    """A fingerprint of a layer's features table (its CSV text: every column, every value)."""
    import zlib

    return zlib.crc32(layer.features.to_csv(index=False).encode())


def _target(viewer, base: str, kind: str, layer_type: type, ndim: int | None = None, image_id: str | None = None):
    """The layer to overwrite for ``kind``, or the free name for a new one.

    Walks ``base``, ``base [2]``, ``base [3]``... and stops at the first name
    that is free or that holds an unedited layer of ours of the right type
    (and, given ``ndim``, of that many axes: napari cannot give a layer another
    number of axes, as when a stack of the photo's name replaces a 2-D photo).
    Layers the user made, or ours that the user edited, are never touched.
    """
    k = 1
    while True:
        name = base if k == 1 else f"{base} [{k}]"
        if name not in viewer.layers:
            return None, name
        layer = viewer.layers[name]
        fits = ndim is None or layer.ndim == ndim
        # an output of another image layer that bore this name before it was renamed, and is still
        # open, is that image's (an image closed and opened again has a new id: its outputs are free)
        info = (getattr(layer, "metadata", None) or {}).get(META_KEY)
        other = info.get("image_id") if image_id and isinstance(info, dict) else None
        theirs = other not in (None, image_id) and any(str(ly.unique_id) == other for ly in viewer.layers)
        if isinstance(layer, layer_type) and _ours(layer, kind) and fits and not theirs and not is_edited(layer):
            return layer, name
        k += 1


def identity_transform(ndim: int) -> dict:
    """A napari layer's ``scale``, ``translate``, ``rotate``, ``shear`` and ``affine`` as napari
    puts a new layer of ``ndim`` axes: where nothing moves it."""
    return {
        "scale": np.ones(ndim),
        "translate": np.zeros(ndim),
        "rotate": np.eye(ndim),
        "shear": np.zeros(ndim * (ndim - 1) // 2),
        "affine": np.eye(ndim + 1),
    }


def _spatial_kwargs(source: PlaneSource, *, every: bool = False) -> dict:
    """Where the output layers lie: the image's scale, translate, units, axis labels, and its rotate,
    shear and affine where it has them (``every``: those too when they are the identity, to reset a
    layer written for an image placed otherwise)."""
    kw = {"scale": source.scale, "translate": source.out_translate}
    if source.units is not None:
        kw["units"] = source.units
    if source.axis_labels is not None:
        kw["axis_labels"] = source.axis_labels
    identity = identity_transform(len(source.scale))
    for key in ("rotate", "shear", "affine"):
        if getattr(source, key) is not None:
            kw[key] = getattr(source, key)
        elif every:
            kw[key] = identity[key]
    return kw


def _set_geometry(layer, source: PlaneSource) -> None:
    """Set scale, translate, units and axis labels, each only if it changes.

    Every assignment makes napari re-slice and redraw the layer (tens of ms on
    a big image), so unchanged values are not assigned again. An attribute the
    user linked to other layers (napari's *Link Layers*) is unlinked first: a
    slab moved to another plane must not move the image with it.
    """
    changed = {}
    for key, value in _spatial_kwargs(source, every=True).items():
        current = getattr(layer, key)
        if key == "affine":
            current = current.affine_matrix
        if key in ("scale", "translate", "rotate", "shear", "affine"):
            same = np.shape(current) == np.shape(value) and np.allclose(current, value)
        else:
            same = tuple(str(v) for v in current) == tuple(str(v) for v in value)
        if not same:
            changed[key] = value
    if changed:
        from napari.experimental import unlink_layers

        unlink_layers([layer], attributes=changed)
    for key, value in changed.items():
        setattr(layer, key, value)


def _stamp(layer, kind: str, source: PlaneSource, check) -> None:
    # a corrected class name is an edit, in the masks' table as in the boxes' (their text): see is_edited
    layer.metadata[META_KEY] = {
        "kind": kind,
        **_about(source),
        "checksum": check,
        "features_checksum": _features_checksum(layer),
    }


def _about(source: PlaneSource) -> dict:
    """What an output layer records of its image: name, pyramid level, the plane of a stack it
    was made from (a *current plane* result), and, read at full resolution from a file, that
    file (whose georeferencing the layer's writer gives the labels)."""
    about = {"image": source.name, "level": source.level}
    if source.image_id is not None:  # found again after the image is renamed (follow_rename)
        about["image_id"] = source.image_id
    if source.pixel_size is not None:  # area_mm2 follows the brush (_paint_features)
        about["pixel_size"] = source.pixel_size.as_record()
    if source.map_grid is not None:  # and map_x, map_y, area_m2
        about["map_grid"] = [float(v) for v in source.map_grid]
        about["ground_pixel_m2"] = source.ground_pixel_m2
    if not source.stack and source.lead_shape:  # one plane of a stack: which (the writer's axis_0)
        about["plane"] = [int(i) for i in source.planes[0]]
    if source.path is not None and source.level == 0:
        about["georeference_source"] = source.path
    return about


def _write_labels(viewer, source: PlaneSource, kind: str, data, features, check, *, visible: bool = True):
    base = layer_names(source.name)[kind]
    from napari.layers import Labels

    if isinstance(data, list):  # a lazy pyramid over a zarr store: a new layer, never a replacement
        _, name = _target(viewer, base, kind, Labels, image_id=source.image_id)
        for earlier in _lazy_outputs(viewer, source.name, kind):  # what shows is this run, not a blend
            earlier.visible = False
        many = len(data) > 1
        layer = viewer.add_labels(
            data if many else data[0],
            name=name,
            features=features,
            multiscale=many,
            visible=visible,
            **_spatial_kwargs(source),
        )
        layer.metadata[META_KEY] = {"kind": kind, **_about(source), "lazy": True}
        return layer
    layer, name = _target(viewer, base, kind, Labels, np.ndim(data), source.image_id)
    if layer is None:
        layer = viewer.add_labels(data, name=name, features=features, visible=visible, **_spatial_kwargs(source))
    else:
        # Geometry first: a new slab position must not flash the new data at the old plane.
        _set_geometry(layer, source)
        replace_data(layer, data, features)  # without the earlier run's undo history
        _show_if_hidden_stale(layer)
    if layer.data is not data:  # napari converted it: fingerprint what the layer really holds
        check = checksum(layer.data)
    _stamp(layer, kind, source, check)
    follow_paint(layer)  # areas, centroids and painted ids follow the brush
    return layer


def _lazy_outputs(viewer, image: str, kind: str) -> list:
    """The lazy (zarr-backed) output layers of ``kind`` that runs on ``image`` (its name) added."""
    return [
        layer
        for layer in viewer.layers
        if (info := layer.metadata.get(META_KEY) or {}).get("lazy")
        and info.get("kind") == kind
        and info.get("image") == image
    ]


_TEXT = {"string": "{class_name} {score:.2f}", "size": 9, "color": "white", "anchor": "upper_left"}


def _write_boxes(viewer, source: PlaneSource, boxes, features):
    base = layer_names(source.name)["boxes"]
    from napari.layers import Shapes

    ndim = len(source.out_shape)
    layer, name = _target(viewer, base, "boxes", Shapes, ndim, source.image_id)
    kw = _spatial_kwargs(source)
    if layer is None:
        layer = viewer.add_shapes(
            boxes or None,
            ndim=ndim,
            shape_type="rectangle",
            name=name,
            features=features,
            edge_color="yellow",
            face_color="transparent",
            edge_width=2,
            text=_TEXT,
            **kw,
        )
    else:
        _set_geometry(layer, source)
        layer.data = [(b, "rectangle") for b in boxes]
        layer.features = features
        layer.text = _TEXT
        _show_if_hidden_stale(layer)
    _stamp(layer, "boxes", source, _shapes_checksum(layer.data))
    return layer


def write_layers(viewer, output: LayerOutput, *, boxes: bool = False, kinds=None) -> dict:
    """Show ``output`` in ``viewer``; returns the layers written by kind.

    Replaces the data of our layers from an earlier run in place (same layer
    objects) unless the user edited them since; then a new layer is added
    (``"<image> masks [2]"``...), so no edit is ever lost. ``kinds`` limits
    the writing to some of "masks", "crf", "boxes" (the widget writes one per
    event-loop turn: adding a layer to napari takes a few hundred ms), ``boxes``
    still saying whether the run has boxes. Writing "masks" hides our unedited
    layers of this image that the run does not write (the CRF layer of an
    earlier run with the CRF, its boxes), so that what shows is this run.
    """
    source = output.source
    every = output_kinds(output, boxes=boxes)
    wanted = every if kinds is None else list(kinds)
    layers = {}
    if "masks" in wanted:
        _follow_rename(viewer, source)
        _hide_stale(viewer, source, [k for k in ("crf", "boxes") if k not in every])
    for kind in wanted:
        if kind == "masks":
            # beside a refined layer a new raw one starts hidden: two label layers at 0.7 opacity blend
            # into colours of neither (a replaced layer keeps what the user chose, not what a run
            # without the CRF chose for it)
            from napari.layers import Labels

            # (a pyramid over a store always makes a new layer)
            before = None
            if output.refined is not None and not isinstance(output.labels, list):
                before = _target(
                    viewer, layer_names(source.name)[kind], kind, Labels, np.ndim(output.labels), source.image_id
                )[0]
            shown_by_run = before is not None and (before.metadata.get(META_KEY) or {}).get("shown_by_run")
            layers[kind] = _write_labels(
                viewer,
                source,
                kind,
                output.labels,
                output.features,
                output.checksums[kind],
                visible=output.refined is None,
            )
            if output.refined is None:  # the one result of this run: shown, even where a CRF run hid it
                layers[kind].visible = True
                layers[kind].metadata[META_KEY] = {**layers[kind].metadata[META_KEY], "shown_by_run": True}
            elif shown_by_run and layers[kind] is before:
                layers[kind].visible = False
        elif kind == "crf" and output.refined is not None:
            layers[kind] = _write_labels(
                viewer, source, kind, output.refined, output.features_refined, output.checksums[kind]
            )
        elif kind == "boxes":
            layers[kind] = _write_boxes(viewer, source, output.boxes, output.box_features)
    for layer in layers.values():
        _lift_above_image(viewer, source, layer)
    for res in output.results:
        res.meta.setdefault("layers", {}).update({k: layer.name for k, layer in layers.items()})
        shown = "crf" if output.refined is not None else "masks"  # the layer that shows this run
        if shown in layers:
            others = [
                viewer.layers[n]
                for k, n in res.meta["layers"].items()
                if k not in ("boxes", shown) and n in viewer.layers
            ]
            # seen in either label layer of the run (the raw one ticked to compare): nothing to say
            why = _unseen(layers[shown])
            res.meta["unseen"] = None if why is None or any(_unseen(ly) is None for ly in others) else why
    return layers


def _lift_above_image(viewer, source: PlaneSource, layer) -> None:
    """Move an output written in place that lies under its opaque image (the photo was removed and
    opened again) to just above the image and the outputs of it already there: under it a run's
    result would not show. Under an image the user made see-through, outputs stay where they are."""
    if source.name not in viewer.layers:
        return
    image = viewer.layers.index(source.name)
    at = viewer.layers.index(layer)
    if at > image or float(getattr(viewer.layers[image], "opacity", 1.0)) < 1.0:
        return
    dest = image + 1
    while dest < len(viewer.layers) and _of_image(viewer.layers[dest], source.name):
        dest += 1
    viewer.layers.move(at, dest)


def _of_image(layer, image_name: str) -> bool:
    info = (getattr(layer, "metadata", None) or {}).get(META_KEY)
    return isinstance(info, dict) and info.get("kind") in ("masks", "crf", "boxes") and info.get("image") == image_name


def _hide_stale(viewer, source: PlaneSource, kinds) -> None:
    """Hide our unedited layers of ``kinds`` for this image that the run does not write (a CRF
    layer after a run without the CRF, boxes after one without them): what shows is this run's
    result. They stay in the layer list, as every earlier output does."""
    from napari.layers import Labels, Shapes

    for kind in kinds:
        layer_type = Shapes if kind == "boxes" else Labels
        layer, _ = _target(viewer, layer_names(source.name)[kind], kind, layer_type, image_id=source.image_id)
        if layer is not None:
            layer.visible = False
            # a new dict: napari's Duplicate Layer copies metadata shallowly, and the copy is not stale
            layer.metadata[META_KEY] = {**layer.metadata[META_KEY], "hidden_stale": True}  # shown again when written


def _follow_rename(viewer, source: PlaneSource) -> None:
    """Outputs of this image layer made before it was renamed: the unedited ones take the new name
    where it is free (and are replaced in place as usual), the others are hidden as stale, so that
    two runs of one photo do not blend on screen. Edited ones and lazy ones keep their names: they
    are never replaced, and an edited one stays as the user left it."""
    if source.image_id is None:
        return
    for layer in list(viewer.layers):
        info = (getattr(layer, "metadata", None) or {}).get(META_KEY)
        if not isinstance(info, dict) or info.get("image_id") != source.image_id:
            continue
        if info.get("image") == source.name or info.get("kind") not in ("masks", "crf", "boxes"):
            continue
        if not _named_as_output(layer.name, layer_names(str(info.get("image")))[info["kind"]]):
            continue  # a copy the user made (Duplicate Layer copies metadata) or renamed: theirs
        if info.get("lazy"):
            layer.visible = False  # like an earlier big result of the same name (_write_labels)
            continue
        if is_edited(layer):
            continue
        new = layer_names(source.name)[info["kind"]]
        if new not in viewer.layers:
            layer.name = new
            layer.metadata[META_KEY] = {**info, "image": source.name}
        else:
            layer.visible = False
            layer.metadata[META_KEY] = {**info, "hidden_stale": True}


def _named_as_output(name: str, base: str) -> bool:
    """Whether ``name`` is ``base`` or one of the names :func:`_target` gives next to it."""
    return name == base or (name.startswith(f"{base} [") and name.endswith("]") and name[len(base) + 2 : -1].isdigit())


def _show_if_hidden_stale(layer) -> None:
    if (layer.metadata.get(META_KEY) or {}).get("hidden_stale"):
        layer.visible = True


def kept_layers_note(output: LayerOutput) -> str | None:
    """One line when a run wrote beside a layer of its name instead of into it (the user edited
    it, or made it: it is kept), saying where the run's output is; None when every output went to
    its own name. Reads ``meta["layers"]`` that :func:`write_layers` sets."""
    names = layer_names(output.source.name)
    written = (output.results[0].meta.get("layers") or {}) if output.results else {}
    moved = [(names[k], name) for k, name in written.items() if k in names and name != names[k]]
    if not moved:
        return None
    if isinstance(output.labels, list):  # a big result is never replaced: the layers walked past are no edits
        where = ", ".join(f"'{name}'" for _, name in moved)
        return f"a big result (in a zarr store) is never replaced: this run is in {where}, the earlier ones hidden"
    return "; ".join(f"kept your {_kept(base, name)}, this run is in '{name}'" for base, name in moved)


def _kept(base: str, name: str) -> str:
    """The layers a run written to ``name`` (``base [n]``, see :func:`_target`) walked past."""
    n = int(name[len(base) + 2 : -1])
    kept = [f"'{base}'"] + [f"'{base} [{k}]'" for k in range(2, n)]
    return " and ".join(kept) if len(kept) <= 2 else f"{kept[0]} to {kept[-1]}"


def _unseen(layer) -> str | None:
    """Why a label layer of a run shows none of it, as the user set it (a replaced layer keeps its
    eye and its *show selected* choice), or None."""
    if not layer.visible:
        return f"'{layer.name}' is hidden: tick its eye in the layer list to see this run"
    selected = int(layer.selected_label)
    if getattr(layer, "show_selected_label", False) and selected not in set(layer.features.get("label", [])):
        return f"'{layer.name}' shows only label {selected}, which this run does not have: untick its 'show selected'"
    return None


def unseen_layer_note(output: LayerOutput) -> str | None:
    """One line when no label layer of this run shows it as the user set them (the one that shows
    the run hidden, or showing only a selected label the run lacks; the raw one not ticked): without
    a word a rerun looks as if nothing happened. Reads ``meta["unseen"]`` that :func:`write_layers` sets."""
    return output.results[0].meta.get("unseen") if output.results else None


def label_map_note(output: LayerOutput) -> str | None:
    """One line when the segmented layer looks like a mask or label map, not a photo (its first
    plane, when in memory: :func:`~napari_gardenseg._image_arrays.looks_like_label_map`), so
    that instances which follow its few colours are not taken for the model's view of a photo."""
    from ._image_arrays import looks_like_label_map, one_colour

    if not output.source.planes or not looks_like_label_map(output.source.plane(0)):
        return None
    colour = one_colour(output.source.plane(0))
    if colour is not None:
        return f"'{output.source.name}' is one colour throughout ({colour}): a blank image"
    return f"'{output.source.name}' looks like a mask or label map, not a photo: its instances follow its colours"


def colour_planes_note(output: LayerOutput) -> str | None:
    """One line when the segmented layer is three or four 8- or 16-bit grey planes of one size,
    as napari's own reader opens a colour TIFF stored band by band (planar, channel first):
    each plane was segmented in grey, without the colour the plant stage and the model use,
    while ``gs.segment`` and ``gardenseg segment`` read such an image as one colour photo."""
    source = output.source
    shape, dtype = tuple(source.data.shape), np.dtype(source.data.dtype)
    if source.rgb or len(shape) != 3 or shape[0] not in (3, 4) or dtype not in (np.uint8, np.uint16):
        return None
    name = source.name
    return (
        f"'{name}' is {shape[0]} grey planes, segmented without colour; if they are the red, green and blue "
        "of one photo (a TIFF stored band by band), add it as a colour image and segment that: "
        f"viewer.add_image(np.moveaxis(viewer.layers[{name!r}].data, 0, -1), rgb=True)"
    )


def output_kinds(output: LayerOutput, *, boxes: bool = False) -> list[str]:
    """The layers a run writes: "masks", then "crf" (CRF on) and "boxes" (asked for)."""
    return ["masks"] + (["crf"] if output.refined is not None else []) + (["boxes"] if boxes else [])


# -- all three, for the console ------------------------------------------------------


def segment_layer(
    layer,
    model=DEFAULT_MODEL,
    *,
    viewer=None,
    stack: bool = False,
    boxes: bool = False,
    progress: ProgressFn | None = None,
    cancel=None,
    **options,
):
    """Segment an Image layer and show the result as Labels layers (synchronously).

    ``layer``: a napari Image layer, or its name in ``viewer``; ``model``: a
    :class:`~napari_gardenseg.Model` or anything :func:`~napari_gardenseg.load_model`
    takes. ``stack=False`` segments the plane on screen of a stack (the viewer's
    current point); ``stack=True`` every plane. ``progress(fraction, message)`` and
    ``cancel`` are :func:`~napari_gardenseg.segment`'s.

    ``segment_layer(viewer.layers["garden"], model="garden")`` adds (or
    updates) ``"garden masks"`` and, with the CRF on, ``"garden masks (CRF)"``;
    ``boxes=True`` adds a Shapes layer of the detection boxes. ``viewer``
    defaults to the open viewer that holds ``layer`` (for a name, the current
    one). What the widget's status line would add (a kept layer, why little
    was found) is warned and kept in ``result.meta["notes"]``. Other keyword
    arguments (``options``) are the options of :func:`napari_gardenseg.segment` (``score_threshold``,
    ``mask_threshold``, ``classes``, ``crf``, ``crf_params``, ``device``,
    ``tile_size``, ``scale``...; see :class:`~napari_gardenseg._options.SegmentOptions`).

    Returns the :class:`~napari_gardenseg.SegmentationResult` of the plane, or
    with ``stack=True`` a list of them, one per plane (one for a 2-D layer; their ids are local to
    each plane; the layers' ids are unique across the stack, see the
    ``axis_<i>`` feature columns). ``result.meta["layers"]`` names the layers
    written. A run that fails or is cancelled changes no layer.

    Raises TypeError or ValueError for an unknown or bad option (before anything is
    read), TypeError for a ``layer`` that is not a napari layer or a name (its data);
    RuntimeError when ``viewer`` is None and no napari viewer is open;
    KeyError for a layer name ``viewer`` does not have; ValueError for a layer not
    in ``viewer`` or not an Image layer; :class:`~napari_gardenseg.ImageError` for
    a layer that is not a 2-D image or a stack of them (empty, one spatial axis, a
    grey + alpha or colour image shown as a stack of slivers); what
    :func:`~napari_gardenseg.segment` raises (ModelError, DeviceError,
    CRFUnavailableError, Cancelled...); OSError when a plane too big for memory
    needs a results folder that cannot be written into.
    """
    import warnings

    avoid_triton_llvm_clash()
    opts = SegmentOptions.from_kwargs(**options)  # bad options fail before anything is read
    from napari.layers import Layer

    if not isinstance(layer, (str, Layer)):
        raise TypeError(
            f"layer must be a napari layer or its name, got {type(layer).__name__}: pass the layer "
            "(viewer.layers['photo']), not its data, or call gs.segment(array) for an array"
        )
    if viewer is None:
        viewer = _viewer_of(layer)
    if isinstance(layer, str):
        if layer not in viewer.layers:
            names = ", ".join(repr(each.name) for each in viewer.layers) or "none"
            raise KeyError(f"no layer named {layer!r} in this viewer; its layers: {names}")
        layer = viewer.layers[layer]
    if layer not in viewer.layers:  # its labels would land in a viewer without their image
        raise ValueError(f"layer {layer.name!r} is not in this viewer: pass viewer= the viewer that shows it")
    dims = viewer.dims
    source = plane_source(layer, point=dims.point, displayed=dims.displayed, margins=view_margins(dims), stack=stack)
    output = run_planes(source, model, opts, progress=progress, cancel=cancel)
    write_layers(viewer, output, boxes=boxes)
    notes = run_notes(output)
    for result in output.results:
        result.meta["notes"] = notes
    for note in notes:  # what the widget's status line says
        warnings.warn(note, stacklevel=2)
    # stack=True: a list however many planes (one for a 2-D layer), so a loop over layers works on each
    return output.results if stack else output.results[0]


def _viewer_of(layer):
    """The open napari viewer that holds ``layer`` (a Layer), else the current one."""
    import napari

    if not isinstance(layer, str):
        for viewer in list(getattr(napari.Viewer, "_instances", ())):
            if layer in viewer.layers:
                return viewer
    viewer = napari.current_viewer()
    if viewer is None:
        raise RuntimeError("no napari viewer is open; pass viewer=... to segment_layer")
    return viewer


def run_notes(output: LayerOutput) -> list[str]:
    """What a run's user should know beyond its count (the widget's status line, the console's
    warnings): a layer kept and where this run went; a colour image split into grey planes, why
    nothing or little was found (:func:`~napari_gardenseg._hints.status_hint`), or a label map."""
    from ._hints import status_hint

    # not a photo: that first; under a projection a hint about the plane segmented (blank, nothing
    # found) would be read as one about the planes on screen: the view note says which was segmented
    hint = colour_planes_note(output)
    if hint is None and not output.source.projected:
        hint = label_map_note(output) or status_hint(output.results)
    source = output.source
    notes = (kept_layers_note(output), unseen_layer_note(output), source.view_note, source.display_note, hint)
    return [n for n in notes if n]
