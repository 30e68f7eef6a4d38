""""Train on my labels": fine-tune a Mask R-CNN on Labels layers drawn in napari.

Choosing what to train on
-------------------------
``pairs`` lists every Labels layer next to the Image layer it goes with, as
"labels  <-  image"; select one or more rows (Ctrl/Shift-click). An Image layer
goes with a Labels layer when their (H, W) planes match and:

* the Labels layer is named after it (``"<image> masks"`` as the segmentation
  widget names its output, ``"<image> refined"``, ``"<image>_labels"``...):
  then that is the only row for this Labels layer; or
* otherwise, every Image layer of the same shape gets a row, so that you can
  choose.

A row that leaves no doubt (a name match, or the only image of that shape) is
selected when its Labels layer appears, unless a row of the same image is
selected already (of "<image> masks" and "<image> masks (CRF)", the first).

The list follows the viewer's layers (added, removed, renamed).

Class names
-----------
``class_names`` is one name for every instance of every selected layer
(``weed``), one per selected row in list order separated by commas
(``weed, rosette``), or empty: then each Labels layer's ``features`` table is
read, its ``class_name`` column matched to label ids through its ``label``
column (what the segmentation widget writes; napari's row-per-label order
without one). An empty entry in a comma list (``weed,,rosette``) reads that
layer's features.

Only 2-D images are trained on: grey or RGB(A). For a layer with more axes (a
z-stack, a time series) the plane currently shown in the viewer is taken (the
segmentation widget's one-plane output of a stack works when the viewer is on
that plane); the last two axes are (Y, X). Multiscale images: full resolution
(level 0), so Labels layers drawn on a coarser level find no image.

Training runs in a background thread with a napari progress bar and a status
line with the current loss; ``cancel`` stops it after the current iteration and
still saves what was learnt. The checkpoint goes to ``output`` (by default
``~/.napari-gardenseg/models/my_model.pt``; after each run the field moves on to
a free name so that the next run does not overwrite it) and is registered with
the segmentation widget. Errors are shown as napari notifications; the layers
are only read.
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import ComboBox, Container, FileEdit, Label, LineEdit, PushButton, Select, SpinBox
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info, show_warning

from ._layers import avoid_triton_llvm_clash
from ._train_layers import candidate_pairs, samples_from_layers

if TYPE_CHECKING:
    import napari

__all__ = ["TrainWidget", "default_output"]

MODELS_DIR = Path("~/.napari-gardenseg/models")
MAX_CROP = 384
_CHECKPOINT = "checkpoint"


def _free_path(path: Path) -> Path:
    """``path`` if no file is there, else ``<stem>-2<suffix>``, ``-3``... (next to it)."""
    path = Path(path).expanduser()
    if not path.exists():
        return path
    stem = path.stem
    head, _, tail = stem.rpartition("-")
    if head and tail.isdigit():
        stem = head
    n = 2
    while (candidate := path.with_name(f"{stem}-{n}{path.suffix}")).exists():
        n += 1
    return candidate


def default_output() -> Path:
    """A checkpoint path under ``~/.napari-gardenseg/models`` that is not taken yet."""
    return _free_path(MODELS_DIR.expanduser() / "my_model.pt")


def _devices() -> list[str]:
    from ._models import available_devices

    return available_devices()


def register_trained_model(path, title: str) -> bool:
    """Add a trained checkpoint to the segmentation widget's model list; False when that is not possible."""
    try:
        from ._widget import register_model
    except (ImportError, AttributeError):
        return False
    try:
        register_model(path, title)
    except Exception as exc:  # never lose a finished training run to a registry problem
        show_warning(f"The model was saved to {path} but could not be added to the segmentation widget: {exc}")
        return False
    return True


class TrainWidget(Container):
    """Fine-tune Mask R-CNN on your own Labels layers ("Train on my labels").

    See the module docstring for how images are paired with Labels layers and
    where class names come from. Only 2-D planes are used: 2-D grey or RGB
    images, or the viewer's current plane of a stack.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        avoid_triton_llvm_clash()  # before the first torch import: see its docstring
        from ._models import MODEL_NAMES, MODEL_TITLES

        self._viewer = napari_viewer
        self._worker = None
        self._cancel_event: threading.Event | None = None
        self._pbar = None
        self._run = 0
        self._last_message = ""
        self._seen_labels: weakref.WeakSet = weakref.WeakSet()
        self._warned: set[str] = set()
        self._run_field = None

        self.pairs = Select(
            name="pairs",
            label="labels ← image",
            choices=self._pair_choices,
            tooltip="Labels layers to train on, each with its image (Ctrl/Shift-click to pick several)",
        )
        self.class_names = LineEdit(
            name="class_names",
            label="class names",
            tooltip=(
                "One name for every instance (e.g. weed), one per selected layer separated by commas, "
                "or empty to read each Labels layer's class_name feature"
            ),
        )
        self.base = ComboBox(
            name="base",
            label="start from",
            choices=[(MODEL_TITLES.get(n, n), n) for n in MODEL_NAMES] + [("checkpoint file…", _CHECKPOINT)],
            value="garden" if "garden" in MODEL_NAMES else MODEL_NAMES[0],
        )
        self.checkpoint = FileEdit(name="checkpoint", label="base checkpoint", mode="r", filter="*.pt *.pth", visible=False)
        self.iterations = SpinBox(name="iterations", value=500, min=1, max=100_000, step=50)
        self.output = FileEdit(name="output", label="save as", mode="w", filter="*.pt", value=default_output())
        self.device = ComboBox(name="device", choices=_devices(), value="auto")
        self.train = PushButton(name="train", text="Train")
        self.cancel = PushButton(name="cancel", text="Cancel", enabled=False)
        self.status = Label(name="status", label="", value="")
        self.extend(
            [
                self.pairs,
                self.class_names,
                self.base,
                self.checkpoint,
                self.iterations,
                self.output,
                self.device,
                self.train,
                self.cancel,
                self.status,
            ]
        )

        self.base.changed.connect(lambda v: setattr(self.checkpoint, "visible", v == _CHECKPOINT))
        self.train.changed.connect(self.start)
        self.cancel.changed.connect(self.stop)
        layers = napari_viewer.layers
        layers.events.inserted.connect(self._on_inserted)
        layers.events.removed.connect(self.reset_choices)
        for layer in layers:
            layer.events.name.connect(self.reset_choices)
        # closing the widget (or napari) stops a run and unhooks the layer events
        self.native.destroyed.connect(self._make_teardown())
        self.reset_choices()

    # -- pairing ---------------------------------------------------------------

    def _candidates(self):
        layers = list(self._viewer.layers)
        images = [ly for ly in layers if isinstance(ly, Image)]
        labels = [ly for ly in layers if isinstance(ly, Labels)]
        return candidate_pairs(images, labels)

    def _pair_choices(self, _widget=None):
        return [(f"{lab.name}  ←  {im.name}", (im, lab)) for im, lab, _ in self._candidates()]

    def _on_inserted(self, event):
        event.value.events.name.connect(self.reset_choices)
        self.reset_choices()

    def reset_choices(self, *_):
        """Refresh the pairs (napari calls this when layers change); keep the selection, select new sure pairs."""
        if not hasattr(self, "pairs"):  # called by Container.__init__ before the widgets exist
            return
        before = [tuple(v) for v in (self.pairs.value or [])]
        cands = self._candidates()
        self.pairs.reset_choices()
        keep = [(im, lab) for im, lab, _ in cands if (im, lab) in before]
        for im, lab, sure in cands:
            # a new Labels layer that surely goes with an image nothing is selected for yet
            # (of "<image> masks" and "<image> masks (CRF)", the first one)
            if sure and lab not in self._seen_labels and all(im is not i for i, _ in keep):
                keep.append((im, lab))
        for _, lab, _ in cands:
            self._seen_labels.add(lab)
        self.pairs.value = keep
        super().reset_choices()

    # -- running ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._worker is not None

    def _base_value(self):
        if self.base.value != _CHECKPOINT:
            return self.base.value
        value = str(self.checkpoint.value or "")
        if value in ("", "."):
            raise ValueError("choose the checkpoint file to start from ('base checkpoint')")
        path = Path(value).expanduser()
        if not path.is_file():
            raise ValueError(f"checkpoint file not found: {path}")
        return str(path)

    def _output_value(self) -> Path:
        path = Path(self.output.value).expanduser()
        if str(self.output.value) in ("", ".") or path.is_dir():
            raise ValueError(f"'save as' must be a file name (e.g. {default_output()}), not a folder")
        return path if path.suffix else path.with_suffix(".pt")

    def start(self, *_):
        """Check the inputs and start training in a background thread; returns the worker (None on error)."""
        if self.running:
            show_info("Training is already running; cancel it first.")
            return None
        try:
            pairs = [tuple(p) for p in self.pairs.value]
            gone = [lab.name for im, lab in pairs if im not in self._viewer.layers or lab not in self._viewer.layers]
            if gone:
                raise ValueError(f"layer(s) {gone} are no longer in the viewer")
            samples = samples_from_layers(pairs, self.class_names.value, point=self._viewer.dims.point)
            base = self._base_value()
            output = self._output_value()
        except ValueError as exc:
            show_error(str(exc))
            return None

        from napari.qt.threading import create_worker
        from napari.utils import progress
        from superqt.utils import FunctionWorker

        from ._training import train

        iterations = int(self.iterations.value)
        crop = min(MAX_CROP, min(min(lab.shape) for _, lab, _ in samples))
        self._run += 1
        run = self._run
        self._cancel_event = threading.Event()
        self._last_message = ""
        meta = {"trained_on": [lab.name for _, lab in pairs]}
        worker = create_worker(
            train,
            samples,
            base=base,
            iterations=iterations,
            output=output,
            device=self.device.value,
            progress=lambda f, msg: self._progress(run, f, msg),
            cancel=self._cancel_event,
            crop=crop,
            meta=meta,
            _start_thread=False,
            # superqt's plain worker, not napari's: that one also reports every error (a cancel
            # included) with a traceback, and every warning every iteration; ours says it once
            _worker_class=FunctionWorker,
            _ignore_errors=True,
        )
        self._warned = set()
        worker.warned.connect(self._on_warned)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._run_field = self.output.value  # what 'save as' showed when this run started
        self._pbar = progress(total=iterations, desc="Training Mask R-CNN")
        self.train.enabled = False
        self.cancel.enabled = True
        self.status.value = f"training on {len(samples)} layer(s), loading {self.base.value}…"
        worker.start()
        return worker

    def stop(self, *_):
        """Ask a running training to stop after its current iteration (what was learnt is saved)."""
        if self._cancel_event is not None and self.running:
            self._cancel_event.set()
            self.cancel.enabled = False
            self.status.value = "cancelling after this iteration…"

    def _make_teardown(self):
        widget = weakref.ref(self)  # a closure on self would keep the widget alive

        def teardown(*_):
            w = widget()
            if w is None:
                return
            if w._cancel_event is not None:
                w._cancel_event.set()
            layers = w._viewer.layers
            for emitter, callback in [(layers.events.inserted, w._on_inserted), (layers.events.removed, w.reset_choices)]:
                emitter.disconnect(callback)
            for layer in layers:
                layer.events.name.disconnect(w.reset_choices)

        return teardown

    def _progress(self, run, fraction, message):  # training thread
        from superqt.utils import ensure_main_thread

        ensure_main_thread(self._show_progress)(run, fraction, message)

    def _show_progress(self, run, fraction, message):  # main thread
        if run != self._run or not self.running:
            return
        short = message.split(" (")[0]  # "iteration 3/500 loss=1.234" without the loss terms
        self._last_message = short
        if not (self._cancel_event and self._cancel_event.is_set()):
            self.status.value = short
        self.status.tooltip = message
        if self._pbar is not None:
            done = round(fraction * self._pbar.total)
            self._pbar.update(done - self._pbar.n)
            self._pbar.set_description(f"Training: {short.replace('iteration ', '')}")

    def _on_returned(self, path):
        path = Path(path)
        cancelled = bool(self._cancel_event and self._cancel_event.is_set())
        title = path.stem
        registered = register_trained_model(path, title)
        what = "stopped early; " if cancelled else ""
        where = "added to the segmentation widget's models" if registered else "load it in the segmentation widget as a checkpoint"
        self.status.value = f"{what}saved {path.name} ({self._last_message or 'done'})"
        show_info(f"Training {what}model saved to {path}; {where}.")
        if self.output.value == self._run_field:  # unchanged during the run: move on to a free name
            self.output.value = _free_path(path)

    def _on_warned(self, args):
        message = str(args[0])
        if message not in self._warned:  # the same warning every iteration: show it once per run
            self._warned.add(message)
            show_warning(message)

    def _on_errored(self, exc):
        from ._inference import Cancelled

        if isinstance(exc, Cancelled):
            self.status.value = "cancelled; nothing saved"
            show_info(str(exc))
        else:
            self.status.value = "training failed"
            show_error(f"Training failed: {exc}")

    def _on_finished(self):
        self._worker = None
        self._cancel_event = None
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self.train.enabled = True
        self.cancel.enabled = False
