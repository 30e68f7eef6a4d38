"""The "Garden segmentation" dock widget (declared in napari.yaml): running a job.

The controls, and how they become ``segment``'s arguments, are in
:mod:`napari_gardenseg._widget_controls`; this module runs them. Members can be
driven from the console by name::

    w = SegmentationWidget(viewer)        # or Plugins > Garden segmentation
    w.model.value = "garden"; w.crf.value = False
    w.run.clicked()                       # runs in a background thread

Threading (:mod:`napari_gardenseg._worker`): the GUI thread reads the controls
and describes the planes (:func:`._planes.plane_source`, no pixels); the job
loads the model, reads the planes, runs Mask R-CNN and the CRF, and builds the
feature tables; when it returns, the GUI thread assigns the arrays to layers
(:func:`._layers.write_layers`), one layer per event-loop turn. A failed or
cancelled run changes no layer.

The widget opens without the engine (torch and torchvision take seconds to
import): a job imports them at once, in the background. Until it is done the
thresholds and CRF settings wait greyed out, and Run pressed meanwhile starts
when it is. Choosing a model then shows its stored settings at once (read from
the checkpoint, see :class:`._widget_controls.SegmentationControls`); a local
model (the bundled one, a checkpoint file) is loaded in the background so that
the first run does not start with it, and kept until the model or device changes.
"""

from __future__ import annotations

import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from ._options import MODEL_NAMES
from ._paint_features import follow_if_ours
from ._widget_controls import _LIVE, CUSTOM, SegmentationControls, register_model, reset_keeping
from ._worker import Job, Outcome, report_error, watch_dock, when_engine_loaded

if TYPE_CHECKING:
    import napari

__all__ = ["SegmentationWidget", "register_model", "CUSTOM"]


# What a run needs that takes seconds to import (torch and torchvision above all).
_ENGINE_MODULES = ("pandas", "napari_gardenseg._inference")


def _segment_job(source, model, options, *, progress, cancel):
    """Job body: load the model (once: the preloaded one is passed in) and segment the planes.

    Returns (LayerOutput, Model).
    """
    from ._models import Model, load_model
    from ._plane_run import run_planes

    if not isinstance(model, Model):
        progress(0.0, "loading model")
    loaded = load_model(model, device=options.device)
    output = run_planes(source, loaded, options, progress=progress, cancel=cancel)
    return output, loaded


def _preload_job(spec: str, *, device: str, progress, cancel):
    from ._models import load_model

    return load_model(spec, device=device)


class SegmentationWidget(SegmentationControls):
    """Segment an Image layer with Mask R-CNN (+ dense CRF) into Labels layers."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer)
        self._job: Job | None = None
        self._preload: Job | None = None
        self._loaded: tuple[tuple, object] | None = None  # (model key, Model): reused until the key changes
        self._engine: Job | None = None  # importing torch & co. when the widget opened without them
        self._run_when_ready = False  # Run was pressed while they were loading
        self._dock = None  # the dock holding the widget, watched from the first run

        self.model.changed.connect(self._on_model_changed)
        self.checkpoint.changed.connect(self._on_model_changed)
        self.device.changed.connect(self._preload_model)
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
        for layer in layers:
            follow_if_ours(layer)
        for emitter, callback in self._connections:
            emitter.connect(callback)
        # When the widget is deleted, stop listening and stop any run (its dock: watch_dock).
        ref = weakref.ref(self)
        self.native.destroyed.connect(lambda *_: (w := ref()) is not None and w._teardown())

        self._on_active()
        self._on_image_changed()
        self._engine = when_engine_loaded(_ENGINE_MODULES, self._on_engine_loaded)
        if self._engine is not None:  # the model's settings are shown once it is in
            self.enable_settings(False)
            self.settings.value = "loading torch (first use this session)…"
            self.status.value = _LOADING

    # -- engine --------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """False while the engine (torch) is still being imported after the widget opened."""
        return self._engine is None

    def _on_engine_loaded(self, outcome: Outcome) -> None:
        if not _alive(self):
            return
        self._engine = None
        self.enable_settings(True)
        if self.status.value == _LOADING:
            self.status.value = "ready"
        if outcome.ok:
            self.show_devices(outcome.value)
        # On a failure the model's settings say so (model_info raises it again), and Run reports it.
        self._on_model_changed()
        if self._run_when_ready:
            self._run_when_ready = False
            self._set_running(False)
            self._on_run()

    # -- viewer --------------------------------------------------------------------------

    def _on_layers_changed(self, event=None) -> None:
        if event is not None and getattr(event, "type", "") == "inserted":
            self._connections.append((event.value.events.name, self._on_layers_changed))
            event.value.events.name.connect(self._on_layers_changed)
            follow_if_ours(event.value)  # a batch's label file opened: its table follows the brush
        reset_keeping(self.image)  # a renamed image stays the chosen one

    def _on_active(self, event=None) -> None:
        from napari.layers import Image

        active = self._viewer.layers.selection.active
        if isinstance(active, Image):
            self.image.reset_choices()
            self.image.value = active

    def _teardown(self) -> None:
        _LIVE.discard(self)
        for job in (self._job, self._preload, self._engine):
            if job is not None:
                job.abandon()
        for emitter, callback in self._connections:
            try:
                emitter.disconnect(callback)
            except Exception:  # already gone with its layer
                pass
        self._connections = []

    # -- model ---------------------------------------------------------------------------

    def _model_key(self, spec: str) -> tuple:
        mtime = Path(spec).stat().st_mtime_ns if spec not in MODEL_NAMES and Path(spec).exists() else None
        return (spec, mtime, self.device.value)

    def _on_model_changed(self, _=None) -> None:
        self.checkpoint.visible = self.model.value == CUSTOM
        self.clear_error()
        if not self.ready:  # the model's settings are shown once the engine is in
            return
        self.apply_model_settings(self.model_spec())  # at once: Run uses what the controls show
        self._preload_model()

    def _preload_model(self, _=None) -> None:
        """Forget the loaded model; load the chosen local one in the background."""
        self._loaded = None
        if not self.ready:
            return
        spec = self.model_spec()
        if self._preload is not None:
            self._preload.abandon()
            self._preload = None
        # COCO weights may need a download (MODEL_TITLES says its size): they load when a run asks for them.
        if spec is None or spec in ("coco", "coco-v1"):
            return
        key = self._model_key(spec)
        job = Job(_preload_job, spec, device=str(self.device.value))
        job.on_done = lambda outcome, job=job, key=key: self._on_preloaded(job, key, outcome)
        self._preload = job.start()

    def _on_preloaded(self, job: Job, key: tuple, outcome: Outcome) -> None:
        if job is not self._preload or not _alive(self):
            return
        self._preload = None
        spec = self.model_spec()
        if outcome.ok and spec is not None and key == self._model_key(spec):
            self._loaded = (key, outcome.value)
        # a failure is reported by Run, with the engine's message

    # -- running -------------------------------------------------------------------------

    def _on_run(self, _=None) -> None:
        if self._job is not None:
            return
        if not self.ready:  # what runs must be what is shown: the model's settings come with the engine
            self._run_when_ready = True
            self._set_running(True)  # Cancel takes the run back
            self.status.value = "starts when torch has loaded…"
            return
        from ._planes import plane_source, view_margins

        try:
            layer = self.image.value  # plane_source says what is wrong with it (none, not an image...)
            dims = self._viewer.dims
            source = plane_source(
                layer,
                point=dims.point,
                displayed=dims.displayed,
                margins=view_margins(dims),
                stack=bool(self.stack.value),
            )
            spec = self.model_spec()
            if spec is None:
                chosen = Path(str(self.checkpoint.value or "."))
                why = (
                    "none is chosen"
                    if str(chosen) == "."
                    else f"{chosen.name} is a folder"
                    if chosen.is_dir()
                    else f"{chosen.name} does not exist"
                )
                raise ValueError(f"choose a checkpoint file (.pt) for the custom model: {why}")
            options = self.segment_options()
        except Exception as exc:
            self.status.value = report_error(exc, "segmentation")
            return
        key = self._model_key(spec)
        model = self._loaded[1] if self._loaded is not None and self._loaded[0] == key else spec
        job = Job(_segment_job, source, model, options, desc="Garden segmentation")
        job.on_progress = lambda fraction, message, job=job: self._on_progress(job, message)
        job.on_cancel = self._on_cancel  # the progress bar's Cancel in napari's activity dock
        # the layer's data may be replaced during the run: the status then says which image the labels are of
        image = weakref.ref(layer)
        t0 = time.perf_counter()
        job.on_done = lambda outcome, job=job, key=key, boxes=bool(self.boxes.value), t0=t0: self._on_done(
            job, key, boxes, t0, outcome, image
        )
        self._job = job
        self._set_running(True)
        self.status.value = "loading model…" if isinstance(model, str) else "starting…"
        watch_dock(self)  # closing the panel stops the run (_on_dock_closed)
        job.start()

    def _on_dock_closed(self) -> None:
        """Stop the run and add nothing; the widget itself lives on (a script may dock it again)."""
        self._dock = None
        job, self._job = self._job, None
        if job is not None:
            job.abandon()
            self._set_running(False)
            self.status.value = "the panel was closed during the run: no layer was added"

    def _on_cancel(self, _=None) -> None:
        if self._run_when_ready:
            self._run_when_ready = False
            self._set_running(False)
            self.status.value = "cancelled: no layer was changed"
        elif self._job is not None:
            self._job.request_cancel()
            self.status.value = "cancelling…"
            self.cancel.enabled = False

    def _on_progress(self, job: Job, message: str) -> None:
        if job is self._job:  # never a stale job's news over the current status
            self.status.value = message

    def _on_done(self, job: Job, key: tuple, boxes: bool, t0: float, outcome: Outcome, image: weakref.ref) -> None:
        if not _alive(self):  # the dock widget was closed during the run: write nothing
            return
        if outcome.cancelled or (outcome.ok and job.cancel.is_set()):  # a late cancel still discards the result
            self.status.value = "cancelled: no layer was changed"
            self._done(job)
        elif not outcome.ok:
            self.status.value = report_error(outcome.error, "segmentation")
            self._done(job)
        else:
            output, model = outcome.value
            if key == self._model_key(key[0]):
                self._loaded = (key, model)
            from ._layers import output_kinds
            from ._planes import placed_as_now, still_holds

            layer = image()
            if layer is not None and layer in self._viewer.layers and still_holds(layer, output.source):
                output.source = placed_as_now(layer, output.source)  # renamed, moved or rescaled during the run
            self._write_next(job, output, output_kinds(output, boxes=boxes), t0, image)

    def _write_next(self, job: Job, output, kinds: list, t0: float, image: weakref.ref) -> None:
        """Write one layer, then yield to the event loop before the next.

        Adding a layer costs napari a few hundred ms (its visuals); one per
        event-loop turn keeps each freeze to one layer's worth.
        """
        from qtpy.QtCore import QTimer

        from ._layers import write_layers

        if job is not self._job or not _alive(self):  # closed between two layers: the rest is not added
            return
        try:
            write_layers(self._viewer, output, boxes="boxes" in kinds, kinds=kinds[:1])
        except Exception as exc:
            self.status.value = report_error(exc, "showing the result")
            self._done(job)
            return
        if kinds[1:]:
            QTimer.singleShot(0, lambda: self._write_next(job, output, kinds[1:], t0, image))
            return
        from ._planes import moved_note, still_holds

        n = output.n_instances
        status = f"{n} instance{'s' if n != 1 else ''} in {time.perf_counter() - t0:.1f} s"
        layer = image()
        if layer is None or layer not in self._viewer.layers:
            status += f"; '{output.source.name}' was removed during the run: these labels are of that image"
        elif not still_holds(layer, output.source):
            status += f"; the data of '{layer.name}' was replaced during the run: these labels are of the image before"
        elif (
            moved := moved_note(layer, output.source, self._viewer.dims.point, self._viewer.dims.displayed)
        ) is not None:
            status += f"; {moved}"
        from ._layers import run_notes

        self.status.value = "; ".join([status, *run_notes(output)])
        self._done(job)

    def _done(self, job: Job) -> None:
        if job is self._job:
            self._job = None
            self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self.run.enabled = not running
        self.cancel.enabled = running

    @property
    def running(self) -> bool:
        """True while a segmentation is in progress (or waits for torch to load)."""
        return self._job is not None or self._run_when_ready


_LOADING = "loading torch…; Run can be pressed, it starts when torch is in"


def _alive(widget) -> bool:
    """False once the widget's Qt side is deleted (a late signal must not touch it)."""
    try:
        widget.native.objectName()
    except RuntimeError:
        return False
    return True
