"""Run records (``<name>_run.json``): what made a file's outputs, and whether a run may skip it.

A record holds the input file's identity (path, size, mtime), the model's
identity (its source and, for checkpoint files, their SHA-256), the options
that change the result (those that differ from the defaults), the outputs
asked for, how the file was read, and what was written (``written``, and the
SHA-256 of each file written, ``sha256``: an output changed since, by a user's
corrections, is never replaced). ``resume`` skips a file whose record matches
this run and whose outputs are all there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np

RUN_SUFFIX = "_run.json"
# 2: a run's default score threshold is the model's own (before, 0.5 whatever the model stored)
_RECORD_FORMAT = 2
# what a run record must share with this run for --resume to skip the file
_COMPARED = ("input", "model", "options", "outputs")
# a wanted record's flag (not compared, not written): the input is tiled at the model's size by
# default (segmented window by window), so a record's tile_size "auto" is its default run
TILED_BY_DEFAULT = "tiled_by_default"
# segment() options that never change the result, so they are not compared
_NOT_COMPARED_OPTIONS = ("device", "progress", "cancel", "keep_soft_masks")


def _package_version() -> str:
    from . import __version__

    return __version__


_SHA_CACHE: dict[tuple, str] = {}


def sha256_of(path) -> str:
    """The SHA-256 of a file's bytes, as a hex string (read in blocks: any size)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_of(path)
    return _SHA_CACHE[key]


def model_identity(model) -> dict:
    """What the run record says about the model: its source and, for checkpoint files, their SHA-256.

    Raises the model loader's error for an unknown name or a missing checkpoint.
    """
    from ._models import MODEL_NAMES, Model, ModelError, bundled_checkpoint, missing_model

    if isinstance(model, Model):
        src = model.source
        if isinstance(src, str) and (src in MODEL_NAMES or Path(src).is_file()):
            return model_identity(src)
        return {"source": str(src), "sha256": None}
    if isinstance(model, (str, os.PathLike)):
        if model == "garden":
            path = bundled_checkpoint()
            return {"source": "garden", "sha256": _sha256(path)}
        if isinstance(model, str) and model in MODEL_NAMES:
            return {"source": model, "sha256": None}  # torchvision's weights file is named by its hash
        path = Path(model).expanduser()
        if not path.exists():
            raise ModelError(missing_model(model))
        if path.is_dir():  # the loader's words, not the checksum's "Is a directory"
            raise ModelError(f"{path} is a folder: give the checkpoint file in it (a .pt or .pth file)")
        path = path.resolve()
        return {"source": str(path), "sha256": _sha256(path)}  # the content, not the date: a copy is the same model
    return {"source": f"<{type(model).__name__} object>", "sha256": None}


def _verifiable(identity: dict) -> bool:
    from ._models import MODEL_NAMES

    return identity.get("sha256") is not None or identity.get("source") in MODEL_NAMES


def _input_identity(path: Path) -> dict:
    st = path.stat()
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _jsonable(value):
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in (sorted(value, key=str) if isinstance(value, set) else value)]
    if isinstance(value, (np.generic,)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _segment_defaults() -> dict:
    from ._options import defaults

    return defaults()


def _compared_options(
    options: dict, crf_overrides, axes: str | None = None, model_id: dict | None = None, *, big: bool = False
) -> dict:
    """The options a run record holds: those that change the result and differ from segment()'s defaults
    (so the API and the CLI agree, and a newer version's new options, left at their defaults, match old records),
    and the file's ``axes`` when the caller gave them. Given the model's identity (:func:`model_identity`),
    a threshold or CRF setting given as the model's own is left out too: the same run, however spelt.
    ``big``: the input is segmented window by window (a zarr store, a big TIFF), which tiles at the
    model's input size by default, so ``tile_size="auto"`` is its default too."""
    opts = {k: v for k, v in _without_defaults(_as_validated(options)).items() if k not in _NOT_COMPARED_OPTIONS}
    opts = _without_tiled_default(opts, big)
    crf_params = opts.get("crf_params")
    if isinstance(crf_params, Mapping):
        # some CRF fields over the model's settings: what crf_overrides (the CLI's --crf-*) are, so
        # both are recorded alike (a dict was read over the package defaults before 5 December, and
        # a record of then, under "crf_params", is not taken for one of now)
        opts["crf_overrides"] = dict(opts.pop("crf_params"))
    if crf_overrides:
        opts["crf_overrides"] = dict(crf_overrides)
    if axes is not None:
        opts["axes"] = axes
    return _jsonable(_without_model_defaults(opts, model_id))


def _without_tiled_default(opts: dict, big: bool) -> dict:
    """``opts`` without ``tile_size="auto"`` where the input is ``big`` (segmented window by window,
    which tiles so when no tile size is given): the same run, however spelt."""
    return {k: v for k, v in opts.items() if not (big and k == "tile_size" and v == "auto")}


def _without_model_defaults(opts: dict, model_id: dict | None) -> dict:
    """``opts`` (a record's options) without a score or mask threshold equal to the one the model
    runs at by default, and without CRF overrides equal to its CRF settings (``--crf-backend auto``,
    ``--crf-iterations 5`` for a model storing 5); where the model's settings cannot be read, only a
    score threshold of 0.5 (a model storing none runs at it) is left out."""
    from ._options import SCORE_THRESHOLD

    if not opts:
        return opts
    known = _model_settings(model_id)
    # unreadable (a Model object made in memory): the score threshold a model storing none runs at
    stored = known or {"score_threshold": SCORE_THRESHOLD, "mask_threshold": None}
    thresholds = ("score_threshold", "mask_threshold")
    opts = {k: v for k, v in opts.items() if k not in thresholds or not _same_number(v, stored[k])}
    overrides = opts.get("crf_overrides")
    if isinstance(overrides, Mapping) and known is not None:
        from ._batch_file import crf_params_from

        meta = {"crf": known["crf"]}
        own = crf_params_from(meta, None, {})

        def same(field, value) -> bool:
            try:  # through the one validator of CRF overrides, as the run reads them
                return getattr(crf_params_from(meta, None, {field: value}), field) == getattr(own, field)
            except (TypeError, ValueError):
                return False

        kept = {field: value for field, value in overrides.items() if not same(field, value)}
        opts = {k: v for k, v in opts.items() if k != "crf_overrides"} | ({"crf_overrides": kept} if kept else {})
    return opts


def _same_number(a, b) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


_MODEL_SETTINGS: dict[tuple, dict | None] = {}


def _model_settings(model_id: dict | None) -> dict | None:
    """The thresholds and CRF settings (as stored, a dict) the model of ``model_id`` runs at by default,
    read from its checkpoint's small entries (cached by its SHA-256); None where they cannot be read."""
    if not isinstance(model_id, Mapping) or not model_id.get("source"):
        return None
    key = (model_id.get("source"), model_id.get("sha256"))
    if key not in _MODEL_SETTINGS:
        from ._models import MODEL_NAMES, model_info
        from ._options import SegmentOptions, with_model_thresholds

        source = key[0]
        if source not in MODEL_NAMES and (key[1] is None or not Path(source).is_file()):
            return None  # a Model object, a file gone: nothing to read its settings from
        try:
            meta = model_info(source)[1]
            own = with_model_thresholds(SegmentOptions(), meta)  # what a run that gives neither runs at
            _MODEL_SETTINGS[key] = {
                "score_threshold": own.score_threshold,
                "mask_threshold": own.mask_threshold,
                "crf": meta.get("crf") if isinstance(meta.get("crf"), Mapping) else None,
            }
        except Exception:  # noqa: BLE001 - unreadable: the options are compared as given
            _MODEL_SETTINGS[key] = None
    return _MODEL_SETTINGS[key]


def _as_validated(options: dict) -> dict:
    """``options`` with SegmentOptions' fields as it holds them: ``classes="weed"`` as ("weed",), a
    whole number as a float, the default tile overlap given in pixels as None; so the same run
    from the API and from the command line (which hands down SegmentOptions' values) records alike."""
    import dataclasses

    from ._options import SegmentOptions, default_overlap

    fields = {f.name for f in dataclasses.fields(SegmentOptions)}
    given = {k: v for k, v in options.items() if k in fields}
    validated = SegmentOptions.from_kwargs(**given)
    if isinstance(validated.tile_size, int) and validated.tile_overlap == default_overlap(validated.tile_size):
        validated = validated.replace(tile_overlap=None)
    return {**options, **{k: getattr(validated, k) for k in given}}


def _recorded_as_now(options: dict) -> dict:
    """A run record's options as this version records them (a record written before they were
    validated on the way in holds ``classes="weed"``, the default overlap in pixels...); as
    they are where this version cannot read them."""
    try:
        return _jsonable(_without_defaults(_as_validated(options)))
    except (TypeError, ValueError):
        return options


def _without_defaults(options: dict) -> dict:
    """``options`` without those at segment()'s defaults (a newer version's new options, left at
    their defaults, match older records)."""
    defaults = _segment_defaults()
    return {k: v for k, v in options.items() if not (k in defaults and _same(v, defaults[k]))}


def _same(a, b) -> bool:
    try:
        return bool(type(a) is type(b) and a == b)
    except Exception:  # noqa: BLE001  (arrays and the like compare oddly: not a default)
        return False


def read_run_record(out_dir, name: str) -> dict | None:
    """The run record of output name ``name`` in ``out_dir``, or None if there is none (or it is unreadable)."""
    path = Path(out_dir) / f"{name}{RUN_SUFFIX}"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _differences(record: dict, wanted: dict) -> list[str]:
    wanted = _jsonable(wanted)

    def same(key):
        a, b = record.get(key), wanted.get(key)
        if key == "model" and isinstance(a, dict) and isinstance(b, dict) and a.get("sha256") and b.get("sha256"):
            return a["sha256"] == b["sha256"]  # the same weights, wherever the file lies
        if key == "options" and isinstance(a, dict):
            if record.get("format", 1) < 2 and "score_threshold" not in a:
                a = {**a, "score_threshold": 0.5}  # what its run used by default, whatever the model stored
            if a != b:
                # a record written before the model's own settings were left out holds them as given
                a = _without_model_defaults(_recorded_as_now(a), wanted.get("model"))
            if a != b:  # a big input's record written before "auto" was left out as its default
                a = _without_tiled_default(a, wanted.get(TILED_BY_DEFAULT, False))
        if key == "input" and isinstance(a, dict) and isinstance(b, dict) and "path" in a and "path" in b:
            return _same_file(a, b)
        return a == b

    return [k for k in _COMPARED if not same(k)]


def _same_file(a: dict, b: dict) -> bool:
    """Whether two records' inputs are one file moved or mounted elsewhere (another drive letter, a
    Windows path read on Linux, a cluster's scratch): the same name and size, and times 2 s apart at
    most, as a copy to FAT or exFAT rounds them. Where it lies in the folder already names its outputs."""

    def name(path) -> str:
        return re.split(r"[\\/]", str(path))[-1]

    rest = {k for k in (*a, *b) if k not in ("path", "mtime_ns")}
    times = a.get("mtime_ns"), b.get("mtime_ns")
    close = times[0] == times[1] or (
        all(isinstance(t, int) for t in times) and abs(times[0] - times[1]) <= 2_000_000_000
    )
    return name(a["path"]) == name(b["path"]) and close and all(a.get(k) == b.get(k) for k in rest)


# _not_done's reason when only outputs are missing (deleted) or empty (a crash): the same run's,
# which resume makes again, replacing its other outputs that are unchanged since they were written
OUTPUTS_GONE = "outputs missing or empty"


def _not_done(out: Path, name: str, wanted: dict, record: dict | None = None) -> str | None:
    """The one "done" check: None when ``name``'s run record (``record``, else read from ``out``) matches
    ``wanted`` (input, model, options) and its outputs are all there; otherwise why not."""
    record = read_run_record(out, name) if record is None else record
    if record is None:
        return "no run record"
    differ = _differences(record, wanted)
    if differ:
        return "different " + " and ".join(differ)
    if not _verifiable(wanted["model"]):  # first: outputs gone are made again only by the same model
        return "a model that cannot be verified"
    if not all(_has_bytes(out / f) for f in record.get("written", [])):
        return OUTPUTS_GONE
    return None


def _has_bytes(path: Path) -> bool:
    """Whether an output is there and not empty (what a crash leaves of a file whose bytes had not
    reached the disk; a zarr store is a folder)."""
    try:
        return path.is_dir() or path.stat().st_size > 0
    except OSError:
        return False


def _is_done(out: Path, name: str, wanted: dict) -> bool:
    return _not_done(out, name, wanted) is None
