""" "Train on my labels": fine-tune a Mask R-CNN on Labels layers drawn in napari.

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
selected when its Labels layer appears shown, unless a row of the same image is
selected already (of "<image> masks" and "<image> masks (CRF)", the one shown:
the CRF's, or the raw one of a run without the CRF).

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
that plane), and the status names the other planes that hold labels; with
``every labelled plane`` ticked, every plane of the Labels layer that holds
labels is, with the image's plane at the same place (a whole-stack segmentation's
uncorrected planes included). The last two axes are (Y, X). Multiscale images:
full resolution (level 0), so Labels layers drawn on a coarser level find no
image. A Labels layer placed elsewhere on screen than its image (another scale
or translate) is pointed out when training starts: pixels are paired by index.

Settings
--------
The iterations, learning rate, crop size, batch size and seed start at
:func:`napari_gardenseg.train`'s own defaults (``_options.TRAIN_DEFAULTS``, which the
engine reads too, so the widget always offers its working values); all but the iterations are
under "show training settings".

Saving
------
Training runs in a background job (:mod:`napari_gardenseg._worker`) with a
napari progress bar and a status line with the current loss; ``cancel`` stops
it after the current iteration and still saves what was learnt. The checkpoint
goes to ``save as``: by default a new file in the user's models folder
(:func:`napari_gardenseg._files.user_models_dir`, where the segmentation widget
finds it), and after each run the field moves on to a free name. An existing
file is never replaced without asking: Train asks first ("Replace?"), and a
"No" starts nothing. The trained model is registered with the segmentation
widget. Errors are shown as napari notifications; the layers are only read.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    LineEdit,
    PushButton,
    Select,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.utils.notifications import show_info, show_warning

from ._fit_panel import (
    _CHECKPOINT,
    FitPanel,
    ask_replace,
    chosen_base,
    register_trained_model,
    save_as_path,
    start_from_controls,
)
from ._paint_features import follow_if_ours
from ._train_layers import (
    candidate_pairs,
    other_labelled_planes,
    placement_note,
    samples_from_layers,
    unpaired_note,
)
from ._widget_controls import reset_keeping, restore_choice
from ._worker import Job, Outcome, keep_narrow, report_error, status_label, when_engine_loaded

if TYPE_CHECKING:
    import napari

__all__ = ["TrainWidget", "chosen_base", "default_output", "train_defaults"]


def default_output() -> Path:
    """A checkpoint path in the user's models folder that is not taken yet."""
    from ._files import free_path, user_models_dir

    return free_path(user_models_dir() / "my_model.pt")


def train_defaults() -> dict[str, Any]:
    """:func:`napari_gardenseg.train`'s defaults for the widget's controls (its signature reads
    them from :data:`napari_gardenseg._options.FIT_DEFAULTS`, as TRAIN_DEFAULTS does), without importing torch."""
    from ._options import TRAIN_DEFAULTS

    return dict(TRAIN_DEFAULTS)


# What training needs that takes seconds to import (torch and torchvision).
_ENGINE_MODULES = ("napari_gardenseg._training",)


def _train_job(samples, **kwargs):
    """Job body: :func:`napari_gardenseg.train`, imported in the job's thread (not the GUI's)."""
    from ._compat import avoid_triton_llvm_clash

    avoid_triton_llvm_clash()  # before the first torch import: see its docstring
    from ._training import train

    return train(samples, **kwargs)


def _learning_rate(text: str) -> float:
    """The learning rate field's value: "auto" (or empty) is train's default; ValueError in the
    field's words for text that is not a positive number (FitOptions' rule for ``lr``)."""
    from ._options import FIT_DEFAULTS, FitOptions

    text = str(text).strip().lower()
    if text in ("", "auto"):
        return FIT_DEFAULTS.lr
    try:
        return FitOptions(lr=float(text)).lr
    except ValueError:
        raise ValueError(f"learning rate must be a positive number or 'auto', got {text!r}") from None


class TrainWidget(FitPanel):
    """Fine-tune Mask R-CNN on your own Labels layers ("Train on my labels").

    See the module docstring for how images are paired with Labels layers,
    where class names come from and where the model is saved.
    """

    STOPPING = "cancelling after this iteration…"  # what was learnt is saved
    CLOSED_NOTE = "The training panel was closed: training stops after this iteration; what was learnt is saved."

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        # Which devices work needs torch, loaded in a job once the widget is open: until then the two that always do.
        self._devices = ["auto", "cpu"]
        self._engine: Job | None = None
        self._run_field = None
        self._seen_labels: weakref.WeakSet = weakref.WeakSet()
        defaults = train_defaults()
        lr = defaults.get("lr")

        self.pairs = Select(
            name="pairs",
            label="labels ← image",
            choices=self._pair_choices,
            tooltip="Labels layers to train on, each with its image (Ctrl/Shift-click to pick several)",
        )
        self.pairs.native.setMaximumHeight(90)  # a few rows; Qt's default list height pushes Train off a laptop screen
        self.class_names = LineEdit(
            name="class_names",
            label="class names",
            tooltip=(
                "One name for every instance (e.g. weed), one per selected layer separated by commas, "
                "or empty to read each Labels layer's class_name feature. A layer whose table names "
                "some instances' classes but not others' (plants painted since a segmentation): the name "
                "is only theirs, the others keep their classes; otherwise it is every instance's"
            ),
        )
        self.every_plane = CheckBox(
            name="every_plane",
            text="every labelled plane",
            value=False,
            tooltip=(
                "Stacks (z, time): train on every plane of the Labels layer that holds labels, the model's "
                "uncorrected planes of a whole-stack segmentation included; unticked: the plane shown"
            ),
        )
        self.base, self.checkpoint = start_from_controls()
        self.iterations = SpinBox(name="iterations", value=defaults.get("iterations", 500), min=1, max=100_000, step=50)
        self.show_settings = CheckBox(name="show_settings", text="show training settings", value=False)
        self.lr = LineEdit(
            name="lr",
            label="learning rate",
            value="auto" if lr is None else str(lr),
            tooltip="'auto': the engine's choice for the base model; or a number such as 0.0002",
        )
        self.crop = SpinBox(
            name="crop",
            label="crop (px)",
            value=defaults.get("crop", 384),
            min=32,
            max=4096,
            step=32,
            tooltip="Training crops are this size, or the smallest labelled plane if that is smaller",
        )
        self.batch_size = SpinBox(
            name="batch_size", label="batch size", value=defaults.get("batch_size", 2), min=1, max=64
        )
        self.seed = SpinBox(name="seed", value=defaults.get("seed", 0), min=0, max=2**31 - 1)
        self.settings = Container(
            name="settings", widgets=[self.lr, self.crop, self.batch_size, self.seed], visible=False
        )
        self.output = FileEdit(name="output", label="save as", mode="w", filter="*.pt", value=default_output())
        self.device = ComboBox(name="device", choices=lambda _w: list(self._devices), value="auto")
        self.train = PushButton(name="train", text="Train")
        self.cancel = PushButton(name="cancel", text="Cancel", enabled=False)
        self.status = status_label(name="status", label="", value="")
        self.adapt = PushButton(
            name="adapt",
            text="Adapt to these photos (no labels)…",
            tooltip="learn from the open photos without labels: opens the adapt panel",
        )
        self.extend(
            [
                self.pairs,
                self.class_names,
                self.every_plane,
                self.base,
                self.checkpoint,
                self.iterations,
                self.show_settings,
                self.settings,
                self.output,
                self.device,
                self.train,
                self.cancel,
                self.status,
                self.adapt,
            ]
        )

        keep_narrow(self)
        self.show_settings.changed.connect(lambda on: setattr(self.settings, "visible", bool(on)))
        self.train.changed.connect(self.start)
        self.cancel.changed.connect(self.stop)
        self.adapt.changed.connect(self.open_adapt)
        self.follow_layers(self.train)
        self.reset_choices()
        self._engine = when_engine_loaded(_ENGINE_MODULES, self._on_engine_loaded)

    def _on_engine_loaded(self, outcome: Outcome) -> None:
        self._engine = None
        if outcome.ok:  # a failure is reported by Train, with the engine's message
            self._devices = list(outcome.value)
            self.device.reset_choices()

    # -- pairing ---------------------------------------------------------------

    def _image_and_labels_layers(self) -> tuple[list, list]:
        layers = list(self._viewer.layers)
        return [ly for ly in layers if isinstance(ly, Image)], [ly for ly in layers if isinstance(ly, Labels)]

    def _candidates(self):
        return candidate_pairs(*self._image_and_labels_layers())

    def _unpaired(self) -> str | None:
        return unpaired_note(*self._image_and_labels_layers())

    def _pair_choices(self, _widget=None):
        return [(f"{lab.name}  ←  {im.name}", (im, lab)) for im, lab, _ in self._candidates()]

    def on_new_layer(self, layer) -> None:
        super().on_new_layer(layer)
        follow_if_ours(layer)  # a batch's label file opened: its table follows the brush

    def reset_choices(self, *_) -> None:
        """Refresh the pairs (napari calls this when layers change); keep the selection, select new sure pairs."""
        if not hasattr(self, "pairs"):  # called by Container.__init__ before the widgets exist
            return
        before = [tuple(v) for v in (self.pairs.value or [])]
        cands = self._candidates()
        self.pairs.reset_choices()
        keep = [(im, lab) for im, lab, _ in cands if (im, lab) in before]
        for im, lab, sure in cands:
            # a new Labels layer on screen that surely goes with an image nothing is selected for
            # yet: of "<image> masks" and "<image> masks (CRF)", the one shown, which is the one
            # the user corrects (the raw layer arrives hidden)
            new = sure and lab not in self._seen_labels and getattr(lab, "visible", True)
            if new and all(im is not i or not getattr(other, "visible", True) for i, other in keep):
                # the image's row chosen so far shows nothing (a run's raw layer, hidden again when
                # a run with the CRF follows one without): the layer on screen takes its place
                keep = [(i, other) for i, other in keep if i is not im]
                keep.append((im, lab))
        for _, lab, _ in cands:
            self._seen_labels.add(lab)
        self.pairs.value = keep
        base = self.base.value
        super().reset_choices()
        restore_choice(self.base, base)  # found again by its title, which may have changed
        if str(self.status.value).startswith("error") and not self.running:
            self.status.value = ""  # an error of the layers as they were: they changed

    def open_adapt(self, *_):
        """Dock the "Adapt to these photos" panel (:mod:`napari_gardenseg._adapt_widget`), or show the
        one docked already (from here or the Plugins menu: napari keeps one per plugin widget); returns it."""
        _, panel = self._viewer.window.add_plugin_dock_widget("napari-gardenseg", "Adapt to these photos")
        return panel

    # -- running ---------------------------------------------------------------

    def _jobs(self) -> tuple:
        return (self._job, self._engine)

    def start(self, *_) -> Job | None:
        """Check the inputs and start training in a background job; returns it (None when nothing started)."""
        if self.running:
            show_info("Training is already running; cancel it first.")
            return None
        try:
            chosen = [tuple(p) for p in self.pairs.value]  # in the order they were clicked
            if not chosen and not self.pairs.choices and (why := self._unpaired()) is not None:
                raise ValueError(why)
            pairs = [tuple(p) for p in self.pairs.choices if tuple(p) in chosen]  # the list's order
            gone = [lab.name for im, lab in pairs if im not in self._viewer.layers or lab not in self._viewer.layers]
            if gone:
                raise ValueError(f"layer(s) {gone} are no longer in the viewer")
            point = self._viewer.dims.point
            planes = "labelled" if self.every_plane.value else "current"
            samples = samples_from_layers(pairs, self.class_names.value, point=point, planes=planes)
            base = chosen_base(self.base, self.checkpoint)
            output = save_as_path(self.output, default_output)
            from ._options import FitOptions

            options = FitOptions(
                iterations=int(self.iterations.value),
                batch_size=int(self.batch_size.value),
                lr=_learning_rate(self.lr.value),
                crop=min(int(self.crop.value), min(min(lab.shape) for _, lab, _ in samples)),
                seed=int(self.seed.value),
            )
        except (ValueError, TypeError) as exc:
            self.status.value = report_error(exc, "training")
            return None
        overwrite = False
        if output.exists():
            if not ask_replace(self.native, output):
                self.status.value = f"not started: {output.name} exists (choose another 'save as' name)"
                return None
            overwrite = True

        job = Job(
            _train_job,
            samples,
            base=base,
            iterations=options.iterations,
            output=output,
            overwrite=overwrite,
            device=self.device.value,
            crop=options.crop,
            lr=options.lr,
            batch_size=options.batch_size,
            seed=options.seed,
            meta={"trained_on": [lab.name for _, lab in pairs]},
            desc="Training Mask R-CNN",
        )
        self._run_field = self.output.value  # what 'save as' showed when this run started
        self._last_message = ""
        shown = self.base.native.currentText()  # the entry's title, not its key or a full path
        if self.base.value == _CHECKPOINT:
            shown = Path(str(self.checkpoint.value)).name
        # a stack's Labels layer gives each of its labelled planes: say how many were taken
        what = (
            f"{len(pairs)} layer(s)"
            if len(samples) == len(pairs)
            else f"{len(samples)} planes of {len(pairs)} layer(s)"
        )
        notes = [placement_note(pairs), None if planes == "labelled" else other_labelled_planes(pairs, point)]
        for note in filter(None, notes):
            show_warning(note)  # it stays in napari's notifications; the status line follows the run
        said = "; ".join(filter(None, notes))
        return self.launch(job, f"training on {what}, loading {shown}…" + (f" ({said})" if said else ""))

    def show_progress(self, message: str) -> None:
        short = message.split(" (")[0]  # "iteration 3/500 loss=1.234" without the loss terms
        self._last_message = short
        self.status.value = short
        self.status.tooltip = message

    def _finished(self, job: Job, outcome: Outcome) -> None:
        if outcome.cancelled:
            self.status.value = "cancelled; nothing saved"
            show_info(str(outcome.error))
        elif not outcome.ok:
            self.status.value = report_error(outcome.error, "training")
        else:
            self._on_saved(Path(outcome.value), stopped=job.cancel.is_set())

    def _on_saved(self, path: Path, stopped: bool) -> None:
        from ._files import free_path

        registered = register_trained_model(path, path.stem)
        reset_keeping(self.base)  # the new model is a base to start from too
        what = "stopped early; " if stopped else ""
        where = (
            "added to the segmentation widget's models and chosen there"
            if registered
            else "load it in the segmentation widget as a checkpoint"
        )
        self.status.value = f"{what}saved {path.name} ({self._last_message or 'done'})"
        show_info(f"Training {what}model saved to {path}; {where}.")
        if self.output.value == self._run_field:  # unchanged during the run: move on to a free name
            self.output.value = free_path(path)
