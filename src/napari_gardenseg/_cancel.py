"""Cooperative cancellation and the progress callback type, shared by inference,
the CRF, training and the widgets (no torch, no Qt here)."""

from __future__ import annotations

import threading
from typing import Callable

__all__ = ["Cancelled", "ProgressFn", "should_stop", "check"]

#: ``progress(fraction, message)``: fraction in 0..1, a short message saying what runs.
ProgressFn = Callable[[float, str], None]


class Cancelled(Exception):
    """Raised inside a run when its ``cancel`` event is set; the run leaves no output."""


def should_stop(cancel: threading.Event | Callable[[], bool] | None) -> bool:
    """``cancel`` is None, a ``threading.Event`` (or anything with ``is_set``) or a callable."""
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event) or hasattr(cancel, "is_set"):
        return cancel.is_set()
    return bool(cancel())


def check(cancel: threading.Event | Callable[[], bool] | None, what: str = "the run") -> None:
    if should_stop(cancel):
        raise Cancelled(f"{what} was cancelled")
