"""Choosing a backend, and the dense CRF over whole images or many crops with it.

"auto" picks torch on CUDA and MPS (neither numba's nor pydensecrf's lattice
uses a GPU). On the CPU it picks numba (a dependency: pydensecrf's arithmetic,
the same marginals bit for bit, crops on all cores, the fastest there;
``benchmarks/bench_crf.py --backends`` measures all three), then pydensecrf,
then torch, so that every install has the CRF.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np

from .._image_arrays import to_rgb_uint8
from . import _numba, _pydensecrf
from ._params import CRFParams
from ._pydensecrf import CRFUnavailableError

_CLIP = 1e-5  # as pydensecrf.utils.unary_from_softmax: keeps -log(p) finite
_SUM_TOL = 1e-3


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def crf_device(device):
    """The CRF's torch.device for ``device`` (None = "cpu", unlike the package's resolver, for which it is "auto"; "auto" = CUDA, else MPS, else CPU), or
    "cpu" when torch cannot be imported (pydensecrf runs on the CPU anyway)."""
    if not torch_available():
        return "cpu"
    import torch

    from .._device import resolve_device as resolve  # the package's one resolver: one message everywhere

    return torch.device("cpu") if device is None else resolve(device)


def _device_type(device) -> str:
    return str(getattr(device, "type", device)).split(":")[0].lower()


def cpu_cores() -> int:
    """The cores this process may run on (its affinity, else os.cpu_count())."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def cpu_workers() -> int:
    """How many CRF batches run side by side on the CPU: torch's thread count."""
    import torch

    return max(1, torch.get_num_threads())


_threads_lock = threading.Lock()
_threads_users = 0
_threads_before = 1


@contextmanager
def single_threaded_torch():
    """One torch thread per CRF worker while the batches run (then restored).

    The lattice is many mid-sized operations, and torch's sparse products
    are slower with more threads; whole batches in parallel threads, one
    torch thread each, use the cores without that cost. It changes torch's
    process-wide setting for the duration, like any ``set_num_threads``;
    overlapping calls (from several threads) restore it once, at the end
    of the last one.
    """
    import torch

    global _threads_users, _threads_before
    with _threads_lock:
        if _threads_users == 0:
            _threads_before = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_before)


def choose_backend(backend: str, device="cpu") -> tuple[str, str]:
    """(backend name, one-line reason) for ``backend`` ("auto", "pydensecrf", "torch") on ``device``."""
    kind = _device_type(crf_device(device))
    if backend == "numba":
        if not _numba.available():
            raise CRFUnavailableError(
                "the numba CRF backend needs numba, which cannot be imported: `pip install numba`, "
                "or use backend='auto'"
            )
        return "numba", "asked for (runs on the CPU)" if kind != "cpu" else "asked for"
    if backend == "pydensecrf":
        _pydensecrf.densecrf()  # CRFUnavailableError with the install hint
        return "pydensecrf", "asked for (runs on the CPU)" if kind != "cpu" else "asked for"
    if backend == "torch":
        if not torch_available():
            raise CRFUnavailableError("the torch CRF backend needs PyTorch, which cannot be imported")
        return "torch", "asked for"
    if _numba.available():
        # On a GPU too: the instances' crops are small, so the torch lattice's many small kernels
        # cost more than numba's CPU threads (benchmarks/gpu_check.py, bench_crf.py --backends)
        if kind == "cpu":
            return "numba", "auto: the numba lattice is the fastest exact backend on the CPU"
        return "numba", f"auto: numba on the CPU beside {kind} (it refined instances faster than torch on a CUDA GPU)"
    if kind in ("cuda", "mps") and torch_available():
        return "torch", f"auto: numba cannot be imported and the device is {kind}"
    if _pydensecrf.available():
        return "pydensecrf", "auto: numba cannot be imported; pydensecrf is faster than torch on the CPU"
    if torch_available():
        return "torch", "auto: neither numba nor pydensecrf can be imported"
    raise CRFUnavailableError("dense-CRF refinement needs numba, pydensecrf or PyTorch; none can be imported")


def dense_crf_many(backend: str, rgbs, unaries, gaussian_compats, params: CRFParams, device="cpu") -> list:
    """Mean-field Q (K, h, w) float32 of each crop: ``rgbs`` uint8 (h, w, 3),
    ``unaries`` (K, h*w) float32, one Gaussian weight per crop."""
    bilateral = (params.bilateral_sxy, params.bilateral_srgb, params.bilateral_compat)
    if backend == "numba":
        return [
            _numba.dense_crf(rgb, u, params.iterations, (params.gaussian_sxy, g), bilateral)
            for rgb, u, g in zip(rgbs, unaries, gaussian_compats)
        ]
    if backend == "pydensecrf":
        return [
            _pydensecrf.dense_crf(rgb, u, params.iterations, (params.gaussian_sxy, g), bilateral)
            for rgb, u, g in zip(rgbs, unaries, gaussian_compats)
        ]
    from ._torch import dense_crf_batch

    return dense_crf_batch(rgbs, unaries, params.iterations, (params.gaussian_sxy, gaussian_compats), bilateral, device)


def refine(image_rgb, probabilities, params: CRFParams | dict | None = None, *, device="cpu") -> np.ndarray:
    """Dense CRF over the whole image, as pydensecrf computes it.

    ``image_rgb``: the (H, W) image, any array :func:`~napari_gardenseg.to_rgb_float`
    accepts (grey, RGB, RGBA, channel-first; any dtype), read as uint8 RGB
    (:func:`~napari_gardenseg.to_rgb_uint8`), the colours the bilateral kernel compares.
    ``probabilities`` is (K, H, W), non-negative, summing to 1 over K at each
    pixel (K >= 1); float, or bool/integer one-hot labels. The unary is
    ``-log(clip(p, 1e-5, 1))`` (pydensecrf's ``unary_from_softmax``). ``params``: a
    :class:`CRFParams`, a dict of some of its fields, or None (the defaults); its
    kernels, ``iterations`` and ``backend`` apply here. ``params.backend`` picks the
    numba lattice, pydensecrf or the torch lattice (on ``device``: "cpu", "auto",
    "cuda", "mps"; the other two run on the CPU). Returns Q, (K, H, W) float32
    marginals summing to 1 over K; with ``iterations=0`` that is the clipped input
    renormalised.

    Raises ValueError for probabilities that are not numeric, not (K, H, W) of the
    image's size, empty, not finite, negative or not summing to 1 over K, and for
    kernel widths too small for the lattice on an image this size; TypeError or
    ValueError for a bad ``params``; what :func:`~napari_gardenseg.to_rgb_float`
    raises for ``image_rgb`` (ImageError, TypeError);
    :class:`~napari_gardenseg.DeviceError` for a device not available here;
    :class:`CRFUnavailableError` for a backend that cannot be imported.
    """
    params = CRFParams.from_any(params)
    rgb = to_rgb_uint8(image_rgb)
    p = np.asarray(probabilities)
    if p.dtype.kind not in "fiub":  # bool and integer: one-hot labels, as refine_instances takes masks
        raise ValueError(f"probabilities must be a numeric array, got dtype {p.dtype}")
    if p.dtype.kind != "f":
        p = p.astype(np.float32)
    if p.ndim == 2 and p.shape == rgb.shape[:2]:
        raise ValueError(
            f"probabilities must have shape (K, H, W), got {p.shape}: one foreground map? pass "
            "np.stack([1 - p, p]) (background, foreground)"
        )
    if p.ndim != 3 or p.shape[0] < 1:
        raise ValueError(f"probabilities must have shape (K, H, W), got {p.shape}")
    if p.shape[1:] != rgb.shape[:2]:
        last = " (labels last? pass np.moveaxis(p, -1, 0))" if p.shape[:2] == rgb.shape[:2] else ""
        raise ValueError(
            f"probabilities are {p.shape[1]}x{p.shape[2]} (H x W) but the image is {rgb.shape[0]}x{rgb.shape[1]}{last}"
        )
    if p.size == 0:
        raise ValueError(f"the image is empty ({rgb.shape[0]} x {rgb.shape[1]} pixels); nothing to refine")
    if not np.isfinite(p).all():
        raise ValueError("probabilities contain NaN or infinite values")
    if p.min() < 0:
        raise ValueError(f"probabilities must be >= 0, found {p.min():.3g}")
    deviation = float(np.abs(p.sum(axis=0, dtype=np.float64) - 1.0).max())
    if deviation > _SUM_TOL:
        if p.shape[0] == 1:
            hint = "; one foreground map? pass np.stack([1 - p[0], p[0]]) (background, foreground)"
        elif p.max() > 1.5:
            hint = "; 0..255? divide by 255"
        else:
            hint = "; rounded? pass p / p.sum(axis=0)"
        raise ValueError(
            f"probabilities must sum to 1 over the first (label) axis; the largest deviation is {deviation:.3g}{hint}"
        )
    device = crf_device(device)
    backend, _ = choose_backend(params.backend, device)
    # Same arithmetic as unary_from_softmax (log in the input's precision).
    unary = (-np.log(np.clip(p, _CLIP, 1.0))).reshape(p.shape[0], -1).astype(np.float32)
    if backend == "torch" and _device_type(device) == "cpu":
        with single_threaded_torch():
            return dense_crf_many(backend, [rgb], [unary], [params.gaussian_compat], params, device)[0]
    return dense_crf_many(backend, [rgb], [unary], [params.gaussian_compat], params, device)[0]
