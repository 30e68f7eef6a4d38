"""Georeferencing kept beside an image rather than in it: world files and GDAL's ``.aux.xml``.

Orthophotos exported as JPEG or PNG (QGIS's *Save as Image*, drone mapping services) and plain
TIFFs carry their pixel grid's position in a *world file* beside them (``ortho.jgw`` for
``ortho.jpg``, ``.pgw``, ``.tfw``, ``.wld``: six lines, the ESRI format) and often their
coordinate reference system in GDAL's PAM file (``ortho.jpg.aux.xml``, an ``<SRS>`` element,
sometimes a ``<GeoTransform>`` too). GDAL, and so QGIS, reads both; the label TIFFs of such a
photo get the same two sidecars (``<name>_labels.tfw``, ``<name>_labels.tif.aux.xml``), so
they lie on the photo in GIS software as a GeoTIFF's labels do (:mod:`._reader` copies a
GeoTIFF's own tags instead; they win over sidecars, as in GDAL's GTiff driver).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

__all__ = ["SidecarGeoreference", "read_sidecars", "sidecar_files", "sidecar_texts"]


@dataclass(frozen=True)
class SidecarGeoreference:
    """A photo's georeferencing read from files beside it.

    ``transform``: GDAL's GeoTransform, six floats ``(x0, pixel width, row rotation, y0,
    column rotation, pixel height)``, map coordinates of a pixel's top-left corner
    ``x = x0 + col * t[1] + row * t[2]``, ``y = y0 + col * t[4] + row * t[5]``; ``srs``: the
    coordinate reference system as WKT, or None; ``sources``: the file names it came from.
    """

    transform: tuple[float, ...]
    srs: str | None
    sources: tuple[str, ...]

    def world_file_text(self) -> str:
        """The six lines of an ESRI world file (A, D, B, E, C, F), which place the *centre* of the
        top-left pixel (hence the half-pixel shift from GDAL's corner origin)."""
        x0, a, b, y0, d, e = self.transform
        c, f = x0 + 0.5 * a + 0.5 * b, y0 + 0.5 * d + 0.5 * e
        return "".join(f"{v!r}\n" for v in (a, d, b, e, c, f))

    def to_map(self, row, col):
        """``(x, y)`` in the CRS of pixel coordinates with pixel centres at integers, as
        centroids are; works on numpy arrays elementwise."""
        x0, a, b, y0, d, e = self.transform
        return x0 + (col + 0.5) * a + (row + 0.5) * b, y0 + (col + 0.5) * d + (row + 0.5) * e

    def note(self) -> str:
        """The run record's word on it."""
        crs = " and CRS" if self.srs else ""
        return (
            f"georeferencing{crs} from {', '.join(self.sources)}: copied beside the label TIFFs "
            f"({', '.join(sidecar_files('<labels>', self))}); the instances' centroids in its "
            "coordinates: map_x, map_y"
        )


def _world_file_names(path: Path) -> list[Path]:
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
        a, d, b, e, c, f = (float(s) for s in lines[:6])
    except (OSError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (a, d, b, e, c, f)) or a * e - b * d == 0:
        return None
    return (c - 0.5 * a - 0.5 * b, a, b, f - 0.5 * d - 0.5 * e, d, e)


def _read_pam(path: Path) -> tuple[tuple[float, ...] | None, str | None]:
    """GeoTransform and SRS of GDAL's PAM file ``<file>.aux.xml``; (None, None) without one."""
    pam = path.with_name(path.name + ".aux.xml")
    if not pam.is_file():
        return None, None
    try:
        root = ElementTree.parse(pam).getroot()
    except (OSError, ElementTree.ParseError):
        return None, None
    srs = (root.findtext("SRS") or "").strip() or None
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


def read_sidecars(path) -> SidecarGeoreference | None:
    """The georeferencing of the image file ``path`` from its sidecars, or None when it has none
    placing its grid: the PAM file's GeoTransform, else a world file's (GDAL's order for JPEG and
    PNG), with the PAM file's SRS, else a ``.prj`` file's WKT (ESRI's), for the CRS."""
    path = Path(path)
    transform, srs = _read_pam(path)
    sources = [path.name + ".aux.xml"] if transform is not None or srs else []
    if transform is None:
        for world in _world_file_names(path):
            if world.is_file() and (transform := _read_world_file(world)) is not None:
                sources.append(world.name)
                break
    if transform is None:
        return None
    if srs is None:
        prj = next((p for p in (path.with_suffix(".prj"), path.with_suffix(".PRJ")) if p.is_file()), None)
        if prj is not None:
            srs = prj.read_text(errors="replace").strip() or None
            if srs:
                sources.append(prj.name)
    return SidecarGeoreference(tuple(float(v) for v in transform), srs, tuple(sources))


def sidecar_files(labels_stem: str, geo: SidecarGeoreference | None) -> list[str]:
    """The sidecars written beside the label TIFF ``<labels_stem>.tif``: its world file, and a
    PAM file with the SRS when the photo's CRS is known."""
    if geo is None:
        return []
    return [f"{labels_stem}.tfw"] + ([f"{labels_stem}.tif.aux.xml"] if geo.srs else [])


def sidecar_texts(labels_stem: str, geo: SidecarGeoreference) -> dict[str, str]:
    """{file name: text} of :func:`sidecar_files`."""
    from xml.sax.saxutils import escape

    texts = {f"{labels_stem}.tfw": geo.world_file_text()}
    if geo.srs:
        texts[f"{labels_stem}.tif.aux.xml"] = f"<PAMDataset>\n  <SRS>{escape(geo.srs)}</SRS>\n</PAMDataset>\n"
    return texts
