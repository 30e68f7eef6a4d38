"""The network's forward pass on one region: float RGB in, compact instances out.

:func:`predict_instances` runs torchvision's ``GeneralizedRCNN`` stages
(transform, backbone, RPN, ROI heads) and pastes each mask into its own box
only, never into a full frame. Tiling (:mod:`napari_gardenseg._tiling`) and
the whole-image path (:mod:`napari_gardenseg._inference`) both call it.

The network may be the caller's own module (``segment(image, net)``): it runs
in eval mode for the length of the pass and every submodule's mode is restored
after; the cancel hooks and the fixed input size are removed and restored too,
so the caller finds the module as it was.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch

from ._cancel import check
from ._instances import FULL_PASSES, Instances

if TYPE_CHECKING:
    from ._models import Model

__all__ = ["predict_instances", "network_input", "network_size"]


@contextmanager
def _eval_mode(net: torch.nn.Module):
    """Eval mode for the pass; each submodule's own ``training`` flag back afterwards."""
    modes = [(m, m.training) for m in net.modules()]
    if not any(training for _, training in modes):
        yield
        return
    net.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


@contextmanager
def _cancellable(net: torch.nn.Module, cancel):
    """Check ``cancel`` before every submodule runs, so a long forward pass stops within milliseconds."""
    if cancel is None:
        yield
        return

    def hook(_module, _inputs):
        check(cancel, "segmentation")

    handles = [m.register_forward_pre_hook(hook) for m in net.modules()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def _network_size(net, size):
    """Make the network's transform resize its input to exactly ``size`` = (h, w), or leave it when None."""
    if size is None:
        yield
        return
    saved = net.transform.fixed_size
    net.transform.fixed_size = (int(size[1]), int(size[0]))  # torchvision wants (w, h)
    try:
        yield
    finally:
        net.transform.fixed_size = saved


def network_size(shape, scale) -> tuple[int, int] | None:
    """The (h, w) the network sees for a region of ``shape`` at ``scale`` (None: the model's own resize)."""
    if scale is None:
        return None
    return max(1, int(round(shape[0] * scale))), max(1, int(round(shape[1] * scale)))


def own_size(net, shape) -> tuple[int, int] | None:
    """The (h, w) torchvision's ``GeneralizedRCNNTransform`` resizes a region of ``shape`` to in eval
    (its ``min_size``/``max_size`` rule, computed as its ``_resize_image_and_masks`` and
    ``interpolate(recompute_scale_factor=True)`` do); None when it has a ``fixed_size`` or is
    another kind of transform (it then resizes its own way)."""
    transform = getattr(net, "transform", None)
    min_size, max_size = getattr(transform, "min_size", None), getattr(transform, "max_size", None)
    if getattr(transform, "fixed_size", None) is not None or not min_size or not max_size:
        return None
    factor = min(float(min_size[-1]) / min(shape), float(max_size) / max(shape))
    # at least a pixel: torchvision's own rule gives 0 when the long side is over max_size times the short
    return max(1, math.floor(float(shape[0]) * factor)), max(1, math.floor(float(shape[1]) * factor))


def _linear_taps(n_in: int, n_out: int):
    """The two source indices and weights of each of ``n_out`` outputs of a linear resize from
    ``n_in`` samples, as PyTorch's CPU ``upsample_bilinear2d`` (``align_corners=False``, no
    antialias, the size given) computes them: (i0, i1, w0, w1), int64 and float32 (n_out,).

    Its source position ``scale * (i + 0.5) - 0.5`` is rounded once (a fused multiply-add),
    which float64 gives exactly here for any image size.
    """
    scale = np.float32(n_in) / np.float32(n_out)
    real = (np.float64(scale) * (np.arange(n_out, dtype=np.float64) + 0.5) - 0.5).astype(np.float32)
    real = np.maximum(real, np.float32(0))
    i0 = np.minimum(np.floor(real).astype(np.int64), n_in - 1)
    w1 = np.clip(real - i0.astype(np.float32), np.float32(0), np.float32(1))
    return i0, i0 + (i0 < n_in - 1), np.float32(1) - w1, w1


def _blend(a: np.ndarray, b: np.ndarray, w0: np.ndarray, w1: np.ndarray) -> np.ndarray:
    """float32 ``a * w0 + b * w1``, rounded as PyTorch's kernel rounds it (the second product
    rounded, then added to the first with one rounding: a fused multiply-add)."""
    return (a.astype(np.float64) * w0 + (b * w1).astype(np.float64)).astype(np.float32)


# A region of more than this many times the network's input pixels is read sampled: below it the
# float copy is small, and reading it whole and resizing it is faster than picking its pixels.
SAMPLED_ABOVE = 4


def network_input(source, window, scale, net) -> np.ndarray:
    """Float RGB of ``window`` (y0, x0, y1, x1) of an :class:`~napari_gardenseg._image_source.ImageSource`,
    as :func:`predict_instances` wants it (pass ``region_shape``).

    Where the network shrinks the region to less than 1 / :data:`SAMPLED_ABOVE`
    of its pixels (a small ``scale``, or the model's own resize of a large photo),
    the region is resized here exactly as ``predict_instances`` would resize it
    (bilinear, ``torch.nn.functional.interpolate``), from only the rows and
    columns that resize samples: a 48 MP photo is never held as floats.
    Otherwise the region as :meth:`~napari_gardenseg._image_source.ImageSource.read` gives it.
    """
    y0, x0, y1, x1 = window
    h, w = y1 - y0, x1 - x0
    size = _input_size(net, (h, w), scale)
    if size is None or h * w < SAMPLED_ABOVE * size[0] * size[1]:
        return source.read(window)
    (ry0, ry1, wy0, wy1), (cx0, cx1, wx0, wx1) = _linear_taps(h, size[0]), _linear_taps(w, size[1])
    rows, row_at = np.unique(np.concatenate([ry0, ry1]), return_inverse=True)
    cols, col_at = np.unique(np.concatenate([cx0, cx1]), return_inverse=True)
    picked = source.read_sampled(window, rows, cols)
    # along each row first, then across rows: the order of PyTorch's kernel
    left, right = np.take(picked, col_at[: size[1]], axis=1), np.take(picked, col_at[size[1] :], axis=1)
    across = _blend(left, right, wx0[:, None], wx1[:, None])
    return _blend(across[row_at[: size[0]]], across[row_at[size[0] :]], wy0[:, None, None], wy1[:, None, None])


def _input_size(net, shape, scale) -> tuple[int, int] | None:
    """The (h, w) :func:`predict_instances` resizes a region of ``shape`` to before the network's
    transform: ``scale``'s size, or the model's own when it shrinks; None: the transform's own resize."""
    size = network_size(shape, scale)
    if size is None:
        own = own_size(net, shape)
        size = own if own is not None and own[0] * own[1] < shape[0] * shape[1] else None
    return size


def predict_instances(
    model: Model,
    rgb: np.ndarray,
    *,
    scale: float | None = None,
    offset=(0, 0),
    image_shape=None,
    cancel=None,
    min_score: float = 0.0,
    classes=None,
    region_shape=None,
) -> Instances:
    """Run the network on one float RGB (h, w, 3) region in 0..1; return compact instances.

    ``scale`` None lets the model resize the region its own way (torchvision's
    ``min_size``/``max_size``: to :func:`own_size`, done before the transform
    normalises when it shrinks, which gives torchvision's own detections up to
    float rounding); a number resizes it by that factor instead (1.0: native
    pixels). Each mask is pasted into its own box at the region's resolution
    exactly as torchvision's ``paste_masks_in_image`` would, but kept local to
    the box. ``offset`` (y, x) places the region in an image of
    ``image_shape``; instances are sorted by descending score. Detections
    below ``min_score`` or not in ``classes`` (a set of ids) are dropped before
    their masks are pasted. ``meta[FULL_PASSES]`` is 1 when the network returned
    as many detections as one pass may, the last scoring ``min_score`` or more
    (it may have dropped some that would have been kept). ``region_shape``: the
    region's (h, w) when ``rgb`` is :func:`network_input`'s, already shrunk to
    the network's size (None: ``rgb`` is the region at its own resolution).
    """
    from torchvision.models.detection.roi_heads import expand_boxes, expand_masks
    from torchvision.models.detection.transform import resize_boxes

    h, w = rgb.shape[:2] if region_shape is None else (int(region_shape[0]), int(region_shape[1]))
    net = model.net
    tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).to(model.device)
    size = _input_size(net, (h, w), scale)  # the model's own resize is done here when it shrinks (below)
    if tuple(rgb.shape[:2]) != (h, w) and tuple(rgb.shape[:2]) != size:
        raise ValueError(f"rgb of shape {rgb.shape[:2]} is neither the region {(h, w)} nor its network size {size}")
    with model.lock, torch.inference_mode(), _eval_mode(net), _cancellable(net, cancel), _network_size(net, size):
        if size is not None and tuple(tensor.shape[1:]) != size:
            # resize before the transform normalises (it then resizes to the same size: a copy), so a
            # 12 MP photo is not normalised at full size; the same pixels up to float rounding
            tensor = torch.nn.functional.interpolate(tensor[None], size=size, mode="bilinear", align_corners=False)[0]
        # GeneralizedRCNN.forward, stopping before its postprocess pastes every mask into a full frame
        images, _ = net.transform([tensor])
        del tensor
        features = net.backbone(images.tensors)
        proposals, _ = net.rpn(images, features)
        det = net.roi_heads(features, proposals, images.image_sizes)[0][0]
        del features, proposals, images.tensors
        # full: the pass returned as many as it may, and those it dropped (scoring at most its last)
        # might have passed min_score
        cap = getattr(net.roi_heads, "detections_per_img", math.inf)
        full = len(det["scores"]) >= cap and float(det["scores"].min()) >= min_score
        boxes = resize_boxes(det["boxes"], images.image_sizes[0], (h, w))
        order = torch.argsort(det["scores"], descending=True, stable=True)
        wanted = det["scores"][order] >= min_score
        if classes is not None:
            wanted &= torch.isin(det["labels"][order], torch.as_tensor(sorted(classes), device=order.device))
        order = order[wanted]
        boxes, scores, labels = boxes[order], det["scores"][order], det["labels"][order]
        masks, factor = expand_masks(det["masks"][order], padding=1)
        pasted = expand_boxes(boxes, factor).to(dtype=torch.int64).cpu().numpy()
        local, offsets = [], []
        for m, (bx0, by0, bx1, by1) in zip(masks, pasted):
            bw, bh = max(int(bx1 - bx0 + 1), 1), max(int(by1 - by0 + 1), 1)
            x0, x1 = max(bx0, 0), min(bx1 + 1, w)
            y0, y1 = max(by0, 0), min(by1 + 1, h)
            if x1 <= x0 or y1 <= y0:
                local.append(np.zeros((0, 0), np.float32))
                offsets.append((offset[0] + max(min(by0, h), 0), offset[1] + max(min(bx0, w), 0)))
                continue
            big = torch.nn.functional.interpolate(m[None], size=(bh, bw), mode="bilinear", align_corners=False)[0, 0]
            local.append(big[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0].float().cpu().numpy())
            offsets.append((offset[0] + y0, offset[1] + x0))
    shift = np.array([offset[1], offset[0], offset[1], offset[0]], np.float32)
    return Instances(
        local,
        np.asarray(offsets, np.int64).reshape(-1, 2),
        scores.float().cpu().numpy(),
        labels.cpu().numpy(),
        boxes.float().cpu().numpy() + shift,
        image_shape if image_shape is not None else (h, w),
        meta={FULL_PASSES: 1} if full else {},
    )
