"""What the "Train on my labels" and "Adapt to these photos" panels share.

:class:`FitPanel` is their life-cycle: it follows the viewer's layers (added,
removed, renamed) into the panel's ``reset_choices``, runs one background job
(:mod:`napari_gardenseg._worker`) at a time with its own Start and Cancel
buttons and status line, stops the run as Cancel does when the panel's dock is
closed (what was learnt so far is saved), and unhooks everything when the widget
is deleted. Beside it: the "start from" controls, the "save as" check, the
"Replace?" question and the registration of a finished model with the
segmentation widget.
"""

from __future__ import annotations

import weakref
from pathlib import Path

from magicgui.widgets import ComboBox, Container, FileEdit
from napari.utils.notifications import show_info, show_warning

from ._widget_controls import _BASE_LISTS
from ._worker import Job, Outcome, watch_dock

__all__ = [
    "FitPanel",
    "ask_replace",
    "chosen_base",
    "register_trained_model",
    "save_as_path",
    "start_from_controls",
]

_CHECKPOINT = "checkpoint"


def _start_from_choices(_widget=None) -> list[tuple[str, str]]:
    """The segmentation widget's models (your models folder and this session's trained ones
    included), the file picker last."""
    from ._widget_controls import CUSTOM, model_choices

    return [c for c in model_choices() if c[1] != CUSTOM] + [("checkpoint file…", _CHECKPOINT)]


def start_from_controls():
    """The "start from" controls of the training and adapt widgets: a model (ComboBox ``base``,
    the models the segmentation widget offers) or, for "checkpoint file…", a file (FileEdit
    ``checkpoint``, shown only then). :func:`chosen_base` reads them."""
    base = ComboBox(name="base", label="start from", choices=_start_from_choices, value="garden")
    checkpoint = FileEdit(name="checkpoint", label="base checkpoint", mode="r", filter="*.pt *.pth", visible=False)
    base.changed.connect(lambda v: setattr(checkpoint, "visible", v == _CHECKPOINT))
    _BASE_LISTS.add(base)  # a model trained or adapted in the other panel is offered here at once
    return base, checkpoint


def chosen_base(base, checkpoint) -> str:
    """The model name or checkpoint path that :func:`start_from_controls` show; ValueError when
    "checkpoint file…" is chosen without an existing file."""
    if base.value != _CHECKPOINT:
        return base.value
    value = str(checkpoint.value or "")
    if value in ("", "."):
        raise ValueError("choose the checkpoint file to start from ('base checkpoint')")
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError(f"checkpoint file not found: {path}")
    return str(path)


def save_as_path(field: FileEdit, example) -> Path:
    """The checkpoint path a "save as" field names (``.pt`` added to a name without a suffix);
    ValueError naming ``example()`` (a free name, worked out only then) when the field is empty or
    a folder."""
    path = Path(field.value).expanduser()
    if str(field.value) in ("", ".") or path.is_dir():
        raise ValueError(f"'save as' must be a file name (e.g. {example()}), not a folder")
    return path if path.suffix else path.with_suffix(".pt")


def ask_replace(parent, path: Path, *others: Path, made: str = "trained") -> bool:
    """Ask whether to replace the existing files ``path`` and ``others`` (a checkpoint and adapt's
    report) with the model about to be ``made`` ("trained", "adapted") (a Qt question; No is the
    default)."""
    from qtpy.QtWidgets import QMessageBox

    files = [path, *others]
    listed = "\n".join(str(p) for p in files)
    answer = QMessageBox.question(
        parent,
        "Replace the model?",
        f"{listed}\n{'already exists' if len(files) == 1 else 'already exist'}.\n"
        f"Replace {'it' if len(files) == 1 else 'them'} with the model about to be {made}"
        f"{' and its report' if made == 'adapted' else ''}?",
        QMessageBox.Yes | QMessageBox.No,
        QMessageBox.No,
    )
    return answer == QMessageBox.Yes


def register_trained_model(path, title: str) -> bool:
    """Add a trained checkpoint to the segmentation widget's model list and choose it there
    (unless that widget is running); False when that is not possible."""
    try:
        from ._widget import register_model
    except (ImportError, AttributeError):
        return False
    try:
        register_model(path, title, select=True)
    except Exception as exc:  # never lose a finished training run to a registry problem
        show_warning(f"The model was saved to {path} but could not be added to the segmentation widget: {exc}")
        return False
    return True


class FitPanel(Container):
    """A dock panel that runs one model-fitting job at a time (see the module docstring).

    A subclass sets ``_viewer``, builds its controls (a ``cancel`` button and a ``status`` label
    among them), then calls :meth:`follow_layers` with its Start button; it defines
    ``reset_choices`` and ``_finished(job, outcome)`` (the panel is idle again by then), and may
    set ``STOPPING`` (the status while a run stops) and ``CLOSED_NOTE`` (said when the dock is
    closed during a run).
    """

    STOPPING = "cancelling…"
    CLOSED_NOTE = "The panel was closed: the run stops; what was learnt so far is saved."
    _job: Job | None = None  # the run
    _dock = None  # the dock holding the panel, watched from the first run

    def follow_layers(self, start_button) -> None:
        """Start following the viewer's layers and the widget's own deletion (call once)."""
        self._start_button = start_button
        layers = self._viewer.layers
        layers.events.inserted.connect(self._on_inserted)
        layers.events.removed.connect(self.reset_choices)
        for layer in layers:
            self.on_new_layer(layer)
        self.native.destroyed.connect(_teardown_of(self))

    def on_new_layer(self, layer) -> None:
        """A layer is in the viewer (at the start, or inserted): follow its renames."""
        layer.events.name.connect(self.reset_choices)

    def _on_inserted(self, event) -> None:
        self.on_new_layer(event.value)
        self.reset_choices()

    @property
    def running(self) -> bool:
        return self._job is not None

    def launch(self, job: Job, status: str) -> Job:
        """Run ``job`` as the panel's run: its progress in the status line, Cancel (here or on the
        progress bar in napari's activity dock) stops it, then ``_finished`` gets its outcome."""
        job.on_progress = lambda fraction, message, job=job: job is self._job and self.show_progress(message)
        job.on_cancel = self.stop
        job.on_done = lambda outcome, job=job: self._on_done(job, outcome)
        self._job = job
        self._start_button.enabled, self.cancel.enabled = False, True
        self.status.value = status
        watch_dock(self)  # closing the panel stops the run (_on_dock_closed)
        return job.start()

    def show_progress(self, message: str) -> None:
        self.status.value = message

    def stop(self, *_) -> None:
        """Ask the run to stop; the engine saves what was learnt so far, if anything."""
        if self._job is not None:
            self._job.request_cancel()
            self.cancel.enabled = False
            self.status.value = self.STOPPING

    def _on_done(self, job: Job, outcome: Outcome) -> None:
        if job is not self._job:  # a stale job's news never overwrites the current run's
            return
        self._job = None
        self._start_button.enabled, self.cancel.enabled = True, False
        self._finished(job, outcome)

    def _finished(self, job: Job, outcome: Outcome) -> None:
        raise NotImplementedError

    def _jobs(self) -> tuple:
        """The jobs to abandon when the widget is deleted."""
        return (self._job,)

    def _on_dock_closed(self) -> None:
        """The panel was closed (napari deletes its dock, not the widget): stop as Cancel does,
        not left running unseen."""
        self._dock = None
        if self._job is not None and not self._job.cancel.is_set():
            self.stop()
            show_info(self.CLOSED_NOTE)


def _teardown_of(panel: FitPanel):
    """When the widget is deleted: abandon its jobs and unhook the layer events (held weakly: a
    closure on the panel would keep it alive)."""
    ref = weakref.ref(panel)

    def teardown(*_):
        w = ref()
        if w is None:
            return
        for job in w._jobs():
            if job is not None:
                job.abandon()
        layers = w._viewer.layers
        layers.events.inserted.disconnect(w._on_inserted)
        layers.events.removed.disconnect(w.reset_choices)
        for layer in layers:
            layer.events.name.disconnect(w.reset_choices)

    return teardown
