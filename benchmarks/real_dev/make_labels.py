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
        }
    )
    (HERE / "manifest.json").write_text(json.dumps(entries, indent=1) + "\n")
    for e in entries:
        print(e["name"], e["instances"])


if __name__ == "__main__":
    main()
