"""Label images from files (what `gardenseg train` reads) and pairing them with their photos."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_gardenseg._image_arrays import ImageError
from napari_gardenseg._label_files import label_path, labelled_photos, read_labels


def _ids():
    lab = np.zeros((20, 30), np.int32)
    lab[2:8, 2:8] = 1
    lab[2:8, 8:14] = 7  # touching instance 1: must stay apart
    lab[12:18, 20:28] = 300
    return lab


def test_integer_tiff_and_png_keep_their_ids(tmp_path):
    lab = _ids()
    tifffile.imwrite(tmp_path / "a.tif", lab)  # what napari's Labels layer save writes
    np.testing.assert_array_equal(read_labels(tmp_path / "a.tif"), lab)
    Image.fromarray(lab.astype(np.uint16)).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_labels(tmp_path / "a.png"), lab)
    tifffile.imwrite(tmp_path / "stack.tif", lab[None].astype(np.float32))  # one plane, float ids
    out = read_labels(tmp_path / "stack.tif")
    assert out.dtype == np.int32 and out.shape == (20, 30)
    np.testing.assert_array_equal(out, lab)


def test_palette_png_gives_indices(tmp_path):
    lab = _ids() % 256  # 300 -> 44
    im = Image.fromarray(lab.astype(np.uint8), mode="P")
    im.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)])
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_labels(tmp_path / "p.png"), lab)


def test_colour_labels_one_id_per_colour(tmp_path):
    lab = _ids()
    colours = {0: (0, 0, 0), 1: (255, 0, 0), 7: (0, 255, 0), 300: (10, 20, 200)}
    rgb = np.zeros((*lab.shape, 3), np.uint8)
    for k, c in colours.items():
        rgb[lab == k] = c
    Image.fromarray(rgb).save(tmp_path / "c.png")
    out = read_labels(tmp_path / "c.png")
    assert out[lab == 0].max() == 0
    # ids in reading order, one per colour, the touching pair kept apart
    assert out[3, 3] == 1 and out[3, 10] == 2 and out[15, 25] == 3
    for k in colours:
        assert len(np.unique(out[lab == k])) == 1
    # alpha 0 is background whatever its colour
    rgba = np.dstack([rgb, np.where(lab == 300, 0, 255).astype(np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "ca.png")
    assert set(np.unique(read_labels(tmp_path / "ca.png"))) == {0, 1, 2}
    # 16-bit colours are colours too; a stack of colour labels gets ids unique across its planes
    tifffile.imwrite(tmp_path / "c16.tif", rgb.astype(np.uint16) * 257, photometric="rgb")
    np.testing.assert_array_equal(read_labels(tmp_path / "c16.tif"), out)
    tifffile.imwrite(tmp_path / "cstack.tif", np.stack([rgb, rgb[::-1]]), photometric="rgb")
    stack = read_labels(tmp_path / "cstack.tif", planes=True)
    assert stack.shape == (2, 20, 30) and set(np.unique(stack)) == {0, 1, 2, 3}


def test_grey_and_alpha_labels_keep_their_ids(tmp_path):
    lab = _ids() % 256  # 300 -> 44
    la = np.dstack([lab, np.where(lab == 7, 0, 255)]).astype(np.uint8)  # id 7 hidden by its alpha
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_labels(tmp_path / "la.png"), np.where(lab == 7, 0, lab))


def test_a_mask_is_split_into_components(tmp_path):
    mask = (_ids() > 0).astype(np.uint8) * 255  # instances 1 and 7 touch: one component
    Image.fromarray(mask).save(tmp_path / "m.png")
    out = read_labels(tmp_path / "m.png")
    assert out.max() == 2 and out[3, 3] == out[3, 10] != out[15, 25]
    Image.fromarray(mask > 0).save(tmp_path / "m1.png")  # 1-bit
    np.testing.assert_array_equal(read_labels(tmp_path / "m1.png"), out)


@pytest.mark.parametrize(
    "data, message",
    [
        (np.full((5, 5), -1, np.int16), "negative"),
        (np.full((5, 5), 0.5, np.float32), "fractional"),
        (np.zeros((2, 5, 5), np.int32), "not a 2-D label image"),
    ],
)
def test_bad_label_images_are_named(tmp_path, data, message):
    tifffile.imwrite(tmp_path / "bad.tif", data)
    with pytest.raises(ImageError, match=f"bad.tif.*{message}|{message}"):
        read_labels(tmp_path / "bad.tif")


def test_not_an_image_and_missing(tmp_path):
    (tmp_path / "x.png").write_text("not a png")
    with pytest.raises(ImageError, match="x.png could not be read"):
        read_labels(tmp_path / "x.png")
    with pytest.raises(FileNotFoundError):
        read_labels(tmp_path / "none.tif")


def test_photos_are_paired_with_their_labels(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(photos / f"{name}.jpg")
    tifffile.imwrite(photos / "a_labels.tif", np.ones((4, 4), np.int32))
    Image.fromarray(np.ones((4, 4), np.uint8)).save(photos / "b_labels.png")
    # a folder holding photos and labels: the label images are not photos
    pairs, unlabelled = labelled_photos([photos])
    assert [(p.name, lab.name) for p, lab in pairs] == [("a.jpg", "a_labels.tif"), ("b.jpg", "b_labels.png")]
    assert [p.name for p in unlabelled] == ["c.jpg"]
    # labels in their own folder under the photos' names
    masks = tmp_path / "masks"
    masks.mkdir()
    tifffile.imwrite(masks / "c.tif", np.ones((4, 4), np.int32))
    assert label_path(photos / "c.jpg", masks, suffix="") == masks / "c.tif"
    pairs, unlabelled = labelled_photos([photos / "c.jpg", photos / "a.jpg"], masks, suffix="")
    assert [p.name for p, _ in pairs] == ["c.jpg"] and [p.name for p in unlabelled] == ["a.jpg"]
    with pytest.raises(ValueError, match="another folder"):
        labelled_photos([photos], suffix="")


def test_cvppp_photos_named_rgb_are_paired_with_their_label_images(tmp_path):
    # the plant phenotyping benchmark's layout: plant001_rgb.png, plant001_label.png (palette ids) and
    # plant001_fg.png; no --suffix could pair them, and the label images were taken for photos
    for k in (1, 2):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / f"plant00{k}_rgb.png")
        labels = Image.fromarray(np.ones((4, 4), np.uint8), mode="P")
        labels.putpalette([0, 0, 0, 255, 0, 0])
        labels.save(tmp_path / f"plant00{k}_label.png")
        Image.fromarray(np.full((4, 4), 255, np.uint8)).save(tmp_path / f"plant00{k}_fg.png")
    pairs, unlabelled = labelled_photos([tmp_path], suffix="_label")
    assert [(p.name, lab.name) for p, lab in pairs] == [
        ("plant001_rgb.png", "plant001_label.png"),
        ("plant002_rgb.png", "plant002_label.png"),
    ]
    assert unlabelled == []  # the pairs' foreground masks are theirs, not photos without labels
    # a photo of the shorter name beside it, of any format, keeps its own labels: none is taken twice
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "plant001.jpg")
    assert label_path(tmp_path / "plant001.jpg", suffix="_label").name == "plant001_label.png"
    assert label_path(tmp_path / "plant001_rgb.png", suffix="_label") is None


def test_photos_in_subfolders_are_paired_with_labels_in_the_same_subfolders(tmp_path):
    # a field's flights in a folder each, segmented with `gardenseg segment -r --out results/`
    # (which mirrors the tree), corrected, then trained on with `gardenseg train -r --labels results/`
    photos, results = tmp_path / "photos", tmp_path / "photos" / "results"
    for sub in ("", "2024-05", "2024-06/plotA"):
        (photos / sub).mkdir(parents=True, exist_ok=True)
        (results / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(photos / sub / "a.jpg")
        tifffile.imwrite(results / sub / "a_labels_crf.tif", np.ones((4, 4), np.int32))
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(photos / "2024-05" / "b.jpg")  # not segmented
    pairs, unlabelled = labelled_photos([photos], results, "_labels_crf", recursive=True)
    rel = [(p.relative_to(photos).as_posix(), lab.relative_to(results).as_posix()) for p, lab in pairs]
    assert rel == [
        ("a.jpg", "a_labels_crf.tif"),
        ("2024-05/a.jpg", "2024-05/a_labels_crf.tif"),
        ("2024-06/plotA/a.jpg", "2024-06/plotA/a_labels_crf.tif"),
    ]  # each with its own subfolder's label image, the results folder inside the tree not searched
    assert [p.relative_to(photos).as_posix() for p in unlabelled] == ["2024-05/b.jpg"]
    # without -r: the folder's own photos only
    assert [p.name for p, _ in labelled_photos([photos], results, "_labels_crf")[0]] == ["a.jpg"]


def test_train_samples_may_be_files(tmp_path):
    from napari_gardenseg._train_samples import prepare_samples

    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "a_labels.tif", _ids())
    [from_files] = prepare_samples([(tmp_path / "a.png", tmp_path / "a_labels.tif", "plant")])
    [from_arrays] = prepare_samples([(rgb, _ids(), "plant")])
    with pytest.raises(ValueError, match=r"one sample: \[\(image, labels, classes\)\]"):
        prepare_samples((rgb, _ids(), "plant"))  # a triple, not a list of them
    np.testing.assert_array_equal(from_files.image, from_arrays.image)
    np.testing.assert_array_equal(from_files.labels, from_arrays.labels)
    assert from_files.class_of == {1: "plant", 2: "plant", 3: "plant"}  # ids 1, 7, 300 numbered 1..n for training
    # a bool mask array is a mask, as its file is: each connected plant an instance
    Image.fromarray(_ids() > 0).save(tmp_path / "mask.png")
    [from_mask_file] = prepare_samples([(rgb, tmp_path / "mask.png", "plant")])
    [from_mask] = prepare_samples([(rgb, _ids() > 0, "plant")])
    assert from_mask.labels.max() == 2  # ids 1 and 7 touch: one plant
    np.testing.assert_array_equal(from_mask.labels, from_mask_file.labels)
    tifffile.imwrite(tmp_path / "small.tif", _ids()[:10])
    with pytest.raises(ValueError, match=r"sample 0 \(a.png\): small.tif: labels of 10x30 pixels"):
        prepare_samples([(str(tmp_path / "a.png"), str(tmp_path / "small.tif"), "plant")])


def test_a_segmentations_labels_in_pieces_are_not_taken_for_a_class_mask(tmp_path):
    # public report: training on a batch's own CRF labels warned that they looked mis-painted (the
    # CRF cuts leaves off at thin stems); a class mask with no table is still said
    import warnings

    import pandas as pd

    from napari_gardenseg._train_samples import prepare_samples

    rgb = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "p.png")
    labels = np.zeros((40, 60), np.uint16)
    labels[5:20, 5:20], labels[25:30, 5:10], labels[25:30, 15:20], labels[30:35, 40:45] = 4, 4, 4, 4  # leaves cut off
    labels[5:15, 40:55] = 9
    tifffile.imwrite(tmp_path / "p_labels_crf.tif", labels)
    for table in (False, True):
        if table:  # the batch's table beside it names ids 4 and 9
            pd.DataFrame({"id": [4, 9], "class": ["rosette", "weed"], "score": [0.9, 0.8]}).to_csv(
                tmp_path / "p_instances.csv", index=False
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            prepare_samples([(tmp_path / "p.png", tmp_path / "p_labels_crf.tif", "plant")])
        said = [str(w.message) for w in caught if "separate pieces" in str(w.message)]
        assert bool(said) is not table, table
    with warnings.catch_warnings(record=True) as caught:  # classes by id: the caller's table
        warnings.simplefilter("always")
        prepare_samples([(rgb, labels, {4: "rosette", 9: "weed"})])
    assert not [w for w in caught if "separate pieces" in str(w.message)]


def test_labels_painted_on_a_square_photos_unturned_pixels_are_said(tmp_path):
    # public report: a phone photo (EXIF orientation 6) painted as a viewer that ignores the
    # orientation shows it; a non-square one is refused by its size, a square one trained turned
    import warnings

    from napari_gardenseg._coco_labels import turn_upright
    from napari_gardenseg._train_samples import prepare_samples

    stored = np.full((60, 60, 3), (120, 90, 60), np.uint8)
    stored[5:25, 5:35] = (40, 160, 50)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "phone.jpg", quality=95, exif=exif)
    unturned = np.zeros((60, 60), np.uint8)
    unturned[5:25, 5:35] = 1
    for name, labels, said in (("unturned", unturned, True), ("upright", turn_upright(unturned, 6), False)):
        Image.fromarray(labels).save(tmp_path / f"{name}.png")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            prepare_samples([(tmp_path / "phone.jpg", tmp_path / f"{name}.png", "plant")])
        got = [str(w.message) for w in caught if "painted on the photo unturned" in str(w.message)]
        assert bool(got) is said, name


def test_label_images_that_are_not_one_id_per_plant_are_read_as_meant_or_said(tmp_path):
    # public reports: masks saved as JPEG (ids not exact), VOC's 255 'void' band, inverted masks,
    # class masks; each trained as plants that are not there, without a word
    from PIL import Image

    from napari_gardenseg._label_files import label_doubt, read_labels

    mask = np.zeros((60, 80), np.uint8)
    for y, x in ((10, 10), (10, 50), (40, 20), (40, 60)):
        mask[y : y + 12, x : x + 12] = 255
    Image.fromarray(mask).save(tmp_path / "m.jpg", quality=90)
    with pytest.warns(UserWarning, match="m.jpg is a JPEG, whose values are not exact: read as a mask"):
        ids = read_labels(tmp_path / "m.jpg")
    assert ids.max() == 4 and (ids > 0).sum() == pytest.approx(4 * 144, abs=40)
    # a 0/1 mask, one colour on black (AgIR's masks): two levels, whatever they are
    Image.fromarray(mask // 255).save(tmp_path / "01.jpg", quality=90)
    green = np.zeros((60, 80, 3), np.uint8)
    green[mask > 0] = (40, 200, 60)
    Image.fromarray(green).save(tmp_path / "green.jpg", quality=90)
    for name in ("01.jpg", "green.jpg"):
        with pytest.warns(UserWarning, match="is a JPEG, whose values are not exact"):
            assert read_labels(tmp_path / name).max() == 4, name
    colours = np.zeros((60, 80, 3), np.uint8)
    colours[10:30, 10:30], colours[30:50, 40:70] = (200, 30, 90), (20, 180, 60)
    Image.fromarray(colours).save(tmp_path / "c.jpg", quality=95)
    with pytest.raises(ImageError, match="c.jpg is a label image saved as JPEG, which changes pixel values"):
        read_labels(tmp_path / "c.jpg")
    # a 0/255 mask saved as a palette PNG (ImageJ's LUT masks) is a mask, not VOC's void
    Image.fromarray(mask).convert("P").save(tmp_path / "lut.png")
    assert read_labels(tmp_path / "lut.png").max() == 4
    voc = Image.fromarray(np.where(mask > 0, 1, 0).astype(np.uint8), mode="P")
    arr = np.asarray(voc).copy()
    arr[9, 9:23] = 255  # the void band's top edge round one object
    voc = Image.fromarray(arr, mode="P")
    voc.putpalette([0, 0, 0, 128, 0, 0] + [0] * 759 + [224, 224, 192])
    voc.save(tmp_path / "voc.png")
    with pytest.warns(UserWarning, match="index 255 .the VOC 'void' band"):
        assert set(np.unique(read_labels(tmp_path / "voc.png"))) == {0, 1, 2, 3, 4}
    # an inverted mask, a class mask: trained, with a word
    inverted = (mask == 0).astype(np.int32)
    assert (
        "covers 88% of the image and touches every border: if the plants are 0 in this mask, it is inverted"
        in label_doubt(inverted)
    )
    classes = (mask > 0).astype(np.int32)
    classes[40:52, 60:72] = 2  # four plants of two classes: id 1 is three separate plants
    assert label_doubt(classes).startswith("ids 1 are each three or more separate pieces")
    assert label_doubt(read_labels(tmp_path / "voc.png")) is None


def test_a_mask_with_soft_edges_is_read_as_a_mask_and_a_label_map_is_not(tmp_path):
    """A 0/255 mask resized with interpolation (or painted with an anti-aliased brush) has grey
    levels round its plants: read as they are, each level became an instance and all plants one."""
    mask = np.zeros((120, 160), np.uint8)
    for y, x in ((10, 10), (10, 80), (60, 30), (70, 100), (40, 130)):
        mask[y : y + 25, x : x + 22] = 255
    soft = Image.fromarray(mask).resize((80, 60), Image.BILINEAR).resize((160, 120), Image.BILINEAR)
    assert len(np.unique(np.asarray(soft))) > 20
    soft.save(tmp_path / "soft.png")
    with pytest.warns(UserWarning, match="soft.png is a mask with soft edges"):
        ids = read_labels(tmp_path / "soft.png")
    assert ids.max() == 5 and abs(int((ids > 0).sum()) - int((mask > 0).sum())) < 0.05 * (mask > 0).sum()
    green = np.zeros((120, 160, 3), np.uint8)  # one colour on black, edges blended into the black
    green[...] = np.asarray(soft)[..., None] * np.array([0.2, 0.8, 0.3])
    tifffile.imwrite(tmp_path / "green.tif", green, photometric="rgb")
    with pytest.warns(UserWarning, match="soft edges"):
        assert read_labels(tmp_path / "green.tif").max() == 5
    # label maps keep their ids: instances of many ids, small ones among them, one touching the top id
    rng = np.random.default_rng(0)
    lab = np.zeros((120, 160), np.uint16)
    for k in range(1, 60):
        y, x, s = rng.integers(0, 110), rng.integers(0, 150), rng.integers(3, 12)
        lab[y : y + s, x : x + s] = k
    lab[50:80, 50:90] = 60
    lab[80:84, 50:90] = 30
    for dtype in (np.uint8, np.uint16):
        Image.fromarray(lab.astype(dtype)).save(tmp_path / "ids.png")
        np.testing.assert_array_equal(read_labels(tmp_path / "ids.png"), lab)
    # an (H, W, 1) label image is one plane, as (1, H, W) is
    tifffile.imwrite(tmp_path / "hw1.tif", _ids()[..., None].astype(np.uint16))
    np.testing.assert_array_equal(read_labels(tmp_path / "hw1.tif"), _ids())


def test_label_maps_of_few_ids_are_not_taken_for_soft_masks_and_soft_colour_masks_are(tmp_path):
    """A seedling (a few pixels) beside a big plant of the top id, a sliver of an occluded plant:
    in-between ids near both the background and the top id, which are instances, not a ramp."""
    lab = np.zeros((100, 120), np.uint8)
    lab[20:80, 20:80] = 2
    lab[48:51, 80:82] = 1  # a seedling touching the rosette
    Image.fromarray(lab).save(tmp_path / "two.png")
    np.testing.assert_array_equal(read_labels(tmp_path / "two.png"), lab)
    cells = np.zeros((100, 120), np.uint16)  # cellpose-like: the top id is the big one
    cells[10:90, 10:90] = 9
    for k, x in enumerate(range(12, 84, 9), start=1):
        cells[90:93, x : x + 4] = k
    tifffile.imwrite(tmp_path / "cells.tif", cells)
    np.testing.assert_array_equal(read_labels(tmp_path / "cells.tif"), cells)
    many = np.zeros((100, 120), np.uint16)  # twenty 3x4 seedlings touching a rosette of the top id
    many[10:80, 10:110] = 30
    for k, x in enumerate(range(10, 110, 5), start=1):
        many[80:83, x : x + 4] = k
    tifffile.imwrite(tmp_path / "many.tif", many)
    np.testing.assert_array_equal(read_labels(tmp_path / "many.tif"), many)
    # touching 2x2 instances, ids in any order (an over-segmentation): most pixels in-between ids
    order = np.random.default_rng(0).permutation(60 * 60) + 1
    grid = np.kron(order.reshape(60, 60), np.ones((2, 2), np.int64)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "grid.tif", grid)
    np.testing.assert_array_equal(read_labels(tmp_path / "grid.tif"), grid)
    # a soft mask on a transparent background of any colour; two colours touching, blended: two ids
    mask = np.zeros((120, 160), np.uint8)
    mask[20:70, 20:60], mask[60:110, 90:150] = 255, 255
    soft = np.asarray(Image.fromarray(mask).resize((60, 45), Image.BILINEAR).resize((160, 120), Image.BILINEAR))
    rgba = np.dstack([np.full_like(soft, 255), np.full_like(soft, 255), np.full_like(soft, 255), soft])
    rgba[..., :3][soft > 0] = (30, 200, 40)
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    with pytest.warns(UserWarning, match="soft edges"):
        assert read_labels(tmp_path / "alpha.png").max() == 2
    two = np.zeros((120, 160, 3), np.uint8)
    two[20:100, 20:80], two[20:100, 80:140] = (220, 30, 30), (30, 220, 30)  # touching plants
    two = np.asarray(Image.fromarray(two).resize((60, 45), Image.BILINEAR).resize((160, 120), Image.BILINEAR))
    ids = read_labels_quietly(tmp_path, two)
    assert ids[60, 40] != ids[60, 120] and ids[60, 40] > 0 and ids[60, 120] > 0


def read_labels_quietly(folder, rgb):
    Image.fromarray(rgb).save(folder / "colours.png")
    return read_labels(folder / "colours.png")
