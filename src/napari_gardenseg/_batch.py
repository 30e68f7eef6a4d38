"""Batches of image files: in this process or on a Dask distributed cluster.

:func:`segment_files` segments many files and writes each one's outputs into
one folder; :func:`process_file` does one file (read, segment, write).

* Tasks carry paths and options, never arrays: every worker reads its own
  files, so the inputs and the output folder must be reachable from the
  workers under the same paths (a shared file system on a cluster).
* The model is loaded once per worker process and reused (:func:`_model`);
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

Output names: ``<stem>_labels.tif`` etc. When two inputs of one batch share a
stem (case-insensitively), each of them gets ``<stem>__<6 hex>`` instead,
where the hex digits are the start of the SHA-1 of the input's absolute path:
the same batch always gives the same names.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ._files import OutputExistsError, atomic_write, check_target
from ._reader import read_image

__all__ = [
    "FAILURES_FILE",
    "BatchSummary",
    "FileStatus",
    "output_files",
    "output_names",
    "overlay",
    "process_file",
    "segment_files",
]

FAILURES_FILE = "failures.jsonl"
RUN_SUFFIX = "_run.json"
_RECORD_FORMAT = 1
# what a run record must share with this run for --resume to skip the file
_COMPARED = ("input", "model", "options", "outputs")
# segment() options that never change the result, so they are not compared
_NOT_COMPARED_OPTIONS = ("device", "progress", "cancel", "keep_soft_masks")
# segment() arguments that are not SegmentOptions fields
_RUN_ONLY = ("progress", "cancel", "keep_soft_masks")


# ----------------------------------------------------------------------------- reading and drawing


def overlay(image, labels, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 picture of ``labels`` over ``image``: a colour per instance, outlines in white."""
    from ._images import to_rgb_uint8

    rgb = to_rgb_uint8(image).astype(np.float32)
    n = int(labels.max())
    if n == 0:
        return rgb.astype(np.uint8)
    rng = np.random.default_rng(0)
    colours = np.vstack([[0, 0, 0], rng.uniform(40, 255, (n, 3))]).astype(np.float32)
    inside = labels > 0
    rgb[inside] = (1 - alpha) * rgb[inside] + alpha * colours[labels[inside]]
    edge = np.zeros_like(inside)
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    rgb[edge & inside] = 255
    return rgb.astype(np.uint8)


# ----------------------------------------------------------------------------- names


def _path_tag(path) -> str:
    return hashlib.sha1(os.path.abspath(os.fspath(path)).encode("utf-8")).hexdigest()[:6]


def output_names(paths) -> list[str]:
    """The output name (prefix of every output file) of each input, in order.

    ``<stem>``, or ``<stem>__<6 hex of the SHA-1 of the absolute path>`` for
    inputs whose stems collide (case-insensitively) within ``paths``.
    """
    stems = [Path(p).stem for p in paths]
    counts = Counter(s.casefold() for s in stems)
    return [s if counts[s.casefold()] == 1 else f"{s}__{_path_tag(p)}" for s, p in zip(stems, paths)]


def is_big_input(path, axes: str | None = None) -> bool:
    """A zarr store of one plane, or a TIFF of one plane over ``_planes.MAX_PLANE_PIXELS``: segmented into a zarr store.

    Reads the file's header only (:func:`~napari_gardenseg._reader.read_image`, lazily).
    """
    from ._planes import MAX_PLANE_PIXELS
    from ._reader import TIFF_SUFFIXES

    path = Path(path)
    name = path.name.lower()
    zarr_store = name.endswith(".zarr") or path.is_dir()
    if not (zarr_store or name.endswith(TIFF_SUFFIXES)) or not path.exists():
        return False
    try:
        image = read_image(path, axes=axes, lazy=True)
    except Exception:  # noqa: BLE001  (unreadable, or axes unknown: the normal path reports it)
        return zarr_store
    if image.is_stack:
        return False
    h, w = image.plane_shape
    return zarr_store or h * w > MAX_PLANE_PIXELS


def output_files(name: str, *, crf: bool = True, coco: bool = False, write_overlay: bool = True, big: bool = False) -> list[str]:
    """The files :func:`process_file` writes for output name ``name`` (the run record last).

    ``big`` inputs (:func:`is_big_input`) give one zarr store ``<name>_labels.zarr``
    (arrays ``labels`` and ``refined``) instead of the TIFFs, and no overlay.
    """
    if big:
        files = [f"{name}_labels.zarr", f"{name}_instances.csv"]
        return files + ([f"{name}_coco.json"] if coco else []) + [f"{name}{RUN_SUFFIX}"]
    files = [f"{name}_labels.tif"]
    if crf:
        files.append(f"{name}_labels_crf.tif")
    files.append(f"{name}_instances.csv")
    if write_overlay:
        files.append(f"{name}_overlay.png")
    if coco:
        files.append(f"{name}_coco.json")
    return files + [f"{name}{RUN_SUFFIX}"]


# ----------------------------------------------------------------------------- run records


def _package_version() -> str:
    from . import __version__

    return __version__


_SHA_CACHE: dict[tuple, str] = {}


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def model_identity(model) -> dict:
    """What the run record says about the model: its source and, for checkpoint files, their SHA-256.

    Raises the model loader's error for an unknown name or a missing checkpoint.
    """
    from ._models import MODEL_NAMES, Model, ModelError, bundled_checkpoint

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
            if isinstance(model, str) and os.sep not in model and not path.suffix:
                raise ModelError(
                    f"unknown model {model!r}: use one of {', '.join(MODEL_NAMES)} or the path of a checkpoint file"
                )
            raise ModelError(f"checkpoint file not found: {path}")
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


def _compared_options(options: dict, crf_overrides, axes: str | None = None) -> dict:
    """The options a run record holds: those that change the result and differ from segment()'s defaults
    (so the API and the CLI agree, and a newer version's new options, left at their defaults, match old records),
    and the file's ``axes`` when the caller gave them."""
    defaults = _segment_defaults()
    opts = {
        k: v for k, v in options.items()
        if k not in _NOT_COMPARED_OPTIONS and not (k in defaults and _same(v, defaults[k]))
    }
    if crf_overrides:
        opts["crf_overrides"] = dict(crf_overrides)
    if axes is not None:
        opts["axes"] = axes
    return _jsonable(opts)


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
        return a == b

    return [k for k in _COMPARED if not same(k)]


def _not_done(out: Path, name: str, wanted: dict, record: dict | None = None) -> str | None:
    """The one "done" check: None when ``name``'s run record (``record``, else read from ``out``) matches
    ``wanted`` (input, model, options) and its outputs are all there; otherwise why not."""
    record = read_run_record(out, name) if record is None else record
    if record is None:
        return "no run record"
    differ = _differences(record, wanted)
    if differ:
        return "different " + " and ".join(differ)
    if not all((out / f).exists() for f in record.get("written", [])):
        return "outputs missing"
    if not _verifiable(wanted["model"]):
        return "a model that cannot be verified"
    return None


def _is_done(out: Path, name: str, wanted: dict) -> bool:
    return _not_done(out, name, wanted) is None


# ----------------------------------------------------------------------------- one file


def crf_params_from(model, crf_params=None, crf_overrides=None):
    """The CRFParams for one run: ``crf_params`` (CRFParams, dict or None) as given, or
    ``crf_overrides`` (a dict of fields) over the model's stored settings, through the one validator."""
    if crf_overrides is None:
        return crf_params
    if crf_params is not None:
        raise ValueError("give crf_params or crf_overrides, not both")
    from .crf import CRFParams

    return CRFParams.from_any(dict(crf_overrides), defaults=dict(getattr(model, "meta", {}).get("crf") or {}))


_MODELS: dict[tuple, object] = {}
_MODELS_LOCK = threading.Lock()


def _model(spec, device="auto", model_id: dict | None = None):
    """The loaded model for ``spec`` on ``device``, loaded once per process.

    Keyed by the checkpoint's identity too, so a checkpoint replaced on disk
    between two batches is loaded again, not served from memory.
    """
    from ._models import Model, load_model

    if isinstance(spec, Model) or not isinstance(spec, (str, os.PathLike)):
        return load_model(spec, device=device)
    key = (os.fspath(spec), str(device), json.dumps(model_id, sort_keys=True))
    with _MODELS_LOCK:  # one load per process even when a worker runs several threads
        if key not in _MODELS:
            _MODELS[key] = load_model(spec, device=device)
        return _MODELS[key]


def process_file(
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
    **segment_options,
) -> dict:
    """Segment one image file and write its outputs into ``out_dir``; return a summary dict.

    Outputs (see :func:`output_files`) are named ``<name>_...`` (``name``
    defaults to the file's stem); each is written under a temporary name and
    renamed when complete, and the run record ``<name>_run.json`` comes last.
    An existing output raises :class:`~napari_gardenseg._files.OutputExistsError`
    unless ``overwrite=True``; with ``resume=True``, outputs already made from
    the same input with the same model and options are kept and their summary
    returned (``"reused": True``). ``crf_overrides``: CRF fields that replace
    the model's stored settings (e.g. ``{"iterations": 10}``).

    The file is read by :func:`napari_gardenseg._reader.read_image` (EXIF
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
    record = {
        "format": _RECORD_FORMAT,
        "input": _input_identity(path) if path.exists() else {"path": os.path.abspath(path)},
        "model": model_id or model_identity(model),
        "options": _compared_options(segment_options, crf_overrides, axes),
        "outputs": {"coco": bool(coco), "overlay": bool(write_overlay)},
    }
    if resume and _is_done(out, name, record):
        done = read_run_record(out, name)
        return {"file": str(path), "name": name, "instances": done.get("instances"), "seconds": 0.0,
                "written": list(done.get("written", [])) + [f"{name}{RUN_SUFFIX}"], "reused": True}
    big = is_big_input(path, axes)
    targets = [out / f for f in output_files(name, crf=crf, coco=coco, write_overlay=write_overlay, big=big)]
    for target in targets:  # fail before the work, not after it
        check_target(target, overwrite, "output")

    # 1. read: the one reader (orientation, colours, axes); a big input lazily, tile by tile
    image = read_image(path, axes=axes, lazy=big)
    # 2. segment
    from ._inference import segment_to_zarr_with, segment_with

    t0 = time.perf_counter()
    loaded = _model(model, segment_options.get("device", "auto"), record["model"])
    if crf_overrides:
        segment_options = {**segment_options, "crf_params": crf_params_from(loaded, segment_options.get("crf_params"), crf_overrides)}
    options = _check_options(segment_options)
    progress, cancel = segment_options.get("progress"), segment_options.get("cancel")
    if big:  # labels go into a staged store; _write_outputs renames it with the other outputs
        out.mkdir(parents=True, exist_ok=True)
        staged = out / f".{name}_labels.zarr.staged"
        from ._io import ImageSource

        source = ImageSource(image.data, name=path.name)
        result = segment_to_zarr_with(source, staged, loaded, options, overwrite=True, progress=progress, cancel=cancel)
        result.meta["staged"] = staged
    elif image.is_stack:  # plane by plane, ids unique across the stack
        from ._stack import segment_stack

        index = image.planes()
        result = segment_stack(
            lambda i: image.plane(index[i]), index,
            lambda plane, report: segment_with(plane, loaded, options, progress=report, cancel=cancel),
            axes=image.plane_axes, progress=progress, cancel=cancel,
        )
    else:
        result = segment_with(image.data, loaded, options, progress=progress, cancel=cancel)
    seconds = time.perf_counter() - t0
    # 3. write: every output atomically, the run record last (its presence means complete)
    out.mkdir(parents=True, exist_ok=True)
    run_json = out / f"{name}{RUN_SUFFIX}"
    if overwrite and run_json.exists():
        run_json.unlink()  # an old record must not vouch for outputs being replaced
    written = _write_outputs(result, image, path, out, name, coco=coco, write_overlay=write_overlay, overwrite=overwrite)
    record.update(
        image=image.record(),
        written=written,
        instances=len(result),
        seconds=round(seconds, 3),
        device=str(loaded.device),
        package_version=_package_version(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    with atomic_write(run_json, overwrite, "run record") as tmp:
        tmp.write_text(json.dumps(_jsonable(record), indent=1))
    written.append(run_json.name)
    return {"file": str(path), "name": name, "instances": len(result), "seconds": round(seconds, 2), "written": written}


def _write_outputs(result, image, path: Path, out: Path, name: str, *, coco, write_overlay, overwrite) -> list[str]:
    """Write every output under a temporary name, then rename them all together.

    A process killed while writing leaves only hidden ``.*.tmp`` files, never
    some outputs under their real names, which a retry would have to refuse.
    """
    from contextlib import ExitStack

    import tifffile

    written = []
    staged = getattr(result, "meta", {}).get("staged")
    if staged is not None:  # a big input: the store holds the labels; table and COCO are read from it first
        table = result.table
        coco_json = json.dumps(to_coco_of(result, path)) if coco else None
        with ExitStack() as renames:

            def put(filename, write):
                write(renames.enter_context(atomic_write(out / filename, overwrite, "output")))
                written.append(filename)

            put(f"{name}_labels.zarr", lambda t: os.replace(staged, t))
            put(f"{name}_instances.csv", lambda t: table.to_csv(t, index=False))
            if coco_json is not None:
                put(f"{name}_coco.json", lambda t: t.write_text(coco_json))
        return written
    with ExitStack() as renames:  # on leaving: each temporary file renamed (on an error: all removed)

        def put(filename, write):
            write(renames.enter_context(atomic_write(out / filename, overwrite, "output")))
            written.append(filename)

        put(f"{name}_labels.tif", lambda t: tifffile.imwrite(t, result.labels, compression="zlib"))
        if result.refined is not None:
            put(f"{name}_labels_crf.tif", lambda t: tifffile.imwrite(t, result.refined, compression="zlib"))
        put(f"{name}_instances.csv", lambda t: result.table.to_csv(t, index=False))
        if write_overlay:
            shown = result.refined if result.refined is not None else result.labels
            put(f"{name}_overlay.png", lambda t: _save_overlay(t, image, shown))
        if coco:
            put(f"{name}_coco.json", lambda t: t.write_text(json.dumps(to_coco_of(result, path))))
    return written


def _save_overlay(target: Path, image, shown) -> None:
    """The overlay PNG of a read file (:class:`~napari_gardenseg._reader.ImageFile`); a stack gives one frame per plane (APNG)."""
    from PIL import Image

    frames = [Image.fromarray(overlay(image.plane(ix), shown[ix] if ix else shown)) for ix in image.planes()]
    frames[0].save(target, format="PNG", save_all=len(frames) > 1, append_images=frames[1:])


def to_coco_of(result, path: Path) -> dict:
    """COCO JSON of one file's result; a stack (:class:`~napari_gardenseg._stack.StackResult`) gives one
    COCO image per plane, named ``<file>[<plane index>]``, with annotation ids running on across planes."""
    from ._export import to_coco
    from ._stack import StackResult

    if not isinstance(result, StackResult):
        return to_coco(result, file_name=path.name)
    images, categories, annotations = [], {}, []
    for k, (res, where) in enumerate(zip(result.results, result.planes)):
        part = to_coco(res, image_id=k + 1, file_name=f"{path.name}[{','.join(map(str, where))}]")
        images += part["images"]
        categories.update({c["id"]: c for c in part["categories"]})
        annotations += [{**a, "id": len(annotations) + j + 1} for j, a in enumerate(part["annotations"])]
    return {"images": images, "categories": [categories[i] for i in sorted(categories)], "annotations": annotations}


# ----------------------------------------------------------------------------- the batch


@dataclass
class FileStatus:
    """What happened to one input file."""

    file: str
    name: str
    status: str  # "done", "skipped" (resume: already done), "failed"
    instances: int | None = None
    outputs: list[str] = field(default_factory=list)
    seconds: float | None = None
    attempts: int = 0
    error: str | None = None
    worker: str | None = None  # the Dask worker that ran it (None in-process)


@dataclass
class BatchSummary:
    """What :func:`segment_files` returns: one :class:`FileStatus` per input, in input order."""

    out_dir: Path
    files: list[FileStatus]
    seconds: float = 0.0

    def _count(self, status):
        return sum(f.status == status for f in self.files)

    @property
    def done(self) -> int:
        return self._count("done")

    @property
    def skipped(self) -> int:
        return self._count("skipped")

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return self.failed == 0

    @property
    def failures_path(self) -> Path:
        return Path(self.out_dir) / FAILURES_FILE

    @property
    def table(self):
        """A pandas DataFrame, one row per input: file, name, status, instances, outputs, seconds, attempts, error."""
        import pandas as pd

        return pd.DataFrame([asdict(f) for f in self.files], columns=[f.name for f in FileStatus.__dataclass_fields__.values()])

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self):
        return iter(self.files)

    def __repr__(self) -> str:
        return (
            f"BatchSummary({len(self)} files: {self.done} done, {self.skipped} skipped, "
            f"{self.failed} failed; outputs in {self.out_dir})"
        )


def _failure(fs: FileStatus, exc: BaseException | None = None, *, tb: str | None = None, error_type=None, message=None) -> dict:
    return {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "file": fs.file,
        "name": fs.name,
        "error_type": error_type or type(exc).__name__,
        "message": message if message is not None else str(exc),
        "traceback": tb if tb is not None else "".join(traceback.format_exception(exc)) if exc is not None else "",
        "attempts": fs.attempts,
        "worker": fs.worker,
    }


def _check_options(segment_options: dict):
    """The run's SegmentOptions from ``segment_options`` (one validator: unknown names and bad values raise)."""
    from ._options import SegmentOptions

    return SegmentOptions.from_kwargs(**{k: v for k, v in segment_options.items() if k not in _RUN_ONLY})


def _task(path: str, out_dir: str, name: str, model, kwargs: dict, host_threads: dict | None) -> dict:
    """Run on a worker: one file, never raising for the file's own errors (they come back as data)."""
    worker = _set_torch_threads(host_threads)
    try:
        summary = process_file(path, out_dir, model, name=name, **kwargs)
        return {"status": "done", "worker": worker, **summary}
    except Exception as exc:  # noqa: BLE001  (whatever a file does, it fails alone and is reported)
        return {
            "status": "failed",
            "worker": worker,
            "error_type": type(exc).__name__,
            "message": str(exc),
            "traceback": "".join(traceback.format_exception(exc)),
        }


def _set_torch_threads(host_threads: dict | None) -> str | None:
    """On a Dask worker, give each running file an equal share of the host's cores; return the worker's address.

    torch takes every core of the machine by default, so N worker processes
    on one host would each start that many threads and slow each other down.
    """
    if host_threads is None:
        return None
    import torch
    from distributed import get_worker

    worker = get_worker()
    host = _host(worker.address)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    wanted = max(1, cpus // max(1, host_threads.get(host, worker.state.nthreads)))
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    return worker.address


def _host(address: str) -> str:
    return address.split("://")[-1].rsplit(":", 1)[0]


def _check_resources(client, resources: dict) -> None:
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    if not any(all((w.get("resources") or {}).get(k, 0) >= v for k, v in resources.items()) for w in workers):
        # Dask would keep such tasks waiting for a worker that may never come: say so now
        raise ValueError(
            f"resources={resources!r}: no worker of this cluster has them (workers' resources: "
            f"{sorted({str(w.get('resources') or {}) for w in workers})}); start workers with "
            "e.g. `dask worker ... --resources GPU=1`"
        )


def _host_threads(workers: dict) -> dict:
    """Dask worker threads per host, from the scheduler's view of the cluster."""
    threads: Counter = Counter()
    for addr, info in workers.items():
        threads[_host(addr)] += int(info.get("nthreads", 1))
    return dict(threads)


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
    **segment_options,
) -> BatchSummary:
    """Segment image files and write each one's outputs into ``out_dir``.

    ``client=None`` runs the files one after another in this process; a
    ``dask.distributed.Client`` runs them on its cluster (``model`` must then
    be a model name or a checkpoint path the workers can read). ``resources``
    (e.g. ``{"GPU": 1}``) restricts tasks to workers started with those
    resources. ``segment_options`` go to :func:`napari_gardenseg.segment`;
    ``crf_overrides`` replace fields of the model's stored CRF settings.
    Files are read as :func:`process_file` says; ``axes`` (e.g. ``"TYX"``)
    names the axes of TIFF and zarr inputs that do not state them.

    Failures (unreadable file, an error while segmenting, an output already
    there, a worker lost more than ``retries`` times) fail that file only and
    are appended to ``out_dir/failures.jsonl``. ``resume=True`` skips files
    whose run record matches this run (same input file, model and options);
    ``overwrite=True`` replaces existing outputs. ``progress(fraction,
    message)`` is called after each file (the fraction then reaches ``k / n``
    for ``k`` files finished) and, in-process, in between as the file's
    stages and tiles go by (fractions short of the next ``k / n``).
    """
    t_start = time.perf_counter()
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(dict.fromkeys(os.path.abspath(os.fspath(p)) for p in paths))  # a file given twice runs once
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    _check_options(segment_options)
    if axes is not None:
        from ._reader import check_axes

        axes = check_axes(axes)
    if "crf_params" in segment_options and segment_options["crf_params"] is not None and crf_overrides:
        raise ValueError("give crf_params or crf_overrides, not both")
    out = Path(out_dir).expanduser()
    model_id = model_identity(model)  # unknown model or missing checkpoint: fail now, not per file
    if client is not None and not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"with a Dask client, model must be a model name or a checkpoint path, not {type(model).__name__} "
            "(workers load it themselves)"
        )
    if client is not None and resources:
        _check_resources(client, resources)
    if isinstance(model, (str, os.PathLike)) and model_id["sha256"] is not None and model != "garden":
        model = model_id["source"]  # a checkpoint's absolute path: workers may run in another folder
    out.mkdir(parents=True, exist_ok=True)
    crf = segment_options.get("crf", True)
    names = output_names(paths)
    files = [FileStatus(file=p, name=n, status="pending") for p, n in zip(paths, names)]
    # resume in the tasks: a finished file whose result was lost with its worker and is recomputed
    # by Dask finds its own complete outputs and keeps them (with overwrite it simply redoes them)
    kwargs = dict(segment_options, coco=coco, write_overlay=write_overlay, overwrite=overwrite,
                  resume=not overwrite, crf_overrides=crf_overrides, model_id=model_id, axes=axes)
    wanted_options = _compared_options(segment_options, crf_overrides, axes)
    n_finished = 0

    def finished(fs: FileStatus, message: str):
        nonlocal n_finished
        n_finished += 1
        if progress is not None:
            progress(n_finished / len(files), message)

    def fail(fs: FileStatus, entry: dict):
        fs.status, fs.error = "failed", f"{entry['error_type']}: {entry['message']}"
        _append_failure(out, entry)
        finished(fs, f"{Path(fs.file).name}: FAILED: {fs.error}")

    wanted = {"model": model_id, "options": wanted_options, "outputs": {"coco": bool(coco), "overlay": bool(write_overlay)}}
    todo = []
    for fs in files:
        targets = [out / f for f in output_files(fs.name, crf=crf, coco=coco, write_overlay=write_overlay,
                                                 big=is_big_input(fs.file, axes))]
        verdict = _before_running(fs, out, targets, wanted, resume=resume, overwrite=overwrite)
        if verdict == "run":
            todo.append(fs)
        elif verdict == "skip":
            finished(fs, f"{Path(fs.file).name}: already done (resume)")
        else:
            fail(fs, verdict)

    def settle(fs: FileStatus, res: dict):
        if res["status"] == "done":
            fs.status, fs.instances, fs.seconds, fs.worker = "done", res["instances"], res["seconds"], res["worker"]
            fs.outputs = [str(out / f) for f in res["written"]]
            finished(fs, f"{Path(fs.file).name}: {fs.instances} instances in {fs.seconds} s")
        else:
            fs.worker = res["worker"]
            fail(fs, _failure(fs, tb=res["traceback"], error_type=res["error_type"], message=res["message"]))

    if client is None:
        if todo:
            loaded = _model(model, segment_options.get("device", "auto"), model_id)  # once, before the loop (as before)
        for fs in todo:
            fs.attempts = 1
            task_kwargs = kwargs
            if progress is not None:  # the stages (and tiles) of this file move the bar between files
                task_kwargs = dict(kwargs, progress=_within(progress, n_finished, len(files), Path(fs.file).name))
            res = _task(fs.file, str(out), fs.name, loaded, task_kwargs, None)
            settle(fs, res)
    else:
        _run_on_cluster(client, todo, str(out), model, kwargs, retries, resources, settle, fail)

    return BatchSummary(out_dir=out, files=files, seconds=time.perf_counter() - t_start)


def _within(progress, done: int, total: int, label: str):
    """segment()'s progress for one file, as a fraction of the batch that stays below the file's end."""
    return lambda f, message: progress((done + 0.99 * min(max(f, 0.0), 1.0)) / total, f"{label}: {message}")


def _before_running(fs: FileStatus, out: Path, targets: list[Path], wanted: dict, *, resume, overwrite):
    """"run", "skip" (resume: done with the same input, model and options), or a failure entry."""
    path = Path(fs.file)
    if not (path.is_file() or (path.is_dir() and path.suffix.lower() == ".zarr")):
        return _failure(fs, FileNotFoundError(f"no such image file: {path}"), tb="")
    record = read_run_record(out, fs.name) if resume else None
    if record is not None:
        why = _not_done(out, fs.name, {**wanted, "input": _input_identity(path)}, record)
        if why is None:
            fs.status, fs.instances = "skipped", record.get("instances")
            fs.outputs = [str(out / f) for f in [*record.get("written", []), f"{fs.name}{RUN_SUFFIX}"]]
            return "skip"
        if not overwrite:
            return _failure(fs, tb="", error_type="OutputExistsError", message=(
                f"output {str(out / (fs.name + RUN_SUFFIX))!r} was made by another run ({why}); not replacing it. "
                "Pass overwrite=True (--overwrite on the command line) to redo it."))
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        try:
            check_target(existing[0], False, "output")
        except OutputExistsError as exc:
            return _failure(fs, exc, tb="")
    return "run"


def _run_on_cluster(client, todo, out, model, kwargs, retries, resources, settle, fail):
    import uuid

    from distributed import as_completed
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker

    host_threads = _host_threads(client.scheduler_info(n_workers=-1)["workers"])
    by_key = {}

    def submit(fs: FileStatus):
        fs.attempts += 1
        fut = client.submit(
            _task, fs.file, out, fs.name, model, kwargs, host_threads,
            # one key prefix for all files: Dask then treats them as one group and queues them on the
            # scheduler, so a worker holds only the file it runs and a dying worker takes no other with it
            key=f"gardenseg-file-{uuid.uuid4().hex}", pure=False, resources=resources,
        )
        by_key[fut.key] = fs
        return fut

    ac = as_completed([submit(fs) for fs in todo])
    for fut in ac:
        fs = by_key.pop(fut.key)
        try:
            res = fut.result()
        except KilledWorker as exc:  # the worker process died while running (or holding) this file
            fs.worker = getattr(getattr(exc, "last_worker", None), "address", None)
            if fs.attempts <= retries:
                ac.add(submit(fs))
                continue
            fail(fs, _failure(fs, exc, message=f"worker process lost {fs.attempts} times while running this file ({exc})"))
            continue
        except (Exception, FutureCancelledError) as exc:  # noqa: BLE001  (reported as that file's failure)
            fail(fs, _failure(fs, exc))
            continue
        finally:
            fut.release()
        settle(fs, res)


def _append_failure(out: Path, entry: dict) -> None:
    # one line per write, appended: earlier runs' lines stay; the driver is the only writer
    with open(out / FAILURES_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def local_cluster(n_workers: int, *, retries_lost: int = 0, **kwargs):
    """A LocalCluster of ``n_workers`` processes with one thread each, for :func:`segment_files`.

    Workers start without Dask's ``MALLOC_TRIM_THRESHOLD_`` (it slows
    segmentation down). A task counts as lost at the first death of its
    worker (the batch resubmits it ``retries`` times itself, the same on any
    cluster), and when the scheduler queues a batch's tasks (batches larger
    than twice the worker threads) it hands a worker one file at a time, so
    a dying worker takes no waiting file with it.
    """
    import logging

    import dask
    from distributed import LocalCluster

    if not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {n_workers!r}")
    kwargs.setdefault("silence_logs", logging.ERROR)  # not the nannies' warnings while torch processes exit
    with dask.config.set({
        "distributed.scheduler.allowed-failures": retries_lost,
        "distributed.scheduler.worker-saturation": 1.0,
        # Dask starts workers with glibc's trim threshold set, which also fixes the mmap threshold:
        # every large array is then mapped and zeroed afresh, which slows segmenting down (README)
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    }):
        return LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None, **kwargs
        )
