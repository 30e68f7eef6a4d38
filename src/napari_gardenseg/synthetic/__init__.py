"""Procedural top-down garden photos with exact instance labels.

``garden_scene(seed)`` draws a bed of soil, grass, gravel or mulch and places
plants of three kinds on it, the later ones partly covering the earlier ones:

* ``rosette``   - broad leaves radiating from a centre (lettuce, hosta, plantain)
* ``flowering`` - a lumpy leafy mound dotted with flowers of one colour
* ``weed``      - a tuft of thin, curved blades a few pixels wide (grasses, dandelion leaves)

Each plant casts a soft shadow, and every scene has its own light level, colour
cast and brightness gradient. Everything is numpy, deterministic per seed.
``style="photo"`` makes photograph-like scenes (dense plants, soil, a camera).
Seeds from :data:`EVAL_SEED_START` up are for evaluation only: training and
tuning never use them.

A test and script helper, imported by the engine only where ``adapt`` mixes synthetic scenes
into its training, never at start-up:
``_garden`` draws the garden style, ``_photo`` the photo style, ``_common``
holds what both use.
"""

from __future__ import annotations

import numpy as np

from . import _garden, _photo
from ._common import CLASS_NAMES, EVAL_SEED_START, EXTRA_KINDS

__all__ = ["garden_scene", "CLASS_NAMES", "EXTRA_KINDS", "EVAL_SEED_START"]


def garden_scene(
    seed: int, shape=(512, 512), n_plants: tuple[int, int] | None = None, kinds=CLASS_NAMES, style: str = "garden"
):
    """One synthetic garden photo.

    Returns ``(image, labels, classes)``: RGB uint8 (H, W, 3); int32 (H, W)
    instance ids (0 = ground); ``classes`` a dict from each id to its class name
    (one of ``kinds``, a name or names, by default :data:`CLASS_NAMES`; ``"succulent"`` is an
    extra kind the bundled model never saw). Plants overlap, but each keeps at
    least 60% of its area visible so that every label is a recognisable plant.

    ``style="photo"`` draws photograph-like scenes instead (see
    :mod:`napari_gardenseg.synthetic._photo`): dense seedlings, rosettes, grasses and carrot-like plants from
    a few pixels to a large part of the frame, each keeping 40% of its area
    visible, on photographic soil, seen through a simulated camera.

    ``seed``: an int; the same seed (and arguments) draws the same scene.
    ``shape``: (H, W) in pixels; the plants' sizes scale with ``min(H, W) / 512``.
    ``n_plants``: (low, high), the number of plants tried for, both included (fewer
    in a crowded bed, or when slivers are dropped); defaults to (4, 12) for
    ``"garden"`` and (5, 60) for ``"photo"``.

    Raises ValueError for a ``seed`` that is not a whole number from 0, a ``shape``
    that is not two whole numbers from 8, ``n_plants`` that is not two whole
    numbers from 0 in order, a
    ``style`` other than ``"garden"`` and ``"photo"``,
    ``kinds`` of which the photo style draws none (it draws ``"rosette"``,
    ``"flowering"`` and ``"weed"``), or, in the garden style, a kind not in
    :data:`CLASS_NAMES` or :data:`EXTRA_KINDS`.
    """
    if style not in ("garden", "photo"):
        raise ValueError(f"style must be 'garden' or 'photo', got {style!r}")
    from .._options import whole_number

    seed = whole_number("seed", seed, low=0)  # numpy's own error for None or 1.5 names no argument
    shape = _pair("shape", shape, low=8)  # smaller frames hold no plant of the smallest size
    n_plants = None if n_plants is None else _pair("n_plants", n_plants, low=0)
    if n_plants is not None and n_plants[0] > n_plants[1]:
        raise ValueError(f"n_plants must be (low, high) with low <= high, got {n_plants}")
    if isinstance(kinds, str):  # one kind, not its letters
        kinds = (kinds,)
    rng = np.random.default_rng(int(seed))
    if style == "photo":
        return _photo.scene(rng, shape, n_plants or (5, 60), tuple(kinds))
    return _garden.scene(rng, shape, n_plants or (4, 12), kinds)


def _pair(name: str, value, *, low: int) -> tuple[int, int]:
    """``value`` as two whole numbers of at least ``low``; ValueError naming ``name`` otherwise."""
    from .._options import whole_number

    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{name} must be two whole numbers, got {value!r}")
    try:
        return tuple(whole_number(name, v, low=low) for v in value)
    except ValueError:
        raise ValueError(f"{name} must be two whole numbers, at least {low}, got {value!r}") from None
