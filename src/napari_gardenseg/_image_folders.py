"""The image files of a folder (and its subfolders): what a batch, ``adapt`` and ``train`` take
from a folder, leaving out hidden files, label images beside their photos and earlier outputs."""

from __future__ import annotations

import os
from pathlib import Path

from ._files import ZARR_METADATA as _ZARR_METADATA  # the files that make a folder a zarr store
from ._image_arrays import ImageError
from ._image_reader import IMAGE_SUFFIXES, OUTPUT_IMAGE_TAILS
from ._label_files import photo_stem


def image_files(folder, *, recursive: bool = False, exclude=()) -> list[Path]:
    """The image files directly in ``folder``, sorted by name; with ``recursive``, then those of
    its subfolders at any depth, folder by folder in name order.

    Image files: the suffixes of :data:`IMAGE_SUFFIXES` (any case) and
    ``*.zarr`` stores; not ``.npy`` files, which :func:`read_image` reads when
    named but which beside photos are side files (Cellpose's ``_seg.npy``). Hidden files are skipped (``.DS_Store``, and macOS's
    ``._IMG_0001.JPG`` copies of a photo's metadata on shared drives). So
    are the label images of photos in the same folder (``a_labels.tif`` and
    ``a_labels_crf.tif`` beside ``a.jpg``: painted for ``gardenseg train``, or
    this plugin's outputs), which are not photos, and a batch's outputs (``a_overlay.png``
    and the label images beside the run record ``a_run.json``). ``recursive`` leaves out
    hidden subfolders and those in ``exclude`` (the output folder). Links named like photos
    that point at nothing (a card or drive not mounted) are left out with a UserWarning.
    Raises NotADirectoryError, and :class:`~napari_gardenseg._image_arrays.ImageError` when
    the folder holds no image file (naming its subfolders when it has some).
    """
    return [path for path, _ in folder_entries(folder, recursive=recursive, exclude=exclude)]


def is_zarr_store(path) -> bool:
    """Whether ``path`` is a zarr store (one image, read as such): a folder named ``*.zarr``, or
    one holding zarr's metadata (a store saved without the suffix), not a folder of photos."""
    path = Path(path)
    return path.is_dir() and (path.suffix.lower() == ".zarr" or any((path / f).is_file() for f in _ZARR_METADATA))


# Folders that file servers and operating systems make inside photo folders: NAS thumbnails and
# recycle bins (Synology @eaDir/#recycle/#snapshot, QNAP @Recycle/@Recently-Snapshot), Windows'
# recycle bin and volume data, ext4's lost+found. Their pictures are copies or deleted files.
_SYSTEM_FOLDERS = frozenset(
    {
        "@eadir",
        "#recycle",
        "#snapshot",
        "@recycle",
        "@recently-snapshot",
        "$recycle.bin",
        "system volume information",
        "lost+found",
    }
)


def folder_entries(folder, *, recursive: bool = False, exclude=()) -> list[tuple[Path, str]]:
    """:func:`image_files` with each file's folder relative to ``folder`` (POSIX, ``""`` for
    ``folder`` itself), which a batch's outputs mirror."""
    from ._run_record import RUN_SUFFIX

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    skipped = {Path(p).expanduser().resolve() for p in exclude}
    entries, subfolders, seen, n_outputs, n_npy, broken = [], [], set(), 0, 0, []
    pending = [folder]
    while pending:
        here = pending.pop(0)
        resolved = here.resolve()
        if resolved in seen or (here != folder and resolved in skipped):  # seen: a link back up the tree
            continue
        seen.add(resolved)
        visible = [c for c in sorted(here.iterdir()) if not c.name.startswith(".")]
        found = [p for p in visible if is_zarr_store(p) or (p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))]
        broken += [p for p in visible if p.is_symlink() and not p.exists() and p.name.lower().endswith(IMAGE_SUFFIXES)]
        # a batch's outputs are named after its run record: <name>_labels.tif etc. beside <name>_run.json
        runs = [c.name[: -len(RUN_SUFFIX)] for c in visible if c.name.endswith(RUN_SUFFIX)]
        outputs = {f"{run}{tail}" for run in runs for tail in OUTPUT_IMAGE_TAILS}
        if here == folder:
            n_npy = sum(c.is_file() and c.name.lower().endswith(".npy") for c in visible)
        stems = {p.stem for p in found}
        photos = [p for p in found if photo_stem(p.stem) not in stems and p.name not in outputs]
        n_outputs += sum(p.name in outputs for p in found)
        relative = here.relative_to(folder).as_posix() if here != folder else ""
        entries += [(p, relative) for p in photos]
        inner = [c for c in visible if c.is_dir() and not is_zarr_store(c) and c.name.lower() not in _SYSTEM_FOLDERS]
        if here == folder:
            subfolders = inner
        if recursive:
            pending = inner + pending  # depth first: a subfolder's files before the next one's
    if broken:  # a photo on a card or drive that is not mounted: said, not silently missing from the results
        import warnings

        names = ", ".join(str(p) for p in broken[:3]) + (f" and {len(broken) - 3} more" if len(broken) > 3 else "")
        warnings.warn(
            f"{len(broken)} link(s) named like photos point at nothing (a drive not mounted?), left out: {names}",
            stacklevel=3,
        )
    if not entries:
        hint = "give the files or a folder that holds them"
        if n_outputs:
            hint = "it holds a batch's outputs (label images and overlays beside run records), not photos: " + hint
        elif subfolders and not recursive:
            names = ", ".join(f"{c.name}/" for c in subfolders[:3]) + (", ..." if len(subfolders) > 3 else "")
            hint = (
                f"its subfolders ({names}) are not searched: give them (e.g. {folder}/*/); "
                "--recursive (`gardenseg segment`, `adapt` and `train`; segment_files(recursive=True)) searches them all"
            )
        if n_npy:  # arrays of any kind (masks, features) are saved so: only those named are read
            hint += f"; its {n_npy} .npy file(s) are read only when given by name (e.g. {folder}/*.npy)"
        raise ImageError(
            f"no image files in the folder {folder} ({', '.join(IMAGE_SUFFIXES[:6])}..., TIFF, HEIC, zarr); {hint}"
        )
    return entries


def expand_folders(items, *, recursive: bool = False, exclude=()) -> list:
    """``items`` (paths or arrays) with every folder that is not a ``.zarr`` store replaced by its
    :func:`image_files` (``recursive`` and ``exclude`` as there)."""
    return [item for item, _ in expand_entries(items, recursive=recursive, exclude=exclude)]


def expand_entries(items, *, recursive: bool = False, exclude=()) -> list[tuple]:
    """:func:`expand_folders` with each item's folder relative to the folder it was found in
    (:func:`folder_entries`; ``""`` for items given themselves)."""
    from ._image_reader import as_path

    out = []
    for item in items:
        item = as_path(item)  # bytes, file://
        path = Path(item).expanduser() if isinstance(item, (str, os.PathLike)) else None
        is_folder = path is not None and path.is_dir() and not is_zarr_store(path)
        out += folder_entries(path, recursive=recursive, exclude=exclude) if is_folder else [(item, "")]
    return out
