import numpy as np
import pytest

from napari_gardenseg._scale import DEFAULT_BLOB_SIZE_PX, blob_size, estimate_scale
from napari_gardenseg.synthetic import garden_scene


class _Meta:
    def __init__(self, meta):
        self.meta = meta


def _zoom(image, factor):
    from PIL import Image

    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((round(w * factor), round(h * factor)), Image.BILINEAR))


REF = _Meta({"blob_size_px": 24.0})  # a reference that keeps these estimates inside the clip limits


@pytest.mark.parametrize("seed", [11, 12, 13, 16])
def test_estimates_follow_the_zoom_of_the_same_scene(seed):
    image, _, _ = garden_scene(seed, style="photo", shape=(384, 384))
    s1 = estimate_scale(image, REF)
    s2 = estimate_scale(_zoom(image, 2.0), REF)
    assert s1 > 0 and s2 > 0
    assert 0.75 <= (s1 / s2) / 2.0 <= 1.25, (s1, s2)


def test_estimates_follow_the_zoom_of_rendered_scenes():
    # scenes rendered at 2x the size draw plants 2x larger (different layouts: compare medians)
    small = [estimate_scale(garden_scene(s, style="photo", shape=(256, 256))[0], REF) for s in range(20, 36)]
    large = [estimate_scale(garden_scene(s, style="photo", shape=(512, 512))[0], REF) for s in range(20, 36)]
    ratio = np.median(small) / np.median(large)
    assert 0.75 <= ratio / 2.0 <= 1.25, (small, large)


def test_uses_the_models_reference_and_handles_no_vegetation():
    image, _, _ = garden_scene(5, style="photo", shape=(256, 256), n_plants=(8, 12))
    measured = blob_size(image.astype(np.float32) / 255)
    assert measured is not None and measured > 3
    assert estimate_scale(image, _Meta({"blob_size_px": 2 * measured})) == pytest.approx(2.0, rel=1e-6)
    assert estimate_scale(image, None) == pytest.approx(DEFAULT_BLOB_SIZE_PX / measured, rel=1e-6)
    soil = np.full((64, 64, 3), (110, 80, 60), np.uint8)
    assert estimate_scale(soil) == 1.0
    with pytest.raises(ValueError, match="rgb"):
        estimate_scale(np.zeros((10, 10)))


def test_a_strip_thinner_than_the_measuring_step_is_measured_without_warnings():
    import warnings

    strip = np.full((1, 3000, 3), (110, 80, 60), np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert estimate_scale(strip) == 1.0


def test_lazy_source_gives_the_same_estimate():
    from napari_gardenseg._image_source import ImageSource

    image, _, _ = garden_scene(6, style="photo", shape=(256, 256))
    assert estimate_scale(ImageSource(image)) == pytest.approx(estimate_scale(image), rel=1e-6)


def test_bundled_model_reference():
    import napari_gardenseg as gs

    model = gs.load_model("garden", device="cpu")
    image, _, _ = garden_scene(7, style="photo", shape=(256, 256))
    scale = estimate_scale(image, model)
    # the model's own plant size over the photo's, strictly inside the limits (so no clip decided it)
    expected = model.meta["blob_size_px"] / blob_size(image.astype(np.float32) / 255)
    assert 0.1 < expected < 8.0 and scale == pytest.approx(expected, rel=1e-6)
    assert scale != pytest.approx(estimate_scale(image), rel=0.05)  # not the default reference's
