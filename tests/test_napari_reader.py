"""Label images and COCO annotation files open in napari as Labels layers, with their classes as features."""

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from napari_gardenseg._napari_reader import get_coco_reader, get_labels_reader, get_reader, get_yolo_reader
from napari_gardenseg._train_layers import candidate_pairs, classes_from_features, samples_from_layers


def _batch(tmp_path):
    """A batch's outputs for one synthetic photo (labels, refined labels, instances table)."""
    from napari_gardenseg import segment_files
    from napari_gardenseg.synthetic import garden_scene

    im, _, _ = garden_scene(8_000_301, shape=(160, 160), n_plants=(3, 5))
    Image.fromarray(im).save(tmp_path / "bed.png")
    segment_files([tmp_path / "bed.png"], tmp_path / "out", "garden")
    return tmp_path / "out"


def test_batch_outputs_read_as_labels_with_their_classes(tmp_path):
    out = _batch(tmp_path)
    table = pd.read_csv(out / "bed_instances.csv")
    assert len(table) >= 1  # the bundled model finds the scene's plants
    for name, area in (("bed_labels.tif", "area"), ("bed_labels_crf.tif", "area_refined")):
        reader = get_labels_reader(str(out / name))
        assert reader is not None and get_reader(str(out / name)) is None  # not a photo
        ((data, meta, kind),) = reader(str(out / name))
        assert kind == "labels" and meta["name"] == name[:-4]
        np.testing.assert_array_equal(data, tifffile.imread(out / name))
        features = meta["features"]
        assert list(features["index"]) == list(table["label"])  # napari maps ids through `index`
        np.testing.assert_array_equal(features["area"], table[area].fillna(0).astype(int))
        assert list(features["source"]) == list(table["source"])
        from skimage.measure import regionprops

        # each file's own centroids: the table's are the masks', which the CRF's pixels were given as
        # (126.48 for 128.08 in the sample photo), while the widget's CRF layer had its own
        regions = {r.label: r.centroid for r in regionprops(data)}
        got = features.set_index("label")[["centroid_y", "centroid_x"]]
        for k, centroid in regions.items():
            np.testing.assert_allclose(got.loc[k].to_numpy(float), centroid, atol=0.01)
        # what the training widget reads: a class for every instance painted
        classes = classes_from_features(features)
        assert {int(k) for k in np.unique(data) if k} <= set(classes)
        assert set(classes.values()) <= set(table["class_name"])


def test_label_images_without_a_table_and_other_files(tmp_path):
    lab = np.zeros((10, 12), np.uint16)
    lab[2:5, 2:5] = 3
    Image.fromarray(lab).save(tmp_path / "a_labels.png")
    ((data, meta, kind),) = get_labels_reader(str(tmp_path / "a_labels.png"))(str(tmp_path / "a_labels.png"))
    assert kind == "labels" and "features" not in meta and data.dtype == np.int32 and data.max() == 3
    (tmp_path / "a_instances.csv").write_text("something,else\n1,2\n")  # not the batch's table
    ((_, meta, _),) = get_labels_reader(str(tmp_path / "a_labels.png"))(str(tmp_path / "a_labels.png"))
    assert "features" not in meta
    # a stack's labels keep their planes
    tifffile.imwrite(tmp_path / "s_labels.tif", np.stack([lab, lab * 0, lab]).astype(np.int32))
    ((data, _, _),) = get_labels_reader(str(tmp_path / "s_labels.tif"))(str(tmp_path / "s_labels.tif"))
    assert data.shape == (3, 10, 12) and data[1].max() == 0 and data[2, 3, 3] == 3
    for other in ("a.png", "a_labels.jpg", "labels.tif", "a_overlay.png"):
        assert get_labels_reader(str(tmp_path / other)) is None


def test_viewer_opens_a_batch_result_as_labels(make_napari_viewer, tmp_path):
    out = _batch(tmp_path)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(out / "bed_labels_crf.tif", plugin="napari-gardenseg")
    assert layer.__class__.__name__ == "Labels" and layer.name == "bed_labels_crf"
    table = pd.read_csv(out / "bed_instances.csv")
    assert list(layer.features["class_name"]) == list(table["class_name"])
    # with a dock widget of this plugin open, the tables of opened label files follow the brush
    viewer.window.add_plugin_dock_widget("napari-gardenseg", "Garden segmentation")
    (raw,) = viewer.open(out / "bed_labels.tif", plugin="napari-gardenseg")  # opened after the widget
    for lay in (layer, raw):
        first = int(lay.features["label"].iloc[0])
        lay.fill(tuple(np.argwhere(lay.data == first)[0]), 0)  # erased
        assert first not in set(lay.features["label"])
        lay.paint((1, 1), 77)
        assert lay.features.set_index("label").loc[77, "source"] == "painted"


def test_a_batchs_zarr_store_of_labels_opens_as_its_two_labels_layers(make_napari_viewer, tmp_path):
    # a zarr input (or a TIFF over 8192 x 8192) gives <name>_labels.zarr with arrays labels and
    # refined; napari's own zarr reader took them for one pyramid's levels and refused the store
    import zarr

    from napari_gardenseg import segment_files
    from napari_gardenseg.synthetic import garden_scene

    im, _, _ = garden_scene(8_000_301, shape=(160, 160), n_plants=(3, 5))
    zarr.save_array(str(tmp_path / "bed.zarr"), im)
    assert segment_files([tmp_path / "bed.zarr"], tmp_path / "out", "garden").failed == 0
    store = tmp_path / "out" / "bed_labels.zarr"
    table = pd.read_csv(tmp_path / "out" / "bed_instances.csv")
    assert len(table) >= 1
    group = zarr.open_group(str(store), mode="r")
    layers = get_labels_reader(str(store))(str(store))
    assert [(meta["name"], kind) for _, meta, kind in layers] == [
        ("bed_labels", "labels"),
        ("bed_labels_crf", "labels"),
    ]
    for (data, meta, _), array, area in zip(layers, ("labels", "refined"), ("area", "area_refined")):
        np.testing.assert_array_equal(np.asarray(data), group[array][:])
        assert list(meta["features"]["class_name"]) == list(table["class_name"])
        np.testing.assert_array_equal(meta["features"]["area"], table[area].fillna(0).astype(int))
    assert get_labels_reader(str(tmp_path / "bed.zarr")) is None  # a photo's store is not labels
    viewer = make_napari_viewer()
    opened = viewer.open(store, plugin="napari-gardenseg")
    assert [layer.name for layer in opened] == ["bed_labels", "bed_labels_crf"]
    assert all(layer.__class__.__name__ == "Labels" for layer in opened)


def _coco_export(tmp_path, n_photos=2):
    """A COCO file over photos in images/, as an annotation tool exports it: two categories."""
    import json

    from napari_gardenseg._export import labels_to_coco_annotations

    (tmp_path / "images").mkdir()
    images, annotations = [], []
    for i in range(1, n_photos + 1):
        rgb = np.full((30, 40, 3), 60 + i, np.uint8)
        Image.fromarray(rgb).save(tmp_path / "images" / f"p{i}.png")
        lab = np.zeros((30, 40), np.int32)
        lab[2:10, 2:10], lab[12:20, 20:35] = 1, 2
        images.append({"id": i, "file_name": f"p{i}.png", "height": 30, "width": 40})
        annotations += labels_to_coco_annotations(lab, [1, 2], image_id=i, start_id=len(annotations) + 1)
    categories = [{"id": 1, "name": "weed"}, {"id": 2, "name": "beet"}]
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def test_coco_file_opens_as_photos_and_labels_with_classes(tmp_path):
    path = _coco_export(tmp_path)
    reader = get_coco_reader(str(path))
    assert reader is not None
    layers = reader(str(path))
    assert [(meta["name"], kind) for _, meta, kind in layers] == [
        ("p1", "image"),
        ("p1_labels", "labels"),
        ("p2", "image"),
        ("p2_labels", "labels"),
    ]
    pixels, labels, features = layers[0][0], layers[1][0], layers[1][1]["features"]
    assert pixels.shape == (30, 40, 3) and labels.shape == (30, 40) and labels.dtype == np.int16
    classes = classes_from_features(features)  # what the training widget reads
    assert set(classes) == {int(k) for k in np.unique(labels) if k}
    assert sorted(classes.values()) == ["beet", "weed"]
    assert classes[int(labels[15, 30])] == "beet" and classes[int(labels[5, 5])] == "weed"
    # other JSON files are left to other readers
    (tmp_path / "other.json").write_text('{"images": []}')
    (tmp_path / "broken.json").write_text("{")
    for other in ("other.json", "broken.json", "images/p1.png"):
        assert get_coco_reader(str(tmp_path / other)) is None


def test_a_batchs_coco_file_opens_with_its_photo_from_the_output_folder(tmp_path):
    # public report: `segment --coco` writes into another folder than the photos', so napari's
    # reader found no photo; the run record beside the JSON names it
    from napari_gardenseg import segment_files
    from napari_gardenseg.synthetic import garden_scene

    im, _, _ = garden_scene(8_000_301, shape=(160, 160), n_plants=(3, 5))
    (tmp_path / "photos").mkdir()
    Image.fromarray(im).save(tmp_path / "photos" / "bed.png")
    segment_files([tmp_path / "photos" / "bed.png"], tmp_path / "out", "garden", coco=True)
    layers = get_coco_reader(str(tmp_path / "out" / "bed_coco.json"))(str(tmp_path / "out" / "bed_coco.json"))
    assert [(meta["name"], kind) for _, meta, kind in layers] == [("bed", "image"), ("bed_labels", "labels")]
    np.testing.assert_array_equal(layers[0][0], im)
    refined = tifffile.imread(tmp_path / "out" / "bed_labels_crf.tif")
    assert layers[1][0].max() >= 1 and np.array_equal(layers[1][0] > 0, refined > 0)  # the CRF masks, as written


def test_coco_file_of_too_many_photos_says_how_to_train_on_it(tmp_path, monkeypatch):
    import napari_gardenseg._napari_reader as napari_reader

    path = _coco_export(tmp_path, n_photos=3)
    monkeypatch.setattr(napari_reader, "MAX_ANNOTATED_PHOTOS", 2)
    with pytest.raises(ValueError, match="annotates 3 photos, more than 2: napari opens at most 2 .*train --coco"):
        get_coco_reader(str(path))(str(path))
    # another error is not taken for that one
    monkeypatch.setattr(napari_reader, "MAX_ANNOTATED_PHOTOS", 20)
    monkeypatch.setattr("napari_gardenseg._coco_labels.read_coco", _raises(ValueError("zero-size array")))
    with pytest.raises(ValueError, match="zero-size array") as err:
        get_coco_reader(str(path))(str(path))
    assert "napari opens at most" not in str(err.value)


def _raises(exc):
    def read(*args, **kwargs):
        raise exc

    return read


def test_yolo_dataset_opens_as_photos_and_labels_with_classes(tmp_path, monkeypatch):
    import napari_gardenseg._napari_reader as napari_reader

    (tmp_path / "data.yaml").write_text("train: ../train/images\nnames: [weed, beet]\n")
    for i in (1, 2):
        (tmp_path / "train" / "images").mkdir(parents=True, exist_ok=True)
        (tmp_path / "train" / "labels").mkdir(exist_ok=True)
        Image.fromarray(np.full((30, 40, 3), 60 + i, np.uint8)).save(tmp_path / "train" / "images" / f"p{i}.png")
        (tmp_path / "train" / "labels" / f"p{i}.txt").write_text(
            "0 0.05 0.05 0.25 0.05 0.25 0.3 0.05 0.3\n1 0.5 0.4 0.85 0.4 0.85 0.65 0.5 0.65\n"
        )
    reader = get_yolo_reader(str(tmp_path / "data.yaml"))
    assert reader is not None
    layers = reader(str(tmp_path / "data.yaml"))
    assert [(meta["name"], kind) for _, meta, kind in layers] == [
        ("p1", "image"),
        ("p1_labels", "labels"),
        ("p2", "image"),
        ("p2_labels", "labels"),
    ]
    labels, features = layers[1][0], layers[1][1]["features"]
    classes = classes_from_features(features)  # what the training widget reads
    assert classes[int(labels[5, 5])] == "weed" and classes[int(labels[15, 28])] == "beet"
    # other YAML files are left to other readers
    (tmp_path / "config.yaml").write_text("colour: green\n")
    (tmp_path / "broken.yml").write_text("names: [unclosed\n")
    for other in ("config.yaml", "broken.yml", "train/images/p1.png"):
        assert get_yolo_reader(str(tmp_path / other)) is None
    monkeypatch.setattr(napari_reader, "MAX_ANNOTATED_PHOTOS", 1)
    with pytest.raises(ValueError, match="holds 2 photos, more than 1: napari opens at most 1 .*train --yolo"):
        reader(str(tmp_path / "data.yaml"))


def test_viewer_opens_a_coco_file_ready_for_training(make_napari_viewer, tmp_path):
    path = _coco_export(tmp_path)
    viewer = make_napari_viewer()
    layers = viewer.open(path, plugin="napari-gardenseg")
    assert [layer.__class__.__name__ for layer in layers] == ["Image", "Labels", "Image", "Labels"]
    images = [layer for layer in viewer.layers if layer.__class__.__name__ == "Image"]
    labels = [layer for layer in viewer.layers if layer.__class__.__name__ == "Labels"]
    pairs = [(im, lab) for im, lab, preferred in candidate_pairs(images, labels) if preferred]
    assert [(im.name, lab.name) for im, lab in pairs] == [("p1", "p1_labels"), ("p2", "p2_labels")]
    samples = samples_from_layers(pairs)  # the training widget's samples: a class for every instance
    assert [sorted(set(classes.values())) for _, _, classes in samples] == [["beet", "weed"]] * 2


@pytest.mark.gui
def test_a_label_file_opened_without_a_dock_widget_follows_the_brush(make_napari_viewer, tmp_path):
    out = _batch(tmp_path)
    viewer = make_napari_viewer()  # no dock widget of this plugin open
    make_napari_viewer()  # a second viewer, the current one: the file opens in the first
    (layer,) = viewer.open(str(out / "bed_labels.tif"), plugin="napari-gardenseg")
    k = int(layer.features["label"].iloc[0])
    before = int(layer.features.set_index("label").loc[k, "area"])
    layer.selected_label = k
    layer.brush_size = 3
    y, x = np.argwhere(layer.data == 0)[0]
    layer.paint((int(y), int(x)), k)
    assert int(layer.features.set_index("label").loc[k, "area"]) == int((layer.data == k).sum()) > before


def test_photos_opened_as_a_stack_are_one_layer(tmp_path):
    # napari's *Open Files as Stack* hands the reader the list of files (npe2 passes a list only
    # then): one layer of them, planes first, as napari's own reader makes it; one per file before
    import npe2
    from napari.components import ViewerModel

    from napari_gardenseg._image_arrays import ImageError

    npe2.PluginManager.instance().discover()
    paths = []
    for k in range(3):
        paths.append(str(tmp_path / f"t{k}.jpg"))
        Image.fromarray(np.full((20, 30, 3), 40 * k, np.uint8)).save(paths[-1])
    v = ViewerModel()
    v.open(paths, stack=True, plugin="napari-gardenseg")
    assert [layer.name for layer in v.layers] == ["t0"] and v.layers[0].data.shape == (3, 20, 30, 3)
    assert v.layers[0].rgb and abs(int(v.layers[0].data[2].mean()) - 80) <= 2
    v.open(paths[:2], plugin="napari-gardenseg")  # not as a stack: one layer each, as before
    assert [layer.name for layer in v.layers] == ["t0", "t0 [1]", "t1"]
    Image.fromarray(np.zeros((25, 30, 3), np.uint8)).save(tmp_path / "other.jpg")
    with pytest.raises(ImageError, match="differ in size"):
        get_reader([paths[0], str(tmp_path / "other.jpg")])([paths[0], str(tmp_path / "other.jpg")])


def test_a_label_file_with_huge_ids_opens_with_its_own_measures(tmp_path):
    # the measures were sized by the largest id: an id of 2**31 - 1 (which the writer keeps) failed
    # with MemoryError, and 20 million took 19 s and 4.4 GB for a 64 x 64 image
    lab = np.zeros((64, 64), np.int32)
    lab[5:20, 5:20], lab[30:50, 30:50] = 1, 2**31 - 1
    tifffile.imwrite(tmp_path / "bed_labels.tif", lab)
    pd.DataFrame(
        {
            "label": [1, 2**31 - 1, 7],  # 7: in the table, erased from the image since
            "class_id": [1, 1, 1],
            "class_name": ["weed"] * 3,
            "score": [0.9, 0.8, 0.7],
            "area": [1, 1, 1],
            "area_refined": [1, 1, 1],
            "bbox": ["(0, 0, 1, 1)"] * 3,
            "centroid": ["(0.0, 0.0)"] * 3,
            "source": ["model"] * 3,
        }
    ).to_csv(tmp_path / "bed_instances.csv", index=False)
    ((_, meta, _),) = get_labels_reader(str(tmp_path / "bed_labels.tif"))(str(tmp_path / "bed_labels.tif"))
    features = meta["features"].set_index("label")
    # as the brush keeps them: the id erased since has no row (it had one until the first stroke)
    assert list(features["area"]) == [225, 400] and 7 not in features.index
    assert features.loc[2**31 - 1, "centroid_y"] == 39.5
