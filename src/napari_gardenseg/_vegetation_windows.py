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
  compete for pixels as in the whole image); the window keeps the model
  instances it owns whole and, cut to its core, the colour-only pieces and
  what it gives to instances owned elsewhere beyond their owner's window;
* the pieces are stitched across the cores' seams (8-connected, as the
  components are): colour-only pieces that meet are one instance, and one
  that meets a seed's claim joins that plant, so a sown row or a hedge longer
  than a window is what a whole-image run makes of it. An instance that would
  not :func:`fit one box <fits_one_box>` (a crop row running diagonally)
  is held in pieces (:func:`pieces_of`), as a whole-image run holds it.

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

__all__ = [
    "follow_in_windows",
    "plan_windows",
    "margin_for",
    "fits_one_box",
    "grid_cells",
    "split_on_grid",
    "clip_piece",
    "pieces_of",
    "union_of",
    "BLOCK",
    "SPARSE_BOX",
    "PIECE_SIDE",
]

# Side (pixels) of a window's core (a row's or column's last core is under 1.5 of them): the stage's
# maps of the largest window, such a core plus MAX_MARGIN on each side (about 26 MP), stay under a
# gigabyte.
BLOCK = 2048
# The margin around a core: MARGIN_SIDES times the box side of the larger plants found, within
# these bounds. Windows are cores plus margins, so the margin is what the windows cost over the image.
MARGIN_SIDES = 1.0
MIN_MARGIN = 128
MAX_MARGIN = 1024
# A colour-made instance (a component, or pieces stitched across windows) whose box would be over
# BLOCK**2 pixels and over SPARSE_BOX times its own pixels is held in pieces: an instance's mask is
# its box, and a crop row running diagonally across an orthomosaic has the image's box. Each piece's
# box is at most PIECE_SIDE squared or SPARSE_BOX times its pixels (a one-pixel-wide row's pieces
# are PIECE_SIDE boxes: the bound per pixel is looser for the thinnest rows).
SPARSE_BOX = 16
PIECE_SIDE = 256


def fits_one_box(box_pixels: int, pixels: int) -> bool:
    """Whether an instance of ``pixels`` pixels may be held in one mask of ``box_pixels`` (its box's
    area): at most :data:`BLOCK` squared, or :data:`SPARSE_BOX` times its pixels."""
    return box_pixels <= max(BLOCK * BLOCK, SPARSE_BOX * pixels)


def grid_cells(box, shape) -> list[tuple[slice, slice]]:
    """``box`` (a tuple of two slices in an image of ``shape`` (H, W)) cut along the cores' edges
    (:func:`plan_windows`'s grid of :data:`BLOCK`), as (row slice, column slice) pieces."""
    cells = []
    rows, cols = _core_edges(shape[0], BLOCK), _core_edges(shape[1], BLOCK)
    for y0, y1 in zip(rows[:-1], rows[1:]):
        a0, a1 = max(y0, box[0].start), min(y1, box[0].stop)
        for x0, x1 in zip(cols[:-1], cols[1:]):
            b0, b1 = max(x0, box[1].start), min(x1, box[1].stop)
            if a0 < a1 and b0 < b1:
                cells.append((slice(a0, a1), slice(b0, b1)))
    return cells


def pieces_of(pieces) -> list:
    """The pixels of ``pieces`` (mask, y0, x0; positive values; each trimmed to them) held in parts
    whose box is at most :data:`PIECE_SIDE` squared or :data:`SPARSE_BOX` times their pixels: the
    pixels' box halved across its longer side, again and again (a straight cut meets a row once,
    so no corner bits). The result depends on the pixels only, not on how they come cut."""
    ext = _extents(pieces)
    y0, x0, y1, x1 = ext[:, 0].min(), ext[:, 1].min(), ext[:, 2].max(), ext[:, 3].max()
    if (y1 - y0) * (x1 - x0) <= max(PIECE_SIDE * PIECE_SIDE, SPARSE_BOX * sum(np.count_nonzero(p[0]) for p in pieces)):
        return [union_of(pieces)]
    if y1 - y0 >= x1 - x0:
        mid = (y0 + y1) // 2
        halves = [(y0, x0, mid, x1), (mid, x0, y1, x1)]
    else:
        mid = (x0 + x1) // 2
        halves = [(y0, x0, y1, mid), (y0, mid, y1, x1)]
    out = []
    for rect in halves:
        parts = [q for q in (clip_piece(p, rect) for p in pieces) if q is not None]
        if parts:
            out.extend(pieces_of(parts))
    return out


def split_on_grid(pieces, keep, shape, threshold: float) -> tuple[list, list]:
    """``pieces`` (mask, y0, x0) of an image of ``shape`` cut on :func:`grid_cells`' grid: the parts
    in the cells that meet the rectangle ``keep`` = (y0, x0, y1, x1), and the parts in the others,
    these with only their claim (values above ``threshold``): a soft mask's values below it there
    (where a better-scored instance holds the pixels) would make pieces without a pixel."""
    rows, cols = _core_edges(shape[0], BLOCK), _core_edges(shape[1], BLOCK)
    # the rectangle of the cells it meets
    i0, i1 = np.searchsorted(rows, keep[0], "right") - 1, np.searchsorted(rows, keep[2], "left")
    j0, j1 = np.searchsorted(cols, keep[1], "right") - 1, np.searchsorted(cols, keep[3], "left")
    keep = (rows[max(i0, 0)], cols[max(j0, 0)], rows[min(i1, len(rows) - 1)], cols[min(j1, len(cols) - 1)])
    mine, rest = [], []
    for mask, y0, x0 in pieces:
        box = (slice(y0, y0 + mask.shape[0]), slice(x0, x0 + mask.shape[1]))
        for cy, cx in grid_cells(box, shape):
            rect = (cy.start, cx.start, cy.stop, cx.stop)
            inside = keep[0] <= rect[0] and rect[2] <= keep[2] and keep[1] <= rect[1] and rect[3] <= keep[3]
            part = clip_piece((mask, y0, x0), rect, 0.0 if inside else threshold)
            if part is not None:
                (mine if inside else rest).append(part)
    return mine, rest


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


def clip_piece(piece, keep, above: float = 0.0):
    """``piece`` = (mask, y0, x0) in image pixels cut to the rectangle ``keep`` = (y0, x0, y1, x1),
    zero where its values are not above ``above``, and trimmed to its positive values (a float32
    copy, not a view of a bigger array); None when none are left."""
    from ._instances import support

    mask, y0, x0 = piece
    a0, b0 = max(y0, keep[0]), max(x0, keep[1])
    a1, b1 = min(y0 + mask.shape[0], keep[2]), min(x0 + mask.shape[1], keep[3])
    if a0 >= a1 or b0 >= b1:
        return None
    m = mask[a0 - y0 : a1 - y0, b0 - x0 : b1 - x0]
    box = support(m, above)
    if box is None:
        return None
    m = np.array(m[box], np.float32)
    if above > 0:
        m[m <= above] = 0
    return m, a0 + box[0].start, b0 + box[1].start


def union_of(pieces):
    """The pixelwise maximum of ``pieces`` (mask, y0, x0) on the box holding them all, as (mask, y0, x0)."""
    y0, x0 = min(p[1] for p in pieces), min(p[2] for p in pieces)
    y1, x1 = max(p[1] + p[0].shape[0] for p in pieces), max(p[2] + p[0].shape[1] for p in pieces)
    out = np.zeros((y1 - y0, x1 - x0), np.float32)
    for m, a, b in pieces:
        sub = out[a - y0 : a - y0 + m.shape[0], b - x0 : b - x0 + m.shape[1]]
        np.maximum(sub, m, out=sub)
    return out, y0, x0


def _facing(a: np.ndarray, b: np.ndarray, shifts=(-1, 0, 1)) -> np.ndarray:
    """(M, 2) pairs of different nonzero labels facing each other across a seam, 8-connected: pixel
    ``i`` of line ``a`` meets pixels ``i + d`` of line ``b`` for ``d`` in ``shifts``."""
    pairs = []
    for d in shifts:
        u, v = a[max(0, -d) : len(a) - max(0, d)], b[max(0, d) : len(b) - max(0, -d)]
        hit = (u > 0) & (v > 0) & (u != v)
        pairs.append(np.stack([u[hit], v[hit]], 1))
    return np.concatenate(pairs)


def _seam_pairs(lines: dict) -> np.ndarray:
    """(M, 2) label pairs meeting across the seams between neighbouring cores. ``lines``: per core's
    (row, column) in the grid, its edge lines (top, bottom, left, right) of labels."""
    pairs = [np.zeros((0, 2), np.int64)]
    for (r, c), (_, bottom, _, right) in lines.items():
        if (r, c + 1) in lines:
            pairs.append(_facing(right, lines[(r, c + 1)][2]))
        if (r + 1, c) in lines:
            pairs.append(_facing(bottom, lines[(r + 1, c)][0]))
        if (r + 1, c + 1) in lines:  # corner to corner
            pairs.append(_facing(bottom[-1:], lines[(r + 1, c + 1)][0][:1], (0,)))
        if (r + 1, c - 1) in lines:
            pairs.append(_facing(bottom[:1], lines[(r + 1, c - 1)][0][-1:], (0,)))
    return np.concatenate(pairs).astype(np.int64)


def follow_in_windows(
    found: Instances,
    source,
    classes: ColourClasses,
    mask_threshold: float = 0.5,
    *,
    data_shape=None,
    score_threshold: float = 0.0,
    doubt_off_colour: bool = False,
    block: int | None = None,
    cancel=None,
    progress=None,
) -> tuple[Instances, float | None, int]:
    """``found`` made to follow plant colour window by window; the network's coverage of the plants (None: no plant pixel); the window count.

    ``source``: an :class:`~napari_gardenseg._image_source.ImageSource` (read one window
    at a time); ``classes``: the image's colour classes; ``block``: the
    cores' side (None: :data:`BLOCK`); ``data_shape``: (h, w) of the image's data inside a nodata
    border (None: the image's shape), which sets the closing radius and speck size;
    ``doubt_off_colour``: as :func:`~napari_gardenseg._plant_pixels.follow_vegetation`'s (decided
    once for the image). Returns the new
    :class:`Instances` (best score first, as
    :func:`~napari_gardenseg._plant_pixels.follow_vegetation` returns them),
    the share (0..1) of the plant-coloured pixels inside detections scoring at
    least ``_plant_pixels.COVERAGE_SCORE`` (1.0 when there are none) summed
    over the cores, and how many windows it took. Raises
    :class:`~napari_gardenseg.Cancelled` when ``cancel`` is set.

    A plant-coloured component longer than a window is stitched across the
    cores' seams as in a whole-image run: each window gives what it claims in
    its core (beyond the owner's window, for a model instance it does not
    own); colour-only pieces that meet across a seam are one instance, and
    one that meets a model instance claiming by colour (a seed) joins it.
    """
    from ._instances import paint
    from ._plant_pixels import COVERAGE_SCORE, GROUND_COVER, follow_vegetation

    report = progress or (lambda f, m: None)
    h, w = source.shape
    n = len(found)
    plans = plan_windows((h, w), found, BLOCK if block is None else block)
    rows = {y: r for r, y in enumerate(sorted({core[0] for core, _, _ in plans}))}
    cols = {x: c for c, x in enumerate(sorted({core[1] for core, _, _ in plans}))}
    kept = {}  # a model instance's index in found -> (mask, y0, x0), score, class, box, a seed
    extra = {}  # a model instance's index -> what windows that do not own it give it in their cores
    colour = []  # colour-only pieces, each cut to its core: ((mask, y0, x0), score)
    lines = {}  # per core's (row, column): its edge lines of labels (model i: i + 1; colour piece j: n + 1 + j)
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
        out, origin, by_colour = follow_vegetation(
            local,
            vmap,
            mask_threshold,
            score_threshold=score_threshold,
            doubt_off_colour=doubt_off_colour,
            return_origins=True,
            split_sparse=False,  # decided on the stitched instances
        )
        del vmap, plants
        ground += out.meta.get(GROUND_COVER, 0.0) * (core[2] - core[0]) * (core[3] - core[1])
        # the network's instances whole in the window that owns them, the rest cut to the core
        label = np.zeros(len(out), np.int64)
        for i in range(len(out)):
            piece = (out.masks[i], int(out.offsets[i, 0]) + y0, int(out.offsets[i, 1]) + x0)
            if origin[i] >= 0:
                g = int(near[origin[i]])
                label[i] = g + 1 if by_colour[i] else 0
                if g in owned:
                    box = out.boxes[i] + np.array([x0, y0, x0, y0], np.float32)
                    kept[g] = (piece, out.scores[i], out.class_ids[i], box, bool(by_colour[i]))
                else:  # what the owner's window did not claim for it stays (the stitch takes out what it did)
                    part = clip_piece(piece, core)
                    if part is not None:
                        extra.setdefault(g, []).append(part)
            else:
                part = clip_piece(piece, core)
                if part is not None:
                    colour.append((part, float(out.scores[i])))
                    label[i] = n + len(colour)
        cy0, cx0, cy1, cx1 = core[0] - y0, core[1] - x0, core[2] - y0, core[3] - x0
        lines[(rows[core[0]], cols[core[1]])] = tuple(
            paint(out, mask_threshold, edge, labels_of=label).ravel()
            for edge in (
                (cy0, cx0, cy0 + 1, cx1),
                (cy1 - 1, cx0, cy1, cx1),
                (cy0, cx0, cy1, cx0 + 1),
                (cy0, cx1 - 1, cy1, cx1),
            )
        )
    merged = _stitched(found, kept, extra, colour, lines, mask_threshold, score_threshold)
    merged.meta = {**found.meta, GROUND_COVER: round(ground / (h * w), 4)}
    coverage = covered / plant_pixels if plant_pixels else None  # no plant pixel: nothing to hold
    return merged.take(np.argsort(-merged.scores, kind="stable")), coverage, len(plans)


def _stitched(found, kept, extra, colour, lines, mask_threshold, score_threshold) -> Instances:
    """The windows' parts as one image's instances, each pixel claimed once.

    Colour-only pieces meeting across a seam are one group; a group meeting a
    seed (a model instance claiming by colour) across a seam, or overlapping
    one kept whole beyond its core, joins it (the one it meets most). Where
    the instances kept whole by their owners overlap, the better-scored keeps
    the pixels (as the painter does); what the other windows give is what no
    kept instance holds. An instance that would not :func:`fit one box
    <fits_one_box>` is held in pieces on the grid (:func:`split_on_grid`); a
    model instance keeps the cells its detection's box meets.
    """
    from ._plant_pixels import COLOUR_SCORE_RANGE

    beyond = max(COLOUR_SCORE_RANGE[1], score_threshold)  # a plant-coloured row beyond a plant, as colour
    n, m = len(found), len(colour)
    parent = np.arange(m)

    def root(j):
        while parent[j] != j:
            parent[j] = parent[parent[j]]
            j = parent[j]
        return j

    touch = {}  # (colour piece, model instance) -> pixels in contact
    for u, v in _seam_pairs(lines):
        a, b = (u, v) if u > n else (v, u)  # a colour piece first, if either is
        if a <= n:
            continue  # two model instances: never one
        if b > n:
            parent[root(a - n - 1)] = root(b - n - 1)
        else:
            touch[(a - n - 1, b - 1)] = touch.get((a - n - 1, b - 1), 0) + 1
    # the owners' instances, better scores first, hold their pixels against the others'
    order = sorted(kept, key=lambda g: (-kept[g][1], g))
    holders = [kept[g][0] for g in order]
    held_ext = _extents(holders)  # unchanged below: the soft masks keep their boxes
    for k in range(1, len(holders)):
        holders[k] = _minus(holders[k], holders, mask_threshold, keep_soft=True, ext=held_ext[:k])
    for g, piece in zip(order, holders):
        kept[g] = (piece, *kept[g][1:])
    # a seed kept whole reaches into its neighbours' cores: the colour-only pieces it overlaps there
    if colour:
        pieces = [p for p, _ in colour]
        ext = _extents(pieces)
        for g in (g for g in order if kept[g][4]):
            for j, both in _overlaps(kept[g][0], pieces, mask_threshold, ext):
                touch[(j, g)] = touch.get((j, g), 0) + both
    groups = {}
    for j in range(m):
        groups.setdefault(root(j), []).append(j)
    joins = {}  # a group's root -> (pixels in contact, model instance)
    for (j, g), count in touch.items():
        r = root(j)
        if g in kept and kept[g][4] and count > joins.get(r, (0, -1))[0]:
            joins[r] = (count, g)

    def free(pieces):  # what no kept instance holds
        return [q for q in (_minus(p, holders, mask_threshold, ext=held_ext) for p in pieces) if q is not None]

    out = []  # (mask, y0, x0), score, class id, box (None: the mask's), source
    for r, members in groups.items():
        if r in joins:  # a piece of a seeded plant beyond what its owner saw
            extra.setdefault(joins[r][1], []).extend(colour[j][0] for j in members)
            continue
        pieces = free([colour[j][0] for j in members])
        if not pieces:
            continue
        score = max(colour[j][1] for j in members)
        held = [union_of(pieces)] if _fits(pieces, mask_threshold) else pieces_of(pieces)
        out.extend((p, score, 0, None, "colour") for p in held)
    for g, pieces in extra.items():
        if g not in kept:  # its owner kept nothing of it: its pieces are still plants
            left = free(pieces)
            out.extend((p, beyond, 0, None, "colour") for p in (pieces_of(left) if left else []))
    # the model's instances in the network's order, then the colour-only ones, as the whole-image
    # stage lists them: the final sort is stable, so instances of equal score get the same labels
    models = []
    for g in sorted(kept):
        piece, score, class_id, box, _ = kept[g]
        pieces = [piece, *free(extra.get(g, []))]
        if not _fits(pieces, mask_threshold):  # a seed along a diagonal row: its plant's cells, the rest on the grid
            rect = (int(box[1]), int(box[0]), int(box[3]) + 1, int(box[2]) + 1)
            pieces, rest = split_on_grid(pieces, rect, found.shape, mask_threshold)
            out.extend((p, beyond, 0, None, "colour") for p in (pieces_of(rest) if rest else []))
            if not pieces:
                continue
        models.append((union_of(pieces), score, class_id, box, "model"))
    out = models + out
    boxes = [
        b if b is not None else [p[2], p[1], p[2] + p[0].shape[1] - 1, p[1] + p[0].shape[0] - 1]
        for p, _, _, b, _ in out
    ]
    return Instances(
        [p[0] for p, *_ in out],
        np.asarray([(p[1], p[2]) for p, *_ in out], np.int64).reshape(-1, 2),
        np.asarray([o[1] for o in out], np.float32),
        np.asarray([o[2] for o in out], np.int64),
        np.asarray(boxes, np.float32).reshape(-1, 4),
        found.shape,
        sources=np.asarray([o[4] for o in out], dtype=object),
    )


def _extent(piece) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) of a piece (mask, y0, x0)."""
    mask, y0, x0 = piece
    return y0, x0, y0 + mask.shape[0], x0 + mask.shape[1]


def _extents(pieces) -> np.ndarray:
    """(N, 4) :func:`_extent` of each of ``pieces``."""
    return np.array([_extent(p) for p in pieces], np.int64).reshape(-1, 4)


def _overlaps(piece, others, threshold: float, ext=None) -> list[tuple[int, int]]:
    """(index, pixels) for each of ``others`` (pieces; ``ext`` their :func:`_extents`, if known)
    whose claim (values above ``threshold``) meets ``piece``'s."""
    y0, x0, y1, x1 = _extent(piece)
    ext = _extents(others) if ext is None else ext
    found = []
    for j in np.flatnonzero((ext[:, 0] < y1) & (ext[:, 2] > y0) & (ext[:, 1] < x1) & (ext[:, 3] > x0)):
        a0, b0, a1, b1 = (int(v) for v in ext[j])
        c0, d0, c1, d1 = max(y0, a0), max(x0, b0), min(y1, a1), min(x1, b1)
        mine = piece[0][c0 - y0 : c1 - y0, d0 - x0 : d1 - x0] > threshold
        both = np.count_nonzero(mine & (others[j][0][c0 - a0 : c1 - a0, d0 - b0 : d1 - b0] > threshold))
        if both:
            found.append((int(j), both))
    return found


def _minus(piece, holders, threshold: float, keep_soft: bool = False, ext=None):
    """``piece`` (mask, y0, x0) without the pixels that ``holders`` (pieces; ``ext`` their
    :func:`_extents`, if known) claim, values above ``threshold``: zero there and trimmed (None when
    nothing is left), or with ``keep_soft`` just below the threshold, as a soft mask's values
    outside its claim, and not trimmed."""
    mask, y0, x0 = piece
    out = None
    for k, _ in _overlaps(piece, holders, threshold, ext):
        a0, b0, a1, b1 = _extent(holders[k])
        c0, d0 = max(y0, a0), max(x0, b0)
        c1, d1 = min(y0 + mask.shape[0], a1), min(x0 + mask.shape[1], b1)
        if out is None:
            out = mask.copy()
        sub = out[c0 - y0 : c1 - y0, d0 - x0 : d1 - x0]
        taken = (holders[k][0][c0 - a0 : c1 - a0, d0 - b0 : d1 - b0] > threshold) & (sub > threshold)
        sub[taken] = threshold - 0.01 if keep_soft else 0.0  # as the stage keeps a mask below its claim
    if out is None:
        return piece
    return (out, y0, x0) if keep_soft else clip_piece((out, y0, x0), _extent(piece))


def _fits(pieces, threshold: float) -> bool:
    """Whether ``pieces`` (mask, y0, x0), their values above ``threshold`` the pixels, may be held in one mask."""
    ext = _extents(pieces)
    box = (ext[:, 2].max() - ext[:, 0].min()) * (ext[:, 3].max() - ext[:, 1].min())
    return fits_one_box(int(box), sum(np.count_nonzero(p[0] > threshold) for p in pieces))
