"""What happened to each file of a batch: :class:`FileStatus`, :class:`BatchSummary` and ``failures.jsonl``."""

from __future__ import annotations

import json
import os
import traceback
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

FAILURES_FILE = "failures.jsonl"


@dataclass
class FileStatus:
    """What happened to one input file."""

    file: str
    name: str
    status: str  # "done", "skipped" (resume: already done), "failed"
    instances: int | None = None
    outputs: list[str] = field(default_factory=list)
    seconds: float | None = None
    attempts: int = 0
    error: str | None = None
    worker: str | None = None  # the Dask worker that ran it (None in-process)
    note: str | None = None  # why a file that was done gave no instance (a grey image, the score threshold)


@dataclass
class BatchSummary:
    """What :func:`segment_files` returns.

    ``out_dir``: the output folder (absolute); ``files``: one :class:`FileStatus`
    per input file, in input order (``file``, ``name``, ``status`` "done",
    "skipped", "failed" or "cancelled" (not segmented: the batch's ``cancel`` was set before or
    while it ran), ``instances``, ``outputs``, ``seconds``, ``attempts``,
    ``error``, ``worker``, ``note``); ``seconds``: the batch's wall time.
    ``done``, ``skipped``, ``failed`` and ``cancelled``: the numbers of files that ended so;
    ``ok``: whether none failed; ``failures_path``: the folder's
    ``failures.jsonl``; ``table``: the files as a pandas DataFrame.
    """

    out_dir: Path
    files: list[FileStatus]
    seconds: float = 0.0

    def _count(self, status):
        return sum(f.status == status for f in self.files)

    @property
    def done(self) -> int:
        return self._count("done")

    @property
    def skipped(self) -> int:
        return self._count("skipped")

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def cancelled(self) -> int:
        return self._count("cancelled")

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return self.failed == 0

    @property
    def failures_path(self) -> Path:
        return Path(self.out_dir) / FAILURES_FILE

    @property
    def table(self):
        """A pandas DataFrame, one row per input: file, name, status, instances, outputs, seconds, attempts, error,
        worker, note."""
        import pandas as pd

        return pd.DataFrame(
            [asdict(f) for f in self.files], columns=[f.name for f in FileStatus.__dataclass_fields__.values()]
        )

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self):
        return iter(self.files)

    def __repr__(self) -> str:
        return (
            f"BatchSummary({len(self)} files: {self.done} done, {self.skipped} skipped, "
            f"{self.failed} failed{f', {self.cancelled} cancelled' if self.cancelled else ''}; outputs in {self.out_dir})"
        )


def _failure(
    fs: FileStatus, exc: BaseException | None = None, *, tb: str | None = None, error_type=None, message=None
) -> dict:
    return {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "file": fs.file,
        "name": fs.name,
        "error_type": error_type or type(exc).__name__,
        "message": message if message is not None else failure_message(exc),
        "traceback": tb if tb is not None else "".join(traceback.format_exception(exc)) if exc is not None else "",
        "attempts": fs.attempts,
        "worker": fs.worker,
    }


def failure_message(exc: BaseException) -> str:
    """The message a batch reports for a file that raised ``exc``: with what to do when memory or the
    output disk ran out."""
    import errno

    from ._device import with_memory_advice

    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = f" ({os.path.dirname(exc.filename)})" if isinstance(exc.filename, str) else ""
        return f"{exc}: the disk of the output folder{where} is full; free space there, then run the batch again with resume=True (--resume on the command line)"
    return with_memory_advice(exc) or str(exc)


def _append_failure(out: Path, entry: dict) -> None:
    # one line, appended in one write: earlier runs' lines stay, and the lines of batches writing
    # into this folder at once do not interleave (local file systems; NFS does not promise it)
    fd = os.open(out / FAILURES_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode("utf-8"))
    finally:
        os.close(fd)
