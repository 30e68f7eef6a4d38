"""Batch throughput: files per minute in one process and on a local Dask cluster, with peak memory.

    python benchmarks/bench_batch.py                 # 16 garden scenes of 512x512, CRF on, 2 workers
    python benchmarks/bench_batch.py --n 32 --size 1024 --workers 4 --no-crf

Writes the scenes as PNG into a temporary folder, then runs the same batch
(``segment_files``) three ways, each into its own output folder:

* in-process: one file after another, torch with its default threads, then
  with one thread (what each worker gets when N workers share N cores);
* ``--workers N``: a LocalCluster of N processes with one thread each (as
  ``gardenseg segment --workers N``); the cluster's start-up is timed apart;

and checks that the first in-process run and the cluster run gave identical
label images.

Each batch runs twice: cold (a fresh process: torch import, model load,
first calls; for the cluster also its start-up) and warm. Prints seconds and
files/minute of both, and peak RSS of the in-process child and of each
worker process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _make_scenes(folder: Path, n: int, size: int) -> list[Path]:
    from PIL import Image

    from napari_gardenseg.synthetic import garden_scene

    paths = []
    for seed in range(n):
        image, _, _ = garden_scene(10_000 + seed, (size, size))
        paths.append(folder / f"scene{seed:03d}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


_IN_PROCESS = """
import json, resource, sys, time
t0 = time.perf_counter()
import torch
from napari_gardenseg._batch import segment_files
paths, out, crf, threads = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
if threads:
    torch.set_num_threads(threads)
runs = []
for i in range(2):  # cold (imports, model load, first calls), then warm
    s = segment_files(paths, out + str(i), "garden", crf=crf)
    runs.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
print(json.dumps({"seconds": runs, "done": s.done, "failed": s.failed,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "torch_threads": torch.get_num_threads()}))
"""


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rate(n: int, seconds: float) -> str:
    return f"{seconds:5.1f} s = {60 * n / seconds:5.1f} files/min"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=16, help="number of images (default 16)")
    ap.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--no-crf", action="store_true")
    args = ap.parse_args(argv)
    crf = not args.no_crf

    from distributed import Client

    from napari_gardenseg._batch import local_cluster, segment_files

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"{args.n} garden scenes {args.size}x{args.size}, CRF {'on' if crf else 'off'}, {cpus} CPUs, "
        f"load average before: {os.getloadavg()[0]:.1f}"
    )
    print("each batch twice: cold (process start, torch import, model load, first calls), then warm")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        paths = _make_scenes(tmp / "in", args.n, args.size)
        n = len(paths)

        for threads in (0, 1):  # torch's default threads, then one (what each of N workers on N cores gets)
            run = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    _IN_PROCESS,
                    json.dumps([str(p) for p in paths]),
                    str(tmp / f"seq{threads}-"),
                    "1" if crf else "0",
                    str(threads),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            seq = json.loads(run.stdout.strip().splitlines()[-1])
            cold, warm = seq["seconds"]
            print(
                f"in-process, torch threads {seq['torch_threads']}: cold {_rate(n, cold)}, warm {_rate(n, warm)}; "
                f"peak RSS {seq['rss_mb']:.0f} MB"
            )

        t0 = time.perf_counter()
        with local_cluster(args.workers) as cluster, Client(cluster) as client:
            startup = time.perf_counter() - t0
            runs = []
            for i in range(2):
                t0 = time.perf_counter()
                dist = segment_files(paths, tmp / f"dist{i}", "garden", client=client, crf=crf)
                runs.append(time.perf_counter() - t0)
            rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            threads = client.run(lambda: __import__("torch").get_num_threads())
        print(
            f"--workers {args.workers} ({dist.done} done, {dist.failed} failed): cold {_rate(n, runs[0] + startup)} "
            f"(cluster start-up {startup:.1f} s included), warm {_rate(n, runs[1])}"
        )
        per_worker = _files_per_worker(dist)
        for addr in sorted(rss):
            print(
                f"    worker {addr}: {per_worker.get(addr, 0)} files (warm run), torch threads {threads[addr]}, "
                f"peak RSS {rss[addr]:.0f} MB"
            )
        print(f"    driver (this process; the scenes were made here too): peak RSS {_peak_rss_mb():.0f} MB")

        import tifffile

        same = all(
            np.array_equal(
                tifffile.imread(tmp / "seq0-0" / f"{p.stem}_labels.tif"),
                tifffile.imread(tmp / "dist1" / f"{p.stem}_labels.tif"),
            )
            for p in paths
        )
        print(f"label images identical in-process and on the cluster: {same}")
    return 0


def _files_per_worker(summary) -> dict:
    counts: dict = {}
    for f in summary:
        counts[f.worker] = counts.get(f.worker, 0) + 1
    return counts


if __name__ == "__main__":
    raise SystemExit(main())
