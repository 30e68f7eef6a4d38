"""``segment()``: one image through Mask R-CNN and the dense CRF.

The stages are separate functions with plain array inputs and outputs so that
tiled inference (many ``predict_instances`` calls whose soft masks are merged
before the CRF) and batch runs can reuse them:

    to_rgb_float -> predict_instances -> _crf.instances_to_labels -> _crf.refine_instances
"""

from __future__ import annotations

import difflib
from contextlib import contextmanager
from typing import Callable

import numpy as np
import torch

from ._cancel import Cancelled, check
from ._crf import instances_to_labels
from ._images import to_rgb_float
from ._models import Model, load_model
from ._results import SegmentationResult

__all__ = ["segment", "predict_instances", "Cancelled"]

ProgressFn = Callable[[float, str], None]


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


def _check_fraction(name: str, value, *, open_low: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}") from None
    if not (0.0 < v <= 1.0 if open_low else 0.0 <= v <= 1.0) or np.isnan(v):
        bound = "above 0 and at most 1" if open_low else "between 0 and 1"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return v


def class_ids_for(model: Model, classes) -> set[int] | None:
    """Turn a class filter (names or ids) into class ids; None keeps all."""
    if classes is None:
        return None
    if isinstance(classes, (str, int)):
        classes = [classes]
    names = model.class_names
    ids = set()
    for c in classes:
        if isinstance(c, (int, np.integer)) and 0 < int(c) < len(names):
            ids.add(int(c))
        elif isinstance(c, str) and c in names[1:]:
            ids.update(i for i, n in enumerate(names) if n == c and i > 0)
        else:
            real = sorted({n for n in names[1:] if n != "N/A"})
            close = difflib.get_close_matches(str(c), real, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(
                f"unknown class {c!r} for model {model.source!r}.{hint} "
                f"Its classes are: {', '.join(real[:40])}{' ...' if len(real) > 40 else ''}"
            )
    return ids


def predict_instances(model: Model, rgb: np.ndarray, cancel=None) -> dict[str, np.ndarray]:
    """Run the network on one float RGB (H, W, 3) image in 0..1.

    Returns numpy arrays sorted by descending score: ``masks`` (N, H, W)
    float32 soft masks pasted at the image's size, ``scores`` (N,),
    ``labels`` (N,) class ids and ``boxes`` (N, 4) x0, y0, x1, y1.
    """
    tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).to(model.device)
    with model.lock, torch.inference_mode(), _cancellable(model.net, cancel):
        out = model.net([tensor])[0]
    order = torch.argsort(out["scores"], descending=True, stable=True)
    if bool((order == torch.arange(len(order), device=order.device)).all()):
        order = slice(None)  # torchvision already sorts by score: skip copying the masks
    return {
        "masks": out["masks"][order, 0].float().cpu().numpy(),
        "scores": out["scores"][order].cpu().numpy(),
        "labels": out["labels"][order].cpu().numpy(),
        "boxes": out["boxes"][order].cpu().numpy(),
    }


def _take(pred: dict, idx: np.ndarray) -> dict:
    """Select instances; a leading run (the usual case: sorted by score) is a view, not a copy of the masks."""
    if len(idx) == 0 or (idx[0] == 0 and idx[-1] == len(idx) - 1):
        return {k: v[: len(idx)] for k, v in pred.items()}
    return {k: v[idx] for k, v in pred.items()}


def _compact(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop ids with no pixels and renumber 1..M; return (labels, kept indices)."""
    present = np.bincount(labels.ravel(), minlength=n + 1)[1:] > 0
    kept = np.flatnonzero(present)
    if len(kept) == n:
        return labels, kept
    lut = np.zeros(n + 1, np.int32)
    lut[kept + 1] = np.arange(1, len(kept) + 1, dtype=np.int32)
    return lut[labels], kept


def segment(
    image,
    model="coco",
    score_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    classes=None,
    crf: bool = True,
    crf_params=None,
    *,
    device="auto",
    progress: ProgressFn | None = None,
    cancel=None,
    keep_soft_masks: bool = False,
) -> SegmentationResult:
    """Segment the objects in one 2-D image.

    ``image``: any array :func:`napari_gardenseg.to_rgb_float` accepts (uint8,
    uint16, float of any range with NaN/inf, bool; grayscale, RGB, RGBA,
    channel-first). ``model``: a :class:`Model` from :func:`load_model`, or
    anything ``load_model`` takes. Instances scoring below ``score_threshold``,
    or not in ``classes`` (names or ids; None keeps all), are dropped. Each
    pixel belongs to one instance (the highest score wins); an instance left
    with no pixels is dropped. With ``crf=True`` the soft masks are refined
    by the dense CRF (:func:`napari_gardenseg.refine_instances`) using
    ``crf_params`` or, when None, the settings stored with the model.

    ``progress(fraction, message)`` reports the stages; setting ``cancel``
    (an Event or a callable) raises :class:`Cancelled` within a fraction of a
    second.
    """
    score_threshold = _check_fraction("score_threshold", score_threshold)
    mask_threshold = _check_fraction("mask_threshold", mask_threshold, open_low=True)
    report = progress or (lambda f, m: None)

    rgb = to_rgb_float(image)
    if crf:
        from ._crf import CRFParams, crf_available, CRFUnavailableError, refine_instances

        if not crf_available():
            raise CRFUnavailableError()
    report(0.0, "loading model")
    model = load_model(model, device=device)
    wanted = class_ids_for(model, classes)
    check(cancel, "segmentation")

    report(0.05, "running Mask R-CNN")
    pred = predict_instances(model, rgb, cancel=cancel)
    keep = pred["scores"] >= score_threshold
    if wanted is not None:
        keep &= np.isin(pred["labels"], list(wanted))
    pred = _take(pred, np.flatnonzero(keep))

    report(0.7, "assembling instances")
    labels = instances_to_labels(pred["masks"], pred["scores"], mask_threshold)
    labels, kept = _compact(labels, len(pred["scores"]))
    pred = _take(pred, kept)

    refined = None
    if crf:
        check(cancel, "segmentation")
        report(0.75, f"refining {len(kept)} instances with the dense CRF")
        params = _crf_params(model, crf_params, CRFParams)
        refined = refine_instances(
            rgb, pred["masks"], scores=pred["scores"], params=params,
            mask_threshold=mask_threshold, cancel=cancel,
        )
    report(1.0, f"{len(kept)} instances")
    names = [model.class_names[int(c)] if int(c) < len(model.class_names) else str(int(c)) for c in pred["labels"]]
    return SegmentationResult(
        labels=labels,
        refined=refined,
        class_ids=pred["labels"].astype(np.int64),
        class_names=names,
        scores=pred["scores"].astype(np.float32),
        boxes=pred["boxes"].astype(np.float32),
        soft_masks=pred["masks"] if keep_soft_masks else None,
        meta={
            "model": model.source,
            "score_threshold": score_threshold,
            "mask_threshold": mask_threshold,
            "crf": crf,
            "crf_params": None if refined is None else params,
        },
    )


def _crf_params(model: Model, given, CRFParams):
    if given is None:
        given = model.meta.get("crf") or {}
    if isinstance(given, dict):
        fields = dict(given)
        if "band" in fields:  # stored as a list in checkpoints
            fields["band"] = tuple(fields["band"])
        try:
            return CRFParams(**fields)
        except TypeError as exc:
            raise ValueError(f"crf_params: {exc}; the fields are those of CRFParams") from None
    if not isinstance(given, CRFParams):
        raise TypeError(f"crf_params must be a CRFParams or a dict of its fields, got {type(given).__name__}")
    return given
