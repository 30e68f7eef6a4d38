"""A scan's physical pixel size (dpi, ImageJ's or OME's calibration): read from the file, given as
areas in mm² in the instances table, and kept as the label TIFFs' resolution."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from napari_gardenseg import segment_files, write_label_file
from napari_gardenseg._image_reader import read_image
from napari_gardenseg.synthetic import garden_scene

RGB = np.full((40, 50, 3), 90, np.uint8)


def _exif(**tags):
    exif = Image.Exif()
    for key, value in tags.items():
        if key == "exposure":
            exif.get_ifd(0x8769)[0x829A] = value
        else:
            exif[0x0112] = value
    return exif


def _files(folder):
    tifffile.imwrite(folder / "scan600.tif", RGB, photometric="rgb", resolution=(600, 600), resolutionunit="INCH")
    tifffile.imwrite(folder / "scancm.tif", RGB, photometric="rgb", resolution=(100, 50), resolutionunit="CENTIMETER")
    tifffile.imwrite(folder / "nounit.tif", RGB, photometric="rgb", resolution=(300, 300), resolutionunit="NONE")
    tifffile.imwrite(folder / "imagej.tif", RGB[..., 1], imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um"})
    meta = {"PhysicalSizeX": 2.0, "PhysicalSizeXUnit": "mm", "PhysicalSizeY": 3.0, "PhysicalSizeYUnit": "mm"}
    tifffile.imwrite(folder / "x.ome.tif", RGB, photometric="rgb", metadata={**meta, "axes": "YXS"})
    Image.fromarray(RGB).save(folder / "scan.png", dpi=(300, 300))
    Image.fromarray(RGB).save(folder / "scan.jpg", dpi=(300, 300))
    Image.fromarray(RGB).save(folder / "screen.jpg", dpi=(72, 72))
    Image.fromarray(RGB).save(folder / "retina.png", dpi=(144, 144))
    Image.fromarray(RGB).save(folder / "camera.jpg", dpi=(300, 300), exif=_exif(exposure=0.01))
    # stored 50 wide and 40 high at 300 x 150 dpi, turned a quarter to show: rows and columns swap
    Image.fromarray(RGB).save(folder / "turned.jpg", dpi=(300, 150), exif=_exif(orientation=6))
    # a JPEG with no JFIF density and an EXIF resolution: its own unit (none: no size) and its Y
    for name, unit in (("exif_none.jpg", 1), ("exif_inch.jpg", 2)):
        exif = Image.Exif()
        exif[0x0128], exif[0x011A], exif[0x011B] = unit, 600.0, 300.0
        Image.fromarray(RGB).save(folder / name, exif=exif)
    # OME sizes that are no length; OME without sizes, with TIFF resolution tags
    nan = {"PhysicalSizeX": float("nan"), "PhysicalSizeY": float("nan"), "axes": "YXS"}
    tifffile.imwrite(folder / "nan.ome.tif", RGB, photometric="rgb", metadata=nan)
    tifffile.imwrite(folder / "plain.ome.tif", RGB, photometric="rgb", resolution=(600, 600), resolutionunit="INCH")
    geo = [(33550, "d", 3, (0.02, 0.02, 0.0), True), (33922, "d", 6, (0.0, 0.0, 0.0, 3e5, 6.2e6, 0.0), True)]
    tifffile.imwrite(folder / "ortho.tif", RGB, photometric="rgb", resolution=(300, 300), extratags=geo)


def test_a_stated_physical_pixel_size_is_read_where_it_is_one(tmp_path):
    _files(tmp_path)
    size = {p.name: read_image(p).pixel_size for p in tmp_path.iterdir()}
    um = 25_400 / 600
    assert (size["scan600.tif"].y_um, size["scan600.tif"].x_um) == pytest.approx((um, um))
    assert "600 dpi, TIFF resolution" in size["scan600.tif"].source
    assert (size["scancm.tif"].y_um, size["scancm.tif"].x_um) == pytest.approx((200.0, 100.0))  # 50 and 100 px/cm
    assert (size["imagej.tif"].y_um, size["imagej.tif"].x_um) == pytest.approx((0.5, 0.5))  # 2 px per µm
    assert (size["x.ome.tif"].y_um, size["x.ome.tif"].x_um) == pytest.approx((3000.0, 2000.0))
    for name in ("scan.png", "scan.jpg"):  # PNG's pHYs (pixels per metre), JPEG's JFIF density
        assert (size[name].y_um, size[name].x_um) == pytest.approx((84.667, 84.667), rel=1e-4), name
    assert (size["turned.jpg"].y_um, size["turned.jpg"].x_um) == pytest.approx((84.667, 169.333), rel=1e-4)
    assert (size["exif_inch.jpg"].y_um, size["exif_inch.jpg"].x_um) == pytest.approx((84.667, 42.333), rel=1e-4)
    assert size["plain.ome.tif"].x_um == pytest.approx(um)  # OME without sizes: its TIFF resolution
    # no size: no unit, a screen's density, a camera's print size, a map's pixel (map_x, map_y
    # instead), sizes that are no length
    for name in ("nounit.tif", "screen.jpg", "retina.png", "camera.jpg", "ortho.tif", "exif_none.jpg", "nan.ome.tif"):
        assert size[name] is None, name
    assert "600 dpi" in read_image(tmp_path / "scan600.tif").record()["pixel_size"]
    assert "pixel_size" not in read_image(tmp_path / "screen.jpg").record()


def test_a_scans_areas_are_given_in_mm2_and_its_labels_keep_its_resolution(tmp_path):
    scene = garden_scene(8_000_321, (96, 128))[0]
    tifffile.imwrite(tmp_path / "scan.tif", scene, photometric="rgb", resolution=(300, 300), resolutionunit="INCH")
    Image.fromarray(scene).save(tmp_path / "photo.png")  # no resolution: pixels only
    out = tmp_path / "out"
    assert segment_files(sorted(tmp_path.glob("*.*")), out, model="garden", crf=True).failed == 0
    table = pd.read_csv(out / "scan_instances.csv")
    assert len(table) >= 1
    assert list(table.columns[4:8]) == ["area", "area_refined", "area_mm2", "area_refined_mm2"]
    mm2 = (25.4 / 300) ** 2
    np.testing.assert_allclose(table["area_mm2"], table["area"] * mm2, rtol=1e-5)
    np.testing.assert_allclose(table["area_refined_mm2"], table["area_refined"] * mm2, rtol=1e-5)
    record = json.loads((out / "scan_run.json").read_text())
    assert "300 dpi" in record["image"]["pixel_size"]
    for suffix in ("labels", "labels_crf"):  # Fiji measures the labels in the scan's units
        with tifffile.TiffFile(out / f"scan_{suffix}.tif") as tif:
            page = tif.pages[0]
            assert page.tags["ResolutionUnit"].value == 3  # centimetre
            x = page.tags["XResolution"].value
            assert x[0] / x[1] == pytest.approx(300 / 2.54, rel=1e-5)
    assert read_image(out / "scan_labels.tif").pixel_size.x_um == pytest.approx(25_400 / 300, rel=1e-5)
    assert "area_mm2" not in pd.read_csv(out / "photo_instances.csv")
    with tifffile.TiffFile(out / "photo_labels.tif") as tif:
        assert tif.pages[0].tags["ResolutionUnit"].value == 1  # tifffile's default: no unit


def test_labels_written_from_a_scan_keep_its_pixel_size(tmp_path):
    tifffile.imwrite(tmp_path / "scan.tif", RGB, photometric="rgb", resolution=(600, 600), resolutionunit="INCH")
    labels = np.zeros((40, 50), np.int32)
    labels[5:15, 5:25] = 1
    features = pd.DataFrame({"label": [1], "class_name": ["leaf"], "score": [0.9], "area_mm2": [99.0]})
    write_label_file(tmp_path / "scan_labels.tif", labels, features, georeference_from=tmp_path / "scan.tif")
    table = pd.read_csv(tmp_path / "scan_labels_instances.csv")
    # derived from the labels, not the features' stale value (a layer read from an older table)
    assert table["area_mm2"].tolist() == pytest.approx([200 * (25.4 / 600) ** 2], rel=1e-5)
    assert list(table.columns).count("area_mm2") == 1
    # saved again from the label file itself, as napari's writer does: the size stays
    write_label_file(
        tmp_path / "scan_labels.tif", labels, features, georeference_from=tmp_path / "scan_labels.tif", overwrite=True
    )
    assert read_image(tmp_path / "scan_labels.tif").pixel_size.x_um == pytest.approx(25_400 / 600, rel=1e-5)
    # another grid: said, and written without a size
    with pytest.warns(UserWarning, match="without a pixel size"):
        write_label_file(tmp_path / "crop_labels.tif", labels[:20], georeference_from=tmp_path / "scan.tif")
    assert "area_mm2" not in pd.read_csv(tmp_path / "crop_labels_instances.csv")


def test_the_api_table_a_layer_in_micrometres_and_label_files_opened_again_give_areas_in_mm2(tmp_path):
    # the size reached only the batch's CSV: segment(path).table, the Labels writer of a layer in µm
    # and label files opened again had areas in pixels only
    from napari_gardenseg import segment
    from napari_gardenseg._label_writer import write_labels_layer
    from napari_gardenseg._napari_reader import read_label_layers

    scene = garden_scene(8_000_321, (96, 128))[0]
    tifffile.imwrite(tmp_path / "scan.tif", scene, photometric="rgb", resolution=(300, 300), resolutionunit="INCH")
    result = segment(tmp_path / "scan.tif", "garden")
    table = result.table
    mm2 = (25.4 / 300) ** 2
    assert len(table) >= 1 and result.meta["pixel_size"]["x_um"] == pytest.approx(84.667, rel=1e-4)
    assert list(table.columns[4:8]) == ["area", "area_refined", "area_mm2", "area_refined_mm2"]
    np.testing.assert_allclose(table["area_mm2"], table["area"] * mm2, rtol=1e-5)
    out = tmp_path / "out"
    segment_files([tmp_path / "scan.tif"], out, model="garden")
    np.testing.assert_array_equal(pd.read_csv(out / "scan_instances.csv")["area_mm2"], table["area_mm2"])
    assert "area_mm2" not in segment(scene, "garden").table  # an array states no size

    # a label file opened again: its resolution gives the features' area_mm2 (and the brush follows it)
    [(data, meta, _)] = read_label_layers(out / "scan_labels_crf.tif")
    features = meta["features"]
    np.testing.assert_allclose(features["area_mm2"], features["area"] * mm2, rtol=1e-5)
    assert meta["metadata"]["napari_gardenseg"]["pixel_size"]["x_um"] == pytest.approx(84.667, rel=1e-4)

    # a layer shown in µm (no file): the TIFF's resolution and the table's area_mm2 are the layer's
    labels = np.zeros((40, 50), np.int32)
    labels[5:15, 5:25] = 1
    attributes = {"scale": (0.5, 0.5), "units": ("micrometer", "micrometer"), "metadata": {}, "features": None}
    write_labels_layer(str(tmp_path / "cells_labels.tif"), labels, attributes)
    assert pd.read_csv(tmp_path / "cells_labels_instances.csv")["area_mm2"].tolist() == pytest.approx([200 * 0.25e-6])
    assert read_image(tmp_path / "cells_labels.tif").pixel_size.x_um == pytest.approx(0.5)
    # the layer's scale wins over its file's (the user set it): one calibration in both files
    attributes = {
        "scale": (1.0, 1.0),
        "units": ("millimeter", "millimeter"),
        "metadata": {"napari_gardenseg": {"georeference_source": str(tmp_path / "scan.tif")}},
    }
    write_labels_layer(str(tmp_path / "scan2_labels.tif"), np.zeros((96, 128), np.int32) + 1, attributes)
    assert read_image(tmp_path / "scan2_labels.tif").pixel_size.x_um == pytest.approx(1000.0)
    assert pd.read_csv(tmp_path / "scan2_labels_instances.csv")["area_mm2"].tolist() == [96 * 128]


def test_a_placeholder_resolution_in_centimetres_is_no_size(tmp_path):
    # 1 pixel/cm was trusted as centimetre-wide pixels (areas 100 times the pixel count), where 1 dpi is not
    for x in (1.0, 0.5):
        tifffile.imwrite(tmp_path / "p.tif", RGB, photometric="rgb", resolution=(x, x), resolutionunit="CENTIMETER")
        assert read_image(tmp_path / "p.tif").pixel_size is None
    tifffile.imwrite(tmp_path / "p.tif", RGB, photometric="rgb", resolution=(72.5, 72.5), resolutionunit="INCH")
    assert read_image(tmp_path / "p.tif").pixel_size.source.startswith("72.5 dpi")  # as stated, not "72 dpi"
    tifffile.imwrite(tmp_path / "p.tif", RGB, photometric="rgb", resolution=(12800, 12800), resolutionunit="INCH")
    assert read_image(tmp_path / "p.tif").pixel_size.source.startswith("12800 dpi")  # not "1.28e+04"


def test_an_ome_zarrs_scale_and_single_quoted_ome_xml_give_the_pixel_size(tmp_path):
    # an OME-Zarr in micrometres gave no size at all; OME-XML with single quotes was not read
    import zarr

    root = zarr.open_group(str(tmp_path / "cells.zarr"), mode="w", zarr_format=2)
    root.create_array("0", data=np.moveaxis(RGB, -1, 0).copy())
    axes = [{"name": "c", "type": "channel"}]
    axes += [{"name": n, "type": "space", "unit": "micrometer"} for n in ("y", "x")]
    level = {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 0.5, 0.25]}]}
    root.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [level]}]
    size = read_image(tmp_path / "cells.zarr").pixel_size
    assert (size.y_um, size.x_um) == (0.5, 0.25) and size.source == "OME-Zarr scale"
    axes[1]["unit"] = "pixel"  # not a length: no size
    root.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [level]}]
    assert read_image(tmp_path / "cells.zarr").pixel_size is None
    xml = (
        "<?xml version='1.0' encoding='UTF-8'?><OME xmlns='http://www.openmicroscopy.org/Schemas/OME/2016-06'>"
        "<Image ID='Image:0'><Pixels ID='Pixels:0' DimensionOrder='XYCZT' Type='uint8' SizeX='50' SizeY='40' "
        "SizeC='3' SizeZ='1' SizeT='1' PhysicalSizeX='0.65' PhysicalSizeY='0.65'/></Image></OME>"
    )
    tifffile.imwrite(tmp_path / "q.ome.tif", RGB, photometric="rgb", description=xml)
    assert read_image(tmp_path / "q.ome.tif").pixel_size.x_um == pytest.approx(0.65)


def test_a_files_stated_measures_are_read_once_until_it_or_a_file_beside_it_changes(tmp_path, monkeypatch):
    # the widget asks at each run, and a photo is decoded whole to answer
    import os

    from napari_gardenseg import _image_reader

    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(tmp_path / "ortho.png")
    reads = []
    read = _image_reader.read_image
    monkeypatch.setattr(_image_reader, "read_image", lambda *a, **k: reads.append(1) or read(*a, **k))
    first = _image_reader.stated_measures(tmp_path / "ortho.png")
    assert first[0] == (40, 60) and first[1]["map_grid"] is None
    assert _image_reader.stated_measures(tmp_path / "ortho.png") == first and len(reads) == 1
    # a world file put beside it since: read again, and placed
    (tmp_path / "ortho.pgw").write_text("0.02\n0\n0\n-0.02\n500000.01\n4000000.99\n")
    placed = _image_reader.stated_measures(tmp_path / "ortho.png")
    assert len(reads) == 2 and placed[1]["map_grid"] == pytest.approx((500000.0, 0.02, 0.0, 4000001.0, 0.0, -0.02))
    # the photo saved again, larger: read again
    Image.fromarray(np.full((50, 60, 3), 90, np.uint8)).save(tmp_path / "ortho.png")
    os.utime(tmp_path / "ortho.png", ns=(1, 1))
    assert _image_reader.stated_measures(tmp_path / "ortho.png")[0] == (50, 60) and len(reads) == 3


def test_a_linked_photo_is_placed_by_the_world_file_beside_the_link(tmp_path):
    # sidecars are read beside the path as given: the cache looked beside the link's target
    from napari_gardenseg import _image_reader

    (tmp_path / "store").mkdir()
    (tmp_path / "bed").mkdir()
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(tmp_path / "store" / "photo.png")
    (tmp_path / "bed" / "ortho.png").symlink_to(tmp_path / "store" / "photo.png")
    assert _image_reader.stated_measures(tmp_path / "bed" / "ortho.png")[1]["map_grid"] is None
    (tmp_path / "bed" / "ortho.pgw").write_text("0.02\n0\n0\n-0.02\n500000.01\n4000000.99\n")
    assert _image_reader.stated_measures(tmp_path / "bed" / "ortho.png")[1]["map_grid"] is not None
    assert _image_reader.stated_measures(tmp_path / "store" / "photo.png")[1]["map_grid"] is None
