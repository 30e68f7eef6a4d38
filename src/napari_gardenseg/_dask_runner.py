"""Files of a batch as tasks: in this process, or on a Dask distributed cluster.

Tasks carry paths and options, never arrays: every worker reads its own files.
Each task sets torch's thread count so that the worker processes on one host
share its cores instead of each taking all of them; a task whose worker died
is submitted again up to ``retries`` times. A file that only waited on a
worker that died (it never started there) is submitted again without using
up a retry: each task reports its start as a Dask event. This package's
warnings on a worker (what a file's run left out or noticed) come back with the
file's result and are given again in the caller's process, where the user reads
them; a worker's own output goes to its log, or to no terminal at all.
"""

from __future__ import annotations

import contextlib
import os
import threading
import traceback
import warnings
from collections import Counter

from ._batch_file import process_file
from ._batch_status import FileStatus, _failure, failure_message
from ._cancel import Cancelled


def _task(path: str, out_dir: str, name: str, model, kwargs: dict, host_threads: dict | None) -> dict:
    """Run on a worker: one file, never raising for the file's own errors (they come back as data)."""
    worker = _set_torch_threads(host_threads)
    if host_threads is None:  # in the caller's process: its warnings are shown as they come
        return _run_file(path, out_dir, model, name, kwargs, worker)
    from distributed import get_worker

    get_worker().log_event(_STARTED, get_worker().get_current_task())  # this file started, see _run_on_cluster
    with _warnings_kept() as kept:
        result = _run_file(path, out_dir, model, name, kwargs, worker)
    return {**result, "warnings": kept}


def _run_file(path: str, out_dir: str, model, name: str, kwargs: dict, worker) -> dict:
    try:
        summary = process_file(path, out_dir, model, name=name, **kwargs)
        return {"status": "done", "worker": worker, **summary}
    except Cancelled:  # the batch's cancel, set while this file ran: nothing written, no failure
        return {"status": "cancelled", "worker": worker}
    except Exception as exc:  # noqa: BLE001  (whatever a file does, it fails alone and is reported)
        return {
            "status": "failed",
            "worker": worker,
            "error_type": type(exc).__name__,
            "message": failure_message(exc),
            "traceback": "".join(traceback.format_exception(exc)),
        }


# the package's warnings of the task running on this thread (a worker may run several at once):
# warnings.catch_warnings swaps process-wide state, so one hook routes them by thread instead
_KEPT = threading.local()
_SHOWN_BEFORE = []  # the showwarning the hook passes other warnings to


def _keep_or_show(message, category, filename, lineno, file=None, line=None):
    from ._errors import in_package

    kept = getattr(_KEPT, "warnings", None)
    if kept is not None and issubclass(category, UserWarning) and in_package(filename):
        kept.append({"message": str(message), "filename": filename, "lineno": lineno})
    else:
        _SHOWN_BEFORE[0](message, category, filename, lineno, file, line)


@contextlib.contextmanager
def _warnings_kept():
    """The package's warnings given on this thread while the block runs, as a list of dicts
    (message, filename, lineno), instead of on the worker's stderr; others are shown as before."""
    if warnings.showwarning is not _keep_or_show:
        _SHOWN_BEFORE[:] = [warnings.showwarning]
        warnings.showwarning = _keep_or_show
    _KEPT.warnings = kept = []
    try:
        yield kept
    finally:
        _KEPT.warnings = None


def show_task_warnings(result: dict) -> None:
    """Give again, in this process, the warnings a worker kept for one file (:func:`_task`): the
    user sees them as a file run here gives them (the command line's own lines)."""
    from ._errors import _PACKAGE_DIR

    for w in result.pop("warnings", None) or ():
        # the same module of this process's package: a cluster's workers may import it from another
        # install (a container, another venv), and the command line knows its own package's warnings
        here = os.path.join(_PACKAGE_DIR, *_package_relative(w["filename"]))
        # a registry of its own: each file's warning is shown, as in a run in one process
        warnings.warn_explicit(w["message"], UserWarning, here, w["lineno"], registry={})


def _package_relative(filename: str) -> list[str]:
    """The parts of a worker's module path after its ``napari_gardenseg`` folder (``["_inference.py"]``)."""
    parts = os.path.normpath(filename).split(os.sep)
    at = len(parts) - 1 - parts[::-1].index("napari_gardenseg") if "napari_gardenseg" in parts else len(parts) - 2
    return parts[at + 1 :]


# the Dask event topic of tasks that started running (not only waited on their worker)
_STARTED = "gardenseg-file-started"
# a file whose workers die before it starts is given up after this many such losses (a broken cluster)
_MAX_WAITS_LOST = 5


def _set_torch_threads(host_threads: dict | None) -> str | None:
    """On a Dask worker, give each running file an equal share of the host's cores; return the worker's address.

    torch takes every core of the machine by default, so N worker processes
    on one host would each start that many threads and slow each other down.
    """
    if host_threads is None:
        return None
    import torch
    from distributed import get_worker

    worker = get_worker()
    host = _host(worker.address)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    wanted = max(1, cpus // max(1, host_threads.get(host, worker.state.nthreads)))
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    return worker.address


def _host(address: str) -> str:
    return address.split("://")[-1].rsplit(":", 1)[0]


def _check_resources(client, resources: dict) -> None:
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    if not any(all((w.get("resources") or {}).get(k, 0) >= v for k, v in resources.items()) for w in workers):
        # Dask would keep such tasks waiting for a worker that may never come: say so now
        raise ValueError(
            f"resources={resources!r}: no worker of this cluster has them (workers' resources: "
            f"{sorted({str(w.get('resources') or {}) for w in workers})}); start workers with "
            "e.g. `dask worker ... --resources GPU=1`"
        )


def _host_threads(workers: dict) -> dict:
    """Dask worker threads per host, from the scheduler's view of the cluster."""
    threads: Counter = Counter()
    for addr, info in workers.items():
        threads[_host(addr)] += int(info.get("nthreads", 1))
    return dict(threads)


def _run_on_cluster(client, todo, out, model, kwargs, retries, resources, settle, fail):
    import uuid

    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    host_threads = _host_threads(client.scheduler_info(n_workers=-1)["workers"])
    by_key = {}

    def submit(fs: FileStatus):
        fs.attempts += 1
        fut = client.submit(
            _task,
            fs.file,
            out,
            fs.name,
            model,
            kwargs,
            host_threads,
            # one key prefix for all files: Dask then treats them as one group and, for a batch larger
            # than twice the cluster's threads without resources, queues them on the scheduler; otherwise
            # a worker may hold files it has not started, which a dying worker loses (resubmitted below)
            key=f"gardenseg-file-{uuid.uuid4().hex}",
            pure=False,
            resources=resources,
        )
        by_key[fut.key] = fs
        return fut

    ac = as_completed([submit(fs) for fs in todo])
    waits_lost: Counter = Counter()
    for fut in ac:
        fs = by_key.pop(fut.key)
        try:
            res = fut.result()
        except KilledWorker as exc:  # the worker process died while running (or holding) this file
            fs.worker = getattr(getattr(exc, "last_worker", None), "address", None)
            if not _started(client, fut.key):
                # it only waited on that worker (Dask may hand a worker more files than it runs at once)
                fs.attempts -= 1
                waits_lost[fs.file] += 1
                if waits_lost[fs.file] <= _MAX_WAITS_LOST:
                    ac.add(submit(fs))
                    continue
                fail(
                    fs,
                    _failure(
                        fs,
                        exc,
                        message=f"worker processes lost {waits_lost[fs.file]} times "
                        f"while this file waited for them, before it started ({exc})",
                    ),
                )
                continue
            if fs.attempts <= retries:
                ac.add(submit(fs))
                continue
            fail(
                fs,
                _failure(fs, exc, message=f"worker process lost {fs.attempts} times while running this file ({exc})"),
            )
            continue
        # a cancelled future raises concurrent.futures.CancelledError (distributed 2024.7 on: its
        # subclass FutureCancelledError), an Exception too: reported as that file's failure
        except Exception as exc:  # noqa: BLE001
            fail(fs, _failure(fs, exc))
            continue
        finally:
            fut.release()
        try:
            show_task_warnings(res)
        except Exception as exc:  # noqa: BLE001  (an "error" warnings filter: that file fails, as in one process)
            fail(fs, _failure(fs, exc))
            continue
        settle(fs, res)


def _started(client, key) -> bool:
    """Whether the task ``key`` reported its start (see _task); a start may be missed if its worker died at once."""
    return any(msg == key for _, msg in client.get_events(_STARTED))


def dask_setup(worker) -> None:
    """Run by each worker of :func:`local_cluster` as it starts (Dask's ``preload``): a terminal's
    Ctrl-C reaches every process of its group, and the workers of the batch's own cluster stop when
    the batch closes it, without each printing Dask's traceback of the interrupt."""
    import signal

    with contextlib.suppress(ValueError):  # not the process's main thread: nothing to change
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def local_cluster(n_workers: int, *, retries_lost: int = 0, **kwargs):
    """A LocalCluster of ``n_workers`` processes with one thread each, for :func:`segment_files`.

    Workers start without Dask's ``MALLOC_TRIM_THRESHOLD_`` (it slows
    segmentation down). A task counts as lost at the first death of its
    worker (the batch resubmits it ``retries`` times itself, the same on any
    cluster; files that only waited on the dead worker are submitted again
    without using up a retry).
    """
    import logging

    import dask
    from distributed import LocalCluster

    if not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {n_workers!r}")
    kwargs.setdefault("silence_logs", logging.ERROR)  # not the nannies' warnings while torch processes exit
    # dask_setup: Ctrl-C is the batch's, not the workers'; after the preloads configured or given,
    # which an explicit preload would otherwise replace (a string is one module, not its letters)
    given = kwargs.get("preload", dask.config.get("distributed.worker.preload", None)) or []
    kwargs["preload"] = [*([given] if isinstance(given, str) else given), __name__]
    with dask.config.set(
        {
            "distributed.scheduler.allowed-failures": retries_lost,
            "distributed.scheduler.worker-saturation": 1.0,
            # Dask starts workers with glibc's trim threshold set, which also fixes the mmap threshold:
            # every large array is then mapped and zeroed afresh, which slows segmenting down (README)
            "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
        }
    ):
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None, **kwargs)
