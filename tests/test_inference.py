import threading

import numpy as np
import pytest
import torch
from conftest import rgb_image

from napari_gardenseg import Cancelled, segment
from napari_gardenseg._instances import instances_to_labels
from napari_gardenseg._models import bundled_checkpoint, load_model


def _direct(net, image_u8):
    """torchvision's own call: float 0..1 CHW, the model normalises and resizes itself."""
    x = torch.from_numpy(image_u8).permute(2, 0, 1).float() / 255
    with torch.no_grad():
        return net([x])[0]


def test_segment_matches_torchvision_called_directly(random_maskrcnn):
    image = rgb_image(96, 128, seed=3)
    ref = _direct(random_maskrcnn, image)
    assert len(ref["scores"]) > 3, "the seeded model should report several detections"
    res = segment(image, random_maskrcnn, score_threshold=0.0, crf=False, keep_soft_masks=True)
    ref_scores = ref["scores"].numpy()
    # every instance segment reports is one of torchvision's, with the same score and class, best first
    assert np.all(np.diff(res.scores) <= 0)
    ref_soft = ref["masks"][:, 0].numpy()
    soft = res.instances.to_dense()  # compact box-local masks, pasted back for the comparison
    idx, start = [], 0  # segment keeps torchvision's (score) order: match greedily in order
    for j in range(len(res)):
        i = next(i for i in range(start, len(ref_scores)) if np.array_equal(ref_soft[i], soft[j]))
        idx.append(i)
        start = i + 1
    np.testing.assert_allclose(res.scores, ref_scores[idx], rtol=1e-5)
    np.testing.assert_array_equal(res.class_ids, ref["labels"].numpy()[idx])
    ref_masks = ref["masks"][:, 0].numpy() > 0.5
    for label, i in enumerate(idx, start=1):
        pixels = res.labels == label
        assert pixels.any()
        assert not (pixels & ~ref_masks[i]).any(), "instance pixels outside its thresholded mask"
    # the top-scoring instance is whole
    np.testing.assert_array_equal(res.labels == 1, ref_masks[idx[0]])
    # instances torchvision found but segment dropped had no pixels left
    dropped = sorted(set(range(len(ref_scores))) - set(idx))
    claimed = np.zeros_like(ref_masks[0])
    for i in range(len(ref_scores)):
        if i in dropped:
            assert not (ref_masks[i] & ~claimed).any()
        claimed |= ref_masks[i]


def test_a_photo_larger_than_the_network_input_matches_torchvision_up_to_rounding():
    # the bundled model shrinks the 1296 x 972 sample photo; predict_instances resizes it before the
    # transform normalises (not at full size), which moves values by float rounding only
    from napari_gardenseg import _forward
    from napari_gardenseg._sample_data import load_photo_sample

    model = load_model("garden", device="cpu")
    image = load_photo_sample()
    assert _forward.own_size(model.net, image.shape[:2]) < image.shape[:2]
    ref = _direct(model.net.eval(), image)
    found = _forward.predict_instances(model, image.astype(np.float32) / 255)
    assert len(found) == len(ref["scores"]) > 20
    np.testing.assert_allclose(found.scores, ref["scores"].numpy(), atol=1e-4)
    np.testing.assert_allclose(found.boxes, ref["boxes"].numpy(), atol=0.05)
    np.testing.assert_allclose(found.to_dense(), ref["masks"][:, 0].numpy(), atol=1e-3)


@pytest.mark.parametrize(
    "shape, dtype, scale",
    [((1465, 2200, 3), np.uint8, None), ((1200, 1777, 4), np.uint8, None), ((1300, 1900, 3), np.uint16, 0.37)],
)
def test_a_large_photo_is_shrunk_for_the_network_without_a_float_copy_of_it(monkeypatch, shape, dtype, scale):
    # network_input picks the rows and columns that bilinear resizing samples: the same values as
    # interpolate on the whole float image, while no window of more than a band of rows is read
    from napari_gardenseg import _forward
    from napari_gardenseg._image_source import ImageSource

    model = load_model("garden", device="cpu")
    top = np.iinfo(dtype).max
    image = np.random.default_rng(5).integers(0, top, shape, endpoint=True).astype(dtype)
    image[..., 3:] = np.where(np.arange(shape[1]) % 5 == 0, 0, top)[None, :, None]  # transparent columns
    source = ImageSource(image)
    h, w = source.shape
    full = torch.from_numpy(source.read()).permute(2, 0, 1)
    size = _forward.network_size((h, w), scale) or _forward.own_size(model.net, (h, w))
    assert h * w > _forward.SAMPLED_ABOVE * size[0] * size[1]
    ref = torch.nn.functional.interpolate(full[None], size=size, mode="bilinear", align_corners=False)[0]
    raw, to_float = ImageSource._raw, ImageSource._float
    rows, converted = [], []

    def spy_raw(self, window, step=1):
        rows.append(window[2] - window[0])
        return raw(self, window, step)

    def spy_float(self, block):
        converted.append(block.shape[0] * block.shape[1])
        return to_float(self, block)

    monkeypatch.setattr(ImageSource, "_raw", spy_raw)
    monkeypatch.setattr(ImageSource, "_float", spy_float)
    got = _forward.network_input(source, (0, 0, h, w), scale, model.net)
    assert got.shape == (*size, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref.permute(1, 2, 0).numpy(), rtol=0, atol=1e-6)
    assert rows and max(rows) <= 1024 < h, "raw pixels read a band of rows at a time"
    assert max(converted) < h * w, "only the sampled pixels made floats"


def test_segment_never_holds_a_large_photo_as_floats(monkeypatch):
    # the whole-image path gives the network network_input's pixels: the detections are those of
    # the photo resized whole, while no read holds more than the vegetation stage's band of rows
    # as floats (the network's sampled rows, the stage's overview, the nodata border's strips)
    from napari_gardenseg import _forward
    from napari_gardenseg._image_source import ImageSource, open_image
    from napari_gardenseg._inference import detect_instances
    from napari_gardenseg._options import SegmentOptions
    from napari_gardenseg._sample_data import load_photo_sample

    model = load_model("garden", device="cpu")
    image = np.tile(load_photo_sample(), (3, 2, 1))  # 7.6 MP
    ref = _forward.predict_instances(model, image.astype(np.float32) / 255, min_score=0.05)
    read = ImageSource.read
    pixels = []

    def spy(self, window=None, step=1):
        out = read(self, window, step)
        pixels.append(out.shape[0] * out.shape[1])
        return out

    monkeypatch.setattr(ImageSource, "read", spy)
    found, _ = detect_instances(model, open_image(image), SegmentOptions(score_threshold=0.05), None)
    assert len(found) == len(ref) > 20
    np.testing.assert_array_equal(found.scores, ref.scores)
    np.testing.assert_array_equal(found.boxes, ref.boxes)
    res = segment(image, model, score_threshold=0.05, crf=False)
    assert len(res) > 40 and res.meta["vegetation"]["applied"]
    assert pixels and max(pixels) <= 1024 * image.shape[1] < image.shape[0] * image.shape[1] // 2


def test_a_tray_of_two_hundred_plants_is_not_cut_at_a_hundred():
    # sixteen synthetic beds of twelve plants side by side (a tray seen whole); torchvision's COCO
    # cap of 100 instances per pass dropped the rest silently, the network alone found 74 of them
    from napari_gardenseg.synthetic import garden_scene

    image = np.zeros((1024, 1024, 3), np.uint8)
    truth = np.zeros((1024, 1024), np.int32)
    for k in range(16):
        im, lab, _ = garden_scene(8_000_000 + k, shape=(256, 256), n_plants=(12, 12))
        y, x = 256 * (k // 4), 256 * (k % 4)
        image[y : y + 256, x : x + 256] = im
        truth[y : y + 256, x : x + 256] = np.where(lab > 0, lab + truth.max(), 0)
    assert len(np.unique(truth)) - 1 > 180
    result = segment(image, "garden", vegetation="off")
    assert len(result) > 100
    labels = np.asarray(result.labels)
    found = 0
    for k in np.unique(truth)[1:]:
        plant = truth == k
        ids, counts = np.unique(labels[plant], return_counts=True)
        best = ids[np.argmax(np.where(ids > 0, counts, -1))]
        found += best > 0 and (plant & (labels == best)).sum() / (plant | (labels == best)).sum() >= 0.5
    assert found >= 84


def test_a_full_network_pass_is_said(random_maskrcnn, scene):
    # torchvision's own module keeps COCO's cap of 100, and this one reports every detection:
    # at a threshold of 0 each pass is full, which the result, the widget's hint and a batch's note say
    from napari_gardenseg._batch_file import _file_note
    from napari_gardenseg._hints import network_full_hint, status_hint

    image = rgb_image(256, 256)
    whole = segment(image, random_maskrcnn, vegetation="off", score_threshold=0.0)
    assert whole.meta["full_passes"] == 1
    assert "may be missing" in status_hint([whole])
    assert "may be missing" in _file_note(whole, 0.5)
    tiled = segment(image, random_maskrcnn, vegetation="off", score_threshold=0.0, tile_size=160, tile_overlap=64)
    assert tiled.meta["full_passes"] == tiled.meta["tiles"] == 4
    # a full pass of detections all below the threshold dropped none that would have been kept
    assert "full_passes" not in segment(image, random_maskrcnn, vegetation="off", score_threshold=1.0).meta
    few = segment(scene[0], "garden", vegetation="off")  # a bed of a few plants: far from full
    assert len(few) > 0 and "full_passes" not in few.meta and network_full_hint([few]) is None


def test_the_mask_threshold_is_the_models_own_unless_given(scene, tmp_path):
    from napari_gardenseg._options import MASK_RCNN_THRESHOLD, model_mask_threshold

    image = scene[0]
    garden = load_model("garden")
    stored = garden.meta["mask_threshold"]  # chosen by measurement for this model (docs/quality.md)
    assert 0 < stored < MASK_RCNN_THRESHOLD == 0.5 and model_mask_threshold(garden.meta) == stored
    run = dict(crf=False, vegetation="off")
    own = segment(image, garden, **run)
    assert own.meta["mask_threshold"] == stored and own.meta["options"].mask_threshold == stored
    np.testing.assert_array_equal(own.labels, segment(image, garden, mask_threshold=stored, **run).labels)
    at_half = segment(image, garden, mask_threshold=0.5, **run)
    assert (own.labels > 0).sum() > (at_half.labels > 0).sum() > 0  # the lower threshold keeps more of each plant
    # a checkpoint that stores none runs at Mask R-CNN's 0.5; a bad stored value is named
    ck = torch.load(bundled_checkpoint(), weights_only=False)
    ck["meta"].pop("mask_threshold")
    torch.save(ck, tmp_path / "none.pt")
    none = segment(image, str(tmp_path / "none.pt"), **run)
    assert none.meta["mask_threshold"] == 0.5
    np.testing.assert_array_equal(none.labels, at_half.labels)
    ck["meta"]["mask_threshold"] = 1.5
    torch.save(ck, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="stored mask_threshold"):
        segment(image, str(tmp_path / "bad.pt"), **run)


def test_score_threshold_and_table(random_maskrcnn):
    image = rgb_image(96, 128, seed=3)
    all_ = segment(image, random_maskrcnn, score_threshold=0.0, crf=False)
    cut = float(np.median(all_.scores))
    some = segment(image, random_maskrcnn, score_threshold=cut, crf=False)
    assert 0 < len(some) < len(all_) and some.scores.min() >= cut
    table = some.table
    assert list(table["label"]) == list(range(1, len(some) + 1))
    np.testing.assert_array_equal(table["area"], np.bincount(some.labels.ravel(), minlength=len(some) + 1)[1:])
    assert (table["area"] > 0).all()
    y0, x0, y1, x1 = table["bbox"][0]
    ys, xs = np.nonzero(some.labels == 1)
    assert (y0, x0, y1, x1) == (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
    # centroids as scikit-image's regionprops gives them (rounded to 0.01 px)
    from skimage.measure import regionprops

    expected = {r.label: r.centroid for r in regionprops(some.labels)}
    for label, centroid in zip(table["label"], table["centroid"]):
        np.testing.assert_allclose(centroid, expected[label], atol=0.005)


def test_class_filter(random_maskrcnn):
    image = rgb_image(96, 128, seed=3)
    res = segment(image, random_maskrcnn, score_threshold=0.0, crf=False, classes=["class_2"])
    assert len(res) > 0 and set(res.class_names) == {"class_2"}
    with pytest.raises(ValueError, match="unknown class 'class_9'"):
        segment(image, random_maskrcnn, classes=["class_9"], crf=False)


def test_garden_model_class_filter_suggests_names(scene):
    image, _, _ = scene
    with pytest.raises(ValueError, match="Did you mean 'rosette'"):
        segment(image, "garden", classes=["rosete"], crf=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"score_threshold": 1.5}, "score_threshold"),
        ({"score_threshold": -0.1}, "score_threshold"),
        ({"mask_threshold": 0.0}, "mask_threshold"),
        ({"mask_threshold": "high"}, "mask_threshold"),
    ],
)
def test_bad_thresholds(kwargs, match):
    with pytest.raises(ValueError, match=match):
        segment(rgb_image(), "garden", crf=False, **kwargs)


@pytest.mark.parametrize("bad", [np.zeros((0, 10, 3)), np.zeros((2, 8, 8, 3)), np.zeros((8, 8), complex)])
def test_bad_images_are_refused(bad):
    with pytest.raises((ValueError, TypeError), match="image|shape|dtype|complex"):
        segment(bad, "garden", crf=False)


@pytest.mark.parametrize(
    "convert, same_pixels",
    [
        (lambda im: im, True),
        (lambda im: im.mean(-1).astype(np.uint8), False),  # grayscale
        (lambda im: im.astype(np.uint16) * 257, True),  # 16 bit
        (lambda im: np.moveaxis(im, -1, 0), True),  # channel first
        (lambda im: np.dstack([im, np.full(im.shape[:2], 255, np.uint8)]), True),  # opaque RGBA
        (lambda im: np.where(np.arange(im.shape[1])[None, :, None] == 0, np.nan, im / 255.0), False),  # NaN column
        (lambda im: im > 127, False),  # bool
    ],
)
def test_image_kinds_all_work(scene, convert, same_pixels):
    image, _, _ = scene
    arr = convert(image)
    arr = np.asarray(arr)
    arr.flags.writeable = False  # napari hands out read-only arrays
    res = segment(arr, "garden", score_threshold=0.0, crf=False)
    assert res.labels.shape == image.shape[:2] and res.labels.dtype == np.int32
    assert res.labels.max() >= 1  # the scene's plants are found in every kind
    if same_pixels:  # the same colours in another layout or depth: the same labels
        expected = segment(image, "garden", score_threshold=0.0, crf=False)
        np.testing.assert_array_equal(res.labels, expected.labels)


def test_a_file_path_a_pil_image_and_nested_lists_are_the_same_image(scene, tmp_path):
    """What a console user passes: a path (read as open_image reads it, EXIF orientation applied), a PIL image, lists."""
    from PIL import Image

    image, _, _ = scene
    expected = segment(image, "garden", score_threshold=0.3, crf=False)
    assert expected.labels.max() >= 1
    sideways = Image.fromarray(np.ascontiguousarray(np.rot90(image, 1)))  # stored turned, EXIF says turn it back
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    sideways.save(tmp_path / "photo.png", exif=exif)
    Image.fromarray(image).save(tmp_path / "photo2.png")
    for given in (tmp_path / "photo.png", str(tmp_path / "photo2.png"), Image.fromarray(image), image.tolist()):
        res = segment(given, "garden", score_threshold=0.3, crf=False)
        np.testing.assert_array_equal(res.labels, expected.labels)
    assert segment(tmp_path / "photo.png", "garden", crf=False).meta["read"]["exif_orientation"] == 6


def test_a_napari_layer_is_refused_with_the_function_that_takes_it(scene):
    from napari.layers import Image as ImageLayer

    with pytest.raises(TypeError, match=r"segment_layer\(layer\)"):
        segment(ImageLayer(scene[0], rgb=True), "garden", crf=False)


def test_cancel_raises_and_progress_is_reported(scene):
    image, _, _ = scene
    seen = []
    ev = threading.Event()

    def progress(fraction, message):
        seen.append(fraction)
        if message.startswith("running"):
            ev.set()  # cancel while the network runs

    with pytest.raises(Cancelled):
        segment(image, "garden", crf=False, progress=progress, cancel=ev)
    assert seen and seen[-1] < 0.7
    done = []
    segment(image, "garden", crf=False, progress=lambda f, m: done.append(f))
    assert done[-1] == 1.0 and done == sorted(done)
    with pytest.raises(TypeError, match="cancel must be None, a threading.Event or a callable"):
        segment(image, "garden", crf=False, cancel=True)


def test_instances_to_labels_best_wins():
    m = np.zeros((2, 4, 4), np.float32)
    m[0, :2] = 0.9
    m[1, 1:] = 0.8
    labels = instances_to_labels(m, [0.9, 0.8], 0.5)
    assert (labels[:2] == 1).all() and (labels[2:] == 2).all()


def test_model_device_and_cache():
    m = load_model("garden", device="cpu")
    assert str(m.device) == "cpu" and load_model("garden", device="cpu") is m


def test_an_instance_mostly_hidden_by_better_ones_is_dropped_not_shown_as_a_sliver():
    # the detector's NMS is per class: the same plant found again as another class lies under the
    # better-scored one; painting leaves it a sliver, which the labels and the table must not show
    from napari_gardenseg._inference import MIN_VISIBLE_SHARE, _shown
    from napari_gardenseg._instances import Instances, paint_image

    dense = np.zeros((4, 60, 60), np.float32)
    dense[0, 10:30, 10:30] = 0.9  # a plant
    dense[1, 11:31, 11:31] = 0.9  # the same plant again, another class, lower score: 39 of 400 px visible
    dense[2, 10:30, 20:40] = 0.9  # a neighbour overlapping it by half: 181 of 400 px visible
    dense[3, 40:55, 40:55] = 0.9  # a plant on its own
    found = Instances.from_dense(dense, np.array([0.9, 0.8, 0.7, 0.6], np.float32), np.array([1, 2, 1, 1]))
    visible = np.bincount(paint_image(found, 0.5).ravel(), minlength=5)[1:]
    assert visible.tolist() == [400, 39, 181, 225]
    assert MIN_VISIBLE_SHARE > 39 / 400
    assert _shown(visible, found, 0.5).tolist() == [0, 2, 3]


def test_an_empty_results_table_has_the_columns_types_of_a_full_one():
    import pandas as pd

    from napari_gardenseg.synthetic import garden_scene

    empty = segment(np.zeros((64, 64, 3), np.uint8), "garden", crf=False)
    full = segment(garden_scene(3, (128, 128))[0], "garden", crf=False)
    assert len(empty) == 0 and len(full) >= 1
    assert empty.table.dtypes.to_dict() == full.table.dtypes.to_dict()
    both = pd.concat([empty.table, full.table], ignore_index=True)  # tables of a batch's planes
    assert both.dtypes.to_dict() == full.table.dtypes.to_dict()


def test_the_plant_class_is_named_as_the_colour_stages_in_a_refused_filter():
    with pytest.raises(ValueError, match="'plant' is the class of the plant-coloured instances"):
        segment(np.zeros((32, 32, 3), np.uint8), "garden", classes=["plant"])


def test_a_lazy_image_too_big_to_hold_its_labels_says_to_use_segment_to_zarr(random_maskrcnn, monkeypatch):
    import dask.array as da

    from napari_gardenseg import _inference

    image = da.from_array(rgb_image(64, 80), chunks=(32, 32, 3))
    monkeypatch.setattr(_inference, "MAX_PLANE_PIXELS", 64 * 80 - 1)  # as if it were over 64 MP
    with pytest.warns(UserWarning, match=r"holds the label images of its 80 x 64 pixels in memory.*segment_to_zarr"):
        segment(image, random_maskrcnn, crf=False)

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(_inference, "paint_image", no_memory)
    with pytest.raises(MemoryError, match=r"out of memory segmenting a 80 x 64 image: .*segment_to_zarr\(image"):
        segment(rgb_image(64, 80), random_maskrcnn, crf=False)


def test_the_result_says_how_much_smaller_the_network_saw_the_image():
    from napari_gardenseg._tiling import model_input_size

    model = load_model("garden")
    soil = np.full((1500, 2600, 3), (120, 90, 60), np.uint8)
    result = segment(soil, model, crf=False, vegetation="off")
    assert result.meta["tiles"] == 0 and result.meta["shrink"] == round(2600 / model_input_size(model), 2) > 2
    assert segment(soil[:200, :300], model, crf=False, vegetation="off").meta["shrink"] == 1.0
    assert "shrink" not in segment(soil, model, crf=False, vegetation="off", tile_size=1024).meta


def test_an_image_that_fills_little_of_its_types_range_is_said_to_have_run_dark():
    # a float layer of 0..1000 or a 12-bit camera's uint16 looks right in napari (it stretches the
    # contrast) but maps to 0..1 by the dtype rule: the network saw it nearly black, and the hint
    # sent the user to *Adapt to these photos*
    from napari_gardenseg._hints import status_hint
    from napari_gardenseg._sample_data import load_photo_sample

    photo = load_photo_sample()[:240, :320]
    runs = {
        "uint8": photo,
        "float 0..1000": photo.astype(np.float32) * (1000 / 255),
        "12-bit in uint16": photo.astype(np.uint16) * 16,
        "16-bit": photo.astype(np.uint16) * 257,
        "float 0..1": photo.astype(np.float32) / 255,
        "float 0..1 with glints": np.where(np.arange(320)[:, None] < 3, 2.5, photo.astype(np.float32) / 255),
        "dim float 0..255": photo.astype(np.float32) * (25 / 255),
    }
    results = {k: segment(image, "garden", crf=False, vegetation="off") for k, image in runs.items()}
    assert {k for k, r in results.items() if "dark_input" in r.meta} == {
        "float 0..1000",
        "12-bit in uint16",
        "float 0..1 with glints",
        "dim float 0..255",
    }
    # three values of 2.5 in reflectance made it 0..255: the hint says what to do about that
    glints = status_hint([results["float 0..1 with glints"]])
    assert glints.endswith(
        "a 0..1 image with a few values above 2 (glints, sensor spikes) is read as 0..255: clip it to 0..1"
    )
    # an underexposed 0..255 one (most values above 1) is told to scale, not to clip
    dim = status_hint([results["dim float 0..255"]])
    assert dim.endswith("scale it to 0..255 or 0..1 first (a 12-bit camera's values: multiply by 16)")
    assert results["12-bit in uint16"].meta["dark_input"] == {"brightest": 4080.0, "range": [0.0, 65535.0]}
    hint = status_hint([results["float 0..1000"]])
    assert hint.startswith("the image's brightest value is 1000 of 0..65535") and "Adapt" not in hint
    assert status_hint([results["16-bit"]]) == status_hint([results["uint8"]])
    from napari_gardenseg._batch_file import _file_note  # a batch's note says it first too

    assert _file_note(results["12-bit in uint16"], 0.5).startswith("the image's brightest value is 4080")
    # a blank frame has nothing to scale; a masked uint8 array is uint8 by the rule
    from napari_gardenseg._image_source import ImageSource
    from napari_gardenseg._inference import dark_input

    assert dark_input(ImageSource(np.zeros((40, 50, 3), np.uint16))) == {}
    assert dark_input(ImageSource(np.full((40, 50, 3), np.nan, np.float32))) == {}
    masked = np.ma.masked_array(photo // 20, mask=np.zeros(photo.shape, bool))
    masked.mask[:4] = True
    assert dark_input(ImageSource(masked)) == {}


def test_a_progress_that_is_not_callable_fails_where_the_run_starts(tmp_path, monkeypatch):
    # it failed at the first report ("'int' object is not callable"), after the model had loaded
    from napari_gardenseg import _inference, adapt, refine_instances, segment_files, train

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before progress was checked")

    monkeypatch.setattr(_inference, "load_model", no_model)
    image = rgb_image(64, 64)
    match = r"progress must be None or a callable progress\(fraction, message\), got 5"
    with pytest.raises(TypeError, match=match):
        segment(image, "garden", progress=5)
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "bed.png")
    with pytest.raises(TypeError, match=match):
        segment_files([tmp_path / "bed.png"], tmp_path / "out", "garden", progress=5)
    with pytest.raises(TypeError, match=match):
        refine_instances(image, np.zeros((1, 64, 64), np.float32), progress=5)
    with pytest.raises(TypeError, match=match):
        train([(image, np.zeros((64, 64), np.int32))], output=tmp_path / "m.pt", progress=5)
    with pytest.raises(TypeError, match=match):
        adapt([image], output=tmp_path / "a.pt", progress=5)
    with pytest.raises(TypeError, match="cancel must be None, a threading.Event or a callable"):
        segment(image, "garden", cancel=5)
    with pytest.raises(ValueError, match="minutes must be a positive number, got 'x'"):
        adapt([image], output=tmp_path / "a.pt", minutes="x")
