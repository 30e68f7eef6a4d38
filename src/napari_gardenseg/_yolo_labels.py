"""YOLO segmentation datasets as training samples: what Ultralytics and Roboflow's "YOLOv8" export hold.

A dataset is a YAML file (``data.yaml``) naming the classes and the folders of
its splits' photos; each photo ``…/images/…/a.jpg`` has its labels in
``…/labels/…/a.txt``, one instance per line: the class number, then the
polygon's x y pairs as fractions of the photo's width and height
(https://docs.ultralytics.com/datasets/segment/). :func:`read_yolo` turns
each labelled photo into the ``(photo, labels, classes)`` triple that
:func:`~napari_gardenseg.train` takes. Polygons are drawn by pycocotools,
as the COCO reader's are, and overlaps resolved the same way.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ._coco_labels import TooManyPhotos, all_empty, draw_instances, first_few, pycocotools_mask, warn_left_out
from ._image_arrays import ImageError
from ._image_folders import image_files
from ._image_reader import IMAGE_SUFFIXES, read_image

__all__ = ["read_yolo", "load_dataset"]

SPLITS = ("train", "val", "test")


def read_yolo(path, *, split: str = "train", max_photos: int | None = None, dataset: dict | None = None):
    """Read a YOLO segmentation dataset as training samples for :func:`~napari_gardenseg.train`.

    Parameters
    ----------
    path : str or Path
        The dataset's YAML file (``names``: the classes, a list or
        ``{number: name}``; ``train``/``val``/``test``: a folder of photos, a
        text file listing them, or a list of these; ``path``: the folder they
        are relative to, else the YAML's own; a relative ``path`` that is not
        there is tried from the working folder, then the YAML's folder itself
        stands for it), or a folder holding one (``data.yaml`` first). A folder
        without a YAML file is read too: its photos in ``images/`` if it has
        one, else in the folder itself, its classes from ``classes.txt`` (line
        n names class n; LabelImg, Label Studio), else named by number
        (``"class 0"``).
    split : str
        The split to read (``"train"``, ``"val"``, ``"test"``), or ``"all"``
        for every split the file lists. Ignored for a folder of photos.
    max_photos : int, optional
        Refuse a dataset of more photos than this (ValueError) before reading any.
    dataset : dict, optional
        The YAML file's contents as :func:`load_dataset` gives them, when already read.

    Returns
    -------
    list of ``(photo, labels, classes)``
        One per labelled photo, sorted by path: the photo's path, an ``(H, W)``
        label image (instance ids from 1, 0 background; int16 where the ids
        fit, else int32, as ``train`` holds them) of the photo's
        size (after its EXIF orientation, as Ultralytics reads it), and
        ``{instance id: class name}``. Where polygons overlap, the smaller
        instance is drawn over the larger.

    Photos without a label file or with an empty one (background photos to
    YOLO, perhaps not yet labelled here: training on them would teach that
    their plants are background), lines that hold a box and no polygon
    (a detection dataset), photos where some plant of a class that has polygons
    in the dataset has only a box (its pixels would be taught as background;
    a class only ever boxed, such as a colour card, is not trained and its
    boxes are ignored), and instances hidden under others are left out, with a
    warning saying how many.

    Raises
    ------
    FileNotFoundError
        ``path`` or a folder the YAML file names does not exist.
    ImageError
        The YAML file is not a dataset's (no ``names``, or not the split asked
        for), a label line is not a class number followed by coordinates, a
        class number has no name, or no labelled photo was found.
    ValueError
        More photos than ``max_photos``, or an unknown ``split``.
    ImportError
        pycocotools is not installed.
    """
    if split != "all" and split not in SPLITS:
        raise ValueError(f"split must be 'train', 'val', 'test' or 'all', got {split!r}")
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such YOLO dataset: {path}")
    coco_mask = pycocotools_mask("reading YOLO labels")
    yaml_file = _dataset_file(path)
    if yaml_file is None:
        names, photos = _folder_dataset(path)
    else:
        data = load_dataset(yaml_file) if dataset is None else dataset
        names, photos = _class_names(data), _split_photos(data, yaml_file, split)
    if max_photos is not None and len(photos) > max_photos:
        raise TooManyPhotos(f"{path.name} holds {len(photos)} photos, more than {max_photos}")

    samples, unlabelled, boxed, empty, boxes, hidden = [], [], [], [], 0, 0
    lines_of = [_label_lines(_label_file(photo), names) for photo in photos]
    # a box of a class trained here (one with polygons in the dataset) beside polygons: trained on, that
    # plant would be taught as background; a class only ever boxed (a colour card, a plot tag) is not trained
    trained = {k for lines in lines_of for k, xy in lines if xy is not None}
    for photo, lines in zip(photos, lines_of, strict=True):
        polygons = [(k, xy) for k, xy in lines if xy is not None]
        if not polygons:
            unlabelled.append(photo.name)
            boxes += len(lines)
            continue
        if any(xy is None and k in trained for k, xy in lines):
            boxed.append(photo.name)
            continue
        h, w = read_image(photo, lazy=True).plane_shape
        rles = []
        for k, xy in polygons:
            pixels = np.clip(xy, 0.0, 1.0) * (w, h)
            rles.append(
                (coco_mask.merge(coco_mask.frPyObjects([pixels.ravel().tolist()], h, w)), names.get(k, f"class {k}"))
            )
        labels, classes, n_hidden = draw_instances(coco_mask, rles, (h, w))
        if classes:
            hidden += n_hidden
            samples.append((photo, labels, classes))
        else:  # every polygon of one or two points, or of no area
            empty.append(photo.name)

    left_out = []
    if unlabelled:
        left_out.append(f"{len(unlabelled)} photo(s) with no polygon labels: {first_few(unlabelled)}")
    if boxed:
        left_out.append(
            f"{len(boxed)} photo(s) where some plants have a box and no polygon (trained on, their pixels would "
            f"be taught as background; draw their outlines): {first_few(boxed)}"
        )
    if boxes:
        left_out.append(f"{boxes} box label(s) without a polygon (a detection dataset holds no masks)")
    if empty:
        left_out.append(all_empty(empty))
    if not samples:
        if boxed:
            why = "each photo with polygons has plants with only a box too: draw their outlines"
        elif boxes:
            why = "its label files hold boxes: a detection dataset; train needs a segmentation dataset's polygons"
        else:
            why = "looked for <labels folder>/<photo name>.txt, the images/ folder's twin labels/, or beside the photo"
        if empty:  # said whatever else is
            why = f"{why}; and {all_empty(empty)}" if boxed or boxes else all_empty(empty)
        raise ImageError(f"{path.name}: no photo has polygon labels ({why})")
    warn_left_out(path.name, left_out, hidden)
    return samples


def _folder_dataset(path: Path) -> tuple[dict[int, str], list[Path]]:
    """Classes and photos of a dataset folder without a YAML file, as LabelImg and Label Studio's
    "YOLO" export write it: ``classes.txt`` (one name per line, line n is class n) and the photos
    in ``images/`` (with ``labels/`` beside it) or in the folder itself."""
    names = {}
    for classes in (path / "classes.txt", path / "labels" / "classes.txt"):
        if classes.is_file():
            lines = [ln.strip() for ln in classes.read_text(encoding="utf-8-sig").splitlines()]
            names = {k: name for k, name in enumerate(lines) if name}
            break
    photos = image_files(path / "images", recursive=True) if (path / "images").is_dir() else image_files(path)
    return names, photos


def _dataset_file(path: Path) -> Path | None:
    if path.is_file():
        return path
    for candidate in (path / "data.yaml", *sorted(path.glob("*.yaml")), *sorted(path.glob("*.yml"))):
        if candidate.is_file():
            return candidate
    return None


def load_dataset(yaml_file) -> dict:
    """The contents of a YOLO dataset's YAML file: a mapping with the classes (``names``, a list or
    ``{number: name}``). Raises FileNotFoundError, and ImageError for a file that is not one."""
    import yaml

    yaml_file = Path(yaml_file).expanduser()
    if not yaml_file.is_file():
        raise FileNotFoundError(f"no such YOLO dataset file: {yaml_file}")
    try:
        # utf-8-sig: a file saved by a Windows editor may start with a byte-order mark
        data = yaml.safe_load(yaml_file.read_text(encoding="utf-8-sig"))
        _class_names(data)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError) as exc:
        raise ImageError(f"{yaml_file.name} is not a YOLO dataset file (it needs names: the classes): {exc!r}") from exc
    return data


def _class_names(data: dict) -> dict[int, str]:
    from ._label_files import clean_class_name

    names = data["names"]
    pairs = enumerate(names) if isinstance(names, list) else dict(names).items()
    # as COCO's: composed, without outer spaces; a class with no name is numbered, not called "None"
    return {int(k): clean_class_name(v) or f"class {int(k)}" for k, v in pairs}


def _split_photos(data: dict, yaml_file: Path, split: str) -> list[Path]:
    """The photos of ``split`` (or of every split, ``"all"``) that a dataset's YAML file lists."""
    splits = SPLITS if split == "all" else (split,)
    listed = [s for s in splits if data.get(s)]
    if not listed:
        raise ImageError(f"{yaml_file.name} lists no {split} photos: it has no {' or '.join(splits)} entry")
    root = Path(data["path"]).expanduser() if data.get("path") else yaml_file.parent
    roots = [root]
    if data.get("path") and not root.is_absolute():
        # Ultralytics takes a relative path (its own "../datasets/coco8") from its datasets folder, which
        # we do not know: from the YAML's folder, then the working folder, then the YAML's folder itself
        tried = (yaml_file.parent / root, Path.cwd() / root, yaml_file.parent)
        roots = [r for r in tried if r.is_dir()] or [yaml_file.parent / root]
    elif data.get("path") and not root.is_dir():
        # an absolute path of the machine the dataset was made on (Colab's /content/datasets/...),
        # the dataset copied since: its splits beside the YAML file, as Ultralytics' exports lay them
        roots = [yaml_file.parent]
    photos: set[Path] = set()
    absent = []
    for s in listed:
        for entry in data[s] if isinstance(data[s], list) else [data[s]]:
            try:
                photos.update(_entry_photos(roots, str(entry), yaml_file.name))
            except FileNotFoundError as exc:
                if split != "all":
                    raise
                absent.append((s, exc))  # Roboflow lists a test split it did not export
    if absent and not photos:
        raise absent[0][1]
    if absent:
        warnings.warn(
            f"{yaml_file.name}: left out the {' and '.join(s for s, _ in absent)} split(s) it lists, which are not "
            f"there: {absent[0][1]}",
            stacklevel=3,
        )
    return sorted(photos)


def _entry_photos(roots: list[Path], entry: str, file_name: str) -> list[Path]:
    # Roboflow writes "../train/images" for a folder beside the YAML file: Ultralytics then drops the "../"
    for candidate in (c for root in roots for c in (root / entry, root / entry.removeprefix("../"))):
        if candidate.is_dir():  # with its subfolders, as Ultralytics reads a split (labels/ mirrors them)
            return image_files(candidate, recursive=True)
        if candidate.is_file() and candidate.suffix.lower() == ".txt":  # a list of photos, one per line
            lines = [ln.strip() for ln in candidate.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
            return [p if p.is_absolute() else (candidate.parent / p) for p in map(Path, lines)]
        if candidate.is_file() and candidate.name.lower().endswith(IMAGE_SUFFIXES):
            return [candidate]
    raise FileNotFoundError(
        f"{file_name} names {entry}, which is not a folder or list of photos under {' or '.join(map(str, roots))}"
    )


def _label_file(photo: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder of the photo's path becomes ``labels``; else beside it."""
    parts = photo.parts
    if "images" in parts[:-1]:
        i = len(parts) - 2 - parts[:-1][::-1].index("images")
        twin = Path(*parts[:i], "labels", *parts[i + 1 : -1], photo.stem + ".txt")
        if twin.is_file():
            return twin
    return photo.with_suffix(".txt")


def _label_lines(label_file: Path, names: dict[int, str]) -> list[tuple[int, np.ndarray | None]]:
    """(class number, (n, 2) polygon in fractions, or None for a box) per line of a label file."""
    if not label_file.is_file():
        return []
    out = []
    for number, line in enumerate(label_file.read_text(encoding="utf-8-sig").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            # a whole number written as a float ("1.0", numpy.savetxt's "1.000e+00") is a class
            # number too, as Ultralytics reads it
            k, values = float(fields[0]), np.array(fields[1:], np.float64)
            if not k.is_integer():
                raise ValueError(k)
            k = int(k)
        except ValueError:
            values = None
        if values is None or len(values) < 4 or (len(values) > 4 and len(values) % 2) or not np.isfinite(values).all():
            raise ImageError(
                f"{label_file.name}, line {number}: expected a class number and then x y pairs "
                f"(a polygon in fractions of the photo's size), got {line.strip()[:60]!r}"
            )
        if names and k not in names:
            raise ImageError(f"{label_file.name}, line {number}: class {k} has no name in the dataset file")
        if values.max() > 1.01 or values.min() < -0.01:  # clipped to the photo's edge, nothing would be left
            raise ImageError(
                f"{label_file.name}, line {number}: coordinates outside 0..1 ({values.min():g} to {values.max():g}): "
                "YOLO labels are fractions of the photo's width and height, not pixels"
            )
        out.append((k, None if len(values) == 4 else values.reshape(-1, 2)))
    return out
