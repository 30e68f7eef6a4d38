"""Writing files without ever replacing a user's work by accident.

One place for the rules every writer in the package follows (checkpoints,
CLI outputs, exports, batch results):

* :func:`check_target` refuses an existing file unless ``overwrite=True``,
  with a message that says how to proceed;
* :func:`atomic_write` writes under a temporary name in the same folder and
  renames at the end, so a crash or a killed worker never leaves a
  half-written file under the real name;
* :func:`free_path` finds ``name-2.ext``, ``name-3.ext``... when a new,
  unique name is wanted (e.g. a freshly trained model);
* :func:`user_models_dir` is the per-user folder for trained models,
  :func:`user_results_dir` the one for label stores of huge images.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "OutputExistsError",
    "ForeignFileError",
    "check_target",
    "atomic_write",
    "free_path",
    "free_at_the_end",
    "writable_folder",
    "check_free_space",
    "user_models",
    "user_models_dir",
    "user_results_dir",
    "is_file",
]


class OutputExistsError(FileExistsError):
    """An output would replace what is already there (a FileExistsError).

    Raised when a file or folder is where an output goes and overwriting was not
    asked for (also when it appeared during the run); overwrite or not, for a folder
    where a file goes or a file where a folder (a zarr store) goes, a folder that is
    not a zarr store, and an output that would replace an input. Nothing is replaced.
    """


class ForeignFileError(OutputExistsError):
    """A file is where an output goes, and no earlier run made it: it is never replaced, overwrite or not."""


def user_models_dir() -> Path:
    """Folder for the user's trained models (``$GARDENSEG_HOME/models``, default ``~/.napari-gardenseg/models``)."""
    home = os.environ.get("GARDENSEG_HOME")
    base = Path(home).expanduser() if home else Path("~/.napari-gardenseg").expanduser()
    return base / "models"


def user_models() -> dict[str, str]:
    """Checkpoints in the user's models folder (:func:`user_models_dir`): {resolved path: title, the file's stem}."""
    folder = user_models_dir()
    try:
        files = sorted(p for p in folder.glob("*.pt") if p.is_file() and not p.name.startswith("."))
    except OSError:  # unreadable folder: nothing to offer
        return {}
    return {str(p.resolve()): p.stem for p in files}


def writable_folder(folder, what: str) -> Path:
    """``folder`` as a Path, made if missing; OSError naming it and ``what`` to do when no file can
    be made in it (read-only, no permission, a file in the way), before any work is done for it."""
    import tempfile

    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise OSError(f"cannot write into the folder {folder} ({exc.strerror}): {what}") from None
    return folder


def checkpoint_target(output, overwrite: bool = False) -> Path:
    """Where ``train`` or ``adapt`` saves its model, checked before the (slow) run: ``output`` with
    ``.pt`` added when it has no suffix (what the widgets, the models folder and ``gardenseg models``
    take for a model); :class:`OutputExistsError` when it exists and not ``overwrite``
    (:func:`check_target`); OSError when its folder cannot be written into (:func:`writable_folder`,
    which makes a missing one); IsADirectoryError for an existing folder (a model is one file)."""
    folder = str(output).endswith(("/", os.sep))  # Path drops the slash that says "a folder"
    output = Path(output).expanduser()
    if output.is_dir() or folder:
        raise IsADirectoryError(f"{output} is a folder: give the model's file name, e.g. {output / 'my_model.pt'}")
    if not output.suffix:
        output = output.with_name(output.name + ".pt")
    output = check_target(output, overwrite, what="checkpoint")
    writable_folder(output.parent, "save the model elsewhere (another output file)")
    return output


def check_free_space(path, need: int, what: str) -> None:
    """Raise OSError (``errno.ENOSPC``, naming ``path``) when the file system that is to hold
    ``path`` has fewer than ``need`` bytes free; says nothing when the free space cannot be read
    (or a mount reports a size of 0).
    A full disk otherwise shows as a writer's own error (torch's "unexpected pos", a short file)."""
    import errno
    import shutil

    folder = Path(path).expanduser().absolute().parent
    while not folder.exists() and folder != folder.parent:  # the folder is made when written
        folder = folder.parent
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return
    free = usage.free
    if usage.total and free < need:  # some network and FUSE mounts say 0 of 0: not known
        raise OSError(
            errno.ENOSPC,
            f"the disk is full: {_mb(free)} free in {folder}, the {what} needs about {_mb(need)}; "
            "free some space or write it to another disk",
            str(path),
        )


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def user_results_dir() -> Path:
    """Folder for label stores of images too big for memory (``$GARDENSEG_HOME/results``)."""
    return user_models_dir().parent / "results"


def check_target(path, overwrite: bool = False, what: str = "file", *, folder: bool = False) -> Path:
    """Return ``path`` as a Path; raise :class:`OutputExistsError` if it exists and ``overwrite`` is
    False, or if it is a folder where a file goes (``folder`` False) or a file where a folder (a zarr
    store) goes: ``overwrite`` replaces an output of the same kind, never a user's folder."""
    path = Path(path).expanduser()
    if path.exists() and path.is_dir() != folder:
        here, going = ("a folder", "a file") if path.is_dir() else ("a file", "a folder")
        raise OutputExistsError(
            f"{what} {str(path)!r} is {here}, where {going} would be written; not replacing it. Choose another name."
        )
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{what} {str(path)!r} already exists; not replacing it. Choose another name, "
            "or pass overwrite=True (--overwrite on the command line) to replace it."
        )
    if folder and path.is_dir() and any(path.iterdir()) and not any((path / f).exists() for f in ZARR_METADATA):
        raise OutputExistsError(  # a folder of the user's own files is never replaced, overwrite or not
            f"{what} {str(path)!r} is a folder that is not a zarr store; not replacing it. Choose another name."
        )
    return path


# the files that make a folder a zarr store: v3, v2 array, v2 group
ZARR_METADATA = ("zarr.json", ".zarray", ".zgroup")


def _hidden_sibling(path: Path, ext: str) -> Path:
    """A new hidden name beside ``path``: ``.<name>.<8 hex>.<ext>``, shorter where that would not fit."""
    sibling = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.{ext}")
    if len(os.fsencode(sibling.name)) > 255:  # a long name that fits the file system, not with our suffix
        sibling = path.with_name(f".gardenseg-{uuid.uuid4().hex[:12]}.{ext}")
    return sibling


def _flush_to_disk(path: Path) -> None:
    """``fsync`` a file, or a folder's entries, where the system allows it: a rename reaches the disk
    before its file's bytes do (ext4's and XFS's delayed allocation), and a power cut then leaves an
    empty file under the output's name, which a resumed batch would take as done."""
    try:  # Windows flushes a file only through a handle that may write it
        fd = os.open(path, os.O_RDWR if path.is_file() else os.O_RDONLY)
    except OSError:  # a folder cannot be opened on Windows; its renames are kept there
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems (and folders on some systems) take no fsync
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path, overwrite: bool = False, what: str = "file", *, folder: bool = False):
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block succeeds.

    The check for an existing file happens before and again just before the
    rename, so a file that appeared meanwhile is not replaced either. ``folder``:
    the block writes a folder (a zarr store); see :func:`check_target`.
    """
    path = check_target(path, overwrite, what, folder=folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _hidden_sibling(path, "tmp")
    try:
        yield tmp
        check_target(path, overwrite, what, folder=folder)
        if path.is_dir():  # a zarr store being replaced: os.replace cannot swap folders
            import shutil

            old = _hidden_sibling(path, "old")
            os.replace(path, old)  # aside, not deleted: a failed rename below puts it back
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            _flush_to_disk(tmp)
            os.replace(tmp, path)
            _flush_to_disk(path.parent)
    finally:
        if tmp.is_dir():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


class interrupts_held:  # noqa: N801 (used as a context manager, as contextlib's)
    """Context manager: after :meth:`hold`, Ctrl-C (SIGINT) waits until the block ends, then
    raises KeyboardInterrupt, and SIGTERM and SIGHUP, when a Python handler takes them (the command line's),
    waits and then goes to that handler, which decides what it does; for a group of renames that
    must all happen or none.
    Holds nothing outside the main thread, where Python delivers signals."""

    def __enter__(self):
        self._old, self._caught = {}, []
        return self

    def hold(self) -> None:
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        # only Python's own Ctrl-C handler is held: an ignored SIGINT (a background job, nohup)
        # stays ignored, and another program's handler is left to do what it does
        if "INT" not in self._old and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._old["INT"] = signal.signal(signal.SIGINT, self._catch)
        for name in ("TERM", "HUP"):  # SIGHUP: the terminal closed, the SSH session dropped (not on Windows)
            number = getattr(signal, f"SIG{name}", None)
            if number is not None and name not in self._old and callable(signal.getsignal(number)):
                self._old[name] = signal.signal(number, self._catch)

    def _catch(self, signum, frame) -> None:
        self._caught.append(signum)

    def __exit__(self, *exc) -> None:
        import signal

        for name, old in self._old.items():
            signal.signal(getattr(signal, f"SIG{name}"), old)
        # a signal held is delivered, also when the block failed: the handler decides what it does
        # (the command line's SIGTERM and SIGHUP handler stops the run; another may only set a flag)
        for name in ("TERM", "HUP"):
            number = getattr(signal, f"SIG{name}", None)
            if number in self._caught and name in self._old:
                self._old[name](number, None)
        if signal.SIGINT in self._caught:
            raise KeyboardInterrupt


# a file name's stem made from a layer name: room left for a suffix under the 255 bytes most
# file systems allow a name
_STEM_BYTES = 120


def file_stem(name: str, fallback: str = "image") -> str:
    """``name`` as a file name's stem: letters, digits, ``-`` and ``_`` kept, anything else ``_``,
    cut to at most 120 bytes of UTF-8 (a layer name may be any length); ``fallback`` when empty."""
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    stem = stem.encode("utf-8")[:_STEM_BYTES].decode("utf-8", "ignore")  # a letter cut in two is dropped
    return stem or fallback


def free_at_the_end(path: Path, overwrite: bool, what: str, *, taken=None, say: bool = True) -> Path:
    """Where a long run saves the ``what`` it was asked to write at ``path`` (checked free when the
    run started): ``path``, unless something else wrote there meanwhile (another panel's run,
    another process) and ``overwrite`` is False; then the next free name beside it
    (:func:`free_path`), with a warning when ``say``, so that the run's work is kept and the
    other file too. ``taken(path) -> bool`` says whether a name is in use (default: a file is there)."""
    taken = taken or (lambda p: p.exists())
    if overwrite or not taken(path):
        return path
    candidate = free_path(path, taken=taken)
    if say:
        import warnings

        warnings.warn(
            f"{path} was written by something else during this run: the {what} is saved as {candidate.name}",
            stacklevel=2,
        )
    return candidate


def free_path(path, *, taken=None) -> Path:
    """``path`` if it is free, else the first free ``<stem>-2<suffix>``, ``-3``... beside it.

    A stem ending in ``-<n>`` counts on from its base when the base is taken too (``my_model-3.pt``
    gives ``my_model-4.pt``); otherwise the number is the user's (``weeds-2024.pt`` gives
    ``weeds-2024-2.pt``). ``taken(path) -> bool`` says whether a name is in use (default: something
    is there)."""
    taken = taken or (lambda p: p.exists())
    path = Path(path).expanduser()
    if not taken(path):
        return path
    stem = path.stem
    head, _, tail = stem.rpartition("-")
    if head and tail.isdigit() and taken(path.with_name(f"{head}{path.suffix}")):
        stem = head
    n = 2
    while taken(candidate := path.with_name(f"{stem}-{n}{path.suffix}")):
        n += 1
    return candidate


def is_file(path) -> bool:
    """Whether ``path`` is a file; False where its name cannot be (a photo's name of 250 bytes plus
    ".aux.xml" or another tail is longer than file systems take: stat raises instead of saying no)."""
    try:
        return Path(path).is_file()
    except OSError:
        return False
