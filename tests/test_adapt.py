"""adapt(): harvest of single plants, scenes of pasted plants, the self-training run, its CLI.

Small synthetic photos and the bundled model with a 256-pixel resize keep every run to seconds.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

import napari_gardenseg as gs
from napari_gardenseg._agreement import match_f1
from napari_gardenseg._files import OutputExistsError


@pytest.fixture(scope="module")
def small_base(tmp_path_factory):
    """The bundled weights with a 256-pixel resize: the network sees small photos at their own size."""
    from napari_gardenseg._models import save_checkpoint

    garden = gs.load_model("garden", device="cpu")
    path = tmp_path_factory.mktemp("base") / "small.pt"
    save_checkpoint(garden, path, arch_kwargs={**garden.arch_kwargs, "min_size": 256, "max_size": 512})
    return path


def _photo(seed):
    image, labels, classes = gs.garden_scene(seed, shape=(256, 256))
    return image, labels, classes


def test_harvest_finds_the_single_plants(small_base):
    from napari_gardenseg._harvest import harvest_photo

    model = gs.load_model(small_base, device="cpu")
    image, truth, classes = _photo(9_500_000)  # five plants, apart from each other
    mat = harvest_photo(model, image, 0, np.random.default_rng(0))
    assert mat.informative
    assert len(mat.plants) >= 3
    for plant in mat.plants:  # each harvested plant is one true plant
        y0, x0 = plant.offset
        h, w = plant.mask.shape
        under = truth[y0 : y0 + h, x0 : x0 + w][plant.mask]
        k = np.bincount(under).argmax()
        assert k > 0
        inter = np.count_nonzero(under == k)
        assert inter / (plant.mask.sum() + np.count_nonzero(truth == k) - inter) > 0.7
        assert plant.cls in model.class_names
    # pseudo-labels: harvested plants plus confident detections, each a true plant
    matched, n_pseudo, n_true = match_f1(mat.pseudo, truth)
    assert n_pseudo >= len(mat.plants) and matched >= 0.8 * n_pseudo
    # no unlabelled vegetation is left in the pseudo-labelled photo
    from napari_gardenseg._harvest import vegetation

    veg, _ = vegetation(mat.pseudo_image)
    assert np.count_nonzero(veg & (mat.pseudo == 0)) < 0.02 * veg.size


def test_soil_fill_replaces_plants_with_soil():
    from napari_gardenseg._harvest import soil_fill, vegetation

    image, truth, _ = _photo(9_500_001)
    veg, vmap = vegetation(image)
    soil = soil_fill(image, veg, np.random.default_rng(0))
    assert soil.shape == image.shape and soil.dtype == np.uint8
    from napari_gardenseg._vegetation import excess_green

    exg = excess_green(soil.astype(np.float32) / 255)
    assert np.mean(exg[truth > 0] > vmap.threshold) < 0.02  # plants gone
    ground = (truth == 0) & ~veg
    assert np.abs(soil[ground].astype(int) - image[ground]).mean() < 4  # soil kept (grain added only in holes)


def test_harvest_fills_nodata_with_soil(small_base):
    # an orthomosaic's corner of nodata (black) is soil in the scenes' backgrounds, not black
    from napari_gardenseg._harvest import harvest_photo
    from napari_gardenseg._vegetation import is_nodata

    image = _photo(9_500_001)[0].copy()
    yy, xx = np.mgrid[:256, :256]
    corner = yy + xx < 120
    image[corner] = 0
    mat = harvest_photo(gs.load_model(small_base, device="cpu"), image, 0, np.random.default_rng(0))
    assert mat.soil is not None
    # (the soil's grain may darken a pixel to black here and there)
    assert is_nodata(mat.soil.astype(np.float32) / 255)[corner].mean() < 0.01
    beside = (yy + xx >= 120) & (yy + xx < 180) & ~mat.vegetation  # the soil beside the corner
    assert np.abs(mat.soil[corner].mean(0) - image[beside].mean(0)).max() < 25  # its colour


def test_adapt_gives_the_network_the_photo_inside_a_nodata_frame(small_base, monkeypatch):
    import napari_gardenseg._harvest as harvest

    photo = _photo(9_500_000)[0]
    framed = np.zeros((256, 640, 3), np.uint8)  # black left and right: a mosaic's nodata
    framed[:, 192:448] = photo
    seen = []

    class Seen(Exception):
        pass

    def record(model, rgb, *a, **k):
        seen.append(rgb.shape[:2])
        raise Seen

    monkeypatch.setattr(harvest, "harvest_photo", record)
    with pytest.raises(Seen):
        gs.adapt([framed, framed], small_base, iterations=1)
    # the photo alone at its own size (the left three quarters: the right one is held back);
    # with the frame the resize would give it 205 x 512, and the harvest 205 x 384
    assert seen == [(256, 192)]


def _disc(colour, r):
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    mask = yy**2 + xx**2 <= r * r
    rgb = np.zeros(mask.shape + (3,), np.uint8)
    rgb[mask] = colour
    return rgb, mask


def test_scenes_hold_the_pasted_plants_with_their_labels():
    from scipy import ndimage

    from napari_gardenseg._harvest import Plant
    from napari_gardenseg._scenes import compose_scene

    colours = {"red": (220, 20, 20), "green": (20, 220, 20), "blue": (20, 20, 220)}
    plants = [Plant(*_disc(c, 14), name, 0, "shape") for name, c in colours.items()]
    soil = np.full((200, 200, 3), 128, np.uint8)
    rng = np.random.default_rng(0)
    touching = 0
    for _ in range(5):
        image, labels, classes = compose_scene(rng, soil, plants, 160, coverage=(0.3, 0.4), crowd=1.0)
        assert set(np.unique(labels)) - {0} == set(classes)
        assert len(classes) >= 5
        for k, name in classes.items():
            inner = ndimage.binary_erosion(labels == k, iterations=2)
            if inner.sum() < 5:
                continue
            channel = "rgb"[int(np.argmax(image[inner].mean(0)))]
            assert name.startswith(channel), (k, name, image[inner].mean(0))
        away = ~ndimage.binary_dilation(labels > 0, iterations=2)  # plant edges are blended into the soil
        assert np.all(image[away] == 128)  # soil is soil
        a, b = labels[:, :-1], labels[:, 1:]
        touching += int(np.any((a > 0) & (b > 0) & (a != b)))
    assert touching >= 4  # crowded: plants touch in (nearly) every scene


def test_cutouts_from_labels_round_trip():
    from napari_gardenseg._scenes import cutouts_from_labels

    image, truth, classes = _photo(9_500_002)
    cut = cutouts_from_labels(image, truth, classes)
    assert len(cut) == len(classes)
    assert sorted(p.area for p in cut) == sorted(int(np.count_nonzero(truth == k)) for k in classes)


def _agreements(monkeypatch, values):
    """measure_agreement replaced by one that reports ``values`` in turn (round 0 = the base model)."""
    import napari_gardenseg._agreement as agreement

    measured = iter(values)
    monkeypatch.setattr(
        agreement, "measure_agreement", lambda *a, **k: {"scenes": (v := next(measured)), "agreement": v}
    )


def test_adapt_writes_a_new_model_and_report_and_never_overwrites(small_base, tmp_path, monkeypatch):
    _agreements(monkeypatch, [0.3, 0.4, 0.35])  # round 1 beats the base model, round 2 does not
    photos = [_photo(9_500_000)[0], _photo(9_500_001)[0]]
    out = tmp_path / "field.pt"
    messages = []
    path = gs.adapt(
        photos, small_base, output=out, rounds=2, iterations=1, minutes=5, progress=lambda f, m: messages.append((f, m))
    )
    assert path == out and out.exists()
    report = json.loads((tmp_path / "field.json").read_text())
    assert report["plants_harvested"]["plants"] >= 3
    assert [r["round"] for r in report["rounds"]][:2] == [0, 1]
    assert [r["agreement"] for r in report["rounds"]] == [0.3, 0.4, 0.35]  # each round's check is reported
    assert report["held_back"] == "right quarter of each photo"
    assert report["kept_round"] == 1 and report["stopped"] == "round 2 did not improve agreement"
    assert report["outcome"].startswith("round 1 kept: agreement 0.400 on the held-back photos, base model 0.300")
    fractions = [f for f, _ in messages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    model = gs.load_model(out, device="cpu")
    base = gs.load_model(small_base, device="cpu")
    assert model.class_names == base.class_names and model.meta["adapt"]["iterations"] >= 1
    changed = [
        k
        for k, v in model.net.state_dict().items()
        if v.is_floating_point() and not np.allclose(v.numpy(), base.net.state_dict()[k].numpy())
    ]
    assert changed  # trained
    before = out.read_bytes()
    with pytest.raises(OutputExistsError):
        gs.adapt(photos, small_base, output=out, iterations=1)
    assert out.read_bytes() == before


def test_adapt_is_the_same_with_the_same_seed_whether_the_base_was_loaded_or_not(small_base, tmp_path, monkeypatch):
    import torch

    import napari_gardenseg._models as models

    photos = [_photo(9_500_000)[0], _photo(9_500_001)[0]]
    runs = []
    for k, cached in enumerate((False, True)):
        if not cached:  # a first load builds the network (random initial weights) before reading the file
            monkeypatch.setattr(models, "_CACHE", {})
        torch.seed()
        before = torch.get_rng_state()
        gs.adapt(photos, small_base, output=tmp_path / f"s{k}.pt", rounds=1, iterations=1, seed=3)
        assert torch.equal(torch.get_rng_state(), before)  # the caller's generator as it was
        rounds = json.loads((tmp_path / f"s{k}.json").read_text())["rounds"]
        runs.append([{key: v for key, v in r.items() if key != "seconds"} for r in rounds])
    assert runs[0] == runs[1]
    with pytest.raises(ValueError, match="must not end in .json"):  # its report would take the model's name
        gs.adapt(photos, small_base, output=tmp_path / "m.json", iterations=1)


def test_adapt_keeps_the_base_model_when_no_round_beats_it(small_base, tmp_path, monkeypatch, capsys):
    from PIL import Image

    from napari_gardenseg.cli import main

    _agreements(monkeypatch, [0.5, 0.45])
    f = tmp_path / "p.png"
    Image.fromarray(_photo(9_500_000)[0]).save(f)
    out = tmp_path / "same.pt"
    assert main(["adapt", str(f), str(f), "--out", str(out), "--base", str(small_base), "--iterations", "1"]) == 0
    report = json.loads((tmp_path / "same.json").read_text())
    assert report["kept_round"] == 0 and report["rounds"][1]["agreement"] == 0.45
    assert "no round beat the base model" in capsys.readouterr().err
    model, base = gs.load_model(out, device="cpu"), gs.load_model(small_base, device="cpu")
    for k, v in model.net.state_dict().items():
        assert np.array_equal(v.numpy(), base.net.state_dict()[k].numpy()), k


def test_agreement_is_the_scenes_f1_when_there_are_scenes(small_base):
    from napari_gardenseg._agreement import CheckSet, measure_agreement

    model = gs.load_model(small_base, device="cpu")
    image, truth, _ = _photo(9_500_001)
    veg = truth > 0
    with_scenes = measure_agreement(model, CheckSet(photos=[(image, veg, truth)], scenes=[(image, truth)]))
    assert with_scenes["agreement"] == with_scenes["scenes"] > 0.5  # the model finds these plants
    assert {"singles", "cover", "flips"} <= set(with_scenes)  # reported beside it
    alone = measure_agreement(model, CheckSet(photos=[(image, veg, truth)]))
    assert "scenes" not in alone
    assert alone["agreement"] == pytest.approx(np.mean([alone[k] for k in ("singles", "cover", "flips")]), abs=1e-3)


def test_adapt_default_name_is_new(tmp_path, monkeypatch):
    from napari_gardenseg._adapt import default_output

    monkeypatch.setenv("GARDENSEG_HOME", str(tmp_path))
    models = tmp_path / "models"
    assert default_output() == models / "adapted.pt"
    models.mkdir()
    (models / "adapted.pt").write_bytes(b"x")
    assert default_output() == models / "adapted-2.pt"
    (models / "adapted-3.json").write_text("{}")
    (models / "adapted-2.pt").write_bytes(b"x")
    assert default_output() == models / "adapted-4.pt"


def test_adapt_keeps_its_model_when_its_name_was_taken_during_the_run(small_base, tmp_path):
    # a second adapt panel with the same 'save as', or another process, wrote the report's name
    # meanwhile: the rounds were thrown away at the save; they are kept beside it, and said
    out = tmp_path / "field.pt"

    def progress(fraction, message):
        if "single plants" in message and not (tmp_path / "field.json").exists():
            (tmp_path / "field.json").write_text('{"theirs": 1}')

    with pytest.warns(UserWarning, match="the model is saved as field-2.pt"):
        path = gs.adapt([_photo(9_500_000)[0]] * 2, small_base, output=out, iterations=1, progress=progress)
    assert path == tmp_path / "field-2.pt" and (tmp_path / "field-2.json").exists() and not out.exists()
    assert (tmp_path / "field.json").read_text() == '{"theirs": 1}'


def test_adapt_cancel_saves_nothing(small_base, tmp_path):
    out = tmp_path / "never.pt"
    stop = threading.Event()

    def progress(fraction, message):
        if "single plants" in message:
            stop.set()

    with pytest.raises(gs.Cancelled):
        gs.adapt([_photo(9_500_000)[0]] * 2, small_base, output=out, iterations=1, progress=progress, cancel=stop)
    assert not out.exists() and not (tmp_path / "never.json").exists()


def test_adapt_cancel_during_round_one_saves_nothing(small_base, tmp_path):
    # round 1's weights are never checked when it is cancelled: they may be worse than the base model
    out = tmp_path / "never.pt"
    stop = threading.Event()
    seen = []

    def progress(fraction, message):
        seen.append(message)
        if message.startswith("round 1: iteration 2/"):
            stop.set()

    with pytest.raises(gs.Cancelled, match="nothing was saved"):
        gs.adapt([_photo(9_500_000)[0]] * 2, small_base, output=out, iterations=5, progress=progress, cancel=stop)
    assert any(m.startswith("round 1: iteration 2/") for m in seen)  # it was cancelled while training
    assert not out.exists() and not (tmp_path / "never.json").exists()


def test_adapt_cancelled_during_a_rounds_check_keeps_no_unchecked_weights(small_base, tmp_path, monkeypatch):
    # the cancel arrives while round 1 is being checked: the round is not kept, nothing is saved
    import napari_gardenseg._agreement as agreement

    stop, calls = threading.Event(), []

    def measure(*args, **kwargs):
        calls.append(kwargs.get("cancel"))
        if len(calls) == 2:  # round 1's check
            stop.set()
        return {"scenes": 0.3 + 0.1 * len(calls), "agreement": 0.3 + 0.1 * len(calls)}

    monkeypatch.setattr(agreement, "measure_agreement", measure)
    out = tmp_path / "never.pt"
    with pytest.raises(gs.Cancelled, match="nothing was saved"):
        gs.adapt([_photo(9_500_000)[0]], small_base, output=out, iterations=2, cancel=stop)
    assert len(calls) == 2 and calls[1] is stop  # the check itself can be cancelled
    assert not out.exists() and not (tmp_path / "never.json").exists()


def test_adapt_never_replaces_a_json_file_it_did_not_write(small_base, tmp_path, monkeypatch):
    # the report goes to MODEL.json: a user's own field.json there is kept, overwrite or not; an
    # earlier adapt report is replaced with overwrite
    from napari_gardenseg._files import ForeignFileError

    _agreements(monkeypatch, [0.3, 0.4, 0.3, 0.4])
    photos = [_photo(9_500_000)[0]]
    mine = tmp_path / "field.json"
    mine.write_text('{"annotations": ["painted by hand"]}')
    for overwrite in (False, True):
        with pytest.raises(ForeignFileError, match="not an adapt report"):
            gs.adapt(photos, small_base, output=tmp_path / "field.pt", iterations=1, overwrite=overwrite)
    assert mine.read_text() == '{"annotations": ["painted by hand"]}' and not (tmp_path / "field.pt").exists()
    first = gs.adapt(photos, small_base, output=tmp_path / "other.pt", rounds=1, iterations=1)
    again = gs.adapt(photos, small_base, output=first, rounds=1, iterations=1, overwrite=True)
    assert again == first and json.loads((tmp_path / "other.json").read_text())["kept_round"] == 1


def test_adapt_counts_a_photo_given_twice_once(small_base, tmp_path, monkeypatch):
    # a folder and a file in it: trained on and held back at once, the check would measure training data
    from PIL import Image

    _agreements(monkeypatch, [0.3, 0.4])
    (tmp_path / "day1").mkdir()
    (tmp_path / "day2").mkdir()
    for k, day in enumerate(("day1", "day2")):
        Image.fromarray(_photo(9_500_000 + k)[0]).save(tmp_path / day / "IMG_1.png")
    with pytest.warns(UserWarning, match=r"1 photo\(s\) given more than once.*day1/IMG_1.png"):
        path = gs.adapt(
            [tmp_path / "day1", tmp_path / "day2", tmp_path / "day1" / "IMG_1.png"],
            small_base,
            output=tmp_path / "m.pt",
            rounds=1,
            iterations=1,
        )
    report = json.loads(path.with_suffix(".json").read_text())
    assert report["photos"] == 2 and report["photo_names"] == ["day1/IMG_1.png", "day2/IMG_1.png"]
    # what the base model said of its own making is kept as the base's, not as the adapted model's
    meta = gs.load_model(path, device="cpu").meta
    assert "training" not in meta and meta["base_provenance"]["training"]["iterations"] >= 1


def _clocked_fit(monkeypatch, clock, spans):
    """training.fit whose iterations take five seconds each of the fake ``clock`` (few real iterations
    fill a budget); each call's seconds in ``spans``."""
    import napari_gardenseg._training as training

    real_fit = training.fit

    def timed_fit(*args, cancel=None, **kwargs):
        start = clock[0]

        def stop():
            clock[0] += 5.0
            return cancel()

        out = real_fit(*args, cancel=stop, **kwargs)
        spans.append(clock[0] - start)
        return out

    monkeypatch.setattr(training, "fit", timed_fit)


def test_a_budget_spent_before_any_training_is_refused_without_saving_a_copy_of_the_base(
    small_base, tmp_path, monkeypatch
):
    # finding the plants and checking took 50 s of a 1-minute budget: an error naming the minutes needed, not
    # a "no round beat the base model" over a round of one iteration
    import napari_gardenseg._adapt as adapt_module
    import napari_gardenseg._harvest as harvest

    clock = [0.0]
    monkeypatch.setattr(adapt_module.time, "perf_counter", lambda: clock[0])
    real = harvest.harvest_photo

    def slow_harvest(*args, **kwargs):  # a photo's harvest and its check set's take 25 s each
        clock[0] += 25.0
        return real(*args, **kwargs)

    monkeypatch.setattr(harvest, "harvest_photo", slow_harvest)
    _clocked_fit(monkeypatch, clock, [])
    _agreements(monkeypatch, [0.3, 0.3, 0.3, 0.3])
    with pytest.raises(
        ValueError, match=r"1-minute budget .* give at least minutes=2 \(--minutes 2 on the command line\)"
    ):
        gs.adapt([_photo(9_500_000)[0]], small_base, output=tmp_path / "m.pt", minutes=1)
    assert not list(tmp_path.iterdir())


def test_a_short_budget_is_spent_training_not_left_to_rounds_too_short_to_run(small_base, tmp_path, monkeypatch):
    # 3 rounds asked for in 1.5 minutes, each harvest 10 s: three rounds could not train
    # MIN_ROUND_SECONDS each, so the time goes to fewer, longer rounds (a third of it was trained
    # and the rest left unused, "time budget spent")
    import napari_gardenseg._adapt as adapt_module
    import napari_gardenseg._harvest as harvest

    clock, spans = [0.0], []
    monkeypatch.setattr(adapt_module.time, "perf_counter", lambda: clock[0])
    real_harvest = harvest.harvest_photo

    def slow_harvest(*args, **kwargs):
        clock[0] += 10.0
        return real_harvest(*args, **kwargs)

    monkeypatch.setattr(harvest, "harvest_photo", slow_harvest)
    _clocked_fit(monkeypatch, clock, spans)
    _agreements(monkeypatch, [0.3, 0.4, 0.5, 0.6])
    messages = []
    path = gs.adapt(
        [_photo(9_500_000)[0]],
        small_base,
        output=tmp_path / "m.pt",
        minutes=1.5,
        progress=lambda f, m: messages.append(m),
    )
    report = json.loads(path.with_suffix(".json").read_text())
    assert sum(spans) > 55 and all(s >= adapt_module.MIN_ROUND_SECONDS for s in spans), spans
    assert report["kept_round"] == len(spans)
    assert any(m.startswith("round 1: iteration") and m.endswith("(time-limited)") and "/" not in m for m in messages)
    assert "check after round 1: agreement 0.400" in messages


def test_photo_names_are_the_paths_as_given_below_their_common_folder(tmp_path, monkeypatch):
    # a link keeps its own name (not its target's), ~ is the home folder
    from napari_gardenseg._adapt import _photo_names
    from napari_gardenseg._models import derived_meta

    (tmp_path / "other").mkdir()
    (tmp_path / "day1").mkdir()
    (tmp_path / "other" / "real.jpg").write_bytes(b"")
    (tmp_path / "day1" / "link.jpg").symlink_to(tmp_path / "other" / "real.jpg")
    monkeypatch.setenv("HOME", str(tmp_path))
    names = _photo_names(["~/day1/IMG_1.jpg", tmp_path / "day1" / "link.jpg", np.zeros((4, 4, 3))])
    assert names == ["IMG_1.jpg", "link.jpg", "image 3"]
    base = {"crf": {"iterations": 5}, "training": {"iterations": 3000}, "hardware": "x86_64", "command": "train"}
    assert derived_meta(base) == {
        "crf": {"iterations": 5},
        "base_provenance": {"training": {"iterations": 3000}, "hardware": "x86_64", "command": "train"},
    }


def test_adapt_refuses_photos_without_plants(small_base, tmp_path):
    rng = np.random.default_rng(0)
    soil = [np.clip(rng.normal((120, 90, 60), 8, (128, 128, 3)), 0, 255).astype(np.uint8) for _ in range(2)]
    with pytest.raises(ValueError, match="nothing to learn"):
        gs.adapt(soil, small_base, output=tmp_path / "x.pt", iterations=1)
    assert not list(tmp_path.iterdir())


def test_adapt_says_a_black_and_white_photo_has_no_colour_to_find_plants_by(small_base, tmp_path):
    # plants on soil, but saved without colour: the photo is named and the reason is the colour,
    # not the scene
    from PIL import Image

    photo = _photo(9_500_000)[0]
    Image.fromarray(photo).convert("L").convert("RGB").save(tmp_path / "mono.png")
    with pytest.raises(ValueError, match=r"needs colour photos: mono.png: no colour in this photo"):
        gs.adapt([tmp_path / "mono.png"], small_base, output=tmp_path / "x.pt", iterations=1)
    with pytest.raises(ValueError, match=r"needs colour photos: image 1: a grey image"):
        gs.adapt([photo[..., 0]], small_base, output=tmp_path / "x.pt", iterations=1)
    assert not (tmp_path / "x.pt").exists()
    # one among colour photos (a mask lying in the folder): left out by name, the run goes on
    seen = []
    cancel = threading.Event()
    with pytest.warns(UserWarning, match=r"left out 1 photo.s. without colour; .*mono.png: no colour"):
        with pytest.raises(gs.Cancelled):
            gs.adapt(
                [photo, tmp_path / "mono.png"],
                small_base,
                output=tmp_path / "x.pt",
                iterations=1,
                progress=lambda f, m: seen.append(m) or (cancel.set() if m.startswith("finding") else None),
                cancel=cancel,
            )
    assert any(m.startswith("finding single plants") for m in seen)  # past reading: the run went on


def test_cli_adapt(small_base, tmp_path, capsys):
    from PIL import Image

    from napari_gardenseg.cli import main

    files = []
    (tmp_path / "field" / "flight2").mkdir(parents=True)
    for seed, sub in ((9_500_000, ""), (9_500_001, "flight2")):
        f = tmp_path / "field" / sub / f"p{seed}.png"
        Image.fromarray(_photo(seed)[0]).save(f)
        files.append(str(f))
    (tmp_path / "field" / "notes.txt").write_text("not a photo")
    out = tmp_path / "cli.pt"
    folder = str(tmp_path / "field")  # a folder stands for the photos in it; -r: its subfolders' too
    args = ["--out", str(out), "--base", str(small_base), "--rounds", "1", "--iterations", "1"]
    assert main(["adapt", folder, "-r", *args]) == 0
    assert out.exists() and (tmp_path / "cli.json").exists()
    assert json.loads((tmp_path / "cli.json").read_text())["photo_names"] == ["p9500000.png", "flight2/p9500001.png"]
    assert str(out) in capsys.readouterr().out
    assert main(["adapt", *files, "--out", str(out), "--base", str(small_base), "--iterations", "1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["adapt", str(tmp_path / "missing.png"), "--out", str(tmp_path / "m.pt")]) == 2


def test_cli_adapt_first_ctrl_c_saves_the_best_checked_round_and_a_second_saves_nothing(
    small_base, tmp_path, monkeypatch, capsys, request
):
    import signal

    from PIL import Image

    import napari_gardenseg._training as training
    from napari_gardenseg.cli import main

    f = tmp_path / "p.png"
    Image.fromarray(_photo(9_500_000)[0]).save(f)
    real_fit = training.fit

    def fit_interrupted_in(round_no, times):
        calls = [0]

        def fit(*args, **kwargs):
            calls[0] += 1
            if calls[0] == round_no:  # Ctrl-C pressed while this round trains
                for _ in range(times):
                    signal.raise_signal(signal.SIGINT)
            return real_fit(*args, **kwargs)

        monkeypatch.setattr(training, "fit", fit)

    # Python's own Ctrl-C handler, as in a terminal (a shell's background job starts with SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    args = ["--base", str(small_base), "--rounds", "3", "--iterations", "1"]
    _agreements(monkeypatch, [0.3, 0.4, 0.5])
    fit_interrupted_in(2, times=1)
    assert main(["adapt", str(f), "--out", str(tmp_path / "kept.pt"), *args]) == 130
    report = json.loads((tmp_path / "kept.json").read_text())
    assert report["kept_round"] == 1 and report["stopped"] == "cancelled"
    captured = capsys.readouterr()
    assert "best round checked so far will be saved" in captured.err and "round 1 kept" in captured.err
    assert str(tmp_path / "kept.pt") in captured.out
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C is Python's again

    _agreements(monkeypatch, [0.3, 0.4])
    fit_interrupted_in(1, times=1)  # before round 1's check: nothing to keep
    assert main(["adapt", str(f), "--out", str(tmp_path / "none.pt"), *args]) == 130
    assert not (tmp_path / "none.pt").exists() and "nothing was saved" in capsys.readouterr().err

    _agreements(monkeypatch, [0.3, 0.4, 0.5])
    fit_interrupted_in(2, times=2)  # a second Ctrl-C stops at once
    assert main(["adapt", str(f), "--out", str(tmp_path / "now.pt"), *args]) == 130
    assert not (tmp_path / "now.pt").exists() and "no model was saved" in capsys.readouterr().err

    # the second Ctrl-C while the model is written, before its report: "save nothing" still holds
    import napari_gardenseg._files as files

    real_write = files.atomic_write

    def interrupted_write(path, *a, **k):
        if str(path).endswith(".json"):
            raise KeyboardInterrupt
        return real_write(path, *a, **k)

    monkeypatch.setattr(files, "atomic_write", interrupted_write)
    _agreements(monkeypatch, [0.3, 0.4, 0.5, 0.6])
    monkeypatch.setattr(training, "fit", real_fit)
    assert main(["adapt", str(f), "--out", str(tmp_path / "late.pt"), *args]) == 130
    assert not (tmp_path / "late.pt").exists() and "no model was saved" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(("late", ".late"))] == []
    # with --overwrite the earlier model is replaced by then: it said "no model was saved", and the
    # earlier model's report stayed beside the new weights
    import shutil

    shutil.copy(small_base, tmp_path / "over.pt")
    interrupts = [1]

    def interrupted_once(path, *a, **k):
        if str(path).endswith(".json") and interrupts:
            interrupts.pop()
            raise KeyboardInterrupt
        return real_write(path, *a, **k)

    monkeypatch.setattr(files, "atomic_write", interrupted_once)
    _agreements(monkeypatch, [0.3, 0.4, 0.5, 0.6])
    assert main(["adapt", str(f), "--out", str(tmp_path / "over.pt"), "--overwrite", *args]) == 130
    assert "over.pt was saved (it replaced the earlier model), with its report" in capsys.readouterr().err
    # the second Ctrl-C just after the model's rename, before its report was begun: the same
    import napari_gardenseg._models as models

    monkeypatch.setattr(files, "atomic_write", real_write)
    real_model_write = models._write

    def written_then_pressed(*a, **k):
        real_model_write(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "_write", written_then_pressed)
    _agreements(monkeypatch, [0.3, 0.4, 0.5, 0.6])
    assert main(["adapt", str(f), "--out", str(tmp_path / "just.pt"), *args]) == 130
    assert not (tmp_path / "just.pt").exists() and "no model was saved" in capsys.readouterr().err
    _agreements(monkeypatch, [0.3, 0.4, 0.5, 0.6])
    assert main(["adapt", str(f), "--out", str(tmp_path / "over.pt"), "--overwrite", *args]) == 130
    assert "over.pt was saved (it replaced the earlier model), with its report" in capsys.readouterr().err
    assert json.loads((tmp_path / "over.json").read_text())["model"] == str(tmp_path / "over.pt")
    assert json.loads((tmp_path / "over.json").read_text())["model"] == str(tmp_path / "over.pt")
    assert (tmp_path / "over.pt").read_bytes() != open(small_base, "rb").read()


@pytest.mark.gui
def test_widget_adapts_the_open_photos(make_napari_viewer, qtbot, small_base, tmp_path, monkeypatch):
    import functools
    import sys
    import types

    import napari_gardenseg._adapt as engine
    from napari_gardenseg._train_widget import TrainWidget

    registered = []
    fake = types.ModuleType("napari_gardenseg._widget")
    fake.register_model = lambda path, title, select=False: registered.append((path, title, select))
    monkeypatch.setitem(sys.modules, "napari_gardenseg._widget", fake)
    monkeypatch.setattr(engine, "adapt", functools.partial(engine.adapt, rounds=1, iterations=1))
    viewer = make_napari_viewer()
    for seed in (9_500_000, 9_500_001):
        viewer.add_image(_photo(seed)[0], name=f"p{seed}")
    viewer.add_image(np.zeros((3, 32, 32), np.uint8), name="z stack")  # not a photo to learn from: not offered
    trainer = TrainWidget(viewer)
    panel = trainer.open_adapt()  # the training widget's "Adapt to these photos" button
    assert [layer.name for layer in panel.photos.value] == ["p9500000", "p9500001"]
    assert [layer.name for layer in panel.photos.choices] == ["p9500000", "p9500001"]
    assert panel.status.native.wordWrap() and trainer.status.native.wordWrap()  # messages are sentences
    assert panel.base.value == "garden" and not panel.checkpoint.visible  # the training widget's "start from"
    panel.base.value = "checkpoint"
    panel.checkpoint.value = small_base
    panel.output.value = tmp_path / "w.pt"
    panel.run.clicked.emit()
    assert panel.running and panel.cancel.enabled and not panel.run.enabled
    qtbot.waitUntil(lambda: not panel.running, timeout=120_000)
    assert (tmp_path / "w.pt").exists() and (tmp_path / "w.json").exists(), panel.status.value
    assert registered == [(tmp_path / "w.pt", "w", True)]
    assert panel.status.value.startswith("saved w.pt")
    assert panel.output.value == tmp_path / "w-2.pt"
    # 'save as' an earlier run's name: the question names the model and its report; No starts nothing
    import napari_gardenseg._adapt_widget as adapt_widget

    asked = []
    monkeypatch.setattr(adapt_widget, "ask_replace", lambda parent, *files, made: asked.append((files, made)))
    panel.output.value = tmp_path / "w.pt"
    panel.run.clicked.emit()
    assert asked == [((tmp_path / "w.pt", tmp_path / "w.json"), "adapted")] and not panel.running
    # a file of the report's name that adapt did not write: refused before any question
    (tmp_path / "mine.json").write_text('{"painted": "by hand"}')
    panel.output.value = tmp_path / "mine.pt"
    panel.run.clicked.emit()
    assert "not an adapt report" in panel.status.value and len(asked) == 1 and not panel.running
    assert (tmp_path / "mine.json").read_text() == '{"painted": "by hand"}'


@pytest.mark.gui
def test_closing_the_adapt_panel_stops_the_run(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    # napari's close button deletes the dock, not the widget: the run went on unseen for its minutes
    import time

    import napari_gardenseg._adapt as engine
    import napari_gardenseg._fit_panel as panel_module
    from napari_gardenseg._adapt_widget import AdaptWidget
    from napari_gardenseg._cancel import Cancelled

    def adapt_until_cancelled(photos, base, *, cancel=None, progress=None, **kw):
        while not cancel.is_set():
            time.sleep(0.01)
        raise Cancelled("adapting cancelled")

    infos = []
    monkeypatch.setattr(engine, "adapt", adapt_until_cancelled)
    monkeypatch.setattr(panel_module, "show_info", lambda m: infos.append(str(m)))
    viewer = make_napari_viewer()
    viewer.add_image(_photo(9_500_000)[0], name="p")
    panel = AdaptWidget(viewer)
    panel.output.value = tmp_path / "w.pt"
    dock = viewer.window.add_dock_widget(panel, name="adapt")
    panel.run.clicked.emit()
    assert panel.running
    viewer.window.remove_dock_widget(dock)
    qtbot.waitUntil(lambda: not panel.running, timeout=10_000)
    assert panel.status.value == "cancelled; nothing saved" and any("panel was closed" in m for m in infos)


def test_train_pastes_painted_plants_across_photos(small_base, tmp_path):
    from napari_gardenseg._scenes import PaintedScenes
    from napari_gardenseg._train_samples import prepare_samples

    image, labels, classes = _photo(9_500_001)
    prepared = prepare_samples([(image, labels, classes)])
    rng = np.random.default_rng(0)
    draw = PaintedScenes(prepared, lambda r: "fallback", 1.0, rng, size=192)
    s = draw(rng)
    assert s.labels.shape == (192, 192) and s.image.shape == (192, 192, 3)
    assert len(s.class_of) >= 2 and set(s.class_of.values()) <= set(classes.values())
    assert set(np.unique(s.labels)) - {0} == set(s.class_of)
    assert PaintedScenes(prepared, lambda r: "fallback", 0.0, rng)(rng) == "fallback"
    path = gs.train(
        [(image, labels, classes)], base=small_base, iterations=1, output=tmp_path / "t.pt", crop=128, paste=0.5
    )
    assert gs.load_model(path, device="cpu").meta["training"]["paste"] == 0.5
    with pytest.raises(ValueError, match="paste"):
        gs.train([(image, labels, classes)], base=small_base, iterations=1, output=tmp_path / "u.pt", paste=2)


@pytest.mark.gui
def test_the_adapt_panels_error_goes_when_the_layers_change(make_napari_viewer):
    # "select at least one photo" stayed after a photo was opened and selected
    from napari_gardenseg._adapt_widget import AdaptWidget

    viewer = make_napari_viewer()
    panel = AdaptWidget(viewer)
    panel.run.clicked.emit()
    assert panel.status.value.startswith("error") and "select at least one photo" in panel.status.value
    viewer.add_image(_photo(9_500_000)[0], name="p")
    assert [layer.name for layer in panel.photos.value] == ["p"]
    assert panel.status.value == "ready: the selected photos need no labels"


@pytest.mark.gui
def test_the_adapt_panel_offers_one_photo_with_extra_axes_and_names_the_stacks_it_leaves_out(make_napari_viewer):
    # a one-photo (1, 1, H, W, 3) layer (a T/Z reader's) was not offered, nor a stack, and pressing
    # the button said "select at least one photo" with two Image layers open
    from napari_gardenseg._adapt_widget import AdaptWidget, photo_of_layer

    viewer = make_napari_viewer()
    photo = _photo(9_500_000)[0]
    viewer.add_image(np.stack([photo, photo]), rgb=True, name="two days")
    panel = AdaptWidget(viewer)
    assert not panel.photos.choices
    assert panel.status.value.startswith("not offered: 'two days' (2 planes)")
    assert "viewer.add_image(viewer.layers['two days'].data[0], rgb=True)" in panel.status.value
    panel.run.clicked.emit()
    assert panel.status.value.startswith("error") and "'two days' (2 planes)" in panel.status.value
    single = viewer.add_image(photo[None, None], rgb=True, name="one")
    assert [layer.name for layer in panel.photos.value] == ["one"]
    assert panel.status.value == "ready: the selected photos need no labels"
    np.testing.assert_array_equal(photo_of_layer(single), photo)


def test_the_adapt_panels_note_gives_code_that_adds_a_photo():
    # a multiscale stack's code re-added the whole stack (.data[0] is its level 0); a colour photo
    # shown with rgb=False was called a stack of 64 planes
    from napari.layers import Image

    from napari_gardenseg._adapt_widget import left_out_note

    photo = _photo(9_500_000)[0]
    pyramid = Image([np.stack([photo, photo]), np.stack([photo[::2, ::2]] * 2)], rgb=True, multiscale=True, name="pyr")
    note = left_out_note([pyramid])
    assert "viewer.add_image(viewer.layers['pyr'].data[0][0], rgb=True)" in note
    assert (
        eval(note.split("e.g. viewer.add_image(")[1].split(", rgb")[0], {"viewer": _Viewer(pyramid)}).shape
        == photo.shape
    )
    grey = Image(photo, rgb=False, name="notrgb")
    assert "'notrgb' (shape (256, 256, 3)) is not shown as a colour image" in left_out_note([grey])
    greys = Image(np.stack([photo, photo]), rgb=False, name="zgrey")
    assert "'zgrey' (shape (2, 256, 256, 3)) is not shown as a colour image" in left_out_note([pyramid, greys])


class _Viewer:
    def __init__(self, layer):
        self.layers = {layer.name: layer}
