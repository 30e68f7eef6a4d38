"""The physical size of a pixel as an image file states it: a scanner's resolution (dpi in a
TIFF, PNG or JPEG), an ImageJ TIFF's calibration, an OME-TIFF's ``PhysicalSizeX``/``Y``. With it
the instances table gives areas in mm² and the label TIFFs carry the same resolution (in pixels
per centimetre), so Fiji or ImageJ measures the labels in centimetres.

A stated resolution is trusted only where it can mean a size on the object: a unit is given
(inch, centimetre, ImageJ's or OME's unit; a JPEG's EXIF resolution with its own unit), it is
not a screen density (72, 96, 144 or 192 dpi: what software writes when it knows nothing, and
what a screenshot has), it is a length a pixel can have (a nanometre to a metre), and the file
is not a camera's photo (EXIF exposure time, f-number or focal length): a camera's dpi is a
print size, not the scene's (Pillow's ``info["dpi"]`` and the TIFF 6.0 tags XResolution,
YResolution and ResolutionUnit, whose default unit is the inch). A GeoTIFF's or world file's
pixel is in map units: its table has ``map_x``, ``map_y`` instead. Read by the format readers
while the file is open (:mod:`._tiff_reader`, :mod:`._pillow_reader`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# dots per inch that say nothing of the object: the screen densities software writes by default
_SCREEN_DPI = (72.0, 96.0, 144.0, 192.0)
# EXIF tags of a camera's exposure (ExposureTime, FNumber, FocalLength), in its Exif IFD
_CAMERA_TAGS = (0x829A, 0x829D, 0x920A)
_CAMERA_NAMES = ("ExposureTime", "FNumber", "FocalLength")
# the lengths (µm) a pixel can be: a nanometre (electron microscopy) to a metre (a coarse map)
_MIN_UM, _MAX_UM = 1e-3, 1e6
_EXIF_IFD = 0x8769
# micrometres in one of ImageJ's or OME's length units
_UM_PER_UNIT = {
    "nm": 1e-3,
    "nanometer": 1e-3,
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "m": 1e6,
    "meter": 1e6,
    "inch": 25_400.0,
    "in": 25_400.0,
    "decimeter": 1e5,
    "dm": 1e5,
    "foot": 304_800.0,
    "feet": 304_800.0,
    "ft": 304_800.0,
}


@dataclass(frozen=True)
class PixelSize:
    """One pixel's height (``y_um``, along rows) and width (``x_um``, along columns) in
    micrometres, and where the file states them (``source``, e.g. "600 dpi, TIFF resolution")."""

    y_um: float
    x_um: float
    source: str

    @property
    def mm2(self) -> float:
        """The area of one pixel in square millimetres."""
        return self.y_um * self.x_um * 1e-6

    def note(self) -> str:
        """The run record's words for it."""
        size = f"{self.x_um:.4g} µm" if self.x_um == self.y_um else f"{self.x_um:.4g} µm wide, {self.y_um:.4g} µm tall"
        return f"{size} a pixel ({self.source}): areas also in mm² (area_mm2, area_refined_mm2 of the instances table)"

    def as_record(self) -> dict:
        """JSON values for a run record, a result's ``meta`` or a layer's metadata:
        ``{"y_um": float, "x_um": float, "source": str}`` (:meth:`from_record` reads them back)."""
        return {"y_um": float(self.y_um), "x_um": float(self.x_um), "source": self.source}

    @classmethod
    def from_record(cls, record) -> PixelSize | None:
        """The size :meth:`as_record` wrote (or one already read); None for anything else."""
        if isinstance(record, PixelSize):
            return record
        try:
            return _checked(cls(float(record["y_um"]), float(record["x_um"]), str(record.get("source", ""))))
        except (TypeError, KeyError, ValueError, AttributeError):
            return None

    def tiff_resolution(self) -> dict:
        """tifffile ``imwrite`` keywords for the label TIFFs: pixels per centimetre, unit centimetre."""
        return {"resolution": (1e4 / self.x_um, 1e4 / self.y_um), "resolutionunit": 3}

    def turned(self) -> PixelSize:
        """The size after a quarter turn (an EXIF orientation of 5 to 8): rows and columns swap."""
        return PixelSize(self.x_um, self.y_um, self.source)


def layer_pixel_size(scale, units) -> PixelSize | None:
    """The pixel size a napari layer is shown at: its ``scale`` of the last two axes (rows, then
    columns) where both of its ``units`` there are lengths (napari's pint units: "micrometer",
    "millimeter", ...; not "pixel", napari's default); None otherwise or where a side is no length
    a pixel can have. What the user set (or an OME or ImageJ reader gave the layer) wins over what
    the file says: the labels are measured as the image is shown."""
    if scale is None or units is None or len(scale) < 2 or len(units) < 2:
        return None
    um = [_UM_PER_UNIT.get(str(u).strip().lower()) for u in list(units)[-2:]]
    if None in um:
        return None
    try:
        y, x = (abs(float(v)) * f for v, f in zip(list(scale)[-2:], um))
    except (TypeError, ValueError):
        return None
    return _checked(PixelSize(y, x, "the layer's scale"))


def with_areas_mm2(table, size: PixelSize | None):
    """``table`` (an instances table: ``area``, maybe ``area_refined``, in pixels) with
    ``area_mm2`` and ``area_refined_mm2`` after ``area_refined`` (or ``area``): the same areas in
    square millimetres (:func:`with_areas`); the table unchanged without a ``size``."""
    return with_areas(table, size.mm2 if size is not None else None, "mm2")


def with_areas(table, per_pixel: float | None, unit: str):
    """``table`` with ``area_<unit>`` and ``area_refined_<unit>`` after ``area_refined`` (or
    ``area``), its pixel areas times ``per_pixel`` (the area of one pixel in that unit), to six
    significant digits (what a stated resolution or a map's grid is good for); where it has them
    already, made again (after edits changed the areas). Unchanged without ``per_pixel`` or an
    ``area`` column."""
    if per_pixel is None or table is None or "area" not in table:
        return table
    table = table.copy()
    at = table.columns.get_loc("area_refined" if "area_refined" in table else "area") + 1
    for column in (c for c in ("area", "area_refined") if c in table):
        name = f"{column}_{unit}"
        if name in table:
            table[name] = areas_in(table[column], per_pixel)
        else:
            table.insert(at, name, areas_in(table[column], per_pixel))
            at += 1
    return table


def areas_in(areas, per_pixel: float):
    """Areas in pixels (a pandas Series; NaN or NA where there is none) times ``per_pixel``, to six
    significant digits, as floats."""
    scaled = areas.astype("Float64") * per_pixel
    return scaled.map(lambda v: float(f"{v:.6g}"), na_action="ignore").astype(float)


def _per_inch(x_dpi, y_dpi, source: str, stated: str | None = None) -> PixelSize | None:
    """From dots per inch; None where they are not a size (none, 1 or less: a placeholder, a
    screen's density, no length: :func:`_checked`). ``stated``: the resolution as the file gives
    it, when not in dpi."""
    try:
        x, y = float(x_dpi), float(y_dpi)
    except (TypeError, ValueError):
        return None
    if x <= 1 or y <= 1 or any(abs(x - s) < 0.5 and abs(y - s) < 0.5 for s in _SCREEN_DPI):
        return None
    if stated is None:
        stated = f"{round(x, 1):g} dpi" if x == y else f"{round(x, 1):g} x {round(y, 1):g} dpi"  # 72.5 is not 72
    inch = _UM_PER_UNIT["inch"]
    return _checked(PixelSize(inch / y, inch / x, f"{stated}, {source}"))


def _per_unit(x_px, y_px, unit: str, source: str) -> PixelSize | None:
    """From pixels per ``unit`` (one of ImageJ's or OME's length units); None for another unit
    or no length (:func:`_checked`)."""
    um = _UM_PER_UNIT.get(str(unit).strip().lower().replace("\\u00b5", "µ"))
    if um is None:
        return None
    try:
        return _checked(PixelSize(um / float(y_px), um / float(x_px), source))
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _rational(value) -> float | None:
    """A TIFF RATIONAL tag's value as a number."""
    try:
        if isinstance(value, tuple):
            return value[0] / value[1]
        return float(value)
    except (TypeError, ValueError, ZeroDivisionError, IndexError):
        return None


def _camera(exif) -> bool:
    """Whether an Exif IFD (Pillow's, by tag number; tifffile's, by tag name) holds a camera's
    exposure: a photo taken through a lens, whose dpi is a print size."""
    return any(tag in exif for tag in _CAMERA_TAGS) or any(name in exif for name in _CAMERA_NAMES)


def _ome_pixel_size(xml: str) -> PixelSize | None:
    """OME-XML's first ``Pixels`` element's PhysicalSizeX/Y (each unit µm unless it says another,
    as the OME schema has it); None without PhysicalSizeX or with sizes that are no length."""
    match = re.search(r"<(?:\w+:)?Pixels\b[^>]*>", xml)
    if match is None:
        return None
    attrs = {k: v for k, _, v in re.findall(r"""(\w+)=(["'])(.*?)\2""", match.group(0))}  # either quote
    if "PhysicalSizeX" not in attrs:
        return None
    try:
        x = float(attrs["PhysicalSizeX"])
        y = float(attrs.get("PhysicalSizeY", x))
    except ValueError:
        return None
    um_x = _UM_PER_UNIT.get(attrs.get("PhysicalSizeXUnit", "µm").lower())
    um_y = _UM_PER_UNIT.get(attrs.get("PhysicalSizeYUnit", "µm").lower())
    if um_x is None or um_y is None:
        return None
    return _checked(PixelSize(y * um_y, x * um_x, "OME PhysicalSizeX/Y"))


def _checked(size: PixelSize) -> PixelSize | None:
    """``size`` when both sides are a length a pixel can have (finite, from a nanometre to a metre)."""
    sides = (size.y_um, size.x_um)
    return size if all(math.isfinite(v) and _MIN_UM <= v <= _MAX_UM for v in sides) else None


def tiff_pixel_size(tif, page) -> PixelSize | None:
    """The pixel size a tifffile ``TiffFile`` states for its image ``page`` (the first page of the
    series read): OME's PhysicalSizeX/Y, else ImageJ's calibration, else the TIFF resolution tags;
    None for a GeoTIFF, a camera's photo or a tag that cannot be read."""
    from ._georeference import geotiff_tags

    try:
        if geotiff_tags(page):
            return None
        if tif.is_ome and tif.ome_metadata:
            size = _ome_pixel_size(tif.ome_metadata)
            if size is not None:
                return size
        tags = page.tags
        x, y = _rational(tags.valueof(282)), _rational(tags.valueof(283))
        if x is None:
            return None
        y = x if y is None else y
        exif = tags.valueof(_EXIF_IFD)
        if isinstance(exif, dict) and _camera(exif):
            return None
        unit = int(tags.valueof(296, 2))  # TIFF 6.0: inch when the tag is absent
        if tif.is_imagej and unit == 1:  # ImageJ: pixels per its own unit, the unit in its description
            return _per_unit(x, y, (tif.imagej_metadata or {}).get("unit", ""), "ImageJ calibration")
        if unit == 2:
            return _per_inch(x, y, "TIFF resolution")
        if unit == 3:
            if x <= 1 or y <= 1:  # a placeholder, as 1 dpi is: no centimetre-wide pixels
                return None
            stated = f"{x:.4g} pixels/cm" if x == y else f"{x:.4g} x {y:.4g} pixels/cm"
            return _per_inch(x * 2.54, y * 2.54, "TIFF resolution", stated)
    except Exception:  # noqa: BLE001 - a size is extra: a damaged tag leaves the pixels in pixels
        return None
    return None


def ngff_pixel_size(multiscale: dict) -> PixelSize | None:
    """The pixel size of an OME-Zarr (NGFF 0.4/0.5) multiscale's first level: its ``y`` and ``x``
    axes' ``unit`` and the ``scale`` coordinate transformations of that level and of the
    multiscale, multiplied (as the spec composes them); None without a length unit or a scale."""
    try:
        names = [str(a.get("name", "")).lower() for a in multiscale["axes"]]
        units = [a.get("unit") for a in multiscale["axes"]]
        scale, found = [1.0] * len(names), False
        level = multiscale["datasets"][0].get("coordinateTransformations")
        for transforms in (level, multiscale.get("coordinateTransformations")):
            for t in transforms or ():
                if t.get("type") == "scale":
                    scale, found = [a * float(b) for a, b in zip(scale, t["scale"])], True
        y, x = names.index("y"), names.index("x")
        um = [_UM_PER_UNIT.get(str(units[i]).strip().lower()) for i in (y, x)]
        if None in um or not found:
            return None
        return _checked(PixelSize(scale[y] * um[0], scale[x] * um[1], "OME-Zarr scale"))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None


def pillow_pixel_size(im) -> PixelSize | None:
    """The pixel size an opened Pillow image states, for its pixels as stored (not turned): a PNG's
    pHYs in metres, a JPEG's JFIF density in inches or centimetres, else its EXIF resolution with
    its unit (Pillow's ``info["dpi"]`` takes the EXIF's without one as inches), a TIFF's tags;
    None for a camera's photo or a resolution without a unit."""
    try:
        exif = im.getexif()
        if _camera(exif.get_ifd(_EXIF_IFD)):
            return None
        if im.format in ("JPEG", "MPO") and im.info.get("jfif_unit") not in (1, 2):
            # no JFIF density: the EXIF's resolution, with its own unit (1 none, 2 inch, 3 cm)
            unit, x, y = exif.get(0x0128, 2), _rational(exif.get(0x011A)), _rational(exif.get(0x011B))
            if unit not in (2, 3) or x is None:
                return None
            y = x if y is None else y
            scale = 2.54 if unit == 3 else 1.0
            return _per_inch(x * scale, y * scale, "JPEG EXIF resolution")
        dpi = im.info.get("dpi")
        return _per_inch(dpi[0], dpi[1], f"{im.format} resolution") if dpi else None
    except Exception:  # noqa: BLE001 - a damaged EXIF block or tag: no size
        return None
