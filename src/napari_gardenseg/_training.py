"""Training and fine-tuning Mask R-CNN on label images.

``train(samples, base=...)`` takes ``(image, labels, classes)`` triples, the
form :func:`napari_gardenseg.synthetic.garden_scene` returns and napari's
Image + Labels layers give: an image, an instance label image (0 =
background) and a dict from each instance id to its class name.

When the samples name classes the base model does not know, the box and mask
predictors are replaced (torchvision's fine-tuning recipe) and the checkpoint
carries the new names. Crops are taken at the image's own scale (the model's
resize is set to the crop size while training), with flips, 90-degree turns,
rescaling and colour jitter.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ._architectures import ARCHITECTURES, replace_heads
from ._cancel import Cancelled
from ._cancel import should_stop as _should_stop
from ._files import check_free_space, checkpoint_target, free_at_the_end, free_path, user_models_dir
from ._images import to_rgb_float
from ._label_files import ids_dtype
from ._models import ModelError, derived_meta, load_model, resolve_device, save_checkpoint, state_bytes
from ._options import TRAIN_DEFAULTS

# the share of the fine-tuned weights in the saved ones (train's wise_alpha, WiSE-FT)
WISE_ALPHA = 0.5

__all__ = ["train", "prepare_samples"]


# A summed loss above this (and this many times the first one) means the weights blew up.
_LOSS_CEILING = 1e3


class TrainingDiverged(ValueError):
    """The loss became NaN, infinite or blew up (or the last step made the weights so): the settings
    (lr) do not suit these samples, nothing was saved."""


class _Sample:
    __slots__ = ("image", "labels", "class_of", "zoom", "held")

    def __init__(self, image, labels, class_of, zoom: float = 1.0, held: float = 1.0):
        self.image = image  # float32 (H, W, 3), or uint8 (converted crop by crop)
        self.labels = labels  # int16 or int32 (H, W)
        self.class_of = class_of  # instance id -> class name
        self.zoom = zoom  # the scale inference will see this image at (before random rescaling)
        self.held = held  # the image and labels are the photo's resized by this (zoom is of them)


# Share of positives among the proposals sampled per image while training (torchvision: 0.25): each
# positive also goes through the mask head, the costliest part of the heads; half as many learn as well
# (docs/benchmarks.md: the fine-tuning checks).
POSITIVE_FRACTION = 0.125


def prepare_samples(
    samples: Sequence, zoom_of: Callable[[np.ndarray], float] | None = None, largest: float = 1.0, cancel=None
):
    """Check and normalise ``(image, labels, classes)`` triples; clear errors on bad ones.

    ``image`` and ``labels`` are arrays or files: a photo as
    :func:`~napari_gardenseg._reader.read_image` reads it, a label image as
    :func:`~napari_gardenseg._label_files.read_labels` does. Returns a list of
    ``_Sample``.

    ``zoom_of(rgb)``: the scale inference sees a photo at (``_zoom_for``), and
    ``largest`` the largest random rescale training draws on top of it. A photo
    that training never sees at more than :data:`HELD_BELOW` of its pixels'
    size is held at that size (:func:`_held_at`), one photo at a time: two
    hundred 24 MP photos are never all in memory at full size. ``cancel`` is
    checked before each photo is read (raises :class:`Cancelled`).
    """
    from ._label_files import clean_class_name, label_doubt
    from ._reader import as_path, is_image_path

    if len(samples) == 0:
        raise ValueError("train() needs at least one (image, labels, classes) sample")
    out, first = [], {}  # first: photo file -> (sample number, its _Sample)
    for i, sample in enumerate(samples):
        if _should_stop(cancel):  # reading many large photos takes a while
            raise Cancelled("training was cancelled before the first iteration; nothing was saved")
        try:
            image, labels, classes = sample
        except (TypeError, ValueError) as exc:
            raise ValueError(f"sample {i} is not an (image, labels, classes) triple") from exc
        what = f"sample {i}"
        image, labels = as_path(image), as_path(labels)  # bytes, file://
        photo_file = Path(image).expanduser().resolve() if is_image_path(image) else None
        orientation = None  # the EXIF orientation the photo was turned upright by
        if photo_file is not None:
            from ._reader import read_image

            what, photo = f"{what} ({Path(image).name})", read_image(image)
            if photo.is_stack:
                raise ValueError(f"{what} holds {photo.n_planes} planes; train takes 2-D photos")
            orientation = photo.applied.get("exif_orientation")
            image, photo = photo.data, None
        # ids a table names are instances by its word (a segmentation's, corrected or not): not a class mask
        named = isinstance(classes, dict)
        if is_image_path(labels):
            from ._label_files import _table_of, read_labels

            named = named or _table_of(Path(labels).expanduser()) is not None
            # ids a table names are kept as stored (one plant left is not a mask to split)
            what, labels = f"{what}: {Path(labels).name}", read_labels(labels, split=not isinstance(classes, dict))
        rgb = _held_rgb(image)
        lab = np.asarray(labels)
        if lab.dtype.kind not in "iub":
            raise ValueError(f"{what}: labels must be an integer label image, got dtype {lab.dtype}")
        if lab.ndim != 2:
            raise ValueError(
                f"{what}: labels must be one 2-D image of instance ids (H, W), got shape {lab.shape} "
                "(a label image with one colour per instance: give its file, which is read into ids)"
            )
        if lab.size and lab.min() < 0:
            raise ValueError(
                f"{what}: labels hold negative ids ({int(lab.min())}); 0 is the background, instances 1 up"
            )
        if lab.shape != rgb.shape[:2]:
            turned = lab.shape == rgb.shape[1::-1]
            hint = " (the photo is read turned upright by its EXIF orientation: were they drawn on it unturned?)"
            raise ValueError(
                f"{what}: labels of {lab.shape[0]}x{lab.shape[1]} pixels do not match the image's "
                f"{rgb.shape[0]}x{rgb.shape[1]}: paint the labels on the image they are for{hint if turned else ''}"
            )
        ids = [int(v) for v in np.unique(lab) if v > 0]
        doubt = label_doubt(lab, pieces=not named)
        if doubt is None and orientation in (5, 6, 7, 8) and lab.shape[0] == lab.shape[1]:
            doubt = _painted_unturned(rgb, lab, orientation)  # a square photo's turn does not show in its size
        if doubt is not None:
            import warnings

            warnings.warn(f"{what}: {doubt}", stacklevel=2)
        if isinstance(classes, str):  # one class for every instance
            classes = {k: classes for k in ids}
        missing = [k for k in ids if k not in classes]
        if missing:
            raise ValueError(
                f"{what}: instances {missing[:5]} have no class name; give classes as a dict "
                "{instance id: class name} or one name for all"
            )
        class_of = {k: clean_class_name(classes[k]) for k in ids}
        if None in class_of.values():
            raise ValueError(
                f"{what}: instance {next(k for k, v in class_of.items() if v is None)} has an empty class name"
            )
        if ids and ids[-1] > len(ids):  # ids 1..n: crops are resized in float32, exact to 2**24 only
            ids_now = np.array([0, *ids], dtype=lab.dtype)  # uint64 ids past 2**63 stay exact
            lab = np.searchsorted(ids_now, lab)  # each id to its rank; 0 stays 0
            class_of, ids = (
                {i: class_of[k] for i, k in enumerate(ids_now[1:].tolist(), 1)},
                list(range(1, len(ids) + 1)),
            )
        sample = _Sample(rgb, _held_labels(lab, ids), class_of)
        del rgb, lab, image, labels  # the photo at full size goes before the next one is read
        if zoom_of is not None:
            sample = _held_at(sample, zoom_of(sample.image), largest)
        if photo_file is not None and photo_file in first:  # painted and annotated, or listed twice
            j, earlier = first[photo_file]
            if not _same_instances(earlier, sample):
                raise ValueError(
                    f"sample {i} and sample {j} are both {photo_file.name}, with other labels: each would teach the "
                    "other's plants as soil; give the photo once, with all its plants"
                )
            import warnings

            warnings.warn(
                f"sample {i}: {photo_file.name} was given before with the same labels; used once", stacklevel=2
            )
            continue
        if photo_file is not None:
            first[photo_file] = (i, sample)
        out.append(sample)
    if not any(s.class_of for s in out):
        raise ValueError("the samples hold no labelled instances (all labels are 0)")
    return out


# A photo that training draws at no more than this share of its size (its inference zoom times the
# largest random rescale) is held at that size: below it the memory saved is worth a second resize.
HELD_BELOW = 0.75


def _held_at(sample: _Sample, zoom: float, largest: float) -> _Sample:
    """``sample`` with ``zoom`` set, its image and labels resized to ``zoom * largest`` of their size
    when that is under :data:`HELD_BELOW`: the image bilinear without antialias, as inference
    resizes a photo (``_forward._linear_taps``), the labels by the nearest pixel."""
    from ._forward import _blend, _linear_taps

    h, w = sample.labels.shape
    factor = zoom * largest
    if factor >= HELD_BELOW:
        sample.zoom = zoom
        return sample
    oh, ow = round(h * factor), round(w * factor)
    if min(oh, ow) < 32:  # a narrow strip: held as it is (rounding a few rows would stretch it)
        sample.zoom = zoom
        return sample
    ry0, ry1, wy0, wy1 = _linear_taps(h, oh)
    cx0, cx1, wx0, wx1 = _linear_taps(w, ow)
    img = sample.image
    rgb = np.empty((oh, ow, 3), img.dtype)
    for y in range(0, oh, 64):  # in bands of output rows: a float copy of a band, not of the photo
        b = slice(y, y + 64)
        rows = _blend(
            img[ry0[b]].astype(np.float32), img[ry1[b]].astype(np.float32), wy0[b, None, None], wy1[b, None, None]
        )
        band = _blend(rows[:, cx0], rows[:, cx1], wx0[:, None], wx1[:, None])
        rgb[b] = np.clip(np.rint(band), 0, 255) if img.dtype == np.uint8 else band
    nearest_y = np.minimum(((np.arange(oh) + 0.5) * (h / oh)).astype(np.int64), h - 1)
    nearest_x = np.minimum(((np.arange(ow) + 0.5) * (w / ow)).astype(np.int64), w - 1)
    labels = np.ascontiguousarray(sample.labels[nearest_y][:, nearest_x])
    held = oh / h
    return _Sample(rgb, labels, sample.class_of, zoom / held, held)


def _same_instances(a: _Sample, b: _Sample) -> bool:
    """Whether two samples' labels are the same plants of the same classes, whatever their ids."""
    la, lb = np.asarray(a.labels), np.asarray(b.labels)
    if la.shape != lb.shape or ((la == 0) != (lb == 0)).any():
        return False
    pairs = np.unique(np.stack([la[la > 0], lb[lb > 0]]), axis=1)
    one_to_one = len(pairs[0]) == len(np.unique(pairs[0])) == len(np.unique(pairs[1]))
    return one_to_one and all(a.class_of.get(int(i)) == b.class_of.get(int(j)) for i, j in pairs.T)


def _painted_unturned(rgb: np.ndarray, labels: np.ndarray, orientation: int) -> str | None:
    """What to say when ``labels`` fit the plants of ``rgb`` (a photo read upright, turned by EXIF
    ``orientation``) far better turned as the reader turns the photo: painted on its stored pixels,
    as viewers that ignore the orientation show it; else None."""
    from ._coco_labels import _turned
    from ._scale import vegetation_mask

    fg = labels > 0
    if fg.sum() < 100:
        return None
    plant = vegetation_mask(rgb / 255.0 if rgb.dtype == np.uint8 else rgb)
    as_given = float(plant[fg].mean())
    turned = float(plant[_turned(fg.astype(np.uint8), orientation) > 0].mean())
    if turned < 0.5 or turned < 2 * as_given:
        return None
    return (
        f"the photo is turned upright by its EXIF orientation, and these labels fit its plants far better "
        f"turned that way too ({turned:.0%} of their pixels plant-coloured against {as_given:.0%}): were they "
        "painted on the photo unturned (as a viewer that ignores the orientation shows it)? Paint on the photo "
        "as this plugin's reader opens it"
    )


def _held_rgb(image) -> np.ndarray:
    """The photo as training holds it: 8-bit photos as uint8 (H, W, 3), a quarter of float32's
    memory, converted crop by crop with the same division by 255 as :func:`to_rgb_float`; any
    other dtype as float32 (H, W, 3) in 0..1."""
    from ._images import to_rgb_uint8

    dtype = image.dtype if hasattr(image, "dtype") else np.asarray(image).dtype  # a lazy array is read once
    if dtype == np.uint8:  # to_rgb_uint8 of 8-bit data is exactly to_rgb_float * 255
        return to_rgb_uint8(image)
    return to_rgb_float(image)


def _held_labels(labels: np.ndarray, ids: list[int]) -> np.ndarray:
    """A copy of ``labels`` in :func:`ids_dtype` (a copy: a layer painted while training runs is not seen)."""
    return labels.astype(ids_dtype(max(ids, default=0)))


def _classes_found(
    model, samples, min_iou: float = 0.5, *, device="cpu", progress=None, cancel=None, enough: int = 10
) -> dict[str, str]:
    """{painted class name: the class of ``model`` that most of its painted instances are detected as}.

    The samples are segmented one by one (network alone); a detection counts
    for the painted instance it overlaps with mask IoU ``min_iou`` or more.
    It stops once every painted class has ``enough`` such votes (many painted
    photos need not all be segmented before training starts). Painted classes
    that no detection matches are left out. ``progress(0.0, message)`` names
    the photo; ``cancel`` raises :class:`Cancelled`.
    """
    from ._agreement import mask_ious
    from ._inference import segment

    wanted = {name for s in samples for name in s.class_of.values()}
    votes: dict[str, Counter] = {}
    for n, s in enumerate(samples):
        if progress is not None:
            progress(0.0, f"finding what the base model calls the painted plants: photo {n + 1} of {len(samples)}")
        found = segment(s.image, model, crf=False, vegetation="off", score_threshold=0.3, device=device, cancel=cancel)
        for i, k in zip(*np.nonzero(mask_ious(found.labels, s.labels) >= min_iou)):
            if int(k) + 1 in s.class_of:
                votes.setdefault(s.class_of[int(k) + 1], Counter())[found.class_names[i]] += 1
        if all(votes.get(name, Counter()).total() >= enough for name in wanted):
            break
    return {name: count.most_common(1)[0][0] for name, count in votes.items()}


# an instance smaller than this (pixels, as the network sees the crop) is left out of a crop's targets
MIN_AREA = 12


def _check_sizes(prepared: list[_Sample], largest_zoom: float) -> None:
    """Raise ValueError when no labelled instance reaches :data:`MIN_AREA` pixels even at the
    largest zoom training draws (``largest_zoom`` times each sample's own): every crop's targets
    would be empty, and training would learn only that nothing is there."""
    largest = max((int(np.bincount(s.labels.ravel())[1:].max(initial=0)) * s.zoom**2 for s in prepared), default=0)
    if largest * largest_zoom**2 < MIN_AREA:
        raise ValueError(
            f"every labelled instance is under {MIN_AREA} pixels as the network sees it (the largest: "
            f"{largest:.0f}): nothing to learn from; paint the whole plant, not a dot on it, or train at a "
            "larger scale (scale=)"
        )


def _targets(labels: np.ndarray, class_of: dict, index: dict, min_area: int = MIN_AREA):
    ids = [int(v) for v in np.unique(labels) if v > 0]
    masks, boxes, classes = [], [], []
    for k in ids:
        m = labels == k
        if m.sum() < min_area:
            continue
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        masks.append(m)
        classes.append(index[class_of[k]])
    h, w = labels.shape
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(classes, dtype=torch.int64),
        "masks": torch.from_numpy(np.stack(masks).astype(np.uint8))
        if masks
        else torch.zeros((0, h, w), dtype=torch.uint8),
    }


def _augment(rng: np.random.Generator, s: _Sample, crop: int, scale_range):
    img, lab = s.image, s.labels
    scale = s.zoom * float(np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]))))
    h, w = lab.shape
    # crop first (in source pixels), then rescale: cheaper than rescaling the whole image
    src = max(8, int(round(crop / scale)))
    ch, cw = min(src, h), min(src, w)
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    img = torch.from_numpy(np.ascontiguousarray(img[y0 : y0 + ch, x0 : x0 + cw])).permute(2, 0, 1)
    if img.dtype == torch.uint8:
        img = img.float() / 255
    lab = torch.from_numpy(np.ascontiguousarray(lab[y0 : y0 + ch, x0 : x0 + cw]))
    oh, ow = max(8, round(ch * scale)), max(8, round(cw * scale))
    if (oh, ow) != (ch, cw):
        img = F.interpolate(img[None], size=(oh, ow), mode="bilinear", align_corners=False)[0]
        lab = F.interpolate(lab[None, None].float(), size=(oh, ow), mode="nearest")[0, 0].to(torch.int32)
    if rng.random() < 0.5:
        img, lab = img.flip(-1), lab.flip(-1)
    if rng.random() < 0.5:
        img, lab = img.flip(-2), lab.flip(-2)
    k = int(rng.integers(4))
    if k:
        img, lab = torch.rot90(img, k, (-2, -1)), torch.rot90(lab, k, (-2, -1))
    # colour: exposure, contrast, per-channel cast
    gain = torch.tensor(rng.uniform(0.9, 1.1, 3), dtype=torch.float32)[:, None, None]
    mean = img.mean()
    img = (img - mean) * rng.uniform(0.8, 1.2) + mean * rng.uniform(0.8, 1.2)
    img = (img * gain).clamp_(0, 1)
    return img.contiguous(), lab.numpy()


def _zoom_for(scale, image, net, meta) -> float:
    """The zoom inference applies to ``image`` with segment's ``scale`` (None: the model's resize)."""
    if scale is None:
        t = net.transform
        h, w = image.shape[:2]
        return float(min(t.min_size[-1] / min(h, w), t.max_size / max(h, w)))
    if isinstance(scale, str) and scale == "auto":
        from types import SimpleNamespace

        from ._scale import estimate_scale

        return float(estimate_scale(image, SimpleNamespace(meta=meta)))
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0.01 <= float(scale) <= 16:
        raise ValueError(f"scale must be None, 'auto' or a number between 0.01 and 16, got {scale!r}")
    return float(scale)


def fit(
    net,
    draw: Callable[[np.random.Generator], _Sample],
    index: dict,
    iterations: int,
    dev,
    *,
    rng: np.random.Generator,
    lr: float,
    warmup: int,
    batch_size: int,
    crop: int,
    scale_range,
    progress=None,
    cancel=None,
    on_iteration: Callable[[int], None] | None = None,
    schedule: Callable[[int], float] | None = None,
    roi_batch: int | None = None,
    positive_fraction: float | None = None,
) -> list[float]:
    """The training loop: ``draw(rng)`` gives a sample per crop; returns the loss of each
    iteration done. ``on_iteration(done)`` runs after each (periodic checkpoints);
    ``schedule(it)`` in 0..1 replaces ``it / iterations`` in the learning-rate decay
    (a run limited by wall time decays by the clock). ``roi_batch``: proposals sampled
    per image for the box head while training, ``positive_fraction`` of them positives,
    which the mask head also learns from (None: the model's own sampler). On the CPU the
    network trains in channels-last memory format."""
    sampler = net.roi_heads.fg_bg_sampler
    saved_sampler = (sampler.batch_size_per_image, sampler.positive_fraction)
    if roi_batch is not None:
        sampler.batch_size_per_image = int(roi_batch)
    if positive_fraction is not None:
        sampler.positive_fraction = float(positive_fraction)
    net.to(dev).train()
    if torch.device(dev).type == "cpu":
        # oneDNN's convolutions run faster on NHWC tensors; the weights go back to NCHW after
        net.to(memory_format=torch.channels_last)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)

    def lr_at(it):  # linear warm-up, then cosine decay to 5%
        if it < warmup:
            return lr * (it + 1) / warmup
        if schedule is not None:
            t = min(1.0, schedule(it))
        else:
            t = (it - warmup) / max(1, iterations - warmup)
        return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))

    transform = net.transform
    # train at each crop's own scale: the model's resize would bring every crop of a batch to one
    # size (torchvision's GeneralizedRCNNTransform; its training-only switch, torchvision >= 0.13)
    saved_skip = getattr(transform, "_skip_resize", False)
    transform._skip_resize = True
    history: list[float] = []
    try:
        for it in range(iterations):
            if _should_stop(cancel):
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(it)
            images, targets = [], []
            for _ in range(batch_size):
                s = draw(rng)
                img, lab = _augment(rng, s, crop, scale_range)
                images.append(img.to(dev))
                targets.append({k: v.to(dev) for k, v in _targets(lab, s.class_of, index).items()})
            losses = net(images, targets)
            loss = sum(losses.values())
            value = loss.item()
            # a healthy Mask R-CNN loss is a few units and falls: far above its start, the weights have blown up
            if not math.isfinite(value) or value > max(_LOSS_CEILING, _LOSS_CEILING * history[0] if history else 0):
                raise TrainingDiverged(f"training diverged at iteration {it} (loss {value:.3g}); lower lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            history.append(float(loss.detach()))
            done = it + 1
            if progress is not None:
                parts = " ".join(f"{k.replace('loss_', '')}={float(v.detach()):.3f}" for k, v in losses.items())
                progress(done / iterations, f"iteration {done}/{iterations} loss={history[-1]:.3f} ({parts})")
            if on_iteration is not None:
                net.eval()  # the resize is skipped in training only: a check sees what inference does
                on_iteration(done)
                net.train()
    finally:
        transform._skip_resize = saved_skip
        sampler.batch_size_per_image, sampler.positive_fraction = saved_sampler
        net.to(memory_format=torch.contiguous_format)
        net.eval()
    # the last step's update is checked by no loss: weights it made NaN or infinite are never saved
    if history and not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
        raise TrainingDiverged(f"training diverged at iteration {len(history)} (weights not finite); lower lr")
    return history


def _as_base_names(prepared, wanted: list, names: list) -> list:
    """``wanted`` (the samples' classes) with each name that is one of the base model's ``names`` but
    for case or outer spaces ("Weed" for "weed") written as the base writes it, in the samples too, with a warning:
    such a typo made a new class and dropped the base's."""
    import warnings

    from ._label_files import clean_class_name

    base = {(clean_class_name(n) or n).casefold(): n for n in names[1:]}  # a base trained before names were cleaned
    renamed = {w: base[w.casefold()] for w in wanted if w not in names and w.casefold() in base}
    if not renamed:
        return wanted
    for sample in prepared:
        sample.class_of = {k: renamed.get(v, v) for k, v in sample.class_of.items()}
    said = ", ".join(f"'{w}' as '{b}'" for w, b in renamed.items())
    warnings.warn(f"classes taken as the base model writes them: {said}", stacklevel=3)
    return sorted({renamed.get(w, w) for w in wanted})


def _say_forgotten(base, names: list, wanted: list) -> None:
    """Warn when a model the user trained is the base and the new one will not know some of its
    classes (a new class makes a new head of the samples' classes alone): they would be gone without a word."""
    import warnings

    from ._models import MODEL_NAMES

    forgotten = [n for n in names[1:] if n not in wanted]
    if forgotten and not (isinstance(base, str) and base in MODEL_NAMES):
        warnings.warn(
            f"the new model will know only {', '.join(wanted)}: it forgets {', '.join(forgotten)} of its base; "
            "add labelled samples of those to keep them",
            stacklevel=3,
        )


def check_fit_options(lr, batch_size, crop, **counts) -> None:
    """The settings of the training loop that ``train`` and ``adapt`` share, checked before anything
    slow: ValueError naming the one that is wrong. ``counts``: whole numbers of at least 1 by name
    (``iterations=200``, ``rounds=3``); None skips one (its default is worked out later)."""
    for name, value in counts.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name} must be a whole number, at least 1, got {value!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.number)) or not 0 < lr < math.inf:
        raise ValueError(f"lr must be a positive, finite number, got {lr!r}")
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number, at least 1, got {batch_size!r}")
    if not isinstance(crop, (int, np.integer)) or isinstance(crop, bool) or crop < 16:
        raise ValueError(f"crop must be a whole number of pixels, at least 16, got {crop!r}")


def average_weights(net: torch.nn.Module, start: dict, alpha: float) -> None:
    """Set every floating-point weight and buffer of ``net`` to ``(1 - alpha) * start + alpha * itself``
    (WiSE-FT); integer buffers (BatchNorm's batch counts) are left as they are."""
    with torch.no_grad():
        for name, value in net.state_dict().items():
            if value.is_floating_point():
                value.mul_(alpha).add_(start[name].to(value.device, value.dtype), alpha=1.0 - alpha)


def train(
    samples: Sequence,
    base="garden",
    iterations: int = TRAIN_DEFAULTS["iterations"],
    output=None,
    device="auto",
    progress: Callable[[float, str], None] | None = None,
    cancel=None,
    *,
    overwrite: bool = False,
    seed: int = TRAIN_DEFAULTS["seed"],
    batch_size: int = TRAIN_DEFAULTS["batch_size"],
    lr: float | None = TRAIN_DEFAULTS["lr"],
    crop: int = TRAIN_DEFAULTS["crop"],
    scale_range=(0.75, 1.33),
    scale=None,
    warmup: int | None = None,
    meta: dict | None = None,
    paste: float = 0.5,
    roi_batch: int | None = None,
    positive_fraction: float | None = POSITIVE_FRACTION,
    frozen_blocks: int | None = None,
    wise_alpha: float = WISE_ALPHA,
) -> Path:
    """Fine-tune (or train) a Mask R-CNN on ``samples`` and save a checkpoint.

    ``samples``: ``(image, labels, classes)`` triples. ``image`` is an array or
    a photo file; ``labels`` an integer (H, W) array of instance ids (0: the
    background) or a label image file (``gardenseg train`` reads these);
    ``classes`` one class name for every instance, or ``{instance id: name}``.
    :func:`~napari_gardenseg.read_coco` gives such triples from an annotation
    tool's COCO export, :func:`~napari_gardenseg.read_yolo` from a YOLO
    segmentation dataset.

    ``base`` is ``"garden"``, ``"coco"``, ``"coco-v1"``, a checkpoint path, a
    :class:`Model`, or ``None`` to start from scratch with the small garden
    architecture. ``output`` is the checkpoint to write (``.pt`` added to a name without a
    suffix; a folder that cannot be written into is refused before training); ``None`` picks a new
    file in :func:`~napari_gardenseg._files.user_models_dir`. An existing
    ``output`` is refused before training starts unless ``overwrite=True``; a
    file that appears there during the training is kept, and the model is
    saved beside it (``<stem>-2.pt``, with a warning): the path returned says where.
    ``progress(fraction, message)`` is called after every iteration (and,
    with fraction 0, for each painted photo segmented first); ``cancel``
    (a ``threading.Event`` or a callable returning True) stops early, and what
    was learnt so far is saved all the same. Returns the checkpoint's path;
    ``load_model(path)`` loads it with its class names. Class names the base
    does not have get new box and mask predictors started from the base's
    (:func:`~napari_gardenseg._architectures.replace_heads`), not random ones:
    each from the class the base detects its painted instances as (the
    samples are segmented once for this), so a bundled-model fine-tune to one
    class "plant" starts from a network that finds plants.

    ``scale`` is the scale the model will be used at, as in :func:`segment`:
    ``None`` trains at the size the model's own resize gives each image (what
    ``segment(..., scale=None)`` sees), a number at that zoom, ``"auto"`` at
    :func:`~napari_gardenseg._scale.estimate_scale`'s estimate per image. Crops
    of ``crop`` pixels are taken at that scale times a random factor from
    ``scale_range``.

    ``paste`` (0..1): the share of crops drawn from scenes in which the
    painted plants of all samples are copied, crowded and rescaled, onto the
    samples' own soil (:class:`~napari_gardenseg._scenes.PaintedScenes`, the
    scenes :func:`~napari_gardenseg.adapt` builds); 0 trains on the samples alone.
    The default keeps what the bundled model learnt about touching plants when the
    painted photos show none (``benchmarks/eval_real.py --fine-tune 5``: without
    pasting, the touching plants of species not painted fall much further).

    Speed (``benchmarks/bench_finetune.py --profile``): most of an iteration is
    the backbone's and the mask head's convolutions, forward and backward.
    ``roi_batch`` proposals per image train the box head (None: the model's
    own sampler, 128 for the garden models); ``positive_fraction`` of them are
    positives, and each positive is also a RoI through the mask head (56x56
    masks for the bundled model), the costliest part of the heads. The default
    0.125 (torchvision's Mask R-CNN: 0.25) halves the mask head's work and
    learns as well on the checks of ``scripts/check_finetune.py`` and
    ``benchmarks/eval_real.py --fine-tune`` (docs/benchmarks.md); None keeps the model's.
    ``frozen_blocks`` first MobileNetV2 blocks of a ``garden_mobilenet`` model
    get no gradient (None: the model's own, 4 for the bundled one; a smaller
    number does not unfreeze those; other architectures refuse a number).

    ``wise_alpha``: the checkpoint holds ``(1 - wise_alpha) * start +
    wise_alpha * trained`` of every weight, where ``start`` is the network
    before the first iteration (the base, its new classes' predictors warm
    started as above): WiSE-FT, weight-space ensembling of the base and its
    fine-tuned copy (Wortsman et al., "Robust fine-tuning of zero-shot
    models", CVPR 2022). With a few painted photos the fine-tuned network
    alone forgets much of what the base knew (touching plants of species not
    painted); the average keeps it and the photos' gain as well
    (``benchmarks/eval_real.py --fine-tune 5``, docs/benchmarks.md). 1.0 saves the
    fine-tuned network itself; training from scratch (``base=None``) has no
    start to average with and ignores it.

    The checkpoint keeps the base's stored settings (CRF, object size) but not
    its ``mask_threshold``: the trained model runs at Mask R-CNN's 0.5 (three
    of four models trained on 1, 3 and 5 painted photos did better at 0.5 than
    at the bundled model's 0.3, ``eval_real.py --fine-tune``, docs/benchmarks.md);
    ``meta={"mask_threshold": t}`` stores one.

    Raises ValueError for a ``positive_fraction`` outside (0, 1] or a
    ``wise_alpha`` outside (0, 1].
    """
    if iterations is None:
        raise ValueError(
            f"iterations must be a whole number, at least 1 (the default is {TRAIN_DEFAULTS['iterations']})"
        )
    if scale is not None and not (isinstance(scale, str) and scale == "auto"):
        _zoom_for(scale, None, None, None)  # validate before anything slow
    lr = TRAIN_DEFAULTS["lr"] if lr is None else lr  # None: the default (the training widget's "auto")
    check_fit_options(lr, batch_size, crop, iterations=iterations)
    if frozen_blocks is not None and (
        isinstance(frozen_blocks, bool) or not isinstance(frozen_blocks, (int, np.integer)) or frozen_blocks < 0
    ):
        raise ValueError(f"frozen_blocks must be a whole number from 0 (every block trains), got {frozen_blocks!r}")
    if positive_fraction is not None and not 0 < positive_fraction <= 1:
        raise ValueError(f"positive_fraction must be in (0, 1], got {positive_fraction!r}")
    if isinstance(paste, bool) or not 0 <= paste <= 1:
        raise ValueError(f"paste must be a share between 0 and 1, got {paste!r}")
    if isinstance(wise_alpha, bool) or not 0 < wise_alpha <= 1:
        raise ValueError(f"wise_alpha must be in (0, 1] (1: the fine-tuned weights alone), got {wise_alpha!r}")
    named = output is not None
    if output is None:
        output = free_path(user_models_dir() / "my_model.pt")
    output = checkpoint_target(output, overwrite)  # before the (slow) training
    dev = resolve_device(device)
    rng = np.random.default_rng(seed)

    @functools.cache
    def start():
        """(the base or None, the network to train), built once at the first photo's zoom, after its checks."""
        torch.manual_seed(seed)
        if base is None:  # its resize rule; the heads are built for the classes below
            return None, ARCHITECTURES["garden_small"](num_classes=2)
        base_model = load_model(base, device="cpu")
        torch.manual_seed(seed)  # a first load builds (randomly initialises) a network: same start either way
        return base_model, copy.deepcopy(base_model.net)  # never train the cached model in place

    def zoom_of(rgb):  # each photo is held at the largest size training draws from it (the model's resize or scale)
        base_model, network = start()
        return _zoom_for(scale, rgb, network, {} if base_model is None else base_model.meta)

    prepared = prepare_samples(samples, zoom_of, max(scale_range), cancel)
    loaded, net = start()
    if base is None:
        arch, arch_kwargs, base_meta, base_name = "garden_small", {}, {}, None
    else:
        arch, arch_kwargs, base_meta = loaded.arch, dict(loaded.arch_kwargs), dict(loaded.meta)
        names = list(loaded.class_names)
        base_name = loaded.source
    wanted = sorted({name for s in prepared for name in s.class_of.values()})
    if "__background__" in wanted:  # index 0: the plants would be trained as background
        raise ValueError("'__background__' is the background's name, not a class to train: name the plants")
    if base is None:
        names = ["__background__", *wanted]
        torch.manual_seed(seed)
        net = ARCHITECTURES[arch](num_classes=len(names))
    check_free_space(output, state_bytes(net.state_dict()), "checkpoint")  # not after the training
    _check_sizes(prepared, max(scale_range))  # before the warm start below segments every photo
    if base is not None:
        wanted = _as_base_names(prepared, wanted, names)
    if len({w.casefold() for w in wanted}) < len(wanted):
        import warnings

        warnings.warn(f"class names that differ only in case are different classes: {', '.join(wanted)}", stacklevel=2)
    if base is not None and not set(wanted) <= set(names):
        _say_forgotten(base, names, wanted)
        old_names, names = names, ["__background__", *wanted]
        # warm: the new classes start from what the base finds, each from the class it gives them
        try:
            found = _classes_found(loaded, prepared, device=dev, progress=progress, cancel=cancel)
        except Cancelled:
            raise Cancelled("training was cancelled before the first iteration; nothing was saved") from None
        replace_heads(net, names, old_names, start_from=found)
    if arch not in ARCHITECTURES:
        raise ModelError(f"cannot save a checkpoint for architecture {arch!r}; use a named model or a checkpoint")
    if frozen_blocks is not None:
        if arch != "garden_mobilenet":
            raise ValueError(f"frozen_blocks applies to garden_mobilenet models (MobileNetV2 blocks), not {arch}")
        blocks = list(net.backbone.body.children())
        if frozen_blocks > len(blocks):  # its type and sign were checked before anything slow
            raise ValueError(
                f"frozen_blocks must be a whole number from 0 (every block trains) to {len(blocks)}, got {frozen_blocks!r}"
            )
        for block in blocks[:frozen_blocks]:
            for p in block.parameters():
                p.requires_grad_(False)
    index = {n: i for i, n in enumerate(names)}

    warmup = warmup if warmup is not None else min(200, iterations // 10)
    draw = lambda r: prepared[int(r.integers(len(prepared)))]  # noqa: E731
    if paste:
        from ._scenes import PaintedScenes

        draw = PaintedScenes(prepared, draw, paste, rng, size=max(crop, 384))
    averaged = base is not None and wise_alpha < 1
    start_weights = {k: v.detach().clone() for k, v in net.state_dict().items()} if averaged else None
    start = time.perf_counter()
    history = fit(
        net,
        draw,
        index,
        iterations,
        dev,
        rng=rng,
        lr=lr,
        warmup=warmup,
        batch_size=batch_size,
        crop=crop,
        scale_range=scale_range,
        progress=progress,
        cancel=cancel,
        roi_batch=roi_batch,
        positive_fraction=positive_fraction,
    )
    done = len(history)
    if done == 0:
        raise Cancelled("training was cancelled before the first iteration; nothing was saved")
    if averaged:
        average_weights(net, start_weights, wise_alpha)
    info = {
        "base": base_name,
        "iterations": done,
        "iterations_planned": iterations,
        "seed": seed,
        "batch_size": batch_size,
        "crop": crop,
        "scale_range": [float(v) for v in scale_range],
        "scale": scale,
        "zooms": [round(float(s_.zoom * s_.held), 3) for s_ in prepared[:50]],
        "lr": lr,
        "paste": paste,
        "roi_batch": roi_batch,
        "positive_fraction": positive_fraction,
        "frozen_blocks": frozen_blocks,
        "wise_alpha": wise_alpha if averaged else 1.0,
        "samples": len(prepared),
        "device": str(dev),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "loss_first": history[:20],
        "loss_last": history[-20:],
        "torch": str(torch.__version__),
    }
    # the base's mask threshold fits its own soft masks; trained on painted masks, the network
    # measured better at Mask R-CNN's 0.5 (docs/benchmarks.md: eval_real.py --fine-tune), so it is not inherited
    out_meta = {k: v for k, v in derived_meta(base_meta).items() if k != "mask_threshold"}
    out_meta["training"] = info
    out_meta.update(meta or {})
    output = free_at_the_end(output, overwrite, "model", say=named)  # never lose the training to a name taken meanwhile
    return save_checkpoint(
        net,
        output,
        class_names=names,
        arch=arch,
        arch_kwargs=arch_kwargs,
        meta=out_meta,
        overwrite=overwrite,
        rescue=True,
    )
