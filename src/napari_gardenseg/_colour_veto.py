"""Residue colours the photo's own plants do not have: a veto learned from the network's confident detections.

Excess green calls straw, hay and pale mulch plant-coloured: their chromatic
green lies at or above a clean photo's Otsu threshold, so the plant map takes
them in and a seed's claim runs along the strands (docs/quality.md, "What is
in the photo"). A fixed residue rule (ExG - ExR below a bound, Meyer & Neto
2008) also cuts olive and yellowish leaves and splits an algae-tinted soil.
This learns the plants' colours from the photo itself instead:

1. the plant-coloured pixels inside the network's confident detections are the
   photo's plants; those outside every detection are plants it missed and
   whatever else passed the threshold;
2. both are counted on a grid of chromaticity bins (r, g = R/(R+G+B), G/(R+G+B):
   colour without brightness, so shade does not move a leaf to another bin),
   smoothed by one bin;
3. a bin is vetoed where its share of the outside pixels is more than
   :data:`VETO_RATIO` times its share of the inside ones: a colour common off
   the plants and rare on them. Never vetoed: a bin whose green exceeds its red
   by :data:`GREEN_MARGIN`, and one at least as green as the detections' least
   green tenth (:data:`GREEN_QUANTILE`): a missed plant of another species is
   greener than straw.

Nothing is learned (no veto) from fewer than :data:`MIN_PIXELS` pixels on
either side, nor for a noisy photo whose colour index the stage smooths
(:func:`learn_residue_veto`). :meth:`.ColourClasses.map` gives vetoed pixels probability 0, in
whole images and in every window alike.
"""

from __future__ import annotations

import numpy as np

__all__ = ["chromaticity_bins", "residue_veto", "learn_residue_veto", "on_grid", "on_overview", "VETO_BINS"]

# chromaticity bins per axis over 0..1
VETO_BINS = 32
# a colour is residue where its share of the plant-coloured pixels off the detections is this many
# times its share on them (measured on the held-out photos: 4 left most straw in, 2 cut plants of
# species the network missed)
VETO_RATIO = 3.0
# bins whose green chromaticity exceeds their red by this much are foliage, never vetoed
GREEN_MARGIN = 0.09
# nor bins as green as this quantile of the detected plant pixels' green or greener
GREEN_QUANTILE = 0.1
# the fewest pixels (of the overview the colour classes are decided on) inside and outside the
# detections that a veto is learned from
MIN_PIXELS = 300
# the smoothed shares below this are empty bins, not evidence
_EMPTY = 1e-4


def chromaticity_bins(rgb: np.ndarray) -> np.ndarray:
    """uint16 (h, w): each pixel's chromaticity bin ``r * VETO_BINS + g`` of float RGB (h, w, 3)
    ``rgb``, where r and g (0..VETO_BINS-1) bin the chromatic coordinates R/(R+G+B) and G/(R+G+B);
    black is bin 0. A few bytes per pixel: it runs on every band and window of the image."""
    # not the colour indices' damped coordinates (._vegetation._chromatic_sum, R+G+B plus a constant):
    # they move dark leaves and straw towards bin 0, where straw left the veto (measured: docs/quality.md)
    rgb = np.asarray(rgb, np.float32)
    total = rgb.sum(axis=-1)
    total += np.float32(1e-6)
    part = rgb[..., 0] / total
    part *= VETO_BINS
    np.minimum(part, VETO_BINS - 1, out=part)
    out = part.astype(np.uint16)
    out *= VETO_BINS
    np.divide(rgb[..., 1], total, out=part)
    part *= VETO_BINS
    np.minimum(part, VETO_BINS - 1, out=part)
    out += part.astype(np.uint16)
    return out


def residue_veto(
    bins: np.ndarray, plant_coloured: np.ndarray, inside: np.ndarray, outside: np.ndarray
) -> np.ndarray | None:
    """bool (VETO_BINS, VETO_BINS) over :func:`chromaticity_bins` (r, g): the residue colours of one photo.

    ``bins``: :func:`chromaticity_bins` of the stage's overview; ``plant_coloured``,
    ``inside`` (on the confident detections), ``outside`` (off every detection): bool
    (h, w). See the module docstring. None where there is too little to learn
    from or nothing is vetoed.
    """
    from scipy import ndimage

    on, off = plant_coloured & inside, plant_coloured & outside
    n_on, n_off = int(on.sum()), int(off.sum())
    if n_on < MIN_PIXELS or n_off < MIN_PIXELS:
        return None
    shares = []
    for where, n in ((on, n_on), (off, n_off)):
        counts = np.bincount(bins[where], minlength=VETO_BINS * VETO_BINS).reshape(VETO_BINS, VETO_BINS)
        shares.append(ndimage.gaussian_filter(counts.astype(np.float64), 1.0) / n)
    share_on, share_off = shares
    veto = share_off > VETO_RATIO * share_on + _EMPTY
    rr, gg = np.meshgrid(np.arange(VETO_BINS), np.arange(VETO_BINS), indexing="ij")
    # bin units: the margin is GREEN_MARGIN give or take a bin's width (1/VETO_BINS)
    veto &= (gg - rr) < GREEN_MARGIN * VETO_BINS
    veto &= gg < np.quantile(bins[on] % VETO_BINS, GREEN_QUANTILE)
    if not veto.any():
        return None
    veto.flags.writeable = False  # held by a frozen ColourClasses
    return veto


def on_grid(found, i: int, step: int, shape: tuple[int, int], mask_threshold: float):
    """(part, oy, ox): instance ``i`` of ``found`` (its mask above ``mask_threshold``, bool) sampled at
    every ``step``-th pixel of the image, and where its first row and column lie on that grid of
    ``shape`` (:meth:`~napari_gardenseg._image_source.ImageSource.overview`'s); ``part`` is cut to the grid
    (empty when the instance lies outside it)."""
    m = found.masks[i]
    y0, x0 = (int(v) for v in found.offsets[i])
    # the mask's first row and column in the image and on the grid (a mask may start above or
    # left of the image, as paint allows)
    ya, xa = max(y0, 0), max(x0, 0)
    ya, xa = ya + (-ya) % step, xa + (-xa) % step
    part = m[ya - y0 :: step, xa - x0 :: step]
    part = part if part.dtype == bool else part > mask_threshold
    oy, ox = ya // step, xa // step
    hh, ww = max(min(part.shape[0], shape[0] - oy), 0), max(min(part.shape[1], shape[1] - ox), 0)
    return part[:hh, :ww], oy, ox


def on_overview(found, idx, step: int, shape: tuple[int, int], mask_threshold: float) -> np.ndarray:
    """bool ``shape``: the union of ``found``'s instances ``idx`` (masks above ``mask_threshold``)
    sampled at every ``step``-th pixel of the image along both axes (:func:`on_grid`). No full-size map."""
    out = np.zeros(shape, bool)
    for i in idx:
        part, oy, ox = on_grid(found, i, step, shape, mask_threshold)
        out[oy : oy + part.shape[0], ox : ox + part.shape[1]] |= part
    return out


def learn_residue_veto(found, overview: np.ndarray, classes, step: int, mask_threshold: float, min_score: float):
    """(veto, share): :func:`residue_veto` of a photo from its ``overview`` (float RGB, every
    ``step``-th pixel), its colour ``classes`` (:class:`~._vegetation.ColourClasses`) and the
    network's instances ``found``, those scoring ``min_score`` or more inside; and the share
    (0..1) of the overview's plant-coloured pixels it vetoes. (None, 0.0) without a veto, and for a
    noisy photo whose index the classes smooth (``classes.smooth``): a veto by each pixel's own
    colour would punch the sensor noise back into the smoothed map. Nodata (pure black or white) is
    neither plant nor residue."""
    from scipy import ndimage

    from ._vegetation import colour_index, is_nodata

    shape = overview.shape[:2]
    if not len(found) or min(shape) < 3 or classes.smooth:
        return None, 0.0
    plant = colour_index(overview, classes.index) > classes.threshold
    plant &= ~is_nodata(overview)
    inside = on_overview(found, np.flatnonzero(found.scores >= min_score), step, shape, mask_threshold)
    # off every detection by two grid pixels: a detection's fading rim is neither plant nor residue
    near = ndimage.binary_dilation(on_overview(found, range(len(found)), step, shape, mask_threshold), iterations=2)
    bins = chromaticity_bins(overview)
    veto = residue_veto(bins, plant, inside, ~near)
    if veto is None:
        return None, 0.0
    return veto, float(veto.ravel()[bins[plant]].mean())
