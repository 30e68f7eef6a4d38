"""COCO annotation files as training samples: what annotation tools export, read for ``train``.

CVAT, Label Studio, Roboflow, makesense.ai and this plugin's own ``--coco``
export write instance masks as COCO JSON: polygons, or run-length encoded
masks (RLE, plain or compressed). :func:`read_coco` turns each annotated
photo into the ``(photo, labels, classes)`` triple that
:func:`~napari_gardenseg.train` takes, with the category names as classes.
Masks are decoded by pycocotools, the COCO reference implementation.
"""

from __future__ import annotations

import json
import re
import warnings
from numbers import Real
from pathlib import Path

import numpy as np

from ._image_arrays import ImageError
from ._label_files import clean_class_name, ids_dtype

__all__ = ["read_coco", "load_coco"]


def load_coco(path) -> dict:
    """The contents of a COCO instance annotation file: a dict with ``images``, ``annotations`` and
    ``categories`` lists. Raises FileNotFoundError, and ImageError for a file that is not one."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no such COCO annotation file: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        missing = {"images", "annotations", "categories"} - data.keys()
    except (OSError, ValueError, AttributeError) as exc:
        raise ImageError(f"{path.name} is not a COCO instance annotation file: {exc}") from exc
    if missing or not all(isinstance(data[k], list) for k in ("images", "annotations", "categories")):
        raise ImageError(
            f"{path.name} is not a COCO instance annotation file: it needs images, annotations and "
            f"categories lists{' (no ' + ', '.join(sorted(missing)) + ')' if missing else ''}"
        )
    return data


def read_coco(
    path, images=None, *, max_photos: int | None = None, coco: dict | None = None, trained=()
) -> list[tuple[Path, np.ndarray, dict[int, str]]]:
    """Read a COCO instance annotation file as training samples for :func:`~napari_gardenseg.train`.

    Parameters
    ----------
    path : str or Path
        The COCO JSON file (``images``, ``annotations``, ``categories``; the
        format of https://cocodataset.org/#format-data).
    images : str or Path, or a list of them, optional
        The folder of the photos (or folders, looked in in order). Each
        image's ``file_name`` is looked for there as written, then by its base
        name (also without Label Studio's ``<8 hex digits>-`` upload prefix,
        and in another case where only one file has it: names written on
        Windows or macOS). By default the photos are looked for in
        :func:`photo_folders`: beside the JSON file (Roboflow's layout), in its
        ``images/`` subfolder, and in the ``images/`` folder beside its own
        folder (CVAT's: ``annotations/instances_default.json`` and ``images/``);
        for a batch's ``<name>_coco.json`` (``gardenseg segment --coco``), also in
        the folder of the photo its run record ``<name>_run.json`` names.
    max_photos : int, optional
        Refuse a file that annotates more photos than this (ValueError),
        before any mask is decoded.
    coco : dict, optional
        The file's contents as :func:`load_coco` gives them, when already read.
    trained : collection of str, optional
        Class names that other files read with this one train (:func:`trained_classes`):
        a box of one of them is a plant's here too, though this file has no mask of it.

    Returns
    -------
    list of ``(photo, labels, classes)``
        One per annotated photo found, in the file's order: the photo's path,
        an ``(H, W)`` label image (instance ids from 1, 0 background; int16
        where the ids fit, else int32, as ``train`` holds them) of
        the size the file gives (the photo's own where it gives none), and
        ``{instance id: category name}``. Where
        masks overlap, the smaller instance is drawn over the larger one, so a
        small plant on a larger one keeps its pixels.

    Photos that are not found, photos of another size than the file gives
    (resized or replaced after they were annotated: their masks do not fit),
    photos with no annotations (perhaps not yet
    labelled: training on them would teach that their plants are background),
    photos where some plant of a category that has masks in the file has a
    box and no mask (likewise; a category only ever boxed, such as a colour
    card, is not trained and its boxes are ignored),
    crowd annotations (``iscrowd=1``: one region for many objects) and
    instances hidden entirely under others are left out, with a warning
    saying how many. CVAT's exports (Datumaro's writer: every annotation has
    ``attributes``) mark every mask drawn with the brush ``iscrowd=1``; there
    a crowd annotation in RLE is one instance, as drawn.

    Raises
    ------
    FileNotFoundError
        ``path`` or ``images`` does not exist.
    ImageError
        The file is not COCO instance annotations, an annotation names an
        image or category the file does not have or has a mask that cannot be
        read (a polygon of an odd number of values), or no annotated photo was found.
    ValueError
        More annotated photos than ``max_photos``.
    ImportError
        pycocotools is not installed.
    """
    path = Path(path).expanduser()
    stale = stale_note(path)
    if stale is not None:  # shown, not refused: napari opens it to look; `gardenseg train` refuses it
        warnings.warn(stale, stacklevel=2)
    if images is None:
        folders = photo_folders(path)
    else:
        folders = [Path(f).expanduser() for f in ([images] if isinstance(images, (str, Path)) else images)]
        for folder in folders:
            if not folder.is_dir():
                raise FileNotFoundError(f"no such folder of photos: {folder}")
    coco_mask = pycocotools_mask("reading COCO annotations")
    data = load_coco(path) if coco is None else coco
    try:
        # ids as written: whole numbers in COCO, strings in some tools' exports
        entries = _by_id(data["images"], path.name, "images", lambda im: im.get("file_name"))
        categories = {
            k: clean_class_name(c["name"])
            for k, c in _by_id(data["categories"], path.name, "categories", lambda c: c["name"]).items()
        }
        annotations = [a for a in data["annotations"] if isinstance(a, dict)]
    except (KeyError, TypeError) as exc:
        raise ImageError(f"{path.name}: an image or category without an id or name: {exc!r}") from exc

    by_image: dict = {}
    boxes: list = []  # (image id, category id) of the annotations that are a box alone
    crowd = 0
    cvat = bool(annotations) and all(isinstance(a.get("attributes"), dict) for a in annotations)
    for ann in annotations:
        image_id, category_id = _key(ann.get("image_id")), _key(ann.get("category_id"))
        if image_id not in entries:
            raise ImageError(f"{path.name}: annotation {ann.get('id')} is for image {image_id}, which it does not list")
        if category_id not in categories:
            raise ImageError(
                f"{path.name}: annotation {ann.get('id')} has category {category_id}, which it does not list"
            )
        if categories[category_id] is None:
            raise ImageError(
                f"{path.name}: category {category_id} has no name (null or empty): name it, the name is the class"
            )
        brush = cvat and isinstance(ann.get("segmentation"), dict)  # CVAT: a mask, not a crowd
        if _key(ann.get("iscrowd", 0)) and not brush:  # written "0" by some tools: not a crowd
            crowd += 1
            continue
        if ann.get("segmentation"):
            by_image.setdefault(image_id, []).append(ann)
        else:  # a box alone (a detection dataset; Roboflow's and CVAT's rectangles) holds no mask
            boxes.append((image_id, category_id))
    # a box of a category trained here (one with masks in the file) beside masks: trained on, that plant
    # would be taught as background; a category only ever boxed (a colour card, a plot tag) is not trained
    trained_names = set(trained)
    masked = {_key(a["category_id"]) for anns in by_image.values() for a in anns}
    boxed = {i for i, k in boxes if k in masked or categories[k] in trained_names}

    if max_photos is not None and len(by_image) > max_photos:
        raise TooManyPhotos(f"{path.name} annotates {len(by_image)} photos, more than {max_photos}")
    samples, missing, resized, planes, empty, hidden = [], [], [], [], [], 0
    masked_names = {entries[i].get("file_name") for i in by_image}  # a photo listed twice is one photo
    unannotated = sum(1 for i in entries if i not in by_image and entries[i].get("file_name") not in masked_names)
    found = {}  # image id: its photo
    listings: dict = {}
    names = [Path(str(e.get("file_name")).replace("\\", "/")).name for e in entries.values()]
    uploads = any(_UPLOAD_PREFIX_WITH_LETTERS.match(n) for n in names)
    for image_id in by_image:
        name = entries[image_id].get("file_name")
        photo = _find_photo(str(name), folders, listings, uploads) if name else None
        if photo is None and name and _stack_plane(str(name), folders):
            planes.append(str(name))
        elif photo is None:
            missing.append(str(name) if name else f"(image {image_id} has no file_name)")
        else:
            found[image_id] = photo
    boxed_at = {
        found.get(i) or _find_photo(str(entries[i].get("file_name")), folders, listings, uploads) for i in boxed
    }
    boxed_photos = [str(entries[i].get("file_name")) for i in found if found[i] in boxed_at]
    found = {i: photo for i, photo in found.items() if photo not in boxed_at}
    by_image, ambiguous = _one_entry_per_photo(by_image, found, entries)
    for image_id, anns in by_image.items():
        entry, photo = entries[image_id], found[image_id]
        name = entry.get("file_name")
        from ._image_reader import read_image

        read = read_image(photo, lazy=True)
        size = tuple(read.plane_shape)  # upright (EXIF), as the photo layer shows it
        try:
            h, w = int(entry["height"]), int(entry["width"])
        except (KeyError, TypeError, ValueError):  # not written by every tool: the photo's own size
            h, w = size
        if h <= 0 or w <= 0:
            h, w = size
        orientation = read.applied.get("exif_orientation")
        # a tool that annotated the stored pixels of a photo its EXIF orientation turns (their size
        # is the turned one's, swapped): the labels are turned as the photo is read
        turn = orientation is not None and (w, h) == size and (h, w) != size
        if (h, w) != size and not turn:  # resized or replaced after it was annotated: its masks do not fit
            resized.append(f"{name} ({w}x{h} in the file, {size[1]}x{size[0]} on disk)")
            continue
        rles = [
            (_rle(coco_mask, a["segmentation"], h, w, path.name, a.get("id")), categories[_key(a["category_id"])])
            for a in anns
        ]
        # a compressed RLE whose runs overrun its size fails as it is drawn: named there
        where = [f"{path.name}: annotation {a.get('id')}" for a in anns]
        labels, classes, n_hidden = draw_instances(coco_mask, rles, (h, w), where)
        if turn:
            labels = turn_upright(labels, orientation)
        if classes:
            hidden += n_hidden
            samples.append((photo, labels, classes))
        else:  # every mask decodes to no pixel: a polygon of one or two clicks, or of no area
            empty.append(name)

    left_out = []
    if missing:
        left_out.append(f"{len(missing)} photo(s) not found in {', '.join(map(str, folders))}: {first_few(missing)}")
    if planes:
        left_out.append(
            f"{len(planes)} plane(s) of stacks ({first_few(planes)}: this plugin's COCO of a stack names each "
            "plane file[index]); save each plane as its own image to train on it"
        )
    if resized:
        left_out.append(
            f"{len(resized)} photo(s) of another size than the file gives (resized or replaced after they were "
            f"annotated): {first_few(resized)}"
        )
    if ambiguous:
        left_out.append(
            f"{len(ambiguous)} photo(s) that several file names lead to, not told apart (by their base name): "
            f"{first_few(ambiguous)}; give the folder that holds them as they are named"
        )
    if boxed_photos:
        left_out.append(
            f"{len(boxed_photos)} photo(s) where some plants have a box and no mask (trained on, their pixels would "
            f"be taught as background; draw their outlines): {first_few(boxed_photos)}"
        )
    if unannotated:
        left_out.append(f"{unannotated} photo(s) with no mask annotations")
    if empty:
        left_out.append(all_empty(empty))
    if crowd:
        left_out.append(f"{crowd} crowd annotation(s)")
    if not samples:  # what was left out is why: in the error, where it is read
        raise ImageError(
            f"{path.name}: no annotated photo was found"
            + (f"; left out {'; '.join(left_out)}" if left_out else "")
            + ("; give the photos' folder" if missing else "")
        )
    warn_left_out(path.name, left_out, hidden)
    return samples


def turn_upright(labels: np.ndarray, orientation: int) -> np.ndarray:
    """``labels`` turned as the reader turns a photo of that EXIF orientation upright (Pillow's
    ``ImageOps.exif_transpose``, given the orientation)."""
    from PIL import Image, ImageOps

    image = Image.fromarray(labels.astype(np.int32))
    image.getexif()[0x0112] = orientation
    return np.asarray(ImageOps.exif_transpose(image)).astype(labels.dtype)


class TooManyPhotos(ValueError):
    """A dataset with more annotated photos than ``max_photos`` (what napari should open at once)."""


def pycocotools_mask(what: str):
    """pycocotools' ``mask`` module; ImportError naming the extra that installs it."""
    try:
        from pycocotools import mask
    except ImportError as exc:
        raise ImportError(f'{what} needs pycocotools: pip install "napari-gardenseg[coco]"') from exc
    import warnings

    # pycocotools (2.0.11 and before) passes copy=False to NumPy 2's __array__ on every decode: a
    # DeprecationWarning per mask in napari's console that says nothing to a user of this plugin
    warnings.filterwarnings(
        "ignore", message="__array__ implementation doesn't accept a copy keyword", module="pycocotools"
    )
    return mask


def draw_instances(coco_mask, rles, shape, where=None) -> tuple[np.ndarray, dict[int, str], int]:
    """(labels, {instance id: class name}, instances hidden) from ``(compressed RLE, class name)`` pairs.

    ``labels`` is a ``shape`` image of ids 1..n, int16 where they fit, else int32
    (:func:`ids_dtype`: what training holds). Where masks overlap the
    smaller is drawn over the larger, so a small plant on a larger one keeps
    its pixels; an empty mask gets no id, nor does one left with no pixel
    under others (both counted as hidden). Encoded masks are small: each is
    decoded only while it is drawn, and drawn inside its box. ``where``: what
    each mask is, for the message of :class:`ImageError` raised for one that
    pycocotools cannot decode (a compressed RLE whose runs overrun its size).
    """
    from skimage.segmentation import relabel_sequential

    labels, classes = np.zeros(shape, ids_dtype(len(rles))), {}
    if not rles:
        return labels, classes, 0
    encoded = [r for r, _ in rles]
    # one by one: pycocotools' area() of a list counts in uint8 (overflows past 255 masks)
    areas = np.array([int(coco_mask.area(r)) for r in encoded], dtype=np.int64)
    boxes = np.array([coco_mask.toBbox(r) for r in encoded], dtype=float).reshape(-1, 4)  # x, y, width, height
    for i in np.argsort(-areas, kind="stable"):  # largest first: smaller on top
        if areas[i] == 0:
            continue
        try:
            mask = coco_mask.decode(encoded[i])
        except (TypeError, ValueError) as exc:
            what = where[i] if where is not None else f"mask {i + 1}"
            raise ImageError(f"{what} has a segmentation pycocotools cannot read: {exc}") from exc
        x, y, bw, bh = boxes[i]
        y0, x0 = int(y), int(x)
        window = (slice(y0, int(np.ceil(y + bh))), slice(x0, int(np.ceil(x + bw))))
        k = len(classes) + 1
        labels[window][mask[window].astype(bool)] = k  # the box alone: not the whole frame again
        classes[k] = rles[i][1]
    labels, forward, _ = relabel_sequential(labels)  # ids 1..n again once hidden instances are gone
    kept = np.asarray(forward[np.arange(len(classes) + 1)])  # every id's new one, looked up once
    return (
        labels,
        {int(kept[k]): name for k, name in classes.items() if kept[k] > 0},
        len(rles) - int(np.count_nonzero(kept[1:])),
    )


def all_empty(names: list[str]) -> str:
    """What a reader says of the photos ``names`` left out because every mask of theirs is empty."""
    return f"{len(names)} photo(s) whose masks are all empty (polygons of under 3 points, or of no area): {first_few(names)}"


def first_few(names: list[str]) -> str:
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


def warn_left_out(file_name: str, left_out: list[str], hidden: int = 0) -> None:
    """One warning saying what a reader of annotations left out, if anything (``hidden``: instances
    hidden under others, see :func:`draw_instances`)."""
    if hidden:
        left_out = [*left_out, f"{hidden} instance(s) with no pixel (empty, or hidden under others)"]
    if left_out:
        warnings.warn(f"{file_name}: left out " + "; ".join(left_out), stacklevel=3)


def _key(value):
    """An id as a dict key: 3, 3.0 and "3" are one id; other strings are themselves."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _stack_plane(file_name: str, folders: list[Path]) -> bool:
    """Whether ``file_name`` is ``<file>[<indices>]`` (a plane of a stack, as this plugin's batch
    writes a stack's COCO images) and that file is there."""
    base, bracket, rest = file_name.rpartition("[")
    return bool(bracket) and rest.endswith("]") and _find_photo(base, folders) is not None


def _by_id(items, file: str, what: str, name) -> dict:
    """``{id: item}`` of a COCO file's images or categories; ImageError naming both when two share
    an id (two exports merged): their annotations could not be told apart."""
    out = {}
    for item in items:
        key = _key(item["id"])
        if key in out and name(out[key]) != name(item):  # the same one listed twice is one
            raise ImageError(
                f"{file}: {what} {name(out[key])!r} and {name(item)!r} share the id {key}, so their annotations "
                "cannot be told apart (two exports merged?): give each its own id"
            )
        out[key] = item
    return out


def _one_entry_per_photo(by_image: dict, found: dict, entries: dict) -> tuple[dict, list]:
    """``by_image`` with the annotations of image ids that name one photo file under one name
    gathered under the first id (a photo listed twice: each entry's plants would be the other's
    soil); ids whose different file names lead to one file (``cam1/IMG_1.jpg`` and
    ``cam2/IMG_1.jpg`` found by base name) left out, and their names."""
    ids_of: dict = {}
    for image_id in by_image:
        if image_id in found:
            ids_of.setdefault(found[image_id].resolve(), []).append(image_id)
    merged, ambiguous = {}, []
    for ids in ids_of.values():
        names = sorted({str(entries[i].get("file_name")) for i in ids})
        if len(names) > 1:
            ambiguous.append(" and ".join(names))
            continue
        merged[ids[0]] = [a for i in ids for a in by_image[i]]
    return merged, ambiguous


def stale_note(path: Path) -> str | None:
    """Why a batch's ``<name>_coco.json`` no longer holds its labels, when its label image was
    corrected since (its run record lists it under ``stale``), with how to train on the
    corrections; else None."""
    from ._run_record import read_run_record

    if not path.name.endswith("_coco.json"):
        return None
    name = path.name[: -len("_coco.json")]
    record = read_run_record(path.parent, name)
    stale = record.get("stale") if isinstance(record, dict) else None
    label = next((v for k, v in stale.items() if Path(k).name == path.name), None) if isinstance(stale, dict) else None
    if not isinstance(label, str):
        return None
    suffix = Path(label).stem.removeprefix(name)  # "_labels_crf"
    return (
        f"{path.name} holds the batch's masks from before {label} was corrected: train on the corrected "
        f"labels instead, giving the photos with --labels {path.parent} --suffix {suffix}, and --class-name "
        "NAME for plants painted since the batch (gs.train: the photo with that label file; gs.to_coco(labels, features=...) makes COCO JSON of them)"
    )


def trained_classes(coco: dict) -> set[str]:
    """The names of the categories of a COCO file's contents (:func:`load_coco`) that have a mask
    in it: what training on it teaches, for :func:`read_coco`'s ``trained`` when several files
    are read together."""
    masked = {_key(a.get("category_id")) for a in coco["annotations"] if isinstance(a, dict) and a.get("segmentation")}
    return {
        clean_class_name(c.get("name"))
        for c in coco["categories"]
        if isinstance(c, dict) and _key(c.get("id")) in masked and clean_class_name(c.get("name"))
    }


def photo_folders(path) -> list[Path]:
    """Where :func:`read_coco` looks for the photos of the COCO file ``path`` by default: beside it
    (Roboflow's layout), its ``images/`` subfolder, the ``images/`` folder beside its own folder
    (CVAT's: ``annotations/instances_default.json`` and ``images/``), and for a batch's
    ``<name>_coco.json`` the folder of the photo its run record ``<name>_run.json`` names."""
    path = Path(path).expanduser()
    # once each (a file in the working folder: its parent's parent is the same folder)
    folders = list(dict.fromkeys([path.parent, path.parent / "images", path.parent.parent / "images"]))
    return folders + _batch_photo_folder(path)


def _batch_photo_folder(path: Path) -> list[Path]:
    """[the folder of the photo a batch's run record beside ``path`` names], for ``<name>_coco.json``
    (a batch writes its outputs into another folder than its photos'); else []."""
    from ._run_record import read_run_record

    if not path.name.endswith("_coco.json"):
        return []
    record = read_run_record(path.parent, path.name[: -len("_coco.json")])
    given = record.get("input") if isinstance(record, dict) else None
    photo = given.get("path") if isinstance(given, dict) else None
    return [Path(photo).parent] if isinstance(photo, str) and Path(photo).parent.is_dir() else []


# Label Studio stores each upload as "<8 hex digits>-<the photo's name>" and exports that name. A
# date (20240612-bed1.jpg) is 8 digits too, as are 2% of the uploads' prefixes: digits alone are
# taken for a prefix only in a file whose other names show hex letters in theirs (Label Studio's)
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-(.+)$")
_UPLOAD_PREFIX_WITH_LETTERS = re.compile(r"^(?=[0-9]*[a-f])[0-9a-f]{8}-(.+)$")


def _find_photo(file_name: str, folders: list[Path], listings: dict | None = None, uploads: bool = False):
    """The photo (Path, or None) a COCO ``file_name`` names: as written or by its base name in the
    first of ``folders`` that has it; failing that, by the name Label Studio's upload prefix hides
    (``uploads``: the file is Label Studio's, so a prefix of digits alone is one too); then, for a
    file written on a file system that ignores case (Windows, macOS), by its name in another case
    where one file of the folder has it. ``listings`` caches each folder's names by their
    case-folded form."""
    name = Path(file_name.replace("\\", "/"))  # written on Windows
    if name.is_absolute() and name.is_file():
        return name
    upload = (_UPLOAD_PREFIX if uploads else _UPLOAD_PREFIX_WITH_LETTERS).match(name.name)
    bases = [name.name] + ([upload.group(1)] if upload else [])
    for names in [(name, bases[0]), *[(b,) for b in bases[1:]]]:
        for folder in folders:
            for candidate in names:
                if (folder / candidate).is_file():
                    return folder / candidate
    listings = {} if listings is None else listings
    for folder in folders:
        if folder not in listings:
            by_case: dict = {}
            if folder.is_dir():
                for entry in folder.iterdir():
                    by_case.setdefault(entry.name.casefold(), []).append(entry)
            listings[folder] = by_case
        for base in bases:
            same = listings[folder].get(base.casefold(), [])
            if len(same) == 1 and same[0].is_file():
                return same[0]
    return None


def _is_point(value) -> bool:
    """Whether ``value`` is one ``[x, y]`` point."""
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, Real) for v in value)


def _rings(segmentation: list, file: str, ann_id) -> list:
    """A polygon segmentation's rings, each flat ``[x0, y0, x1, y1, ...]`` as pycocotools takes them.

    Read as COCO writes it (``[[x0, y0, ...], ...]``), and as some converters do: one ring un-nested
    (``[x0, y0, ...]``, roboflow/supervision #205) or rings of ``[x, y]`` pairs (labelme's points,
    numpy's ``tolist()``; each pair alone would be a ring of one point, and the plant drawn empty,
    taught as soil). Raises ImageError naming the annotation for a ring of an odd number of values,
    6 or more (a corrupt export: pycocotools would drop its last value and draw another outline;
    shorter rings enclose nothing and are dropped), and for rings nested deeper.
    """
    if all(isinstance(v, Real) for v in segmentation) or all(_is_point(p) for p in segmentation):
        segmentation = [segmentation]  # one ring
    rings = [
        [v for point in ring for v in point] if isinstance(ring, list) and all(_is_point(p) for p in ring) else ring
        for ring in segmentation
    ]
    for ring in rings:
        if isinstance(ring, list) and any(isinstance(v, (list, tuple, dict)) for v in ring):
            raise ImageError(  # nested once more: each ring would be dropped as less than 3 points, unsaid
                f"{file}: annotation {ann_id} has a polygon nested deeper than COCO's [[x0, y0, x1, y1, ...], ...]: "
                "write each ring as a list of numbers"
            )
        if isinstance(ring, list) and len(ring) % 2 and len(ring) >= 6:  # shorter ones enclose nothing: dropped
            raise ImageError(
                f"{file}: annotation {ann_id} has a polygon of {len(ring)} values, an odd number: a point is an x "
                "and a y, so a value is missing (a corrupt export?); export the annotations again or mend that one"
            )
    return rings


def _rle(coco_mask, segmentation, h: int, w: int, file: str, ann_id) -> dict:
    """One annotation's mask as compressed RLE: from polygons (:func:`_rings`), plain RLE or
    compressed RLE. Raises ImageError naming the annotation for one that cannot be read."""
    if isinstance(segmentation, list):  # polygons: [x0, y0, x1, y1, ...] each
        segmentation = _rings(segmentation, file, ann_id)
    try:
        if isinstance(segmentation, list):
            # fewer than 3 points enclose nothing; an empty list encodes an empty mask
            polygons = [p for p in segmentation if len(p) >= 6] or [[0, 0, 0, 0, 0, 0]]
            rle = coco_mask.merge(coco_mask.frPyObjects(polygons, h, w))
        elif isinstance(segmentation.get("counts"), list):  # plain RLE
            runs, (rh, rw) = segmentation["counts"], segmentation["size"]
            if sum(int(v) for v in runs) != int(rh) * int(rw):  # CVAT has written such (its issue 9460)
                raise ValueError(f"its runs cover {sum(int(v) for v in runs)} pixels, its size {rw}x{rh} has {rh * rw}")
            rle = coco_mask.frPyObjects(segmentation, *segmentation["size"])
        else:  # compressed RLE
            rle = dict(segmentation)
            if isinstance(rle["counts"], str):
                rle["counts"] = rle["counts"].encode("ascii")
        size = [int(v) for v in rle["size"]]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ImageError(f"{file}: annotation {ann_id} has a segmentation pycocotools cannot read: {exc}") from exc
    if size != [h, w]:
        raise ImageError(f"{file}: annotation {ann_id}'s mask is {size[1]}x{size[0]} pixels, its image {w}x{h}")
    return rle
