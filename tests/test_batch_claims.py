"""Several batch commands into one output folder share the work: each file is claimed by the run
that segments it, and a run that finds a file claimed comes back to it at the end."""

import json
import subprocess
import sys
import textwrap

import pytest
from PIL import Image

from napari_gardenseg import _batch
from napari_gardenseg._batch_file import DONE_MEANWHILE
from napari_gardenseg._claims import claim, claim_path

pytest.importorskip("fcntl", reason="claims need fcntl (not on Windows, where runs do not share the work)")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from napari_gardenseg.synthetic import garden_scene

    folder = tmp_path_factory.mktemp("images")
    paths = []
    for seed in range(3):
        paths.append(folder / f"scene{seed}.png")
        Image.fromarray(garden_scene(seed, (128, 128))[0]).save(paths[-1])
    return paths


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
    assert list((tmp_path / "plot").iterdir()) == []
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
            if other_finishes:
                other.append(_batch.process_file(images[1], out, crf=False, **options))
            else:
                other.append(None)
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


def test_overwrite_keeps_what_another_overwriting_run_made_after_this_one_began(images, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    earlier = _batch.process_file(images[1], out, crf=False)  # an earlier run's outputs: to be redone
    earlier_created = _record(out, "scene1")["created"]
    summary, _, other = _batch_beside_another_run(images, out, other_finishes=True, overwrite=True)
    assert earlier["written"] and summary.ok
    scene1 = summary.files[1]
    assert DONE_MEANWHILE in scene1.note and scene1.seconds == 0.0
    assert _record(out, "scene1")["created"] >= earlier_created and scene1.instances == other["instances"]
