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

Here: the flags (:func:`build_parser`) and :func:`main`; the commands themselves are in
:mod:`napari_gardenseg._cli_commands`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from . import __version__
from ._cli_commands import cmd_adapt, cmd_models, cmd_segment, cmd_train
from ._options import DEFAULT_MODEL, DEFAULTS, VEGETATION_MODES
from .crf._params import BACKENDS as CRF_BACKENDS

__all__ = ["main"]


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
        help="drop the network's detections scoring below this; plants found by colour alone are kept "
        "(raised to this score where they score lower) (default: the model's own, the value stored "
        "with it, else 0.5)",
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
        "--tile-size",
        type=_int_or_auto,
        help="segment in tiles of this many pixels, or 'auto' (default: whole image; 'auto' for an image read window "
        "by window, a zarr store or a TIFF or .npy file of a plane over 8192 x 8192: native-pixel tiles where a side "
        "is over 4 times the model's input)",
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
        "the bundled model's shortest side 512, longest at most 1024; native pixels where the image is tiled)",
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
        "--resume",
        action="store_true",
        help=(
            "skip files whose outputs were made with the same model and settings (give it to every command "
            "of several writing into one --out at once: they share the files)"
        ),
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
    s.set_defaults(func=cmd_segment)
    m = sub.add_parser("models", help="list the models and whether their weights are here")
    m.set_defaults(func=cmd_models)
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
    a.set_defaults(func=cmd_adapt)
    t = sub.add_parser(
        "train",
        help="fine-tune a model on photos with painted label images, COCO annotations or a YOLO dataset "
        "(writes a new model)",
    )
    t.add_argument(
        "photos",
        nargs="*",
        help="photos, or folders of them, each with a label image (ids, 0 = background) named "
        "<photo name>_labels.tif, .tiff or .png; photos without one are left out, or with --coco "
        "looked for in its files",
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
        "subfolder, the images/ folder beside its folder, a batch's photo folder, and the folders of "
        "photos given without a label image)",
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
        help="the class of the instances in the label images: of every instance, or where a batch's "
        "<name>_instances.csv beside a label image names the classes of some, of the others (painted "
        "since the batch) (default: the table's classes, else 'plant')",
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
    t.set_defaults(func=cmd_train)
    return p


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


@contextlib.contextmanager
def _warnings_as_lines(command: str):
    """This package's warnings (what a run left out or noticed) printed as ``gardenseg COMMAND:
    message``, the command's own lines, not Python's ``file:line: UserWarning:`` form; other
    libraries' as Python prints them. Only the text changes (``formatwarning``): filters and
    callers that record warnings see them as before."""
    import warnings

    from ._errors import in_package

    formatted = warnings.formatwarning

    def line(message, category, filename, lineno, line=None):
        if not (issubclass(category, UserWarning) and in_package(filename)):
            return formatted(message, category, filename, lineno, line)
        text = str(message)
        return f"gardenseg {command}: {text.removeprefix(command + ': ')}\n"

    warnings.formatwarning = line
    try:
        yield
    finally:
        warnings.formatwarning = formatted


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a batch system's time limit, ``docker stop``, ``kill``) or SIGHUP (the terminal
    closed, the SSH session dropped), handled as Ctrl-C is: the output being written is removed,
    claims are given back, and the resume hint is said. ``args[0]``: the signal's number."""


@contextlib.contextmanager
def _terminate_as_interrupt():
    import signal

    def terminate(signum, frame):
        raise _Terminated(signum)

    old = {}
    for number in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):  # no SIGHUP on Windows
        # a parent that ignores it for us (nohup ignores SIGHUP): kept so
        if number is None or signal.getsignal(number) is signal.SIG_IGN:
            continue
        try:
            old[number] = signal.signal(number, terminate)
        except (ValueError, OSError):  # not the main thread (a command run from a thread of a program)
            break
    try:
        yield
    finally:
        for number, handler in old.items():
            signal.signal(number, handler)


def _quiet_stdout() -> None:
    """Point stdout at the null device, so that Python's flush at exit does not fail on the closed
    pipe once more (the Python docs' "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no file descriptor behind sys.stdout
        pass


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("inputs", "photos"):  # the commands' lists of input files and folders
        if isinstance(getattr(args, name, None), list):
            setattr(args, name, _expand_patterns(getattr(args, name)))
    try:
        with _warnings_as_lines(args.command), _terminate_as_interrupt():
            return args.func(args)
    except BrokenPipeError:  # the reader of the output went away (`| head`): stop, as Unix tools do
        _quiet_stdout()
        done = "; the files finished so far are complete: run the same command with --resume to go on"
        print(f"gardenseg: output closed{done if args.command == 'segment' else ''}", file=sys.stderr)
        return 141  # 128 + SIGPIPE, what a shell reports for a tool a pipe stopped
    except (ValueError, TypeError, ImportError, OSError) as exc:
        from ._errors import is_user_error

        # the user's to act on (a file problem, an option, a missing extra): one line; another
        # library's ValueError or TypeError is a bug, and its traceback is what a report needs
        if not (isinstance(exc, OSError) or is_user_error(exc)):
            raise
        print(f"gardenseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C (or SIGTERM): one line, not torch's traceback
        if args.command == "segment":
            hint = "the files finished so far are complete (outputs and run record): run the same command with --resume to go on"
        else:
            # what is on disk when the interrupt came after the model was saved (adapt --overwrite)
            said = exc.args[0] if exc.args and isinstance(exc.args[0], str) else None
            hint = (said or "no model was saved") if args.command in ("train", "adapt") else ""
        try:
            print(f"\ngardenseg: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
        except OSError:  # the terminal is gone (SIGHUP): nobody to tell, the exit code still says it
            pass
        return 128 + exc.args[0] if isinstance(exc, _Terminated) and exc.args else 130  # as a shell reports it


if __name__ == "__main__":
    raise SystemExit(main())
