import hashlib

import numpy as np
import pytest

from napari_gardenseg.synthetic import CLASS_NAMES, EXTRA_KINDS, garden_scene


def _digest(scene):
    image, labels, classes = scene
    return hashlib.sha256(image.tobytes() + labels.tobytes() + repr(sorted(classes.items())).encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    "kwargs, digest",
    [
        ({"seed": 0}, "7bcc945e2c74795a"),
        ({"seed": 9_000_000}, "5aa3102c1a7eabfd"),
        ({"seed": 7, "shape": (200, 300), "n_plants": (2, 3)}, "c61e2952f80d215c"),
        ({"seed": 3, "kinds": EXTRA_KINDS}, "f2a622a50eb2669d"),
    ],
)
def test_garden_style_scenes_are_unchanged(kwargs, digest):
    # the bundled model's training and evaluation scenes must stay reproducible
    assert _digest(garden_scene(**kwargs)) == digest
    assert _digest(garden_scene(**kwargs, style="garden")) == digest


def _check_labels(image, labels, classes, shape):
    assert image.shape == (*shape, 3) and image.dtype == np.uint8
    assert labels.shape == shape and labels.dtype == np.int32
    ids = sorted(int(v) for v in np.unique(labels) if v > 0)
    assert ids == list(range(1, len(ids) + 1)) == sorted(classes)
    assert set(classes.values()) <= set(CLASS_NAMES)


@pytest.mark.parametrize("seed", [1, 2, 9_000_001])
def test_photo_style_is_deterministic_and_consistent(seed):
    a = garden_scene(seed, style="photo", shape=(192, 256))
    b = garden_scene(seed, style="photo", shape=(192, 256))
    assert _digest(a) == _digest(b)
    _check_labels(*a, (192, 256))
    assert len(a[2]) >= 1
    assert _digest(garden_scene(seed + 10, style="photo", shape=(192, 256))) != _digest(a)


def test_photo_style_is_dense_and_varied():
    scenes = [garden_scene(s, style="photo", shape=(256, 256)) for s in range(12)]
    counts = [len(c) for _, _, c in scenes]
    assert max(counts) >= 15  # dense scenes occur
    kinds = {k for _, _, c in scenes for k in c.values()}
    assert kinds == set(CLASS_NAMES)
    # plants touch or overlap: some instance borders another instance somewhere
    touching = 0
    for _, lab, _ in scenes:
        a, b = lab[:, :-1], lab[:, 1:]
        touching += int(((a > 0) & (b > 0) & (a != b)).sum())
    assert touching > 0
    # sizes span small seedlings to large plants
    areas = np.concatenate([np.bincount(lab.ravel())[1:] for _, lab, _ in scenes])
    areas = areas[areas > 0]
    assert areas.min() < 100 and areas.max() > 1500
    # the scenes differ in colour (camera colour responses and exposure)
    means = np.array([im.reshape(-1, 3).mean(0) for im, _, _ in scenes])
    assert np.ptp(means, axis=0).max() > 40


def test_photo_style_respects_kinds_and_rejects_bad_style():
    _, _, classes = garden_scene(4, style="photo", shape=(160, 160), kinds=("weed",))
    assert set(classes.values()) <= {"weed"} and classes
    assert garden_scene(4, style="photo", shape=(160, 160), kinds="weed")[2] == classes  # one kind, not 'w', 'e'...
    for seed in (None, 1.5, True, -1):
        with pytest.raises(ValueError, match="seed must be a whole number"):
            garden_scene(seed)
    with pytest.raises(ValueError, match="style"):
        garden_scene(1, style="painting")
    with pytest.raises(ValueError, match="kinds"):
        garden_scene(1, style="photo", kinds=EXTRA_KINDS)


def test_garden_style_names_a_kind_it_cannot_draw():
    # a bare KeyError('cactus') before, while the photo style said what it draws
    _, _, classes = garden_scene(4, shape=(160, 160), kinds=EXTRA_KINDS)
    assert set(classes.values()) == set(EXTRA_KINDS)
    with pytest.raises(ValueError, match=r"style='garden' draws the kinds .*'succulent'.*got kinds=\('cactus',\)"):
        garden_scene(1, kinds=["cactus"])


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"n_plants": (5, 2)}, r"n_plants must be \(low, high\) with low <= high, got \(5, 2\)"),
        ({"n_plants": 3}, "n_plants must be two whole numbers, got 3"),
        ({"n_plants": (-3, -1)}, "n_plants must be two whole numbers, at least 0"),
        ({"shape": (0, 0)}, "shape must be two whole numbers, at least 8"),
        ({"shape": (64,)}, "shape must be two whole numbers, got"),
        ({"shape": "x"}, "shape must be two whole numbers, got 'x'"),
    ],
)
def test_a_bad_scene_size_or_plant_count_is_named(bad, match):
    # numpy's "low >= high" or an IndexError named no argument; (-3, -1) plants gave an empty scene
    with pytest.raises(ValueError, match=match):
        garden_scene(1, **bad)


def test_the_smallest_scenes_and_plant_counts_are_drawn():
    for style in ("garden", "photo"):
        assert garden_scene(1, (8, 300), style=style)[0].shape == (8, 300, 3)
        assert garden_scene(1, (64, 64), n_plants=(0, 0), style=style)[1].max() == 0
