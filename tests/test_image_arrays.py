import numpy as np
import pytest

from napari_gardenseg._image_arrays import ImageError, to_rgb_float, to_rgb_uint8


def test_uint8_rgb_divided_by_255():
    img = np.array([[[0, 128, 255]]], np.uint8)
    out = to_rgb_float(img)
    assert out.dtype == np.float32 and out.shape == (1, 1, 3)
    np.testing.assert_allclose(out[0, 0], [0, 128 / 255, 1])


def test_grayscale_is_repeated():
    img = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = to_rgb_float(img)
    assert out.shape == (3, 4, 3)
    assert np.all(out[..., 0] == out[..., 1]) and np.all(out[..., 1] == out[..., 2])


def test_wider_types_are_divided_by_the_range_that_holds_them():
    # uint16 over 255: its full range; 0..255 in any type: /255; negative or beyond 65535: min..max
    np.testing.assert_allclose(to_rgb_float(np.array([[100, 4095]], np.uint16))[0, :, 0], [100 / 65535, 4095 / 65535])
    np.testing.assert_allclose(to_rgb_float(np.array([[3, 200]], np.uint16))[0, :, 0], [3 / 255, 200 / 255])
    np.testing.assert_allclose(to_rgb_float(np.array([[3.0, 200.0]], np.float32))[0, :, 0], [3 / 255, 200 / 255])
    np.testing.assert_allclose(to_rgb_float(np.array([[0, 60000]], np.int64))[0, :, 0], [0, 60000 / 65535])
    np.testing.assert_allclose(to_rgb_float(np.array([[-5, 5, 15]], np.int16))[0, :, 0], [0, 0.5, 1])
    np.testing.assert_allclose(to_rgb_float(np.array([[70000, 80000]], np.uint32))[0, :, 0], [0, 1])


def test_a_float_photos_dips_below_0_are_black_not_a_stretch():
    # a 0..1 photo resized bicubic: one pixel at -0.01 stretched the whole photo from its minimum,
    # 1.8 times brighter for a dim one
    from napari_gardenseg._image_source import ImageSource

    dim = np.random.default_rng(2).random((20, 30, 3)).astype(np.float32) * 0.56
    dipped = dim.copy()
    dipped[3, 4] = -0.01
    expected = np.clip(dipped, 0, 1)
    np.testing.assert_array_equal(to_rgb_float(dipped), expected)
    np.testing.assert_array_equal(ImageSource(dipped).read(), expected)
    np.testing.assert_array_equal(to_rgb_uint8(dipped), np.rint(expected * 255).astype(np.uint8))
    # values that reach far below 0 against their maximum are no photo's dips: stretched, as before
    signed = np.array([[-0.05, 0.0, 0.05]], np.float32)  # a difference image
    np.testing.assert_allclose(to_rgb_float(signed)[0, :, 0], [0, 0.5, 1])
    np.testing.assert_allclose(to_rgb_float(np.array([[-1.0, 0.0, 1.0]]))[0, :, 0], [0, 0.5, 1])  # NDVI


@pytest.mark.parametrize(
    "copy",
    [
        lambda u8: u8.astype(np.uint16) * 257,  # skimage.util.img_as_uint
        lambda u8: u8.astype(np.float32),
        lambda u8: u8.astype(np.float64) / 255,  # skimage.util.img_as_float
        lambda u8: u8.astype(np.float32) / np.float32(255),
        lambda u8: u8.astype(np.int64),
        lambda u8: u8.astype(np.uint16),
    ],
)
def test_copies_of_an_8bit_image_give_the_same_floats(copy):
    u8 = np.random.default_rng(3).integers(2, 127, (6, 7, 3), dtype=np.uint8)  # a dim scene: 2..126
    np.testing.assert_array_equal(to_rgb_float(copy(u8)), to_rgb_float(u8))


def test_float_in_unit_range_is_kept():
    img = np.full((2, 2), 0.25, np.float64)
    np.testing.assert_allclose(to_rgb_float(img), 0.25)


def test_float_reflectance_whose_highlights_pass_one_is_read_as_zero_to_one():
    # a 0..1 float photo at x1.02 (reflectance overshoots on highlights): not divided by 255 (black)
    unit = np.random.default_rng(4).random((8, 9, 3)).astype(np.float32)
    over = unit * np.float32(1.02)
    np.testing.assert_allclose(to_rgb_float(over), np.minimum(over, 1.0))
    assert to_rgb_float(over).max() == 1.0 and to_rgb_float(over).mean() > 0.4


def test_float_with_nan_and_inf():
    img = np.array([[np.nan, -np.inf, 5.0, np.inf, 10.0]])
    out = to_rgb_float(img)[0, :, 0]
    assert np.isfinite(out).all()
    # NaN is nodata: black; -inf the darkest value, +inf the brightest; 5..10 fits 0..255
    np.testing.assert_allclose(out, [0, 5 / 255, 5 / 255, 10 / 255, 10 / 255])
    out = to_rgb_float(np.array([[np.nan, -np.inf, -5.0, np.inf, 15.0]]))[0, :, 0]  # negative: min..max
    np.testing.assert_allclose(out, [0, 0, 0, 1, 1])
    # a float raster's NaN frame (GDAL, rasterio) around reflectances in 0.2..0.8: black, the rest kept
    raster = np.full((20, 30, 3), np.nan, np.float32)
    raster[5:15, 10:25] = np.linspace(0.2, 0.8, 10 * 15 * 3, dtype=np.float32).reshape(10, 15, 3)
    out = to_rgb_float(raster)
    np.testing.assert_array_equal(out[np.isnan(raster)], 0.0)
    np.testing.assert_array_equal(out[5:15, 10:25], raster[5:15, 10:25])


def test_masked_uint8_rgb_is_black_where_masked_in_both_conversions():
    rgb = np.full((2, 3, 3), 200, np.uint8)
    mask = np.zeros(rgb.shape, bool)
    mask[0, 0] = True
    image = np.ma.masked_array(rgb, mask)
    assert (to_rgb_uint8(image)[0, 0] == 0).all() and (to_rgb_float(image)[0, 0] == 0).all()
    assert (to_rgb_uint8(image)[1, 1] == 200).all()


def test_masked_values_are_nodata():
    # rasterio's read(masked=True) of a float raster whose nodata is -10000: black, and no stretch
    data = np.full((4, 5, 3), 0.5, np.float32)
    data[0] = -10000
    out = to_rgb_float(np.ma.masked_equal(data, -10000))
    np.testing.assert_array_equal(out[0], 0.0)
    np.testing.assert_array_equal(out[1:], 0.5)
    assert to_rgb_float(data)[1:].min() == 1.0  # unmasked, the fill value stretches the rest to white
    # the array's own dtype keeps its rule: 8-bit values are divided by 255 whatever is masked
    u8 = np.ma.masked_array(np.full((4, 5, 3), 1, np.uint8), mask=False)
    u8[0, 0] = np.ma.masked
    out = to_rgb_float(u8)
    np.testing.assert_array_equal(out[0, 0], 0.0)
    np.testing.assert_allclose(out[1:], 1 / 255)
    # nothing masked: the data as it is
    np.testing.assert_array_equal(to_rgb_float(np.ma.masked_array(data[1:])), to_rgb_float(data[1:]))


def test_bool_and_constant():
    assert to_rgb_float(np.ones((2, 2), bool)).max() == 1.0
    np.testing.assert_allclose(to_rgb_float(np.full((2, 2), 7, np.int32)), 7 / 255)
    np.testing.assert_allclose(to_rgb_float(np.full((2, 2), -7, np.int32)), 0.5)  # no range to read: mid-grey


def test_rgba_drops_alpha_and_channel_first_is_moved():
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 17
    out = to_rgb_float(rgba)
    assert out.shape == (5, 6, 3)
    np.testing.assert_allclose(out[..., 0], 1.0)
    np.testing.assert_allclose(out[..., 1:], 0.0)
    chw = np.moveaxis(rgba[..., :3], -1, 0)
    np.testing.assert_array_equal(to_rgb_float(chw), out)


def test_read_only_input():
    img = np.zeros((4, 4, 3), np.uint8)
    img.flags.writeable = False
    assert to_rgb_uint8(img).flags.writeable
    assert to_rgb_float(img).shape == (4, 4, 3)


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (np.zeros((0, 5)), ImageError, "empty"),
        (np.zeros((2, 3, 4, 5)), ImageError, "4 dimensions"),
        (np.zeros((7, 8, 9)), ImageError, "no channel axis"),
        (np.zeros((3, 3), complex), TypeError, "complex"),
        (np.array([["a", "b"]]), TypeError, "dtype"),
        (np.array([[object()]]), TypeError, "dtype"),
    ],
)
@pytest.mark.parametrize("convert", [to_rgb_float, to_rgb_uint8])
def test_bad_images(bad, exc, match, convert):
    with pytest.raises(exc, match=match):
        convert(bad)


def test_uint8_conversion_round_trips():
    img = np.random.default_rng(1).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb_uint8(to_rgb_float(img)), img)


def test_uint8_in_row_bands_is_the_rounded_float_image(monkeypatch):
    # to_rgb_uint8 converts a few rows at a time with the whole image's intensity range (taken in
    # bands too): the same values as rounding to_rgb_float, for every dtype rule
    import napari_gardenseg._image_source as io

    monkeypatch.setattr(io, "_RANGE_BAND_PIXELS", 100)  # many bands on a small image
    rng = np.random.default_rng(3)
    rgba16 = rng.integers(0, 65535, (61, 23, 4)).astype(np.uint16)
    rgba16[..., 3] = np.where(rng.random((61, 23)) < 0.2, 0, 65535)
    floats = rng.random((59, 17, 3)).astype(np.float32) * 300
    floats[rng.random(floats.shape) < 0.05] = np.nan
    floats[5, 5, 1], floats[50, 3, 0] = np.inf, -np.inf
    images = [
        rgba16,
        rng.integers(0, 4096, (40, 30)).astype(np.uint16),
        floats,
        rng.integers(-500, 500, (3, 37, 19)).astype(np.int16),  # channel-first, negative
        rng.random((33, 21)) < 0.5,
        rng.integers(0, 256, (45, 20, 2), dtype=np.uint8),
        rng.random((30, 44, 3)),
    ]
    for image in images:
        expected = np.clip(np.rint(to_rgb_float(image) * 255.0), 0, 255).astype(np.uint8)
        got = to_rgb_uint8(image, rows=7)
        assert got.dtype == np.uint8 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("rows", [-1, 0, 2.5, True])
def test_to_rgb_uint8_names_bad_rows(rows):
    # a negative count returned the uninitialised buffer as the image
    with pytest.raises(ValueError, match="rows must be a whole number, at least 1"):
        to_rgb_uint8(np.zeros((10, 10), np.uint16), rows=rows)
    white = to_rgb_uint8(np.full((10, 10), 65535, np.uint16), rows=3)
    assert white.shape == (10, 10, 3) and (white == 255).all()
