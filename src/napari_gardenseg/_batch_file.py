"""One input file: read, segment, write its outputs and, last, its run record.

The model is loaded once per process and reused (:func:`_model`), so a Dask
worker loads it for its first file only.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from ._batch_outputs import _write_outputs, input_kind, output_files
from ._claims import DONE_MEANWHILE
from ._files import ForeignFileError, OutputExistsError, check_target
from ._image_arrays import looks_like_label_map, one_colour
from ._image_reader import read_image
from ._run_record import (
    _RECORD_FORMAT,
    OUTPUTS_GONE,
    RUN_SUFFIX,
    TILED_BY_DEFAULT,
    _compared_options,
    _has_bytes,
    _input_identity,
    _jsonable,
    _not_done,
    _package_version,
    _same_file,
    _sha256,
    model_identity,
    read_run_record,
)

# segment() arguments that are not SegmentOptions fields
_RUN_ONLY = ("progress", "cancel", "keep_soft_masks")

# result.meta's entries on how the network saw the image, kept in the run record
_NETWORK_KEYS = ("scale", "tiles", "data_window", "nodata_tiles", "seam_note")


def crf_params_from(meta: dict, crf_params=None, crf_overrides=None):
    """The CRFParams for one run: ``crf_params`` (CRFParams, dict or None) as given, or
    ``crf_overrides`` (a dict of fields) over the settings stored in the model's ``meta``, through
    the one validator."""
    if crf_overrides is None:
        return crf_params
    if crf_params is not None:
        raise ValueError("give crf_params or crf_overrides, not both")
    from .crf import CRFParams

    return CRFParams.from_any(dict(crf_overrides), defaults=dict((meta or {}).get("crf") or {}))


_MODELS: dict[tuple, object] = {}
_MODELS_LOCK = threading.Lock()


def _model(spec, device="auto", model_id: dict | None = None):
    """The loaded model for ``spec`` on ``device``, loaded once per process.

    A checkpoint replaced on disk between two batches (another ``model_id``: its checksum) is
    loaded again, and replaces the one held: only the newest of a file is kept.
    """
    from ._models import Model, load_model

    if isinstance(spec, Model) or not isinstance(spec, (str, os.PathLike)):
        return load_model(spec, device=device)
    key, identity = (os.fspath(spec), str(device)), json.dumps(model_id, sort_keys=True)
    with _MODELS_LOCK:  # one load per process even when a worker runs several threads
        if key not in _MODELS or _MODELS[key][0] != identity:
            _MODELS[key] = (identity, load_model(spec, device=device))
        return _MODELS[key][1]


def _check_options(segment_options: dict):
    """The run's SegmentOptions from ``segment_options`` (one validator: unknown names and bad values raise)."""
    from ._options import SegmentOptions

    return SegmentOptions.from_kwargs(**{k: v for k, v in segment_options.items() if k not in _RUN_ONLY})


def process_file(path, out_dir, model="garden", *, name: str | None = None, **options) -> dict:
    """Segment one image file and write its outputs into ``out_dir``; return a summary dict.

    ``options``: those of :func:`_process_file` (``coco``, ``write_overlay``, ``overwrite``,
    ``resume``, ``crf_overrides``, ``model_id``, ``axes``, and :func:`napari_gardenseg.segment`'s),
    whose docstring says what is written and how. A big input's labels staged for the renames
    (a hidden store as big as its labels: gigabytes for an orthomosaic) are removed when the file
    stops before them (Ctrl-C during its table or COCO export, a full disk while writing its GIS
    copies...): only the store this call made, never another process's of the same name."""
    made = []
    try:
        return _process_file(path, out_dir, model, name=name, staged_made=made, **options)
    finally:
        import shutil

        for staged in made:
            if staged.exists():  # moved into place when the file's outputs were written
                shutil.rmtree(staged, ignore_errors=True)


def _staged_store(out: Path, name: str) -> Path:
    """Where a big input's labels store is made before its outputs' renames: hidden, beside them."""
    labels = out / f"{name}_labels.zarr"  # name may hold a subfolder (recursive batches)
    staged = labels.with_name(f".{labels.name}.staged")
    if len(os.fsencode(staged.name)) > _NAME_MAX:  # a long name whose outputs fit, not with this tail
        import hashlib

        staged = labels.with_name(f".gardenseg-{hashlib.sha1(os.fsencode(labels.name)).hexdigest()[:12]}.staged")
    return staged


def _process_file(
    path,
    out_dir,
    model="garden",
    *,
    name: str | None = None,
    coco: bool = False,
    write_overlay: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    crf_overrides: dict | None = None,
    model_id: dict | None = None,
    axes: str | None = None,
    staged_made: list | None = None,
    **segment_options,
) -> dict:
    """:func:`process_file`'s work: one image file segmented, its outputs written into ``out_dir``.
    ``staged_made``: a list the staged store of a big input is appended to when it is made.

    Outputs (see :func:`output_files`) are named ``<name>_...`` (``name``
    defaults to the file's stem); each is written under a temporary name and
    renamed when complete, and the run record ``<name>_run.json`` comes last.
    An existing output raises :class:`~napari_gardenseg._files.OutputExistsError`
    unless ``overwrite=True``; with ``resume=True``, outputs already made from
    the same input with the same model and options are kept and their summary
    returned (``"reused": True``), as they are when another run into ``out_dir``
    finishes this file first with the same ones (a note says so).
    ``crf_overrides``: CRF fields that replace
    the model's stored settings (e.g. ``{"iterations": 10}``).

    The file is read by :func:`napari_gardenseg._image_reader.read_image` (EXIF
    orientation, colour modes, axes; ``axes`` names a TIFF's or zarr store's
    axes when the file does not, e.g. ``"TYX"``). A stack (T, Z or C planes)
    is segmented plane by plane: its label images are ``(*stack, H, W)``
    with ids unique across the stack, the table has a ``plane`` column and
    one per plane axis, the overlay PNG one frame per plane (APNG) and the
    COCO file one image per plane. The run record's ``image`` says how the
    file was read (axes, EXIF orientation applied, colour conversion).
    """
    path = Path(path)
    out = Path(out_dir)
    name = name or path.stem
    crf = segment_options.get("crf", True)
    model_id = model_id or model_identity(model)
    kind = input_kind(path, axes)
    record = {
        "format": _RECORD_FORMAT,
        "input": _input_identity(path) if path.exists() else {"path": os.path.abspath(path)},
        "model": model_id,
        "options": _compared_options(segment_options, crf_overrides, axes, model_id, big=kind.big),
        "outputs": {"coco": bool(coco), "overlay": bool(write_overlay)},
    }
    # what a run record must say for its outputs to be this file's
    wanted = {**record, TILED_BY_DEFAULT: kind.big}
    if resume and (done := read_run_record(out, name)) is not None:
        why = _not_done(out, name, wanted, done)
        if why is None:
            return _reused(path, name, done)
        # this run's outputs, some deleted or emptied by a crash: made again (changed ones are refused below)
        overwrite = overwrite or why == OUTPUTS_GONE
    targets = [out / f for f in output_files(name, crf=crf, coco=coco, write_overlay=write_overlay, **kind._asdict())]
    big = kind.big
    check_outputs(out, name, targets, overwrite, input_path=path)  # fail before the work, not after it

    # 1. read: the one reader (orientation, colours, axes); a big input lazily, tile by tile
    image = read_image(path, axes=axes, lazy=big)
    # 2. segment
    from ._inference import segment_to_zarr_with, segment_with

    t0 = time.perf_counter()
    loaded = _model(model, segment_options.get("device", "auto"), record["model"])
    if crf_overrides:
        segment_options = {
            **segment_options,
            "crf_params": crf_params_from(loaded.meta, segment_options.get("crf_params"), crf_overrides),
        }
    options = _check_options(segment_options)
    progress, cancel = segment_options.get("progress"), segment_options.get("cancel")
    if big:  # labels go into a staged store; _write_outputs renames it with the other outputs
        staged = _staged_store(out, name)
        staged.parent.mkdir(parents=True, exist_ok=True)
        if staged_made is not None:
            staged_made.append(staged)
        from ._image_source import file_source

        source = file_source(image)  # its pixel size and grid kept in the store's attributes
        result = segment_to_zarr_with(source, staged, loaded, options, overwrite=True, progress=progress, cancel=cancel)
        result.meta["staged"] = staged
    elif image.is_stack:  # plane by plane, ids unique across the stack
        from ._stack import segment_stack

        index = image.planes()
        result = segment_stack(
            lambda i: image.plane(index[i]),
            index,
            lambda plane, report: segment_with(plane, loaded, options, progress=report, cancel=cancel),
            axes=image.plane_axes,
            progress=progress,
            cancel=cancel,
        )
    else:
        result = segment_with(image.data, loaded, options, progress=progress, cancel=cancel)
    seconds = time.perf_counter() - t0
    # 3. write: every output atomically, the run record last (its presence means complete)
    out.mkdir(parents=True, exist_ok=True)
    run_json = out / f"{name}{RUN_SUFFIX}"
    # everything the record says is worked out first: between the outputs' renames and the
    # record's there must be no time for an interruption to leave outputs without a record
    meta = getattr(result, "meta", None) or {}
    note = _label_map_note(image) or _file_note(result, options.score_threshold)  # not a photo: that first
    record.update(
        image=image.record(),
        instances=len(result),
        note=note,
        # whether the vegetation stage ran, and why (not compared on --resume: it follows from the options)
        vegetation=meta.get("vegetation"),
        # instances left out as a colour card's chips, and where the card lies (absent: none)
        **({"colour_card": meta["colour_card"]} if "colour_card" in meta else {}),
        # how the network saw the image: its scale, the tiles, and what it was not given (nodata)
        network={k: v for k, v in meta.items() if k in _NETWORK_KEYS},
        # the settings that ran, the model's own resolved (not compared on --resume: options are)
        ran_with=_ran_with(result),
        seconds=round(seconds, 3),
        device=str(loaded.device),
        package_version=_package_version(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    earlier = []

    def check_again():
        # outputs corrected (saved over, by any program) while this file was segmented are refused
        # now, not replaced; and what the earlier run wrote is read from its record as it is now
        check_outputs(out, name, targets, overwrite, input_path=path)
        if overwrite:
            earlier[:] = (read_run_record(out, name) or {}).get("written") or []

    def record_text(names, digests):
        return json.dumps(_jsonable({**record, "written": names, "sha256": digests}), indent=1)

    try:
        written = _write_outputs(
            result,
            image,
            path,
            out,
            name,
            coco=coco,
            write_overlay=write_overlay,
            overwrite=overwrite,
            record=(run_json, record_text),
            before_renames=check_again,
            # an interruption held during the renames must not skip this: the earlier run's CRF
            # labels would be left beside a table that contradicts them
            after_renames=lambda names: _remove_replaced(out, earlier, [*names, run_json.name]),
        )
    except OutputExistsError:
        # another run into this folder (a second command, a Dask task run twice) finished this file
        # while this one worked on it, from the same input with the same model and options: its
        # outputs are what this run would write, so they are kept and the file counts as done
        done = None if overwrite else _done_meanwhile(out, name, wanted, path)
        if done is None:
            raise
        return _reused(path, name, done, meanwhile=True)
    written.append(run_json.name)
    return {
        "file": str(path),
        "name": name,
        "instances": len(result),
        "seconds": round(seconds, 2),
        "written": written,
        "note": note,
    }


def _done_meanwhile(out: Path, name: str, wanted: dict, path: Path) -> dict | None:
    """The run record of ``name``'s outputs in ``out`` when they are another run's of this very file
    (the same path, size and modification time, not only a file like it, as ``--resume`` accepts
    after a move), with the same model, options and outputs, all there and unchanged since it
    wrote them; else None."""
    record = read_run_record(out, name)
    if record is None or record.get("input") != wanted["input"] or _not_done(out, name, wanted, record) is not None:
        return None
    try:
        _not_anothers(out, name, record, path)
    except ForeignFileError:
        return None
    return record


def _reused(path: Path, name: str, done: dict, *, meanwhile: bool = False) -> dict:
    """:func:`process_file`'s summary of outputs already there, from their run record ``done``
    (``"reused": True``); ``meanwhile``: another run into the folder made them while this one ran
    (its note says so)."""
    return {
        "file": str(path),
        "name": name,
        "instances": done.get("instances"),
        "note": "; ".join(filter(None, [done.get("note"), DONE_MEANWHILE if meanwhile else None])) or None,
        "seconds": 0.0,
        "written": list(done.get("written", [])) + [f"{name}{RUN_SUFFIX}"],
        "reused": True,
    }


# the longest file name (bytes) of ext4, XFS, NTFS (255 UTF-16 units), APFS
_NAME_MAX = 255


def check_outputs(out: Path, name: str, targets: list[Path], overwrite: bool, input_path=None) -> None:
    """Raise unless every existing file of ``targets`` (``out / <output name>``) may be replaced.

    :class:`~napari_gardenseg._files.ForeignFileError`, even with ``overwrite``, for
    outputs that are not this input's to replace: an existing file that the run
    record of ``name`` does not list (a user's painted ``<name>_labels.tif``); a
    record of another photo of the same name, run into this folder before
    (``input_path`` given: not this file, nor this file moved, as
    :func:`~napari_gardenseg._run_record._same_file` tells); a file the record lists
    whose bytes changed since the run wrote it (corrections saved over it by any
    program; records of runs before 6 December 2026 hold no checksums: there, one saved after
    its record). Otherwise an
    existing file raises :class:`OutputExistsError` unless ``overwrite``. Also
    refuses a folder where a file goes and the reverse (:func:`check_target`), and
    a name too long for file systems (ValueError).
    """
    too_long = next((t for t in targets if len(os.fsencode(t.name)) > _NAME_MAX), None)
    if too_long is not None:
        raise ValueError(
            f"output name {too_long.name!r} is longer than file systems take ({_NAME_MAX} bytes): "
            "rename the input to a shorter name"
        )
    existing = [t for t in targets if t.exists()]
    if existing:
        record = read_run_record(out, name) or {}
        made = {str(f) for f in record.get("written") or []} | ({f"{name}{RUN_SUFFIX}"} if record else set())
        for target in existing:
            if target.relative_to(out).as_posix() not in made:
                raise ForeignFileError(
                    f"output {str(target)!r} already exists and no earlier run made it (the run record "
                    f"{name}{RUN_SUFFIX} does not list it): a file of yours? Not replacing it, overwrite or not. "
                    "Move it, or write into another folder (a run interrupted before writing its "
                    "record leaves such files too: delete them then)."
                )
        _not_anothers(out, name, record, input_path)
    for target in targets:
        check_target(target, overwrite, "output", folder=target.suffix == ".zarr")


def _not_anothers(out: Path, name: str, record: dict, input_path) -> None:
    """Raise ForeignFileError when ``name``'s outputs in ``out`` are another photo's (``record``
    says which) or were changed since their run wrote them (check_outputs)."""
    recorded = record.get("input")
    if input_path is not None and isinstance(recorded, dict) and isinstance(recorded.get("path"), str):
        path = Path(input_path)
        now = _input_identity(path) if path.exists() else {"path": os.path.abspath(path)}
        if recorded["path"] != now["path"] and not _same_file(recorded, now):
            raise ForeignFileError(
                f"the outputs {name}_* in {str(out)!r} are those of {recorded['path']!r} (its run record "
                f"{name}{RUN_SUFFIX} says so), which is not {str(path)!r}: another photo of the same name (or "
                "this one, moved and changed since); not replacing them, overwrite or not. Write this photo's "
                "results into another folder, or delete those outputs first."
            )
    digests = record.get("sha256")
    if not isinstance(digests, dict):  # a record from before checksums: outputs saved over since it was written
        _none_saved_since(out, name, record)
        return
    for listed in record.get("written") or []:
        target = out / str(listed)
        # cached by size and time: the batch's check and process_file's read each output once
        # an empty file is what a crash left, not a correction: it is made again
        if (
            str(listed) in digests
            and _has_bytes(target)
            and target.is_file()
            and _sha256(target) != digests[str(listed)]
        ):
            raise ForeignFileError(
                f"output {str(target)!r} was changed after the run that wrote it (its bytes differ from "
                f"those the run record {name}{RUN_SUFFIX} holds): your corrections? Not replacing it, "
                "overwrite or not. Move it, or write into another folder (delete it to have it made again)."
            )


def _none_saved_since(out: Path, name: str, record: dict) -> None:
    """ForeignFileError when an output that ``name``'s run record lists was modified after the record
    was written (every output is renamed into place before its record): corrections saved over an
    output of a run whose record holds no checksums (before 6 December 2026)."""
    try:
        recorded = (out / f"{name}{RUN_SUFFIX}").stat().st_mtime
    except OSError:
        return
    for listed in record.get("written") or []:
        target = out / str(listed)
        try:
            changed = target.is_file() and target.stat().st_mtime > recorded + 2  # FAT keeps times to 2 s
        except OSError:
            changed = False
        if changed and _has_bytes(target):
            raise ForeignFileError(
                f"output {str(target)!r} was saved after the run that wrote it (after its run record "
                f"{name}{RUN_SUFFIX}, which is from before checksums were kept): your corrections? Not replacing "
                "it, overwrite or not. Move it, or write into another folder (delete it to have it made again)."
            )


def _label_map_note(image) -> str | None:
    """A note when the file looks like a mask or label map rather than a photo (a folder of photos
    often holds their masks too: ``*_mask.png``), else None."""
    plane = image.plane(image.planes()[0])
    if not looks_like_label_map(plane):
        return None
    colour = one_colour(plane)
    if colour is not None:
        return (
            f"its first plane is one colour throughout ({colour}): a blank frame"
            if image.is_stack
            else f"one colour throughout ({colour}): a blank image"
        )
    return "a mask or label map, not a photo? (nearly all its pixels are a few colours; its instances follow them)"


def _colour_channels(result) -> tuple[int, str] | None:
    """The length and letter of a stack's plane axis of 3 or 4 planes that may be an RGB photo's
    colours read as grey channels (a C axis, also beside T or Z: a Fiji composite time-lapse), or
    as frames where its one axis was given as T or Z; else None."""
    axes = getattr(result, "axes", "")
    planes = getattr(result, "planes", None)
    if not axes or not planes:
        return None
    extents = {axis: 1 + max(p[j] for p in planes) for j, axis in enumerate(axes)}
    candidates = [a for a in (("C",) if len(axes) > 1 else tuple(axes)) if extents.get(a) in (3, 4)]
    return (extents[candidates[0]], candidates[0]) if candidates else None


# what a run's meta says of the settings it ran with, the model's own thresholds and CRF resolved
_RAN_WITH = ("score_threshold", "mask_threshold", "crf_params", "crf_backend")


def _ran_with(result) -> dict:
    """The thresholds, CRF settings and CRF backend a file ran with (a stack's first plane's),
    where the run record's options leave out what was the model's own or a default."""
    results = getattr(result, "results", None) or [result]
    meta = getattr(results[0], "meta", None) or {}
    return {k: meta[k] for k in _RAN_WITH if meta.get(k) is not None}


def _file_note(result, score_threshold: float | None) -> str | None:
    """Why a file gave no instance, that plants may be missing, that the model missed many plants
    or left ground cover, in a batch's words; else None (the widget says it in its own:
    ``status_hint``)."""
    from ._hints import (
        COLOURLESS,
        adapt_hint,
        card_hint,
        dark_hint,
        ground_cover_hint,
        network_full_hint,
        not_green_hint,
        nothing_found,
        shrunk_hint,
    )

    results = getattr(result, "results", None) or [result]  # a stack's planes, or the one result
    dark = dark_hint(results)
    if dark is not None:
        return dark
    why = nothing_found(results)
    if why == "grey":
        channels = _colour_channels(result)
        if channels:  # a photo's colours stored as planes (a zarr or TIFF that does not say they are RGB)
            n, axis = channels
            what = "channels" if axis == "C" else "planes"
            return f"{n} grey {what} (axis {axis}): a photo's red, green and blue? give --axes with S for that axis"
        return "a grey image: the models need colour photos"
    if why == "colourless":
        return COLOURLESS
    if why == "score threshold":  # or all it found was a colour card's
        used = results[0].meta.get("score_threshold", score_threshold)  # None given: the model's, resolved
        return card_hint(results) or f"no detection scored {used} or more: try a lower score threshold"
    if network_full_hint(results):
        return "the network returned as many instances as one pass may: plants may be missing; try tiles of 512 px"
    adapt = adapt_hint(
        results,
        "try `gardenseg adapt PHOTOS... --out MODEL.pt`, then segment with --model MODEL.pt",
        "run again with --tile-size auto",
    )
    hints = (
        adapt or shrunk_hint(results, "run again with --tile-size auto"),
        ground_cover_hint(
            results, "label some of its plants and `gardenseg train` a model on them", "run again with --scale auto"
        ),
        not_green_hint(results),
        card_hint(results),
    )
    return "; ".join(h for h in hints if h) or None


def _remove_replaced(out: Path, earlier: list[str], written: list[str]) -> None:
    """Remove what an earlier run of this file wrote and this run (``--overwrite``, other
    settings: the CRF off, no COCO) did not: its CRF labels or COCO JSON would contradict the
    new table. Only names the earlier record lists, inside ``out``."""
    import shutil

    root = out.resolve()
    for name in set(map(str, earlier)) - set(written):
        target = (out / name).resolve()
        if root not in target.parents:
            continue
        if target.is_dir() and target.suffix == ".zarr":
            shutil.rmtree(target, ignore_errors=True)
        elif target.is_file():
            target.unlink(missing_ok=True)
