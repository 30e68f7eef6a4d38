"""The outputs of one input file: their names, which files there are, and writing them all or none.

Output names: ``<stem>_labels.tif`` etc. When two inputs of one batch share a
stem (case-insensitively), each of them gets ``<stem>__<6 hex>`` instead,
where the hex digits are the start of the SHA-1 of the input's path relative to
the folder the inputs share: the same batch always gives the same names, also
after its folder is moved.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ._files import atomic_write
from ._image_reader import read_image
from ._run_record import RUN_SUFFIX, sha256_of


def overlay(image, labels, alpha: float = 0.45, rows: int | None = None):
    """RGB picture (a ``PIL.Image.Image``, mode "RGB") of ``labels`` over ``image``: a colour per
    instance, outlines in white.

    Made ``rows`` rows at a time (default: about a million pixels a band) from an
    :class:`~napari_gardenseg._image_source.ImageSource` of ``image`` (the colours of
    :func:`~napari_gardenseg.to_rgb_uint8`), mixed in integers and pasted into the picture: what
    it holds beside Pillow's picture is one band, not a copy of a large photo.
    """
    from PIL import Image

    from ._image_source import ImageSource

    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in 0..1 (the instance colour's share), got {alpha!r}")
    source = image if isinstance(image, ImageSource) else ImageSource(image)
    h, w = labels.shape
    rows = rows or max(1, _OVERLAY_BAND_PIXELS // max(w, 1))
    out = Image.new("RGB", (w, h))
    n = int(labels.max())
    rng = np.random.default_rng(0)
    colours = np.vstack([[0, 0, 0], rng.uniform(40, 255, (n, 3))]).astype(np.uint16)
    weight = round(alpha * 256)  # of the instance's colour, in 256ths
    for y0 in range(0, h, rows):
        y1 = min(y0 + rows, h)
        rgb, band = source.read_uint8((y0, 0, y1, w)), np.asarray(labels[y0:y1])
        inside = band > 0
        if n:
            mixed = rgb[inside].astype(np.uint16)
            mixed *= 256 - weight
            mixed += colours[band[inside]] * np.uint16(weight)
            rgb[inside] = (mixed >> 8).astype(np.uint8)
            # an instance's pixel beside another id (its outline, all round): the rows above and
            # below the band are read from the label image
            above = np.asarray(labels[y0 - 1]) if y0 else band[0]
            below = np.asarray(labels[y1]) if y1 < h else band[-1]
            edge = np.zeros_like(inside)
            edge[1:] |= band[1:] != band[:-1]
            edge[:-1] |= band[:-1] != band[1:]
            edge[0] |= band[0] != above
            edge[-1] |= band[-1] != below
            edge[:, 1:] |= band[:, 1:] != band[:, :-1]
            edge[:, :-1] |= band[:, :-1] != band[:, 1:]
            rgb[edge & inside] = 255
        out.paste(Image.fromarray(rgb), (0, y0))
    return out


# pixels per band of the overlay: its temporaries (the band's colours as uint16, its labels) stay small
_OVERLAY_BAND_PIXELS = 2**20


def _path_tags(paths) -> list[str]:
    """6 hex of the SHA-1 of each path relative to the folder the paths share (POSIX): the same
    after the folder is moved or mounted elsewhere, so a resumed batch finds its outputs."""
    full = [os.path.abspath(os.fspath(p)) for p in paths]
    try:
        root = os.path.commonpath([os.path.dirname(p) for p in full])
        keys = [Path(os.path.relpath(p, root)).as_posix() for p in full]
    except ValueError:  # on different drives (Windows): nothing shared
        keys = full
    return [hashlib.sha1(k.encode("utf-8")).hexdigest()[:6] for k in keys]


def output_names(paths, subfolders=None) -> list[str]:
    """The output name (prefix of every output file, relative to the output folder) of each input,
    in order.

    ``<stem>``, or ``<subfolder>/<stem>`` where ``subfolders`` gives the input's folder
    relative to a folder searched recursively (POSIX; ``""`` for none), so the outputs
    mirror that tree; ``...__<6 hex of the SHA-1 of the path relative to the colliding inputs'
    shared folder>`` for inputs whose names collide within ``paths`` as a file system folding case and Unicode forms sees
    them (``Bäume`` composed and decomposed, ``IMG_1`` and ``img_1``). A stem too long for its
    outputs' names (:data:`_STEM_MAX` bytes) is cut, with ``__<6 hex of the SHA-1 of its name>``.
    """
    import unicodedata

    subfolders = subfolders or [""] * len(paths)
    names = [f"{sub}/{Path(p).stem}" if sub else Path(p).stem for p, sub in zip(paths, subfolders)]
    # as the file systems that fold case (Windows, macOS) and Unicode forms (macOS: "ä" composed or not) see them
    same = [unicodedata.normalize("NFC", n).casefold() for n in names]
    counts = Counter(same)
    out = list(names)
    for key in (k for k, c in counts.items() if c > 1):
        group = [i for i, k in enumerate(same) if k == key]
        for i, tag in zip(group, _path_tags([paths[i] for i in group])):
            out[i] = f"{names[i]}__{tag}"
    for i, name in enumerate(out):  # a stem too long for its outputs' names: cut, and told apart by its path
        folder, _, stem = name.rpartition("/")
        if len(os.fsencode(stem)) > _STEM_MAX:
            cut = os.fsencode(stem)[: _STEM_MAX - 8].decode("utf-8", "ignore")  # a letter cut in two is dropped
            out[i] = f"{folder}/" * bool(folder) + f"{cut}__{_path_tags([paths[i]])[0]}"
    return out


# the longest stem whose outputs' names fit the 255 bytes file systems take (a photo with a world
# file, whose label TIFFs get an .aux.xml, may still be refused: that file alone fails)
_STEM_MAX = 255 - len("_labels_crf.tif")


class InputKind(NamedTuple):
    """What an input's outputs are (:func:`input_kind`): ``big``, a zarr store of one plane or a
    TIFF of one plane over ``_planes.MAX_PLANE_PIXELS``, segmented into a zarr store;
    ``georeferenced``, a big one placed on a map (GeoTIFF tags or sidecars), whose labels are also
    written as tiled TIFFs that GIS software reads; ``sidecars``, the photo's world file or
    .aux.xml georeferencing (:class:`~napari_gardenseg._georeference.SidecarGeoreference`), which its
    label TIFFs get beside them, or None."""

    big: bool = False
    georeferenced: bool = False
    sidecars: Any = None


def input_kind(path, axes: str | None = None) -> InputKind:
    """:class:`InputKind` of an input, from its header (:func:`~napari_gardenseg._image_reader.read_image`
    lazily; a JPEG's or PNG's EXIF only) and the files beside it."""
    from ._image_reader import TIFF_SUFFIXES, kept_sidecars
    from ._planes import MAX_PLANE_PIXELS

    path = Path(path)
    name = path.name.lower()
    zarr_store = name.endswith(".zarr") or path.is_dir()
    if not path.exists():
        return InputKind()
    # a TIFF, zarr store or .npy is read lazily (its header, a memory map): big ones are segmented window by window
    if not (zarr_store or name.endswith((*TIFF_SUFFIXES, ".npy"))):  # the reader's rule, without decoding the photo
        return InputKind(sidecars=kept_sidecars(path)[0])
    try:
        image = read_image(path, axes=axes, lazy=True)
    except Exception:  # noqa: BLE001  (unreadable, or axes unknown: the normal path reports it)
        return InputKind(big=zarr_store)
    if image.is_stack:
        return InputKind(sidecars=image.sidecar_georeference)
    h, w = image.plane_shape
    big = zarr_store or h * w > MAX_PLANE_PIXELS
    placed = bool(image.georeference) or image.sidecar_georeference is not None
    return InputKind(big, big and placed, image.sidecar_georeference)


def output_files(
    name: str,
    *,
    crf: bool = True,
    coco: bool = False,
    write_overlay: bool = True,
    big: bool = False,
    georeferenced: bool = False,
    sidecars=None,
) -> list[str]:
    """The files :func:`process_file` writes for output name ``name`` (the run record last).

    ``big`` inputs (:func:`input_kind`) give one zarr store ``<name>_labels.zarr``
    (arrays ``labels`` and ``refined``) instead of the TIFFs, and no overlay; a
    ``georeferenced`` big one (a GeoTIFF, or a TIFF with a world file) also gets the label
    TIFFs, tiled BigTIFFs with its georeferencing, which GIS software reads (it does not read
    the store's). ``sidecars`` (the photo's world file georeferencing): each label TIFF gets
    its world file and .aux.xml beside it (:func:`~napari_gardenseg._georeference.sidecar_files`).
    """
    from ._georeference import sidecar_files

    tiffs = [f"{name}_labels"] + ([f"{name}_labels_crf"] if crf else [])
    placed = [f for stem in tiffs for f in (f"{stem}.tif", *sidecar_files(stem, sidecars))]
    if big:
        files = [f"{name}_labels.zarr"] + (placed if georeferenced else [])
        files.append(f"{name}_instances.csv")
        return files + ([f"{name}_coco.json"] if coco else []) + [f"{name}{RUN_SUFFIX}"]
    files = list(placed)
    files.append(f"{name}_instances.csv")
    if write_overlay:
        files.append(f"{name}_overlay.png")
    if coco:
        files.append(f"{name}_coco.json")
    return files + [f"{name}{RUN_SUFFIX}"]


def _write_outputs(
    result,
    image,
    path: Path,
    out: Path,
    name: str,
    *,
    coco,
    write_overlay,
    overwrite,
    record=None,
    before_renames=None,
    after_renames=None,
) -> list[str]:
    """Write every output under a temporary name, then rename them all together, the run
    record last (``record``: (its path, a function of the names written and their files'
    SHA-256, {name: hex}, giving its text)).

    A process killed while writing leaves only hidden ``.*.tmp`` files, never some outputs
    under their real names, which a retry would have to refuse; Ctrl-C during the renames
    waits for them to end (:func:`~napari_gardenseg._files.interrupts_held`).
    ``before_renames()``: called when everything is written, just before the old record goes and
    the renames start (raising there renames nothing); ``after_renames(written)``: after the
    record's rename, while Ctrl-C still waits.
    """
    from contextlib import ExitStack

    from ._files import check_target, interrupts_held

    written, digests, folders = [], {}, set()
    staged = getattr(result, "meta", {}).get("staged")
    table = result.table
    coco_json = json.dumps(to_coco_of(result, path)) if coco else None  # before any output gets its name
    with ExitStack() as renames:  # on leaving: each temporary file renamed (on an error: all removed)
        held = renames.enter_context(interrupts_held())  # left last: held from the first rename on
        if after_renames is not None:

            def renamed(exc_type, exc, tb):  # left after every rename, the record's included
                if exc_type is None:
                    after_renames(list(written))
                return False

            renames.push(renamed)
        record_tmp = None if record is None else renames.enter_context(atomic_write(record[0], overwrite, "run record"))

        def put(filename, write, folder=False):
            target = renames.enter_context(atomic_write(out / filename, overwrite, "output", folder=folder))
            write(target)
            written.append(filename)
            if folder:
                folders.add(filename)
            if not folder:  # what the file holds as written: a later change to it is the user's
                digests[filename] = sha256_of(target)

        geo = getattr(image, "georeference", ())  # a GeoTIFF's labels lie on its grid in GIS software too
        sidecars = getattr(image, "sidecar_georeference", None)  # and a world file's, with theirs
        size = getattr(image, "pixel_size", None)  # a scan's: Fiji measures its labels in centimetres
        resolution = size.tiff_resolution() if size is not None else {}
        if staged is not None:  # a big input: the store holds the labels; table and COCO were read from it
            if geo or sidecars is not None:  # a GIS copy beside the store, read from it tile by tile
                import zarr

                store = zarr.open_group(str(staged), mode="r")
                put(f"{name}_labels.tif", lambda t: write_tiled_tiff(t, store["labels"], geo))
                put_sidecars(put, f"{name}_labels", sidecars)
                if "refined" in store:
                    put(f"{name}_labels_crf.tif", lambda t: write_tiled_tiff(t, store["refined"], geo))
                    put_sidecars(put, f"{name}_labels_crf", sidecars)
            put(f"{name}_labels.zarr", lambda t: os.replace(staged, t), folder=True)
        else:
            axes = f"{getattr(image, 'plane_axes', '')}YX"  # a stack's: T, Z, C as the input has them
            put(f"{name}_labels.tif", lambda t: write_label_tiff(t, result.labels, geo, resolution, axes))
            put_sidecars(put, f"{name}_labels", sidecars)
            if result.refined is not None:
                put(
                    f"{name}_labels_crf.tif",
                    lambda t: write_label_tiff(t, result.refined, geo, resolution, axes),
                )
                put_sidecars(put, f"{name}_labels_crf", sidecars)
        put(f"{name}_instances.csv", lambda t: table_as_written(table, image).to_csv(t, index=False))
        if write_overlay and staged is None:
            shown = result.refined if result.refined is not None else result.labels
            put(f"{name}_overlay.png", lambda t: _save_overlay(t, image, shown))
        if coco_json is not None:
            put(f"{name}_coco.json", lambda t: t.write_text(coco_json))
        held.hold()  # from here Ctrl-C waits: the old record goes only with the renames that follow
        if before_renames is not None:
            before_renames()
        if record_tmp is not None:
            record_tmp.write_text(record[1](list(written), digests))
            if overwrite and record[0].exists():
                # an old record must not vouch for outputs being replaced: gone before the renames,
                # not before the writing, which may fail (a full disk) and leave the old outputs its own
                record[0].unlink()

        def check_all(exc_type, exc, tb):
            # left first: every target checked before the first rename, so that a run that cannot
            # rename all its outputs (another run's appeared meanwhile) renames none of them
            if exc_type is None:
                for filename in written:
                    check_target(out / filename, overwrite, "output", folder=filename in folders)
                if record is not None:
                    check_target(record[0], overwrite, "run record")
            return False

        renames.push(check_all)
    return written


def write_label_tiff(
    target, labels: np.ndarray, extratags=(), resolution=None, axes: str | None = None, placement=None
) -> None:
    """``labels`` (``(*stack, H, W)``, integer ids) as a zlib TIFF of grey pages, one per plane, with
    ``extratags`` (the input's GeoTIFF tags) and ``resolution`` (tifffile's ``resolution`` and
    ``resolutionunit`` keywords: :meth:`~napari_gardenseg._pixel_size.PixelSize.tiff_resolution`).
    Photometric minisblack: otherwise tifffile stores a 3- or 4-plane stack as one RGB(A) page,
    which Pillow cannot open and GIS reads as colours. ``axes`` (e.g. ``"TYX"``) names a stack's
    axes in tifffile's shaped description, as tifffile, napari and this plugin read them (a plain
    stack reads as ``QYX``); ImageJ's hyperstack format holds no 32-bit integers. ``placement``: a
    napari layer's scale, translate... (:func:`~napari_gardenseg._label_writer.layer_placement`),
    kept in the same description for this plugin's reader."""
    import tifffile

    metadata = {"axes": axes} if axes is not None and len(axes) == labels.ndim > 2 else {}
    if placement:
        metadata["placement"] = placement
    shaped = {"metadata": metadata} if metadata else {}
    tifffile.imwrite(
        target,
        labels,
        compression="zlib",
        extratags=extratags,
        photometric="minisblack",
        **(resolution or {}),
        **shaped,
    )


def put_sidecars(put, labels_stem: str, sidecars) -> None:
    """Write the world file and .aux.xml of the label TIFF ``<labels_stem>.tif`` with ``put``
    (:func:`_write_outputs`'s), when the photo had them (:mod:`._georeference`)."""
    from ._georeference import sidecar_texts

    if sidecars is not None:
        for filename, text in sidecar_texts(labels_stem, sidecars).items():
            put(filename, lambda t, text=text: t.write_text(text))


def table_as_written(table, image, pixel_size=None):
    """``table`` as its CSV holds it: ``area_refined`` as whole pixels (nullable integers: empty
    without the CRF, not ``1510.0``), and for a georeferenced image ``map_x`` and ``map_y`` after
    ``centroid``: each instance's centroid in the coordinates of a GeoTIFF's CRS or of a world
    file's (:func:`~napari_gardenseg._georeference.with_map_columns`), so a GIS reads the
    instances table as points, and where that CRS is in metres ``area_m2`` and ``area_refined_m2``
    after ``area_refined``, the ground areas (:func:`~napari_gardenseg._georeference.ground_pixel_m2`);
    for an image that states its pixels' physical size (a scan's dpi: :mod:`._pixel_size`), or given
    as ``pixel_size`` (the layer's scale, which wins), ``area_mm2`` and ``area_refined_mm2`` after
    ``area_refined`` (:func:`~napari_gardenseg._pixel_size.with_areas_mm2`)."""
    from ._georeference import with_map_columns
    from ._pixel_size import with_areas_mm2

    table = table.copy()
    if "area_refined" in table:
        table["area_refined"] = table["area_refined"].round().astype("Int64")
    table = with_areas_mm2(table, pixel_size if pixel_size is not None else getattr(image, "pixel_size", None))
    placement = getattr(image, "placement", None)  # an ImageFile's (none without an input file)
    # sidecars beside a GeoTIFF are its PAM file, which GDAL reads before the tags
    return table if placement is None else with_map_columns(table, *placement())


def write_tiled_tiff(target, labels, extratags=(), tile: int = 1024) -> None:
    """Write a (H, W) label array (numpy, zarr: anything sliced into numpy) as a tiled, zlib-compressed
    BigTIFF, one ``tile``² block at a time (memory: one block), with ``extratags`` (tifffile's: the
    input's GeoTIFF tags). Tiles are how GDAL reads a big raster a window at a time."""
    import tifffile

    h, w = (int(n) for n in labels.shape)

    def tiles():
        for y in range(0, h, tile):
            for x in range(0, w, tile):
                block = np.zeros((tile, tile), np.int32)  # edge tiles are padded to the tile size
                part = np.asarray(labels[y : y + tile, x : x + tile])
                block[: part.shape[0], : part.shape[1]] = part
                yield block

    tifffile.imwrite(
        target,
        tiles(),
        shape=(h, w),
        dtype=np.int32,
        tile=(tile, tile),
        compression="zlib",
        bigtiff=True,
        extratags=extratags,
    )


def _save_overlay(target: Path, image, shown) -> None:
    """The overlay PNG of a read file (:class:`~napari_gardenseg._image_file.ImageFile`); a stack gives one frame per plane (APNG)."""
    frames = [overlay(image.plane(ix), shown[ix] if ix else shown) for ix in image.planes()]
    frames[0].save(target, format="PNG", save_all=len(frames) > 1, append_images=frames[1:])


def to_coco_of(result, path: Path) -> dict:
    """COCO JSON of one file's result; a stack (:class:`~napari_gardenseg._stack.StackResult`) gives one
    COCO image per plane, named ``<file>[<plane index>]``, with annotation ids that are the stack's
    label ids (they run on across planes)."""
    from ._export import coco_document, to_coco
    from ._stack import StackResult

    if not isinstance(result, StackResult):
        return to_coco(result, file_name=path.name)
    images, categories, annotations, offset = [], {}, [], 0
    for k, (res, where) in enumerate(zip(result.results, result.planes)):
        part = to_coco(res, image_id=k + 1, file_name=f"{path.name}[{','.join(map(str, where))}]")
        images += part["images"]
        categories.update({c["id"]: c["name"] for c in part["categories"]})
        annotations += [{**a, "id": a["id"] + offset} for a in part["annotations"]]
        offset += len(res)
    return coco_document(images, sorted(categories.items()), annotations)
