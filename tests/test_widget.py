"""The "Garden segmentation" dock widget in a real napari window (Xvfb + Mesa).

Images are small crops of the shipped sample and the CRF is off except where a
test needs it, so each run takes about a second on a CPU. The bundled garden
model finds plants in these crops: runs assert at least one detection.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading

import numpy as np
import pytest

pytest.importorskip("napari")
# torch's triton must load before Mesa's OpenGL (llvmpipe) is in the process, or
# it segfaults: importing torchvision here, at collection, runs before any viewer.
# With the engine (torch, pandas) imported, the widget reads the model's settings as it
# opens; the path of a fresh napari, where a job imports it first, has its own test.
import pandas  # noqa: E402,F401
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
    """A viewer with a 160x192 crop of the sample (scale 2, translated; it holds plants of all three
    classes) and the widget docked."""
    viewer = make_napari_viewer()
    viewer.add_image(sample[450:610, 40:232], name="garden", scale=(2.0, 2.0), translate=(10.0, 20.0))
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
    assert w.status.native.wordWrap()  # a hint after the count is read whole in a narrow dock
    assert (w.tile_mode.value, w.scale_mode.value, w.merge_classes.value) == ("off", "model", False)
    assert w.crf_settings.backend.value == "auto" and set(w.crf_settings.backend.choices) == {
        "auto",
        "numba",
        "torch",
        "pydensecrf",
    }
    assert hidden(w.tile_size) and hidden(w.overlap_mode) and hidden(w.scale)  # shown only when they apply
    w.tile_mode.value = "auto"
    assert hidden(w.tile_size) and not hidden(w.overlap_mode) and hidden(w.tile_overlap)
    w.overlap_mode.value = "pixels"
    assert not hidden(w.tile_overlap)
    w.overlap_mode.value = "default"
    # with a tile size shown, the overlap box starts at a quarter of it and stays under half
    w.tile_mode.value = "size"
    w.tile_size.value = 128
    w.overlap_mode.value = "pixels"
    assert w.tile_overlap.value == 32 and w.segment_options().tile_overlap == 32
    w.tile_overlap.value = 48
    w.tile_size.value = 64
    assert w.tile_overlap.value == 16
    w.overlap_mode.value = "default"
    w.tile_mode.value = "auto"
    w.tile_mode.value = "size"
    w.scale_mode.value = "factor"
    assert not hidden(w.tile_size) and not hidden(w.scale)
    # the controls take the ranges the engine takes (SegmentOptions)
    from napari_gardenseg._options import SCALE_RANGE

    assert (w.scale.min, w.scale.max) == SCALE_RANGE and w.mask_threshold.max < 1.0


def test_long_choices_do_not_widen_the_dock(garden):
    viewer, w = garden
    # a layer named after a long file, beside the models' long titles: the dock stays narrow, the
    # closed drop-down says the whole choice in its tooltip, and its list opens wide enough to read
    long_name = "10.9.1.246_pos-165-003-019_2020-12-11-15-05_top-down-field-photo-of-the-north-bed"
    viewer.add_image(np.zeros((8, 8, 3), np.uint8), name=long_name)
    w.image.value = viewer.layers[long_name]
    assert w.image.native.toolTip() == long_name
    combo = w.model.native
    widest = max(combo.fontMetrics().horizontalAdvance(combo.itemText(i)) for i in range(combo.count()))
    assert w.native.minimumSizeHint().width() < 450
    assert combo.minimumSizeHint().width() < widest
    assert combo.toolTip() == combo.currentText() == "Garden (bundled, offline)"
    combo.showPopup()
    try:
        assert combo.view().window().width() >= widest
    finally:
        combo.hidePopup()


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
    # the model's classes, and "plant" for plant-coloured patches no detection claimed (source "colour")
    assert set(f["class_name"]) <= {"rosette", "flowering", "weed", "plant"}
    assert (f["score"] >= 0.5).all() and (f["area"] > 0).all()
    assert sorted(set(np.unique(masks.data)) - {0}) == list(f["label"])
    assert f"{len(f)} instance" in w.status.value and "replaced" not in w.status.value
    boxes = viewer.layers["garden boxes"]
    assert len(boxes.data) == len(f)

    n_first = len(f)
    w.score_threshold.value = float(f["score"].max())  # keeps only the best-scoring instance(s)
    run(w, qtbot)
    assert viewer.layers["garden masks"] is masks and viewer.layers["garden boxes"] is boxes
    assert [layer.name for layer in viewer.layers] == ["garden", "garden masks", "garden boxes"]
    assert 1 <= len(masks.features) == int(masks.data.max()) <= n_first


def test_a_layer_that_looks_like_a_label_map_is_named_in_the_status(garden, qtbot):
    viewer, w = garden
    run(w, qtbot)
    assert "label map" not in w.status.value  # the photo crop is not taken for one
    # a colour label map of the same crop (three colours on black), as a folder's *_mask.png opens
    crop = np.asarray(viewer.layers["garden"].data)
    painted = np.zeros_like(crop)
    ids = viewer.layers["garden masks"].data
    assert ids.max() >= 1
    for i, colour in enumerate([(0, 200, 0), (200, 0, 0), (0, 0, 200)]):
        painted[(ids > 0) & (ids % 3 == i)] = colour
    viewer.add_image(painted, name="garden_mask")
    w.image.value = viewer.layers["garden_mask"]
    run(w, qtbot)
    assert "'garden_mask' looks like a mask or label map, not a photo" in w.status.value
    # a blank frame is no mask
    viewer.add_image(np.full_like(crop, 128), name="blank")
    w.image.value = viewer.layers["blank"]
    run(w, qtbot)
    assert "'blank' is one colour throughout (128, 128, 128): a blank image" in w.status.value


def test_a_colour_photo_opened_as_three_planes_is_named_in_the_status(garden, qtbot):
    viewer, w = garden
    crop = np.asarray(viewer.layers["garden"].data)
    viewer.add_image(np.moveaxis(crop, -1, 0), name="planar")  # napari's reader on a band-by-band TIFF
    assert not viewer.layers["planar"].rgb and viewer.layers["planar"].data.shape[0] == 3
    w.image.value = viewer.layers["planar"]
    run(w, qtbot)
    said = "'planar' is 3 grey planes, segmented without colour; if they are the red, green and blue"
    assert said in w.status.value and "np.moveaxis(viewer.layers['planar'].data, 0, -1), rgb=True" in w.status.value
    w.image.value = viewer.layers["garden"]  # the colour photo itself gets no such line
    run(w, qtbot)
    assert "grey planes" not in w.status.value


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
    assert "kept your 'garden masks', this run is in 'garden masks [2]'" in w.status.value
    assert viewer.layers["garden masks [2]"].data.shape == (160, 192)
    np.testing.assert_array_equal(
        viewer.layers["garden masks [2]"].data[masks.data != 99], masks.data[masks.data != 99]
    )


def test_a_rerun_reads_no_private_attribute_through_napari_s_proxy(garden, qtbot, recwarn):
    # napari hands plugins a proxy that warns on private access (removed no earlier than 0.10): the
    # undo-history reset read it on every run, a warning for the user each time
    viewer, w = garden
    run(w, qtbot)
    run(w, qtbot)  # the rerun resets the masks' undo history
    assert not [str(m.message) for m in recwarn.list if "Private attribute access" in str(m.message)]


def test_data_replaced_during_a_run_is_said(garden, qtbot, sample):
    viewer, w = garden
    layer = viewer.layers["garden"]
    before = layer.data
    w.run.clicked()  # the job has the array it segments; the user then opens another image into the layer
    layer.data = sample[:100, :120].copy()
    qtbot.waitUntil(lambda: not w.running, timeout=RUN_TIMEOUT_MS)
    masks = viewer.layers["garden masks"]
    assert masks.data.shape == before.shape[:2] and masks.data.max() >= 1  # the labels of what was segmented
    assert "the data of 'garden' was replaced during the run" in w.status.value


def test_an_image_moved_renamed_or_removed_during_a_run(garden, qtbot):
    # the labels lie on the image as it is when they are written, named after its name then (they
    # kept the geometry and name of when Run was pressed: 4x the image's size after a rescale, and
    # a rerun left the old-named layers behind)
    viewer, w = garden
    layer = viewer.layers["garden"]
    w.run.clicked()
    layer.scale, layer.translate, layer.name = (0.5, 0.25), (100, -20), "bed 3"
    layer.rotate = 30
    qtbot.waitUntil(lambda: not w.running, timeout=RUN_TIMEOUT_MS)
    masks = viewer.layers["bed 3 masks"]
    assert masks.data.max() >= 1 and "garden masks" not in viewer.layers
    np.testing.assert_allclose(masks.scale, (0.5, 0.25))
    np.testing.assert_allclose(masks.translate, (100, -20))
    np.testing.assert_allclose(masks.rotate, layer.rotate)
    w.run.clicked()
    viewer.layers.remove(layer)
    qtbot.waitUntil(lambda: not w.running, timeout=RUN_TIMEOUT_MS)
    assert "'bed 3' was removed during the run" in w.status.value


def test_closing_the_dock_during_a_run_stops_it_and_adds_no_layer(make_napari_viewer, qtbot, sample):
    # napari's close button takes the widget out of its dock and deletes the dock, not the widget:
    # the run went on and its layers were added after the widget was gone
    viewer = make_napari_viewer()
    viewer.add_image(sample, name="garden")
    w = open_widget(viewer, qtbot)
    w.run.clicked()
    job = w._job
    viewer.window.remove_dock_widget("all")
    qtbot.waitUntil(lambda: not job.running, timeout=RUN_TIMEOUT_MS)
    qtbot.wait(100)
    assert job.cancel.is_set() and [layer.name for layer in viewer.layers] == ["garden"]


def test_a_widget_docked_again_from_a_script_runs_again(make_napari_viewer, qtbot, sample):
    # closing its dock stops a run, not the widget: a script may dock it again (it stayed "running")
    viewer = make_napari_viewer()
    viewer.add_image(sample[:160, :192], name="garden")
    w = SegmentationWidget(viewer)
    qtbot.waitUntil(lambda: w.ready, timeout=RUN_TIMEOUT_MS)
    w.crf.value = False
    dock = viewer.window.add_dock_widget(w, name="script")
    run(w, qtbot)
    viewer.window.remove_dock_widget(dock)
    qtbot.wait(100)
    viewer.window.add_dock_widget(w, name="script again")
    viewer.layers.remove("garden masks")
    run(w, qtbot)
    assert viewer.layers["garden masks"].data.max() >= 1 and "instance" in w.status.value


def test_cancel_stops_the_run_and_adds_no_layer(make_napari_viewer, qtbot, sample):
    viewer = make_napari_viewer()
    viewer.add_image(sample, name="garden")  # the full 768x1024 sample: a run of a few seconds
    w = open_widget(viewer, qtbot)
    w.run.clicked()
    qtbot.waitUntil(lambda: "Mask R-CNN" in w.status.value, timeout=30_000)
    w.cancel.clicked()  # how soon it stops: benchmarks/bench_widget_responsiveness.py
    qtbot.waitUntil(lambda: not w.running, timeout=10_000)
    assert [layer.name for layer in viewer.layers] == ["garden"]
    assert "cancelled" in w.status.value and w.run.enabled


def test_the_progress_bars_cancel_in_the_activity_dock_stops_the_run(make_napari_viewer, qtbot, sample):
    # napari's cancelable_progress calls its callback only while iterated; the job's bar is moved
    # by hand, so its Cancel said "Canceled" and the run went on to add its layers
    from napari._qt.widgets.qt_progress_bar import QtLabeledProgressBar

    viewer = make_napari_viewer()
    viewer.add_image(sample, name="garden")
    w = open_widget(viewer, qtbot)
    w.run.clicked()
    qtbot.waitUntil(lambda: "Mask R-CNN" in w.status.value, timeout=30_000)
    bars = [b for b in viewer.window._qt_window.findChildren(QtLabeledProgressBar) if b.progress is not None]
    assert bars
    for bar in bars:
        bar.cancel_button.click()
    assert w.status.value == "cancelling…" and not w.cancel.enabled
    qtbot.waitUntil(lambda: not w.running, timeout=10_000)
    assert [layer.name for layer in viewer.layers] == ["garden"]
    assert "cancelled" in w.status.value and w.run.enabled


def test_stack_whole_and_current_plane(make_napari_viewer, qtbot, sample, tmp_path):
    viewer = make_napari_viewer()
    # three 128 px crops of the sample, each holding plants
    planes = np.stack([sample[512:640, 0:128], sample[128:256, 64:192], sample[256:384, 128:256]])
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
    # saved through the writer, its table names plane 2 (it said 0), and it opens there again
    import pandas as pd

    from napari_gardenseg._napari_reader import read_label_layers

    path = tmp_path / "slab_labels.tif"
    viewer.layers.selection = {masks}
    viewer.layers.save(str(path), selected=True, plugin="napari-gardenseg")
    assert set(pd.read_csv(tmp_path / "slab_labels_instances.csv")["axis_0"]) == {2}
    [(data, meta, _)] = read_label_layers(str(path))
    # on its plane in the world, as the layer lay (it came back at z 2, the index, not 10)
    assert data.shape == (1, 128, 128) and meta["translate"] == (10.0, 0.0, 0.0) and meta["scale"] == (5.0, 1.0, 1.0)
    # the user browses on while a current-plane run goes: the run says where its labels lie (it
    # said only its count, the labels out of sight)
    viewer.dims.set_point(0, 0.0)
    w.run.clicked()
    viewer.dims.set_point(0, 5.0)
    qtbot.waitUntil(lambda: not w.running, timeout=RUN_TIMEOUT_MS)
    assert "these labels lie on plane (0,) of 'stack'" in w.status.value
    assert "the view shows its plane (1,): move the slider back" in w.status.value


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
    # the refined layer is what shows; the raw one starts hidden, and a rerun keeps the user's choice
    assert refined.visible and not masks.visible
    masks.visible = True
    run(w, qtbot)
    assert viewer.layers["garden masks"] is masks and masks.visible


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
    assert any("no image layer" in m and "Open Sample > Garden segmentation" in m for m in errors())
    assert w.status.value.startswith("error: no image layer")
    viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="photo")  # the error is of the earlier choice
    assert w.status.value == "ready"


def test_crf_backend_unavailable_error(garden, qtbot, errors, monkeypatch):
    from napari_gardenseg.crf import CRFUnavailableError, _pydensecrf

    def missing():
        raise CRFUnavailableError("pydensecrf is not installed (pip install pydensecrf2)")

    monkeypatch.setattr(_pydensecrf, "densecrf", missing)
    viewer, w = garden
    w.crf.value = True
    w.crf_settings.backend.value = "pydensecrf"
    run(w, qtbot)
    [message] = errors()
    assert "pydensecrf is not installed" in message and "backend 'auto' or 'torch'" in message
    assert len(viewer.layers) == 1 and w.status.value.startswith("error: pydensecrf")


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


def test_registered_model_is_chosen_when_asked_unless_running(garden, tmp_path, monkeypatch):
    import shutil

    from napari_gardenseg._models import bundled_checkpoint

    monkeypatch.setattr(_widget_controls, "_REGISTERED", {})
    _, w = garden
    first = register_model(shutil.copy(bundled_checkpoint(), tmp_path / "a.pt"), "a")
    assert w.model.value == "garden"  # offered, not chosen
    register_model(tmp_path / "a.pt", "a", select=True)
    assert w.model.value == first
    w._run_when_ready = True  # a run waiting for torch keeps the model it was started with
    register_model(shutil.copy(bundled_checkpoint(), tmp_path / "b.pt"), "b", select=True)
    w._run_when_ready = False
    assert w.model.value == first


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


def test_the_widget_modules_do_not_import_torch():
    # napari imports them when a widget opens: torch and torchvision (seconds) load in a job after
    import subprocess
    import sys

    code = (
        "import sys, napari_gardenseg._widget, napari_gardenseg._train_widget, napari_gardenseg._adapt_widget; "
        "print(sorted({'torch', 'torchvision', 'pandas'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_widget_opens_at_once_and_a_run_waits_for_torch(make_napari_viewer, qtbot, sample, monkeypatch):
    from napari_gardenseg import _worker
    from napari_gardenseg._models import model_info

    release = threading.Event()
    real = _worker.load_engine

    def slow_load(modules, **kwargs):
        assert release.wait(30)
        return real(modules, **kwargs)

    monkeypatch.setattr(_worker, "imported", lambda modules: False)  # as in a fresh napari
    monkeypatch.setattr(_worker, "load_engine", slow_load)
    viewer = make_napari_viewer()
    viewer.add_image(sample[450:610, 40:232], name="garden")
    _, w = viewer.window.add_plugin_dock_widget("napari-gardenseg", "Garden segmentation")
    assert not w.ready and "loading torch" in w.settings.value and w.status.value.startswith("loading torch")
    assert not w.score_threshold.enabled and not w.crf_settings.enabled  # the model's values are not shown yet
    assert list(w.device.choices) == ["auto", "cpu"]
    w.crf.value = False
    w.model.value = "coco"  # chosen while loading: read once torch is in
    w.model.value = "garden"
    w.run.clicked()
    assert w.running and w.cancel.enabled and "starts when torch has loaded" in w.status.value
    w.cancel.clicked()  # takes the waiting run back
    assert not w.running and w.status.value.startswith("cancelled")
    w.run.clicked()
    release.set()
    qtbot.waitUntil(lambda: w.ready, timeout=30_000)
    assert w.score_threshold.enabled and w.crf_settings.enabled and "cpu" in w.device.choices
    assert w.settings.value == "from model garden: mask threshold, CRF"
    assert w.mask_threshold.value == model_info("garden")[1]["mask_threshold"]
    qtbot.waitUntil(lambda: not w.running, timeout=RUN_TIMEOUT_MS)  # the waiting run started by itself
    assert w.status.value.split()[1].startswith("instance") and int(w.status.value.split()[0]) > 0
    assert viewer.layers["garden masks"].data.max() > 0


def test_segment_layer_from_the_console(make_napari_viewer, sample):
    from napari_gardenseg import segment_layer

    viewer = make_napari_viewer()  # the current viewer
    viewer.add_image(sample[128:256, 64:192], name="garden")
    result = segment_layer(viewer.layers["garden"], model="garden", crf=False)
    assert viewer.layers["garden masks"].data.shape == (128, 128)
    assert len(result) == len(viewer.layers["garden masks"].features) >= 1
    np.testing.assert_array_equal(viewer.layers["garden masks"].data, result.labels)
    # the layer's own viewer, not the current one; a layer of no viewer given is refused
    other = make_napari_viewer()  # now the current viewer
    segment_layer(viewer.layers["garden"], model="garden", crf=False)
    assert "garden masks" not in other.layers
    from napari.layers import Image

    with pytest.raises(ValueError, match="not in this viewer"):
        segment_layer(Image(sample[:64, :64], name="loose"), model="garden", viewer=other, crf=False)
    with pytest.raises(TypeError, match=r"pass the layer \(viewer.layers\['photo'\]\), not its data"):
        segment_layer(viewer.layers["garden"].data, model="garden", crf=False)
    # what the status line would say is warned: a kept edited layer, and where this run went
    viewer.layers["garden masks"].data[0, 0] = 99
    with pytest.warns(UserWarning, match=r"kept your 'garden masks', this run is in 'garden masks \[2\]'"):
        again = segment_layer(viewer.layers["garden"], model="garden", crf=False)
    assert any("garden masks [2]" in n for n in again.meta["notes"])
    viewer.layers["garden masks [2]"].data[0, 0] = 99  # edited too: both are named as kept
    with pytest.warns(
        UserWarning, match=r"kept your 'garden masks' and 'garden masks \[2\]', this run is in 'garden masks \[3\]'"
    ):
        segment_layer(viewer.layers["garden"], model="garden", crf=False)


def test_class_filter_reaches_segment(garden, qtbot, monkeypatch):
    seen = {}
    real = _inference.segment_with

    def spy(image, model, options, **k):
        seen.update(k, options=options)
        return real(image, model, options, **k)

    monkeypatch.setattr(_inference, "segment_with", spy)
    viewer, w = garden
    w.classes.value = ["weed"]
    run(w, qtbot)
    assert seen["options"].classes == ("weed",) and seen["options"].crf is False
    # napari resets a dock widget's choices when layers are added: the filter survives it
    assert "weed" in w.classes.choices and list(w.classes.value) == ["weed"]
    assert isinstance(seen["cancel"], threading.Event)
    found = viewer.layers["garden masks"].features["class_name"]
    assert len(found) >= 1 and set(found) == {"weed"}  # the crop has a weed; only weeds are kept


def _bound_to(emitter, widget) -> list:
    """``emitter``'s callbacks bound to ``widget`` (napari keeps a method as (weakref(obj), name))."""
    found = []
    for cb in emitter.callbacks:
        obj = cb[0]() if isinstance(cb, tuple) and callable(cb[0]) else getattr(cb, "__self__", None)
        if obj is widget:
            found.append(cb)
    return found


def test_a_deleted_widget_lets_go_of_the_viewer(make_napari_viewer, qtbot, sample, tmp_path, monkeypatch):
    monkeypatch.setattr(_widget_controls, "_REGISTERED", {})
    viewer = make_napari_viewer()
    dock, w = viewer.window.add_plugin_dock_widget("napari-gardenseg", "Garden segmentation")
    emitters = [viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.selection.events.active]
    open_ = [len(_bound_to(e, w)) for e in emitters]
    viewer.window.remove_dock_widget(dock)
    w.native.deleteLater()
    qtbot.waitUntil(lambda: w not in _LIVE, timeout=5_000)
    # napari drops a callback into a deleted Qt object quietly, so the widget's own must be gone
    # (one per emitter; magicgui's reset_choices link may stay)
    assert [len(_bound_to(e, w)) for e in emitters] == [n - 1 for n in open_] and min(open_) >= 1
    viewer.add_image(sample[:32, :32], name="later")  # would reach the dead widget's slots
    viewer.layers.selection.active = viewer.layers["later"]
    register_model(tmp_path / "x.pt", "x")


# -- what is shown is what runs ------------------------------------------------------


def _shown_crf(w) -> dict:
    return {c.name: c.value for c in w.crf_settings}


def test_settings_follow_the_chosen_model_at_once(garden, tmp_path):
    import dataclasses

    from napari_gardenseg._models import load_model, model_info
    from napari_gardenseg._widget_controls import crf_module

    _, w = garden
    stored = model_info("garden")[1]["crf"]
    defaults = crf_module().CRFParams()
    assert stored["bilateral_srgb"] != defaults.bilateral_srgb  # the test needs a setting that differs
    # garden stores CRF settings: they are shown as soon as the widget opens
    shown = _shown_crf(w)
    for name, value in stored.items():
        assert shown[name] == (tuple(value) if isinstance(value, list) else value), name
    # labelled in words, the API's name in the tooltip
    assert all(
        c.label != c.name and f"CRFParams.{c.name}" in c.tooltip
        for c in w.crf_settings
        if c.name not in ("iterations", "backend")
    )
    assert w.crf_settings.gaussian_sxy.label == "smoothness width (px)"
    assert w.settings.value == "from model garden: mask threshold, CRF"
    assert w.mask_threshold.value == model_info("garden")[1]["mask_threshold"] < 0.5  # its own, as segment runs it
    run_with = dataclasses.asdict(w.crf_params())  # what Run hands the engine: the shown settings
    for name, value in load_model("garden", device="cpu").meta["crf"].items():
        assert run_with[name] == (tuple(value) if isinstance(value, list) else value), name

    # a model without stored settings: the engine's defaults, said so (synchronously: no waiting)
    w.crf_settings.bilateral_srgb.value = 42.0
    w.score_threshold.value = 0.9
    assert w.settings.value == "from model garden: mask threshold, CRF, edited"
    w.model.value = "coco"
    assert _shown_crf(w) == {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)}
    assert w.score_threshold.value == 0.5 and w.mask_threshold.value == 0.5
    assert w.settings.value == "defaults (model coco stores none)"
    assert "person" in w.classes.choices

    w.model.value = "garden"  # back: its own settings again, not the edited ones
    assert _shown_crf(w)["bilateral_srgb"] == stored["bilateral_srgb"]
    assert w.score_threshold.value == 0.5


def test_stored_thresholds_are_shown(garden, tmp_path):
    import torch

    from napari_gardenseg._models import bundled_checkpoint

    _, w = garden
    ck = torch.load(bundled_checkpoint(), weights_only=True)
    ck["meta"] = {**ck["meta"], "score_threshold": 0.35, "mask_threshold": 0.4}
    del ck["meta"]["crf"]
    path = tmp_path / "thresholds.pt"
    torch.save(ck, path)
    w.model.value = register_model(path, "thresholds")
    assert (w.score_threshold.value, w.mask_threshold.value) == (0.35, 0.4)
    assert w.settings.value == "from model thresholds: score threshold, mask threshold"
    options = w.segment_options()
    assert (options.score_threshold, options.mask_threshold) == (0.35, 0.4)
    # a stored threshold the slider cannot show is said, and the other stored settings still applied
    # (it raised half way through, leaving the package's CRF settings beside the default threshold)
    ck["meta"] = {**ck["meta"], "mask_threshold": 0.9995}
    torch.save(ck, tmp_path / "edge.pt")
    w.model.value = register_model(tmp_path / "edge.pt", "edge")
    assert w.mask_threshold.value == 0.5 and w.score_threshold.value == 0.35
    assert "stored mask_threshold cannot be shown" in w.settings.value


def test_models_in_the_user_models_folder_are_offered(garden, user_models):
    import shutil

    from napari_gardenseg._models import bundled_checkpoint

    _, w = garden
    user_models.mkdir(parents=True)
    path = shutil.copy(bundled_checkpoint(), user_models / "my_roses.pt")
    w.model.reset_choices()  # napari does this when the dock widget is shown or layers change
    choices = dict(w.model._default_choices(w.model))
    assert choices["my_roses (my models)"] == str(path.resolve())
    w.model.value = str(path.resolve())
    assert w.settings.value == "from model my_roses: mask threshold, CRF"  # a copy of garden: its meta


def test_widget_api_and_cli_give_the_same_labels(make_napari_viewer, qtbot, sample, tmp_path):
    """Same model ("garden"), same (its stored) settings: identical labels from the three entry points."""
    import tifffile
    from PIL import Image

    from napari_gardenseg import cli, segment

    crop = np.ascontiguousarray(sample[40:200, 40:232])
    viewer = make_napari_viewer()
    viewer.add_image(crop, name="garden")
    _, w = viewer.window.add_plugin_dock_widget("napari-gardenseg", "Garden segmentation")
    w.device.value = "cpu"
    assert w.crf.value and w.settings.value == "from model garden: mask threshold, CRF"
    run(w, qtbot)
    shown_masks = viewer.layers["garden masks"].data
    shown_crf = viewer.layers["garden masks (CRF)"].data

    api = segment(crop, "garden", device="cpu")
    Image.fromarray(crop).save(tmp_path / "crop.png")
    assert (
        cli.main(
            [
                "segment",
                str(tmp_path / "crop.png"),
                "--model",
                "garden",
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    cli_masks = tifffile.imread(tmp_path / "out" / "crop_labels.tif")
    cli_crf = tifffile.imread(tmp_path / "out" / "crop_labels_crf.tif")

    assert api.labels.max() >= 1 and api.refined is not None
    np.testing.assert_array_equal(shown_masks, api.labels)
    np.testing.assert_array_equal(shown_crf, api.refined)
    np.testing.assert_array_equal(cli_masks, api.labels)
    np.testing.assert_array_equal(cli_crf, api.refined)


def test_engine_options_reach_segment(garden, qtbot, monkeypatch):
    seen = []
    real = _inference.segment_with

    def spy(image, model, options, **k):
        seen.append(dataclasses.asdict(options) | {"crf_params": options.crf_params})
        return real(image, model, options, **k)

    monkeypatch.setattr(_inference, "segment_with", spy)
    viewer, w = garden
    run(w, qtbot)
    assert (seen[-1]["tile_size"], seen[-1]["scale"], seen[-1]["merge_classes"]) == (None, None, False)  # defaults

    w.tile_mode.value = "size"
    w.tile_size.value = 128
    w.scale_mode.value = "factor"
    w.scale.value = 1.0
    w.merge_classes.value = True
    run(w, qtbot)
    assert (seen[-1]["tile_size"], seen[-1]["scale"], seen[-1]["merge_classes"]) == (128, 1.0, True)
    assert seen[-1]["tile_overlap"] is None  # the engine's default: a quarter of the tile
    f = viewer.layers["garden masks"].features
    assert len(f) >= 1 and set(f["class_name"]) == {"plant"}

    w.tile_mode.value = "auto"
    w.overlap_mode.value = "pixels"
    w.tile_overlap.value = 48
    w.scale_mode.value = "auto"
    w.merge_classes.value = False
    w.crf.value = True
    w.crf_settings.backend.value = "torch"
    w.crf_settings.iterations.value = 1
    run(w, qtbot)
    assert (seen[-1]["tile_size"], seen[-1]["tile_overlap"], seen[-1]["scale"]) == ("auto", 48, "auto")
    assert seen[-1]["crf_params"].backend == "torch" and seen[-1]["merge_classes"] is False
    assert viewer.layers["garden masks (CRF)"].data.max() >= 1


# -- errors ---------------------------------------------------------------------------


def test_unexpected_error_keeps_its_traceback(garden, qtbot, monkeypatch, notes, caplog):
    from napari.utils.notifications import ErrorNotification

    def broken(*a, **k):
        return {}["no such key"]  # a bug, not bad input

    monkeypatch.setattr(_inference, "segment_with", broken)
    viewer, w = garden
    with caplog.at_level(logging.WARNING, logger="napari_gardenseg"):
        run(w, qtbot)
    [note] = notes()
    assert isinstance(note, ErrorNotification)  # napari shows "View Traceback"
    assert "KeyError" in note.message and "no such key" in note.message and "report" in note.message
    assert "broken" in note.as_text()  # the traceback reaches the frame that failed
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.exc_info and record.exc_info[0] is KeyError
    assert w.status.value.startswith("error: KeyError")
    assert len(viewer.layers) == 1 and w.run.enabled


def test_a_numpy_value_error_is_not_taken_for_bad_input(garden, qtbot, monkeypatch, notes, caplog):
    def broken(*a, **k):
        return np.zeros(3).reshape(2)  # ValueError raised inside numpy: a bug, not a validation

    monkeypatch.setattr(_inference, "segment_with", broken)
    _, w = garden
    with caplog.at_level(logging.WARNING, logger="napari_gardenseg"):
        run(w, qtbot)
    assert "ValueError" in notes()[-1].message and "report" in notes()[-1].message
    assert any(r.exc_info for r in caplog.records if r.levelno >= logging.WARNING)


def test_user_errors_are_one_clear_line(garden, qtbot, errors, caplog, tmp_path):
    viewer, w = garden
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"not a checkpoint")
    w.model.value = CUSTOM
    w.checkpoint.value = bad
    with caplog.at_level(logging.INFO, logger="napari_gardenseg"):
        run(w, qtbot)
    [message] = errors()
    assert str(bad) in message and "Traceback" not in message and "report" not in message
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # bad input is not a bug
    assert [r for r in caplog.records if r.levelno == logging.INFO and str(bad) in r.getMessage()]
    assert w.status.value.startswith("error:") and "\n" not in w.status.value


# -- the background job module both widgets use -----------------------------------------


def test_job_coalesces_progress_and_returns(qtbot):
    from napari_gardenseg._worker import Job

    seen, done = [], []

    def work(n, *, progress, cancel):
        for i in range(1, n + 1):
            progress(i / n, f"step {i}")
        return n * 2

    job = Job(work, 5000, on_progress=lambda f, m: seen.append((f, m)), on_done=done.append).start()
    qtbot.waitUntil(lambda: bool(done), timeout=30_000)
    [outcome] = done
    assert outcome.ok and outcome.value == 10_000 and not job.running
    assert 1 <= len(seen) < 5000  # coalesced: the GUI thread is not woken per report
    assert seen[-1] == (1.0, "step 5000")  # the last report is never lost
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)


def test_job_cancel_and_abandon(qtbot):
    import time

    from napari_gardenseg._cancel import Cancelled, check
    from napari_gardenseg._worker import Job

    def wait_for_cancel(*, progress, cancel):
        while True:
            check(cancel, "the test job")
            time.sleep(0.005)

    done = []
    job = Job(wait_for_cancel, on_done=done.append).start()
    job.request_cancel()
    qtbot.waitUntil(lambda: bool(done), timeout=10_000)
    assert done[0].cancelled and isinstance(done[0].error, Cancelled)

    called = []
    job = Job(wait_for_cancel, on_done=called.append, on_progress=lambda *a: called.append(a)).start()
    job.abandon()  # the widget is closing: the run stops, nothing is called back
    qtbot.waitUntil(lambda: not job.running, timeout=10_000)
    assert called == [] and job.cancel.is_set()


def test_which_errors_are_the_users():
    import numpy as np

    from napari_gardenseg._files import OutputExistsError
    from napari_gardenseg._image_arrays import ImageError, to_rgb_float
    from napari_gardenseg._models import ModelError
    from napari_gardenseg._worker import is_user_error

    def raised(fn):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001
            return exc
        raise AssertionError("no error")

    assert is_user_error(ImageError("bad image")) and is_user_error(ModelError("no such model"))
    assert is_user_error(OutputExistsError("exists"))
    assert is_user_error(raised(lambda: to_rgb_float(np.zeros((2, 3, 4, 5)))))  # our validation
    assert is_user_error(raised(lambda: to_rgb_float(np.array(["a"]))))  # our TypeError
    assert not is_user_error(raised(lambda: np.zeros(3).reshape(2)))  # numpy's ValueError: a bug
    assert not is_user_error(raised(lambda: {}["key"]))
    assert not is_user_error(raised(lambda: None + 1))  # a TypeError raised outside the package
    assert is_user_error(FileNotFoundError(2, "No such file", "/x.pt"))
    # memory that ran out is the machine's limit, with advice (numpy's, torch's CPU and GPU words)
    assert is_user_error(MemoryError("Unable to allocate 1.2 GiB for an array"))
    assert is_user_error(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"))
    import torch

    gpu = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert is_user_error(gpu)
    from napari_gardenseg._device import with_memory_advice

    assert "choose the device 'cpu'" in with_memory_advice(gpu) and with_memory_advice(ValueError("x")) is None


def test_leaving_while_a_job_runs_does_not_abort(tmp_path):
    """napari closed (or a script ended) while a job's thread still runs, a model load say."""
    import subprocess
    import sys

    script = tmp_path / "leave.py"
    script.write_text(
        "import time\n"
        "from qtpy.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from napari_gardenseg._worker import Job\n"
        "def slow(*, progress, cancel):\n"
        "    time.sleep(1.0)  # cannot be interrupted\n"
        "    return 1\n"
        "jobs = [Job(slow).start() for _ in range(3)]\n"
        "time.sleep(0.1)\n"
        "print('left', flush=True)\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    for _ in range(3):  # without the wait at exit, most runs abort
        run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
        assert run.returncode == 0 and "left" in run.stdout, run.stderr[-2000:]
