"""Plant pixels from plant colour: colour indices, the per-image threshold, instances that follow vegetation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from napari_gardenseg._image_arrays import to_rgb_float
from napari_gardenseg._instances import Instances, paint_image
from napari_gardenseg._plant_pixels import COLOUR_SCORE_RANGE, MODEL_COVERS, follow_vegetation
from napari_gardenseg._vegetation import (
    ColourClasses,
    cive,
    colour_classes,
    data_window,
    dilate_disk,
    excess_green,
    excess_green_minus_red,
    otsu_threshold,
    vegetation_map,
)

SOIL = np.array([0.45, 0.33, 0.22], np.float32)  # brown
LEAF = np.array([0.20, 0.55, 0.15], np.float32)  # green
RED_LEAF = np.array([0.55, 0.15, 0.25], np.float32)  # red lettuce / purple basil


@pytest.fixture(scope="module")
def garden_photo():
    """Six rosettes of the bundled photograph sample (seedling trays, PlantCV, CC BY 4.0)."""
    from napari_gardenseg._sample_data import load_photo_sample

    return np.ascontiguousarray(load_photo_sample()[250:720, 60:760])


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _photo(discs, shape=(160, 240), noise=0.02, seed=0, colours=None):
    """Soil with plant discs (cy, cx, r); returns the float RGB image and the true label image."""
    rng = np.random.default_rng(seed)
    rgb = np.broadcast_to(SOIL, shape + (3,)).copy()
    labels = np.zeros(shape, np.int32)
    for k, (cy, cx, r) in enumerate(discs, start=1):
        m = _disc(shape, cy, cx, r)
        rgb[m] = (colours or {}).get(k, LEAF)
        labels[m] = k
    rgb += rng.normal(0, noise, rgb.shape).astype(np.float32)
    return np.clip(rgb, 0, 1), labels


def _instances(masks, scores, shape, class_id=1):
    """Model-like instances from full-frame soft masks (the test's stand-in for the detector)."""
    return Instances.from_dense(
        np.stack(masks).astype(np.float32), np.asarray(scores, np.float32), np.full(len(masks), class_id), floor=0.0
    )


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def _best(lab, truth, k):
    """(id, IoU) of the instance in ``lab`` that best matches true plant ``k``."""
    ids = [i for i in np.unique(lab[truth == k]) if i > 0]
    scored = [(i, _iou(lab == i, truth == k)) for i in ids]
    return max(scored, key=lambda t: t[1]) if scored else (0, 0.0)


def test_indices_follow_their_published_formulas():
    px = np.array([[[0.2, 0.6, 0.2], [0.5, 0.3, 0.2]]], np.float32)
    total = px.sum(-1) + 0.06
    r, g, b = px[..., 0] / total, px[..., 1] / total, px[..., 2] / total
    np.testing.assert_allclose(excess_green(px), 2 * g - r - b, rtol=1e-6)
    np.testing.assert_allclose(excess_green_minus_red(px), (2 * g - r - b) - (1.4 * r - g), rtol=1e-6)
    np.testing.assert_allclose(
        cive(px),
        -(0.441 * px[..., 0] * 255 - 0.811 * px[..., 1] * 255 + 0.385 * px[..., 2] * 255 + 18.78745),
        rtol=1e-5,
    )
    assert excess_green(px)[0, 0] > 0.3 > excess_green(px)[0, 1]  # the green pixel, not the brown one


def test_otsu_threshold_separates_two_classes_and_knows_one():
    rng = np.random.default_rng(1)
    two = np.concatenate([rng.normal(0.0, 0.02, 5000), rng.normal(0.4, 0.03, 1000)])
    t, eta = otsu_threshold(two)
    assert 0.08 < t < 0.32 and eta > 0.8
    _, eta_one = otsu_threshold(rng.normal(0.0, 0.02, 6000))
    assert abs(eta_one - 2 / np.pi) < 0.03  # Otsu's separability of one Gaussian class


def test_vegetation_map_finds_the_plants_and_follows_a_colour_cast():
    rgb, labels = _photo([(50, 60, 25), (100, 170, 30)])
    vmap = vegetation_map(rgb)
    assert vmap.informative, vmap.reason
    assert _iou(vmap.mask, labels > 0) > 0.97
    assert vmap.probability.dtype == np.float32 and vmap.probability.shape == labels.shape
    # a white-balance shift of the whole photo (bluish artificial light) moves the threshold with it
    cast = np.clip(rgb * np.array([0.85, 0.95, 1.3], np.float32), 0, 1)
    assert _iou(vegetation_map(cast).mask, labels > 0) > 0.95


@pytest.mark.parametrize("nodata", [0.0, 1.0, "transparent"])
def test_a_nodata_border_does_not_move_the_colour_classes(garden_photo, nodata):
    # an orthomosaic's border three times the photo's area: black, white, or transparent over leftover
    # green and soil (fully transparent pixels are read as black)
    photo = garden_photo.astype(np.float32) / 255
    h, w = photo.shape[:2]
    if nodata == "transparent":
        rng = np.random.default_rng(0)
        canvas = np.zeros((2 * h, 2 * w, 4), np.float32)
        canvas[..., :3] = rng.choice([[0.2, 0.6, 0.1], [0.5, 0.4, 0.3]], size=(2 * h, 2 * w))
        canvas[h // 3 : h // 3 + h, w // 2 : w // 2 + w] = np.dstack([photo, np.ones((h, w), np.float32)])
        canvas = to_rgb_float(canvas)
    else:
        canvas = np.full((2 * h, 2 * w, 3), nodata, np.float32)
        canvas[h // 3 : h // 3 + h, w // 2 : w // 2 + w] = photo
    alone, framed = colour_classes(photo), colour_classes(canvas)
    assert alone.informative and framed.informative, framed.reason
    assert framed.threshold == pytest.approx(alone.threshold, abs=1e-6)
    assert framed.fraction == pytest.approx(alone.fraction, abs=1e-6)
    assert framed.width == pytest.approx(alone.width, abs=1e-6)
    # and a photo that is all black stays a photo with one colour class, not an error
    assert not colour_classes(np.zeros((40, 60, 3), np.float32)).informative


def test_vegetation_map_says_when_colour_tells_nothing():
    rng = np.random.default_rng(2)
    grey = np.clip(0.5 + rng.normal(0, 0.05, (120, 160, 3)), 0, 1).astype(np.float32)
    assert not vegetation_map(grey).informative
    # colour noise has green pixels, but no plant-sized green regions
    noise = rng.random((96, 128, 3), dtype=np.float32)
    assert not vegetation_map(noise).informative
    all_red, _ = _photo([(60, 80, 40)], shape=(120, 160), colours={1: RED_LEAF})
    assert not vegetation_map(all_red).informative  # the odd class is not green: no gating
    with pytest.raises(ValueError, match="colour index"):
        vegetation_map(grey, "ndvi")


def test_touching_plants_are_split_between_their_seeds():
    # two touching rosettes (one component of colour) and the model's two rough, too-small masks
    rgb, truth = _photo([(80, 90, 35), (80, 155, 35)])
    shape = truth.shape
    seeds = [_disc(shape, 78, 92, 30) * 0.9, _disc(shape, 82, 150, 30) * 0.8]
    found = _instances(seeds, [0.9, 0.8], shape)
    out = follow_vegetation(found, vegetation_map(rgb))
    assert list(out.sources) == ["model", "model"]
    lab = paint_image(out)
    for k in (1, 2):
        assert _best(lab, truth, k)[1] > 0.9
    # the CRF's unary: claimed pixels hold 0.5 + 0.5 * vegetation probability, so they stay above 0.5
    assert all(m.max() <= 1.0 and m[m > 0.5].min() > 0.5 for m in out.masks)


def test_a_crowded_row_of_touching_plants_keeps_one_instance_per_plant():
    # seven plants touching in a row are one plant-coloured component, each under a fifth of it:
    # each confident detection lying beside the others is a plant, not a piece of the component
    discs = [(100, 30 + 40 * k, 22) for k in range(7)]
    rgb, truth = _photo(discs, shape=(200, 400))  # the row under 15% of the photo: not ground cover
    shape = truth.shape
    assert ndimage.label(truth > 0, structure=np.ones((3, 3), bool))[1] == 1  # one component
    masks = [_disc(shape, cy, cx, 17) * 0.9 for cy, cx, _ in discs]
    leaf = _disc(shape, 100, 30, 8) * 0.9  # a leaf of the first plant, found too, under its mask
    found = _instances([*masks, leaf], [0.95 - 0.05 * k for k in range(7)] + [0.55], shape)
    out = follow_vegetation(found, vegetation_map(rgb))
    lab = paint_image(out)
    assert len(out) == 7 and list(out.sources) == ["model"] * 7  # no merged colour instance, no leaf
    for k in range(1, 8):
        assert _best(lab, truth, k)[1] > 0.8


def test_ground_cover_is_measured_and_named_for_the_widget():
    from napari_gardenseg._hints import ground_cover_hint, status_hint
    from napari_gardenseg._plant_pixels import GROUND_COVER
    from napari_gardenseg._results import SegmentationResult

    # a lawn over the left half of the photo, a small plant found on it, and a plant on soil
    shape = (160, 240)
    rgb, truth = _photo([(120, 200, 15)], shape=shape)
    rgb[:, :120] = LEAF
    found = _instances([_disc(shape, 80, 60, 10) * 0.9, _disc(shape, 120, 200, 12) * 0.9], [0.9, 0.8], shape)
    out = follow_vegetation(found, vegetation_map(rgb))
    assert out.meta[GROUND_COVER] == pytest.approx(0.5, abs=0.02)
    lab = paint_image(out)
    assert _iou(lab == 1, _disc(shape, 80, 60, 10)) > 0.9  # the find on the lawn keeps its own mask
    assert _iou(lab == 2, truth == 1) > 0.9
    on_soil = follow_vegetation(found.take([1]), vegetation_map(_photo([(120, 200, 15)], shape=shape)[0]))
    assert on_soil.meta[GROUND_COVER] == 0.0
    # window by window (big images, zarr output): the windows' shares add up over their cores
    from napari_gardenseg._image_source import ImageSource
    from napari_gardenseg._vegetation import colour_classes
    from napari_gardenseg._vegetation_windows import follow_in_windows

    source = ImageSource((rgb * 255).round().astype(np.uint8))
    windowed, _, n = follow_in_windows(found, source, colour_classes(rgb), block=64)
    assert n > 1 and windowed.meta[GROUND_COVER] == pytest.approx(0.5, abs=0.1)

    def result(share):
        labels = np.ones((20, 30), np.int32)
        meta = {"vegetation": {GROUND_COVER: share}}
        return SegmentationResult(
            labels, None, np.ones(1, np.int64), ["plant"], np.ones(1), np.zeros((1, 4)), meta=meta
        )

    hint = status_hint([result(0.0), result(0.5)])
    assert hint == ground_cover_hint([result(0.5)]) and "50% of the photo" in hint and "Train on my labels" in hint
    assert "scale" not in hint
    # on tiles, a plant larger than them (a 600 dpi herbarium sheet) is ground cover in its windows:
    # 14% of such a sheet was left with no word, its plants found only in part
    tiled = result(0.14)
    tiled.meta["tiles"] = 117
    hint = ground_cover_hint([result(0.0), tiled], scale_action="run again with --scale auto")
    assert "14% of the image" in hint and "plants larger than the network's tiles" in hint
    assert hint.endswith("run again with --scale auto for the network to see them whole")
    assert ground_cover_hint([result(0.14)]) is None  # a photo in one pass: a lawn only from 15%
    from napari_gardenseg._options import SegmentOptions

    tiled.meta["options"] = SegmentOptions(scale="auto")  # the scale was the run's choice already
    assert ground_cover_hint([tiled]) is None
    assert (
        ground_cover_hint([result(0.0)]) is None
        and ground_cover_hint(
            [
                SegmentationResult(
                    np.zeros((2, 2), np.int32), None, np.zeros(0, np.int64), [], np.zeros(0), np.zeros((0, 4)), meta={}
                )
            ]
        )
        is None
    )


def test_one_seed_takes_its_whole_plant_and_unclaimed_plants_are_added_low():
    rgb, truth = _photo([(60, 60, 30), (110, 190, 20)])
    shape = truth.shape
    leaf_only = _disc(shape, 60, 75, 14) * 0.95  # the model saw one leaf of plant 1, and not plant 2
    found = _instances([leaf_only], [0.7], shape)
    out = follow_vegetation(found, vegetation_map(rgb))
    lab = paint_image(out)
    assert list(out.sources) == ["model", "colour"]  # best first
    assert _iou(lab == 1, truth == 1) > 0.9
    assert _iou(lab == 2, truth == 2) > 0.9
    assert out.class_ids[1] == 0
    assert COLOUR_SCORE_RANGE[0] <= out.scores[1] <= COLOUR_SCORE_RANGE[1] < out.scores[0]


def test_colour_only_plants_are_kept_at_a_high_score_threshold():
    # score_threshold filters the network's detections; a plant only colour found stays, at the threshold
    rgb, truth = _photo([(60, 60, 30), (110, 190, 20)])
    found = _instances([_disc(truth.shape, 60, 75, 14) * 0.95], [0.9], truth.shape)
    out = follow_vegetation(found, vegetation_map(rgb), score_threshold=0.8)
    assert list(out.sources) == ["model", "colour"]
    assert out.scores[1] == np.float32(0.8) < out.scores[0]
    assert _iou(paint_image(out) == 2, truth == 2) > 0.9


def test_green_plants_keep_the_stage_beside_red_ones():
    # red lettuce beside green plants: its excess green, far below the soil's, was Otsu's lower
    # class, so nearly every pixel was "plant" and the stage went off for the green plants too
    leaf = np.array([0.36, 0.46, 0.24], np.float32)  # a pale green, as many crops are
    discs = [(40, 40, 28), (40, 120, 18), (40, 200, 28), (120, 40, 18), (120, 120, 28), (120, 200, 18)]
    rgb, truth = _photo(discs, colours={**{k: RED_LEAF for k in (2, 4, 6)}, **{k: leaf for k in (1, 3, 5)}})
    vmap = vegetation_map(rgb)
    assert vmap.informative, vmap.reason
    assert _iou(vmap.mask, np.isin(truth, (1, 3, 5))) > 0.95  # the green plants, not the soil


def test_soil_noise_with_a_fleck_of_green_makes_no_soil_plant_coloured():
    # bare soil (one colour, grainy) with a fleck of green in a corner: Otsu cut the soil at its
    # median, while the test of a second class judged another split (the fleck's), so half the soil
    # became "plant" and tens of soil patches became plant instances
    rng = np.random.default_rng(3)
    grain = ndimage.gaussian_filter(rng.normal(0, 1, (200, 200, 3)), (1.5, 1.5, 0))
    rgb = np.clip(SOIL + grain / grain.std() * 0.02, 0, 1).astype(np.float32)
    rgb[:9, :9] = LEAF
    vmap = vegetation_map(rgb)
    # no soil is plant-coloured: the fleck alone, the upper of three classes (plants a small share of
    # the frame: Otsu's two split the soil at its middle, TAIL_RETRY)
    assert vmap.informative and vmap.fraction < 0.003, vmap.reason
    plants = vmap.plants
    assert ndimage.label(plants)[1] == 1 and plants[:9, :9].all() and plants.sum() == 81
    # the same soil with plants on it keeps its two classes
    rgb[60:100, 60:100] = LEAF
    rgb[120:150, 20:60] = LEAF
    plants = vegetation_map(rgb)
    assert plants.informative and 0.05 < plants.fraction < 0.1, plants.reason


def test_plants_that_are_not_green_are_not_cut_away():
    # a red lettuce between green plants: the model found it; colour must not shrink it
    rgb, truth = _photo([(60, 60, 25), (60, 150, 25), (120, 100, 25)], colours={2: RED_LEAF})
    shape = truth.shape
    masks = [(truth == k).astype(np.float32) * 0.9 for k in (1, 2, 3)]
    found = _instances(masks, [0.9, 0.85, 0.8], shape)
    out = follow_vegetation(found, vegetation_map(rgb))
    lab = paint_image(out)
    red, iou = _best(lab, truth, 2)
    assert iou > 0.95  # kept whole
    assert 0.0 < out.scores[red - 1] < 0.85  # ranked lower: colour says it is less likely a plant here
    assert red == 3  # so it comes last
    assert len(out) == 3 and not np.any(out.sources == "colour")


def test_specks_and_holes_go_the_same_with_scikit_image_before_and_after_0_26(monkeypatch):
    # napari allows scikit-image older than 0.26, whose remove_small_* take min_size /
    # area_threshold (below) where 0.26 takes max_size (at most): the shim serves both alike
    import warnings

    from napari_gardenseg import _compat

    mask = np.zeros((40, 60), bool)
    mask[2:4, 2:7] = True  # a 10-px object
    mask[10:14, 10:13] = True  # a 12-px object
    mask[20:35, 20:50] = True
    mask[25:27, 30:35] = False  # a 10-px hole
    mask[28:31, 40:44] = False  # a 12-px hole
    results = []
    # the installed scikit-image's own names, then (0.26 still takes them, deprecated) the old ones
    for old_api in (False, True) if _compat._skimage_takes_max_size() else (True,):
        if old_api:
            monkeypatch.setattr(_compat, "_skimage_takes_max_size", lambda: False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # 0.26 still takes the old names, deprecated
            objects = _compat.remove_small_objects(mask, 10)
            holes = _compat.remove_small_holes(mask, 10)
        assert not objects[2:4, 2:7].any() and objects[10:14, 10:13].all()  # 10 px go, 12 px stay
        assert holes[25:27, 30:35].all() and not holes[28:31, 40:44].any()
        results.append((objects, holes))
    for first, other in zip(results[0], results[-1]):  # the two APIs agree (one result before 0.26)
        assert (first == other).all()


@pytest.mark.parametrize("radius", [1, 2, 8, 9, 23])
def test_disk_dilation_is_scipys(radius):
    # the union of the disk's rows gives scipy's pixels, at the image's edges too, for an empty or
    # a full mask, and for an image narrower than the radius either way
    from skimage import morphology

    rng = np.random.default_rng(radius)
    blobs = ndimage.gaussian_filter(rng.random((150, 170)), 3) > 0.53  # plants, some cut by the edge
    specks = rng.random((150, 170)) > 0.999  # lone pixels: the disk itself
    strip = rng.random((5, 90)) > 0.97
    for mask in (blobs, specks, blobs | specks, np.zeros((40, 50), bool), np.ones((40, 50), bool), strip, strip.T):
        expected = ndimage.binary_dilation(mask, morphology.disk(radius))
        np.testing.assert_array_equal(dilate_disk(mask, radius), expected)
    assert 0 < blobs.mean() < 0.5 and specks.any() and strip.any()


def test_model_specks_on_soil_do_not_become_plants():
    rgb, truth = _photo([(60, 60, 25)])
    shape = truth.shape
    soil_box = np.zeros(shape, np.float32)
    soil_box[120:150, 180:230] = 0.9  # a detection on bare soil
    found = _instances([(truth == 1) * 0.9, soil_box], [0.9, 0.3], shape)
    out = follow_vegetation(found, vegetation_map(rgb))
    assert len(out) == 2 and out.scores[1] < 0.1  # still there (not cut away), but ranked far below the plant


def test_a_confident_detection_colour_does_not_call_plant_keeps_most_of_its_score():
    # a pale seedling whose excess green lies below the threshold a bright plant sets
    rgb, truth = _photo([(60, 60, 30), (120, 190, 10)], noise=0.0)
    pale = (SOIL + LEAF) / 2
    rgb[truth == 2] = pale
    vmap = vegetation_map(rgb)
    assert not vmap.mask[truth == 2].any()  # colour does not call it plant
    found = _instances([(truth == 1) * 0.9, (truth == 2) * 0.9], [0.9, 0.9], truth.shape)
    out = follow_vegetation(found, vmap)
    assert len(out) == 2 and out.scores[1] == pytest.approx(0.81, abs=1e-6)  # 0.9 x 0.9
    unsure = follow_vegetation(_instances([(truth == 1) * 0.9, (truth == 2) * 0.9], [0.9, 0.3], truth.shape), vmap)
    assert unsure.scores[1] == pytest.approx(0.09, abs=1e-6)  # 0.3 x 0.3: an unsure one falls further


def test_plant_coloured_specks_become_no_instance_but_small_plants_do(monkeypatch):
    import napari_gardenseg._plant_pixels as plant_pixels

    # a canvas large enough that the 6x6 speck is under PLANT_SIZED of it, as a JPEG block is in a photo
    rgb, truth = _photo([(60, 60, 30), (120, 190, 8)], shape=(320, 480), noise=0.0)
    rgb[20:26, 200:206] = LEAF  # a 6x6 speck of plant colour (a JPEG block, a moss spot)
    found = _instances([(truth == 1) * 0.9], [0.9], truth.shape)
    vmap = vegetation_map(rgb)
    assert vmap.plants[20:26, 200:206].any()  # colour does see the speck
    out = follow_vegetation(found, vmap)
    lab = paint_image(out)
    assert list(out.sources) == ["model", "colour"]  # the plant, the seedling; no speck
    assert _best(lab, truth, 2)[1] > 0.8
    assert not lab[20:26, 200:206].any()
    monkeypatch.setattr(plant_pixels, "MIN_COLOUR_SHARE", 0.0)  # without the rule the speck is an instance
    assert len(follow_vegetation(found, vmap)) == 3


def test_leaf_sized_detections_at_a_low_threshold_do_not_shrink_the_speck_bound():
    # score_threshold=0.05 keeps many leaf-sized detections; the speck bound follows the confident ones
    rgb, truth = _photo([(60, 60, 30), (120, 190, 8)], shape=(320, 480), noise=0.0)
    rgb[20:26, 200:206] = LEAF  # a speck of plant colour
    leaves = [(100, 20), (140, 20), (140, 60), (140, 100)]
    masks = [(truth == 1) * 0.9]
    for y, x in leaves:  # tiny plants the network found, barely
        rgb[y : y + 5, x : x + 5] = LEAF
        m = np.zeros(truth.shape, np.float32)
        m[y : y + 5, x : x + 5] = 0.9
        masks.append(m)
    found = _instances(masks, [0.9] + [0.06] * len(leaves), truth.shape)
    out = follow_vegetation(found, vegetation_map(rgb), score_threshold=0.05)
    lab = paint_image(out)
    assert sorted(out.sources) == ["colour"] + ["model"] * 5  # the plant, the tiny ones, the seedling
    assert _best(lab, truth, 2)[1] > 0.8
    assert not lab[20:26, 200:206].any()  # the speck is still no instance


def test_a_small_missed_plant_beside_a_crowded_bed_is_not_a_speck(monkeypatch):
    import napari_gardenseg._plant_pixels as plant_pixels

    # the bed is one large component (the typical one), so its twentieth is larger than the seedling;
    # beside the plants the network found, the seedling is no speck
    discs = [(100, 30 + 40 * k, 22) for k in range(7)] + [(170, 350, 10)]
    rgb, truth = _photo(discs, shape=(200, 400), noise=0.0)
    rgb[20:26, 380:386] = LEAF  # and a speck
    shape = truth.shape
    found = _instances([_disc(shape, cy, cx, 17) * 0.9 for cy, cx, _ in discs[:7]], [0.9] * 7, shape)
    vmap = vegetation_map(rgb)
    out = follow_vegetation(found, vmap)
    assert list(out.sources) == ["model"] * 7 + ["colour"]
    assert _best(paint_image(out), truth, 8)[1] > 0.8
    monkeypatch.setattr(plant_pixels, "SPECK_OF_PLANT", 1.0)  # the bed's size alone would drop it
    monkeypatch.setattr(plant_pixels, "PLANT_SIZED", 1.0)
    assert len(follow_vegetation(found, vmap)) == 7


def test_a_weak_detection_seeding_a_plant_ranks_it_no_lower_than_colour_alone():
    # where the network barely sees a plant (a score of 0.08 at score_threshold=0.05), its detection
    # still seeds the plant's pixels; it must not rank that plant below the colour-only instance the
    # same pixels give without it (it ranked below every colour-only instance of the photo)
    rgb, truth = _photo([(60, 60, 30), (100, 170, 25)], noise=0.0)
    vmap = vegetation_map(rgb)
    alone = follow_vegetation(_instances([(truth == 1) * 0.9], [0.9], truth.shape), vmap, score_threshold=0.05)
    assert list(alone.sources) == ["model", "colour"]
    weak = _instances([(truth == 1) * 0.9, (truth == 2) * 0.9], [0.9, 0.08], truth.shape)
    out = follow_vegetation(weak, vmap, score_threshold=0.05)
    assert list(out.sources) == ["model", "model"]
    assert _best(paint_image(out), truth, 2)[1] > 0.9
    assert out.scores[1] == pytest.approx(alone.scores[1], abs=1e-6)


def test_a_weak_detection_on_a_speck_keeps_its_own_low_score():
    # colour alone makes no instance of a speck (a moss spot), so a weak detection on one is not
    # lifted to a colour-only instance's score
    rgb, truth = _photo([(80, 80, 45), (80, 240, 45)], shape=(320, 480), noise=0.0)
    rgb[250:256, 400:406] = LEAF  # a 6x6 speck of plant colour
    spot = np.zeros(truth.shape, np.float32)
    spot[250:256, 400:406] = 0.9
    found = _instances([(truth == 1) * 0.9, (truth == 2) * 0.9, spot], [0.9, 0.9, 0.08], truth.shape)
    out = follow_vegetation(found, vegetation_map(rgb), score_threshold=0.05)
    assert list(out.sources) == ["model"] * 3
    assert out.scores[2] < COLOUR_SCORE_RANGE[0]


def test_a_weed_seedling_beside_big_plants_the_network_half_found_is_not_a_speck(monkeypatch):
    import napari_gardenseg._plant_pixels as plant_pixels

    # big crop plants, one of them found, and a seedling under a twentieth of them: the bounds relative
    # to the photo's plants call it a speck; it is a plant-sized share of the image (a weed the
    # network does not know), where a JPEG block of plant colour is not
    discs = [(80, 80, 50), (80, 240, 50), (230, 160, 50), (250, 400, 10)]
    rgb, truth = _photo(discs, shape=(320, 480), noise=0.0)
    rgb[20:26, 440:446] = LEAF  # a 6x6 speck
    found = _instances([(truth == 1) * 0.9], [0.9], truth.shape)
    vmap = vegetation_map(rgb)
    out = follow_vegetation(found, vmap)
    lab = paint_image(out)
    assert list(out.sources) == ["model"] + ["colour"] * 3  # the found plant, the two missed, the seedling
    assert _best(lab, truth, 4)[1] > 0.7
    assert not lab[20:26, 440:446].any()  # the speck is still no instance
    seedling = (truth == 4).sum()
    assert seedling < plant_pixels.MIN_COLOUR_SHARE * (truth == 1).sum()  # a speck by the relative bounds alone
    monkeypatch.setattr(plant_pixels, "PLANT_SIZED", 1.0)
    assert len(follow_vegetation(found, vmap)) == 3


def test_segment_runs_the_stage_and_says_so(garden_photo):
    import napari_gardenseg as gs

    on = gs.segment(garden_photo, "garden", score_threshold=0.3, crf=False, vegetation="on")
    off = gs.segment(garden_photo, "garden", score_threshold=0.3, crf=False, vegetation="off")
    auto = gs.segment(garden_photo, "garden", score_threshold=0.3, crf=False)  # the default
    veg = on.meta["vegetation"]
    assert veg["applied"] and veg["vegetation_informative"]
    assert veg["vegetation_ground_cover"] == 0.0  # plants on soil: no ground cover, no hint of it
    assert off.meta["vegetation"] == {"applied": False, "reason": "vegetation='off'"}
    assert set(on.table["source"]) <= {"model", "colour"} and (on.table["source"] == "model").sum() >= 3
    assert set(off.table["source"]) == {"model"}
    # "auto" leaves a photo whose plants the network already holds to the network
    coverage = auto.meta["vegetation"]["vegetation_model_coverage"]
    assert auto.meta["vegetation"]["applied"] == (coverage < MODEL_COVERS)
    # the stage moves pixels between plants and soil: the instances' pixels follow plant colour
    green = vegetation_map(garden_photo.astype(np.float32) / 255).mask
    assert green[on.labels > 0].mean() > green[off.labels > 0].mean()
    with pytest.raises(ValueError, match="vegetation"):
        gs.segment(garden_photo, "garden", vegetation="yes")


def test_the_data_window_leaves_out_a_nodata_border():
    rgb = np.random.default_rng(0).random((100, 200, 3)).astype(np.float32)
    framed = np.zeros((300, 400, 3), np.float32)
    framed[50:150, 120:320] = rgb
    framed[:20, :] = 1.0  # a white band (clipped sky, a scan's margin) is nodata too
    assert data_window(framed) == (50, 120, 150, 320)
    assert data_window(rgb) == (0, 0, 100, 200)
    thin = np.pad(rgb, ((2, 2), (3, 3), (0, 0)))  # a border of a few rows: under a tenth of the image
    assert data_window(thin) == (0, 0, 104, 206)
    assert data_window(np.zeros((10, 12, 3), np.float32)) == (0, 0, 10, 12)  # all nodata: the whole image
    # an ImageSource is read block by block from its edges: the same window
    from napari_gardenseg._image_source import ImageSource

    assert data_window(ImageSource(framed)) == (50, 120, 150, 320)


def test_the_map_of_an_image_source_is_read_band_by_band_and_equal(garden_photo):
    from napari_gardenseg._image_source import ImageSource

    framed = np.zeros((garden_photo.shape[0] + 40, garden_photo.shape[1], 3), np.uint8)
    framed[40:] = garden_photo  # a nodata band on top
    classes = colour_classes(to_rgb_float(framed))
    whole = classes.map(to_rgb_float(framed), image_shape=(100, 120))
    bands = classes.map(ImageSource(framed), image_shape=(100, 120), rows=37)  # bands that do not divide it
    np.testing.assert_array_equal(bands.probability, whole.probability)
    np.testing.assert_array_equal(bands.plants, whole.plants)
    assert bands.probability.dtype == np.float32 and not bands.plants[:40].any()


def test_nodata_is_never_plant_whatever_the_threshold():
    # a photo with a purple cast puts Otsu's threshold below 0, the excess green of black and white
    classes = ColourClasses("exg", -0.05, 0.02, 0.8, 0.2, True, "test")
    rgb = np.full((4, 6, 3), 0.4, np.float32)
    rgb[0], rgb[1] = 0.0, 1.0
    prob = classes.map(rgb).probability
    np.testing.assert_array_equal(prob[:2], 0.0)
    assert (prob[2:] > 0.5).all()  # grey: excess green 0, above this threshold


@pytest.mark.parametrize("nodata", [0, 255, "masked"])
def test_a_photo_in_a_nodata_border_is_segmented_as_the_photo_alone(garden_photo, nodata):
    # an orthomosaic's border as large as the photo: the network sees the photo at its own size, and
    # the colour stage takes no nodata for plant. "masked": a float raster whose nodata is -10000,
    # read with rasterio's read(masked=True)
    import napari_gardenseg as gs

    h, w = garden_photo.shape[:2]
    if nodata == "masked":
        framed = np.full((2 * h, 2 * w, 3), -10000, np.float32)
        framed[h // 2 : h // 2 + h, w // 3 : w // 3 + w] = garden_photo / np.float32(255)
        framed = np.ma.masked_equal(framed, -10000)
    else:
        framed = np.full((2 * h, 2 * w, 3), nodata, np.uint8)
        framed[h // 2 : h // 2 + h, w // 3 : w // 3 + w] = garden_photo
    alone = gs.segment(garden_photo, "garden", score_threshold=0.3, crf=False, vegetation="on")
    inside = gs.segment(framed, "garden", score_threshold=0.3, crf=False, vegetation="on")
    assert inside.meta["data_window"] == [h // 2, w // 3, h // 2 + h, w // 3 + w]
    assert len(alone) >= 3 and len(inside) == len(alone)
    np.testing.assert_allclose(np.sort(inside.scores), np.sort(alone.scores), atol=1e-4)
    crop = inside.labels[h // 2 : h // 2 + h, w // 3 : w // 3 + w]
    assert (inside.labels > 0).sum() == (crop > 0).sum()  # nothing found in the border
    assert ((crop > 0) == (alone.labels > 0)).mean() > 0.995


def test_windowed_stage_follows_the_data_inside_a_nodata_border(garden_photo, tmp_path):
    # segment_to_zarr never reads the whole image for the stage: its closing and speck size must
    # still follow the photo, not the border around it, as the whole-image stage does
    import napari_gardenseg as gs

    h, w = garden_photo.shape[:2]
    framed = np.zeros((2 * h, 2 * w, 3), np.uint8)
    framed[h // 2 : h // 2 + h, w // 3 : w // 3 + w] = garden_photo
    opts = dict(score_threshold=0.3, crf=False, vegetation="on")
    whole = gs.segment(framed, "garden", **opts)
    stored = gs.segment_to_zarr(framed, tmp_path / "framed.zarr", "garden", **opts)
    assert stored.meta["vegetation"]["windows"] == 1 and len(whole) >= 3
    np.testing.assert_array_equal(stored.labels[:], whole.labels)


def test_tiled_lazy_and_zarr_runs_follow_colour(garden_photo, tmp_path):
    # tiling (small plants at native resolution), a lazy array and a zarr output must not lose the
    # stage; those never reading the whole image run it window by window: here one window, which
    # is exactly the whole-image stage
    import dask.array as da

    import napari_gardenseg as gs

    opts = dict(score_threshold=0.3, crf=False, vegetation="on")
    tiled = gs.segment(garden_photo, "garden", tile_size=256, **opts)
    assert tiled.meta["tiles"] > 1 and tiled.meta["vegetation"]["applied"]
    assert (tiled.table["source"] == "model").sum() >= 3
    green = vegetation_map(garden_photo.astype(np.float32) / 255).mask
    whole = gs.segment(garden_photo, "garden", **opts)
    assert "windows" not in whole.meta["vegetation"]
    assert green[tiled.labels > 0].mean() > 0.9 * green[whole.labels > 0].mean()
    lazy = gs.segment(da.from_array(garden_photo, chunks=128), "garden", **opts)
    assert lazy.meta["vegetation"]["applied"]
    np.testing.assert_array_equal(lazy.labels, whole.labels)  # the same pixels, the same instances
    lazy_tiled = gs.segment(da.from_array(garden_photo, chunks=128), "garden", tile_size=256, **opts)
    assert lazy_tiled.meta["vegetation"]["windows"] == 1
    np.testing.assert_array_equal(lazy_tiled.labels, tiled.labels)
    stored = gs.segment_to_zarr(garden_photo, tmp_path / "out.zarr", "garden", **opts)
    assert stored.meta["vegetation"]["applied"] and stored.meta["vegetation"]["windows"] == 1
    np.testing.assert_array_equal(stored.labels[:], whole.labels)
    assert list(stored.table["source"]) == list(whole.table["source"])


def test_windows_agree_with_the_whole_image_stage(garden_photo, monkeypatch):
    # many windows (cores far smaller than the photo): each plant is decided in the window owning
    # it, beside its neighbours, so the instances are the whole-image stage's
    import napari_gardenseg as gs
    from napari_gardenseg import _plant_pixels, _vegetation_windows
    from napari_gardenseg._image_source import ImageSource
    from napari_gardenseg._vegetation import colour_classes

    found = gs.segment(garden_photo, "garden", score_threshold=0.3, crf=False, vegetation="off", keep_soft_masks=True)
    found = found.instances
    rgb = garden_photo.astype(np.float32) / 255
    vmap = vegetation_map(rgb)
    whole = paint_image(follow_vegetation(found, vmap, score_threshold=0.3))
    source, classes = ImageSource(garden_photo), colour_classes(rgb)
    one, coverage, n = _vegetation_windows.follow_in_windows(found, source, classes, score_threshold=0.3)
    assert n == 1
    np.testing.assert_array_equal(paint_image(one), whole)
    assert coverage == pytest.approx(_plant_pixels.model_coverage(found, vmap))
    for block in (100, 160):
        plans = _vegetation_windows.plan_windows(garden_photo.shape[:2], found, block)
        assert len(plans) >= 12 and sorted(np.concatenate([o for _, _, o in plans])) == list(range(len(found)))
        margin, ext = _vegetation_windows.margin_for(found), found.extents()
        for core, win, owned in plans:  # a window is its core, the margin and what it owns, no more
            grown = np.array([*np.subtract(core[:2], margin), *np.add(core[2:], margin)])
            if owned.size:
                grown = np.concatenate(
                    [np.minimum(grown[:2], ext[owned, :2].min(0)), np.maximum(grown[2:], ext[owned, 2:].max(0))]
                )
            np.testing.assert_array_equal(win, np.clip(grown, 0, np.tile(garden_photo.shape[:2], 2)))
        out, cov, n = _vegetation_windows.follow_in_windows(found, source, classes, score_threshold=0.3, block=block)
        assert n == len(plans)
        labels = paint_image(out)
        assert cov == pytest.approx(coverage, abs=1e-6)  # the cores' counts add up to the image's
        assert len(out) == len(np.unique(whole)) - 1
        for k in np.unique(whole)[1:]:
            mine = whole == k
            ids, counts = np.unique(labels[mine], return_counts=True)
            j = ids[np.argmax(counts)]
            assert j > 0 and np.count_nonzero(mine & (labels == j)) / np.count_nonzero(mine | (labels == j)) > 0.9
    # an image over the in-memory limit runs it window by window, and says so
    monkeypatch.setattr(_plant_pixels, "VEGETATION_MAX_PIXELS", 100_000)
    monkeypatch.setattr(_vegetation_windows, "BLOCK", 256)
    big = gs.segment(garden_photo, "garden", score_threshold=0.3, crf=False, vegetation="on")
    assert big.meta["vegetation"]["applied"] and big.meta["vegetation"]["windows"] == 6


def test_widget_hint_when_colour_finds_many_plants_the_model_missed():
    from napari_gardenseg._batch_file import _file_note
    from napari_gardenseg._hints import adapt_hint
    from napari_gardenseg._results import SegmentationResult

    labels = np.zeros((100, 200), np.int32)
    for k in range(1, 6):
        labels[10:30, 30 * k : 30 * k + 20] = k  # five plant-sized instances

    def result(sources):
        n = len(sources)
        return SegmentationResult(
            labels,
            None,
            np.ones(n, np.int64),
            ["plant"] * n,
            np.linspace(0.9, 0.1, n),
            np.zeros((n, 4), np.float32),
            sources=sources,
        )

    hint = adapt_hint([result(["model", "colour", "colour", "colour", "colour"])])
    assert hint is not None and "found 1 plant;" in hint and "4 more" in hint and "Adapt to these photos" in hint
    assert adapt_hint([result(["model"] * 4 + ["colour"])]) is None
    # a network whose confident finds are mostly not plant-coloured does not know these plants
    soil = result(["model"] * 4 + ["colour"])
    soil.meta["vegetation"] = {"applied": True, "vegetation_confident_on_colour": 0.595}
    hint = adapt_hint([soil])
    assert "under 60% of the model's confident finds are plant-coloured (59%)" in hint
    assert hint.endswith("rank below the colour-only ones): try *Adapt to these photos*")
    assert "does not know these plants" in _file_note(soil, 0.5) and "gardenseg adapt" in _file_note(soil, 0.5)
    # a plane below the bar gets it whatever the other planes' shares
    sure = result(["model"] * 4 + ["colour"])
    sure.meta["vegetation"] = {"applied": True, "vegetation_confident_on_colour": 0.9}
    assert adapt_hint([sure]) is None and "59%" in adapt_hint([sure, soil])
    # "auto" left the photo to the network (nothing was ranked lower): no such hint
    soil.meta["vegetation"] = {"applied": False, "vegetation_confident_on_colour": 0.25}
    assert adapt_hint([soil]) is None
    # a batch says both, in its own words: the command to run, and the ground cover left out
    from napari_gardenseg._plant_pixels import GROUND_COVER

    missed = result(["model", "colour", "colour", "colour", "colour"])
    missed.meta["vegetation"] = {GROUND_COVER: 0.3}
    note = _file_note(missed, 0.5)
    assert "found 1 plant;" in note and "gardenseg adapt" in note and "Adapt to these" not in note
    # a photo shrunk 20 times for one pass: its plants were specks to the network, tiles are the answer
    missed.meta.update(shrink=20.0, tiles=0)
    assert "shrunk 20 times" in adapt_hint([missed]) and "set *tiles* to auto" in adapt_hint([missed])
    assert "run again with --tile-size auto" in _file_note(missed, 0.5) and "gardenseg adapt" not in _file_note(
        missed, 0.5
    )
    missed.meta.update(tiles=12)  # tiled already: adapt it is
    assert "gardenseg adapt" in _file_note(missed, 0.5)
    assert "30% of the photo is plant-coloured ground cover" in note and "gardenseg train" in note
    assert _file_note(result(["model"] * 4 + ["colour"]), 0.5) is None


def test_status_hint_says_why_nothing_was_found():
    from napari_gardenseg._hints import status_hint
    from napari_gardenseg._results import SegmentationResult

    def empty(channels):
        labels = np.zeros((20, 30), np.int32)
        meta = {"channels": channels, "score_threshold": 0.5}
        return SegmentationResult(labels, None, np.zeros(0, np.int64), [], np.zeros(0), np.zeros((0, 4)), meta=meta)

    assert "grey" in status_hint([empty(1)]) and "RGB layer" in status_hint([empty(2), empty(1)])
    assert "Merge to RGB" in status_hint([empty(1)])  # napari's own action, named
    assert status_hint([empty(3)]) == "no detection scored 0.5 or more: try a lower *min score* (score_threshold)"
    assert "grey" not in status_hint([empty(1), empty(4)])  # one colour plane: not the grey case


def test_the_result_says_how_many_channels_the_image_had(garden_photo):
    import napari_gardenseg as gs

    grey = gs.segment(garden_photo.mean(axis=-1), "garden", crf=False, vegetation="off")
    assert grey.meta["channels"] == 1
    assert gs.segment(garden_photo, "garden", crf=False, vegetation="off").meta["channels"] == 3


def test_the_stage_starts_from_its_own_threshold_whatever_mask_threshold_is():
    """A low mask_threshold widens the network's own masks (thin leaves), not what the stage starts
    from: masks sure only in their cores (soft 0.4 at the rim) cover too little of the plants at the
    stage's threshold, so "auto" runs it at every mask_threshold, with the same result (whole images
    and window by window)."""
    from napari_gardenseg._image_source import ImageSource
    from napari_gardenseg._options import SegmentOptions
    from napari_gardenseg._plant_pixels import MODEL_COVERS, SEED_THRESHOLD, vegetation_stage

    rgb, truth = _photo([(80, 60, 28), (80, 170, 28)])
    shape = truth.shape
    cores = [np.where(_disc(shape, 80, x, 20), 0.95, np.where(truth == k, 0.4, 0.0)) for k, x in ((1, 60), (2, 170))]
    found = _instances(cores, [0.9, 0.8], shape)
    assert SEED_THRESHOLD > 0.4 and (paint_image(found, 0.3) > 0)[truth > 0].mean() > MODEL_COVERS
    source = ImageSource((rgb * 255).round().astype(np.uint8))
    for windowed in (False, True):
        low, high = (
            # options as a run resolves them (the stage is given numbers, not "the model's own")
            vegetation_stage(found, source, SegmentOptions(score_threshold=0.5, mask_threshold=t), windowed=windowed)
            for t in (0.3, 0.5)
        )
        assert low[1]["applied"] and high[1]["applied"], (low[1], high[1])
        np.testing.assert_array_equal(paint_image(low[0]), paint_image(high[0]))
        lab = paint_image(low[0])
        assert _best(lab, truth, 1)[1] > 0.9 and _best(lab, truth, 2)[1] > 0.9  # colour drew the whole plants


def test_merged_classes_are_one_class_with_the_colour_only_instances():
    import napari_gardenseg as gs
    from napari_gardenseg.synthetic import garden_scene

    image, _, _ = garden_scene(3, (384, 384), style="photo")
    res = gs.segment(image, "garden", merge_classes=True, crf=False)
    assert {"model", "colour"} <= set(res.table["source"])  # the case: colour-only instances (id 0 before)
    assert set(res.class_ids) == {4} and set(res.class_names) == {"plant"}
    assert [c["id"] for c in gs.to_coco(res)["categories"]] == [4]
    # with the model's class names, id 1 stays its "flowering": the merged plants are "plant"
    cats = gs.to_coco(res, class_names=gs.load_model("garden").class_names)["categories"]
    assert {c["id"]: c["name"] for c in cats}[4] == "plant"
    # unmerged, they are the class after the model's last, never 0 (COCO converters take 0 for background)
    res = gs.segment(image, "garden", crf=False)
    colour = res.table[res.table["source"] == "colour"]
    assert len(colour) and set(colour["class_id"]) == {4} and set(colour["class_name"]) == {"plant"}
    assert 0 not in {c["id"] for c in gs.to_coco(res)["categories"]}


def test_instance_component_pairs_are_the_same_counted_densely_or_sparsely(monkeypatch):
    """Thousands of instances and components (a tiled tray) are counted without an
    instances x components table; both ways give the same pairs."""
    import napari_gardenseg._plant_pixels as plant_pixels

    rng = np.random.default_rng(0)
    inst, comp = rng.integers(0, 40, 5000), rng.integers(1, 30, 5000)
    dense = plant_pixels._pair_counts(inst, comp, 39, 29)
    monkeypatch.setattr(plant_pixels, "_DENSE_PAIRS", 0)
    sparse = plant_pixels._pair_counts(inst, comp, 39, 29)
    for a, b in zip(dense, sparse):
        np.testing.assert_array_equal(a, b)
    main, top = plant_pixels._largest(*sparse, 40)
    table = np.zeros((40, 30), np.int64)
    np.add.at(table, (inst, comp), 1)
    table[0] = 0
    np.testing.assert_array_equal(main, table.argmax(axis=1))
    np.testing.assert_array_equal(top, table.max(axis=1))


def test_a_black_and_white_photo_saved_as_rgb_is_told_apart_from_a_score_threshold(scene):
    from napari_gardenseg import segment
    from napari_gardenseg._batch_file import _file_note
    from napari_gardenseg._hints import status_hint

    photo = scene[0]
    grey = np.repeat(np.asarray(Image.fromarray(photo).convert("L"))[..., None], 3, axis=-1)
    for image, why in ((grey, "no colour in this photo"), (photo, "no detection scored 1.0")):
        result = segment(image, "garden", score_threshold=1.0, crf=False, vegetation="off")
        assert len(result) == 0
        assert why in status_hint([result]) and why in _file_note(result, 1.0)
    assert "lower" not in _file_note(segment(grey, "garden", score_threshold=1.0, crf=False), 1.0)


def test_a_photo_whose_plants_are_not_green_says_so():
    from napari_gardenseg._batch_file import _file_note
    from napari_gardenseg._hints import status_hint
    from napari_gardenseg._results import SegmentationResult

    # red foliage only (a clean photo's grain: noisier, the colour index is smoothed first)
    rgb, truth = _photo([(50, 60, 25), (100, 170, 30)], noise=0.01, colours={1: RED_LEAF, 2: RED_LEAF})
    vmap = vegetation_map(rgb)
    assert not vmap.informative and vmap.reason.startswith("the upper class is not green") and vmap.eta > 0.7

    def result(reason, eta):  # one instance found, the stage's verdict as segment() records it
        return SegmentationResult(
            (truth == 1).astype(np.int32),
            None,
            np.ones(1, np.int64),
            ["plant"],
            np.array([0.9]),
            np.zeros((1, 4), np.float32),
            meta={"vegetation": {"reason": reason, "vegetation_eta": eta}},
        )

    told = result(vmap.reason, vmap.eta)
    assert "neither part is green" in status_hint([told]) and "neither part is green" in _file_note(told, 0.5)
    assert status_hint([result(vmap.reason, 0.6)]) is None  # no clear second class: nothing to say


def test_window_cores_tile_the_image_without_slivers():
    # a remainder under half a core joins the core before it: a 6-pixel core's window judged its
    # plants' typical size on a strip (segment and segment_to_zarr disagreed there)
    from napari_gardenseg._vegetation_windows import plan_windows

    empty = Instances.from_dense(np.zeros((0, 230, 260), np.float32), np.zeros(0), np.zeros(0, int))
    cores = [core for core, _, _ in plan_windows((230, 260), empty, 100)]
    assert sorted({(c[0], c[2]) for c in cores}) == [(0, 100), (100, 230)]  # 30 rows left: joined
    assert sorted({(c[1], c[3]) for c in cores}) == [(0, 100), (100, 200), (200, 260)]  # 60: a core
    assert [core for core, _, _ in plan_windows((90, 40), empty, 100)] == [(0, 0, 90, 40)]


@pytest.mark.parametrize("what", ["bare soil", "red plants only"])
def test_vegetation_on_makes_no_plants_of_soil_where_no_class_is_green(what):
    # "on" skips the "auto" checks, but a photo with no green class has no plant colour: its
    # upper class is the grainier or redder half of the soil, whose patches became "plants"
    import napari_gardenseg as gs

    discs = [] if what == "bare soil" else [(60, 80, 30), (100, 170, 25)]
    rgb, _ = _photo(discs, shape=(160, 240), noise=0.06, colours={1: RED_LEAF, 2: RED_LEAF})
    r = gs.segment((rgb * 255).round().astype(np.uint8), "garden", score_threshold=0.05, crf=False, vegetation="on")
    note = r.meta["vegetation"]
    assert note["applied"] is False and note["reason"].startswith("no plant colour to follow"), note
    assert "colour" not in list(r.sources or [])


def _soil(shape, seed: int = 0):
    """Noisy soil of ``shape`` as float RGB, and its pixels' row and column indices."""
    rng = np.random.default_rng(seed)
    rgb = np.clip(SOIL + rng.normal(0, 0.02, (*shape, 3)), 0, 1).astype(np.float32)
    return (rgb, *np.mgrid[: shape[0], : shape[1]])


def _row_photo(shape=(512, 1024)):
    """Soil with a plant-coloured sown row (30 x 900 px, 4 cores of 256 long) and a diagonal band
    crossing cores at their corners: components longer than a window."""
    rgb, yy, xx = _soil(shape)
    row = np.zeros(shape, bool)
    row[200:230, 60:960] = True
    band = (np.abs(yy - (xx - 100) * 0.5) < 6) & (xx > 150) & (xx < 900) & (yy > 280)
    rgb[row | band] = LEAF
    return rgb, row, band


@pytest.mark.parametrize("seeded", [False, True])
def test_windows_stitch_a_component_longer_than_a_window(seeded):
    # each window saw its own piece of the row: 4 overlapping colour-only instances, or (with a
    # detection on one end) the seed's claim cut at its window and 45% of the row unlabelled
    from napari_gardenseg._image_source import ImageSource
    from napari_gardenseg._vegetation_windows import follow_in_windows

    rgb, row, band = _row_photo()
    shape = row.shape
    if seeded:
        found = Instances([np.full((30, 300), 0.9, np.float32)], [(200, 60)], [0.9], [1], [[60, 200, 359, 229]], shape)
    else:
        found = Instances.empty(shape)
    classes = colour_classes(rgb)
    whole = follow_vegetation(found, classes.map(rgb), 0.5)
    source = ImageSource((rgb * 255).round().astype(np.uint8))
    out, _, n = follow_in_windows(found, source, classes, 0.5, block=256)
    assert n == 8
    labels, reference = paint_image(out), paint_image(whole)
    for part in (row, band):
        ids = np.unique(labels[part])
        assert ids.size == 1 and ids[0] > 0  # one instance holds it all
        assert np.unique(reference[part]).size == 1 and reference[part][0] > 0  # as in the whole image
    held = sum((m > 0.5).sum() for m in out.masks)
    assert held == np.count_nonzero(labels)  # no pixel claimed twice
    assert np.array_equal(labels > 0, reference > 0)
    assert len(out) == len(whole) == 2 and sorted(out.sources) == sorted(whole.sources)
    if seeded:
        assert out.sources[labels[row][0] - 1] == "model"


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label images hold the same instances (the same pixel sets, whatever their ids)."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    pairs = pairs[:, (pairs > 0).any(axis=0)]
    return (pairs > 0).all() and len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def test_a_sparse_colour_component_is_held_in_pieces_on_the_grid(monkeypatch):
    # a crop row running diagonally has the image's box: one float mask of the image's size per
    # row. Over BLOCK**2 and SPARSE_BOX times its pixels, it is held in pieces on the cores' grid,
    # each halved while mostly empty (down to PIECE_SIDE), in a whole-image run as window by
    # window; a compact plant and a straight row stay whole
    from napari_gardenseg import _vegetation_windows
    from napari_gardenseg._image_source import ImageSource
    from napari_gardenseg._vegetation_windows import follow_in_windows

    monkeypatch.setattr(_vegetation_windows, "BLOCK", 64)
    monkeypatch.setattr(_vegetation_windows, "PIECE_SIDE", 16)
    monkeypatch.setattr(_vegetation_windows, "SPARSE_BOX", 4)
    shape = (256, 256)
    rgb, yy, xx = _soil(shape, 1)
    band = np.abs(yy - xx) < 5
    straight = (yy >= 230) & (yy < 238) & (xx >= 40) & (xx < 180)
    disc = (yy - 60) ** 2 + (xx - 190) ** 2 < 18**2
    rgb[band | straight | disc] = LEAF
    classes = colour_classes(rgb)
    empty = Instances.empty(shape)
    whole = follow_vegetation(empty, classes.map(rgb))
    labels = paint_image(whole)
    assert np.array_equal(labels > 0, band | straight | disc)
    for part in (straight, disc):
        assert len(np.unique(labels[part])) == 1
    pieces = np.unique(labels[band])
    assert len(pieces) >= 8 and all(
        whole.masks[k - 1].shape[0] <= 64 and whole.masks[k - 1].shape[1] <= 64 for k in pieces
    )
    # each cell's piece cut finer while mostly empty: every mask within 16 x 16 or 4 times its pixels
    assert all(whole.masks[k - 1].size <= max(16 * 16, 4 * np.count_nonzero(whole.masks[k - 1])) for k in pieces)
    assert max(whole.masks[k - 1].size for k in pieces) < 64 * 64
    windowed, _, _ = follow_in_windows(empty, ImageSource((rgb * 255).round().astype(np.uint8)), classes, block=64)
    assert _same_partition(paint_image(windowed), labels)
    # not split: the whole component in one instance
    monkeypatch.setattr(_vegetation_windows, "BLOCK", 256)
    assert len(np.unique(paint_image(follow_vegetation(empty, classes.map(rgb)))[band])) == 1


def test_a_seeded_component_too_sparse_for_one_box_is_held_in_pieces_too(monkeypatch):
    # a detection at one end of a diagonal row claims the row: its mask had the image's box in a
    # whole-image run. It keeps the grid cells its detection's box meets, the rest is colour-only
    # pieces on the grid, in both kinds of run; no pixel is lost or claimed twice
    from napari_gardenseg import _vegetation_windows
    from napari_gardenseg._image_source import ImageSource
    from napari_gardenseg._vegetation_windows import follow_in_windows

    monkeypatch.setattr(_vegetation_windows, "BLOCK", 64)
    monkeypatch.setattr(_vegetation_windows, "PIECE_SIDE", 16)
    shape = (384, 384)
    rgb, yy, xx = _soil(shape, 2)
    band = (np.abs(yy - xx) < 5) & (yy > 8) & (yy < 376)
    rgb[band] = LEAF
    seed = 0.9 * band[10:40, 10:40].astype(np.float32)  # the detection: a plant at the row's end
    found = Instances([seed], [(10, 10)], [0.9], [1], [[10, 10, 39, 39]], shape)
    classes = colour_classes(rgb)
    source = ImageSource((rgb * 255).round().astype(np.uint8))
    out, _, n = follow_in_windows(found, source, classes, block=64)
    labels = paint_image(out)
    assert n == 36 and np.array_equal(labels > 0, band)
    # a whole-image run holds the seed's row in the same pieces (its plant's cells, the rest on the grid)
    whole = follow_vegetation(found, classes.map(rgb))
    assert _same_partition(paint_image(whole), labels) and list(whole.sources).count("model") == 1
    assert sum(np.count_nonzero(m > 0.5) for m in out.masks) == np.count_nonzero(band)  # none claimed twice
    model = np.flatnonzero(out.sources == "model")
    assert len(model) == 1 and 1 < len(out) and np.count_nonzero(labels == model[0] + 1) > 30 * 8
    colour = [m for m, s in zip(out.masks, out.sources) if s == "colour"]
    assert all(m.size <= max(16 * 16, 16 * np.count_nonzero(m > 0.5)) for m in colour)
    # a second seed further along the row: where the better-scored holds the pixels, the other's soft
    # values below its claim made pieces of the row without a pixel
    monkeypatch.setattr(_vegetation_windows, "SPARSE_BOX", 4)  # pieces small enough to hold only those values
    second = 0.9 * band[260:290, 260:290].astype(np.float32)
    found = Instances(
        [seed, second], [(10, 10), (260, 260)], [0.9, 0.8], [1, 1], [[10, 10, 39, 39], [260, 260, 289, 289]], shape
    )
    out, _, _ = follow_in_windows(found, source, classes, block=64)
    assert all(np.count_nonzero(m > 0.5) for m in out.masks)  # every instance holds pixels
    assert np.array_equal(paint_image(out) > 0, band)


@pytest.mark.parametrize("case", ["two seeds on a row", "a row hooking back"])
def test_windows_claim_each_plant_pixel_once(case):
    # a row with a detection at each end: what one seed gathered beyond its window was also the
    # other's (claimed twice); a row leaving its seed's window and coming back: the returning leg
    # was taken out as "the owner's" though the owner never claimed it (lost)
    from napari_gardenseg._image_source import ImageSource
    from napari_gardenseg._vegetation_windows import follow_in_windows

    shape = (512, 1024)
    rgb, _, _ = _soil(shape)
    row = np.zeros(shape, bool)
    if case == "two seeds on a row":
        row[200:230, 10:1014] = True
        masks, offsets, boxes = (
            [np.full((30, 60), 0.9, np.float32)] * 2,
            [(200, 20), (200, 940)],
            [[20, 200, 79, 229], [940, 200, 999, 229]],
        )
    else:
        row[20:32, 20:600] = row[20:230, 588:600] = row[218:230, 120:600] = True
        masks, offsets, boxes = [np.full((12, 80), 0.9, np.float32)], [(20, 20)], [[20, 20, 99, 31]]
    rgb[row] = LEAF
    found = Instances(masks, offsets, [0.9] * len(masks), [1] * len(masks), boxes, shape)
    classes = colour_classes(rgb)
    out, _, _ = follow_in_windows(found, ImageSource((rgb * 255).round().astype(np.uint8)), classes, block=256)
    labels = paint_image(out)
    assert np.array_equal(labels > 0, paint_image(follow_vegetation(found, classes.map(rgb))) > 0)
    assert (labels[row] > 0).all()
    assert sum(np.count_nonzero(m > 0.5) for m in out.masks) == np.count_nonzero(labels)  # none claimed twice
    assert list(out.sources) == ["model"] * len(masks)  # the row is the seeds' plants, as in the whole image


def test_sensor_noise_on_dark_soil_is_smoothed_before_the_threshold():
    # a dim photo's sensor noise (8/255), divided by dark soil's small R + G + B: Otsu's threshold fell
    # into the soil's noisy tail and hundreds of soil specks became colour instances
    from napari_gardenseg._vegetation import NOISE_GATE, NOISE_SIGMA, index_noise

    dark = np.array([0.16, 0.12, 0.09], np.float32)  # potting mix
    shape, discs = (200, 300), [(60, 70, 28), (130, 180, 34), (60, 240, 20)]
    truth = np.zeros(shape, bool)
    clean = np.broadcast_to(dark, shape + (3,)).copy()
    for cy, cx, r in discs:
        truth |= _disc(shape, cy, cx, r)
    clean[truth] = (0.14, 0.20, 0.08)  # dim seedlings: unsmoothed, the stage judged one colour class (80 specks)
    noisy = np.clip(clean + np.random.default_rng(5).normal(0, 8 / 255, clean.shape), 0, 1).astype(np.float32)
    assert index_noise(clean) < NOISE_GATE < index_noise(noisy)
    vmap = vegetation_map(noisy)
    assert vmap.informative and "smoothed" in vmap.reason, vmap.reason
    plants = vmap.plants
    assert _iou(plants, truth) > 0.95
    assert ndimage.label(plants)[1] == len(discs)  # no soil specks
    quiet = vegetation_map(np.clip(clean + np.random.default_rng(5).normal(0, 1 / 255, clean.shape), 0, 1))
    assert "smoothed" not in quiet.reason and _iou(quiet.plants, truth) > 0.97
    # the classes say it, and a map read band by band is the map of the whole image (no seams)
    from napari_gardenseg._image_source import ImageSource
    from napari_gardenseg._vegetation import colour_classes

    classes = colour_classes(noisy)
    assert classes.smooth == NOISE_SIGMA and classes.summary()["vegetation_smooth"] == NOISE_SIGMA
    banded = classes.map(ImageSource(noisy), rows=64).probability
    np.testing.assert_allclose(banded, classes.map(noisy).probability, atol=1e-6)


def test_plants_a_small_share_of_the_frame_are_found_where_otsu_splits_the_soil():
    # young plants in a wide drone frame: soil's own spread was the larger contrast, Otsu's two
    # classes split the soil, the stage said "one colour class" and went off (3 of 15 held-out photos
    # in a frame 3 times wider)
    rng = np.random.default_rng(4)
    shape = (300, 400)
    grain = ndimage.gaussian_filter(rng.normal(0, 1, shape + (3,)), (1.5, 1.5, 0))  # soil's crumbs
    rgb = (SOIL + grain / grain.std() * 0.02).astype(np.float32)
    truth = np.zeros(shape, bool)
    for cy, cx in ((80, 90), (200, 300), (150, 180)):  # 0.2% of the frame
        truth |= _disc(shape, cy, cx, 5)
    rgb[truth] = LEAF
    vmap = vegetation_map(np.clip(rgb, 0, 1))
    assert vmap.informative and vmap.fraction < 0.02, vmap.reason
    assert _iou(vmap.plants, truth) > 0.9


def _soil_detections(shape, boxes):
    """Full-frame soft masks of boxes (y0, y1, x0, x1) on bare soil: a network that does not know the plants."""
    out = []
    for y0, y1, x0, x1 in boxes:
        m = np.zeros(shape, np.float32)
        m[y0:y1, x0:x1] = 0.9
        out.append(m)
    return out


def test_a_network_mostly_off_plant_colour_ranks_its_soil_finds_below_colour(monkeypatch):
    """Where most confident detections lie on soil (a model trained on other photos), its detections
    off plant colour rank below every colour-only plant, and stay (kept, never dropped); decided once
    for the image, so window by window alike."""
    from napari_gardenseg import _vegetation_windows
    from napari_gardenseg._image_source import ImageSource
    from napari_gardenseg._options import SegmentOptions
    from napari_gardenseg._plant_pixels import KNOWN_SHARE, vegetation_stage

    rgb, truth = _photo([(50, 50, 22), (50, 190, 22), (125, 120, 22)], shape=(180, 260))
    shape = truth.shape
    soil = [(100, 130, 10, 40), (140, 170, 190, 240), (5, 25, 100, 140)]
    found = _instances([(truth == 1) * 0.9, *_soil_detections(shape, soil)], [0.9, 0.95, 0.9, 0.85], shape)
    source = ImageSource((rgb * 255).round().astype(np.uint8))
    monkeypatch.setattr(_vegetation_windows, "BLOCK", 96)  # windowed: six windows, the plants across seams
    for windowed in (False, True):
        out, info = vegetation_stage(
            found, source, SegmentOptions(vegetation="on", score_threshold=0.05), windowed=windowed
        )
        assert info["vegetation_confident_on_colour"] == 0.25 < KNOWN_SHARE
        assert info.get("windows", 1) == (6 if windowed else 1)
        lab = paint_image(out)
        colour = [_best(lab, truth, k) for k in (2, 3)]  # the two plants the network missed
        assert all(i > 0 and iou > 0.9 and out.sources[i - 1] == "colour" for i, iou in colour)
        off = [i for i in range(len(out)) if out.sources[i] == "model" and not (lab == i + 1)[truth > 0].any()]
        assert len(off) == 3  # the soil finds are kept...
        assert max(out.scores[off]) <= COLOUR_SCORE_RANGE[0] * 0.95 + 1e-6  # ...below every colour-only plant
        assert min(out.scores[[i - 1 for i, _ in colour]]) > max(out.scores[off])
        assert max(off) == len(out) - 1 and min(off) == len(out) - 3  # listed last, best first
    # at a score threshold above their scores they are reported at it, as every lowered instance is
    out, _ = vegetation_stage(found, source, SegmentOptions(vegetation="on", score_threshold=0.5))
    assert len(out) == 6 and out.scores.min() == pytest.approx(0.5)
    # a network whose confident finds are plants: a find off plant colour keeps its rank (a red plant)
    plants = _instances(
        [(truth == k) * 0.9 for k in (1, 2, 3)] + _soil_detections(shape, soil[:1]), [0.9, 0.9, 0.9, 0.95], shape
    )
    out, info = vegetation_stage(plants, source, SegmentOptions(vegetation="on", score_threshold=0.05))
    assert info["vegetation_confident_on_colour"] == 0.75
    assert out.scores.max() == pytest.approx(0.95 * 0.95, abs=1e-6)


def test_confident_on_colour_counts_confident_detections_and_needs_three():
    from napari_gardenseg._plant_pixels import confident_on_colour

    rgb, truth = _photo([(50, 50, 22), (50, 190, 22), (125, 120, 22)], shape=(180, 260))
    plants = vegetation_map(rgb).mask
    green = [(truth == k) * 0.9 for k in (1, 2, 3)]
    soil = _soil_detections(truth.shape, [(100, 130, 10, 40)])
    assert confident_on_colour(_instances(green + soil, [0.9, 0.8, 0.7, 0.9], truth.shape), plants, 1) == 0.75
    # on an overview (every 4th pixel) as the stage reads it
    assert confident_on_colour(_instances(green + soil, [0.9, 0.8, 0.7, 0.9], truth.shape), plants[::4, ::4], 4) == 0.75
    # weak detections are not counted, and two confident ones are too few to judge by
    assert confident_on_colour(_instances(green + soil, [0.9, 0.3, 0.3, 0.9], truth.shape), plants, 1) is None


def test_a_plant_map_of_specks_only_is_not_said_to_be_held_by_the_network():
    # a big photo's small plants under the speck size: "the network holds 100%" was said with no detection
    from napari_gardenseg._plant_pixels import model_coverage
    from napari_gardenseg._vegetation import VegetationMap

    probability = np.zeros((200, 200), np.float32)
    probability[10:200:20, 10:200:20] = 0.9  # one-pixel plants
    vmap = VegetationMap(probability, "exg", 0.1, 0.9, 0.01, True, "two colour classes", image_shape=(4000, 4000))
    assert vmap.mask.any() and not vmap.plants.any()
    assert model_coverage(None, vmap) is None


def test_typical_area_is_the_component_at_the_median_plant_pixel():
    from napari_gardenseg._vegetation import closing_radius, min_area, typical_area

    mask = np.zeros((60, 60), bool)
    mask[2:4, 2:4] = True  # a speck of 4
    mask[10:13, 10:13] = True  # 9
    mask[30:40, 30:40] = True  # 100: holds the median pixel
    assert typical_area(mask) == 100.0
    assert typical_area(mask, step=3) == 900.0  # an overview's pixel stands for step**2 of the image's
    assert typical_area(np.zeros((5, 5), bool)) is None
    # the plants' scale bounds the image's rule from above, never from below
    assert min_area((4000, 4000)) == 320 and min_area((4000, 4000), plant_area=160.0) == 12
    assert min_area((4000, 4000), plant_area=1e6) == 320
    assert closing_radius((4000, 4000)) == 8 and closing_radius((4000, 4000), plant_area=144.0) == 2
    assert closing_radius((4000, 4000), plant_area=1e6) == 8


def test_small_plants_in_a_big_photo_are_neither_specks_nor_closed_into_one(monkeypatch):
    # seedlings of ~29 px, 6 px apart, in a 2.25 MP frame: the image's rule alone (speck 45 px, closing
    # radius 3 px) closed the grid into one region; the plants' own scale keeps each, whole and windowed
    from napari_gardenseg import _vegetation_windows
    from napari_gardenseg._image_source import ImageSource
    from napari_gardenseg._options import SegmentOptions
    from napari_gardenseg._plant_pixels import vegetation_stage

    shape = (1500, 1500)
    rgb = np.broadcast_to(SOIL, shape + (3,)).copy()
    yy, xx = np.mgrid[:12, :12]
    seedling = (yy - 5.5) ** 2 + (xx - 5.5) ** 2 <= 9
    for cy in range(100, 340, 12):
        for cx in range(100, 340, 12):
            rgb[cy : cy + 12, cx : cx + 12][seedling] = LEAF
    source = ImageSource((rgb * 255).round().astype(np.uint8))
    empty = Instances.empty(shape)
    monkeypatch.setattr(_vegetation_windows, "BLOCK", 512)
    for windowed in (False, True):
        out, info = vegetation_stage(
            empty, source, SegmentOptions(vegetation="on", score_threshold=0.05), windowed=windowed
        )
        assert info["applied"] and len(out) == 400
        assert sorted(set(out.sources)) == ["colour"]


def test_one_big_plant_the_network_missed_is_a_plant_not_ground_cover():
    # a close-up of one plant of a species the model does not know: a third of the frame, soil all
    # round, no detection in it; the lawn rule's "8 x the largest instance in it" was 8 x 0
    from napari_gardenseg._plant_pixels import GROUND_COVER

    shape = (200, 200)
    rgb, truth = _photo([(100, 100, 65)], shape=shape)
    out = follow_vegetation(Instances.empty(shape), vegetation_map(rgb))
    assert len(out) == 1 and out.sources[0] == "colour" and out.meta[GROUND_COVER] == 0.0
    assert _iou(paint_image(out) == 1, truth == 1) > 0.9
    # the same region running past the frame's edge is ground cover, as it was
    rgb[:, :80] = LEAF
    out = follow_vegetation(Instances.empty(shape), vegetation_map(rgb))
    assert len(out) == 0 and out.meta[GROUND_COVER] > 0.4


@pytest.mark.parametrize("share", [80, 100])
def test_a_brick_path_beside_the_bed_leaves_the_plants_their_own_class(share):
    # Otsu's two classes split a brick path from soil and plants together, whose class was then "not
    # green" (or soil was plant colour): the plants are the upper of three classes, soil between
    leaf = (0.30, 0.45, 0.22)  # field foliage, less saturated than LEAF
    rgb, truth = _photo(
        [(40, 140, 18), (100, 160, 22), (70, 210, 16)], shape=(160, 240), colours=dict.fromkeys((1, 2, 3), leaf)
    )
    brick = np.asarray((0.65, 0.27, 0.22), np.float32) + np.random.default_rng(1).normal(0, 0.02, (160, share, 3))
    rgb[:, :share] = np.clip(brick, 0, 1)
    vmap = vegetation_map(rgb)
    assert vmap.informative, vmap.reason
    assert _iou(vmap.plants, truth > 0) > 0.95


def test_red_plants_that_set_the_lower_class_are_not_ranked_below_green_weeds():
    # a bed of red lettuce with a few green weeds: the split is moved above the red class to the weeds,
    # and the network's confident finds, off plant colour, are the red plants, not soil clods
    from napari_gardenseg._image_source import ImageSource
    from napari_gardenseg._options import SegmentOptions
    from napari_gardenseg._plant_pixels import vegetation_stage

    shape = (240, 320)
    rng = np.random.default_rng(3)
    lettuce = [(50, 50, 32), (50, 160, 32), (50, 270, 32), (180, 50, 32), (180, 160, 32), (180, 270, 32)]
    weeds = [(int(y), int(x), 4) for y, x in zip(rng.integers(112, 120, 12), np.linspace(10, 310, 12))]
    red = dict.fromkeys(range(1, 7), (0.55, 0.15, 0.25))
    rgb, truth = _photo(lettuce + weeds, shape=shape, colours={**red, **dict.fromkeys(range(7, 19), (0.25, 0.5, 0.15))})
    found = _instances([(truth == k) * 0.9 for k in range(1, 7)], [0.9] * 6, shape)
    source = ImageSource((rgb * 255).round().astype(np.uint8))
    for mode in ("auto", "on"):
        out, info = vegetation_stage(found, source, SegmentOptions(vegetation=mode, score_threshold=0.05))
        assert info["applied"], info["reason"]
        colour = [i for i in range(len(out)) if out.sources[i] == "colour"]
        model = [i for i in range(len(out)) if out.sources[i] == "model"]
        assert len(model) == 6 and len(colour) >= 8  # the weeds are found by colour
        assert out.scores[model].min() > out.scores[colour].max()


def test_the_plant_scale_of_a_big_photo_of_thin_leaves_is_read_at_full_resolution():
    # tufts of one-pixel blades in a 4 MP photo: every other pixel of the overview samples them into
    # dots that do not connect, so their components looked a fiftieth of their size and the closing
    # and speck size fell to the floor; a full-resolution window sees the tufts
    from skimage.draw import line

    from napari_gardenseg._image_source import ImageSource
    from napari_gardenseg._plant_pixels import _central_window, plant_scale
    from napari_gardenseg._vegetation import colour_classes, sample_step, typical_area

    shape = (2000, 2000)
    rng = np.random.default_rng(3)
    blades = np.zeros(shape, bool)
    for cy in range(100, 2000, 200):
        for cx in range(100, 2000, 200):
            for _ in range(12):
                a, length = rng.uniform(0, 2 * np.pi), rng.uniform(40, 90)
                blades[line(cy, cx, int(cy + length * np.sin(a)), int(cx + length * np.cos(a)))] = True
    rgb = np.empty((*shape, 3), np.uint8)
    rgb[...] = (115, 84, 56)
    rgb[blades] = (64, 153, 51)
    source = ImageSource(rgb)
    step = sample_step(shape)
    overview = source.overview(step)
    classes = colour_classes(overview, step=step)
    overview_plants = classes.map(overview).probability > 0.5
    truth = typical_area(blades)
    assert step == 2 and typical_area(overview_plants, step) < 0.1 * truth  # what the overview alone says
    centre = source.read(_central_window(*shape, 1024))
    assert 0.7 * truth < plant_scale(classes, overview_plants, step, centre) <= truth
    # a centre without plant colour leaves the overview's figure
    assert plant_scale(
        classes, overview_plants, step, np.broadcast_to(np.float32((115, 84, 56)) / 255, (64, 64, 3))
    ) == typical_area(overview_plants, step)
