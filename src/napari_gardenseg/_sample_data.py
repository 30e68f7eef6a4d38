"""Sample data for napari's File > Open Sample menu (declared in napari.yaml).

The image ships with the package (``data/garden_sample.png``, written by
``scripts/make_sample.py`` from ``garden_scene(8_000_001, shape=(768, 1024))``),
so opening it needs no network and does not import torch.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

SAMPLE_FILE = "garden_sample.png"


def load_garden_sample() -> np.ndarray:
    """The sample as an RGB uint8 array of shape (768, 1024, 3), read by the package's one reader."""
    from ._reader import read_image  # Pillow and numpy only: no torch

    with resources.as_file(resources.files("napari_gardenseg") / "data" / SAMPLE_FILE) as path:
        return read_image(path).data


def garden_sample():
    """npe2 sample-data command: one RGB image layer named "garden"."""
    return [(load_garden_sample(), {"name": "garden"}, "image")]
