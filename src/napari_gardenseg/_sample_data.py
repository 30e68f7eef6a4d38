"""Sample data for napari's File > Open Sample menu (declared in napari.yaml) and ``gardenseg segment --sample``.

Both images ship with the package, so opening them needs no network and does
not import torch (credits and licences in ``data/CREDITS.md``):

* ``data/seedling_tray.jpg``: a real photograph, Arabidopsis rosettes in
  trays from above (PlantCV, Donald Danforth Plant Science Center, CC BY 4.0);
  the main sample.
* ``data/garden_sample.png``: a synthetic garden scene, written by
  ``scripts/make_sample.py`` from ``garden_scene(8_000_001, shape=(768, 1024))``.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

SAMPLE_FILE = "garden_sample.png"
PHOTO_FILE = "seedling_tray.jpg"


def sample_path(name: str = PHOTO_FILE):
    """A context manager giving the bundled sample ``name`` as a file path (``importlib.resources.as_file``)."""
    return resources.as_file(resources.files("napari_gardenseg") / "data" / name)


def load_photo_sample() -> np.ndarray:
    """The photograph sample as an RGB uint8 array of shape (972, 1296, 3)."""
    from ._image_reader import read_image  # Pillow and numpy only: no torch

    with sample_path(PHOTO_FILE) as path:
        return read_image(path).data


def photo_sample():
    """npe2 sample-data command: one RGB image layer named "seedling tray"."""
    return [(load_photo_sample(), {"name": "seedling tray"}, "image")]


def load_garden_sample() -> np.ndarray:
    """The sample as an RGB uint8 array of shape (768, 1024, 3), read by the package's one reader."""
    from ._image_reader import read_image  # Pillow and numpy only: no torch

    with resources.as_file(resources.files("napari_gardenseg") / "data" / SAMPLE_FILE) as path:
        return read_image(path).data


def garden_sample():
    """npe2 sample-data command: one RGB image layer named "garden"."""
    return [(load_garden_sample(), {"name": "garden"}, "image")]
