"""zarr stores (OME-Zarr and plain arrays) and numpy ``.npy`` files: always or mostly lazy arrays,
whose axes the store states or the API's array rule gives (see :mod:`._image_reader` for the rules)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._image_arrays import ImageError
from ._image_file import LAZY_BYTES, ImageFile, arranged_file, as_dask
from ._pixel_size import ngff_pixel_size

_NGFF_LETTERS = {"t": "T", "time": "T", "c": "C", "channel": "C", "z": "Z", "y": "Y", "x": "X"}


# what a zarr store holds at its top: a zip of one (zarr's ZipStore) has them as its first entries
_ZARR_TOP = (".zarray", ".zgroup", "zarr.json")


def read_zarr(path: Path, axes: str | None, zipped: bool = False) -> ImageFile:
    """The image of a zarr store (a folder, or a zip of one when ``zipped``: zarr's ZipStore,
    read in place). Raises ImageError for a zip that is no zarr store."""
    import zarr

    store, inside = str(path), None
    if zipped:
        import zipfile

        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        # the store's own files at the top (zarr's ZipStore), or in its folder (a file manager's "Compress")
        folders = {n.split("/")[0] for n in names if n.count("/") == 1 and n.split("/")[1] in _ZARR_TOP}
        if not {n for n in names if "/" not in n} & set(_ZARR_TOP):
            if len(folders) != 1:
                raise ImageError(
                    f"{path.name} is a ZIP archive, not a zipped zarr store: unzip it and give the images in it "
                    "(or its folder to segment_files / gardenseg segment)"
                )
            inside = folders.pop()
        store = zarr.storage.ZipStore(path, mode="r")
    z = zarr.open(store, mode="r", path=inside) if inside else zarr.open(store, mode="r")
    file_axes, pixel_size = None, None
    if hasattr(z, "shape"):
        array = z
    else:
        z = _image_group(z)
        attrs = dict(z.attrs)
        multiscales = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
        if multiscales:
            array = z[multiscales[0]["datasets"][0]["path"]]  # OME-Zarr: level 0
            pixel_size = ngff_pixel_size(multiscales[0])  # its axes' units and scale (µm from a microscope)
            names = [a.get("name", "") if isinstance(a, dict) else str(a) for a in multiscales[0].get("axes", [])]
            if names:
                file_axes = "".join(_NGFF_LETTERS.get(n.lower(), "Q") for n in names)
                if _omero_rgb(attrs, file_axes, array.shape):
                    file_axes = file_axes.replace("C", "S")  # the channels are a photo's colours
                    c = file_axes.index("S")
                    if array.shape[c] == 4:  # NGFF knows no alpha: a fourth band (near-infrared) is left out
                        array = as_dask(array)[tuple(slice(0, 3) if i == c else slice(None) for i in range(array.ndim))]
        else:
            keys = sorted(z.array_keys())
            if len(keys) > 1:  # an orthophoto beside its elevation model, an image beside a mask
                colour = [k for k in keys if len(z[k].shape) == 3 and 3 in (z[k].shape[0], z[k].shape[-1])]
                example = (colour or keys)[0]
                how = (
                    f"unzip it and give the one that holds the photo (its folder, e.g. .../{example})"
                    if zipped
                    else f"give the one that holds the photo, e.g. {path}/{example}"
                )
                raise ImageError(
                    f"{path.name} is a zarr group of {len(keys)} arrays ({', '.join(keys[:6])}"
                    f"{' ...' if len(keys) > 6 else ''}): {how}"
                )
            if not keys:
                groups = sorted(z.group_keys())
                raise ImageError(
                    f"{path} is a zarr group with no arrays at its top"
                    + (
                        f" (its groups: {', '.join(groups[:5])}): give the group of the image, e.g. {path}/{groups[0]}"
                        if groups
                        else ""
                    )
                )
            array = z[keys[0]]
    shape = tuple(int(s) for s in array.shape)
    if file_axes is None:
        if len(shape) == 2:
            file_axes = "YX"
        elif len(shape) == 3 and shape[2] in (3, 4) and min(shape[:2]) > 4:
            file_axes = "YXS"
        else:
            file_axes = "Q" * (len(shape) - 2) + "YX"
    image = arranged_file(path, array, "zarr", file_axes, axes)
    image.pixel_size = pixel_size
    return image


def _omero_rgb(attrs: dict, axes: str, shape) -> bool:
    """Whether an OME-Zarr image's channel axis holds a photo's red, green and blue (and alpha):
    3 or 4 channels whose ``omero`` rendering settings (NGFF's "omero" metadata) colour the first
    three red, green and blue, as ome-zarr-py writes an RGB image. NGFF puts channels before y and
    x, so a photo's colours can be stored no other way."""
    omero = attrs.get("omero") or (attrs.get("ome") or {}).get("omero") or {}
    if axes.count("C") != 1 or int(shape[axes.index("C")]) not in (3, 4) or not isinstance(omero, dict):
        return False
    channels = omero.get("channels") or []
    colours = [str(c.get("color", "")).upper().lstrip("#") for c in channels[:3] if isinstance(c, dict)]
    return colours == ["FF0000", "00FF00", "0000FF"]


def _image_group(z):
    """The group of a zarr store that holds its image: bioformats2raw's layout (OME-Zarr written from
    a microscope or slide file, ``bioformats2raw.layout`` in the root's attributes) puts the first
    image in the group ``0``; other groups are their own image."""
    attrs = dict(z.attrs)
    layout = attrs.get("bioformats2raw.layout") or (attrs.get("ome") or {}).get("bioformats2raw.layout")
    if layout is not None and "0" in set(z.group_keys()):
        return z["0"]
    return z


def read_npy(path: Path, axes: str | None, lazy: bool | None) -> ImageFile:
    from numpy.lib import format as npy_format

    try:
        with open(path, "rb") as f:
            npy_format.read_magic(f)
    except ValueError:
        raise ImageError(
            f"{path.name} is not a numpy .npy file (numpy.save writes those); open the image in napari or "
            "an image editor and save it as PNG, TIFF or with numpy.save"
        ) from None
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError:  # numpy's refusal of object arrays: a pickle is never loaded
        raise ImageError(
            f"{path.name} holds Python objects (e.g. a dict of masks and settings, as Cellpose's _seg.npy), not "
            "an image array: save the image itself with numpy.save(path, image), an (H, W) or (H, W, 3) array"
        ) from None
    if array.ndim < 2 or array.dtype.kind not in "biuf":
        raise ImageError(
            f"{path.name} holds an array of {array.dtype} values and shape {array.shape}, not an image: save an (H, W), "
            "(H, W, 3) or (3, H, W) array of bool, integer or float pixels"
        )
    file_axes = _npy_axes(array.shape)
    if lazy is False or (lazy is None and path.stat().st_size <= LAZY_BYTES):
        array = np.array(array)  # read whole, as a small TIFF is: the file is free again
    else:
        import dask.array as da

        array = da.from_array(array, chunks="auto")  # windows read from the memory map
    return arranged_file(path, array, "npy", file_axes, axes)


def _npy_axes(shape) -> str:
    """The axes of a saved array, by the rule arrays passed to the API follow
    (:func:`~napari_gardenseg._image_arrays.image_layout`: (H, W), (H, W, C), (C, H, W));
    more axes are unknown (``Q``), for ``axes`` to name."""
    from ._image_arrays import image_layout

    try:
        return {"hw": "YX", "hwc": "YXS", "chw": "SYX"}[image_layout(shape)]
    except ImageError:
        return "Q" * (len(shape) - 2) + "YX"
