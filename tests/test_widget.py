"""The "Garden segmentation" dock widget in a real napari window (Xvfb + Mesa).

Images are small crops of the shipped sample and the CRF is off except where a
test needs it, so each run takes about a second on a CPU. The bundled garden
model finds plants in these crops: runs assert at least one detection.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

pytest.importorskip("napari")
# torch's triton must load before Mesa's OpenGL (llvmpipe) is in the process, or
# it segfaults: importing torchvision here, at collection, runs before any viewer.
import torchvision.models.detection  # noqa: E402,F401

from napari_gardenseg import _inference, _widget_controls  # noqa: E402
from napari_gardenseg._sample_data import load_garden_sample  # noqa: E402
from napari_gardenseg._widget import CUSTOM, SegmentationWidget, register_model  # noqa: E402
from napari_gardenseg._widget_controls import _LIVE  # noqa: E402

pytestmark = pytest.mark.gui

RUN_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def sample():
    return load_garden_sample()


@pytest.fixture
def notes():
    """The error notifications shown since the test started (napari's notification manager)."""
    from napari.utils.notifications import NotificationSeverity, notification_manager

    start = len(notification_manager.records)
    return lambda: [n for n in notification_manager.records[start:] if n.severity == NotificationSeverity.ERROR]


@pytest.fixture
def errors(notes):
    """Messages of the error notifications shown."""
    return lambda: [str(n.message) for n in notes()]


def hidden(widget) -> bool:
    # magicgui's .visible is False for any widget of a window never shown (as here)
    return widget.native.isHidden()


def open_widget(viewer, qtbot) -> SegmentationWidget:
    _, widget = viewer.window.add_plugin_dock_widget("napari-gardenseg", "Garden segmentation")
    assert isinstance(widget, SegmentationWidget)
    assert len(widget.classes.choices) > 0  # the model's classes are read when it is chosen
    widget.crf.value = False
    return widget


def run(widget, qtbot, timeout=RUN_TIMEOUT_MS):
    widget.run.clicked()
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)
    assert widget.run.enabled and not widget.cancel.enabled


@pytest.fixture
def garden(make_napari_viewer, qtbot, sample):
    """A viewer with a 160x192 crop of the sample (scale 2, translated) and the widget docked."""
    viewer = make_napari_viewer()
    viewer.add_image(sample[40:200, 40:232], name="garden", scale=(2.0, 2.0), translate=(10.0, 20.0))
    return viewer, open_widget(viewer, qtbot)


def test_defaults_and_members(garden):
    viewer, w = garden
    assert w.model.value == "garden" and w.image.value is viewer.layers["garden"]
    values = [v for _, v in w.model._default_choices(w.model)]
    assert values[:3] == ["coco", "coco-v1", "garden"] and values[-1] == CUSTOM
    assert w.device.value == "auto" and "cpu" in w.device.choices
    assert set(w.classes.choices) == {"rosette", "flowering", "weed"}  # the checkpoint's classes
    assert hidden(w.crf_settings) and hidden(w.checkpoint)  # collapsed by default
    w.show_crf_settings.value = True
    assert not hidden(w.crf_settings)
    assert not w.stack.enabled  # a 2-D image has no planes to choose
    for name in ("score_threshold", "mask_threshold", "boxes", "cancel", "status", "merge_classes"):
        assert getattr(w, name) is not None
    assert (w.tile_mode.value, w.scale_mode.value, w.merge_classes.value) == ("off", "model", False)
    assert w.crf_settings.backend.value == "auto" and set(w.crf_settings.backend.choices) == {"auto", "torch", "pydensecrf"}
    assert hidden(w.tile_size) and hidden(w.scale)  # shown only for "size in pixels" / "factor"
    w.tile_mode.value = "size"
    w.scale_mode.value = "factor"
    assert not hidden(w.tile_size) and not hidden(w.scale)


def test_runs_end_to_end_and_rerun_replaces_in_place(garden, qtbot):
    viewer, w = garden
    w.boxes.value = True
    run(w, qtbot)
    masks = viewer.layers["garden masks"]
    assert "garden masks (CRF)" not in viewer.layers  # CRF off
    assert masks.data.shape == (160, 192) and masks.data.max() >= 1  # plants were found
    np.testing.assert_allclose(masks.scale, (2.0, 2.0))
    np.testing.assert_allclose(masks.translate, (10.0, 20.0))
    f = masks.features
    assert {"index", "label", "class_name", "score", "area"} <= set(f.columns)
    assert len(f) == int(masks.data.max()) >= 1
    assert set(f["class_name"]) <= {"rosette", "flowering", "weed"}
    assert (f["score"] >= 0.5).all() and (f["area"] > 0).all()
    assert sorted(set(np.unique(masks.data)) - {0}) == list(f["label"])
    assert f"{len(f)} instance" in w.status.value
    boxes = viewer.layers["garden boxes"]
    assert len(boxes.data) == len(f)

    n_first = len(f)
    w.score_threshold.value = float(f["score"].max())  # keeps only the best-scoring instance(s)
    run(w, qtbot)
    assert viewer.layers["garden masks"] is masks and viewer.layers["garden boxes"] is boxes
    assert [layer.name for layer in viewer.layers] == ["garden", "garden masks", "garden boxes"]
    assert 1 <= len(masks.features) == int(masks.data.max()) <= n_first


def test_an_edited_layer_survives_a_rerun(garden, qtbot):
    viewer, w = garden
    run(w, qtbot)
    masks = viewer.layers["garden masks"]
    assert masks.data.max() >= 1
    masks.paint((5, 5), 99, refresh=True)  # the user paints a correction
    painted = masks.data.copy()
    run(w, qtbot)
    assert viewer.layers["garden masks"] is masks
    np.testing.assert_array_equal(masks.data, painted)
    assert "garden masks [2]" in viewer.layers
    assert viewer.layers["garden masks [2]"].data.shape == (160, 192)
    np.testing.assert_array_equal(viewer.layers["garden masks [2]"].data[masks.data != 99], masks.data[masks.data != 99])


def test_cancel_stops_quickly_and_adds_no_layer(make_napari_viewer, qtbot, sample):
    viewer = make_napari_viewer()
    viewer.add_image(sample, name="garden")  # the full 768x1024 sample: a run of a few seconds
    w = open_widget(viewer, qtbot)
    w.run.clicked()
    qtbot.waitUntil(lambda: "Mask R-CNN" in w.status.value, timeout=30_000)
    import time

    t0 = time.perf_counter()
    w.cancel.clicked()
    qtbot.waitUntil(lambda: not w.running, timeout=10_000)
    assert time.perf_counter() - t0 < 2.0
    assert [layer.name for layer in viewer.layers] == ["garden"]
    assert "cancelled" in w.status.value and w.run.enabled


def test_stack_whole_and_current_plane(make_napari_viewer, qtbot, sample):
    viewer = make_napari_viewer()
    planes = np.stack([sample[0:128, 0:128], sample[128:256, 64:192], sample[256:384, 128:256]])
    viewer.add_image(planes, name="stack", rgb=True, scale=(5.0, 1.0, 1.0))
    w = open_widget(viewer, qtbot)
    assert w.stack.enabled

    w.stack.value = True
    run(w, qtbot)
    masks = viewer.layers["stack masks"]
    assert masks.data.shape == (3, 128, 128)
    f = masks.features
    assert set(f["axis_0"]) == {0, 1, 2}  # plants found in every plane
    assert list(f["label"]) == list(range(1, len(f) + 1))  # unique ids across the stack
    assert sorted(set(np.unique(masks.data)) - {0}) == list(f["label"])
    for label, z in zip(f["label"], f["axis_0"]):
        assert (masks.data[z] == label).any()

    viewer.dims.set_point(0, 10.0)  # world z = 10 -> plane 2
    w.stack.value = False
    run(w, qtbot)
    assert viewer.layers["stack masks"] is masks  # unedited: replaced in place
    assert masks.data.shape == (1, 128, 128) and masks.data.max() >= 1
    np.testing.assert_allclose(masks.translate, (10.0, 0, 0))


def test_crf_run_adds_the_refined_layer(garden, qtbot):
    viewer, w = garden
    w.crf.value = True
    w.crf_settings.iterations.value = 2
    run(w, qtbot)
    refined = viewer.layers["garden masks (CRF)"]
    masks = viewer.layers["garden masks"]
    assert refined.data.shape == (160, 192) and refined.data.max() >= 1
    assert list(refined.features["label"]) == list(masks.features["label"])
    for label, area in zip(refined.features["label"], refined.features["area"]):
        assert area == int((refined.data == label).sum())
    # the CRF moves pixels at the borders, not whole plants
    overlap = np.logical_and(refined.data > 0, masks.data > 0).sum()
    assert overlap >= 0.5 * (masks.data > 0).sum()


def test_coco_offline_error_then_still_usable(garden, qtbot, errors):
    viewer, w = garden
    w.model.value = "coco"
    qtbot.waitUntil(lambda: "person" in w.classes.choices, timeout=30_000)  # names without weights
    run(w, qtbot)
    assert any("COCO weights" in m for m in errors()), errors()
    assert [layer.name for layer in viewer.layers] == ["garden"]
    assert w.status.value.startswith("error")
    w.model.value = "garden"
    run(w, qtbot)
    assert viewer.layers["garden masks"].data.max() >= 1


def test_garbage_checkpoint_error(garden, qtbot, errors, tmp_path):
    viewer, w = garden
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"this is not a checkpoint" * 10)
    w.model.value = CUSTOM
    assert not hidden(w.checkpoint)
    w.checkpoint.value = bad
    assert "cannot read the model" in w.settings.value and w.classes.choices == ()
    run(w, qtbot)
    assert any(str(bad) in m for m in errors()), errors()
    assert len(viewer.layers) == 1 and w.run.enabled


def test_no_image_layer_error(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    w = open_widget(viewer, qtbot)
    run(w, qtbot)
    assert any("no image layer" in m for m in errors())


def test_crf_unavailable_error(garden, qtbot, errors, monkeypatch):
    from napari_gardenseg._widget_controls import crf_module

    monkeypatch.setattr(crf_module(), "crf_available", lambda: False)
    viewer, w = garden
    w.crf.value = True
    run(w, qtbot)
    assert any("pydensecrf" in m for m in errors()), errors()
    assert len(viewer.layers) == 1


def test_image_picker_follows_the_active_layer(garden, sample):
    viewer, w = garden
    other = viewer.add_image(sample[:64, :64], name="other")
    assert w.image.value is other
    viewer.add_labels(np.zeros((8, 8), np.int32), name="not an image")
    assert w.image.value is other  # a Labels layer does not change the choice
    viewer.layers.selection.active = viewer.layers["garden"]
    assert w.image.value is viewer.layers["garden"]
    viewer.layers.remove(other)
    assert [c for c in w.image.choices] == [viewer.layers["garden"]]


def test_registered_model_is_offered_and_used(garden, qtbot, tmp_path, monkeypatch):
    import shutil

    from napari_gardenseg._models import bundled_checkpoint

    monkeypatch.setattr(_widget_controls, "_REGISTERED", {})
    viewer, w = garden
    path = shutil.copy(bundled_checkpoint(), tmp_path / "mine.pt")
    value = register_model(path, "my garden")
    assert ("my garden (trained)", value) in w.model._default_choices(w.model)
    w.model.value = value
    assert len(w.classes.choices) == 3 and w.settings.value.startswith("from model mine")
    run(w, qtbot)
    assert viewer.layers["garden masks"].data.max() >= 1


def test_model_is_loaded_once_and_reused(garden, qtbot, monkeypatch):
    from napari_gardenseg import _models

    viewer, w = garden
    run(w, qtbot)
    loaded = w._loaded[1]
    calls = []
    real = _models.load_model
    monkeypatch.setattr(_models, "load_model", lambda m, **k: calls.append(m) or real(m, **k))
    run(w, qtbot)
    assert w._loaded[1] is loaded and calls and all(c is loaded for c in calls)
    w.device.value = "cpu"  # a new device (or model) drops the handle
    assert w._loaded is None


def test_segment_layer_from_the_console(make_napari_viewer, sample):
    from napari_gardenseg import segment_layer

    viewer = make_napari_viewer()  # the current viewer
    viewer.add_image(sample[:128, :128], name="garden")
    result = segment_layer(viewer.layers["garden"], model="garden", crf=False)
    assert viewer.layers["garden masks"].data.shape == (128, 128)
    assert len(result) == len(viewer.layers["garden masks"].features) >= 1
    np.testing.assert_array_equal(viewer.layers["garden masks"].data, result.labels)


def test_class_filter_reaches_segment(garden, qtbot, monkeypatch):
    seen = {}
    real = _inference.segment

    def spy(*a, **k):
        seen.update(k)
        return real(*a, **k)

    monkeypatch.setattr(_inference, "segment", spy)
    viewer, w = garden
    w.classes.value = ["weed"]
    run(w, qtbot)
    assert seen["classes"] == ["weed"] and seen["crf"] is False
    # napari resets a dock widget's choices when layers are added: the filter survives it
    assert "weed" in w.classes.choices and list(w.classes.value) == ["weed"]
    assert isinstance(seen["cancel"], threading.Event)
    assert set(viewer.layers["garden masks"].features["class_name"]) <= {"weed"}


def test_a_deleted_widget_lets_go_of_the_viewer(make_napari_viewer, qtbot, sample, tmp_path, monkeypatch):
    monkeypatch.setattr(_widget_controls, "_REGISTERED", {})
    viewer = make_napari_viewer()
    dock, w = viewer.window.add_plugin_dock_widget("napari-gardenseg", "Garden segmentation")
    viewer.window.remove_dock_widget(dock)
    w.native.deleteLater()
    qtbot.waitUntil(lambda: w not in _LIVE, timeout=5_000)
    viewer.add_image(sample[:32, :32], name="later")  # would reach the dead widget's slots
    viewer.layers.selection.active = viewer.layers["later"]
    register_model(tmp_path / "x.pt", "x")
