"""Label images open in napari as Labels layers, with the batch's classes and scores as features."""

import numpy as np
import pandas as pd
import tifffile
from PIL import Image

from napari_gardenseg._napari_reader import get_labels_reader, get_reader
from napari_gardenseg._train_layers import classes_from_features


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
