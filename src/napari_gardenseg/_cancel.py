"""Cooperative cancellation and the progress callback type, shared by inference,
the CRF, training and the widgets (no torch, no Qt here)."""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Callable

__all__ = ["Cancelled", "ProgressFn", "check", "check_cancel", "first_interrupt_sets", "should_stop"]

#: ``progress(fraction, message)``: fraction in 0..1, a short message saying what runs.
ProgressFn = Callable[[float, str], None]


class Cancelled(Exception):
    """Raised inside a run when its ``cancel`` event is set (or its callable returns True).

    ``segment``, ``segment_to_zarr``, ``segment_layer`` and the CRF raise it and leave no
    output; ``train`` and ``adapt`` only before they have weights to save.
    """


def check_cancel(cancel) -> None:
    """Raise TypeError unless ``cancel`` is None, a ``threading.Event`` (or anything with
    ``is_set``) or a callable: the one check of a ``cancel`` argument."""
    if cancel is not None and not (hasattr(cancel, "is_set") or callable(cancel)):
        raise TypeError(
            f"cancel must be None, a threading.Event or a callable that returns True to stop, got {cancel!r}"
        )


def check_callbacks(progress, cancel) -> None:
    """Raise TypeError for a ``progress`` that is not None or a callable ``progress(fraction,
    message)``, or a bad ``cancel`` (:func:`check_cancel`): checked where a run starts, not at
    its first report."""
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be None or a callable progress(fraction, message), got {progress!r}")
    check_cancel(cancel)


def should_stop(cancel: threading.Event | Callable[[], bool] | None) -> bool:
    """``cancel`` is None, a ``threading.Event`` (or anything with ``is_set``) or a callable."""
    check_cancel(cancel)
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return cancel.is_set()
    return bool(cancel())


def check(cancel: threading.Event | Callable[[], bool] | None, what: str = "the run") -> None:
    if should_stop(cancel):
        raise Cancelled(f"{what} was cancelled")


@contextlib.contextmanager
def first_interrupt_sets(event: threading.Event, message: str):
    """Context manager for a command line run that can stop early and keep what it has: the first
    Ctrl-C (SIGINT) sets ``event`` and prints ``message`` to stderr, a second raises
    KeyboardInterrupt as usual. SIGTERM (a batch system's time limit) and SIGHUP (the terminal
    closed), where a Python handler takes them (the command line's), do the same, so a training
    job stopped by its time limit
    saves what it learnt. Only Python's own handlers are replaced, and only in the main thread
    (where Python delivers signals); elsewhere Ctrl-C is left as it is."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield event
        return

    def first(signum, frame):
        if event.is_set():
            raise KeyboardInterrupt
        event.set()
        try:
            print(message, file=sys.stderr, flush=True)
        except OSError:  # the terminal is gone (SIGHUP): the run still stops and saves
            pass

    old = {}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        old[signal.SIGINT] = signal.signal(signal.SIGINT, first)
    # also in a background job, where SIGINT is ignored; SIGHUP: the terminal closed (not on Windows)
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None and callable(signal.getsignal(signum)):
            old[signum] = signal.signal(signum, first)
    try:
        yield event
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)
