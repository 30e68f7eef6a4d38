"""``adapt()``: fit a model to the user's own unlabelled photos.

Self-training with a domain-specific scene generator, in rounds:

1. every photo is resized to the size the model sees it at (its own
   ``min_size``/``max_size`` resize, what ``segment(..., scale=None)`` does);
   a part is held back for checking (every fifth photo, or the right quarter
   of each photo when there are fewer than four);
2. harvest (:mod:`._harvest`): single plants where colour, model and CRF
   agree, soil with the vegetation filled in, and pseudo-labels (harvested
   plants plus confident detections, unlabelled vegetation painted over with
   soil);
3. train on a mix of scenes of harvested plants pasted crowded onto the
   photos' soil (:mod:`._scenes`), the pseudo-labelled photos, and a few
   synthetic scenes (:func:`~napari_gardenseg.synthetic.garden_scene`) so the
   model keeps what it knew;
4. measure agreement on the held-back part (:mod:`._agreement`); harvest
   again with the better model and train another round, until a round does
   not improve agreement, the rounds or the time run out. The best round is
   saved; when no round beats the base model, the base model's weights are
   (the report says so): adapting never hands back a model that measured
   worse than the one it started from.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import numbers
import os
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ._cancel import Cancelled, check_callbacks
from ._cancel import should_stop as _should_stop
from ._rng import keeps_global_rng
from ._train_samples import Sample

__all__ = ["adapt", "default_minutes", "default_output", "report_path", "outcome_of"]

# share of training draws: pseudo-labelled photos and synthetic scenes; the rest are pasted scenes
PSEUDO_SHARE = 0.3
SCENE_SIZE = 384
# the least training time a time-limited round is given: less trains too few iterations to tell
# anything from the base model
MIN_ROUND_SECONDS = 30.0


def default_minutes(n_photos: int) -> float:
    """The default time budget: 5 minutes plus half a minute per photo, at most 25 (fits 30 on 2 cores)."""
    return float(min(25.0, 5.0 + 0.5 * n_photos))


def report_path(model_path) -> Path:
    """Where :func:`adapt` writes its report: ``MODEL.json`` next to ``MODEL.pt``."""
    return Path(model_path).with_suffix(".json")


def _is_adapt_report(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and {"model", "rounds", "kept_round"} <= set(data)


def check_report_target(model_path, overwrite: bool = False) -> Path:
    """The report path of the checkpoint ``model_path`` (:func:`report_path`), checked before the work:
    an earlier adapt report there is replaced only with ``overwrite``
    (:class:`~napari_gardenseg.OutputExistsError` (a FileExistsError) otherwise); any other file there is never
    replaced (:class:`~napari_gardenseg._files.ForeignFileError`: a user's own ``MODEL.json``)."""
    from ._files import ForeignFileError, check_target

    path = report_path(model_path)
    if path.is_file() and not _is_adapt_report(path):
        raise ForeignFileError(
            f"{str(path)!r} is there and is not an adapt report; adapt writes its report beside the model "
            f"as {path.name}, and never replaces a file it did not write. Choose another name for the model "
            "(or move that file)."
        )
    return check_target(path, overwrite, what="adapt report")


def default_output() -> Path:
    """A new ``adapted[-N].pt`` in the user's models folder whose report name is free as well."""
    from ._files import free_path, user_models_dir

    return free_path(user_models_dir() / "adapted.pt", taken=taken_name)


def taken_name(path: Path) -> bool:
    """Whether an adapted model's name is in use: the model's file or its report's."""
    return path.exists() or report_path(path).exists()


def _read(item, name: str) -> tuple[np.ndarray | None, str | None]:
    """(float RGB (H, W, 3), None) of a photo (path or array), or (None, why) for a photo without
    colour, which adapt cannot find plants in (it finds them by their colour)."""
    from ._hints import COLOURLESS
    from ._image_source import open_image

    source = open_image(item)  # a file or an array, read as segment reads it
    if source.channels < 3 or source.colourless():
        return None, f"{name}: {'a grey image' if source.channels < 3 else COLOURLESS.split(':')[0]}"
    return source.read(), None


def _photo_names(images) -> list[str]:
    """A name per photo for messages and the report: file paths relative to their common folder
    (``day1/IMG_1.jpg`` and ``day2/IMG_1.jpg`` stay apart), ``image K`` for arrays."""

    def full(item) -> Path:  # as given (a link keeps its own name), made absolute
        return Path(os.path.abspath(Path(item).expanduser()))

    paths = [full(item) for item in images if isinstance(item, (str, os.PathLike))]
    root = Path(os.path.commonpath([p.parent for p in paths])) if paths else None
    return [
        full(item).relative_to(root).as_posix() if isinstance(item, (str, os.PathLike)) else f"image {i + 1}"
        for i, item in enumerate(images)
    ]


def _training_seconds(left: float, rounds: int, between: float, check_seconds: float) -> float:
    """Each of ``rounds`` rounds' training time when they share ``left`` seconds, with a harvest
    and check (``between``) between two rounds and a check (``check_seconds``) after each."""
    return (left - (rounds - 1) * between) / rounds - check_seconds


def _to_network_size(rgb: np.ndarray, net) -> np.ndarray:
    """uint8 (h, w, 3) at the size the model's own resize gives ``rgb`` (float (H, W, 3))."""
    import torch
    import torch.nn.functional as F

    from ._forward import own_size

    h, w = rgb.shape[:2]
    oh, ow = (max(8, n) for n in own_size(net, (h, w)) or (h, w))
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    if (oh, ow) != (h, w):
        x = F.interpolate(x, size=(oh, ow), mode="bilinear", align_corners=False, antialias=oh * ow < h * w)
    return (x[0].permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()


def _split(photos: list, holdout: float):
    """(training photos, held-back photos): every k-th photo, or the right quarter of each when few."""
    n = len(photos)
    if n >= 4:
        n_hold = max(1, int(round(n * holdout)))
        held = set(np.linspace(0, n - 1, n_hold + 2)[1:-1].round().astype(int).tolist())
        return [p for i, p in enumerate(photos) if i not in held], [photos[i] for i in sorted(held)], sorted(held)
    train, check = [], []
    for p in photos:
        cut = int(p.shape[1] * 0.75)
        train.append(np.ascontiguousarray(p[:, :cut]))
        check.append(np.ascontiguousarray(p[:, cut:]))
    return train, check, "right quarter of each photo"


class _Mix:
    """Draws training samples: pasted scenes, pseudo-labelled photos, synthetic scenes."""

    def __init__(self, rng, materials, synthetic: float, class_names, seed: int):
        self.rng, self.synthetic = rng, synthetic
        self.set(materials)
        from .synthetic import CLASS_NAMES

        self.synth_ok = synthetic > 0 and set(CLASS_NAMES) <= set(class_names)
        self.next_seed = 7_000_000 + 1000 * seed
        self.synth: list = [self._synthetic() for _ in range(4)] if self.synth_ok else []
        self.made = {"scenes": 0, "pseudo": 0, "synthetic": 0}

    def set(self, materials) -> None:
        self.soils = [m for m in materials if m.soil is not None]
        self.plants = [p for m in materials for p in m.plants]
        self.by_photo = {}
        for p in self.plants:
            self.by_photo.setdefault(p.photo, []).append(p)
        self.pseudo = [m for m in materials if m.pseudo is not None and m.pseudo_classes]

    def _synthetic(self):
        from .synthetic import garden_scene

        # both styles, as the bundled model was trained (photo-like scenes and the older garden scenes)
        image, labels, classes = garden_scene(self.next_seed, style="photo" if self.rng.random() < 0.75 else "garden")
        self.next_seed += 1
        return Sample(image, labels.astype(np.int32), classes)

    def __call__(self, rng):
        from ._scenes import compose_scene

        r = rng.random()
        scenes = bool(self.plants and self.soils)
        if self.synth and (r < self.synthetic or not (scenes or self.pseudo)):
            self.made["synthetic"] += 1
            if rng.random() < 0.1:  # refresh the small pool now and then
                self.synth[int(rng.integers(len(self.synth)))] = self._synthetic()
            return self.synth[int(rng.integers(len(self.synth)))]
        if self.pseudo and (r < self.synthetic + PSEUDO_SHARE or not scenes):
            m = self.pseudo[int(rng.integers(len(self.pseudo)))]
            self.made["pseudo"] += 1
            return Sample(m.pseudo_image, m.pseudo, m.pseudo_classes)
        soil = self.soils[int(rng.integers(len(self.soils)))]
        own = self.by_photo.get(soil.index, [])
        plants = own if len(own) >= 3 and rng.random() < 0.7 else self.plants
        image, labels, classes = compose_scene(rng, soil.soil, plants, SCENE_SIZE)
        self.made["scenes"] += 1
        return Sample(image, labels, classes)


@keeps_global_rng
def adapt(
    images: Sequence,
    base="garden",
    *,
    minutes: float | None = None,
    output=None,
    progress: Callable[[float, str], None] | None = None,
    cancel=None,
    overwrite: bool = False,
    rounds: int = 3,
    iterations: int | None = None,
    holdout: float = 0.2,
    synthetic: float = 0.15,
    lr: float = 1e-3,
    batch_size: int = 2,
    crop: int = 320,
    device="auto",
    seed: int = 0,
    on_round: Callable[[int, object], None] | None = None,
) -> Path:
    """Adapt a model to unlabelled photos by self-training on scenes built from them; save a new checkpoint.

    ``images``: photos as arrays (anything :func:`to_rgb_float` takes),
    file paths, or folders (each stands for the image files directly in it).
    ``base``: the model to start from (``"garden"``, a checkpoint path, a
    :class:`Model`). ``minutes``: wall-time budget for the whole run
    (default :func:`default_minutes`); ``rounds``: at most this many rounds of
    harvest and training, each stopped by its share of the time or, when
    given, after ``iterations``. ``output``: the checkpoint to write (``.pt`` added to a
    name without a suffix; a folder that cannot be written into is refused before the run); None
    picks a new name in the user's models folder; an existing file is refused
    unless ``overwrite=True``, and one that appears during the run (model or
    report) is kept: the model goes beside it, with a warning. A report (plants harvested, rounds, the
    agreement measures per round; see :mod:`._agreement`) is written next to
    it as ``MODEL.json`` and stored in the checkpoint's ``meta["adapt"]``.

    ``progress(fraction, message)`` reports the stages; ``cancel`` (an Event
    or a callable) stops the run: the round it stops is not kept (its weights
    were not checked), so before the end of round 1's check nothing is saved
    and :class:`Cancelled` is raised; later the best checked weights so far
    are saved. ``on_round(round, model)`` is called after each round's check
    (e.g. to keep a snapshot).

    ``holdout``: the share of the photos held back for the check, in (0, 1)
    (at least one photo; with fewer than four photos the right quarter of each
    photo is held back instead); ``synthetic``: the share of training draws that
    are synthetic scenes, in [0, 1] (kept so the model still finds the
    plants it knew). ``iterations``, ``lr``, ``batch_size``, ``crop``
    (pixels) and ``seed`` mean what :class:`~napari_gardenseg.FitOptions`
    says; rounds after the first train at half ``lr``. ``device``: "auto",
    "cpu", "cuda", "cuda:N" or "mps".

    Returns the checkpoint's path (:class:`pathlib.Path`).

    Raises ValueError for a setting outside its range (the message names it),
    for no photos, or when the photos give nothing to learn from (no
    plant-coloured components that are single plants, no confident
    detections) or none has colour (a photo without colour, grey or black and
    white, is left out with a warning), and :class:`~napari_gardenseg.ImageError`
    (a ValueError) for a photo that cannot be read; FileNotFoundError for a photo that is not there;
    :class:`~napari_gardenseg.OutputExistsError` for an existing
    ``output`` or report without ``overwrite=True``, and ``ForeignFileError``
    (an OutputExistsError) for a ``MODEL.json`` that adapt did not write;
    :class:`~napari_gardenseg.ModelError` and
    :class:`~napari_gardenseg.DeviceError` as :func:`load_model` raises them;
    :class:`Cancelled` when cancelled before round 1's check; TypeError for a
    ``progress`` that is not callable or a ``cancel`` that is neither an Event
    nor a callable.
    """
    import torch

    from ._files import check_free_space, checkpoint_target, free_at_the_end
    from ._harvest import harvest_photo
    from ._image_folders import expand_folders
    from ._models import Model, derived_meta, load_model, resolve_device, save_checkpoint, state_bytes
    from ._options import FitOptions, fraction, whole_number
    from ._training import POSITIVE_FRACTION, fit
    from ._vegetation import data_window

    start = time.perf_counter()
    from ._image_reader import is_image_path

    one = is_image_path(images) or isinstance(images, (bytes, bytearray)) or hasattr(images, "read")
    if one or (isinstance(images, np.ndarray) and images.ndim < 4):
        images = [images]  # one photo; a 4-D array is a stack of photos
    images = expand_folders(list(images))
    if not images:
        raise ValueError("adapt() needs at least one photo")
    if minutes is not None and (
        isinstance(minutes, (bool, np.bool_))
        or not isinstance(minutes, numbers.Real)
        or not (float(minutes) > 0 and math.isfinite(float(minutes)))
    ):
        raise ValueError(f"minutes must be a positive number, got {minutes!r}")
    check_callbacks(progress, cancel)
    rounds = whole_number("rounds", rounds)
    FitOptions(iterations=iterations, batch_size=batch_size, lr=lr, crop=crop, seed=seed)  # each checked
    holdout = fraction("holdout", holdout, open_low=True, open_high=True)
    synthetic = fraction("synthetic", synthetic)
    named = output is not None
    output = default_output() if output is None else output
    output = checkpoint_target(output, overwrite)
    if report_path(output) == output:
        raise ValueError(f"the model's file name must not end in .json ({output.name}): its report is MODEL.json")
    check_report_target(output, overwrite)
    budget = 60.0 * (float(minutes) if minutes is not None else default_minutes(len(images)))
    deadline = start + budget
    report = progress or (lambda f, m: None)
    dev = resolve_device(device)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)

    report(0.0, "loading model")
    loaded = load_model(base, device=dev)
    check_free_space(output, state_bytes(loaded.net.state_dict()), "checkpoint")  # not after the rounds
    torch.manual_seed(seed)  # a model built on loading drew from it: the same seed, the same run either way
    net = copy.deepcopy(loaded.net).eval()  # never train the cached model in place
    model = Model(
        net, list(loaded.class_names), dev, loaded.source, loaded.arch, dict(loaded.arch_kwargs), dict(loaded.meta)
    )
    photos, names, first_of, repeated, colourless = [], [], {}, [], []
    for i, name in enumerate(_photo_names(images)):
        if _should_stop(cancel):
            raise Cancelled("adapt was cancelled; nothing was saved")
        rgb, why = _read(images[i], name)
        if rgb is None:  # a mask or a black-and-white shot among the photos: one does not stop the run
            colourless.append(why)
            continue
        # as segment gives the network an orthomosaic: its data, without the nodata frame
        y0, x0, y1, x1 = data_window(rgb)
        photo = _to_network_size(rgb[y0:y1, x0:x1], net)
        # a photo given twice (a folder and a file in it, a copy) would be trained on and held back at
        # once, and the check would measure training data: each photo counts once
        key = hashlib.sha1(photo.tobytes()).hexdigest()
        if key in first_of:
            repeated.append(f"{name} (as {first_of[key]})")
        else:
            first_of[key] = name
            photos.append(photo)
            names.append(name)
        report(0.02 * (i + 1) / len(images), f"reading photo {i + 1} of {len(images)}")
    no_colour = (
        "adapt finds the plants to learn from by their colour, so it needs colour photos: "
        + "; ".join(colourless[:5])
        + (" ..." if len(colourless) > 5 else "")
    )
    if not photos:
        raise ValueError(no_colour)
    if colourless:
        warnings.warn(f"adapt: left out {len(colourless)} photo(s) without colour; {no_colour}", stacklevel=2)
    if repeated:
        warnings.warn(
            f"adapt: {len(repeated)} photo(s) given more than once, each used once: " + ", ".join(repeated[:5]),
            stacklevel=2,
        )
    train_photos, check_photos, held = _split(photos, holdout)

    def harvest(stage: str, f0: float, f1: float):
        out = []
        for i, p in enumerate(train_photos):
            if _should_stop(cancel):
                raise Cancelled("adapt was cancelled")
            out.append(harvest_photo(model, p, i, rng, cancel=cancel))
            report(f0 + (f1 - f0) * (i + 1) / len(train_photos), f"{stage}: photo {i + 1} of {len(train_photos)}")
        return out

    try:
        t0 = time.perf_counter()
        materials = harvest("finding single plants", 0.02, 0.1)
        harvest_seconds = time.perf_counter() - t0
    except Cancelled:
        raise Cancelled("adapt was cancelled; nothing was saved") from None
    counts = _counts(materials)
    if counts["plants"] == 0 and counts["pseudo"] == 0:
        reasons = sorted({m.reason for m in materials if not m.informative})
        raise ValueError(
            "found nothing to learn from in these photos: no plant-coloured component is a single plant and "
            "the model is confident about none"
            + (f" ({'; '.join(reasons)})" if reasons else "")
            + ". adapt() needs top-down photos of plants on soil or another background of a different colour."
        )
    areas = np.array([p.area for m in materials for p in m.plants] or [64.0])
    size_range = (max(32.0, 0.5 * np.percentile(areas, 5)), 2.0 * np.percentile(areas, 95))
    from ._agreement import make_check_set, measure_agreement

    t0 = time.perf_counter()
    check = make_check_set(np.random.default_rng(seed + 1), check_photos, size_range, model=model, cancel=cancel)
    history = [{"round": 0, "what": "base model", "harvest": counts, **measure_agreement(model, check, cancel=cancel)}]
    first_counts = counts
    check_seconds = time.perf_counter() - t0
    report(0.12, f"base model: agreement {history[0]['agreement']:.3f}")
    left = deadline - time.perf_counter() - 5.0
    if iterations is None and _training_seconds(left, 1, 0.0, check_seconds) < MIN_ROUND_SECONDS:
        spent = time.perf_counter() - start
        # what was spent (the base check in it), round 1's training and its check
        need = int(np.ceil((spent + 5.0 + MIN_ROUND_SECONDS + check_seconds) / 60.0))
        raise ValueError(
            f"the {budget / 60:g}-minute budget went on reading {len(photos)} photo{'s' * (len(photos) != 1)}, "
            "finding plants and "
            f"checking the base model ({spent:.0f} s), which leaves too little time to train; give at least "
            f"minutes={need} (--minutes {need} on the command line) or fewer photos. Nothing was saved."
        )

    index = {n: i for i, n in enumerate(model.class_names)}
    mix = _Mix(rng, materials, synthetic, model.class_names, seed)
    if not (mix.pseudo or (mix.plants and mix.soils) or mix.synth):
        raise ValueError(
            "the photos show too little bare ground to build training scenes on, and the model is "
            "confident about none of their plants; adapt() needs photos with soil between plants"
        )
    # training-time RoI sampling only (not saved): fewer RoIs make a CPU iteration cheaper
    net.roi_heads.fg_bg_sampler.batch_size_per_image = 64
    net.rpn._post_nms_top_n["training"] = 300
    # round 0 (the base model) is the one to beat
    base_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    best, best_state, kept_round, stopped, done_total = history[0]["agreement"], None, None, "all rounds done", 0
    last_round = rounds
    for r in range(1, rounds + 1):
        if r > last_round:
            stopped = "time budget spent (harvesting again would leave too little time to train)"
            break
        left = deadline - time.perf_counter() - 5.0

        def slice_of(last, left=left, r=r, between=harvest_seconds + check_seconds):  # rounds r..last share it
            return _training_seconds(left, last - r + 1, between, check_seconds)

        if iterations is None:
            # fewer rounds when harvesting again and checking would take over 30% of the time left, or
            # when a round would train for less than MIN_ROUND_SECONDS: this one gets their time
            while last_round > r and (
                (last_round - r) * (harvest_seconds + check_seconds) > 0.3 * left
                or slice_of(last_round) < MIN_ROUND_SECONDS
            ):
                last_round -= 1
        slice_s = slice_of(last_round)
        if r > 1 and ((iterations is None and slice_s < MIN_ROUND_SECONDS) or time.perf_counter() > deadline - 5):
            stopped = "time budget spent"
            break
        round_start = time.perf_counter()
        round_end = round_start + max(slice_s, 10.0)
        cap = iterations if iterations is not None else 100_000
        # the bar spreads over the rounds that will run (fewer when the time is short)
        f0, f1 = 0.12 + 0.85 * (r - 1) / last_round, 0.12 + 0.85 * r / last_round

        done = [0]  # a round that starts always trains at least one iteration

        def stop(round_end=round_end, done=done):
            late = (iterations is None and time.perf_counter() > round_end) or time.perf_counter() > deadline
            return _should_stop(cancel) or (late and done[0] > 0)

        def schedule(it, round_start=round_start, round_end=round_end, cap=cap):
            by_clock = (time.perf_counter() - round_start) / max(round_end - round_start, 1e-6)
            return it / cap if iterations is not None else by_clock

        def tick(
            fraction, message, f0=f0, f1=f1, r=r, round_start=round_start, round_end=round_end, done=done, cap=cap
        ):
            done[0] += 1
            message = message.split(" (")[0]
            if iterations is None:  # time-limited: the cap is no count the round will reach
                fraction = (time.perf_counter() - round_start) / max(round_end - round_start, 1e-6)
                message = message.replace(f"/{cap}", "") + " (time-limited)"
            report(f0 + (f1 - f0) * 0.85 * min(fraction, 1.0), f"round {r}: {message}")

        losses = fit(
            net,
            mix,
            index,
            cap,
            dev,
            rng=rng,
            lr=lr if r == 1 else lr / 2,
            warmup=min(20, cap // 5),
            batch_size=batch_size,
            crop=crop,
            scale_range=(0.8, 1.25),
            progress=tick,
            cancel=stop,
            schedule=schedule,
            positive_fraction=POSITIVE_FRACTION,
        )
        done_total += len(losses)
        if _should_stop(cancel):
            # this round's weights were never checked (a few steps can undo the base model): not kept
            stopped = "cancelled"
            history.append({"round": r, "iterations": len(losses), "what": "cancelled before its check: not kept"})
            break
        try:
            measured = measure_agreement(model, check, cancel=cancel)
        except Cancelled:
            measured = None
        if measured is None or _should_stop(cancel):
            stopped = "cancelled"
            history.append({"round": r, "iterations": len(losses), "what": "cancelled during its check: not kept"})
            break
        history.append(
            {
                "round": r,
                "iterations": len(losses),
                "seconds": round(time.perf_counter() - round_start, 1),
                "loss_last": round(float(np.mean(losses[-20:])), 4) if losses else None,
                **measured,
            }
        )
        report(f0 + (f1 - f0) * 0.9, f"check after round {r}: agreement {measured['agreement']:.3f}")
        if on_round is not None:
            on_round(r, model)
        if measured["agreement"] <= best:
            stopped = f"round {r} did not improve agreement"
            break
        best = measured["agreement"]
        best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        kept_round = r
        if r < last_round and time.perf_counter() < deadline - (harvest_seconds + check_seconds + MIN_ROUND_SECONDS):
            try:
                t0 = time.perf_counter()
                materials = harvest(f"round {r + 1}: harvesting again", f0 + (f1 - f0) * 0.9, f1)
                harvest_seconds = time.perf_counter() - t0
                mix.set(materials)
                counts = _counts(materials)
                history[-1]["harvest_after"] = counts
            except Cancelled:
                stopped = "cancelled"
                break
    if best_state is None and stopped == "cancelled":
        raise Cancelled("adapt was cancelled before any round's weights were checked; nothing was saved")
    if best_state is None:  # no round beat the base model
        best_state, kept_round = base_state, 0
    net.load_state_dict(best_state)
    info = {
        "base": loaded.source,
        "photos": len(photos),
        "photo_names": names[:200],
        "held_back": held if isinstance(held, str) else [names[i] for i in held],
        "network_size": [list(p.shape[:2]) for p in photos[:5]],
        "plants_harvested": first_counts,
        "rounds": history,
        "kept_round": kept_round,
        "stopped": stopped,
        "outcome": outcome_line(kept_round, history),
        "iterations": done_total,
        "draws": dict(mix.made),
        "minutes_budget": round(budget / 60, 2),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "settings": {
            "rounds": rounds,
            "iterations": iterations,
            "holdout": holdout,
            "synthetic": synthetic,
            "lr": lr,
            "batch_size": batch_size,
            "crop": crop,
            "seed": seed,
        },
        "torch": str(torch.__version__),
    }
    meta = derived_meta(loaded.meta)
    meta["adapt"] = info
    report(0.98, "saving the model")
    # never lose the rounds to a name (of the model or its report) taken meanwhile
    output = free_at_the_end(output, overwrite, "model", taken=taken_name, say=named)
    from ._files import atomic_write
    from ._training import file_key, interrupted_save

    text = json.dumps({"model": str(output), **info}, indent=1, default=str)
    before = file_key(output)
    try:
        path = save_checkpoint(
            net,
            output,
            class_names=model.class_names,
            arch=loaded.arch,
            arch_kwargs=dict(loaded.arch_kwargs),
            meta=meta,
            overwrite=overwrite,
            rescue=True,
        )
        with atomic_write(report_path(path), overwrite, what="adapt report") as tmp:
            tmp.write_text(text)
    except KeyboardInterrupt:  # a second Ctrl-C ("save nothing") while the model or its report was written
        interrupt = interrupted_save(output, overwrite, before)
        if not interrupt.args:
            raise interrupt from None
        # the earlier model is replaced already: the new one gets its own report (the earlier
        # model's would describe it), and the interrupt says what is on disk
        with atomic_write(report_path(output), True, what="adapt report") as tmp:
            tmp.write_text(text)
        raise KeyboardInterrupt(f"{interrupt.args[0]}, with its report") from None
    report(1.0, f"saved {path.name}: {info['outcome']}")
    return path


def outcome_of(model_path) -> str:
    """The one-line outcome written in the report of the model that :func:`adapt` saved at ``model_path``."""
    return json.loads(report_path(model_path).read_text()).get("outcome", "")


def outcome_line(kept_round: int, rounds: list) -> str:
    """One line for the user: which round was kept and its agreement against the base model's."""
    base = rounds[0].get("agreement")
    kept = next((r for r in rounds if r.get("round") == kept_round), {})
    if kept_round == 0:
        return (
            f"no round beat the base model on the held-back photos (agreement {base:.3f}); "
            "the saved weights are the base model's"
        )
    return (
        f"round {kept_round} kept: agreement {kept['agreement']:.3f} on the held-back photos, "
        f"base model {base:.3f} (F1, 0-1, on check scenes made of those photos' own plants)"
    )


def _counts(materials) -> dict:
    plants = [p for m in materials for p in m.plants]
    return {
        "photos_used": sum(1 for m in materials if m.informative),
        "photos_without_colour_contrast": sum(1 for m in materials if not m.informative),
        "plants": len(plants),
        "plants_model_colour_crf": sum(p.tier == "model" for p in plants),
        "plants_colour_shape": sum(p.tier == "shape" for p in plants),
        "pseudo": sum(len(m.pseudo_classes) for m in materials),
    }
