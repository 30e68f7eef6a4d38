"""Property-based tests (Hypothesis) of the input boundary.

Random shapes, dtypes, NaN/inf, channel layouts and parameter values go into
``segment``, ``refine_instances``, ``to_coco`` and the command line. Every call
must end in a result or in a ValueError/TypeError (the package's own error
types subclass them) whose message names the problem: never another exception.

Each parameter value is drawn with what the documentation says of it: "ok"
(must work), "bad" (must be refused, naming it) or "either" (not specified:
either outcome, but only those two error types). Most examples use a small
random network (garden_small at 64-96 px, no weights) so that a run takes a
fraction of a second; a few use the bundled "garden" model. Examples are
derandomized (the same cases on every run) and capped so the file runs in
about a minute; ``pytest --hypothesis-show-statistics`` prints the counts.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import napari_gardenseg as gs  # noqa: E402

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

DTYPES = ["uint8", "uint16", "int8", "int32", "int64", "float16", "float32", "float64", "bool"]
ALLOWED = (ValueError, TypeError)


# -- images ------------------------------------------------------------------------------


def expected_hw(shape) -> tuple[int, int] | None:
    """(H, W) that the documented layout rule gives for ``shape``; None when it is not an image.

    (H, W); (H, W, C) or (C, H, W) with C in 1..4, a last axis of 1-4 winning; leading axes of
    length 1 in front of more than three are dropped.
    """
    if 0 in shape:
        return None
    while len(shape) > 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) == 2:
        return tuple(shape)
    if len(shape) != 3:
        return None
    if shape[-1] in (1, 2, 3, 4):
        return tuple(shape[:2])
    if shape[0] in (1, 2, 3, 4):
        return tuple(shape[1:])
    return None


@st.composite
def images(draw, max_side: int = 40):
    """(array, (H, W) or None). Any dtype, NaN/inf in floats, every layout and some non-images."""
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    layout = draw(
        st.sampled_from(
            ["hw", "hw1", "hw2", "hw3", "hw4", "1hw", "3hw", "4hw", "hw5", "6hw", "h", "thw3", "11hw3", "0w3"]
        )
    )
    shape = {
        "hw": (h, w),
        "hw1": (h, w, 1),
        "hw2": (h, w, 2),
        "hw3": (h, w, 3),
        "hw4": (h, w, 4),
        "1hw": (1, h, w),
        "3hw": (3, h, w),
        "4hw": (4, h, w),
        "hw5": (h, w, 5),
        "6hw": (6, h, w),
        "h": (h,),
        "thw3": (2, h, w, 3),
        "11hw3": (1, 1, h, w, 3),
        "0w3": (0, w, 3),
    }[layout]
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    elements = hnp.from_dtype(dtype, allow_nan=True, allow_infinity=True) if dtype.kind == "f" else None
    arr = draw(hnp.arrays(dtype, shape, elements=elements))
    return arr, expected_hw(shape)


def check_message(exc: BaseException, names) -> None:
    """The error is one of the allowed types and its message names one of ``names``."""
    assert isinstance(exc, ALLOWED), f"{type(exc).__name__}: {exc}"
    message = str(exc)
    assert message, f"{type(exc).__name__} without a message"
    assert any(n in message for n in names), f"{type(exc).__name__}: {message!r} names none of {names}"


IMAGE_WORDS = ("image", "shape", "dtype", "array")


# -- parameters: (value, status, names its error may use) -----------------------------------


def tagged(status, names, *values):
    return st.sampled_from(values).map(lambda v: (v, status, names))


def fraction(name, low_open=False):
    ok = st.floats(0.0001 if low_open else 0.0, 0.9999).map(lambda v: (v, "ok", (name,)))
    bad = tagged("bad", (name,), -0.1, 1.5, math.nan, math.inf, -math.inf, "half", None, [0.5])
    edge = tagged("bad" if low_open else "ok", (name,), 0.0)
    lenient = tagged("either", (name,), "0.5")  # a numeric string: not specified
    return st.one_of(ok, bad, edge, lenient)


CRF_FIELDS = ("iterations", "gaussian_sxy", "band", "backend", "crf_params", "unary_weight", "padding")
PARAMS = {
    "score_threshold": fraction("score_threshold"),
    "mask_threshold": fraction("mask_threshold", low_open=True),
    "classes": st.one_of(
        tagged("ok", ("classes",), None, ["weed"], ["rosette", "weed"], [1], 2, "weed"),
        tagged("bad", ("class", "classes"), ["nope"], [99], [0], [-1], [None], [1.5], 3.5, (), []),
    ),
    "crf": tagged("ok", ("crf",), True, False),
    "crf_params": st.one_of(
        tagged(
            "ok",
            CRF_FIELDS,
            None,
            {},
            {"iterations": 1},
            {"iterations": 0, "backend": "torch"},
            {"band": [0.2, 0.8], "iterations": 1},
        ),
        tagged(
            "bad",
            CRF_FIELDS,
            {"iterations": -1},
            {"band": (0.1,)},
            {"nope": 1},
            "fast",
            3,
            {"gaussian_sxy": "3"},
            {"band": (0.9, 0.1)},
            {"backend": "gpu"},
            {"unary_weight": math.nan},
            {"iterations": 2.5},
            {"padding": -3},
        ),
    ),
    "tile_size": st.one_of(
        tagged("ok", ("tile_size",), None, "auto", 64, 96),
        tagged("bad", ("tile_size",), 0, 10, -64, "big", 64.5, True, math.nan),
    ),
    "scale": st.one_of(
        tagged("ok", ("scale",), None, "auto", 0.5, 1.0, 2.0),
        tagged("bad", ("scale",), 0, -1.0, math.nan, math.inf, 100.0, "big", True),
    ),
    "merge_classes": st.one_of(
        tagged("ok", ("merge_classes",), True, False),
        tagged("bad", ("merge_classes",), "yes", None, 2),
    ),
}


@st.composite
def segment_kwargs(draw, names=tuple(PARAMS)):
    """Keyword arguments for segment(), each drawn ok/bad/either.

    Returns (kwargs, names of bad ones, names of unspecified ones).
    """
    kwargs, bad, either = {}, [], []
    for name in names:
        if not draw(st.booleans()):  # left at its default
            continue
        value, status, words = draw(PARAMS[name])
        kwargs[name] = value
        if status == "bad":
            bad.extend(words)
        elif status == "either":
            either.extend(words)
    if not kwargs.get("crf", True) and "crf_params" in kwargs:  # not read without the CRF
        moved = [b for b in bad if b in CRF_FIELDS]
        bad = [b for b in bad if b not in CRF_FIELDS]
        either.extend(moved)
    return kwargs, bad, either


# -- models ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model():
    """garden_small without weights at 64-96 px that reports every detection (up to 6)."""
    import torch

    from napari_gardenseg._architectures import garden_small

    torch.manual_seed(0)
    net = garden_small(num_classes=3, min_size=64, max_size=96)
    net.roi_heads.score_thresh = 0.0
    net.roi_heads.detections_per_img = 6
    net.class_names = ["__background__", "weed", "rosette"]
    return gs.load_model(net.eval(), device="cpu")


def check_result(res, hw, kwargs) -> None:
    labels = np.asarray(res.labels)
    assert labels.shape == hw and labels.dtype.kind in "iu" and labels.min() >= 0
    n = len(res)
    assert set(np.unique(labels)) - {0} == set(range(1, n + 1))  # ids 1..N, each with pixels
    assert len(res.table) == n == len(res.class_names) == len(res.scores)
    if kwargs.get("crf", True):
        assert res.refined is not None and np.asarray(res.refined).shape == hw
    else:
        assert res.refined is None
    if kwargs.get("merge_classes") is True:
        assert set(res.class_names) <= {"plant"}
    scores = np.asarray(res.scores)
    assert np.all(np.isfinite(scores)) and np.all(scores >= kwargs.get("score_threshold", 0.5) - 1e-6)


def run_segment(image, hw, kwargs, bad, either, model):
    try:
        res = gs.segment(image, model, device="cpu", **kwargs)
    except Exception as exc:  # noqa: BLE001  (checked: only the allowed types, naming the problem)
        if hw is not None and not bad and not either:
            raise AssertionError(f"valid input refused: {type(exc).__name__}: {exc}") from exc
        check_message(exc, (*bad, *either, *(IMAGE_WORDS if hw is None else ())))
        return None
    assert hw is not None, f"not an image, yet segmented: shape {np.shape(image)}"
    assert not bad, f"accepted bad {bad}: {kwargs}"
    if "0.5" in kwargs.values():  # an accepted numeric string: compare as a number
        kwargs = {k: (float(v) if v == "0.5" else v) for k, v in kwargs.items()}
    check_result(res, hw, kwargs)
    return res


@settings(FUZZ, max_examples=70)
@given(image=images(), params=segment_kwargs())
def test_segment_any_input(tiny_model, image, params):
    arr, hw = image
    kwargs, bad, either = params
    kwargs.setdefault("score_threshold", 0.0)  # every detection: the mask and CRF paths run
    run_segment(arr, hw, kwargs, bad, either, tiny_model)


@settings(FUZZ, max_examples=60)
@given(name=st.sampled_from(sorted(PARAMS)), data=st.data())
def test_segment_one_parameter_at_a_time(tiny_model, name, data):
    """A valid image and one parameter, ok or bad: a bad one is refused by name."""
    value, status, words = data.draw(PARAMS[name], label=name)
    image = np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    kwargs = {name: value, "score_threshold": 0.0} if name != "score_threshold" else {name: value}
    if name == "crf_params":
        kwargs["crf"] = True
    bad = list(words) if status == "bad" else []
    either = list(words) if status == "either" else []
    run_segment(image, (24, 20), kwargs, bad, either, tiny_model)


@settings(FUZZ, max_examples=8)
@given(image=images(max_side=32), crf=st.booleans(), merge=st.booleans())
def test_segment_with_the_bundled_model(image, crf, merge):
    arr, hw = image
    run_segment(
        arr,
        hw,
        {"crf": crf, "merge_classes": merge, "crf_params": {"iterations": 1} if crf else None},
        [],
        [],
        "garden",
    )


# -- refine_instances -------------------------------------------------------------------------


@st.composite
def soft_masks(draw, hw):
    """(masks, scores, bad names): (N, H, W) probabilities, sometimes of the wrong size, range or type."""
    h, w = hw
    n = draw(st.integers(0, 3))
    kind = draw(st.sampled_from(["ok", "ok", "ok", "nan", "range", "size", "2d", "list", "int"]))
    shape = (n, h, w) if kind != "size" else (n, h + 1, w)
    if kind == "2d":
        shape = (h, w)
    elements = st.floats(0, 1, width=32)
    if kind == "nan":
        elements = st.floats(allow_nan=True, allow_infinity=True, width=32)
    elif kind == "range":
        elements = st.floats(-2, 3, width=32)
    masks = draw(hnp.arrays(np.float32, shape, elements=elements))
    if kind == "int":
        masks = (masks > 0.5).astype(np.int64)
    if kind == "list":
        masks = masks.tolist()
    score_kind = draw(st.sampled_from(["none", "ok", "ok", "short", "nan"]))
    scores = {
        "none": None,
        "ok": np.linspace(0.9, 0.5, n).astype(np.float32),
        "short": np.ones(n + 1, np.float32),
        "nan": np.full(n, np.nan, np.float32),
    }[score_kind]
    bad = []
    if kind in ("size", "2d"):
        bad += ["soft_masks", "masks", "shape"]
    if score_kind == "short":
        bad += ["scores"]
    # not said in the docstring (probabilities outside 0..1 or NaN, lists, integers): either outcome
    either = kind in ("list", "int", "nan", "range") or score_kind == "nan"
    return masks, scores, bad, either


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_refine_instances_any_input(data):
    arr, hw = data.draw(images(max_side=24), label="image")
    masks, scores, bad, either = data.draw(soft_masks(hw or (8, 8)), label="soft masks")
    params, p_status, p_names = data.draw(PARAMS["crf_params"], label="params")
    threshold, t_status, t_names = data.draw(fraction("mask_threshold", low_open=True), label="mask_threshold")
    if p_status == "bad":
        bad = [*bad, *p_names]
    if t_status == "bad":
        bad = [*bad, *t_names]
    if t_status == "either":
        either = True
        bad = [*bad]  # its message must still name it
        extra = t_names
    else:
        extra = ()
    if isinstance(params, dict):
        params = {
            **params,
            "iterations": min(params.get("iterations", 1), 2)
            if isinstance(params.get("iterations", 1), int)
            else params["iterations"],
        }
    try:
        labels = gs.refine_instances(arr, masks, scores, params=params, mask_threshold=threshold)
    except Exception as exc:  # noqa: BLE001
        if hw is not None and not bad and not either:
            raise AssertionError(f"valid input refused: {type(exc).__name__}: {exc}") from exc
        named = ("mask", "soft", "scores", "probabilit", "values", *extra) if either else ()
        check_message(exc, (*bad, *(IMAGE_WORDS if hw is None else ()), *named))
        return
    assert hw is not None and not bad, f"accepted: image ok={hw is not None}, bad={bad}"
    assert labels.shape == hw and labels.dtype == np.int32
    n = len(masks)
    assert labels.min() >= 0 and labels.max() <= n


# -- to_coco -------------------------------------------------------------------------------


@st.composite
def results(draw):
    """A SegmentationResult (ids 1..N painted in squares), or something that is not one."""
    from napari_gardenseg._results import SegmentationResult

    kind = draw(st.sampled_from(["result", "result", "result", "none", "dict", "array", "mismatch"]))
    if kind == "none":
        return None, "bad"
    if kind == "dict":
        return {"labels": np.zeros((4, 4), np.int32)}, "bad"
    if kind == "array":  # an integer label image is taken (test_cli_export); float values are no ids
        return np.zeros((4, 4), np.float32), "bad"
    h, w = draw(st.integers(1, 30)), draw(st.integers(1, 30))
    n = draw(st.integers(0, 4))
    labels = np.zeros((h, w), np.int32)
    for k in range(1, n + 1):
        y, x = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        labels[y : y + 3, x : x + 3] = k
    ids = [int(v) for v in np.unique(labels) if v > 0]
    labels = np.searchsorted([0, *ids], labels).astype(np.int32)  # compact 1..M, as segment returns
    m = len(ids) + (1 if kind == "mismatch" else 0)
    refined = labels.copy() if draw(st.booleans()) else None
    res = SegmentationResult(
        labels=labels,
        refined=refined,
        class_ids=np.ones(m, np.int64),
        class_names=["weed"] * m,
        scores=np.linspace(0.9, 0.5, m).astype(np.float32),
        boxes=np.tile(np.array([[0, 0, 2, 2]], np.float32), (m, 1)),
    )
    return res, "either" if kind == "mismatch" else "ok"  # a table longer than the labels: not specified


@settings(FUZZ, max_examples=80)
@given(
    result=results(),
    class_names=st.one_of(
        tagged("ok", ("class_names",), None, ["__background__", "weed"], ("bg", "weed", "x")),
        tagged("bad", ("class_names",), "weed", 5, [None, 3]),
    ),
    image_id=st.one_of(
        tagged("ok", ("image_id",), 1, 7, 0),
        tagged("either", ("image_id",), -1, True),
        tagged("bad", ("image_id",), "x", 1.5, None),
    ),
    file_name=st.one_of(
        tagged("ok", ("file_name",), None, "a.png", "dir/ü.tif"), tagged("bad", ("file_name",), 3, b"a.png", ["a"])
    ),
    refined=tagged("ok", ("refined",), True, False),
)
def test_to_coco_any_input(result, class_names, image_id, file_name, refined):
    res, res_status = result
    kwargs = {"class_names": class_names[0], "image_id": image_id[0], "file_name": file_name[0], "refined": refined[0]}
    tags = (class_names, image_id, file_name)
    bad = [n for (_, status, names) in tags if status == "bad" for n in names]
    either = [n for (_, status, names) in tags if status == "either" for n in names]
    words = ["result", "SegmentationResult", "class_ids", "labels", "instances"]
    if res_status == "bad":
        bad = [*bad, *words]
    elif res_status == "either":
        either = [*either, *words]
    try:
        coco = gs.to_coco(res, **kwargs)
    except Exception as exc:  # noqa: BLE001
        if not bad and not either:
            raise AssertionError(f"valid input refused: {type(exc).__name__}: {exc}") from exc
        check_message(exc, (*bad, *either))
        return
    assert not bad, f"accepted bad input: {bad}"
    json.dumps(coco)  # a COCO file can be written
    assert len(coco["annotations"]) == int(np.asarray(res.labels).max())
    assert (coco["images"][0]["height"], coco["images"][0]["width"]) == res.labels.shape


@settings(FUZZ, max_examples=60)
@given(
    result=results(),
    class_names=st.sampled_from([None, ["__background__", "weed"], ("bg", "weed", "x")]),
    image_id=st.integers(0, 10**6),
    file_name=st.one_of(st.none(), st.text(max_size=20)),
    refined=st.booleans(),
)
def test_to_coco_of_any_result(result, class_names, image_id, file_name, refined):
    """Every result segment() can return (any size, 0..N instances, with or without CRF) exports."""
    res, status = result
    assume(status == "ok")  # a refused input has no result to export
    coco = gs.to_coco(res, class_names=class_names, image_id=image_id, file_name=file_name, refined=refined)
    json.loads(json.dumps(coco))  # a COCO file can be written and read
    labels = res.refined if refined and res.refined is not None else res.labels
    assert len(coco["annotations"]) == int(labels.max())
    assert (coco["images"][0]["height"], coco["images"][0]["width"]) == labels.shape
    assert all(a["image_id"] == image_id for a in coco["annotations"])
    assert {a["category_id"] for a in coco["annotations"]} <= {c["id"] for c in coco["categories"]} | {1}


# -- the command line -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory, tiny_model):
    """A tiny random checkpoint, a few small images (PNG/TIFF) and a file that is not an image."""
    import tifffile
    from PIL import Image

    from napari_gardenseg._models import save_checkpoint

    root = tmp_path_factory.mktemp("cli_fuzz")
    ck = save_checkpoint(
        tiny_model.net,
        root / "tiny.pt",
        class_names=tiny_model.class_names,
        arch="garden_small",
        arch_kwargs={"min_size": 64, "max_size": 96},
    )
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(root / "grey.png")
    tifffile.imwrite(root / "b.tif", rng.random((3, 18, 22)).astype(np.float32))
    tifffile.imwrite(root / "stack.tif", rng.integers(0, 9, (5, 6, 7, 8), dtype=np.uint16))
    (root / "notes.png").write_text("not an image")
    return root, ck


VALUES = st.sampled_from(["0.5", "0", "1", "-1", "nan", "inf", "abc", "", "auto", "64", "1e9", "3.5", "weed", ",,"])


@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_cli_any_arguments(cli_files, tmp_path_factory, data, capsys):
    root, ck = cli_files
    out = tmp_path_factory.mktemp("out")
    files = data.draw(
        st.lists(
            st.sampled_from(["a.png", "grey.png", "b.tif", "stack.tif", "notes.png", "missing.png"]),
            min_size=0,
            max_size=3,
        ),
        label="files",
    )
    argv = ["segment", *(str(root / f) for f in files), "--model", str(ck), "--device", "cpu", "--out", str(out)]
    options = [
        "--score-threshold",
        "--mask-threshold",
        "--classes",
        "--crf-iterations",
        "--tile-size",
        "--tile-overlap",
        "--scale",
        "--crf-backend",
    ]
    for opt in data.draw(st.lists(st.sampled_from(options), max_size=3, unique=True), label="options"):
        argv += [opt, data.draw(VALUES, label=opt)]
    argv += data.draw(
        st.lists(st.sampled_from(["--no-crf", "--merge-classes", "--coco", "--overwrite"]), max_size=2, unique=True),
        label="flags",
    )
    if data.draw(st.booleans(), label="crf iterations 1") and "--crf-iterations" not in argv:
        argv += ["--crf-iterations", "1"]
    try:
        code = gs.cli.main(argv)
    except SystemExit as exc:  # argparse refusing an option value: usage + message on stderr, code 2
        code = exc.code
    captured = capsys.readouterr()
    assert code in (0, 1, 2), code
    assert "Traceback" not in captured.err, captured.err
    if code != 0:
        assert captured.err.strip(), f"exit code {code} without a message"
    if code == 0:
        assert files and all(f in ("a.png", "grey.png", "b.tif") for f in files)
        for f in files:
            assert (out / f"{f.rsplit('.', 1)[0]}_labels.tif").exists()
