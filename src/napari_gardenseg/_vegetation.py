"""Plant pixels from plant colour: colour indices, a per-image threshold, a vegetation probability.

Top-down photos of plants on soil, bark mulch or trays (not straw, whose pale yellow passes for
plant colour) separate plant from
background by colour far more reliably than by shape: the colour indices of
the weed-detection and phenotyping literature do it per pixel.

* excess green, ExG = 2g - r - b on chromatic coordinates r = R/(R+G+B), ...
  (Woebbecke et al. 1995, Trans. ASAE 38(1)); PlantCV and OpenWeedLocator use it.
* excess red, ExR = 1.4r - g (Meyer et al. 1998), and ExG - ExR, whose fixed
  threshold 0 separates plants from soil and residue (Meyer & Neto 2008,
  Comput. Electron. Agric. 63(2)).
* CIVE = 0.441R - 0.811G + 0.385B + 18.78745 on 0..255 values (Kataoka et al.
  2003), negative for vegetation.

The threshold is chosen per image with Otsu's method (Otsu 1979) on the index,
which follows a colour cast or a white-balance shift of the whole photo.
Whether colour is informative at all is decided from the same histogram: the
share of its variance that the two Otsu classes explain (Otsu's separability,
eta) and which side of the threshold is green. Plants that are not green (red
lettuce, purple basil, flowers) are not plant-coloured here: the instance
stage cuts an instance down to green pixels only when at least
``_plant_pixels.MIN_GREEN_SHARE`` of it is green.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

__all__ = [
    "INDICES",
    "VegetationMap",
    "ColourClasses",
    "colour_classes",
    "sample_step",
    "excess_green",
    "excess_green_minus_red",
    "cive",
    "colour_index",
    "otsu_threshold",
    "vegetation_map",
]

INDICES = ("exg", "exg-exr", "cive")

# Chromatic coordinates of near-black pixels are noise: this much is added to
# R+G+B (on 0..1 values, summed over the channels) so dark pixels tend to grey.
_DARK = 0.06


def _chromatic_sum(rgb: np.ndarray, weights) -> np.ndarray:
    """``weights`` (r, g, b) applied to the chromatic coordinates R/T, G/T, B/T (T = R+G+B+_DARK):
    one weighted sum over the channels divided by T, not three image-sized quotients."""
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected a float RGB image of shape (H, W, 3), got shape {rgb.shape}")
    # matrix-vector products over the 3-long last axis (numpy's reductions over it are slow)
    total = rgb @ np.ones(3, np.float32)
    total += np.float32(_DARK)
    out = rgb @ np.asarray(weights, np.float32)
    out /= total
    return out


def excess_green(rgb: np.ndarray) -> np.ndarray:
    """ExG = 2g - r - b on chromatic coordinates (Woebbecke et al. 1995).

    ``rgb``: float (H, W, 3) in 0..1. Returns float32 (H, W), about -1..2;
    green vegetation is high, soil near 0. Near-black pixels tend to 0.
    """
    return _chromatic_sum(rgb, (-1.0, 2.0, -1.0))


def excess_green_minus_red(rgb: np.ndarray) -> np.ndarray:
    """ExG - ExR with ExR = 1.4r - g (Meyer & Neto 2008); float32 (H, W), vegetation above 0."""
    return _chromatic_sum(rgb, (-2.4, 3.0, -1.0))  # (2g - r - b) - (1.4r - g)


def cive(rgb: np.ndarray) -> np.ndarray:
    """Colour index of vegetation extraction (Kataoka et al. 2003), sign flipped so vegetation is high.

    ``rgb`` float (H, W, 3) in 0..1 (the published coefficients are for 0..255,
    applied here to 255 * rgb). Returns float32 (H, W).
    """
    rgb = np.asarray(rgb, dtype=np.float32) * np.float32(255.0)
    return -(0.441 * rgb[..., 0] - 0.811 * rgb[..., 1] + 0.385 * rgb[..., 2] + 18.78745)


def colour_index(rgb: np.ndarray, index: str = "exg") -> np.ndarray:
    """One of :data:`INDICES` ("exg", "exg-exr", "cive"), vegetation high. Raises ValueError for other names."""
    if index == "exg":
        return excess_green(rgb)
    if index == "exg-exr":
        return excess_green_minus_red(rgb)
    if index == "cive":
        return cive(rgb)
    raise ValueError(f"unknown colour index {index!r}: use one of {', '.join(INDICES)}")


def otsu_threshold(values: np.ndarray, bins: int = 256) -> tuple[float, float]:
    """Otsu's threshold of ``values`` (any shape, finite floats) and its separability eta in 0..1.

    eta = between-class variance / total variance (Otsu 1979): near 1 for a
    clearly two-class histogram, near 0 for one class. Computed on a histogram
    of ``bins`` bins between the 0.1 and 99.9 percentiles.
    """
    v = np.asarray(values, dtype=np.float32).ravel()
    if v.size == 0:
        return 0.0, 0.0
    lo, hi = np.percentile(v, [0.1, 99.9])
    if not hi > lo:
        return float(lo), 0.0
    hist, edges = np.histogram(np.clip(v, lo, hi), bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    p = hist.astype(np.float64) / hist.sum()
    w0 = np.cumsum(p)
    m = np.cumsum(p * centres)
    mt = m[-1]
    w1 = 1.0 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mt * w0 - m) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = 0.0
    k = int(np.argmax(between))
    total = float(np.sum(p * (centres - mt) ** 2))
    eta = float(between[k] / total) if total > 0 else 0.0
    return float(edges[k + 1]), eta


# Closing radius of the plant mask, as a fraction of the image's geometric mean side.
CLOSING = 0.002
# ...and never over this share of a typical plant-coloured component's side (the square root of
# :func:`typical_area`), nor a speck over this share of its area: a big photo of small plants (young
# seedlings in a wide drone frame, a flat of thousands) would otherwise lose its plants as specks or
# close the gaps between them into one region. Where plants scale with the image (a sharper camera)
# the image's rule is the smaller and holds alone.
CLOSING_OF_PLANT = 1 / 6
SPECK_OF_TYPICAL = 1 / 16


def dilate_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """bool (H, W): ``mask`` dilated by ``skimage.morphology.disk(radius)``, outside the image counting as background.

    Exactly the pixels of ``scipy.ndimage.binary_dilation(mask, disk(radius))``,
    computed as the union of the disk's rows: the row at height ``dy`` is a
    segment of half-width ``floor(sqrt(radius**2 - dy**2))``. The rows of the
    mask are widened one pixel a side at a time (two in-place ORs of shifted
    views) while ``|dy|`` falls from ``radius`` to 0, and each widening is ORed
    into the result shifted by ``±dy``: about ``4 * radius`` passes of
    byte-wide ORs, no filter and no integer or float map. It holds two
    image-sized masks besides ``mask`` (scipy's Euclidean distance transform,
    the usual way for large disks, holds float64 distances and int32 indices;
    ``benchmarks/bench_vegetation.py``).
    """
    mask = np.asarray(mask, bool)
    if radius <= 0:
        return mask.copy()
    h = mask.shape[0]
    out = np.zeros_like(mask)
    rows = mask.copy()
    half_done = 0
    for dy in range(min(radius, h - 1), -1, -1):  # rows farther away lie outside the image
        half = math.isqrt(radius * radius - dy * dy)  # skimage's disk: x**2 + dy**2 <= radius**2
        while half_done < half:
            # numpy reads an operand that overlaps the output as it was before the operation
            # (NumPy 1.13 and later), so these two widen every run by one pixel each side
            rows[:, 1:] |= rows[:, :-1]
            rows[:, :-1] |= rows[:, 1:]
            half_done += 1
        out[dy:] |= rows[: h - dy]  # out[y] |= rows[y - dy]
        if dy:
            out[: h - dy] |= rows[dy:]  # out[y] |= rows[y + dy]
    return out


def min_area(shape, plant_area: float | None = None) -> int:
    """Plant-coloured specks smaller than this (pixels) in an image of ``shape`` (H, W) are noise, not
    plants: 2e-5 of the image's pixels, at most :data:`SPECK_OF_TYPICAL` of ``plant_area`` (the
    image's plant scale, a :func:`typical_area`; None: the image's rule alone), and at least 12."""
    area = 2e-5 * shape[0] * shape[1]
    if plant_area is not None:
        area = min(area, SPECK_OF_TYPICAL * plant_area)
    return max(12, int(area))


def closing_radius(shape, plant_area: float | None = None) -> int:
    """The radius (pixels) of the disk the plant mask of an image of ``shape`` (H, W) is closed with:
    :data:`CLOSING` of its geometric mean side, at most :data:`CLOSING_OF_PLANT` of the side of
    ``plant_area`` (as :func:`min_area`'s), rounded."""
    radius = CLOSING * np.sqrt(shape[0] * shape[1])
    if plant_area is not None:
        radius = min(radius, CLOSING_OF_PLANT * np.sqrt(plant_area))
    return int(round(radius))


def typical_area(mask: np.ndarray, step: int = 1) -> float | None:
    """The area (pixels of the image) of the 8-connected component of bool (h, w) ``mask`` that holds
    its median True pixel, counting components by size: a typical plant's (or leaf's) area, little
    moved by many specks. ``mask``: every ``step``-th pixel of the image's along both axes, so areas
    are counted ``step**2`` each. None when ``mask`` has no True pixel."""
    from scipy import ndimage

    comps, n = ndimage.label(mask, np.ones((3, 3), bool))
    if not n:
        return None
    return median_pixel_size(np.bincount(comps.ravel())[1:]) * step * step


def median_pixel_size(sizes: np.ndarray) -> float | None:
    """The size, among component sizes ``sizes`` (pixels, any order), of the component that holds the
    median pixel: the median of the sizes weighted by themselves. None for no component."""
    sizes = np.sort(np.asarray(sizes))
    if not sizes.size:
        return None
    return float(sizes[np.searchsorted(np.cumsum(sizes), sizes.sum() / 2)])


@dataclass(frozen=True)
class VegetationMap:
    """A photo's (or a window's) vegetation probability and how it was decided.

    ``probability``: float32 (H, W) in 0..1 (0.5 at the threshold).
    ``informative``: whether colour separates plants from background in this
    photo (two classes, the upper one green, a plausible plant fraction).
    ``threshold``/``eta``: Otsu's threshold on the index and the separability of
    Otsu's two-class split (also where the upper of three classes is the threshold
    applied: eta says whether the photo has two clear colour classes, which the
    hint on plants that are not green reads).
    ``fraction``: share of pixels above the threshold.
    ``image_shape``: the (H, W) the closing radius and the speck size follow:
    the whole image's when ``probability`` is one window of it, its data's when
    the image has a nodata border (:func:`data_window`); None: ``probability``'s
    own shape. ``plant_area``: the image's plant scale (a :func:`typical_area`,
    decided once per image by ``_plant_pixels.plant_scale``), which bounds both
    from above; None: the image's rule alone.
    """

    probability: np.ndarray
    index: str
    threshold: float
    eta: float
    fraction: float
    informative: bool
    reason: str
    image_shape: tuple[int, int] | None = None
    plant_area: float | None = None

    @property
    def mask(self) -> np.ndarray:
        """bool (H, W): pixels above the threshold."""
        return self.probability > 0.5

    @cached_property
    def plants(self) -> np.ndarray:
        """bool (H, W): :attr:`mask` closed over gaps of a few pixels, without specks and pin holes.

        The closing (a disk of :func:`closing_radius`: :data:`CLOSING` of the
        image's geometric mean side, or less where plants are small in it)
        joins the leaves of one plant that shadow or a thin stem cut apart;
        specks and holes of at most :func:`min_area` pixels go. Computed once
        per map.
        """
        from ._compat import remove_small_holes, remove_small_objects

        mask = self.mask
        shape = self.image_shape or mask.shape
        radius = closing_radius(shape, self.plant_area)
        out = mask
        if radius > 0:
            # closing as two dilations (of the mask, then of what stays outside): the same pixels
            # as skimage.morphology.closing; scipy's binary_closing would erode plants that touch
            # the image's edge
            out = ~dilate_disk(~dilate_disk(mask, radius), radius)
        area = min_area(shape, self.plant_area)
        out = remove_small_objects(out, area)
        return remove_small_holes(out, area)

    def summary(self) -> dict:
        return _summary(self)


def _summary(c) -> dict:
    """The run record's entries for a :class:`VegetationMap` or :class:`ColourClasses`."""
    return {
        "vegetation_index": c.index,
        "vegetation_threshold": round(c.threshold, 4),
        "vegetation_eta": round(c.eta, 3),
        "vegetation_fraction": round(c.fraction, 4),
        "vegetation_informative": c.informative,
        "vegetation_reason": c.reason,
        **({"vegetation_smooth": c.smooth} if getattr(c, "smooth", 0.0) else {}),
    }


# Whether colour is informative is decided on excess green smoothed over a few pixels. Plants are
# regions: smoothing keeps the gap between the two Otsu classes. Pixel noise also splits into two
# Otsu classes (eta = 2/pi for a Gaussian), but smoothing closes that gap: the share of the gap that
# survives (its spatial coherence) tells the two apart.
MIN_COHERENCE = 0.4
# The smoothed classes' mean excess green must differ by this much, and the upper class be this
# green (chromatic coordinates: grey is 0, photographed foliage about 0.1 to 0.5).
MIN_SEPARATION = 0.06
MIN_GREEN_EXG = 0.05
# A plausible plant fraction for a top-down photo of plants on background.
FRACTION_RANGE = (0.002, 0.85)
# the reason the stage gives when the photo's two colour classes are clear but neither is green
NOT_GREEN = "the upper class is not green"
# Otsu's two classes judged one colour class with at least this share called plant-coloured: soil split
# at its middle, tried again at the upper of three classes (plants a small share of the frame)
TAIL_RETRY = 0.4
_SMOOTH_SIGMA = 2.0
# Sensor noise (a dim photo, a small sensor's high ISO), divided by a dark soil's small R + G + B, makes
# the colour index noisy pixel by pixel: Otsu's threshold falls into the soil's noisy tail and the
# plant mask fills with specks that become colour instances. Where the index's pixel noise (1.4826
# MAD of x - its 3x3 median, a robust sigma) exceeds NOISE_GATE, the index is smoothed by a Gaussian
# of NOISE_SIGMA image pixels before the threshold and the map; below it (clean photos, JPEG, blur)
# it is not, since smoothing blurs the necks between touching plants that the watershed splits at
# (docs/quality.md: sensor noise).
NOISE_GATE = 0.04
NOISE_SIGMA = 2.0
# A coherent split whose lower class averages under NOT_GREEN_BELOW smoothed excess green (brick,
# terracotta, blue, red plants: soil is about 0, green plants above it) and whose upper class is not
# green holds soil and plants together: the upper of three classes is tried.
NOT_GREEN_BELOW = -0.06


def index_noise(rgb: np.ndarray, index: str = "exg") -> float:
    """The pixel noise of ``index`` over float RGB (h, w, 3) ``rgb`` in 0..1 at full resolution: 1.4826
    times the median absolute difference between the index and its 3x3 median (a robust standard
    deviation of what is not structure). 0.0 for an image under 3 pixels across."""
    return _pixel_noise(colour_index(np.asarray(rgb, np.float32), index))


def _pixel_noise(values: np.ndarray) -> float:
    """:func:`index_noise` of the index's own (h, w) ``values``."""
    from scipy import ndimage

    if min(values.shape[:2]) < 3:
        return 0.0
    return float(1.4826 * np.median(np.abs(values - ndimage.median_filter(values, 3))))


def _split_gap(values: np.ndarray, upper: np.ndarray) -> tuple[float, float]:
    """(upper class mean - lower class mean, upper class mean) of ``values`` split by the bool ``upper``."""
    up, low = values[upper], values[~upper]
    if not (up.size and low.size):
        return 0.0, float(values.mean()) if values.size else 0.0
    return float(up.mean() - low.mean()), float(up.mean())


def _above_non_green(values: np.ndarray, threshold: float) -> float:
    """The threshold between soil and green plants where Otsu's two classes put nearly every pixel
    above ``threshold``: plants of another colour (red lettuce, purple basil), whose excess green
    is far below the soil's, were the lower class. The upper of three Otsu classes (soil between
    them), or ``threshold`` when three classes do not exist."""
    from skimage.filters import threshold_multiotsu

    try:
        return float(threshold_multiotsu(values, classes=3)[1])
    except ValueError:  # fewer distinct values than classes
        return threshold


@dataclass(frozen=True)
class ColourClasses:
    """How one image's pixels split into plant-coloured and background, decided once for the image.

    ``threshold`` (Otsu's, on ``index``), ``width`` (of the logistic around it),
    ``eta``, ``fraction``, ``informative``, ``reason``: as in
    :class:`VegetationMap`. ``green``: whether the upper class is a green one set
    apart from the rest (informative but for its share of the photo); without it
    the plant-coloured class is a part of the soil. ``veto``: residue colours
    (:mod:`._colour_veto`) given probability 0, or None. :meth:`map` applies them to
    the whole image or to any window of it, so the windows of a big image share
    one threshold and one veto.
    """

    index: str
    threshold: float
    width: float
    eta: float
    fraction: float
    informative: bool
    reason: str
    green: bool = True
    smooth: float = 0.0  # sigma (image pixels) of the Gaussian the index is smoothed by (NOISE_GATE); 0: none
    # the image's plant scale (_plant_pixels.plant_scale), passed to every map; None: not known
    plant_area: float | None = None
    # the split was moved above a class far below soil (NOT_GREEN_BELOW): the network's finds off plant
    # colour may be that class's plants (red lettuce), not soil, so they are not ranked down
    below_soil: bool = False
    # bool (VETO_BINS, VETO_BINS) over chromaticity bins: residue colours given probability 0
    # (:func:`._colour_veto.learn_residue_veto`, learned once per photo); None: no veto
    veto: np.ndarray | None = field(default=None, compare=False, repr=False)

    def map(self, rgb, image_shape=None, *, rows: int = 1024) -> VegetationMap:
        """The :class:`VegetationMap` of float RGB (h, w, 3) ``rgb`` in 0..1, a window of an image of
        ``image_shape`` (None: ``rgb`` is the whole image). Nodata (pixels exactly black or white in
        every channel) has probability 0. ``rgb`` may also be an
        :class:`~napari_gardenseg._image_source.ImageSource`, read ``rows`` rows at a time: the same map
        without a float copy of the whole image."""
        if hasattr(rgb, "read"):
            h, w = rgb.shape
            prob = np.empty((h, w), np.float32)
            m = int(np.ceil(4 * self.smooth))  # the smoothing's reach: bands read with it, no seams
            for y in range(0, h, rows):
                a, b = max(y - m, 0), min(y + rows + m, h)
                prob[y : y + rows] = self._probability(rgb.read((a, 0, b, w)))[y - a : y - a + min(rows, h - y)]
        else:
            prob = self._probability(rgb)
        shape = None if image_shape is None else (int(image_shape[0]), int(image_shape[1]))
        return VegetationMap(
            prob,
            self.index,
            self.threshold,
            self.eta,
            self.fraction,
            self.informative,
            self.reason,
            shape,
            self.plant_area,
        )

    def summary(self) -> dict:
        return _summary(self)

    def _probability(self, rgb: np.ndarray) -> np.ndarray:
        from scipy.special import expit

        # the logistic in place, in the index's own new array: no image-sized temporaries
        prob = colour_index(rgb, self.index)
        if self.smooth:
            from scipy import ndimage

            prob = ndimage.gaussian_filter(prob, self.smooth)
        prob -= np.float32(self.threshold)
        prob /= np.float32(self.width)
        expit(prob, out=prob)
        if self.veto is not None:
            from ._colour_veto import chromaticity_bins

            prob[self.veto.ravel()[chromaticity_bins(rgb)]] = 0.0
        # nodata is never plant: it needs looking for only where black or white would pass the
        # threshold (black's excess green, 0, lies above the threshold of a photo with a purple cast)
        if (colour_index(_NODATA_COLOURS, self.index) > self.threshold).any():
            prob[is_nodata(rgb)] = 0.0
        return prob.astype(np.float32, copy=False)


def sample_step(shape, sample: int = 1_000_000) -> int:
    """The stride (pixels) of the sample :func:`colour_classes` decides on: about ``sample`` pixels
    of an image of ``shape`` (up to 4 times as many: the stride is rounded down)."""
    return max(1, int(np.sqrt(shape[0] * shape[1] / sample)))


def is_nodata(rgb: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels of float RGB ``rgb`` that are exactly black (0) or white (1) in every channel."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # elementwise over the channels (numpy's min/max reductions over a 3-long last axis are slow),
    # in place: every image-sized array is fresh memory to fault in
    low = np.minimum(r, g)
    np.minimum(low, b, out=low)
    out = low >= 1.0
    high = np.maximum(r, g, out=low)
    np.maximum(high, b, out=high)
    out |= high <= 0.0
    return out


# Black and white: the colours of nodata, as a (1, 2, 3) image.
_NODATA_COLOURS = np.array([[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]], np.float32)

# A nodata border holding at least this share of an image is left out of what the network sees.
NODATA_BORDER_SHARE = 0.1


def data_window(rgb, min_share: float = NODATA_BORDER_SHARE) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1): the bounding box of the pixels of float RGB ``rgb`` that are not nodata.

    ``rgb`` is an (H, W, 3) array or an :class:`~napari_gardenseg._image_source.ImageSource`; either is
    read block by block from its edges.

    Nodata: pixels exactly black or white in every channel (an orthomosaic's border, transparent
    pixels and a GeoTIFF's nodata value as the reader gives them). The whole image when that
    border holds less than ``min_share`` of its pixels (a clipped row changes nothing) or when
    every pixel is nodata. The network resizes an image to its input size, so a photo inside a
    border as large as itself would otherwise be seen at half its size.
    """
    if hasattr(rgb, "read"):
        h, w = rgb.shape
        block = lambda y0, y1, x0, x1: rgb.read((y0, x0, y1, x1))  # noqa: E731
    else:
        h, w = rgb.shape[:2]
        block = lambda y0, y1, x0, x1: rgb[y0:y1, x0:x1]  # noqa: E731

    def rows(a, b):  # per row of rgb[a:b]: does it hold data
        return ~is_nodata(block(a, b, 0, w)).all(axis=1)

    y0 = _first_with_data(h, rows)
    if y0 is None:
        return 0, 0, h, w
    y1 = _first_with_data(h, rows, backwards=True) + 1

    def cols(a, b):
        return ~is_nodata(block(y0, y1, a, b)).all(axis=0)

    x0, x1 = _first_with_data(w, cols), _first_with_data(w, cols, backwards=True) + 1
    if (y1 - y0) * (x1 - x0) > (1 - min_share) * h * w:
        return 0, 0, h, w
    return y0, x0, y1, x1


def data_region(source) -> tuple[int, int, int, int] | None:
    """(y0, x0, y1, x1): the part of an :class:`~napari_gardenseg._image_source.ImageSource` inside a nodata
    border, found by :func:`data_window` on the overview of about a million pixels that the
    colour classes are decided on (to its stride: a sliver of data narrower than the stride at the
    border's edge may be left out); None without such a border. Reads no more than that overview."""
    h, w = source.shape
    step = sample_step((h, w))
    overview = source.overview(step)
    y0, x0, y1, x1 = data_window(overview)
    if (y0, x0, y1, x1) == (0, 0, *overview.shape[:2]):
        return None
    # overview line i is image line i * step: the data begins after the last nodata line seen
    return (max(0, (y0 - 1) * step + 1), max(0, (x0 - 1) * step + 1), min(h, y1 * step), min(w, x1 * step))


def _first_with_data(n: int, has_data, *, backwards: bool = False, block: int = 64) -> int | None:
    """The index of the first of ``n`` lines, from the start or the end, that holds data; None if none.

    ``has_data(a, b)``: bool per line of lines a..b. Read block by block from the edge, so a photo
    without a border costs one block per edge, not a pass over the image.
    """
    for start in range(0, n, block):
        a, b = (max(n - start - block, 0), n - start) if backwards else (start, min(start + block, n))
        found = np.flatnonzero(has_data(a, b))
        if found.size:
            return a + int(found[-1] if backwards else found[0])
    return None


def colour_classes(
    sample_rgb: np.ndarray, index: str = "exg", *, step: int = 1, noise: float | None = None
) -> ColourClasses:
    """The plant/background colour classes of an image, from ``sample_rgb``: float RGB in 0..1 of
    every ``step``-th pixel of it along both axes (the image itself for ``step`` 1), finite.

    The threshold is Otsu's on ``index`` (Otsu, IEEE Trans. SMC 9, 1979); where it puts more than
    :data:`FRACTION_RANGE`'s top above it, the upper of three Otsu classes (plants that are not
    green below the soil: :func:`_above_non_green`), and so too where its split is judged one
    colour class with :data:`TAIL_RETRY` or more above it and the upper of three is a coherent
    green class (plants a small share of the frame, Otsu's two classes splitting the soil), and so
    too where the lower class averages under :data:`NOT_GREEN_BELOW` and the upper is not green
    (a brick path, a blue tarp or red plants split from soil and plants together: ``below_soil``
    then says so). The logistic's width is a quarter
    of the distance between the two class means. Pixels exactly black or white
    in every channel (nodata, clipped highlights) are left out of all of it,
    unless every pixel is. ``informative`` is decided on that split of excess
    green smoothed by a Gaussian of sigma 2 image pixels (see
    :data:`MIN_COHERENCE`, :data:`MIN_SEPARATION`, :data:`MIN_GREEN_EXG`,
    :data:`FRACTION_RANGE`). ``noise``: the index's pixel noise at full resolution
    (:func:`index_noise`; None: measured on ``sample_rgb``, exact for ``step`` 1); above
    :data:`NOISE_GATE` the index is smoothed by :data:`NOISE_SIGMA` image pixels, here and
    in :meth:`ColourClasses.map`. Raises ValueError for a bad ``index`` or shape.
    """
    from scipy import ndimage

    index_values = colour_index(sample_rgb, index)
    noise = _pixel_noise(index_values) if noise is None else noise
    smooth = NOISE_SIGMA if noise > NOISE_GATE else 0.0
    if smooth:
        index_values = ndimage.gaussian_filter(index_values, smooth / step)
    raw = excess_green(sample_rgb) if index != "exg" else index_values
    exg = ndimage.gaussian_filter(raw, _SMOOTH_SIGMA / step)
    # Pure black or white pixels have no colour to learn from: an orthomosaic's nodata border
    # (fully transparent pixels are read as black) or clipped highlights. Left in, a border as large as the
    # photo moves the threshold and dilutes the plant-coloured fraction.
    colourless = is_nodata(sample_rgb)
    if colourless.any() and not colourless.all():
        index_values, raw, exg = index_values[~colourless], raw[~colourless], exg[~colourless]
    threshold, eta = otsu_threshold(index_values)
    if np.mean(index_values > threshold) > FRACTION_RANGE[1]:
        threshold = _above_non_green(index_values, threshold)  # eta stays the two-class split's

    def judge(t):  # (fraction, width, separation, green_upper, coherence, coherent) of the split at t
        split = index_values > t
        upper, lower = index_values[split], index_values[~split]
        fraction = float(upper.size / max(index_values.size, 1))
        gap = float(upper.mean() - lower.mean()) if upper.size and lower.size else 0.0
        # judged on the split that is applied: smoothed, a split of soil noise (a unimodal soil cut at
        # its median) loses its gap, where plants keep theirs
        separation, green_upper = _split_gap(exg, split)
        raw_gap = gap if index == "exg" else _split_gap(raw, split)[0]
        coherence = separation / max(raw_gap, 1e-6)
        coherent = separation >= MIN_SEPARATION and coherence >= MIN_COHERENCE
        return fraction, max(gap / 4.0, 1e-3), separation, green_upper, coherence, coherent

    def upper_of_three(t):  # (threshold, judge's tuple) at the upper of three classes when it is
        # a coherent green class of a plausible share above t, else None
        upper = _above_non_green(index_values, t)
        if upper > t:
            retry = judge(upper)
            if retry[5] and retry[3] >= MIN_GREEN_EXG and FRACTION_RANGE[0] <= retry[0] <= TAIL_RETRY:
                return upper, retry
        return None

    fraction, width, separation, green_upper, coherence, coherent = judge(threshold)
    below_soil = False
    if not coherent and fraction >= TAIL_RETRY:
        # plants a small share of the frame (young plants in a wide drone frame): soil's own spread
        # is the larger contrast, Otsu split the soil, and the plants are the upper tail of three classes
        moved = upper_of_three(threshold)
    elif coherent and green_upper < MIN_GREEN_EXG and green_upper - separation < NOT_GREEN_BELOW:
        # a red or blue class far below the soil (a brick path, terracotta, a blue tarp, sky; or red
        # plants) split from soil and plants together, "not green": the green plants are the upper of
        # three classes, as where red plants were the lower class
        moved = upper_of_three(threshold)
        below_soil = moved is not None
    else:
        moved = None
    if moved is not None:
        threshold, (fraction, width, separation, green_upper, coherence, coherent) = moved
    green = coherent and green_upper >= MIN_GREEN_EXG
    if not coherent:
        informative = False
        reason = (
            f"one colour class (smoothed excess green classes {separation:.3f} apart, "
            f"{100 * coherence:.0f}% of the pixels' gap)"
        )
    elif not FRACTION_RANGE[0] <= fraction <= FRACTION_RANGE[1]:
        informative, reason = False, f"plant-coloured fraction {fraction:.3f} outside {FRACTION_RANGE}"
    elif green_upper < MIN_GREEN_EXG:
        informative, reason = False, f"{NOT_GREEN} (excess green {green_upper:.3f} < {MIN_GREEN_EXG})"
    else:
        informative = True
        reason = f"two colour classes (Otsu eta {eta:.2f}), {100 * fraction:.1f}% plant-coloured"
    if smooth and informative:
        reason += f"; the colour index smoothed (pixel noise {noise:.3f})"
    return ColourClasses(
        index, threshold, width, eta, fraction, informative, reason, green, smooth, below_soil=below_soil
    )


def vegetation_map(rgb: np.ndarray, index: str = "exg", *, sample: int = 1_000_000) -> VegetationMap:
    """The vegetation probability of a float RGB (H, W, 3) image in 0..1.

    :func:`colour_classes` decided on every :func:`sample_step`-th pixel (about
    ``sample`` pixels), applied to every pixel. Values must be finite (``segment``'s
    reading makes NaN black first; one NaN here makes the threshold NaN). Raises
    ValueError for a bad ``index`` or shape.
    """
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected a float RGB image of shape (H, W, 3), got shape {rgb.shape}")
    step = sample_step(rgb.shape, sample)
    return colour_classes(rgb[::step, ::step], index, step=step).map(rgb)
