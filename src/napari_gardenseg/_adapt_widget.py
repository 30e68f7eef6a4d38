""" "Adapt to these photos": run :func:`napari_gardenseg.adapt` on the viewer's image layers.

No labels needed: the selected Image layers (2-D, grey or RGB; multiscale:
full resolution) are the unlabelled photos. The run is a background job
(:mod:`napari_gardenseg._worker`) with a napari progress bar, a status line
and cancel; the new model goes to ``save as`` (by default a new file in the
user's models folder), its report next to it (``MODEL.json``), and it is
added to the segmentation widget's models. An existing file is never
replaced: Adapt asks first.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import FileEdit, PushButton, Select, SpinBox
from napari.layers import Image
from napari.utils.notifications import show_info

from ._compat import avoid_triton_llvm_clash
from ._fit_panel import (
    FitPanel,
    ask_replace,
    chosen_base,
    register_trained_model,
    save_as_path,
    start_from_controls,
)
from ._widget_controls import reset_keeping, restore_choice
from ._worker import Job, Outcome, keep_narrow, report_error, status_label

if TYPE_CHECKING:
    import napari

__all__ = ["AdaptWidget", "photo_of_layer"]


def _lead_shape(layer) -> tuple[int, ...]:
    """The axes of an Image layer before its plane (and colour axis): () for a 2-D photo."""
    data = layer.data[0] if layer.multiscale else layer.data
    return tuple(int(n) for n in data.shape[: max(0, data.ndim - (1 if layer.rgb else 0) - 2)])


def _is_photo(layer) -> bool:
    # a photo with extra axes of length 1 (a one-photo (1, 1, H, W, 3) layer of a T/Z reader) is one photo
    return isinstance(layer, Image) and all(n == 1 for n in _lead_shape(layer))


def photo_of_layer(layer: Image):
    """The layer's 2-D photo (grey or RGB(A); multiscale: level 0; leading axes of length 1 dropped);
    ValueError for stacks."""
    data = layer.data[0] if layer.multiscale else layer.data
    if not _is_photo(layer):
        raise ValueError(left_out_note([layer]))
    lead = _lead_shape(layer)
    return data[(0,) * len(lead)] if lead else data


def left_out_note(layers) -> str | None:
    """Why Image layers are not offered as photos (stacks of several planes), with what to do; None
    when there is none."""
    stacks = [layer for layer in layers if isinstance(layer, Image) and not _is_photo(layer)]
    if not stacks:
        return None
    from ._image_arrays import ImageError
    from ._planes import plane_source

    for layer in stacks:
        try:  # colour shown as a stack of N x 3 slivers, grey with alpha: as the segmentation widget says
            plane_source(layer)
        except ImageError as exc:
            return f"not offered: {exc}"
    first = stacks[0]
    named = ", ".join(f"'{layer.name}' ({' x '.join(map(str, _lead_shape(layer)))} planes)" for layer in stacks[:3])
    named += " ..." if len(stacks) > 3 else ""
    index = ", ".join("0" for _ in _lead_shape(first))
    level = "[0]" if first.multiscale else ""  # level 0, then its plane
    return (
        f"not offered: {named}: adapt learns from 2-D photos, one per layer; add the planes you want as photos, "
        f"e.g. viewer.add_image(viewer.layers[{first.name!r}].data{level}[{index}], rgb={bool(first.rgb)})"
    )


class AdaptWidget(FitPanel):
    """Adapt a model to the open photos without labels (see the module docstring)."""

    CLOSED_NOTE = "The adapt panel was closed: adapting stops; the best checked round so far is saved, if any."

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        avoid_triton_llvm_clash()
        from ._adapt import default_output

        self._viewer = viewer
        self.photos = Select(
            label="photos",
            choices=self._photo_choices,
            allow_multiple=True,
            tooltip="unlabelled photos of your field or garden (Image layers)",
        )
        self.photos.native.setMaximumHeight(90)  # a few rows; Qt's default list height pushes the buttons off-screen
        self.base, self.checkpoint = start_from_controls()
        self.minutes = SpinBox(
            label="minutes (0: auto)",
            value=0,
            min=0,
            max=600,
            tooltip="time budget; auto: 5 + 0.5 per photo, at most 25",
        )
        self.output = FileEdit(label="save as", mode="w", value=default_output(), filter="*.pt")
        self.run = PushButton(text="Adapt to these photos")
        self.cancel = PushButton(text="Cancel", enabled=False)
        self.status = status_label(value="select photos (no labels needed)")
        self.extend(
            [self.photos, self.base, self.checkpoint, self.minutes, self.output, self.run, self.cancel, self.status]
        )
        keep_narrow(self)
        self.run.changed.connect(self.start)
        self.cancel.changed.connect(self.stop)
        self._offered: list = []  # the photos offered so far: a photo opened later is selected, as at the start
        self.follow_layers(self.run)
        self.reset_choices()
        self.status.value = self._idle_status()

    def _idle_status(self) -> str:
        """What the status says while nothing runs: ready, or why no photo is offered."""
        if self.photos.choices:
            return "ready: the selected photos need no labels"
        return (
            left_out_note(list(self._viewer.layers))
            or "open your photos as image layers (2-D photos, no labels needed)"
        )

    def _photo_choices(self, _widget=None):
        # stacks are not offered: adapt learns from single photos (photo_of_layer)
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image) and _is_photo(layer)]

    def reset_choices(self, *_) -> None:
        """Refresh the photos (napari calls this when layers change): the selection is kept through
        renames (magicgui finds a choice again by its title), and a photo opened since is selected."""
        if not hasattr(self, "photos"):  # called by Container.__init__ before the widgets exist
            return
        before = list(self.photos.value or [])
        base = self.base.value
        super().reset_choices()
        restore_choice(self.base, base)
        offered = list(self.photos.choices)
        self.photos.value = [
            layer for layer in offered if any(layer is b for b in before) or all(layer is not o for o in self._offered)
        ]
        self._offered = offered
        if not self.running and str(self.status.value).startswith(("error", "not offered", "open your", "ready")):
            # an error or a word about the layers as they were (the Train panel's rule): they changed
            self.status.value = self._idle_status()

    def start(self, *_) -> Job | None:
        """Check the inputs and start adapting in a background job (None when nothing started)."""
        if self.running:
            show_info("Adapting is already running; cancel it first.")
            return None
        try:
            layers = list(self.photos.value)
            if not layers:
                why = None if self.photos.choices else left_out_note(list(self._viewer.layers))
                raise ValueError(why or "select at least one photo (Image layer)")
            photos = [photo_of_layer(layer) for layer in layers]
            base = chosen_base(self.base, self.checkpoint)
            from ._adapt import default_output

            output = save_as_path(self.output, default_output)
        except (ValueError, TypeError) as exc:
            self.status.value = report_error(exc, "adapting")
            return None
        from ._adapt import adapt, check_report_target, report_path
        from ._files import OutputExistsError

        try:
            check_report_target(output, overwrite=True)  # a file adapt did not write there is never replaced
        except OutputExistsError as exc:
            self.status.value = report_error(exc, "adapting")
            return None
        overwrite = False
        taken = [p for p in (output, report_path(output)) if p.exists()]
        if taken:
            if not ask_replace(self.native, *taken, made="adapted"):
                self.status.value = f"not started: {taken[0].name} exists (choose another 'save as' name)"
                return None
            overwrite = True

        minutes = float(self.minutes.value) or None
        job = Job(
            adapt,
            photos,
            base,
            minutes=minutes,
            output=output,
            overwrite=overwrite,
            desc="Adapting to the photos",
        )
        return self.launch(job, f"adapting to {len(photos)} photo(s)…")

    def _finished(self, job: Job, outcome: Outcome) -> None:
        # cancelled: before training nothing is saved, later the best checked round so far
        if outcome.cancelled:
            self.status.value = "cancelled; nothing saved"
        elif not outcome.ok:
            self.status.value = report_error(outcome.error, "adapting")
        else:
            from ._files import free_path

            path = Path(outcome.value)
            registered = register_trained_model(path, path.stem)
            reset_keeping(self.base)  # the new model is a base to start from too
            from ._adapt import outcome_of, report_path, taken_name

            self.status.value = f"saved {path.name}: {outcome_of(path)} (report: {report_path(path).name})"
            where = "chosen in the segmentation widget" if registered else "load it in the segmentation widget"
            show_info(f"Adapted model saved to {path}; {where}.")
            self.output.value = free_path(path, taken=taken_name)  # the model's name and its report's free
