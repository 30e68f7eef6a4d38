"""SegmentOptions: one value for a run's options, validated once; one device message on every path."""

import dataclasses

import numpy as np
import pytest

from napari_gardenseg import CRFParams, cli
from napari_gardenseg._options import DEFAULT_MODEL, DEFAULTS, SegmentOptions


def test_defaults_and_repr():
    assert DEFAULT_MODEL == "garden"
    o = SegmentOptions()
    assert (o.score_threshold, o.mask_threshold, o.classes, o.scale, o.tile_size, o.tile_overlap) == (
        None,  # the model's own
        None,  # the model's own
        None,
        None,
        None,
        None,
    )
    assert (o.merge_classes, o.crf, o.crf_params, o.device, o.vegetation) == (False, True, None, "auto", "auto")
    assert repr(o) == "SegmentOptions()" and o.changed() == {}
    changed = SegmentOptions(score_threshold=0.3, crf=False)
    assert repr(changed) == "SegmentOptions(score_threshold=0.3, crf=False)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.crf = True
    assert changed.replace(crf=True) == SegmentOptions(score_threshold=0.3)


def test_values_are_normalised():
    o = SegmentOptions(classes="weed", tile_size=np.int64(256), tile_overlap=32, scale=1, merge_classes=np.bool_(True))
    assert o.classes == ("weed",) and type(o.tile_size) is int and o.scale == 1.0 and o.merge_classes is True
    assert SegmentOptions(classes={"weed", "rosette"}).classes == ("rosette", "weed")
    assert SegmentOptions(classes=np.array([3, 1])).classes == (3, 1)
    assert SegmentOptions(crf_params={"iterations": 2}).crf_params == {"iterations": 2}  # over the model's, later
    with pytest.raises(ValueError, match="unknown field 'iteration'"):
        SegmentOptions(crf_params={"iteration": 2})  # checked at once all the same
    assert SegmentOptions(device=None).device == "auto"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"score_threshold": 1.5}, ValueError, "score_threshold must be between 0 and 1"),
        ({"mask_threshold": 1.0}, ValueError, "mask_threshold must be above 0 and below 1"),
        ({"mask_threshold": "high"}, ValueError, "mask_threshold must be a number"),
        ({"score_threshold": True}, ValueError, "score_threshold must be a number"),  # float(True) is 1.0
        ({"classes": 2.5}, TypeError, "classes must be None"),
        ({"classes": ["weed", None]}, TypeError, "classes must hold class names"),
        ({"classes": []}, ValueError, "classes is empty"),
        ({"scale": 0}, ValueError, "scale must be between"),
        ({"tile_size": 32}, ValueError, "at least 64"),
        ({"tile_size": 256, "tile_overlap": 200}, ValueError, "less than half"),
        ({"merge_classes": "yes"}, TypeError, "merge_classes must be True or False"),
        ({"crf": 1}, TypeError, "crf must be True or False"),
        ({"crf_params": {"sigma": 2}}, ValueError, "unknown field 'sigma'"),
        ({"vegetation": "maybe"}, ValueError, "vegetation must be one of 'auto', 'on', 'off'"),
        ({"device": 3}, TypeError, "device must be a string"),
    ],
)
def test_each_bad_value_is_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        SegmentOptions(**kwargs)


def test_unknown_option_names_list_the_options():
    with pytest.raises(
        TypeError, match="unknown segmentation option 'score_treshold'; the options are score_threshold"
    ):
        SegmentOptions.from_kwargs(score_treshold=0.5)


def test_the_cli_help_shows_the_declared_defaults():
    segment = next(a for a in cli.build_parser()._actions if a.dest == "command").choices["segment"]
    defaults = {a.dest: a.default for a in segment._actions}
    assert defaults["model"] == DEFAULT_MODEL
    assert (defaults["score_threshold"], defaults["mask_threshold"], defaults["device"]) == (
        DEFAULTS.score_threshold,
        DEFAULTS.mask_threshold,
        DEFAULTS.device,
    )


def test_a_missing_cuda_device_gets_one_message_on_every_path(monkeypatch):
    import torch

    from napari_gardenseg._device import DeviceError
    from napari_gardenseg._models import load_model
    from napari_gardenseg.crf import refine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    messages = []
    for call in (
        lambda: load_model("garden", device="cuda"),
        lambda: refine(np.zeros((8, 8, 3), np.uint8), np.full((2, 8, 8), 0.5, np.float32), device="cuda"),
    ):
        with pytest.raises(DeviceError) as info:
            call()
        messages.append(str(info.value))
    assert (
        messages[0] == messages[1] == "device 'cuda' was asked for but CUDA is not available here; use 'cpu' or 'auto'"
    )


def test_the_cli_says_its_version(capsys):
    import napari_gardenseg

    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"gardenseg {napari_gardenseg.__version__}"


def test_a_dict_of_crf_settings_is_read_over_the_models_stored_ones():
    # as the command line's --crf-* options are: naming one field keeps the model's others
    import napari_gardenseg as gs

    image = gs.garden_scene(8_000_002, shape=(96, 96))[0]
    model = gs.load_model("garden", device="cpu")
    result = gs.segment(image, model, crf_params={"iterations": 2}, vegetation="off")
    stored = CRFParams.from_any(model.meta["crf"])
    assert result.meta["crf_params"] == CRFParams.from_any({**model.meta["crf"], "iterations": 2})
    assert result.meta["crf_params"].bilateral_srgb == stored.bilateral_srgb != CRFParams().bilateral_srgb


def test_options_holding_some_crf_fields_hash_and_are_recorded_as_the_clis_crf_options():
    # a dict names fields over the model's settings, as the CLI's --crf-* do: a run record holds
    # both alike, so --resume takes one for the other, and not a record of when a dict meant
    # fields over the package defaults
    from napari_gardenseg._run_record import _compared_options

    options = SegmentOptions(crf_params={"iterations": 2})
    assert hash(options) == hash(SegmentOptions(crf_params={"iterations": 3}))  # left out of the hash
    api = _compared_options({"crf_params": {"iterations": 2}}, None)
    cli = _compared_options({}, {"iterations": 2})
    assert api == cli == {"crf_overrides": {"iterations": 2}}
    assert _compared_options({"crf_params": CRFParams(iterations=2)}, None)["crf_params"]["iterations"] == 2


def test_a_models_crf_settings_set_in_memory_as_crfparams_are_read_as_its_stored_ones():
    tuned = CRFParams(iterations=3, bilateral_srgb=9.0)
    assert CRFParams.from_any(None, defaults=tuned) == tuned
    assert CRFParams.from_any({"iterations": 1}, defaults=tuned) == CRFParams(iterations=1, bilateral_srgb=9.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"iterations": 0}, "iterations must be a whole number, at least 1, got 0"),
        ({"iterations": 2.5}, "iterations must be a whole number, at least 1, got 2.5"),
        ({"batch_size": True}, "batch_size must be a whole number, at least 1, got True"),
        ({"lr": float("nan")}, "lr must be a positive, finite number, got nan"),
        ({"lr": "0.1"}, "lr must be a positive, finite number, got '0.1'"),
        ({"crop": 8}, "crop must be a whole number of pixels, at least 16, got 8"),
        ({"seed": -1}, "seed must be a whole number, at least 0, got -1"),
        ({"warmup": -5}, "warmup must be a whole number, at least 0, got -5"),
        ({"scale_range": (1.5, 0.5)}, r"scale_range must be two positive numbers \(low, high\), low <= high"),
        ({"scale_range": "wide"}, "scale_range must be two positive numbers"),
        ({"roi_batch": 0}, "roi_batch must be a whole number, at least 1, got 0"),
        ({"positive_fraction": 0}, "positive_fraction must be above 0 and at most 1, got 0"),
        ({"positive_fraction": np.True_}, "positive_fraction must be a number between 0 and 1"),
        ({"scale_range": b"12"}, "scale_range must be two positive numbers"),
    ],
)
def test_each_bad_training_setting_is_named(kwargs, match):
    from napari_gardenseg import FitOptions

    with pytest.raises(ValueError, match=match):
        FitOptions(**kwargs)


def test_training_settings_are_normalised_and_their_defaults_are_train_s():
    import inspect

    from napari_gardenseg import FitOptions
    from napari_gardenseg._options import FIT_DEFAULTS, TRAIN_DEFAULTS
    from napari_gardenseg._training import train

    options = FitOptions(iterations=np.int64(5), lr=np.float32(0.5), scale_range=[1, 2], positive_fraction=None)
    assert options.iterations == 5 and type(options.iterations) is int
    assert options.lr == 0.5 and type(options.lr) is float
    assert options.scale_range == (1.0, 2.0) and options.positive_fraction is None
    assert FitOptions(iterations=None).iterations is None  # adapt: as many as its time budget allows
    engine = {n: p.default for n, p in inspect.signature(train).parameters.items()}
    for name in ("iterations", "batch_size", "lr", "crop", "seed", "scale_range", "positive_fraction", "warmup"):
        assert engine[name] == getattr(FIT_DEFAULTS, name), name
    assert TRAIN_DEFAULTS == {k: engine[k] for k in TRAIN_DEFAULTS}


def test_a_score_threshold_stored_with_a_model_is_used_by_every_way_in(tmp_path):
    # the widget showed and used it while segment(), the batch and the CLI ran at 0.5
    import torch

    from napari_gardenseg import segment
    from napari_gardenseg._models import bundled_checkpoint
    from napari_gardenseg._options import model_score_threshold
    from napari_gardenseg.synthetic import garden_scene

    assert model_score_threshold({}) == 0.5 and model_score_threshold({"score_threshold": 0.8}) == 0.8
    with pytest.raises(ValueError, match="stored score_threshold"):
        model_score_threshold({"score_threshold": 2})
    ck = torch.load(bundled_checkpoint(), weights_only=True)
    ck["meta"] = {**ck["meta"], "score_threshold": 0.97}
    torch.save(ck, tmp_path / "strict.pt")
    image = garden_scene(8_000_321, (128, 160))[0]
    strict = segment(image, tmp_path / "strict.pt", crf=False, vegetation="off")
    assert strict.meta["score_threshold"] == 0.97 and (strict.scores >= 0.97).all()
    given = segment(image, tmp_path / "strict.pt", crf=False, vegetation="off", score_threshold=0.5)
    assert given.meta["score_threshold"] == 0.5 and len(given) > len(strict)
    assert segment(image, "garden", crf=False, vegetation="off").meta["score_threshold"] == 0.5


def test_a_threshold_a_model_stores_out_of_range_fails_a_batch_before_any_file(tmp_path):
    # it failed each file on its own; the message says how to run the model all the same
    import torch
    from PIL import Image

    from napari_gardenseg import segment_files
    from napari_gardenseg._models import bundled_checkpoint
    from napari_gardenseg.synthetic import garden_scene

    ck = torch.load(bundled_checkpoint(), weights_only=True)
    ck["meta"] = {**ck["meta"], "score_threshold": 50}  # a percentage
    torch.save(ck, tmp_path / "percent.pt")
    Image.fromarray(garden_scene(8_000_321, (128, 160))[0]).save(tmp_path / "bed.png")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"stored score_threshold .* got 50; give score_threshold="):
        segment_files([tmp_path / "bed.png"], out, tmp_path / "percent.pt", crf=False)
    assert not out.exists()
    given = segment_files([tmp_path / "bed.png"], out, tmp_path / "percent.pt", crf=False, score_threshold=0.5)
    assert given.ok and given.table["instances"].iloc[0] > 0, given.table
