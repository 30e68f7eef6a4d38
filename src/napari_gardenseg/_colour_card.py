"""A colour card's chips found as plants: left out.

Phenotyping photos (PlantCV's trays, semi-field rigs) hold a colour card beside the plants, an
X-Rite ColorChecker of 24 flat chips, some of them foliage green, yellow green and cyan. The
network takes such chips for rosettes, often confidently, and the colour stage takes the green
ones for plant-coloured components; PlantCV masks the card out before it thresholds a photo
(``plantcv.transform.mask_color_card``) for the same reason.

A plant is never one flat colour filling its box: leaves have veins, shade and edges, and a
rosette's box holds soil at its corners. So a *chip* here is a flat region of the image found
from an instance: the middle of the instance's box (its central half) varies by less than
:data:`FLAT_STD` (0..255, the mean of the R, G and B standard deviations), and the pixels of
that colour (within :data:`CHIP_TOLERANCE` in every channel) connected to it form a region of at
least :data:`MIN_CHIP_AREA` pixels that fills :data:`CHIP_FILL` of its own box, a box no longer
than twice its width, holding at least half the instance's mask (not a flat ground between a
seedling's leaves), lying inside the instance's box grown by its size (an open flat
background, paper or a wall, reaches further). The region is the image's, not the mask's: on a
scan the network's or the colour stage's mask of a chip often covers only part of it. One chip
is not enough: small plants in a coarse drone image are flat blobs too. :data:`MIN_CHIPS` chips
of one size (within a factor of 2 in side), each within a few chips' sides of another (a group:
squares scattered over a photo are none), whose colours differ (by more than
:data:`CARD_COLOURS` in some channel: the empty cells of a seedling tray are a grid of one
colour), make a card; its region is their boxes' bounds grown by a chip's side, and every
instance lying mostly inside it (:data:`INSIDE_SHARE` of its pixels: a detection that spans
several chips, the card's frame) is left out with them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["colour_card", "MIN_CHIPS"]

# a chip's size in pixels: smaller flat blobs are a coarse image's plants, and a card photographed
# that small cannot be told from them
MIN_CHIP_AREA = 200
# the share of its box a chip's mask fills (a disc fills pi / 4, a rosette less)
CHIP_FILL = 0.85
# the standard deviation (0..255) of a chip's middle: sensor noise and JPEG blocks; a leaf's is
# several times more (its veins, the shade between its leaves)
FLAT_STD = 6.0
# how far (0..255, in each channel) a chip's pixels lie from its middle's median colour: noise,
# JPEG blocks and uneven light across it; the chips beside it differ by more
CHIP_TOLERANCE = 18
# the fewest chips of one size that make a card
MIN_CHIPS = 3
# how much (0..255, in some channel) a card's chips' colours must differ, its whole point: a grid
# of flat squares of one colour is a tray's empty cells or a wall's tiles
CARD_COLOURS = 40
# the share of an instance's pixels inside the card's region that makes it part of the card
INSIDE_SHARE = 0.8


def colour_card(
    found, source, mask_threshold: float, region: tuple[int, int, int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """Which of ``found``'s instances are a colour card (see the module's docstring).

    ``found``: :class:`~napari_gardenseg._instances.Instances`; ``source``: the
    :class:`~napari_gardenseg._image_source.ImageSource` they were found in (each chip's box read
    alone, as uint8); ``mask_threshold``: where a soft mask is the instance's. Returns a bool (N,)
    array, True for the card's instances, and the card's region (y0, x0, y1, x1) in image
    pixels, or None when there is no card (all False). ``region``: a card found before (by an
    earlier stage): the instances inside it, without looking for chips again.
    """
    n = len(found)
    if region is not None:
        return _inside(found, region, mask_threshold), region
    none = np.zeros(n, bool), None
    if n < MIN_CHIPS or source.channels < 3:  # a grey image has no chips to tell by colour
        return none
    chips, sides, colours = [], [], []
    for i in range(n):
        chip = _chip(found, i, source, mask_threshold)
        if chip is not None and chip[0] not in chips:  # one chip found by two instances counts once
            chips.append(chip[0])
            sides.append(chip[1])
            colours.append(chip[2])
    if len(chips) < MIN_CHIPS:
        return none
    region = _card_region(chips, sides, colours, found.shape)
    if region is None:
        return none
    return _inside(found, region, mask_threshold), region


def _chip(found, i: int, source, mask_threshold: float):
    """The chip that instance ``i`` lies on (see the module's docstring): its box (y0, x0, y1, x1)
    in image pixels, side (the square root of its area) and median colour (R, G, B); or None."""
    from skimage.measure import label

    mask = _mask(found.masks[i], mask_threshold)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    y0, x0 = (int(v) for v in found.offsets[i])
    top, left = y0 + int(rows[0]), x0 + int(cols[0])
    h, w = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
    if h < 4 or w < 4:
        return None
    middle = np.asarray(source.read_uint8((top + h // 4, left + w // 4, top + h - h // 4, left + w - w // 4)))
    pixels = middle[..., :3].reshape(-1, 3).astype(np.float32)
    if len(pixels) < 16 or float(pixels.std(axis=0).mean()) >= FLAT_STD:
        return None
    colour = np.median(pixels, axis=0)
    # the instance's box grown by its size: a chip the mask covers in part lies within it
    H, W = found.shape
    grow = max(h, w)
    window = (max(0, top - grow), max(0, left - grow), min(H, top + h + grow), min(W, left + w + grow))
    near = np.abs(np.asarray(source.read_uint8(window))[..., :3].astype(np.float32) - colour).max(axis=-1)
    regions = label(near <= CHIP_TOLERANCE, connectivity=1)
    inner = regions[
        top + h // 4 - window[0] : top + h - h // 4 - window[0],
        left + w // 4 - window[1] : left + w - w // 4 - window[1],
    ]
    ids, counts = np.unique(inner[inner > 0], return_counts=True)
    if not len(ids):
        return None
    flat = regions == ids[np.argmax(counts)]
    # the instance must lie on the chip (most of its mask on the flat region), not around a flat
    # ground (a seedling's two leaves over a tray cell's substrate)
    full = np.zeros(flat.shape, bool)
    my0, mx0 = y0 - window[0], x0 - window[1]
    sy0, sx0 = max(my0, 0), max(mx0, 0)
    sy1, sx1 = min(my0 + mask.shape[0], flat.shape[0]), min(mx0 + mask.shape[1], flat.shape[1])
    full[sy0:sy1, sx0:sx1] = mask[sy0 - my0 : sy1 - my0, sx0 - mx0 : sx1 - mx0]
    if np.count_nonzero(full & flat) < 0.5 * np.count_nonzero(mask):
        return None
    rr, cc = np.flatnonzero(flat.any(axis=1)), np.flatnonzero(flat.any(axis=0))
    # an open flat background reaches the window's edge (the image's own edge may cut a chip)
    if (rr[0] == 0 and window[0] > 0) or (cc[0] == 0 and window[1] > 0):
        return None
    if (rr[-1] == flat.shape[0] - 1 and window[2] < H) or (cc[-1] == flat.shape[1] - 1 and window[3] < W):
        return None
    area = int(np.count_nonzero(flat))
    fh, fw = int(rr[-1] - rr[0] + 1), int(cc[-1] - cc[0] + 1)
    if area < MIN_CHIP_AREA or area < CHIP_FILL * fh * fw or max(fh, fw) > 2 * min(fh, fw):
        return None
    box = (window[0] + int(rr[0]), window[1] + int(cc[0]), window[0] + int(rr[-1]) + 1, window[1] + int(cc[-1]) + 1)
    return box, float(np.sqrt(area)), colour


def _card_region(chips: list, sides: list, colours: list, shape) -> tuple[int, int, int, int] | None:
    """The region of the largest group of chips that make one card: chips of one size (within a
    factor of 2 of the group's median side) each within 3.5 chips' sides of another (two chips
    the network missed between them, and the gaps around them: any card's size, a ColorChecker's 24 or 140, a label beside
    it); their boxes' bounds grown by a chip's side. None without :data:`MIN_CHIPS` such chips
    (flat squares scattered over a photo are no card), or when their colours do not differ by
    :data:`CARD_COLOURS` (a tray's empty cells)."""
    typical = float(np.median(sides))
    keep = [k for k, side in enumerate(sides) if typical / 2 <= side <= typical * 2]
    boxes = np.array([chips[k] for k in keep], dtype=np.int64).reshape(-1, 4)
    colours = np.array([colours[k] for k in keep], dtype=np.float32).reshape(-1, 3)
    # single linkage: chips whose boxes lie within 3.5 chips' sides of each other are one card's
    group = np.arange(len(boxes))
    for a in range(len(boxes)):
        for b in range(a + 1, len(boxes)):
            gap_y = max(boxes[a, 0], boxes[b, 0]) - min(boxes[a, 2], boxes[b, 2])
            gap_x = max(boxes[a, 1], boxes[b, 1]) - min(boxes[a, 3], boxes[b, 3])
            if max(gap_y, gap_x) <= 3.5 * typical:  # two chips the network missed may lie between
                group[group == group[b]] = group[a]
    labels, counts = np.unique(group, return_counts=True)
    if not len(counts) or counts.max() < MIN_CHIPS:
        return None
    card = boxes[group == labels[np.argmax(counts)]]
    spread = colours[group == labels[np.argmax(counts)]]
    if float((spread.max(axis=0) - spread.min(axis=0)).max()) <= CARD_COLOURS:
        return None
    grow = int(round(typical))
    y0, x0 = int(card[:, 0].min()) - grow, int(card[:, 1].min()) - grow
    y1, x1 = int(card[:, 2].max()) + grow, int(card[:, 3].max()) + grow
    h, w = shape
    return max(0, y0), max(0, x0), min(h, y1), min(w, x1)


def _inside(found, region: tuple[int, int, int, int], mask_threshold: float) -> np.ndarray:
    """bool (N,): which instances have :data:`INSIDE_SHARE` of their pixels inside ``region``."""
    n = len(found)
    card = np.zeros(n, bool)
    for i in range(n):
        mask = _mask(found.masks[i], mask_threshold)
        total = int(np.count_nonzero(mask))
        if total == 0:
            continue
        y0, x0 = (int(v) for v in found.offsets[i])
        ry0, rx0 = max(region[0] - y0, 0), max(region[1] - x0, 0)
        ry1, rx1 = max(region[2] - y0, 0), max(region[3] - x0, 0)
        card[i] = np.count_nonzero(mask[ry0:ry1, rx0:rx1]) >= INSIDE_SHARE * total
    return card


def _mask(mask, mask_threshold: float) -> np.ndarray:
    mask = np.asarray(mask)
    return mask if mask.dtype == bool else mask > mask_threshold
