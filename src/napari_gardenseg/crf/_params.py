"""CRFParams: the dense CRF's settings, validated in one place for API, CLI and widget."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

BACKENDS = ("auto", "numba", "pydensecrf", "torch")


def _number(name: str, value) -> float:
    """``value`` as a float; TypeError for bools, strings and other non-numbers."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def _integer(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


# the narrowest kernel width (px, colour levels): far below any useful one, and above what would
# put the numba lattice's coordinates beyond its keys (the torch backend's keys fill up sooner:
# it refuses widths below about 0.5 on a crop, KeysTooWide); the largest weight: the backends
# compute in float32, where a weight beyond it overflows the messages to NaN
MIN_WIDTH = 0.01
MAX_WEIGHT = 1e6


@dataclass(frozen=True)
class CRFParams:
    """Dense-CRF parameters (pydensecrf's example defaults), the policy of
    :func:`refine_masks` (see ``napari_gardenseg.crf._instances`` for why each
    exists) and the backend.

    iterations: mean-field iterations (>= 0).
    gaussian_sxy, gaussian_compat: smoothness kernel width (px, >= 0.01, MIN_WIDTH) and weight
        (0..1e6, MAX_WEIGHT).
    bilateral_sxy, bilateral_srgb, bilateral_compat: appearance kernel widths
        (px and colour levels, >= 0.01, MIN_WIDTH) and weight (0..1e6, MAX_WEIGHT).
    padding: crop margin (px, >= 0) around each instance's uncertain region.
    max_side: an instance whose uncertain region is longer than this (px) is refined at a
        reduced resolution where it is ``max_side`` long (Pillow's box filter down, Q
        bilinearly back up), its padding and the kernel widths counted in those pixels;
        0 refines every instance at the image's resolution.
    unary_weight: weight (> 0, <= 1e6, MAX_WEIGHT) of the soft mask's unary against the pairwise terms.
    band: (low, high), 0 <= low < high <= 1; only pixels with low < soft < high may change
        (widened to hold the mask threshold where that lies outside it).
    min_keep: in 0..1; keep the raw mask if the refined one retains less than
        this fraction of it.
    thin_width: objects thinner than this (px, >= 0) get a weaker Gaussian kernel.
    backend: "auto" (numba, on the CPU even where the network runs on a GPU; without
        numba, torch on a GPU, else pydensecrf, else torch), "numba", "pydensecrf" (the C++
        reference, optional extra) or "torch" (always there; CPU, CUDA or MPS).

    Raises TypeError or ValueError naming the field for a bad value; :meth:`from_any`
    ValueError for an unknown field.
    """

    iterations: int = 5
    gaussian_sxy: float = 3
    gaussian_compat: float = 3
    bilateral_sxy: float = 80
    bilateral_srgb: float = 13
    bilateral_compat: float = 10
    padding: int = 24
    max_side: int = 512
    unary_weight: float = 2.0
    band: tuple[float, float] = (0.1, 0.9)
    min_keep: float = 0.7
    thin_width: float = 8.0
    backend: Literal["auto", "numba", "pydensecrf", "torch"] = "auto"

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        for name in ("iterations", "padding", "max_side"):
            value = _integer(name, getattr(self, name))
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
            put(name, value)
        for name in ("gaussian_sxy", "bilateral_sxy", "bilateral_srgb"):
            value = _number(name, getattr(self, name))
            if not value >= MIN_WIDTH:
                raise ValueError(f"{name} must be at least {MIN_WIDTH} (a kernel width), got {value!r}")
            put(name, value)
        value = _number("unary_weight", self.unary_weight)
        if not 0 < value <= MAX_WEIGHT:
            raise ValueError(f"unary_weight must be a positive number up to {MAX_WEIGHT:g}, got {value!r}")
        put("unary_weight", value)
        for name in ("gaussian_compat", "bilateral_compat"):
            value = _number(name, getattr(self, name))
            if not 0 <= value <= MAX_WEIGHT:
                raise ValueError(f"{name} must be in 0..{MAX_WEIGHT:g} (a kernel weight), got {value!r}")
            put(name, value)
        value = _number("thin_width", self.thin_width)
        if value < 0:
            raise ValueError(f"thin_width must be >= 0, got {value!r}")
        put("thin_width", value)
        band = self.band
        if isinstance(band, (str, bytes)) or not hasattr(band, "__len__") or not hasattr(band, "__iter__"):
            raise TypeError(f"band must be a tuple or list of two numbers (low, high), got {band!r}")
        if len(band) != 2:
            raise ValueError(f"band needs two numbers (low, high), got {len(band)}: {tuple(band)!r}")
        low, high = (_number(f"band[{k}]", v) for k, v in enumerate(band))
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(f"band must be (low, high) with 0 <= low < high <= 1, got {(low, high)!r}")
        put("band", (low, high))
        min_keep = _number("min_keep", self.min_keep)
        if not 0.0 <= min_keep <= 1.0:
            raise ValueError(f"min_keep must be in 0..1, got {min_keep!r}")
        put("min_keep", min_keep)
        if not isinstance(self.backend, str):
            raise TypeError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {self.backend!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {self.backend!r}")

    @classmethod
    def from_any(cls, value=None, defaults: dict | None = None) -> CRFParams:
        """A CRFParams from None (``defaults``, else the defaults), a dict of
        fields (over ``defaults``) or a CRFParams (returned as is).

        ``defaults`` is e.g. a model's stored settings (``model.meta["crf"]``).
        Unknown fields raise ValueError listing the valid ones.
        """
        if isinstance(value, cls):
            return value
        if isinstance(defaults, cls):  # a model's settings set in memory as CRFParams
            defaults = dataclasses.asdict(defaults)
        if defaults is not None and not isinstance(defaults, Mapping):
            raise TypeError(f"CRF defaults must be a dict of CRFParams fields, got {type(defaults).__name__}")
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(f"crf_params must be a CRFParams, a dict of its fields or None, got {type(value).__name__}")
        fields = {**(defaults or {}), **(value or {})}
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(fields) - set(valid), key=str)
        if unknown:
            raise ValueError(
                f"crf_params: unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"the fields are {', '.join(valid)}"
            )
        return cls(**fields)
