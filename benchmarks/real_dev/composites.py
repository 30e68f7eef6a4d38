"""Touching plants with exact references: real plants cut from AgIR photos, pasted in contact on real soil.

The labelled real photos of ``real_dev`` hold plants that barely touch (one
per pot), so they cannot tell whether touching plants are told apart. These
composites can: every plant is a real plant (AgIR-CVToolkit's photos, MIT,
Precision Sustainable Ag) cut on its human-verified mask, shrunk to seedling
size, and pasted onto bare potting soil cut from the same photos, most of
them overlapping a neighbour. The reference is exact (paint order: a later
plant covers an earlier one). Made afresh from ``../shared`` on every run,
deterministically; nothing of the photos is stored in the repository.

Not real photographs: edges are cut, light and shadows do not match. Read the
figures beside the real photos' ones, never alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

AGIR = Path(__file__).resolve().parents[2].parent / "shared" / "real" / "photos" / "agir-cvtoolkit"
Image.MAX_IMAGE_PIXELS = None


def _photo_and_mask(name: str, factor: int = 2):
    photo = AGIR / f"{name}_original.jpg"
    mask_file = next(AGIR.glob(f"{name}_mask.*"))
    with Image.open(photo) as im:
        size = (im.size[0] // factor, im.size[1] // factor)
        rgb = np.asarray(im.convert("RGB").resize(size, Image.BILINEAR))
    with Image.open(mask_file) as m:
        mask = np.asarray(m.convert("RGB").resize(size, Image.NEAREST)).max(axis=-1)
    return rgb, mask > (127 if mask_file.suffix == ".jpg" else 0)


def cutouts_and_soil(rng, species=None, soil_from_all=False):
    """Plants and soil of the AgIR photos (at half resolution): ``plants`` a list of (rgb uint8 (h, w, 3),
    mask bool (h, w)), one per plant of at least 3,000 pixels; ``soil`` 96 x 96 uint8 squares of bare pot
    mix far from any plant. ``species``: AgIR photo names (e.g. "beet") to cut from; None: all 11.
    ``soil_from_all``: soil from all 11 photos whatever ``species`` (each photo is still read once)."""
    from scipy import ndimage
    from skimage import measure

    plants, soil = [], []
    for photo in sorted(AGIR.glob("*_original.jpg")):
        name = photo.name.replace("_original.jpg", "")
        want_plants = species is None or name in species
        if not (want_plants or soil_from_all):
            continue
        rgb, mask = _photo_and_mask(name)
        if want_plants:
            lab = measure.label(mask)
            for r in measure.regionprops(lab):
                if r.area >= 3000:
                    y0, x0, y1, x1 = r.bbox
                    plants.append((rgb[y0:y1, x0:x1].copy(), lab[y0:y1, x0:x1] == r.label))
        # bare soil: squares far from any plant pixel, brown (pot mix), not the black mat
        far = ndimage.distance_transform_edt(~mask) > 20
        for _ in range(40):
            y, x = rng.integers(0, rgb.shape[0] - 96), rng.integers(0, rgb.shape[1] - 96)
            patch = rgb[y : y + 96, x : x + 96]
            dark = (patch.max(axis=-1) < 60).mean()
            brown = patch[..., 0].astype(int) - patch[..., 2] > 12
            if far[y : y + 96, x : x + 96].all() and dark < 0.08 and brown.mean() > 0.8:
                soil.append(patch.copy())
    return plants, soil


def soil_mosaic(rng, soil, shape) -> np.ndarray:
    """uint8 (H, W, 3): ``soil`` squares (96 x 96) laid side by side, each turned at random."""
    h, w = shape
    canvas = np.zeros((h, w, 3), np.uint8)
    for y in range(0, h, 96):
        for x in range(0, w, 96):
            p = np.rot90(soil[rng.integers(len(soil))], rng.integers(4))
            canvas[y : y + 96, x : x + 96] = p[: h - y, : w - x]
    return canvas


def resize_cutout(rgb, mask, factor):
    h, w = mask.shape
    size = (max(4, int(w * factor)), max(4, int(h * factor)))
    rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
    mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.BILINEAR)) > 127
    return rgb, mask


def touching_set(n_images: int = 6, shape=(720, 960), seed: int = 0, species=None) -> list[dict]:
    """``n_images`` composites: dicts with name, kind, rgb (uint8 (H, W, 3)) and labels (int32 (H, W)).

    ``species``: AgIR photo names (e.g. "beet") to cut plants and soil from; None: all 11.
    """
    rng = np.random.default_rng(seed)
    plants, soil = cutouts_and_soil(rng, species)
    if not soil:  # some photos have no bare pot mix far from plants: the ground of all 11 then
        soil = cutouts_and_soil(np.random.default_rng(seed), None)[1]
    h, w = shape
    out = []
    for k in range(n_images):
        canvas = soil_mosaic(rng, soil, shape)
        labels = np.zeros((h, w), np.int32)
        full_area = {}
        # groups of 1-3 plants on a coarse grid; plants of a group in contact (leaves overlapping a little)
        cells = [(y, x) for y in range(3) for x in range(4)]
        rng.shuffle(cells)
        i = 0
        for gy, gx in cells[: int(rng.integers(5, 8))]:
            cy = (gy + 0.5) * h / 3 + rng.uniform(-20, 20)
            cx = (gx + 0.5) * w / 4 + rng.uniform(-20, 20)
            prev = None
            for _ in range(int(rng.choice([1, 2, 2, 3]))):
                rgb, mask = plants[rng.integers(len(plants))]
                rgb, mask = resize_cutout(rgb, mask, rng.uniform(0.4, 0.7))
                if rng.random() < 0.5:
                    rgb, mask = rgb[:, ::-1], mask[:, ::-1]
                ph, pw = mask.shape
                r = np.sqrt(mask.sum() / np.pi)  # radius of the plant's area, not of its box
                if prev is not None:
                    angle = rng.uniform(0, 2 * np.pi)
                    dist = (prev[2] + r) * rng.uniform(0.8, 1.05)
                    cy, cx = prev[0] + dist * np.sin(angle), prev[1] + dist * np.cos(angle)
                y0 = int(np.clip(cy - ph / 2, 0, h - ph))
                x0 = int(np.clip(cx - pw / 2, 0, w - pw))
                i += 1
                region = (slice(y0, y0 + ph), slice(x0, x0 + pw))
                canvas[region][mask] = rgb[mask]
                labels[region][mask] = i
                full_area[i] = int(mask.sum())
                prev = (y0 + ph / 2, x0 + pw / 2, r)
        n_plants = i
        # a plant mostly hidden by later ones is not a plant anyone could outline
        visible = np.bincount(labels.ravel(), minlength=n_plants + 1)
        lut = np.zeros(n_plants + 1, np.int32)
        kept = [i for i in range(1, n_plants + 1) if visible[i] >= 0.5 * full_area[i]]
        lut[kept] = np.arange(1, len(kept) + 1)
        labels = lut[labels]
        out.append(
            {
                "name": f"touching-{k}",
                "kind": "touching composites (AgIR plants on soil)",
                "rgb": canvas,
                "labels": labels,
            }
        )
    return out


if __name__ == "__main__":
    import sys

    for item in touching_set():
        Image.fromarray(item["rgb"]).save(Path(sys.argv[1] if len(sys.argv) > 1 else ".") / f"{item['name']}.png")
        print(item["name"], item["labels"].max())
