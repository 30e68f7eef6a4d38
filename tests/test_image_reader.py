"""The one image reader: EXIF orientation, Pillow's colour modes, ICC profiles, axes from TIFF/zarr metadata."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, ImageOps

from napari_gardenseg._image_arrays import ImageError, to_rgb_float
from napari_gardenseg._image_reader import read_image
from napari_gardenseg._image_source import open_image
from napari_gardenseg._pillow_reader import pillow_pixels


def _marked(h=30, w=40):
    """RGB uint8 (h, w, 3), black with a red block in the top-left corner."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:8, :10] = (255, 0, 0)
    return a


def test_exif_orientation_is_applied_and_recorded(tmp_path):
    im = Image.fromarray(_marked(300, 400))
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": viewers show it 300 wide, 400 high
    im.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    f = read_image(tmp_path / "phone.jpg")
    assert f.data.shape == (400, 300, 3) and f.axes == "YXS"
    assert f.applied["exif_orientation"] == 6 and f.record()["exif_orientation"] == 6
    # the top-left of the stored pixels is the top-right of the picture shown
    assert f.data[:10, -8:, 0].mean() > 200 and f.data[:10, :8, 0].mean() < 30
    assert open_image(tmp_path / "phone.jpg").shape == (400, 300)
    plain = tmp_path / "plain.jpg"
    im.save(plain, quality=95)
    assert read_image(plain).data.shape == (300, 400, 3) and "exif_orientation" not in read_image(plain).applied


def test_an_orientation_outside_exifs_eight_turns_nothing_and_keeps_the_world_file(tmp_path):
    # Orientation 0, 9 or 65535 (cameras and editors write them) were recorded as a turn, and the
    # photo's world file was dropped as placing "the unturned pixels"
    from napari_gardenseg._pillow_reader import exif_turns

    im = Image.fromarray(_marked(30, 40))
    for value in (0, 9, 65535):
        exif = im.getexif()
        exif[0x0112] = value
        path = tmp_path / f"o{value}.jpg"
        im.save(path, exif=exif, quality=95)
        (tmp_path / f"o{value}.jgw").write_text("0.05\n0\n0\n-0.05\n500000.025\n4000000.975\n")
        f = read_image(path)
        assert f.data.shape == (30, 40, 3) and "exif_orientation" not in f.applied and not exif_turns(path)
        assert f.sidecar_georeference is not None and f"o{value}.jgw" in f.applied["georeference"]


# (mode, file suffix, pixel written, pixel read): read values are Pillow's own conversions
MODES = [
    ("CMYK", "tif", (0, 255, 255, 0), (255, 0, 0)),
    ("CMYK", "jpg", None, None),  # lossy: Pillow's own conversion is the reference
    ("YCbCr", "tif", (76, 85, 255), None),
    ("P", "png", None, None),
    ("P", "gif", None, None),
    ("RGBA", "png", (10, 200, 30, 0), (0, 0, 0)),  # fully transparent: nodata, whatever colour is under it
    ("RGBA", "png", (10, 200, 30, 1), (10, 200, 30)),  # barely visible: its colour
    ("LA", "png", (77, 0), 0),
    ("LA", "png", (77, 3), 77),
    ("L", "png", (77,), 77),
    ("1", "png", (1,), 255),
    ("I;16", "png", (1000,), 1000),
    ("I;16", "tif", (40000,), 40000),
    ("F", "tif", (0.25,), 0.25),
]


@pytest.mark.parametrize("mode, suffix, written, expected", MODES, ids=lambda v: str(v))
def test_every_pillow_mode_is_read_as_pillow_converts_it(tmp_path, mode, suffix, written, expected):
    rgb = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    im = Image.fromarray(rgb).convert(mode)
    if written is not None:
        im.putpixel((0, 0), written if len(written) > 1 else written[0])
    path = tmp_path / f"x.{suffix}"
    im.save(path)
    f = read_image(path)
    with Image.open(path) as ref:
        if mode in ("L", "LA", "1"):
            want = np.asarray(ref.convert("L"))
        elif mode in ("I;16", "F"):
            want = np.asarray(ref)
        else:
            want = np.asarray(ref.convert("RGB"))
        if ref.mode in ("RGBA", "LA"):  # fully transparent pixels are nodata: black
            want = want.copy()
            want[np.asarray(ref.getchannel(ref.mode[-1])) == 0] = 0
    np.testing.assert_array_equal(f.data, want)
    assert f.axes == ("YXS" if want.ndim == 3 else "YX")
    if expected is not None:
        np.testing.assert_allclose(f.data[0, 0], expected, atol=1)
    if mode == "YCbCr":
        assert tuple(f.data[0, 0]) == pytest.approx((254, 0, 0), abs=2)  # Y=76, Cb=85, Cr=255 is red


def test_modes_that_no_file_holds():
    rgb = np.random.default_rng(1).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    base = Image.fromarray(rgb)
    for mode in ("HSV", "LAB", "PA", "RGBX", "RGBa"):
        im = (
            base.convert(mode)
            if mode != "LAB"
            else ImageCms.applyTransform(
                base,
                ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"),
            )
        )
        data, applied = pillow_pixels(im)
        np.testing.assert_array_equal(data, np.asarray(im.convert("RGB")))
        assert applied["converted"] == f"{mode} -> RGB"
        if mode in ("HSV", "RGBX"):
            assert np.abs(data.astype(int) - rgb).max() <= 6  # round trips through Pillow's conversion
    data, _ = pillow_pixels(Image.fromarray(np.array([[5, -7]], np.int32), mode="I"))
    np.testing.assert_array_equal(data, [[5, -7]])  # numbers kept for the intensity rule


def _linear_rgb_profile(description="linear RGB (test)") -> bytes:
    """A minimal ICC v2 matrix/TRC profile: sRGB's primaries (D50) with linear curves (gamma 1)."""
    import struct

    def s15(v):
        return struct.pack(">i", round(v * 65536))

    def xyz(x, y, z):
        return b"XYZ " + b"\0" * 4 + s15(x) + s15(y) + s15(z)

    text = description.encode("ascii") + b"\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 78
    curve = b"curv" + b"\0" * 4 + struct.pack(">I", 0)  # no points: the identity curve
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(0.4361, 0.2225, 0.0139)),
        (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)),
        (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body + b"\0" * (-len(body) % 4)
    header = (
        struct.pack(">I", offset + len(data))
        + b"\0" * 4
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 28
        + s15(0.9642)
        + s15(1.0)
        + s15(0.8249)
    )
    return header + b"\0" * (128 - len(header)) + struct.pack(">I", len(tags)) + table + data


def test_icc_profiles(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    rgb[0, 0] = 128
    im = Image.fromarray(rgb)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im.save(tmp_path / "srgb.png", icc_profile=srgb)
    f = read_image(tmp_path / "srgb.png")
    np.testing.assert_array_equal(f.data, rgb)  # already sRGB: untouched
    assert "sRGB already" in f.applied["icc_profile"]
    im.save(tmp_path / "linear.png", icc_profile=_linear_rgb_profile())
    f = read_image(tmp_path / "linear.png")
    # linear 128/255 in sRGB's encoding: 255 * (1.055 * (128/255) ** (1/2.4) - 0.055) = 187.8
    np.testing.assert_allclose(f.data[0, 0], 188, atol=1)
    assert f.applied["icc_profile"] == "linear RGB (test) -> sRGB"
    im.save(tmp_path / "broken.png", icc_profile=b"not a profile")
    f = read_image(tmp_path / "broken.png")
    np.testing.assert_array_equal(f.data, rgb)
    assert "ignored" in f.applied["icc_profile"]


def _frames(n, h=24, w=32):
    return np.arange(n * h * w, dtype=np.uint16).reshape(n, h, w) % 251


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_time_and_depth_stacks_are_planes(tmp_path, n):
    frames = _frames(n)
    for axes in ("TYX", "ZYX"):
        path = tmp_path / f"{axes}{n}.tif"
        tifffile.imwrite(path, frames, metadata={"axes": axes}, photometric="minisblack")
        f = read_image(path)
        assert (f.axes, f.n_planes, f.plane_shape, f.planes()) == (axes, n, (24, 32), [(i,) for i in range(n)])
        np.testing.assert_array_equal(f.data, frames)
    ome = tmp_path / "t.ome.tif"
    tifffile.imwrite(ome, frames, ome=True, metadata={"axes": "TYX"})
    assert read_image(ome).axes == "TYX" and read_image(ome).applied["format"] == "OME-TIFF"
    ij = tmp_path / "ij.tif"
    tifffile.imwrite(ij, frames[:, None], imagej=True, metadata={"axes": "ZCYX"})
    assert read_image(ij).axes == "ZYX"  # a channel axis of 1 is dropped


def test_channels_are_colour_only_when_the_file_says_so(tmp_path):
    rgb = _frames(3).astype(np.uint8)
    tifffile.imwrite(tmp_path / "cyx.ome.tif", rgb, ome=True, metadata={"axes": "CYX"})
    f = read_image(tmp_path / "cyx.ome.tif")
    assert f.axes == "CYX" and f.n_planes == 3  # fluorescence-like channels: each its own plane
    tifffile.imwrite(tmp_path / "planar.tif", rgb, photometric="rgb", planarconfig="separate")
    f = read_image(tmp_path / "planar.tif")
    assert f.axes == "YXS" and f.applied["file_axes"] == "SYX"
    np.testing.assert_array_equal(f.data, np.moveaxis(rgb, 0, -1))
    tifffile.imwrite(tmp_path / "crgb.tif", rgb, photometric="rgb", planarconfig="separate", metadata={"axes": "CYX"})
    assert read_image(tmp_path / "crgb.tif").axes == "YXS"  # C of 3 with photometric RGB
    tifffile.imwrite(tmp_path / "yxs.tif", np.moveaxis(rgb, 0, -1), photometric="rgb")
    assert read_image(tmp_path / "yxs.tif").axes == "YXS"
    # the caller may say what the file does not, or say it otherwise
    assert read_image(tmp_path / "cyx.ome.tif", axes="SYX").axes == "YXS"
    # but not put a pixel's samples on another axis than the file holds them: an RGB photo's rows
    # were read as 3 colours and 29 "extra samples", and labels of 32 x 3 pixels written
    with pytest.raises(ImageError, match=r"make its axis of 24 colour samples, but the file holds 3 samples per pixel"):
        read_image(tmp_path / "yxs.tif", axes="SYX")
    assert read_image(tmp_path / "yxs.tif", axes="YXS").axes == "YXS"


@pytest.mark.parametrize("lazy", [False, True])
def test_bands_beyond_rgb(tmp_path, lazy):
    # drone orthomosaics: RGB with near-infrared and red-edge samples, or five bands and no colour
    rng = np.random.default_rng(0)
    bands = rng.integers(0, 60000, (24, 32, 5), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "rgbnr.tif", bands, photometric="rgb", extrasamples=[0, 0])
    f = read_image(tmp_path / "rgbnr.tif", lazy=lazy)
    assert f.axes == "YXS" and "2 extra samples" in f.applied["samples"]
    np.testing.assert_array_equal(np.asarray(f.data), bands[..., :3])  # the file says these are R, G, B
    # one of the extra samples marked as alpha (an orthomosaic's RGB + NIR + alpha): kept, after R, G, B
    for marks, at in (([0, 2], 4), ([2, 0], 3)):
        tifffile.imwrite(tmp_path / "rgbna.tif", bands, photometric="rgb", extrasamples=marks)
        f = read_image(tmp_path / "rgbna.tif", lazy=lazy)
        assert "the one marked as alpha" in f.applied["samples"]
        np.testing.assert_array_equal(np.asarray(f.data), bands[..., [0, 1, 2, at]])
    # four samples whose marked alpha is not the last: the last (a band) is no opacity
    tifffile.imwrite(tmp_path / "g3.tif", bands[..., :4], photometric="minisblack", extrasamples=[0, 2, 0])
    f = read_image(tmp_path / "g3.tif", lazy=lazy)
    assert "not marked as alpha" in f.applied["samples"]
    np.testing.assert_array_equal(np.asarray(f.data), bands[..., :3])
    tifffile.imwrite(
        tmp_path / "bands.tif", np.moveaxis(bands, -1, 0), photometric="minisblack", planarconfig="separate"
    )
    with pytest.raises(ImageError) as info:
        read_image(tmp_path / "bands.tif", lazy=lazy)
    message = str(info.value)
    assert "5 samples per pixel" in message and "multispectral" in message and "--axes CYX" in message
    f = read_image(tmp_path / "bands.tif", axes="CYX", lazy=lazy)  # what the message offers works
    assert f.axes == "CYX" and f.n_planes == 5
    # three or four bands the file does not call RGB are read as colour, and the record says so
    for n, planar in ((4, "separate"), (3, "contig")):
        data = np.moveaxis(bands[..., :n], -1, 0) if planar == "separate" else bands[..., :n]
        tifffile.imwrite(tmp_path / f"{n}bands.tif", data, photometric="minisblack", planarconfig=planar)
        f = read_image(tmp_path / f"{n}bands.tif", lazy=lazy)
        assert f.axes == "YXS" and f"{n} samples per pixel, which the file calls MINISBLACK" in f.applied["samples"]
        assert ("not marked as alpha" in f.applied["samples"]) == (n == 4)
        np.testing.assert_array_equal(np.asarray(f.data), bands[..., :3])  # a fourth band is not opacity
    tifffile.imwrite(tmp_path / "rgb.tif", bands[..., :3], photometric="rgb")
    assert "samples" not in read_image(tmp_path / "rgb.tif", lazy=lazy).applied


@pytest.mark.parametrize("lazy", [False, True])
def test_transparent_pixels_are_nodata_whatever_colour_is_under_them(tmp_path, lazy):
    # an orthomosaic: the survey's pixels opaque, the rest transparent over leftover colour
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[:, :12, 3] = 0
    rgba[0, 20, 3] = 1  # barely visible: kept
    want = rgba[..., :3].copy()
    want[:, :12] = 0
    Image.fromarray(rgba).save(tmp_path / "ortho.png")
    f = read_image(tmp_path / "ortho.png")
    np.testing.assert_array_equal(f.data, want)
    assert f.applied["transparent"].startswith("360 fully transparent pixels")
    # a TIFF whose fourth sample is marked as alpha keeps it; every reader of pixels blanks the same pixels
    tifffile.imwrite(tmp_path / "ortho.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    f = read_image(tmp_path / "ortho.tif", lazy=lazy)
    assert f.data.shape == (30, 40, 4)
    # the run record says so, as for the PNG (counted where the file is read whole)
    assert f.applied["transparent"].startswith("pixels whose marked alpha" if lazy else "360 fully transparent")
    source = open_image(tmp_path / "ortho.tif", lazy=lazy)
    np.testing.assert_array_equal(source.read(), want / np.float32(255))
    np.testing.assert_array_equal(source.read((0, 5, 10, 30)), want[0:10, 5:30] / np.float32(255))
    np.testing.assert_array_equal(to_rgb_float(rgba), want / np.float32(255))
    # a fourth sample not marked as alpha is another band: dropped, nothing blanked
    tifffile.imwrite(tmp_path / "rgbn.tif", rgba, photometric="rgb", extrasamples=["unspecified"])
    f = read_image(tmp_path / "rgbn.tif", lazy=lazy)
    np.testing.assert_array_equal(np.asarray(f.data), rgba[..., :3])
    assert "not marked as alpha" in f.applied["samples"] and "transparent" not in f.applied


def test_an_alpha_that_hides_every_pixel_is_ignored():
    rgba = np.full((6, 7, 4), 200, np.uint8)
    rgba[..., 3] = 0  # a fourth channel of zeros is not opacity: nothing would be left to segment
    np.testing.assert_array_equal(to_rgb_float(rgba), to_rgb_float(rgba[..., :3]))
    np.testing.assert_array_equal(open_image(rgba).read(), to_rgb_float(rgba[..., :3]))
    grey_alpha = np.stack([np.full((6, 7), 0.5), np.eye(6, 7)], axis=-1)  # grey + alpha, float
    out = to_rgb_float(grey_alpha)
    np.testing.assert_array_equal(out[np.eye(6, 7) == 0], 0.0)
    np.testing.assert_array_equal(out[np.eye(6, 7) == 1], 0.5)
    np.testing.assert_array_equal(open_image(grey_alpha).read(), out)


def test_unknown_axes_are_an_error_that_says_what_to_do(tmp_path):
    frames = _frames(3)
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as w:  # three pages, nothing saying what they are
        for page in frames:
            w.write(page, photometric="minisblack", metadata=None)
    with pytest.raises(ImageError) as info:
        read_image(path)
    message = str(info.value)
    # three pages may be a photo's bands or three frames: both are offered, colour first
    assert "(3, 24, 32)" in message and "--axes SYX when its 3 planes" in message and "axes='SYX'" in message
    assert "--axes TYX when they are frames" in message
    with pytest.raises(ImageError, match="holds 3 planes"):
        open_image(path, axes="TYX")
    f = read_image(path, axes="tyx")
    assert f.axes == "TYX" and f.applied["axes_given"] == "TYX"
    with pytest.raises(ImageError, match="do not match its shape"):
        read_image(path, axes="YX")
    with pytest.raises(ValueError, match="each axis of the file once"):
        read_image(path, axes="TTX")


def test_tiff_photometric_and_bit_depth(tmp_path):
    g = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    tifffile.imwrite(tmp_path / "mw.tif", g, photometric="miniswhite")
    with Image.open(tmp_path / "mw.tif") as ref:
        np.testing.assert_array_equal(read_image(tmp_path / "mw.tif").data, np.asarray(ref))  # 0 is white
    mask = g > 100  # a 1-bit mask: tifffile writes bool as MINISWHITE
    tifffile.imwrite(tmp_path / "bits.tif", mask)
    with Image.open(tmp_path / "bits.tif") as ref:
        np.testing.assert_array_equal(read_image(tmp_path / "bits.tif").data, np.asarray(ref))
    cmap = np.zeros((3, 256), np.uint16)
    cmap[1] = np.arange(256) * 257
    tifffile.imwrite(tmp_path / "pal.tif", g, photometric="palette", colormap=cmap)
    f = read_image(tmp_path / "pal.tif")
    with Image.open(tmp_path / "pal.tif") as ref:
        np.testing.assert_array_equal(to_rgb_float(f.data), to_rgb_float(np.asarray(ref.convert("RGB"))))
    assert f.axes == "YXS" and f.applied["converted"] == "PALETTE -> RGB"


@pytest.mark.parametrize("compression", ["tiff_lzw", "jpeg", "jpeg-ycbcr", "tiff_adobe_deflate", "packbits"])
@pytest.mark.parametrize("lazy", [False, True])
def test_compressed_tiffs_are_read_as_pillow_reads_them(tmp_path, compression, lazy):
    # LZW (GIS exports, scanners, ImageJ) and JPEG TIFFs, whole or window by window: tifffile
    # decodes them with imagecodecs. JPEG in YCbCr is the compact orthomosaic GeoTIFF: a big one
    # is read lazily, as RGB
    rgb = (np.random.default_rng(3).random((96, 120, 3)) * 255).astype(np.uint8)
    rgb[20:60, 30:90] = (60, 150, 40)
    path = tmp_path / f"{compression}.tif"
    # in strips: a file of one strip (one chunk) is read once whatever lazy says
    if compression == "jpeg-ycbcr":
        Image.fromarray(rgb).convert("YCbCr").save(path, compression="jpeg", strip_size=4096)
    else:
        Image.fromarray(rgb).save(path, compression=compression, strip_size=4096)
    with Image.open(path) as ref:
        expected = np.asarray(ref.convert("RGB"))
    source = open_image(path, lazy=lazy)
    assert source.lazy == lazy
    if lazy and compression == "jpeg-ycbcr":
        assert source.applied["converted"] == "JPEG YCbCr -> RGB (imagecodecs)" and "samples" not in source.applied
    np.testing.assert_array_equal(source.read_uint8(), expected)
    np.testing.assert_array_equal(source.read_uint8((10, 20, 70, 100)), expected[10:70, 20:100])


@pytest.mark.parametrize("compression", ["jpeg", "lzw"])
@pytest.mark.parametrize("lazy", [False, True])
def test_a_tiffs_transparency_mask_is_nodata(tmp_path, compression, lazy):
    # GDAL's internal mask (a mask IFD beside the image): how a JPEG-compressed orthomosaic keeps
    # its nodata, which JPEG itself leaves near black, not black
    rgb = np.full((96, 128, 3), (120, 90, 60), np.uint8)
    rgb[30:60, 40:80] = (60, 150, 40)
    mask = np.zeros((96, 128), bool)
    mask[8:88, 10:118] = True
    rgb[~mask] = (3, 2, 4)
    path = tmp_path / "ortho.tif"
    with tifffile.TiffWriter(path) as tw:
        if compression == "jpeg":  # tifffile writes YCbCr as given: convert first
            ycbcr = np.asarray(Image.fromarray(rgb).convert("YCbCr"))
            tw.write(ycbcr, photometric="ycbcr", subsampling=(2, 2), compression="jpeg", tile=(32, 32))
        else:
            tw.write(rgb, photometric="rgb", compression=compression, tile=(32, 32))
        tw.write(mask, photometric=4, subfiletype=4, tile=(32, 32), compression="zlib")
    decoded = tifffile.imread(path, key=0)  # the image alone (imagecodecs: YCbCr to RGB)
    source = open_image(path, lazy=lazy)
    assert source.lazy == lazy and "mask" in source.applied
    u8 = source.read_uint8()
    np.testing.assert_array_equal(u8[~mask], 0)
    np.testing.assert_array_equal(u8[mask], decoded[mask])
    assert np.abs(decoded[40:50, 50:70].astype(int) - (60, 150, 40)).max() < 12  # the plant is green
    assert (decoded[~mask] > 0).any()  # what the mask hides is not black by itself


def test_a_tiff_of_several_images_says_only_the_first_is_read(tmp_path):
    # frames appended one by one, an OME-TIFF of two photos, pages of other sizes: tifffile gives
    # each as a series; one is read, and a mask IFD or an overview (previous test) is no image
    first, second = _marked(), np.zeros((20, 24, 3), np.uint8)
    tifffile.imwrite(tmp_path / "two.tif", first, photometric="rgb")
    tifffile.imwrite(tmp_path / "two.tif", second, photometric="rgb", append=True)
    with pytest.warns(UserWarning, match="two.tif holds 2 images .* only the first is read"):
        source = open_image(tmp_path / "two.tif")
    np.testing.assert_array_equal(source.read_uint8(), first)
    assert "first of 2 images" in source.applied["series"]
    with tifffile.TiffWriter(tmp_path / "pyramid.tif") as tw:  # overviews belong to the image
        tw.write(first, photometric="rgb", subifds=1, tile=(16, 16))
        tw.write(first[::2, ::2], photometric="rgb", subfiletype=1, tile=(16, 16))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "series" not in open_image(tmp_path / "pyramid.tif").applied


@pytest.mark.parametrize("lazy", [False, True])
def test_a_preview_before_a_tiffs_image_is_not_what_is_read(tmp_path, lazy):
    # scanners and cameras may write a reduced-resolution preview (NewSubfileType 1) as the first
    # page (libtiff.net #118): the 8x smaller preview was segmented, said as "only the first is read"
    import warnings

    scan = np.repeat(np.repeat(_marked(), 2, 0), 2, 1)
    with tifffile.TiffWriter(tmp_path / "scan.tif") as tw:
        tw.write(scan[::8, ::8], photometric="rgb", subfiletype=1)
        tw.write(scan, photometric="rgb", tile=(16, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one image: no "holds 2 images"
        f = read_image(tmp_path / "scan.tif", lazy=lazy)
    np.testing.assert_array_equal(np.asarray(f.data[:]), scan)
    assert (
        f.applied["preview"]
        == "the full-resolution image (TIFF series 2); a reduced-resolution preview before it not read"
    )


def test_a_colour_jpeg2000_of_more_than_8_bits_keeps_its_values(tmp_path):
    # archive and herbarium masters: Pillow reads 12- and 16-bit colour JPEG 2000 as 8-bit RGB,
    # wrapped (Pillow #7899): white paper (65535) came out black, a saturated channel 0
    import imagecodecs

    rgb = np.random.default_rng(4).integers(0, 65536, (24, 32, 3)).astype(np.uint16)
    rgb[:6] = 65535
    rgb[6:9, :, 1] = 65535
    (tmp_path / "scan.jp2").write_bytes(imagecodecs.jpeg2k_encode(rgb, level=0, codecformat="jp2"))
    f = read_image(tmp_path / "scan.jp2")
    np.testing.assert_array_equal(f.data, rgb)
    assert f.applied["bits"].startswith("16 bits a sample, decoded by imagecodecs")
    as_bytes = open_image((tmp_path / "scan.jp2").read_bytes()).read_uint8()
    np.testing.assert_array_equal(as_bytes, open_image(tmp_path / "scan.jp2").read_uint8())
    assert (as_bytes[:6] == 255).all() and (as_bytes[6:9, :, 1] == 255).all()
    twelve = rgb >> 4  # 12 bits are divided by 4095, as a TIFF's are: white is white
    (tmp_path / "cam.j2k").write_bytes(imagecodecs.jpeg2k_encode(twelve, level=0, codecformat="j2k", bitspersample=12))
    f = read_image(tmp_path / "cam.j2k")
    np.testing.assert_allclose(f.data, twelve / 4095, atol=1e-6)
    assert (
        f.applied["converted"] == "12 bits per sample: divided by 4095"
        and (open_image(f.path).read_uint8()[:6] == 255).all()
    )
    whole = (tmp_path / "scan.jp2").read_bytes()  # cut short: said so, not imagecodecs' own error
    (tmp_path / "cut.jp2").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImageError, match="cut.jp2 is damaged or cut short"):
        read_image(tmp_path / "cut.jp2")
    eight = (rgb >> 8).astype(np.uint8)  # 8 bits: Pillow's, as before
    (tmp_path / "web.jp2").write_bytes(imagecodecs.jpeg2k_encode(eight, level=0, codecformat="jp2"))
    f = read_image(tmp_path / "web.jp2")
    np.testing.assert_array_equal(f.data, eight)
    assert "bits" not in f.applied


def test_a_jpeg_or_png_with_a_tiff_name_is_read_by_its_content(tmp_path):
    # an export renamed .tif was refused as "not a TIFF file tifffile can read", though Pillow reads it
    photo = _marked()
    Image.fromarray(photo).save(tmp_path / "scan.tif", format="PNG")
    f = read_image(tmp_path / "scan.tif")
    np.testing.assert_array_equal(f.data, photo)
    assert f.applied["named"] == "a PNG file with a TIFF name: read as PNG"
    Image.fromarray(photo).save(tmp_path / "photo.tiff", format="JPEG", quality=95)
    assert read_image(tmp_path / "photo.tiff").applied["format"] == "JPEG"
    (tmp_path / "junk.tif").write_bytes(b"GIF87a" + bytes(40))
    with pytest.raises(ImageError, match="junk.tif is not a TIFF file tifffile can read"):
        read_image(tmp_path / "junk.tif")


def test_a_16_bit_lab_tiff_is_refused_with_what_to_do(tmp_path):
    # Photoshop's "Lab Color, 16 Bits/Channel": the message said "update Pillow", which reads no
    # Lab of more than 8 bits in any version
    lab = np.random.default_rng(5).integers(0, 65536, (12, 10, 3)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "master.tif", lab, photometric="cielab")
    with pytest.raises(ImageError, match=r"master.tif: its pixels are 16-bit Lab colour, .* save the image as RGB"):
        read_image(tmp_path / "master.tif")


def test_zarr_axes(tmp_path):
    import zarr

    frames = _frames(2)
    group = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w")
    group.create_array("0", shape=frames.shape, dtype=frames.dtype)[...] = frames
    group.attrs["multiscales"] = [
        {
            "axes": [{"name": "t", "type": "time"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
            "datasets": [{"path": "0"}],
        }
    ]
    f = read_image(tmp_path / "ome.zarr")
    assert f.axes == "TYX" and f.n_planes == 2
    np.testing.assert_array_equal(np.asarray(f.plane((1,))), frames[1])
    plain = zarr.create_array(str(tmp_path / "plain.zarr"), shape=frames.shape, dtype=frames.dtype)
    plain[...] = frames
    with pytest.raises(ImageError, match="--axes"):
        read_image(tmp_path / "plain.zarr")
    assert read_image(tmp_path / "plain.zarr", axes="ZYX").axes == "ZYX"


def test_a_band_first_zarr_is_told_how_to_say_its_bands_are_colour(tmp_path):
    """A (3, H, W) zarr, as rasterio and GDAL give a raster's bands: the error offers S (colour)
    and a way the API takes; read as frames, its grey planes say S again."""
    import zarr

    from napari_gardenseg import segment_files

    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[4:20, 6:26] = (60, 150, 40)
    store = zarr.create_array(str(tmp_path / "bands.zarr"), shape=(3, 24, 32), dtype="uint8")
    store[...] = np.moveaxis(rgb, -1, 0)
    with pytest.raises(ImageError, match=r"--axes SYX when its 3 planes .* gs.open_image\(path, axes='SYX'\)"):
        open_image(tmp_path / "bands.zarr")
    np.testing.assert_array_equal(np.asarray(open_image(tmp_path / "bands.zarr", axes="SYX").read_uint8()), rgb)
    [done] = segment_files([tmp_path / "bands.zarr"], tmp_path / "out", axes="TYX", crf=False).files
    assert done.note.startswith("3 grey planes (axis T): a photo's red, green and blue? give --axes with S")


def test_npy_files_read_as_the_arrays_passed_to_the_api(tmp_path):
    import dask.array as da

    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), np.uint8)
    np.save(tmp_path / "hwc.npy", rgb)
    np.save(tmp_path / "chw.npy", np.moveaxis(rgb, -1, 0))  # PyTorch's layout
    for name in ("hwc.npy", "chw.npy"):
        f = read_image(tmp_path / name)
        assert f.axes == "YXS" and isinstance(f.data, np.ndarray) and f.applied["format"] == "npy"
        np.testing.assert_array_equal(f.data, rgb)
    lazy = read_image(tmp_path / "hwc.npy", lazy=True)  # windows from a memory map
    assert isinstance(lazy.data, da.Array) and open_image(tmp_path / "hwc.npy", lazy=True).shape[:2] == (20, 30)
    np.testing.assert_array_equal(lazy.data.compute(), rgb)
    np.save(tmp_path / "stack.npy", np.zeros((5, 20, 30), np.uint16))
    with pytest.raises(ImageError, match="axes='TYX'"):
        read_image(tmp_path / "stack.npy")
    assert read_image(tmp_path / "stack.npy", axes="TYX").n_planes == 5
    # what is not an image array says so, and a pickle is never loaded
    np.save(tmp_path / "a_seg.npy", np.array([{"masks": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "text.npy", np.array(["a", "b"]))
    (tmp_path / "fake.npy").write_bytes(b"not numpy at all")
    for name, words in [("a_seg.npy", "Python objects"), ("text.npy", "not an image"), ("fake.npy", "not a numpy")]:
        with pytest.raises(ImageError, match=words):
            read_image(tmp_path / name)


def test_animation_frames_are_a_time_stack(tmp_path):
    frames = [Image.fromarray(np.full((10, 12), v, np.uint8)) for v in (10, 100, 200)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    f = read_image(tmp_path / "a.gif")
    assert f.axes == "TYXS" and f.n_planes == 3 and f.applied["frames"] == 3
    np.testing.assert_array_equal(f.data[:, 0, 0, 0], [10, 100, 200])


def test_exif_transpose_matches_pillow_for_every_orientation(tmp_path):
    base = Image.fromarray(_marked(20, 30))
    for orientation in range(1, 9):
        exif = base.getexif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.png"
        base.save(path, exif=exif)
        with Image.open(path) as ref:
            want = np.asarray(ImageOps.exif_transpose(ref).convert("RGB"))
        np.testing.assert_array_equal(read_image(path).data, want)
        assert read_image(path).data.shape[:2] == ((30, 20) if orientation >= 5 else (20, 30))


def test_files_that_are_not_whole_images_say_what_is_wrong(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "ok.jpg", quality=90)
    tifffile.imwrite(tmp_path / "ok.tif", noise)
    half = {s: (tmp_path / f"ok.{s}").read_bytes() for s in ("jpg", "tif")}
    cases = {
        "empty.jpg": b"",
        "notes.png": b"this is a text file, not a picture",
        "notes.tif": b"this is a text file, not a picture",
        "cut.jpg": half["jpg"][: len(half["jpg"]) // 2],
        "cut.tif": half["tif"][: len(half["tif"]) // 2],
    }
    said = {"empty": r"is empty \(0 bytes\)", "notes": "is not a", "cut": "truncated"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageError, match=said[name.split(".")[0]]) as err:
            read_image(tmp_path / name)
        assert name in str(err.value)
    assert read_image(tmp_path / "ok.jpg").data.shape == (300, 400, 3)  # the whole files still read
    # cut inside a long EXIF block, before the pixels: Pillow says "Truncated File Read"
    exif = Image.Exif()
    exif[0x010E] = "x" * 30_000
    Image.fromarray(noise).save(tmp_path / "exif.jpg", exif=exif.tobytes())
    (tmp_path / "cut exif.jpg").write_bytes((tmp_path / "exif.jpg").read_bytes()[:15_000])
    with pytest.raises(ImageError, match="cut exif.jpg stops before its image ends"):
        read_image(tmp_path / "cut exif.jpg")


@pytest.mark.parametrize(
    "name, said",
    [
        ("DJI_0001.MP4", r"DJI_0001.MP4 is a video: take frames from it \(e.g. `ffmpeg -i DJI_0001.MP4 -vf fps=1"),
        ("bed 2.mov", r"bed 2.mov is a video: .*`ffmpeg -i 'bed 2.mov' "),
        (
            "scan.pdf",
            r"scan.pdf is a PDF document: export its pages as images \(e.g. `pdftoppm -png -r 300 scan.pdf page`",
        ),
    ],
)
def test_a_video_or_a_pdf_says_how_to_make_images_of_it(tmp_path, name, said):
    (tmp_path / name).write_bytes(b"\x00\x00\x00\x18ftypmp42" if name != "scan.pdf" else b"%PDF-1.4")
    with pytest.raises(ImageError, match=said):
        read_image(tmp_path / name)


@pytest.mark.parametrize(
    "name, said",
    [
        ("IMG_0001.AAE", "IMG_0001.AAE is a file that cameras, phones or photo software keep beside a photo"),
        ("IMG_0002.xmp", "IMG_0002.xmp is a file that cameras"),
        ("IMG_0004.JPG.json", r"IMG_0004.JPG.json is a JSON file .*COCO annotations are read by `gardenseg train"),
    ],
)
def test_a_phones_side_files_picked_up_by_a_glob_are_named_as_such(tmp_path, name, said):
    # `gardenseg segment DCIM/IMG_*` takes an iPhone's edit plist and Google Takeout's sidecars along;
    # they were told to be opened in an image editor and saved as PNG or JPEG
    (tmp_path / name).write_text('<?xml version="1.0"?><plist/>' if not name.endswith("json") else '{"title": "x"}')
    with pytest.raises(ImageError, match=said):
        read_image(tmp_path / name)


@pytest.mark.parametrize("name", ["IMG_0001.DNG", "dsc.nef", "photo.cr2"])
def test_a_camera_raw_file_is_refused_not_read_as_its_preview(tmp_path, name):
    # DNG, NEF and CR2 are TIFFs whose first image is often a small preview: Pillow would read that
    preview = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / name, preview, photometric="rgb")
    with pytest.raises(ImageError, match=f"{name} is a camera's raw file: develop it"):
        read_image(tmp_path / name)


def test_a_whole_ycbcr_tiff_that_pillow_cannot_read_is_not_called_truncated(tmp_path, monkeypatch):
    from napari_gardenseg import _image_file, _tiff_reader

    rgb = np.random.default_rng(0).integers(0, 256, (60, 70, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("YCbCr").save(tmp_path / "scan.tif")
    whole = (tmp_path / "scan.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(whole[: len(whole) // 2])
    assert read_image(tmp_path / "scan.tif").data.shape == (60, 70, 3)

    def old_pillow(path):  # Pillow before 13 raised "image file is truncated" on such files
        raise _image_file.truncated_error(path)

    monkeypatch.setattr(_tiff_reader, "read_pillow", old_pillow)
    with pytest.raises(ImageError, match=r"cannot read this TIFF's YCbCr pixels \(the file is whole\); update Pillow"):
        read_image(tmp_path / "scan.tif")
    with pytest.raises(ImageError, match="truncated"):  # a file that is cut short still says so
        read_image(tmp_path / "cut.tif")


def test_heic_photos_from_phones(tmp_path, monkeypatch, unregister_heif):
    import pillow_heif  # the heif extra, in [all] and so in [test]

    from napari_gardenseg._napari_reader import get_reader

    pillow_heif.register_heif_opener()
    a = _marked(300, 400)
    a[100:200, 150:250] = (40, 160, 60)  # a green plant in the middle
    path = tmp_path / "IMG_0001.HEIC"
    Image.fromarray(a).save(path, quality=95)
    f = read_image(path)
    assert f.data.shape == (300, 400, 3) and f.data.dtype == np.uint8 and f.applied["format"] == "HEIF"
    assert np.abs(f.data[110:190, 160:240].astype(int) - (40, 160, 60)).max() < 25  # lossy, but the same colours
    assert f.data[:6, :8, 0].mean() > 200  # not turned: the red corner stays top-left
    ((data, meta, kind),) = get_reader(str(path))(str(path))
    assert kind == "image" and data.shape == (300, 400, 3) and meta["name"] == "IMG_0001"
    # without the plugin: what to install, not Pillow's "cannot identify image file"
    monkeypatch.setitem(__import__("sys").modules, "pillow_heif", None)
    unregister_heif()  # as a process without it has Pillow: no HEIF opener
    with pytest.raises(ImageError, match="pip install pillow-heif"):
        read_image(path)


@pytest.fixture
def unregister_heif(monkeypatch):
    """Call it to give Pillow as a fresh process has it: pillow-heif's opener not registered (by
    other tests or a .heic read before), until the test ends."""
    from napari_gardenseg import _pillow_reader

    Image.init()  # Pillow's own plugins registered first: they would go with the list restored

    def unregister():
        monkeypatch.setattr(Image, "ID", [i for i in Image.ID if i != "HEIF"])
        monkeypatch.setattr(Image, "OPEN", {k: v for k, v in Image.OPEN.items() if k != "HEIF"})
        _pillow_reader.heif_opener.cache_clear()  # registered again on the next open, as in a fresh process

    yield unregister
    _pillow_reader.heif_opener.cache_clear()  # Pillow's lists restored: the answer kept must follow them


def test_a_heic_is_read_by_its_content_whatever_its_name(tmp_path, monkeypatch, unregister_heif):
    # transfer tools and apps save HEIC photos as .jpg (Pillow #2806), a web upload hands its
    # bytes: in a fresh process both were "not an image Pillow can read", pillow-heif installed
    import pillow_heif

    path = tmp_path / "IMG_0011.jpg"
    pillow_heif.from_pillow(Image.fromarray(_marked(60, 80))).save(path, quality=95)
    unregister_heif()
    f = read_image(path)
    assert f.applied["format"] == "HEIF" and f.data.shape == (60, 80, 3) and f.data[:6, :8, 0].mean() > 200
    unregister_heif()
    np.testing.assert_array_equal(open_image(path.read_bytes()).read_uint8(), f.data)
    # without pillow-heif: what to install, by path and as bytes
    monkeypatch.setitem(__import__("sys").modules, "pillow_heif", None)
    unregister_heif()
    with pytest.raises(ImageError, match=r"IMG_0011.jpg is a HEIC/HEIF photo .*`pip install pillow-heif`"):
        read_image(path)
    with pytest.raises(ImageError, match=r"the photo given as bytes is a HEIC/HEIF photo .*`pip install pillow-heif`"):
        open_image(path.read_bytes())


def test_a_heics_primary_image_is_read_wherever_it_is(tmp_path):
    # HEIF names its photo in its pitm box, which need not be its first image (libheif #37): the
    # grey image 0 was read ("a blank image"); viewers and pillow-heif show the primary
    import pillow_heif

    photo = _marked(60, 80)
    heif = pillow_heif.from_pillow(Image.new("RGB", (32, 24), (90, 90, 90)))
    heif.add_from_pillow(Image.fromarray(photo))
    heif.save(tmp_path / "IMG_0008.HEIC", quality=95, primary_index=1)
    f = read_image(tmp_path / "IMG_0008.HEIC")
    assert f.data.shape == (60, 80, 3) and f.data[:6, :8, 0].mean() > 200
    assert f.applied["images"] == "the primary image (2 of 2 in the file); the others not read"
    np.testing.assert_array_equal(open_image((tmp_path / "IMG_0008.HEIC").read_bytes()).read_uint8(), f.data)


def test_a_jpeg_missing_only_its_end_marker_is_read(tmp_path):
    # Samsung panoramas end their scan without the end marker, a video after it (libjpeg-turbo
    # #163); a copy can lose the last 2 bytes: every row is there, and viewers show it. A file cut
    # inside its pixels is still refused: in its last row, at a restart marker, half way
    import re

    noise = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "whole.jpg", quality=90)
    Image.fromarray(noise).save(tmp_path / "restarts.jpg", quality=90, restart_marker_rows=1)
    whole, restarts = (tmp_path / "whole.jpg").read_bytes(), (tmp_path / "restarts.jpg").read_bytes()
    want = read_image(tmp_path / "whole.jpg").data
    video = b"\x00\x00\x00\x18ftypmp42\xff\xe1" + bytes(range(256)) * 8 + b"SEFHSEFT"
    for name, data in {"no end.jpg": whole[:-2], "pano.jpg": whole[:-2] + video}.items():
        (tmp_path / name).write_bytes(data)
        f = read_image(tmp_path / name)
        np.testing.assert_array_equal(f.data, want)
        assert f.applied["jpeg_end"].startswith("no end marker (EOI) after the pixels")
    np.testing.assert_array_equal(open_image(whole[:-2]).read_uint8(), want)
    last = list(re.compile(rb"\xff[\xd0-\xd7]").finditer(restarts, restarts.index(b"\xff\xda")))[-1].start()
    cuts = {
        "row.jpg": whole[:-4],
        "at.jpg": restarts[:last],
        "after.jpg": restarts[: last + 2],
        "half.jpg": whole[:3000],
    }
    for name, data in cuts.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageError, match=f"{name} stops before its image ends .truncated"):
            read_image(tmp_path / name)


def test_photos_are_made_arrays_and_compared_a_band_of_rows_at_a_time(tmp_path, monkeypatch):
    # Pillow's array interface holds two bytes copies of a whole photo; the end-marker check held a
    # difference image and its last decode: a 48 MP JPEG without its end marker peaked at three
    # decodes. Bands give the same pixels, and a cut in the last band is still seen
    from napari_gardenseg import _jpeg_end, _pillow_reader

    monkeypatch.setattr(_pillow_reader, "_BAND_ROWS", 16)
    monkeypatch.setattr(_jpeg_end, "_BAND_ROWS", 16)
    rng = np.random.default_rng(3)
    for mode, arr in {
        "RGB": rng.integers(0, 256, (71, 9, 3), dtype=np.uint8),
        "I;16": rng.integers(0, 65536, (40, 5), dtype=np.uint16),
        "F": rng.random((33, 4), dtype=np.float32),
    }.items():
        im = Image.fromarray(arr)
        assert im.mode == mode
        np.testing.assert_array_equal(_pillow_reader.pillow_array(im), arr)
    noise = rng.integers(0, 256, (200, 48, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "tall.jpg", quality=90)
    whole = (tmp_path / "tall.jpg").read_bytes()
    want = np.asarray(Image.open(tmp_path / "tall.jpg"))
    (tmp_path / "no end.jpg").write_bytes(whole[:-2])
    np.testing.assert_array_equal(read_image(tmp_path / "no end.jpg").data, want)
    (tmp_path / "row.jpg").write_bytes(whole[:-4])
    with pytest.raises(ImageError, match="row.jpg stops before its image ends .truncated"):
        read_image(tmp_path / "row.jpg")


def test_an_icc_profile_is_srgb_by_what_it_does_not_by_its_name(tmp_path):
    # GIMP embeds "GIMP built-in Linear sRGB" (sRGB's primaries, linear curves) in its linear-light
    # exports: called "sRGB already" by its name, the photo stayed linear, about 4x too dark
    rgb = np.random.default_rng(2).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    rgb[0, 0] = 128
    Image.fromarray(rgb).save(tmp_path / "gimp.png", icc_profile=_linear_rgb_profile("GIMP built-in Linear sRGB"))
    f = read_image(tmp_path / "gimp.png")
    np.testing.assert_allclose(f.data[0, 0], 188, atol=1)  # as the linear profile of test_icc_profiles
    assert f.applied["icc_profile"] == "GIMP built-in Linear sRGB -> sRGB"


def test_a_folder_stands_for_the_image_files_in_it(tmp_path):
    from napari_gardenseg._image_folders import expand_folders, image_files

    photos = tmp_path / "photos"
    (photos / "older").mkdir(parents=True)
    for name in ("b.JPG", "a.png", "c.heic", "d.tif", "e.j2k", "older/e.png"):  # j2k: JPEG 2000's codestream
        (photos / name).write_bytes(b"x")
    (photos / "stack.zarr").mkdir()
    # the label images of photos in the folder are not photos; an image merely named so is one
    # .npy files are read when named, but a folder's are side files (Cellpose's _seg.npy, features)
    for name in (
        "notes.txt",
        ".DS_Store",
        "._b.JPG",
        "run.json",
        "a_labels.tif",
        "b_labels_crf.tif",
        "f_labels.png",
        "a_seg.npy",
        "notes.zarr",  # a file: a zarr store is a folder
    ):
        (photos / name).write_bytes(b"x")
    want = [photos / n for n in ("a.png", "b.JPG", "c.heic", "d.tif", "e.j2k", "f_labels.png", "stack.zarr")]
    assert image_files(photos) == want  # by name, not into subfolders, hidden and other files skipped
    # a link to a photo on a card that is not mounted: left out, and said (it went missing silently)
    (photos / "IMG_0002.JPG").symlink_to(tmp_path / "card" / "IMG_0002.JPG")
    with pytest.warns(UserWarning, match=r"1 link\(s\) named like photos point at nothing.*IMG_0002.JPG"):
        assert image_files(photos) == want
    (photos / "IMG_0002.JPG").unlink()
    assert expand_folders([str(tmp_path / "one.png"), photos, photos / "stack.zarr"]) == [
        str(tmp_path / "one.png"),
        *want,
        photos / "stack.zarr",
    ]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="no image files in the folder"):
        image_files(tmp_path / "empty")
    np.save(tmp_path / "empty" / "a.npy", np.zeros((4, 4)))  # arrays of any kind: only those named are read
    with pytest.raises(ImageError, match=r"its 1 .npy file\(s\) are read only when given by name"):
        image_files(tmp_path / "empty")
    (tmp_path / "empty" / "day1").mkdir()  # photos in a subfolder: that is said too
    (tmp_path / "empty" / "day1" / "a.jpg").write_bytes(b"x")
    with pytest.raises(ImageError, match=r"subfolders \(day1/\) are not searched.*; its 1 .npy file"):
        image_files(tmp_path / "empty")
    with pytest.raises(NotADirectoryError):
        image_files(photos / "a.png")
    with pytest.raises(ImageError, match="is a folder, not an image file or zarr store.*segment_files"):
        read_image(photos)  # gs.segment(folder) says what takes a folder (zarr had: "No group found in store")
    with pytest.raises(ImageError, match="notes.zarr is a file, not a zarr store"):
        read_image(photos / "notes.zarr")


def test_the_outputs_a_folder_listing_leaves_out_are_the_image_outputs_of_a_batch():
    from napari_gardenseg._batch_outputs import output_files
    from napari_gardenseg._image_reader import IMAGE_SUFFIXES, OUTPUT_IMAGE_TAILS

    for big in (False, True):
        files = output_files("a", crf=True, coco=True, write_overlay=True, big=big, georeferenced=big)
        images = {f[1:] for f in files if f.endswith((*IMAGE_SUFFIXES, ".zarr"))}
        assert images <= set(OUTPUT_IMAGE_TAILS) and files[-1] == "a_run.json"


def test_a_folder_of_subfolders_is_searched_only_when_asked(tmp_path):
    from napari_gardenseg._image_folders import expand_entries, folder_entries, image_files

    photos = tmp_path / "photos"
    for name in (
        "top.jpg",
        "2024-06/plotB/b.jpg",
        "2024-06/plotA/a.jpg",
        "2024-06/plotA/a_labels.tif",  # a painted label image beside its photo
        "2024-06/z.png",
        ".trash/old.jpg",  # hidden folders are not searched
        "2024-06/@eaDir/a.jpg/SYNOPHOTO_THUMB_M.jpg",  # nor a NAS's thumbnails and recycle bins
        "#recycle/c.jpg",
        "$RECYCLE.BIN/$R3ABC.jpg",
        "results/a_overlay.png",  # an earlier batch's outputs (named after its run record) are not photos
        "results/a_labels.tif",
        "results/a_labels_crf.tif",
        "results/a_run.json",
        "results/b_overlay.png",  # a photo of that name, without a run record, is one
        "out/x.png",  # the output folder of this batch
    ):
        (photos / name).parent.mkdir(parents=True, exist_ok=True)
        (photos / name).write_bytes(b"x")
    (photos / "2024-06" / "plotA" / "up").symlink_to(photos, target_is_directory=True)  # a link back up
    assert image_files(photos) == [photos / "top.jpg"]
    entries = folder_entries(photos, recursive=True, exclude=[photos / "out"])
    # the folder's own files first, then each subfolder's, depth first, by name
    assert entries == [
        (photos / "top.jpg", ""),
        (photos / "2024-06" / "z.png", "2024-06"),
        (photos / "2024-06" / "plotA" / "a.jpg", "2024-06/plotA"),
        (photos / "2024-06" / "plotB" / "b.jpg", "2024-06/plotB"),
        (photos / "results" / "b_overlay.png", "results"),
    ]
    assert expand_entries(["one.png", photos / "2024-06" / "plotB"], recursive=True) == [
        ("one.png", ""),
        (photos / "2024-06" / "plotB" / "b.jpg", ""),
    ]
    (photos / "results" / "b_overlay.png").unlink()
    with pytest.raises(ImageError, match=r"it holds a batch's outputs .*, not photos"):
        image_files(photos / "results")  # given by mistake for the photos' folder
    (photos / "top.jpg").unlink()  # without files of its own, the message names the subfolders
    with pytest.raises(ImageError, match=r"its subfolders \(2024-06/, out/, results/\) are not searched.*--recursive"):
        image_files(photos)


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("dtype, value", [(np.float32, -10000), (np.uint16, 65535), (np.uint8, 255)])
def test_a_geotiffs_nodata_value_is_read_as_black(tmp_path, lazy, dtype, value):
    # GDAL's nodata outside an orthomosaic's survey: left as -10000 it would stretch the whole photo white
    rng = np.random.default_rng(4)
    top = 1.0 if dtype == np.float32 else np.iinfo(dtype).max - 1
    rgb = (rng.random((40, 50, 3)) * top).astype(dtype)
    rgb[:, :10] = value
    if dtype != np.float32:
        rgb[5, 20, 0] = value  # a saturated red, not nodata: every sample must have the value
    path = tmp_path / "ortho.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", extratags=[(42113, "s", 0, f"{value}", True)])
    f = read_image(path, lazy=lazy)
    assert "GDAL_NODATA" in f.applied["nodata"]
    want = rgb.copy()
    want[:, :10] = 0
    np.testing.assert_array_equal(np.asarray(f.data), want)
    read = open_image(path, lazy=lazy).read()
    np.testing.assert_array_equal(read[:, :10], 0.0)  # black: the colour stage leaves it out
    if dtype == np.float32:
        np.testing.assert_allclose(read[:, 10:], rgb[:, 10:], atol=1e-6)  # the photo keeps its values
    tifffile.imwrite(tmp_path / "plain.tif", rgb, photometric="rgb")  # no tag: nothing changed
    assert "nodata" not in read_image(tmp_path / "plain.tif").applied


def test_arcgis_float_nodata_reads_quietly_and_a_value_no_pixel_has_is_said(tmp_path, caplog):
    # ArcGIS writes float32's lowest value as nodata: tifffile logged "parsing GDAL_NODATA tag raised
    # ValueError" three times per file; the text rounded (-3.40282e+38) matches no pixel, as in GDAL,
    # and the record said those pixels were read as black, while the frame stretched the photo white
    lowest = float(np.finfo(np.float32).min)
    rgb = np.random.default_rng(4).random((40, 50, 3)).astype(np.float32)
    rgb[:, :10] = lowest
    for name, text in (("exact.tif", repr(lowest)), ("rounded.tif", "-3.40282e+38"), ("comma.tif", None)):
        data = rgb.copy()
        if text is None:  # a decimal comma, as GDAL and tifffile read it
            data[:, :10], text = -9999.5, "-9999,5"
        tifffile.imwrite(tmp_path / name, data, photometric="rgb", extratags=[(42113, "s", 0, text, True)])
    with caplog.at_level("WARNING", logger="tifffile"):
        exact = read_image(tmp_path / "exact.tif")
    assert "GDAL_NODATA" not in caplog.text
    assert np.all(exact.data[:, :10] == 0) and "read as black" in exact.applied["nodata"]
    rounded = read_image(tmp_path / "rounded.tif")
    assert (
        rounded.applied["nodata"]
        == "GDAL_NODATA -3.40282e+38: no pixel has exactly that value, so none was read as nodata"
    )
    assert np.all(read_image(tmp_path / "comma.tif").data[:, :10] == 0)


def test_a_cameras_adobe_rgb_said_only_in_exif_is_noted(tmp_path):
    # a DSLR set to Adobe RGB marks it in EXIF (DCF: ColorSpace uncalibrated, interoperability R03)
    # without a profile: read as sRGB, as Pillow reads it, and the record said nothing
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA001] = 0xFFFF
    exif.get_ifd(0x8769)[0xA005] = {1: "R03"}
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(tmp_path / "dsc.jpg", exif=exif)
    assert read_image(tmp_path / "dsc.jpg").applied["colour_space"].startswith("Adobe RGB by its EXIF")
    plain = Image.Exif()
    plain.get_ifd(0x8769)[0xA001] = 1  # sRGB
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(tmp_path / "srgb.jpg", exif=plain)
    assert "colour_space" not in read_image(tmp_path / "srgb.jpg").applied


def test_pillows_pixel_limit_is_lifted_for_our_reads_only(tmp_path, monkeypatch):
    import napari_gardenseg._pillow_reader as reader

    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # a photo of 600 pixels is over it
    assert read_image(tmp_path / "a.png").data.shape == (20, 30, 3)
    assert Image.MAX_IMAGE_PIXELS == 100  # napari's and other plugins' reads keep their guard

    def out_of_memory(im):
        raise MemoryError

    monkeypatch.setattr(reader, "pillow_pixels", out_of_memory)  # a small file that declares a huge image
    with pytest.raises(ImageError, match=r"a.png is 30 x 20 pixels .* more than this machine's free memory"):
        read_image(tmp_path / "a.png")


def test_damaged_files_say_so_instead_of_a_library_error(tmp_path):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (96, 128, 3), np.uint8)
    tifffile.imwrite(tmp_path / "plain.tif", photo, photometric="rgb")
    tifffile.imwrite(tmp_path / "big.tif", photo, photometric="rgb", bigtiff=True)
    tifffile.imwrite(tmp_path / "tiled.tif", photo, photometric="rgb", tile=(32, 32), compression="zlib")
    Image.fromarray(photo).save(tmp_path / "full.webp")
    cuts = {"plain.tif": 8, "big.tif": 8, "tiled.tif": None, "full.webp": 200}
    for name, keep in cuts.items():
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut_{name}").write_bytes(data[: keep or len(data) // 2])
        with pytest.raises(ImageError, match=f"cut_{name} (is damaged or cut short|stops before its image ends)"):
            np.asarray(read_image(tmp_path / f"cut_{name}").data)


def test_a_pil_image_is_read_as_its_file_is(tmp_path):
    rng = np.random.default_rng(5)
    rgb = Image.fromarray(rng.integers(0, 255, (24, 32, 3), np.uint8))
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(tmp_path / "p.png")
    rgb.convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6
    rgb.save(tmp_path / "turned.jpg", exif=exif, quality=95)
    for name in ("p.png", "c.jpg", "turned.jpg"):
        with Image.open(tmp_path / name) as im:
            np.testing.assert_array_equal(to_rgb_float(im), to_rgb_float(read_image(tmp_path / name).data))
            np.testing.assert_array_equal(open_image(im).read(), to_rgb_float(read_image(tmp_path / name).data))


def test_ome_zarr_in_bioformats2raw_layout_reads_its_first_image(tmp_path):
    import zarr

    image = np.random.default_rng(2).integers(0, 255, (1, 1, 1, 24, 32), np.uint8)
    root = zarr.open_group(str(tmp_path / "slide.zarr"), mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    group = root.create_group("0")
    group.create_array("0", shape=image.shape, dtype="uint8")[...] = image
    axes = [{"name": n, "type": "space" if n in "zyx" else "time" if n == "t" else "channel"} for n in "tczyx"]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [{"path": "0"}]}]
    f = read_image(tmp_path / "slide.zarr")
    assert f.axes == "YX"
    np.testing.assert_array_equal(np.asarray(f.data), image[0, 0, 0])
    zarr.open_group(str(tmp_path / "groups.zarr"), mode="w").create_group("plate")
    with pytest.raises(ImageError, match="no arrays at its top .*its groups: plate"):
        read_image(tmp_path / "groups.zarr")


def test_an_rgb_photo_stored_as_ome_zarr_is_read_in_colour(tmp_path):
    # NGFF puts channels before y and x: an RGB orthophoto is c, y, x with omero colours red, green,
    # blue (ome-zarr-py's RGB). It was read as three grey planes: the API refused it as a stack,
    # the batch wrote 0 instances with "a grey image"
    import zarr

    rgb = np.random.default_rng(3).integers(0, 255, (24, 32, 3), np.uint8)
    omero = {"channels": [{"color": c} for c in ("FF0000", "00FF00", "0000FF")], "rdefs": {"model": "color"}}
    for fmt, axes in ((2, "cyx"), (3, "tczyx")):
        data = np.moveaxis(rgb, -1, 0).reshape((1, 3, 1, 24, 32) if axes == "tczyx" else (3, 24, 32))
        group = zarr.open_group(str(tmp_path / f"{axes}.ome.zarr"), mode="w", zarr_format=fmt)
        group.create_array("0", shape=data.shape, dtype="uint8")[...] = data
        multiscales = [{"axes": [{"name": a} for a in axes], "datasets": [{"path": "0"}]}]
        attrs = {"multiscales": multiscales, "omero": omero}
        group.attrs.update(attrs if fmt == 2 else {"ome": {"version": "0.5", **attrs}})
        f = read_image(tmp_path / f"{axes}.ome.zarr")
        assert f.axes == "YXS" and not f.is_stack
        np.testing.assert_array_equal(np.asarray(f.data), rgb)
        # channels a microscope coloured otherwise stay planes
        group.attrs.update({"omero": {"channels": [{"color": c} for c in ("0000FF", "00FF00", "FF00FF")]}})
        if fmt == 2:
            # a fourth band (near-infrared, 0 in places) is no alpha: NGFF has none
            nir = np.concatenate([data, np.zeros_like(data[:1])])
            four = zarr.open_group(str(tmp_path / "rgbn.ome.zarr"), mode="w", zarr_format=2)
            four.create_array("0", shape=nir.shape, dtype="uint8")[...] = nir
            four.attrs.update({**attrs, "omero": {"channels": [*omero["channels"], {"color": "FFFFFF"}]}})
            f4 = read_image(tmp_path / "rgbn.ome.zarr")
            assert f4.axes == "YXS"
            np.testing.assert_array_equal(np.asarray(f4.data), rgb)
            assert read_image(tmp_path / f"{axes}.ome.zarr").axes == "CYX"
            with pytest.raises(ImageError, match=r"channels are a photo's red, green and blue, say so: axes='SYX'"):
                open_image(tmp_path / f"{axes}.ome.zarr")
            from napari_gardenseg import segment_files

            [done] = segment_files([tmp_path / f"{axes}.ome.zarr"], tmp_path / "out", crf=False).files
            assert done.note.startswith("3 grey channels (axis C): a photo's red, green and blue? give --axes with S")


def test_a_fiji_composite_time_lapse_of_a_colour_photo_is_said_to_hold_its_colours_as_channels(tmp_path):
    # TCYX with 3 channels (Fiji's "composite", not "RGB Color"): each channel segmented as a grey
    # plane, and the note said "a grey image" without the --axes hint a CYX file gets
    from napari_gardenseg import segment_files

    rgb = np.random.default_rng(3).integers(0, 255, (24, 32, 3), np.uint8)
    path = tmp_path / "timelapse.tif"
    tifffile.imwrite(path, np.stack([np.moveaxis(rgb, -1, 0)] * 2), imagej=True, metadata={"axes": "TCYX"})
    assert read_image(path).axes == "TCYX"
    [done] = segment_files([path], tmp_path / "out", crf=False).files
    assert done.note.startswith("3 grey channels (axis C): a photo's red, green and blue? give --axes with S")


def test_a_zarr_group_of_several_arrays_names_them(tmp_path):
    # an orthophoto beside its elevation model: the first array by name (dsm) was segmented, silently
    import zarr

    group = zarr.open_group(str(tmp_path / "survey.zarr"), mode="w")
    group.create_array("dsm", shape=(24, 32), dtype="float32")
    group.create_array("image", shape=(24, 32, 3), dtype="uint8")
    with pytest.raises(
        ImageError, match=r"2 arrays \(dsm, image\): give the one that holds the photo, e.g. .*survey.zarr/image"
    ):
        read_image(tmp_path / "survey.zarr")
    assert read_image(tmp_path / "survey.zarr" / "image").axes == "YXS"


def test_a_zipped_zarr_store_is_read_in_place_and_another_zip_is_named(tmp_path):
    # a store shipped as one file (zarr's ZipStore) was "not an image Pillow can read: save it as PNG"
    import zipfile

    import zarr

    rgb = np.random.default_rng(4).integers(0, 255, (40, 50, 3), np.uint8)
    store = zarr.storage.ZipStore(tmp_path / "ortho.zarr.zip", mode="w")
    zarr.create_array(store, shape=rgb.shape, dtype="uint8", chunks=(20, 20, 3))[...] = rgb
    store.close()
    f = read_image(tmp_path / "ortho.zarr.zip")
    assert f.axes == "YXS"
    np.testing.assert_array_equal(np.asarray(f.data), rgb)
    np.testing.assert_array_equal(open_image(tmp_path / "ortho.zarr.zip").read(), to_rgb_float(rgb))
    # zipped with its folder, as a file manager's "Compress" does
    import shutil

    zarr.create_array(str(tmp_path / "field.zarr"), shape=rgb.shape, dtype="uint8")[...] = rgb
    shutil.make_archive(str(tmp_path / "field.zarr"), "zip", tmp_path, "field.zarr")
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "field.zarr.zip").data), rgb)
    with zipfile.ZipFile(tmp_path / "photos.zip", "w") as archive:
        archive.writestr("a.jpg", b"not really")
    with pytest.raises(ImageError, match="photos.zip is a ZIP archive, not a zipped zarr store: unzip it"):
        read_image(tmp_path / "photos.zip")


def test_a_tiffs_icc_profile_is_converted_as_a_pngs_is(tmp_path):
    # Lightroom's and Photoshop's "export as TIFF" in Adobe RGB or ProPhoto: the same colours as
    # the same pixels in a PNG with that profile, and a 16-bit one says it was not converted
    rgb = np.random.default_rng(2).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    profile = _linear_rgb_profile()
    Image.fromarray(rgb).save(tmp_path / "a.png", icc_profile=profile)
    tifffile.imwrite(tmp_path / "a.tif", rgb, photometric="rgb", iccprofile=profile)
    png, tif = read_image(tmp_path / "a.png"), read_image(tmp_path / "a.tif")
    np.testing.assert_array_equal(tif.data, png.data)
    assert not np.array_equal(tif.data, rgb)
    assert tif.applied["icc_profile"] == "linear RGB (test) -> sRGB"
    tifffile.imwrite(tmp_path / "b.tif", rgb.astype(np.uint16) * 257, photometric="rgb", iccprofile=profile)
    assert "not applied" in read_image(tmp_path / "b.tif").applied["icc_profile"]
