"""The "Garden segmentation" dock widget (declared in napari.yaml).

A magicgui Container whose members the console can drive by name::

    w = SegmentationWidget(viewer)        # or Plugins > Garden segmentation
    w.model.value = "garden"; w.crf.value = False
    w.run.clicked()                       # runs in a worker thread

Threading: the GUI thread only reads the controls (a :class:`_Job` snapshot),
describes the planes (:func:`._layers.plane_source`, no pixels) and, when the
worker returns, assigns the prepared arrays to layers
(:func:`._layers.write_layers`). Everything slow (loading the model, reading
planes, Mask R-CNN, the CRF, the feature table) runs in the worker. The
worker never raises: it returns ``("ok" | "cancelled" | "error", payload)``,
so napari's worker error relay (a notification with a traceback) never fires
and a failed or cancelled run reaches no layer.

When a model is chosen, a background thread reads its class names (for the
class filter) and, for local models (bundled, checkpoint files), loads it, so
the first run does not start with a load; the loaded model is kept and reused
until the model or device choice changes. The GUI-thread costs left are
napari's own: adding a Labels layer (a few hundred ms the first time, see
benchmarks/bench_widget_responsiveness.py); replacing the data of an existing
one takes tens of ms.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import typing
import weakref
from pathlib import Path

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    Label,
    PushButton,
    RadioButtons,
    Select,
    create_widget,
)

from ._layers import avoid_triton_llvm_clash

avoid_triton_llvm_clash()  # before the first torch import: see its docstring
# Heavy imports happen here, when the widget opens, rather than in the worker
# during the first run: an import holds the GIL while it loads extension
# modules, which would freeze napari for up to a second mid-run.
import pandas  # noqa: E402,F401  (the feature tables)

from . import _inference  # noqa: E402,F401  (torch, torchvision)
from ._models import MODEL_NAMES, MODEL_TITLES  # noqa: E402

__all__ = ["SegmentationWidget", "register_model", "registered_models"]

log = logging.getLogger(__name__)

CUSTOM = "__custom__"  # the model choice that shows the checkpoint picker
_ORDER = ("coco", "coco-v1", "garden")  # COCO v2, COCO v1, bundled
assert set(_ORDER) == set(MODEL_NAMES)

# Models registered at run time (e.g. by the training widget): path -> title.
_REGISTERED: dict[str, str] = {}
_LIVE: "weakref.WeakSet[SegmentationWidget]" = weakref.WeakSet()


def register_model(path, title: str | None = None) -> str:
    """Offer the checkpoint at ``path`` in every segmentation widget's model list.

    Call from the GUI thread (e.g. in a worker's ``returned`` handler).
    Returns the choice's value (the resolved path as a string), which can be
    assigned to ``widget.model.value``. Registering a path again updates its title.
    """
    key = str(Path(path).expanduser().resolve())
    _REGISTERED[key] = title or Path(key).stem
    for widget in list(_LIVE):
        try:
            widget._refresh_model_choices()
        except RuntimeError:  # its Qt side is gone (closed dock widget)
            _LIVE.discard(widget)
    return key


def registered_models() -> dict[str, str]:
    """The models registered with :func:`register_model`: {path: title}."""
    return dict(_REGISTERED)


def _model_choices(_widget=None) -> list[tuple[str, str]]:
    choices = [(MODEL_TITLES[name], name) for name in _ORDER]
    choices += [(f"{title} (trained)", path) for path, title in _REGISTERED.items()]
    choices.append(("custom checkpoint…", CUSTOM))
    return choices


def _devices() -> list[str]:
    from ._models import available_devices

    return available_devices()


# -- model information without loading the network ------------------------------------


def _model_info(spec: str) -> tuple[list[str], dict | None]:
    """Class names (background and COCO's "N/A" dropped) and the stored CRF settings of a model.

    Reads no network weights (see ``_models.model_info``). Raises on a bad
    file; the widget then shows no classes and the run reports the engine's error.
    """
    from ._models import model_info

    names, meta = model_info(spec)
    return [n for n in names[1:] if n != "N/A"], meta.get("crf")


# -- CRF settings ---------------------------------------------------------------------


def _crf_module():
    try:
        from . import _crf
    except ImportError:
        return None
    return _crf


def _crf_controls() -> list:
    """One control per CRFParams field (int, float or tuple), named after it."""
    crf = _crf_module()
    if crf is None:
        return []
    hints = typing.get_type_hints(crf.CRFParams)
    widgets = []
    for f in dataclasses.fields(crf.CRFParams):
        ann = hints.get(f.name, type(f.default))
        opts = {}
        if ann is int:
            opts = {"min": 0, "max": 10_000}
        elif ann is float:
            opts = {"min": 0.0, "max": 10_000.0, "step": 0.05}
        try:
            w = create_widget(value=f.default, annotation=ann, name=f.name, options=opts)
        except Exception:  # a field type magicgui cannot show: leave it at its default
            log.debug("no control for CRF field %s", f.name, exc_info=True)
            continue
        widgets.append(w)
    return widgets


# -- one run --------------------------------------------------------------------------


@dataclasses.dataclass
class _Job:
    """A snapshot of the controls, handed to the worker (no widget is read off the GUI thread)."""

    source: object  # _layers.PlaneSource
    model: object  # name, path or a loaded Model
    model_key: tuple
    device: str
    kwargs: dict
    boxes: bool
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    state: list = dataclasses.field(default_factory=lambda: [0.0, "starting"])  # progress, polled by a timer
    started: float = dataclasses.field(default_factory=time.perf_counter)


def _work(job: _Job):
    """Worker body. Never raises: the outcome is returned as (kind, payload)."""
    from ._inference import Cancelled
    from ._layers import run_planes
    from ._models import load_model

    def progress(fraction, message):
        job.state[:] = [float(fraction), str(message)]  # one list assignment: read by the GUI timer

    try:
        progress(0.0, "loading model")
        model = load_model(job.model, device=job.device)
        output = run_planes(
            job.source, model, device=job.device, progress=progress, cancel=job.cancel, **job.kwargs
        )
        return ("ok", (output, model))
    except Cancelled:
        return ("cancelled", None)
    except (ValueError, TypeError, ImportError) as exc:  # the engine's errors (ModelError, ImageError, ...): clear already
        log.debug("segmentation failed", exc_info=True)
        return ("error", exc)
    except Exception as exc:  # anything else: say which model and what kind of failure
        log.warning("segmentation failed", exc_info=True)
        name = job.model if isinstance(job.model, str) else getattr(job.model, "source", "?")
        return ("error", RuntimeError(f"segmentation with model {name!r} failed: {type(exc).__name__}: {exc}"))


class SegmentationWidget(Container):
    """Segment an Image layer with Mask R-CNN (+ dense CRF) into Labels layers."""

    # napari finds the viewer parameter by this annotation (a string here: no napari import at module load)
    def __init__(self, viewer: napari.viewer.Viewer):  # noqa: F821
        super().__init__(labels=True)
        self._viewer = viewer
        self._job: _Job | None = None
        self._worker = None
        self._pbar = None
        self._loaded: tuple[tuple, object] | None = None  # (model key, Model): reused until the key changes
        self._info_token = 0
        self._class_names: list[str] = []  # of the chosen model, shown by the class filter
        crf = _crf_module()
        crf_ok = bool(crf and crf.crf_available())

        self.extend(
            [
                ComboBox(name="image", label="image", choices=self._image_choices),
                ComboBox(name="model", label="model", choices=_model_choices, value="garden"),
                FileEdit(name="checkpoint", label="checkpoint", mode="r", filter="*.pt *.pth", visible=False),
                ComboBox(name="device", label="device", choices=_devices(), value="auto"),
                FloatSlider(name="score_threshold", label="min score", min=0.0, max=1.0, step=0.05, value=0.5),
                FloatSlider(name="mask_threshold", label="mask threshold", min=0.05, max=1.0, step=0.05, value=0.5),
                Select(  # choices from a callable: napari's reset_choices() on layer changes keeps them
                    name="classes", label="classes", choices=lambda _w: list(self._class_names),
                    tooltip="Keep only the selected classes; select none to keep all",
                ),
                CheckBox(name="crf", text="refine with the dense CRF", value=crf_ok,
                         tooltip="" if crf_ok else "pydensecrf is not installed (pip install pydensecrf2)"),
                CheckBox(name="show_crf_settings", text="show CRF settings", value=False, visible=crf is not None),
                Container(name="crf_settings", label="CRF", widgets=_crf_controls(), visible=False),
                RadioButtons(
                    name="stack", label="planes", orientation="horizontal",
                    choices=[("current plane", False), ("whole stack", True)], value=False,
                ),
                CheckBox(name="boxes", text="show boxes", value=False),
                PushButton(name="run", text="Run"),
                PushButton(name="cancel", text="Cancel", enabled=False),
                Label(name="status", label="status", value="ready"),
            ]
        )
        self.classes.native.setMaximumHeight(110)

        self.model.changed.connect(self._on_model_changed)
        self.checkpoint.changed.connect(self._on_model_changed)
        self.device.changed.connect(self._forget_model)
        self.show_crf_settings.changed.connect(lambda on: setattr(self.crf_settings, "visible", bool(on)))
        self.image.changed.connect(self._on_image_changed)
        self.run.clicked.connect(self._on_run)
        self.cancel.clicked.connect(self._on_cancel)

        # Follow the viewer: the layer list feeds the picker, the active image becomes the choice.
        layers = viewer.layers
        self._connections = [
            (layers.events.inserted, self._on_layers_changed),
            (layers.events.removed, self._on_layers_changed),
            (layers.events.moved, self._on_layers_changed),
            (layers.selection.events.active, self._on_active),
        ]
        self._connections += [(layer.events.name, self._on_layers_changed) for layer in layers]
        for emitter, callback in self._connections:
            emitter.connect(callback)
        # When the dock widget is deleted, stop listening and stop any run.
        ref = weakref.ref(self)
        self.native.destroyed.connect(lambda *_: (w := ref()) is not None and w._teardown())

        from qtpy.QtCore import QTimer

        self._timer = QTimer()  # polls the worker's progress: no cross-thread signal per update
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._poll_progress)

        _LIVE.add(self)
        self._on_active()
        self._on_image_changed()
        self._on_model_changed()

    # -- choices ---------------------------------------------------------------------

    def _image_choices(self, _widget=None):
        from napari.layers import Image

        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _on_layers_changed(self, event=None):
        if event is not None and getattr(event, "type", "") == "inserted":
            self._connections.append((event.value.events.name, self._on_layers_changed))
            event.value.events.name.connect(self._on_layers_changed)
        self.image.reset_choices()

    def _teardown(self):
        _LIVE.discard(self)
        if self._job is not None:
            self._job.cancel.set()
        for emitter, callback in self._connections:
            try:
                emitter.disconnect(callback)
            except Exception:  # already gone with its layer
                pass
        self._connections = []

    def _on_active(self, event=None):
        from napari.layers import Image

        active = self._viewer.layers.selection.active
        if isinstance(active, Image):
            self.image.reset_choices()
            self.image.value = active

    def _on_image_changed(self, _=None):
        layer = self.image.value
        ndim = 0 if layer is None else layer.ndim
        self.stack.enabled = ndim > 2  # layer.ndim excludes an RGB colour axis

    def _refresh_model_choices(self):
        self.model.reset_choices()

    # -- model -----------------------------------------------------------------------

    def _model_spec(self) -> str | None:
        """"coco", "coco-v1", "garden" or a checkpoint path; None when the picker is empty."""
        value = self.model.value
        if value != CUSTOM:
            return value
        path = self.checkpoint.value
        return str(path) if path and str(path) not in ("", ".") and Path(path).is_file() else None

    def _model_key(self, spec: str) -> tuple:
        mtime = Path(spec).stat().st_mtime_ns if spec not in MODEL_NAMES and Path(spec).exists() else None
        return (spec, mtime, self.device.value)

    def _forget_model(self, _=None):
        self._loaded = None

    def _on_model_changed(self, _=None):
        self.checkpoint.visible = self.model.value == CUSTOM
        self._forget_model()
        spec = self._model_spec()
        self._info_token += 1
        token = self._info_token
        self._set_class_names([])
        if spec is None:
            return
        from napari.qt.threading import create_worker

        # Reading class names can take a moment (torchvision import, a big
        # checkpoint): do it off the GUI thread; a stale answer is dropped.
        # A local model (the bundled one, a checkpoint file) is loaded there too,
        # so that the first run does not start with it; COCO weights may need a
        # 170 MB download, so they load when a run asks for them.
        key = self._model_key(spec)
        preload = spec not in ("coco", "coco-v1")
        if preload and self._job is None:
            self.status.value = "loading model…"
        worker = create_worker(_model_info_safe, spec, self.device.value if preload else None, _start_thread=False)
        worker.returned.connect(lambda info, token=token, key=key: self._set_model_info(token, key, info))
        worker.start()
        self._info_worker = worker

    def _set_class_names(self, names: list[str]):
        self._class_names = list(names)
        self.classes.reset_choices()

    def _set_model_info(self, token: int, key: tuple, info):
        if token != self._info_token or not _alive(self):
            return
        names, crf, model = info
        if model is not None and key == self._model_key(key[0]):  # same model and device as asked
            self._loaded = (key, model)
        if self._job is None and self.status.value == "loading model…":
            self.status.value = "ready" if model is not None or key[0] in ("coco", "coco-v1") else "ready (model not loaded)"
        self._set_class_names(sorted(set(names), key=names.index))
        if crf:
            for name, value in crf.items():
                w = next((c for c in self.crf_settings if c.name == name), None)
                if w is not None:
                    try:
                        w.value = tuple(value) if isinstance(value, list) else value
                    except Exception:
                        log.debug("cannot show stored CRF setting %s=%r", name, value, exc_info=True)

    # -- running ---------------------------------------------------------------------

    def crf_params(self):
        """The CRF settings shown (a CRFParams), or None if the CRF module is missing."""
        crf = _crf_module()
        if crf is None:
            return None
        values = {w.name: w.value for w in self.crf_settings}
        return crf.CRFParams(**values)

    def _make_job(self) -> _Job:
        from ._layers import plane_source

        layer = self.image.value
        if layer is None:
            raise ValueError("no image layer to segment: open an image (or File > Open Sample > Garden) first")
        spec = self._model_spec()
        if spec is None:
            raise ValueError("choose a checkpoint file (.pt) for the custom model")
        source = plane_source(layer, point=self._viewer.dims.point, stack=bool(self.stack.value))
        kwargs = {
            "score_threshold": float(self.score_threshold.value),
            "mask_threshold": float(self.mask_threshold.value),
            "classes": list(self.classes.value) or None,
            "crf": bool(self.crf.value),
        }
        if kwargs["crf"]:
            kwargs["crf_params"] = self.crf_params()
        key = self._model_key(spec)
        model = self._loaded[1] if self._loaded is not None and self._loaded[0] == key else spec
        return _Job(source, model, key, str(self.device.value), kwargs, bool(self.boxes.value))

    def _on_run(self, _=None):
        if self._job is not None:
            return
        try:
            job = self._make_job()
        except Exception as exc:
            self._fail(exc)
            return
        from napari.qt.threading import create_worker
        from napari.utils import cancelable_progress

        self._job = job
        self._pbar = cancelable_progress(total=100, desc="Garden segmentation", cancel_callback=self._on_cancel)
        self._set_running(True)
        self.status.value = "loading model…" if isinstance(job.model, str) else "starting…"
        worker = create_worker(_work, job, _start_thread=False)
        worker.returned.connect(lambda outcome, job=job: self._on_returned(job, outcome))
        # _work catches every Exception; this only sees what escapes it (napari also reports it)
        worker.errored.connect(lambda exc, job=job: self._done(job))
        self._worker = worker
        self._timer.start()
        worker.start()

    def _on_cancel(self, _=None):
        if self._job is not None:
            self._job.cancel.set()
            self.status.value = "cancelling…"
            self.cancel.enabled = False

    def _poll_progress(self):
        job, pbar = self._job, self._pbar
        if job is None or pbar is None:
            return
        fraction, message = job.state
        if not job.cancel.is_set():
            self.status.value = message
        n = int(round(100 * min(max(fraction, 0.0), 1.0)))
        if n > pbar.n:
            pbar.update(n - pbar.n)
        if self._pbar is pbar and message != getattr(pbar, "desc", ""):  # update() may have let the run end
            pbar.set_description(message)

    def _on_returned(self, job: _Job, outcome):
        if not _alive(self):  # the dock widget was closed during the run: write nothing
            return
        kind, payload = outcome
        if kind == "error":
            self._fail(payload)
            self._done(job)
        elif kind == "cancelled" or job.cancel.is_set():  # a late cancel still discards the result
            self.status.value = "cancelled: no layer was changed"
            self._done(job)
        else:
            output, model = payload
            self._loaded = (job.model_key, model)
            from ._layers import output_kinds

            self._write_next(job, output, output_kinds(output, boxes=job.boxes))

    def _write_next(self, job: _Job, output, kinds: list):
        """Write one layer, then yield to the event loop before the next.

        Adding a layer costs napari a few hundred ms (its visuals); one per
        event-loop turn keeps each freeze to one layer's worth.
        """
        from qtpy.QtCore import QTimer

        from ._layers import write_layers

        try:
            write_layers(self._viewer, output, kinds=kinds[:1])
        except Exception as exc:
            self._fail(exc)
            self._done(job)
            return
        if kinds[1:]:
            QTimer.singleShot(0, lambda: self._write_next(job, output, kinds[1:]))
            return
        n = output.n_instances
        secs = time.perf_counter() - job.started
        self.status.value = f"{n} instance{'s' if n != 1 else ''} in {secs:.1f} s"
        self._done(job)

    def _done(self, job: _Job):
        if job is not self._job:
            return
        self._timer.stop()
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self._job = None
        self._worker = None
        self._set_running(False)

    def _set_running(self, running: bool):
        self.run.enabled = not running
        self.cancel.enabled = running

    def _fail(self, exc: BaseException):
        from napari.utils.notifications import show_error

        # An exception raised without a message still has a docstring that says what it means.
        message = str(exc) or " ".join((type(exc).__doc__ or type(exc).__name__).split())
        if isinstance(exc, ImportError) and "crf" in type(exc).__name__.lower() and "crf=" not in message:
            message += " Untick 'refine with the dense CRF' to segment without it."
        self.status.value = f"error: {message.splitlines()[0][:120]}"
        show_error(message)

    @property
    def running(self) -> bool:
        """True while a segmentation is in progress."""
        return self._job is not None


def _alive(widget) -> bool:
    """False once the widget's Qt side is deleted (a late worker signal must not touch it)."""
    try:
        widget.native.objectName()
    except RuntimeError:
        return False
    return True


def _model_info_safe(spec: str, device=None):
    """Worker body: (class names, stored CRF settings, the loaded model or None). Never raises."""
    try:
        names, crf = _model_info(spec)
    except Exception:  # an unreadable checkpoint: no classes; Run will say why
        log.debug("cannot read the classes of %s", spec, exc_info=True)
        return [], None, None
    model = None
    if device is not None:
        from ._models import load_model

        try:
            model = load_model(spec, device=device)
        except Exception:  # Run loads it again and reports the engine's error
            log.debug("cannot preload %s", spec, exc_info=True)
    return names, crf, model
