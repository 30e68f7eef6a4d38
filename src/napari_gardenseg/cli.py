"""Command line: segment image files in batches, without napari.

    gardenseg segment photo1.jpg photo2.png --model garden --out results/
    gardenseg segment --sample --out results/        # the bundled sample, offline
    gardenseg segment photos/ --out results/                           # every image file in a folder
    gardenseg segment photos/*.jpg --out results/ --workers 4          # 4 local processes
    gardenseg segment photos/*.jpg --out results/ --scheduler-file sched.json  # a Dask cluster
    gardenseg models                                 # what can be loaded here
    gardenseg adapt photos/*.jpg --out my_field.pt   # learn from unlabelled photos (see adapt())
    gardenseg train photos/ --out my_field.pt        # fine-tune on painted photos: a.jpg + a_labels.tif
    gardenseg train --coco export/annotations.json --out my_field.pt  # or on an annotation tool's COCO export
    gardenseg train --yolo dataset/data.yaml --out my_field.pt        # or on a YOLO segmentation dataset

Each input gives ``<name>_labels.tif`` (raw instance ids), ``<name>_labels_crf.tif``
(CRF-refined), ``<name>_instances.csv`` (one row per instance),
``<name>_overlay.png``, with ``--coco`` ``<name>_coco.json``, and last
``<name>_run.json`` (what made them). ``<name>`` is the file's stem, with a
short path-derived suffix when two inputs share a stem (see
:mod:`napari_gardenseg._batch`). Existing outputs are never replaced without
``--overwrite``; ``--resume`` skips files already done with the same settings;
failures are listed in ``failures.jsonl`` in the output folder.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__
from ._options import DEFAULT_MODEL, DEFAULTS, VEGETATION_MODES, SegmentOptions
from .crf._params import BACKENDS as CRF_BACKENDS

__all__ = ["main"]


def _sample_file() -> Path:
    """The bundled photograph sample (``data/seedling_tray.jpg``; credits in ``data/CREDITS.md``)."""
    from importlib import resources

    from ._sample_data import PHOTO_FILE

    return Path(str(resources.files("napari_gardenseg") / "data" / PHOTO_FILE))


# The flags' types only parse; their ranges are SegmentOptions', so the command line and the API
# say the same thing about the same value.


def _int_or_auto(text: str):
    if text == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels or 'auto', got {text!r}") from None


def _pixels(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, got {text!r}") from None


def _float_or_auto(text: str):
    if text == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def _class_list(text: str) -> list:
    """--classes: names, or ids as the API takes them; an empty entry is left for the class check to name."""
    return [int(c) if c.strip().isascii() and c.strip().isdigit() else c.strip() for c in text.split(",")]


def _crf_setting(text: str) -> tuple[str, object]:
    """--crf NAME=VALUE: a CRFParams field and its value, parsed by the field's type
    (``band=0.1,0.9`` for the pair); the ranges are CRFParams' own."""
    import dataclasses

    from .crf._params import CRFParams

    name, sep, value = text.partition("=")
    types = {f.name: str(f.type) for f in dataclasses.fields(CRFParams)}  # "int", "float", "tuple[...]"...
    name = name.strip()
    if not sep or name not in types:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE with NAME one of {', '.join(types)}, got {text!r}")
    kind = types[name]
    try:
        if kind.startswith("tuple"):
            pair = tuple(float(v) for v in value.split(","))
            if len(pair) != 2:
                raise ValueError
            return name, pair
        if kind in ("int", "float"):
            return name, int(value) if kind == "int" else float(value)
        return name, value.strip()
    except ValueError:
        what = {"int": "a whole number", "float": "a number"}.get(kind, "two numbers LOW,HIGH")
        raise argparse.ArgumentTypeError(f"--crf {name} takes {what}, got {value!r}") from None


def _resources(text: str) -> dict:
    try:
        return {k: float(v) for k, v in (item.split("=") for item in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=AMOUNT[,NAME=AMOUNT...] (e.g. GPU=1), got {text!r}") from None


def _segment_options(args) -> tuple[dict, dict | None]:
    """The run's options from the flags, validated as one SegmentOptions and handed down as the
    fields that differ from the defaults (what the run record keeps); and the CRF overrides."""
    options = SegmentOptions(
        score_threshold=args.score_threshold,
        mask_threshold=args.mask_threshold,
        classes=_class_list(args.classes) if args.classes is not None else None,
        scale=args.scale,
        tile_size=args.tile_size,
        tile_overlap=args.tile_overlap,
        merge_classes=args.merge_classes,
        crf=not args.no_crf,
        device=args.device,
        vegetation=args.vegetation,
    ).changed()
    overrides = dict(args.crf or [])
    for name, value in (("iterations", args.crf_iterations), ("backend", args.crf_backend)):
        if value is not None:
            if name in overrides and overrides[name] != value:
                raise ValueError(f"--crf-{name} {value} and --crf {name}={overrides[name]} disagree: give one")
            overrides[name] = value
    return options, overrides or None


class _Progress:
    """A bar over files on a terminal (tqdm), one line per file otherwise; failures always on stderr."""

    def __init__(self, total: int):
        self.total, self.count, self.bar = total, 0, None
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="file", file=sys.stderr, disable=None, dynamic_ncols=True)
            if self.bar.disable:
                self.bar = None
        except ImportError:
            pass

    def __call__(self, fraction: float, message: str):
        finished = int(fraction * self.total + 1e-6)  # files done; in between: a stage or tile of the next
        if finished <= self.count:
            if self.bar is not None:
                self.bar.set_postfix_str(message[-60:], refresh=True)
            return
        self.count = finished
        failed = ": FAILED" in message
        line = message if self.bar is not None else f"[{self.count}/{self.total}] {message}"
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr if failed else sys.stdout)
            self.bar.set_postfix_str("")
            self.bar.update(finished - self.bar.n)
        else:
            print(line, file=sys.stderr if failed else sys.stdout, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _client(args, stack):
    """A Dask client for --workers / --scheduler / --scheduler-file, or None (run in this process)."""
    given = [
        f
        for f, v in (
            ("--workers", args.workers),
            ("--scheduler", args.scheduler),
            ("--scheduler-file", args.scheduler_file),
        )
        if v is not None
    ]
    if not given:
        return None
    if len(given) > 1:
        raise ValueError(f"give one of --workers, --scheduler, --scheduler-file, not {' and '.join(given)}")
    try:
        from distributed import Client
    except ImportError:
        raise ImportError(f'{given[0]} needs Dask distributed: `pip install "napari-gardenseg[distributed]"`') from None
    if args.workers is not None:
        from ._batch import local_cluster

        cluster = stack.enter_context(local_cluster(args.workers))
        return stack.enter_context(Client(cluster))
    if args.scheduler is not None:
        return stack.enter_context(Client(args.scheduler, timeout="30s"))
    if not Path(args.scheduler_file).exists():
        raise FileNotFoundError(f"--scheduler-file: no such file: {args.scheduler_file}")
    return stack.enter_context(Client(scheduler_file=args.scheduler_file, timeout="30s"))


def _cmd_segment(args) -> int:
    from contextlib import ExitStack

    from ._batch import model_identity, segment_files
    from ._image_folders import expand_folders

    inputs = [Path(p) for p in args.inputs]
    if args.sample:
        inputs.append(_sample_file())
    if not inputs:
        print("gardenseg segment: give image files, folders of them, or --sample", file=sys.stderr)
        return 2
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        print(f"gardenseg segment: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    # for the count; segment_files expands the folders itself
    files = expand_folders(inputs, recursive=args.recursive, exclude=[args.out])
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.retries < 0:
        raise ValueError(f"--retries must be >= 0, got {args.retries}")
    options, overrides = _segment_options(args)
    model_identity(args.model)  # an unknown model or a missing checkpoint: say so before starting a cluster
    with ExitStack() as stack:
        client = _client(args, stack)
        bar = _Progress(len({os.path.abspath(p) for p in files}))  # a file given twice runs once
        stack.callback(bar.close)
        summary = segment_files(
            inputs,
            args.out,
            args.model,
            client=client,
            overwrite=args.overwrite,
            resume=args.resume,
            progress=bar,
            retries=args.retries,
            coco=args.coco,
            crf_overrides=overrides,
            resources=args.resources,
            axes=args.axes,
            recursive=args.recursive,
            **options,
        )
    tail = f"; failures listed in {summary.failures_path}" if summary.failed else ""
    existing = sum(1 for f in summary if (f.error or "").startswith("OutputExistsError"))
    if existing and args.resume:  # outputs without a matching record (another run's, or one interrupted)
        tail += (
            f"; {existing} of them because their outputs exist and are not this run's: --resume --overwrite redoes them"
        )
    elif existing:  # a batch run again into the same folder: say the two ways on
        tail += (
            f"; {existing} of them because their outputs exist: --resume skips the files already done, "
            "--overwrite replaces their outputs"
        )
    print(
        f"{summary.done} done, {summary.skipped} skipped, {summary.failed} failed "
        f"in {summary.seconds:.1f} s -> {summary.out_dir}{tail}",
        file=sys.stderr if summary.failed else sys.stdout,
    )
    return 0 if summary.ok else 1


def _stage_printer():
    """A ``progress(fraction, message)`` that prints a line per stage, and every 30 s within one.

    The stage is the message up to its first ``:`` and before its counter
    (``3/200``, ``2 of 40``): "iteration 3/200 loss=…" is one stage.
    """
    import re
    import time

    last = [None, 0.0]

    def progress(fraction, message):
        stage = re.split(r"\d+(?:/| of )\d+", message.split(":")[0])[0]
        if stage != last[0] or time.monotonic() - last[1] > 30:
            last[:] = [stage, time.monotonic()]
            print(f"[{100 * fraction:3.0f}%] {message}", file=sys.stderr, flush=True)

    return progress


def _missing(paths, command: str) -> bool:
    """Say which of ``paths`` do not exist (True if any)."""
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        print(f"gardenseg {command}: no such file: {', '.join(missing)}", file=sys.stderr)
    return bool(missing)


def _cmd_adapt(args) -> int:
    import threading

    from ._adapt import adapt, outcome_of
    from ._cancel import Cancelled, first_interrupt_sets

    if _missing(args.photos, "adapt"):
        return 2
    photos = args.photos
    if args.recursive:
        from ._image_folders import expand_folders

        photos = expand_folders(photos, recursive=True)
    # the first Ctrl-C stops the run as the panel's Cancel does (the best checked round is saved)
    stop = threading.Event()
    hint = (
        "\ngardenseg adapt: stopping; the best round checked so far will be saved, if one was checked "
        "(Ctrl-C again: stop now, save nothing)"
    )
    with first_interrupt_sets(stop, hint):
        try:
            path = adapt(
                photos,
                args.base,
                minutes=args.minutes,
                rounds=args.rounds,
                iterations=args.iterations,
                cancel=stop,
                **_model_output_options(args),
            )
        except Cancelled as exc:
            print(f"gardenseg adapt: interrupted: {exc}", file=sys.stderr)
            return 130
    print(f"gardenseg adapt: {'interrupted; ' if stop.is_set() else ''}{outcome_of(path)}", file=sys.stderr)
    print(path)
    return 130 if stop.is_set() else 0


def _cmd_train(args) -> int:
    from ._options import FitOptions
    from ._training import train

    if not args.photos and not args.coco and not args.yolo:
        print("gardenseg train: give photos with label images, --coco FILE or --yolo DATASET", file=sys.stderr)
        return 2
    # the loop's settings checked before any photo is read (train checks them by the same rule)
    FitOptions(
        **{
            k: getattr(args, k)
            for k in ("iterations", "lr", "crop", "batch_size", "seed")
            if getattr(args, k) is not None
        }
    )
    samples = []
    if args.photos:
        samples = _painted_samples(args)
        if samples is None:
            return 2
    from ._coco_labels import read_coco
    from ._yolo_labels import read_yolo

    not_json = [f for f in args.coco or () if not str(f).lower().endswith(".json")]
    if not_json:  # photos after --coco's files are taken for more of them
        print(
            f"gardenseg train: {not_json[0]} is not a COCO JSON file: give photos before --coco, or '--' after its files",
            file=sys.stderr,
        )
        return 2
    from ._coco_labels import stale_note

    for coco_file in args.coco or ():
        stale = stale_note(Path(coco_file))
        if stale is not None:
            print(f"gardenseg train: {stale}", file=sys.stderr)
            return 2
        samples += _annotated_samples(read_coco, coco_file, args.images)
    for dataset in args.yolo or ():
        samples += _annotated_samples(read_yolo, dataset, split=args.split)
    named = sorted({name for _, _, classes in samples for name in _names(classes)})
    print(f"gardenseg train: {len(samples)} labelled photo(s), class(es) {', '.join(named)}", file=sys.stderr)
    # train's own defaults for the settings not given: no copies of them here
    given = {
        k: getattr(args, k)
        for k in ("iterations", "lr", "crop", "batch_size", "wise_alpha")
        if getattr(args, k) is not None
    }
    import threading

    from ._cancel import Cancelled, first_interrupt_sets

    # the first Ctrl-C stops the training as the panel's Cancel does: what was learnt is saved
    stop = threading.Event()
    hint = "\ngardenseg train: stopping after this iteration; what was learnt will be saved (Ctrl-C again: stop now, save nothing)"
    with first_interrupt_sets(stop, hint):
        try:
            path = train(samples, args.base, **_model_output_options(args), **given, cancel=stop)
        except Cancelled as exc:
            print(f"gardenseg train: interrupted: {exc}", file=sys.stderr)
            return 130
    if stop.is_set():
        print("gardenseg train: interrupted; the model learnt so far is saved", file=sys.stderr)
    print(path)
    return 130 if stop.is_set() else 0


def _painted_samples(args) -> list | None:
    """(photo, label image, classes) for the photos given with label images; None if none has one."""
    from ._label_files import label_classes, labelled_photos

    if _missing(args.photos, "train"):
        return None
    pairs, unlabelled = labelled_photos(args.photos, args.labels, args.suffix, recursive=args.recursive)
    where = f"in {args.labels}" if args.labels else "next to each photo"
    if unlabelled:
        names = ", ".join(p.name for p in unlabelled[:5]) + (" ..." if len(unlabelled) > 5 else "")
        print(
            f"gardenseg train: left out {len(unlabelled)} photo(s) with no label image {where}: {names}",
            file=sys.stderr,
        )
    if not pairs:
        print(
            f"gardenseg train: no photo has a label image: looked {where} for <photo name>{args.suffix}.tif, "
            ".tiff or .png (save each photo's Labels layer under that name; --labels and --suffix say where)",
            file=sys.stderr,
        )
        return None
    # a batch's result (corrected) keeps the classes its instance table names, unless --class-name
    return [
        (photo, label_file, args.class_name if args.class_name is not None else label_classes(label_file))
        for photo, label_file in pairs
    ]


def _annotated_samples(reader, *args, **kwargs) -> list:
    """An annotation reader's samples (read_coco, read_yolo), its warnings (what it left out)
    printed as the CLI's own lines."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples = reader(*args, **kwargs)
    for w in caught:
        if issubclass(w.category, UserWarning):  # what was left out; not libraries' deprecations
            print(f"gardenseg train: {w.message}", file=sys.stderr)
    return samples


def _names(classes) -> set:
    return {classes} if isinstance(classes, str) else set(classes.values())


def _cmd_models(args) -> int:
    from ._models import coco_weights_path
    from ._options import MODEL_TITLES

    for name, title in MODEL_TITLES.items():
        where = ""
        if name.startswith("coco"):
            p = coco_weights_path(name)
            where = f"  [{'cached' if p.exists() else 'not downloaded'}: {p}]"
        print(f"{name:8s} {title}{where}")
    from ._files import user_models, user_models_dir

    mine = user_models()  # what train and adapt wrote there: --model takes their path
    print(
        f"\nyour models ({user_models_dir()}; give --model the path):"
        if mine
        else f"\nno models of yours in {user_models_dir()}"
    )
    for path, title in mine.items():
        print(f"  {title:20s} {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gardenseg", description="Mask R-CNN + dense-CRF instance segmentation")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser(
        "segment", help="segment image files (PNG, JPEG, TIFF, HEIC, WebP, .npy), zarr stores, or folders of them"
    )
    s.add_argument(
        "inputs",
        nargs="*",
        help="image files or zarr stores, or folders of image files (the files directly in each; see --recursive)",
    )
    s.add_argument(
        "-r",
        "--recursive",
        action="store_true",
        help="also the image files in the folders' subfolders, at any depth; their outputs go into the same "
        "subfolders of --out (hidden folders and --out are not searched; earlier batches' outputs are not photos)",
    )
    s.add_argument(
        "--sample",
        action="store_true",
        help="also segment the bundled sample photograph (seedling trays, PlantCV, CC BY 4.0)",
    )
    s.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="garden (bundled, offline), coco (everyday objects, downloaded once), coco-v1 "
        "or a checkpoint path (default: %(default)s)",
    )
    s.add_argument("--out", default="gardenseg-out", help="output folder (default: gardenseg-out)")
    s.add_argument("--device", default=DEFAULTS.device, help="auto, cpu, cuda, cuda:N or mps (default: %(default)s)")
    s.add_argument(
        "--score-threshold",
        type=float,
        default=DEFAULTS.score_threshold,
        help="drop the network's detections scoring below this; plants found by colour alone are kept, "
        "at this score (default: %(default)s)",
    )
    s.add_argument(
        "--mask-threshold",
        type=float,
        default=DEFAULTS.mask_threshold,
        help="a pixel belongs to an instance above this soft-mask value (default: the model's own, "
        "the value stored with it: 0.3 for the bundled garden model, else 0.5)",
    )
    s.add_argument("--classes", help="comma-separated class names (or ids) to keep (default: all)")
    s.add_argument("--no-crf", action="store_true", help="skip the dense-CRF refinement")
    s.add_argument("--crf-iterations", type=int, help="mean-field iterations (default: the model's setting)")
    s.add_argument("--crf-backend", choices=CRF_BACKENDS, help="dense-CRF implementation (default: auto)")
    s.add_argument(
        "--crf",
        type=_crf_setting,
        action="append",
        metavar="NAME=VALUE",
        help="any other dense-CRF setting over the model's (repeatable; e.g. --crf bilateral_srgb=20 "
        "--crf band=0.05,0.95; the names are CRFParams' fields, as in the widget's CRF settings)",
    )
    s.add_argument(
        "--tile-size", type=_int_or_auto, help="segment in tiles of this many pixels, or 'auto' (default: whole image)"
    )
    s.add_argument(
        "--tile-overlap",
        type=_pixels,
        help="overlap of neighbouring tiles in pixels (default: a quarter of the tile, at least 16)",
    )
    s.add_argument(
        "--scale",
        type=_float_or_auto,
        help="resize factor before the network (1.0: native pixels), or 'auto' (default: the model's own resize; "
        "the bundled model's shortest side 512, longest at most 1024)",
    )
    s.add_argument("--merge-classes", action="store_true", help="report every instance as one class 'plant'")
    s.add_argument(
        "--vegetation",
        choices=VEGETATION_MODES,
        default=DEFAULTS.vegetation,
        help="plant pixels from plant colour: instances follow plant-coloured pixels and plant-coloured "
        "patches no detection claims are added ('auto': when the photo's colour tells plants from "
        "soil; 'on': whenever its colours form two classes, the upper one green; default: %(default)s)",
    )
    s.add_argument(
        "--axes",
        metavar="LETTERS",
        help="the axes of TIFF/zarr/.npy inputs that do not state them, one letter per axis: T time, Z depth, "
        "C channels (each a plane), S colour samples, Y, X; e.g. TYX (stacks are segmented plane by plane)",
    )
    s.add_argument("--coco", action="store_true", help="also write COCO JSON")
    s.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the outputs of an earlier run (never replaced otherwise; files no run made never are)",
    )
    s.add_argument(
        "--resume", action="store_true", help="skip files whose outputs were made with the same model and settings"
    )
    b = s.add_argument_group("parallel and cluster runs (need dask distributed)")
    b.add_argument(
        "--workers", type=int, metavar="N", help="run on a local Dask cluster of N processes, one thread each"
    )
    b.add_argument("--scheduler", metavar="ADDRESS", help="run on an existing Dask cluster (e.g. tcp://host:8786)")
    b.add_argument("--scheduler-file", metavar="PATH", help="run on the Dask cluster described by this scheduler file")
    b.add_argument(
        "--retries", type=int, default=1, help="times a file is resubmitted when its worker dies (default: 1)"
    )
    b.add_argument(
        "--resources",
        type=_resources,
        metavar="NAME=N",
        help="run each file on workers with these Dask resources, e.g. GPU=1",
    )
    s.set_defaults(func=_cmd_segment)
    m = sub.add_parser("models", help="list the models and whether their weights are here")
    m.set_defaults(func=_cmd_models)
    a = sub.add_parser("adapt", help="adapt a model to unlabelled photos (writes a new model and a report)")
    a.add_argument(
        "photos", nargs="+", help="photos of the field or garden (PNG, JPEG, TIFF, HEIC), or folders of them"
    )
    a.add_argument(
        "-r", "--recursive", action="store_true", help="also the photos in the folders' subfolders, at any depth"
    )
    _model_output_args(a)
    a.add_argument("--minutes", type=float, help="time budget (default: 5 + 0.5 per photo, at most 25)")
    a.add_argument("--rounds", type=int, default=3, help="most rounds of harvest and training (default: %(default)s)")
    a.add_argument("--iterations", type=int, help="training iterations per round (default: by the time budget)")
    a.set_defaults(func=_cmd_adapt)
    t = sub.add_parser(
        "train",
        help="fine-tune a model on photos with painted label images, COCO annotations or a YOLO dataset "
        "(writes a new model)",
    )
    t.add_argument(
        "photos",
        nargs="*",
        help="photos, or folders of them, each with a label image (ids, 0 = background) named "
        "<photo name>_labels.tif, .tiff or .png; photos without one are left out",
    )
    t.add_argument(
        "--coco",
        metavar="FILE",
        action="extend",
        nargs="+",
        help="COCO instance annotations (polygons or RLE, as CVAT, Label Studio or Roboflow export them, or "
        "gardenseg segment --coco's <name>_coco.json files, with --images), classes from their categories; "
        "one or more files (results/*_coco.json), and with photos given before it",
    )
    t.add_argument(
        "--yolo",
        metavar="DATASET",
        action="append",
        help="a YOLO segmentation dataset (Ultralytics, Roboflow's YOLOv8 export): its data.yaml or folder; "
        "classes from its names; may be given more than once",
    )
    t.add_argument(
        "--split",
        default="train",
        choices=("train", "val", "test", "all"),
        help="which split of --yolo datasets to train on (default: %(default)s)",
    )
    t.add_argument(
        "--images",
        metavar="DIR",
        help="folder of the photos that --coco annotates (default: beside the JSON file, its images/ "
        "subfolder, or the images/ folder beside its folder)",
    )
    t.add_argument(
        "-r",
        "--recursive",
        action="store_true",
        help="also the photos in the folders' subfolders, at any depth (their label images in the same "
        "subfolders of --labels)",
    )
    t.add_argument("--labels", metavar="DIR", help="folder of the label images (default: each photo's folder)")
    t.add_argument(
        "--suffix",
        default="_labels",
        help="what follows the photo's name in its label image's name; '' for the same name "
        "in the --labels folder (default: %(default)s)",
    )
    t.add_argument(
        "--class-name",
        help="the class of every instance in the label images (default: the classes of the batch's "
        "<name>_instances.csv beside a label image, else 'plant')",
    )
    _model_output_args(t)
    t.add_argument("--iterations", type=int, help="training iterations (default: train's, 200)")
    t.add_argument("--lr", type=float, help="learning rate (default: train's, 1e-3)")
    t.add_argument("--crop", type=int, help="training crops of this many pixels (default: train's, 384)")
    t.add_argument("--batch-size", type=int, help="crops per iteration (default: train's, 2)")
    t.add_argument(
        "--wise-alpha",
        type=float,
        help="share of the fine-tuned weights in the saved model, the rest the base's (WiSE-FT; "
        "default: train's, 0.5; 1 saves the fine-tuned weights alone)",
    )
    t.set_defaults(func=_cmd_train)
    return p


def _model_output_options(args) -> dict:
    """What :func:`_model_output_args` parsed, as ``adapt``'s and ``train``'s keywords (with the stage printer)."""
    return {
        "output": args.out,
        "device": args.device,
        "overwrite": args.overwrite,
        "seed": args.seed,
        "progress": _stage_printer(),
    }


def _model_output_args(p) -> None:
    """The options ``adapt`` and ``train`` share: the model written, the one started from, where and how."""
    p.add_argument("--out", help="model file to write (default: a new file in the models folder)")
    p.add_argument("--base", default="garden", help="model to start from (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed, the same model (default: 0)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists (never replaced otherwise)")


def _expand_patterns(paths):
    """Each path that is not there but is a glob pattern (``photos/*.jpg``) replaced by the files it
    matches, sorted: Windows' shells, unlike POSIX ones, hand patterns to the program as they are.
    A pattern that matches nothing stays, for the "no such file" message."""
    import glob
    import re

    out = []
    for p in paths or []:
        text = os.path.expanduser(str(p))
        matches = []
        if not os.path.exists(text) and glob.has_magic(text):
            matches = glob.glob(text, recursive=True)  # "**": any depth, as bash's globstar
            if not matches:  # "[...]" may be part of a folder's name ("shots [2024]/*.jpg")
                matches = glob.glob(re.sub(r"([\[\]])", r"[\1]", text), recursive=True)
        out += sorted(matches) or [p]
    return out


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("inputs", "photos"):  # the commands' lists of input files and folders
        if isinstance(getattr(args, name, None), list):
            setattr(args, name, _expand_patterns(getattr(args, name)))
    try:
        return args.func(args)
    except (ValueError, TypeError, ImportError, OSError) as exc:
        from ._errors import is_user_error

        # the user's to act on (a file problem, an option, a missing extra): one line; another
        # library's ValueError or TypeError is a bug, and its traceback is what a report needs
        if not (isinstance(exc, OSError) or is_user_error(exc)):
            raise
        print(f"gardenseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, not torch's traceback
        if args.command == "segment":
            hint = "the files finished so far are complete (outputs and run record): run the same command with --resume to go on"
        else:
            hint = "no model was saved" if args.command in ("train", "adapt") else ""
        print(f"\ngardenseg: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
