"""SegmentOptions and FitOptions: the settings of a segmentation run and of a training run,
each declared and validated in one place.

Every entry point builds one and hands it down: :func:`napari_gardenseg.segment`
and :func:`~napari_gardenseg.segment_to_zarr` from their keyword arguments, the
widget from its controls, the CLI from its flags, the batch from its options.
The widget's initial values, the CLI's ``--help`` and the README read the
defaults from here. Built like :class:`~napari_gardenseg.CRFParams`, which it
holds: a frozen dataclass whose ``__post_init__`` is the one validator.

No torch here: the CLI's ``--help`` and napari's start-up read it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .crf._params import CRFParams

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULTS",
    "FIT_DEFAULTS",
    "MODEL_NAMES",
    "MODEL_TITLES",
    "TRAIN_DEFAULTS",
    "VEGETATION_MODES",
    "FitOptions",
    "SegmentOptions",
    "fraction",
    "whole_number",
]

# The bundled model: works offline. "coco" (torchvision's COCO weights, everyday
# objects, downloaded once) is one argument away.
DEFAULT_MODEL = "garden"
MODEL_NAMES = ("coco", "coco-v1", "garden")
# What the widget and the README call each name (here, not in _models, so that the widget
# can show them without importing torch).
MODEL_TITLES = {
    "coco": "COCO Mask R-CNN v2 (torchvision, downloads 180 MB once)",
    "coco-v1": "COCO Mask R-CNN v1 (torchvision, downloads 170 MB once)",
    "garden": "Garden (bundled, offline)",
}
VEGETATION_MODES = ("auto", "on", "off")


def fraction(name: str, value, *, open_low: bool = False, open_high: bool = False) -> float:
    """``value`` as a float in [0, 1] (``open_low``: above 0; ``open_high``: below 1); ValueError otherwise."""
    if isinstance(value, (bool, np.bool_, str, bytes)):  # float() takes True and "0.7"
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}") from None
    low_ok = v > 0.0 if open_low else v >= 0.0
    high_ok = v < 1.0 if open_high else v <= 1.0
    if math.isnan(v) or not (low_ok and high_ok):
        bound = "above 0 and below 1" if open_high else "above 0 and at most 1" if open_low else "between 0 and 1"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return v


#: the resize factors ``scale`` takes (1.0: the image's own pixels)
SCALE_RANGE = (0.01, 16.0)


def _scale(scale):
    if scale is None or (isinstance(scale, str) and scale == "auto"):
        return scale
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise TypeError(f"scale must be None, 'auto' or a positive number, got {scale!r}")
    if not (math.isfinite(scale) and SCALE_RANGE[0] <= float(scale) <= SCALE_RANGE[1]):
        raise ValueError(
            f"scale must be between {SCALE_RANGE[0]:g} and {SCALE_RANGE[1]:g} (1.0 = the image's own pixels), "
            f"got {scale!r}"
        )
    return float(scale)


def default_overlap(tile_size: int) -> int:
    """The overlap (pixels) of tiles of ``tile_size`` pixels when none is given: a quarter of the
    tile, so objects up to that size are seen whole by some tile."""
    return max(16, tile_size // 4)


def check_tile_overlap(tile_overlap: int, tile_size: int, *, in_use: bool = False) -> None:
    """ValueError unless ``tile_overlap`` is under half of ``tile_size`` (``in_use``: the size a run
    tiles at, the model's input size where tile_size is 'auto' or the image a thin strip)."""
    if tile_overlap >= tile_size // 2:
        size = (
            f"the tile size in use ({tile_size} px, the model's input size where tile_size is 'auto' "
            "or the image is a thin strip): choose a smaller tile_overlap"
            if in_use
            else f"tile_size ({tile_size})"
        )
        raise ValueError(f"tile_overlap ({tile_overlap}) must be less than half of {size}")


def _tiling(tile_size, tile_overlap) -> tuple:
    """``tile_size``: None, "auto" or pixels >= 64; ``tile_overlap``: None or pixels >= 0, under half a tile."""
    if tile_size is not None and not (isinstance(tile_size, str) and tile_size == "auto"):
        if isinstance(tile_size, bool) or not isinstance(tile_size, numbers.Integral):
            raise TypeError(f"tile_size must be None, 'auto' or a whole number of pixels, got {tile_size!r}")
        if tile_size < 64:
            raise ValueError(f"tile_size must be at least 64 pixels, got {tile_size}")
        tile_size = int(tile_size)
    if tile_overlap is not None:
        if isinstance(tile_overlap, bool) or not isinstance(tile_overlap, numbers.Integral):
            raise TypeError(f"tile_overlap must be None or a whole number of pixels, got {tile_overlap!r}")
        if tile_overlap < 0:
            raise ValueError(f"tile_overlap must be >= 0, got {tile_overlap}")
        if isinstance(tile_size, int):
            check_tile_overlap(tile_overlap, tile_size)
        tile_overlap = int(tile_overlap)
    return tile_size, tile_overlap


def _classes(classes) -> tuple | None:
    """None, or a tuple of class names (str) and ids (int); names are checked against the model at run time."""
    if classes is None:
        return None
    if isinstance(classes, (str, numbers.Integral)) and not isinstance(classes, bool):
        classes = [classes]
    elif isinstance(classes, (set, frozenset)):
        classes = sorted(classes, key=str)
    elif not isinstance(classes, (list, tuple, np.ndarray)):
        raise TypeError(
            f"classes must be None, a class name or id, or a list of them, got {classes!r} ({type(classes).__name__})"
        )
    out = []
    for c in classes:
        if isinstance(c, numbers.Integral) and not isinstance(c, bool):
            out.append(int(c))
        elif isinstance(c, str):
            out.append(c)
        else:
            raise TypeError(f"classes must hold class names (str) or ids (int), got {c!r} ({type(c).__name__})")
    if not out:  # an empty filter would keep nothing, silently
        raise ValueError("classes is empty: give class names or ids to keep, or None for every class")
    return tuple(out)


def _flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


@dataclass(frozen=True)
class SegmentOptions:
    """The settings of one segmentation run (defaults: what ``segment(image)`` does).

    score_threshold: the network's detections scoring below it are dropped (0..1);
        plants found by colour alone are kept, scored at it when they score lower;
        None: the model's own (:func:`model_score_threshold`: the value stored with
        it, else 0.5).
    mask_threshold: a pixel belongs to an instance where its soft mask is above
        this (above 0, below 1); None: the model's own (:func:`model_mask_threshold`:
        the value stored with it, else Mask R-CNN's 0.5).
    classes: None keeps every class; else a tuple of class names or ids, not empty
        (a single name or id, a list or a set are accepted and stored as a tuple).
    scale: None lets the model resize the image its own way (torchvision's
        ``min_size``/``max_size``); a factor in 0.01..16 resizes it first
        (1.0 = native pixels); "auto" estimates it from the plants' size.
    tile_size: None runs the whole image at once; pixels (>= 64, at ``scale``)
        or "auto" run overlapping tiles (see :mod:`napari_gardenseg._tiling`).
        An image read window by window (:func:`~napari_gardenseg.segment_to_zarr`,
        and a batch's zarr stores of one image and TIFF or .npy files of a plane
        over 8192 x 8192) runs as
        "auto" where it is None: in tiles of native pixels where a side is over
        4 times the model's input, else whole.
    tile_overlap: pixels between neighbouring tiles (None: a quarter of a tile; 0: none,
        and a plant on a seam comes out in pieces, one per tile).
    merge_classes: report every instance as one class "plant" and drop
        cross-class duplicates.
    crf: refine the masks with the dense CRF.
    crf_params: the CRF's settings: a :class:`CRFParams` as given; a dict of
        some of its fields, read over the settings stored with the model (as
        the command line's ``--crf-*`` options are); None: the model's stored
        settings, else the package defaults.
    device: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps";
        the name is checked when the run starts (without importing torch
        here): :class:`~napari_gardenseg._device.DeviceError` then.
    vegetation: plant pixels from colour (``napari_gardenseg._vegetation``):
        "auto" uses them where the image's colours separate plants from the
        ground, "on" wherever its colours form two classes whose upper one is
        green (without them, on bare soil or plants none of them green, it
        would make soil into plants), "off" never.

    Raises TypeError or ValueError naming the field for a bad value (the
    device's name: when the run starts).
    """

    score_threshold: float | None = None
    mask_threshold: float | None = None
    classes: tuple[str | int, ...] | None = None
    scale: float | Literal["auto"] | None = None
    tile_size: int | Literal["auto"] | None = None
    tile_overlap: int | None = None
    merge_classes: bool = False
    crf: bool = True
    # a dict is kept (a copy) and left out of the hash: hash(options) works whatever it holds
    crf_params: CRFParams | Mapping | None = dataclasses.field(default=None, hash=False)
    device: str = "auto"
    vegetation: Literal["auto", "on", "off"] = "auto"

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        if self.score_threshold is not None:
            put("score_threshold", fraction("score_threshold", self.score_threshold))
        if self.mask_threshold is not None:
            put("mask_threshold", fraction("mask_threshold", self.mask_threshold, open_low=True, open_high=True))
        put("classes", _classes(self.classes))
        put("scale", _scale(self.scale))
        tile_size, tile_overlap = _tiling(self.tile_size, self.tile_overlap)
        put("tile_size", tile_size)
        put("tile_overlap", tile_overlap)
        put("merge_classes", _flag("merge_classes", self.merge_classes))
        put("crf", _flag("crf", self.crf))
        if isinstance(self.crf_params, Mapping):
            CRFParams.from_any(self.crf_params)  # checked now; read over the model's settings when the run starts
            put("crf_params", dict(self.crf_params))  # a copy: the caller's dict may change later
        elif self.crf_params is not None:
            put("crf_params", CRFParams.from_any(self.crf_params))
        device = self.device
        if device is None:
            device = "auto"
        elif not isinstance(device, str):
            if not hasattr(device, "type"):  # a torch.device
                raise TypeError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {device!r}")
            device = str(device)
        put("device", device)
        if not isinstance(self.vegetation, str) or self.vegetation not in VEGETATION_MODES:
            raise ValueError(
                f"vegetation must be one of {', '.join(map(repr, VEGETATION_MODES))}, got {self.vegetation!r}"
            )

    @classmethod
    def from_kwargs(cls, **kwargs) -> SegmentOptions:
        """Options from keyword arguments named like the fields; an unknown name raises TypeError listing them."""
        names = field_names()
        unknown = sorted(set(kwargs) - set(names))
        if unknown:
            raise TypeError(
                f"unknown segmentation option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"the options are {', '.join(names)}"
            )
        return cls(**kwargs)

    def replace(self, **changes) -> SegmentOptions:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)

    def changed(self) -> dict:
        """The fields that differ from the defaults, by name (what the repr shows)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) != f.default}

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self.changed().items())
        return f"SegmentOptions({body})"


# Where Mask R-CNN's soft masks end (He et al. 2017; torchvision's paste_masks_in_image): the
# threshold of a model that stores none.
MASK_RCNN_THRESHOLD = 0.5


# segment's score threshold for a model that stores none (torchvision's detection examples' 0.5)
SCORE_THRESHOLD = 0.5


def model_score_threshold(meta: dict) -> float:
    """The ``score_threshold`` a model runs at by default: ``meta["score_threshold"]`` (its
    checkpoint's, its makers' choice) or :data:`SCORE_THRESHOLD`. ValueError for a stored value
    outside 0..1. The widget shows the same value (what it runs with)."""
    stored = (meta or {}).get("score_threshold")
    if stored is None:
        return SCORE_THRESHOLD
    return fraction("the model's stored score_threshold", stored)


def model_mask_threshold(meta: dict) -> float:
    """The ``mask_threshold`` a model runs at by default: ``meta["mask_threshold"]`` (its
    checkpoint's, chosen by measurement for that model: the bundled garden model's blurs thin
    leaves below 0.5, docs/quality.md) or :data:`MASK_RCNN_THRESHOLD`. ValueError for a stored
    value outside (0, 1)."""
    stored = (meta or {}).get("mask_threshold")
    if stored is None:
        return MASK_RCNN_THRESHOLD
    return fraction("the model's stored mask_threshold", stored, open_low=True, open_high=True)


def with_model_thresholds(options: SegmentOptions, meta: dict) -> SegmentOptions:
    """``options`` with the score and mask thresholds left None (the model's own) taken from the
    model's stored ``meta`` (:func:`model_score_threshold`, :func:`model_mask_threshold`), resolved
    once where a run starts. ValueError for a stored value out of range, saying how to run it anyway."""
    readers = {"score_threshold": model_score_threshold, "mask_threshold": model_mask_threshold}
    for name, read in readers.items():
        if getattr(options, name) is None:
            try:
                options = options.replace(**{name: read(meta)})
            except ValueError as exc:  # its makers' slip: the run can still give its own
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{exc}; give {name}= ({flag} on the command line) to run this model") from None
    return options


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(SegmentOptions)]


def defaults() -> dict:
    """Every option's default, by name (the widget's initial values, the CLI's ``--help``)."""
    return {f.name: f.default for f in dataclasses.fields(SegmentOptions)}


# The defaults as one value: entry points read ``DEFAULTS.<field>`` for their keyword defaults.
DEFAULTS = SegmentOptions()


def whole_number(name: str, value, *, low: int = 1, none_ok: bool = False, unit: str = "") -> int | None:
    """``value`` as an int of at least ``low`` (``none_ok``: None too); ValueError naming ``name`` otherwise."""
    if value is None and none_ok:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be a whole number{unit}, at least {low}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class FitOptions:
    """The settings of the training loop that :func:`~napari_gardenseg.train` and
    :func:`~napari_gardenseg.adapt` run (defaults: ``train``'s), declared and validated in one
    place; both build one from their keyword arguments, the training widget from its controls.

    iterations: optimiser steps, at least 1; None: as many as a time budget allows (``adapt``).
    batch_size: training crops per step, at least 1.
    lr: AdamW's peak learning rate (positive, finite); it warms up linearly over
        ``warmup`` steps, then decays on a cosine to 5% of itself.
    crop: the side of each training crop in pixels, at least 16.
    seed: the seed of the random draws (crops, flips, pasted scenes), a whole number from 0.
    warmup: steps of linear warm-up, from 0; None: a tenth of ``iterations``, at most 200.
    scale_range: (low, high), each crop rescaled by a random factor in it around the
        scale inference sees the photo at; positive, low <= high.
    roi_batch: proposals sampled per image for the box head, at least 1; None: the model's own.
    positive_fraction: the share of positives among them (each also trains the mask
        head, the costliest part), in (0, 1]; None: the model's own (torchvision's 0.25).

    Raises ValueError naming the setting and what it must be.
    """

    iterations: int | None = 200
    batch_size: int = 2
    lr: float = 1e-3
    crop: int = 384
    seed: int = 0
    warmup: int | None = None
    scale_range: tuple[float, float] = (0.75, 1.33)
    roi_batch: int | None = None
    # half torchvision's: half as many positives learn as well (docs/benchmarks.md: the fine-tuning checks)
    positive_fraction: float | None = 0.125

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        put("iterations", whole_number("iterations", self.iterations, none_ok=True))
        put("batch_size", whole_number("batch_size", self.batch_size))
        lr = self.lr
        if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real) or not 0 < lr < math.inf:
            raise ValueError(f"lr must be a positive, finite number, got {lr!r}")
        put("lr", float(lr))
        put("crop", whole_number("crop", self.crop, low=16, unit=" of pixels"))
        put("seed", whole_number("seed", self.seed, low=0))
        put("warmup", whole_number("warmup", self.warmup, low=0, none_ok=True))
        try:
            low, high = (float(v) for v in self.scale_range)
        except (TypeError, ValueError):
            low = high = math.nan
        if isinstance(self.scale_range, (str, bytes)) or not (0 < low <= high < math.inf):
            raise ValueError(
                f"scale_range must be two positive numbers (low, high), low <= high, got {self.scale_range!r}"
            )
        put("scale_range", (low, high))
        put("roi_batch", whole_number("roi_batch", self.roi_batch, none_ok=True))
        if self.positive_fraction is not None:
            put("positive_fraction", fraction("positive_fraction", self.positive_fraction, open_low=True))


FIT_DEFAULTS = FitOptions()
# train()'s defaults that the training widget shows (here so that it opens without torch)
TRAIN_DEFAULTS = {k: getattr(FIT_DEFAULTS, k) for k in ("iterations", "batch_size", "lr", "crop", "seed")}
