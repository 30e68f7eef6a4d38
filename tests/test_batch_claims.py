"""Several batch commands into one output folder share the work: each file is claimed by the run
that segments it, and a run that finds a file claimed comes back to it at the end."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from napari_gardenseg import _batch
from napari_gardenseg._claims import DONE_MEANWHILE, claim, claim_path

pytest.importorskip("fcntl", reason="claims need fcntl (not on Windows, where runs do not share the work)")


def _record(out, name):
    return json.loads((out / f"{name}_run.json").read_text())


def test_a_claim_is_held_by_one_holder_at_a_time_and_leaves_no_file(tmp_path):
    with claim(tmp_path, "plot/IMG_1") as first:
        assert first and claim_path(tmp_path, "plot/IMG_1") == tmp_path / "plot" / ".IMG_1.claim"
        assert claim_path(tmp_path, "plot/IMG_1").is_file()
        with claim(tmp_path, "plot/IMG_1") as second:  # another open file: as another process
            assert second is False
        with claim(tmp_path, "plot/IMG_2") as other:
            assert other
    assert list(tmp_path.iterdir()) == []  # nor the subfolder made for it
    with claim(tmp_path, "plot/IMG_1") as again:
        assert again


def test_a_killed_run_leaves_no_claim_behind(tmp_path):
    # the claim is the operating system's lock: it goes with the process, however the process ends
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from napari_gardenseg._claims import claim
                with claim({str(tmp_path)!r}, "IMG_1") as mine:
                    print(mine, flush=True)
                    time.sleep(120)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "True"
        with claim(tmp_path, "IMG_1") as mine:
            assert mine is False
    finally:
        holder.kill()
        holder.wait()
    assert claim_path(tmp_path, "IMG_1").exists()  # killed: its file stays, its lock does not
    with claim(tmp_path, "IMG_1") as mine:
        assert mine
    assert not claim_path(tmp_path, "IMG_1").exists()


def _batch_beside_another_run(images, out, *, other_finishes: bool, **options):
    """segment_files on the three images while "another run" holds scene1's claim: that run lets go
    when the batch says it waits for it, after finishing scene1 (``other_finishes``) or not (it died)."""
    order, other = [], []
    held = claim(out, "scene1")
    assert held.__enter__()

    def progress(fraction, message):
        order.append(message)
        if "waiting for another run" in message and not other:
            assert f"{os.getpid()}@" in message  # who holds it
            other.append(_batch.process_file(images[1], out, crf=False, **options) if other_finishes else None)
            held.__exit__(None, None, None)

    summary = _batch.segment_files(images, out, crf=False, progress=progress, **options)
    return summary, order, other[0] if other else None


def test_a_file_another_run_is_working_on_is_left_to_it_and_counted_when_it_is_done(images, tmp_path):
    # two commands into one folder both segmented every file: twice the time, for the same outputs
    out = tmp_path / "out"
    out.mkdir()
    summary, order, other = _batch_beside_another_run(images, out, other_finishes=True)
    assert summary.ok and [f.status for f in summary.files] == ["done"] * 3
    finished = [m for m in order if "instances in" in m]
    assert [m.split(":")[0] for m in finished] == ["scene0.png", "scene2.png", "scene1.png"]  # scene1 left to the other
    scene1 = summary.files[1]
    assert DONE_MEANWHILE in scene1.note and scene1.seconds == 0.0
    assert scene1.instances == other["instances"] and _record(out, "scene1")["created"]
    assert sorted(scene1.outputs) == sorted(str(out / f) for f in other["written"])
    assert not list(out.glob(".*.claim"))


def test_a_file_whose_other_run_died_is_segmented_here(images, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    summary, order, other = _batch_beside_another_run(images, out, other_finishes=False)
    assert summary.ok and [f.status for f in summary.files] == ["done"] * 3
    scene1 = summary.files[1]
    assert scene1.seconds > 0 and DONE_MEANWHILE not in (scene1.note or "")
    assert _record(out, "scene1")["instances"] == scene1.instances


def test_overwrite_redoes_earlier_outputs_and_keeps_what_another_run_made_meanwhile(images, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for image in images[1:]:  # an earlier run's outputs: to be redone
        _batch.process_file(image, out, crf=False)
    earlier = {name: (out / f"{name}_run.json").stat().st_ino for name in ("scene1", "scene2")}
    # the other run redoes scene1 while this one holds none of its files
    summary, _, other = _batch_beside_another_run(images, out, other_finishes=True, overwrite=True)
    assert summary.ok
    scene1, scene2 = summary.files[1], summary.files[2]
    assert DONE_MEANWHILE in scene1.note and scene1.seconds == 0.0 and scene1.instances == other["instances"]
    assert scene2.seconds > 0 and DONE_MEANWHILE not in (scene2.note or "")  # this run's, made again
    assert (out / "scene2_run.json").stat().st_ino != earlier["scene2"]
    # the other run died: the earlier outputs are redone here, not kept as the other's
    out2 = tmp_path / "out2"
    out2.mkdir()
    _batch.process_file(images[1], out2, crf=False)
    summary, _, _ = _batch_beside_another_run(images, out2, other_finishes=False, overwrite=True)
    assert summary.files[1].seconds > 0 and DONE_MEANWHILE not in (summary.files[1].note or "")


def test_overwrite_keeps_what_another_run_finished_before_this_one_reached_it(images, tmp_path):
    # the other run let go of scene1 before this run got there: it was segmented a second time
    out = tmp_path / "out"
    out.mkdir()
    _batch.process_file(images[1], out, crf=False)
    other = []

    def progress(fraction, message):
        if message.startswith("scene0.png:") and "instances in" in message:
            other.append(_batch.process_file(images[1], out, crf=False, overwrite=True))

    summary = _batch.segment_files(images, out, crf=False, overwrite=True, progress=progress)
    scene1 = summary.files[1]
    assert other and summary.ok and DONE_MEANWHILE in scene1.note and scene1.seconds == 0.0


def test_another_photo_of_the_same_name_is_not_taken_for_this_one(tmp_path):
    # cam1/IMG_1.tif and cam2/IMG_1.tif, other pixels, the same size, a second apart: the waiting run
    # took the other photo's outputs as its own ("done meanwhile") through --resume's moved-file match
    import tifffile

    from napari_gardenseg.synthetic import garden_scene

    photos = []
    for seed, cam in ((3, "cam1"), (4, "cam2")):
        (tmp_path / cam).mkdir()
        photos.append(tmp_path / cam / "IMG_1.tif")
        tifffile.imwrite(photos[-1], garden_scene(seed, (128, 128))[0])
        os.utime(photos[-1], (1_700_000_000 + seed, 1_700_000_000 + seed))
    out = tmp_path / "out"
    out.mkdir()
    held = claim(out, "IMG_1")
    assert held.__enter__()
    other = []

    def progress(fraction, message):
        if "waiting for another run" in message and not other:
            other.append(_batch.process_file(photos[0], out, crf=False, name="IMG_1"))
            held.__exit__(None, None, None)

    summary = _batch.segment_files([photos[1]], out, crf=False, progress=progress)
    assert other and summary.files[0].status == "failed" and "IMG_1" in summary.files[0].error
    assert _record(out, "IMG_1")["input"]["path"] == str(photos[0])


def test_a_claim_whose_file_the_holder_removed_meanwhile_is_not_taken_twice(tmp_path, monkeypatch):
    # W opened the holder's file; the holder lets go (unlink, close) and N makes and locks a new one;
    # only then W's lock call runs: W must not think it holds the claim beside N
    import fcntl

    real = fcntl.flock
    held = claim(tmp_path, "X")
    assert held.__enter__()
    newcomer = claim(tmp_path, "X")
    state = {"armed": True}

    def flock(fd, op):
        if state.pop("armed", False):
            held.__exit__(None, None, None)
            assert newcomer.__enter__() is True
        return real(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock)
    with claim(tmp_path, "X") as mine:
        assert mine is False  # the newcomer holds it now
    newcomer.__exit__(None, None, None)


def test_the_holder_removes_the_claim_file_before_letting_go(tmp_path, monkeypatch):
    # the other order lets a waiter lock the file the holder then removes, beside a newcomer's
    events = []
    real_close, real_unlink = os.close, os.unlink
    monkeypatch.setattr(os, "close", lambda fd: (events.append("close"), real_close(fd))[1])
    monkeypatch.setattr(os, "unlink", lambda p, *a, **k: (events.append("unlink"), real_unlink(p, *a, **k))[1])
    with claim(tmp_path, "X") as mine:
        assert mine
        events.clear()
    assert events == ["unlink", "close"]


def test_a_folder_without_locks_leaves_no_claim_file_and_no_empty_subfolder(tmp_path, monkeypatch):
    import fcntl

    def no_locks(fd, op):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with claim(tmp_path, "2024-06/IMG_1") as mine:
        assert mine  # no claim can be taken: the run goes on as before claims
    assert list(tmp_path.iterdir()) == []


def test_two_commands_into_one_folder_segment_each_file_once(images, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "napari_gardenseg.cli", "segment", *map(str, images), "--out", str(out)]
    command += ["--no-crf", "--resume"]  # --resume: a command that starts later skips what is done
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    logs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], logs
    lines = [line for log in logs for line in log.splitlines() if "instances in" in line or "already done" in line]
    segmented = [line for line in lines if DONE_MEANWHILE not in line and "already done" not in line]
    assert len(lines) == 2 * len(images) and len(segmented) == len(images), logs
    assert sorted(line.split("] ")[1].split(":")[0] for line in segmented) == [p.name for p in images]
    assert not list(out.glob(".*.claim")) and all((out / f"{p.stem}_run.json").is_file() for p in images)
