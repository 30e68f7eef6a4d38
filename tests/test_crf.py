"""Tests of the dense-CRF refinement (napari_gardenseg.crf), every backend.

The scene helpers here (blades, lobed leaves, Mask R-CNN-like coarse soft
masks) are also used by benchmarks/bench_crf.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_gardenseg._instances import instances_to_labels
from napari_gardenseg.crf import (
    CRFParams,
    CRFUnavailableError,
    crf_available,
    refine,
    refine_instances,
)
from napari_gardenseg.crf._numba import available as numba_available
from napari_gardenseg.crf._pydensecrf import available as pydensecrf_available

# pydensecrf is in the test extra and numba a dependency, so CI runs these; torch needs nothing.
needs_pydensecrf = pytest.mark.skipif(not pydensecrf_available(), reason="pydensecrf is not installed")
needs_numba = pytest.mark.skipif(not numba_available(), reason="numba is not installed")
BACKENDS = [pytest.param("numba", marks=needs_numba), pytest.param("pydensecrf", marks=needs_pydensecrf), "torch"]
REFERENCE = Path(__file__).parent / "data" / "pydensecrf"


def P(backend: str, **fields) -> CRFParams:
    return CRFParams(backend=backend, **fields)


# ------------------------------------------------------------ scene helpers


def stroke(shape, points, width: float) -> np.ndarray:
    """Pixels within width/2 of the polyline ``points`` ((y, x) rows): a blade."""
    pts = np.asarray(points, float)
    r = width / 2
    y0, x0 = np.maximum(np.floor(pts.min(0) - r).astype(int), 0)
    y1, x1 = np.ceil(pts.max(0) + r + 1).astype(int)
    yy, xx = np.mgrid[y0 : min(y1, shape[0]), x0 : min(x1, shape[1])].astype(float)
    d2 = np.full(yy.shape, np.inf)
    for a, b in zip(pts[:-1], pts[1:]):
        ab = b - a
        t = np.clip(((yy - a[0]) * ab[0] + (xx - a[1]) * ab[1]) / max(ab @ ab, 1e-9), 0, 1)
        d2 = np.minimum(d2, (yy - a[0] - t * ab[0]) ** 2 + (xx - a[1] - t * ab[1]) ** 2)
    out = np.zeros(shape, bool)
    out[y0 : y0 + yy.shape[0], x0 : x0 + yy.shape[1]] = d2 <= r * r
    return out


def random_blade(shape, rng, width: float, length=(80, 160), spread=(0.25, 0.75)) -> np.ndarray:
    """A gently curved stroke of the given width centred in the ``spread`` part."""
    n = 12
    ang = rng.uniform(0, np.pi) + rng.uniform(-0.4, 0.4) * np.linspace(-1, 1, n)
    step = rng.uniform(*length) / n
    start = np.array([rng.uniform(*spread) * shape[0], rng.uniform(*spread) * shape[1]])
    pts = start + np.cumsum(np.stack([np.sin(ang), np.cos(ang)], 1) * step, 0)
    pts -= pts.mean(0) - start  # centre it
    return stroke(shape, pts, width)


def lobed(shape, centre, radius: float, lobes: int = 5, amp: float = 0.2, phase: float = 0.0) -> np.ndarray:
    """A compact leaf: a disc with a wavy edge."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    dy, dx = yy - centre[0], xx - centre[1]
    return np.hypot(dy, dx) <= radius * (1 + amp * np.sin(lobes * np.arctan2(dy, dx) + phase))


def random_leaf(shape, rng, radius=(20, 45), spread=(0.3, 0.7)) -> np.ndarray:
    c = (rng.uniform(*spread) * shape[0], rng.uniform(*spread) * shape[1])
    return lobed(shape, c, rng.uniform(*radius), int(rng.integers(4, 8)), rng.uniform(0.1, 0.25), rng.uniform(0, 6))


def visible(masks) -> list[np.ndarray]:
    """Later masks occlude earlier ones (drawing order)."""
    out, covered = [], np.zeros_like(masks[0])
    for m in masks[::-1]:
        out.append(m & ~covered)
        covered |= m
    return out[::-1]


def coarse_soft_masks(masks, size: int = 28) -> np.ndarray:
    """What Mask R-CNN's mask head gives at best: each box crop area-averaged to
    28x28, then pasted back bilinearly by torchvision's paste_masks_in_image."""
    torch = pytest.importorskip("torch")
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    small, boxes = [], []
    for m in masks:
        ys, xs = np.nonzero(m)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        crop = torch.from_numpy(m[y0:y1, x0:x1].astype(np.float32))[None, None]
        small.append(torch.nn.functional.adaptive_avg_pool2d(crop, size)[0])
        boxes.append([x0, y0, x1, y1])
    pasted = paste_masks_in_image(
        torch.stack(small), torch.tensor(boxes, dtype=torch.float32), masks[0].shape, padding=1
    )
    return pasted[:, 0].numpy()


def render(masks, colours, rng, noise: float = 10.0, background=(125, 95, 65)) -> np.ndarray:
    """uint8 RGB: soil with a slow shading, objects in their colours, Gaussian noise."""
    h, w = masks[0].shape
    yy, xx = np.mgrid[:h, :w]
    img = np.empty((h, w, 3), np.float32)
    img[:] = background
    img += (15 * np.sin(yy / 37.0) * np.cos(xx / 23.0))[..., None]
    for m, c in zip(masks, colours):
        img[m] = c
    img += rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def iou(a, b) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


GREEN, LEAF = (60, 165, 55), (200, 70, 90)


def single_object_case(kind: str, seed: int, shape=(192, 192), width=3, noise=10.0):
    """(image, true mask, soft mask (1, H, W)) for one blade or one leaf."""
    rng = np.random.default_rng(seed)
    gt = random_blade(shape, rng, width) if kind == "thin" else random_leaf(shape, rng)
    return render([gt], [GREEN if kind == "thin" else LEAF], rng, noise), gt, coarse_soft_masks([gt])


def crowded_case(seed: int, shape=(256, 256), blades=6, leaves=2, noise=12.0, leaf_colour=LEAF):
    """(image, visible true masks (N, H, W), soft masks, scores): crossing blades
    of one colour and leaves, each an instance."""
    rng = np.random.default_rng(seed)
    masks = [random_blade(shape, rng, rng.choice([2, 3, 4])) for _ in range(blades)]
    masks += [random_leaf(shape, rng) for _ in range(leaves)]
    colours = [np.add(GREEN, rng.normal(0, 8, 3)) for _ in range(blades)]
    colours += [np.add(leaf_colour, rng.normal(0, 10, 3)) for _ in range(leaves)]
    vis = visible(masks)
    keep = [i for i, v in enumerate(vis) if v.sum() > 30]
    vis = np.array([vis[i] for i in keep])
    image = render(vis, [colours[i] for i in keep], rng, noise)
    return image, vis, coarse_soft_masks(vis), rng.uniform(0.5, 1.0, len(vis)).astype(np.float32)


# ------------------------------------------------------ pydensecrf reference


def reference_case(case: str):
    """(image, probabilities (L, H, W), pydensecrf's labels) of a reference case
    (tests/data/pydensecrf/README.md: the upstream example's probabilities,
    0.7 on the annotated label, uniform where unknown)."""
    from PIL import Image

    image = np.array(Image.open(REFERENCE / f"im{case[0]}.png").convert("RGB"))
    anno = np.load(REFERENCE / f"anno_{case}_labels.npy")
    expected = np.load(REFERENCE / f"expected_{case}_labels.npy")
    n = int(anno.max())
    prob = np.full((n, *anno.shape), 0.3 / (n - 1), np.float32)
    for label in range(1, n + 1):
        prob[label - 1][anno == label] = 0.7
    prob[:, anno == 0] = 1.0 / n
    return image, prob, expected


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["1", "1-b", "2", "3"])
def test_refine_reproduces_pydensecrf_examples(case, backend):
    image, prob, expected = reference_case(case)
    q = refine(image, prob, CRFParams(backend=backend))
    assert q.shape == prob.shape and q.dtype == np.float32
    # The torch lattice repeats pydensecrf's float32 arithmetic: every label agrees.
    np.testing.assert_array_equal(q.argmax(0) + 1, expected)


# ------------------------------------------------------------------ refine


def _two_region_case():
    rng = np.random.default_rng(0)
    image = np.zeros((40, 50, 3), np.uint8)
    image[:, 25:] = 200
    fg = np.clip(np.where(np.arange(50) >= 25, 0.7, 0.3) + rng.normal(0, 0.1, (40, 50)), 0, 1)
    return image, np.stack([1 - fg, fg]).astype(np.float32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_refine_output_is_a_distribution_and_follows_the_image(backend):
    image, prob = _two_region_case()
    q = refine(image, prob, P(backend))
    assert q.shape == (2, 40, 50) and q.dtype == np.float32
    np.testing.assert_allclose(q.sum(0), 1, atol=1e-4)
    # the noisy unary is cleaned up along the colour edge
    assert (q.argmax(0) == (np.arange(50) >= 25)[None, :]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_refine_zero_iterations_returns_normalised_input(backend):
    image, prob = _two_region_case()
    prob[:, 0, 0] = (1.0, 0.0)  # clipped to 1e-5 as pydensecrf does
    q = refine(image, prob, P(backend, iterations=0))
    clipped = np.clip(prob, 1e-5, 1)
    np.testing.assert_allclose(q, clipped / clipped.sum(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_refine_accepts_read_only_and_other_layouts(backend):
    image, prob = _two_region_case()
    expected = refine(image, prob, P(backend))
    image_ro, prob_ro = image.copy(), prob.astype(np.float64)
    image_ro.setflags(write=False)
    prob_ro.setflags(write=False)
    np.testing.assert_allclose(refine(image_ro, prob_ro, P(backend)), expected, atol=1e-5)
    # channel-first float 0..1 converts to the same uint8 pixels
    chw = np.moveaxis(image.astype(np.float32) / 255, -1, 0)
    np.testing.assert_allclose(refine(chw, prob, P(backend)), expected, atol=1e-5)


@pytest.mark.parametrize(
    "prob, match",
    [
        (np.full((2, 40), 0.5), r"shape \(K, H, W\)"),
        (np.full((2, 40, 49), 0.5), "40x49.*image is 40x50"),
        (np.full((2, 40, 50), 0.4), "sum to 1.*rounded\\? pass p / p.sum"),
        (np.full((2, 40, 50), 127.5), r"sum to 1.*0\.\.255\? divide by 255"),
        (np.full((40, 50), 0.5), r"one foreground map\? pass np.stack\(\[1 - p, p\]\)"),
        (np.full((1, 40, 50), 0.5), r"one foreground map\? pass np.stack\(\[1 - p\[0\], p\[0\]\]\)"),
        (np.full((40, 50, 2), 0.5), r"labels last\? pass np.moveaxis\(p, -1, 0\)"),
        (np.stack([np.full((40, 50), 1.5), np.full((40, 50), -0.5)]), ">= 0"),
        (np.where(np.eye(40, 50, dtype=bool)[None], np.nan, 0.5).repeat(2, 0), "NaN"),
    ],
)
def test_refine_rejects_bad_probabilities(prob, match):
    image, _ = _two_region_case()
    with pytest.raises(ValueError, match=match):
        refine(image, prob)


def test_refine_takes_one_hot_labels_as_bool_or_integers():
    image, _ = _two_region_case()
    one_hot = np.zeros((2, 40, 50), bool)
    one_hot[0, :, :25] = one_hot[1, :, 25:] = True
    np.testing.assert_array_equal(refine(image, one_hot), refine(image, one_hot.astype(np.uint8)))


# CRFParams validation: tests/test_crf_params.py


def test_crf_unavailable_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    assert crf_available()  # numba or torch
    image, prob = _two_region_case()
    pyd = CRFParams(backend="pydensecrf")
    with pytest.raises(CRFUnavailableError, match=r"pip install pydensecrf2.*compiler.*backend='torch'.*crf=False"):
        refine(image, prob, pyd)
    with pytest.raises(ImportError, match="pip install pydensecrf2"):
        refine_instances(image, prob[1:], params=pyd)
    # auto falls back to another backend and still refines
    assert (refine(image, prob).argmax(0) == (np.arange(50) >= 25)[None, :]).all()


def test_crf_needs_numba_torch_or_pydensecrf(monkeypatch):
    from napari_gardenseg.crf import _numba

    monkeypatch.setattr(_numba, "_available", None)
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    monkeypatch.setitem(sys.modules, "torch", None)
    assert not crf_available()
    image, prob = _two_region_case()
    with pytest.raises(CRFUnavailableError, match="PyTorch"):
        refine(image, prob, CRFParams(backend="torch"))
    with pytest.raises(CRFUnavailableError, match="pip install numba"):
        refine(image, prob, CRFParams(backend="numba"))
    with pytest.raises(CRFUnavailableError, match="numba, pydensecrf or PyTorch"):
        refine(image, prob)


def test_module_imports_without_pydensecrf():
    code = (
        "import sys; sys.modules['pydensecrf'] = None; "
        "import napari_gardenseg.crf as c; assert 'torch' not in sys.modules and 'numba' not in sys.modules; "
        "assert c.crf_available(); print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# -------------------------------------------------------- refine_instances


# A plain default CRF erases the blades of (2, 20, 3), (2, 10, 5) and (3, 20, 2)
# (IoU 0.02, 0, 0.002; benchmarks/bench_crf.py has the figures).
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("width, noise, seed", [(2, 20, 0), (2, 20, 3), (2, 10, 5), (3, 20, 2), (3, 20, 5)])
def test_refinement_does_no_harm_to_thin_objects(width, noise, seed, backend):
    image, gt, soft = single_object_case("thin", seed, width=width, noise=noise)
    raw = soft[0] > 0.5
    refined = refine_instances(image, soft, params=P(backend)) == 1
    assert refined.sum() >= 0.7 * raw.sum() > 0  # not erased, not much smaller
    assert iou(refined, gt) >= iou(raw, gt) - 0.02


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 2, 3])
def test_refinement_improves_compact_objects(seed, backend):
    image, gt, soft = single_object_case("compact", seed, noise=20)
    raw = soft[0] > 0.5
    refined = refine_instances(image, soft, params=P(backend)) == 1
    assert refined.sum() >= 0.9 * raw.sum()
    assert iou(refined, gt) > iou(raw, gt) + 0.005


@pytest.mark.parametrize("backend", BACKENDS)
def test_crowded_scene_keeps_every_instance_and_improves(backend):
    image, gt, soft, scores = crowded_case(seed=3)
    raw = instances_to_labels(soft, scores)
    refined = refine_instances(image, soft, scores, P(backend))
    raw_iou = np.array([iou(raw == i + 1, g) for i, g in enumerate(gt)])
    ref_iou = np.array([iou(refined == i + 1, g) for i, g in enumerate(gt)])
    for k in range(1, len(gt) + 1):
        assert (refined == k).sum() >= 0.7 * (raw == k).sum()  # none erased or shrunk much
    assert (ref_iou >= raw_iou - 0.02).all(), (raw_iou, ref_iou)
    assert ref_iou.mean() >= raw_iou.mean() + 0.03  # 0.876 -> 0.962 when written


def _enlarged(array: np.ndarray, k: int, axes=(0, 1)) -> np.ndarray:
    for axis in axes:
        array = np.repeat(array, k, axis)
    return array


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_large_instance_is_refined_as_it_is_at_max_side(backend):
    # The leaf at 4x its size, refined with max_side its small size, gives the small leaf's refinement
    # (the CRF sees the same pixels; only Q's bilinear way back up can move its edge).
    image, gt, soft = single_object_case("compact", 2, noise=20)
    small = refine_instances(image, soft, params=P(backend, max_side=0)) == 1
    ys, xs = np.nonzero(soft[0] > 0.1)
    side = int(max(np.ptp(ys), np.ptp(xs)) + 1)
    big_image, big_soft, big_gt = _enlarged(image, 4), _enlarged(soft, 4, (1, 2)), _enlarged(gt, 4)
    big = refine_instances(big_image, big_soft, params=P(backend, max_side=side)) == 1
    assert iou(big, _enlarged(small, 4)) > 0.98
    assert iou(big, big_gt) > iou(big_soft[0] > 0.5, big_gt) + 0.005  # still an improvement


def test_crops_handed_to_the_crf_are_at_most_max_side_plus_padding(monkeypatch):
    from napari_gardenseg.crf import _instances

    seen = []
    real = _instances.dense_crf_many

    def spy(backend, rgbs, *args, **kwargs):
        seen.extend(rgb.shape[:2] for rgb in rgbs)
        return real(backend, rgbs, *args, **kwargs)

    monkeypatch.setattr(_instances, "dense_crf_many", spy)
    image, gt, soft, scores = crowded_case(seed=3)
    big_image, big_soft = _enlarged(image, 3), _enlarged(soft, 3, (1, 2))
    params = P("torch", max_side=64, padding=8)
    labels = refine_instances(big_image, big_soft, scores, params)
    assert seen and max(max(s) for s in seen) <= 64 + 2 * 8 + 1
    raw = instances_to_labels(big_soft, scores)
    for k in range(1, len(gt) + 1):  # every instance kept, none shrunk much
        assert (labels == k).sum() >= 0.7 * (raw == k).sum() > 0


def _overlapping_discs():
    h, w = 60, 90
    a, b = lobed((h, w), (30, 35), 18, amp=0), lobed((h, w), (30, 55), 18, amp=0)
    image = render([a, b], [GREEN, GREEN], np.random.default_rng(0), noise=5)
    soft = np.stack([np.where(a, 0.95, 0.02), np.where(b, 0.9, 0.02)]).astype(np.float32)
    return image, soft, a & b


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scores, owner", [((0.9, 0.6), 1), ((0.6, 0.9), 2), (None, 1)])
def test_overlaps_go_to_the_higher_score_then_probability(scores, owner, backend):
    image, soft, both = _overlapping_discs()
    for labels in (refine_instances(image, soft, scores, P(backend)), instances_to_labels(soft, scores)):
        assert labels.dtype == np.int32 and labels.shape == soft.shape[1:]
        assert (labels[both] == owner).all()
        assert set(np.unique(labels)) == {0, 1, 2}


@pytest.mark.parametrize("backend", BACKENDS)
def test_ids_follow_input_order_and_read_only_inputs_work(backend):
    shape = (80, 120)
    masks = [lobed(shape, (40, x), 14, amp=0) for x in (20, 60, 100)]
    image = render(masks, [LEAF, GREEN, LEAF], np.random.default_rng(1))
    soft = coarse_soft_masks(masks)
    image.setflags(write=False)
    soft.setflags(write=False)
    labels = refine_instances(image, soft, scores=[0.5, 0.9, 0.7], params=P(backend))
    for i, m in enumerate(masks):
        assert iou(labels == i + 1, m) > 0.9
    # the same pixels as float channel-first input
    chw = np.moveaxis(image.astype(np.float32) / 255, -1, 0)
    np.testing.assert_array_equal(refine_instances(chw, soft, scores=[0.5, 0.9, 0.7], params=P(backend)), labels)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_instances_gives_background(backend):
    image = np.zeros((30, 40, 3), np.uint8)
    for labels in (
        refine_instances(image, np.zeros((0, 30, 40)), params=P(backend)),
        instances_to_labels(np.zeros((0, 30, 40))),
    ):
        assert labels.shape == (30, 40) and labels.dtype == np.int32 and not labels.any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_instance_outside_the_image_claims_nothing(backend):
    from napari_gardenseg import Instances

    image = np.full((100, 120, 3), 90, np.uint8)
    mask = np.full((40, 40), 0.9, np.float32)
    for offset in ((-50, -50), (200, 200), (100, 0), (0, 130)):  # wholly above, below, beside
        found = Instances([mask], np.array([offset]), [0.9], [1], np.array([[0, 0, 1, 1]], float), (100, 120))
        labels = refine_instances(image, found, params=P(backend))
        assert labels.shape == (100, 120) and not labels.any()


@pytest.mark.parametrize(
    "soft, scores, match",
    [
        (np.zeros((2, 30, 41)), None, "30x41.*image is 30x40"),
        (np.zeros((30, 40)), None, r"shape \(N, H, W\), got \(30, 40\)$"),
        (np.zeros((30, 40), np.int32), None, r"a label image\? pass np.stack"),
        (np.zeros((2, 30, 40)), [0.5], r"scores must have shape \(2,\)"),
        (np.full((1, 30, 40), 3.0), None, "not logits"),
        (np.full((1, 30, 40), np.nan), None, "NaN"),
    ],
)
def test_refine_instances_rejects_bad_inputs(soft, scores, match):
    with pytest.raises(ValueError, match=match):
        refine_instances(np.zeros((30, 40, 3), np.uint8), soft, scores)


def test_instances_to_labels_thresholds():
    soft = np.zeros((3, 10, 10), np.float32)
    soft[0, :5] = 0.8
    soft[1, 3:] = 0.6  # overlaps instance 1 in rows 3-4, lower score
    soft[2] = 0.4  # below threshold everywhere: no pixels, id 3 unused
    labels = instances_to_labels(soft, [0.9, 0.8, 0.99])
    assert (labels[:5] == 1).all() and (labels[5:] == 2).all()
    assert not (instances_to_labels(soft, [0.9, 0.8, 0.99], mask_threshold=0.7) == 2).any()


def test_a_mask_threshold_above_the_band_leaves_no_hole_of_the_networks_surest_pixels():
    # band[1] (0.9) used to fix every pixel at or above it to the raw mask, which at a threshold of
    # 0.95 made pixels of 0.90-0.95 background for good while less sure ones were claimed: a ring
    import napari_gardenseg as gs

    yy, xx = np.mgrid[:101, :101]
    d = np.hypot(yy - 50, xx - 50)
    soft = np.where(d < 5, 0.97, np.where(d < 10, 0.92, np.clip(0.85 * (36 - d) / 6, 0, 0.85))).astype(np.float32)
    image = np.full((101, 101, 3), (120, 85, 55), np.uint8)
    image[d < 30] = (40, 150, 40)  # the plant: a green disc of radius 30
    for threshold in (0.5, 0.95):
        refined = gs.refine_instances(image, soft[None], None, None, mask_threshold=threshold) == 1
        claimed_less_sure = (refined & (soft < 0.9)).any()
        assert refined[d < 5].all(), f"the surest core left out at {threshold}"
        assert refined[d < 10].all() or not claimed_less_sure, f"a ring of sure pixels left out at {threshold}"
        if threshold == 0.5:  # the green disc is the plant; the soil around it is not
            assert refined[d < 30].mean() > 0.9 and not refined[d > 32].any()
