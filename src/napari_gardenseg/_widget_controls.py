"""The controls of the "Garden segmentation" widget, and what they mean for a run.

:class:`SegmentationControls` builds the widgets, keeps the image and model
lists current, and turns what is shown into the run's :class:`~napari_gardenseg._options.SegmentOptions`
(:meth:`~SegmentationControls.segment_options`).
Running a job is :class:`napari_gardenseg._widget.SegmentationWidget`'s part.

What is shown is what runs: choosing a model reads its stored settings from
the checkpoint at once (:func:`napari_gardenseg._models.model_info`, no
network weights are built) and puts them, or the engine's defaults when the
model stores none (:data:`napari_gardenseg._options.DEFAULTS`), into the thresholds and CRF controls before anything can
run; the ``settings`` line says which.

Models offered: COCO v2 and v1, the bundled garden model, every checkpoint in
the user's models folder (:func:`napari_gardenseg._files.user_models_dir`,
where the training widget saves), checkpoints registered with
:func:`register_model`, and a file picker.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
import weakref
from pathlib import Path
from typing import Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    FloatSpinBox,
    Label,
    PushButton,
    RadioButtons,
    Select,
    SpinBox,
    create_widget,
)

from ._files import user_models
from ._options import (
    DEFAULT_MODEL,
    DEFAULTS,
    MASK_RCNN_THRESHOLD,
    MODEL_NAMES,
    MODEL_TITLES,
    SCALE_RANGE,
    SCORE_THRESHOLD,
    VEGETATION_MODES,
    SegmentOptions,
    default_overlap,
    model_mask_threshold,
    model_score_threshold,
)
from ._worker import keep_narrow, status_label

__all__ = ["SegmentationControls", "register_model", "model_choices", "CUSTOM"]

log = logging.getLogger(__name__)

CUSTOM = "__custom__"  # the model choice that shows the checkpoint picker
_ORDER = ("coco", "coco-v1", "garden")  # COCO v2, COCO v1, bundled
assert set(_ORDER) == set(MODEL_NAMES)
_TILE_MODES = [("off (whole image)", "off"), ("auto", "auto"), ("size in pixels…", "size")]
_SCALE_MODES = [("model default", "model"), ("auto (estimate)", "auto"), ("factor…", "factor")]
_OVERLAP_MODES = [("a quarter of the tile", "default"), ("pixels…", "pixels")]

# Models registered at run time (e.g. by the training widget): path -> title.
_REGISTERED: dict[str, str] = {}
_LIVE: weakref.WeakSet = weakref.WeakSet()
# the model last trained or adapted in this session, which a segmentation widget opened since starts on
_chosen: str | None = None
# The training and adapt panels' "start from" lists, which offer the registered models too.
_BASE_LISTS: weakref.WeakSet = weakref.WeakSet()


def reset_keeping(combo) -> None:
    """``combo.reset_choices()`` that keeps the chosen value where it is still offered: magicgui
    finds the choice again by its title, so a renamed layer or a model whose title changed
    ("(my models)" to "(trained)") would fall back to the first entry, and Run would use it."""
    keep = combo.value
    combo.reset_choices()
    restore_choice(combo, keep)


def restore_choice(combo, keep) -> None:
    """Choose ``keep`` again in ``combo`` after its choices were reset, where it is still offered."""
    if keep is not None and combo.value is not keep and any(keep is c or keep == c for c in combo.choices):
        combo.value = keep


def register_model(path, title: str | None = None, *, select: bool = False) -> str:
    """Offer the checkpoint at ``path`` in every segmentation widget's model list (and in the training
    and adapt panels' "start from" lists).

    Call from the GUI thread. Returns the choice's value (the resolved path as
    a string), which can be assigned to ``widget.model.value``. Registering a
    path again updates its title. With ``select=True`` the model also becomes
    the choice of every widget that is not running (a model just trained is
    the one the user wants to try next), and of those opened later; a running
    widget keeps its choice.
    """
    global _chosen
    key = str(Path(path).expanduser().resolve())
    _REGISTERED[key] = title or Path(key).stem
    if select:  # a segmentation widget opened later starts on it too
        _chosen = key
    for widget in list(_LIVE):
        try:
            reset_keeping(widget.model)
            if select and not getattr(widget, "running", False):
                widget.model.value = key
        except RuntimeError:  # its Qt side is gone (closed dock widget)
            _LIVE.discard(widget)
    for combo in list(_BASE_LISTS):
        try:
            reset_keeping(combo)
        except RuntimeError:
            _BASE_LISTS.discard(combo)
    return key


def model_choices(_widget=None) -> list[tuple[str, str]]:
    """(title, value) of every model on offer: COCO v2 and v1, the bundled one, the user's models
    folder, the ones registered this session (trained or adapted), then the checkpoint picker."""
    choices = [(MODEL_TITLES[name], name) for name in _ORDER]
    mine = user_models()
    files = [(f"{title} (my models)", path) for path, title in mine.items() if path not in _REGISTERED]
    files += [(f"{title} (trained)", path) for path, title in _REGISTERED.items()]
    # magicgui keeps one entry per title: two checkpoints of one name (north/model.pt, south/model.pt)
    # are told apart by their folder
    titles = [t for t, _ in files]
    files = [(f"{t} [{Path(p).parent.name}]" if titles.count(t) > 1 else t, p) for t, p in files]
    return choices + files + [("custom checkpoint…", CUSTOM)]


# -- engine defaults ----------------------------------------------------------------------


def _mode(default, none: str, number: str) -> str:
    """The choice of a tiles/scale control that shows an option's default (None, "auto" or a number)."""
    return none if default is None else "auto" if default == "auto" else number


def crf_module():
    """The CRF package (its ``CRFParams``), or None when it cannot be imported."""
    try:
        from . import crf as module
    except ImportError:
        return None
    return module


def crf_settings(stored) -> Any:
    """CRFParams from a model's stored settings (a dict, may be None) over the defaults,
    as ``segment`` reads them when ``crf_params`` is None."""
    return crf_module().CRFParams.from_any(None, stored or None)


# What each CRFParams field is called in the dock, and its tooltip (the API's name is added to it)
_CRF_WORDS = {
    "iterations": ("iterations", "mean-field iterations; 0 keeps the network's masks"),
    "gaussian_sxy": ("smoothness width (px)", "reach of the smoothness kernel, which removes small isolated bits"),
    "gaussian_compat": ("smoothness weight", "weight of the smoothness kernel; 0 turns it off"),
    "bilateral_sxy": ("appearance reach (px)", "how far the appearance kernel looks for pixels of like colour"),
    "bilateral_srgb": ("appearance colour width", "colour difference (0..255 levels) still counted as like colour"),
    "bilateral_compat": ("appearance weight", "weight of the appearance kernel, which makes masks follow colour edges"),
    "padding": ("padding (px)", "margin around each instance's uncertain region given to the CRF"),
    "max_side": ("max side (px)", "a larger instance is refined at a reduced resolution; 0: always full resolution"),
    "unary_weight": ("unary weight", "weight of the network's soft mask against the two kernels"),
    "band": ("uncertain band", "only pixels whose soft mask lies between these two values may change"),
    "min_keep": ("min kept", "keep the raw mask if the refined one keeps less than this fraction of it"),
    "thin_width": ("thin width (px)", "objects thinner than this get a weaker smoothness kernel (leaves, stems)"),
    "backend": (
        "backend",
        "auto: numba (on the CPU, also beside a GPU), else the fastest installed; numba, pydensecrf or torch",
    ),
}


def _crf_controls() -> list:
    """One control per CRFParams field, named after it (backend: a choice), labelled in words."""
    crf = crf_module()
    if crf is None:
        return []
    hints = typing.get_type_hints(crf.CRFParams)
    widgets = []
    for f in dataclasses.fields(crf.CRFParams):
        ann = hints.get(f.name, type(f.default))
        opts: dict = {}
        if ann is int:
            opts = {"min": 0, "max": 10_000}
        elif ann is float:
            # a kernel width's floor is CRFParams' (narrower ones are refused), its others' 0
            low = crf._params.MIN_WIDTH if f.name.endswith(("_sxy", "_srgb")) else 0.0
            opts = {"min": low, "max": 10_000.0, "step": 0.05}
        try:
            label, tip = _CRF_WORDS.get(f.name, (f.name, ""))
            w = create_widget(value=f.default, annotation=ann, name=f.name, label=label, options=opts)
        except Exception:  # a field type magicgui cannot show: it stays at the stored/default value
            log.warning("no control for CRF setting %s (%s)", f.name, ann)
            continue
        w.tooltip = f"{tip} (CRFParams.{f.name})" if tip else f"CRFParams.{f.name}"
        for sub in [w, *(w if isinstance(w, Container) else [])]:
            if isinstance(sub, FloatSpinBox):
                sub.native.setDecimals(6)  # show stored values exactly (Qt's default rounds to 0.01)
        widgets.append(w)
    return widgets


# -- the controls ---------------------------------------------------------------------------


class SegmentationControls(Container):
    """The widgets of the segmentation dock widget and their meaning (no running here)."""

    def reset_choices(self, *_) -> None:
        """napari calls this when layers are added, removed, reordered or renamed: the chosen image
        and model stay chosen (magicgui would find them again by title, and a renamed image's is new)."""
        kept = [(w, w.value) for w in (getattr(self, "image", None), getattr(self, "model", None)) if w is not None]
        super().reset_choices()
        for combo, keep in kept:
            restore_choice(combo, keep)

    def __init__(self, viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        # Which devices work needs torch: until the widget has it (show_devices), the two that always do.
        self._devices = ["auto", "cpu"]
        self._class_names: list[str] = []
        self._applying = False
        self._settings_source = "defaults"
        crf = crf_module()
        crf_ok = bool(crf and crf.crf_available())
        self.image = ComboBox(name="image", label="image", choices=self._image_choices)
        self.model = ComboBox(name="model", label="model", choices=model_choices, value=DEFAULT_MODEL)
        self.checkpoint = FileEdit(name="checkpoint", label="checkpoint", mode="r", filter="*.pt *.pth", visible=False)
        self.device = ComboBox(
            name="device",
            label="device",
            choices=lambda _w: list(self._devices),
            value=DEFAULTS.device,
            tooltip="Where the network runs: auto takes a GPU when there is one",
        )
        self.score_threshold = FloatSlider(
            name="score_threshold",
            label="min score",
            min=0.0,
            max=1.0,
            step=0.05,
            value=SCORE_THRESHOLD,  # then the chosen model's own
            tooltip="Keep instances the network scores at least this (0-1); lower finds more plants and more mistakes",
        )
        self.mask_threshold = FloatSlider(
            name="mask_threshold",
            label="mask threshold",
            min=0.001,  # SegmentOptions takes (0, 1): a model may store any threshold in it
            max=0.999,
            step=0.05,
            value=MASK_RCNN_THRESHOLD,  # then the chosen model's own
            tooltip="A pixel belongs to an instance where its soft mask is at least this (0-1); lower draws "
            "masks wider (thin leaves kept), higher tighter",
        )
        self.classes = Select(  # choices from a callable: napari's reset_choices() on layer changes keeps them
            name="classes",
            label="classes",
            choices=lambda _w: list(self._class_names),
            tooltip="Keep only the selected classes; select none to keep all",
        )
        self.merge_classes = CheckBox(
            name="merge_classes",
            text="all plants as one class",
            value=DEFAULTS.merge_classes,
            tooltip="Report every instance as one class 'plant' (the model keeps its classes)",
        )
        self.vegetation = ComboBox(
            name="vegetation",
            label="plant pixels from colour",
            choices=list(VEGETATION_MODES),
            value=DEFAULTS.vegetation,
            tooltip="Instances follow plant-coloured pixels, and plant-coloured patches no detection claims are "
            "added (source 'colour'); 'auto': when the photo's colour tells plants from soil; 'on': whenever "
            "its colours form two classes, the upper one green",
        )
        self.tile_mode = ComboBox(
            name="tile_mode",
            label="tiles",
            choices=_TILE_MODES,
            value=_mode(DEFAULTS.tile_size, "off", "size"),
            tooltip="Segment a large image in tiles: 'auto' picks a size from the model",
        )
        self.tile_size = SpinBox(
            name="tile_size", label="tile size (px)", min=64, max=16384, step=64, value=1024, visible=False
        )
        self.overlap_mode = ComboBox(
            name="overlap_mode",
            label="tile overlap",
            choices=_OVERLAP_MODES,
            value="default",
            visible=False,
            tooltip="Pixels each tile shares with its neighbours: a plant up to this size is seen whole by some tile",
        )
        self.tile_overlap = SpinBox(
            name="tile_overlap", label="tile overlap (px)", min=0, max=8192, step=16, value=64, visible=False
        )
        self.scale_mode = ComboBox(
            name="scale_mode",
            label="scale",
            choices=_SCALE_MODES,
            value=_mode(DEFAULTS.scale, "model", "factor"),
            tooltip="Resize before the network: the model's own size, estimated from the image, "
            "or a factor (1 = native resolution, 0.25 = shrink 4x)",
        )
        self.scale = FloatSpinBox(
            name="scale",
            label="scale factor",
            min=SCALE_RANGE[0],
            max=SCALE_RANGE[1],
            step=0.05,
            value=1.0,
            visible=False,
        )
        self.crf = CheckBox(
            name="crf",
            text="refine with the dense CRF",
            value=crf_ok,
            tooltip="" if crf_ok else "the dense CRF is not available here",
        )
        self.show_crf_settings = CheckBox(
            name="show_crf_settings", text="show CRF settings", value=False, visible=crf is not None
        )
        self.crf_settings = Container(name="crf_settings", label="CRF", widgets=_crf_controls(), visible=False)
        self.settings = Label(name="settings", label="settings", value="defaults")
        self.stack = RadioButtons(
            name="stack",
            label="planes",
            orientation="horizontal",
            choices=[("current plane", False), ("whole stack", True)],
            value=False,
        )
        self.boxes = CheckBox(
            name="boxes",
            text="show boxes",
            value=False,
            tooltip="Also add a Shapes layer: each instance's box, class and score",
        )
        self.run = PushButton(name="run", text="Run")
        self.cancel = PushButton(name="cancel", text="Cancel", enabled=False)
        self.status = status_label(name="status", label="status", value="ready")
        self.extend(
            [
                self.image,
                self.model,
                self.checkpoint,
                self.device,
                self.score_threshold,
                self.mask_threshold,
                self.classes,
                self.merge_classes,
                self.vegetation,
                self.tile_mode,
                self.tile_size,
                self.overlap_mode,
                self.tile_overlap,
                self.scale_mode,
                self.scale,
                self.crf,
                self.show_crf_settings,
                self.crf_settings,
                self.settings,
                self.stack,
                self.boxes,
                self.run,
                self.cancel,
                self.status,
            ]
        )
        self.classes.native.setMaximumHeight(110)
        self.settings.native.setWordWrap(True)
        keep_narrow(self)
        self.scale.native.setDecimals(3)
        self.tile_mode.changed.connect(self._on_tile_mode)
        self.overlap_mode.changed.connect(self._on_tile_mode)
        self.tile_size.changed.connect(self._fit_overlap)
        self.scale_mode.changed.connect(lambda v: setattr(self.scale, "visible", v == "factor"))
        self.show_crf_settings.changed.connect(lambda on: setattr(self.crf_settings, "visible", bool(on)))
        self.image.changed.connect(self._on_image_changed)
        for w in self._shown_settings():
            w.changed.connect(self._on_setting_edited)
        if _chosen in _REGISTERED:  # trained before this widget was opened
            restore_choice(self.model, _chosen)
        _LIVE.add(self)

    def show_devices(self, devices: list[str]) -> None:
        """Offer ``devices`` (:func:`napari_gardenseg._device.available_devices`, which imports torch)."""
        self._devices = list(devices)
        self.device.reset_choices()

    def enable_settings(self, enabled: bool) -> None:
        """Let the thresholds and CRF settings be edited, or not (while the model's are not shown yet)."""
        for w in (self.score_threshold, self.mask_threshold, self.crf_settings):
            w.enabled = enabled

    # -- images -------------------------------------------------------------------------

    def _image_choices(self, _widget=None):
        from napari.layers import Image

        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _on_image_changed(self, _=None) -> None:
        layer = self.image.value
        ndim = 0 if layer is None else layer.ndim
        self.stack.enabled = ndim > 2  # layer.ndim excludes an RGB colour axis
        self.clear_error()

    def clear_error(self) -> None:
        """Put the status back to "ready" when it shows an error of an earlier choice (the image, the model)."""
        if str(self.status.value).startswith("error") and not getattr(self, "running", False):
            self.status.value = "ready"

    # -- models and their settings ----------------------------------------------------------

    def model_spec(self) -> str | None:
        """ "coco", "coco-v1", "garden" or a checkpoint path; None when the picker is empty."""
        value = self.model.value
        if value != CUSTOM:
            return value
        path = self.checkpoint.value
        return str(path) if path and str(path) not in ("", ".") and Path(path).is_file() else None

    def _shown_settings(self) -> list:
        return [self.score_threshold, self.mask_threshold, *self._crf_leaf_controls()]

    def _crf_leaf_controls(self) -> list:
        return list(self.crf_settings)

    def apply_model_settings(self, spec: str | None) -> None:
        """Show ``spec``'s class names and stored settings (or the defaults), synchronously."""
        from ._models import model_info

        names: list[str] = []
        meta: dict = {}
        problem = ""
        if spec is not None:
            try:
                all_names, meta = model_info(spec)
                names = [n for n in all_names[1:] if n != "N/A"]
            except Exception as exc:  # a bad file: Run reports the engine's error
                # the reason, not the path it starts with (a long path left no room for it)
                reason = str(exc).splitlines()[0].replace(str(spec), Path(str(spec)).name)
                problem = f" (cannot read the model: {reason if len(reason) <= 100 else reason[:99] + '…'})"
                log.info("cannot read %s: %s", spec, exc)
        self._class_names = sorted(set(names), key=names.index)
        self.classes.reset_choices()
        label = Path(spec).stem if spec not in (None, *MODEL_NAMES) else spec
        stored_crf = meta.get("crf") or None
        used = []
        self._applying = True
        try:
            # the engine's reading of a model's thresholds (a model that stores none: segment's score
            # threshold and Mask R-CNN's mask threshold), so that what is shown is what runs
            for name, read in (("score_threshold", model_score_threshold), ("mask_threshold", model_mask_threshold)):
                control = getattr(self, name)
                try:
                    value = read(meta)
                    if not control.min <= value <= control.max:
                        raise ValueError(f"{value} is outside {control.min}-{control.max}")
                    if meta.get(name) is not None:
                        used.append(name.split("_")[0] + " threshold")
                except (TypeError, ValueError) as exc:
                    # shown as the default, and said: the other stored settings are still applied
                    value = read({})
                    problem += f" (its stored {name} cannot be shown: {exc}; showing {value})"
                control.value = float(value)
            crf = crf_module()
            if crf is not None:
                try:
                    params = crf_settings(stored_crf)
                    if stored_crf:
                        used.append("CRF")
                except (TypeError, ValueError) as exc:
                    params = crf.CRFParams()
                    problem += f" (its stored CRF settings are not valid: {exc}; showing the defaults)"
                self._show_crf_params(params)
        finally:
            self._applying = False
        if used:
            text = f"from model {label}: {', '.join(used)}"
        else:
            text = "defaults" + (f" (model {label} stores none)" if spec is not None else "")
        self._settings_source = text
        self.settings.value = text + problem
        self.settings.tooltip = (
            f"{self.settings.value}\n\nWhere the thresholds and CRF settings shown come from: what the chosen "
            "model stores in its checkpoint (its makers' choice), else the engine's defaults; 'edited' once you "
            "change one. Run uses what is shown."
        )

    def _show_crf_params(self, params) -> None:
        for w in self._crf_leaf_controls():
            value = getattr(params, w.name, None)
            if value is None:
                continue
            w.value = tuple(value) if isinstance(value, list) else value

    def _on_setting_edited(self, _=None) -> None:
        if not self._applying:
            self.settings.value = f"{self._settings_source}, edited"

    # -- what runs ----------------------------------------------------------------------------

    def crf_params(self):
        """The CRF settings shown (a CRFParams), or None if the CRF module is missing."""
        crf = crf_module()
        if crf is None:
            return None
        return crf.CRFParams(**{w.name: w.value for w in self._crf_leaf_controls()})

    def tile_value(self) -> int | str | None:
        mode = self.tile_mode.value
        return None if mode == "off" else "auto" if mode == "auto" else int(self.tile_size.value)

    def overlap_value(self) -> int | None:
        """The tile overlap shown in pixels, or None (the engine's default) without tiles or by choice."""
        pixels = self.tile_mode.value != "off" and self.overlap_mode.value == "pixels"
        return int(self.tile_overlap.value) if pixels else None

    def _on_tile_mode(self, _=None) -> None:
        tiled = self.tile_mode.value != "off"
        self.tile_size.visible = self.tile_mode.value == "size"
        self.overlap_mode.visible = tiled
        pixels = tiled and self.overlap_mode.value == "pixels"
        if pixels and not self.tile_overlap.visible:  # shown: start from the default for the size shown
            self._fit_overlap(force=True)
        self.tile_overlap.visible = pixels

    def _fit_overlap(self, _=None, force: bool = False) -> None:
        """The overlap box at a quarter of the tile shown (when asked, or when it is no longer under half)."""
        size = int(self.tile_size.value) if self.tile_mode.value == "size" else None
        if size is not None and (force or self.tile_overlap.value >= size // 2):
            self.tile_overlap.value = default_overlap(size)

    def scale_value(self) -> float | str | None:
        mode = self.scale_mode.value
        return None if mode == "model" else "auto" if mode == "auto" else float(self.scale.value)

    def segment_options(self) -> SegmentOptions:
        """The run's options as the controls show them (raises TypeError/ValueError for a bad value)."""
        crf = bool(self.crf.value)
        return SegmentOptions(
            score_threshold=float(self.score_threshold.value),
            mask_threshold=float(self.mask_threshold.value),
            classes=list(self.classes.value) or None,
            scale=self.scale_value(),
            tile_size=self.tile_value(),
            tile_overlap=self.overlap_value(),
            merge_classes=bool(self.merge_classes.value),
            crf=crf,
            crf_params=self.crf_params() if crf else None,
            device=str(self.device.value),
            vegetation=str(self.vegetation.value),
        )
