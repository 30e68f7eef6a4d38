"""A plane too big for memory: tiled, labels in a zarr store, shown as a lazy multiscale Labels layer."""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari")
da = pytest.importorskip("dask.array")
from napari.components import ViewerModel  # noqa: E402

from napari_gardenseg import _planes, segment  # noqa: E402
from napari_gardenseg._layers import segment_layer  # noqa: E402
from napari_gardenseg._options import SegmentOptions  # noqa: E402
from napari_gardenseg._plane_run import run_planes  # noqa: E402
from napari_gardenseg._planes import plane_source  # noqa: E402
from napari_gardenseg.synthetic import garden_scene  # noqa: E402


@pytest.fixture
def small_limit(monkeypatch, tmp_path):
    # stand-in for a 20k x 20k mosaic: any plane over 0.2 Mpx counts as too big for memory
    monkeypatch.setattr(_planes, "MAX_PLANE_PIXELS", 200_000)
    monkeypatch.setenv("GARDENSEG_HOME", str(tmp_path))
    return tmp_path


def test_big_plane_goes_to_zarr_and_a_lazy_pyramid(small_limit):
    image = garden_scene(9_000_400, shape=(768, 1280), n_plants=(12, 16))[0]
    viewer = ViewerModel()
    layer = viewer.add_image(da.from_array(image, chunks=(256, 256, 3)), rgb=True, name="mosaic")
    result = segment_layer(layer, "garden", viewer=viewer, crf=False, scale=1.0, tile_size=512, tile_overlap=128)
    masks = viewer.layers["mosaic masks"]
    assert masks.multiscale and len(masks.data) >= 1
    assert result.meta["tiles"] == 6 and len(result) > 0
    stores = list((small_limit / "results").glob("mosaic-*.zarr"))
    assert len(stores) == 1 and result.meta["zarr"] == str(stores[0])
    # what napari shows is what the in-memory path computes for the same settings
    ref = segment(image, "garden", crf=False, scale=1.0, tile_size=512, tile_overlap=128)
    np.testing.assert_array_equal(np.asarray(masks.data[0]), ref.labels)
    assert list(masks.features["label"]) == list(range(1, len(ref) + 1))
    # a second run never replaces the first one's store or layer; it hides it (the two blended on
    # screen) and does not call it the user's ("kept your 'mosaic masks'", nothing edited)
    with pytest.warns(
        UserWarning, match=r"a big result \(in a zarr store\) is never replaced: this run is in 'mosaic masks \[2\]'"
    ):
        segment_layer(layer, "garden", viewer=viewer, crf=False, scale=1.0, tile_size=512, tile_overlap=128)
    assert "mosaic masks [2]" in viewer.layers
    assert viewer.layers["mosaic masks [2]"].visible and not masks.visible
    assert len(list((small_limit / "results").glob("mosaic-*.zarr"))) == 2


def test_multiscale_level_0_is_read_lazily(small_limit):
    image = garden_scene(9_000_401, shape=(512, 512))[0]
    viewer = ViewerModel()
    layer = viewer.add_image([da.from_array(image, chunks=(128, 128, 3)), image[::2, ::2]], rgb=True, name="pyr")
    src = plane_source(layer)
    assert src.level == 0 and src.big
    out = run_planes(src, "garden", SegmentOptions(crf=False, scale=1.0, tile_size=256, tile_overlap=64))
    assert out.lazy and out.results[0].meta["tiles"] == 9


def test_a_results_folder_that_takes_no_files_says_what_to_do(small_limit, monkeypatch):
    # the store of a plane too big for memory goes under GARDENSEG_HOME: where nothing can be
    # written there, the run says so and how to choose another, before any tile is segmented
    blocker = small_limit / "a file"
    blocker.write_text("x")
    monkeypatch.setenv("GARDENSEG_HOME", str(blocker))
    image = garden_scene(9_000_402, shape=(512, 512))[0]
    viewer = ViewerModel()
    layer = viewer.add_image(image, rgb=True, name="mosaic")
    with pytest.raises(OSError, match="cannot write into the folder .*a file.*set GARDENSEG_HOME"):
        segment_layer(layer, "garden", viewer=viewer, crf=False)
    assert "mosaic masks" not in viewer.layers


def test_a_long_layer_name_still_names_a_store_the_file_system_takes(small_limit):
    # napari names a layer after its file's stem or anything a script gives it: 100 CJK letters
    # are 300 bytes of UTF-8, over the 255 a file name may have
    image = garden_scene(9_000_403, shape=(512, 512))[0]
    viewer = ViewerModel()
    layer = viewer.add_image(image, rgb=True, name="植" * 100)
    segment_layer(layer, "garden", viewer=viewer, crf=False, vegetation="off")
    (store,) = (small_limit / "results").glob("*.zarr")
    assert store.name.startswith("植" * 40) and len(store.name.encode("utf-8")) <= 255
    assert "植" * 100 + " masks" in viewer.layers


def test_a_big_plane_in_millimetres_keeps_its_pixel_size_in_its_store_and_table(small_limit):
    import zarr

    image = garden_scene(9_000_401, shape=(512, 512))[0]
    viewer = ViewerModel()
    layer = viewer.add_image(image, rgb=True, name="sheet", scale=(0.5, 0.5), units=("mm", "mm"))
    result = segment_layer(layer, "garden", viewer=viewer, crf=False, scale=1.0, tile_size=256, tile_overlap=64)
    assert len(result) > 0 and zarr.open_group(result.meta["zarr"], mode="r").attrs["pixel_size"]["x_um"] == 500.0
    masks = viewer.layers["sheet masks"]
    np.testing.assert_allclose(masks.features["area_mm2"], masks.features["area"] * 0.25)
    np.testing.assert_allclose(result.table["area_mm2"], result.table["area"] * 0.25)
