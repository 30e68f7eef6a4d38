"""Compact instances: each object is a mask local to its box, never a full frame.

An 11-megapixel photo with 100 plants would need 4.4 GB as (N, H, W) float32
soft masks; box-local masks need a few megabytes. Every stage (the model's
output, tiled merging, the CRF, painting label images, exports) passes
:class:`Instances` around and only :func:`paint` makes image-sized arrays, and
then only of the window asked for (a zarr chunk of a huge image, say).

Painting rule, everywhere: one label per pixel; the highest score wins, then
the higher soft value, then the lower index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Instances", "paint", "paint_image", "visible_shares", "instances_to_labels", "FULL_PASSES"]

# The key, in the instances' meta and a result's, of how many network passes returned as many
# instances as one pass may (``roi_heads.detections_per_img``): it may have dropped plants.
FULL_PASSES = "full_passes"


def _per_instance(values, name: str, dtype, shape: tuple) -> np.ndarray:
    """``values`` as an array of ``dtype`` and ``shape`` (N first); ValueError naming ``name`` when
    it holds another number of entries than there are masks."""
    array = np.asarray(values, dtype=dtype)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{name} has shape {array.shape} for {shape[0]} masks: give one entry per mask, shape {shape}")
    return array.reshape(shape)


@dataclass
class Instances:
    """N instances of an (H, W) image, each a mask local to its box.

    - ``masks``: N 2-D arrays; ``masks[i]`` is local to the box whose top-left pixel
      is ``offsets[i]``: float soft masks in 0..1, or bool claims (the CRF's refined
      masks).
    - ``offsets``: (N, 2) int64, (y0, x0) of each mask in image pixels.
    - ``scores``: (N,) float32 in 0..1, the detector's confidence.
    - ``class_ids``: (N,) int64, the model's class index (0 for a colour-only instance).
    - ``boxes``: (N, 4) float32, the detector's boxes (x0, y0, x1, y1), in image pixels.
    - ``shape``: (H, W), the image's size in pixels (a tuple of two ints).
    - ``probs``: None, or N float arrays of the same shapes as ``masks``: the soft
      values used to break score ties when ``masks`` are bool.
    - ``meta``: dict, what the stages noted (e.g. ``crf_backend``).
    - ``sources``: None (all "model"), or an (N,) object array of str, "model" or
      "colour" (a plant-coloured component no detection claimed).

    The arrays given are converted to these dtypes and shapes (ValueError when one
    does not hold N entries).
    """

    masks: list
    offsets: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    boxes: np.ndarray
    shape: tuple[int, int]
    probs: list | None = None
    meta: dict = field(default_factory=dict)
    # where each instance came from ("model", "colour"); None: all from the model
    sources: np.ndarray | None = None
    # extents() of the masks and offsets it was computed from: asked once per instance by the CRF
    # and the tile merge, so rebuilding it each time made those quadratic in the instances
    _extents: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        n = len(self.masks)
        self.offsets = _per_instance(self.offsets, "offsets", np.int64, (n, 2))
        self.scores = _per_instance(self.scores, "scores", np.float32, (n,))
        self.class_ids = _per_instance(self.class_ids, "class_ids", np.int64, (n,))
        self.boxes = _per_instance(self.boxes, "boxes", np.float32, (n, 4))
        self.shape = (int(self.shape[0]), int(self.shape[1]))
        if self.sources is not None:
            self.sources = _per_instance(self.sources, "sources", object, (n,))
        if self.probs is not None and len(self.probs) != n:
            raise ValueError(f"probs holds {len(self.probs)} arrays for {n} masks: give one per mask, or None")

    def __len__(self) -> int:
        return len(self.masks)

    @classmethod
    def empty(cls, shape) -> "Instances":
        return cls([], np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros((0, 4)), shape)

    @classmethod
    def from_dense(cls, soft_masks, scores=None, class_ids=None, boxes=None, floor: float = 0.0) -> "Instances":
        """From (N, H, W) full-frame masks: each is cut to the box of its values above ``floor``."""
        masks = np.asarray(soft_masks)
        n = masks.shape[0]
        local, offsets = [], []
        for m in masks:
            box = support(m, floor)
            if box is None:
                box = (slice(0, 0), slice(0, 0))
            local.append(np.array(m[box]))
            offsets.append((box[0].start, box[1].start))
        if boxes is None:
            boxes = [(o[1], o[0], o[1] + m.shape[1], o[0] + m.shape[0]) for o, m in zip(offsets, local)]
        return cls(
            local,
            np.asarray(offsets, dtype=np.int64).reshape(n, 2),
            np.ones(n, np.float32) if scores is None else scores,
            np.ones(n, np.int64) if class_ids is None else class_ids,
            np.asarray(boxes, dtype=np.float32).reshape(n, 4),
            masks.shape[1:3],
        )

    def take(self, idx) -> "Instances":
        """The instances at ``idx`` (indices or a boolean mask), in that order."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return Instances(
            [self.masks[i] for i in idx],
            self.offsets[idx],
            self.scores[idx],
            self.class_ids[idx],
            self.boxes[idx],
            self.shape,
            None if self.probs is None else [self.probs[i] for i in idx],
            dict(self.meta),
            None if self.sources is None else self.sources[idx],
        )

    def region(self, i: int) -> tuple[slice, slice]:
        """Where mask ``i`` lies in the image."""
        y0, x0 = self.offsets[i]
        h, w = self.masks[i].shape
        return slice(int(y0), int(y0) + h), slice(int(x0), int(x0) + w)

    def extents(self) -> np.ndarray:
        """(N, 4) y0, x0, y1, x1 of every mask's region (read-only; kept until ``masks`` or
        ``offsets`` is replaced: they are replaced, never resized in place)."""
        # the very objects it was computed from (held, so an id cannot be reused), and their length
        if self._extents is not None:
            masks, offsets, n, ext = self._extents
            if masks is self.masks and offsets is self.offsets and n == len(self.masks):
                return ext
        if len(self) == 0:
            ext = np.zeros((0, 4), np.int64)
        else:
            hw = np.array([m.shape for m in self.masks], dtype=np.int64).reshape(-1, 2)
            ext = np.concatenate([self.offsets, self.offsets + hw], axis=1)
        ext.flags.writeable = False
        self._extents = (self.masks, self.offsets, len(self.masks), ext)
        return ext

    def overlapping(self, window) -> np.ndarray:
        """Indices of instances whose mask region meets ``window`` = (y0, x0, y1, x1)."""
        e = self.extents()
        y0, x0, y1, x1 = window
        hit = (e[:, 0] < y1) & (e[:, 2] > y0) & (e[:, 1] < x1) & (e[:, 3] > x0)
        return np.flatnonzero(hit)

    def crop(self, i: int, window, dtype=np.float32) -> np.ndarray:
        """Mask ``i`` on ``window`` = (y0, x0, y1, x1): zeros where the mask has no values."""
        y0, x0, y1, x1 = window
        out = np.zeros((y1 - y0, x1 - x0), dtype)
        ry, rx = self.region(i)
        a0, a1 = max(ry.start, y0), min(ry.stop, y1)
        b0, b1 = max(rx.start, x0), min(rx.stop, x1)
        if a0 < a1 and b0 < b1:
            out[a0 - y0 : a1 - y0, b0 - x0 : b1 - x0] = self.masks[i][
                a0 - ry.start : a1 - ry.start, b0 - rx.start : b1 - rx.start
            ]
        return out

    def cut(self, idx, window) -> "Instances":
        """The instances at ``idx`` cut to ``window`` = (y0, x0, y1, x1), in the window's coordinates
        (an instance of an image window, as :meth:`moved` puts back). Bool masks keep their ``probs``."""
        y0, x0, y1, x1 = (int(v) for v in window)
        idx = np.asarray(idx, np.int64).reshape(-1)
        masks, probs, offsets = [], [], []
        for i in idx:
            ry, rx = self.region(i)
            a0, b0 = max(ry.start, y0), max(rx.start, x0)
            a1, b1 = max(min(ry.stop, y1), a0), max(min(rx.stop, x1), b0)  # empty when it misses the window
            src = (slice(a0 - ry.start, a1 - ry.start), slice(b0 - rx.start, b1 - rx.start))
            masks.append(self.masks[i][src])
            if self.probs is not None:
                probs.append(self.probs[i][src])
            offsets.append((a0 - y0, b0 - x0))
        out = self.take(idx)
        out.masks, out.offsets = masks, np.asarray(offsets, np.int64).reshape(-1, 2)
        out.probs = probs if self.probs is not None else None
        out.boxes = out.boxes - np.array([x0, y0, x0, y0], np.float32)
        out.shape = (y1 - y0, x1 - x0)
        return out

    def moved(self, dy: int, dx: int, shape) -> "Instances":
        """These instances moved by (``dy``, ``dx``) pixels into an image of ``shape`` (the inverse of :meth:`cut`)."""
        out = self.take(np.arange(len(self)))
        out.offsets = out.offsets + np.array([dy, dx], np.int64)
        out.boxes = out.boxes + np.array([dx, dy, dx, dy], np.float32)
        out.shape = (int(shape[0]), int(shape[1]))
        return out

    @classmethod
    def concat(cls, parts: list, shape) -> "Instances":
        """The instances of ``parts`` (of one image of ``shape``) one after another; meta of the first."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty(shape)
        with_sources = any(p.sources is not None for p in parts)
        return cls(
            [m for p in parts for m in p.masks],
            np.concatenate([p.offsets for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.class_ids for p in parts]),
            np.concatenate([p.boxes for p in parts]),
            shape,
            [m for p in parts for m in p.probs] if all(p.probs is not None for p in parts) else None,
            dict(parts[0].meta),
            np.concatenate([p.sources if p.sources is not None else np.full(len(p), "model", object) for p in parts])
            if with_sources
            else None,
        )

    def to_dense(self) -> np.ndarray:
        """(N, H, W) full-frame masks: for tests and small images only."""
        h, w = self.shape
        return (
            np.stack([self.crop(i, (0, 0, h, w)) for i in range(len(self))])
            if len(self)
            else np.zeros((0, h, w), np.float32)
        )


def support(mask: np.ndarray, threshold: float):
    """Bounding box (tuple of slices) of ``mask > threshold``, or None if empty."""
    hit = mask > threshold
    rows, cols = np.flatnonzero(hit.any(axis=1)), np.flatnonzero(hit.any(axis=0))
    if rows.size == 0:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def paint(instances: Instances, mask_threshold: float = 0.5, window=None, labels_of=None) -> np.ndarray:
    """Paint ``instances`` into an int32 label image of ``window`` (y0, x0, y1, x1; default the whole image).

    Instance ``i`` gets label ``labels_of[i]`` (default ``i + 1``). Float masks
    claim pixels above ``mask_threshold``; bool masks claim their True pixels.
    Memory is three arrays of the window's size, whatever the number of instances.
    """
    h, w = instances.shape
    y0, x0, y1, x1 = window if window is not None else (0, 0, h, w)
    shape = (y1 - y0, x1 - x0)
    out = np.zeros(shape, np.int32)
    best = np.full(shape, -np.inf, np.float32)
    best_p = np.zeros(shape, np.float32)
    ids = np.arange(1, len(instances) + 1) if labels_of is None else np.asarray(labels_of)
    for i in instances.overlapping((y0, x0, y1, x1)):
        m = instances.masks[i]
        ry, rx = instances.region(i)
        a0, a1 = max(ry.start, y0), min(ry.stop, y1)
        b0, b1 = max(rx.start, x0), min(rx.stop, x1)
        src = (slice(a0 - ry.start, a1 - ry.start), slice(b0 - rx.start, b1 - rx.start))
        dst = (slice(a0 - y0, a1 - y0), slice(b0 - x0, b1 - x0))
        part = m[src]
        if part.dtype == bool:
            claim = part
            prob = instances.probs[i][src] if instances.probs is not None else part.astype(np.float32)
        else:
            claim = part > mask_threshold
            prob = part
        score = instances.scores[i]
        b, bp = best[dst], best_p[dst]
        take = claim & ((score > b) | ((score == b) & (prob > bp)))
        out[dst][take] = ids[i]
        b[take] = score
        bp[take] = prob[take]
    return out


def paint_image(instances: Instances, mask_threshold: float = 0.5, rows: int = 2048, dtype=np.int32) -> np.ndarray:
    """:func:`paint` of the whole image, band by band: the painter's score and soft-value
    buffers then cover one band, not the whole image, besides the result (``dtype``, which
    must hold the number of instances)."""
    h, w = instances.shape
    out = np.empty((h, w), dtype)
    for y in range(0, h, rows):
        out[y : y + rows] = paint(instances, mask_threshold, (y, 0, min(y + rows, h), w))
    return out


def visible_shares(instances: Instances, visible: np.ndarray, mask_threshold: float = 0.5) -> np.ndarray:
    """Share (float (N,), 0..1) of each instance's own mask that it keeps in the painted labels:
    ``visible`` (int (N,)) its pixels there (a ``np.bincount`` of the labels without id 0).
    Low for an instance under better-scored ones (a duplicate, a leaf of a plant found whole)."""
    own = np.array([np.count_nonzero(m > mask_threshold) for m in instances.masks], np.int64)
    return np.asarray(visible, np.float64).reshape(len(instances)) / np.maximum(own, 1)


def instances_to_labels(soft_masks, scores=None, mask_threshold: float = 0.5) -> np.ndarray:
    """Threshold soft masks into one (H, W) int32 label image, without a CRF.

    ``soft_masks``: :class:`Instances`, or (N, H, W) full-frame masks. Instance i
    gets label i + 1; where masks overlap the higher score wins (then the
    higher soft value). An instance may end up with no pixels: dropping it is
    the caller's job, so that ids stay the input order here.
    """
    if not 0.0 < mask_threshold < 1.0:
        raise ValueError(f"mask_threshold must be in (0, 1), got {mask_threshold!r}")
    inst = soft_masks if isinstance(soft_masks, Instances) else Instances.from_dense(soft_masks, scores)
    if scores is not None and isinstance(soft_masks, Instances):
        inst = Instances(inst.masks, inst.offsets, scores, inst.class_ids, inst.boxes, inst.shape, inst.probs)
    return paint(inst, mask_threshold)
