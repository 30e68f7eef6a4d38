"""Claims on a batch's files, so that several batch commands writing into one folder share the work.

A run claims a file before segmenting it: an advisory lock (``fcntl.flock``) on a hidden file
``.<name>.claim`` in the output folder, held while it works on the file. The operating system
releases a process's locks however it ends (finished, interrupted, killed), so a run that dies
leaves no claim that blocks the others; the file itself is removed by the run that finishes.
A run that finds a file claimed goes on with its next file and comes back to this one at the end
(:func:`napari_gardenseg.segment_files`). Where ``fcntl`` is missing (Windows) or the folder takes
no lock, nothing is claimed and every run segments every file, as before claims existed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["CLAIM_SUFFIX", "claim", "claim_path"]

CLAIM_SUFFIX = ".claim"


def claim_path(out: Path, name: str) -> Path:
    """The claim file of output name ``name`` (which may hold a subfolder) in ``out``: hidden, so that
    no folder listing of photos or outputs takes it for one."""
    rel = Path(name)
    return Path(out) / rel.parent / f".{rel.name}{CLAIM_SUFFIX}"


@contextlib.contextmanager
def claim(out: Path, name: str, *, wait: bool = False) -> Iterator[bool]:
    """Hold the claim on ``name``'s outputs in ``out`` for the ``with`` block.

    Yields True while this process holds it (or where claims cannot be taken: no ``fcntl``, a folder
    that refuses the claim file or the lock), False when another process holds it and ``wait`` is
    False; with ``wait=True`` it blocks until the other process lets go. The claim file is removed
    on leaving the block. Raises nothing of its own (OSError from the claim file means no claim).
    """
    try:
        import fcntl
    except ImportError:  # Windows: runs into one folder do not share the work
        yield True
        return
    path = claim_path(out, name)
    fd = None
    while fd is None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            candidate = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            break
        try:
            fcntl.flock(candidate, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(candidate)
            yield False
            return
        except OSError:  # a file system without locks
            os.close(candidate)
            break
        # the run that held it may have removed the file before letting go: then lock the one now there
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(candidate), current):
            fd = candidate
        else:
            os.close(candidate)
    try:
        yield True
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)  # before unlocking: a run waiting on this file then takes a fresh one
            os.close(fd)
