"""YOLO segmentation datasets (Ultralytics, Roboflow's YOLOv8 export) read as training samples."""

import numpy as np
import pytest
from PIL import Image

from napari_gardenseg._image_arrays import ImageError
from napari_gardenseg._yolo_labels import read_yolo


def _photo(path, h=40, w=60, orientation=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = None
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(path, exif=exif) if exif else Image.fromarray(
        np.full((h, w, 3), 90, np.uint8)
    ).save(path)
    return path


def _labels(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_roboflow_export_polygons_classes_overlaps_and_what_is_left_out(tmp_path):
    # Roboflow's YOLOv8 layout: data.yaml beside train/ valid/, paths written as "../train/images"
    (tmp_path / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\nnc: 2\nnames: ['beet', 'weed']\n"
    )
    _photo(tmp_path / "train/images/a.jpg")
    _labels(
        tmp_path / "train/labels/a.txt",
        [
            "0 0.0 0.0 0.5 0.0 0.5 0.5 0.0 0.5",  # beet: x 0..30, y 0..20
            "1 0.1 0.1 0.2 0.1 0.2 0.3 0.1 0.3",  # weed on top of it: x 6..12, y 4..12 (smaller: drawn over)
            "1 0.7 0.7 0.9 0.7 0.9 0.9",  # a triangle
        ],
    )
    _photo(tmp_path / "train/images/d.jpg")  # a box, beside a polygon: left out, or its plant is taught as soil
    _labels(tmp_path / "train/labels/d.txt", ["0 0.5 0.5 0.2 0.2", "1 0.1 0.1 0.2 0.1 0.2 0.3"])
    _photo(tmp_path / "train/images/e.jpg")  # a box alone: no mask
    _labels(tmp_path / "train/labels/e.txt", ["0 0.5 0.5 0.2 0.2"])
    _photo(tmp_path / "train/images/b.jpg")  # no label file: a background photo to YOLO
    _photo(tmp_path / "train/images/c.jpg")
    _labels(tmp_path / "train/labels/c.txt", [""])  # empty
    _photo(tmp_path / "valid/images/v.jpg")
    _labels(tmp_path / "valid/labels/v.txt", ["0 0 0 1 0 1 1 0 1"])

    with pytest.warns(UserWarning) as said:
        [(photo, labels, classes)] = read_yolo(tmp_path)  # the folder: its data.yaml, the train split
    message = " ".join(str(w.message) for w in said)
    assert "3 photo(s) with no polygon labels" in message and "1 box label(s)" in message
    assert "1 photo(s) where some plants have a box and no polygon" in message and "d.jpg" in message
    assert photo == tmp_path / "train/images/a.jpg"
    assert labels.shape == (40, 60) and labels.dtype == np.int16  # as train holds them
    assert sorted(classes.values()) == ["beet", "weed", "weed"]
    beet = [k for k, v in classes.items() if v == "beet"][0]
    small = labels[8, 9]
    assert classes[int(small)] == "weed"  # the small weed kept its pixels on the beet
    assert 500 < (labels == beet).sum() < 600  # 30 x 20 less the weed's
    assert labels[30, 50] > 0 and classes[int(labels[30, 50])] == "weed"  # inside the triangle
    assert labels[39, 0] == 0

    with pytest.warns(UserWarning, match="1 box label"):
        both = read_yolo(tmp_path / "data.yaml", split="all")
    assert [p.name for p, _, _ in both] == ["a.jpg", "v.jpg"]
    assert (both[1][1] > 0).all()


def test_folder_without_yaml_exif_size_and_errors(tmp_path):
    # labels beside the photos, no dataset file: classes by number; the photo turned by its EXIF tag
    _photo(tmp_path / "p.jpg", h=40, w=60, orientation=6)
    _labels(tmp_path / "p.txt", ["\ufeff3 0 0 1 0 1 0.5 0 0.5"])  # a byte-order mark first (Windows editors)
    [(photo, labels, classes)] = read_yolo(tmp_path)
    assert labels.shape == (60, 40)  # as the photo is shown (and read for training)
    assert classes == {1: "class 3"} and (labels[:30] == 1).mean() > 0.9 and not labels[31:].any()

    # a class number written as a float, as numpy.savetxt writes it: read as Ultralytics reads it
    _labels(tmp_path / "p.txt", ["3.000000000000000000e+00 0 0 1 0 1 0.5 0 0.5"])
    assert read_yolo(tmp_path)[0][2] == {1: "class 3"}
    for line in ("0 0.1 0.2 0.3", "1.5 0 0 1 0 1 1"):
        _labels(tmp_path / "p.txt", [line])
        with pytest.raises(ImageError, match=r"p.txt, line 1: expected a class number"):
            read_yolo(tmp_path)
    (tmp_path / "d.yaml").write_text("names: {0: plant}\ntrain: .\n")
    _labels(tmp_path / "p.txt", ["2 0 0 1 0 1 1"])
    with pytest.raises(ImageError, match="class 2 has no name"):
        read_yolo(tmp_path / "d.yaml")
    with pytest.raises(ImageError, match="lists no val photos"):
        read_yolo(tmp_path / "d.yaml", split="val")
    (tmp_path / "d.yaml").write_text("names: [plant]\ntrain: gone/images\n")
    with pytest.raises(FileNotFoundError, match="gone/images"):
        read_yolo(tmp_path / "d.yaml")
    with pytest.raises(FileNotFoundError):
        read_yolo(tmp_path / "nothing.yaml")


def test_a_splits_subfolders_are_read_and_pixel_coordinates_are_refused(tmp_path):
    """Ultralytics reads a split folder with its subfolders (labels/ mirroring them); its labels
    are fractions of the photo's size, and a tool that wrote pixels is named."""
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [plant]\n")
    for rel in ("a", "plot2/b", "plot3/deep/c"):
        _photo(tmp_path / "images" / "train" / f"{rel}.jpg")
        _labels(tmp_path / "labels" / "train" / f"{rel}.txt", ["0 0.1 0.1 0.5 0.1 0.5 0.5"])
    samples = read_yolo(tmp_path / "data.yaml")
    assert [p.name for p, _, _ in samples] == ["a.jpg", "b.jpg", "c.jpg"]
    _labels(tmp_path / "labels" / "train" / "plot2" / "b.txt", ["0 6 4 30 4 30 20"])
    with pytest.raises(ImageError, match=r"b.txt, line 1: coordinates outside 0..1 \(4 to 30\).*not pixels"):
        read_yolo(tmp_path / "data.yaml")


def test_label_studio_yolo_export_without_yaml_takes_classes_txt(tmp_path):
    # Label Studio's "YOLO" export (and LabelImg): classes.txt, images/, labels/, no YAML file
    (tmp_path / "classes.txt").write_text("weed\ncarrot\n")
    _photo(tmp_path / "images/a.jpg")
    _labels(tmp_path / "labels/a.txt", ["1 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5"])
    [(photo, labels, classes)] = read_yolo(tmp_path)
    assert photo == tmp_path / "images/a.jpg" and labels.max() == 1 and classes == {1: "carrot"}


def test_relative_dataset_path_missing_beside_the_yaml_is_tried_from_the_working_folder(tmp_path, monkeypatch):
    # Ultralytics' own YAML files say "path: ../datasets/coco8", from its datasets folder, not the YAML's
    (tmp_path / "cfg").mkdir()
    yaml_file = tmp_path / "cfg" / "coco8-seg.yaml"
    yaml_file.write_text("path: data/coco8\ntrain: images/train\nnames: {0: person}\n")
    _photo(tmp_path / "work/data/coco8/images/train/a.jpg")
    _labels(tmp_path / "work/data/coco8/labels/train/a.txt", ["0 0 0 1 0 1 1 0 1"])
    monkeypatch.chdir(tmp_path / "work")
    [(photo, labels, classes)] = read_yolo(yaml_file)
    assert photo.name == "a.jpg" and (labels == 1).all() and classes == {1: "person"}
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="names images/train"):
        read_yolo(yaml_file)


def test_a_dataset_folder_given_relative_to_the_working_folder(tmp_path, monkeypatch):
    # Roboflow's data.yaml has no path: its folders are relative to the YAML's own folder, "yolo/"
    (tmp_path / "yolo").mkdir()
    (tmp_path / "yolo" / "data.yaml").write_text("train: ../train/images\nnames: ['beet']\n")
    _photo(tmp_path / "yolo/train/images/a.jpg")
    _labels(tmp_path / "yolo/train/labels/a.txt", ["0 0 0 1 0 1 1 0 1"])
    monkeypatch.chdir(tmp_path)
    [(photo, labels, classes)] = read_yolo("yolo")
    assert photo.resolve() == (tmp_path / "yolo/train/images/a.jpg").resolve() and classes == {1: "beet"}


def test_an_absolute_dataset_path_of_another_machine_falls_back_to_the_yamls_folder(tmp_path):
    # public report: a dataset made on Colab ("path: /content/datasets/mydata") copied to a laptop
    yaml_file = tmp_path / "mydata" / "data.yaml"
    _photo(tmp_path / "mydata/images/train/a.jpg")
    _labels(tmp_path / "mydata/labels/train/a.txt", ["0 0 0 1 0 1 1 0 1"])
    gone = tmp_path / "content" / "datasets" / "mydata"  # absolute, and not on this machine
    yaml_file.write_text(f"path: {gone}\ntrain: images/train\nnames: [weed]\n")
    [(photo, labels, classes)] = read_yolo(yaml_file)
    assert photo == tmp_path / "mydata/images/train/a.jpg" and (labels == 1).all() and classes == {1: "weed"}


def test_a_detection_dataset_and_a_split_the_export_left_out_are_said(tmp_path):
    # Roboflow lists a test split in data.yaml that its export may not have
    (tmp_path / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\nnames: ['weed']\n"
    )
    _photo(tmp_path / "train/images/a.jpg")
    _labels(tmp_path / "train/labels/a.txt", ["0 0 0 1 0 1 1"])
    _photo(tmp_path / "valid/images/v.jpg")
    _labels(tmp_path / "valid/labels/v.txt", ["0 0 0 1 0 1 1"])
    with pytest.warns(UserWarning, match="left out the test split.s. it lists, which are not there"):
        assert len(read_yolo(tmp_path, split="all")) == 2
    with pytest.raises(FileNotFoundError, match="names ../test/images"):
        read_yolo(tmp_path, split="test")  # asked for by name: refused
    # boxes only: a detection dataset, said as such
    for name in ("a", "v"):
        _labels(tmp_path / f"{'train' if name == 'a' else 'valid'}/labels/{name}.txt", ["0 0.5 0.5 0.2 0.2"])
    with pytest.raises(ImageError, match="its label files hold boxes: a detection dataset"):
        read_yolo(tmp_path)


def test_a_class_only_ever_boxed_is_not_trained_and_leaves_no_photo_out(tmp_path):
    (tmp_path / "data.yaml").write_text("train: ../train/images\nnames: ['lettuce', 'colour card']\n")
    for name in ("a", "b"):
        _photo(tmp_path / f"train/images/{name}.jpg")
        _labels(tmp_path / f"train/labels/{name}.txt", ["0 0 0 0.5 0 0.5 0.5", "1 0.8 0.2 0.1 0.1"])
    samples = read_yolo(tmp_path)
    assert [p.name for p, _, _ in samples] == ["a.jpg", "b.jpg"]
    assert all(set(classes.values()) == {"lettuce"} for _, _, classes in samples)
    _labels(tmp_path / "train/labels/b.txt", ["0 0 0 0.5 0 0.5 0.5", "0 0.8 0.2 0.1 0.1"])  # a lettuce boxed
    with pytest.warns(UserWarning, match=r"1 photo\(s\) where some plants have a box and no polygon .*b.jpg"):
        assert [p.name for p, _, _ in read_yolo(tmp_path)] == ["a.jpg"]


def test_a_photo_whose_polygons_are_all_empty_is_named_where_it_is_left_out(tmp_path):
    _photo(tmp_path / "p.png")
    _labels(tmp_path / "p.txt", ["0 0.1 0.1 0.9 0.1 0.9 0.9"])
    _photo(tmp_path / "q.png")
    _labels(tmp_path / "q.txt", ["0 0.1 0.1 0.5 0.1 0.9 0.1"])  # three points on a line: no area
    with pytest.warns(UserWarning, match=r"1 photo\(s\) whose masks are all empty .*: q.png$"):
        [(photo, _, _)] = read_yolo(tmp_path)
    assert photo.name == "p.png"
    (tmp_path / "p.txt").unlink()
    (tmp_path / "p.png").unlink()
    with pytest.raises(ImageError, match=r"no photo has polygon labels \(1 photo\(s\) whose masks are all empty"):
        read_yolo(tmp_path)
