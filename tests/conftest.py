import os
import sys

import numpy as np
import pytest

# torch's triton must be imported before any napari viewer maps Mesa's LLVM into
# the process (see napari_gardenseg._compat): import torchvision at collection.
import torchvision.models.detection  # noqa: F401

# Tests never touch the network: COCO weights are never downloaded, and the
# torch hub cache points at an empty folder unless a test fills it.
os.environ["GARDENSEG_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _isolated_torch_home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.getbasetemp() / "torch_home"))


@pytest.fixture(autouse=True)
def _no_model_chosen_by_an_earlier_test():
    """A segmentation widget starts on the model last trained in the session: not another test's."""
    yield
    controls = sys.modules.get("napari_gardenseg._widget_controls")
    if controls is not None:
        controls._chosen = None


@pytest.fixture(autouse=True)
def user_models(tmp_path, monkeypatch):
    """The per-user models folder ($GARDENSEG_HOME/models) of this test: empty, never the real one."""
    monkeypatch.setenv("GARDENSEG_HOME", str(tmp_path / "gardenseg_home"))
    from napari_gardenseg._files import user_models_dir

    return user_models_dir()


@pytest.fixture(scope="session")
def scene():
    from napari_gardenseg.synthetic import garden_scene

    return garden_scene(8_000_123, shape=(256, 256))


@pytest.fixture(scope="session")
def random_maskrcnn():
    """A seeded torchvision Mask R-CNN v2 (no weights downloaded) that reports every detection."""
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

    torch.manual_seed(0)
    net = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=5, min_size=256, max_size=256)
    net.roi_heads.score_thresh = 0.0
    return net.eval()


def rgb_image(h=64, w=80, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three synthetic garden photos of 128 x 128 px, ``scene0.png``..``scene2.png``, in one folder
    (modules of batches that need more define their own)."""
    from PIL import Image

    from napari_gardenseg.synthetic import garden_scene

    folder = tmp_path_factory.mktemp("images")
    paths = []
    for seed in range(3):
        paths.append(folder / f"scene{seed}.png")
        Image.fromarray(garden_scene(seed, (128, 128))[0]).save(paths[-1])
    return paths
