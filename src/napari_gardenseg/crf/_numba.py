"""The numba backend: pydensecrf's dense CRF, operation for operation, compiled by numba.

It repeats pydensecrf's ``permutohedral.cpp`` (the SSE ``init`` that x86
builds run, then ``seqCompute`` for one or two labels and ``sseCompute``
for more) and ``densecrf.cpp``'s mean field in the same float32 arithmetic
and the same order: features ``x / sxy``, ``y / sxy``, ``channel / srgb``;
elevation with the same scale factors; rounding half to even; ranks;
barycentric weights; a hash table of lattice vertices (how they are
numbered does not enter any sum); the splat in pixel order; the blur
``old + 0.5 * (n1 + n2)`` along each of the d+1 directions (a missing
neighbour counts as 0); the slice with ``alpha = 1 / (1 + 2^-d)``;
NORMALIZE_SYMMETRIC kernels and Potts compatibility; ``expAndNormalize``
with the C library's ``expf`` (which Eigen calls for vectors this short).
pydensecrf's SSE ``init`` handles pixels four at a time and also enters
the zero feature's vertices for the padding lanes when N is not a multiple
of four; those vertices take part in the blur, so they are entered here too.

Faster than pydensecrf on one core by doing the same sums with less
around them: the per-point arithmetic runs on blocks of points
(vectorised), simplices are hashed before vertices (points of one simplex
share its vertices), keys are packed into two int64, and the Gaussian
kernel's lattice, which depends only on pixel positions, is cut from one
cached grid lattice instead of being built per crop.

Each crop is one call that releases the GIL (``nogil``), so crops run on
several threads at once (see ``_instances``). The kernels (``_numba_lattice``)
compile on first use, which takes seconds, and are cached on disk
(``cache=True``), which makes later processes load them in well under a
second: numba writes beside the installed module, or, where the install is
read-only, in the user's cache (``~/.cache/numba``, or ``NUMBA_CACHE_DIR``);
where neither can be written, in a folder of the user's own in the system's temporary
directory (:func:`_private_cache_dir`).
:func:`warm_up` compiles or loads everything on a tiny crop.
"""

from __future__ import annotations

import math
import threading

import numpy as np


def available() -> bool:
    """True if numba can be imported (it is a dependency; a Python it has no wheel for yet
    still gets the CRF from another backend)."""
    global _available
    if _available is None:
        try:
            import numba  # noqa: F401
        except ImportError:
            _available = False
        else:
            _available = True
    return _available


_available = None


def _constants(d: int):
    """pydensecrf's float32 constants for a d-dimensional lattice: scale factors, 1/(d+1), alpha."""
    inv_std = np.float32(math.sqrt(2.0 / 3.0) * (d + 1))
    scale = np.array([1.0 / math.sqrt((i + 2) * (i + 1)) * float(inv_std) for i in range(d)], np.float32)
    down = np.float32(1.0) / np.float32(d + 1)
    alpha = np.float32(1.0) / (np.float32(1.0) + np.float32(2.0) ** np.float32(-d))
    canonical = np.empty((d + 1, d + 1), np.int32)
    for i in range(d + 1):
        canonical[i, : d + 1 - i] = i
        canonical[i, d + 1 - i :] = i - (d + 1)
    return scale, down, canonical, alpha


_lock = threading.Lock()
_GAUSSIAN = _constants(2)
_BILATERAL = _constants(5)
_GRID_MAX = 1_000_000  # pixels: larger crops build their Gaussian lattice alone (the cache stays small)
_grids: dict = {}  # sxy -> (height, width, grid lattice)
_warm = False


def _kernels():
    """The compiled kernels (numba compiles them, or loads its cache, on first use)."""
    try:
        from . import _numba_lattice
    except RuntimeError as err:  # numba found no writable cache directory (install and user cache read-only)
        if "cannot cache" not in str(err):
            raise
        import numba

        numba.config.CACHE_DIR = _private_cache_dir()
        from . import _numba_lattice
    return _numba_lattice


def _private_cache_dir() -> str:
    """A folder for numba's cache that only this user can write: ``<tmp>/napari-gardenseg-numba-<uid>``,
    made with mode 0700, used when it is a folder of this user's that nobody else can write; else a
    new folder for this process (compiled again each time). A fixed name shared by all users would be
    unwritable for all but the first, or hold files another account put there, which numba unpickles."""
    import os
    import stat
    import tempfile

    getuid = getattr(os, "getuid", None)  # POSIX; Windows keeps a temporary folder per user
    if getuid is not None:
        path = os.path.join(tempfile.gettempdir(), f"napari-gardenseg-numba-{getuid()}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            return tempfile.mkdtemp(prefix="napari-gardenseg-numba-")
        st = os.lstat(path)  # not followed: a link planted under this name is not used
        if stat.S_ISDIR(st.st_mode) and st.st_uid == getuid() and not st.st_mode & 0o022:
            return path
    return tempfile.mkdtemp(prefix="napari-gardenseg-numba-")


def _gaussian(h: int, w: int, sxy: np.float32):
    """The Gaussian kernel's lattice for an h x w crop, cut from a cached grid lattice."""
    scale, down, canonical, _ = _GAUSSIAN
    if h * w > _GRID_MAX:
        return _kernels()._grid_lattice(h, w, sxy, scale, down, canonical)
    key = float(sxy)
    with _lock:
        grid = _grids.get(key)
        if grid is None or grid[0] < h or grid[1] < w:
            gh, gw = max(h, grid[0] if grid else 0), max(w, grid[1] if grid else 0)
            if gh * gw > _GRID_MAX:
                gh, gw = h, w
            grid = (gh, gw, _kernels()._grid_lattice(gh, gw, sxy, scale, down, canonical))
            _grids.clear()  # one grid at a time: memory stays bounded
            _grids[key] = grid
    offset, bary, neighbours, m = grid[2]
    if m < 0:
        return grid[2]
    return _kernels()._grid_crop(offset, bary, neighbours, m, grid[1], h, w)


def reserve(h: int, w: int, sxy: float) -> None:
    """Build the cached grid lattice for crops up to h x w now (before crops run in parallel)."""
    if h * w <= _GRID_MAX:
        _gaussian(h, w, np.float32(sxy))


def dense_crf(rgb: np.ndarray, unary: np.ndarray, iterations: int, gaussian: tuple, bilateral: tuple) -> np.ndarray:
    """Mean-field Q (K, H, W) float32 for a (K, H*W) float32 unary over uint8 ``rgb``, as
    :func:`napari_gardenseg.crf._pydensecrf.dense_crf` (same arguments; a kernel with
    compat 0 is left out) and with the same results bit for bit (for up to three labels;
    more: pydensecrf's Eigen takes a vectorised ``exp``, about 1e-6 apart). Releases
    the GIL while it runs. ValueError if the features are too wide for the lattice keys."""
    h, w = rgb.shape[:2]
    k = unary.shape[0]
    f32 = np.float32
    g_sxy, g_w = f32(gaussian[0]), f32(gaussian[1])
    b_sxy, b_srgb, b_w = (f32(v) for v in bilateral)
    if iterations and g_w > 0:
        g_off, g_bary, g_nb, g_m = _gaussian(h, w, g_sxy)
    else:
        g_off, g_bary, g_nb, g_m = np.empty(0, np.int32), np.empty(0, np.float32), np.empty((3, 2, 0), np.int32), 0
    q = np.empty((0, k), np.float32)
    if g_m >= 0:
        q = _kernels()._mean_field(
            np.ascontiguousarray(rgb, dtype=np.uint8),
            np.ascontiguousarray(np.asarray(unary, np.float32).T),
            int(iterations),
            g_off,
            g_bary,
            g_nb,
            g_m,
            g_w,
            b_sxy,
            b_srgb,
            b_w,
            _GAUSSIAN[3],
            *_BILATERAL,
        )
    if q.shape[0] != h * w:
        raise ValueError(
            "the CRF features are too wide for the lattice (coordinates beyond 2^20): gaussian_sxy, "
            "bilateral_sxy or bilateral_srgb is very small for a crop this large; raise it (or lower max_side)"
        )
    return np.ascontiguousarray(q.T).reshape(k, h, w)


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels on a tiny crop; once per process."""
    global _warm
    if _warm:
        return
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (6, 5, 3), dtype=np.uint8)
    for k in (2, 3):
        dense_crf(rgb, rng.random((k, 30), dtype=np.float32), 1, (3.0, 3.0), (80.0, 13.0, 10.0))
    _warm = True
