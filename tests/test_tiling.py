"""Tiled inference: tile plans, exact merging across tiles, tiled == whole, lazy sources, zarr output."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

import napari_gardenseg._forward as _forward
from napari_gardenseg import segment
from napari_gardenseg._instances import Instances, paint
from napari_gardenseg._models import load_model
from napari_gardenseg._tiling import Tile, merge_tiles, plan_tiles
from napari_gardenseg.synthetic import garden_scene

# ------------------------------------------------------------------ helpers


def convex_scene(shape=(600, 700), seed=0) -> np.ndarray:
    """A label image of discs, ellipses and long bars, touching, many across tile borders and corners."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    labels = np.zeros(shape, np.int32)
    n = 0
    # bars through the tile borders (long, thick: each crosses several tiles)
    for y0, x0, y1, x1 in [(218, 20, 218, 680), (260, 255, 580, 255), (380, 300, 560, 640)]:
        n += 1
        d = np.abs((yy - y0) * (x1 - x0) - (xx - x0) * (y1 - y0)) / np.hypot(y1 - y0, x1 - x0)
        t = ((yy - y0) * (y1 - y0) + (xx - x0) * (x1 - x0)) / ((y1 - y0) ** 2 + (x1 - x0) ** 2)
        labels[(d < 14) & (t >= 0) & (t <= 1) & (labels == 0)] = n
    for _ in range(60):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(8, 60), rng.uniform(8, 60)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        free = inside & (labels == 0)
        if free.sum() < 0.9 * inside.sum() or free.sum() < 30:
            continue  # keep objects convex: no big bites taken by earlier ones
        n += 1
        labels[free] = n
    return labels


def stub_predictor(truth: np.ndarray):
    """A stand-in for the network: its detections in a region are the connected components of ``truth`` there."""

    def predict(
        model,
        rgb,
        *,
        scale=None,
        offset=(0, 0),
        image_shape=None,
        cancel=None,
        min_score=0.0,
        classes=None,
        region_shape=None,
    ):
        h, w = rgb.shape[:2] if region_shape is None else region_shape
        y0, x0 = offset
        region = truth[y0 : y0 + h, x0 : x0 + w]
        masks, offsets, scores, boxes = [], [], [], []
        for lab in np.unique(region[region > 0]):
            comps, k = ndimage.label(region == lab)
            for c, sl in enumerate(ndimage.find_objects(comps), start=1):
                masks.append((comps[sl] == c).astype(np.float32))
                offsets.append((y0 + sl[0].start, x0 + sl[1].start))
                scores.append(0.5 + 0.4 * ((lab * 7919) % 97) / 97)  # distinct per object, same in every tile
                boxes.append((x0 + sl[1].start, y0 + sl[0].start, x0 + sl[1].stop, y0 + sl[0].stop))
        return Instances(
            masks,
            np.reshape(offsets, (-1, 2)),
            scores,
            np.ones(len(masks)),
            np.reshape(boxes, (-1, 4)),
            image_shape or (h, w),
        )

    return predict


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when the two label images are the same up to renumbering."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[a > 0]]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def match_f1(a: np.ndarray, b: np.ndarray, thr=0.5):
    """F1 of instances matched one to one at IoU >= thr, and the median IoU of the matches."""
    ids_a, ids_b = np.unique(a[a > 0]), np.unique(b[b > 0])
    inter = {}
    both = (a > 0) & (b > 0)
    for p, q in zip(a[both], b[both]):
        inter[(p, q)] = inter.get((p, q), 0) + 1
    area_a = dict(zip(*np.unique(a[a > 0], return_counts=True)))
    area_b = dict(zip(*np.unique(b[b > 0], return_counts=True)))
    ious = sorted(((n / (area_a[p] + area_b[q] - n), p, q) for (p, q), n in inter.items()), reverse=True)
    used_a, used_b, matched = set(), set(), []
    for iou, p, q in ious:
        if iou >= thr and p not in used_a and q not in used_b:
            used_a.add(p), used_b.add(q), matched.append(iou)
    f1 = 2 * len(matched) / max(len(ids_a) + len(ids_b), 1)
    return f1, float(np.median(matched)) if matched else 0.0


# ------------------------------------------------------------------ plans


def test_plan_covers_the_image_with_the_asked_overlap():
    model = load_model("garden", device="cpu")
    tiles, scale = plan_tiles((1000, 1500), 512, 96, 1.0, model)
    assert scale == 1.0 and len(tiles) == 3 * 4
    cover = np.zeros((1000, 1500), int)
    for t in tiles:
        y0, x0, y1, x1 = t.window
        assert (y1 - y0, x1 - x0) == (512, 512)
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1
    ys = sorted({t.window[0] for t in tiles})
    assert min(a + 512 - b for a, b in zip(ys, ys[1:])) >= 96
    # at scale 0.5 a 512 px tile covers 1024 image pixels
    tiles, _ = plan_tiles((1000, 1500), 512, 96, 0.5, model)
    assert max(t.window[2] - t.window[0] for t in tiles) == 1000 and len(tiles) == 2


def test_auto_tiles_only_big_images():
    model = load_model("garden", device="cpu")
    assert plan_tiles((768, 1024), "auto", None, None, model) == (None, None)
    assert plan_tiles((768, 1024), "auto", None, 1.0, model) == (None, 1.0)
    tiles, scale = plan_tiles((6000, 9000), "auto", None, None, model)
    assert scale == 1.0 and len(tiles) > 40  # an orthomosaic is tiled at native pixels, not shrunk
    tiles, scale = plan_tiles((3000, 4000), "auto", None, 1.0, model)
    assert len(tiles) > 4
    # no tiles asked for, but a scale that makes one pass hold a huge image (memory): tiled anyway
    assert plan_tiles((384, 384), None, None, 2.0, model) == (None, 2.0)
    tiles, scale = plan_tiles((384, 384), None, None, 16.0, model)
    assert scale == 16.0 and len(tiles) > 16 and max(t.window[2] - t.window[0] for t in tiles) == 64


def test_a_strip_runs_in_native_tiles_instead_of_shrinking_to_nothing(monkeypatch):
    """A crop-row panorama shrunk to the model's 1024-px input would be ~50 px high: its plants vanish."""
    import napari_gardenseg._tiling as tiling

    model = load_model("garden", device="cpu")
    assert plan_tiles((768, 1024), None, None, None, model) == (None, None)
    assert plan_tiles((128, 2600), None, None, 0.5, model) == (None, 0.5)  # a scale asked for is kept
    # torchvision's own resize would make this one 0 px high
    tiles, scale = plan_tiles((10, 12960), None, None, None, model)
    assert scale == 1.0 and len(tiles) > 10 and {t.window[2] - t.window[0] for t in tiles} == {10}
    assert min(_forward.own_size(model.net, (10, 12960))) == 1
    image, labels, _ = garden_scene(8_000_321, shape=(128, 2600), n_plants=(14, 18))
    tiled = segment(image, model, crf=False, vegetation="off")
    assert tiled.meta["tiles"] > 1 and tiled.meta["scale"] == 1.0
    monkeypatch.setattr(tiling, "_too_thin", lambda model, shape: False)
    shrunk = segment(image, model, crf=False, vegetation="off")
    assert shrunk.meta["tiles"] == 0
    f1_tiled, f1_shrunk = match_f1(labels, tiled.labels)[0], match_f1(labels, shrunk.labels)[0]
    assert f1_tiled >= 0.8 and f1_tiled > f1_shrunk + 0.3, (f1_tiled, f1_shrunk)


def test_a_panorama_shrunk_to_plants_a_few_pixels_across_is_said_to_miss_plants():
    # a phone's panorama of a crop row (here 1:16) is shrunk 8 times for one pass: it found a fifth of
    # the plants that tiles find, in silence (no note, no hint); tiles at native pixels are the remedy
    from napari_gardenseg._batch_file import _file_note
    from napari_gardenseg._hints import shrunk_hint, status_hint

    image = np.concatenate([garden_scene(s, (512, 512))[0] for s in range(16)], axis=1)
    shrunk = segment(image, "garden", crf=False, vegetation="off")
    assert shrunk.meta["tiles"] == 0 and shrunk.meta["shrink"] == 8.0
    said = status_hint([shrunk])
    assert said.startswith("the image was shrunk 8 times to fit the network's input") and said.endswith(
        "plants may be missing; set *tiles* to auto to segment it at its own resolution"
    )
    assert "run again with --tile-size auto" in _file_note(shrunk, 0.05)
    tiled = segment(image, "garden", crf=False, vegetation="off", tile_size="auto")
    assert len(tiled) > 3 * len(shrunk) and shrunk_hint([tiled]) is None  # the advice holds, and is not given again
    # a photo of big plants shrunk as much is not told so: the plants were large enough for the network
    big_plants = np.repeat(np.repeat(image[:, :512], 11, axis=0), 11, axis=1)  # 5632 px: shrunk over 4 times
    close_up = segment(big_plants, "garden", crf=False, vegetation="off")
    assert (
        close_up.meta["tiles"] == 0
        and close_up.meta["shrink"] > 4
        and len(close_up)
        and shrunk_hint([close_up]) is None
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tile_size": 32}, "at least 64"),
        ({"tile_size": "big"}, "tile_size must be"),
        ({"tile_size": 256, "tile_overlap": 200}, "less than half"),
        ({"tile_size": 256, "tile_overlap": -1}, ">= 0"),
        ({"scale": 0}, "scale must be between"),
        ({"scale": "x"}, "scale must be None, 'auto'"),
        # the tile size in use is the model's input (1024 px): an overlap of half of it or more
        ({"tile_size": "auto", "scale": 8.0, "tile_overlap": 1024, "shape": (300, 300, 3)}, r"tile size in use \(1024"),
        ({"tile_overlap": 600, "shape": (20, 3000, 3)}, "tile size in use"),  # a strip: tiled on its own
    ],
)
def test_bad_tiling_arguments_are_named(kwargs, message):
    image = np.zeros(kwargs.pop("shape", (64, 64, 3)), np.uint8)
    with pytest.raises((ValueError, TypeError), match=message):
        segment(image, "garden", crf=False, **kwargs)


# ------------------------------------------------------------------ exact merging


def test_merge_is_exact_with_a_stub_detector(monkeypatch):
    truth = convex_scene()
    monkeypatch.setattr(_forward, "predict_instances", stub_predictor(truth))
    image = np.full((*truth.shape, 3), 90, np.uint8)  # grey: black tiles would be nodata, never run
    res = segment(image, "garden", crf=False, tile_size=256, tile_overlap=64, scale=1.0, score_threshold=0.0)
    assert res.meta["tiles"] == 12 and "nodata_tiles" not in res.meta
    # objects straddle borders and corners: check the scene really makes that case
    windows = res.meta["tile_windows"]
    spans = [
        sum(1 for (y0, x0, y1, x1) in windows if (truth[y0:y1, x0:x1] == lab).any())
        for lab in range(1, truth.max() + 1)
    ]
    assert max(spans) >= 4 and sum(s >= 2 for s in spans) >= 10
    assert len(res) == truth.max()
    assert same_partition(res.labels, truth), "an object was split at a seam or two were merged"


@pytest.mark.parametrize("nodata", [0, 255])
def test_tiles_cover_the_data_not_its_nodata_border(monkeypatch, nodata):
    # an orthomosaic whose survey outline is a diamond inside a black (or white) nodata border: the
    # tiles cover the outline's box, and the box's corners of pure nodata are not given to the network
    from skimage import measure

    yy, xx = np.mgrid[:600, :700]
    diamond = np.abs(yy - 300) + np.abs(xx - 350) < 200
    truth = convex_scene((600, 700), seed=3)
    truth[~diamond] = 0
    truth = measure.label(truth, background=0)  # objects cut by the outline: one object per piece
    image = np.full((*truth.shape, 3), nodata, np.uint8)
    image[diamond] = (110, 90, 60)
    calls = []
    stub = stub_predictor(truth)

    def counting(model, rgb, **kw):
        calls.append(kw["offset"])
        return stub(model, rgb, **kw)

    monkeypatch.setattr(_forward, "predict_instances", counting)
    res = segment(image, "garden", crf=False, tile_size=64, tile_overlap=16, scale=1.0, score_threshold=0.0)
    assert res.meta["data_window"] == [101, 151, 500, 550]  # the outline's box
    windows = res.meta["tile_windows"]
    assert all(101 <= w[0] and 151 <= w[1] and w[2] <= 500 and w[3] <= 550 for w in windows)
    with_data = [w for w in windows if diamond[w[0] : w[2], w[1] : w[3]].any()]
    assert 0 < len(with_data) < len(windows)
    assert res.meta["nodata_tiles"] == len(windows) - len(with_data)
    assert sorted(calls) == sorted(w[:2] for w in with_data)
    assert same_partition(res.labels, truth), "tiling the data alone lost or merged an object"
    # a black-and-white picture (shapes of pure white on black) is no frame: every tile with shapes is seen
    calls.clear()
    drawing = np.where((truth > 0)[..., None], 255, 0).astype(np.uint8)
    res = segment(drawing, "garden", crf=False, tile_size=64, tile_overlap=16, scale=1.0, score_threshold=0.0)
    assert "data_window" not in res.meta
    windows = res.meta["tile_windows"]
    mixed = [w for w in windows if np.unique(drawing[w[0] : w[2], w[1] : w[3]]).size > 1]
    assert mixed and sorted(calls) == sorted(w[:2] for w in mixed)
    assert same_partition(res.labels, truth)


def test_merge_keeps_touching_objects_apart():
    # two touching squares seen by two tiles each: four pieces, two objects
    truth = np.zeros((100, 200), np.int32)
    truth[30:70, 60:100] = 1
    truth[30:70, 100:140] = 2
    tiles = [Tile(0, (0, 0, 100, 120)), Tile(1, (0, 80, 100, 200))]
    predict = stub_predictor(truth)
    per_tile = [
        predict(None, np.zeros((y1 - y0, x1 - x0, 3)), offset=(y0, x0), image_shape=truth.shape)
        for (y0, x0, y1, x1) in (t.window for t in tiles)
    ]
    assert [len(p) for p in per_tile] == [2, 2]
    merged = merge_tiles(per_tile, tiles)
    assert len(merged) == 2
    assert same_partition(paint(merged), truth)


def test_a_cut_piece_over_two_touching_plants_does_not_chain_them_into_one():
    # tile A sees a rosette (x 40..90) and a flowering plant (x 55..140) that overlap; tile B (from
    # x 50) sees the whole flowering plant and the rosette cut at its border, which lies mostly
    # over both of tile A's detections: it belongs to the rosette, never joins the two
    from napari_gardenseg._instances import Instances

    shape = (100, 200)

    def detections(boxes_and_classes, window):
        masks, offsets, boxes, classes = [], [], [], []
        for (x0, x1), cls in boxes_and_classes:
            masks.append(np.ones((50, x1 - x0), np.float32))
            offsets.append((10, x0))
            boxes.append((x0, 10, x1, 60))
            classes.append(cls)
        n = len(masks)
        return Instances(
            masks, np.array(offsets), np.linspace(0.9, 0.6, n), np.array(classes), np.array(boxes, float), shape
        )

    tiles = [Tile(0, (0, 0, 100, 150)), Tile(1, (0, 50, 100, 200))]
    per_tile = [
        detections([((40, 90), 2), ((55, 140), 1)], tiles[0].window),  # rosette, flowering
        detections([((55, 180), 1), ((50, 88), 2)], tiles[1].window),  # flowering, the rosette cut at x 50
    ]
    merged = merge_tiles(per_tile, tiles)
    assert len(merged) == 2 and sorted(merged.class_ids.tolist()) == [1, 2]


# ------------------------------------------------------------------ the real model


@pytest.fixture(scope="module")
def big_scene():
    image, labels, _ = garden_scene(9_000_321, shape=(768, 1024), n_plants=(18, 24))
    return image, labels


def test_tiled_agrees_with_whole_on_the_garden_model(big_scene):
    # The network itself is not shift-invariant: the same scene moved by 16 px changes some
    # instances too. Tiling shows each tile shifted, so the bar is that variance, measured on
    # the same two crowded scenes (pooled), not a fixed figure tuned to one model.
    pooled = {"whole": [], "tiled": [], "cut": [], "shifted": []}
    for k, seed in enumerate((9_000_321, 9_000_322)):
        image = big_scene[0] if k == 0 else garden_scene(seed, shape=(768, 1024), n_plants=(18, 24))[0]
        whole = segment(image, "garden", crf=False, scale=1.0)
        tiled = segment(image, "garden", crf=False, scale=1.0, tile_size=512, tile_overlap=128)
        shifted = segment(np.ascontiguousarray(image[16:, 16:]), "garden", crf=False, scale=1.0)
        assert tiled.meta["tiles"] == 6
        assert len(whole) >= 10, "the bundled model should find the plants of a crowded garden scene"
        ids = np.unique(tiled.labels[tiled.labels > 0])
        assert np.array_equal(ids, np.arange(1, len(tiled) + 1)), "ids are unique and consecutive over the image"
        for key, labels in (
            ("whole", whole.labels),
            ("tiled", tiled.labels),
            ("cut", whole.labels[16:, 16:]),
            ("shifted", shifted.labels),
        ):
            offset = sum(int(p.max()) for p in pooled[key])
            pooled[key].append(np.where(labels > 0, labels + offset, 0))
    f1, med = match_f1(np.concatenate(pooled["whole"]), np.concatenate(pooled["tiled"]))
    f1_shift, _ = match_f1(np.concatenate(pooled["cut"]), np.concatenate(pooled["shifted"]))
    assert f1 >= 0.9 and med >= 0.9, (f1, med)
    assert f1 >= f1_shift - 0.03, f"tiling disagrees more than a 16 px shift does: F1 {f1:.3f} against {f1_shift:.3f}"


class CountingArray:
    """A lazy array stand-in that records every read."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads = []

    def __getitem__(self, key):
        out = self.data[key]
        self.reads.append(out.shape)
        return out


def test_lazy_source_is_read_tile_by_tile_and_gives_the_same_result(big_scene):
    image, _ = big_scene
    # the network's reads; the colour stage's windows are test_vegetation.py's
    lazy = CountingArray(image)
    res = segment(lazy, "garden", crf=False, scale=1.0, tile_size=384, tile_overlap=128, vegetation="off")
    ref = segment(image, "garden", crf=False, scale=1.0, tile_size=384, tile_overlap=128, vegetation="off")
    full = image.shape[0] * image.shape[1]
    # one overview of at most a million pixels (here the whole image) looks for a nodata border
    overviews = [r for r in lazy.reads if r[0] * r[1] <= 1_000_000 and r[:2] == image.shape[:2]]
    reads = [r for r in lazy.reads if r[:2] != image.shape[:2]]
    assert len(overviews) == 1 and len(reads) == len(lazy.reads) - 1
    assert len(reads) >= res.meta["tiles"]
    assert max(r[0] * r[1] for r in reads) < full / 2, "a read covered most of the image"
    assert len(res) == len(ref) > 0
    np.testing.assert_array_equal(res.labels, ref.labels)


def test_segment_to_zarr_from_a_tiled_bigtiff(tmp_path, big_scene):
    import tifffile
    import zarr

    from napari_gardenseg import segment_to_zarr
    from napari_gardenseg._files import OutputExistsError

    image, _ = big_scene
    path = tmp_path / "mosaic.tif"
    tifffile.imwrite(path, image, bigtiff=True, tile=(256, 256))
    out = tmp_path / "mosaic_labels.zarr"
    res = segment_to_zarr(path, out, "garden", crf=False, scale=1.0, tile_size=384, tile_overlap=128, chunk_size=256)
    ref = segment(image, "garden", crf=False, scale=1.0, tile_size=384, tile_overlap=128)
    stored = zarr.open_group(str(out), mode="r")
    assert stored["labels"].chunks == (256, 256)
    assert len(res) == len(ref) > 0
    np.testing.assert_array_equal(stored["labels"][...], ref.labels)
    table = res.table
    np.testing.assert_array_equal(table["area"], ref.table["area"])
    assert stored.attrs["model"] == ref.meta["model"]
    with pytest.raises(OutputExistsError, match="already exists"):
        segment_to_zarr(path, out, "garden", crf=False, scale=1.0, tile_size=384)
    assert len(list(tmp_path.iterdir())) == 2, "no temporary folder is left behind"
    # overwrite replaces a store, never a folder of the user's own files given by mistake
    photos = tmp_path / "field photos"
    photos.mkdir()
    (photos / "IMG_0001.jpg").write_bytes(b"a photo")
    with pytest.raises(OutputExistsError, match="is a folder that is not a zarr store"):
        segment_to_zarr(path, photos, "garden", crf=False, scale=1.0, tile_size=384, overwrite=True)
    assert (photos / "IMG_0001.jpg").read_bytes() == b"a photo"
    # nor an image's store, nor the input itself; its own store it replaces (the old one put aside)
    image_store = zarr.open_array(str(tmp_path / "survey.zarr"), mode="w", shape=image.shape, dtype=image.dtype)
    image_store[...] = image
    for target in (tmp_path / "survey.zarr", tmp_path / "survey.zarr" / "labels.zarr"):
        with pytest.raises(OutputExistsError, match="would replace or write into the input"):
            segment_to_zarr(tmp_path / "survey.zarr", target, "garden", crf=False, scale=1.0, overwrite=True)
    with pytest.raises(OutputExistsError, match="is a zarr store segment_to_zarr did not write"):
        segment_to_zarr(path, tmp_path / "survey.zarr", "garden", crf=False, scale=1.0, overwrite=True)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "survey.zarr"), mode="r")[...], image)
    again = segment_to_zarr(path, out, "garden", crf=False, scale=1.0, tile_size=384, overwrite=True)
    (tmp_path / "empty.zarr").mkdir()  # an empty folder holds nothing to lose
    segment_to_zarr(path, tmp_path / "empty.zarr", "garden", crf=False, scale=1.0, tile_size=384, overwrite=True)
    assert len(again) > 0 and sorted(p.name for p in tmp_path.iterdir()) == [
        "empty.zarr",
        "field photos",
        "mosaic.tif",
        "mosaic_labels.zarr",
        "survey.zarr",
    ]


def test_segment_to_zarr_refuses_a_zip_name_and_says_how_to_make_one(tmp_path):
    """A store named out.zarr.zip was written as a folder of that name, which zarr's ZipStore and
    zip tools cannot open: refused before the run, with how to make the zip."""
    import shutil

    import zarr

    from napari_gardenseg import segment_to_zarr

    photo = np.zeros((64, 64, 3), np.uint8)
    for name, folder in (("out.zarr.zip", "out.zarr"), ("out.ZIP", "out.zarr")):
        with pytest.raises(ValueError, match=rf"named as a zip file.*write it to '.*{folder}', and zip that folder"):
            segment_to_zarr(photo, tmp_path / name, "garden", crf=False)
    assert not list(tmp_path.iterdir())
    # the way the message gives makes a zip that zarr's ZipStore reads
    zarr.create_array(str(tmp_path / "out.zarr"), shape=(4, 4), dtype="int32")[...] = 7
    shutil.make_archive(str(tmp_path / "out.zarr"), "zip", str(tmp_path / "out.zarr"))
    store = zarr.storage.ZipStore(tmp_path / "out.zarr.zip", mode="r")
    assert (zarr.open_array(store, mode="r")[...] == 7).all()
    store.close()


def test_merge_classes_gives_one_class_without_duplicates(big_scene):
    image, _ = big_scene
    res = segment(image, "garden", crf=False, merge_classes=True, score_threshold=0.3)
    assert (
        len(res) > 0 and set(res.class_names) == {"plant"} and set(res.class_ids) == {4}
    )  # "plant": after the model's 3 classes
    per_class = segment(image, "garden", crf=False, score_threshold=0.3)
    assert len(res) <= len(per_class)


def _discs_in(k, size, x_lo, x_hi, shape, rng):
    yy, xx = np.mgrid[:48, :48]
    disc = (((yy - 23.5) ** 2 + (xx - 23.5) ** 2) < 500).astype(np.float32) * 0.9
    offs = [(int(rng.integers(0, size - 48)), int(rng.integers(x_lo, x_hi - 48))) for _ in range(k)]
    boxes = [(x, y, x + 48, y + 48) for y, x in offs]
    return Instances([disc.copy() for _ in offs], offs, np.linspace(0.99, 0.5, k), np.ones(k), boxes, shape)


def test_merging_tiles_takes_the_memory_of_the_masks_not_of_the_overlap_per_instance():
    import tracemalloc

    # two 4096-px tiles (tile_size 1024 at scale 0.25) with 100 seedlings each in their 1024-px overlap
    size, over = 4096, 1024
    shape = (size, 2 * size - over)
    c = size - over // 2
    tiles = [
        Tile(0, (0, 0, size, size), (0, 0, size, c)),
        Tile(1, (0, size - over, size, shape[1]), (0, c, size, shape[1])),
    ]
    rng = np.random.default_rng(0)
    a = _discs_in(100, size, size - over, size, shape, rng)
    b = _discs_in(100, size, size - over, size, shape, rng)
    b.masks[0] = a.masks[0].copy()  # one plant both tiles found: one instance
    b.offsets = b.offsets.copy()
    b.offsets[0] = a.offsets[0]
    tracemalloc.start()
    merged = merge_tiles([a, b], tiles, 0.5)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # a bool window of the shared 4096 x 1024 pixels for each instance would be 4 MiB apiece
    assert peak < 32 * 2**20, peak
    # the plant both tiles found is one instance, whole; the others stay
    same = [k for k in range(len(merged)) if tuple(merged.offsets[k]) == tuple(a.offsets[0])]
    assert len(same) == 1 and merged.masks[same[0]].shape == a.masks[0].shape
    assert 90 < len(merged) < len(a) + len(b)  # each tile keeps what lies in its own core


def test_instance_extents_follow_replaced_masks_and_offsets():
    found = Instances(
        [np.ones((2, 3)), np.ones((4, 5))], [(0, 0), (10, 20)], [0.9, 0.8], [1, 1], np.zeros((2, 4)), (50, 50)
    )
    np.testing.assert_array_equal(found.extents(), [[0, 0, 2, 3], [10, 20, 14, 25]])
    assert found.extents() is found.extents()  # asked once per instance: kept
    found.offsets = found.offsets + 1
    np.testing.assert_array_equal(found.extents()[1], [11, 21, 15, 26])
    found.masks = [np.ones((1, 1))] + found.masks[1:]
    np.testing.assert_array_equal(found.extents()[0], [1, 1, 2, 2])
    np.testing.assert_array_equal(found.take([1]).extents(), [[11, 21, 15, 26]])


def test_a_plant_one_tile_saw_whole_is_kept_when_its_owner_found_nothing_there():
    # the tile whose core holds the plant's centre scored it below the score threshold (dropped
    # before the merge): the neighbour's whole view is all there is. A neighbour's cut piece of a
    # plant still goes to the owner, and two views of one plant still give one instance
    from napari_gardenseg._instances import Instances
    from napari_gardenseg._tiling import Tile, merge_tiles

    shape = (100, 200)
    a = Tile(0, (0, 0, 100, 130), (0, 0, 100, 100))
    b = Tile(1, (0, 80, 100, 200), (0, 100, 100, 200))
    yy, xx = np.mgrid[30:71, 85:126]
    disc = (((yy - 50) ** 2 + (xx - 105) ** 2) <= 14**2).astype(np.float32)  # x 91..119, centre in b's core
    whole_in_a = Instances([disc], [(30, 85)], [0.7], [1], [(91, 36, 120, 65)], shape)
    nothing = Instances.empty(shape)
    assert len(merge_tiles([whole_in_a, nothing], [a, b], 0.5)) == 1
    seen_by_b = Instances([disc * 0.9], [(30, 85)], [0.6], [1], [(91, 36, 120, 65)], shape)
    both = merge_tiles([whole_in_a, seen_by_b], [a, b], 0.5)
    assert len(both) == 1 and float(both.scores[0]) == pytest.approx(0.7)
    cut = disc.copy()
    cut[:, 35:] = 0  # a only saw the part left of x = 120: cut by its edge at 120
    a_cut = Tile(0, (0, 0, 100, 120), (0, 0, 100, 100))
    piece = Instances([cut], [(30, 85)], [0.7], [1], [(91, 36, 120, 65)], shape)
    assert len(merge_tiles([piece, nothing], [a_cut, b], 0.5)) == 0


@pytest.mark.parametrize(
    ("field", "value", "name"),
    [
        ("scores", [0.9, 0.8, 0.7], "scores"),
        ("boxes", np.zeros((1, 4)), "boxes"),
        ("probs", [np.ones((2, 2))], "probs"),
    ],
)
def test_instances_of_mismatched_counts_name_the_field(field, value, name):
    fields = dict(
        masks=[np.ones((2, 2)), np.ones((3, 3))],
        offsets=[[0, 0], [4, 4]],
        scores=[0.9, 0.8],
        class_ids=[1, 1],
        boxes=[[0, 0, 2, 2], [4, 4, 7, 7]],
        shape=(8, 8),
    )
    assert len(Instances(**fields)) == 2
    with pytest.raises(ValueError, match=rf"{name} .*for 2 masks"):
        Instances(**{**fields, field: value})


def test_tiles_without_overlap_are_said_to_cut_plants_on_their_seams():
    # tile_overlap=0 cut plants on the seams into pieces, in silence (SAHI #106 alike); an overlap
    # that rounds to no pixel at the scale run does the same
    from napari_gardenseg._tiling import seam_note

    model = load_model("garden")
    tiles, _ = plan_tiles((256, 256), 128, 0, None, model)
    assert seam_note(tiles).startswith("the 4 tiles do not overlap (a tile overlap of 0")
    assert seam_note(plan_tiles((256, 256), 128, 16, None, model)[0]) is None
    assert seam_note(plan_tiles((100, 100), 128, 0, None, model)[0]) is None  # one tile: no seam
    assert seam_note(plan_tiles((128, 512), 128, 0, None, model)[0]) is not None  # one row, seams across it
    assert seam_note(plan_tiles((1024, 1024), 128, 1, 4.0, model)[0]) is not None  # 1 px at scale 4
    image, _, _ = garden_scene(3, shape=(256, 256))
    with pytest.warns(UserWarning, match="the 4 tiles do not overlap") as caught:
        res = segment(image, model, tile_size=128, tile_overlap=0, scale=1.0, crf=False)
    assert sum("do not overlap" in str(w.message) for w in caught) == 1
    assert res.meta["seam_note"].startswith("the 4 tiles do not overlap")  # kept for the run record
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "seam_note" not in segment(image, model, tile_size=128, scale=1.0, crf=False).meta
