"""The vegetation stage window by window, for runs that never hold the whole image.

``segment_to_zarr`` (and so ``segment_files`` on big inputs, and napari's
planes too big for memory), a lazy image segmented in tiles, and images over
:data:`~napari_gardenseg._plant_pixels.VEGETATION_MAX_PIXELS` run the stage
the way the network runs on tiles:

* the plant/background colour classes are decided once, on a strided
  overview of the image (:class:`~napari_gardenseg._vegetation.ColourClasses`:
  the same pixels a whole-image run decides on), so every window shares one
  threshold;
* the image is cut into cores of :data:`BLOCK` pixels. An instance belongs to
  the core holding the centre of its mask's box, and a core's window is the
  core grown by a margin wider than the plants the network found
  (:func:`margin_for`) and by the boxes of the instances it owns, so each is
  seen whole by its owner;
* in each window :func:`~napari_gardenseg._plant_pixels.follow_vegetation`
  runs on every instance that meets the window (cut to it: the neighbours
  compete for pixels as in the whole image) and the window keeps the model
  instances it owns and the colour-only instances whose box centre lies in
  its core.

The closing radius and speck size follow the image's data (its extent inside a
nodata border, from the overview), as in a whole-image run; the statistics
relative to the photo's plants (a typical component, ground cover's share)
are the window's. An image that fits in one core gets exactly the
whole-image stage. Memory: the stage's maps for one window at a time.
"""

from __future__ import annotations

import numpy as np

from ._cancel import check
from ._instances import Instances, paint_image
from ._vegetation import ColourClasses

__all__ = ["follow_in_windows", "plan_windows", "margin_for", "BLOCK"]

# Side (pixels) of a window's core (a row's or column's last core is under 1.5 of them): the stage's
# maps of the largest window, such a core plus MAX_MARGIN on each side (about 26 MP), stay under a
# gigabyte.
BLOCK = 2048
# The margin around a core: MARGIN_SIDES times the box side of the larger plants found, within
# these bounds. Windows are cores plus margins, so the margin is what the windows cost over the image.
MARGIN_SIDES = 1.0
MIN_MARGIN = 128
MAX_MARGIN = 1024


def margin_for(found: Instances) -> int:
    """Pixels added around each core: :data:`MARGIN_SIDES` times the 90th percentile of the instances' longer box side,
    within :data:`MIN_MARGIN` .. :data:`MAX_MARGIN`, so a plant beside a core's edge is seen whole."""
    if not len(found):
        return MIN_MARGIN
    e = found.extents()
    side = np.maximum(e[:, 2] - e[:, 0], e[:, 3] - e[:, 1])
    return int(np.clip(MARGIN_SIDES * np.percentile(side, 90), MIN_MARGIN, MAX_MARGIN))


def _centred_in(core, e: np.ndarray) -> np.ndarray:
    """bool (N,): whether the box centre of each (y0, x0, y1, x1) row of ``e`` lies in ``core``."""
    cy, cx = (e[:, 0] + e[:, 2]) // 2, (e[:, 1] + e[:, 3]) // 2
    return (cy >= core[0]) & (cy < core[2]) & (cx >= core[1]) & (cx < core[3])


def _core_edges(n: int, block: int) -> list[int]:
    """Edges of the cores along a side of ``n`` pixels: every ``block``, a remainder under half a
    block joined to the core before it (a sliver's window would judge its plants on a few pixels)."""
    edges = list(range(0, n, block)) + [n]
    if len(edges) > 2 and edges[-1] - edges[-2] < block // 2:
        del edges[-2]
    return edges


def plan_windows(shape, found: Instances, block: int = BLOCK) -> list[tuple[tuple, tuple, np.ndarray]]:
    """(core, window, owned) per core of ``block`` pixels (the last of a row or column up to 1.5
    blocks) covering an image of ``shape`` (H, W).

    ``core`` and ``window`` are (y0, x0, y1, x1); ``owned``: indices of the
    instances of ``found`` whose mask box centre lies in the core. The window is
    the core grown by :func:`margin_for` and by the owned instances' boxes,
    clipped to the image.
    """
    h, w = shape
    margin = margin_for(found)
    e = found.extents()
    plans = []
    rows, cols = _core_edges(h, block), _core_edges(w, block)
    for y0, y1 in zip(rows[:-1], rows[1:]):
        for x0, x1 in zip(cols[:-1], cols[1:]):
            core = (y0, x0, y1, x1)
            owned = np.flatnonzero(_centred_in(core, e))
            win = [
                max(core[0] - margin, 0),
                max(core[1] - margin, 0),
                min(core[2] + margin, h),
                min(core[3] + margin, w),
            ]
            if owned.size:
                win = [
                    min(win[0], int(e[owned, 0].min())),
                    min(win[1], int(e[owned, 1].min())),
                    max(win[2], int(e[owned, 2].max())),
                    max(win[3], int(e[owned, 3].max())),
                ]
            plans.append((core, tuple(win), owned))
    return plans


def follow_in_windows(
    found: Instances,
    source,
    classes: ColourClasses,
    mask_threshold: float = 0.5,
    *,
    data_shape=None,
    score_threshold: float = 0.0,
    block: int | None = None,
    cancel=None,
    progress=None,
) -> tuple[Instances, float, int]:
    """``found`` made to follow plant colour window by window; the network's coverage of the plants; the window count.

    ``source``: an :class:`~napari_gardenseg._io.ImageSource` (read one window
    at a time); ``classes``: the image's colour classes; ``block``: the
    cores' side (None: :data:`BLOCK`); ``data_shape``: (h, w) of the image's data inside a nodata
    border (None: the image's shape), which sets the closing radius and speck size. Returns the new
    :class:`Instances` (best score first, as
    :func:`~napari_gardenseg._plant_pixels.follow_vegetation` returns them),
    the share (0..1) of the plant-coloured pixels inside detections scoring at
    least ``_plant_pixels.COVERAGE_SCORE`` (1.0 when there are none) summed
    over the cores, and how many windows it took. Raises
    :class:`~napari_gardenseg.Cancelled` when ``cancel`` is set.
    """
    from ._plant_pixels import COVERAGE_SCORE, GROUND_COVER, follow_vegetation

    report = progress or (lambda f, m: None)
    h, w = source.shape
    plans = plan_windows((h, w), found, BLOCK if block is None else block)
    parts = []
    plant_pixels = covered = 0
    ground = 0.0  # pixels of ground cover: each window's share of it, over its core
    for k, (core, win, owned) in enumerate(plans):
        check(cancel, "plant pixels by colour")
        report(k / len(plans), f"plant pixels by colour, window {k + 1} of {len(plans)}")
        y0, x0, y1, x1 = win
        near = found.overlapping(win)
        local = found.cut(near, win)
        vmap = classes.map(source.read(win), image_shape=data_shape or (h, w))
        inner = (slice(core[0] - y0, core[2] - y0), slice(core[1] - x0, core[3] - x0))
        plants = vmap.plants[inner]
        plant_pixels += int(plants.sum())
        sure = np.flatnonzero(local.scores >= COVERAGE_SCORE)
        if sure.size and plants.any():
            covered += int((paint_image(local.take(sure), mask_threshold)[inner][plants] > 0).sum())
        out, origin = follow_vegetation(
            local,
            vmap,
            mask_threshold,
            score_threshold=score_threshold,
            return_origins=True,
        )
        ground += out.meta.get(GROUND_COVER, 0.0) * (core[2] - core[0]) * (core[3] - core[1])
        # colour-only instances: by their box centre; the network's: by their owner
        keep = _centred_in(core, out.extents() + np.array([y0, x0, y0, x0]))
        from_model = origin >= 0
        keep[from_model] = np.isin(near, owned)[origin[from_model]]
        parts.append(out.take(np.flatnonzero(keep)).moved(y0, x0, (h, w)))
    merged = Instances.concat(parts, (h, w))
    merged.meta = {**found.meta, GROUND_COVER: round(ground / (h * w), 4)}
    if not len(merged):
        merged.sources = np.zeros(0, object)
    coverage = covered / plant_pixels if plant_pixels else 1.0
    return merged.take(np.argsort(-merged.scores, kind="stable")), float(coverage), len(plans)
