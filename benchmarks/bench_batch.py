"""Batch throughput: files per minute in one process and on a local Dask cluster, with peak memory.

    python benchmarks/bench_batch.py                 # 16 garden scenes of 512x512, CRF on, 2 workers
    python benchmarks/bench_batch.py --n 32 --size 1024 --workers 4 --no-crf

Writes the scenes as PNG into a temporary folder, then runs the same batch
(``segment_files``) three ways, each into its own output folder:

* in-process: one file after another, torch with its default threads;
* ``--workers N``: a LocalCluster of N processes with one thread each (as
  ``gardenseg segment --workers N``); the cluster's start-up is timed apart;
* checks that both gave identical label images.

Prints files/minute, seconds per file, and peak RSS: of the in-process run
(a fresh child process, so imports and the model count, the scene making
does not) and of each worker process. Start-up (imports, model load) is in
the in-process figure and in the workers' first files.
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
from napari_gardenseg._batch import segment_files
paths, out, crf = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
t0 = time.perf_counter()
s = segment_files(paths, out, "garden", crf=crf)
dt = time.perf_counter() - t0
import torch
print(json.dumps({"seconds": dt, "done": s.done, "failed": s.failed, "instances": sum(f.instances or 0 for f in s),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "torch_threads": torch.get_num_threads()}))
"""


def _peak_rss_mb() -> float:
    import resource as r

    return r.getrusage(r.RUSAGE_SELF).ru_maxrss / 1024


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
    print(f"{args.n} garden scenes {args.size}x{args.size}, CRF {'on' if crf else 'off'}, {cpus} CPUs, "
          f"load average before: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        paths = _make_scenes(tmp / "in", args.n, args.size)

        run = subprocess.run([sys.executable, "-c", _IN_PROCESS, json.dumps([str(p) for p in paths]),
                              str(tmp / "seq"), "1" if crf else "0"], capture_output=True, text=True, check=True)
        seq = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"in-process   : {seq['done']} done, {seq['failed']} failed, {seq['seconds']:.1f} s, "
              f"{60 * seq['done'] / seq['seconds']:.1f} files/min, {seq['seconds'] / args.n:.2f} s/file, "
              f"torch threads {seq['torch_threads']}, peak RSS {seq['rss_mb']:.0f} MB (imports and model included)")

        t0 = time.perf_counter()
        with local_cluster(args.workers) as cluster, Client(cluster) as client:
            startup = time.perf_counter() - t0
            t0 = time.perf_counter()
            dist = segment_files(paths, tmp / "dist", "garden", client=client, crf=crf)
            seconds = time.perf_counter() - t0
            rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            threads = client.run(lambda: __import__("torch").get_num_threads())
        per_worker = _files_per_worker(dist)
        print(f"--workers {args.workers}  : {dist.done} done, {dist.failed} failed, {seconds:.1f} s "
              f"(+ {startup:.1f} s cluster start-up), {60 * dist.done / seconds:.1f} files/min, "
              f"{seconds / args.n:.2f} s/file; with start-up {60 * dist.done / (seconds + startup):.1f} files/min")
        for addr in sorted(rss):
            print(f"    worker {addr}: {per_worker.get(addr, 0)} files, torch threads {threads[addr]}, "
                  f"peak RSS {rss[addr]:.0f} MB")
        print(f"    driver (this process, scenes made here too): peak RSS {_peak_rss_mb():.0f} MB")

        import tifffile

        same = all(
            np.array_equal(tifffile.imread(tmp / "seq" / f"{p.stem}_labels.tif"), tifffile.imread(tmp / "dist" / f"{p.stem}_labels.tif"))
            for p in paths
        )
        print(f"label images identical in both runs: {same}")
    return 0


def _files_per_worker(summary) -> dict:
    counts: dict = {}
    for f in summary:
        counts[f.worker] = counts.get(f.worker, 0) + 1
    return counts


if __name__ == "__main__":
    raise SystemExit(main())
