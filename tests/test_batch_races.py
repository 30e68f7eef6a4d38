"""A batch against what happens while it runs: corrections saved over its outputs, another run
into the same folder, Ctrl-C during its renames, its own ``cancel``."""

import json
import os
import signal
import sys
import threading

import numpy as np
import pytest
import tifffile

from napari_gardenseg import _batch, _batch_file, _inference, cli
from napari_gardenseg._claims import claim


def _record(out, name):
    return json.loads((out / f"{name}_run.json").read_text())


def test_corrections_saved_while_the_file_is_segmented_are_not_replaced(images, tmp_path, monkeypatch, capsys):
    # outputs were checked only before the file was read and segmented (minutes for a big photo):
    # corrections saved meanwhile were replaced by --overwrite, or removed by a run without the CRF
    original = _inference.segment_with
    saving = []

    def segment_then_the_user_saves(*args, **kwargs):
        result = original(*args, **kwargs)
        for path, labels in saving:
            tifffile.imwrite(path, labels)
        return result

    monkeypatch.setattr(_inference, "segment_with", segment_then_the_user_saves)
    for extra in (["--overwrite"], ["--no-crf", "--overwrite"]):
        out = tmp_path / extra[0]
        args = ["segment", str(images[2]), "--out", str(out)]
        saving.clear()
        assert cli.main(args) == 0
        corrected = tifffile.imread(out / "scene2_labels_crf.tif")
        corrected[:8, :8] = 99
        saving.append((out / "scene2_labels_crf.tif", corrected))
        capsys.readouterr()
        assert cli.main(args + extra) == 1
        err = capsys.readouterr().err
        assert "changed after the run that wrote it" in err and "scene2_labels_crf.tif" in err, extra
        np.testing.assert_array_equal(tifffile.imread(out / "scene2_labels_crf.tif"), corrected)
        assert _record(out, "scene2")["options"].get("crf", True) is True  # the earlier run's record stays
        assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_overwrite_leaves_what_another_run_made_with_other_settings_after_it_started(images, tmp_path):
    # README: --overwrite redoes only what was there when it started; it redid another run's newer
    # outputs (made with the CRF) and removed that run's CRF labels, and both said "done"
    out = tmp_path / "out"
    out.mkdir()
    held = claim(out, "scene1")
    assert held.__enter__()
    other = []

    def progress(fraction, message):
        if "waiting for another run" in message and not other:
            other.append(_batch.process_file(images[1], out))  # the other run: with the CRF
            held.__exit__(None, None, None)

    summary = _batch.segment_files(images, out, crf=False, overwrite=True, progress=progress)
    assert other and [f.status for f in summary.files] == ["done", "failed", "done"]
    error = summary.files[1].error
    assert "scene1" in error and "made by another run into this folder after this one started" in error
    assert "run the command again" in error and "overwrite=True" not in error  # it was given
    assert (out / "scene1_labels_crf.tif").exists() and _record(out, "scene1")["options"].get("crf", True) is True


def test_ctrl_c_during_the_renames_still_removes_the_earlier_runs_crf_labels(images, tmp_path, monkeypatch, request):
    # the CRF labels an --overwrite run without the CRF replaces were removed after the renames,
    # outside the window where Ctrl-C waits: left beside a table that contradicts them, and every
    # later run refused them as "a file of yours"
    out = tmp_path / "out"
    _batch.process_file(images[1], out)
    assert (out / "scene1_labels_crf.tif").exists()
    original, calls = _batch_file.check_outputs, []

    def check_then_ctrl_c(*args, **kwargs):
        original(*args, **kwargs)
        calls.append(args)
        if len(calls) == 2:  # the check just before the renames (the first one is before segmenting)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(_batch_file, "check_outputs", check_then_ctrl_c)
    # Python's own Ctrl-C handler, as in a terminal (a shell's background job, CI's, starts with SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    with pytest.raises(KeyboardInterrupt):
        _batch.process_file(images[1], out, crf=False, overwrite=True)
    assert len(calls) == 2
    assert not (out / "scene1_labels_crf.tif").exists()
    assert _record(out, "scene1")["options"].get("crf", True) is False
    monkeypatch.undo()
    assert _batch.segment_files([images[1]], out, crf=False, overwrite=True).ok  # not refused


def test_a_cancelled_batch_starts_no_more_files_and_fails_none(images, tmp_path):
    # cancel= reached each file's segment() only: every later file was read, failed as "Cancelled"
    # and logged with a traceback in failures.jsonl
    out = tmp_path / "out"
    stop = threading.Event()

    def progress(fraction, message):
        if message.startswith("scene0.png:") and "instances in" in message:
            stop.set()

    summary = _batch.segment_files(images, out, crf=False, progress=progress, cancel=stop)
    assert [f.status for f in summary.files] == ["done", "cancelled", "cancelled"]
    assert summary.cancelled == 2 and summary.ok and "2 cancelled" in repr(summary)
    assert not (out / "failures.jsonl").exists() and not (out / "scene1_run.json").exists()
    # set while a file is segmented (its stages say so): that file stops there, and is cancelled too
    stop.clear()
    stages = []

    def progress_inside(fraction, message):
        if message.startswith("scene1.png:") and "instances in" not in message:
            stages.append(message)
            stop.set()

    summary = _batch.segment_files(images, tmp_path / "out2", crf=False, progress=progress_inside, cancel=stop)
    assert stages and [f.status for f in summary.files] == ["done", "cancelled", "cancelled"]
    assert not (tmp_path / "out2" / "failures.jsonl").exists() and not (tmp_path / "out2" / "scene1_run.json").exists()
    # what cannot work is refused before any file: a flag that is no event nor callable, and an
    # event with a Dask cluster (it does not travel to the workers)
    with pytest.raises(TypeError, match="cancel must be None, a threading.Event or a callable"):
        _batch.segment_files(images, tmp_path / "out3", crf=False, cancel=True)
    with pytest.raises(ValueError, match=r"cancel= works for batches in this process \(client=None\)"):
        _batch.segment_files(images, tmp_path / "out3", crf=False, cancel=stop, client=object())
    assert not (tmp_path / "out3").exists()


def test_a_closed_terminal_stops_a_batch_as_ctrl_c_does(images, tmp_path, monkeypatch, capsys, request):
    # SIGHUP (the terminal closed, the SSH session dropped) killed the batch with no word, its
    # claim and temporary files left; inside the renames it now waits for them, as SIGTERM does
    original, calls = _batch_file.check_outputs, []

    def check_then_hang_up(*args, **kwargs):
        original(*args, **kwargs)
        calls.append(args)
        if len(calls) == 2:  # just before the first file's renames
            os.kill(os.getpid(), signal.SIGHUP)

    monkeypatch.setattr(_batch_file, "check_outputs", check_then_hang_up)
    # SIGHUP as a terminal session has it (under nohup it is ignored, and the command keeps it so)
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    request.addfinalizer(lambda: signal.signal(signal.SIGHUP, previous))
    before = signal.getsignal(signal.SIGHUP)
    out = tmp_path / "out"
    assert cli.main(["segment", str(images[1]), str(images[2]), "--out", str(out), "--no-crf"]) == 129
    assert "interrupted; the files finished so far are complete" in capsys.readouterr().err
    assert (out / "scene1_run.json").exists() and not (out / "scene2_run.json").exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no claim, no temporary
    assert signal.getsignal(signal.SIGHUP) is before
    # the terminal is gone: the interrupted line cannot be written, the exit code still says it
    # (it left main() as OSError, exit code 1)

    class Gone:
        def write(self, text):
            raise OSError(5, "Input/output error")

        def flush(self):
            raise OSError(5, "Input/output error")

    calls.clear()

    def hang_up_and_close(*args, **kwargs):
        check_then_hang_up(*args, **kwargs)
        if len(calls) == 2:
            monkeypatch.setattr(sys, "stderr", Gone())

    monkeypatch.setattr(_batch_file, "check_outputs", hang_up_and_close)
    assert cli.main(["segment", str(images[1]), "--out", str(tmp_path / "gone"), "--no-crf"]) == 129
    assert (tmp_path / "gone" / "scene1_run.json").exists()


def test_an_error_in_the_callers_progress_callback_leaves_the_batch_not_failing_a_photo(images, tmp_path):
    # raised during a file's stages it was recorded as that photo's failure (in failures.jsonl)
    # and the batch went on; raised between files it left segment_files: one bug, two behaviours
    def progress(fraction, message):
        if message.startswith("scene1.png:"):
            raise RuntimeError("bug in my progress bar")

    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="bug in my progress bar"):
        _batch.segment_files(images, out, crf=False, progress=progress)
    assert not (out / "failures.jsonl").exists() and not (out / "scene1_run.json").exists()
    assert (out / "scene0_run.json").exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no claim, no temporary
