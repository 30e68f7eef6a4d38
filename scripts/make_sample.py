"""Write the sample image that napari's File > Open Sample > Garden (synthetic) shows.

    python scripts/make_sample.py

The seed (8,000,001) lies outside the training seeds (0..599) and the
evaluation seeds (9,000,000 and up), so the sample is an image no model was
trained or scored on. The PNG ships in the package (src/napari_gardenseg/data),
so opening the sample needs no download and no torch.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from napari_gardenseg.synthetic import garden_scene

SEED = 8_000_001
SHAPE = (768, 1024)
OUT = Path(__file__).resolve().parents[1] / "src" / "napari_gardenseg" / "data" / "garden_sample.png"


def main() -> None:
    image, labels, classes = garden_scene(SEED, shape=SHAPE)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # optimize=True: lossless, only a smaller file
    Image.fromarray(image).save(OUT, optimize=True)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB): {image.shape}, {len(classes)} plants")


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
