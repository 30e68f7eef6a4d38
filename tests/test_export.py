"""COCO export: RLE of instance windows agrees with pycocotools, and big label images are read per box."""

import numpy as np
import pytest

from napari_gardenseg._export import labels_to_coco_annotations, rle_encode

mask_utils = pytest.importorskip("pycocotools.mask")  # in the test extra, so CI runs this


def test_rle_of_a_window_equals_the_full_frame_encoding():
    rng = np.random.default_rng(1)
    for _ in range(300):
        h, w = rng.integers(1, 12, 2)
        m = rng.random((h, w)) < rng.random()
        rle = rle_encode(m)
        assert sum(rle["counts"]) == h * w
        np.testing.assert_array_equal(mask_utils.decode(mask_utils.frPyObjects(rle, h, w)), m)
        if m.any():
            ys, xs = np.nonzero(m)
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            assert rle_encode(m[y0:y1, x0:x1], (y0, x0), (h, w)) == rle


class CountingLabels:
    def __init__(self, data):
        self.data, self.shape, self.dtype = data, data.shape, data.dtype
        self.reads = []

    def __getitem__(self, key):
        out = self.data[key]
        self.reads.append(out.size)
        return out


def test_annotations_read_each_instance_from_its_box():
    labels = np.zeros((300, 400), np.int32)
    labels[10:40, 20:90] = 1
    labels[200:290, 300:310] = 2
    labels[100:102, 0:400] = 3  # a full-width stripe: runs that cross columns
    boxes = [(10, 20, 40, 90), (200, 300, 290, 310), (100, 0, 102, 400)]
    lazy = CountingLabels(labels)
    anns = labels_to_coco_annotations(lazy, [1, 2, 1], [0.9, 0.8, 0.7], boxes=boxes)
    assert max(lazy.reads) < labels.size / 10
    assert [a["area"] for a in anns] == [30 * 70, 90 * 10, 2 * 400]
    for a, lab in zip(anns, (1, 2, 3)):
        decoded = mask_utils.decode(mask_utils.frPyObjects(a["segmentation"], 300, 400))
        np.testing.assert_array_equal(decoded, labels == lab)
    assert anns[1]["bbox"] == [300.0, 200.0, 10.0, 90.0]


def test_annotation_ids_are_the_label_ids_when_an_instance_has_no_pixel():
    # the CRF labels may lose an instance: the later annotations keep their label's id (the table's row)
    labels = np.zeros((20, 30), np.int32)
    labels[0:5, 0:5] = 1
    labels[10:15, 10:20] = 3
    anns = labels_to_coco_annotations(labels, [1, 1, 2], [0.9, 0.8, 0.7])
    assert [(a["id"], a["area"], a["category_id"]) for a in anns] == [(1, 25, 1), (3, 50, 2)]
    assert [a["id"] for a in labels_to_coco_annotations(labels, [1, 1, 2], start_id=11)] == [11, 13]


def test_to_coco_takes_a_label_image_as_napari_dask_and_zarr_hold_it():
    """A stack's current-plane Labels layer is (1, H, W); segment_to_zarr's labels are zarr; a
    lazy layer's are dask: each is a label image (it was refused as not one). A zarr v2 store's
    may be big-endian ('>i4'), which skimage's relabel_sequential refused."""
    import dask.array as da
    import pandas as pd

    import napari_gardenseg as gs

    labels = np.zeros((30, 40), np.int32)
    labels[2:10, 3:20], labels[15:25, 5:30] = 1, 2
    features = pd.DataFrame({"label": [1, 2], "class_name": ["weed", "rosette"], "score": [0.9, 0.8]})
    expected = gs.to_coco(labels, features=features)
    for held in (labels[None], da.from_array(labels, chunks=16), labels.astype(">i4")):
        assert gs.to_coco(held, features=features) == expected

    class Unread:  # a big stack given by mistake: refused before a pixel is read
        shape, dtype = (2, 30, 40), np.dtype(np.int32)

        def __array__(self, *args, **kwargs):
            raise AssertionError("read")

    with pytest.raises(TypeError, match=r"got an array of shape \(2, 30, 40\)"):
        gs.to_coco(Unread(), features=features)
