"""Cooperative cancellation shared by inference, the CRF and training (no torch here)."""

from __future__ import annotations

import threading


class Cancelled(Exception):
    """Raised inside a run when its ``cancel`` event is set; the run leaves no output."""


def should_stop(cancel) -> bool:
    """``cancel`` is None, a ``threading.Event`` (or anything with ``is_set``) or a callable."""
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event) or hasattr(cancel, "is_set"):
        return cancel.is_set()
    return bool(cancel())


def check(cancel, what: str = "the run") -> None:
    if should_stop(cancel):
        raise Cancelled(f"{what} was cancelled")
