"""Batches of files too big for memory: a BigTIFF or a zarr store in, a zarr label store out."""

from __future__ import annotations

import numpy as np
import pytest

from napari_gardenseg import _planes, segment
from napari_gardenseg._batch import segment_files
from napari_gardenseg.synthetic import garden_scene

OPTIONS = dict(crf=False, scale=1.0, tile_size=512, tile_overlap=128)


@pytest.fixture
def mosaic(tmp_path, monkeypatch):
    import tifffile

    # any plane over 0.2 Mpx counts as too big for memory here (a stand-in for a 20k x 20k mosaic)
    monkeypatch.setattr(_planes, "MAX_PLANE_PIXELS", 200_000)
    image = garden_scene(9_000_500, shape=(768, 1024), n_plants=(12, 16))[0]
    path = tmp_path / "field.tif"
    tifffile.imwrite(path, image, tile=(256, 256), bigtiff=True)
    return image, path


def test_a_big_tiff_gives_a_zarr_store_and_a_table(tmp_path, mosaic):
    import pandas as pd
    import zarr

    image, path = mosaic
    out = tmp_path / "out"
    summary = segment_files([path], out, "garden", **OPTIONS)
    assert summary.ok, summary.table
    names = sorted(p.name for p in out.iterdir())
    assert names == ["field_instances.csv", "field_labels.zarr", "field_run.json"], names
    ref = segment(image, "garden", **OPTIONS)
    stored = zarr.open_group(str(out / "field_labels.zarr"), mode="r")
    assert len(ref) > 0
    np.testing.assert_array_equal(stored["labels"][...], ref.labels)
    table = pd.read_csv(out / "field_instances.csv")
    np.testing.assert_array_equal(table["area"], ref.table["area"])
    # resume: the same run again skips the file; a second run without --overwrite refuses it
    again = segment_files([path], out, "garden", resume=True, **OPTIONS)
    assert again.skipped == 1
    refused = segment_files([path], out, "garden", **OPTIONS)
    assert refused.failed == 1 and "already exists" in refused.table["error"].iloc[0]


def test_a_zarr_input_is_read_lazily(tmp_path, mosaic):
    import zarr

    image, _ = mosaic
    store = tmp_path / "ortho.zarr"
    z = zarr.create_array(str(store), shape=image.shape, chunks=(256, 256, 3), dtype="uint8")
    z[...] = image
    summary = segment_files([store], tmp_path / "out", "garden", coco=True, **OPTIONS)
    assert summary.ok, summary.table
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "ortho_labels.zarr" in written and "ortho_coco.json" in written
