"""The instance table's statistics: the same figures as a whole-image count, read band by band."""

import tracemalloc

import numpy as np
import zarr

from napari_gardenseg._results import label_areas, label_bands, label_stats


def _grid_labels(side=6000, cells=30):
    labels = np.zeros((side, side), np.int32)
    step = side // cells
    for i in range(cells):
        for j in range(cells):
            labels[i * step : i * step + step // 2, j * step + 3 : j * step + step // 2 + 7] = i * cells + j + 1
    return labels, cells * cells


def test_label_stats_match_a_whole_image_count():
    labels, n = _grid_labels(900, 9)
    labels[5, 5] = 0
    area, boxes, centroids = label_stats(labels, n + 2, centroids=True)  # two absent ids
    np.testing.assert_array_equal(area, np.bincount(labels.ravel(), minlength=n + 3)[1:])
    np.testing.assert_array_equal(label_areas(labels, n + 2), np.bincount(labels.ravel(), minlength=n + 3))
    ys, xs = np.nonzero(labels == 17)
    assert boxes[16] == (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
    assert centroids[16] == (round(ys.mean(), 2), round(xs.mean(), 2))
    assert boxes[n] == (0, 0, 0, 0) and np.isnan(centroids[n + 1][0])
    store = zarr.create_array(store={}, shape=labels.shape, chunks=(256, 256), dtype=np.int32)
    store[:] = labels
    assert all(b.start % 256 == 0 for b in label_bands(store))  # whole chunks of a store
    za, zb, zc = label_stats(store, n + 2, centroids=True)
    np.testing.assert_array_equal(za, area)
    assert zb == boxes and zc[:n] == centroids[:n]


def test_the_statistics_of_a_big_label_image_take_far_less_than_the_image():
    labels, n = _grid_labels()
    for fn in (lambda: label_stats(labels, n, centroids=True), lambda: label_areas(labels, n)):
        tracemalloc.start()
        fn()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        # a whole-image bincount alone copies the labels as int64: twice their int32 size
        assert peak < labels.nbytes / 2, (peak, labels.nbytes)
