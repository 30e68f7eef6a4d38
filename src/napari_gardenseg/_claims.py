"""Claims on a batch's files, so that several batch commands writing into one folder share the work.

A run claims a file before deciding what to do with it: an advisory lock (``fcntl.flock``) on a
hidden file ``.<name>.claim`` in the output folder, held while it works on the file and released
when it is done with it (the file is removed then). The operating system releases the lock of a
process that ends however it ends, so a killed run blocks nobody; its claim file stays until a
later run takes that name. A run that finds a file claimed goes on with its next file and comes
back to it at the end (:func:`napari_gardenseg.segment_files`).

Where claims cannot be taken, nothing is claimed and every run segments every file, as before
claims existed: no ``fcntl`` (Windows), a folder that takes no claim file, a file system without
``flock``. File systems whose locks hold on one machine only (NFS mounted with ``local_lock``,
BeeGFS and Lustre in their node-local lock modes) keep runs on different machines apart from
each other's claims: there a Dask cluster shares the work (one command, ``--scheduler``).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

__all__ = ["CLAIM_SUFFIX", "DONE_MEANWHILE", "WAITING", "claim", "claim_path", "holder"]

CLAIM_SUFFIX = ".claim"
# the note of a file that another run into the same folder finished first (its outputs kept)
DONE_MEANWHILE = "done meanwhile by another run into this folder; its outputs kept"
# a file's outputs that --overwrite leaves: another run's, newer than this run (the failure says so)
MADE_SINCE = "made by another run into this folder after this one started"
# said while a batch waits for files that other runs into its folder are working on (the CLI prints it)
WAITING = "waiting for another run into this folder"
# a claim file another user made can only be read; never follow a link planted in a shared folder
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BUSY = -1


def claim_path(out: Path, name: str) -> Path:
    """The claim file of output name ``name`` (which may hold a subfolder) in ``out``: hidden, so that
    no folder listing of photos or outputs takes it for one."""
    rel = Path(name)
    return Path(out) / rel.parent / f".{rel.name}{CLAIM_SUFFIX}"


def holder(out: Path, name: str) -> str | None:
    """``"<pid>@<host>"`` of the process holding the claim on ``name`` as it wrote it, or None."""
    try:
        text = claim_path(out, name).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    return text or None


@contextlib.contextmanager
def claim(out: Path, name: str) -> Iterator[bool]:
    """Hold the claim on ``name``'s outputs in ``out`` for the ``with`` block.

    Yields True while this process holds it, or where claims cannot be taken (see the module's
    docstring); False when another process holds it (it does not wait). Leaving the block removes
    the claim file, and the subfolders of ``out`` made for it where nothing else went into them.
    Raises nothing of its own: an interruption (KeyboardInterrupt) passes, the file closed first.
    """
    try:
        import fcntl
    except ImportError:  # Windows: runs into one folder do not share the work
        yield True
        return
    path = claim_path(out, name)
    made = _missing_folders(path.parent, Path(out))
    fd = _take(path, fcntl)
    try:
        yield fd != _BUSY
    finally:
        if fd is not None and fd != _BUSY:
            with contextlib.suppress(OSError):
                os.unlink(path)  # before unlocking: a run waiting on this file then takes a fresh one
            os.close(fd)
        for folder in made:  # deepest first; one that holds outputs (or another claim) stays
            with contextlib.suppress(OSError):
                folder.rmdir()


def _missing_folders(folder: Path, out: Path) -> list[Path]:
    """The folders from ``folder`` up to (not including) ``out`` that do not exist yet, deepest first."""
    missing = []
    while folder != out and folder != folder.parent and not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing


def _take(path: Path, fcntl) -> int | None:
    """A locked file descriptor of ``path``; ``_BUSY`` when another process holds it; None when no
    claim can be taken here."""
    for _ in range(20):  # retries only while other runs remove and make the file under this one
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, created = _open(path)
        except FileNotFoundError:  # its folder went between the two calls: again
            continue
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return _BUSY
            except OSError:  # a file system without locks: no claims, and no file left behind
                os.close(fd)
                if created:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                return None
            # the run that held it may have removed the file before letting go: then the one now there
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except OSError:
                same = False
            if not same:
                os.close(fd)
                continue
        except BaseException:  # interrupted (KeyboardInterrupt): the file is not left open, nor locked
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        with contextlib.suppress(OSError):  # who holds it, for the runs that wait on it
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}@{socket.gethostname()}".encode())
        return fd
    return None


def _open(path: Path) -> tuple[int, bool]:
    """``(fd, created)``: the claim file, made by this call or another's (read-only when another
    user's: ``flock`` takes a read-only file on local file systems)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666), True
    except FileExistsError:
        pass
    try:
        return os.open(path, os.O_RDWR | _NOFOLLOW), False
    except PermissionError:
        return os.open(path, os.O_RDONLY | _NOFOLLOW), False
