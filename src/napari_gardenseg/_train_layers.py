"""Turn napari Image + Labels layers into training samples (no Qt, no viewer).

:func:`samples_from_layers` reads ``(image layer, labels layer)`` pairs and
returns the ``(image, labels, classes)`` triples that
:func:`napari_gardenseg.train` takes. :func:`candidate_pairs` finds which
Image layer goes with each Labels layer. Both only read the layers: they work
on anything with napari's layer attributes (``name``, ``data``, ``ndim``,
``rgb``, ``multiscale``, ``features``, ``world_to_data``, ``data_to_world``,
``scale``, ``translate``), so they can be tested without a viewer.

Only 2-D planes are trained on. For layers with more axes (a z-stack, a time
series), ``planes="current"`` takes the plane at the viewer's current position
(``point`` = ``viewer.dims.point``): the one the user sees and corrects;
``planes="labelled"`` takes every plane of a Labels layer that holds labels, each
with the image's plane at the same place in the world (a whole-stack segmentation's
planes include the model's uncorrected output). The last two axes of every layer
are taken as (Y, X).
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Sequence

import numpy as np

__all__ = [
    "samples_from_layers",
    "classes_from_features",
    "candidate_pairs",
    "parse_class_names",
    "plane_shape",
    "placement_note",
    "labelled_planes",
    "other_labelled_planes",
]


def plane_shape(layer) -> tuple[int, int]:
    """(H, W) of a layer's 2-D plane: its last two axes (before the colour axis of an RGB image)."""
    shape = tuple(_level0(layer).shape)
    if getattr(layer, "rgb", False):
        shape = shape[:-1]
    return tuple(int(v) for v in shape[-2:])


def _level0(layer):
    data = layer.data
    return data[0] if getattr(layer, "multiscale", False) else data


def labelled_planes(layer) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """``(leading-axis index, plane)`` of each plane of a Labels layer with more than two axes that
    holds labels: what ``planes="labelled"`` trains on. Reads the layer plane by plane, each once
    (the plane as read: a view of an array in memory)."""
    data = _level0(layer)
    for index in np.ndindex(*data.shape[:-2]):
        plane = np.asarray(data[index])
        if plane.any():
            yield index, plane


def other_labelled_planes(pairs: Sequence, point) -> str | None:
    """One line naming the planes of the pairs' Labels layers that hold labels besides the one at
    ``point`` (what ``planes="current"`` leaves out), with how to train on them; None when there
    are none. Only layers held in memory are looked through (a lazy stack would be read whole)."""
    from ._planes import current_plane

    notes = []
    for image_layer, labels_layer in pairs:
        data = _level0(labels_layer)
        if data.ndim <= 2 or not isinstance(data, np.ndarray):
            continue
        shown = current_plane(labels_layer, point, clip=False) if point is not None else None
        # named as the image's planes, where a slab of the stack has its own indices
        others = [
            current_plane(image_layer, _world_point(labels_layer, index, point), clip=False) or index
            for index, _ in labelled_planes(labels_layer)
            if index != shown
        ]
        if others:
            named = ", ".join(str(i[0]) if len(i) == 1 else str(i) for i in others[:6])
            notes.append(f"planes {named}{' ...' if len(others) > 6 else ''} of '{labels_layer.name}'")
    if not notes:
        return None
    return (
        f"{'; '.join(notes)} hold labels too and are not trained on: only the plane shown is; tick 'every "
        "labelled plane' to train on all of them"
    )


def _world_point(layer, index: tuple[int, ...], point) -> np.ndarray:
    """The world position of plane ``index`` of ``layer``, the viewer's ``point`` on axes the
    layer does not have."""
    world = np.asarray(layer.data_to_world(np.array([*index, 0, 0], dtype=float)), dtype=float)
    if point is None or len(point) <= len(world):
        return world
    full = np.asarray(point, dtype=float).copy()
    full[-len(world) :] = world
    return full


def _plane(layer, point=None) -> np.ndarray:
    """A copy of the layer's 2-D plane (H, W) or (H, W, C) at ``point`` (world coordinates)."""
    data = _level0(layer)
    rgb = bool(getattr(layer, "rgb", False))
    spatial = data.ndim - (1 if rgb else 0)
    if spatial < 2:
        raise ValueError(f"layer {layer.name!r} is not an image: its data has shape {tuple(data.shape)}")
    if spatial > 2:
        if point is None:
            raise ValueError(
                f"layer {layer.name!r} has {spatial} dimensions; training takes 2-D planes. "
                "Pass the viewer's position (point=viewer.dims.point) to take the current plane."
            )
        from ._planes import current_plane

        index = current_plane(layer, point, clip=False)
        if index is None:
            # e.g. the segmentation widget's one-plane slab of another plane than the one shown
            raise ValueError(
                f"layer {layer.name!r} has no plane at the viewer's current position; "
                "move the viewer to the plane you labelled"
            )
        data = data[index]
    # copy: training reads the arrays for minutes while the user may keep painting
    return np.array(data, copy=True)


def classes_from_features(features: Any) -> dict[int, str]:
    """``{label id: class name}`` from a Labels layer's ``features`` table.

    Reads the ``class_name`` column. Rows are matched to label ids by the
    ``label`` column (what the segmentation widget writes), else napari's
    ``index`` column, else by position as napari does (row ``i`` is label
    ``i``, row 0 the background). Empty, missing (NaN/None) names and label 0
    are skipped. Returns ``{}`` without a ``class_name`` column.
    """
    if features is None or "class_name" not in getattr(features, "columns", ()):
        return {}
    names = list(features["class_name"])
    if "label" in features.columns:
        ids = list(features["label"])
    elif "index" in features.columns:
        ids = list(features["index"])
    else:
        ids = list(range(len(names)))
    out: dict[int, str] = {}
    for k, name in zip(ids, names):
        if _missing(k) or _missing(name) or int(k) <= 0:
            continue
        name = str(name).strip()
        if name:
            out[int(k)] = name
    return out


def _painted_ids(features) -> set[int]:
    """Ids whose ``source`` is "painted" (a row the output layer gave an id painted by hand)."""
    from ._label_writer import PAINTED

    if features is None or "source" not in getattr(features, "columns", ()) or "label" not in features.columns:
        return set()
    return {int(k) for k, src in zip(features["label"], features["source"]) if src == PAINTED and not _missing(k)}


def _missing(value) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def parse_class_names(text: str | None, n_layers: int) -> list[str | None]:
    """One entry per layer from the widget's text: a name, or None (= read the layer's features).

    ``""`` -> features for every layer; ``"weed"`` -> every layer;
    ``"weed, rosette"`` -> one per layer in order (an empty entry, as in
    ``"weed,,rosette"``, reads that layer's features).
    """
    text = (text or "").strip()
    if not text:
        return [None] * n_layers
    names = [part.strip() or None for part in text.split(",")]
    if len(names) == 1:
        names = names * n_layers
    if len(names) != n_layers:
        raise ValueError(
            f"class names: got {len(names)} comma-separated names for {n_layers} selected Labels layer(s). "
            "Give one name for all layers, one per layer in list order, or leave it empty "
            "to read each layer's class_name feature."
        )
    for name in names:
        if name == "__background__":
            raise ValueError("'__background__' is reserved for label 0; choose another class name")
    return names


def classes_named(found: dict[int, str], ids: Sequence[int], name: str | None) -> dict[int, str] | str:
    """The classes of instances ``ids`` from a table's ``{id: class name}`` (``found``) and a
    class name a user gave (``name``): where the table names some and not others (a segmentation
    with plants painted since), ``name`` is the class of those without one and the others keep
    theirs; otherwise ``name`` is every instance's. Without ``name``, the table's (the caller
    has made sure it names every id)."""
    if name is None:
        return {k: found[k] for k in ids}
    missing = [k for k in ids if k not in found]
    return {k: found.get(k, name) for k in ids} if missing and len(missing) < len(ids) else name


def samples_from_layers(
    pairs: Sequence,
    class_names: str | Sequence[str | None] | None = None,
    *,
    point: Sequence[float] | None = None,
    planes: str = "current",
) -> list[tuple]:
    """Build :func:`napari_gardenseg.train` samples from ``(image layer, labels layer)`` pairs.

    ``class_names`` is a string parsed by :func:`parse_class_names` (one name
    for all instances, or comma-separated, one per pair) or a list with one
    entry per pair; ``None``/empty entries read the Labels layer's
    ``class_name`` feature (see :func:`classes_from_features`). In a layer
    whose features name the class of some instances but not of others (a
    segmentation with plants painted since), a name is the class of those
    without one, and the others keep theirs; otherwise of every instance.

    Layers with more than two axes: ``planes="current"`` takes the plane at
    ``point``, the viewer's position (``viewer.dims.point``), of both layers;
    ``planes="labelled"`` takes one sample per plane of the Labels layer that
    holds labels (:func:`labelled_planes`), with the image's plane at the same
    world position, so a pair may give several samples, in plane order (all of
    them held in memory).

    Raises ``ValueError`` naming the layer for: no pairs, ``planes`` other than
    "current" or "labelled", a layer that is not an integer label image, a shape
    mismatch, a labelled plane the image has no plane for, instances without a
    class name, no instances at all. The layers are only read; the arrays
    returned are copies.
    """
    if planes not in ("current", "labelled"):
        raise ValueError(f"planes must be 'current' or 'labelled', got {planes!r}")
    pairs = list(pairs)
    if not pairs:
        raise ValueError("no Labels layer selected: add a Labels layer with your masks and pick it in the list")
    if class_names is None or isinstance(class_names, str):
        names = parse_class_names(class_names, len(pairs))
    else:
        names = [(str(n).strip() or None) if n is not None else None for n in class_names]
        if len(names) != len(pairs):
            raise ValueError(f"class_names has {len(names)} entries for {len(pairs)} layer pairs")
    samples = []
    for (image_layer, labels_layer), name in zip(pairs, names):
        features = getattr(labels_layer, "features", None)
        found = classes_from_features(features)
        if planes == "labelled" and _level0(labels_layer).ndim > 2:
            for index, plane in labelled_planes(labels_layer):
                samples.append(_sample(image_layer, labels_layer, index, plane, point, name, found, features))
        else:
            samples.append(_sample(image_layer, labels_layer, (), None, point, name, found, features))
    if not any(np.any(lab > 0) for _, lab, _ in samples):
        which = ", ".join(repr(lab.name) for _, lab in pairs)
        elsewhere = other_labelled_planes(pairs, point) if planes == "current" else None
        if elsewhere is not None:  # the plane shown is empty, others are not
            raise ValueError(f"the plane shown of {which} holds no instances; {elsewhere}")
        raise ValueError(f"the selected Labels layer(s) {which} hold no instances (all labels are 0): paint some first")
    return samples


def _sample(image_layer, labels_layer, index, plane, point, name, found, features) -> tuple:
    """The ``(image, labels, classes)`` sample of ``plane``, plane ``index`` of ``labels_layer`` as
    read, and the image's plane at the same place (``()`` and None: the planes of both at ``point``)."""
    if index:
        labels = np.array(plane, copy=True)  # the user may paint on while training reads it
        at = _world_point(labels_layer, index, point)
        from ._planes import current_plane

        image_index = current_plane(image_layer, at, clip=False)
        if image_index is None:
            where = ", ".join(str(i) for i in index)
            raise ValueError(
                f"plane ({where}) of Labels layer {labels_layer.name!r} holds labels where image "
                f"{image_layer.name!r} has no plane; pair it with the stack it was drawn on, or erase that plane"
            )
        image = np.array(_level0(image_layer)[image_index], copy=True) if image_index else _plane(image_layer)
    else:
        labels = _plane(labels_layer, point)
        image = None
    if labels.dtype.kind not in "iub" or labels.ndim != 2:
        raise ValueError(
            f"layer {labels_layer.name!r} is not a 2-D integer label image "
            f"(plane of shape {labels.shape}, dtype {labels.dtype})"
        )
    if image is None:
        image = _plane(image_layer, point)
    hw = image.shape[:2] if getattr(image_layer, "rgb", False) else image.shape[-2:]
    if tuple(hw) != labels.shape:
        raise ValueError(
            f"Labels layer {labels_layer.name!r} is {labels.shape[0]}x{labels.shape[1]} but image "
            f"{image_layer.name!r} is {hw[0]}x{hw[1]}; pair each Labels layer with the image it was drawn on"
        )
    ids = [int(v) for v in np.unique(labels) if v > 0]
    missing = [k for k in ids if k not in found]
    if name is None and missing:
        by_hand = " (painted by hand)" if set(missing) <= _painted_ids(features) else ""
        what = (
            f": instances {missing[:5]}{' ...' if len(missing) > 5 else ''}{by_hand} have no class_name in its features"
            if found
            else " has no class_name feature"
        )
        them = "them (the others keep theirs)" if found else "this layer"
        raise ValueError(
            f"Labels layer {labels_layer.name!r}{what}. Type a class name for {them} "
            "(e.g. 'weed', or one name per layer separated by commas)."
        )
    return image, labels, classes_named(found, ids, name)


def candidate_pairs(image_layers: Sequence, labels_layers: Sequence) -> list[tuple[object, object, bool]]:
    """Which Image layer may go with each Labels layer: ``[(image, labels, preferred), ...]``.

    A Labels layer named after an image (its name is the image's name, alone or
    followed by a space, ``_``, ``-``, ``.``, ``[`` or ``(``: ``"<image>
    masks"``, ``"<image> refined"``, ``"<image>_labels"``; the longest image
    name wins, then the one of napari's copy number: ``"plot_labels [1]"`` goes
    with ``"plot [1]"``, the second photo named ``plot``) is paired with that image alone, if their
    planes have the same (H, W). Otherwise every Image layer of the same
    plane shape is a candidate; ``preferred`` is True when it is the only one.
    Labels layers with no candidate are left out.
    """
    out = []
    for lab in labels_layers:
        shape = plane_shape(lab)
        same = [im for im in image_layers if plane_shape(im) == shape]
        named = [(match, im) for im in same if (match := _named_after(lab.name, im.name)) is not None]
        if named:
            out.append((max(named, key=lambda pair: pair[0])[1], lab, True))
        else:
            out.extend((im, lab, len(same) == 1) for im in same)
    return out


def _plane_corners(layer) -> np.ndarray | None:
    """Where pixels (0, 0), (1, 0) and (0, 1) of the layer's first plane lie on screen (the last two
    world axes: scale, translate, rotate, shear and affine together); None without napari's transforms."""
    if not hasattr(layer, "data_to_world"):
        return None
    lead = [0] * (int(layer.ndim) - 2)
    corners = [layer.data_to_world(np.array([*lead, y, x], dtype=float)) for y, x in ((0, 0), (1, 0), (0, 1))]
    return np.array([np.asarray(c, dtype=float)[-2:] for c in corners])


def placement_note(pairs: Sequence) -> str | None:
    """One line when a pair's Labels layer lies elsewhere on screen than its image (another scale,
    translate, rotate...: napari's Convert to Labels or a script that gave no scale): training pairs
    pixels by index, so labels painted on screen would teach other pixels of the photo; None when
    every pair lines up. Right for a label file opened at scale 1 beside a photo placed in map units."""
    for image_layer, labels_layer in pairs:
        here, there = _plane_corners(labels_layer), _plane_corners(image_layer)
        if here is None or there is None or np.allclose(here, there, rtol=1e-6, atol=1e-6):
            continue

        def placed(layer) -> str:
            scale = tuple(float(v) for v in np.asarray(layer.scale)[-2:])
            translate = tuple(float(v) for v in np.asarray(layer.translate)[-2:])
            return f"scale {scale}, translate {translate}"

        return (
            f"'{labels_layer.name}' lies elsewhere on screen than '{image_layer.name}' ({placed(labels_layer)} "
            f"against {placed(image_layer)}): training pairs their pixels by index, not by what you saw under "
            f"the brush; if you painted it on screen over the photo, Cancel, give '{labels_layer.name}' the "
            "photo's scale and translate on its last two axes, and paint again"
        )
    return None


def unpaired_note(image_layers: Sequence, labels_layers: Sequence) -> str | None:
    """Why Labels layers are not offered for training (:func:`candidate_pairs` left them out: no
    Image layer has their plane's size), with what to do; None when every one is offered."""
    paired = {id(lab) for _, lab, _ in candidate_pairs(image_layers, labels_layers)}
    left = [lab for lab in labels_layers if id(lab) not in paired]
    if not left:
        return None

    def size(layer) -> str:
        return " × ".join(str(v) for v in plane_shape(layer))

    images = ", ".join(f"'{im.name}' {size(im)}" for im in image_layers[:3]) or "none is open"
    labels = ", ".join(f"'{lab.name}' {size(lab)}" for lab in left[:3])
    return (
        f"Labels not offered ({labels}): no image is of their size (images: {images}); training pairs "
        "pixels, so paint labels at the image's size (select the image, then napari's New Labels)"
    )


def _named_after(labels_name: str, image_name: str) -> tuple[int, bool] | None:
    """How well ``labels_name`` names the image ``image_name`` (larger is better), or None when it
    does not: ``"<image>"``, ``"<image> masks"``, ``"<image>_labels"``, ``"<image> [1]"``...: the
    image's name then a separator; also with napari's copy numbers taken off both names when they
    are the same (``"plot_labels [1]"`` and ``"plot [1]"``). (the length of the image name
    matched, whether the copy numbers are the same)."""
    labels_base, labels_copy = _copy_number(labels_name)
    image_base, image_copy = _copy_number(image_name)
    same_copy = labels_copy == image_copy
    lengths = [len(image_name)] if _prefixed(labels_name, image_name) else []
    if same_copy and _prefixed(labels_base, image_base):
        lengths.append(len(image_base))
    return (max(lengths), same_copy) if lengths else None


def _prefixed(labels_name: str, image_name: str) -> bool:
    rest = labels_name[len(image_name) :]
    return labels_name.startswith(image_name) and (rest == "" or rest[0] in " _-.[(")


_COPY_NUMBER = re.compile(r"(.*) \[(\d+)\]")


def _copy_number(name: str) -> tuple[str, int | None]:
    """A layer name without napari's `` [n]``, which it appends to a name already in the viewer, and n."""
    m = _COPY_NUMBER.fullmatch(name)
    return (m.group(1), int(m.group(2))) if m else (name, None)
