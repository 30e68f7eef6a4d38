"""The residue veto: colours that pass the plant threshold but that the detected plants lack."""

from __future__ import annotations

import numpy as np
import pytest

from napari_gardenseg._colour_veto import MIN_PIXELS, chromaticity_bins, on_overview, residue_veto
from napari_gardenseg._image_source import ImageSource
from napari_gardenseg._instances import Instances, paint_image
from napari_gardenseg._options import SegmentOptions
from napari_gardenseg._plant_pixels import vegetation_stage

SOIL = np.array([0.45, 0.35, 0.25], np.float32)  # brown, excess green 0
LEAF = np.array([0.30, 0.45, 0.20], np.float32)  # green, excess green 0.42
STRAW = np.array([0.75, 0.75, 0.35], np.float32)  # straw, excess green 0.22: above soil's threshold
BRIGHT_LEAF = np.array([0.20, 0.60, 0.10], np.float32)  # another species, greener than LEAF
# yellow-green: green over red by less than GREEN_MARGIN, but as green as LEAF (the quantile guard alone)
OLIVE = np.array([0.42, 0.50, 0.08], np.float32)


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _scene(straw: bool, missed_colour=None, shape=(200, 300), seed=0):
    """Soil with three detected plants, straw strands across it (``straw``) and a fourth plant no
    detection holds (``missed_colour``); returns (uint8 RGB, true plant labels, straw mask, instances)."""
    rng = np.random.default_rng(seed)
    rgb = np.broadcast_to(SOIL, shape + (3,)).copy()
    labels = np.zeros(shape, np.int32)
    strands = np.zeros(shape, bool)
    if straw:
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        for _ in range(40):  # thin strands over about a third of the ground, plants on top
            y, x, a = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(0, np.pi)
            along = (xx - x) * np.cos(a) + (yy - y) * np.sin(a)
            strands |= (np.abs(-(xx - x) * np.sin(a) + (yy - y) * np.cos(a)) < 1.5) & (np.abs(along) < 60)
        rgb[strands] = STRAW
    discs = [(60, 60, 25), (60, 200, 25), (150, 120, 25)]
    if missed_colour is not None:
        discs.append((150, 250, 22))
    for k, (cy, cx, r) in enumerate(discs, start=1):
        m = _disc(shape, cy, cx, r)
        rgb[m] = missed_colour if k == 4 else LEAF
        labels[m] = k
    strands &= labels == 0
    rgb = np.clip(rgb + rng.normal(0, 0.01, rgb.shape), 0, 1)
    masks = np.stack([(labels == k).astype(np.float32) * 0.95 for k in (1, 2, 3)])
    found = Instances.from_dense(masks, np.array([0.9, 0.85, 0.8], np.float32), np.ones(3), floor=0.0)
    return (rgb * 255).round().astype(np.uint8), labels, strands, found


def _stage(rgb, found):
    return vegetation_stage(found, ImageSource(rgb), SegmentOptions(vegetation="on", score_threshold=0.05))


def test_straw_is_vetoed_and_the_plants_keep_their_pixels(monkeypatch):
    rgb, labels, strands, found = _scene(straw=True)
    out, info = _stage(rgb, found)
    assert info["applied"] and info["vegetation_residue_vetoed"] > 0.3, info
    lab = paint_image(out)
    assert (lab[strands] > 0).mean() < 0.05  # the straw is no plant's, nor a plant of its own
    for k in (1, 2, 3):
        assert ((lab > 0) & (labels == k)).sum() / (labels == k).sum() > 0.95
    # without the veto the straw passes the threshold: strands become plants or join them
    monkeypatch.setattr("napari_gardenseg._colour_veto.learn_residue_veto", lambda *a: (None, 0.0))
    out, info = _stage(rgb, found)
    assert info["vegetation_residue_vetoed"] == 0.0
    assert (paint_image(out)[strands] > 0).mean() > 0.3


@pytest.mark.parametrize("colour", [BRIGHT_LEAF, OLIVE], ids=["bright green", "yellow-green"])
def test_a_missed_plant_greener_than_the_detected_ones_is_never_vetoed(colour):
    """A species the network missed is common off the detections and absent on them, as straw is;
    it is greener than the detected plants' least green tenth, so colour keeps it."""
    rgb, labels, _, found = _scene(straw=False, missed_colour=colour)
    out, info = _stage(rgb, found)
    assert info["applied"] and info["vegetation_residue_vetoed"] == 0.0, info
    lab = paint_image(out)
    missed = labels == 4
    assert (lab[missed] > 0).mean() > 0.95 and np.unique(lab[missed]).size == 1
    assert list(out.sources).count("colour") == 1


def test_nothing_is_learned_from_too_few_pixels():
    rgb = np.broadcast_to(STRAW, (40, 40, 3)).astype(np.float32)
    plant = np.ones((40, 40), bool)
    inside = np.zeros((40, 40), bool)
    inside[:2, : MIN_PIXELS // 2 // 40] = True  # under MIN_PIXELS detected pixels
    assert residue_veto(chromaticity_bins(rgb), plant, inside, ~inside) is None
    inside[:, :20] = True
    rgb[:, :20] = LEAF
    bins = chromaticity_bins(rgb)
    veto = residue_veto(bins, plant, inside, ~inside).ravel()
    assert veto[bins[0, 30]] and not veto[bins[0, 0]]  # straw vetoed, leaf kept


def test_a_noisy_photo_whose_index_is_smoothed_learns_no_veto():
    import dataclasses

    from napari_gardenseg._colour_veto import learn_residue_veto
    from napari_gardenseg._vegetation import colour_classes

    rgb, _, _, found = _scene(straw=True)
    rgb = rgb.astype(np.float32) / 255
    classes = colour_classes(rgb)
    assert learn_residue_veto(found, rgb, classes, 1, 0.5, 0.5)[0] is not None
    smoothed = dataclasses.replace(classes, smooth=2.0)
    assert learn_residue_veto(found, rgb, smoothed, 1, 0.5, 0.5) == (None, 0.0)


@pytest.mark.parametrize("step", [1, 3, 4])
def test_the_overview_union_is_the_painted_masks_sampled_on_its_grid(step):
    rng = np.random.default_rng(step)
    shape = (61, 83)
    masks = np.zeros((5,) + shape, np.float32)
    for m in masks:
        y, x = rng.integers(0, 50), rng.integers(0, 70)
        m[y : y + rng.integers(3, 20), x : x + rng.integers(3, 20)] = rng.uniform(0.2, 1.0)
    found = Instances.from_dense(masks, rng.uniform(0.1, 1, 5).astype(np.float32), np.ones(5), floor=0.0)
    # a bool (CRF-refined) mask, and one starting above and left of the image, running past its edge
    found.masks[0] = found.masks[0] > 0.5
    found.masks[1] = np.ones((30, 40), np.float32)
    found.offsets[1] = (-7, -5)
    grid = (len(range(0, shape[0], step)), len(range(0, shape[1], step)))
    expected = (paint_image(found, 0.5) > 0)[::step, ::step]
    np.testing.assert_array_equal(on_overview(found, range(5), step, grid, 0.5), expected)
