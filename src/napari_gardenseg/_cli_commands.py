"""The commands of ``gardenseg`` (see :mod:`napari_gardenseg.cli`): each takes the parsed
arguments and returns the exit code. Heavy imports (torch) happen inside them, so that
``gardenseg --help`` stays fast."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ._claims import DONE_MEANWHILE, MADE_SINCE, WAITING
from ._options import SegmentOptions

__all__ = ["cmd_adapt", "cmd_models", "cmd_segment", "cmd_train", "sample_file"]


def _class_list(text: str) -> list:
    """--classes: names, or ids as the API takes them; an empty entry is left for the class check to name."""
    return [int(c) if c.strip().isascii() and c.strip().isdigit() else c.strip() for c in text.split(",")]


def sample_file() -> Path:
    """The bundled photograph sample (``data/seedling_tray.jpg``; credits in ``data/CREDITS.md``)."""
    from importlib import resources

    from ._sample_data import PHOTO_FILE

    return Path(str(resources.files("napari_gardenseg") / "data" / PHOTO_FILE))


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
            elif WAITING in message:  # minutes may pass: a log says why (stages and tiles it leaves out)
                print(message, flush=True)
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


def cmd_segment(args) -> int:
    from contextlib import ExitStack

    from ._batch import model_identity, segment_files
    from ._image_folders import expand_folders

    inputs = [Path(p) for p in args.inputs]
    if args.sample:
        inputs.append(sample_file())
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
    existing = sum(
        1 for f in summary if (f.error or "").startswith("OutputExistsError") and MADE_SINCE not in (f.error or "")
    )
    if existing and args.resume:  # outputs without a matching record (another run's, or one interrupted)
        tail += (
            f"; {existing} of them because their outputs exist and are not this run's: --resume --overwrite redoes them"
        )
    elif existing:  # a batch run again into the same folder: say the two ways on
        tail += (
            f"; {existing} of them because their outputs exist: --resume skips the files already done, "
            "--overwrite replaces their outputs"
        )
    by_others = sum(1 for f in summary if f.status == "done" and DONE_MEANWHILE in (f.note or ""))
    others = f" ({by_others} by another run into this folder)" if by_others else ""
    print(
        f"{summary.done} done{others}, {summary.skipped} skipped, {summary.failed} failed "
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


def cmd_adapt(args) -> int:
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


def _check_train_flags(args) -> None:
    """The training settings given as flags, checked by train's rules (FitOptions, wise_alpha's
    range) before any photo is read; ValueError naming the flag."""
    from ._options import FitOptions, fraction

    given = {
        k: getattr(args, k) for k in ("iterations", "lr", "crop", "batch_size", "seed") if getattr(args, k) is not None
    }
    try:
        FitOptions(**given)
        if args.wise_alpha is not None:
            fraction("wise_alpha", args.wise_alpha, open_low=True)
    except ValueError as exc:
        name, _, rest = str(exc).partition(" ")
        raise ValueError(f"--{name.replace('_', '-')} {rest}") from None


def cmd_train(args) -> int:
    from ._training import train

    if not args.photos and not args.coco and not args.yolo:
        print("gardenseg train: give photos with label images, --coco FILE or --yolo DATASET", file=sys.stderr)
        return 2
    _check_train_flags(args)
    samples, unlabelled = [], []
    if args.photos:
        painted = _painted_samples(args, annotated=bool(args.coco or args.yolo))
        if painted is None:
            return 2
        samples, unlabelled = painted
    from ._coco_labels import read_coco
    from ._yolo_labels import read_yolo

    not_json = [f for f in args.coco or () if not str(f).lower().endswith(".json")]
    if not_json:  # photos after --coco's files are taken for more of them
        print(
            f"gardenseg train: {not_json[0]} is not a COCO JSON file: give photos before --coco, or '--' after its files",
            file=sys.stderr,
        )
        return 2
    from ._coco_labels import load_coco, photo_folders, stale_note, trained_classes

    files = {}
    for coco_file in args.coco or ():
        stale = stale_note(Path(coco_file))
        if stale is not None:
            print(f"gardenseg train: {stale}", file=sys.stderr)
            return 2
        files[coco_file] = load_coco(Path(coco_file))
    # a box of a class one file trains is a plant's in every file (trained on, it would be soil)
    trained = set().union(*(trained_classes(coco) for coco in files.values()))
    for coco_file, coco in files.items():
        images = args.images
        if images is None and unlabelled:  # photos given before --coco: its photos, perhaps
            images = [f for f in photo_folders(coco_file) + sorted({p.parent for p in unlabelled}) if f.is_dir()]
        samples += read_coco(coco_file, images, coco=coco, trained=trained)
    for dataset in args.yolo or ():
        samples += read_yolo(dataset, split=args.split)
    used = {Path(photo).resolve() for photo, _, _ in samples}
    unused = [p for p in unlabelled if p.resolve() not in used] if args.coco or args.yolo else []
    if unused:  # said before reading the annotation files otherwise (_painted_samples)
        _say_unlabelled(unused, args, f" and none in {' or '.join([*(args.coco or ()), *(args.yolo or ())])}")
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


def _painted_samples(args, annotated: bool = False) -> tuple[list, list] | None:
    """(photo, label image, classes) for the photos given with label images, and the photos given
    without one; None if none has one, unless ``annotated`` (--coco or --yolo given too: the
    photos without a label image may be theirs)."""
    from ._label_files import label_classes, labelled_photos

    if _missing(args.photos, "train"):
        return None
    pairs, unlabelled = labelled_photos(args.photos, args.labels, args.suffix, recursive=args.recursive)
    where = f"in {args.labels}" if args.labels else "next to each photo"
    if unlabelled and not annotated:
        _say_unlabelled(unlabelled, args)
    if not pairs and not annotated:
        print(
            f"gardenseg train: no photo has a label image: looked {where} for <photo name>{args.suffix}.tif, "
            ".tiff or .png (save each photo's Labels layer under that name; --labels and --suffix say where)",
            file=sys.stderr,
        )
        return None
    # a batch's result (corrected) keeps the classes its instance table names; --class-name names the rest
    samples = [(photo, label_file, label_classes(label_file, name=args.class_name)) for photo, label_file in pairs]
    return samples, unlabelled


def _say_unlabelled(photos: list, args, more: str = "") -> None:
    from ._coco_labels import first_few

    where = f"in {args.labels}" if args.labels else "next to each photo"
    names = first_few([p.name for p in photos])
    print(
        f"gardenseg train: left out {len(photos)} photo(s) with no label image {where}{more}: {names}", file=sys.stderr
    )


def _names(classes) -> set:
    return {classes} if isinstance(classes, str) else set(classes.values())


def cmd_models(args) -> int:
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


def _model_output_options(args) -> dict:
    """What :func:`_model_output_args` parsed, as ``adapt``'s and ``train``'s keywords (with the stage printer)."""
    return {
        "output": args.out,
        "device": args.device,
        "overwrite": args.overwrite,
        "seed": args.seed,
        "progress": _stage_printer(),
    }
