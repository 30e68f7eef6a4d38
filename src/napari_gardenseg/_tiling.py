"""Tiled inference: overlapping tiles at a chosen scale, instances merged across tiles.

The network sees each tile at ``scale`` (1.0 = the image's own pixels), so a
big photo or an orthomosaic is not shrunk to the model's input size and small
plants survive. Tiles overlap; an object that crosses a tile border is seen,
cut, by two or more tiles. Merging rule: two detections from different tiles
are the same object when their thresholded masks agree *inside the window both
tiles saw* (IoU >= ``iou``, or one inside the other: overlap over the smaller
>= ``ios``). Comparing only inside the shared window makes a cut piece and the
whole object match, which box-based merging (SAHI) and block-face stitching
(cellpose's distributed mode) do not. Matches join groups best first (same
class, then most overlap), and a group never holds two detections of one tile
of different classes: a cut piece lying over two touching plants must not
chain them into one. Each group of matches becomes one instance: the
per-pixel maximum of its soft masks, the best score and that
detection's class. The CRF runs after merging, on crops of the source, so no
mask is cut at a tile border.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _forward
from ._cancel import check
from ._instances import FULL_PASSES, Instances
from ._options import check_tile_overlap, default_overlap

__all__ = ["Tile", "plan_tiles", "merge_tiles", "detect"]

# tile_size="auto" tiles when the image at the working scale is this many times the model's input
_AUTO_FACTOR = 1.5
# ...and, when no scale is given, when the image is this many times the input: shrinking it
# that much would lose every small object, so it is tiled at native resolution instead
_NATIVE_AUTO_FACTOR = 4
# a scale that makes the image this many times the model's input (per side) runs in tiles even
# with tile_size None: one pass of a side of 6000 px at scale holds over 10 GB
_ONE_PASS_FACTOR = 4
# A strip (a stitched crop row, a line scan) that the model's own resize would leave thinner than
# this runs in native-pixel tiles instead: shrunk to the model's input its plants would vanish
# (torchvision's resize even leaves 0 pixels when the long side is over max_size times the short).
MIN_RESIZED_SIDE = 64


@dataclass(frozen=True)
class Tile:
    index: int
    window: tuple[int, int, int, int]  # y0, x0, y1, x1 in image pixels
    # the part of the window this tile answers for: the cores of a plan tile the image without overlap
    core: tuple[int, int, int, int] | None = None

    def owns(self, y: float, x: float) -> bool:
        y0, x0, y1, x1 = self.core or self.window
        return y0 <= y < y1 and x0 <= x < x1


def model_input_size(model) -> int:
    """The longest side the model resizes images to (torchvision's ``max_size``)."""
    return int(getattr(model.net.transform, "max_size", 1333))


def plan_tiles(shape, tile_size, tile_overlap, scale, model, region=None) -> tuple[list[Tile] | None, float | None]:
    """Tile windows in image pixels (None: the whole image at once) and the scale to run them at.

    ``tile_size`` and ``tile_overlap`` are in pixels at ``scale`` (what the
    network sees). Tiles never shrink the image to the model's input size:
    with tiling, ``scale`` None means native pixels (1.0). ``"auto"`` tiles
    when the image at ``scale`` is much larger than the model's input, or,
    with ``scale`` None, when it is too large to be shrunk to it usefully.
    ``region`` (y0, x0, y1, x1): the part of the image the tiles cover (its
    data inside a nodata border); None: all of it. Whether to tile is decided
    on the whole ``shape`` either way. With ``scale`` None and ``tile_size``
    None or "auto", a strip that the model's own resize would leave under
    :data:`MIN_RESIZED_SIDE` pixels across is tiled at native pixels; with
    ``tile_size`` None and a ``scale`` that makes the image over
    :data:`_ONE_PASS_FACTOR` times the model's input, it is tiled at the
    model's input size (memory).
    """
    h, w = shape
    limit = model_input_size(model)
    if scale is None and (tile_size is None or tile_size == "auto") and _too_thin(model, shape):
        tile_size, scale = limit, 1.0
    elif tile_size is None and scale is not None and max(h, w) * float(scale) > _ONE_PASS_FACTOR * limit:
        tile_size = limit  # one pass would hold the network's features of the whole enlarged image
    elif tile_size is None:
        return None, scale
    if tile_size == "auto":
        if scale is None:
            if max(h, w) <= _NATIVE_AUTO_FACTOR * limit:
                return None, None
            scale = 1.0
        elif max(h, w) * float(scale) <= _AUTO_FACTOR * limit:
            return None, scale
        tile_size = limit
    s = 1.0 if scale is None else float(scale)
    overlap = default_overlap(tile_size) if tile_overlap is None else int(tile_overlap)
    check_tile_overlap(overlap, tile_size, in_use=True)  # the options checked a tile_size given in pixels
    size = max(1, int(round(tile_size / s)))
    over = int(round(overlap / s))
    ry0, rx0, ry1, rx1 = region or (0, 0, h, w)
    rh, rw = ry1 - ry0, rx1 - rx0
    ys, cys = _starts(rh, size, over), _cores(rh, size, _starts(rh, size, over))
    xs, cxs = _starts(rw, size, over), _cores(rw, size, _starts(rw, size, over))
    tiles = []
    for y, (cy0, cy1) in zip(ys, cys):
        for x, (cx0, cx1) in zip(xs, cxs):
            window = (ry0 + y, rx0 + x, ry0 + min(y + size, rh), rx0 + min(x + size, rw))
            tiles.append(Tile(len(tiles), window, (ry0 + cy0, rx0 + cx0, ry0 + cy1, rx0 + cx1)))
    return tiles, s


def seam_note(tiles: list[Tile] | None) -> str | None:
    """One line when neighbouring tiles share no pixels (a tile overlap of 0, or one that rounds
    to 0 image pixels at the scale run): the merge joins a plant's pieces by the pixels two tiles
    both saw, so a plant on such a seam comes out in pieces, one per tile (SAHI's
    ``overlap_ratio=0`` alike). None when every seam is overlapped, or for one tile."""
    if not tiles or len(tiles) < 2:
        return None
    for axis in (0, 1):
        spans = sorted({(t.window[axis], t.window[axis + 2]) for t in tiles})
        if any(b0 >= a1 for (_, a1), (b0, _) in zip(spans, spans[1:])):
            return (
                f"the {len(tiles)} tiles do not overlap (a tile overlap of 0, or under a pixel at the scale run), so a "
                "plant on a seam between two comes out in pieces, one per tile: give the tiles an overlap (by default "
                "a quarter of a tile)"
            )
    return None


def _too_thin(model, shape) -> bool:
    """Whether the model's own resize leaves the short side of ``shape`` under :data:`MIN_RESIZED_SIDE`."""
    own = _forward.own_size(model.net, shape)
    return own is not None and min(own) < MIN_RESIZED_SIDE


def _cores(n: int, size: int, starts: list[int]) -> list[tuple[int, int]]:
    """Split 0..n at the middle of each overlap: the cores of neighbouring tiles meet there."""
    cuts = [0] + [(b + min(a + size, n)) // 2 for a, b in zip(starts, starts[1:])] + [n]
    return list(zip(cuts[:-1], cuts[1:]))


def _starts(n: int, size: int, overlap: int) -> list[int]:
    """Evenly spread starts of tiles of ``size`` covering 0..n with at least ``overlap`` between neighbours."""
    if n <= size:
        return [0]
    count = math.ceil((n - overlap) / (size - overlap))
    return [int(round(i * (n - size) / (count - 1))) for i in range(count)]


def detect(
    model,
    source,
    tiles,
    *,
    scale,
    mask_threshold: float,
    min_score: float = 0.0,
    classes=None,
    cancel=None,
    progress=None,
) -> tuple[Instances, int]:
    """Instances of the whole image: the network on every tile (detections below ``min_score`` or
    not in ``classes`` dropped there), then merged across tiles; and how many tiles were all
    black or all white (nodata, an orthomosaic's border; at the network's scale, the pixels its
    resize samples) and were not given to the network."""
    report = progress or (lambda f, m: None)
    per_tile, skipped = [], 0
    for k, tile in enumerate(tiles):
        check(cancel, "segmentation")
        report(k / len(tiles), f"tile {k + 1} of {len(tiles)}")
        y0, x0, y1, x1 = tile.window
        rgb = _forward.network_input(source, tile.window, scale, model.net)
        if rgb.max() <= 0.0 or rgb.min() >= 1.0:
            # one nodata colour in all the network would see (an orthomosaic's border, a survey's
            # outline): nothing to find there. Not any mix of black and white: a black-and-white
            # picture has shapes in it
            per_tile.append(Instances.empty(source.shape))
            skipped += 1
            continue
        per_tile.append(
            _forward.predict_instances(
                model,
                rgb,
                scale=scale,
                offset=(y0, x0),
                image_shape=source.shape,
                region_shape=(y1 - y0, x1 - x0),
                cancel=cancel,
                min_score=min_score,
                classes=classes,
            )
        )
    report(1.0, "merging tiles")
    merged = merge_tiles(per_tile, tiles, mask_threshold)
    full = sum(p.meta.get(FULL_PASSES, 0) for p in per_tile)
    if full:
        merged.meta[FULL_PASSES] = full
    return merged, skipped


def _intersection(a, b):
    y0, x0 = max(a[0], b[0]), max(a[1], b[1])
    y1, x1 = min(a[2], b[2]), min(a[3], b[3])
    return (y0, x0, y1, x1) if y0 < y1 and x0 < x1 else None


def merge_tiles(
    per_tile: list[Instances], tiles: list[Tile], mask_threshold: float = 0.5, iou: float = 0.5, ios: float = 0.8
) -> Instances:
    """One instance per object from the instances of overlapping tiles (see the module docstring)."""
    shape = per_tile[0].shape if per_tile else (0, 0)
    starts = np.cumsum([0] + [len(p) for p in per_tile])
    parent = list(range(int(starts[-1])))
    pairs = []  # (same class, overlap over the smaller, IoU, a, b) of every match between two tiles

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    cuts = [_cut(p, tile, shape) for p, tile in zip(per_tile, tiles)]  # per tile, once
    for a in range(len(tiles)):
        for b in range(a + 1, len(tiles)):
            shared = _intersection(tiles[a].window, tiles[b].window)
            if shared is None:
                continue
            # each instance's part in the shared window, as a mask on its own region there: memory
            # of the masks, not of the window once per instance
            part_a = _parts_in(per_tile[a], shared, mask_threshold)
            part_b = _parts_in(per_tile[b], shared, mask_threshold)
            if not part_a or not part_b:
                continue
            for i, (bi, mi, ni) in part_a.items():
                # bi lies in the shared window: the regions that meet it are those whose part there does
                for j in per_tile[b].overlapping(bi):
                    if int(j) not in part_b:
                        continue
                    bj, mj, nj = part_b[int(j)]
                    y0, x0, y1, x1 = _intersection(bi, bj)
                    inter = int(
                        np.count_nonzero(
                            mi[y0 - bi[0] : y1 - bi[0], x0 - bi[1] : x1 - bi[1]]
                            & mj[y0 - bj[0] : y1 - bj[0], x0 - bj[1] : x1 - bj[1]]
                        )
                    )
                    if inter == 0:
                        continue
                    # overlap over the smaller only for a piece the tile border cut: a whole
                    # object lying over a neighbour is no duplicate of it
                    smaller_cut = cuts[a][i] if ni <= nj else cuts[b][j]
                    pair_iou, pair_ios = inter / (ni + nj - inter), inter / min(ni, nj)
                    if pair_iou >= iou or (smaller_cut and pair_ios >= ios):
                        same = per_tile[a].class_ids[i] == per_tile[b].class_ids[j]
                        pairs.append((bool(same), pair_ios, pair_iou, int(starts[a] + i), int(starts[b] + j)))

    # best matches first (same class, then most overlap); and two detections of one tile that its
    # own NMS kept apart as different classes never end in one object: a cut piece lying over two
    # touching plants must not chain them together (parts of one class may: a plant one tile saw
    # as two pieces)
    tile_of = np.repeat(np.arange(len(per_tile)), np.diff(starts))
    class_of = np.concatenate([np.asarray(p.class_ids) for p in per_tile]) if per_tile else np.zeros(0)
    holds = {g: {int(tile_of[g])} for g in range(len(parent))}
    kinds = {g: {int(class_of[g])} for g in range(len(parent))}
    for *_, ga, gb in sorted(pairs, reverse=True):
        ra, rb = find(ga), find(gb)
        if ra == rb or (holds[ra] & holds[rb] and kinds[ra] != kinds[rb]):
            continue
        root, other = min(ra, rb), max(ra, rb)
        parent[other] = root
        holds[root] |= holds.pop(other)
        kinds[root] |= kinds.pop(other)

    groups: dict[int, list[int]] = {}
    for g in range(len(parent)):
        groups.setdefault(find(g), []).append(g)
    flat = [(t, i) for t, p in enumerate(per_tile) for i in range(len(p))]
    masks, offsets, scores, classes, boxes = [], [], [], [], []
    for members in groups.values():
        parts = [flat[g] for g in members]
        ext = np.array([per_tile[t].extents()[i] for t, i in parts])
        window = (ext[:, 0].min(), ext[:, 1].min(), ext[:, 2].max(), ext[:, 3].max())
        if len(parts) == 1:
            t, i = parts[0]
            mask = per_tile[t].masks[i]
        else:
            mask = _join(per_tile, tiles, parts, window)
        # one owner: the object belongs to the tile whose core holds its centre; what other tiles
        # saw of it was that tile's to find (their pieces are cut). But an object another tile saw
        # whole, where the owner found nothing (its detection fell below the score threshold), stays
        pixels = mask > mask_threshold
        ys, xs = np.nonzero(pixels)
        if len(ys) == 0:
            continue
        cy, cx = window[0] + ys.mean(), window[1] + xs.mean()
        if not any(tiles[t].owns(cy, cx) for t, _ in parts) and (
            all(cuts[t][i] for t, i in parts)
            or _owner_found_it(per_tile, tiles, (cy, cx), pixels, window, mask_threshold)
        ):
            continue
        best = max(parts, key=lambda ti: per_tile[ti[0]].scores[ti[1]])
        src = per_tile[best[0]]
        masks.append(mask)
        offsets.append(window[:2])
        scores.append(src.scores[best[1]])
        classes.append(src.class_ids[best[1]])
        bx = np.array([per_tile[t].boxes[i] for t, i in parts])
        boxes.append((bx[:, 0].min(), bx[:, 1].min(), bx[:, 2].max(), bx[:, 3].max()))
    merged = Instances(
        masks, np.asarray(offsets).reshape(-1, 2), scores, classes, np.asarray(boxes).reshape(-1, 4), shape
    )
    order = np.argsort(-merged.scores, kind="stable")
    return merged.take(order)


def _owner_found_it(per_tile, tiles, centre, pixels, window, mask_threshold: float) -> bool:
    """Whether the tile whose core holds ``centre`` has a detection on any of ``pixels`` (bool,
    on ``window``'s region from its top-left corner)."""
    owner = next((t for t, tile in enumerate(tiles) if tile.owns(*centre)), None)
    if owner is None:
        return True
    ys, xs = np.nonzero(pixels)
    box = (window[0] + ys.min(), window[1] + xs.min(), window[0] + ys.max() + 1, window[1] + xs.max() + 1)
    found = per_tile[owner]
    for j in found.overlapping(box):
        theirs = found.crop(int(j), box, dtype=found.masks[j].dtype) > mask_threshold
        if (theirs & pixels[box[0] - window[0] : box[2] - window[0], box[1] - window[1] : box[3] - window[1]]).any():
            return True
    return False


def _parts_in(found: Instances, window, mask_threshold: float) -> dict:
    """For each instance of ``found`` with pixels above ``mask_threshold`` in ``window``:
    ``{i: (box, mask, count)}``, its region in the window (y0, x0, y1, x1, image pixels), its bool
    mask there, and that mask's pixel count."""
    ext = found.extents()
    parts = {}
    for i in found.overlapping(window):
        box = _intersection(ext[i], window)
        mask = found.crop(int(i), box, dtype=found.masks[i].dtype) > mask_threshold
        count = int(np.count_nonzero(mask))
        if count:
            parts[int(i)] = (tuple(int(v) for v in box), mask, count)
    return parts


def _cut(found: Instances, tile: Tile, shape) -> np.ndarray:
    """For each instance of a tile: does its mask reach an edge of the tile that is not the image's?"""
    y0, x0, y1, x1 = tile.window
    e = found.extents()
    if len(e) == 0:
        return np.zeros(0, bool)
    return (
        ((e[:, 0] <= y0) & (y0 > 0))
        | ((e[:, 1] <= x0) & (x0 > 0))
        | ((e[:, 2] >= y1) & (y1 < shape[0]))
        | ((e[:, 3] >= x1) & (x1 < shape[1]))
    )


def _join(per_tile, tiles, parts, window) -> np.ndarray:
    """One soft mask from the pieces of an object: each pixel from the tile whose core holds it,
    where that tile saw the object (a tile sees its core best: far from its cut edges);
    elsewhere the largest value any piece gives."""
    y0, x0, y1, x1 = window
    seen: dict[int, np.ndarray] = {}  # tile -> its view of the object (pieces of one tile joined by max)
    for t, i in parts:
        crop = per_tile[t].crop(i, window)
        if t in seen:
            np.maximum(seen[t], crop, out=seen[t])
        else:
            seen[t] = crop
    joined = np.maximum.reduce(list(seen.values()))
    for t, crop in seen.items():
        cy0, cx0, cy1, cx1 = tiles[t].core or tiles[t].window
        a0, a1 = max(cy0, y0) - y0, min(cy1, y1) - y0
        b0, b1 = max(cx0, x0) - x0, min(cx1, x1) - x0
        if a0 < a1 and b0 < b1:
            joined[a0:a1, b0:b1] = crop[a0:a1, b0:b1]
    return joined
