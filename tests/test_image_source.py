"""ImageSource: windows of any array or file, with to_rgb_float's mapping; lazy files read window by window."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from napari_gardenseg._image_arrays import ImageError, to_rgb_float
from napari_gardenseg._image_source import ImageSource, open_image


def _cases():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(20, 22, 3)).astype(np.float32)
    f[0, 0, 0], f[1, 1, 1], f[2, 2, 2] = np.nan, np.inf, -np.inf
    unit = (rng.random((10, 12, 3)) * 0.6 + 0.2).astype(np.float32)  # in 0..1: contrast kept
    unit[0, 0, 0], unit[1, 1, 1] = np.nan, np.inf
    return [
        unit,
        rng.integers(0, 256, (37, 41, 3), dtype=np.uint8),
        rng.integers(0, 65535, (30, 20), dtype=np.uint16),
        rng.normal(size=(3, 25, 30)).astype(np.float32),  # channel-first
        rng.random((20, 20, 4)),  # RGBA float64 in 0..1
        (rng.random((20, 20, 3)) * 1.3).astype(np.float32),  # reflectance past 1 in its highlights
        rng.random((9, 9)) > 0.5,
        np.full((5, 6), 7, np.int32),  # flat
        f,
        # rasterio's read(masked=True): masked values (nodata) black, the rule of its own dtype
        np.ma.masked_less(np.where(unit > 0.3, unit, -10000).astype(np.float32), -9999),
        np.ma.masked_array(np.full((8, 9, 3), 1, np.uint8), mask=np.eye(8, 9, dtype=bool)[..., None].repeat(3, -1)),
    ]


@pytest.mark.parametrize("array", _cases(), ids=lambda a: f"{a.dtype}{a.shape}")
def test_windows_map_exactly_as_to_rgb_float(array):
    whole = to_rgb_float(array)
    src = ImageSource(array)
    np.testing.assert_array_equal(src.read(), whole)
    h, w = src.shape
    win = (1, 2, max(2, h - 1), max(3, w - 2))
    np.testing.assert_array_equal(src.read(win), whole[win[0] : win[2], win[1] : win[3]])
    u8 = src[1:3, 2:5]
    assert u8.dtype == np.uint8 and u8.shape == (2, 3, 3)


def test_bad_arrays_are_named():
    with pytest.raises(ImageError, match="empty"):
        ImageSource(np.zeros((0, 5)))
    with pytest.raises(TypeError, match="complex"):
        ImageSource(np.zeros((4, 4), complex))
    with pytest.raises(ImageError, match="no channel axis"):
        ImageSource(np.zeros((10, 10, 10)))
    import dask.array as da

    photo = da.from_array(np.ones((30, 40, 3), np.uint8), chunks=(10, 40, 3))
    unknown = photo[photo[:, 0, 0] > 0]  # boolean indexing: dask does not know the rows' count
    with pytest.raises(ImageError, match=r"not known yet .*compute_chunk_sizes"):
        ImageSource(unknown)
    assert ImageSource(unknown.compute_chunk_sizes()).shape == (30, 40)


def test_files_tiff_is_lazy_when_asked_and_zarr_always(tmp_path):
    import tifffile
    import zarr

    image = np.random.default_rng(1).integers(0, 4000, (300, 500, 3), dtype=np.uint16)
    tif = tmp_path / "big.tif"
    tifffile.imwrite(tif, image, tile=(128, 128), bigtiff=True)
    lazy = open_image(tif, lazy=True)
    assert lazy.lazy and lazy.shape == (300, 500)
    np.testing.assert_array_equal(lazy.read((10, 20, 60, 90)), to_rgb_float(image)[10:60, 20:90])
    assert not open_image(tif).lazy  # small files are simply read
    store = tmp_path / "img.zarr"
    z = zarr.create_array(str(store), shape=image.shape, chunks=(100, 100, 3), dtype=image.dtype)
    z[...] = image
    src = open_image(store)
    assert src.lazy and src.shape == (300, 500)
    np.testing.assert_array_equal(src.read((0, 0, 50, 50)), to_rgb_float(image)[:50, :50])
    # numpy's slices, as dask and numpy users write a window first
    np.testing.assert_array_equal(src.read(np.s_[10:60, -50:]), to_rgb_float(image)[10:60, -50:])
    with pytest.raises(ValueError, match="step=n"):
        src.read(np.s_[::2, ::2])
    with pytest.raises(TypeError, match=r"\(y0, x0, y1, x1\) or \(slice"):
        src.read((0, 0, 50))
    for box in ((-10, 10, 50, 50), (50, 50, 10, 10)):  # an empty array was read for these
        for read in (src.read, src.read_uint8):
            with pytest.raises(ValueError, match="not .y0, x0, y1, x1. with 0 <= y0 <= y1"):
                read(box)
    assert src[50:10, :].shape == (0, 500, 3)  # numpy's slices: a reversed one is empty
    with pytest.raises(TypeError, match="got None"):
        open_image(None)
    with pytest.raises(FileNotFoundError, match="no such image file"):
        open_image(tmp_path / "missing.tif")


@pytest.mark.parametrize("array", _cases(), ids=lambda a: f"{a.dtype}{a.shape}")
def test_the_callers_array_is_never_written(array):
    before = array.copy()
    to_rgb_float(array)
    src = ImageSource(array)
    src.read()
    src.read_uint8((0, 0, 2, 2))
    np.testing.assert_array_equal(array, before)  # NaN and inf stay where they were, values unscaled


def test_tensors_and_leading_axes_of_one_read_as_the_image():
    # a model's (C, H, W) float tensor, a batch of one, a (T, Z, Y, X) reader's singleton axes
    import dask.array as da
    import torch

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (12, 15, 3), dtype=np.uint8)
    whole = to_rgb_float(rgb)
    tensor = torch.from_numpy(np.moveaxis(rgb, -1, 0) / 255.0).float()
    for image in (tensor, tensor[None], rgb[None], rgb[None, None], da.from_array(rgb[None], chunks=(1, 5, 5, 3))):
        np.testing.assert_allclose(ImageSource(image).read(), whole, atol=1e-7)
        np.testing.assert_allclose(to_rgb_float(image), whole, atol=1e-7)
    grey = ImageSource(rgb[None, None, :, :, 0])
    assert grey.shape == (12, 15) and grey.channels == 1
    with pytest.raises(ImageError, match="4 dimensions"):  # a real stack stays an error
        ImageSource(np.stack([rgb, rgb])[None])


def test_a_napari_multiscale_layers_data_is_read_at_full_resolution_and_a_layer_is_refused():
    from napari.layers import Image as ImageLayer

    rng = np.random.default_rng(8)
    full = rng.integers(0, 255, (64, 96, 3), np.uint8)
    layer = ImageLayer([full, full[::2, ::2]], multiscale=True, rgb=True)
    assert type(layer.data).__name__ == "MultiScaleData"
    np.testing.assert_array_equal(ImageSource(layer.data).read(), to_rgb_float(full))
    with pytest.raises(TypeError, match="use gs.segment_layer"):
        ImageSource(layer)


def test_what_scripts_pass_as_a_file_is_read_or_named(tmp_path):
    # bytes paths and file objects were "unsupported image dtype |S15 / object", a URL "no such
    # image file: https:/example.org/..." (the address mangled)
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "photo ö.png"
    Image.fromarray(pixels).save(path)
    expected = open_image(path).read()
    assert expected.shape == (20, 30, 3)
    with open(path, "rb") as f:
        inputs = [bytes(path), path.read_bytes(), io.BytesIO(path.read_bytes()), f, path.as_uri()]
        for value in inputs:
            np.testing.assert_array_equal(open_image(value).read(), expected)
    for address in ("https://example.org/p.jpg", b"https://example.org/p.jpg"):
        with pytest.raises(ImageError, match="https://example.org/p.jpg is a web address: .* reads no network"):
            open_image(address)
    with pytest.raises(ImageError, match="the bytes given hold no image Pillow reads"):
        open_image(b"\0" + b"not an image" * 400)
    with pytest.raises(ImageError, match="the file object holds no image Pillow reads"):
        open_image(io.BytesIO(b"not an image"))
    # the path's guards hold for bytes and file objects: a file cut short is said (Pillow's raw
    # "image file is truncated"), empty bytes are not a path (". is a folder"), and a big photo is no
    # decompression bomb
    (tmp_path / "cut").mkdir()
    jpeg = tmp_path / "cut" / "p.jpg"
    Image.fromarray(pixels).resize((300, 200)).save(jpeg, quality=90)
    cut = jpeg.read_bytes()[: jpeg.stat().st_size // 2]
    with pytest.raises(ImageError, match="the photo given as bytes stops before its image ends .truncated"):
        open_image(cut)
    with pytest.raises(ImageError, match="the photo in the file object stops before its image ends .truncated"):
        open_image(io.BytesIO(cut))
    with pytest.raises(ImageError, match="the bytes given are empty"):
        open_image(b"")
    big = io.BytesIO()
    Image.new("L", (12000, 8000), 0).save(big, format="PNG")  # 96 MP: over Pillow's 89 MP warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning
        assert open_image(io.BytesIO(big.getvalue())).shape == (8000, 12000)
    # a file:// address is unquoted once: 'plot%41.png' is not 'plotA.png'
    odd = tmp_path / "plot%41.png"
    Image.fromarray(pixels[::-1]).save(odd)
    np.testing.assert_array_equal(open_image(odd.as_uri().encode()).read(), open_image(odd).read())
    # a stack passed as bytes is refused as by its path, not read as its first page
    stack = tmp_path / "stack.tif"
    Image.fromarray(pixels).save(stack, save_all=True, append_images=[Image.fromarray(pixels[::-1])])
    with pytest.raises(ImageError, match="holds 2 images .a stack.: give the file by its path"):
        open_image(io.BytesIO(stack.read_bytes()))
    # the other entry points take the same paths
    from napari_gardenseg._image_reader import is_image_path
    from napari_gardenseg._train_samples import prepare_samples

    labels = tmp_path / "photo ö_labels.png"
    Image.fromarray((pixels[..., 0] > 128).astype(np.uint8)).save(labels)
    (sample,) = prepare_samples([(bytes(path), labels.as_uri(), "plant")])
    np.testing.assert_array_equal(sample.image, pixels)
    assert is_image_path(b"/a/photo.jpg") and is_image_path("file:///a/photo.jpg") and not is_image_path(pixels)
    from napari_gardenseg._image_folders import expand_entries

    for folder in (bytes(tmp_path), tmp_path.as_uri()):  # a batch's or adapt's folder
        assert [p for p, _ in expand_entries([folder])] == [path, odd, stack]


def test_a_phone_photo_of_several_frames_is_one_photo_as_bytes_as_by_its_path(tmp_path):
    # an MPO (a camera's stereo pair, a portrait photo's depth map or previews) was "a stack" as bytes
    # or a file object: by its path its first frame is the photo, and so it is here
    import io

    from PIL import Image

    photo = np.zeros((40, 60, 3), np.uint8)
    photo[..., 0], photo[..., 1] = np.linspace(0, 250, 60).astype(np.uint8), 120
    depth = np.full((40, 60, 3), 90, np.uint8)
    path = tmp_path / "phone.jpg"
    Image.fromarray(photo).save(path, "MPO", save_all=True, append_images=[Image.fromarray(depth)])
    with Image.open(path) as im:
        assert im.format == "MPO" and im.n_frames == 2
    expected = open_image(path).read_uint8()
    assert np.abs(expected.astype(int) - photo).mean() < 5  # the photo, not the depth map
    with open(path, "rb") as f:
        for value in (path.read_bytes(), io.BytesIO(path.read_bytes()), f):
            np.testing.assert_array_equal(open_image(value).read_uint8(), expected)


def test_a_plane_stored_as_one_chunk_is_read_once(tmp_path):
    # dask.delayed(imread) (napari readers of stacked files, bioio), a zarr of one chunk: every window
    # decoded the whole photo again, 28 times for one segment of the sample photo
    import dask
    import dask.array as da
    import zarr

    from napari_gardenseg import segment
    from napari_gardenseg.synthetic import garden_scene

    image = garden_scene(8_000_401, shape=(160, 200), n_plants=(3, 5))[0]
    reads = []

    def imread():
        reads.append(1)
        return image.copy()

    one_chunk = da.from_delayed(dask.delayed(imread)(), shape=image.shape, dtype=image.dtype)
    result = segment(one_chunk, "garden", score_threshold=0.3)
    assert len(reads) == 1 and result.labels.max() >= 1
    np.testing.assert_array_equal(result.refined, segment(image, "garden", score_threshold=0.3).refined)
    z = zarr.create_array(str(tmp_path / "one.zarr"), shape=image.shape, chunks=image.shape, dtype="uint8")
    z[...] = image
    assert not ImageSource(z).lazy and not ImageSource(da.from_array(image, chunks=-1)).lazy
    # chunks smaller than the plane are read window by window, as before
    assert ImageSource(da.from_array(image, chunks=(80, 100, 3))).lazy
