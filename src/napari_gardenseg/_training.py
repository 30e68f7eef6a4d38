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
from ._cancel import Cancelled, check_callbacks
from ._cancel import should_stop as _should_stop
from ._files import check_free_space, checkpoint_target, free_at_the_end, free_path, user_models_dir
from ._models import ModelError, derived_meta, load_model, resolve_device, save_checkpoint, state_bytes
from ._options import FIT_DEFAULTS, FitOptions, fraction
from ._rng import keeps_global_rng
from ._train_samples import MIN_AREA, Sample, check_sizes, prepare_samples

# the share of the fine-tuned weights in the saved ones (train's wise_alpha, WiSE-FT)
WISE_ALPHA = 0.5

__all__ = ["train", "prepare_samples"]


# A summed loss above this (and this many times the first one) means the weights blew up.
_LOSS_CEILING = 1e3


class TrainingDiverged(ValueError):
    """The loss became NaN, infinite or blew up (or the last step made the weights so): the settings
    (lr) do not suit these samples, nothing was saved."""


# Share of positives among the proposals sampled per image while training (FitOptions' default)
POSITIVE_FRACTION = FIT_DEFAULTS.positive_fraction


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


def _augment(rng: np.random.Generator, s: Sample, crop: int, scale_range):
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
    draw: Callable[[np.random.Generator], Sample],
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


def average_weights(net: torch.nn.Module, start: dict, alpha: float) -> None:
    """Set every floating-point weight and buffer of ``net`` to ``(1 - alpha) * start + alpha * itself``
    (WiSE-FT); integer buffers (BatchNorm's batch counts) are left as they are."""
    with torch.no_grad():
        for name, value in net.state_dict().items():
            if value.is_floating_point():
                value.mul_(alpha).add_(start[name].to(value.device, value.dtype), alpha=1.0 - alpha)


@keeps_global_rng
def train(
    samples: Sequence,
    base="garden",
    iterations: int = FIT_DEFAULTS.iterations,
    output=None,
    device="auto",
    progress: Callable[[float, str], None] | None = None,
    cancel=None,
    *,
    overwrite: bool = False,
    seed: int = FIT_DEFAULTS.seed,
    batch_size: int = FIT_DEFAULTS.batch_size,
    lr: float | None = FIT_DEFAULTS.lr,
    crop: int = FIT_DEFAULTS.crop,
    scale_range=FIT_DEFAULTS.scale_range,
    scale=None,
    warmup: int | None = None,
    meta: dict | None = None,
    paste: float = 0.5,
    roi_batch: int | None = None,
    positive_fraction: float | None = FIT_DEFAULTS.positive_fraction,
    frozen_blocks: int | None = None,
    wise_alpha: float = WISE_ALPHA,
) -> Path:
    """Fine-tune (or train) a Mask R-CNN on ``samples`` and save a checkpoint.

    ``samples``: ``(image, labels, classes)`` triples. ``image`` is an array or
    a photo file; ``labels`` an integer (H, W) array of instance ids (0: the
    background), a bool mask (each connected plant an instance, with one class
    name) or a label image file (``gardenseg train`` reads these);
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

    The training loop's settings (``iterations``, ``batch_size``, ``lr``, ``crop``
    in pixels, ``seed``, ``warmup``, ``scale_range``, ``roi_batch``,
    ``positive_fraction``) mean what :class:`~napari_gardenseg.FitOptions` says,
    which checks them; ``lr=None`` is its default. ``device``: "auto", "cpu",
    "cuda", "cuda:N" or "mps" (:func:`~napari_gardenseg.resolve_device`).
    ``meta``: entries stored in the checkpoint over the ones training writes.

    Returns the checkpoint's path (:class:`pathlib.Path`).

    Raises ValueError for a setting :class:`~napari_gardenseg.FitOptions` refuses,
    a ``paste`` outside [0, 1], a ``wise_alpha`` outside (0, 1], a
    ``frozen_blocks`` outside the network's blocks, or samples that cannot be
    trained on (the message names the sample and what to do), and
    :class:`~napari_gardenseg.ImageError` (a ValueError) for a photo or label
    file that cannot be read; FileNotFoundError for a file that is not there;
    :class:`~napari_gardenseg.OutputExistsError` for an existing ``output``
    without ``overwrite=True``; :class:`~napari_gardenseg.ModelError` for a base
    that cannot be loaded or saved again; :class:`~napari_gardenseg.DeviceError`
    for a device this machine lacks; ``TrainingDiverged`` (a ValueError) when the
    loss or the weights stop being finite (nothing is saved; lower ``lr``);
    :class:`~napari_gardenseg.Cancelled` when cancelled before the first
    iteration (nothing is saved); TypeError for a ``progress`` that is not
    callable or a ``cancel`` that is neither an Event nor a callable.
    """
    if iterations is None:
        raise ValueError(f"iterations must be a whole number, at least 1 (the default is {FIT_DEFAULTS.iterations})")
    check_callbacks(progress, cancel)
    if scale is not None and not (isinstance(scale, str) and scale == "auto"):
        _zoom_for(scale, None, None, None)  # validate before anything slow
    lr = FIT_DEFAULTS.lr if lr is None else lr  # None: the default (the training widget's "auto")
    FitOptions(  # each checked before anything slow
        iterations=iterations,
        batch_size=batch_size,
        lr=lr,
        crop=crop,
        seed=seed,
        warmup=warmup,
        scale_range=scale_range,
        roi_batch=roi_batch,
        positive_fraction=positive_fraction,
    )
    if frozen_blocks is not None and (
        isinstance(frozen_blocks, bool) or not isinstance(frozen_blocks, (int, np.integer)) or frozen_blocks < 0
    ):
        raise ValueError(f"frozen_blocks must be a whole number from 0 (every block trains), got {frozen_blocks!r}")
    paste = fraction("paste", paste)
    wise_alpha = fraction("wise_alpha", wise_alpha, open_low=True)
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
    check_sizes(prepared, max(scale_range))  # before the warm start below segments every photo
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
    before = file_key(output)
    try:
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
    except KeyboardInterrupt:
        raise interrupted_save(output, overwrite, before) from None


def interrupted_save(output: Path, overwrite: bool, before: tuple | None) -> KeyboardInterrupt:
    """The interrupt to raise for a second Ctrl-C ("save nothing") that came while a model was
    saved at ``output`` (``before``: :func:`file_key` of what was there). Once the new file is in
    place it is removed where the name was free, so that nothing was saved; where it replaced an
    earlier model (gone by then), the interrupt says so, and the CLI prints it."""
    if file_key(output) in (before, None):
        return KeyboardInterrupt()
    if not overwrite or before is None:
        output.unlink(missing_ok=True)  # the new file only: the name was free
        return KeyboardInterrupt()
    return KeyboardInterrupt(f"{output.name} was saved (it replaced the earlier model)")


def file_key(path: Path) -> tuple | None:
    """Which file is at ``path`` (device, inode, size, change time), None where there is none: an
    atomic write's rename puts a new one there."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
