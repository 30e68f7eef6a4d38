"""Class-agnostic mask AP50 on the labelled real photos, against two colour baselines.

    python benchmarks/eval_real.py                          # bundled model, every labelled real photo
    python benchmarks/eval_real.py --held-out               # only what the bundled model's training never saw
    python benchmarks/eval_real.py --model runs/adapted.pt --methods raw crf colour colour+crf
    python benchmarks/eval_real.py --only agir-maize plantcv-tray --per-photo
    python benchmarks/eval_real.py --model runs/m.pt --species barley beet   # a model trained on the other AgIR plants
    python benchmarks/eval_real.py --jpeg 70 --blur 1        # the same photos as a worse camera would give them
    python benchmarks/eval_real.py --held-out --condition straw --methods exg-otsu raw default   # straw mulch
    python benchmarks/eval_real.py --tile-size 512            # segmented in tiles (a quarter overlapping)
    python benchmarks/eval_real.py --megapixels 48            # every photo (and its labels) resized to 48 MP
    python benchmarks/eval_real.py --held-out --megapixels 0 0.8 1.25 2   # the table at four sizes, and its mean
    python benchmarks/eval_real.py --zarr --block 256         # through segment_to_zarr, colour stage in 256 px windows
    python benchmarks/eval_real.py --canvas 0                 # each photo on a black (nodata) border, 4x its area
    python benchmarks/eval_real.py --sets photos --file-size  # the photos at their files' size (3-5 MP), not halved
    python benchmarks/eval_real.py --mosaic 4 --tile-size 1024 --zarr   # the photos joined into one big image
    python benchmarks/eval_real.py --strips 6                 # each photo cut into 6 bands laid side by side
    python benchmarks/eval_real.py --counts --score-threshold 0.5   # what a user sees: precision / recall at IoU 0.5
    python benchmarks/eval_real.py --methods default+crf --crf max_side=0   # a CRF setting over the model's
    python benchmarks/eval_real.py --held-out --keep-detections 0.3   # as if the network found few plants

The labelled set: ``benchmarks/real_dev/manifest.json`` (photos from
``../shared/real``; how each reference was made is in ``real_dev/README.md``)
and ``real_dev/composites.py`` (real plants pasted in contact on real soil,
the touching case the photos lack).
Every photo is evaluated as one COCO image (pycocotools, iouType "segm",
every instance one class "plant"); the pooled AP50 over the whole set is the
headline, per-group figures follow. Methods:

* ``exg-fixed``: excess green above 0.1 (chromatic coordinates), connected
  components, score = area. The one-line rule.
* ``exg-otsu``: excess green above its Otsu threshold, connected components
  (specks dropped), score = area.
* ``raw`` / ``crf``: ``gs.segment(photo, model, score_threshold, vegetation="off")``,
  its labels and its CRF labels.
* ``colour`` / ``colour+crf``: the same with ``vegetation="on"`` (instances
  follow plant colour, unclaimed plant components added).
* ``default`` / ``default+crf``: ``vegetation="auto"`` (segment's default).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEV = HERE / "real_dev"
sys.path[:0] = [str(HERE), str(DEV)]
from _memory import peak_rss_mb  # noqa: E402
from composites import touching_set  # noqa: E402
from eval_garden import coco_ap  # noqa: E402

SHARED = HERE.parents[1] / "shared"
PLANT = ["__background__", "plant"]
# the AgIR species kept out of the bundled model's training (it pasted the other six's plants,
# scripts/train_garden_model.py --real-species); with the photos whose manifest entry says
# "seen_in_training", what --held-out leaves out
HELD_OUT_SPECIES = ("barley", "beet", "horseweed", "jimson_weed", "maize")
METHODS = ("exg-fixed", "exg-otsu", "raw", "crf", "colour", "colour+crf")


def agir_species() -> list[str]:
    """The AgIR species of the labelled set (``agir-<species>`` in the manifest)."""
    entries = json.loads((DEV / "manifest.json").read_text())
    return [e["name"][len("agir-") :] for e in entries if e["name"].startswith("agir-")]


def load_set(only=None, sets=("photos", "touching"), species=None, unseen=False) -> list[dict]:
    """The labelled set: dicts with name, kind, rgb (uint8 H, W, 3) and labels (int32 H, W).

    ``sets``: "photos" (the labelled real photos of ``real_dev/manifest.json``)
    and/or "touching" (``real_dev/composites.py``: real plants pasted in contact).
    ``species``: AgIR photo names; when given, only these AgIR pot photos are kept and the
    composites are cut from these alone (for a model whose training saw the other AgIR plants).
    ``unseen``: leave out the photos the bundled model's training saw (``seen_in_training``).
    """
    from PIL import Image

    entries = json.loads((DEV / "manifest.json").read_text()) if "photos" in sets else []
    out = []
    for e in entries:
        if only and e["name"] not in only:
            continue
        if species is not None and e["name"].startswith("agir-") and e["name"][len("agir-") :] not in species:
            continue
        if unseen and e.get("seen_in_training"):
            continue
        with Image.open(SHARED / e["image"]) as im:
            im = im.convert("RGB")
            if e["resize"]:
                im = im.resize(tuple(e["resize"]), Image.BILINEAR)
            rgb = np.asarray(im)
        labels = np.asarray(Image.open((DEV / e["labels"]).resolve())).astype(np.int32)
        if labels.shape != rgb.shape[:2]:
            raise SystemExit(f"{e['name']}: labels {labels.shape} do not match the photo {rgb.shape[:2]}")
        out.append({**e, "rgb": rgb, "labels": labels})
    if "touching" in sets:
        out += [c for c in touching_set(species=species) if not only or c["name"] in only]
    return out


def components(mask: np.ndarray, min_area: int = 16):
    """Connected components of ``mask`` without specks under ``min_area`` pixels, each one instance scored by area."""
    from skimage import measure, morphology

    lab = measure.label(morphology.remove_small_objects(mask, max_size=min_area), connectivity=2)
    areas = np.bincount(lab.ravel())[1:]
    return lab.astype(np.int32), [1] * len(areas), [float(a) for a in areas]


def baseline(rgb_u8: np.ndarray, kind: str):
    """The one-line colour rules: excess green above 0.1, or above its Otsu threshold (the plain
    rule a user writes, not the colour stage's, which smooths a noisy index and retries a split soil)."""
    from napari_gardenseg._vegetation import excess_green, is_nodata, otsu_threshold

    rgb = rgb_u8.astype(np.float32) / 255
    exg = excess_green(rgb)
    if kind == "exg-fixed":
        return components(exg > 0.1)
    data = ~is_nodata(rgb)  # a black canvas (--canvas) is no pixel of the photo
    return components((exg > otsu_threshold(exg[data] if data.any() else exg)[0]) & data)


def run_methods(model, rgb, methods, score_threshold, to_zarr=False, **segment_options) -> dict:
    """Each method's (labels, class ids, scores) of ``rgb``, and the seconds per vegetation mode.

    ``to_zarr``: run ``gs.segment_to_zarr`` (labels written chunk by chunk, the colour stage window
    by window) into a temporary folder instead of ``gs.segment``.
    """
    import tempfile

    import napari_gardenseg as gs

    preds, seconds = {}, {}
    for kind in ("exg-fixed", "exg-otsu"):
        if kind in methods:
            preds[kind] = baseline(rgb, kind)
    for veg, names in (("off", ("raw", "crf")), ("on", ("colour", "colour+crf")), ("auto", ("default", "default+crf"))):
        wanted = [n for n in names if n in methods]
        if not wanted:
            continue
        t0 = time.perf_counter()
        options = dict(score_threshold=score_threshold, crf=names[1] in wanted, vegetation=veg, **segment_options)
        with tempfile.TemporaryDirectory() as tmp:
            if to_zarr:
                r = gs.segment_to_zarr(rgb, Path(tmp) / "out.zarr", model, **options)
            else:
                r = gs.segment(rgb, model, **options)
            seconds[veg] = time.perf_counter() - t0
            ones = [1] * len(r.scores)
            preds[names[0]] = (np.asarray(r.labels[:]), ones, r.scores)
            if names[1] in wanted:
                preds[names[1]] = (np.asarray(r.refined[:]), ones, r.scores)
    return preds, seconds


@contextlib.contextmanager
def thinned_detections(share: float, seed: int):
    """While open, ``segment`` keeps only a random ``share`` (0..1) of the network's detections, the
    same ones on every run (``seed``), before the colour stage: photos whose plants the network does
    not know, where colour does most of the work (the network alone sees the same thinning)."""
    from napari_gardenseg import _plant_pixels

    stage = _plant_pixels.vegetation_stage

    def thinned(found, *args, **kwargs):
        keep = np.random.default_rng(seed).random(len(found)) < share
        return stage(found.take(np.flatnonzero(keep)), *args, **kwargs)

    _plant_pixels.vegetation_stage = thinned
    try:
        yield
    finally:
        _plant_pixels.vegetation_stage = stage


def evaluate(
    model,
    photos,
    methods,
    score_threshold,
    per_photo=False,
    crf_fields=None,
    device="cpu",
    keep_detections=None,
    **segment_options,
) -> dict:
    """AP50 of each method, pooled and by kind. ``crf_fields``: CRFParams fields read over the model's stored ones;
    ``device``: where the network and the CRF run ("cpu", "cuda", ...); ``keep_detections``: the share of the
    network's detections kept (:func:`thinned_detections`; None: all)."""
    import napari_gardenseg as gs

    model = gs.load_model(model, device=device)
    if crf_fields:
        segment_options["crf_params"] = gs.CRFParams.from_any(crf_fields, defaults=model.meta.get("crf"))
    gts = [(p["labels"], {int(k): "plant" for k in np.unique(p["labels"]) if k > 0}) for p in photos]
    preds = {m: [] for m in methods}
    rows, total_s = {}, {}
    for i, (p, gt) in enumerate(zip(photos, gts)):
        with contextlib.nullcontext() if keep_detections is None else thinned_detections(keep_detections, i):
            got, secs = run_methods(model, p["rgb"], methods, score_threshold, **segment_options)
        for k, v in secs.items():
            total_s[k] = total_s.get(k, 0.0) + v
        for m in methods:
            preds[m].append(got[m])
        if per_photo:
            rows[p["name"]] = {m: round(coco_ap([gt], [got[m]], PLANT)["AP50"], 3) for m in methods}
            print(p["name"], rows[p["name"]], file=sys.stderr, flush=True)
    out = {
        "model": str(model.source),
        "device": str(model.device),
        "score_threshold": score_threshold,
        "photos": len(photos),
        "instances": int(sum(len(g[1]) for g in gts)),
        "seconds": {k: round(v, 1) for k, v in total_s.items()},
    }
    pooled = {m: coco_ap(gts, preds[m], PLANT) for m in methods}
    out["AP50"] = {m: round(pooled[m]["AP50"], 3) for m in methods}
    out["AP"] = {m: round(pooled[m]["AP"], 3) for m in methods}  # IoU 0.5:0.95: how well the masks fit
    groups = sorted({p["kind"] for p in photos})
    if len(groups) > 1:
        out["by_kind"] = {}
        for g in groups:
            idx = [i for i, p in enumerate(photos) if p["kind"] == g]
            out["by_kind"][g] = {
                m: round(coco_ap([gts[i] for i in idx], [preds[m][i] for i in idx], PLANT)["AP50"], 3) for m in methods
            }
    if per_photo:
        out["per_photo"] = rows
    return out


def recoloured(photos, seed: int = 0) -> list[dict]:
    """The photos with every other plant turned red-purple (R and G swapped inside its reference mask).

    The check that plants which are not green are not cut away: ``recoloured``
    lists the ids of the plants changed, whose recall is reported apart.
    """
    out = []
    for p in photos:
        rgb = p["rgb"].copy()
        ids = [int(k) for k in np.unique(p["labels"]) if k > 0][::2]
        inside = np.isin(p["labels"], ids)
        rgb[inside] = rgb[inside][:, [1, 0, 2]]
        out.append({**p, "name": p["name"] + "-red", "rgb": rgb, "recoloured": ids})
    return out


def through_camera(
    photos, jpeg: int | None = None, blur: float | None = None, shrink: float | None = None
) -> list[dict]:
    """The photos as a camera would spoil them: Gaussian ``blur`` (sigma, pixels), a lower
    resolution (``shrink``: bilinear down to that fraction of the size and back), then JPEG at
    quality ``jpeg``.

    Pillow's encoder (4:2:0 chroma subsampling below quality 95); the labels are
    unchanged. The composites' pasted plants have crisper edges than photographed
    ones: this asks how much a result leans on them (and the bundled model's training
    script uses it to spoil its pasted scenes, ``--real-camera``).
    """
    import io

    from PIL import Image, ImageFilter

    out = []
    for p in photos:
        img = Image.fromarray(p["rgb"])
        if blur:
            img = img.filter(ImageFilter.GaussianBlur(blur))
        if shrink:
            size = (max(8, round(img.width * shrink)), max(8, round(img.height * shrink)))
            img = img.resize(size, Image.BILINEAR).resize((img.width, img.height), Image.BILINEAR)
        if jpeg:
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=jpeg)
            img = Image.open(buf).convert("RGB")
        out.append({**p, "rgb": np.asarray(img)})
    return out


def resized(photos, megapixels: float) -> list[dict]:
    """The photos resized to ``megapixels`` (bicubic) and their labels with them (nearest), as a sharper camera sees them."""
    from PIL import Image

    out = []
    for p in photos:
        h, w = p["labels"].shape
        f = (megapixels * 1e6 / (h * w)) ** 0.5
        size = (round(w * f), round(h * f))
        rgb = np.asarray(Image.fromarray(p["rgb"]).resize(size, Image.BICUBIC))
        labels = np.asarray(Image.fromarray(p["labels"]).resize(size, Image.NEAREST))
        out.append({**p, "rgb": rgb, "labels": labels})
    return out


def at_file_size(photos) -> list[dict]:
    """The photos read at their files' own size (the manifest halves some) and their labels enlarged (nearest)."""
    from PIL import Image

    out = []
    for p in photos:
        if not p.get("resize"):
            out.append(p)
            continue
        with Image.open(SHARED / p["image"]) as im:
            rgb = np.asarray(im.convert("RGB"))
        labels = np.asarray(Image.fromarray(p["labels"]).resize((rgb.shape[1], rgb.shape[0]), Image.NEAREST))
        out.append({**p, "rgb": rgb, "labels": labels})
    return out


def on_canvas(photos, value: int) -> list[dict]:
    """Each photo on a canvas of ``value`` (0 black, 255 white) twice its height and width, as an
    orthomosaic's nodata border surrounds its pixels; labels 0 there."""
    out = []
    for p in photos:
        h, w = p["labels"].shape
        rgb = np.full((2 * h, 2 * w, 3), value, np.uint8)
        labels = np.zeros((2 * h, 2 * w), np.int32)
        rgb[h // 2 : h // 2 + h, w // 3 : w // 3 + w] = p["rgb"]
        labels[h // 2 : h // 2 + h, w // 3 : w // 3 + w] = p["labels"]
        out.append({**p, "rgb": rgb, "labels": labels})
    return out


def strips(photos, bands: int) -> list[dict]:
    """Each photo cut into ``bands`` horizontal bands laid side by side: a strip (a stitched crop row).

    The bands are joined as :func:`mosaic` joins photos: a plant cut by a band's
    edge becomes one instance per band it lies in.
    """
    out = []
    for p in photos:
        h = p["rgb"].shape[0] // bands
        cut = [{"rgb": p["rgb"][i * h : (i + 1) * h], "labels": p["labels"][i * h : (i + 1) * h]} for i in range(bands)]
        joined = mosaic(cut, bands)[0]
        out.append({**p, "name": f"{p['name']} in {bands} bands", "rgb": joined["rgb"], "labels": joined["labels"]})
    return out


def mosaic(photos, cols: int) -> list[dict]:
    """The photos side by side, ``cols`` to a row, as one big image (a drone's orthomosaic of many beds).

    Rows are as tall as their tallest photo; the gaps are black. Label ids are
    made unique across the photos.
    """
    rows = [photos[i : i + cols] for i in range(0, len(photos), cols)]
    heights = [max(p["rgb"].shape[0] for p in row) for row in rows]
    width = max(sum(p["rgb"].shape[1] for p in row) for row in rows)
    rgb = np.zeros((sum(heights), width, 3), np.uint8)
    labels = np.zeros(rgb.shape[:2], np.int32)
    y = n = 0
    for row, height in zip(rows, heights):
        x = 0
        for p in row:
            h, w = p["labels"].shape
            lab = p["labels"].astype(np.int32)
            rgb[y : y + h, x : x + w] = p["rgb"]
            labels[y : y + h, x : x + w] = np.where(lab > 0, lab + n, 0)
            n, x = n + int(lab.max()), x + w
        y += height
    return [
        {"name": f"mosaic of {len(photos)}", "kind": f"mosaic of {len(photos)} photos", "rgb": rgb, "labels": labels}
    ]


def recall_of(photos, model, vegetation, score_threshold) -> dict:
    """Recall at IoU >= 0.5 of the recoloured plants and of the others, with ``vegetation`` mode."""
    from eval_garden import matched_iou

    import napari_gardenseg as gs

    hits = {"red": [0, 0], "green": [0, 0]}
    for p in photos:
        r = gs.segment(p["rgb"], model, score_threshold=score_threshold, vegetation=vegetation)
        for k in [int(k) for k in np.unique(p["labels"]) if k > 0]:
            ious, _, _ = matched_iou((p["labels"] == k).astype(np.int32), r.refined, r.scores)
            key = "red" if k in p["recoloured"] else "green"
            hits[key][0] += int(bool(ious))
            hits[key][1] += 1
    return {k: round(a / max(b, 1), 3) for k, (a, b) in hits.items()}


def counts_at(photos, model, score_threshold) -> dict:
    """Precision, recall and F1 at IoU >= 0.5 of the labels ``segment`` gives with its defaults (CRF off) at
    ``score_threshold``: what a user sees, where AP50 ranks every instance. Matched as
    :func:`eval_garden.matches` does (greedy by score); per source ("model" / "colour") too."""
    from collections import Counter

    from eval_garden import matches

    import napari_gardenseg as gs

    tot = Counter()
    for p in photos:
        r = gs.segment(p["rgb"], model, score_threshold=score_threshold, crf=False)
        found, n_ref, n_det = matches(np.asarray(p["labels"]), np.asarray(r.labels), r.scores)
        sources = r.sources or ["model"] * len(r.scores)
        tot.update({"instances": n_det, "matched": len(found), "plants": n_ref})
        tot.update(f"instances_{sources[k - 1]}" for k in np.unique(r.labels) if k > 0)
        tot.update(f"matched_{sources[k - 1]}" for k in found)
    precision, recall = tot["matched"] / max(tot["instances"], 1), tot["matched"] / max(tot["plants"], 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-9)
    return {
        "score_threshold": score_threshold,
        **tot,
        **{k: round(v, 3) for k, v in {"precision": precision, "recall": recall, "F1": f1}.items()},
    }


def fine_tuned(
    photos,
    counts,
    methods,
    score_threshold,
    iterations=200,
    out_dir="runs/eval_real",
    train_kwargs=None,
    **segment_options,
) -> dict:
    """AP50 after ``gs.train`` on the first k AgIR photos (their references as painted labels), for k in ``counts``.

    Scored on every photo not trained on (the other AgIR photos, the tray, the composites).
    ``train_kwargs``: further ``gs.train`` arguments (``--set key=value``); ``segment_options``:
    ``gs.segment``'s, for the trained and the bundled model alike (``--mask-threshold``, ``--tile-size``).
    """
    import napari_gardenseg as gs

    agir = [p for p in photos if p["name"].startswith("agir-")]
    out = {}
    for k in counts:
        train_on = agir[:k]
        samples = [
            (p["rgb"], p["labels"], {int(i): "plant" for i in np.unique(p["labels"]) if i > 0}) for p in train_on
        ]
        t0 = time.perf_counter()
        path = gs.train(
            samples,
            base="garden",
            iterations=iterations,
            output=Path(out_dir) / f"painted_{k}.pt",
            overwrite=True,
            **{"device": segment_options.get("device", "cpu"), **(train_kwargs or {})},
        )
        minutes = (time.perf_counter() - t0) / 60
        rest = [p for p in photos if p not in train_on]
        res = evaluate(path, rest, methods, score_threshold, **segment_options)
        res["zero-shot on the same photos"] = evaluate("garden", rest, methods, score_threshold, **segment_options)[
            "AP50"
        ]
        if any(p["name"].startswith("touching-") for p in photos):
            # the composites cut plants from every AgIR photo, the trained ones too: these are cut
            # only from photos not trained on, so a gain here is not the painted plants seen again
            unseen = touching_set(species=[p["name"][len("agir-") :] for p in agir[k:]])
            res["touching, species not trained on"] = {
                "after": evaluate(path, unseen, methods, score_threshold, **segment_options)["AP50"],
                "zero-shot": evaluate("garden", unseen, methods, score_threshold, **segment_options)["AP50"],
            }
        res["trained_on"] = [p["name"] for p in train_on]
        res["train_minutes"] = round(minutes, 1)
        res["train_kwargs"] = train_kwargs or {}
        res["segment_options"] = segment_options
        out[f"train on {k}"] = res
        summary = {"AP50": res["AP50"], "zero-shot": res["zero-shot on the same photos"], "minutes": round(minutes, 1)}
        if "touching, species not trained on" in res:
            summary["touching, species not trained on"] = res["touching, species not trained on"]
        print(json.dumps({f"train on {k}": summary}), file=sys.stderr, flush=True)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="garden")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS) + ["default", "default+crf"])
    p.add_argument("--only", nargs="+", help="photo names from real_dev/manifest.json (or touching-<k>)")
    p.add_argument("--sets", nargs="+", default=["photos", "touching"], choices=["photos", "touching"])
    p.add_argument(
        "--species",
        nargs="+",
        choices=agir_species(),
        help="AgIR species to score (pots, and composites cut from them alone); default: all",
    )
    p.add_argument(
        "--held-out",
        action="store_true",
        help="what the bundled model's training never saw: the species " + " ".join(HELD_OUT_SPECIES) + ", "
        "without the photos it saw part of (the tray); the touching composites' soil is still cut from all "
        "eleven AgIR photos (the held-out species have no bare square), the pot mix its training scenes used",
    )
    p.add_argument("--score-threshold", type=float, default=0.05)
    p.add_argument(
        "--device", default="cpu", help="where the network and the CRF run: cpu, cuda, ... (default: %(default)s)"
    )
    p.add_argument("--per-photo", action="store_true")
    p.add_argument(
        "--fine-tune",
        nargs="+",
        type=int,
        metavar="K",
        help="instead: AP50 after gs.train on the first K AgIR photos, scored on the others",
    )
    p.add_argument("--set", action="append", default=[], help="key=value passed to gs.train (with --fine-tune)")
    p.add_argument("--crf", action="append", default=[], help="key=value: a CRFParams field over the model's")
    p.add_argument(
        "--recolour",
        action="store_true",
        help="instead: recall of plants turned red-purple, vegetation auto vs off (non-green plants kept?)",
    )
    p.add_argument(
        "--counts",
        action="store_true",
        help="instead: precision / recall / F1 at IoU 0.5 of the defaults' labels at --score-threshold",
    )
    p.add_argument("--jpeg", type=int, metavar="Q", help="re-encode every image as JPEG at quality Q first")
    p.add_argument("--blur", type=float, metavar="SIGMA", help="blur every image (Gaussian, pixels) first")
    from photo_conditions import CONDITIONS

    p.add_argument(
        "--condition",
        choices=list(CONDITIONS),
        metavar="NAME",
        help=f"what is in the photo or how it was taken (benchmarks/photo_conditions.py): {', '.join(CONDITIONS)}",
    )
    p.add_argument(
        "--keep-detections",
        type=float,
        metavar="SHARE",
        help="keep only a random SHARE (0..1) of the network's detections, the same for every method (one draw, "
        "seeded by the photo's place in the set): as if the network did not know these plants and found few of "
        "them (0: none, colour alone)",
    )
    p.add_argument("--mask-threshold", type=float, help="segment's mask_threshold (default: segment's)")
    p.add_argument("--tile-size", type=int, metavar="PX", help="segment in tiles of PX pixels (a quarter overlapping)")
    p.add_argument(
        "--megapixels",
        type=float,
        nargs="+",
        metavar="MP",
        help="resize every image and its labels to MP first (0: as they are); several: the AP50 table at each size "
        "and its mean, a check of how much the figures move when only the photos' size changes",
    )
    p.add_argument("--mosaic", type=int, metavar="COLS", help="join the photos into one image, COLS to a row, first")
    p.add_argument("--strips", type=int, metavar="N", help="cut each photo into N bands laid side by side, first")
    p.add_argument("--file-size", action="store_true", help="read the photos at their files' size (not the manifest's)")
    p.add_argument("--canvas", type=int, metavar="V", help="put every photo on a canvas of value V, 4x its area, first")
    p.add_argument("--zarr", action="store_true", help="run gs.segment_to_zarr (the colour stage window by window)")
    p.add_argument("--block", type=int, metavar="PX", help="with --zarr: the colour stage's windows' core side")
    args = p.parse_args(argv)
    if not (SHARED / "real" / "photos").is_dir():
        raise SystemExit(
            f"eval_real.py: the labelled real photos are not here ({SHARED / 'real' / 'photos'}): they are the "
            "developers' photo set beside the repository (sources and licences in real_dev/README.md), not "
            "part of it; the figures it gives are in README.md and docs/benchmarks.md"
        )
    run_options = {"tile_size": args.tile_size, "tile_overlap": args.tile_size // 4} if args.tile_size else {}
    run_options["device"] = args.device
    if args.mask_threshold is not None:
        run_options["mask_threshold"] = args.mask_threshold
    if args.zarr:
        run_options["to_zarr"] = True
    if args.block:
        from napari_gardenseg import _vegetation_windows

        _vegetation_windows.BLOCK = args.block
    if args.held_out and args.species:
        p.error("--held-out names its species itself; give --species or --held-out, not both")
    if args.keep_detections is not None and (args.fine_tune or args.counts or args.recolour):
        p.error(
            "--keep-detections thins the detections of the AP50 table only, not --fine-tune, --counts or --recolour"
        )
    if args.keep_detections is not None and not 0.0 <= args.keep_detections <= 1.0:
        p.error(f"--keep-detections is a share between 0 and 1, got {args.keep_detections}")
    species = list(HELD_OUT_SPECIES) if args.held_out else args.species
    photos = load_set(args.only, args.sets, species, unseen=args.held_out)
    if args.file_size:
        photos = at_file_size(photos)
    sizes = args.megapixels or [0.0]
    if len(sizes) > 1 and (args.fine_tune or args.counts or args.recolour):
        p.error("several --megapixels are for the AP50 table only, not --fine-tune, --counts or --recolour")
    if any(mp < 0 for mp in sizes):
        p.error(f"--megapixels must be 0 (the photos as they are) or more, got {sizes}")
    by_size = {}
    for mp in sizes:
        result = _result_at(args, resized(photos, mp) if mp else photos, run_options)
        by_size["as loaded" if mp == 0 else f"{mp:g} MP"] = result
    if len(by_size) == 1:
        result = next(iter(by_size.values()))
    else:
        result = {"sizes": {k: {f: r[f] for f in ("AP50", "by_kind", "seconds") if f in r} for k, r in by_size.items()}}
        ap50 = {m: [r["AP50"][m] for r in by_size.values()] for m in args.methods}
        result["AP50 mean over the sizes"] = {m: round(float(np.mean(v)), 3) for m, v in ap50.items()}
        result["AP50 range over the sizes"] = {m: [min(v), max(v)] for m, v in ap50.items()}
    print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}, indent=1))


def _result_at(args, photos, run_options) -> dict:
    """What ``main`` prints for ``photos`` (loaded and resized): the rest of the options applied, then scored."""
    if args.condition:
        from photo_conditions import conditioned

        photos = conditioned(photos, args.condition)
    if args.jpeg or args.blur:
        photos = through_camera(photos, args.jpeg, args.blur)
    if args.canvas is not None:
        photos = on_canvas(photos, args.canvas)
    if args.strips:
        photos = strips(photos, args.strips)
    if args.mosaic:
        photos = mosaic(photos, args.mosaic)
    if args.fine_tune:
        kwargs = {k: ast.literal_eval(v) for k, v in (item.split("=", 1) for item in args.set)}
        result = fine_tuned(
            photos, args.fine_tune, args.methods, args.score_threshold, train_kwargs=kwargs, **run_options
        )
    elif args.counts:
        result = counts_at(photos, args.model, args.score_threshold)
    elif args.recolour:
        red = recoloured(photos)
        result = {v: recall_of(red, args.model, v, args.score_threshold) for v in ("off", "auto")}
    else:
        result = evaluate(
            args.model,
            photos,
            args.methods,
            args.score_threshold,
            args.per_photo,
            crf_fields={k: ast.literal_eval(v) for k, v in (item.split("=", 1) for item in args.crf)},
            keep_detections=args.keep_detections,
            **run_options,
        )
    return result


if __name__ == "__main__":
    main()
