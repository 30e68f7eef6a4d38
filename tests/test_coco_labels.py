"""COCO annotation files (what annotation tools export) read as training samples."""

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from napari_gardenseg._coco_labels import read_coco
from napari_gardenseg._export import labels_to_coco_annotations
from napari_gardenseg._image_arrays import ImageError


def _write(path, images, annotations, categories=({"id": 1, "name": "weed"},)):
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": list(categories)}))
    return path


def _photo(folder, name, h=40, w=60):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(folder / name)
    return {"id": len(list(folder.iterdir())), "file_name": name, "height": h, "width": w}


def _same_partition(a, b):
    """Equal up to the ids' numbering: each id of one is exactly one id of the other."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(pairs[0]) == len(np.unique(a)) == len(np.unique(b)) and np.all((pairs[0] == 0) == (pairs[1] == 0))


def test_plain_rle_polygons_and_compressed_rle(tmp_path):
    entry = _photo(tmp_path / "images", "a.jpg")  # CVAT's layout: the JSON beside images/
    lab = np.zeros((40, 60), np.int32)
    lab[2:10, 3:20] = 1
    lab[2:10, 20:30] = 2  # touching 1: stays apart
    anns = labels_to_coco_annotations(lab, [1, 2], image_id=entry["id"])  # this plugin's own export: plain RLE
    # a polygon (x, y pairs; pycocotools rasterises it) and a compressed RLE, as SAM-style tools write it
    anns.append(
        {"id": 3, "image_id": entry["id"], "category_id": 2, "segmentation": [[40, 20, 55, 20, 55, 35, 40, 35]]}
    )
    square = np.zeros((40, 60), np.uint8, order="F")
    square[30:38, 5:15] = 1
    rle = coco_mask.encode(square)
    rle["counts"] = rle["counts"].decode("ascii")  # how it is stored in JSON
    anns.append({"id": 4, "image_id": entry["id"], "category_id": 1, "segmentation": rle, "iscrowd": 0})
    path = _write(tmp_path / "annotations.json", [entry], anns, [{"id": 1, "name": "weed"}, {"id": 2, "name": "beet"}])

    [(photo, labels, classes)] = read_coco(path)
    assert photo == tmp_path / "images" / "a.jpg"
    assert labels.shape == (40, 60) and labels.dtype == np.int16  # as train holds them
    expected = lab.copy()
    polygon = np.asarray(coco_mask.decode(coco_mask.frPyObjects([[40, 20, 55, 20, 55, 35, 40, 35]], 40, 60))[..., 0])
    expected[polygon > 0] = 3
    expected[square > 0] = 4
    assert polygon.sum() > 200  # the polygon's inside, not just its outline
    assert _same_partition(labels, expected)
    names = {int(k): classes[int(labels[expected == k][0])] for k in (1, 2, 3, 4)}
    assert names == {1: "weed", 2: "beet", 3: "beet", 4: "weed"}
    assert sorted(classes) == [1, 2, 3, 4]


def test_overlaps_small_on_top_and_what_is_left_out_is_said(tmp_path):
    a, b, c, d = (_photo(tmp_path, f"{k}.png") for k in "abcd")
    missing = {"id": 9, "file_name": "elsewhere/gone.png", "height": 40, "width": 60}
    big = [[0, 0, 50, 0, 50, 30, 0, 30]]
    small = [[10, 10, 20, 10, 20, 20, 10, 20]]
    anns = [
        {"id": 1, "image_id": a["id"], "category_id": 1, "segmentation": small},  # listed before the big one
        {"id": 2, "image_id": a["id"], "category_id": 1, "segmentation": big},
        {"id": 3, "image_id": a["id"], "category_id": 1, "segmentation": small},  # under its twin: hidden
        {"id": 4, "image_id": b["id"], "category_id": 1, "segmentation": big, "iscrowd": 1},
        {"id": 5, "image_id": 9, "category_id": 1, "segmentation": big},
        {"id": 6, "image_id": c["id"], "category_id": 1, "bbox": [0, 0, 5, 5], "segmentation": []},  # a box only
        {"id": 7, "image_id": a["id"], "category_id": 1, "segmentation": [[0, 0, 0, 0, 0, 0]]},  # no pixel: said too
        # a plant with a box and no outline beside one with a mask (Roboflow's, CVAT's rectangles): trained
        # on, the boxed plant's pixels would be taught as background
        {"id": 8, "image_id": d["id"], "category_id": 1, "segmentation": big},
        {"id": 9, "image_id": d["id"], "category_id": 1, "bbox": [0, 0, 5, 5], "segmentation": []},
    ]
    path = _write(tmp_path / "coco.json", [a, b, c, d, missing], anns)
    with pytest.warns(UserWarning) as said:
        [(photo, labels, classes)] = read_coco(path)
    [message] = [str(w.message) for w in said if "left out" in str(w.message)]
    assert "1 photo(s) not found" in message and "elsewhere/gone.png" in message
    assert "2 photo(s) with no mask annotations" in message  # b (crowd only) and c (a box only)
    assert "1 photo(s) where some plants have a box and no mask" in message and "d.png" in message
    assert (
        "1 crowd annotation(s)" in message and "2 instance(s) with no pixel (empty, or hidden under others)" in message
    )
    assert photo.name == "a.png" and classes == {1: "weed", 2: "weed"}
    assert np.unique(labels).tolist() == [0, 1, 2]  # ids renumbered after the hidden one was dropped
    inner = labels[12:18, 12:18]
    assert np.all(inner == inner[0, 0]) and inner[0, 0] != labels[25, 40] != 0  # the small one kept its pixels


def test_cvat_layout_annotations_beside_images(tmp_path):
    entry = _photo(tmp_path / "export" / "images", "a.jpg")
    (tmp_path / "export" / "annotations").mkdir()
    ann = {"id": 1, "image_id": entry["id"], "category_id": 1, "segmentation": [[0, 0, 9, 0, 9, 9]]}
    path = _write(tmp_path / "export" / "annotations" / "instances_default.json", [entry], [ann])
    [(photo, labels, classes)] = read_coco(path)
    assert photo == tmp_path / "export" / "images" / "a.jpg" and classes == {1: "weed"} and labels.max() == 1


def test_photo_folder_and_clear_errors(tmp_path):
    entry = _photo(tmp_path / "shots", "a.png")
    entry["file_name"] = "C:\\\\labelling\\\\a.png"  # written on Windows: found by its base name
    ann = {"id": 1, "image_id": entry["id"], "category_id": 1, "segmentation": [[0, 0, 9, 0, 9, 9]]}
    path = _write(tmp_path / "coco.json", [entry], [ann])
    with pytest.raises(
        ImageError, match="no annotated photo was found; left out 1 photo.s. not found .*give the photos' folder"
    ):
        read_coco(path)
    [(photo, _, _)] = read_coco(path, images=tmp_path / "shots")
    assert photo == tmp_path / "shots" / "a.png"
    with pytest.raises(FileNotFoundError, match="no such folder of photos"):
        read_coco(path, images=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no such COCO annotation file"):
        read_coco(tmp_path / "none.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ImageError, match="list.json is not a COCO instance annotation file"):
        read_coco(tmp_path / "list.json")
    bad = _write(tmp_path / "bad.json", [entry], [{**ann, "category_id": 5}])
    with pytest.raises(ImageError, match="annotation 1 has category 5, which it does not list"):
        read_coco(bad, images=tmp_path / "shots")
    bad = _write(tmp_path / "bad.json", [entry], [{**ann, "image_id": 7}])
    with pytest.raises(ImageError, match="annotation 1 is for image 7"):
        read_coco(bad, images=tmp_path / "shots")
    other_size = {"size": [20, 20], "counts": [10, 390]}
    bad = _write(tmp_path / "bad.json", [entry], [{**ann, "segmentation": other_size}])
    with pytest.raises(ImageError, match="annotation 1's mask is 20x20 pixels, its image 60x40"):
        read_coco(bad, images=tmp_path / "shots")


def test_string_ids_and_sizes_left_out_as_some_tools_write_them(tmp_path):
    _photo(tmp_path, "a.png", h=30, w=50)
    entry = {"id": "img-a", "file_name": "a.png"}  # no height or width: the photo's own size
    anns = [
        {"id": "1", "image_id": "img-a", "category_id": "7", "segmentation": [[0, 0, 20, 0, 20, 20, 0, 20]]},
        {"id": "2", "image_id": "img-a", "category_id": 7.0, "segmentation": [[30, 5, 45, 5, 45, 25, 30, 25]]},
    ]
    path = _write(tmp_path / "coco.json", [entry, {"id": 2}], anns, [{"id": 7, "name": "thistle"}])
    with pytest.warns(UserWarning, match="with no mask annotations"):
        [(photo, labels, classes)] = read_coco(path)
    assert labels.shape == (30, 50) and classes == {1: "thistle", 2: "thistle"}
    assert labels[10, 10] != labels[15, 40] and labels[10, 10] > 0 and labels[15, 40] > 0


def test_without_pycocotools_the_error_says_what_to_install(tmp_path, monkeypatch):
    import sys

    entry = _photo(tmp_path, "a.png")
    path = _write(tmp_path / "coco.json", [entry], [])
    monkeypatch.setitem(sys.modules, "pycocotools", None)  # not installed
    with pytest.raises(ImportError, match=r'needs pycocotools: pip install "napari-gardenseg\[coco\]"'):
        read_coco(path)


def test_label_images_are_int16_while_the_ids_fit():
    # read_coco / read_yolo draw in the dtype train holds; beyond int16 an id would wrap to a negative
    from napari_gardenseg._label_files import ids_dtype

    assert ids_dtype(0) is np.int16 and ids_dtype(np.iinfo(np.int16).max) is np.int16
    assert ids_dtype(np.iinfo(np.int16).max + 1) is np.int32


def test_sizes_are_checked_against_the_photo_and_a_turned_photos_labels_turn_with_it(tmp_path):
    # stored 60 x 40 with EXIF orientation 6 (shown turned a quarter clockwise): annotated on the stored pixels
    stored = np.full((40, 60, 3), 90, np.uint8)
    stored[5:15, 40:55] = (200, 30, 30)  # the plant, where the tool drew it
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "turned.jpg", exif=exif.tobytes(), quality=95)
    entry = {"id": 1, "file_name": "turned.jpg", "height": 40, "width": 60}
    ann = {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[40, 5, 55, 5, 55, 15, 40, 15]]}
    [(_, labels, _)] = read_coco(_write(tmp_path / "coco.json", [entry], [ann]))
    from napari_gardenseg._image_reader import read_image

    upright = read_image(tmp_path / "turned.jpg").data
    assert labels.shape == upright.shape[:2] == (60, 40)
    red = (upright[..., 0] > 150) & (upright[..., 1] < 100)
    assert (labels > 0).sum() > 100 and (red[labels > 0]).mean() > 0.9  # on the plant as napari shows it
    # a photo resized after it was annotated: left out by name, not drawn at the wrong size; the others read
    Image.fromarray(stored[::2, ::2]).save(tmp_path / "small.png")
    small = {"id": 2, "file_name": "small.png", "height": 40, "width": 60}
    with pytest.warns(
        UserWarning, match=r"1 photo\(s\) of another size .*small.png \(60x40 in the file, 30x20 on disk\)"
    ):
        [(photo, _, _)] = read_coco(_write(tmp_path / "small.json", [entry, small], [ann, dict(ann, id=2, image_id=2)]))
    assert photo.name == "turned.jpg"
    with pytest.raises(ImageError, match="no annotated photo was found; left out 1 photo.s. of another size"):
        read_coco(_write(tmp_path / "small.json", [small], [dict(ann, image_id=2)]))
    # a size of 0 is no size: the photo's own
    _photo(tmp_path / "z", "a.png")
    zero = {"id": 1, "file_name": "a.png", "height": 0, "width": 0}
    [(_, labels, _)] = read_coco(_write(tmp_path / "z" / "coco.json", [zero], [ann]))
    assert labels.shape == (40, 60)


def test_a_run_length_mask_whose_runs_do_not_fill_its_size_is_named(tmp_path):
    entry = _photo(tmp_path, "a.png")
    for runs in ([10, 50], [10, 5000]):  # too few pixels, too many (CVAT has written both)
        ann = {"id": 4, "image_id": entry["id"], "category_id": 1, "segmentation": {"size": [40, 60], "counts": runs}}
        with pytest.raises(ImageError, match="coco.json: annotation 4 .* its runs cover"):
            read_coco(_write(tmp_path / "coco.json", [entry], [ann]))
    compressed = coco_mask.encode(np.asfortranarray(np.ones((40, 60), np.uint8)))
    compressed["size"] = [40, 60]
    compressed["counts"] = coco_mask.encode(np.asfortranarray(np.ones((80, 60), np.uint8)))["counts"].decode()
    ann = {"id": 5, "image_id": entry["id"], "category_id": 1, "segmentation": compressed}
    with pytest.raises(ImageError, match="annotation 5 has a segmentation pycocotools cannot read"):
        read_coco(_write(tmp_path / "coco.json", [entry], [ann]))


def test_polygons_as_point_pairs_or_un_nested_are_read_and_an_odd_ring_is_named(tmp_path):
    """Converters write polygons as [x, y] pairs (labelme's points, numpy's tolist()) or one ring
    un-nested (roboflow/supervision #205): read as the outline they mean, not as an empty mask
    (the plant taught as soil) or a failure of the whole file."""
    entry = _photo(tmp_path, "a.png")
    flat = [10, 5, 30, 5, 30, 20, 10, 20]
    pairs = [[10, 5], [30, 5], [30, 20], [10, 20]]
    second = [40, 25, 55, 25, 55, 35, 40, 35]
    expected = np.asarray(coco_mask.decode(coco_mask.frPyObjects([flat, second], 40, 60))).max(axis=-1)
    forms = {
        "pairs": [pairs, [second[i : i + 2] for i in range(0, 8, 2)]],  # two rings, each as pairs
        "one ring as pairs": pairs,
        "un-nested": flat,
        "pairs as tuples": [tuple(p) for p in pairs],
    }
    for name, segmentation in forms.items():
        ann = {
            "id": 3,
            "image_id": entry["id"],
            "category_id": 1,
            "segmentation": segmentation,
            "bbox": [10, 5, 20, 15],
        }
        [(_, labels, classes)] = read_coco(_write(tmp_path / "coco.json", [entry], [ann]))
        mask = expected if name == "pairs" else expected * (np.arange(60) < 35)
        assert np.array_equal(labels > 0, mask > 0), name
        assert classes == {1: "weed"}, name
    # beside a good polygon, the pairs' plant is drawn too (it was left out, its pixels soil)
    anns = [
        {"id": 1, "image_id": entry["id"], "category_id": 1, "segmentation": [second]},
        {"id": 2, "image_id": entry["id"], "category_id": 1, "segmentation": [pairs]},
    ]
    [(_, labels, classes)] = read_coco(_write(tmp_path / "coco.json", [entry], anns))
    assert len(classes) == 2 and np.array_equal(labels > 0, expected > 0)
    # a ring of 7 values (a corrupt export): pycocotools drops the last one; refused by the annotation's id
    for odd in ([[10, 5, 30, 5, 30, 20, 10]], [10, 5, 30, 5, 30, 20, 10], [flat, [40, 25, 55, 25, 55, 35, 40]]):
        ann = {"id": 7, "image_id": entry["id"], "category_id": 1, "segmentation": odd}
        with pytest.raises(ImageError, match=r"coco.json: annotation 7 has a polygon of \d+ values, an odd number"):
            read_coco(_write(tmp_path / "coco.json", [entry], [ann]))
    # a stray ring too short to enclose anything is dropped, odd or not, as pycocotools drops it
    ann = {"id": 9, "image_id": entry["id"], "category_id": 1, "segmentation": [second, [40, 25, 55]]}
    [(_, labels, _)] = read_coco(_write(tmp_path / "coco.json", [entry], [ann]))
    assert labels.any()
    # nested once more: each ring was dropped as less than 3 points, and the plant with it
    ann = {"id": 8, "image_id": entry["id"], "category_id": 1, "segmentation": [[flat]]}
    with pytest.raises(ImageError, match=r"annotation 8 has a polygon nested deeper than COCO's"):
        read_coco(_write(tmp_path / "coco.json", [entry], [ann]))


def test_cvat_masks_marked_crowd_are_instances(tmp_path):
    """CVAT (Datumaro's COCO writer) marks every brush mask iscrowd=1 and gives every annotation
    ``attributes``; a plain COCO file's crowd regions stay out."""
    entry = _photo(tmp_path, "a.png")
    mask = np.zeros((40, 60), np.uint8)
    mask[5:15, 5:20] = 1
    plain = {"size": [40, 60], "counts": [int(v) for v in _runs(mask)]}
    anns = [
        {
            "id": 1,
            "image_id": entry["id"],
            "category_id": 1,
            "iscrowd": 1,
            "segmentation": plain,
            "attributes": {"occluded": False},
        },
        {
            "id": 2,
            "image_id": entry["id"],
            "category_id": 1,
            "iscrowd": 0,
            "segmentation": [[30, 20, 50, 20, 50, 35, 30, 35]],
            "attributes": {"occluded": False},
        },
    ]
    [(_, labels, classes)] = read_coco(_write(tmp_path / "cvat.json", [entry], anns))
    assert classes == {1: "weed", 2: "weed"} and mask.sum() in np.bincount(labels.ravel())[1:]
    for ann in anns:
        del ann["attributes"]
    anns[1]["iscrowd"] = "0"  # a string, as some tools write it: not a crowd
    with pytest.warns(UserWarning, match="1 crowd annotation"):
        [(_, labels, classes)] = read_coco(_write(tmp_path / "plain.json", [entry], anns))
    assert len(classes) == 1


def _runs(mask):
    """Uncompressed COCO RLE counts of ``mask`` (column-major, starting with background)."""
    flat = np.asfortranarray(mask).ravel(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], edges, [flat.size]])
    counts = np.diff(bounds).tolist()
    return counts if flat[0] == 0 else [0, *counts]


def test_pycocotools_numpy_2_copy_warning_is_not_shown(tmp_path):
    import warnings

    entry = _photo(tmp_path / "images", "a.jpg")
    lab = np.zeros((40, 60), np.int32)
    lab[2:10, 3:20] = 1
    path = _write(tmp_path / "annotations.json", [entry], labels_to_coco_annotations(lab, [1], image_id=entry["id"]))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        [(_, labels, _)] = read_coco(path)
    assert (labels > 0).sum() == (lab > 0).sum()
    assert not [w for w in seen if "copy keyword" in str(w.message)], [str(w.message) for w in seen]


def test_a_stacks_planes_are_named_as_such_not_as_missing_photos(tmp_path):
    entry = _photo(tmp_path, "stack.tif.png")
    lab = np.zeros((40, 60), np.int32)
    lab[2:10, 3:20] = 1
    planes = [dict(entry, id=k + 1, file_name=f"stack.tif.png[{k}]") for k in range(2)]
    anns = [a for k in (1, 2) for a in labels_to_coco_annotations(lab, [1], image_id=k, start_id=k)]
    path = _write(tmp_path / "stack_coco.json", planes, anns)
    with pytest.raises(ImageError, match=r"no annotated photo was found; left out 2 plane\(s\) of stacks") as said:
        read_coco(path)
    assert "not found" not in str(said.value)


def test_merged_exports_never_put_one_photos_plants_on_another(tmp_path):
    # two images sharing an id (two exports merged): a.png's plant was drawn on b.png and a.png dropped
    a, b = _photo(tmp_path, "a.png"), _photo(tmp_path, "b.png")
    square = [[10, 10, 20, 10, 20, 20, 10, 20]]
    other = [[30, 20, 40, 20, 40, 30, 30, 30]]
    path = _write(
        tmp_path / "merged.json",
        [{**a, "id": 1}, {**b, "id": 1}],
        [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": square}],
    )
    with pytest.raises(
        ImageError, match=r"images 'a.png' and 'b.png' share the id 1, so their annotations cannot be told apart"
    ):
        read_coco(path)
    # a category id listed twice under two names renamed every 'weed' 'crop'
    cats = [{"id": 1, "name": "weed"}, {"id": 1, "name": "crop"}]
    with pytest.raises(ImageError, match=r"categories 'weed' and 'crop' share the id 1"):
        read_coco(_write(tmp_path / "cats.json", [a], [], cats))
    with pytest.raises(ImageError, match="category 1 has no name"):
        read_coco(
            _write(
                tmp_path / "null.json",
                [a],
                [{"id": 1, "image_id": a["id"], "category_id": 1, "segmentation": square}],
                [{"id": 1, "name": None}],
            )
        )
    # an unused category without a name, an entry listed twice with an extra field: read as before
    cats = [{"id": 1, "name": "weed"}, {"id": 1, "name": "weed", "supercategory": "plant"}, {"id": 3, "name": ""}]
    listed = [a, {**a, "license": 1}]
    [(_, _, classes)] = read_coco(
        _write(
            tmp_path / "ok.json",
            listed,
            [{"id": 1, "image_id": a["id"], "category_id": 1, "segmentation": square}],
            cats,
        )
    )
    assert classes == {1: "weed"}
    # one photo listed twice, a plant under each: one sample with both (each was the other's soil)
    anns = [
        {"id": 1, "image_id": 1, "category_id": 2, "segmentation": square},
        {"id": 2, "image_id": 2, "category_id": 2, "segmentation": other},
    ]
    twice = [{**a, "id": 1}, {**a, "id": 2}]
    [(photo, labels, classes)] = read_coco(
        _write(tmp_path / "twice.json", twice, anns, [{"id": 2, "name": " Gänseblu\u0308mchen "}])
    )
    assert photo.name == "a.png" and labels.max() == 2 and classes == {1: "Gänseblümchen", 2: "Gänseblümchen"}
    # two file names that lead to one file by its base name: not told apart, left out and said
    (tmp_path / "imgs").mkdir()
    _photo(tmp_path / "imgs", "IMG_1.png")
    c = _photo(tmp_path / "imgs", "c.png")
    named = [
        {**a, "id": 1, "file_name": "cam1/IMG_1.png"},
        {**a, "id": 2, "file_name": "cam2/IMG_1.png"},
        {**c, "id": 3},
    ]
    anns.append({"id": 3, "image_id": 3, "category_id": 2, "segmentation": square})
    with pytest.warns(
        UserWarning, match=r"1 photo\(s\) that several file names lead to.*cam1/IMG_1.png and cam2/IMG_1.png"
    ):
        [(photo, _, _)] = read_coco(
            _write(tmp_path / "cams.json", named, anns, [{"id": 2, "name": "weed"}]), tmp_path / "imgs"
        )
    assert photo.name == "c.png"


def test_photos_named_as_other_tools_and_systems_write_them_are_found(tmp_path):
    """Label Studio exports its uploads as ``<8 hex>-<name>``; a file made on Windows or macOS may
    name ``P0.JPG`` for ``p0.jpg``. The user's own photos are found by those names."""
    photos = tmp_path / "photos"
    entry = _photo(photos, "p0.jpg")
    other = _photo(photos, "Field_2.PNG")
    ann = {"id": 1, "image_id": entry["id"], "category_id": 1, "segmentation": [[0, 0, 9, 0, 9, 9]]}
    ann2 = {"id": 2, "image_id": other["id"], "category_id": 1, "segmentation": [[0, 0, 9, 0, 9, 9]]}
    entries = [{**entry, "file_name": "images/3e1a2b4c-p0.jpg"}, {**other, "file_name": "field_2.png"}]
    found = read_coco(_write(tmp_path / "result.json", entries, [ann, ann2]), images=photos)
    assert [p.name for p, _, _ in found] == ["p0.jpg", "Field_2.PNG"]
    # two files of that name in other cases: neither is taken for it
    _photo(photos, "FIELD_2.png")
    with pytest.warns(UserWarning, match="1 photo.s. not found.*field_2.png"):
        assert len(read_coco(tmp_path / "result.json", images=[tmp_path / "none", photos][1:])) == 1


def test_when_nothing_is_left_the_error_says_what_was_left_out(tmp_path):
    entry = _photo(tmp_path, "a.png")
    with pytest.raises(ImageError, match="no annotated photo was found; left out 1 photo.s. with no mask annotations"):
        read_coco(_write(tmp_path / "empty.json", [entry], []))


def test_a_category_only_ever_boxed_is_not_trained_and_its_boxes_leave_no_photo_out(tmp_path):
    """Plants outlined, a colour card or plot tag boxed in every photo (a phenotyping layout): the
    card's category has no mask anywhere, so it is not trained and its box is background, as it
    is; a plant of an outlined category with a box alone still leaves its photo out, also when
    its box is under a second id of the same photo."""
    a, b = _photo(tmp_path, "a.png"), _photo(tmp_path, "b.png")
    b2 = dict(b, id=9)  # b.png listed twice
    plant = [[0, 0, 20, 0, 20, 20, 0, 20]]
    anns = [
        {"id": 1, "image_id": a["id"], "category_id": 1, "segmentation": plant},
        {"id": 2, "image_id": a["id"], "category_id": 2, "bbox": [30, 5, 10, 10], "segmentation": []},
        {"id": 3, "image_id": b["id"], "category_id": 1, "segmentation": plant},
        {"id": 4, "image_id": b2["id"], "category_id": 1, "bbox": [30, 5, 10, 10], "segmentation": []},
    ]
    categories = [{"id": 1, "name": "lettuce"}, {"id": 2, "name": "colour card"}]
    with pytest.warns(UserWarning, match=r"1 photo\(s\) where some plants have a box and no mask .*b.png") as said:
        [(photo, labels, classes)] = read_coco(_write(tmp_path / "c.json", [a, b, b2], anns, categories))
    assert photo.name == "a.png" and classes == {1: "lettuce"} and labels[5, 35] == 0
    assert "no mask annotations" not in str(said[0].message)


def test_a_date_in_a_photos_name_is_not_taken_for_an_upload_prefix(tmp_path):
    """20240612-bed1.jpg is another day's photo than bed1.jpg (Label Studio's prefixes have letters);
    and a name found as written in any folder wins over a name found without a prefix."""
    today, archive = tmp_path / "today", tmp_path / "archive"
    _photo(today, "bed1.jpg")
    entry = _photo(archive, "20240612-bed1.jpg")
    ann = {"id": 1, "image_id": entry["id"], "category_id": 1, "segmentation": [[0, 0, 9, 0, 9, 9]]}
    path = _write(tmp_path / "c.json", [entry], [ann])
    with pytest.raises(ImageError, match="not found"):
        read_coco(path, images=today)
    assert read_coco(path, images=[today, archive])[0][0] == archive / "20240612-bed1.jpg"
    uploaded = dict(entry, file_name="images/0a1b2c3d-bed1.jpg")
    _photo(archive, "0a1b2c3d-bed1.jpg")
    assert read_coco(_write(tmp_path / "u.json", [uploaded], [ann]), images=[today, archive])[0][0].parent == archive
    # in Label Studio's file (prefixes with letters), an upload whose prefix is all digits is one too
    other = _photo(tmp_path / "mine", "bed2.jpg")
    _photo(tmp_path / "mine", "bed3.jpg")
    entries = [
        dict(other, file_name="images/0a1b2c3d-bed2.jpg"),
        dict(other, id=77, file_name="images/12345678-bed3.jpg"),
    ]
    anns = [dict(ann, image_id=other["id"]), dict(ann, id=2, image_id=77)]
    found = read_coco(_write(tmp_path / "ls.json", entries, anns), images=tmp_path / "mine")
    assert sorted(p.name for p, _, _ in found) == ["bed2.jpg", "bed3.jpg"]


def test_a_class_another_file_trains_has_its_boxes_taken_for_plants(tmp_path):
    """`gardenseg train --coco a.json b.json`: lettuce outlined in a.json, only boxed in b.json: b's
    boxed lettuce would be taught as soil, so b.png is left out."""
    from napari_gardenseg._coco_labels import load_coco, trained_classes

    a, b = _photo(tmp_path, "a.png"), _photo(tmp_path, "b.png")
    cats = [{"id": 1, "name": "lettuce"}, {"id": 2, "name": "colour card"}]
    plant = [[0, 0, 20, 0, 20, 20, 0, 20]]
    first = _write(
        tmp_path / "a.json", [a], [{"id": 1, "image_id": a["id"], "category_id": 1, "segmentation": plant}], cats
    )
    second = _write(
        tmp_path / "b.json",
        [b],
        [
            {"id": 1, "image_id": b["id"], "category_id": 2, "segmentation": plant},  # this file masks only cards
            {"id": 2, "image_id": b["id"], "category_id": 1, "bbox": [30, 5, 10, 10], "segmentation": []},
        ],
        cats,
    )
    assert trained_classes(load_coco(first)) == {"lettuce"}
    assert len(read_coco(second)) == 1  # alone, the lettuce box is of a class this file does not train
    with pytest.raises(ImageError, match="some plants have a box and no mask"):
        read_coco(second, trained={"lettuce"})


def test_a_photo_whose_masks_are_all_empty_is_named_where_it_is_left_out(tmp_path):
    # a polygon of two clicks, or of no area: the photo was dropped without a word of why
    good = {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[5, 5, 20, 5, 20, 20, 5, 20]], "iscrowd": 0}
    clicks = {"id": 2, "image_id": 2, "category_id": 1, "segmentation": [[5, 5, 20, 5]], "iscrowd": 0}
    flat = {"id": 3, "image_id": 2, "category_id": 1, "segmentation": [[5, 5, 10, 5, 20, 5]], "iscrowd": 0}
    images = [
        {**_photo(tmp_path, "p.png"), "id": 1},
        {**_photo(tmp_path, "q.png"), "id": 2},
    ]
    _write(tmp_path / "both.json", images, [good, clicks, flat])
    with pytest.warns(UserWarning, match=r"1 photo\(s\) whose masks are all empty .*: q.png$"):
        [(photo, _, _)] = read_coco(tmp_path / "both.json")
    assert photo.name == "p.png"
    _write(tmp_path / "empty.json", images[1:], [clicks, flat])
    with pytest.raises(
        ImageError, match=r"no annotated photo was found; left out 1 photo\(s\) whose masks are all empty"
    ):
        read_coco(tmp_path / "empty.json")


def test_a_photo_of_hundreds_of_plants_some_nested_reads_back_whole(tmp_path):
    # each mask drawn in its box, ids mapped in one lookup: the same plants as written, smaller on top
    from napari_gardenseg import to_coco

    entry = _photo(tmp_path, "flat.png", h=130, w=170)
    lab = np.zeros((130, 170), np.int32)
    ids = iter(range(1, 1000))
    for y in range(0, 130, 6):
        for x in range(0, 170, 6):
            lab[y : y + 5, x : x + 5] = next(ids)  # 22 x 29 = 638 plants, more than uint8 counts
    n = int(lab.max())
    doc = to_coco(lab, file_name="flat.png")
    big = {"id": n + 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 40, 0, 40, 40, 0, 40]]}
    doc["annotations"].append(big)  # a large plant under the small ones of its corner
    doc["images"][0].update(entry)
    (tmp_path / "flat.json").write_text(json.dumps(doc))
    [(_, labels, classes)] = read_coco(tmp_path / "flat.json")
    assert len(classes) == n + 1 == int(labels.max())
    under = (labels == labels[0:40, 0:40][lab[0:40, 0:40] == 0][0]) & (lab > 0)
    assert not under.any()  # every small plant kept on top of the large one
    assert _same_partition(np.where(lab > 0, lab, labels.max() * (labels > 0)), labels)
