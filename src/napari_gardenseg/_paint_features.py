"""An output Labels layer's ``features`` kept true while the user paints it.

napari shows a label's row of ``features`` under the cursor; after a brush stroke, a fill or
an erase, the rows of the ids it touched would be stale (old areas, a deleted instance still
listed, "[No Properties]" for a new id). :func:`follow_paint` updates them from napari's own
record of each edit (its undo history: which pixels changed, from which ids, to which id), so
the cost follows the pixels painted, never the image size:

- ``area`` and ``centroid_y`` / ``centroid_x`` of every touched id change by the pixels it
  gained and lost (centroids: the running mean, pixels of the plane);
- an id that lost all its pixels loses its row (kept aside: an undo, or the same id painted
  again, brings it back with its class and score);
- an id painted by hand gets a row with ``source`` "painted", class_id -1, no class name and
  no score (as the Labels writer's table, :data:`~napari_gardenseg._label_writer.UNKNOWN_INSTANCE`),
  and in a stack the plane it was painted in.

Undo and redo are followed too: napari emits no ``paint`` event for them, so a change of the
history's lengths seen at the next refresh (``set_data``) says which edit was undone or
redone. Where that cannot be told (several steps while the layer was hidden), the rows are
recomputed from the data, as they are when new data is set on the layer from the console
(``layer.data = ...``). A rerun gives new data together with its own features and history
(:func:`replace_data`).

Centroids are running means of unrounded sums; an id left with under half the pixels its sums
were last exact for is read again from the pixels (one pass), so the table's rounding never
grows with a shrink.
"""

from __future__ import annotations

import weakref

import numpy as np

from ._label_writer import UNKNOWN_INSTANCE

__all__ = ["follow_paint", "follow_if_ours", "replace_data", "apply_edit", "recompute_features"]


# (len(undo history), len(redo history), the item on top of each) as last seen, per layer
_seen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# {label id: its row} of the instances each layer's edits removed
_removed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# {label id: [row sum, column sum, area when last exact]} of the ids each layer's edits touched: the
# table's centroids are rounded, and a rounded mean times an area that then shrinks is off by the shrink
_sums: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# layers whose data replace_data is setting (with features of their own: nothing to recompute)
_replacing: weakref.WeakSet = weakref.WeakSet()
# layers given new data from the console: napari keeps their history, whose edits were of other data
_history_of_other_data: weakref.WeakSet = weakref.WeakSet()


def follow_paint(layer) -> None:
    """Keep ``layer.features`` (a napari Labels layer of this plugin's output: columns ``index``,
    ``label``, ``area``, ``centroid_y``, ``centroid_x``, ...) true through painting, filling,
    erasing, undo and redo. Connecting twice is harmless (napari ignores a second connection)."""
    layer.events.paint.connect(_on_paint)
    layer.events.set_data.connect(_on_refresh)
    layer.events.data.connect(_on_new_data)
    _remember(layer)


def follow_if_ours(layer) -> bool:
    """:func:`follow_paint` for a Labels layer this plugin wrote or read (a batch's label file
    opened with its reader: ``metadata`` under this plugin's key, ``features`` with ``label``
    and ``area``); the widgets call it for the layers of their viewer. True when followed."""
    from napari.layers import Labels

    from ._layers import META_KEY

    features = getattr(layer, "features", None)
    if not isinstance(layer, Labels) or META_KEY not in layer.metadata or features is None:
        return False
    if not {"label", "area"} <= set(features.columns) or isinstance(layer.data, list) or layer.multiscale:
        return False
    follow_paint(layer)
    return True


def replace_data(layer, data, features) -> None:
    """Set new ``data`` and its ``features`` on ``layer`` in place, as a rerun does, with an
    empty undo and redo history: napari's ``Labels.data`` setter keeps the history, so an undo
    would otherwise write the earlier data's ids into the new labels."""
    _replacing.add(_unwrapped(layer))
    try:
        layer.data = data
    finally:
        _replacing.discard(_unwrapped(layer))
    layer.features = features
    _forget_history(layer)


def _forget_history(layer) -> None:
    reset = getattr(_unwrapped(layer), "_reset_history", None)  # private in napari; absent -> nothing to replay
    if reset is not None:
        reset()
    _removed.pop(layer, None)
    _sums.pop(layer, None)
    _history_of_other_data.discard(_unwrapped(layer))
    _remember(layer)


def _history(layer):
    # private in napari (Labels._undo_history / _redo_history); absent -> undo not followed
    layer = _unwrapped(layer)
    return getattr(layer, "_undo_history", None), getattr(layer, "_redo_history", None)


def _unwrapped(layer):
    """The layer itself, not the proxy napari gives plugins: napari has no public way to read or
    reset a Labels layer's undo history, and through the proxy each read logs a deprecation
    warning on every run for the user to see. tests/test_layers.py and test_paint_features.py
    fail if napari renames these attributes."""
    return getattr(layer, "__wrapped__", layer)


def _remember(layer) -> None:
    undo, redo = _history(layer)
    if undo is None or redo is None:
        return
    _seen[layer] = (len(undo), len(redo), id(undo[-1]) if undo else None, id(redo[-1]) if redo else None)


def _on_paint(event) -> None:
    layer = event.source
    _apply_item(layer, event.value, forward=True)
    _remember(layer)


def _on_new_data(event) -> None:
    """New data set on the layer by anyone but :func:`replace_data` (``layer.data = ...`` from
    the console, or the same array again after changing it in place): its rows read again."""
    layer = event.source
    if layer in _replacing or isinstance(layer.data, list) or layer.multiscale:
        return
    _read_again(layer)
    _history_of_other_data.add(layer)  # an undo now replays an edit of the old data: read the pixels again
    _remember(layer)


def _on_refresh(event) -> None:
    layer = event.source
    undo, redo = _history(layer)
    before = _seen.get(layer)
    if undo is None or redo is None or before is None:
        return
    n_undo, n_redo, top_undo, top_redo = before
    if (len(undo), len(redo)) == (n_undo, n_redo) and (id(undo[-1]) if undo else None) == top_undo:
        return  # no edit since: a refresh for slicing, colour, ...
    if not undo and not redo:
        _removed.pop(layer, None)  # history reset: new data, whose features its setter gives
        _sums.pop(layer, None)
        _history_of_other_data.discard(layer)
    elif layer in _history_of_other_data:
        _read_again(layer)
    elif len(undo) == n_undo - 1 and len(redo) == n_redo + 1:
        _apply_item(layer, redo[-1], forward=False)  # undone: redo holds it, atoms reversed
    elif len(redo) == n_redo - 1 and len(undo) in (n_undo, n_undo + 1) and top_redo is not None:
        _apply_item(layer, undo[-1], forward=True)  # redone (a full undo deque keeps its length)
    else:
        _read_again(layer)
    _remember(layer)


def _read_again(layer) -> None:
    """``layer``'s rows read again from its pixels, for what cannot be followed edit by edit."""
    updated = recompute_features(layer.data, layer.features, removed=_removed.setdefault(layer, {}))
    layer.features = _measures(layer, updated)
    _sums.pop(layer, None)


def _measures(layer, table):
    """:func:`measured_again` by what the layer's metadata records (its run's or its file's)."""
    from ._layers import META_KEY

    return measured_again(table, layer.metadata.get(META_KEY) or {})


def measured_again(table, about: dict):
    """``table`` with its ``area_mm2``, ``map_x``, ``map_y`` and ``area_m2`` made again from its
    ``area`` and centroid (after edits), by the ``pixel_size`` and ``map_grid`` (with
    ``ground_pixel_m2``) that ``about`` (a layer's metadata) records; as it is without them."""
    from ._georeference import with_map_columns
    from ._pixel_size import PixelSize, with_areas_mm2

    table = with_areas_mm2(table, PixelSize.from_record(about.get("pixel_size")))
    if table is None or about.get("map_grid") is None:
        return table
    return with_map_columns(table, tuple(about["map_grid"]), about.get("ground_pixel_m2"))


def _apply_item(layer, item, *, forward: bool) -> None:
    deltas: dict = {}
    for atom in item:
        _atom_deltas(atom, forward, deltas)
    features = layer.features
    sums = _sums.setdefault(layer, {})
    updated = _apply_deltas(features, deltas, _removed.setdefault(layer, {}), sums)
    if updated is features:
        return
    halved = [k for k in deltas if k in sums and deltas[k][0] < 0 and _area(updated, k) * 2 < sums[k][2]]
    if halved:  # napari emits ``paint`` before writing a single edit's pixels, after a stroke's
        pending = None if _written(layer.data, item, forward) else deltas
        updated = _exact_centroids(layer.data, updated, halved, sums, pending)
    layer.features = _measures(layer, updated)


def _area(table, k: int) -> int:
    at = (table["label"] == k).to_numpy() if "label" in table else np.zeros(0, bool)
    return int(table["area"].to_numpy()[at][0]) if at.any() and "area" in table else 0


def _written(data, item, forward: bool) -> bool:
    """Whether ``data`` already holds the edit ``item`` (napari history atoms), judged at one
    pixel that the edit changes."""
    for atom in item:
        if hasattr(atom, "slice_key"):  # every pixel under its mask (or of its box) changed
            old = np.asarray(atom.old_values)
            if not old.size:
                continue
            pos = (
                (0,) * len(atom.slice_key)
                if atom.mask is None
                else np.unravel_index(int(np.argmax(atom.mask)), atom.mask.shape)
            )
            at = tuple(int(s.start or 0) + int(p) for s, p in zip(atom.slice_key, pos))
            return int(np.asarray(data)[at]) == int(atom.new_value if forward else old.flat[0])
        indices, old, new = atom
        old = np.asarray(old).ravel()
        new = np.broadcast_to(np.asarray(new), old.shape)
        j = np.flatnonzero(old != new)
        if j.size:
            at = tuple(int(np.asarray(i).ravel()[j[0]]) for i in indices)
            return int(np.asarray(data)[at]) == int((new if forward else old)[j[0]])
    return True


def _exact_centroids(data, table, ids: list[int], sums: dict, pending: dict | None = None):
    """``table`` with the centroids of ``ids`` read from ``data``'s pixels (one pass), plus the
    ``pending`` changes ({id: [pixels, row sum, column sum, ...]}) that ``data`` does not hold
    yet; ``sums`` (see ``_sums``) updated in place."""
    if not ids or "centroid_y" not in table:
        return table
    data = np.asarray(data)
    found = np.nonzero(np.isin(data, ids))
    labels = data[found]
    table = table.copy()
    for k in ids:
        at = labels == k
        d = (pending or {}).get(k, (0, 0.0, 0.0))
        area = int(at.sum()) + d[0]
        row = (table["label"] == k).to_numpy()
        if area > 0 and row.any():
            sy, sx = float(found[-2][at].sum()) + d[1], float(found[-1][at].sum()) + d[2]
            sums[k] = [sy, sx, area]
            table.loc[row, "centroid_y"] = round(sy / area, 2)
            table.loc[row, "centroid_x"] = round(sx / area, 2)
    return table


def _add(deltas: dict, k: int, sign: int, area: int, sy: float, sx: float, at=None) -> None:
    d = deltas.setdefault(int(k), [0, 0.0, 0.0, None])
    d[0] += sign * int(area)
    d[1] += sign * float(sy)
    d[2] += sign * float(sx)
    if sign > 0 and d[3] is None and at is not None:
        d[3] = tuple(int(v) for v in at)


def _mask_sums(mask, starts):
    """(pixels, sum of rows, sum of columns, first pixel) of a boolean box whose corner is at
    ``starts``: from per-row and per-column counts, so a fill of a whole photo costs no
    coordinate arrays."""
    rows = mask.sum(axis=tuple(a for a in range(mask.ndim) if a != mask.ndim - 2))
    cols = mask.sum(axis=tuple(range(mask.ndim - 1)))
    area = int(rows.sum())
    if area == 0:
        return 0, 0.0, 0.0, None
    sy = float(rows @ (np.arange(len(rows)) + starts[-2]))
    sx = float(cols @ (np.arange(len(cols)) + starts[-1]))
    at = np.asarray(np.unravel_index(int(np.argmax(mask)), mask.shape)) + starts
    return area, sy, sx, at


def _atom_deltas(atom, forward: bool, deltas: dict) -> None:
    """Add one napari Labels history atom's change of each id (pixels, sums of rows and
    columns gained minus lost) to ``deltas``. The atom is a ``_MaskedPaintAtom`` (slice_key,
    mask, old_values, new_value) or a tuple (indices, previous values, new value(s));
    ``forward`` False undoes it."""
    sign = 1 if forward else -1
    if hasattr(atom, "slice_key"):
        starts = np.asarray([s.start or 0 for s in atom.slice_key], np.int64)
        old = np.asarray(atom.old_values)
        if atom.mask is None:  # every pixel of the box changed; old_values is the box
            mask, box = np.ones(old.shape, bool), old
        else:
            mask, box = atom.mask, None
        changed = _mask_sums(mask, starts)
        _add(deltas, int(atom.new_value), sign, *changed)
        if old.size and old.min() == old.max():  # a fill, or a brush over one instance
            _add(deltas, int(old.flat[0]), -sign, *changed)
            return
        if box is None:
            box = np.zeros(mask.shape, old.dtype)
            box[mask] = old
        for k in np.unique(old):
            _add(deltas, int(k), -sign, *_mask_sums(mask & (box == k), starts))
        return
    indices, old, new = atom
    coords = np.stack([np.asarray(i, np.int64).ravel() for i in indices], axis=1)
    old = np.asarray(old).ravel().astype(np.int64)
    new = np.broadcast_to(np.asarray(new), old.shape).astype(np.int64)
    for values, s in ((new, sign), (old, -sign)):
        ids, first, inv = np.unique(values, return_index=True, return_inverse=True)
        area = np.bincount(inv, minlength=len(ids))
        sy = np.bincount(inv, weights=coords[:, -2], minlength=len(ids))
        sx = np.bincount(inv, weights=coords[:, -1], minlength=len(ids))
        for j, k in enumerate(ids):
            _add(deltas, int(k), s, area[j], sy[j], sx[j], coords[first[j]])


def apply_edit(features, coords, old, new, *, removed: dict | None = None):
    """``features`` after the pixels at ``coords`` went from ids ``old`` to ids ``new``.

    features: pandas DataFrame with ``index`` (napari's key) and ``label``, optionally
    ``area`` (int pixels), ``centroid_y`` / ``centroid_x`` (pixels of the plane: the last two
    axes) and ``axis_<k>`` (a stack's plane). coords: (N, ndim) int pixel indices of the layer's
    data; old, new: (N,) ids, 0 the background. Changes are summed, so a pixel listed twice (a
    stroke crossing itself: a -> b, then b -> c) counts as a -> c. ``removed`` ({id: row},
    updated in place) receives the rows of ids that lost all their pixels and gives back the
    row of an id that reappears. Returns a new DataFrame (rows ordered by id), or ``features``
    itself when no id changed.
    """
    old = np.asarray(old, np.int64).ravel()
    deltas: dict = {}
    _atom_deltas((tuple(np.asarray(coords, np.int64).reshape(len(old), -1).T), old, new), True, deltas)
    return _apply_deltas(features, deltas, removed)


def _apply_deltas(features, deltas: dict, removed: dict | None, sums: dict | None = None):
    """``features`` with each id's [pixels, row sum, column sum, first pixel] change applied;
    ``sums`` (see ``_sums``; updated in place) holds the running sums unrounded."""
    import pandas as pd

    deltas = {k: d for k, d in deltas.items() if k > 0 and (d[0] or d[1] or d[2])}
    if not deltas:
        return features
    table = features.copy() if features is not None and len(features.columns) else pd.DataFrame()
    key = "label" if "label" in table else "index" if "index" in table else None
    rows = {} if key is None else {int(k): i for i, k in enumerate(table[key].to_numpy()) if not pd.isna(k)}
    area = table["area"].to_numpy(np.int64, copy=True) if "area" in table else None
    cy = table["centroid_y"].to_numpy(float, copy=True) if "centroid_y" in table else None
    cx = table["centroid_x"].to_numpy(float, copy=True) if "centroid_x" in table else None
    new_rows, gone = [], []
    for k, (d_area, d_y, d_x, at) in sorted(deltas.items()):
        i = rows.get(k)
        if i is None:
            if d_area > 0:  # an id the table does not have: back from removed, or painted
                if sums is not None:
                    sums[k] = [d_y, d_x, d_area]
                row = _painted_row(table, k, d_area, d_y / d_area, d_x / d_area, at)
                if removed and k in removed:
                    row = {**removed.pop(k), **{c: row[c] for c in ("area", "centroid_y", "centroid_x") if c in row}}
                new_rows.append(row)
            continue
        if area is None:
            continue
        before, after = int(area[i]), int(area[i]) + d_area
        if after <= 0:
            gone.append(i)
            if removed is not None:
                removed[k] = table.iloc[i].to_dict()
            if sums is not None:
                sums.pop(k, None)
            continue
        area[i] = after
        if cy is not None and cx is not None:
            # running mean; a row that had no pixels (or no centroid) takes the new pixels' mean
            had = before > 0 and np.isfinite(cy[i]) and np.isfinite(cx[i])
            base_y, base_x, ref = (cy[i] * before, cx[i] * before, before) if had else (0.0, 0.0, d_area)
            if had and sums is not None and k in sums:
                base_y, base_x, ref = sums[k]
            count = after if had else d_area
            if count > 0:
                if sums is not None:
                    sums[k] = [base_y + d_y, base_x + d_x, ref]
                cy[i] = round((base_y + d_y) / count, 2)
                cx[i] = round((base_x + d_x) / count, 2)
    if area is not None:
        table["area"] = area
    if cy is not None and cx is not None:
        table["centroid_y"], table["centroid_x"] = cy, cx
    table = table.drop(index=table.index[gone]) if gone else table
    if new_rows:
        table = pd.concat([table, pd.DataFrame(new_rows)], ignore_index=True)
        table = table.sort_values(key or "index", kind="stable")
    return _typed(table.reset_index(drop=True), features)


def _painted_row(table, label: int, area: int, cy: float, cx: float, at) -> dict:
    row = {
        "index": label,
        "label": label,
        **UNKNOWN_INSTANCE,
        "area": area,
        "centroid_y": round(cy, 2),
        "centroid_x": round(cx, 2),
    }
    if "area_refined" in table:
        row["area_refined"] = np.nan
    for col in table.columns:  # a stack's plane: the leading coordinates of the first pixel
        if col.startswith("axis_") and col[5:].isdigit() and int(col[5:]) < len(at) - 2:
            row[col] = int(at[int(col[5:])])
    return {c: v for c, v in row.items() if c in table.columns or not len(table.columns)}


def _typed(table, like):
    """``table`` with ``like``'s column order and numeric dtypes (concat makes integer columns
    float where a new row lacked them, and float32 float64)."""
    if like is None or not len(like.columns):
        return table
    for col in like.columns:
        kind = like[col].dtype.kind
        if col in table and (kind == "f" or (kind in "iu" and not table[col].isna().any())):
            table[col] = table[col].astype(like[col].dtype)
    return table[[c for c in like.columns if c in table]]


def recompute_features(data, features, *, removed: dict | None = None):
    """``features`` with area and centroid of every id read again from ``data`` (a napari
    Labels layer's data, numpy: 2-D or a stack of planes; the Labels writer's
    :func:`~napari_gardenseg._label_writer.instances_table` reads them): rows of absent ids
    dropped, ids without a row added as painted (or from ``removed``, as :func:`apply_edit`).
    For what cannot be followed edit by edit.
    """
    from ._label_writer import instances_table

    table = features.copy()
    for col in ("area", "centroid_y", "centroid_x"):
        if col in table:
            table[col] = 0 if col == "area" else np.nan
    deltas: dict = {}
    truth = instances_table(np.asarray(data))
    lead = [c for c in truth.columns if str(c).startswith("axis_")]
    for row in truth.to_dict("records"):
        (cy, cx), area = row["centroid"], int(row["area"])
        at = (*(row[c] for c in lead), round(cy), round(cx))  # a stack's plane, for a new row
        _add(deltas, int(row["label"]), 1, area, cy * area, cx * area, at)
    table = _apply_deltas(table, deltas, removed)
    if "area" in table:
        table = table[table["area"] > 0].reset_index(drop=True)
    return table
