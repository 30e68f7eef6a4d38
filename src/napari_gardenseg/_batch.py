"""Batches of image files: in this process or on a Dask distributed cluster.

:func:`segment_files` segments many files and writes each one's outputs into
one folder; :func:`process_file` does one file (read, segment, write).

* Tasks carry paths and options, never arrays: every worker reads its own
  files, so the inputs and the output folder must be reachable from the
  workers under the same paths (a shared file system on a cluster).
* The model is loaded once per worker process and reused;
  each task sets torch's thread count so that the worker processes on one
  host share its cores instead of each taking all of them.
* Every output is written under a temporary name and renamed when complete;
  ``<name>_run.json`` (the run record: input, model, options) is written last,
  so its presence means the file's outputs are complete.
* A file that fails (unreadable, an error while segmenting, an output already
  there) fails alone: the rest go on, and the failure is appended to
  ``failures.jsonl`` in the output folder. A file whose worker process died is
  submitted again up to ``retries`` times.
* ``resume=True`` skips files whose run record matches this run's input,
  model and options; ``overwrite=True`` replaces outputs of other runs.

The rooms: this module orchestrates; :mod:`._batch_file` does one file,
:mod:`._batch_outputs` names and writes its outputs (``<stem>_labels.tif``...,
``<stem>__<6 hex>`` when two inputs share a stem), :mod:`._run_record` keeps
the run records, :mod:`._batch_status` what happened to each file, and
:mod:`._dask_runner` runs files as tasks on a Dask cluster.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ._batch_file import (
    _check_options,
    _done_meanwhile,
    _model,
    _reused,
    check_outputs,
    crf_params_from,
    process_file,
)
from ._batch_outputs import input_kind, output_files, output_names, overlay
from ._batch_status import FAILURES_FILE, BatchSummary, FileStatus, _append_failure, _failure
from ._cancel import check_callbacks, should_stop
from ._claims import MADE_SINCE, WAITING, claim, holder
from ._dask_runner import _check_resources, _run_on_cluster, _task, local_cluster
from ._files import ForeignFileError, OutputExistsError, writable_folder
from ._image_folders import is_zarr_store
from ._run_record import (
    OUTPUTS_GONE,
    RUN_SUFFIX,
    TILED_BY_DEFAULT,
    _compared_options,
    _input_identity,
    _not_done,
    model_identity,
    read_run_record,
)

__all__ = [
    "FAILURES_FILE",
    "BatchSummary",
    "FileStatus",
    "crf_params_from",
    "local_cluster",
    "model_identity",
    "output_files",
    "output_names",
    "overlay",
    "process_file",
    "segment_files",
]


def segment_files(
    paths,
    out_dir,
    model="garden",
    *,
    client=None,
    overwrite: bool = False,
    resume: bool = False,
    progress=None,
    retries: int = 1,
    coco: bool = False,
    write_overlay: bool = True,
    crf_overrides: dict | None = None,
    resources: dict | None = None,
    axes: str | None = None,
    recursive: bool = False,
    **segment_options,
) -> BatchSummary:
    """Segment image files and write each one's outputs into ``out_dir``.

    ``paths``: image files, zarr stores, and folders (each stands for the
    image files directly in it, :func:`~napari_gardenseg._image_folders.image_files`;
    ValueError when ``out_dir`` is one of them). ``recursive``: a folder stands for
    the image files in its subfolders too, at any depth, and their outputs go into
    the same subfolders of ``out_dir`` (``out/2024-06/plot3_labels.tif`` for
    ``photos/2024-06/plot3.jpg``); ``out_dir`` itself and hidden folders are not searched.
    The outputs of earlier batches found in a folder are not photos (``image_files``).

    ``client=None`` runs the files one after another in this process; a
    ``dask.distributed.Client`` runs them on its cluster (``model`` must then
    be a model name or a checkpoint path the workers can read). ``resources``
    (e.g. ``{"GPU": 1}``) restricts tasks to workers started with those
    resources (ValueError without a client). ``segment_options`` go to :func:`napari_gardenseg.segment`;
    ``crf_overrides`` replace fields of the model's stored CRF settings.
    Files are read as :func:`process_file` says; ``axes`` (e.g. ``"TYX"``)
    names the axes of TIFF and zarr inputs that do not state them.

    In this process, each file is claimed before its outputs are checked and it is segmented
    (:mod:`._claims`): several batches writing into one ``out_dir`` at once leave each other's
    files alone and come back to them at the end. Outputs another run made of the very same file
    (path, size and time) with the same model, options and outputs after this batch began are kept
    and the file counts as done ("done meanwhile by another run"), with ``overwrite`` too; a file
    whose other run died is segmented here. Batches on a Dask cluster take no claims.

    Failures (unreadable file, an error while segmenting, an output already
    there, a worker lost more than ``retries`` times) fail that file only and
    are appended to ``out_dir/failures.jsonl``. ``resume=True`` skips files
    whose run record matches this run (same input file, model and options);
    ``overwrite=True`` replaces existing outputs. ``progress(fraction,
    message)`` is called after each file (the fraction then reaches ``k / n``
    for ``k`` files finished) and, in-process, in between as the file's
    stages and tiles go by (fractions short of the next ``k / n``). ``cancel`` (a
    ``threading.Event`` or a callable returning True, in-process): once set, the file being
    segmented stops and the files left are not started; they end "cancelled", not failed.

    Each file's outputs are ``<name>_labels.tif`` (and ``<name>_labels_crf.tif`` with
    the CRF; a ``<name>_labels.zarr`` store for inputs too big for memory),
    ``<name>_instances.csv``, with ``write_overlay`` ``<name>_overlay.png`` (not for
    big inputs), with ``coco`` ``<name>_coco.json`` (:func:`~napari_gardenseg.to_coco`),
    and last the run record ``<name>_run.json`` (:func:`output_files`).

    Returns a :class:`~napari_gardenseg.BatchSummary`: ``files``, one ``FileStatus``
    per input file in input order (``file``, ``name``, ``status`` "done", "skipped",
    "failed" or "cancelled", ``instances``, ``outputs``, ``seconds``, ``attempts``, ``error``,
    ``worker``, ``note``); ``done``, ``skipped`` and ``failed``, the numbers of files
    that ended so, and ``ok``, whether none failed; ``out_dir``, the output folder
    (absolute); ``failures_path``, its ``failures.jsonl``; ``seconds``, the batch's
    wall time; ``table``, the files as a pandas DataFrame.

    Raises, before any file is segmented: ValueError when ``out_dir`` is an input
    folder or a file, for ``retries`` that is not a whole number >= 0,
    ``crf_params`` given with ``crf_overrides``, ``resources`` without a client (or
    that no worker has), a bad option value or CRF override, a class the model
    does not have, a threshold the model stores out of range (where the run takes
    the model's own), or unknown ``axes`` letters; TypeError for an unknown option name, an option or
    ``axes`` of the wrong type, a ``progress`` that is not callable, a ``cancel`` that is
    neither an Event nor a callable, or a loaded model with a client;
    :class:`~napari_gardenseg.ImageError` for a folder without image files or a web
    address; :class:`~napari_gardenseg.ModelError` for an unknown model or a missing
    checkpoint (in-process, for any model that cannot be loaded) and, in-process,
    :class:`~napari_gardenseg.DeviceError` for a device not available here; OSError
    when ``out_dir`` cannot be made or written into.
    What fails a single file is recorded, not raised.
    """
    from ._image_folders import expand_entries

    t_start = time.perf_counter()
    from ._image_reader import as_path, is_image_path

    paths = [as_path(paths)] if is_image_path(paths) else [as_path(p) for p in paths]
    folders = [Path(p).expanduser().resolve() for p in paths if Path(p).expanduser().is_dir()]
    if Path(out_dir).expanduser().resolve() in folders:
        raise ValueError(
            f"the output folder {out_dir} is also an input folder: its outputs would be read as photos "
            "next time; write them into another folder"
        )
    entries = expand_entries(paths, recursive=recursive, exclude=[out_dir])
    subfolders = {}  # a file given twice runs once, under the name of its first mention
    for p, sub in entries:
        subfolders.setdefault(os.path.abspath(os.fspath(p)), sub)
    paths = list(subfolders)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    _check_options(segment_options)
    if axes is not None:
        from ._image_file import check_axes

        axes = check_axes(axes)
    if "crf_params" in segment_options and segment_options["crf_params"] is not None and crf_overrides:
        raise ValueError("give crf_params or crf_overrides, not both")
    out = Path(out_dir).expanduser().resolve()  # Dask workers may run in another folder
    if out.exists() and not out.is_dir():
        raise ValueError(f"the output folder {out_dir} is a file: give a folder (it is made if missing)")
    model_id = model_identity(model)  # unknown model or missing checkpoint: fail now, not per file
    thresholds = {k: segment_options.get(k) for k in ("score_threshold", "mask_threshold")}
    if crf_overrides or segment_options.get("classes") is not None or None in thresholds.values():
        # a bad CRF setting, a class the model lacks or a stored threshold out of range: likewise
        # (its names and settings read once)
        from ._models import Model, model_info
        from ._options import SegmentOptions, with_model_thresholds

        names, meta = model_info(model)
        with_model_thresholds(SegmentOptions.from_kwargs(**thresholds), meta)
        if crf_overrides:
            crf_params_from(meta, None, crf_overrides)
        if segment_options.get("classes") is not None:
            from ._inference import class_ids_in

            source = model.source if isinstance(model, Model) else os.fspath(model)
            class_ids_in(names, source, segment_options["classes"])
    cancel = segment_options.get("cancel")  # also each file's segment(): set during one, it stops there
    check_callbacks(progress, cancel)
    if client is not None and cancel is not None:  # an Event does not travel to other processes
        raise ValueError(
            "cancel= works for batches in this process (client=None); a Dask cluster's own cancel stops tasks"
        )
    if client is not None and not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"with a Dask client, model must be a model name or a checkpoint path, not {type(model).__name__} "
            "(workers load it themselves)"
        )
    if client is None and resources:  # nothing here would honour them: say so, not run without them
        raise ValueError(
            f"resources {resources} are Dask workers' resources: they need a cluster (client=, or on the command "
            "line --workers N, --scheduler or --scheduler-file); without one the files run in this process"
        )
    if client is not None and resources:
        _check_resources(client, resources)
    if isinstance(model, (str, os.PathLike)) and model_id["sha256"] is not None and model != "garden":
        model = model_id["source"]  # a checkpoint's absolute path: workers may run in another folder
    writable_folder(out, "choose another --out")  # before the first file is read and segmented for nothing
    crf = segment_options.get("crf", True)
    names = output_names(paths, list(subfolders.values()))
    files = [FileStatus(file=p, name=n, status="pending") for p, n in zip(paths, names)]
    # resume in the tasks: a finished file whose result was lost with its worker and is recomputed
    # by Dask finds its own complete outputs and keeps them (with overwrite it simply redoes them)
    kwargs = dict(
        segment_options,
        coco=coco,
        write_overlay=write_overlay,
        overwrite=overwrite,
        resume=not overwrite,
        crf_overrides=crf_overrides,
        model_id=model_id,
        axes=axes,
    )
    # a big input (segmented window by window) tiles at the model's size by default: its own record
    wanted_options = {
        big: _compared_options(segment_options, crf_overrides, axes, model_id, big=big) for big in (False, True)
    }
    n_finished = 0

    def finished(fs: FileStatus, message: str):
        nonlocal n_finished
        n_finished += 1
        if progress is not None:
            progress(n_finished / len(files), message)

    def fail(fs: FileStatus, entry: dict):
        fs.status, fs.error = "failed", f"{entry['error_type']}: {entry['message']}"
        try:
            _append_failure(out, entry)
        except OSError as exc:  # a full disk: the failure is still said, and the batch goes on
            fs.error += f" (not listed in {FAILURES_FILE}: {exc})"
        finished(fs, f"{_file_shown(fs)}: FAILED: {fs.error}")

    wanted = {
        "model": model_id,
        "outputs": {"coco": bool(coco), "overlay": bool(write_overlay)},
    }
    todo = []
    inputs = {os.path.realpath(p) for p in paths}  # files given one by one (a shell glob) may lie in out
    for fs in files:
        kinds = input_kind(fs.file, axes)._asdict()
        targets = [out / f for f in output_files(fs.name, crf=crf, coco=coco, write_overlay=write_overlay, **kinds)]
        clash = next((t for t in targets if os.path.realpath(t) in inputs), None)
        wanted_here = {**wanted, "options": wanted_options[kinds["big"]], TILED_BY_DEFAULT: kinds["big"]}
        if clash is not None:
            message = f"its output {str(clash)!r} is also an input of this batch; not replacing it: write into another output folder"
            fail(fs, _failure(fs, ForeignFileError(message), tb=""))
        elif client is None:  # decided under the file's claim, below
            todo.append((fs, targets, wanted_here, _record_stamp(out, fs.name)))
        else:
            verdict = _before_running(fs, out, targets, wanted_here, resume=resume, overwrite=overwrite)
            if verdict in ("run", "redo"):  # a task redoes a file with outputs gone by its own resume check
                todo.append(fs)
            elif verdict == "skip":
                finished(fs, f"{_file_shown(fs)}: already done (resume){_by_another_version(out, fs.name)}")
            else:
                fail(fs, verdict)

    stopped = False

    def cancelled() -> bool:
        """Whether ``cancel`` was set: once seen, for the rest of the batch (a callable may turn back)."""
        nonlocal stopped
        stopped = stopped or should_stop(cancel)
        return stopped

    def settle(fs: FileStatus, res: dict):
        if res["status"] == "cancelled":
            fs.status, fs.worker = "cancelled", res["worker"]
            finished(fs, f"{_file_shown(fs)}: cancelled")
        elif res["status"] == "done":
            fs.status, fs.instances, fs.seconds, fs.worker = "done", res["instances"], res["seconds"], res["worker"]
            fs.outputs = [str(out / f) for f in res["written"]]
            fs.note = res.get("note")
            note = f" ({fs.note})" if fs.note else ""
            finished(fs, f"{_file_shown(fs)}: {fs.instances} instances in {fs.seconds} s{note}")
        else:
            fs.worker = res["worker"]
            fail(fs, _failure(fs, tb=res["traceback"], error_type=res["error_type"], message=res["message"]))

    if client is None:
        loaded = None

        def decide_and_run(fs: FileStatus, targets: list[Path], wanted: dict, stamp):
            """Under the file's claim: another run's outputs made since this batch began are kept
            when they are this very file's with these settings; else the verdict of an unclaimed file."""
            nonlocal loaded
            if cancelled():  # not started: the rest of the batch is cancelled, none failed
                settle(fs, {"status": "cancelled", "worker": None})
                return
            path = Path(fs.file)
            meanwhile = _record_stamp(out, fs.name) != stamp  # another run wrote this file's outputs since
            if meanwhile and (path.is_file() or is_zarr_store(path)):
                done = _done_meanwhile(out, fs.name, {**wanted, "input": _input_identity(path)}, path)
                if done is not None:
                    settle(fs, {"status": "done", "worker": None, **_reused(path, fs.name, done, meanwhile=True)})
                    return
            # --overwrite redoes what was there when this run started, never another run's newer outputs
            again = overwrite and not meanwhile
            verdict = _before_running(fs, out, targets, wanted, resume=resume, overwrite=again)
            if overwrite and meanwhile and isinstance(verdict, dict) and verdict["error_type"] == "OutputExistsError":
                verdict["message"] = (
                    f"the outputs {fs.name}_* in {str(out)!r} were {MADE_SINCE} (other settings); not replacing "
                    "them: run the command again to redo them with this one's settings"
                )
            if verdict == "skip":
                finished(fs, f"{_file_shown(fs)}: already done (resume){_by_another_version(out, fs.name)}")
                return
            if verdict not in ("run", "redo"):
                fail(fs, verdict)
                return
            if loaded is None:  # once, for the first file that runs
                loaded = _model(model, segment_options.get("device", "auto"), model_id)
            fs.attempts = 1
            # resume was decided above; process_file's own (for Dask's recomputed tasks) takes a
            # photo of the same name, size and time for this one
            task_kwargs = dict(kwargs, resume=False, overwrite=again or verdict == "redo")
            if progress is not None:  # the stages (and tiles) of this file move the bar between files
                task_kwargs["progress"] = _within(progress, n_finished, len(files), _file_shown(fs))
            settle(fs, _task(fs.file, str(out), fs.name, loaded, task_kwargs, None))

        progress = _raising_past_files(progress)  # a bug in it is the caller's, not a photo's failure
        try:
            _run_as_claimed(todo, out, decide_and_run, progress, lambda: n_finished / len(files), cancelled)
        except _ProgressFailed as failed:
            raise failed.args[0] from None
    else:
        _run_on_cluster(client, todo, str(out), model, kwargs, retries, resources, settle, fail)

    return BatchSummary(out_dir=out, files=files, seconds=time.perf_counter() - t_start)


class _ProgressFailed(BaseException):
    """The caller's progress callback raised (``args[0]``): carried past the catch that makes a
    file's own errors its failure, and raised from :func:`segment_files` as it was."""


def _raising_past_files(progress):
    """``progress``, whose exceptions leave the batch (:class:`_ProgressFailed`) instead of failing
    the file whose stage it reported; None stays None."""
    if progress is None:
        return None

    def report(fraction, message):
        try:
            progress(fraction, message)
        except Exception as exc:  # noqa: BLE001  (any, as the caller's callback raised it)
            raise _ProgressFailed(exc) from exc

    return report


def _record_stamp(out: Path, name: str):
    """What tells whether ``name``'s run record changed (inode, time, size), None when there is none."""
    try:
        st = (out / f"{name}{RUN_SUFFIX}").stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


# how often a waiting batch says so, in seconds
_SAY_EVERY = 60.0


def _run_as_claimed(todo: list, out: Path, decide_and_run, progress, fraction, cancelled=lambda: False) -> None:
    """``decide_and_run`` each file of ``todo`` (``(FileStatus, targets, wanted, stamp)``) under its claim:
    in order those no other run into ``out`` holds, then the others as their claims come free,
    whichever first, saying every :data:`_SAY_EVERY` seconds which run holds the rest. Once
    ``cancelled()``, the files left are handed to ``decide_and_run`` at once (which cancels them)."""
    later, delay, said = todo, 0.2, -_SAY_EVERY
    while later:
        if cancelled():  # not waiting for other runs' claims any more
            for item in later:
                decide_and_run(*item)
            return
        held = []  # by another run into this folder
        for item in later:
            with claim(out, item[0].name) as mine:
                if mine:
                    decide_and_run(*item)
                    delay = 0.2
                else:
                    held.append(item)
        later = held
        if not later:
            return
        if progress is not None and time.monotonic() - said >= _SAY_EVERY:
            said = time.monotonic()
            fs = later[0][0]
            by = holder(out, fs.name)
            more = f" and {len(later) - 1} more" if len(later) > 1 else ""
            progress(fraction(), f"{_file_shown(fs)}{more}: {WAITING}{f' ({by})' if by else ''}")
        time.sleep(delay)
        delay = min(2 * delay, 5.0)


def _within(progress, done: int, total: int, label: str):
    """segment()'s progress for one file, as a fraction of the batch that stays below the file's end."""
    return lambda f, message: progress((done + 0.99 * min(max(f, 0.0), 1.0)) / total, f"{label}: {message}")


def _file_shown(fs: FileStatus) -> str:
    """The input's name in progress messages: with the subfolder its outputs mirror (recursive batches)."""
    folder, _, _ = fs.name.rpartition("/")
    return f"{folder}/{Path(fs.file).name}" if folder else Path(fs.file).name


def _by_another_version(out: Path, name: str) -> str:
    """For a file --resume skips: that another version of the package made its outputs, and how to
    redo it with this one (the version is recorded, not compared: a new version need not redo a
    finished survey); "" when it was this version."""
    from ._run_record import _package_version

    made_by = (read_run_record(out, name) or {}).get("package_version")
    if made_by is None or made_by == _package_version():
        return ""
    return f" by napari-gardenseg {made_by}; --overwrite without --resume redoes it with {_package_version()}"


def _before_running(fs: FileStatus, out: Path, targets: list[Path], wanted: dict, *, resume, overwrite):
    """ "run", "skip" (resume: done with the same input, model and options), "redo" (resume: the
    same, but some outputs are missing or empty; made again over its own unchanged outputs), or a
    failure entry."""
    path = Path(fs.file)
    if not (path.is_file() or is_zarr_store(path)):
        return _failure(fs, FileNotFoundError(f"no such image file: {path}"), tb="")
    record = read_run_record(out, fs.name) if resume else None
    if record is not None:
        why = _not_done(out, fs.name, {**wanted, "input": _input_identity(path)}, record)
        if why is None:
            fs.status, fs.instances, fs.note = "skipped", record.get("instances"), record.get("note")
            fs.outputs = [str(out / f) for f in [*record.get("written", []), f"{fs.name}{RUN_SUFFIX}"]]
            return "skip"
        if why == OUTPUTS_GONE:  # made again, its unchanged outputs replaced; corrected ones refused
            try:
                check_outputs(out, fs.name, targets, True, input_path=path)
            except OutputExistsError as exc:
                return _failure(fs, exc, tb="")
            return "redo"
        if not overwrite:
            try:  # another photo's outputs, or corrected ones: said as such, not "pass --overwrite"
                check_outputs(out, fs.name, targets, True, input_path=path)
            except OutputExistsError as exc:
                return _failure(fs, exc, tb="")
            return _failure(
                fs,
                tb="",
                error_type="OutputExistsError",
                message=(
                    f"output {str(out / (fs.name + RUN_SUFFIX))!r} was made by another run ({why}); not replacing it. "
                    "Pass overwrite=True (--overwrite on the command line) to redo it."
                ),
            )
    try:
        check_outputs(out, fs.name, targets, overwrite, input_path=path)
    except (OutputExistsError, ValueError) as exc:  # ValueError: an output's name too long (this file's only)
        return _failure(fs, exc, tb="")
    return "run"
