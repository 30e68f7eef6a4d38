"""Training from napari layers: samples_from_layers (no Qt) and the "Train on my labels" widget."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from napari.layers import Image, Labels

from napari_gardenseg._train_layers import (
    candidate_pairs,
    classes_from_features,
    parse_class_names,
    samples_from_layers,
)
from napari_gardenseg._train_samples import prepare_samples
from napari_gardenseg.synthetic import garden_scene


def _scene(seed=1, shape=(64, 64), name="scene"):
    image, labels, classes = garden_scene(seed, shape=shape)
    return Image(image, name=name), Labels(labels, name=f"{name} masks"), labels, classes


def _features(classes: dict) -> pd.DataFrame:
    """What the segmentation widget writes: one row per instance, with label and class_name."""
    ids = sorted(classes)
    return pd.DataFrame({"label": ids, "class_name": [classes[k] for k in ids], "score": np.ones(len(ids))})


# -- class names ---------------------------------------------------------------


def test_one_name_for_all_instances():
    img, lab, labels, _ = _scene()
    [(image, got_labels, classes)] = samples_from_layers([(img, lab)], "weed")
    assert classes == "weed"
    np.testing.assert_array_equal(got_labels, labels)
    assert image.shape == (64, 64, 3)
    [s] = prepare_samples([(image, got_labels, classes)])
    assert set(s.class_of.values()) == {"weed"}


def test_one_name_per_layer_and_one_for_all():
    a_img, a_lab, *_ = _scene(1, name="a")
    b_img, b_lab, *_ = _scene(2, name="b")
    pairs = [(a_img, a_lab), (b_img, b_lab)]
    assert [c for *_, c in samples_from_layers(pairs, " weed , rosette ")] == ["weed", "rosette"]
    assert [c for *_, c in samples_from_layers(pairs, "plant")] == ["plant", "plant"]
    assert [c for *_, c in samples_from_layers(pairs, ["weed", "rosette"])] == ["weed", "rosette"]


def test_class_names_from_features():
    img, lab, labels, classes = _scene()
    lab.features = _features(classes)
    [(_, _, got)] = samples_from_layers([(img, lab)], "")
    assert got == classes
    prepare_samples([(img.data, labels, got)])


def test_features_in_napari_row_order_and_gaps():
    # no label column: napari's convention, row i is label i (row 0 the background)
    f = pd.DataFrame({"class_name": ["background", "weed", None, "rosette", ""]})
    assert classes_from_features(f) == {1: "weed", 3: "rosette"}
    f = pd.DataFrame({"index": [0, 2, 5], "class_name": ["bg", "weed", np.nan]})
    assert classes_from_features(f) == {2: "weed"}
    assert classes_from_features(pd.DataFrame({"label": [1]})) == {}
    assert classes_from_features(pd.DataFrame()) == {}


def test_empty_entry_reads_that_layers_features():
    a_img, a_lab, _, a_classes = _scene(1, name="a")
    b_img, b_lab, *_ = _scene(2, name="b")
    a_lab.features = _features(a_classes)
    got = samples_from_layers([(a_img, a_lab), (b_img, b_lab)], ",weed")
    assert got[0][2] == a_classes and got[1][2] == "weed"


def test_parse_class_names():
    assert parse_class_names(None, 2) == [None, None]
    assert parse_class_names("a,,b", 3) == ["a", None, "b"]
    with pytest.raises(ValueError, match="3 comma-separated names for 2"):
        parse_class_names("a,b,c", 2)
    with pytest.raises(ValueError, match="reserved"):
        parse_class_names("__background__", 1)


# -- errors ----------------------------------------------------------------------


def test_errors_name_the_problem():
    img, lab, labels, classes = _scene()
    with pytest.raises(ValueError, match="no Labels layer selected"):
        samples_from_layers([], "weed")
    with pytest.raises(ValueError, match="has no class_name feature"):
        samples_from_layers([(img, lab)], "")
    lab.features = _features({k: v for k, v in classes.items() if k != 2})
    with pytest.raises(ValueError, match=r"'scene masks': instances \[2\] have no class_name"):
        samples_from_layers([(img, lab)], None)
    painted = _features({k: v for k, v in classes.items() if k != 2})
    lab.features = pd.concat([painted, pd.DataFrame({"label": [2], "class_name": [""], "source": ["painted"]})])
    with pytest.raises(ValueError, match=r"instances \[2\] \(painted by hand\) have no class_name.*for them"):
        samples_from_layers([(img, lab)], None)
    # the name typed as asked is the painted plant's: the segmentation's classes stay (they all became it)
    [(_, _, named)] = samples_from_layers([(img, lab)], "weed")
    assert named == {k: ("weed" if k == 2 else v) for k, v in classes.items()} and len(set(classes.values())) > 1
    lab.features = _features(classes)  # every instance with a class: the name is every instance's, as before
    assert samples_from_layers([(img, lab)], "weed")[0][2] == "weed"
    lab.features = painted
    small = Labels(labels[:32], name="small")
    with pytest.raises(ValueError, match="'small' is 32x64 but image 'scene' is 64x64"):
        samples_from_layers([(img, small)], "weed")
    empty = Labels(np.zeros((64, 64), np.int32), name="empty")
    with pytest.raises(ValueError, match="hold no instances"):
        samples_from_layers([(img, empty)], "weed")
    # an empty layer next to a labelled one is a background-only sample: allowed
    assert len(samples_from_layers([(img, empty), (img, lab)], "weed")) == 2
    with pytest.raises(ValueError, match="2 selected Labels layer"):
        samples_from_layers([(img, lab), (img, lab)], "a,b,c")


def test_layers_are_only_read_and_samples_are_copies():
    img, lab, labels, _ = _scene()
    before_img, before_lab = img.data.copy(), lab.data.copy()
    [(image, got, _)] = samples_from_layers([(img, lab)], "weed")
    image[:] = 0
    got[:] = 0
    np.testing.assert_array_equal(img.data, before_img)
    np.testing.assert_array_equal(lab.data, before_lab)


def test_a_stack_takes_the_plane_shown_and_names_the_other_labelled_planes():
    # corrections painted on planes 0 and 2 of a whole-stack result, the slider on plane 1: only
    # plane 1 was trained on, and nothing said so
    from napari_gardenseg._train_layers import other_labelled_planes

    scenes = [garden_scene(s, shape=(48, 48)) for s in (1, 2, 3)]
    img = Image(np.stack([s[0] for s in scenes]), rgb=True, name="stack")
    lab = Labels(np.stack([s[1] for s in scenes]), name="stack masks")
    with pytest.raises(ValueError, match="3 dimensions"):
        samples_from_layers([(img, lab)], "weed")
    [(image, labels, _)] = samples_from_layers([(img, lab)], "weed", point=(1, 10, 10))
    np.testing.assert_array_equal(image, scenes[1][0])
    np.testing.assert_array_equal(labels, scenes[1][1])
    note = other_labelled_planes([(img, lab)], (1, 10, 10))
    assert note.startswith("planes 0, 2 of 'stack masks' hold labels too and are not trained on")
    assert "tick 'every labelled plane'" in note
    # the plane shown empty, the others not: said so ("hold no instances: paint some first" before)
    empty = Labels(np.stack([scenes[0][1], np.zeros((48, 48), int), scenes[2][1]]), name="stack masks")
    with pytest.raises(ValueError, match="the plane shown of 'stack masks' holds no instances; planes 0, 2 of"):
        samples_from_layers([(img, empty)], "weed", point=(1, 10, 10))
    # a slab's planes are named as the image's
    slab = Labels(np.stack([scenes[1][1], scenes[2][1]]), translate=(1, 0, 0), name="stack masks")
    assert other_labelled_planes([(img, slab)], (1, 10, 10)).startswith("planes 2 of 'stack masks' hold labels")
    lab.data[[0, 2]] = 0
    assert other_labelled_planes([(img, lab)], (1, 10, 10)) is None


def test_every_labelled_plane_of_a_stack_wherever_the_slider_is():
    scenes = [garden_scene(s, shape=(48, 48)) for s in (1, 2, 3)]
    img = Image(np.stack([s[0] for s in scenes]), rgb=True, name="stack")
    painted = np.stack([s[1] for s in scenes])
    painted[1] = 0  # a plane left empty gives no sample
    lab = Labels(painted, name="stack masks")
    samples = samples_from_layers([(img, lab)], "weed", point=(1, 10, 10), planes="labelled")
    assert len(samples) == 2
    for (image, labels, _), k in zip(samples, (0, 2)):
        np.testing.assert_array_equal(image, scenes[k][0])
        np.testing.assert_array_equal(labels, scenes[k][1])
    # no viewer position needed: the planes are the labels'
    assert len(samples_from_layers([(img, lab)], "weed", planes="labelled")) == 2
    with pytest.raises(ValueError, match="planes must be 'current' or 'labelled'"):
        samples_from_layers([(img, lab)], "weed", planes="all")


def test_labelled_planes_of_one_time_point_go_with_the_viewers_time():
    # labels of one time point's z-stack (ZYX) over a time series of z-stacks (TZYX): the image's
    # planes at the viewer's time
    scenes = [garden_scene(s, shape=(64, 64)) for s in range(1, 7)]
    assert all(s[1].any() for s in scenes[3:])
    images = np.stack([s[0] for s in scenes]).reshape(2, 3, 64, 64, 3)
    img = Image(images, rgb=True, name="tz")
    lab = Labels(np.stack([scenes[3][1], scenes[4][1], scenes[5][1]]), name="tz masks")
    got = samples_from_layers([(img, lab)], "weed", point=(1, 0, 0, 0), planes="labelled")
    for (image, labels, _), k in zip(got, (3, 4, 5)):
        np.testing.assert_array_equal(image, scenes[k][0])
        np.testing.assert_array_equal(labels, scenes[k][1])


def test_a_plane_of_labels_goes_with_the_image_plane_at_its_place_in_the_world():
    scenes = [garden_scene(s, shape=(48, 48)) for s in (1, 2, 3, 4)]
    img = Image(np.stack([s[0] for s in scenes]), rgb=True, name="stack")
    # labels of planes 2 and 3 alone, placed there (translate), as a slab cut from the stack
    lab = Labels(np.stack([scenes[2][1], scenes[3][1]]), translate=(2, 0, 0), name="stack masks")
    got = samples_from_layers([(img, lab)], "weed", point=(0, 0, 0), planes="labelled")
    for (image, labels, _), k in zip(got, (2, 3)):
        np.testing.assert_array_equal(image, scenes[k][0])
        np.testing.assert_array_equal(labels, scenes[k][1])
    beyond = Labels(np.stack([scenes[3][1], scenes[0][1]]), translate=(3, 0, 0), name="stack masks")
    with pytest.raises(ValueError, match=r"plane \(1\) of Labels layer 'stack masks' holds labels where image"):
        samples_from_layers([(img, beyond)], "weed", planes="labelled")


def test_a_2d_labels_layer_over_a_stack_goes_with_the_current_plane():
    scenes = [garden_scene(s, shape=(48, 48)) for s in (1, 2, 3)]
    img = Image(np.stack([s[0] for s in scenes]), rgb=True, name="stack")
    lab = Labels(scenes[2][1], name="stack masks")
    with pytest.raises(ValueError, match="3 dimensions"):
        samples_from_layers([(img, lab)], "weed")
    [(image, labels, _)] = samples_from_layers([(img, lab)], "weed", point=(2, 10, 10))
    np.testing.assert_array_equal(image, scenes[2][0])
    np.testing.assert_array_equal(labels, scenes[2][1])


def test_one_plane_slab_of_a_stack():
    """The segmentation widget's "current plane" output: a (1, H, W) slab translated to its plane."""
    scenes = [garden_scene(s, shape=(48, 48)) for s in (1, 2, 3)]
    img = Image(np.stack([s[0] for s in scenes]), rgb=True, name="stack")
    lab = Labels(scenes[1][1][None], translate=(1, 0, 0), name="stack masks")
    assert [(i.name, m.name) for i, m, _ in candidate_pairs([img], [lab])] == [("stack", "stack masks")]
    [(image, labels, _)] = samples_from_layers([(img, lab)], "weed", point=(1, 0, 0))
    np.testing.assert_array_equal(image, scenes[1][0])
    np.testing.assert_array_equal(labels, scenes[1][1])
    with pytest.raises(ValueError, match="'stack masks' has no plane at the viewer's current position"):
        samples_from_layers([(img, lab)], "weed", point=(2, 0, 0))
    for point in ((1, 0, 0), (2, 0, 0)):  # every labelled plane: wherever the slider is
        [(image, labels, _)] = samples_from_layers([(img, lab)], "weed", point=point, planes="labelled")
        np.testing.assert_array_equal(image, scenes[1][0])
        np.testing.assert_array_equal(labels, scenes[1][1])


def test_candidate_pairs_by_name_then_shape():
    a = Image(np.zeros((40, 50)), name="a")
    a2 = Image(np.zeros((40, 50)), name="a2")
    b = Image(np.zeros((60, 60, 3), np.uint8), name="b")
    by_name = Labels(np.zeros((40, 50), int), name="a2 masks")
    by_shape = Labels(np.zeros((60, 60), int), name="drawn")
    unsure = Labels(np.zeros((40, 50), int), name="other")
    lonely = Labels(np.zeros((7, 7), int), name="lonely")
    got = [
        (im.name, lab.name, sure) for im, lab, sure in candidate_pairs([a, a2, b], [by_name, by_shape, unsure, lonely])
    ]
    assert got == [
        ("a2", "a2 masks", True),
        ("b", "drawn", True),
        ("a", "other", False),
        ("a2", "other", False),
    ]


def test_labels_of_a_second_photo_of_the_same_name_go_with_that_photo():
    # public report: two photos named plot.jpg (two days' folders) and their plot_labels.tif: napari
    # names the second pair "plot [1]" / "plot_labels [1]", which went with the first photo
    day1, day2 = (Image(np.zeros((40, 50, 3), np.uint8), name=n) for n in ("plot", "plot [1]"))
    names = ["plot_labels", "plot_labels [1]", "plot [1] masks", "plot [1]", "plot_a_labels [1]"]
    labels = [Labels(np.zeros((40, 50), int), name=n) for n in names]
    plot_a = Image(np.zeros((40, 50, 3), np.uint8), name="plot_a")
    got = [(im.name, lab.name, sure) for im, lab, sure in candidate_pairs([day1, day2, plot_a], labels)]
    assert got == [
        ("plot", "plot_labels", True),
        ("plot [1]", "plot_labels [1]", True),
        ("plot [1]", "plot [1] masks", True),
        ("plot [1]", "plot [1]", True),
        ("plot_a", "plot_a_labels [1]", True),
    ]


# -- the widget ------------------------------------------------------------------


@pytest.fixture
def registry(monkeypatch):
    """Stand-in for napari_gardenseg._widget.register_model: records what would be registered."""
    calls = []
    fake = types.ModuleType("napari_gardenseg._widget")
    fake.register_model = lambda path, title, select=False: calls.append((path, title, select))
    monkeypatch.setitem(sys.modules, "napari_gardenseg._widget", fake)
    return calls


@pytest.fixture
def messages(monkeypatch):
    """Notifications shown, by kind (the widget's own, and those of napari_gardenseg._worker)."""
    import napari.utils.notifications as notifications

    import napari_gardenseg._fit_panel as fp
    import napari_gardenseg._train_widget as tw

    got = {"error": [], "info": [], "warning": []}
    for kind in got:
        record = lambda m, kind=kind: got[kind].append(str(m))  # noqa: E731
        monkeypatch.setattr(notifications, f"show_{kind}", record)
        for module in (tw, fp):
            if hasattr(module, f"show_{kind}"):
                monkeypatch.setattr(module, f"show_{kind}", record)
    return got


@pytest.fixture
def answers(monkeypatch):
    """Drive the "Replace the model?" question: append True (Yes) or False (No); records the questions."""
    from qtpy.QtWidgets import QMessageBox

    queue, asked = [], []

    def question(parent, title, text, *a, **k):
        asked.append(text)
        return QMessageBox.Yes if queue.pop(0) else QMessageBox.No

    monkeypatch.setattr(QMessageBox, "question", question)
    return queue, asked


def _widget(make_napari_viewer, tmp_path, seed=1, shape=(128, 128)):
    from napari_gardenseg._train_widget import TrainWidget

    viewer = make_napari_viewer()
    image, labels, classes = garden_scene(seed, shape=shape)
    viewer.add_image(image, name="scene")
    lab = viewer.add_labels(labels, name="scene masks")
    lab.features = _features(classes)
    widget = TrainWidget(viewer)
    widget.output.value = tmp_path / "mine.pt"
    widget.device.value = "cpu"
    return viewer, widget, classes


@pytest.mark.gui
def test_widget_trains_and_registers(make_napari_viewer, qtbot, tmp_path, registry, messages):
    from napari_gardenseg._models import load_model

    viewer, widget, classes = _widget(make_napari_viewer, tmp_path)
    assert [(im.name, lab.name) for im, lab in widget.pairs.value] == [("scene", "scene masks")]
    widget.iterations.value = 2
    before = viewer.layers["scene masks"].data.copy()
    widget.train.clicked.emit()  # the button
    assert widget.running and not widget.train.enabled and widget.cancel.enabled
    qtbot.waitUntil(lambda: not widget.running, timeout=180_000)

    assert messages["error"] == []
    assert len(messages["warning"]) == len(set(messages["warning"]))  # once each, not every iteration
    assert "mine.pt" in messages["info"][-1]
    path = tmp_path / "mine.pt"
    model = load_model(path, device="cpu")
    assert set(classes.values()) <= set(model.class_names)
    info = model.meta["training"]
    assert info["iterations"] == 2 and info["crop"] == 128  # min(384, image size)
    assert model.meta["trained_on"] == ["scene masks"]
    assert registry == [(path, "mine", True)]
    assert "saved mine.pt" in widget.status.value and "loss=" in widget.status.value
    assert widget.output.value == tmp_path / "mine-2.pt"  # the next run does not overwrite it
    assert widget.train.enabled and not widget.cancel.enabled
    np.testing.assert_array_equal(viewer.layers["scene masks"].data, before)


@pytest.mark.gui
def test_widget_cancel_saves_what_was_learnt(make_napari_viewer, qtbot, tmp_path, registry, messages):
    from napari_gardenseg._models import load_model

    _, widget, _ = _widget(make_napari_viewer, tmp_path, shape=(96, 96))
    widget.iterations.value = 1000
    widget.start()
    qtbot.waitUntil(lambda: "iteration" in widget.status.value, timeout=180_000)
    widget.cancel.clicked.emit()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    model = load_model(tmp_path / "mine.pt", device="cpu")
    assert 1 <= model.meta["training"]["iterations"] < 1000
    assert widget.status.value.startswith("stopped early; saved mine.pt")
    assert len(registry) == 1

    # cancelled before the first iteration: nothing saved, the widget stays usable
    widget.output.value = tmp_path / "never.pt"
    widget.start()
    widget.stop()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert not (tmp_path / "never.pt").exists()
    assert widget.status.value == "cancelled; nothing saved"
    assert widget.train.enabled and messages["error"] == []


@pytest.mark.gui
def test_closing_the_panel_stops_training_and_saves_what_was_learnt(
    make_napari_viewer, qtbot, tmp_path, registry, messages
):
    # napari's close button deletes the dock, not the widget: training went on unseen for its
    # whole length; closing now stops it as Cancel does
    from napari_gardenseg._models import load_model

    viewer, widget, _ = _widget(make_napari_viewer, tmp_path, shape=(96, 96))
    dock = viewer.window.add_dock_widget(widget, name="train")
    widget.iterations.value = 1000
    widget.start()
    qtbot.waitUntil(lambda: "iteration" in widget.status.value, timeout=180_000)
    viewer.window.remove_dock_widget(dock)
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert 1 <= load_model(tmp_path / "mine.pt", device="cpu").meta["training"]["iterations"] < 1000
    assert any("panel was closed" in m for m in messages["info"]) and len(registry) == 1


@pytest.mark.gui
def test_widget_errors_are_notifications(make_napari_viewer, tmp_path, registry, messages):
    viewer, widget, _ = _widget(make_napari_viewer, tmp_path, shape=(64, 64))
    widget.class_names.value = "a, b"  # two names for one layer
    assert widget.start() is None
    assert "2 comma-separated names for 1" in messages["error"][-1]

    viewer.layers["scene masks"].features = pd.DataFrame()
    widget.class_names.value = ""
    assert widget.start() is None
    assert "has no class_name feature" in messages["error"][-1]

    widget.class_names.value = "weed"
    widget.base.value = "checkpoint"
    assert not widget.checkpoint.native.isHidden()
    assert widget.start() is None
    assert "choose the checkpoint file" in messages["error"][-1]
    widget.checkpoint.value = tmp_path / "nope.pt"
    assert widget.start() is None
    assert "checkpoint file not found" in messages["error"][-1]
    widget.base.value = "garden"
    assert widget.checkpoint.native.isHidden()

    viewer.layers.remove("scene masks")
    assert widget.pairs.choices == ()
    assert widget.start() is None
    assert "no Labels layer selected" in messages["error"][-1]
    # labels painted at half size (scale 2 lays them on the photo): left out of the list, and
    # Train said there was no Labels layer at all
    viewer.add_labels(np.zeros((32, 32), np.int32), name="half", scale=(2, 2))
    assert widget.pairs.choices == () and widget.start() is None
    assert messages["error"][-1].startswith(
        "Labels not offered ('half' 32 × 32): no image is of their size (images: 'scene' 64 × 64)"
    )
    # with a pair offered but not ticked, picking it is what to do
    viewer.add_labels(np.zeros((64, 64), np.int32), name="mine")
    widget.pairs.value = []
    assert widget.pairs.choices and widget.start() is None
    assert "no Labels layer selected" in messages["error"][-1]
    assert not widget.running and widget.train.enabled and registry == []


def _rows(widget) -> list[str]:
    native = widget.pairs.native  # QListWidget
    return [native.item(i).text() for i in range(native.count())]


@pytest.mark.gui
def test_widget_follows_layers(make_napari_viewer, tmp_path):
    viewer, widget, _ = _widget(make_napari_viewer, tmp_path, shape=(64, 64))
    # the segmentation widget's second output: listed, not selected (a row of 'scene' is already)
    viewer.add_labels(viewer.layers["scene masks"].data.copy(), name="scene masks (CRF)")
    assert _rows(widget) == ["scene masks  ←  scene", "scene masks (CRF)  ←  scene"]
    assert [lab.name for _, lab in widget.pairs.value] == ["scene masks"]
    viewer.layers.remove("scene masks (CRF)")
    other = viewer.add_image(np.zeros((64, 64)), name="other")
    drawn = viewer.add_labels(np.zeros((64, 64), np.int32), name="drawn")
    assert _rows(widget) == ["scene masks  ←  scene", "drawn  ←  scene", "drawn  ←  other"]
    # two images fit 'drawn': nothing new is selected until the user picks one
    assert [lab.name for _, lab in widget.pairs.value] == ["scene masks"]
    drawn.name = "other labels"  # now named after an image: one sure pair, selection kept
    assert _rows(widget) == ["scene masks  ←  scene", "other labels  ←  other"]
    assert [lab.name for _, lab in widget.pairs.value] == ["scene masks"]
    widget.pairs.value = list(widget.pairs.choices)
    viewer.layers.remove(other)
    assert _rows(widget) == ["scene masks  ←  scene", "other labels  ←  scene"]


@pytest.mark.gui
def test_closed_widget_lets_go_of_the_viewer(make_napari_viewer, tmp_path):
    from qtpy.QtCore import QCoreApplication, QEvent

    viewer, widget, _ = _widget(make_napari_viewer, tmp_path, shape=(64, 64))
    inserted = viewer.layers.events.inserted
    before = len(inserted.callbacks)
    widget.native.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    assert len(inserted.callbacks) == before - 1
    viewer.add_labels(np.zeros((64, 64), np.int32), name="after")  # nothing calls into the deleted widget


@pytest.mark.gui
def test_widget_opens_without_torch_and_offers_the_devices_once_loaded(make_napari_viewer, qtbot, monkeypatch):
    from napari_gardenseg import _train_widget, _worker
    from napari_gardenseg._device import available_devices

    monkeypatch.setattr(_worker, "imported", lambda modules: False)  # as in a fresh napari
    widget = _train_widget.TrainWidget(make_napari_viewer())
    assert widget._engine is not None and list(widget.device.choices) == ["auto", "cpu"]
    qtbot.waitUntil(lambda: widget._engine is None, timeout=30_000)
    assert list(widget.device.choices) == available_devices()


@pytest.mark.gui
def test_widget_defaults_are_the_engines(make_napari_viewer, user_models):
    import inspect

    from napari_gardenseg._train_widget import TrainWidget
    from napari_gardenseg._training import train

    engine = {n: p.default for n, p in inspect.signature(train).parameters.items()}
    widget = TrainWidget(make_napari_viewer())
    assert widget.iterations.value == engine["iterations"]
    assert widget.crop.value == engine["crop"] and widget.batch_size.value == engine["batch_size"]
    assert widget.seed.value == engine["seed"]
    assert widget.lr.value == ("auto" if engine["lr"] is None else str(engine["lr"]))
    assert widget.settings.native.isHidden()  # collapsed until "show training settings"
    # the default output: a new file in the user's models folder
    assert widget.output.value == user_models / "my_model.pt"
    user_models.mkdir(parents=True)
    (user_models / "my_model.pt").write_bytes(b"an earlier model")
    assert TrainWidget(make_napari_viewer()).output.value == user_models / "my_model-2.pt"


@pytest.mark.gui
def test_widget_never_replaces_a_file_without_asking(make_napari_viewer, qtbot, tmp_path, registry, messages, answers):
    from napari_gardenseg._models import load_model

    queue, asked = answers
    _, widget, _ = _widget(make_napari_viewer, tmp_path, shape=(64, 64))
    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"a user's earlier model")
    widget.iterations.value = 1

    queue.append(False)  # "No": nothing starts, the file is kept
    assert widget.start() is None
    assert asked and str(mine) in asked[-1]
    assert mine.read_bytes() == b"a user's earlier model" and not widget.running
    assert "not started" in widget.status.value and "mine.pt exists" in widget.status.value

    queue.append(True)  # "Yes": trained and replaced
    assert widget.start() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=180_000)
    assert messages["error"] == []
    assert load_model(mine, device="cpu").meta["training"]["iterations"] == 1
    assert len(asked) == 2 and queue == []


@pytest.mark.gui
def test_widget_settings_reach_train(make_napari_viewer, qtbot, tmp_path, registry, messages, monkeypatch):
    import napari_gardenseg._training as training

    seen = {}

    def fake_train(samples, **kwargs):
        seen.update(kwargs)
        kwargs["progress"](1.0, "iteration 1/1 loss=0.5 (a=1)")
        path = Path(kwargs["output"])
        path.write_bytes(b"x")
        return path

    from pathlib import Path

    monkeypatch.setattr(training, "train", fake_train)
    _, widget, _ = _widget(make_napari_viewer, tmp_path, shape=(64, 64))
    widget.lr.value = "0.001"
    widget.crop.value = 512
    widget.batch_size.value = 3
    widget.seed.value = 7
    widget.start()
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert (seen["lr"], seen["batch_size"], seen["seed"], seen["overwrite"]) == (0.001, 3, 7, False)
    assert seen["crop"] == 64  # min(512, the labelled plane)
    assert widget.status.value == "saved mine.pt (iteration 1/1 loss=0.5)"

    for text in ("fast", "0", "inf"):  # the field's words, not the engine's name for it
        widget.lr.value = text
        assert widget.start() is None
        assert f"learning rate must be a positive number or 'auto', got '{text}'" in messages["error"][-1]


@pytest.mark.gui
def test_widget_trains_on_the_plane_shown_or_every_labelled_plane(
    make_napari_viewer, qtbot, tmp_path, registry, messages, monkeypatch
):
    import napari_gardenseg._training as training
    from napari_gardenseg._train_widget import TrainWidget

    seen = []

    def fake_train(samples, **kwargs):
        seen.append([np.unique(lab[lab > 0]).tolist() for _, lab, _ in samples])
        path = Path(kwargs["output"])
        path.write_bytes(b"x")
        return path

    monkeypatch.setattr(training, "train", fake_train)
    viewer = make_napari_viewer()
    scenes = [garden_scene(s, shape=(48, 48)) for s in (1, 2, 3)]
    viewer.add_image(np.stack([s[0] for s in scenes]), rgb=True, name="stack")
    planes = np.stack([s[1] for s in scenes])
    planes[1][planes[1] > 0] += 100  # each plane its own ids
    planes[2][planes[2] > 0] += 200
    viewer.add_labels(planes, name="stack masks")
    widget = TrainWidget(viewer)
    widget.output.value = tmp_path / "mine.pt"
    widget.device.value = "cpu"
    widget.class_names.value = "weed"
    viewer.dims.set_point(0, 1)
    assert widget.start() is not None
    assert "planes 0, 2 of 'stack masks' hold labels too" in widget.status.value
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert [min(ids) for ids in seen[-1]] == [101]
    widget.every_plane.value = True
    widget.output.value = tmp_path / "all.pt"
    assert widget.start() is not None
    assert widget.status.value.startswith("training on 3 planes of 1 layer(s)")
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert [min(ids) for ids in seen[-1]] == [1, 101, 201]


@pytest.mark.gui
def test_widget_unexpected_error_keeps_its_traceback(
    make_napari_viewer, qtbot, tmp_path, registry, monkeypatch, caplog
):
    import logging

    from napari.utils.notifications import ErrorNotification, notification_manager

    import napari_gardenseg._training as training

    def broken(samples, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(training, "train", broken)
    _, widget, _ = _widget(make_napari_viewer, tmp_path, shape=(64, 64))
    start = len(notification_manager.records)
    with caplog.at_level(logging.WARNING, logger="napari_gardenseg"):
        widget.start()
        qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    [note] = [n for n in notification_manager.records[start:] if isinstance(n, ErrorNotification)]
    assert "training failed: ZeroDivisionError" in note.message and "broken" in note.as_text()
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)
    assert widget.status.value.startswith("error: ZeroDivisionError") and widget.train.enabled


@pytest.mark.gui
def test_napari_opens_the_widget_with_its_viewer(make_napari_viewer):
    from napari_gardenseg._train_widget import TrainWidget

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-gardenseg", "Train on my labels")
    assert isinstance(widget, TrainWidget)
    viewer.add_image(np.zeros((32, 32)), name="photo")
    viewer.add_labels(np.zeros((32, 32), np.int32), name="photo masks")
    assert _rows(widget) == ["photo masks  ←  photo"]  # it follows this viewer's layers


@pytest.mark.gui
def test_start_from_offers_the_segmentation_widgets_models(make_napari_viewer, user_models, monkeypatch):
    """Training and adapting start from what the segmentation widget lists: your models folder too."""
    import shutil

    from napari_gardenseg._models import bundled_checkpoint
    from napari_gardenseg._train_widget import TrainWidget, chosen_base

    user_models.mkdir(parents=True)
    path = str(Path(shutil.copy(bundled_checkpoint(), user_models / "my_roses.pt")).resolve())
    widget = TrainWidget(make_napari_viewer())
    panel = widget.open_adapt()
    for w in (widget, panel):
        assert w.native.minimumSizeHint().width() < 450  # long model titles do not widen the dock
        choices = dict(w.base._default_choices(w.base))
        assert choices["my_roses (my models)"] == path and choices["Garden (bundled, offline)"] == "garden"
        assert w.base.value == "garden" and list(choices.values())[-1] == "checkpoint"
        w.base.value = path
        assert chosen_base(w.base, w.checkpoint) == path and not w.checkpoint.visible
        w.base.value = "checkpoint"  # the file picker, empty: refused before any run
        with pytest.raises(ValueError, match="choose the checkpoint file"):
            chosen_base(w.base, w.checkpoint)
    # public report: a model trained in one panel was not offered in the other until a layer changed
    from napari_gardenseg import _widget_controls

    monkeypatch.setattr(_widget_controls, "_REGISTERED", {})
    trained = Path(shutil.copy(bundled_checkpoint(), user_models.parent / "t1.pt")).resolve()
    _widget_controls.register_model(trained, "t1")
    for w in (widget, panel):
        assert str(trained) in w.base.choices  # offered at once, no layer event needed
        assert w.base.value == "checkpoint"  # the choice kept


def test_a_pair_placed_differently_on_screen_is_said():
    # napari's Convert to Labels (napari#6981) or a script gave the labels scale 1 over a photo at
    # scale 2: painted on screen, they cover a quarter of it, and were trained pixel by pixel in silence
    from napari_gardenseg._train_layers import placement_note

    image, labels, _ = garden_scene(1, shape=(48, 48))
    photo = Image(image, rgb=True, name="plot", scale=(2, 2))
    assert placement_note([(photo, Labels(labels, name="plot masks", scale=(2, 2)))]) is None
    note = placement_note([(photo, Labels(labels, name="painted"))])
    assert note.startswith("'painted' lies elsewhere on screen than 'plot' (scale (1.0, 1.0)")
    assert "Cancel, give 'painted' the photo's scale and translate" in note
    moved = Labels(labels, name="moved", scale=(2, 2), translate=(0, 10))
    assert placement_note([(photo, moved)]) is not None
    # a one-plane slab of a stack lies on its plane: the leading axis is not the plane's placement
    stack = Image(np.stack([image, image, image]), rgb=True, name="stack")
    slab = Labels(labels[None], translate=(2, 0, 0), name="stack masks")
    assert placement_note([(stack, slab)]) is None
