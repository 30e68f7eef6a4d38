"""The dock widgets keep what the user chose when their lists change (napari resets a dock
widget's choices when layers are added, removed, reordered or renamed; magicgui finds a
choice again by its title)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("napari")

from napari_gardenseg.synthetic import garden_scene  # noqa: E402


def test_a_renamed_image_stays_the_one_segmented(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="north bed")
    south = viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="south bed")
    _, widget = viewer.window.add_plugin_dock_widget("napari-gardenseg", "Garden segmentation")
    widget.image.value = south
    south.name = "south bed 2024"
    assert widget.image.value is south


def test_models_of_one_file_name_are_both_offered(make_napari_viewer, tmp_path):
    from napari_gardenseg._widget import register_model

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-gardenseg", "Garden segmentation")
    for place in ("north", "south"):
        (tmp_path / place).mkdir()
        (tmp_path / place / "model.pt").write_bytes(b"x")
    north = register_model(tmp_path / "north" / "model.pt", "model", select=True)
    south = register_model(tmp_path / "south" / "model.pt", "model")
    assert {north, south} <= set(widget.model.choices) and widget.model.value == north
    titles = [widget.model.native.itemText(i) for i in range(widget.model.native.count())]
    assert "model (trained) [north]" in titles and "model (trained) [south]" in titles


def test_class_names_follow_the_lists_order_not_the_clicks(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    import napari_gardenseg._train_widget as train_widget

    given = {}
    monkeypatch.setattr(
        train_widget, "_train_job", lambda samples, **kw: given.setdefault("samples", samples) and str(kw["output"])
    )
    viewer = make_napari_viewer()
    for k, side in ((1, 64), (2, 80)):
        image, labels, _ = garden_scene(k, shape=(side, side))
        viewer.add_image(image, name=f"p{k}")
        viewer.add_labels(labels, name=f"p{k} masks")
    widget = train_widget.TrainWidget(viewer)
    widget.output.value = tmp_path / "x.pt"
    rows = widget.pairs.native
    rows.clearSelection()
    for row in (1, 0):  # Ctrl-click the second row, then the first
        centre = rows.visualItemRect(rows.item(row)).center()
        QTest.mouseClick(rows.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier, centre)
    widget.class_names.value = "weed, rosette"  # one per selected row, in the list's order
    widget.start()
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert [(labels.shape, name) for _, labels, name in given["samples"]] == [((64, 64), "weed"), ((80, 80), "rosette")]


def test_retraining_a_model_in_place_keeps_it_as_the_start(make_napari_viewer, qtbot, monkeypatch):
    from qtpy.QtWidgets import QMessageBox

    import napari_gardenseg._train_widget as train_widget
    from napari_gardenseg._files import user_models_dir

    folder = user_models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    mine = folder / "weeds.pt"
    mine.write_bytes(b"last week's model")
    monkeypatch.setattr(train_widget, "_train_job", lambda samples, **kw: str(kw["output"]))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.Yes)  # replace it: yes
    viewer = make_napari_viewer()
    image, labels, _ = garden_scene(1, shape=(64, 64))
    viewer.add_image(image, name="scene")
    viewer.add_labels(labels, name="scene masks", features=pd.DataFrame({"label": [1], "class_name": ["weed"]}))
    _, widget = viewer.window.add_plugin_dock_widget("napari-gardenseg", "Train on my labels")
    widget.class_names.value = "weed"
    widget.base.value = str(mine.resolve())  # "weeds (my models)"
    widget.output.value = mine  # improved in place: it becomes "weeds (trained)"
    widget.train.clicked()
    assert "loading weeds (my models)…" in widget.status.value  # its title, not its path
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert widget.base.value == str(mine.resolve())


def test_a_folder_chosen_as_the_checkpoint_is_named(make_napari_viewer, qtbot, tmp_path):
    from napari_gardenseg._widget_controls import CUSTOM

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="bed")
    _, widget = viewer.window.add_plugin_dock_widget("napari-gardenseg", "Garden segmentation")
    (tmp_path / "models").mkdir()
    widget.model.value = CUSTOM
    widget.checkpoint.value = tmp_path / "models"
    widget.run.clicked()
    qtbot.waitUntil(lambda: "custom model" in widget.status.value, timeout=30_000)
    assert "models is a folder" in widget.status.value


def test_adapt_is_in_the_plugins_menu_where_the_widget_hint_sends_the_user(make_napari_viewer):
    # "try *Adapt to these photos*": a panel of its own, not only a button inside Train
    viewer = make_napari_viewer()
    image, _, _ = garden_scene(1, shape=(64, 64))
    layer = viewer.add_image(image, name="field photo")
    _, panel = viewer.window.add_plugin_dock_widget("napari-gardenseg", "Adapt to these photos")
    assert list(panel.photos.value) == [layer] and panel.status.value.startswith("ready")


def test_train_selects_the_labels_on_screen_and_adapt_keeps_its_photos(make_napari_viewer):
    # a segmentation's raw layer arrives hidden, its CRF layer shown: the user corrects the one
    # shown, and Train must train on it; Adapt keeps its photos through renames, takes new ones
    viewer = make_napari_viewer()
    image, labels, _ = garden_scene(1, shape=(64, 64))
    viewer.add_image(image, name="bed")
    _, train = viewer.window.add_plugin_dock_widget("napari-gardenseg", "Train on my labels")
    train.train.clicked()  # nothing to train on yet: an error in its status
    assert str(train.status.value).startswith("error")
    viewer.add_labels(labels, name="bed masks", visible=False)
    crf = viewer.add_labels(labels, name="bed masks (CRF)")
    assert [lab for _, lab in train.pairs.value] == [crf]
    assert not str(train.status.value).startswith("error")  # the layers changed: that error is gone
    # a run without the CRF shows its raw layer; a run with it hides that again and shows the CRF's
    viewer.add_image(image, name="plot")
    raw = viewer.add_labels(labels, name="plot masks")
    assert [lab.name for _, lab in train.pairs.value] == ["bed masks (CRF)", "plot masks"]
    raw.visible = False
    viewer.add_labels(labels, name="plot masks (CRF)")
    assert [lab.name for _, lab in train.pairs.value] == ["bed masks (CRF)", "plot masks (CRF)"]
    # the panel once, whether from the Plugins menu or Train's button
    _, adapt = viewer.window.add_plugin_dock_widget("napari-gardenseg", "Adapt to these photos")
    assert train.open_adapt() is adapt
    second = viewer.add_image(image, name="path")
    assert [layer.name for layer in adapt.photos.value] == ["bed", "plot", "path"]  # opened since: selected too
    viewer.layers["bed"].name = "north bed"
    adapt.photos.value = [second]
    second.name = "south path"
    assert [layer.name for layer in adapt.photos.value] == ["south path"]


def test_a_widget_opened_after_training_starts_on_the_trained_model(make_napari_viewer, tmp_path, monkeypatch):
    # public report: "added to the segmentation widget's models and chosen there", but the widget
    # opened afterwards was on garden, and the next Run used the bundled model
    from napari_gardenseg import _widget_controls
    from napari_gardenseg._widget import register_model

    monkeypatch.setattr(_widget_controls, "_REGISTERED", {})
    (tmp_path / "mine.pt").write_bytes(b"x")
    trained = register_model(tmp_path / "mine.pt", "mine", select=True)  # no segmentation widget open
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-gardenseg", "Garden segmentation")
    assert widget.model.value == trained
