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
    # overwrite replaces the store (it failed on the folder, after removing the run record)
    replaced = segment_files([path], out, "garden", overwrite=True, **OPTIONS)
    assert replaced.ok, replaced.table
    assert sorted(p.name for p in out.iterdir() if p.name != "failures.jsonl") == names  # no staged store left
    np.testing.assert_array_equal(zarr.open_group(str(out / "field_labels.zarr"), mode="r")["labels"][...], ref.labels)


def test_a_big_input_stopped_before_its_renames_leaves_no_staged_store(tmp_path, mosaic, monkeypatch):
    # Ctrl-C or an error during the COCO export (or the table, or the GIS copies) left the hidden
    # staged store, as big as the labels, in the output folder for good
    from napari_gardenseg import _batch_outputs
    from napari_gardenseg._batch_file import process_file

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_batch_outputs, "to_coco_of", stopped)
    _, path = mosaic
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        process_file(path, out, "garden", coco=True, **OPTIONS)
    assert list(out.iterdir()) == []
    # a store of another process (a Dask task run twice, a script beside the batch) is not this call's
    other = out / ".field_labels.zarr.staged"
    other.mkdir()
    with pytest.raises(FileNotFoundError):
        process_file(tmp_path / "missing.tif", out, "garden", name="field", **OPTIONS)
    assert other.is_dir()


def test_a_big_tiff_in_a_subfolder_gets_its_store_in_the_same_subfolder(tmp_path, mosaic):
    _, path = mosaic
    flight = tmp_path / "photos" / "flight1"
    flight.mkdir(parents=True)
    path.rename(flight / path.name)
    out = tmp_path / "out"
    summary = segment_files([tmp_path / "photos"], out, "garden", recursive=True, **OPTIONS)
    assert summary.ok, summary.table
    # the store is staged beside its final place, not in a hidden copy of the subfolder
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if ".zarr/" not in p.as_posix()) == [
        "flight1",
        "flight1/field_instances.csv",
        "flight1/field_labels.zarr",
        "flight1/field_run.json",
    ]


def test_a_zarr_input_is_read_lazily(tmp_path, mosaic, monkeypatch):
    import json

    import zarr

    image, _ = mosaic
    store = tmp_path / "ortho.zarr"
    z = zarr.create_array(str(store), shape=image.shape, chunks=(256, 256, 3), dtype="uint8")
    z[...] = image
    windows = []  # the reads of the photo's store smaller than the photo (the network's tiles)
    getitem = zarr.Array.__getitem__

    def spy(self, key):
        if self.shape == image.shape and (n := np.broadcast_to(np.uint8(0), self.shape)[key].size) < image.size:
            windows.append(n)
        return getitem(self, key)

    monkeypatch.setattr(zarr.Array, "__getitem__", spy)
    summary = segment_files([store], tmp_path / "out", "garden", coco=True, **OPTIONS)
    monkeypatch.undo()
    assert summary.ok, summary.table
    # the store is read a tile at a time (a copy in memory would be read once); the overview and
    # the colour stage's windows may take the whole of a photo this small
    assert len(windows) >= 4
    ref = segment(image, "garden", **OPTIONS)
    stored = zarr.open_group(str(tmp_path / "out" / "ortho_labels.zarr"), mode="r")
    np.testing.assert_array_equal(stored["labels"][...], ref.labels)
    coco = json.loads((tmp_path / "out" / "ortho_coco.json").read_text())
    assert len(coco["annotations"]) == len(ref) > 0


def test_a_big_npy_and_a_zarr_store_without_its_suffix_are_read_lazily(tmp_path, mosaic):
    import zarr

    image, _ = mosaic
    np.save(tmp_path / "plot.npy", image)  # memory-mapped: segmented window by window as a big TIFF is
    store = tmp_path / "ortho_store"  # a zarr store saved without ".zarr": one image, not a folder of photos
    zarr.create_array(str(store), shape=image.shape, chunks=(256, 256, 3), dtype="uint8")[...] = image
    summary = segment_files([tmp_path / "plot.npy", store], tmp_path / "out", "garden", **OPTIONS)
    assert summary.ok, summary.table
    ref = segment(image, "garden", **OPTIONS).labels
    for name in ("plot", "ortho_store"):
        stored = zarr.open_group(str(tmp_path / "out" / f"{name}_labels.zarr"), mode="r")
        np.testing.assert_array_equal(stored["labels"][...], ref)


def test_a_big_geotiff_also_gets_tiled_label_geotiffs(tmp_path, mosaic):
    # GIS software reads GeoTIFFs, not the zarr store: a georeferenced mosaic's labels come as both
    import tifffile
    import zarr

    image, _ = mosaic
    geo = [
        (33550, "d", 3, (0.05, 0.05, 0.0), True),
        (33922, "d", 6, (0.0, 0.0, 0.0, 500000.0, 4100000.0, 0.0), True),
        (34735, "H", 16, (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633), True),
    ]
    path = tmp_path / "ortho.tif"
    tifffile.imwrite(path, image, photometric="rgb", tile=(256, 256), bigtiff=True, extratags=geo)
    out = tmp_path / "out"
    summary = segment_files([path], out, "garden", **{**OPTIONS, "crf": True})
    assert summary.ok, summary.table
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "ortho_instances.csv",
        "ortho_labels.tif",
        "ortho_labels.zarr",
        "ortho_labels_crf.tif",
        "ortho_run.json",
    ], names
    stored = zarr.open_group(str(out / "ortho_labels.zarr"), mode="r")
    # its grid (GDAL's GeoTransform) and a pixel's ground area (a UTM zone: metres) in the store's attributes
    assert stored.attrs["map_grid"] == [500000.0, 0.05, 0.0, 4100000.0, 0.0, -0.05]
    assert stored.attrs["ground_pixel_m2"] == pytest.approx(0.0025)
    for tif_name, array in (("ortho_labels.tif", "labels"), ("ortho_labels_crf.tif", "refined")):
        with tifffile.TiffFile(out / tif_name) as tif:
            page = tif.pages[0]
            assert page.is_tiled and tif.is_bigtiff
            assert page.tags[33922].value == (0.0, 0.0, 0.0, 500000.0, 4100000.0, 0.0)
            assert tif.geotiff_metadata["ProjectedCSTypeGeoKey"].value == 32633
            labels = page.asarray()
        np.testing.assert_array_equal(labels, stored[array][...])
        assert labels.max() >= 1
    # the TIFFs are outputs like the others: with the store gone, a run without overwrite still refuses
    import shutil

    shutil.rmtree(out / "ortho_labels.zarr")
    refused = segment_files([path], out, "garden", **{**OPTIONS, "crf": True})
    error = refused.table["error"].iloc[0]
    assert refused.failed == 1 and "already exists" in error and "ortho_labels.tif" in error


def test_a_big_tiff_placed_by_a_world_file_gets_tiled_label_tiffs_and_world_files(tmp_path, mosaic):
    # the same GIS copies for a plain big TIFF with a .tfw (ArcGIS, Agisoft exports): tiled label
    # TIFFs, each with its world file, planned from the header before any work
    import tifffile

    from napari_gardenseg._batch_outputs import input_kind, output_files

    image, _ = mosaic
    path = tmp_path / "ortho.tif"
    tifffile.imwrite(path, image, photometric="rgb", tile=(256, 256))
    (tmp_path / "ortho.tfw").write_text("0.05\n0\n0\n-0.05\n500000.025\n4100000.975\n")
    kind = input_kind(path)
    assert kind.big and kind.georeferenced
    assert kind.sidecars.transform == (500000.0, 0.05, 0.0, 4100001.0, 0.0, -0.05)
    assert output_files("ortho", **kind._asdict()) == [
        "ortho_labels.zarr",
        "ortho_labels.tif",
        "ortho_labels.tfw",
        "ortho_labels_crf.tif",
        "ortho_labels_crf.tfw",
        "ortho_instances.csv",
        "ortho_run.json",
    ]
    out = tmp_path / "out"
    summary = segment_files([path], out, "garden", **{**OPTIONS, "crf": True})
    assert summary.ok, summary.table
    assert sorted(p.name for p in out.iterdir()) == sorted(output_files("ortho", **kind._asdict()))
    for stem in ("ortho_labels", "ortho_labels_crf"):
        assert (out / f"{stem}.tfw").read_text().split() == ["0.05", "0.0", "0.0", "-0.05", "500000.025", "4100000.975"]
        with tifffile.TiffFile(out / f"{stem}.tif") as tif:
            assert tif.pages[0].is_tiled and tif.pages[0].asarray().max() >= 1


def test_a_big_tiff_with_a_name_as_long_as_outputs_take_is_segmented(tmp_path, mosaic):
    # its staged store, ".<name>_labels.zarr.staged", was 20 bytes longer than its outputs' names:
    # "File name too long" for a stem its outputs fit
    _, path = mosaic
    long = path.with_name("f" * 240 + ".tif")
    path.rename(long)
    out = tmp_path / "out"
    summary = segment_files([long], out, "garden", **OPTIONS)
    assert summary.ok, summary.table
    assert (out / ("f" * 240 + "_labels.zarr")).is_dir() and not [p for p in out.iterdir() if p.name.startswith(".")]


def test_resuming_a_zarr_input_with_tile_size_auto_is_the_same_run(tmp_path):
    # a big input is tiled at the model's size by default, so --tile-size auto is its default too;
    # for a photo read whole it is not (the photo is run again, or refused without --overwrite)
    import zarr
    from PIL import Image

    image = garden_scene(9_000_501, shape=(200, 240), n_plants=(4, 6))[0]
    store = zarr.open(str(tmp_path / "bed.zarr"), mode="w", shape=image.shape, chunks=(128, 128, 3), dtype=image.dtype)
    store[:] = image
    Image.fromarray(image).save(tmp_path / "photo.png")
    inputs = [tmp_path / "bed.zarr", tmp_path / "photo.png"]
    out = tmp_path / "out"
    first = segment_files(inputs, out, "garden", crf=False)
    assert first.ok, first.table
    again = segment_files(inputs, out, "garden", crf=False, tile_size="auto", resume=True)
    status = dict(zip(again.table["file"].map(lambda f: f.rsplit("/", 1)[-1]), again.table["status"]))
    assert status == {"bed.zarr": "skipped", "photo.png": "failed"}, again.table
    # a record of the version before, which wrote tile_size "auto" down: the same run too
    import json

    record = json.loads((out / "bed_run.json").read_text())
    record["options"]["tile_size"] = "auto"
    (out / "bed_run.json").write_text(json.dumps(record))
    for tile_size in (None, "auto"):
        older = segment_files(inputs[:1], out, "garden", crf=False, tile_size=tile_size, resume=True)
        assert list(older.table["status"]) == ["skipped"], older.table
