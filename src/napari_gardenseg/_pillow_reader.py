"""Files Pillow reads (PNG, JPEG, BMP, GIF, WebP..., and HEIC/HEIF with pillow-heif): upright by
their EXIF orientation, converted to sRGB from an embedded ICC profile, every mode to RGB or grey
(see :mod:`._image_reader` for the rules)."""

from __future__ import annotations

import functools
import io
import threading
from pathlib import Path

import numpy as np

from ._image_arrays import ImageError, alpha_used, blank_transparent
from ._image_file import ImageFile, damaged_error, truncated_error
from ._pixel_size import pillow_pixel_size

# the photo format of phones (iPhones since iOS 11): Pillow reads it through the pillow-heif plugin
HEIF_SUFFIXES = (".heic", ".heif", ".hif")
# a HEIF file's brand (bytes 8-12, after "ftyp"): how it is known by its content, whatever its name
_HEIF_BRANDS = (b"heic", b"heix", b"mif1", b"msf1", b"hevc")


_PIXEL_LIMIT = threading.Lock()


def open_pillow(path):
    """``PIL.Image.open(path)`` without Pillow's decompression-bomb limit: a big photo is no bomb
    here (memory is checked where pixels are decoded). The limit is lifted for this call only,
    as it is Pillow's global, which napari and other plugins rely on."""
    from PIL import Image

    heif_opener()  # a HEIC is read by its content: renamed .jpg, bytes, a file object
    with _PIXEL_LIMIT:
        before, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = before


def read_pillow(path: Path) -> ImageFile:
    from PIL import UnidentifiedImageError

    try:
        with open_pillow(path) as im:
            fmt = im.format
            pixel_size = pillow_pixel_size(im)  # a scan's dpi
            frames, applied_frames = photo_frames(im)
            planes, applied = [], {}
            for k in frames:
                im.seek(k)
                plane, applied = decode(im, path, source=path)
                planes.append(plane)
    except UnidentifiedImageError:
        if (path.name.lower().endswith(HEIF_SUFFIXES) or is_heif(path)) and not heif_opener():
            raise heif_missing(path) from None
        raise ImageError(
            f"{path.name} is not an image Pillow can read (PNG, JPEG, TIFF, BMP, GIF, WebP, HEIC with pillow-heif): "
            "open it in an image editor and save it as PNG or JPEG"
        ) from None
    except OSError as err:
        raise decode_error(err, path) from None
    applied = {"format": fmt, **applied, **applied_frames}
    if len(planes) == 1:
        data = planes[0]
        return ImageFile(path, data, "YXS" if data.ndim == 3 else "YX", applied, pixel_size=pixel_size)
    if len({p.shape for p in planes}) > 1:
        raise ImageError(f"{path.name}: its {len(planes)} frames differ in size; save the frames as separate images")
    applied["frames"] = len(planes)
    data = np.stack(planes)
    return ImageFile(path, data, "TYXS" if data.ndim == 4 else "TYX", applied, pixel_size=pixel_size)


def photo_frames(im) -> tuple[list[int], dict]:
    """The frames of an opened image that are its pictures, and what the run record says of the
    others. Every frame of an animation or a multi-page file (a time stack); one of an MPO, whose
    extra frames are previews (the first is the photo), and of a HEIF, whose other images are a
    burst, bracketing, depth or thumbnails (the primary is the photo, which pillow-heif opens at
    and viewers show; it need not be the first). By path and as bytes alike."""
    n_frames = getattr(im, "n_frames", 1)
    if n_frames == 1 or im.format not in ("MPO", "HEIF"):
        return list(range(n_frames)), {}
    if im.format == "MPO":
        return [0], {}
    k = im.tell()  # before any seek: the primary image
    return [k], {"images": f"the primary image ({k + 1} of {n_frames} in the file); the others not read"}


def decode(im, what: Path | str, *, source=None) -> tuple[np.ndarray, dict]:
    """:func:`pillow_pixels` of an opened image; ImageError naming ``what`` (a path, or words for an
    open file's bytes) when its pixels do not fit in memory or the file is cut short or damaged.
    ``source``: the path or file object ``im`` was opened from, from which a JPEG that lacks only
    its end marker is read (:func:`~napari_gardenseg._jpeg_end.jpeg_without_end`)."""
    from ._jpeg_end import jpeg_without_end

    try:
        try:
            deep = deep_jpeg2000(im, source, what)
            return deep if deep is not None else pillow_pixels(im)
        except OSError as err:
            whole = jpeg_without_end(source) if err.errno is None and im.format == "JPEG" else None
            if whole is None:
                raise decode_error(err, what) from None
            return whole
    except MemoryError:
        w, h = im.size
        raise ImageError(
            f"{getattr(what, 'name', what)} is {w} x {h} pixels ({w * h * 3 / 1e9:.1f} GB as RGB), more than this "
            "machine's free memory: save it as a tiled TIFF, which is read window by window"
        ) from None


def source_bytes(source, size: int = -1) -> bytes:
    """The first ``size`` bytes (-1: all) of ``source``, a path or a file object read from its start."""
    if hasattr(source, "read"):
        source.seek(0)
        return source.read(size)
    with open(source, "rb") as f:
        return f.read(size)


def deep_jpeg2000(im, source, what: Path | str = "the JPEG 2000 file") -> tuple[np.ndarray, dict] | None:
    """A colour JPEG 2000 of more than 8 bits a sample (a scan's or an archive's master), decoded by
    imagecodecs (OpenJPEG), with a note; None for any other image. 16 bits stay uint16; fewer
    (12) are divided by their top value as a TIFF's are (float32 in 0..1). Pillow reads such colour
    as 8-bit RGB with its values wrapped: white (65535, or 4095 at 12 bits) comes out black (Pillow
    #7511, #7899). ``source``: the path or file object ``im`` was opened from. A file that does not
    decode raises ImageError (damaged), naming ``what``."""
    if im.format != "JPEG2000" or im.mode not in ("RGB", "RGBA") or source is None:
        return None
    bits = _jpeg2000_bits(source_bytes(source, _J2K_HEAD))
    if bits is None or bits <= 8:
        return None
    import imagecodecs

    try:
        arr = imagecodecs.jpeg2k_decode(source_bytes(source))
    except RuntimeError as err:  # imagecodecs' Jpeg2kError: data cut short or damaged
        raise damaged_error(what, err) from None
    applied = {"mode": im.mode, "bits": f"{bits} bits a sample, decoded by imagecodecs (Pillow reads 8)"}
    if arr.ndim == 3 and arr.shape[-1] == 4:
        alpha, arr = arr[..., 3], np.ascontiguousarray(arr[..., :3])
        if alpha_used(alpha) and not alpha.all():
            arr = blank_transparent(arr, alpha)
            applied["transparent"] = f"{int((alpha == 0).sum())} fully transparent pixels read as black (nodata)"
    if arr.dtype.kind == "u" and bits < 8 * arr.dtype.itemsize:
        arr = arr.astype(np.float32) / np.float32(2**bits - 1)
        applied["converted"] = f"{bits} bits per sample: divided by {2**bits - 1}"
    return arr, applied


# the bytes of a JPEG 2000 file searched for its codestream's header (SIZ)
_J2K_HEAD = 1 << 20


def _jpeg2000_bits(data: bytes) -> int | None:
    """The most bits a sample of a JPEG 2000 file's components has, from its codestream's SIZ
    marker (ITU-T T.800 A.5.1; in a .jp2 file it follows the start of its jp2c box, after any
    metadata boxes), None when ``data`` holds none."""
    at = data.find(b"\xff\x4f\xff\x51")  # SOC, then SIZ
    if at < 0 or len(data) < at + 42:
        return None
    count = int.from_bytes(data[at + 40 : at + 42], "big")
    sizes = data[at + 42 : at + 42 + 3 * count : 3]
    return max(((b & 0x7F) + 1 for b in sizes), default=None)


def decode_error(err: OSError, what: Path | str) -> OSError:
    """The error to raise for Pillow's ``err`` while decoding ``what`` (a path, or words for an
    open file's bytes): the system's own (no such file, permission) as it is, else an ImageError
    that says the file is cut short or damaged."""
    if err.errno is not None:  # the system's: not the file's contents
        return err
    if "truncated" in str(err).lower():  # Pillow's "image file is truncated" / "Truncated File Read"
        return truncated_error(what)
    return damaged_error(what, err)


def heif_missing(what: Path | str) -> ImageError:
    """The error for a HEIC/HEIF photo ``what`` (a path, or words for an open file's bytes) without pillow-heif."""
    return ImageError(
        f"{getattr(what, 'name', what)} is a HEIC/HEIF photo (a phone's format): reading it needs pillow-heif, "
        '`pip install pillow-heif` (or `pip install "napari-gardenseg[heif]"`), or export the photo as JPEG'
    )


@functools.lru_cache(maxsize=None)
def heif_opener() -> bool:
    """Whether pillow-heif can be imported; its opener is registered with Pillow (once: the answer
    is kept, so every open asks nothing again)."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def is_heif(source) -> bool:
    """Whether a file (a path, or an open binary file, read from its start) holds HEIF by its
    content (its ``ftyp`` brand), whatever its name."""
    try:
        head = source_bytes(source, 12)
    except OSError:
        return False
    return head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


# the EXIF orientations that ImageOps.exif_transpose turns or mirrors (1 is upright)
_TURNING = frozenset(range(2, 9))


def _turns(im) -> bool:
    """Whether an image's EXIF Orientation turns or mirrors its pixels (read upright here).

    Never a TIFF's: its pixels are read as stored (tifffile's way, and GDAL's, so its world file
    still places them), whichever library decodes them; Pillow 13 would turn some TIFFs itself
    while loading them, so the tag is removed from an opened TIFF here.
    """
    if im.format == "TIFF":
        if im.tag_v2.pop(0x0112, None) in (5, 6, 7, 8) and hasattr(im, "_tile_size"):
            im._size = im._tile_size  # Pillow 13 swapped the size it gives for the turn it planned
        im.getexif().pop(0x0112, None)
        return False
    return im.getexif().get(0x0112) in _TURNING  # as Pillow: other values (0, 9, text) turn nothing


def exif_turns(path) -> bool:
    """Whether reading the photo ``path`` turns its pixels upright (its EXIF orientation), from its
    header only; False for a file Pillow cannot open (reading it says why)."""

    try:
        with open_pillow(Path(path)) as im:  # a HEIC too, when pillow-heif is installed
            return _turns(im)
    except Exception:  # noqa: BLE001
        return False


def pillow_pixels(im) -> tuple[np.ndarray, dict]:
    """One frame as RGB uint8, grey, or the numbers of modes I/I;16/F, upright; and what was done."""
    from PIL import ImageOps

    applied = {"mode": im.mode}
    if _turns(im):  # exif_transpose copies even an upright image: a photo's size more at peak
        applied["exif_orientation"] = int(im.getexif()[0x0112])
        im = ImageOps.exif_transpose(im)  # turned as the EXIF tag says (tag removed)
    alpha = _pillow_alpha(im)  # before the ICC conversion, which drops it
    icc = im.info.get("icc_profile")
    if icc:
        im, applied["icc_profile"] = to_srgb(im, icc)
    elif _exif_adobe_rgb(im):
        applied["colour_space"] = (
            "Adobe RGB by its EXIF (ColorSpace uncalibrated, interoperability R03: a camera set to Adobe RGB), "
            "no ICC profile to convert from: read as sRGB, its colours a little duller than the camera's"
        )
    mode = im.mode
    if mode in ("1", "L", "LA", "La"):
        arr = np.asarray(im.getchannel(0) if mode != "1" else im.convert("L"))
    elif mode in ("I", "F") or mode.startswith("I;16"):
        arr = pillow_array(im)
        arr = arr.astype(arr.dtype.newbyteorder("="), copy=False)  # I;16B is big-endian
    else:
        arr = pillow_array(im if mode == "RGB" else im.convert("RGB"))  # convert() copies even RGB
    if applied["mode"] not in ("L", "RGB", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"):
        applied["converted"] = f"{applied['mode']} -> {'grey' if arr.ndim == 2 else 'RGB'}"
    arr = np.ascontiguousarray(arr)
    if alpha is not None and alpha_used(alpha) and not alpha.all():
        arr = blank_transparent(arr.copy() if not arr.flags.writeable else arr, alpha)
        applied["transparent"] = f"{int((alpha == 0).sum())} fully transparent pixels read as black (nodata)"
    return arr, applied


# rows of a Pillow image made into numpy at a time
_BAND_ROWS = 512


def pillow_array(im) -> np.ndarray:
    """``np.asarray(im)`` of a Pillow image, filled :data:`_BAND_ROWS` rows at a time: Pillow's array
    interface makes a ``bytes`` of the whole image and joins it from pieces, two copies at peak
    beside the decoded image and the array."""
    width, height = im.size
    if height <= _BAND_ROWS:
        return np.asarray(im)
    band = np.asarray(im.crop((0, 0, width, _BAND_ROWS)))
    arr = np.empty((height, *band.shape[1:]), band.dtype)
    arr[:_BAND_ROWS] = band
    for top in range(_BAND_ROWS, height, _BAND_ROWS):
        bottom = min(top + _BAND_ROWS, height)
        arr[top:bottom] = np.asarray(im.crop((0, top, width, bottom)))
    return arr


def _exif_adobe_rgb(im) -> bool:
    """Whether a photo without an ICC profile says Adobe RGB in its EXIF, as cameras set to it write
    (DCF 2.0: ColorSpace 0xFFFF "uncalibrated" with interoperability index "R03"); Pillow reads
    such pixels as they are, and no profile is there to convert them from."""
    try:
        exif = im.getexif()
        return exif.get_ifd(0x8769).get(0xA001) == 0xFFFF and str(exif.get_ifd(0xA005).get(1, "")).strip() == "R03"
    except Exception:  # noqa: BLE001  (a damaged EXIF block says nothing)
        return False


def _pillow_alpha(im) -> np.ndarray | None:
    """The (h, w) alpha of a Pillow image that has one (RGBA, LA, PA, a palette's or PNG's transparent colour), else None."""
    if im.mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        return np.asarray(im.getchannel(im.mode[-1]))
    if "transparency" in im.info and im.mode in ("P", "L", "RGB"):
        return np.asarray(im.convert("RGBA").getchannel("A"))
    return None


def to_srgb(im, icc: bytes, *, not_applied: str | None = None):
    """``im`` converted from its embedded ICC profile to sRGB, and what was done (a profile already
    sRGB: nothing). ``not_applied``: why pixels that need converting are not (``im`` is returned
    as it is, the note names the profile and says so)."""
    from PIL import ImageCms

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = (ImageCms.getProfileDescription(profile) or "").strip()
    except (OSError, ImageCms.PyCMSError) as exc:
        return im, f"unreadable, ignored ({exc})"
    if _srgb_already(bytes(icc)):
        return im, f"{description} (sRGB already)"
    if not_applied is not None:
        return im, f"{description}: {not_applied}"
    if im.mode not in ("RGB", "RGBA", "CMYK", "L", "LAB"):
        return im, f"{description}: not applied to mode {im.mode}"
    try:
        out_mode = "RGB" if im.mode != "L" else "L"
        src = im.convert("RGB") if im.mode == "RGBA" else im
        converted = ImageCms.profileToProfile(src, profile, ImageCms.createProfile("sRGB"), outputMode=out_mode)
    except (OSError, ValueError, ImageCms.PyCMSError) as exc:
        return im, f"{description}: could not convert ({exc}); read as if sRGB"
    return converted, f"{description} -> sRGB"


@functools.lru_cache(maxsize=32)
def _srgb_already(icc: bytes) -> bool:
    """Whether an RGB ICC profile gives sRGB's colours: greys and a grid of colours converted
    through it to sRGB come back within 1 of themselves. Decided by what the profile does, not
    by its name ("GIMP built-in Linear sRGB" is linear light); once per profile (a few ms)."""
    from PIL import Image, ImageCms

    grey = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    steps = np.linspace(0, 255, 9).round().astype(np.uint8)
    grid = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1).reshape(-1, 3)
    ramp = np.concatenate([grey, grid])[None]
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if profile.profile.xcolor_space.strip() != "RGB":
            return False
        out = ImageCms.profileToProfile(
            Image.fromarray(ramp), profile, ImageCms.createProfile("sRGB"), outputMode="RGB"
        )
    except (OSError, ValueError, ImageCms.PyCMSError):
        return False
    return int(np.abs(np.asarray(out).astype(np.int16) - ramp).max()) <= 1
