"""Files as users have them, through the CLI and the API: phone photos, stacks, unknown axes, other dtypes."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image, ImageOps

from napari_gardenseg import cli, segment, segment_files
from napari_gardenseg.synthetic import garden_scene

FAST = ["--no-crf"]


@pytest.fixture(scope="module")
def model():
    from napari_gardenseg import load_model

    return load_model("garden")


def _record(out, name):
    return json.loads((out / f"{name}_run.json").read_text())


def test_a_phone_photo_is_segmented_as_a_viewer_shows_it(tmp_path, model):
    scene = garden_scene(8_000_123, (128, 96))[0]  # what the user sees: 96 wide, 128 high
    im = Image.fromarray(np.rot90(scene, k=1).copy())  # stored sideways, 128 wide, 96 high
    exif = im.getexif()
    exif[0x0112] = 6  # turn 90 degrees clockwise to display
    im.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    out = tmp_path / "out"
    assert cli.main(["segment", str(tmp_path / "phone.jpg"), "--out", str(out), *FAST]) == 0
    labels = tifffile.imread(out / "phone_labels.tif")
    assert labels.shape == (128, 96)
    assert np.asarray(Image.open(out / "phone_overlay.png")).shape == (128, 96, 3)
    with Image.open(tmp_path / "phone.jpg") as shown:
        upright = np.asarray(ImageOps.exif_transpose(shown))
    ref = segment(upright, model, crf=False)
    assert len(ref) >= 1
    np.testing.assert_array_equal(labels, ref.labels)
    image = _record(out, "phone")["image"]
    assert image["exif_orientation"] == 6 and image["shape"] == [128, 96, 3]


def test_stacks_are_segmented_plane_by_plane_with_ids_unique(tmp_path, model):
    # three planes: tifffile would store a (3, H, W) label stack as one RGB page unless told otherwise
    frames = np.stack([garden_scene(seed, (96, 96))[0] for seed in (3, 8_000_123, 11)])
    tifffile.imwrite(tmp_path / "timelapse.tif", frames, metadata={"axes": "TYXS"}, photometric="rgb")
    with tifffile.TiffWriter(tmp_path / "pages.tif") as w:  # the same planes; nothing says what they are
        for plane in frames:
            w.write(plane, photometric="rgb", metadata=None)
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "timelapse.tif"), str(tmp_path / "pages.tif"), "--out", str(out), "--coco", *FAST]
    assert cli.main(args) == 1  # one file failed, the other went on
    (failure,) = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert failure["error_type"] == "ImageError" and "(3, 96, 96, 3)" in failure["message"]
    assert "--axes" in failure["message"]

    refs = [segment(f, model, crf=False) for f in frames]
    n0, n1 = len(refs[0]), len(refs[1])
    assert n0 >= 1 and n1 >= 1
    labels = tifffile.imread(out / "timelapse_labels.tif")
    assert labels.shape == (3, 96, 96)
    with tifffile.TiffFile(out / "timelapse_labels.tif") as tif:  # time frames, not unnamed pages (QYX)
        assert tif.series[0].axes == "TYX"
    np.testing.assert_array_equal(labels[0], refs[0].labels)
    np.testing.assert_array_equal(labels[1], np.where(refs[1].labels > 0, refs[1].labels + n0, 0))  # ids run on
    with Image.open(out / "timelapse_labels.tif") as pages:  # grey pages, not one RGB page
        assert pages.n_frames == 3 and pages.size == (96, 96)
    table = pd.read_csv(out / "timelapse_instances.csv")
    planes = [0] * n0 + [1] * n1 + [2] * len(refs[2])
    assert list(table["plane"]) == planes and list(table["t"]) == list(table["plane"])
    assert list(table["label"]) == list(range(1, len(planes) + 1))
    assert list(table["area"]) == list(np.bincount(labels.ravel())[1:])
    with Image.open(out / "timelapse_overlay.png") as overlay:
        assert overlay.n_frames == 3 and overlay.size == (96, 96)
    coco = json.loads((out / "timelapse_coco.json").read_text())
    assert [i["id"] for i in coco["images"]] == [1, 2, 3] and len(coco["annotations"]) == len(table)
    assert {a["id"] for a in coco["annotations"]} <= set(table["label"])  # each annotation names its label
    assert _record(out, "timelapse")["image"]["axes"] == "TYXS"

    # saying what the axes are: the API and the CLI give the same as the file that said it
    summary = segment_files([tmp_path / "pages.tif"], tmp_path / "api", model, crf=False, axes="ZYXS")
    assert summary.ok, summary.table
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "api" / "pages_labels.tif"), labels)
    with tifffile.TiffFile(tmp_path / "api" / "pages_labels.tif") as tif:
        assert tif.series[0].axes == "ZYX"
    assert _record(tmp_path / "api", "pages")["options"]["axes"] == "ZYXS"
    assert "z" in pd.read_csv(tmp_path / "api" / "pages_instances.csv").columns
    assert cli.main(["segment", str(tmp_path / "pages.tif"), "--out", str(out), "--axes", "QYX", *FAST]) == 2


def test_the_same_picture_stored_as_uint8_uint16_or_float_gives_the_same_plants(tmp_path, model):
    scene = garden_scene(0, (128, 128))[0]
    dim = (2 + np.rint(scene * (124 / 255))).astype(np.uint8)  # a dim scene: values 2..126
    assert (dim.min(), dim.max()) == (2, 126)
    Image.fromarray(dim).save(tmp_path / "u8.png")
    tifffile.imwrite(tmp_path / "u16.tif", dim.astype(np.uint16) * 257, photometric="rgb")
    tifffile.imwrite(tmp_path / "f32.tif", dim.astype(np.float32), photometric="rgb")
    tifffile.imwrite(tmp_path / "unit.tif", dim.astype(np.float32) / 255, photometric="rgb")
    names = ["u8", "u16", "f32", "unit"]
    files = [str(tmp_path / n) + (".png" if n == "u8" else ".tif") for n in names]
    out = tmp_path / "out"
    assert cli.main(["segment", *files, "--out", str(out), *FAST]) == 0
    labels = [tifffile.imread(out / f"{n}_labels.tif") for n in names]
    assert labels[0].max() >= 1
    for other in labels[1:]:
        np.testing.assert_array_equal(other, labels[0])
    by_api = segment(dim.astype(np.uint16) * 257, model, crf=False)
    np.testing.assert_array_equal(by_api.labels, labels[0])


def test_a_batch_says_why_a_file_gave_no_instance(tmp_path, capsys):
    scene = garden_scene(8_000_123, (128, 96))[0]
    Image.fromarray(scene).save(tmp_path / "colour.png")
    grey = np.random.default_rng(0).normal(120, 10, (128, 96)).clip(0, 255).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")  # one channel: split off a photo, or a B/W camera
    out = tmp_path / "out"
    assert cli.main(["segment", str(tmp_path), "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    assert "grey.png: 0 instances" in printed and "(a grey image: the models need colour photos)" in printed
    summary = segment_files([tmp_path / "colour.png", tmp_path / "grey.png"], tmp_path / "again", crf=False)
    colour, grey = summary.files
    # the synthetic scene's lawn is ground cover, which the note may name; nothing about colour
    assert colour.instances >= 1 and "grey" not in (colour.note or "")
    assert grey.instances == 0 and "grey" in grey.note
    assert summary.table.loc[1, "note"] == grey.note
    assert _record(tmp_path / "again", "grey")["note"] == grey.note  # in the run record too
    resumed = segment_files([tmp_path / "grey.png"], tmp_path / "again", crf=False, resume=True)
    assert resumed.files[0].status == "skipped" and resumed.files[0].note == grey.note


def test_a_batch_says_when_a_file_looks_like_a_mask_not_a_photo(tmp_path, capsys):
    """A folder of photos often holds their masks (``*_mask.png``, an RGB label map): they are
    segmented as asked, with a note; the photos, even a dark one, get none."""
    scene = garden_scene(8_000_123, (128, 96))[0]
    Image.fromarray(scene).save(tmp_path / "photo.png")
    Image.fromarray(scene // 4).save(tmp_path / "dark.jpg", quality=90)  # underexposed
    yy, xx = np.mgrid[:128, :96]
    label_map = np.zeros((128, 96, 3), np.uint8)
    for (y, x), colour in zip([(40, 30), (90, 60)], [(0, 255, 0), (255, 0, 0)]):
        label_map[(yy - y) ** 2 + (xx - x) ** 2 < 400] = colour
    Image.fromarray(label_map).save(tmp_path / "photo_label.png")
    # other tools' label images: cellpose's uint16, StarDist's int32, a 1-bit mask; they were told
    # to multiply by 16 as a 12-bit camera's values, or nothing at all
    ids = (label_map[..., 0] > 0) * 1 + (label_map[..., 1] > 0) * 2
    tifffile.imwrite(tmp_path / "cells_cp_masks.tif", ids.astype(np.uint16))
    tifffile.imwrite(tmp_path / "cells_stardist.tif", ids.astype(np.int32))
    Image.fromarray(ids > 0).save(tmp_path / "cells_bits.tif")  # mode "1"
    # a 16-bit grey photo (a scientific camera's) is not one
    grey16 = scene.mean(axis=2).astype(np.uint16) * 257 + np.random.default_rng(0).integers(0, 64, (128, 96)).astype(
        np.uint16
    )
    tifffile.imwrite(tmp_path / "grey16.tif", grey16)
    Image.fromarray(np.zeros((128, 96, 3), np.uint8)).save(tmp_path / "blank.png")  # a lens cap's frame
    # a photo in the web palette (Pillow's convert("P"), old web GIFs): a few colours, dithered
    Image.fromarray(scene).convert("P").save(tmp_path / "web.gif")
    summary = segment_files(tmp_path, tmp_path / "out", crf=False)
    notes = {Path(f.file).name: f.note for f in summary.files}
    photos = ("photo.png", "dark.jpg", "grey16.tif", "web.gif")
    assert all("mask or label map" not in (notes[n] or "") for n in photos)
    for name in ("photo_label.png", "cells_cp_masks.tif", "cells_stardist.tif", "cells_bits.tif"):
        assert notes[name].startswith("a mask or label map, not a photo?"), name
    assert "mask or label map" in _record(tmp_path / "out", "photo_label")["note"]
    assert notes["blank.png"] == "one colour throughout (0, 0, 0): a blank image"


def test_the_labels_of_a_geotiff_carry_its_georeferencing(tmp_path):
    # a drone orthophoto's GeoTIFF tags (EPSG:32755, 2 cm pixels): the label TIFFs get the same, so
    # QGIS or rasterio lays them on the photo; a plain TIFF's labels get none
    scene = garden_scene(8_000_321, (96, 128))[0]
    geo = [
        (33550, "d", 3, (0.02, 0.02, 0.0), True),  # ModelPixelScale
        (33922, "d", 6, (0.0, 0.0, 0.0, 300000.0, 6200000.0, 0.0), True),  # ModelTiepoint
        (34735, "H", 20, (1, 1, 0, 4, 1024, 0, 1, 1, 1025, 0, 1, 1, 1026, 34737, 23, 0, 3072, 0, 1, 32755), True),
        (34737, "s", 0, "WGS 84 / UTM zone 55S|", True),  # the citation (1026) is its 23 bytes from 0
    ]
    tifffile.imwrite(tmp_path / "ortho.tif", scene, photometric="rgb", extratags=geo)  # Pillow reads it
    # a citation in UTF-8 ("Réseau", as some writers store it), which TIFF's 7-bit ASCII cannot hold:
    # "é" is two bytes, and its key's count is in bytes
    raw = (tmp_path / "ortho.tif").read_bytes().replace(b"WGS 84 / UTM", b"WGS 84 \xc3\xa9UTM")
    (tmp_path / "ortho.tif").write_bytes(raw)
    tifffile.imwrite(tmp_path / "ortho16.tif", scene.astype(np.uint16) * 257, photometric="rgb", extratags=geo)
    tifffile.imwrite(tmp_path / "plain.tif", scene, photometric="rgb")
    out = tmp_path / "out"
    summary = segment_files(sorted(tmp_path.glob("*.tif")), out, model="garden", crf=True)
    assert summary.failed == 0
    for name in ("ortho", "ortho16"):
        assert "GeoTIFF" in _record(out, name)["image"]["georeference"]
        for suffix in ("labels", "labels_crf"):
            with tifffile.TiffFile(out / f"{name}_{suffix}.tif") as tif:
                page = tif.pages[0]
                assert page.tags[33550].value == (0.02, 0.02, 0.0)
                assert page.tags[33922].value == (0.0, 0.0, 0.0, 300000.0, 6200000.0, 0.0)
                assert tif.geotiff_metadata["ProjectedCSTypeGeoKey"].value == 32755
                # copied byte for byte: the keys point into it by byte offset and count
                tif.filehandle.seek(page.tags[34737].valueoffset)
                stored = tif.filehandle.read(page.tags[34737].count)
                assert stored == (b"WGS 84 \xc3\xa9UTM" if name == "ortho" else b"WGS 84 / UTM") + b" zone 55S|\0"
                assert page.asarray().max() >= 1  # plants found, on the photo's grid
                assert page.shape == (96, 128)
        # the instances as points in the CRS: pixel centres of 2 cm pixels from (300000, 6200000)
        table = pd.read_csv(out / f"{name}_instances.csv")
        centroids = np.array([ast.literal_eval(c) for c in table["centroid"]])  # "(y, x)"
        np.testing.assert_allclose(table["map_x"], 300000 + (centroids[:, 1] + 0.5) * 0.02)
        np.testing.assert_allclose(table["map_y"], 6200000 - (centroids[:, 0] + 0.5) * 0.02)
        assert "EPSG:32755" in _record(out, name)["image"]["georeference"]
        # a UTM zone is in metres: each plant's ground area, 4 cm² a pixel (it was in pixels only)
        assert list(table.columns[4:8]) == ["area", "area_refined", "area_m2", "area_refined_m2"]
        np.testing.assert_allclose(table["area_m2"], table["area"] * 0.0004, rtol=1e-5)
        # the API on the file: the same columns in its table (it had neither map_x nor area_m2)
        api = segment(tmp_path / f"{name}.tif", "garden", crf=True).table
        assert list(api.columns) == list(table.columns), api.columns
        for column in ("map_x", "map_y", "area_m2", "area_refined_m2"):
            np.testing.assert_allclose(api[column], table[column], rtol=1e-5)
        # opened again in napari with the plugin's reader: the same columns in the layer's features
        from napari_gardenseg._napari_reader import read_label_layers

        [(_, meta, _)] = read_label_layers(out / f"{name}_labels_crf.tif")
        features = meta["features"].set_index("label").loc[table["label"]]
        np.testing.assert_allclose(features["area_m2"], table["area_refined_m2"], rtol=1e-5)
        np.testing.assert_allclose(features["map_x"].dropna(), 300000 + (features["centroid_x"].dropna() + 0.5) * 0.02)
    with tifffile.TiffFile(out / "plain_labels.tif") as tif:
        assert 34735 not in tif.pages[0].tags
    assert "map_x" not in pd.read_csv(out / "plain_instances.csv")
    assert "georeference" not in _record(out, "plain")["image"]


def test_a_geotiffs_pam_file_is_read_before_its_tags_as_gdal_reads_it(tmp_path):
    # GDAL reads a GeoTIFF's <file>.aux.xml before its tags: a CRS set on a read-only GeoTIFF by QGIS
    # or rasterio, a grid moved there, or a CRS beside tags with no GeoKeyDirectory. The labels lost
    # the CRS, or lay where the tags say and not where GIS software shows the photo
    scene = garden_scene(8_000_321, (96, 128))[0]
    grid = [(33550, "d", 3, (0.02, 0.02, 0.0), True), (33922, "d", 6, (0, 0, 0, 300000.0, 6200000.0, 0), True)]
    keys = [(34735, "H", 12, (1, 1, 0, 2, 1025, 0, 1, 1, 3072, 0, 1, 32755), True)]
    srs = "<SRS>EPSG:32633</SRS>"
    moved = "<GeoTransform>300100.0, 0.02, 0.0, 6200000.0, 0.0, -0.02</GeoTransform>"  # 100 m east
    files = {"crs.tif": (grid + keys, srs), "nokeys.tif": (grid, srs), "moved.tif": (grid + keys, moved)}
    for name, (tags, pam) in files.items():
        tifffile.imwrite(tmp_path / name, scene, photometric="rgb", extratags=tags)
        (tmp_path / f"{name}.aux.xml").write_text(f"<PAMDataset>{pam}</PAMDataset>")
    out = tmp_path / "out"
    assert segment_files([tmp_path / n for n in files], out, crf=False).failed == 0
    for name, (tags, pam) in files.items():
        stem = name[:-4]
        note = _record(out, stem)["image"]["georeference"]
        assert f"of {name}.aux.xml over its tags" in note, note
        with tifffile.TiffFile(out / f"{stem}_labels.tif") as tif:  # the tags are kept, under the PAM file
            assert tif.pages[0].tags[33922].value == (0, 0, 0, 300000.0, 6200000.0, 0)
        written = (out / f"{stem}_labels.tif.aux.xml").read_text()
        assert ("EPSG:32633" in written) == (pam == srs)
        origin = 300100.0 if name == "moved.tif" else 300000.0
        assert f"<GeoTransform>{origin!r}, 0.02, 0.0, 6200000.0, 0.0, -0.02</GeoTransform>" in written
        table = pd.read_csv(out / f"{stem}_instances.csv")
        centroids = np.array([ast.literal_eval(c) for c in table["centroid"]])
        assert len(table)
        np.testing.assert_allclose(table["map_x"], origin + (centroids[:, 1] + 0.5) * 0.02)
    assert "EPSG:32755" in _record(out, "moved")["image"]["georeference"]  # the tags' CRS, not replaced


def test_a_tiff_whose_tags_place_no_grid_is_placed_by_its_world_file(tmp_path):
    # a lone ModelPixelScale (no tiepoint, no GeoKeys) places nothing: GDAL takes the world file
    from napari_gardenseg._image_reader import read_image

    tifffile.imwrite(tmp_path / "scan.tif", np.zeros((10, 10, 3), np.uint8), photometric="rgb",
                     extratags=[(33550, 12, 3, (0.5, 0.5, 0.0), True)])  # fmt: skip
    (tmp_path / "scan.tfw").write_text("0.5\n0\n0\n-0.5\n500000.25\n4999999.75\n")
    image = read_image(tmp_path / "scan.tif")
    assert image.georeference == () and image.sidecar_georeference.sources == ("scan.tfw",)


def test_a_world_file_with_decimal_commas_places_the_photo(tmp_path):
    # written under a European locale; GDAL reads it (CPLAtofM), so QGIS places the photo
    from napari_gardenseg._image_reader import read_image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "a.pgw").write_text("0,5\r\n0\r\n0\r\n-0,5\r\n720196,25\r\n4302930,75\r\n")
    geo = read_image(tmp_path / "a.png").sidecar_georeference
    assert geo.transform == (720196.0, 0.5, 0.0, 4302931.0, 0.0, -0.5)


_UTM33 = 'PROJCS["WGS_1984_UTM_Zone_33N",GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984"]]]'  # a .prj's ESRI WKT


def test_photos_placed_by_world_files_give_labels_placed_the_same(tmp_path):
    # orthophotos exported as JPEG + .jgw + .prj (ESRI) and PNG + .pgw + .png.aux.xml (QGIS's Save as
    # Image): each label TIFF gets a world file and the CRS beside it, as GDAL reads them; the PAM
    # file's GeoTransform wins over the world file, as in GDAL; an EXIF-turned photo keeps none
    scene = garden_scene(8_000_321, (96, 128))[0]
    Image.fromarray(scene).save(tmp_path / "ortho.jpg", quality=95)
    # ESRI world file: A, D, B, E, then C, F, the centre of the top-left pixel
    (tmp_path / "ortho.jgw").write_text("0.05\n0\n0\n-0.05\n500000.025\n4000000.975\n")
    (tmp_path / "ortho.prj").write_text(_UTM33)
    Image.fromarray(scene).save(tmp_path / "qgis.png")
    (tmp_path / "qgis.pgw").write_text("9\n0\n0\n-9\n0\n0\n")  # overridden by the PAM file
    (tmp_path / "qgis.png.aux.xml").write_text(
        "<PAMDataset><SRS>EPSG:32633 &amp; more</SRS>"
        "<GeoTransform> 1000.0, 0.5, 0, 2000.0, 0, -0.5</GeoTransform></PAMDataset>"
    )
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(scene).save(tmp_path / "turned.jpg", exif=exif)
    (tmp_path / "turned.jgw").write_text("0.05\n0\n0\n-0.05\n500000.025\n4000000.975\n")
    out = tmp_path / "out"
    summary = segment_files([tmp_path / f for f in ("ortho.jpg", "qgis.png", "turned.jpg")], out, crf=True)
    assert summary.failed == 0
    for stem in ("ortho_labels", "ortho_labels_crf"):
        lines = [float(v) for v in (out / f"{stem}.tfw").read_text().split()]
        assert lines == [0.05, 0.0, 0.0, -0.05, 500000.025, 4000000.975]
        assert "WGS_1984_UTM_Zone_33N" in (out / f"{stem}.tif.aux.xml").read_text()
    assert [float(v) for v in (out / "qgis_labels.tfw").read_text().split()] == [0.5, 0, 0, -0.5, 1000.25, 1999.75]
    assert "<SRS>EPSG:32633 &amp; more</SRS>" in (out / "qgis_labels_crf.tif.aux.xml").read_text()
    table = pd.read_csv(out / "ortho_instances.csv")
    assert len(table)
    centroids = np.array([ast.literal_eval(c) for c in table["centroid"]])
    np.testing.assert_allclose(table["map_x"], 500000 + (centroids[:, 1] + 0.5) * 0.05)
    np.testing.assert_allclose(table["map_y"], 4000001 - (centroids[:, 0] + 0.5) * 0.05)
    record = _record(out, "ortho")
    assert "ortho.jgw" in record["image"]["georeference"] and "ortho_labels.tfw" in record["written"]
    assert "not kept" in _record(out, "turned")["image"]["georeference"]
    assert not list(out.glob("turned*.tfw")) and "map_x" not in pd.read_csv(out / "turned_instances.csv")
    assert "area_m2" not in table  # a CRS without a unit (this .prj is cut short): no ground area
    # the user's own world file beside the labels is not replaced: the rerun is refused before the work
    (out / "ortho_labels.tif").unlink()
    (out / "ortho_labels.tfw").write_text("mine")
    refused = segment_files([tmp_path / "ortho.jpg"], out, crf=True)
    assert refused.failed == 1 and "ortho_labels.tfw" in refused.files[0].error
    assert (out / "ortho_labels.tfw").read_text() == "mine"


@pytest.mark.parametrize(
    "sidecars",
    [
        {"a.jgw": "0.05\n0\n0\n-0.05\n500000\n"},  # five lines
        {"a.jgw": "0\n0\n0\n0\n500000\n4000000\n"},  # a grid of no size
        {"a.jgw": "0.05\n0\n0\n-0.05\nnan\n4000000\n"},
        {"a.jpg.aux.xml": "<PAMDataset><SRS>EPSG:32633</SRS>"},  # cut off
        {"a.jpg.aux.xml": "<PAMDataset><SRS>EPSG:32633</SRS></PAMDataset>"},  # a CRS, no grid
        {"a.jpg.aux.xml": "<PAMDataset><GeoTransform>1, 0, 0, 2, 0, 0</GeoTransform></PAMDataset>"},
    ],
)
def test_sidecars_that_place_no_grid_are_ignored(tmp_path, sidecars):
    # as GDAL ignores them: the photo reads, without georeferencing
    from napari_gardenseg._image_reader import read_image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.jpg")
    for name, text in sidecars.items():
        (tmp_path / name).write_text(text)
    image = read_image(tmp_path / "a.jpg")
    assert image.sidecar_georeference is None and "georeference" not in image.applied


def test_a_prj_that_is_not_text_gives_no_crs(tmp_path):
    from napari_gardenseg._image_reader import read_image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "a.pgw").write_text("1\n0\n0\n-1\n0.5\n7.5\n")
    (tmp_path / "a.prj").write_bytes(b"\x00\x01PK\x03binary")
    geo = read_image(tmp_path / "a.png").sidecar_georeference
    assert geo.transform == (0.0, 1.0, 0.0, 8.0, 0.0, -1.0) and geo.srs is None
    assert geo.sources == ("a.pgw",)


@pytest.mark.parametrize("placed_by", ["transformation", "scale and tiepoint"])
def test_pixel_to_map_as_gdal_reads_a_pixel_is_point_geotiff(tmp_path, placed_by):
    # PixelIsPoint (GTRasterTypeGeoKey 2): the tiepoint is a pixel's centre, no half-pixel shift;
    # (row 10, col 20) of 0.5 m pixels from (1000, 2000) is (1010, 1995), as GDAL (rasterio) gives it
    from napari_gardenseg._georeference import file_grid, geotiff_crs, grid_to_map
    from napari_gardenseg._image_reader import read_image

    keys = (34735, "H", 12, (1, 1, 0, 2, 1025, 0, 1, 2, 3072, 0, 1, 32633), True)
    if placed_by == "transformation":
        matrix = (0.5, 0, 0, 1000.0, 0, -0.5, 0, 2000.0, 0, 0, 0, 0, 0, 0, 0, 1)
        tags = [(34264, "d", 16, matrix, True), keys]
    else:
        tags = [(33550, "d", 3, (0.5, 0.5, 0.0), True), (33922, "d", 6, (0, 0, 0, 1000.0, 2000.0, 0), True), keys]
    path = tmp_path / "point.tif"
    tifffile.imwrite(path, np.zeros((40, 50, 3), np.uint8), photometric="rgb", extratags=tags)
    georeference = read_image(path).georeference
    assert geotiff_crs(georeference) == "EPSG:32633"
    np.testing.assert_allclose(grid_to_map(file_grid(georeference), 10.0, 20.0), (1010.0, 1995.0))


def test_a_class_the_model_lacks_fails_the_batch_before_any_file(tmp_path):
    # one message for the run, not one failure per file, and nothing written
    for k in range(3):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / f"p{k}.png")
    with pytest.raises(ValueError, match="unknown class 'rosete' for model 'garden'. Did you mean 'rosette'"):
        segment_files(tmp_path, tmp_path / "out", classes=["rosete"])
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="unknown class 'tulip' for model 'coco'"):  # COCO's names, no download
        segment_files(tmp_path, tmp_path / "out", model="coco", classes="tulip")


def test_a_tiff_with_an_orientation_tag_is_read_as_stored_and_keeps_its_world_file(tmp_path):
    # TIFFs are never turned (tifffile's way and GDAL's), whichever library decodes them: the world
    # file places the stored pixels, so it is kept; the outputs planned from a lazy read agree
    from PIL import Image

    from napari_gardenseg._batch_outputs import input_kind, output_files
    from napari_gardenseg._image_reader import read_image

    stored = np.random.default_rng(1).integers(0, 255, (20, 30, 3), np.uint8)
    path = tmp_path / "turned.tif"
    tifffile.imwrite(path, stored, photometric="rgb", extratags=[(274, "H", 1, 6, True)])
    (tmp_path / "turned.tfw").write_text("1\n0\n0\n-1\n0.5\n19.5\n")
    for lazy in (True, False):
        image = read_image(path, lazy=lazy)
        assert image.sidecar_georeference is not None and "exif_orientation" not in image.applied
        assert image.applied["tiff_orientation"].startswith("6: not applied")  # said: it shows turned elsewhere
        np.testing.assert_array_equal(np.asarray(image.data), stored)
    assert input_kind(path).sidecars is not None
    assert "turned_labels.tfw" in output_files("turned", **input_kind(path)._asdict())
    # a CMYK TIFF is decoded by Pillow, which (Pillow 13) would turn it while loading: read as stored too
    cmyk = Image.fromarray(stored).convert("CMYK")
    exif = Image.Exif()
    exif[0x0112] = 6
    cmyk.save(tmp_path / "cmyk.tif", exif=exif)
    image = read_image(tmp_path / "cmyk.tif")
    assert image.data.shape == (20, 30, 3) and "exif_orientation" not in image.applied
    assert image.applied["tiff_orientation"].startswith("6: not applied")
    np.testing.assert_allclose(image.data.astype(int), np.asarray(cmyk.convert("RGB")).astype(int), atol=2)


def test_the_ground_area_of_a_pixel_is_given_only_for_a_crs_in_metres():
    from napari_gardenseg._georeference import SidecarGeoreference, ground_pixel_m2

    utm = (
        'PROJCS["WGS 84 / UTM zone 32N",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.25]],'
        'UNIT["degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],UNIT["metre",1,AUTHORITY["EPSG","9001"]]]'
    )
    wkt2 = (
        'PROJCRS["WGS 84 / UTM zone 32N",BASEGEOGCRS["WGS 84",DATUM["x",ELLIPSOID["WGS 84",6378137,298.25,'
        'LENGTHUNIT["metre",1]]],ANGLEUNIT["degree",0.0174]],CONVERSION["UTM"],CS[Cartesian,2],LENGTHUNIT["metre",1]]'
    )
    esri = 'PROJCS["WGS_1984_UTM_Zone_32N",GEOGCS["GCS_WGS_1984",UNIT["Degree",0.0174]],UNIT["Meter",1.0]]'
    # the ellipsoid is in metres, the map in US survey feet: no square metres
    feet = (
        'PROJCRS["NAD83 / California zone 3 (ftUS)",BASEGEOGCRS["NAD83",DATUM["x",ELLIPSOID["GRS 1980",6378137,'
        '298.25,LENGTHUNIT["metre",1]]]],CONVERSION["x"],CS[Cartesian,2],LENGTHUNIT["US survey foot",0.3048006]]'
    )
    degrees = 'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.25]],UNIT["degree",0.0174532925199433]]'
    grid = (500000.0, 0.02, 0.0, 5e6, 0.0, -0.02)
    for srs in (utm, wkt2, esri, "EPSG:32632"):
        assert ground_pixel_m2(sidecars=SidecarGeoreference(grid, srs, ("x.jgw",))) == pytest.approx(0.0004), srs
    for srs in (feet, degrees, "EPSG:4326", None):
        assert ground_pixel_m2(sidecars=SidecarGeoreference(grid, srs, ("x.jgw",))) is None, srs
    turned = (0.0, 0.0, 0.03, 0.0, 0.03, 0.0)  # a grid turned a quarter: its area all the same
    assert ground_pixel_m2(sidecars=SidecarGeoreference(turned, esri, ("x.jgw",))) == pytest.approx(0.0009)
    keys = (1, 1, 0, 2, 1024, 0, 1, 1, 3072, 0, 1, 32633)
    tags = [(33550, "d", 3, (0.5, 0.5, 0.0), True), (33922, "d", 6, (0, 0, 0, 1.0, 2.0, 0), True)]
    assert ground_pixel_m2([*tags, (34735, "H", 12, keys, True)]) == pytest.approx(0.25)
    feet_keys = (1, 1, 0, 3, 1024, 0, 1, 1, 3072, 0, 1, 32633, 3076, 0, 1, 9003)  # ProjLinearUnits: foot
    assert ground_pixel_m2([*tags, (34735, "H", 16, feet_keys, True)]) is None
    assert ground_pixel_m2([*tags, (34735, "H", 12, (1, 1, 0, 2, 1024, 0, 1, 2, 2048, 0, 1, 4326), True)]) is None
