"""Batches in this process and on a real Dask LocalCluster (2 worker processes, one thread each).

One cluster serves the whole module: starting one costs seconds.
"""

import filecmp
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import distributed  # the `test` extra installs it (through `all`)
import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_gardenseg import _batch, _batch_file, _cli_commands, cli

N_IMAGES = 8


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from napari_gardenseg.synthetic import garden_scene

    folder = tmp_path_factory.mktemp("images")
    paths = []
    for seed in range(N_IMAGES):
        image, _, _ = garden_scene(seed, (128, 128))
        paths.append(folder / f"scene{seed}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


class CountCheckpointReads(distributed.WorkerPlugin):
    """Counts, in each worker process, how often a checkpoint file is read into a model."""

    name = "count-checkpoint-reads"

    def setup(self, worker):
        from napari_gardenseg import _models

        original = _models._from_checkpoint

        def counted(*args, **kwargs):
            _models.CHECKPOINT_READS = getattr(_models, "CHECKPOINT_READS", 0) + 1
            return original(*args, **kwargs)

        _models._from_checkpoint = counted


@pytest.fixture(scope="module")
def client():
    cluster = _batch.local_cluster(2)  # LocalCluster(n_workers=2, processes=True, threads_per_worker=1)
    with distributed.Client(cluster) as c:
        c.register_plugin(CountCheckpointReads())
        yield c
    cluster.close()


def _outputs(folder: Path) -> dict:
    return {p.name: p for p in folder.iterdir() if not p.name.endswith("_run.json")}


def _record(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}_run.json").read_text())


def test_the_local_cluster_keeps_the_preloads_configured_or_given(monkeypatch):
    # passing our own preload replaced the ones configured for Dask's workers; a string was split
    import dask

    seen = {}
    monkeypatch.setattr(distributed, "LocalCluster", lambda **kw: seen.update(kw))
    with dask.config.set({"distributed.worker.preload": ["site_setup"]}):
        _batch.local_cluster(1)
    assert seen["preload"] == ["site_setup", "napari_gardenseg._dask_runner"]
    _batch.local_cluster(1, preload="mine")
    assert seen["preload"] == ["mine", "napari_gardenseg._dask_runner"]


def test_cluster_outputs_identical_to_sequential_and_model_loaded_once_per_worker(images, client, tmp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker here: float sums in another order move scores in the last digit
    try:
        seq = _batch.segment_files(images, tmp_path / "seq")
    finally:
        torch.set_num_threads(threads)
    dist = _batch.segment_files(images, tmp_path / "dist", client=client)
    assert seq.done == dist.done == N_IMAGES, dist.table
    assert sum(f.instances for f in seq) >= N_IMAGES  # the garden model finds plants in garden scenes
    assert [f.instances for f in seq] == [f.instances for f in dist]
    a, b = _outputs(tmp_path / "seq"), _outputs(tmp_path / "dist")
    assert sorted(a) == sorted(b) and len(a) == 4 * N_IMAGES  # labels, labels_crf, csv, overlay
    different = [n for n in a if not filecmp.cmp(a[n], b[n], shallow=False)]
    assert different == []
    for f in seq:
        volatile = ("seconds", "created", "device")
        ra, rb = _record(tmp_path / "seq", f.name), _record(tmp_path / "dist", f.name)
        assert {k: v for k, v in ra.items() if k not in volatile} == {k: v for k, v in rb.items() if k not in volatile}

    # each worker process read the checkpoint once and reused the model for its other files
    used = {f.worker for f in dist}
    assert len(used) == 2 and None not in used
    reads = client.run(
        lambda: __import__("napari_gardenseg._models", fromlist=["x"]).__dict__.get("CHECKPOINT_READS", 0)
    )
    loads = client.run(lambda: len(_batch_file._MODELS))  # models loaded by this worker's batches
    assert all(reads[w] == 1 and loads[w] == 1 for w in used), (reads, loads)
    # two processes on this host share its cores instead of each taking all of them
    cpus = len(os.sched_getaffinity(0))
    assert set(client.run(lambda: torch.get_num_threads()).values()) == {max(1, cpus // 2)}
    assert set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == {None}  # glibc's own malloc
    # a terminal's Ctrl-C reaches the workers too: the batch stops them, without each one's traceback
    assert set(client.run(lambda: str(signal.getsignal(signal.SIGINT))).values()) == {str(signal.SIG_IGN)}
    # GPU files need GPU workers: none here, so it says so instead of waiting forever
    with pytest.raises(ValueError, match="no worker of this cluster has them"):
        _batch.segment_files(images[:1], tmp_path / "gpu", client=client, resources={"GPU": 1})


def test_a_workers_warnings_reach_the_caller_once_per_file(images, client, tmp_path):
    # a worker's warnings went to its own stderr in Python's "file:line: UserWarning" form (on a
    # cluster, its log, which the user never reads); they come back with each file's result
    big = []
    for i, path in enumerate(images[:4]):  # four files on two workers: each worker runs two
        big.append(tmp_path / f"tiled{i}.png")
        Image.fromarray(np.tile(np.asarray(Image.open(path)), (2, 2, 1))).save(big[-1])
    with pytest.warns(UserWarning, match="the 4 tiles do not overlap") as caught:
        done = _batch.segment_files(big, tmp_path / "out", client=client, tile_size=128, tile_overlap=0, scale=1.0)
    assert done.done == 4
    assert sum("do not overlap" in str(w.message) for w in caught) == 4  # one per file, none lost to a registry
    assert all(w.filename.endswith("_inference.py") for w in caught if "do not overlap" in str(w.message))


def test_a_warning_from_a_worker_of_another_install_is_the_callers_packages():
    # a cluster's workers import the package from their own install (a container, another venv): the
    # warning was given again under their path, which the command line did not know as its own
    import warnings

    from napari_gardenseg._dask_runner import show_task_warnings
    from napari_gardenseg._errors import in_package

    there = "/opt/conda/lib/python3.11/site-packages/napari_gardenseg/_inference.py"
    with pytest.warns(UserWarning, match="tiles do not overlap") as caught:
        show_task_warnings({"warnings": [{"message": "the 4 tiles do not overlap", "filename": there, "lineno": 9}]})
    assert in_package(caught[0].filename) and caught[0].filename.endswith(
        os.path.join("napari_gardenseg", "_inference.py")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # raised here, it fails the file in _run_on_cluster, not the batch
        with pytest.raises(UserWarning):
            show_task_warnings({"warnings": [{"message": "x", "filename": there, "lineno": 9}]})


def _exit_once(marker: str, stem: str):
    """Make this worker process die (as from a segfault or the OOM killer) while it writes ``stem``'s
    overlay, after its label image and table are written: once per marker."""
    from PIL import Image as PILImage

    original = PILImage.Image.save

    def save(self, fp, *args, **kwargs):
        if Path(str(fp)).name.startswith(f".{stem}_overlay"):
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                os._exit(1)
        return original(self, fp, *args, **kwargs)

    PILImage.Image.save = save


def test_corrupt_file_and_killed_worker_fail_alone(images, client, tmp_path):
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n but not an image")
    doomed = tmp_path / "doomed.png"
    doomed.write_bytes(images[0].read_bytes())
    batch = [images[1], bad, doomed, images[2]]

    client.run(_exit_once, str(tmp_path / "died-1"), "doomed")
    out = tmp_path / "out"
    summary = _batch.segment_files(batch, out, client=client, crf=False, retries=1)
    assert (tmp_path / "died-1").exists()  # the worker really died on it
    status = {Path(f.file).name: f for f in summary}
    assert status["doomed.png"].status == "done" and status["doomed.png"].attempts == 2  # retried elsewhere
    assert status["corrupt.png"].status == "failed"
    assert [status[p.name].status for p in (images[1], images[2])] == ["done", "done"]
    lines = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [(x["file"], x["error_type"]) for x in lines] == [(str(bad), "ImageError")]
    assert "Traceback" in lines[0]["traceback"] and "corrupt.png" in lines[0]["message"]
    assert tifffile.imread(out / "doomed_labels.tif").max() >= 1 and (out / "doomed_run.json").exists()

    # without retries, the lost worker is the file's failure, reported like any other
    client.wait_for_workers(2, timeout=60)  # the dead one's nanny has started a new process
    client.run(_exit_once, str(tmp_path / "died-2"), "doomed")
    summary = _batch.segment_files([doomed], tmp_path / "out2", client=client, crf=False, retries=0)
    assert [f.status for f in summary] == ["failed"]
    (line,) = [json.loads(x) for x in (tmp_path / "out2" / "failures.jsonl").read_text().splitlines()]
    assert line["file"] == str(doomed) and line["error_type"] == "KilledWorker" and line["attempts"] == 1
    # it died after writing two of its files: they are there only under hidden temporary names
    assert not list((tmp_path / "out2").glob("doomed*")) and len(list((tmp_path / "out2").glob(".doomed_*.tmp"))) == 2


def test_files_waiting_on_a_dying_worker_are_not_failed(images, client, tmp_path):
    # four files on two one-thread workers: Dask hands each worker two of them, so the worker that
    # dies in "doomed" also held a file it had not started, which must neither fail nor use a retry
    doomed = tmp_path / "doomed.png"
    doomed.write_bytes(images[0].read_bytes())
    client.wait_for_workers(2, timeout=60)
    client.run(_exit_once, str(tmp_path / "died"), "doomed")
    summary = _batch.segment_files([doomed, *images[1:4]], tmp_path / "out", client=client, crf=False, retries=0)
    assert (tmp_path / "died").exists()
    status = {Path(f.file).name: f for f in summary}
    assert (status["doomed.png"].status, status["doomed.png"].attempts) == ("failed", 1)
    assert [(status[p.name].status, status[p.name].attempts) for p in images[1:4]] == [("done", 1)] * 3


def test_cli_against_a_scheduler_from_a_subprocess(images, client, tmp_path, capsys):
    out = tmp_path / "out"
    address = client.scheduler.address
    cmd = [
        sys.executable,
        "-m",
        "napari_gardenseg.cli",
        "segment",
        str(images[4]),
        str(images[5]),
        "--out",
        str(out),
        "--scheduler",
        address,
        "--no-crf",
        "--coco",
    ]
    run = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "2 done, 0 skipped, 0 failed" in run.stdout
    for name in ("scene4", "scene5"):
        labels = tifffile.imread(out / f"{name}_labels.tif")
        coco = json.loads((out / f"{name}_coco.json").read_text())
        assert labels.max() >= 1 and len(coco["annotations"]) == labels.max()
        assert _record(out, name)["options"]["crf"] is False
    # every file already there: with --resume nothing is sent to the cluster
    assert cli.main(cmd[3:] + ["--resume"]) == 0
    assert "0 done, 2 skipped" in capsys.readouterr().out


def test_resume_skips_done_files_and_redoes_changed_ones(images, tmp_path, capsys):
    out = tmp_path / "out"
    (tmp_path / "photos").mkdir()
    files = [str(tmp_path / "photos" / p.name) for p in images[:2]]
    for src, copy in zip(images, files):
        Path(copy).write_bytes(src.read_bytes())
    base = ["segment", *files, "--out", str(out), "--no-crf"]
    assert cli.main(base) == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()

    assert cli.main(base + ["--resume"]) == 0
    assert "0 done, 2 skipped, 0 failed" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps  # nothing rewritten

    # the model is known by its weights: a copy of the checkpoint is the same model, other weights are not
    from napari_gardenseg._models import bundled_checkpoint

    (tmp_path / "copy.pt").write_bytes(bundled_checkpoint().read_bytes())
    (tmp_path / "other.pt").write_bytes(bundled_checkpoint().read_bytes() + b"\0")
    assert cli.main(base + ["--resume", "--model", str(tmp_path / "copy.pt")]) == 0
    assert "0 done, 2 skipped" in capsys.readouterr().out
    assert cli.main(base + ["--resume", "--model", str(tmp_path / "other.pt")]) == 1
    assert "different model" in capsys.readouterr().err

    # other settings: --resume alone never replaces what another run made...
    changed = base + ["--score-threshold", "0.9", "--resume"]
    assert cli.main(changed) == 1
    err = capsys.readouterr().err
    assert "different options" in err and "--overwrite" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "failures.jsonl"} == stamps
    # ...with --overwrite it redoes only what differs
    Image.open(images[0]).transpose(Image.FLIP_LEFT_RIGHT).save(files[0])  # the photo edited where it lies
    assert cli.main(base + ["--resume", "--overwrite"]) == 0
    assert "1 done, 1 skipped" in capsys.readouterr().out  # scene0 changed; scene1 unchanged
    assert _record(out, "scene0")["input"]["size"] == Path(files[0]).stat().st_size
    assert cli.main(changed + ["--overwrite"]) == 0
    assert "2 done, 0 skipped" in capsys.readouterr().out
    assert {_record(out, f"scene{i}")["options"]["score_threshold"] for i in range(2)} == {0.9}
    # --overwrite without --resume redoes even what matches
    before = (out / "scene1_labels.tif").stat().st_mtime_ns
    assert cli.main(base + ["--score-threshold", "0.9", "--overwrite"]) == 0
    assert (out / "scene1_labels.tif").stat().st_mtime_ns != before


def test_same_stem_inputs_get_their_own_outputs(images, tmp_path, capsys):
    for sub, src in (("a", images[6]), ("b", images[7])):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "x.png").write_bytes(src.read_bytes())
    inputs = [str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png"), str(images[5])]
    names = _batch.output_names(inputs)
    assert names[0] != names[1] and names[0].startswith("x__") and names[2] == "scene5"
    assert names == _batch.output_names(inputs)  # predictable
    # one name to a file system that folds case or Unicode forms (macOS: "ä" composed or decomposed)
    folded = _batch.output_names(["a/B\u00e4ume.jpg", "b/Ba\u0308ume.jpg", "c/IMG_1.JPG", "d/img_1.jpg", "e/z.jpg"])
    assert [n.split("__")[0] for n in folded] == ["B\u00e4ume", "Ba\u0308ume", "IMG_1", "img_1", "z"]
    assert all("__" in n for n in folded[:4]) and len(set(folded)) == 5
    out = tmp_path / "out"
    assert cli.main(["segment", *inputs, "--out", str(out), "--no-crf"]) == 0
    for name, path in zip(names, inputs):
        assert _record(out, name)["input"]["path"] == path and (out / f"{name}_labels.tif").exists()
    calls = []
    alone = _batch.segment_files([images[7]], tmp_path / "alone", crf=False, progress=lambda f, m: calls.append((f, m)))
    fractions = [f for f, _ in calls]  # the file's stages move the bar before it ends
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and any(0 < f < 1 for f in fractions)
    assert calls[-1][1].startswith("scene7.png: ") and "instances" in calls[-1][1]
    np.testing.assert_array_equal(
        tifffile.imread(out / f"{names[1]}_labels.tif"), tifffile.imread(alone.files[0].outputs[0])
    )
    assert not np.array_equal(
        tifffile.imread(out / f"{names[0]}_labels.tif"), tifffile.imread(out / f"{names[1]}_labels.tif")
    )


def test_inputs_of_one_name_are_resumed_after_their_folder_moved(images, tmp_path, capsys):
    # x.jpg and x.png get tagged names; the tags came from absolute paths, so after a move both
    # were done again, beside their earlier outputs
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "x.png").write_bytes(images[3].read_bytes())
    Image.open(images[4]).save(photos / "x.jpg", quality=95)
    out = tmp_path / "out"
    assert cli.main(["segment", str(photos), "--out", str(out), "--no-crf"]) == 0
    records = sorted(p.name for p in out.glob("*_run.json"))
    assert len(records) == 2 and all(r.startswith("x__") for r in records)
    moved = photos.rename(tmp_path / "mounted_elsewhere")
    capsys.readouterr()
    assert cli.main(["segment", str(moved), "--out", str(out), "--no-crf", "--resume"]) == 0
    assert "0 done, 2 skipped, 0 failed" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*_run.json")) == records


def test_a_recursive_batch_mirrors_the_subfolders_and_resumes(images, tmp_path, capsys):
    photos = tmp_path / "photos"
    for sub, src in (("2024-06/plotA", images[0]), ("2024-07", images[1]), ("", images[2])):
        (photos / sub).mkdir(parents=True, exist_ok=True)
        (photos / sub / "a.png").write_bytes(src.read_bytes())
    out = photos / "results"  # inside the tree: its outputs must not become inputs next time
    args = ["segment", str(photos), "--recursive", "--out", str(out), "--no-crf"]
    assert cli.main(args) == 0
    lines = capsys.readouterr().out
    assert "2024-06/plotA/a.png: " in lines and "2024-07/a.png: " in lines
    for name, src in (("2024-06/plotA/a", images[0]), ("2024-07/a", images[1]), ("a", images[2])):
        labels = tifffile.imread(out / f"{name}_labels.tif")
        alone = _batch.segment_files([src], tmp_path / "alone" / Path(name).parent, crf=False, overwrite=True)
        np.testing.assert_array_equal(labels, tifffile.imread(alone.files[0].outputs[0]))
        assert labels.max() >= 1 and _record(out, name)["input"]["path"] == str(photos / Path(name).parent / "a.png")
    assert cli.main([*args, "--resume"]) == 0  # the same three, found again and skipped; results/ not searched
    assert "0 done, 3 skipped, 0 failed" in capsys.readouterr().out
    assert cli.main([*args[:2], *args[3:], "--resume"]) == 0  # not recursive: only the top folder's photo
    assert "0 done, 1 skipped, 0 failed" in capsys.readouterr().out
    # the drive mounted elsewhere: the same files (name, size, time) are done; every one was "different input"
    moved = photos.rename(tmp_path / "mounted_elsewhere")
    moved_args = ["segment", str(moved), "--recursive", "--out", str(moved / "results"), "--no-crf", "--resume"]
    assert cli.main(moved_args) == 0
    assert "0 done, 3 skipped, 0 failed" in capsys.readouterr().out
    # a photo edited since it moved is not told from another photo of its name: never replaced
    os.utime(moved / "2024-07" / "a.png", ns=(0, 10**18))
    assert cli.main(moved_args) == 1
    err = capsys.readouterr().err
    assert "another photo of the same name" in err and str(photos / "2024-07" / "a.png") in err
    assert cli.main([*moved_args, "--overwrite"]) == 1


def test_existing_outputs_are_not_replaced_without_overwrite(images, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "scene1_labels.tif"
    mine.write_bytes(b"the user's own labels")
    args = ["segment", str(images[1]), str(images[2]), "--out", str(out), "--no-crf"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert str(mine) in err and "no earlier run made it" in err and "--overwrite replaces" not in err
    assert mine.read_bytes() == b"the user's own labels"
    assert not (out / "scene1_instances.csv").exists() and (out / "scene2_run.json").exists()
    (line,) = (json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines())
    assert line["error_type"] == "ForeignFileError" and line["file"] == str(images[1])
    # a file no run made (a painted label image, another photo) is not replaced with --overwrite either
    assert cli.main(args + ["--overwrite"]) == 1
    assert mine.read_bytes() == b"the user's own labels"
    mine.unlink()
    assert cli.main(args + ["--overwrite"]) == 0
    assert tifffile.imread(mine).shape == (128, 128)
    # process_file itself refuses too (other settings than the outputs there), and with resume=True
    # keeps outputs made with the same ones
    with pytest.raises(FileExistsError, match="--overwrite"):
        _batch.process_file(images[2], out, crf=False, score_threshold=0.7)
    again = _batch.process_file(images[2], out, crf=False, score_threshold=0.5, resume=True)
    assert again["reused"] and again["instances"] == _record(out, "scene2")["instances"]


def test_a_file_another_run_finished_meanwhile_counts_as_done(images, tmp_path, monkeypatch, capsys):
    # two commands into one folder: the one that finished a file second failed it ("outputs exist"),
    # and both exited 1 although every file was done
    from napari_gardenseg import _inference
    from napari_gardenseg._claims import DONE_MEANWHILE

    out = tmp_path / "out"
    real = _inference.segment_with
    other = []

    def segment_while_another_run_finishes_it(*args, **kwargs):
        if not other:  # the other command, started at the same time, gets there first
            other.append(None)
            other[0] = _batch.process_file(images[1], out, crf=False)
        return real(*args, **kwargs)

    monkeypatch.setattr(_inference, "segment_with", segment_while_another_run_finishes_it)
    assert cli.main(["segment", str(images[1]), "--out", str(out), "--no-crf"]) == 0
    said = capsys.readouterr()
    assert DONE_MEANWHILE in said.out + said.err and not (out / "failures.jsonl").exists()
    assert _record(out, "scene1")["created"] and sorted(other[0]["written"]) == sorted(
        _record(out, "scene1")["written"] + ["scene1_run.json"]
    )
    # with other settings the other run's outputs are not this file's: refused as before
    other.clear()
    monkeypatch.setattr(_inference, "segment_with", segment_while_another_run_finishes_it)
    out = tmp_path / "out2"
    assert cli.main(["segment", str(images[1]), "--out", str(out), "--no-crf", "--score-threshold", "0.7"]) == 1
    said = capsys.readouterr()
    assert "already exists" in said.out + said.err


def test_a_run_that_cannot_finish_a_file_renames_none_of_its_outputs(images, tmp_path, monkeypatch):
    # another run without --coco finished the file while this one wrote its overlay: this run's
    # COCO file and overlay, which nothing blocked, were renamed beside the other run's outputs, and
    # every later run refused them as no run's files
    from napari_gardenseg import _batch_outputs

    out = tmp_path / "out"
    real = _batch_outputs._save_overlay
    other = []

    def overlay_while_another_run_finishes_it(*args, **kwargs):
        if not other:
            other.append(_batch.process_file(images[1], out, crf=False, write_overlay=False))
        return real(*args, **kwargs)

    monkeypatch.setattr(_batch_outputs, "_save_overlay", overlay_while_another_run_finishes_it)
    with pytest.raises(FileExistsError, match="already exists"):
        _batch.process_file(images[1], out, crf=False, coco=True)
    assert sorted(p.name for p in out.iterdir()) == ["scene1_instances.csv", "scene1_labels.tif", "scene1_run.json"]
    monkeypatch.setattr(_batch_outputs, "_save_overlay", real)
    assert _batch.process_file(images[1], out, crf=False, coco=True, resume=True, overwrite=True)["written"]


def test_another_photo_like_this_one_finished_meanwhile_is_not_taken_for_it(tmp_path, monkeypatch):
    # flight1/IMG_0001.tif and flight2/IMG_0001.tif: other pixels, the same name, size and time,
    # two commands into one folder: the second was "done meanwhile" with the first photo's labels
    import os

    from napari_gardenseg import _inference
    from napari_gardenseg.synthetic import garden_scene

    photos = []
    for seed, day in ((3, "flight1"), (4, "flight2")):
        (tmp_path / day).mkdir()
        photos.append(tmp_path / day / "IMG_0001.tif")
        tifffile.imwrite(photos[-1], garden_scene(seed, (128, 128))[0])
        os.utime(photos[-1], ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    assert photos[0].stat().st_size == photos[1].stat().st_size
    out = tmp_path / "out"
    real = _inference.segment_with
    other = []

    def segment_while_the_other_photo_finishes(*args, **kwargs):
        if not other:
            other.append(None)
            other[0] = _batch.process_file(photos[0], out, crf=False)
        return real(*args, **kwargs)

    monkeypatch.setattr(_inference, "segment_with", segment_while_the_other_photo_finishes)
    with pytest.raises(FileExistsError):
        _batch.process_file(photos[1], out, crf=False)
    assert _record(out, "IMG_0001")["input"]["path"] == str(photos[0])


def test_another_photo_of_the_same_name_run_into_the_folder_before_is_never_replaced(images, tmp_path, capsys):
    # one camera folder a day, all into one results folder: IMG_0001.JPG comes again
    for day, src in (("day1", images[3]), ("day2", images[4])):
        (tmp_path / day).mkdir()
        (tmp_path / day / "a.png").write_bytes(src.read_bytes())
    out = tmp_path / "out"
    assert cli.main(["segment", str(tmp_path / "day1"), "--out", str(out), "--no-crf"]) == 0
    first = (out / "a_labels.tif").read_bytes()
    capsys.readouterr()
    for extra in ([], ["--overwrite"], ["--resume"], ["--resume", "--overwrite"]):
        assert cli.main(["segment", str(tmp_path / "day2"), "--out", str(out), "--no-crf", *extra]) == 1
        err = capsys.readouterr().err
        assert "another photo" in err and str(tmp_path / "day1" / "a.png") in err, extra
        assert "--overwrite replaces" not in err and "redoes them" not in err
        assert (out / "a_labels.tif").read_bytes() == first
        assert _record(out, "a")["input"]["path"] == str(tmp_path / "day1" / "a.png")
    # the same photo edited where it lies is redone with --overwrite, as before
    (tmp_path / "day1" / "a.png").write_bytes(images[5].read_bytes())
    assert cli.main(["segment", str(tmp_path / "day1"), "--out", str(out), "--no-crf", "--overwrite"]) == 0
    assert (out / "a_labels.tif").read_bytes() != first


def test_outputs_corrected_with_any_program_are_never_replaced(images, tmp_path, capsys):
    import hashlib

    out = tmp_path / "out"
    args = ["segment", str(images[2]), "--out", str(out)]
    assert cli.main(args) == 0
    record = _record(out, "scene2")
    assert set(record["sha256"]) == set(record["written"])
    for name in record["written"]:
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == record["sha256"][name]
    # corrections saved over the CRF labels by another program (tifffile, as Fiji or QGIS would)
    corrected = tifffile.imread(out / "scene2_labels_crf.tif")
    corrected[:8, :8] = 99
    tifffile.imwrite(out / "scene2_labels_crf.tif", corrected)
    capsys.readouterr()
    for extra in (["--overwrite"], ["--no-crf", "--overwrite"], ["--resume", "--score-threshold", "0.7"]):
        assert cli.main(args + extra) == 1  # replaced, or removed as an output the new run does not make
        err = capsys.readouterr().err
        assert "changed after the run that wrote it" in err and "scene2_labels_crf.tif" in err, extra
        np.testing.assert_array_equal(tifffile.imread(out / "scene2_labels_crf.tif"), corrected)
    assert cli.main(args + ["--resume"]) == 0  # the same run: done, nothing replaced
    np.testing.assert_array_equal(tifffile.imread(out / "scene2_labels_crf.tif"), corrected)
    (out / "scene2_labels_crf.tif").unlink()  # deleted: made again
    assert cli.main(args + ["--overwrite"]) == 0
    assert tifffile.imread(out / "scene2_labels_crf.tif")[:8, :8].max() < 99


def test_resume_makes_again_an_output_deleted_or_emptied_by_a_crash(images, client, tmp_path, capsys):
    # a power cut after a rename whose bytes had not reached the disk leaves an empty file under
    # the output's name (ext4, XFS): --resume counted it done, --overwrite refused it as corrections
    out = tmp_path / "out"
    args = ["segment", str(images[3]), "--out", str(out), "--no-crf"]
    assert cli.main(args) == 0
    want = tifffile.imread(out / "scene3_labels.tif")
    (out / "scene3_labels.tif").write_bytes(b"")
    (out / "scene3_overlay.png").unlink()  # deleted to have it made again
    capsys.readouterr()
    assert cli.main(args + ["--resume"]) == 0
    assert "1 done, 0 skipped, 0 failed" in capsys.readouterr().out
    np.testing.assert_array_equal(tifffile.imread(out / "scene3_labels.tif"), want)
    assert (out / "scene3_overlay.png").stat().st_size > 0
    # the same through Dask's tasks
    (out / "scene3_labels.tif").write_bytes(b"")
    summary = _batch.segment_files([images[3]], out, client=client, crf=False, resume=True)
    assert [f.status for f in summary] == ["done"]
    np.testing.assert_array_equal(tifffile.imread(out / "scene3_labels.tif"), want)
    # made by a model object (no file to know it by): never redone over, outputs gone or not
    from napari_gardenseg._run_record import _not_done

    record = _record(out, "scene3")
    record["model"] = {"source": "<MaskRCNN object>", "sha256": None}
    (out / "scene3_overlay.png").unlink()
    assert _not_done(out, "scene3", record, record) == "a model that cannot be verified"
    # another output corrected meanwhile: refused as before, the correction kept
    (out / "scene3_labels.tif").write_bytes(b"")
    (out / "scene3_instances.csv").write_text("label,class_name\n1,mine\n")
    assert cli.main(args + ["--resume"]) == 1
    assert "changed after the run that wrote it" in capsys.readouterr().err
    assert (out / "scene3_instances.csv").read_text() == "label,class_name\n1,mine\n"


def test_an_input_name_too_long_for_its_outputs_gets_a_shorter_one(images, tmp_path, capsys):
    # a legal 249-byte file name stopped the whole batch ("longer than file systems take", exit 2)
    folder = tmp_path / "in"
    folder.mkdir()
    long = folder / ("\u00e4" * 60 + "c" * 125 + ".png")  # 245 bytes of stem, two-byte letters among them
    long.write_bytes(images[4].read_bytes())
    (folder / "short.png").write_bytes(images[5].read_bytes())
    out = tmp_path / "out"
    assert cli.main(["segment", str(folder), "--out", str(out), "--no-crf"]) == 0
    (name,) = {p.name[: -len("_run.json")] for p in out.glob("*_run.json")} - {"short"}
    assert name.startswith("\u00e4" * 60 + "c") and re.fullmatch(r".*c__[0-9a-f]{6}", name)
    assert max(len(os.fsencode(p.name)) for p in out.iterdir()) <= 255
    assert _batch.output_names([long]) == [name]  # the same name again: a resumed batch finds it
    assert cli.main(["segment", str(folder), "--out", str(out), "--no-crf", "--resume"]) == 0
    assert "0 done, 2 skipped" in capsys.readouterr().out


def test_a_batch_whose_output_pipe_closes_stops_as_unix_tools_do(images, tmp_path, monkeypatch, capsys):
    # `gardenseg segment ... | head -1`: the next line hit EPIPE and the batch ended as "could not
    # start" (exit 2); the files done are complete, and --resume goes on
    import io
    import sys

    class Closed(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    out = tmp_path / "out"
    assert cli.main(["segment", str(images[1]), str(images[2]), "--out", str(out), "--no-crf"]) == 141
    err = capsys.readouterr().err
    assert "gardenseg: output closed; the files finished so far are complete" in err and "--resume" in err
    assert (out / "scene1_run.json").exists() and not (out / "scene2_run.json").exists()


def test_corrections_over_outputs_of_a_run_recorded_without_checksums_are_kept(images, tmp_path, capsys):
    # a folder from before checksums were recorded: corrections saved over its label image were
    # replaced by --overwrite, and --overwrite --no-crf deleted a corrected CRF label image
    out = tmp_path / "out"
    args = ["segment", str(images[2]), "--out", str(out)]
    assert cli.main(args) == 0
    record_path = out / "scene2_run.json"
    record = json.loads(record_path.read_text())
    del record["sha256"]  # as runs before 6 December 2026 wrote it
    record_path.write_text(json.dumps(record))
    stamp = record_path.stat().st_mtime
    os.utime(record_path, (stamp - 60, stamp - 60))
    for name in record["written"]:  # the run's outputs: renamed into place before their record
        os.utime(out / name, (stamp - 61, stamp - 61))
    corrected = tifffile.imread(out / "scene2_labels_crf.tif")
    corrected[:8, :8] = 99
    tifffile.imwrite(out / "scene2_labels_crf.tif", corrected)  # saved now: after the record
    capsys.readouterr()
    for extra in (["--overwrite"], ["--no-crf", "--overwrite"]):
        assert cli.main(args + extra) == 1
        err = capsys.readouterr().err
        assert "scene2_labels_crf.tif' was saved after the run that wrote it" in err, extra
        np.testing.assert_array_equal(tifffile.imread(out / "scene2_labels_crf.tif"), corrected)
    (out / "scene2_labels_crf.tif").unlink()  # deleted: the rest is replaced, as before
    assert cli.main(args + ["--overwrite"]) == 0


def test_resume_says_when_another_version_made_what_it_skips(images, tmp_path, capsys):
    # the version is recorded, not compared: a folder from an older engine was kept as done, unsaid
    import napari_gardenseg

    out = tmp_path / "out"
    args = ["segment", str(images[6]), "--out", str(out), "--no-crf"]
    assert cli.main(args) == 0
    assert cli.main(args + ["--resume"]) == 0
    assert "already done (resume)\n" in capsys.readouterr().out
    record = json.loads((out / "scene6_run.json").read_text())
    assert record["package_version"] == napari_gardenseg.__version__ != "0.1.0"
    (out / "scene6_run.json").write_text(json.dumps({**record, "package_version": "0.1.0"}))
    assert cli.main(args + ["--resume"]) == 0
    said = capsys.readouterr().out
    assert (
        f"already done (resume) by napari-gardenseg 0.1.0; --overwrite without --resume redoes it with {napari_gardenseg.__version__}"
        in said
    )


def test_an_input_of_the_batch_is_never_one_of_its_outputs(images, tmp_path):
    # files given one by one (a shell glob) from the output folder: plot_overlay.png is an input
    folder = tmp_path / "self"
    folder.mkdir()
    (folder / "plot.png").write_bytes(images[1].read_bytes())
    (folder / "plot_overlay.png").write_bytes(images[2].read_bytes())
    summary = _batch.segment_files(
        [folder / "plot.png", folder / "plot_overlay.png"], folder, crf=False, overwrite=True
    )
    status = {Path(f.file).name: f for f in summary}
    assert status["plot.png"].status == "failed" and "also an input of this batch" in status["plot.png"].error
    assert status["plot_overlay.png"].status == "done"
    assert (folder / "plot_overlay.png").read_bytes() == images[2].read_bytes()


def test_overwrite_with_other_settings_leaves_no_output_of_the_earlier_run(images, tmp_path):
    out = tmp_path / "out"
    assert cli.main(["segment", str(images[1]), "--out", str(out), "--coco"]) == 0
    assert (out / "scene1_labels_crf.tif").exists() and (out / "scene1_coco.json").exists()
    assert cli.main(["segment", str(images[1]), "--out", str(out), "--no-crf", "--overwrite"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["scene1_instances.csv", "scene1_labels.tif", "scene1_overlay.png", "scene1_run.json"]
    assert sorted(_record(out, "scene1")["written"]) == names[:3]


def test_an_overwrite_that_fails_while_writing_leaves_the_earlier_run_whole(images, tmp_path, monkeypatch):
    # a full disk or an error in the overlay, before any rename: the earlier outputs keep their
    # record, so the next run may replace them (they were refused as "a file of yours?")
    from napari_gardenseg import _batch_outputs

    out = tmp_path / "out"
    assert cli.main(["segment", str(images[1]), "--out", str(out), "--no-crf"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full_disk(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_batch_outputs, "_save_overlay", full_disk)
    assert cli.main(["segment", str(images[1]), "--out", str(out), "--no-crf", "--overwrite"]) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != "failures.jsonl"} == before
    monkeypatch.undo()
    assert cli.main(["segment", str(images[1]), "--out", str(out), "--no-crf", "--overwrite"]) == 0


def test_ctrl_c_waits_for_a_files_outputs_to_be_renamed_together(tmp_path):
    import os
    import signal

    from napari_gardenseg._files import atomic_write, interrupts_held

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (CI may ignore it)
    with pytest.raises(KeyboardInterrupt):
        with interrupts_held() as held:
            with atomic_write(tmp_path / "a_labels.tif") as a, atomic_write(tmp_path / "a_run.json") as b:
                a.write_text("labels")
                b.write_text("record")
                held.hold()
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C between the two renames
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_labels.tif", "a_run.json"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # where Ctrl-C is ignored (a background job), it stays ignored: no interrupt afterwards
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with interrupts_held() as held:
        held.hold()
        os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    signal.signal(signal.SIGINT, previous)


def test_sigterm_stops_a_batch_as_ctrl_c_does(images, tmp_path, monkeypatch, capsys):
    # a batch system's time limit (SLURM), docker stop: SIGTERM ended the process mid-file with no
    # word, its claim and temporary files left behind
    import signal

    from napari_gardenseg import _dask_runner

    original = _dask_runner.process_file

    def then_terminated(path, *args, **kwargs):
        done = original(path, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # after the first file: delivered before the next starts
        return done

    monkeypatch.setattr(_dask_runner, "process_file", then_terminated)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "out"
    assert cli.main(["segment", str(images[1]), str(images[2]), "--out", str(out), "--no-crf"]) == 143
    assert "interrupted; the files finished so far are complete" in capsys.readouterr().err
    assert (out / "scene1_run.json").exists() and not (out / "scene2_run.json").exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no claim, no temporary
    assert signal.getsignal(signal.SIGTERM) is before
    # inside a group of renames it waits for the group, then goes to the handler, which decides:
    # one that only notes it (a program's own) gets no KeyboardInterrupt; it is delivered also
    # when the group failed
    from napari_gardenseg._files import atomic_write, interrupts_held

    seen = []
    previous = signal.signal(signal.SIGTERM, lambda n, f: seen.append(n))
    try:
        with interrupts_held() as held:
            with atomic_write(tmp_path / "b_labels.tif") as a, atomic_write(tmp_path / "b_run.json") as b:
                a.write_text("labels")
                b.write_text("record")
                held.hold()
                os.kill(os.getpid(), signal.SIGTERM)
                assert seen == []
        assert (tmp_path / "b_labels.tif").exists() and (tmp_path / "b_run.json").exists()
        assert seen == [signal.SIGTERM]
        with pytest.raises(OSError, match="disk"):
            with interrupts_held() as held:
                held.hold()
                os.kill(os.getpid(), signal.SIGTERM)
                raise OSError("disk")
        assert seen == [signal.SIGTERM] * 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    # a SIGTERM its parent set to be ignored stays ignored
    ignored = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        assert cli.main(["segment", str(images[1]), "--out", str(tmp_path / "ign"), "--no-crf"]) == 0
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, ignored)


def test_sigterm_stops_training_early_as_a_first_ctrl_c_does(capsys):
    # `gardenseg train` at a SLURM time limit: SIGTERM threw away what it had learnt, while a
    # first Ctrl-C stops it early and saves the model
    import signal
    import threading

    from napari_gardenseg._cancel import first_interrupt_sets

    def command_lines(signum, frame):  # the command line's own (cli._terminate_as_interrupt)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, command_lines)
    interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job (sbatch ... &): still stops early
    try:
        stop = threading.Event()
        with pytest.raises(KeyboardInterrupt):
            with first_interrupt_sets(stop, "stopping after this iteration; the model is saved"):
                os.kill(os.getpid(), signal.SIGTERM)
                assert stop.is_set()
                os.kill(os.getpid(), signal.SIGTERM)  # a second: now, saving nothing
        assert "stopping after this iteration" in capsys.readouterr().err
        assert signal.getsignal(signal.SIGTERM) is command_lines
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, interrupt)


def test_an_output_folder_that_takes_no_files_is_named_before_any_file_is_segmented(images, tmp_path):
    blocker = tmp_path / "not a folder"
    blocker.write_text("x")
    out = blocker / "sub"  # a folder to be made where none can be (read-only, no permission, a file)
    with pytest.raises(OSError, match=f"cannot write into the folder {re.escape(str(out))} .*choose another --out"):
        _batch.segment_files([images[1]], out, crf=False)


def test_a_relative_output_folder_is_the_callers_not_each_workers(images, tmp_path, monkeypatch):
    """Dask workers may run in another folder (dask worker, SLURM jobs): they get an absolute one."""
    monkeypatch.chdir(tmp_path)
    summary = _batch.segment_files([images[1]], "results", crf=False)
    assert summary.out_dir == tmp_path / "results" and summary.out_dir.is_absolute()
    assert (tmp_path / "results" / "scene1_run.json").exists()


def test_ctrl_c_says_how_to_go_on(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_batch, "segment_files", interrupted)
    assert cli.main(["segment", str(_cli_commands.sample_file()), "--out", "o"]) == 130
    err = capsys.readouterr().err
    assert "gardenseg: interrupted" in err and "--resume" in err and "Traceback" not in err


def test_cli_options_reach_segment_only_when_given(monkeypatch):
    seen = {}
    monkeypatch.setattr(
        _batch, "segment_files", lambda paths, out, model, **kw: seen.update(kw) or _batch.BatchSummary(Path(out), [])
    )
    sample = str(_cli_commands.sample_file())
    assert cli.main(["segment", sample, "--out", "o"]) == 0
    assert not {"tile_size", "tile_overlap", "scale", "merge_classes"} & set(seen) and seen["crf_overrides"] is None
    assert seen["client"] is None and seen["overwrite"] is seen["resume"] is False
    args = [
        "segment",
        sample,
        "--tile-size",
        "auto",
        "--tile-overlap",
        "32",
        "--scale",
        "0.5",
        "--merge-classes",
        "--crf-backend",
        "torch",
        "--crf-iterations",
        "3",
        "--retries",
        "2",
        "--resources",
        "GPU=1",
    ]
    assert cli.main(args) == 0
    assert (seen["tile_size"], seen["tile_overlap"], seen["scale"], seen["merge_classes"]) == ("auto", 32, 0.5, True)
    assert seen["crf_overrides"] == {"iterations": 3, "backend": "torch"}
    assert (seen["retries"], seen["resources"]) == (2, {"GPU": 1.0})
    for bad in (["--tile-size", "big"], ["--scale", "large"], ["--crf-backend", "cuda"]):
        with pytest.raises(SystemExit) as refused:  # argparse's usage error: not a value of the flag's kind
            cli.main(["segment", sample, *bad])
        assert refused.value.code == 2, bad
    assert cli.main(["segment", sample, "--workers", "2", "--scheduler", "tcp://x:1"]) == 2


def test_worker_resources_without_a_cluster_are_refused_not_ignored(tmp_path, capsys):
    sample = str(tmp_path / "a.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(sample)
    with pytest.raises(ValueError, match="they need a cluster"):
        _batch.segment_files([sample], tmp_path / "out", resources={"GPU": 1})
    assert cli.main(["segment", sample, "--out", str(tmp_path / "out"), "--resources", "GPU=1"]) == 2
    assert "--workers N, --scheduler or --scheduler-file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_engine_flags_reach_segment(images, tmp_path):
    out = tmp_path / "out"
    args = [
        "segment",
        str(images[3]),
        "--out",
        str(out),
        "--no-crf",
        "--merge-classes",
        "--tile-size",
        "64",
        "--tile-overlap",
        "8",  # 16, a quarter of the tile, is the default: a run record leaves it out
        "--scale",
        "1.0",
    ]
    assert cli.main(args) == 0
    import pandas as pd

    table = pd.read_csv(out / "scene3_instances.csv")
    assert len(table) >= 1 and set(table["class_name"]) == {"plant"}
    assert _record(out, "scene3")["options"] == {
        "crf": False,
        "merge_classes": True,
        "tile_size": 64,
        "tile_overlap": 8,
        "scale": 1.0,
    }


def test_progress_lines_without_a_terminal(capsys):
    bar = _cli_commands._Progress(2)  # pytest's captured stderr is no terminal: plain lines
    assert bar.bar is None
    for fraction, message in (
        (0.2, "a.png: running Mask R-CNN"),
        (0.5, "a.png: 3 instances in 1 s"),
        (0.7, "b.png: refining"),
        (1.0, "b.png: FAILED: ValueError: bad"),
    ):
        bar(fraction, message)
    captured = capsys.readouterr()
    assert (
        captured.out == "[1/2] a.png: 3 instances in 1 s\n" and captured.err == "[2/2] b.png: FAILED: ValueError: bad\n"
    )


def test_bad_options_fail_before_any_file(images, tmp_path):
    with pytest.raises(TypeError, match="'score_treshold'"):
        _batch.segment_files(images[:1], tmp_path, score_treshold=0.5)
    with pytest.raises(ValueError, match="retries"):
        _batch.segment_files(images[:1], tmp_path, retries=-1)
    with pytest.raises(ValueError, match="unknown model"):
        _batch.segment_files(images[:1], tmp_path, model="gardn")
    with pytest.raises(TypeError, match="model name or a checkpoint path"):
        from napari_gardenseg._models import load_model

        _batch.segment_files(images[:1], tmp_path, model=load_model("garden"), client=object())
    assert not list(tmp_path.glob("*_labels.tif"))


def test_a_file_that_runs_out_of_memory_fails_alone_and_says_what_to_do(images, tmp_path, monkeypatch, capsys):
    from napari_gardenseg import _dask_runner

    original = _dask_runner.process_file

    def short_of_memory(path, *args, **kwargs):
        if Path(path).name == "scene1.png":  # numpy's words when an allocation fails
            raise MemoryError(
                "Unable to allocate 1.21 GiB for an array with shape (8770, 12313, 3) and data type float32"
            )
        return original(path, *args, **kwargs)

    monkeypatch.setattr(_dask_runner, "process_file", short_of_memory)
    out = tmp_path / "out"
    assert cli.main(["segment", str(images[1]), str(images[2]), "--out", str(out), "--no-crf"]) == 1
    assert "not enough memory for this image (Unable to allocate 1.21 GiB" in capsys.readouterr().err
    (line,) = (json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines())
    assert line["error_type"] == "MemoryError" and "segment_to_zarr" in line["message"]
    assert (out / "scene2_labels.tif").exists()  # the next file ran


def test_a_full_output_disk_fails_each_file_with_what_to_do_and_the_batch_goes_on(
    images, tmp_path, monkeypatch, capsys
):
    # a disk too full for failures.jsonl stopped the batch as "could not start" (exit 2), the
    # failing file unnamed and the files after it never tried
    import errno

    from napari_gardenseg import _batch_status, _dask_runner

    original = _dask_runner.process_file

    def disk_full(path, *args, **kwargs):
        if Path(path).name == "scene1.png":
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / ".scene1_overlay.png.1.tmp"))
        return original(path, *args, **kwargs)

    def append_fails(out, entry):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_dask_runner, "process_file", disk_full)
    monkeypatch.setattr(_batch, "_append_failure", append_fails)
    out = tmp_path / "out"
    assert cli.main(["segment", str(images[1]), str(images[2]), "--out", str(out), "--no-crf"]) == 1
    captured = capsys.readouterr()
    assert f"the disk of the output folder ({out}) is full; free space there" in captured.err
    assert "(not listed in failures.jsonl: [Errno 28]" in captured.err
    assert "1 done, 0 skipped, 1 failed" in captured.err and (out / "scene2_labels.tif").exists()
    assert _batch_status.failure_message(ValueError("x")) == "x"


def test_the_overlay_is_drawn_band_by_band_with_outlines_across_the_seams():
    # the overlay PNG is made a band of rows at a time (no float copy of a big photo): the bands
    # must give the picture drawn in one piece, outlines at the seams included
    from napari_gardenseg._batch_outputs import overlay
    from napari_gardenseg._image_arrays import to_rgb_uint8

    rng = np.random.default_rng(2)
    image = rng.integers(0, 60000, (200, 90, 3)).astype(np.uint16)
    labels = np.zeros((200, 90), np.int32)
    labels[20:70, 10:40] = 1  # across the seam at row 32 and 64
    labels[64:130, 30:80] = 2  # its top edge is the first row of a band
    labels[140:160, 5:25] = 3  # its bottom edge is the last row of a band
    whole = np.asarray(overlay(image, labels, rows=10_000))
    np.testing.assert_array_equal(np.asarray(overlay(image, labels, rows=32)), whole)
    background = labels == 0
    np.testing.assert_array_equal(whole[background], to_rgb_uint8(image)[background])
    assert (whole[64, 41:79] == 255).all(), "the outline on a band's first row"
    assert (whole[159, 5:25] == 255).all(), "the outline on a band's last row"
    with pytest.raises(ValueError, match="alpha must be in 0..1"):
        overlay(image, labels, alpha=1.5)
    assert (whole[21:63, 39] == 255).all() and (whole[69, 11:29] == 255).all(), "right and bottom outlines too"
    assert (whole[40, 11:39] != 255).any() and not (whole[40, 11:39] == to_rgb_uint8(image)[40, 11:39]).all()


def test_the_overlay_of_a_big_photo_holds_a_band_beside_the_picture_not_a_copy_of_the_photo():
    # the picture is Pillow's (outside numpy); numpy holds one band of about a million pixels
    import tracemalloc

    from napari_gardenseg._batch_outputs import overlay

    image = np.full((4000, 4000, 3), 90, np.uint8)
    labels = np.zeros((4000, 4000), np.int32)
    labels[100:3900, 100:3900] = 1
    tracemalloc.start()
    try:
        picture = overlay(image, labels)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert picture.size == (4000, 4000) and picture.getpixel((2000, 2000)) != (90, 90, 90)
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MiB of numpy temporaries for a 16 MP overlay"


def test_long_file_names_that_fit_are_written_and_too_long_ones_refused_before_the_work(images, tmp_path):
    # 236 + "_labels_crf.tif" = 251 bytes: fits ext4's 255, not with a temporary suffix added to it
    long = tmp_path / ("a" * 236 + ".png")
    long.write_bytes(images[1].read_bytes())
    summary = _batch.segment_files([long], tmp_path / "out")
    assert summary.ok and (tmp_path / "out" / ("a" * 236 + "_labels_crf.tif")).exists()
    assert not list((tmp_path / "out").glob(".*"))  # no temporary left behind
    longer = tmp_path / ("b" * 245 + ".png")
    longer.write_bytes(images[1].read_bytes())
    with pytest.raises(ValueError, match="longer than file systems take"):
        _batch.process_file(longer, tmp_path / "out2")


def test_a_bad_crf_setting_stops_the_batch_before_any_file_is_read(tmp_path, capsys, monkeypatch):
    import napari_gardenseg._batch_file as batch_file

    read = []
    monkeypatch.setattr(batch_file, "read_image", lambda *a, **k: read.append(a) or pytest.fail("a file was read"))
    out = tmp_path / "out"
    assert cli.main(["segment", str(_cli_commands.sample_file()), "--out", str(out), "--crf-iterations", "-1"]) == 2
    assert "iterations" in capsys.readouterr().err and not read and not out.exists()


@pytest.mark.parametrize(
    "flags, api",
    [
        (["--tile-size", "0"], {"tile_size": 0}),
        (["--tile-size", "256", "--tile-overlap", "-8"], {"tile_size": 256, "tile_overlap": -8}),
        (["--scale", "-1"], {"scale": -1.0}),
        (["--scale", "nan"], {"scale": float("nan")}),
        (["--classes", ""], {"classes": ""}),
        (["--classes", "plant,"], {"classes": ["plant", ""]}),
    ],
)
def test_a_bad_value_gets_the_apis_message_on_the_command_line(flags, api, tmp_path, capsys):
    from napari_gardenseg import segment

    with pytest.raises(ValueError) as raised:
        segment(np.zeros((64, 64, 3), np.uint8), "garden", **api)
    assert cli.main(["segment", str(_cli_commands.sample_file()), "--out", str(tmp_path / "o"), *flags]) == 2
    assert str(raised.value) in capsys.readouterr().err


def test_classes_are_taken_by_id_on_the_command_line_as_in_the_api(monkeypatch):
    seen = {}
    monkeypatch.setattr(
        _batch, "segment_files", lambda paths, out, model, **kw: seen.update(kw) or _batch.BatchSummary(Path(out), [])
    )
    assert cli.main(["segment", str(_cli_commands.sample_file()), "--out", "o", "--classes", "1, weed"]) == 0
    assert seen["classes"] == (1, "weed")


def test_the_same_run_from_the_api_and_the_command_line_resumes_either_way(images, tmp_path, capsys):
    # the run record holds the options as SegmentOptions holds them: a class given as a string,
    # a whole-number scale and the default overlap given in pixels are the command line's run
    out = tmp_path / "out"
    api = dict(classes="weed", scale=1, tile_size=256, tile_overlap=64, crf=False)
    assert _batch.segment_files([images[0]], out, "garden", **api).ok
    args = ["segment", str(images[0]), "--out", str(out), "--no-crf", "--resume"]
    assert cli.main([*args, "--classes", "weed", "--scale", "1", "--tile-size", "256"]) == 0
    assert "0 done, 1 skipped" in capsys.readouterr().out
    assert _record(out, images[0].stem)["options"] == {
        "classes": ["weed"],
        "scale": 1.0,
        "tile_size": 256,
        "crf": False,
    }
    # a record written before the options were validated on the way in: as given, still this run
    record_file = out / f"{images[0].stem}_run.json"
    record = json.loads(record_file.read_text())
    record["options"] = {"classes": "weed", "scale": 1, "tile_size": 256, "tile_overlap": 64, "crf": False}
    record_file.write_text(json.dumps(record))
    assert cli.main([*args, "--classes", "weed", "--scale", "1", "--tile-size", "256"]) == 0
    assert "0 done, 1 skipped" in capsys.readouterr().out


def test_a_resume_that_spells_out_the_models_own_settings_is_the_same_run(images, tmp_path, capsys):
    # --crf-backend auto, the garden model's mask threshold or its stored CRF iterations, given
    # explicitly, were "different options": every file refused, with a hint to recompute them all
    from napari_gardenseg._models import model_info

    out = tmp_path / "out"
    args = ["segment", str(images[0]), "--out", str(out)]
    assert cli.main(args) == 0
    stored = model_info("garden")[1]
    iterations = str(stored["crf"]["iterations"])
    same = ["--crf-backend", "auto", "--mask-threshold", "0.3", "--score-threshold", "0.5"]
    assert cli.main([*args, "--resume", *same, "--crf-iterations", iterations]) == 0
    assert "0 done, 1 skipped" in capsys.readouterr().out
    assert _record(out, images[0].stem)["options"] == {}
    ran = _record(out, images[0].stem)["ran_with"]  # what ran is said all the same
    assert (ran["score_threshold"], ran["mask_threshold"]) == (0.5, 0.3)
    assert ran["crf_params"]["iterations"] == int(iterations) and ran["crf_backend"] in ("numba", "torch", "pydensecrf")
    # a record of before, holding them as given, is this run too; another value is not
    record_file = out / f"{images[0].stem}_run.json"
    record = json.loads(record_file.read_text())
    record["options"] = {"mask_threshold": 0.3, "crf_overrides": {"backend": "auto"}}
    record_file.write_text(json.dumps(record))
    assert cli.main([*args, "--resume"]) == 0
    assert "0 done, 1 skipped" in capsys.readouterr().out
    assert cli.main([*args, "--resume", "--mask-threshold", "0.4"]) == 1
    assert "different options" in capsys.readouterr().err


def test_a_record_of_before_ran_at_0_5_whatever_score_threshold_the_model_stores(images, tmp_path, capsys):
    # records of format 1 hold no score threshold: their runs used 0.5, also with a model that
    # stores another (which runs at its own now); --resume took them for runs at the model's
    import torch

    from napari_gardenseg._models import bundled_checkpoint

    ck = torch.load(bundled_checkpoint(), weights_only=True)
    ck["meta"] = {**ck["meta"], "score_threshold": 0.35}
    torch.save(ck, tmp_path / "loose.pt")
    out = tmp_path / "out"
    args = ["segment", str(images[0]), "--out", str(out), "--model", str(tmp_path / "loose.pt"), "--no-crf"]
    assert cli.main(args) == 0
    capsys.readouterr()
    record_file = out / f"{images[0].stem}_run.json"
    record = json.loads(record_file.read_text())
    assert record["format"] == 2 and record["ran_with"]["score_threshold"] == 0.35
    record.update(format=1, options={"crf": False})  # as the version before wrote a run at 0.5
    record_file.write_text(json.dumps(record))
    assert cli.main([*args, "--resume"]) == 1  # this run is at 0.35: not that one
    assert "different options" in capsys.readouterr().err
    assert cli.main([*args, "--resume", "--score-threshold", "0.5"]) == 0
    assert "0 done, 1 skipped" in capsys.readouterr().out


def test_every_crf_setting_is_reachable_from_the_command_line(monkeypatch, capsys):
    import dataclasses

    from napari_gardenseg.crf import CRFParams

    seen = {}
    monkeypatch.setattr(
        _batch, "segment_files", lambda paths, out, model, **kw: seen.update(kw) or _batch.BatchSummary(Path(out), [])
    )
    sample = str(_cli_commands.sample_file())
    args = ["segment", sample, "--out", "o", "--crf", "bilateral_srgb=6.5", "--crf", "band=0.05,0.95"]
    assert cli.main([*args, "--crf", "padding=12", "--crf", "gaussian_sxy=2", "--crf-iterations", "3"]) == 0
    assert seen["crf_overrides"] == {
        "bilateral_srgb": 6.5,  # a float field whose default is a whole number
        "band": (0.05, 0.95),
        "padding": 12,
        "gaussian_sxy": 2.0,
        "iterations": 3,
    }
    assert [type(seen["crf_overrides"][k]) for k in ("gaussian_sxy", "padding")] == [float, int]
    CRFParams.from_any(seen["crf_overrides"])  # values CRFParams takes
    # the same setting twice, differently: refused (two flags for iterations and backend)
    assert cli.main([*args, "--crf", "iterations=2", "--crf-iterations", "3"]) == 2
    assert "disagree" in capsys.readouterr().err
    for bad in ("srgb=20", "padding=wide", "band=0.1"):
        with pytest.raises(SystemExit) as refused:
            cli.main(["segment", sample, "--crf", bad])
        assert refused.value.code == 2
    err = capsys.readouterr().err
    assert all(f.name in err for f in dataclasses.fields(CRFParams))  # the unknown name's message lists them


def test_a_glob_pattern_the_shell_did_not_expand_is_expanded(images, tmp_path, capsys):
    # Windows' shells hand "photos/*.png" to the program as it is (POSIX shells expand it)
    photos = tmp_path / "photos [2024]"  # brackets in a folder's name are not a pattern's
    (photos / "later").mkdir(parents=True)
    for k, name in ((2, "scene2.png"), (3, "scene3.png"), (4, "later/scene4.png")):
        (photos / name).write_bytes(images[k].read_bytes())
    out = tmp_path / "out"
    assert cli.main(["segment", str(photos / "*.png"), "--out", str(out), "--no-crf"]) == 0
    assert (out / "scene2_labels.tif").exists() and (out / "scene3_labels.tif").exists()
    assert not (out / "scene4_labels.tif").exists()
    assert cli.main(["segment", str(photos / "**" / "scene4.png"), "--out", str(out), "--no-crf"]) == 0
    assert (out / "scene4_labels.tif").exists()  # "**": any depth
    assert cli.main(["segment", str(photos / "*.jpg"), "--out", str(out)]) == 2  # matches nothing: said
    assert "no such file" in capsys.readouterr().err
