"""Build the labelled real development set from the photos in ``../shared/real`` (run once; output is committed).

    python benchmarks/real_dev/make_labels.py

How each reference was made (see README.md beside this file):

* ``agir-*``: AgIR-CVToolkit's human-verified binary plant masks (MIT, Precision
  Sustainable Ag), resized with nearest neighbour to the photo, which is halved
  (2200 px -> 1100 px wide, about 0.8 MP, near the size of a field photo).
  Instances are the mask's connected components; components under 0.05% of the
  image are fragments and are dropped. Plants are one per pot; where two plants'
  leaves touch, their component is one instance (this happens in a few photos:
  the reference then under-counts, and a correct split is scored as wrong).
* ``tray``: PlantCV's approximate tray labels (``real/tray_labels_approx.png``),
  unchanged (made from an excess-green threshold, so they favour colour rules).
* ``field-*`` and ``points-*``: one point per plant, placed by looking at the photo
  (:data:`POINTS`; the Arabidopsis tray's points are PlantCV's own per-plant
  centres of mass from ``arabidopsis_results.json``, checked by eye), and the
  plant's pixels from colour: excess green (chromatic coordinates) above the
  photo's Otsu threshold (or a threshold chosen by eye where Otsu missed faint
  plants: the OpenWeedLocator frames), each such pixel given to the nearest point within
  ``radius`` pixels. Made from colour, so these references favour colour rules
  too; they do count plants as a person sees them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import measure, morphology

HERE = Path(__file__).resolve().parent
REAL = HERE.parents[2] / "shared" / "real"
AGIR = REAL / "photos" / "agir-cvtoolkit"
Image.MAX_IMAGE_PIXELS = None


def agir(name: str) -> dict:
    photo = AGIR / f"{name}_original.jpg"
    mask_file = next(AGIR.glob(f"{name}_mask.*"))
    with Image.open(photo) as im:
        size = (im.size[0] // 2, im.size[1] // 2)
    with Image.open(mask_file) as m:
        mask = np.asarray(m.convert("RGB").resize(size, Image.NEAREST)).max(axis=-1)
    mask = mask > (127 if mask_file.suffix == ".jpg" else 0)
    labels = measure.label(mask)
    labels = morphology.remove_small_objects(labels, max_size=int(0.0005 * mask.size))
    labels, _, _ = __import__("skimage.segmentation", fromlist=["x"]).relabel_sequential(labels)
    out = HERE / f"agir-{name}_labels.png"
    Image.fromarray(labels.astype(np.uint16)).save(out, optimize=True)
    return {
        "name": f"agir-{name}",
        "image": str(photo.relative_to(REAL.parent)),
        "resize": list(size),
        "labels": out.name,
        "instances": int(labels.max()),
        "kind": "pots (human-verified masks)",
    }


# one (x, y) per plant in the (resized) photo's pixels, placed by eye; radius: the largest plant's reach
POINTS = {
    "field-owl-1": {
        "image": "photos/openweedlocator-tools/owl_frame1.jpg",
        "radius": 60,
        "threshold": 0.06,
        "points": [(228, 15), (205, 215), (310, 262), (405, 10)],
    },
    "field-owl-2": {
        "image": "photos/openweedlocator-tools/owl_frame2.jpg",
        "radius": 60,
        "threshold": 0.06,
        "points": [(100, 62), (330, 65), (225, 130), (315, 235)],
    },
    "field-owl-3": {
        "image": "photos/openweedlocator-tools/owl_frame3.jpg",
        "radius": 60,
        "threshold": 0.06,
        "points": [(92, 65), (113, 60), (250, 45), (100, 240)],
    },
    "points-seedling-flats": {
        "image": "photos/plantcv/original-image.jpg",
        "radius": 32,
        "points": [
            (x, y)
            for y, xs in (
                (80, (28, 95, 170, 232, 305, 385)),
                (145, (35, 100, 170, 237, 308, 378)),
                (215, (22, 95, 168, 238, 310, 378)),
            )
            for x in xs
        ],
    },
}
ARABIDOPSIS = "photos/plantcv-tutorial-arabidopsis-tray"


def arabidopsis_points() -> list[tuple[int, int]]:
    """PlantCV's centres of mass of the 20 tray cells' plants, halved (the photo is halved); empty cells dropped."""
    obs = json.loads((REAL / ARABIDOPSIS / "arabidopsis_results.json").read_text())["observations"]
    return [
        (round(o["center_of_mass"]["value"][0] / 2), round(o["center_of_mass"]["value"][1] / 2))
        for o in obs.values()
        if o["area"]["value"] > 0
    ]


def from_points(name: str, image: str, points, radius: int, resize=None, threshold=None) -> dict:
    """Instances from one point per plant and colour (see the module docstring)."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    with Image.open(REAL / image) as im:
        im = im.convert("RGB")
        if resize:
            im = im.resize(tuple(resize), Image.BILINEAR)
        rgb = np.asarray(im).astype(np.float64)
    # the textbook index, written out rather than the package's excess_green (whose dark-pixel
    # damping is a choice of the code these references score); near-black pixels have meaningless
    # chromaticity (a few counts decide it): never plants
    chroma = rgb / np.maximum(rgb.sum(-1, keepdims=True), 1)
    exg = np.where(rgb.sum(-1) > 45, 2 * chroma[..., 1] - chroma[..., 0] - chroma[..., 2], -1.0)
    cut = threshold_otsu(exg[exg > -1]) if threshold is None else threshold
    plant = morphology.remove_small_objects(exg > cut, max_size=8)
    # each pixel's nearest point, and how far it is
    seeds = np.zeros(plant.shape, np.int32)
    for i, (x, y) in enumerate(points, start=1):
        seeds[int(y), int(x)] = i
    dist, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    labels = np.where(plant & (dist <= radius), seeds[iy, ix], 0)
    # a point's plant is its pixels connected to the point's largest piece (stray specks of soil
    # colour inside the radius are not the plant)
    out = np.zeros_like(labels)
    k = 0
    for i in range(1, len(points) + 1):
        pieces, n = ndimage.label(labels == i, structure=np.ones((3, 3), bool))
        if n == 0:
            continue
        sizes = np.bincount(pieces.ravel())[1:]
        keep = np.isin(pieces, 1 + np.flatnonzero(sizes >= max(0.1 * sizes.max(), 12)))
        if keep.sum() >= 30:
            k += 1
            out[keep] = k
    path = HERE / f"{name}_labels.png"
    Image.fromarray(out.astype(np.uint16)).save(path, optimize=True)
    return {
        "name": name,
        "image": str(Path("real") / image),
        "resize": list(resize) if resize else None,
        "labels": path.name,
        "instances": int(k),
        "kind": "field and flats (points by eye, pixels from colour)",
    }


# real/tray.jpg is this very tray shrunk; the bundled model's training pasted the rosettes of its
# left half (scripts/train_garden_model.py --cutouts), so both are left out of the held-out set
SEEN_TRAY = "left half: its rosettes are cut-outs in the bundled model's training scenes"


def main():
    entries = [agir(p.name.replace("_original.jpg", "")) for p in sorted(AGIR.glob("*_original.jpg"))]
    tray = np.asarray(Image.open(REAL / "tray_labels_approx.png"))
    entries.append(
        {
            "name": "plantcv-tray",
            "image": "real/tray.jpg",
            "resize": None,
            "labels": "../../../shared/real/tray_labels_approx.png",
            "instances": int(len(np.unique(tray)) - 1),
            "kind": "tray (approximate, from excess green)",
            "seen_in_training": SEEN_TRAY,
        }
    )
    for name, spec in POINTS.items():
        entries.append(from_points(name, **spec))
    arabidopsis = from_points(
        "points-arabidopsis-tray", f"{ARABIDOPSIS}/arabidopsis_tray.jpg", arabidopsis_points(), 90, (1296, 972)
    )
    entries.append({**arabidopsis, "seen_in_training": SEEN_TRAY})
    (HERE / "manifest.json").write_text(json.dumps(entries, indent=1) + "\n")
    for e in entries:
        print(e["name"], e["instances"])


if __name__ == "__main__":
    main()
