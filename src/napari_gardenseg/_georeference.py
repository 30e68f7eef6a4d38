"""Where a photo lies on the ground: a GeoTIFF's georeferencing tags, and the files beside a photo.

GeoTIFF (OGC GeoTIFF 1.1) keeps the pixel grid's place and the coordinate reference system in
tags of the file itself (:func:`geotiff_tags`); the label TIFFs of such a photo get the same tags
(:mod:`._image_reader` reads them, :mod:`._batch_outputs` writes them).

Orthophotos exported as JPEG or PNG (QGIS's *Save as Image*, drone mapping services) and plain
TIFFs carry their pixel grid's position in a *world file* beside them (``ortho.jgw`` for
``ortho.jpg``, ``.pgw``, ``.tfw``, ``.wld``: six lines, the ESRI format) and often their
coordinate reference system in GDAL's PAM file (``ortho.jpg.aux.xml``, an ``<SRS>`` element,
sometimes a ``<GeoTransform>`` too). GDAL, and so QGIS, reads both; the label TIFFs of such a
photo get the same two sidecars (``<name>_labels.tfw``, ``<name>_labels.tif.aux.xml``), so
they lie on the photo in GIS software as a GeoTIFF's labels do. A GeoTIFF's own tags win over
its world file, but its PAM file wins over its tags: GDAL's GTiff driver reads PAM, the tags, a
.tab file, then a world file (``GDAL_GEOREF_SOURCES``, GDAL's "GTiff -- GeoTIFF File Format"
page), so a CRS or a grid set on a read-only GeoTIFF by QGIS or rasterio, which GDAL keeps in
``<file>.tif.aux.xml``, is what GIS software shows (:func:`pam_over_tags`).
"""

from __future__ import annotations

import io
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from ._files import is_file

__all__ = [
    "geotiff_tags",
    "geotiff_crs",
    "geotiff_note",
    "SidecarGeoreference",
    "read_sidecars",
    "pam_over_tags",
    "sidecar_files",
    "sidecar_texts",
]

# GeoTIFF 1.1 (OGC 19-008r4): ModelPixelScale, ModelTiepoint, ModelTransformation place the pixel
# grid; GeoKeyDirectory and its double and ASCII parameters give the coordinate reference system
_GEOTIFF_CODES = (33550, 33922, 34264, 34735, 34736, 34737)


def geotiff_note(tags: tuple) -> str:
    """The run record's word on a GeoTIFF's georeferencing: its CRS, and what the outputs keep of it."""
    crs = geotiff_crs(tags)
    note = f"GeoTIFF georeferencing{f' ({crs})' if crs else ''}: copied to the label TIFFs (same pixel grid)"
    if _tags_transform(tags) is not None:  # not ground control points only
        note += "; the instances' centroids in its coordinates: map_x, map_y of the instances CSV"
    return note


def _geokeys(tags: tuple) -> dict:
    """The GeoKeys stored in the directory itself (TIFFTagLocation 0), as {key id: value}."""
    directory = next((v for code, _, _, v, _ in tags if code == 34735), None)
    if directory is None or len(directory) < 4:
        return {}
    flat = directory[4 : 4 + 4 * int(directory[3])]
    entries = np.asarray(flat[: len(flat) // 4 * 4], dtype=np.int64).reshape(-1, 4)  # a cut-off one too
    return {int(key): int(value) for key, where, _, value in entries if where == 0}


def geotiff_crs(tags: tuple) -> str | None:
    """ "EPSG:<code>" of GeoTIFF tags (:func:`geotiff_tags`): the projected, else the geographic
    CRS GeoKey; None when user-defined (32767) or absent."""
    keys = _geokeys(tags)
    code = keys.get(3072) or keys.get(2048)  # ProjectedCSTypeGeoKey, GeographicTypeGeoKey
    return f"EPSG:{code}" if code and code != 32767 else None


def grid_to_map(transform, row, col):
    """``(x, y)`` in a CRS of pixel coordinates (pixel centres at integers, as centroids are) by
    GDAL's GeoTransform ``transform`` (six floats, top-left corner origin); elementwise on arrays."""
    x0, a, b, y0, d, e = transform
    return x0 + (col + 0.5) * a + (row + 0.5) * b, y0 + (col + 0.5) * d + (row + 0.5) * e


def file_grid(tags: tuple = (), sidecars=None) -> tuple[float, ...] | None:
    """The GeoTransform that places a photo's pixels: its sidecars' (GDAL reads them first), else
    its GeoTIFF tags'; None where neither places a grid."""
    if sidecars is not None:
        return tuple(sidecars.transform)
    return _tags_transform(tags) if tags else None


def with_map_columns(table, grid, ground_m2: float | None = None):
    """An instances table (``centroid``, (y, x) pairs: :attr:`SegmentationResult.table`) or a Labels
    layer's ``features`` (``centroid_y``, ``centroid_x``), in pixels, with ``map_x`` and ``map_y``
    after them, each centroid in the CRS of GDAL's GeoTransform ``grid`` (:func:`grid_to_map`),
    and where ``ground_m2`` is given (:func:`ground_pixel_m2`) ``area_m2`` (and
    ``area_refined_m2``) after the areas; made again where they are there (after edits).
    Unchanged without a grid."""
    if grid is None:
        return table
    if {"centroid_y", "centroid_x"} <= set(table.columns):
        rows, cols, after = table["centroid_y"].to_numpy(float), table["centroid_x"].to_numpy(float), "centroid_x"
    elif "centroid" in table.columns:
        pairs = np.array([tuple(c) for c in table["centroid"]], dtype=float).reshape(-1, 2)
        rows, cols, after = pairs[:, 0], pairs[:, 1], "centroid"
    else:
        return table
    from ._pixel_size import with_areas

    table = table.copy()
    x, y = grid_to_map(tuple(grid), rows, cols)
    if "map_x" in table:
        table["map_x"], table["map_y"] = x, y
    else:
        at = table.columns.get_loc(after) + 1
        table.insert(at, "map_x", x)
        table.insert(at + 1, "map_y", y)
    return with_areas(table, ground_m2, "m2")


def _tags_transform(tags: tuple) -> tuple[float, ...] | None:
    """GDAL's GeoTransform (:class:`SidecarGeoreference`'s, top-left corner origin) of GeoTIFF
    tags: ModelTransformation, or ModelPixelScale with one ModelTiepoint (OGC GeoTIFF 1.1), the
    tiepoint a pixel's corner, or its centre where GTRasterTypeGeoKey says PixelIsPoint, as GDAL
    reads it. None for ground control points only."""
    values = {code: v for code, _, _, v, _ in tags}
    shift = -0.5 if _geokeys(tags).get(1025) == 2 else 0.0  # GTRasterTypeGeoKey: 2 is PixelIsPoint
    if 34264 in values and len(values[34264]) >= 8:
        m = [float(v) for v in values[34264]]
        return (m[3] + shift * (m[0] + m[1]), m[0], m[1], m[7] + shift * (m[4] + m[5]), m[4], m[5])
    tie, scale = values.get(33922), values.get(33550)
    if tie is None or scale is None or len(tie) != 6:
        return None
    i, j, _, x, y, _ = (float(v) for v in tie)
    sx, sy = float(scale[0]), float(scale[1])
    return (x + (shift - i) * sx, sx, 0.0, y - (shift - j) * sy, 0.0, -sy)


# EPSG codes of projected CRSs in metres that drone and field maps use, for a CRS named only by
# its code: WGS 84 / UTM (326xx north, 327xx south), ETRS89 / UTM (258xx), NAD83 / UTM (269xx),
# Web Mercator, ETRS89-LAEA Europe, Lambert-93, British National Grid, GDA94 / MGA (283xx)
_METRE_CODES = (
    *range(32601, 32661),
    *range(32701, 32761),
    *range(25828, 25839),
    *range(26901, 26924),
    *range(28348, 28359),
    3857,
    3035,
    2154,
    27700,
)
_UNIT = re.compile(r'UNIT\[\s*"[^"]*"\s*,\s*[0-9.eE+-]+', re.IGNORECASE)
_METRE = re.compile(r'UNIT\[\s*"(?:metre|meter|m)"\s*,\s*1(?:\.0*)?', re.IGNORECASE)


def ground_pixel_m2(tags: tuple = (), sidecars: SidecarGeoreference | None = None) -> float | None:
    """The ground area of one pixel in square metres, from a photo's georeferencing (the
    GeoTransform of its sidecars, else of its GeoTIFF ``tags``: ``|a * e - b * d|`` in map units)
    where its CRS is projected in metres: a WKT whose length unit is the metre (``UNIT["metre",1]``,
    ESRI's ``UNIT["Meter",1.0]``), GeoTIFF's ProjLinearUnitsGeoKey 9001, or an EPSG code of
    :data:`_METRE_CODES`. None for a geographic CRS (degrees), feet, an unknown unit or no grid."""
    transform = file_grid(tags, sidecars)
    if transform is None:
        return None
    srs = sidecars.srs if sidecars is not None else None
    if srs:
        # a projected CRS's own unit is its WKT's last (WKT 1 and 2): the ellipsoid's comes before it
        units = _UNIT.findall(srs)
        projected = srs.lstrip().upper().startswith(("PROJCS", "PROJCRS", "PROJECTEDCRS"))
        metres = (projected and bool(units) and bool(_METRE.fullmatch(units[-1]))) or _epsg_in_metres(srs)
    elif tags:
        keys = _geokeys(tags)
        metres = keys.get(3076) == 9001 or (3076 not in keys and keys.get(3072) in _METRE_CODES)
    else:
        metres = False
    area = abs(transform[1] * transform[5] - transform[2] * transform[4])
    return float(area) if metres and math.isfinite(area) and area > 0 else None


def _epsg_in_metres(srs: str) -> bool:
    code = re.fullmatch(r"\s*EPSG:(\d+)\s*", srs, re.IGNORECASE)
    return code is not None and int(code.group(1)) in _METRE_CODES


def _ascii_bytes(page, tag) -> bytes:
    """An ASCII tag's bytes as stored: the GeoKeyDirectory points into GeoAsciiParams by byte
    offset and count, so a CRS citation written in UTF-8 or Latin-1 ("RGF93 / Réseau…") is copied
    byte for byte (tifffile's decoded text may be shorter, shifting every later key's text)."""
    try:
        fh = page.parent.filehandle
        fh.seek(tag.valueoffset)
        raw = fh.read(tag.count)
    except (AttributeError, OSError, ValueError):  # a closed file: the text as tifffile decoded it
        raw = b""
    if len(raw) != tag.count:
        raw = tag.value.encode("utf-8") + b"\0"
    return raw


def geotiff_tags(page) -> tuple:
    """The GeoTIFF tags of a tifffile page as ``extratags`` for :func:`tifffile.imwrite`: tuples
    ``(code, datatype, count, value, True)``; () when no tag places its grid. A grid without a
    GeoKeyDirectory (no CRS in the file: some writers' baseline profiles, the CRS then in a PAM
    file) is kept, as GDAL places it; a lone tag that places none (a pixel scale without a
    tiepoint) is not, so a world file beside the TIFF places it, as in GDAL."""
    import tifffile

    found = []
    for code in _GEOTIFF_CODES:
        tag = page.tags.get(code)
        if tag is not None:
            value = _ascii_bytes(page, tag) if isinstance(tag.value, str) else tag.value
            found.append((code, int(tag.dtype), int(tag.count), value, True))
    codes = {f[0] for f in found}
    if not codes & {33550, 33922, 34264}:
        return ()
    if 34735 not in codes and _tags_transform(tuple(found)) is None:  # no CRS and no grid: a world file's job
        return ()
    try:  # tags tifffile cannot write back would fail the labels' writing: check them on one pixel
        tifffile.imwrite(io.BytesIO(), np.zeros((1, 1), np.uint8), extratags=found)
    except (ValueError, TypeError, struct.error):
        return ()
    return tuple(found)


# -- sidecars: world files, GDAL's .aux.xml, ESRI's .prj ---------------------------------------


@dataclass(frozen=True)
class SidecarGeoreference:
    """A photo's georeferencing read from files beside it.

    ``transform``: GDAL's GeoTransform, six floats ``(x0, pixel width, row rotation, y0,
    column rotation, pixel height)``, map coordinates of a pixel's top-left corner
    ``x = x0 + col * t[1] + row * t[2]``, ``y = y0 + col * t[4] + row * t[5]``; ``srs``: the
    coordinate reference system as WKT, or None; ``sources``: the file names it came from;
    ``over_tags``: a GeoTIFF's PAM file, read before its tags (:func:`pam_over_tags`): the label
    TIFFs carry the tags too, and their PAM file then holds the grid as well, so GDAL reads them
    as it reads the photo.
    """

    transform: tuple[float, ...]
    srs: str | None
    sources: tuple[str, ...]
    over_tags: bool = False

    def world_file_text(self) -> str:
        """The six lines of an ESRI world file (A, D, B, E, C, F), which place the *centre* of the
        top-left pixel (hence the half-pixel shift from GDAL's corner origin)."""
        x0, a, b, y0, d, e = self.transform
        c, f = x0 + 0.5 * a + 0.5 * b, y0 + 0.5 * d + 0.5 * e
        return "".join(f"{v!r}\n" for v in (a, d, b, e, c, f))

    def note(self) -> str:
        """The run record's word on it."""
        crs = f" and CRS ({srs_name(self.srs)})" if self.srs else ""
        return (
            f"georeferencing{crs} from {', '.join(self.sources)}: copied beside the label TIFFs "
            f"({', '.join(sidecar_files('<labels>', self))}); the instances' centroids in its "
            "coordinates: map_x, map_y of the instances CSV"
        )


def sidecar_names(path: Path) -> list[Path]:
    """Every file beside ``path`` that :func:`read_sidecars` reads: GDAL's PAM file, the world
    files (:func:`world_file_names`) and ESRI's ``.prj``."""
    return [
        path.with_name(path.name + ".aux.xml"),
        *world_file_names(path),
        path.with_suffix(".prj"),
        path.with_suffix(".PRJ"),
    ]


def world_file_names(path: Path) -> list[Path]:
    """The world files GDAL looks for beside ``path``: the first and last letters of its
    extension and a ``w`` (``.jgw``, ``.tfw``), the extension and a ``w`` (``.jpgw``), ``.wld``;
    each in lower and upper case."""
    ext = path.suffix[1:]
    if not ext:
        return []
    names = []
    for cand in (ext[0] + ext[-1] + "w", ext + "w", "wld"):
        for case in (cand.lower(), cand.upper()):
            names.append(path.with_suffix("." + case))
    return names


def _read_world_file(path: Path) -> tuple[float, ...] | None:
    """GDAL's GeoTransform of a world file; None when it is not six finite numbers placing a
    non-degenerate grid (GDAL ignores such a file too)."""
    try:
        lines = [s.strip() for s in path.read_text(errors="replace").splitlines() if s.strip()]
        # a decimal comma, as software under a European locale writes them (GDAL's CPLAtofM takes it)
        a, d, b, e, c, f = (float(s.replace(",", ".") if "." not in s else s) for s in lines[:6])
    except (OSError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (a, d, b, e, c, f)) or a * e - b * d == 0:
        return None
    return (c - 0.5 * a - 0.5 * b, a, b, f - 0.5 * d - 0.5 * e, d, e)


def _read_pam(path: Path) -> tuple[tuple[float, ...] | None, str | None]:
    """GeoTransform and SRS of GDAL's PAM file ``<file>.aux.xml``; (None, None) without one."""
    pam = path.with_name(path.name + ".aux.xml")
    if not is_file(pam):
        return None, None
    try:
        root = ElementTree.parse(pam).getroot()
    except (OSError, ElementTree.ParseError):
        return None, None
    srs = _text_srs(root.findtext("SRS") or "")
    transform = None
    text = root.findtext("GeoTransform")
    if text:
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) == 6 and all(map(math.isfinite, values)) and values[1] * values[5] - values[2] * values[4]:
            transform = values
    return transform, srs


def srs_name(srs: str) -> str:
    """A CRS's name for a note: its WKT's name (``PROJCS["WGS 84 / UTM zone 15N", ...``), or the text
    itself when short (``EPSG:32633``), else its first 40 characters."""
    import re

    named = re.match(r'\s*[A-Z_]+\[\s*"([^"]{1,100})"', srs)
    return named.group(1) if named else srs if len(srs) <= 40 else srs[:40] + "..."


def _text_srs(text: str) -> str | None:
    """A CRS given as text (WKT, "EPSG:…"), or None when the text is empty or not text: control
    characters would make the .aux.xml written beside the labels invalid XML for GDAL."""
    text = text.strip()
    if not text or len(text) > 100_000 or any(ord(c) < 32 and c not in "\r\n\t" for c in text):
        return None
    return text


def read_sidecars(path) -> SidecarGeoreference | None:
    """The georeferencing of the image file ``path`` from its sidecars, or None when it has none
    placing its grid: the PAM file's GeoTransform, else a world file's (GDAL's order for JPEG and
    PNG), with the PAM file's SRS, else a ``.prj`` file's WKT (ESRI's), for the CRS."""
    path = Path(path)
    transform, srs = _read_pam(path)
    sources = [path.name + ".aux.xml"] if transform is not None or srs else []
    if transform is None:
        for world in world_file_names(path):
            if is_file(world) and (transform := _read_world_file(world)) is not None:
                sources.append(world.name)
                break
    if transform is None:
        return None
    if srs is None:
        prj = next((p for p in (path.with_suffix(".prj"), path.with_suffix(".PRJ")) if is_file(p)), None)
        try:
            srs = _text_srs(prj.read_text(errors="replace")) if prj is not None else None
        except OSError:  # unreadable: the labels are placed all the same, without a CRS
            srs = None
        if srs:
            sources.append(prj.name)
    return SidecarGeoreference(tuple(float(v) for v in transform), srs, tuple(sources))


def pam_over_tags(path, tags: tuple) -> tuple[SidecarGeoreference | None, str | None]:
    """``(georeference, note)`` of a GeoTIFF's PAM file (``<file>.aux.xml``), which GDAL reads
    before the GeoTIFF ``tags`` (:func:`geotiff_tags`); ``(None, None)`` when it holds neither a
    GeoTransform nor an SRS. The georeference's transform is the PAM's, else the tags' grid (None,
    with ``(None, None)``, when the tags hold only ground control points); its SRS the PAM's, else
    None (the tags' CRS stays in the tags, which the label TIFFs also carry)."""
    path = Path(path)
    transform, srs = _read_pam(path)
    name = path.name + ".aux.xml"
    what = " and ".join(w for w, read in (("grid", transform is not None), ("CRS", bool(srs))) if read)
    if transform is None and srs:
        transform = _tags_transform(tags)
    if transform is None:
        return None, None
    geo = SidecarGeoreference(tuple(float(v) for v in transform), srs, (name,), over_tags=True)
    crs = geotiff_crs(tags) if not srs else srs_name(srs)
    note = (
        f"GeoTIFF georeferencing{f' ({crs})' if crs else ''} with the {what} of {name} over its tags, as GDAL "
        f"reads it: copied to the label TIFFs (tags, {', '.join(sidecar_files('<labels>', geo))}); the instances' "
        "centroids in its coordinates: map_x, map_y of the instances CSV"
    )
    return geo, note


def sidecar_files(labels_stem: str, geo: SidecarGeoreference | None) -> list[str]:
    """The sidecars written beside the label TIFF ``<labels_stem>.tif``: its world file, and a
    PAM file with the SRS when the photo's CRS is known, or with the grid over the tags
    (:func:`pam_over_tags`)."""
    if geo is None:
        return []
    return [f"{labels_stem}.tfw"] + ([f"{labels_stem}.tif.aux.xml"] if geo.srs or geo.over_tags else [])


def sidecar_texts(labels_stem: str, geo: SidecarGeoreference) -> dict[str, str]:
    """{file name: text} of :func:`sidecar_files`."""
    from xml.sax.saxutils import escape

    texts = {f"{labels_stem}.tfw": geo.world_file_text()}
    if geo.srs or geo.over_tags:
        srs = f"  <SRS>{escape(geo.srs)}</SRS>\n" if geo.srs else ""
        # over a GeoTIFF's tags the grid must be in the PAM too: GDAL reads it before the tags
        grid = f"  <GeoTransform>{', '.join(repr(v) for v in geo.transform)}</GeoTransform>\n" if geo.over_tags else ""
        texts[f"{labels_stem}.tif.aux.xml"] = f"<PAMDataset>\n{srs}{grid}</PAMDataset>\n"
    return texts
