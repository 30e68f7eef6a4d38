"""An output layer's features follow painting, filling, erasing, undo and redo
(napari_gardenseg._paint_features). Plain napari layer models: no window, no Qt.

The reference is the Labels writer's table, read from the pixels afresh
(:func:`~napari_gardenseg._label_writer.instances_table`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

napari = pytest.importorskip("napari")
from napari.layers import Labels  # noqa: E402

from napari_gardenseg._label_writer import instances_table  # noqa: E402
from napari_gardenseg._paint_features import (  # noqa: E402
    apply_edit,
    follow_if_ours,
    follow_paint,
    recompute_features,
    replace_data,
)
from napari_gardenseg._plane_run import instance_features, split_areas  # noqa: E402


def _labels():
    data = np.zeros((40, 50), np.int32)
    data[5:15, 5:20] = 1
    data[20:35, 10:30] = 2
    data[8:12, 35:45] = 3
    return data


def _features(data):
    table = instances_table(data)
    table["class_id"] = [1, 2, 1]
    table["class_name"] = ["bean", "pea", "bean"]
    table["score"] = np.float32([0.9, 0.8, 0.7])
    table["source"] = ["model", "model", "colour"]
    return split_areas(instance_features(table))[0]


def _check(layer):
    """Every id's area and centroid as the pixels say, and the class of the model's ids kept."""
    truth = instances_table(layer.data)
    got = layer.features
    assert list(got["label"]) == list(truth["label"])
    assert list(got["index"]) == list(truth["label"])
    np.testing.assert_array_equal(got["area"], truth["area"])
    np.testing.assert_allclose(got["centroid_y"], [c[0] for c in truth["centroid"]], atol=0.011)
    np.testing.assert_allclose(got["centroid_x"], [c[1] for c in truth["centroid"]], atol=0.011)
    return got.set_index("label")


def _layer():
    data = _labels()
    layer = Labels(data, features=_features(data))
    follow_paint(layer)
    return layer


def test_a_brush_stroke_moves_area_and_centroid_and_a_new_id_gets_a_painted_row():
    layer = _layer()
    layer.brush_size = 5
    layer.paint((10, 18), 2)  # id 2 reaches into id 1
    rows = _check(layer)
    assert rows.loc[1, "area"] < 150 and rows.loc[2, "area"] > 300
    assert rows.loc[2, "class_name"] == "pea" and rows.loc[2, "source"] == "model"
    layer.paint((2, 45), 9)  # a new plant, painted by hand
    rows = _check(layer)
    assert rows.loc[9, "source"] == "painted" and rows.loc[9, "class_id"] == -1
    assert rows.loc[9, "class_name"] == "" and np.isnan(rows.loc[9, "score"])
    assert layer.features["label"].dtype.kind == "i" and layer.features["area"].dtype.kind == "i"
    # napari finds the new row under the cursor: no "[No Properties]"
    status = layer.get_status((2, 45))
    assert "painted" in (status["value"] if "value" in status else status["coordinates"])


def test_a_mouse_drag_is_one_edit_of_many_overlapping_dabs(MouseEvent):
    """The user's path: napari's own mouse callbacks in paint mode (napari's MouseEvent fixture)."""
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import mouse_move_callbacks, mouse_press_callbacks, mouse_release_callbacks

    layer = _layer()
    layer.brush_size, layer.mode, layer.selected_label = 4, "paint", 7

    def mouse(callbacks, kind, at):
        event = MouseEvent(type=kind, is_dragging=kind == "mouse_move", position=at, dims_point=(0, 0))
        callbacks(layer, ReadOnlyWrapper(event))

    mouse(mouse_press_callbacks, "mouse_press", (12, 5))
    for x in range(7, 45, 2):  # across id 1, each dab overlapping the last
        mouse(mouse_move_callbacks, "mouse_move", (12, x))
    mouse(mouse_release_callbacks, "mouse_release", (12, 44))
    assert len(layer._undo_history) == 1 and len(layer._undo_history[-1]) > 1  # one edit, many dabs
    rows = _check(layer)
    assert rows.loc[7, "source"] == "painted" and 0 < rows.loc[1, "area"] < 150
    layer.undo()
    layer.refresh()
    assert list(_check(layer).index) == [1, 2, 3]


def test_erasing_or_filling_an_instance_away_drops_its_row():
    layer = _layer()
    layer.fill((10, 40), 0)  # id 3 erased
    assert 3 not in set(_check(layer).index)
    layer.fill((10, 10), 2)  # id 1 merged into id 2
    rows = _check(layer)
    assert list(rows.index) == [2] and rows.loc[2, "area"] == 150 + 300


def test_undo_and_redo_are_followed():
    layer = _layer()
    before = layer.features.copy()
    layer.fill((10, 10), 3)  # id 1 becomes id 3
    after = _check(layer).copy()
    assert 1 not in after.index
    layer.undo()
    layer.refresh()  # napari emits no event for undo; the next refresh tells
    pd.testing.assert_frame_equal(layer.features, before)
    layer.redo()
    layer.refresh()
    pd.testing.assert_frame_equal(_check(layer), after)
    # several steps while the layer was hidden: read again from the pixels, classes kept
    layer.brush_size = 3
    for k in range(3):
        layer.paint((2 + 3 * k, 45), 10 + k)
    layer.visible = False
    layer.undo()
    layer.undo()
    layer.visible = True
    rows = _check(layer)
    assert list(rows.index) == [2, 3, 10] and rows.loc[3, "class_name"] == "bean"


def test_a_rerun_replacing_the_data_keeps_its_features_and_forgets_the_history(monkeypatch):
    layer = _layer()
    layer.paint((10, 18), 2)
    fresh = _labels()
    fresh[0:3, 0:3] = 7
    features = _features(_labels())  # as given, without id 7: nothing recomputes it
    import napari_gardenseg._paint_features as paint_features

    read_again = []
    real = paint_features.recompute_features
    monkeypatch.setattr(paint_features, "recompute_features", lambda *a, **k: read_again.append(1) or real(*a, **k))
    replace_data(layer, fresh, features)
    layer.refresh()
    pd.testing.assert_frame_equal(layer.features, features)
    assert not read_again  # a rerun's data comes with its rows: a big layer is not read again for nothing
    layer.undo()  # nothing to undo: the stroke belonged to the earlier data
    layer.refresh()
    assert (layer.data == fresh).all()
    pd.testing.assert_frame_equal(layer.features, features)


def test_data_set_from_the_console_gets_its_rows_read_again():
    """``layer.data = other`` (an instance removed, one added) or the same array again after
    changing it in place: no stale row lists a plant that is not there."""
    layer = _layer()
    other = _labels()
    other[other == 3] = 0
    other[30:38, 40:48] = 8
    layer.data = other
    rows = _check(layer)
    assert list(rows.index) == [1, 2, 8]
    assert rows.loc[2, "class_name"] == "pea" and rows.loc[8, "source"] == "painted"
    layer.data[layer.data == 1] = 0  # in place, then set again to show it (napari's idiom)
    layer.data = layer.data
    assert list(_check(layer).index) == [2, 8]
    # napari keeps the history over a data set: undoing an edit of the old data is read from the pixels
    layer = _layer()
    layer.brush_size = 5
    layer.paint((22, 12), 3)
    layer.data = _labels()
    layer.undo()  # writes the stroke's old ids into the new data
    layer.refresh()
    _check(layer)
    layer.paint((30, 45), 2)  # an edit of the new data is followed again
    _check(layer)


def test_a_stack_keeps_plane_columns_and_a_new_id_gets_its_plane():
    data = np.zeros((3, 20, 20), np.int32)
    data[0, 2:6, 2:6] = 1
    data[1, 4:10, 4:10] = 2
    table = instance_features(instances_table(data.max(axis=0)))
    table["axis_0"] = np.int64([0, 1])
    layer = Labels(data, features=table)
    follow_paint(layer)
    layer.selected_label = 5
    layer.data_setitem((np.array([2, 2]), np.array([15, 15]), np.array([15, 16])), 5)
    rows = layer.features.set_index("label")
    assert rows.loc[5, "axis_0"] == 2 and rows.loc[5, "area"] == 2
    assert rows.loc[5, "centroid_y"] == 15 and rows.loc[5, "centroid_x"] == 15.5
    assert list(rows["axis_0"]) == [0, 1, 2]


def test_centroids_stay_exact_when_an_instance_shrinks_to_a_few_pixels():
    """The table's centroids are rounded to 0.01 px; carried as a running mean, that rounding
    would grow with every shrink (a fill undone, most of a plant erased)."""
    data = np.zeros((300, 300), np.int32)
    data[9, 15] = 1  # a seedling of one pixel beside a big rosette
    data[50:250, 40:241] = 2
    table = instances_table(data)
    table["source"] = "model"
    layer = Labels(data, features=split_areas(instance_features(table))[0])
    follow_paint(layer)
    layer.fill((100, 100), 1)  # the rosette merged into the seedling...
    layer.undo()  # ...and taken back: id 1 shrinks from 40,201 pixels to one
    layer.refresh()
    rows = _check(layer)
    assert (rows.loc[1, "centroid_y"], rows.loc[1, "centroid_x"]) == (9.0, 15.0)
    # most of the rosette erased in one edit from the console: napari emits the edit before writing it
    keep = np.zeros(data.shape, bool)
    keep[50:53, 40:47] = True
    layer.data_setitem(np.nonzero((layer.data == 2) & ~keep), 0)
    _check(layer)
    # and bit by bit, with an eraser of 60 px
    layer.undo()
    layer.refresh()
    layer.brush_size = 40
    for y in range(70, 250, 40):
        for x in range(60, 250, 40):
            layer.paint((y, x), 0)
    rows = _check(layer)
    assert 0 < rows.loc[2, "area"] < 40_000 / 4


def test_apply_edit_sums_a_pixel_changed_twice():
    data = _labels()
    features = _features(data)
    # pixel (6, 6): 1 -> 3, then 3 -> 2 within one stroke
    out = apply_edit(features, [(6, 6), (6, 6)], [1, 3], [3, 2])
    rows = out.set_index("label")
    assert rows.loc[1, "area"] == 149 and rows.loc[2, "area"] == 301 and rows.loc[3, "area"] == 40
    assert apply_edit(features, [(6, 6)], [1], [1]) is features  # nothing changed


def test_recompute_reads_every_id_from_the_pixels():
    data = _labels()
    features = _features(data)
    data[0:3, 0:3] = 7  # painted while nobody looked
    data[data == 3] = 0
    layer = Labels(data, features=recompute_features(data, features))
    rows = _check(layer)
    assert rows.loc[7, "source"] == "painted" and rows.loc[1, "class_name"] == "bean"


def test_only_this_plugins_label_layers_are_followed_without_asking():
    data = _labels()
    ours = Labels(data.copy(), features=_features(data), metadata={"napari_gardenseg": {}})
    mine = Labels(data.copy(), features=_features(data))  # a user's own layer: left as it is
    bare = Labels(data.copy(), metadata={"napari_gardenseg": {}})  # no table to follow
    assert follow_if_ours(ours) and not follow_if_ours(mine) and not follow_if_ours(bare)
    for layer in (ours, mine):
        layer.fill((10, 40), 0)
    assert 3 not in set(ours.features["label"]) and 3 in set(mine.features["label"])
