"""Quality of a model on held-out synthetic garden scenes (raw and CRF-refined masks).

    python benchmarks/eval_garden.py                       # bundled model, seeds 9,000,000..9,000,099
    python benchmarks/eval_garden.py --model runs/garden.pt --count 20
    python benchmarks/eval_garden.py --style photo --count 50 # photograph-like scenes

Prints COCO mask AP50 and AP (pycocotools) per class and class-agnostic
(every instance one "plant"), and the mean IoU of matched
instances (class-agnostic, IoU >= 0.5, greedy by score), for the raw Mask R-CNN
labels and for the CRF-refined ones. Seeds from 9,000,000 up are never used for
training or tuning.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from collections import Counter

import numpy as np
from _memory import peak_rss_mb


def _rle(mask):
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _rle_of_crop(crop, y0, x0, shape):
    """COCO RLE of a full (H, W) mask that is ``crop`` (bool) at (y0, x0) and empty elsewhere: the
    same as :func:`_rle` of the full mask, without making it (a 48 MP image has a thousand instances)."""
    from pycocotools import mask as mask_utils

    h, w = shape
    if crop.shape[0] < h:  # a zero row below each column: runs never wrap into the next column
        crop = np.vstack([crop, np.zeros((1, crop.shape[1]), bool)])
    hc = crop.shape[0]
    d = np.diff(np.concatenate([[0], crop.ravel(order="F").astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)

    def full(p):
        return (x0 + p // hc) * h + y0 + p % hc

    s_full, e_full = full(starts), full(ends - 1) + 1
    bounds = np.empty(2 * len(starts), np.int64)
    bounds[0::2], bounds[1::2] = s_full, e_full
    counts = np.diff(np.concatenate([[0], bounds, [h * w]])).tolist()
    if len(counts) > 1 and counts[-1] == 0:  # pycocotools ends on the last run that is not empty
        counts.pop()
    rle = mask_utils.frPyObjects({"counts": counts, "size": [h, w]}, h, w)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def coco_ap(gts, dts, class_names) -> dict:
    """gts: [(labels, {id: class})], dts: [(labels, class_ids, scores)] -> AP, AP50."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    from scipy import ndimage

    index = {n: i for i, n in enumerate(class_names)}
    images, gt_anns, dt_anns = [], [], []
    for img_id, ((glab, gcls), (dlab, dcls, dsc)) in enumerate(zip(gts, dts), start=1):
        h, w = glab.shape
        images.append({"id": img_id, "height": h, "width": w})
        for k, name in gcls.items():
            m = glab == k
            ys, xs = np.nonzero(m)
            gt_anns.append(
                {
                    "id": len(gt_anns) + 1,
                    "image_id": img_id,
                    "category_id": index[name],
                    "segmentation": _rle(m),
                    "area": float(m.sum()),
                    "iscrowd": 0,
                    "bbox": [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)],
                }
            )
        dlab = np.asarray(dlab)
        boxes = ndimage.find_objects(dlab.astype(np.int32, copy=False), max_label=len(dsc))
        for i, (cid, s) in enumerate(zip(dcls, dsc)):
            if boxes[i] is not None:
                sy, sx = boxes[i]
                rle = _rle_of_crop(dlab[sy, sx] == i + 1, sy.start, sx.start, (h, w))
                dt_anns.append({"image_id": img_id, "category_id": int(cid), "segmentation": rle, "score": float(s)})
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": gt_anns,
        "categories": [{"id": i, "name": n} for i, n in enumerate(class_names) if i > 0],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        if not dt_anns:
            return {"AP": 0.0, "AP50": 0.0}
        dt = gt.loadRes(dt_anns)
        ev = COCOeval(gt, dt, iouType="segm")
        # COCO's default counts 100 detections an image; a tray or a mosaic holds more plants, and
        # the detections past 100 would go unscored. So the last limit is the most any image has,
        # and AP and AP50 are read at it from the accumulated precision (summarize() reads AP at
        # a literal 100), as summarize() averages them: over the cells that are not -1.
        per_image = Counter(a["image_id"] for a in dt_anns)
        ev.params.maxDets = [1, 10, max(100, *per_image.values())]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][:, :, :, 0, -1]  # IoU thresholds, recall, class; area "all", last limit

    def mean(p):
        p = p[p > -1]
        return float(p.mean()) if p.size else -1.0

    return {"AP": mean(precision), "AP50": mean(precision[list(ev.params.iouThrs).index(0.5)])}


def matches(gt_labels, dt_labels, dt_scores) -> tuple[dict[int, tuple[int, float]], int, int]:
    """Greedy class-agnostic matching by score at IoU >= 0.5: ({detection id: (reference id, IoU)}
    in score order, n_gt, n_dt). Ids are label values; ``dt_scores[k - 1]`` is detection k's."""
    g_ids = [k for k in np.unique(gt_labels) if k > 0]
    d_ids = [k for k in np.unique(dt_labels) if k > 0]
    if not g_ids or not d_ids:
        return {}, len(g_ids), len(d_ids)
    # pairwise intersections from one joint histogram
    joint = np.bincount(
        gt_labels.ravel().astype(np.int64) * (dt_labels.max() + 1) + dt_labels.ravel(),
        minlength=(gt_labels.max() + 1) * (dt_labels.max() + 1),
    )
    inter = joint.reshape(gt_labels.max() + 1, dt_labels.max() + 1)
    g_area = inter.sum(1)
    d_area = inter.sum(0)
    used, found = set(), {}
    for d in sorted(d_ids, key=lambda k: -dt_scores[k - 1]):
        best, best_g = 0.5, None
        for g in g_ids:
            if g in used:
                continue
            iou = inter[g, d] / (g_area[g] + d_area[d] - inter[g, d])
            if iou >= best:
                best, best_g = iou, g
        if best_g is not None:
            used.add(best_g)
            found[int(d)] = (int(best_g), float(best))
    return found, len(g_ids), len(d_ids)


def matched_iou(gt_labels, dt_labels, dt_scores) -> tuple[list[float], int, int]:
    """Greedy class-agnostic matching by score at IoU >= 0.5: (IoUs of matches, n_gt, n_dt)."""
    found, n_gt, n_dt = matches(gt_labels, dt_labels, dt_scores)
    return [iou for _, iou in found.values()], n_gt, n_dt


def _agnostic(gts, dts):
    gts = [(lab, {k: "plant" for k in cls}) for lab, cls in gts]
    dts = [(lab, [1] * len(cid), sc) for lab, cid, sc in dts]
    return gts, dts


def evaluate(
    model,
    seeds,
    crf_params=None,
    score_threshold=0.5,
    shape=(512, 512),
    progress=True,
    vegetation="auto",
    style="garden",
    scale=None,
    mask_threshold=None,
) -> dict:
    import napari_gardenseg as gs
    from napari_gardenseg.synthetic import garden_scene

    model = gs.load_model(model, device="cpu")
    gts, raw, ref = [], [], []
    ious_raw, ious_ref, n_gt, n_dt = [], [], 0, 0
    t_model = t_total = 0.0
    for k, seed in enumerate(seeds):
        image, labels, classes = garden_scene(seed, shape=shape, style=style)
        t0 = time.perf_counter()
        r0 = gs.segment(
            image,
            model,
            score_threshold=score_threshold,
            mask_threshold=mask_threshold,
            crf=False,
            scale=scale,
            vegetation=vegetation,
        )
        t1 = time.perf_counter()
        r = gs.segment(
            image,
            model,
            score_threshold=score_threshold,
            mask_threshold=mask_threshold,
            crf=True,
            crf_params=crf_params,
            scale=scale,
            vegetation=vegetation,
        )
        t2 = time.perf_counter()
        t_model += t1 - t0
        t_total += t2 - t1
        assert np.array_equal(r.labels, r0.labels)
        gts.append((labels, classes))
        raw.append((r.labels, r.class_ids, r.scores))
        ref.append((r.refined, r.class_ids, r.scores))
        a, g, d = matched_iou(labels, r.labels, r.scores)
        b, _, _ = matched_iou(labels, r.refined, r.scores)
        ious_raw += a
        ious_ref += b
        n_gt += g
        n_dt += d
        if progress and (k + 1) % 10 == 0:
            print(f"  {k + 1}/{len(seeds)} scenes", flush=True)
    agn_raw, agn_ref = _agnostic(gts, raw), _agnostic(gts, ref)
    plant = ["__background__", "plant"]
    out = {
        "model": str(model.source),
        "style": style,
        "scale": scale,
        "mask_threshold": r.meta["mask_threshold"],  # the model's own unless given
        "scenes": len(seeds),
        "gt_instances": n_gt,
        "detections": n_dt,
        "raw": {
            **coco_ap(gts, raw, model.class_names),
            "mean_iou_matched": float(np.mean(ious_raw or [0])),
            "matched": len(ious_raw),
        },
        "crf": {
            **coco_ap(gts, ref, model.class_names),
            "mean_iou_matched": float(np.mean(ious_ref or [0])),
            "matched": len(ious_ref),
        },
        "agnostic_raw": coco_ap(agn_raw[0], agn_raw[1], plant),
        "agnostic_crf": coco_ap(agn_ref[0], agn_ref[1], plant),
        "seconds_per_scene_model": round(t_model / len(seeds), 3),
        "seconds_per_scene_model_and_crf": round(t_total / len(seeds), 3),
    }
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="garden")
    p.add_argument("--start", type=int, default=9_000_000)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--score-threshold", type=float, default=0.5)
    p.add_argument("--style", choices=("garden", "photo"), default="garden")
    p.add_argument("--vegetation", choices=("auto", "on", "off"), default="auto", help="segment's vegetation stage")
    p.add_argument("--scale", default=None, help="segment's scale: a number or 'auto' (default: the model's resize)")
    p.add_argument("--mask-threshold", type=float, help="segment's mask_threshold (default: the model's own)")
    args = p.parse_args(argv)
    scale = args.scale if args.scale in (None, "auto") else float(args.scale)
    seeds = range(args.start, args.start + args.count)
    result = evaluate(
        args.model,
        seeds,
        score_threshold=args.score_threshold,
        style=args.style,
        scale=scale,
        vegetation=args.vegetation,
        mask_threshold=args.mask_threshold,
    )
    print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}, indent=2))


if __name__ == "__main__":
    main()
