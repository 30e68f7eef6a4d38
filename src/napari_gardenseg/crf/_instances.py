"""Per-instance dense-CRF refinement of Mask R-CNN soft masks, on compact instances.

:func:`refine_masks` runs a 2-label CRF (this instance / rest) per instance on
a crop around the instance's uncertain region, padded by ``padding`` px,
instead of one (N+1)-label CRF over the whole frame (faster, and the
whole-frame CRF also scored lower; ``benchmarks/bench_crf.py``). It never
builds image-sized or (N, H, W) arrays: each crop reads only its own pixels
of the image and the instances that overlap it. With the numba backend the
crops run on all cores at once; with the torch backend the crops of a batch
share one lattice (see ``_torch``).

A large instance (its uncertain region longer than ``max_side``) is refined at
a reduced resolution where it is ``max_side`` long: its crop and the soft
masks are box-filtered down (Pillow), the CRF runs there with the padding and
kernel widths counted in those pixels, and Q comes back bilinearly to the
crop's pixels, where the guards below apply. The kernels' widths suit plants
of a photo of about a megapixel; at a phone camera's 12 or 48 MP the same
plant covers ten to forty times the pixels, which the CRF at full resolution
pays for in time while its kernels cover less of the plant.

Refinement policy: do no harm
-----------------------------
The mask head predicts 28x28 masks, so thin structures (grass blades, stems)
arrive blurred. Tested on simulated mask-head output (true mask -> 28x28 area
average -> torchvision's bilinear paste) over synthetic garden scenes, a plain
per-instance CRF with the default parameters erased 5 of 8 blades 2 px wide
(mean IoU 0.629 -> 0.375) and 19 of 47 instances in crowded scenes of blades
and leaves (0.832 -> 0.407). With the rules below: blades 0.629 -> 0.829,
compact leaves 0.965 -> 1.000, crowded scenes 0.832 -> 0.969, nothing erased.
Why each rule is there (mean IoU without it; see the benchmark):

* Other instances' soft masks count as foreground in this instance's CRF
  (``p = max(own, other)``). As "rest" they teach the bilateral kernel that
  object colours are background and it eats this mask's edges: crowded scene
  0.969 -> 0.857, touching same-coloured leaves 0.952 -> 0.857.
* A refined mask never takes pixels of another instance's raw mask (colour
  cannot split same-coloured neighbours): without, 0.969 -> 0.898 and 23 of 40
  touching leaves worse. (These two are not switchable; measured by patching.)
* ``min_keep``: if the refined mask keeps less than 70 % of the raw mask, the
  raw mask stays. Without it the 2 px blades at noise 20 fell 0.737 -> 0.665,
  one erased.
* ``thin_width``: the Gaussian (smoothness) kernel is off for objects thinner
  than ``thin_width / 2`` and reaches full strength at ``thin_width`` (8 px);
  thickness = 2 * area / boundary pixels of the raw mask (~ stroke width, ~
  radius of a disc). Full kernel: blades 0.737 -> 0.657, crowded 0.940 -> 0.927.
* ``unary_weight=2``: the soft mask's unary counts twice against the pairwise
  terms (1: blades 0.737 -> 0.701).
* ``band``: only pixels with ``band[0] < soft < band[1]`` may change; what the
  mask head is sure of keeps its raw label; mainly so a mask cannot spread
  over same-coloured clutter nobody detected (not in the benchmark scenes;
  there, off: crowded 0.940 -> 0.934, worst instance -0.033 -> -0.049).

"Other instances" of a pixel: the strongest soft value of any other instance
there, each instance counted inside the box of its values above
``min(band[0], mask_threshold)`` (below that it is background everywhere).

Limit: an object with the background's colour gives the CRF nothing to use;
soil-coloured leaves lost up to 0.07 IoU (the 30 % ``min_keep`` allows).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np
from PIL import Image
from PIL.Image import Resampling

from .._cancel import check as _check_cancel
from .._image_arrays import to_rgb_uint8
from .._instances import Instances, paint, support
from . import _numba
from ._dense import (
    _CLIP,
    _device_type,
    choose_backend,
    cpu_cores,
    cpu_workers,
    crf_device,
    dense_crf_many,
    single_threaded_torch,
)
from ._params import CRFParams

_RANGE_TOL = 1e-4
# Pixels per torch batch: one lattice build for all crops of a batch, memory bounded.
_BATCH_PIXELS = 250_000


def _check_threshold(mask_threshold) -> float:
    if isinstance(mask_threshold, bool) or not isinstance(mask_threshold, (int, float, np.integer, np.floating)):
        raise TypeError(f"mask_threshold must be a number in (0, 1), got {mask_threshold!r}")
    if not 0.0 < mask_threshold < 1.0:
        raise ValueError(f"mask_threshold must be in (0, 1), got {mask_threshold!r}")
    return float(mask_threshold)


def _check_dense(soft_masks, scores, shape):
    """Validate (N, H, W) full-frame masks; return (float32 masks, float32 scores)."""
    masks = np.asarray(soft_masks)
    if masks.dtype.kind not in "fiub":
        raise ValueError(f"soft_masks must be a float array, got dtype {masks.dtype}")
    if masks.ndim != 3:
        hint = (
            ": a label image? pass np.stack([labels == i for i in ids]) (one mask per instance)"
            if masks.ndim == 2 and masks.dtype.kind in "iu" and tuple(masks.shape) == tuple(shape)
            else ""
        )
        raise ValueError(f"soft_masks must have shape (N, H, W), got {masks.shape}{hint}")
    if masks.shape[1:] != tuple(shape):
        raise ValueError(
            f"soft_masks are {masks.shape[1]}x{masks.shape[2]} (H x W) but the image is "
            f"{shape[0]}x{shape[1]}; masks must be pasted at full image size"
        )
    masks = masks.astype(np.float32, copy=False)
    _check_values(masks)
    return masks, _check_scores(scores, masks.shape[0])


def _check_values(masks: np.ndarray) -> None:
    if masks.size and not np.isfinite(masks).all():
        raise ValueError("soft_masks contain NaN or infinite values")
    if masks.size and (masks.min() < -_RANGE_TOL or masks.max() > 1 + _RANGE_TOL):
        raise ValueError(
            f"soft_masks must be probabilities in 0..1 (not logits), found values in "
            f"{masks.min():.3g}..{masks.max():.3g}"
        )


def _check_scores(scores, n: int) -> np.ndarray:
    if scores is None:
        return np.ones(n, np.float32)  # ties: the more probable instance wins
    scores = np.asarray(scores, dtype=np.float32)
    if scores.shape != (n,):
        raise ValueError(f"scores must have shape ({n},) for {n} soft masks, got {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    return scores


def _thickness(mask: np.ndarray) -> float:
    """Mean stroke width in px: 2 * area / boundary pixels (~radius for a disc)."""
    area = int(mask.sum())
    if area == 0:
        return 0.0
    m = np.pad(mask, 1)
    inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return 2.0 * area / max(area - int(inner.sum()), 1)


def _unary(soft, others, params: CRFParams, mask_threshold: float):
    """(2, h*w) float32 unary and the Gaussian weight for one instance's crop."""
    raw = soft > mask_threshold
    # Other instances are objects too: as "rest" they would teach the bilateral
    # kernel that object colours are background and eat into this mask.
    p = np.clip(np.maximum(soft, others), _CLIP, 1 - _CLIP)
    unary = -params.unary_weight * np.log(np.stack([1 - p, p]).reshape(2, -1))
    # Weaker smoothness for thin objects: none below thin_width / 2, full from thin_width.
    t = _thickness(raw)
    smooth = min(max(2 * t / params.thin_width - 1, 0.0), 1.0) if params.thin_width > 0 else 1.0
    return np.ascontiguousarray(unary, dtype=np.float32), params.gaussian_compat * smooth


def _claim(q, soft, others, params: CRFParams, mask_threshold: float) -> np.ndarray:
    """The refined boolean mask on the crop, from the CRF's Q and the guards."""
    raw = soft > mask_threshold
    refined = q[1] > q[0]
    # the band the CRF decides in holds the threshold: a mask threshold above band[1] would make
    # the surest pixels background while less sure ones were claimed (holes), below band[0] the reverse
    low, high = min(params.band[0], mask_threshold), max(params.band[1], mask_threshold)
    sure = (soft <= low) | (soft >= high)
    refined[sure] = raw[sure]
    refined &= raw | (others <= mask_threshold)  # never take a neighbour's raw pixels
    if int((refined & raw).sum()) < params.min_keep * raw.sum():
        return raw
    return refined


def _window_of(box, offset) -> tuple[int, int, int, int]:
    y0, x0 = int(offset[0]), int(offset[1])
    return y0 + int(box[0].start), x0 + int(box[1].start), y0 + int(box[0].stop), x0 + int(box[1].stop)


def _others(instances: Instances, i: int, window, cores) -> np.ndarray:
    """Strongest other instance's soft value on ``window``, each inside its core box."""
    y0, x0, y1, x1 = window
    out = np.zeros((y1 - y0, x1 - x0), np.float32)
    for j in instances.overlapping(window):
        core = cores[j]
        if j == i or core is None:
            continue
        a0, b0, a1, b1 = max(core[0], y0), max(core[1], x0), min(core[2], y1), min(core[3], x1)
        if a0 >= a1 or b0 >= b1:
            continue
        oy, ox = instances.offsets[j]
        part = instances.masks[j][a0 - oy : a1 - oy, b0 - ox : b1 - ox]
        dst = out[a0 - y0 : a1 - y0, b0 - x0 : b1 - x0]
        np.maximum(dst, part, out=dst)
    return out


def _factor(core, max_side: int) -> float:
    """How many image pixels one pixel of the instance's CRF spans (1: its own resolution)."""
    side = max(core[2] - core[0], core[3] - core[1])
    return 1.0 if max_side == 0 or side <= max_side else side / max_side


def _resize(array: np.ndarray, size, resample) -> np.ndarray:
    """``array`` (h, w) float (float32 out) or (h, w, 3) uint8 resized to ``size`` (h, w) by Pillow."""
    if array.shape[:2] == tuple(size):
        return array
    if array.ndim == 2:  # Pillow's float mode is float32
        array = array.astype(np.float32, copy=False)
    return np.array(Image.fromarray(array).resize((size[1], size[0]), resample))


def _read_crop(image, window) -> np.ndarray:
    y0, x0, y1, x1 = window
    crop = np.asarray(image[y0:y1, x0:x1])
    if crop.dtype != np.uint8 or crop.shape != (y1 - y0, x1 - x0, 3):
        raise TypeError(
            f"image must give uint8 RGB crops (h, w, 3); image[{y0}:{y1}, {x0}:{x1}] is "
            f"{crop.dtype} of shape {crop.shape}"
        )
    return crop


def refine_masks(
    image,
    instances: Instances,
    params: CRFParams | dict | None = None,
    mask_threshold: float = 0.5,
    *,
    device="cpu",
    cancel=None,
    progress=None,
) -> Instances:
    """Refine each instance's soft mask with a dense CRF on its own crop.

    ``image``: anything with ``.shape`` (H, W, 3) or (H, W) whose slices
    ``image[y0:y1, x0:x1]`` are uint8 RGB (h, w, 3) crops (a numpy array or a lazy reader; only crops
    are read). ``instances``: float soft masks local to their boxes.
    ``mask_threshold`` gives the raw masks the refinement guards against (see
    the module docstring). Returns Instances in the same order with bool
    masks (the refined claims) and ``probs`` (the soft values on the same
    regions, for painting ties); an instance with nothing left has an empty
    mask. ``meta`` gets ``crf_backend`` and ``crf_backend_reason``.
    ``cancel`` is checked and ``progress(fraction, message)`` called between
    batches of crops.
    """
    params = CRFParams.from_any(params)
    mask_threshold = _check_threshold(mask_threshold)
    if not isinstance(instances, Instances):
        raise TypeError(f"instances must be an Instances, got {type(instances).__name__}")
    shape = tuple(getattr(image, "shape", ()))
    if shape[:2] != tuple(instances.shape) or len(shape) not in (2, 3) or shape[2:] not in ((), (3,)):
        raise ValueError(
            f"image must be (H, W, 3) RGB (or a reader of shape (H, W) giving RGB crops) of the "
            f"instances' size {tuple(instances.shape)}, got shape {shape}"
        )
    device = crf_device(device)
    backend, reason = choose_backend(params.backend, device)
    report = progress or (lambda f, m: None)
    h, w = instances.shape
    n = len(instances)
    # Pixels at or below both thresholds stay background, so they bound the work.
    floor = min(params.band[0], mask_threshold)
    cores = []
    for i in range(n):
        m = instances.masks[i]
        if m.dtype == bool:
            raise TypeError(f"instance {i} has a bool mask: refine_masks needs the soft masks")
        box = support(m, floor) if m.size else None
        core = None if box is None else _window_of(box, instances.offsets[i])
        if core is not None:  # the part inside the image; an instance wholly outside it claims nothing
            core = (max(core[0], 0), max(core[1], 0), min(core[2], h), min(core[3], w))
            core = core if core[0] < core[2] and core[1] < core[3] else None
        cores.append(core)

    # A large instance is refined at a reduced resolution (its core at most max_side px, the
    # padding and kernel widths in those pixels): the same CRF whatever the camera's resolution,
    # and a cost bounded per instance.
    jobs = []
    for i, c in enumerate(cores):
        if c is None:
            continue
        factor = _factor(c, params.max_side)
        pad = round(params.padding * factor)
        y0, x0, y1, x1 = max(c[0] - pad, 0), max(c[1] - pad, 0), min(c[2] + pad, h), min(c[3] + pad, w)
        size = (max(1, round((y1 - y0) / factor)), max(1, round((x1 - x0) / factor)))
        jobs.append((i, (y0, x0, y1, x1), size))
    if backend == "numba":
        # one crop per job, on every core: the compiled mean field releases the GIL
        workers = cpu_cores() if len(jobs) > 1 else 1
        _numba.warm_up()  # compile (or load the cache) once, not in every thread
        if jobs and params.iterations and params.gaussian_compat > 0:  # one grid lattice for all crops
            _numba.reserve(max(sh for *_, (sh, _) in jobs), max(sw for *_, (_, sw) in jobs), params.gaussian_sxy)
    else:
        workers = cpu_workers() if backend == "torch" and _device_type(device) == "cpu" else 1
    if backend == "torch":
        # Even batches, one per worker (then at most _BATCH_PIXELS each).
        total = sum(sh * sw for *_, (sh, sw) in jobs)
        budget = min(_BATCH_PIXELS, -(-total // workers))
    else:
        budget = 1
    batches, current, size = [], [], 0
    for job in jobs:
        sh, sw = job[2]
        if current and size + sh * sw > budget:
            batches.append(current)
            current, size = [], 0
        current.append(job)
        size += sh * sw
    if current:
        batches.append(current)

    masks = [np.zeros((0, 0), bool) for _ in range(n)]
    probs = [np.zeros((0, 0), np.float32) for _ in range(n)]
    offsets = np.array(instances.offsets, dtype=np.int64).reshape(n, 2)

    def prepare(batch):
        # Crops are read here, in the calling thread (lazy readers need not be thread-safe).
        rgbs, unaries, compats, softs, others = [], [], [], [], []
        for i, window, size in batch:
            soft = instances.crop(i, window)
            other = _others(instances, i, window, cores)
            unary, compat = _unary(
                _resize(soft, size, Resampling.BOX), _resize(other, size, Resampling.BOX), params, mask_threshold
            )
            rgbs.append(_resize(_read_crop(image, window), size, Resampling.BOX))
            unaries.append(unary)
            compats.append(compat)
            softs.append(soft)
            others.append(other)
        return batch, rgbs, unaries, compats, softs, others

    def finish(batch, qs, softs, others):
        for (i, window, _), q, soft, other in zip(batch, qs, softs, others):
            if q.shape[1:] != soft.shape:  # refined at a reduced resolution: Q back to the crop's pixels
                q = np.stack([_resize(np.ascontiguousarray(qk), soft.shape, Resampling.BILINEAR) for qk in q])
            claim = _claim(q, soft, other, params, mask_threshold)
            box = support(claim, 0)
            if box is None:
                offsets[i] = window[:2]
                continue
            masks[i] = np.ascontiguousarray(claim[box])
            probs[i] = np.ascontiguousarray(soft[box])
            offsets[i] = (window[0] + box[0].start, window[1] + box[1].start)

    done = 0

    def completed(batch):
        nonlocal done
        done += len(batch)
        report(done / max(len(jobs), 1), f"CRF ({backend}): {done}/{len(jobs)} instances")

    if workers == 1:
        for batch in batches:
            _check_cancel(cancel, "CRF refinement")
            batch, rgbs, unaries, compats, softs, others = prepare(batch)
            finish(batch, dense_crf_many(backend, rgbs, unaries, compats, params, device), softs, others)
            completed(batch)
    else:
        # Batches side by side: torch on the CPU with one torch thread each (see
        # cpu_workers); numba crops, largest first, with a few queued so that no core waits.
        if backend == "numba":
            batches.sort(key=lambda b: -sum(sh * sw for *_, (sh, sw) in b))
        in_flight = 2 * workers if backend == "numba" else workers
        threads = single_threaded_torch() if backend == "torch" else nullcontext()
        with threads, ThreadPoolExecutor(workers) as pool:
            pending = deque()
            try:
                for batch in batches + [None] * in_flight:
                    if batch is not None:
                        _check_cancel(cancel, "CRF refinement")
                        batch, rgbs, unaries, compats, softs, others = prepare(batch)
                        future = pool.submit(dense_crf_many, backend, rgbs, unaries, compats, params, device)
                        pending.append((future, batch, softs, others))
                    if pending and (len(pending) >= in_flight or batch is None):
                        future, done_batch, softs, others = pending.popleft()
                        finish(done_batch, future.result(), softs, others)
                        completed(done_batch)
                        _check_cancel(cancel, "CRF refinement")
            finally:
                for future, *_ in pending:
                    future.cancel()
    meta = {**instances.meta, "crf_backend": backend, "crf_backend_reason": reason}
    return Instances(
        masks, offsets, instances.scores, instances.class_ids, instances.boxes, instances.shape, probs, meta
    )


def refine_instances(
    image,
    soft_masks,
    scores=None,
    params: CRFParams | dict | None = None,
    mask_threshold: float = 0.5,
    cancel=None,
    *,
    device="cpu",
    progress=None,
) -> np.ndarray:
    """Refine Mask R-CNN soft masks with a per-instance dense CRF into labels.

    ``soft_masks``: :class:`Instances` with float soft masks, or (N, H, W)
    probabilities in 0..1 pasted at image size (not thresholded; float, or
    bool/integer masks); ``scores``: (N,) numbers or None (the instances' own, or
    all equal). ``image``: the (H, W) image, any array ``to_rgb_float`` accepts,
    read as uint8 RGB. ``mask_threshold`` (above 0, below 1): where the raw masks
    end, which the refinement guards (``CRFParams.band``, ``min_keep``).
    ``params``: a :class:`CRFParams`, a dict of some of its fields, or None (the
    defaults). ``device``: where the torch backend runs ("cpu", "auto", "cuda",
    "mps"). Returns (H, W) int32, 0 = background, instance
    i -> label i + 1; overlaps go to the highest score, then the higher soft
    value. Instances left with no pixels are not renumbered (the caller drops
    them). Read-only inputs are never written to. ``cancel`` (an Event or a
    callable) raises :class:`napari_gardenseg.Cancelled` between batches;
    ``progress(fraction, message)`` is called between them.

    Raises ValueError for soft masks that are not (N, H, W) of the image's size
    (or Instances of another image size), not probabilities in 0..1 (logits), or
    not finite, for scores that are not (N,) or not finite, a ``mask_threshold``
    outside (0, 1), and kernel widths too small for the lattice on a crop;
    TypeError for a ``mask_threshold`` that is not a number or Instances with
    bool (refined) masks; TypeError or ValueError for a bad ``params``; what
    :func:`~napari_gardenseg.to_rgb_float` raises for ``image`` (ImageError,
    TypeError); :class:`~napari_gardenseg.DeviceError` for a device not available
    here; :class:`~napari_gardenseg.CRFUnavailableError` for a backend that cannot
    be imported; :class:`napari_gardenseg.Cancelled` when ``cancel`` is set;
    TypeError for a ``progress`` that is not callable or a ``cancel`` that is
    neither an Event nor a callable.
    """
    from .._cancel import check_callbacks

    check_callbacks(progress, cancel)
    params = CRFParams.from_any(params)
    mask_threshold = _check_threshold(mask_threshold)
    rgb = to_rgb_uint8(image)
    floor = min(params.band[0], mask_threshold)
    if isinstance(soft_masks, Instances):
        if tuple(soft_masks.shape) != rgb.shape[:2]:
            raise ValueError(
                f"soft_masks are {soft_masks.shape[0]}x{soft_masks.shape[1]} (H x W) but the image is "
                f"{rgb.shape[0]}x{rgb.shape[1]}"
            )
        for m in soft_masks.masks:
            _check_values(np.asarray(m))
        inst = soft_masks
        if scores is not None:
            inst = inst.take(np.arange(len(inst)))
            inst.scores = _check_scores(scores, len(inst))
    else:
        masks, scores = _check_dense(soft_masks, scores, rgb.shape[:2])
        inst = Instances.from_dense(masks, scores, floor=floor)
    refined = refine_masks(rgb, inst, params, mask_threshold, device=device, cancel=cancel, progress=progress)
    return paint(refined, mask_threshold)
