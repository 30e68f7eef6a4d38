"""TIFF files read with tifffile (TIFF, BigTIFF, OME-TIFF, ImageJ hyperstacks, GeoTIFF): axes as the
file states them, alpha only where the file marks it, GDAL's nodata and transparency mask as black,
MINISWHITE, palettes and bit depths converted; colour spaces Pillow knows (CMYK, YCbCr, Lab) go
through :func:`~napari_gardenseg._pillow_reader.read_pillow` (see :mod:`._image_reader` for the rules)."""

from __future__ import annotations

import logging
import struct
import warnings
from pathlib import Path

import numpy as np

from ._georeference import geotiff_note, geotiff_tags
from ._image_arrays import ImageError, alpha_used
from ._image_file import LAZY_BYTES, ImageFile, arrange_axes, as_dask, damaged_error, lazy_or_numpy, truncated_error
from ._pillow_reader import read_pillow
from ._pixel_size import tiff_pixel_size

# TIFF ExtraSamples values that say a sample is opacity (associated, unassociated alpha)
_ALPHA = (1, 2)

# TIFF colour spaces that Pillow converts and tifffile hands out raw
_PILLOW_PHOTOMETRIC = ("SEPARATED", "YCBCR", "CIELAB", "ICCLAB", "ITULAB")


# the run record's note of a TIFF Orientation tag other than 1: said, so that a picture that shows
# turned in a viewer that applies it has its reason
_ORIENTATION_NOTE = "{}: not applied, as GDAL does not (the map grid stays the stored pixels')"


def read_tiff(path: Path, axes: str | None, lazy: bool | None) -> ImageFile:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            first = _first_image(tif)  # a scanner's or camera's preview may come before the image
            series = tif.series[first]
            others = _other_images(tif, first)
            page = series.keyframe
            file_axes = series.axes
            shape = tuple(int(s) for s in series.shape)
            photometric = page.photometric.name
            bits = int(page.bitspersample) if isinstance(page.bitspersample, (int, np.integer)) else None
            dtype = np.dtype(series.dtype)
            kind = "OME-TIFF" if tif.is_ome else "ImageJ TIFF" if tif.is_imagej else "TIFF"
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            colormap = page.colormap if photometric == "PALETTE" else None
            extra = tuple(int(e) for e in (page.extrasamples or ()))
            icc = getattr(page, "iccprofile", None)
            nodata = _gdal_nodata(page)
            orientation = page.tags.valueof(274, 1)  # TIFF Orientation
            georeference = geotiff_tags(page)
            pixel_size = tiff_pixel_size(tif, page)  # a scan's dpi, ImageJ's or OME's calibration
            mask = _transparency_mask(tif, shape, file_axes)
            single = sum(s > 1 for s, a in zip(shape, file_axes) if a not in "YXS") == 0
            big = lazy or (lazy is None and nbytes > LAZY_BYTES)
            # JPEG-compressed YCbCr (the compact orthomosaic GeoTIFF): imagecodecs decodes it to RGB
            # window by window, so a big one stays lazy; Pillow would read it whole, and cannot
            # open a file with a mask IFD at all
            jpeg_ycbcr = photometric == "YCBCR" and int(page.compression) == 7
            # Pillow reads a TIFF's first page: a preview before the image leaves it to tifffile
            by_pillow = photometric in _PILLOW_PHOTOMETRIC and single and axes is None and first == 0
            by_pillow = by_pillow and not (jpeg_ycbcr and (big or mask is not None))
            if by_pillow:
                data = None
            elif big:
                import zarr

                z = zarr.open(tifffile.imread(path, aszarr=True, series=first), mode="r")
                data = z if hasattr(z, "shape") else z[sorted(z.array_keys())[0]]  # a pyramid: level 0
            else:
                data = series.asarray()
            if mask is not None and (by_pillow or isinstance(data, np.ndarray)):
                mask = mask.asarray()
            elif mask is not None:  # its own store, open after this file closes, as the image's
                mask = zarr.open(tifffile.imread(path, aszarr=True, key=mask.index), mode="r")
    except tifffile.TiffFileError as err:
        named = _other_format(path)  # a JPEG or PNG saved under a .tif name: read by its content, as Pillow does
        if named is not None:
            image = read_pillow(path)
            image.applied["named"] = f"a {named} file with a TIFF name: read as {named}"
            return image
        raise ImageError(
            f"{path.name} is not a TIFF file tifffile can read ({err}): open it in an image editor and save it again"
        ) from None
    except ValueError as err:  # tifffile's "failed to read N bytes": the file ends inside its data
        if "failed to read" not in str(err):
            raise
        raise truncated_error(path) from None
    except (IndexError, struct.error) as err:  # a header that promises pages or entries it does not hold
        raise damaged_error(path, err) from None
    except RuntimeError as err:  # imagecodecs' decoders (DeflateError, ...): data that does not decode
        if not type(err).__module__.startswith("imagecodecs"):
            raise
        raise damaged_error(path, err) from None
    if by_pillow:
        try:
            image = read_pillow(path)
        except ImageError:
            # Pillow's failure is not the file's when tifffile reads all of its pixels (Pillow before
            # 13 calls some whole uncompressed YCbCr TIFFs truncated)
            if _tifffile_reads(path):
                import PIL

                colours = {"YCBCR": "YCbCr", "SEPARATED": "CMYK"}.get(photometric, photometric)
                if bits is not None and bits > 8 and photometric in ("CIELAB", "ICCLAB", "ITULAB"):
                    raise ImageError(  # no Pillow reads Lab of more than 8 bits
                        f"{path.name}: its pixels are {bits}-bit Lab colour, which Pillow does not read: save the "
                        "image as RGB (in Photoshop: Image > Mode > RGB Color), 8 or 16 bits"
                    ) from None
                raise ImageError(
                    f"{path.name}: Pillow {PIL.__version__} cannot read this TIFF's {colours} pixels (the "
                    "file is whole); update Pillow (pip install -U pillow) or save the image as RGB"
                ) from None
            raise
        image.applied["format"] = f"{kind} ({photometric}, read by Pillow)"
        if orientation not in (None, 1):
            image.applied["tiff_orientation"] = _ORIENTATION_NOTE.format(int(orientation))
        if georeference and "exif_orientation" not in image.applied:  # a turned image is off its grid
            image.georeference = georeference
            image.applied["georeference"] = geotiff_note(georeference)
        if mask is not None and image.data.shape[:2] == mask.shape:
            image.data = _blank_masked(image.data, mask)
            image.applied["mask"] = _MASK_NOTE
        image.pixel_size = pixel_size
        return image
    applied = {"format": kind, "file_axes": file_axes, "photometric": photometric}
    if orientation not in (None, 1):
        applied["tiff_orientation"] = _ORIENTATION_NOTE.format(int(orientation))
    if first:
        applied["preview"] = (
            f"the full-resolution image (TIFF series {first + 1}); {'a reduced-resolution preview' if first == 1 else f'{first} reduced-resolution previews'} "
            "before it not read"
        )
    if others:
        applied["series"] = f"the first of {others + 1} images in the file (TIFF series); the others not read"
        warnings.warn(
            f"{path.name} holds {others + 1} images (TIFF series: an OME-TIFF of several, pages of other sizes, "
            "frames appended one by one); only the first is read: save each image as its own file",
            stacklevel=2,
        )
    if jpeg_ycbcr:
        applied["converted"] = "JPEG YCbCr -> RGB (imagecodecs)"
        photometric = "RGB"  # what imagecodecs hands out
    given = axes is not None
    # the sample the file marks as alpha (ExtraSamples 1 or 2), after the colour samples
    marked = next((i for i, e in enumerate(extra) if e in _ALPHA), None)
    samples = shape[file_axes.index("S")] if "S" in file_axes else 0
    alpha = samples - len(extra) + marked if marked is not None and samples else None
    if given and samples and "S" in axes and len(axes) == len(shape) and shape[axes.index("S")] != samples:
        # the file says which axis holds a pixel's samples: another one taken for them (--axes SYX on
        # an RGB photo) made a strip of the photo's rows "colours" and labels of another shape
        raise ImageError(
            f"{path.name}: axes {axes!r} (as given) make its axis of {shape[axes.index('S')]} colour samples, but "
            f"the file holds {samples} samples per pixel on another axis (its own axes: {file_axes!r}); leave out "
            "the axes to read it as the file states them, or give S where the file has it"
        )
    data, out_axes, note = arrange_axes(
        data, axes or file_axes, path, given=given, photometric=photometric, alpha=alpha
    )
    if given:
        applied["axes_given"] = axes
    # two or four samples: the last is alpha only where the file marks it (of five or more, arrange_axes
    # put the marked one last)
    alpha_last = alpha is not None and (samples > 4 or alpha == samples - 1)
    if out_axes.endswith("S") and data.shape[-1] in (2, 4) and not alpha_last:
        # the last sample is not marked as alpha (a multispectral band): only marked alpha blanks pixels
        data = data[..., :-1] if isinstance(data, np.ndarray) else as_dask(data)[..., :-1]
        note = (note + "; " if note else "") + "the last sample is not marked as alpha (ExtraSamples): ignored"
    if note:
        applied["samples"] = note
    if alpha_last and out_axes.endswith("S") and data.shape[-1] in (2, 4):
        _record_transparent(applied, data)
    if mask is not None and out_axes.rstrip("S") == "YX" and data.shape[:2] == mask.shape:
        if isinstance(data, np.ndarray):
            data = _blank_masked(data, mask)
        else:
            import dask.array as da

            d = as_dask(data)
            m = da.from_zarr(mask).rechunk(d.chunks[:2])
            data = da.where(m[..., None] if d.ndim == 3 else m, d, d.dtype.type(0))
        applied["mask"] = _MASK_NOTE
    if nodata is not None:
        colour = out_axes.endswith("S")
        if colour and not isinstance(data, np.ndarray):
            data = as_dask(data).rechunk({data.ndim - 1: -1})  # each block holds a pixel's every sample
        eager = isinstance(data, np.ndarray)
        nodata_mask = _nodata_mask(data, nodata, colour) if eager else None  # compared once
        if eager and not nodata_mask.any():
            # said plainly: a value that matches nothing (a rounded -3.40282e+38 over float32's lowest)
            # leaves the frame in the photo's range, and the notes that follow from it mislead
            applied["nodata"] = f"GDAL_NODATA {nodata!r}: no pixel has exactly that value, so none was read as nodata"
        else:
            if eager:
                data = _blank_masked(data, ~nodata_mask)
            else:
                data = lazy_or_numpy(data, lambda a: _blank_masked(a, ~_nodata_mask(a, nodata, colour)))
            any_ = "" if eager else ", if any (not counted in a file read window by window),"
            applied["nodata"] = (
                f"GDAL_NODATA {nodata:g}: pixels of that value in every sample{any_} read as black (nodata)"
            )
    if photometric == "MINISWHITE":
        data = lazy_or_numpy(data, _white_is_zero)
        applied["converted"] = "MINISWHITE inverted"
    elif colormap is not None and "S" not in out_axes:
        cmap = np.asarray(colormap)  # (3, 2**bits) uint16
        data = lazy_or_numpy(data, lambda a: np.moveaxis(cmap[:, a], 0, -1))
        out_axes += "S"
        applied["converted"] = "PALETTE -> RGB"
    elif bits and dtype.kind == "u" and bits < 8 * dtype.itemsize and bits not in (1,):
        top = float(2**bits - 1)
        data = lazy_or_numpy(data, lambda a: a.astype(np.float32) / np.float32(top))
        applied["converted"] = f"{bits} bits per sample: divided by {2**bits - 1}"
    if icc and out_axes.endswith("S"):
        data, applied["icc_profile"] = _icc_to_srgb(data, out_axes, icc)
    if georeference:
        applied["georeference"] = geotiff_note(georeference)
    return ImageFile(path, data, out_axes, applied, georeference, pixel_size=pixel_size)


def _icc_to_srgb(data, axes: str, icc: bytes):
    """An RGB TIFF's pixels converted from its embedded ICC profile (an editor's Adobe RGB or
    ProPhoto export) to sRGB, as photos Pillow reads are (:func:`~napari_gardenseg._pillow_reader.to_srgb`),
    and what was done. Only 8-bit RGB read whole, one plane (Pillow's colour management is 8-bit):
    other TIFFs keep their values, and the run record says so."""
    from PIL import Image

    from ._pillow_reader import to_srgb

    whole = isinstance(data, np.ndarray) and data.dtype == np.uint8 and axes == "YXS" and data.shape[-1] == 3
    if not whole:
        why = "not applied (only 8-bit RGB TIFFs read whole are converted); read as if sRGB"
        return data, to_srgb(None, icc, not_applied=why)[1]
    im, note = to_srgb(Image.fromarray(data), icc)
    return (np.asarray(im) if im.mode == "RGB" else data), note


_MASK_NOTE = "pixels outside the file's transparency mask (a mask IFD, as GDAL writes) read as black (nodata)"


def _transparency_mask(tif, shape, axes: str):
    """The TIFF page holding the image's transparency mask (NewSubfileType mask, photometric MASK:
    the internal mask GDAL writes for nodata, as a JPEG-compressed orthomosaic needs), for a
    single-plane image of ``shape`` / ``axes``; None when there is none."""
    if "Y" not in axes or "X" not in axes or any(s > 1 for s, a in zip(shape, axes) if a not in "YXS"):
        return None
    hw = (shape[axes.index("Y")], shape[axes.index("X")])
    # tifffile hands out light TiffFrames for some files' pages: they hold no mask flag
    found = (p for p in tif.pages if getattr(p, "is_mask", False) and p.ndim == 2 and tuple(p.shape) == hw)
    return next(found, None)


def _blank_masked(a: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``a`` with the pixels where ``mask`` (bool, ``a``'s shape without its samples) is False set
    to 0, the nodata the vegetation stage leaves out; ``a`` itself when none is."""
    hide = ~np.asarray(mask, bool)
    if not hide.any():
        return a
    out = np.array(a, copy=True)
    out[hide] = 0
    return out


class _NodataParsedHere(logging.Filter):
    """Drops tifffile's warning that a GDAL_NODATA value does not fit the pixel type (ArcGIS writes
    float32's lowest value, -3.4028234663852886e+38, which tifffile rejects, three times per file):
    this reader parses the tag itself (:func:`_gdal_nodata`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # only a value it parsed that does not fit the type: text it cannot parse is still said
        message = record.getMessage()
        return not ("parsing GDAL_NODATA" in message and "is not castable" in message)


logging.getLogger("tifffile").addFilter(_NodataParsedHere())


def _gdal_nodata(page) -> float | None:
    """A GeoTIFF's nodata value (its GDAL_NODATA tag, a decimal comma read as GDAL and tifffile read
    it), or None when it has none, it is 0 or NaN (read as black already)."""
    tag = page.tags.get("GDAL_NODATA")
    if tag is None:
        return None
    try:
        value = float(str(tag.value).strip("\x00 ").replace(",", "."))
    except ValueError:
        return None
    return value if np.isfinite(value) and value != 0 else None


def _nodata_mask(a: np.ndarray, value: float, colour: bool) -> np.ndarray:
    """bool (h, w): the pixels of ``a`` equal to GDAL's nodata ``value`` (in every sample when
    ``colour``): an orthomosaic's area outside the survey, often -10000 or 65535 in float and
    16-bit exports. Made 0 (:func:`_blank_masked`), the black the vegetation stage leaves out, they
    stay out of the intensity range, which a value such as -10000 would otherwise stretch the photo by."""
    hit = a == value
    return hit.all(axis=-1) if colour else hit


# the first bytes of the formats a photo saved under a wrong name is most often in
_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}


def _other_format(path: Path) -> str | None:
    """ "JPEG" or "PNG" when ``path``'s first bytes say it is one (whatever its name), else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return None
    return next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)


def _subfile(series) -> int:
    """A TIFF series' NewSubfileType: bit 1 a reduced resolution (a preview, a pyramid level),
    bit 4 a transparency mask; 0 for a full-resolution image, or where the tag cannot be read."""
    try:
        return int(series.keyframe.subfiletype)
    except (AttributeError, TypeError, ValueError):
        return 0


def _first_image(tif) -> int:
    """The index of the file's first TIFF series that is a full-resolution image: a scanner or
    camera may write a reduced-resolution preview first (libtiff.net #118); 0 when none is."""
    return next((k for k, series in enumerate(tif.series) if not _subfile(series) & 0b101), 0)


def _other_images(tif, first: int = 0) -> int:
    """How many of the file's TIFF series after ``first`` are images of their own: not a reduced
    resolution or a transparency mask (NewSubfileType bits 1 and 4), which belong to the first."""
    return sum(not _subfile(series) & 0b101 for series in tif.series[first + 1 :])


def _white_is_zero(a: np.ndarray) -> np.ndarray:
    """MINISWHITE pixels as MINISBLACK ones, as Pillow reads them (1-bit masks are bool here)."""
    if a.dtype == bool:
        return ~a
    return np.iinfo(a.dtype).max - a if a.dtype.kind in "ui" else a.max() - a


def _tifffile_reads(path: Path) -> bool:
    import tifffile

    try:
        tifffile.imread(path, series=0)
    except Exception:  # noqa: BLE001  (any failure: the file may well be broken)
        return False
    return True


def _record_transparent(applied: dict, data) -> None:
    """Say in ``applied`` (the run record's image) that pixels under the marked alpha's 0 are read as
    black (nodata), with their number when the file was read whole, as the Pillow reader says it."""
    if not isinstance(data, np.ndarray):  # counting would read the whole file once more
        applied["transparent"] = (
            "pixels whose marked alpha (ExtraSamples) is 0, if any, read as black (nodata), unless it is 0 "
            "everywhere; not counted: the file is read lazily"
        )
        return
    alpha = data[..., -1]
    if alpha_used(alpha) and not alpha.all():
        applied["transparent"] = f"{int((alpha == 0).sum())} fully transparent pixels read as black (nodata)"
