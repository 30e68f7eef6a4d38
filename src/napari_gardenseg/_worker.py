"""Background jobs for the dock widgets: one thread, progress, cancel, teardown, errors.

Every panel (segmentation, training, adapting) runs its slow work the same way::

    job = Job(run_planes, source, model, desc="Garden segmentation",
              on_progress=show, on_done=finish)
    job.start()          # fn(*args, progress=..., cancel=..., **kwargs) in a thread
    job.request_cancel() # sets the Event the engine checks
    job.abandon()        # the widget is closing: cancel, and call back nothing

``fn`` runs in a superqt :class:`~superqt.utils.FunctionWorker` (Qt's thread
pool). Everything else happens in the GUI thread: ``on_progress(fraction,
message)``, warnings (each shown once per job), the napari progress bar and,
at the end, ``on_done(outcome)`` with an :class:`Outcome`.

Progress is coalesced: the engine may report hundreds of times a second (one
CRF instance after another); the GUI thread is woken once per batch of
reports and shows the latest, so a fast reporter never floods the event loop.

:func:`report_error` is the one way a widget tells the user that something
failed: a one-line message for the errors a user can act on, and for anything
else the message plus the traceback, kept in the notification ("View
Traceback") and in the log at WARNING level. :func:`status_label` is where each
widget shows a job's state, a count, a hint or that one line; :func:`keep_narrow`
keeps long choices from widening a dock.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

from qtpy.QtCore import QObject, Signal

from ._cancel import Cancelled, ProgressFn
from ._errors import is_user_error

__all__ = ["Job", "Outcome", "report_error", "is_user_error", "status_label", "keep_narrow", "watch_dock"]

log = logging.getLogger("napari_gardenseg")

_ACTIVE: set[Job] = set()  # jobs whose thread still runs: kept alive until it ends
_POOL = None  # our own thread pool, see _pool()


def _pool():
    """The jobs' thread pool: a private one, never Qt's global pool.

    Qt's global pool has one thread per core. A model load cannot be
    interrupted, so on a small machine jobs could fill it, and napari's GUI
    thread (which holds the GIL) waits on that pool in places (its activity
    indicator's animation): a deadlock.
    """
    global _POOL
    if _POOL is None:
        import atexit

        from qtpy.QtCore import QThreadPool

        _POOL = QThreadPool()
        _POOL.setMaxThreadCount(4)
        atexit.register(_finish_jobs)
    return _POOL


# The longest napari's exit waits for running jobs. A cancelled run stops within a fraction of a
# second; a model load cannot be interrupted, but ends in seconds.
EXIT_WAIT_MS = 60_000


def _finish_jobs() -> None:
    """At interpreter exit (napari closed while a job runs, a script's end): cancel every job and
    wait for its thread. A thread that outlives its Job (the interpreter's teardown deletes it)
    reports to a deleted Qt object, and the process aborts."""
    for job in list(_ACTIVE):
        job.cancel.set()  # no callback runs after this: the event loop has ended
    if _POOL is not None:
        _POOL.waitForDone(EXIT_WAIT_MS)


@dataclass
class Outcome:
    """How a job ended: its return value, or the exception it raised."""

    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def cancelled(self) -> bool:
        return isinstance(self.error, Cancelled)


class _Relay(QObject):
    """Carries 'there is news' from the worker thread to the GUI thread (a queued signal)."""

    poke = Signal()


class Job:
    """``fn(*args, progress=..., cancel=..., **kwargs)`` in a background thread; callbacks in the GUI thread.

    ``desc``: title of a napari progress bar (none when empty); its cancel
    button cancels the job. ``on_progress(fraction, message)`` and
    ``on_done(outcome)`` are called in the GUI thread; ``on_done`` exactly
    once, unless the job was abandoned.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *args: Any,
        desc: str = "",
        on_progress: ProgressFn | None = None,
        on_done: Callable[[Outcome], None] | None = None,
        **kwargs: Any,
    ) -> None:
        self.cancel = threading.Event()
        self.on_progress = on_progress
        self.on_done = on_done
        self.on_cancel: Callable[[], None] | None = None  # the panel's Cancel, for the bar's (GUI thread)
        self.outcome: Outcome | None = None
        self._desc = desc
        self._pbar = None
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._latest: tuple[float, str] | None = None
        self._pending = False
        self._relay = _Relay()
        self._relay.poke.connect(self._deliver_progress)
        from superqt.utils import FunctionWorker

        self._worker = FunctionWorker(fn, *args, progress=self._report, cancel=self.cancel, **kwargs)
        self._worker.returned.connect(self._on_returned)
        self._worker.errored.connect(self._on_errored)
        self._worker.warned.connect(self._on_warned)
        self._worker.finished.connect(self._on_finished)

    # -- control (GUI thread) -------------------------------------------------------

    def start(self) -> Job:
        if self._desc:
            self._pbar = _bar_class()(total=100, desc=self._desc, cancel_callback=self._bar_cancelled)
        _ACTIVE.add(self)
        _pool().start(self._worker)
        return self

    def request_cancel(self) -> None:
        """Ask the run to stop (the engine checks the event within a fraction of a second)."""
        self.cancel.set()

    def _bar_cancelled(self) -> None:
        """The progress bar's Cancel (napari's activity dock): as the panel's own Cancel."""
        (self.on_cancel or self.request_cancel)()

    def abandon(self) -> None:
        """Cancel and forget the callbacks: for a widget that is being closed."""
        self.cancel.set()
        self.on_progress = None
        self.on_done = None
        self._close_pbar()

    @property
    def running(self) -> bool:
        return self in _ACTIVE

    # -- worker thread ----------------------------------------------------------------

    def _report(self, fraction: float, message: str) -> None:
        with self._lock:
            self._latest = (float(fraction), str(message))
            wake = not self._pending
            self._pending = True
        if wake:
            self._relay.poke.emit()

    # -- GUI thread ---------------------------------------------------------------------

    def _deliver_progress(self) -> None:
        with self._lock:
            latest, self._latest, self._pending = self._latest, None, False
        if latest is None or self.outcome is not None:  # nothing new, or the job has ended
            return
        fraction, message = latest
        if self.on_progress is not None and not self.cancel.is_set():
            self.on_progress(fraction, message)
        # napari's progress bar may run the event loop (its activity dialog calls processEvents),
        # so the job can finish in the middle of this: touch the bar last, and only while it is open.
        pbar = self._pbar
        if pbar is None:
            return
        pbar.set_description(f"{self._desc}: {message.split(' (')[0]}")
        n = int(round(100 * min(max(fraction, 0.0), 1.0)))
        if self._pbar is pbar and n > pbar.n:
            pbar.update(n - pbar.n)

    def _on_returned(self, value: Any) -> None:
        self.outcome = Outcome(value=value)

    def _on_errored(self, exc: BaseException) -> None:
        self.outcome = Outcome(error=exc)

    def _on_warned(self, args) -> None:
        message = str(args[0])
        if message not in self._warned:  # the same warning every iteration: show it once per job
            self._warned.add(message)
            from napari.utils.notifications import show_warning

            show_warning(message)

    def _on_finished(self) -> None:
        _ACTIVE.discard(self)
        self.on_progress = None
        self._close_pbar()
        done, self.on_done = self.on_done, None
        if done is not None:
            done(self.outcome or Outcome(error=RuntimeError("the background job ended without a result")))

    def _close_pbar(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None


# -- the engine's imports ------------------------------------------------------------


def imported(modules) -> bool:
    """True when every module named in ``modules`` is imported already."""
    import sys

    return all(name in sys.modules for name in modules)


def when_engine_loaded(modules, done: Callable[[Outcome], None]) -> Job | None:
    """Call ``done`` with an :class:`Outcome` holding the device choices once ``modules`` are imported.

    At once (and None returned) when they are already; else from a
    :func:`load_engine` job, which is returned (running).
    """
    if imported(modules):
        from ._device import available_devices

        done(Outcome(value=available_devices()))
        return None
    job = Job(load_engine, modules)
    job.on_done = done
    return job.start()


def load_engine(modules, *, progress, cancel) -> list[str]:
    """Job body: import ``modules`` (torch, torchvision: seconds); returns the device choices.

    The widgets open without them and run this at once in the background, so
    napari stays responsive while they load (an import holds the GIL only
    while it loads each extension module) and no run starts with an import.
    """
    import importlib

    from ._compat import avoid_triton_llvm_clash

    avoid_triton_llvm_clash()  # before the first torch import: see its docstring
    for name in modules:
        importlib.import_module(name)
    from ._device import available_devices

    return available_devices()


# -- errors ---------------------------------------------------------------------------


def report_error(exc: BaseException, what: str) -> str:
    """Show why ``what`` ("segmentation", "training") failed; return a one-line status text.

    User errors: their message, as one notification. Unexpected errors: the
    message with the exception type, an error notification that keeps the
    traceback (napari's "View Traceback"), and a WARNING log record with the
    traceback, so there is always something to report.
    """
    from napari.utils.notifications import ErrorNotification, notification_manager, show_error

    # An exception raised without a message still has a docstring that says what it means.
    message = str(exc) or " ".join((type(exc).__doc__ or type(exc).__name__).split())
    from ._device import with_memory_advice

    message = with_memory_advice(exc) or message
    if is_user_error(exc):
        if isinstance(exc, ImportError) and "crf" in type(exc).__name__.lower() and "crf=" not in message:
            message += (
                " Choose the CRF backend 'auto' or 'torch' (CRF settings), "
                "or untick 'refine with the dense CRF' to segment without it."
            )
        log.info("%s failed: %s", what, message)
        show_error(message)
        # the status label wraps: the first line whole, up to where a cut would hide what to do
        return f"error: {message.splitlines()[0][:400]}"
    log.warning("%s failed unexpectedly", what, exc_info=(type(exc), exc, exc.__traceback__))
    text = (
        f"{what} failed: {type(exc).__name__}: {message} "
        "(unexpected: the traceback is under 'View Traceback' and in the log; please report it)"
    )
    note = ErrorNotification(exc)
    note.message = text
    notification_manager.dispatch(note)
    return f"error: {type(exc).__name__}: {message.splitlines()[0][:100]} (see the log)"


# a closed drop-down shows this many characters at least; its list opens as wide as its longest choice
NARROW_CHOICE_CHARS = 16


def keep_narrow(container) -> None:
    """Let a dock widget be narrow whatever its choices say: each drop-down of ``container`` (and of
    the containers in it) sizes to :data:`NARROW_CHOICE_CHARS` characters instead of its longest
    choice (a model's long title, a layer named after a long file), with the chosen text as its
    tooltip when it has none of its own; its list still opens wide enough to read every choice.
    Without this, one long choice makes the dock take half of a laptop's screen from the canvas."""
    from magicgui.widgets import ComboBox, Container
    from qtpy.QtWidgets import QComboBox

    for widget in container:
        if isinstance(widget, Container):
            keep_narrow(widget)
        elif isinstance(widget, ComboBox):
            combo = widget.native
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(NARROW_CHOICE_CHARS)
            if not combo.toolTip():
                combo.setToolTip(combo.currentText())
                combo.currentTextChanged.connect(combo.setToolTip)


@functools.cache
def _bar_class():
    """napari's ``cancelable_progress`` whose Cancel button calls ``cancel_callback`` at once: napari
    calls it only while the bar is iterated, and a Job's bar is moved by hand, so the button said
    "Canceled" while the run went on."""
    from napari.utils import cancelable_progress

    class JobProgress(cancelable_progress):
        def cancel(self) -> None:
            super().cancel()
            if self.cancel_callback is not None:
                self.cancel_callback()

    return JobProgress


def watch_dock(widget) -> None:
    """Call ``widget._on_dock_closed()`` when the dock holding ``widget`` (a magicgui widget) is
    deleted; the dock watched is kept in ``widget._dock`` (None: not yet, or not docked). napari's
    close button takes the widget out of its dock and deletes the dock, not the widget, so
    ``native.destroyed`` does not come: a run would go on after its panel is gone. Held weakly."""
    import weakref

    from qtpy.QtWidgets import QDockWidget

    dock = widget.native.parentWidget()
    while dock is not None and not isinstance(dock, QDockWidget):
        dock = dock.parentWidget()
    if dock is None or dock is widget._dock:
        return
    widget._dock = dock
    ref = weakref.ref(widget)
    dock.destroyed.connect(lambda *_: (w := ref()) is not None and w._on_dock_closed())


def status_label(**kwargs):
    """A magicgui ``Label`` (``kwargs`` are its own) for a widget's status: word-wrapped, since a
    hint after a count, or an error with what to do, is a sentence long and a dock is narrow."""
    from magicgui.widgets import Label

    label = Label(**kwargs)
    label.native.setWordWrap(True)
    return label
