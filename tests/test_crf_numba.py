"""The numba backend of the dense CRF: pydensecrf's arithmetic, bit for bit, and its crops in parallel.

Speed figures are in benchmarks/bench_crf.py, not here.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_crf import crowded_case, reference_case

from napari_gardenseg._instances import Instances, paint
from napari_gardenseg.crf import CRFParams, _numba, refine, refine_masks
from napari_gardenseg.crf import _instances as crf_instances
from napari_gardenseg.crf._pydensecrf import available as pydensecrf_available

pytest.importorskip("numba")
needs_pydensecrf = pytest.mark.skipif(not pydensecrf_available(), reason="pydensecrf is not installed")

NUMBA = CRFParams(backend="numba")


def _random_case(labels: int, shape, seed: int):
    image, _, _ = reference_case("2")
    rgb = np.ascontiguousarray(image[: shape[0], : shape[1]])
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(labels), shape[0] * shape[1]).T.astype(np.float32)
    return rgb, np.ascontiguousarray(-np.log(np.clip(p, 1e-5, 1)), dtype=np.float32)


@pytest.mark.parametrize("case", ["1", "1-b", "2", "3"])
def test_reference_cases_give_pydensecrf_labels(case):
    image, prob, expected = reference_case(case)
    np.testing.assert_array_equal(refine(image, prob, NUMBA).argmax(0) + 1, expected)


@needs_pydensecrf
@pytest.mark.parametrize("labels", [2, 3])
@pytest.mark.parametrize("shape", [(37, 41), (64, 96), (1, 7)])  # pixel counts 1517, 6144, 7: N % 4 = 1, 0, 3
@pytest.mark.parametrize("gaussian, iterations", [(3.0, 5), (0.0, 5), (1.7, 1), (3.0, 0)])
def test_marginals_equal_pydensecrf_bit_for_bit(labels, shape, gaussian, iterations):
    """Same float32 operations in the same order (and the C library's expf) as pydensecrf's SSE build."""
    from napari_gardenseg.crf._pydensecrf import dense_crf

    rgb, unary = _random_case(labels, shape, seed=labels + shape[0])
    bilateral = (80.0, 13.0, 10.0)
    expected = dense_crf(rgb, unary, iterations, (3.0, gaussian), bilateral)
    q = _numba.dense_crf(rgb, unary, iterations, (3.0, gaussian), bilateral)
    assert q.dtype == np.float32 and q.shape == expected.shape
    np.testing.assert_array_equal(q, expected)


@needs_pydensecrf
def test_more_labels_agree_to_float_rounding():
    """With four labels and more pydensecrf's Eigen takes a vectorised exp: last bits differ."""
    from napari_gardenseg.crf._pydensecrf import dense_crf

    rgb, unary = _random_case(5, (50, 60), seed=1)
    args = (5, (3.0, 3.0), (80.0, 13.0, 10.0))
    q, expected = _numba.dense_crf(rgb, unary, *args), dense_crf(rgb, unary, *args)
    np.testing.assert_allclose(q, expected, atol=2e-5)
    assert (q.argmax(0) == expected.argmax(0)).mean() >= 0.999


@pytest.mark.parametrize("sizes", [[(40, 30), (20, 50), (41, 51)], [(90, 70), (3, 2), (1, 1)]])
def test_gaussian_lattice_cut_from_a_grid_equals_one_built_alone(sizes, monkeypatch):
    kernels = _numba._kernels()
    scale, down, canonical, alpha = _numba._GAUSSIAN
    monkeypatch.setattr(_numba, "_grids", {})
    sxy = np.float32(3.0)
    _numba.reserve(max(h for h, _ in sizes), max(w for _, w in sizes), 3.0)
    rng = np.random.default_rng(0)
    for h, w in sizes:
        cut = _numba._gaussian(h, w, sxy)
        alone = kernels._grid_lattice(h, w, sxy, scale, down, canonical)
        assert cut[3] == alone[3]  # the same vertices
        np.testing.assert_array_equal(cut[1], alone[1])  # the same barycentric weights
        values = rng.random((h * w, 2), dtype=np.float32)
        out = [np.empty_like(values) for _ in range(2)]
        for (offset, bary, neighbours, m), o in zip((cut, alone), out):
            grid = np.empty((m + 2, 2), np.float32)
            kernels._filter(offset, bary, neighbours, m, alpha, values, o, grid, np.empty_like(grid))
        np.testing.assert_array_equal(out[0], out[1])


@needs_pydensecrf
@pytest.mark.parametrize("seed", [3, 5])
def test_refine_masks_gives_pydensecrf_claims(seed):
    image, _, soft, scores = crowded_case(seed=seed, noise=20)
    inst = Instances.from_dense(soft, scores)
    a = refine_masks(image, inst, CRFParams(backend="pydensecrf"))
    b = refine_masks(image, inst, NUMBA)
    assert b.meta["crf_backend"] == "numba" and b.meta["crf_backend_reason"] == "asked for"
    for ma, mb in zip(a.masks, b.masks):
        np.testing.assert_array_equal(ma, mb)
    np.testing.assert_array_equal(a.offsets, b.offsets)


def test_parallel_crops_equal_one_core(monkeypatch):
    image, _, soft, scores = crowded_case(seed=4)
    inst = Instances.from_dense(soft, scores)
    parallel = refine_masks(image, inst, NUMBA)
    monkeypatch.setattr(crf_instances, "cpu_cores", lambda: 1)
    single = refine_masks(image, inst, NUMBA)
    np.testing.assert_array_equal(paint(parallel), paint(single))
    for a, b in zip(parallel.probs, single.probs):
        np.testing.assert_array_equal(a, b)


def test_cancel_and_progress_with_crops_in_parallel(monkeypatch):
    import threading

    from napari_gardenseg import Cancelled

    image, _, soft, scores = crowded_case(seed=3)
    inst = Instances.from_dense(soft, scores)
    monkeypatch.setattr(crf_instances, "cpu_cores", lambda: 2)
    seen = []
    refine_masks(image, inst, NUMBA, progress=lambda f, m: seen.append((f, m)))
    assert len(seen) == len(inst) and seen[-1][0] == 1.0 and "CRF (numba)" in seen[0][1]
    stop = threading.Event()
    with pytest.raises(Cancelled):
        refine_masks(image, inst, NUMBA, cancel=stop, progress=lambda f, m: stop.set())


def test_features_too_wide_for_the_keys_are_refused():
    rgb, unary = _random_case(2, (20, 20), seed=0)
    with pytest.raises(ValueError, match="too wide for the lattice.*bilateral_srgb is very small.*raise it"):
        _numba.dense_crf(rgb, unary, 1, (3.0, 0.0), (1e-5, 13.0, 10.0))


def test_a_tiny_colour_width_is_refused_before_the_lattice_writes_out_of_bounds():
    # int32 overflow of the elevated coordinates made the rank writes leave their array (the
    # interpreter died); run apart, so that a crash fails this test instead of the whole run
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from napari_gardenseg.crf import _numba\n"
        "rng = np.random.default_rng(0)\n"
        "rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)\n"
        "p = rng.random((20 * 30,), dtype=np.float32)\n"
        "unary = -np.log(np.stack([p, 1 - p]).clip(1e-5, 1))\n"
        "for srgb in (1e-6, 1e-30):\n"
        "    try:\n"
        "        _numba.dense_crf(rgb, unary.astype(np.float32), 2, (3.0, 3.0), (80.0, srgb, 10.0))\n"
        "        print('ran', srgb)\n"
        "    except ValueError as exc:\n"
        "        print('refused', srgb, 'too wide' in str(exc))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[:2] == ["refused 1e-06 True", "refused 1e-30 True"], done.stdout


def test_numbas_fallback_cache_is_a_folder_of_this_users_own(tmp_path, monkeypatch):
    # where the install and the user's cache are read-only, numba's cache went to one fixed
    # /tmp/napari-gardenseg-numba: another account's first run made it unwritable (every CRF failed
    # "cannot cache function") or could put files there that numba unpickles
    import os
    import stat
    import tempfile

    if not hasattr(os, "getuid"):
        pytest.skip("POSIX user ids")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    own = _numba._private_cache_dir()
    assert own == str(tmp_path / f"napari-gardenseg-numba-{os.getuid()}")
    assert stat.S_IMODE(os.stat(own).st_mode) == 0o700 and _numba._private_cache_dir() == own
    os.chmod(own, 0o777)  # writable by others (or, alike, another user's): not used
    other = _numba._private_cache_dir()
    assert other != own and os.path.dirname(other) == str(tmp_path) and os.access(other, os.W_OK)
    os.rmdir(own)
    os.symlink(other, own)  # a link planted under the name
    assert _numba._private_cache_dir() not in (own, other)
