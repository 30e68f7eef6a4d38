"""CRFParams: the one validator of CRF settings (API, CLI, widget)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_gardenseg.crf import CRFParams


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"iterations": -1}, ValueError, "iterations must be >= 0, got -1"),
        ({"iterations": 2.5}, ValueError, "iterations must be an integer, got 2.5"),
        ({"iterations": "3"}, TypeError, r"iterations must be an integer, got '3' \(str\)"),
        ({"iterations": True}, TypeError, r"iterations must be an integer, got True \(bool\)"),
        ({"padding": -2}, ValueError, "padding must be >= 0"),
        ({"padding": None}, TypeError, "padding must be an integer, got None"),
        ({"max_side": -1}, ValueError, "max_side must be >= 0, got -1"),
        ({"max_side": 256.5}, ValueError, "max_side must be an integer, got 256.5"),
        ({"gaussian_sxy": 0}, ValueError, r"gaussian_sxy must be at least 0.01 \(a kernel width\), got 0"),
        ({"bilateral_srgb": 1e-6}, ValueError, "bilateral_srgb must be at least 0.01"),  # crashed the lattice
        ({"gaussian_sxy": 1e-30}, ValueError, "gaussian_sxy must be at least 0.01"),
        ({"gaussian_compat": 1e300}, ValueError, r"gaussian_compat must be in 0..1e\+06"),  # NaN in float32
        ({"unary_weight": 1e39}, ValueError, r"unary_weight must be a positive number up to 1e\+06"),
        ({"gaussian_sxy": "3"}, TypeError, r"gaussian_sxy must be a number, got '3' \(str\)"),
        ({"gaussian_sxy": float("nan")}, ValueError, "gaussian_sxy must be a finite number"),
        ({"bilateral_sxy": -3}, ValueError, "bilateral_sxy must be at least"),
        ({"bilateral_srgb": 0}, ValueError, "bilateral_srgb must be at least"),
        ({"bilateral_srgb": False}, TypeError, r"bilateral_srgb must be a number, got False \(bool\)"),
        ({"bilateral_compat": -1}, ValueError, r"bilateral_compat must be in 0..1e\+06"),
        ({"gaussian_compat": float("inf")}, ValueError, "gaussian_compat must be a finite number"),
        ({"unary_weight": 0}, ValueError, "unary_weight must be a positive"),
        ({"thin_width": -1}, ValueError, "thin_width must be >= 0"),
        ({"band": (0.6, 0.4)}, ValueError, r"band must be \(low, high\) with 0 <= low < high <= 1, got \(0.6, 0.4\)"),
        ({"band": (0.1,)}, ValueError, r"band needs two numbers \(low, high\), got 1"),
        ({"band": (0.1, 0.5, 0.9)}, ValueError, r"band needs two numbers \(low, high\), got 3"),
        ({"band": 0.5}, TypeError, "band must be a tuple or list of two numbers"),
        ({"band": "0.1,0.9"}, TypeError, "band must be a tuple or list of two numbers"),
        ({"band": ("0.1", 0.9)}, TypeError, r"band\[0\] must be a number, got '0.1'"),
        ({"band": (-0.1, 0.9)}, ValueError, "band must be"),
        ({"min_keep": 1.5}, ValueError, "min_keep must be in 0..1, got 1.5"),
        ({"min_keep": "all"}, TypeError, "min_keep must be a number"),
        ({"backend": "cuda"}, ValueError, "backend must be one of 'auto', 'numba', 'pydensecrf', 'torch', got 'cuda'"),
        ({"backend": None}, TypeError, "backend must be one of"),
    ],
)
def test_every_field_is_checked_with_a_message_naming_it(kwargs, error, match):
    with pytest.raises(error, match=match):
        CRFParams(**kwargs)


def test_values_are_normalised():
    p = CRFParams(iterations=np.int64(3), gaussian_sxy=np.float32(2.5), band=[0.2, 0.8], min_keep=1, padding=0)
    assert p.iterations == 3 and type(p.iterations) is int
    assert p.gaussian_sxy == 2.5 and type(p.gaussian_sxy) is float
    assert p.band == (0.2, 0.8) and isinstance(p.band, tuple)
    assert p.min_keep == 1.0 and p.padding == 0
    assert CRFParams().backend == "auto"
    # equal settings compare equal whatever types they came in
    assert CRFParams(band=[0.1, 0.9], iterations=5) == CRFParams()


def test_from_any():
    assert CRFParams.from_any(None) == CRFParams()
    given = CRFParams(iterations=2)
    assert CRFParams.from_any(given) is given
    stored = {"bilateral_srgb": 8, "band": [0.2, 0.9], "unary_weight": 3.0}  # as a checkpoint stores them
    p = CRFParams.from_any(None, defaults=stored)
    assert (p.bilateral_srgb, p.band, p.unary_weight, p.iterations) == (8.0, (0.2, 0.9), 3.0, 5)
    p = CRFParams.from_any({"iterations": 1, "backend": "torch"}, defaults=stored)
    assert (p.iterations, p.backend, p.bilateral_srgb) == (1, "torch", 8.0)
    # a full asdict round trip (what tuning scripts store) gives the same settings
    assert CRFParams.from_any(dataclasses.asdict(p)) == p


def test_from_any_rejects_unknown_fields_and_types():
    with pytest.raises(ValueError, match=r"unknown field 'sxy'; the fields are iterations, gaussian_sxy, .*backend"):
        CRFParams.from_any({"sxy": 3})
    with pytest.raises(ValueError, match="unknown fields 'a', 'b'"):
        CRFParams.from_any({"b": 1, "a": 2})
    with pytest.raises(ValueError, match="unknown field 'old'"):
        CRFParams.from_any(None, defaults={"old": 1})
    with pytest.raises(TypeError, match="crf_params must be a CRFParams, a dict of its fields or None, got list"):
        CRFParams.from_any([("iterations", 3)])
    with pytest.raises(TypeError, match="gaussian_sxy must be a number, got '3'"):
        CRFParams.from_any({"gaussian_sxy": "3"})


def test_refine_says_an_empty_image_is_empty():
    from napari_gardenseg.crf import refine

    with pytest.raises(ValueError, match=r"the image is empty \(0 x 0 pixels\)"):
        refine(np.zeros((0, 0, 3), np.uint8), np.zeros((2, 0, 0), np.float32))
