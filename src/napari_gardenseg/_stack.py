"""Stacks (T, Z or C planes of one file) segmented plane by plane, ids unique across the stack.

The convention is napari's whole-stack mode (:func:`napari_gardenseg._layers.run_planes`):
planes in C order, each plane's instance ids shifted by the number of
instances in the planes before it, so label ``k`` means one instance
wherever it appears.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._cancel import check

__all__ = ["StackResult", "segment_stack"]


@dataclass
class StackResult:
    """What :func:`segment_stack` returns.

    ``labels``/``refined``: int32 arrays of shape ``(*stack_shape, H, W)``
    (``refined`` None without the CRF); ``results``: one
    :class:`~napari_gardenseg.SegmentationResult` per plane (ids local to the
    plane); ``planes``: each plane's index along ``axes`` (e.g. ``"T"``);
    ``offsets``: what was added to each plane's ids.
    """

    labels: np.ndarray
    refined: np.ndarray | None
    results: list
    planes: list[tuple[int, ...]]
    offsets: list[int]
    axes: str

    def __len__(self) -> int:
        return sum(len(r) for r in self.results)

    @property
    def table(self):
        """One row per instance: ``plane`` (flat index, C order), one column per plane axis
        (its letter in lower case: ``t``, ``z``, ``c``), then :attr:`SegmentationResult.table`'s
        columns with ``label`` the id in :attr:`labels`."""
        import pandas as pd

        frames = []
        for k, (res, index, offset) in enumerate(zip(self.results, self.planes, self.offsets)):
            t = res.table
            t["label"] = t["label"].astype(np.int64) + offset
            lead = {"plane": np.full(len(t), k, np.int64)}
            lead.update({a.lower(): np.full(len(t), v, np.int64) for a, v in zip(self.axes, index)})
            frames.append(pd.concat([pd.DataFrame(lead), t], axis=1))
        return pd.concat(frames, ignore_index=True)


def segment_stack(planes, index, segment_plane, *, axes: str = "", progress=None, cancel=None) -> StackResult:
    """Segment each plane of a stack with ``segment_plane(image, progress)`` (a :func:`napari_gardenseg.segment` call).

    ``planes(i)`` returns plane ``i`` ((H, W) or (H, W, C), any array segment
    takes); ``index`` lists each plane's index along ``axes`` in C order
    (``ImageFile.planes()``), which also gives the output's leading shape.
    ``progress(fraction, message)`` covers the whole stack; ``cancel`` is
    checked between planes (``segment_plane`` checks it within each).
    """
    report = progress or (lambda f, m: None)
    n = len(index)
    stack_shape = tuple(int(v) + 1 for v in np.max(np.asarray(index), axis=0)) if index and index[0] else ()
    labels = refined = None
    results, offsets = [], []
    offset = 0
    for i, where in enumerate(index):
        check(cancel, "segmentation")

        def plane_progress(f, m, i=i):
            report((i + min(max(f, 0.0), 1.0)) / n, f"plane {i + 1}/{n}: {m}")

        res = segment_plane(planes(i), plane_progress)
        if labels is None:
            labels = np.zeros(stack_shape + tuple(res.labels.shape), np.int32)
        np.copyto(labels[where], res.labels + offset, where=res.labels > 0)
        if res.refined is not None:
            if refined is None:
                refined = np.zeros(labels.shape, np.int32)
            np.copyto(refined[where], res.refined + offset, where=res.refined > 0)
        res.meta["plane"] = where
        results.append(res)
        offsets.append(offset)
        offset += len(res)
    return StackResult(labels, refined, results, list(index), offsets, axes)
