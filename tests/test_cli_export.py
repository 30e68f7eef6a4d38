import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_gardenseg import cli
from napari_gardenseg._export import rle_encode, to_coco
from napari_gardenseg._results import SegmentationResult


def _decode(rle):
    flat = np.zeros(rle["size"][0] * rle["size"][1], bool)
    pos, value = 0, False
    for n in rle["counts"]:
        flat[pos : pos + n] = value
        pos += n
        value = not value
    return flat.reshape(rle["size"], order="F")


@pytest.mark.parametrize("seed", [0, 1])
def test_rle_round_trip_and_pycocotools_agree(seed):
    mask = np.random.default_rng(seed).random((13, 17)) > 0.5
    mask[0, 0] = bool(seed)  # runs must start with zeros either way
    rle = rle_encode(mask)
    np.testing.assert_array_equal(_decode(rle), mask)
    mask_utils = pytest.importorskip("pycocotools.mask")
    coco = mask_utils.frPyObjects(rle, *rle["size"])
    np.testing.assert_array_equal(mask_utils.decode(coco).astype(bool), mask)


def test_to_coco_of_a_result():
    labels = np.zeros((6, 8), np.int32)
    labels[1:3, 1:4] = 1
    labels[4:6, 5:8] = 2
    res = SegmentationResult(
        labels=labels,
        refined=None,
        class_ids=np.array([3, 5]),
        class_names=["rosette", "weed"],
        scores=np.array([0.9, 0.6], np.float32),
        boxes=np.zeros((2, 4), np.float32),
    )
    coco = to_coco(res, file_name="a.png")
    assert coco["images"] == [{"id": 1, "width": 8, "height": 6, "file_name": "a.png"}]
    assert {c["id"]: c["name"] for c in coco["categories"]} == {3: "rosette", 5: "weed"}
    a, b = coco["annotations"]
    assert (a["category_id"], a["area"], a["bbox"], a["score"]) == (3, 6, [1.0, 1.0, 3.0, 2.0], pytest.approx(0.9))
    np.testing.assert_array_equal(_decode(b["segmentation"]), labels == 2)
    json.dumps(coco)  # serialisable as is
    # with the model's classes given, a class of the result that the model lacks (colour-only: 4
    # "plant" for the garden model) is listed too: every annotation's category is in the file
    res.class_ids[1], res.class_names[1] = 4, "plant"
    named = to_coco(res, class_names=["__background__", "flowering", "rosette", "weed"])
    ids = {c["id"]: c["name"] for c in named["categories"]}
    assert ids == {1: "flowering", 2: "rosette", 3: "weed", 4: "plant"}
    assert {a["category_id"] for a in named["annotations"]} <= set(ids)


def test_cli_segments_files_and_writes_everything(tmp_path, scene, capsys):
    image, _, _ = scene
    Image.fromarray(image).save(tmp_path / "g.png")
    out = tmp_path / "out"
    rc = cli.main(["segment", str(tmp_path / "g.png"), "--out", str(out), "--coco", "--score-threshold", "0.3"])
    assert rc == 0, capsys.readouterr().err
    labels = tifffile.imread(out / "g_labels.tif")
    refined = tifffile.imread(out / "g_labels_crf.tif")
    assert labels.shape == refined.shape == image.shape[:2]
    import pandas as pd

    table = pd.read_csv(out / "g_instances.csv")
    assert len(table) == labels.max() >= 3  # the garden model finds the scene's plants
    assert refined.max() >= 1
    assert list(table["area"]) == list(np.bincount(labels.ravel())[1:])
    # whole pixels, as area: 1510, not 1510.0
    assert table["area_refined"].dtype == np.int64
    assert list(table["area_refined"]) == list(np.bincount(refined.ravel(), minlength=len(table) + 1)[1:])
    assert np.asarray(Image.open(out / "g_overlay.png")).shape == image.shape
    coco = json.loads((out / "g_coco.json").read_text())
    assert len(coco["annotations"]) == int((table["area_refined"] > 0).sum()) >= 1  # COCO holds the CRF masks
    record = json.loads((out / "g_run.json").read_text())  # written last: what made the outputs
    assert record["model"]["source"] == "garden" and record["options"] == {"score_threshold": 0.3}
    assert record["written"] == ["g_labels.tif", "g_labels_crf.tif", "g_instances.csv", "g_overlay.png", "g_coco.json"]
    # a second run does not replace them unless asked
    capsys.readouterr()
    assert cli.main(["segment", str(tmp_path / "g.png"), "--out", str(out), "--coco"]) == 1
    summary = capsys.readouterr().err.splitlines()[-1]  # the last line says the ways on
    assert "1 of them because their outputs exist: --resume skips" in summary and "--overwrite" in summary


def test_cli_reports_bad_files_and_keeps_going(tmp_path, scene, capsys):
    image, _, _ = scene
    Image.fromarray(image[:64, :64]).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    rc = cli.main(
        ["segment", str(tmp_path / "bad.png"), str(tmp_path / "ok.png"), "--no-crf", "--out", str(tmp_path / "o")]
    )
    assert rc == 1
    assert "bad.png: FAILED" in capsys.readouterr().err
    (failure,) = [json.loads(line) for line in (tmp_path / "o" / "failures.jsonl").read_text().splitlines()]
    assert failure["file"] == str(tmp_path / "bad.png") and failure["error_type"] == "ImageError"
    assert "bad.png is not an image" in failure["message"]
    assert (tmp_path / "o" / "ok_labels.tif").exists()
    assert not (tmp_path / "o" / "ok_labels_crf.tif").exists()
    assert cli.main(["segment", str(tmp_path / "missing.png")]) == 2
    assert cli.main(["segment", "--sample", "--model", "cocoo", "--out", str(tmp_path / "x")]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_cli_segments_a_folder(tmp_path, scene, capsys):
    image, _, _ = scene
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(image[:96, :96]).save(photos / "a.png")
    Image.fromarray(image[-96:, -96:]).save(photos / "b.jpg", quality=95)
    framed = np.zeros((192, 192, 3), np.uint8)  # a mosaic's nodata border around the photo
    framed[48:144, 48:144] = image[:96, :96]
    Image.fromarray(framed).save(photos / "c.png")
    (photos / "notes.txt").write_text("not a photo")
    assert cli.main(["segment", str(photos), "--no-crf", "--out", str(tmp_path / "o")]) == 0
    runs = sorted(f.name for f in (tmp_path / "o").glob("*_run.json"))
    assert runs == ["a_run.json", "b_run.json", "c_run.json"]
    # the run record says how the network saw each image: c without its border
    seen = {r: json.loads((tmp_path / "o" / r).read_text())["network"] for r in runs}
    assert seen["a_run.json"]["tiles"] == 0 and "data_window" not in seen["a_run.json"]
    assert seen["c_run.json"]["data_window"] == [48, 48, 144, 144]
    # tiles that share no pixel cut plants on their seams: the warning is kept in the record too
    Image.fromarray(image[:128, :128]).save(tmp_path / "d.png")
    args = ["segment", str(tmp_path / "d.png"), "--no-crf", "--tile-size", "64", "--tile-overlap", "0"]
    assert cli.main([*args, "--scale", "1", "--out", str(tmp_path / "seams")]) == 0
    record = json.loads((tmp_path / "seams" / "d_run.json").read_text())["network"]
    assert record["tiles"] == 4 and "do not overlap" in record["seam_note"]
    assert "seam_note" not in seen["a_run.json"]
    # outputs written into the folder would be read as photos by the next run: refused
    capsys.readouterr()
    assert cli.main(["segment", str(photos), "--no-crf", "--out", str(photos)]) == 2
    assert "also an input folder" in capsys.readouterr().err
    assert sorted(f.name for f in photos.iterdir()) == ["a.png", "b.jpg", "c.png", "notes.txt"]
    # an output "folder" that is a file: said plainly, the file untouched
    assert cli.main(["segment", str(photos / "a.png"), "--no-crf", "--out", str(photos / "notes.txt")]) == 2
    assert "is a file: give a folder" in capsys.readouterr().err
    assert (photos / "notes.txt").read_text() == "not a photo"


def test_cli_sample_offline(tmp_path):
    assert cli.main(["segment", "--sample", "--out", str(tmp_path), "--no-crf"]) == 0
    import pandas as pd

    record = json.loads((tmp_path / "seedling_tray_run.json").read_text())
    assert record["vegetation"]["mode"] == "auto" and "reason" in record["vegetation"]
    table = pd.read_csv(tmp_path / "seedling_tray_instances.csv")
    # the photo's 18 or so rosettes: found by the model (not only as colour components)
    assert (table["source"] == "model").sum() >= 10


def test_the_command_line_tells_a_users_error_from_a_bug(monkeypatch, capsys):
    # the user's (a validation of ours, a file problem): one line, exit 2; another library's
    # ValueError is a bug: its traceback, not a one-liner that reads like the user's mistake
    import numpy as np

    from napari_gardenseg import cli
    from napari_gardenseg._image_arrays import to_rgb_float

    def ours(args):
        to_rgb_float(np.zeros((2, 3, 4, 5)))

    monkeypatch.setattr(cli, "cmd_models", ours)
    assert cli.main(["models"]) == 2
    assert capsys.readouterr().err.startswith("gardenseg: error: ")
    monkeypatch.setattr(cli, "cmd_models", lambda args: np.zeros(3).reshape(2))
    with pytest.raises(ValueError, match="cannot reshape"):
        cli.main(["models"])
    monkeypatch.setattr(cli, "cmd_models", lambda args: open("/no/such/folder/x.txt"))
    assert cli.main(["models"]) == 2 and "No such file" in capsys.readouterr().err
    # a missing extra, with the package's own install hint (raised without a module name)
    from napari_gardenseg._coco_labels import pycocotools_mask

    monkeypatch.setitem(__import__("sys").modules, "pycocotools", None)
    monkeypatch.setattr(cli, "cmd_models", lambda args: pycocotools_mask("reading COCO annotations"))
    assert cli.main(["models"]) == 2 and "pycocotools" in capsys.readouterr().err


def test_to_coco_of_labels_corrected_in_napari():
    # a segmentation's layer after corrections: id 3 kept (weed, 0.9), id 7 painted by hand, a
    # row for id 5 erased since: the labels as they are now, classes and scores by id
    import pandas as pd

    labels = np.zeros((20, 30), np.int32)
    labels[2:8, 3:9] = 3
    labels[10:18, 12:25] = 7
    features = pd.DataFrame({"label": [3, 5], "class_name": ["weed", "rosette"], "score": [0.9, 0.8]})
    coco = to_coco(labels, file_name="plot3.jpg", features=features)
    assert coco["images"] == [{"id": 1, "width": 30, "height": 20, "file_name": "plot3.jpg"}]
    assert coco["categories"] == [
        {"id": 1, "name": "plant", "supercategory": ""},
        {"id": 2, "name": "weed", "supercategory": ""},
    ]
    assert coco["info"]["description"] == "instances segmented by napari-gardenseg" and coco["licenses"] == []
    weed, painted = coco["annotations"]
    assert (weed["category_id"], weed["area"]) == (2, 36) and weed["score"] == pytest.approx(0.9)
    assert painted["category_id"] == 1 and "score" not in painted and painted["bbox"] == [12.0, 10.0, 13.0, 8.0]
    assert (weed["id"], painted["id"]) == (3, 7)  # the label ids, as in the batch's COCO file and table
    np.testing.assert_array_equal(_decode(painted["segmentation"]), labels == 7)
    with pytest.raises(TypeError, match="or an \\(H, W\\) integer label image"):
        to_coco(labels.astype(float))
    # a mask (bool) is one plant: scikit-image's TypeError before
    [mask] = to_coco(labels == 7)["annotations"]
    np.testing.assert_array_equal(_decode(mask["segmentation"]), labels == 7)


def test_to_coco_of_labels_gives_the_batchs_category_ids():
    # a segmentation's layer (its table has the model's class ids: weed 3, the colour "plant" 4):
    # its export numbered the classes by name from 1 (plant 1, weed 2), so scoring the batch's
    # COCO file against it, or merging the two, mixed the classes up
    import pandas as pd

    labels = np.zeros((20, 30), np.int32)
    labels[2:8, 3:9] = 3
    labels[10:18, 12:25] = 7
    labels[10:14, 2:6] = 9  # painted by hand: no row
    features = pd.DataFrame({"label": [3, 7], "class_id": [3, 4], "class_name": ["weed", "plant"], "score": [0.9, 0.4]})
    coco = to_coco(labels, features=features)
    assert [(c["id"], c["name"]) for c in coco["categories"]] == [(3, "weed"), (4, "plant")]
    assert [(a["id"], a["category_id"]) for a in coco["annotations"]] == [(3, 3), (7, 4), (9, 4)]
    # weeds only, with the model's classes: every class under the model's id, the painted plant at
    # the engine's colour-class id (the model's count of classes)
    names = ["__background__", "flowering", "rosette", "weed"]
    only = to_coco(labels * (labels != 7), features=features[:1], class_names=names)
    assert [(c["id"], c["name"]) for c in only["categories"]] == [
        (1, "flowering"),
        (2, "rosette"),
        (3, "weed"),
        (4, "plant"),
    ]
    assert [(a["id"], a["category_id"]) for a in only["annotations"]] == [(3, 3), (9, 4)]
    # a class renamed in napari keeps its row's old class_id: the id stays the one name's it is
    renamed = features.assign(class_id=[3, 3], class_name=["rosette", "weed"])
    coco = to_coco(labels * (labels != 9), features=renamed)
    assert [(c["id"], c["name"]) for c in coco["categories"]] == [(1, "rosette"), (2, "weed")]
    coco = to_coco(labels * (labels != 9), features=renamed, class_names=names)
    assert [(a["id"], a["category_id"]) for a in coco["annotations"]] == [(3, 2), (7, 3)]


def test_the_commands_print_the_packages_warnings_as_their_own_lines():
    """What a run left out is a line of the command ("gardenseg adapt: left out ..."), not Python's
    "file.py:237: UserWarning:"; other libraries' warnings keep Python's form."""
    import os
    import warnings

    import napari_gardenseg
    from napari_gardenseg.cli import _warnings_as_lines

    ours = os.path.join(os.path.dirname(napari_gardenseg.__file__), "_adapt.py")
    # a library in an environment that happens to be named like the package is not the package
    theirs = os.path.join(os.sep, "envs", "napari_gardenseg", "lib", "torch", "nn.py")
    with _warnings_as_lines("adapt"):
        text = warnings.formatwarning("adapt: left out 1 photo(s) without colour", UserWarning, ours, 3)
        other = warnings.formatwarning("a library's note", UserWarning, theirs, 3)
    assert text == "gardenseg adapt: left out 1 photo(s) without colour\n"
    assert "UserWarning: a library's note" in other
    assert "UserWarning" in warnings.formatwarning("left out", UserWarning, ours, 3)  # only while a command runs
