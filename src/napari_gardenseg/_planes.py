"""Which 2-D plane(s) of a napari Image layer to segment, and where the output layers go.

:func:`plane_source` runs in the GUI thread and reads no pixels: it returns a
:class:`PlaneSource` that holds a reference to the layer's array and the
output geometry. :func:`current_plane` is the one way to find the plane the
viewer shows (the segmentation and training widgets both use it).

* The last two axes of a layer (before the colour axis of an RGB image) are
  (Y, X); the axes in front of them (Z, T, ...) index planes.
* "Current plane" (``stack=False``): the plane at the viewer's dims point; the
  output is a one-plane slab (shape ``(1, ..., 1, H, W)``) translated to the
  plane's position, so napari shows it on that plane only.
* "Whole stack" (``stack=True``): every plane, in C order.
* Multiscale images: level 0, or with ``max_pixels`` the finest level whose
  plane has at most that many pixels (the output's scale then follows
  napari's multiscale convention).
* A plane over :data:`MAX_PLANE_PIXELS` is "big": its labels go into a zarr
  store instead of memory (:mod:`napari_gardenseg._plane_run`, and the batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PlaneSource", "plane_source", "current_plane", "still_holds", "placed_as_now", "MAX_PLANE_PIXELS"]

# Planes above this many pixels are segmented into a zarr store, not into memory:
# two int32 label images of 64 Mpx are 512 MB before napari makes its own copies.
MAX_PLANE_PIXELS = 8192 * 8192


@dataclass
class PlaneSource:
    """The plane(s) of an Image layer to segment, and where the results go.

    Holds a reference to the layer's array (one pyramid level), never its
    pixels: :meth:`read` takes one plane.
    """

    name: str  # the image layer's name: output layers are named after it
    data: Any  # array-like of the chosen level, colour axis last when rgb
    rgb: bool
    planes: list[tuple[int, ...]]  # leading-axis index of each plane to segment
    stack: bool
    scale: np.ndarray  # of the output layers (spatial axes only)
    translate: np.ndarray
    units: tuple | None = None
    axis_labels: tuple | None = None
    level: int = 0  # multiscale level read (0 = full resolution)
    # the layer's rotate (ndim x ndim), shear and affine ((ndim + 1)^2) when any is not the
    # identity: the output layers get them too, so the labels lie on the image however it is placed
    rotate: np.ndarray | None = None
    shear: np.ndarray | None = None
    affine: np.ndarray | None = None
    path: str | None = None  # the file the layer was read from (napari's layer.source.path), if any
    # the physical size of a pixel of the output layers (_pixel_size.PixelSize): the layer's scale
    # where its units are lengths, else what its file states (read off the GUI thread: run_planes)
    layer_pixel_size: Any = None
    file_pixel_size: Any = None
    # the layer's file's GeoTransform (a drone orthophoto's: map_x, map_y in the features) and the
    # ground area of its pixel in m² where its CRS is in metres (read off the GUI thread: run_planes)
    map_grid: tuple | None = None
    ground_pixel_m2: float | None = None
    image_id: str | None = None  # napari's unique_id of that layer: its outputs are found after a rename
    view_note: str | None = None  # the view shows other axes than the plane segmented (plane_source)
    display_note: str | None = None  # napari shows the values stretched: not what was segmented
    shown: tuple | None = ()  # the plane the view showed at the start (None: none of this layer's)
    projected: bool = False  # the view shows a projection of planes, one of which was segmented

    @property
    def pixel_size(self):
        """The layer's pixel size where its scale has length units, else its file's, else None."""
        return self.layer_pixel_size or self.file_pixel_size

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        shape = tuple(int(s) for s in self.data.shape)
        return shape[:-1] if self.rgb else shape

    @property
    def lead_shape(self) -> tuple[int, ...]:
        return self.spatial_shape[:-2]

    @property
    def plane_shape(self) -> tuple[int, int]:
        return self.spatial_shape[-2:]

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Shape of the output label arrays: the whole stack or a one-plane slab."""
        lead = self.lead_shape if self.stack else (1,) * len(self.lead_shape)
        return lead + self.plane_shape

    @property
    def out_translate(self) -> np.ndarray:
        """The slab of the current plane sits at that plane's position."""
        t = np.array(self.translate, dtype=float)
        if not self.stack and self.lead_shape:
            lead = np.array(self.planes[0], dtype=float)
            # napari places data at translate + rotate @ shear @ scale @ index: the slab's origin
            # moves by that linear map of the plane's index (the affine comes after, unchanged)
            t += self.linear_matrix[:, : len(lead)] @ lead
        return t

    @property
    def linear_matrix(self) -> np.ndarray:
        """rotate @ shear @ scale of the output layers (ndim x ndim), as napari composes them."""
        if self.rotate is None and self.shear is None:
            return np.diag(np.asarray(self.scale, dtype=float))
        from napari.utils.transforms import Affine

        return Affine(scale=self.scale, rotate=self.rotate, shear=self.shear, ndim=len(self.scale)).linear_matrix

    def out_index(self, i: int) -> tuple[int, ...]:
        """Where plane ``i`` goes in the output arrays."""
        return self.planes[i] if self.stack else (0,) * len(self.lead_shape)

    def plane(self, i: int):
        """Plane ``i``: a numpy view, or a lazy slice (dask, zarr) that segment reads tile by tile."""
        data = self.data
        if isinstance(data, np.ndarray) or not self.planes[i]:
            return data[self.planes[i]] if self.planes[i] else data
        plane = data[self.planes[i]]
        return plane if hasattr(plane, "shape") and not isinstance(plane, np.ndarray) else np.asarray(plane)

    @property
    def big(self) -> bool:
        """One plane too big to hold its labels in memory (see :data:`MAX_PLANE_PIXELS`)."""
        h, w = self.plane_shape
        return h * w > MAX_PLANE_PIXELS and len(self.planes) == 1


def still_holds(layer, source: PlaneSource) -> bool:
    """Whether ``layer`` still holds the array ``source`` was described from (False once its data
    was replaced, e.g. by ``layer.data = other`` during a run)."""
    levels = _levels(layer)
    return source.level < len(levels) and levels[source.level] is source.data


def placed_as_now(layer, source: PlaneSource) -> PlaneSource:
    """``source`` named and placed as ``layer`` is now (its name, scale, translate, units, axis
    labels, rotate, shear and affine): a user may rename, move or rescale the image during a run,
    and the labels must lie on it as it is then. ``layer`` must still hold ``source``'s array
    (:func:`still_holds`)."""
    import dataclasses

    return dataclasses.replace(source, **_placed(layer, _level_factors(layer, source.rgb, source.spatial_shape)))


def _level_factors(layer, rgb: bool, spatial) -> np.ndarray:
    """Full resolution's pixels per pixel of the level of spatial shape ``spatial``, per axis."""
    level0 = _levels(layer)[0]
    spatial0 = tuple(int(v) for v in (level0.shape[:-1] if rgb else level0.shape))
    return np.array(spatial0, dtype=float) / np.array(spatial, dtype=float)


def _placed(layer, factors) -> dict:
    """Where output layers of a level ``factors`` coarser than ``layer``'s full resolution lie, and
    their name: the layer's as they are now (rotate, shear and affine None where the identity)."""
    from ._pixel_size import layer_pixel_size

    scale = np.asarray(layer.scale, dtype=float) * factors
    units = tuple(layer.units) if getattr(layer, "units", None) is not None else None
    placement = _placement(layer)
    affine = placement.get("affine")
    # rotate and shear keep areas, an affine may scale them: then the layer's scale is no pixel size
    keeps_area = affine is None or abs(abs(np.linalg.det(np.asarray(affine)[-3:-1, -3:-1])) - 1) < 1e-9
    uid = getattr(layer, "unique_id", None)
    return {
        "name": layer.name,
        "image_id": None if uid is None else str(uid),  # a string: layer metadata stays JSON
        "layer_pixel_size": layer_pixel_size(scale, units) if keeps_area else None,
        "scale": scale,
        "translate": np.asarray(layer.translate, dtype=float),
        "units": units,
        "axis_labels": tuple(layer.axis_labels) if getattr(layer, "axis_labels", None) is not None else None,
        **({"rotate": None, "shear": None, "affine": None} | placement),
    }


def _levels(layer) -> list:
    return list(layer.data) if getattr(layer, "multiscale", False) else [layer.data]


def _plane_pixels(shape, rgb: bool) -> int:
    spatial = shape[:-1] if rgb else shape
    return int(np.prod(spatial[-2:], dtype=np.int64))


def _pick_level(levels, rgb: bool, max_pixels: int) -> int:
    for k, level in enumerate(levels):
        if _plane_pixels(level.shape, rgb) <= max_pixels:
            return k
    return len(levels) - 1


def current_plane(layer, point, *, clip: bool = True) -> tuple[int, ...] | None:
    """Leading-axis index (level 0) of the plane at world position ``point``.

    ``point`` is ``viewer.dims.point``; it may have more axes than the layer
    (the later ones are the layer's). Rounded and clipped like napari's own
    slicing, so it is the plane the user sees. ``clip=False``: None when the
    layer has no plane there (e.g. a one-plane slab of another plane).
    """
    rgb = bool(getattr(layer, "rgb", False))
    shape0 = tuple(_levels(layer)[0].shape)
    spatial = shape0[:-1] if rgb else shape0
    nlead = len(spatial) - 2
    if nlead <= 0:
        return ()
    if point is None:
        return (0,) * nlead
    data_pos = np.asarray(layer.world_to_data(np.asarray(point, dtype=float)), dtype=float)
    idx = np.round(data_pos[-len(spatial) :][:nlead]).astype(int)
    if not clip and any(not 0 <= i < n for i, n in zip(idx, spatial[:nlead])):
        return None
    return tuple(int(np.clip(i, 0, n - 1)) for i, n in zip(idx, spatial[:nlead]))


def plane_source(
    layer, *, point=None, displayed=None, margins=None, stack: bool = False, max_pixels: int | None = None
) -> PlaneSource:
    """Describe what to segment in ``layer`` (an Image layer) without reading pixels.

    ``point``: the viewer's ``dims.point`` (world coordinates), used for the
    current plane of a stack; None means the first plane. ``displayed``: the
    viewer's ``dims.displayed`` (world axes on screen); when a stack's current
    plane is segmented while the view shows other axes than its last two (a
    transposed Z-X view), ``view_note`` says so: planes are always Y-X.
    ``margins``: the viewer's slab (:func:`view_margins`); when the layer is
    shown as a projection of several planes (its ``projection_mode``, napari
    0.5's thick slices), ``view_note`` says that one plane was segmented, and
    ``projected`` is True.
    """
    from ._image_arrays import ImageError

    if layer is None:
        raise ValueError("no image layer to segment: open an image (or File > Open Sample > Garden segmentation) first")
    from napari.layers import Image

    if not isinstance(layer, Image):
        raise ValueError(f"layer {layer.name!r} is not an Image layer; pick an image to segment")
    rgb = bool(layer.rgb)
    levels = _levels(layer)
    shape0 = tuple(int(s) for s in levels[0].shape)
    spatial0 = shape0[:-1] if rgb else shape0
    if len(spatial0) < 2:
        raise ImageError(
            f"layer {layer.name!r} has {len(spatial0)} spatial axis; a 2-D image or a stack of them is needed"
        )
    if 0 in shape0:
        raise ImageError(f"the image {layer.name!r} is empty (shape {shape0}); nothing to segment")
    if not rgb and len(shape0) >= 3 and shape0[-1] == 2 and shape0[-2] > 2:
        # a grey photo with alpha (a PNG of mode LA, as napari's own reader gives it) is shown as a
        # stack of slivers of N x 2 pixels; napari has no grey + alpha display to add it as
        raise ImageError(
            f"layer {layer.name!r} (shape {shape0}) looks like a grey image with an alpha channel, which napari "
            f"shows as a stack of {shape0[-2]} x 2 pixel planes; add its grey channel as an image: "
            f"viewer.add_image(viewer.layers[{layer.name!r}].data[..., 0]), or segment the file with "
            "gs.segment(path) or gardenseg segment, which read it as grey with its alpha"
        )
    if not rgb and len(shape0) >= 3 and shape0[-1] in (3, 4) and shape0[-2] > shape0[-1]:
        # a colour photo that napari shows as a stack (rgb=False, given by a reader or a script, or
        # guessed so because a side is 30 px or less): its planes would be slivers of N x 3 pixels
        raise ImageError(
            f"layer {layer.name!r} (shape {shape0}) is not shown as a colour image, so each of its planes is "
            f"{shape0[-2]} x {shape0[-1]} pixels; if it is a colour photo, add it again as one: "
            f"viewer.add_image(viewer.layers[{layer.name!r}].data, rgb=True)"
        )

    k = 0 if max_pixels is None else _pick_level(levels, rgb, max_pixels)
    data = levels[k]
    spatial = tuple(int(s) for s in (data.shape[:-1] if rgb else data.shape))
    factors = _level_factors(layer, rgb, spatial)
    nlead = len(spatial) - 2
    if stack:
        planes = [tuple(int(v) for v in i) for i in np.ndindex(*spatial[:nlead])] if nlead else [()]
    else:
        idx0 = current_plane(layer, point)
        # napari picks a plane of a coarser level by rounding the scaled index
        idx = tuple(int(min(round(i / f), n - 1)) for i, f, n in zip(idx0, factors[:nlead], spatial[:nlead]))
        planes = [idx]
    view_note = None
    shown = current_plane(layer, point, clip=False) if not stack and nlead and point is not None else planes[0]
    if not stack and nlead and displayed is not None and len(displayed) == 3:
        view_note = (
            f"the view is 3-D: the plane {planes[0]} of {layer.name!r} under the sliders was segmented, and its "
            "labels lie on that plane; choose 'whole stack' to segment every plane"
        )
    elif shown is None:  # napari draws nothing of the layer there (the slider is on a longer stack's planes)
        view_note = (
            f"the sliders are outside the planes of {layer.name!r} (napari shows none of it there): "
            f"its nearest plane {planes[0]} was segmented, and its labels lie on that plane"
        )
    elif not stack and nlead and displayed is not None and len(displayed) == 2:
        world = len(point) if point is not None else layer.ndim
        yx = {world - 2, world - 1}  # napari lines a layer's axes up with the viewer's last ones
        if set(int(a) for a in displayed) != yx:
            view_note = (
                f"the view shows axes {tuple(int(a) for a in displayed)}, not the Y-X planes of {layer.name!r}: "
                f"its Y-X plane {planes[0]} (the last two axes) was segmented; napari's transpose and roll "
                "buttons bring the Y-X view back"
            )
    projection = _projection_note(layer, point, margins, displayed, spatial0, idx0) if not stack and nlead else None
    return PlaneSource(
        data=data,
        rgb=rgb,
        planes=planes,
        stack=bool(stack) and nlead > 0,
        level=k,
        path=_source_path(layer),
        view_note=projection or view_note,
        shown=shown,
        display_note=_stretch_note(layer, data) or _ink_note(layer, data),
        projected=projection is not None,
        **_placed(layer, factors),
    )


def moved_note(layer, source: PlaneSource, point, displayed=None) -> str | None:
    """What to say when the slider moved during a *current plane* run, away from the plane it
    segmented: where its labels lie. None when the view shows what it showed at the start (the
    run's own notes say where that was), in a 3-D view, for a whole-stack run, or for a coarser
    pyramid level (whose plane numbers differ)."""
    if source.stack or not source.lead_shape or source.level != 0:
        return None
    if displayed is not None and len(displayed) == 3:
        return None
    now = current_plane(layer, point, clip=False)
    if now == source.shown or now == source.planes[0]:
        return None
    shown = f"the view shows its plane {now}" if now is not None else "the view shows none of its planes"
    return (
        f"these labels lie on plane {source.planes[0]} of {layer.name!r} (the plane when Run was pressed); "
        f"{shown}: move the slider back to see them"
    )


# contrast limits at most this share of 8 bits' range: the photo napari shows is far brighter than
# the values segmented (the intensity rule maps uint8 as stored, 0..255)
STRETCHED_SHARE = 1 / 2


def _stretch_note(layer, data) -> str | None:
    """What to say when an 8-bit ``layer`` is shown stretched to narrow contrast limits: the
    values as stored were segmented, not as the screen shows them. None otherwise (other types
    are scaled by the intensity rule, and a dark one is said by the run's own note)."""
    if getattr(data, "dtype", None) != np.uint8:
        return None
    lo, hi = (float(v) for v in layer.contrast_limits)
    if hi - lo > STRETCHED_SHARE * 255:
        return None
    note = (
        f"napari shows {layer.name!r} stretched to its contrast limits {lo:g}..{hi:g}; its values as stored "
        "(0..255) were segmented, not as shown"
    )
    if getattr(layer, "multiscale", False):
        return note
    rgb = ", rgb=True" if layer.rgb else ""
    return (
        f"{note}: to segment what you see, add the stretched copy, viewer.add_image(np.clip("
        f"(np.asarray(viewer.layers[{layer.name!r}].data, float) - {lo:g}) * {255 / (hi - lo):.4g}, 0, 255)"
        f".astype('uint8'){rgb})"
    )


def _ink_note(layer, data) -> str | None:
    """What to say when an RGBA-looking layer holds a CMYK JPEG's or TIFF's inks as napari's own
    reader gives them (cyan, magenta, yellow, black: the black taken for alpha and the rest for
    colours, so plants are not green): the plugin's reader converts them. None otherwise."""
    path = _source_path(layer)
    if path is None or not getattr(layer, "rgb", False) or int(getattr(data, "shape", (0,))[-1]) != 4:
        return None
    try:
        from PIL import Image

        with Image.open(path) as im:  # the header only
            if im.mode != "CMYK":
                return None
    except Exception:  # noqa: BLE001 - not a file Pillow knows: nothing to say
        return None
    return (
        f"{layer.name!r} holds the inks of a CMYK file (cyan, magenta, yellow, black) as napari's reader "
        "gives them, segmented as red, green, blue and alpha: open the file with File > Open with Plugin > "
        "napari-gardenseg, which converts it to its colours"
    )


def view_margins(dims) -> tuple | None:
    """The viewer's slab around ``dims.point`` (napari 0.5's thick slices): ``(margin_left,
    margin_right)`` in world units per axis, or None in a napari without them."""
    if not hasattr(dims, "margin_left"):
        return None
    return tuple(float(v) for v in dims.margin_left), tuple(float(v) for v in dims.margin_right)


def _projection_note(layer, point, margins, displayed, spatial: tuple, plane: tuple) -> str | None:
    """What to say when ``layer`` is shown as a projection (max, mean...) of several of its planes
    (its ``projection_mode`` and the viewer's slab, ``margins`` of :func:`view_margins`): the
    plane under the slider was segmented, not what the screen shows. None otherwise. The planes
    are those napari's slicing takes (``napari.layers._scalar_field._slice``: the slab's ends
    rounded in data units)."""
    mode = str(getattr(layer, "projection_mode", "none") or "none").lower()
    if mode == "none" or margins is None or point is None:
        return None
    nlead = len(spatial) - 2
    offset = len(point) - len(spatial)  # napari lines a layer's axes up with the viewer's last ones
    at = np.asarray(layer.world_to_data(np.asarray(point, dtype=float)), dtype=float)[-len(spatial) :]
    scale = np.abs(np.asarray(layer.scale, dtype=float)[-len(spatial) :])
    left, right = margins
    projected = {}
    for axis in range(nlead):
        w = offset + axis
        if w < 0 or w >= len(left) or (displayed is not None and w in tuple(displayed)):
            continue  # an axis on screen (a 3-D view, a transposed one) is no projection
        m_left, m_right = left[w] / scale[axis], right[w] / scale[axis]
        low = max(int(np.round(at[axis] - m_left)), 0)
        high = max(int(np.round(at[axis] + m_right)), 0)
        if np.isclose(high, at[axis] + m_right):
            high += 1  # as napari: a slab's end on a plane includes it
        high = min(max(high, low + 1), spatial[axis])
        if high - low > 1:
            projected[axis] = (low, high)
    if not projected:
        return None
    planes = " and ".join(f"{lo}–{hi - 1} of axis {axis}" for axis, (lo, hi) in projected.items())
    where = ", ".join(str(i) for i in plane)
    index = ", ".join(f"{projected[a][0]}:{projected[a][1]}" if a in projected else str(plane[a]) for a in range(nlead))
    axes = "0" if len(projected) == 1 else str(tuple(range(len(projected))))
    data = f"viewer.layers[{layer.name!r}].data{'[0]' if layer.multiscale else ''}"
    return (
        f"{layer.name!r} is shown as the {mode} projection of its planes {planes}, but one plane is segmented: "
        f"its plane ({where}) under the slider; set the layer's projection to 'none' to see that plane, or add "
        f"the projection as an image and segment it: viewer.add_image({data}[{index}].{mode}(axis={axes}), "
        f"rgb={bool(layer.rgb)})"
    )


def _source_path(layer) -> str | None:
    """The file napari read ``layer`` from, or None (made in a script, a sample, a plugin's widget;
    read from a folder: a zarr store or a stack of files, which hold no georeferencing here)."""
    from pathlib import Path

    path = getattr(getattr(layer, "source", None), "path", None)
    return str(path) if path and Path(path).is_file() else None


def _placement(layer) -> dict:
    """The layer's rotate, shear and affine that are not the identity (napari's own values)."""
    ndim = int(layer.ndim)
    found = {}
    rotate = np.asarray(getattr(layer, "rotate", np.eye(ndim)), dtype=float)
    if rotate.shape == (ndim, ndim) and not np.allclose(rotate, np.eye(ndim)):
        found["rotate"] = rotate
    shear = np.asarray(getattr(layer, "shear", ()), dtype=float)
    if shear.size and np.any(shear != 0) and not (shear.ndim == 2 and np.allclose(shear, np.eye(ndim))):
        found["shear"] = shear
    affine = getattr(layer, "affine", None)
    matrix = np.asarray(getattr(affine, "affine_matrix", np.eye(ndim + 1)), dtype=float)
    if matrix.shape == (ndim + 1, ndim + 1) and not np.allclose(matrix, np.eye(ndim + 1)):
        found["affine"] = matrix
    return found
