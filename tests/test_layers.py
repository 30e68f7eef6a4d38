"""napari glue without Qt (napari_gardenseg._layers).

Layers are plain napari layer models and the viewer is a ``ViewerModel``: no
window, no OpenGL. Most tests replace ``segment`` by a fake that returns known
instances, so they check the bookkeeping (planes, ids, names, in-place
replacement, edits) and not the model; a few run the bundled model end to end.
"""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari")
from napari.components import ViewerModel  # noqa: E402
from napari.layers import Image, Labels, Shapes  # noqa: E402

from napari_gardenseg import _inference, _layers  # noqa: E402
from napari_gardenseg._inference import Cancelled  # noqa: E402
from napari_gardenseg._layers import segment_layer, write_layers  # noqa: E402
from napari_gardenseg._options import SegmentOptions  # noqa: E402
from napari_gardenseg._plane_run import run_planes  # noqa: E402
from napari_gardenseg._planes import plane_source  # noqa: E402
from napari_gardenseg._results import SegmentationResult  # noqa: E402

# -- a fake segment(): one or two square instances per plane -------------------------


def fake_result(plane, n=2, crf=False):
    h, w = plane.shape[:2]
    labels = np.zeros((h, w), np.int32)
    boxes = []
    for i in range(n):
        y0, x0 = 4 + 10 * i, 4 + 10 * i
        labels[y0 : y0 + 6, x0 : x0 + 6] = i + 1
        boxes.append((x0, y0, x0 + 6, y0 + 6))
    refined = None
    if crf:
        refined = labels.copy()
        refined[refined == 1] = 0  # the CRF "removed" instance 1's pixels
    return SegmentationResult(
        labels=labels,
        refined=refined,
        class_ids=np.arange(1, n + 1),
        class_names=[f"c{i + 1}" for i in range(n)],
        scores=np.linspace(0.9, 0.6, n).astype(np.float32),
        boxes=np.array(boxes, np.float32).reshape(n, 4),
    )


class _Calls(list):
    n = 2  # instances per plane the fake finds


@pytest.fixture
def fake_segment(monkeypatch):
    calls = _Calls()

    def segment_with(image, model, options, progress=None, cancel=None, **kw):
        calls.append(np.asarray(image).shape)
        if progress:
            progress(0.5, "fake")
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        return fake_result(np.asarray(image), n=calls.n, crf=options.crf)

    monkeypatch.setattr(_inference, "segment_with", segment_with)
    monkeypatch.setattr("napari_gardenseg._models.load_model", lambda model, device="auto": model)
    return calls


NO_CRF = SegmentOptions(crf=False)


def fake_run(source, calls, n=2, crf=False):
    """run_planes with the fake segment finding ``n`` instances per plane."""
    calls.n = n
    return run_planes(source, "fake", SegmentOptions(crf=crf))


def rgb(h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# -- plane_source --------------------------------------------------------------------


def test_plane_source_rgb_2d_keeps_geometry():
    layer = Image(rgb(), name="photo", scale=(0.5, 0.25), translate=(10, 20), units=("um", "um"))
    src = plane_source(layer)
    assert src.rgb and src.planes == [()] and not src.stack
    assert src.plane_shape == (48, 64) and src.out_shape == (48, 64)
    np.testing.assert_allclose(src.scale, (0.5, 0.25))
    np.testing.assert_allclose(src.out_translate, (10, 20))
    assert [str(u) for u in src.units] == ["micrometer", "micrometer"]
    assert src.plane(0).shape == (48, 64, 3)


def test_current_plane_follows_the_dims_point_in_world_coordinates():
    stack = np.zeros((5, 32, 40), np.uint16)
    layer = Image(stack, scale=(2.0, 1, 1), translate=(100.0, 0, 0))
    # world z = 100 + 2 * 3 = 106 is plane 3; 105.2 rounds to plane 3 as napari does
    assert plane_source(layer, point=(106.0, 0, 0)).planes == [(3,)]
    assert plane_source(layer, point=(105.2, 0, 0)).planes == [(3,)]
    # out of range clips; a longer point (viewer with more axes) uses its last axes
    assert plane_source(layer, point=(500.0, 0, 0)).planes == [(4,)]
    assert plane_source(layer, point=(7.0, 104.0, 0, 0)).planes == [(2,)]
    src = plane_source(layer, point=(106.0, 0, 0))
    assert src.out_shape == (1, 32, 40)  # a one-plane slab...
    np.testing.assert_allclose(src.out_translate, (106.0, 0, 0))  # ...placed at its plane


def test_whole_stack_lists_every_plane_in_c_order():
    layer = Image(np.zeros((2, 3, 16, 16, 3), np.uint8), rgb=True)
    src = plane_source(layer, stack=True)
    assert src.stack and src.out_shape == (2, 3, 16, 16)
    assert src.planes == [(t, z) for t in range(2) for z in range(3)]
    assert src.plane(4).shape == (16, 16, 3)


def test_multiscale_uses_level_0_unless_too_big():
    base = rgb(64, 96)
    pyramid = [base, base[::2, ::2], base[::4, ::4]]
    layer = Image(pyramid, multiscale=True, rgb=True, scale=(3.0, 3.0), translate=(1, 2))
    src = plane_source(layer)
    assert src.level == 0 and src.plane_shape == (64, 96)
    src = plane_source(layer, max_pixels=32 * 48)
    assert src.level == 1 and src.plane_shape == (32, 48)
    np.testing.assert_allclose(src.scale, (6.0, 6.0))  # the level's pixels are twice as big
    np.testing.assert_allclose(src.out_translate, (1, 2))
    assert plane_source(layer, max_pixels=10).level == 2  # nothing fits: the coarsest


def test_dask_stack_computes_only_the_plane_it_reads():
    da = pytest.importorskip("dask.array")
    computed = []

    def block(block_info=None):
        z = block_info[None]["chunk-location"][0]
        computed.append(z)
        return np.full((1, 16, 16), z, np.uint8)

    stack = da.map_blocks(block, chunks=((1,) * 6, (16,), (16,)), dtype=np.uint8)
    layer = Image(stack, multiscale=False)
    computed.clear()  # napari may have read a plane for its thumbnail
    src = plane_source(layer, point=(4, 0, 0))
    plane = src.plane(0)
    assert plane.shape == (16, 16) and plane[0, 0] == 4 and computed == [4]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: None, "no image layer"),
        (lambda: Labels(np.zeros((8, 8), np.int32)), "not an Image layer"),
        # a colour photo napari shows as a stack of 40 slivers of 50 x 3 pixels
        (lambda: Image(np.zeros((40, 50, 3), np.uint8), rgb=False), r"each of its planes is 50 x 3 pixels.*rgb=True"),
        (lambda: Image(np.zeros((20, 500, 4), np.uint8)), r"not shown as a colour image"),  # napari's own guess
        # a grey + alpha PNG as napari's builtin reader gives it: planes of 320 x 2
        (lambda: Image(np.zeros((240, 320, 2), np.uint8)), r"grey image with an alpha channel.*data\[\.\.\., 0\]"),
    ],
)
def test_plane_source_rejects_what_cannot_be_segmented(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        plane_source(make())


# -- run_planes ----------------------------------------------------------------------


def test_stack_ids_are_unique_across_planes(fake_segment):
    layer = Image(np.stack([rgb(seed=i) for i in range(3)]), rgb=True)
    out = fake_run(plane_source(layer, stack=True), fake_segment)
    assert out.labels.shape == (3, 48, 64)
    assert len(fake_segment) == 3 and all(s == (48, 64, 3) for s in fake_segment)
    assert sorted(np.unique(out.labels))[1:] == list(range(1, 7))
    for z in range(3):  # each plane holds its own two ids
        assert set(np.unique(out.labels[z])) - {0} == {2 * z + 1, 2 * z + 2}
    f = out.features
    assert list(f["index"]) == list(range(1, 7)) and list(f["label"]) == list(range(1, 7))
    assert list(f["axis_0"]) == [0, 0, 1, 1, 2, 2]
    assert {"class_name", "score", "area"} <= set(f.columns)
    assert list(f["area"]) == [36] * 6
    # each plane's 6x6 squares at (4, 4) and (14, 14): centroids in the plane's pixels; who found them
    np.testing.assert_allclose(f[["centroid_y", "centroid_x"]], [[6.5, 6.5], [16.5, 16.5]] * 3)
    assert list(f["source"]) == ["model"] * 6
    assert out.refined is None and len(out.boxes) == 6
    # boxes: pixel edges -> napari pixel centres, leading axis = plane
    np.testing.assert_allclose(out.boxes[2][0], (1, 3.5, 3.5))


def test_run_planes_reports_progress_and_cancels_between_planes(fake_segment):
    import threading

    layer = Image(np.zeros((4, 16, 16), np.uint8))
    seen = []
    cancel = threading.Event()

    def progress(frac, msg):
        seen.append((frac, msg))
        if len(seen) == 3:
            cancel.set()  # during plane 1: plane 2 must not start

    with pytest.raises(Cancelled):
        run_planes(plane_source(layer, stack=True), "fake", NO_CRF, progress=progress, cancel=cancel)
    assert len(fake_segment) == 2
    fracs = [f for f, _ in seen]
    assert fracs == sorted(fracs) and seen[1][1].startswith("plane 1/4")


# -- write_layers --------------------------------------------------------------------


@pytest.fixture
def viewer():
    v = ViewerModel()
    v.add_image(rgb(), name="garden", scale=(2.0, 2.0), translate=(5.0, 7.0), units=("mm", "mm"))
    return v


def test_layers_get_names_geometry_and_features(viewer, fake_segment):
    out = fake_run(plane_source(viewer.layers["garden"]), fake_segment, crf=True)
    layers = write_layers(viewer, out, boxes=True)
    masks, crf, boxes = layers["masks"], layers["crf"], layers["boxes"]
    assert (masks.name, crf.name, boxes.name) == ("garden masks", "garden masks (CRF)", "garden boxes")
    assert isinstance(masks, Labels) and isinstance(crf, Labels) and isinstance(boxes, Shapes)
    for layer in (masks, crf, boxes):
        np.testing.assert_allclose(layer.scale, (2.0, 2.0))
        np.testing.assert_allclose(layer.translate, (5.0, 7.0))
        assert [str(u) for u in layer.units] == ["millimeter", "millimeter"]
    assert masks.data.shape == (48, 64) and masks.data.dtype == np.int32
    assert list(masks.features["index"]) == [1, 2]
    assert list(masks.features["class_name"]) == ["c1", "c2"]
    assert list(crf.features["area"]) == [0, 36]  # the refined areas
    assert crf.visible and not masks.visible  # the refined layer shows, the raw one starts hidden
    masks.visible = True  # napari says nothing of a hidden layer's pixels
    # napari finds a label's row through the `index` column
    status = masks.get_status((5 + 2 * 16, 7 + 2 * 16), world=True)  # data pixel (16, 16): label 2
    # napari 0.6 on gives the label's text as "value", 0.5 after the coordinates
    value = status["value"] if "value" in status else status["coordinates"].split(": ", 1)[1]
    assert value.startswith("2;") and "class_name: c2" in value
    assert len(boxes.data) == 2 and list(boxes.text.values) == ["c1 0.90", "c2 0.60"]


def test_labels_lie_on_a_rotated_sheared_or_affine_image(fake_segment):
    """A layer placed by rotate, shear or affine (a reader's georeference, a user's turn): every
    output pixel lands on the image pixel it was segmented from, in world coordinates."""
    v = ViewerModel()
    image = v.add_image(rgb(), name="turned", scale=(2.0, 1.5), translate=(5.0, 7.0), rotate=30, shear=[0.2])
    image.affine = [[1.0, 0.0, 3.0], [0.0, -1.0, 40.0], [0.0, 0.0, 1.0]]  # flipped and moved
    layers = write_layers(v, fake_run(plane_source(image), fake_segment, crf=True), boxes=True)
    pixel = np.array([16.0, 24.0])
    for layer in layers.values():
        np.testing.assert_allclose(layer.data_to_world(pixel), image.data_to_world(pixel))
    # one plane of a turned stack: its one-plane slab lies where that plane does
    stack = v.add_image(
        np.zeros((4, 32, 40), np.uint8),
        name="stack",
        scale=(3.0, 1, 1),
        rotate=[[0.8, 0.6, 0], [-0.6, 0.8, 0], [0, 0, 1]],
    )
    src = plane_source(stack, point=stack.data_to_world((2.0, 0.0, 0.0)))
    assert src.planes == [(2,)]
    out = write_layers(v, fake_run(src, fake_segment), boxes=False)["masks"]
    np.testing.assert_allclose(out.data_to_world((0.0, 10.0, 20.0)), stack.data_to_world((2.0, 10.0, 20.0)))
    # a rerun on the image turned back puts the layer back (nothing left of the old placement)
    image.rotate, image.shear, image.affine = 0, [0.0], np.eye(3)
    again = write_layers(v, fake_run(plane_source(image), fake_segment), boxes=False)["masks"]
    np.testing.assert_allclose(again.data_to_world(pixel), image.data_to_world(pixel))


def test_rerun_replaces_in_place_and_keeps_edited_layers(viewer, fake_segment):
    image = viewer.layers["garden"]
    first = write_layers(viewer, fake_run(plane_source(image), fake_segment), boxes=True)
    again = write_layers(viewer, fake_run(plane_source(image), fake_segment, n=1), boxes=True)
    assert again["masks"] is first["masks"] and again["boxes"] is first["boxes"]
    assert len(viewer.layers) == 3 and set(np.unique(first["masks"].data)) == {0, 1}

    # the user paints in the masks and moves a box: both are kept as they are
    first["masks"].data[40:44, 40:44] = 7
    first["boxes"].data = [first["boxes"].data[0] + 1]
    edited = first["masks"].data.copy()
    third = write_layers(viewer, fake_run(plane_source(image), fake_segment), boxes=True)
    assert third["masks"] is not first["masks"] and third["masks"].name == "garden masks [2]"
    assert third["boxes"].name == "garden boxes [2]"
    np.testing.assert_array_equal(first["masks"].data, edited)
    # the next run replaces the unedited "[2]" layers, still never the edited ones
    fourth = write_layers(viewer, fake_run(plane_source(image), fake_segment, n=1), boxes=True)
    assert fourth["masks"] is third["masks"] and len(viewer.layers) == 5


def test_a_class_name_corrected_in_the_features_is_an_edit_a_rerun_keeps(viewer, fake_segment):
    image = viewer.layers["garden"]
    masks = write_layers(viewer, fake_run(plane_source(image), fake_segment), boxes=False)["masks"]
    features = masks.features.copy()
    features.loc[features["label"] == 1, "class_name"] = "weed"  # what Train on my labels reads
    masks.features = features
    again = write_layers(viewer, fake_run(plane_source(image), fake_segment), boxes=False)["masks"]
    assert again is not masks and again.name == "garden masks [2]"
    assert list(masks.features["class_name"])[0] == "weed"
    # an unedited layer is still replaced in place
    assert write_layers(viewer, fake_run(plane_source(image), fake_segment), boxes=False)["masks"] is again


def test_a_class_name_corrected_in_the_boxes_table_is_an_edit_a_rerun_keeps(viewer, fake_segment):
    # the boxes' text shows their table: a correction there was replaced in place by a rerun
    image = viewer.layers["garden"]
    boxes = write_layers(viewer, fake_run(plane_source(image), fake_segment), boxes=True)["boxes"]
    assert write_layers(viewer, fake_run(plane_source(image), fake_segment), boxes=True)["boxes"] is boxes
    features = boxes.features.copy()
    features.loc[0, "class_name"] = "weed"
    boxes.features = features
    again = write_layers(viewer, fake_run(plane_source(image), fake_segment), boxes=True)["boxes"]
    assert again is not boxes and again.name == "garden boxes [2]"
    assert list(boxes.features["class_name"])[0] == "weed"


def test_painting_an_output_layer_updates_its_features_and_a_rerun_resets_them(viewer, fake_segment):
    image = viewer.layers["garden"]
    masks = write_layers(viewer, fake_run(plane_source(image), fake_segment))["masks"]
    masks.brush_size = 3
    masks.paint((40, 50), 9)  # a plant the model missed
    masks.fill((6, 6), 0)  # one it found by mistake
    rows = masks.features.set_index("label")
    assert list(rows.index) == [2, 9] and rows.loc[9, "source"] == "painted"
    assert rows.loc[9, "area"] == (masks.data == 9).sum() and rows.loc[2, "class_name"] == "c2"
    # the edited layer is kept; a new run's layer starts from that run's table
    again = write_layers(viewer, fake_run(plane_source(image), fake_segment))["masks"]
    assert again is not masks and list(again.features["label"]) == [1, 2]


def test_a_rerun_empties_the_undo_history_of_the_layers_it_replaces(viewer, fake_segment):
    image = viewer.layers["garden"]
    masks = write_layers(viewer, fake_run(plane_source(image), fake_segment))["masks"]
    masks.brush_size = 5
    masks.paint((6, 6), 2)
    masks.undo()  # unedited again, with the stroke on the redo history
    again = write_layers(viewer, fake_run(plane_source(image), fake_segment, n=1))["masks"]
    assert again is masks
    fresh = masks.data.copy()
    masks.redo()  # nothing to redo: the earlier run's stroke must not land on this run's labels
    np.testing.assert_array_equal(masks.data, fresh)
    masks.undo()
    np.testing.assert_array_equal(masks.data, fresh)
    assert list(masks.features["area"]) == [36]


def test_a_run_without_the_crf_or_boxes_shows_its_own_layer(viewer, fake_segment):
    image = viewer.layers["garden"]
    first = write_layers(viewer, fake_run(plane_source(image), fake_segment, crf=True), boxes=True)
    assert not first["masks"].visible and first["crf"].visible and first["boxes"].visible
    # napari's Duplicate Layer copies metadata shallowly: hiding the original must not mark the copy
    copy = viewer.add_labels(first["crf"].data.copy(), name="my copy", metadata=first["crf"].metadata)
    second = write_layers(viewer, fake_run(plane_source(image), fake_segment, n=1))
    assert "hidden_stale" not in copy.metadata["napari_gardenseg"]
    assert second["masks"] is first["masks"] and second["masks"].visible
    assert not first["crf"].visible and not first["boxes"].visible  # the earlier run's: kept, hidden
    assert len(viewer.layers) == 5
    third = write_layers(viewer, fake_run(plane_source(image), fake_segment, crf=True), boxes=True)
    assert third["crf"] is first["crf"] and third["crf"].visible and third["boxes"].visible
    # the raw layer the run without the CRF showed is hidden again: the two would blend
    assert third["masks"] is first["masks"] and not third["masks"].visible
    # one the user ticked to compare keeps its eye
    third["masks"].visible = True
    fourth = write_layers(viewer, fake_run(plane_source(image), fake_segment, crf=True))
    assert fourth["masks"].visible


def test_a_rerun_into_a_layer_the_user_hid_says_it_is_hidden(viewer, fake_segment):
    # a replaced layer keeps the eye the user set; without a word the rerun looks like nothing happened
    from napari_gardenseg._layers import run_notes

    image = viewer.layers["garden"]
    first_out = fake_run(plane_source(image), fake_segment, crf=True)
    first = write_layers(viewer, first_out)
    assert not any("hidden" in n for n in run_notes(first_out))
    first["crf"].visible = False
    out = fake_run(plane_source(image), fake_segment, n=1, crf=True)
    again = write_layers(viewer, out)
    assert again["crf"] is first["crf"] and not again["crf"].visible
    assert "'garden masks (CRF)' is hidden: tick its eye in the layer list to see this run" in run_notes(out)
    # the raw layer ticked to compare: the run is seen there
    again["masks"].visible = True
    out = fake_run(plane_source(image), fake_segment, n=1, crf=True)
    write_layers(viewer, out)
    assert not any("hidden" in n for n in run_notes(out))
    again["masks"].visible = False
    # napari's 'show selected' on a label this run does not have: the layer draws nothing
    again["crf"].visible = True
    again["crf"].selected_label = 2
    again["crf"].show_selected_label = True
    out = fake_run(plane_source(image), fake_segment, n=1, crf=True)
    write_layers(viewer, out)
    assert (
        "'garden masks (CRF)' shows only label 2, which this run does not have: untick its 'show selected'"
        in run_notes(out)
    )
    out = fake_run(plane_source(image), fake_segment, n=2, crf=True)
    write_layers(viewer, out)
    assert not any("show" in n for n in run_notes(out))  # label 2 is there: it shows


def test_a_rerun_on_another_plane_never_moves_an_image_linked_to_its_output(fake_segment):
    # napari's Link Layers ties every common attribute: moving the output's slab to the new plane
    # moved the user's image along with it
    from napari.experimental import link_layers

    v = ViewerModel()
    image = v.add_image(np.zeros((4, 48, 64, 3), np.uint8), name="z", rgb=True, scale=(5, 1, 1))
    masks = write_layers(v, fake_run(plane_source(image, point=v.dims.point), fake_segment))["masks"]
    link_layers([image, masks])
    v.dims.set_point(0, 10.0)
    again = write_layers(v, fake_run(plane_source(image, point=v.dims.point), fake_segment))["masks"]
    assert again is masks and list(masks.translate) == [10.0, 0.0, 0.0]
    assert list(image.translate) == [0.0, 0.0, 0.0] and list(image.scale) == [5.0, 1.0, 1.0]
    masks.opacity = 0.3  # what does not place the layer stays linked
    assert image.opacity == 0.3


def test_an_image_of_another_number_of_axes_gets_new_layers(viewer, fake_segment):
    """A stack opened under the name of a 2-D photo segmented before (napari cannot give a layer
    another number of axes)."""
    image = viewer.layers["garden"]
    flat = write_layers(viewer, fake_run(plane_source(image), fake_segment), boxes=True)
    viewer.layers.remove(image)
    stack = viewer.add_image(np.zeros((3, 48, 64, 3), np.uint8), name="garden", rgb=True)
    layers = write_layers(viewer, fake_run(plane_source(stack), fake_segment), boxes=True)
    assert layers["masks"].name == "garden masks [2]" and layers["masks"].ndim == 3
    assert layers["boxes"].name == "garden boxes [2]" and flat["masks"].ndim == 2


def test_a_layer_the_user_made_is_never_overwritten(viewer, fake_segment):
    mine = viewer.add_labels(np.ones((48, 64), np.int32), name="garden masks")
    layers = write_layers(viewer, fake_run(plane_source(viewer.layers["garden"]), fake_segment))
    assert layers["masks"] is not mine and layers["masks"].name == "garden masks [2]"
    assert (mine.data == 1).all()


def test_current_plane_slab_moves_with_the_plane(fake_segment):
    v = ViewerModel()
    image = v.add_image(np.zeros((4, 24, 24), np.uint8), name="z", scale=(3, 1, 1))
    v.dims.set_point(0, 6.0)  # plane 2
    first = write_layers(v, fake_run(plane_source(image, point=v.dims.point), fake_segment))["masks"]
    assert first.data.shape == (1, 24, 24)
    np.testing.assert_allclose(first.translate, (6, 0, 0))
    v.dims.set_point(0, 9.0)
    second = write_layers(v, fake_run(plane_source(image, point=v.dims.point), fake_segment))["masks"]
    assert second is first
    np.testing.assert_allclose(first.translate, (9, 0, 0))


def test_a_transposed_view_is_said_when_the_current_plane_is_segmented(fake_segment):
    # napari's transpose button shows a stack's Z-X planes; "current plane" still segments a Y-X
    # plane (the last two axes), which is one row in that view: the run says so
    from napari_gardenseg._layers import run_notes

    v = ViewerModel()
    image = v.add_image(np.zeros((4, 40, 40, 3), np.uint8), name="z", rgb=True)
    v.dims.set_point(0, 2.0)
    plain = plane_source(image, point=v.dims.point, displayed=v.dims.displayed)
    assert plain.view_note is None
    v.dims.order = (1, 0, 2)  # on screen: axes 0 and 2, a Z-X view
    source = plane_source(image, point=v.dims.point, displayed=v.dims.displayed)
    assert source.planes == [(2,)] and "not the Y-X planes of 'z'" in source.view_note
    notes = run_notes(fake_run(source, fake_segment))
    assert source.view_note in notes
    assert any("one colour throughout" in n for n in notes)  # the plane's own hints stay
    # the whole stack is labelled along every axis: nothing to say
    assert plane_source(image, point=v.dims.point, displayed=v.dims.displayed, stack=True).view_note is None


def test_a_plane_the_view_does_not_show_is_said():
    # the slider past the end of a shorter stack (napari draws nothing of it there) and a 3-D view
    # both segmented a plane with nothing said; a moved slider is said by moved_note
    from napari_gardenseg._planes import moved_note

    v = ViewerModel()
    image = v.add_image(np.zeros((3, 40, 40, 3), np.uint8), name="z", rgb=True)
    v.add_image(np.zeros((10, 40, 40), np.uint8), name="longer")
    v.dims.set_point(0, 8.0)
    source = plane_source(image, point=v.dims.point, displayed=v.dims.displayed)
    assert source.planes == [(2,)]
    assert "the sliders are outside the planes of 'z'" in source.view_note
    assert "nearest plane (2,) was segmented" in source.view_note
    assert moved_note(image, source, v.dims.point) is None  # as at the start: the view note says where
    v.dims.set_point(0, 1.0)
    shown = plane_source(image, point=v.dims.point, displayed=v.dims.displayed)
    assert shown.view_note is None and moved_note(image, shown, v.dims.point) is None
    assert "the view shows its plane (2,)" in moved_note(image, shown, (2.0, 0, 0))
    v.dims.ndisplay = 3
    three_d = plane_source(image, point=v.dims.point, displayed=v.dims.displayed)
    assert "the view is 3-D: the plane (1,) of 'z'" in three_d.view_note
    v.dims.set_point(0, 8.0)  # past its planes: napari still draws the whole volume
    assert "the view is 3-D" in plane_source(image, point=v.dims.point, displayed=v.dims.displayed).view_note
    assert moved_note(image, three_d, v.dims.point, v.dims.displayed) is None
    assert plane_source(image, point=v.dims.point, displayed=v.dims.displayed, stack=True).view_note is None


def test_an_8_bit_photo_shown_stretched_says_its_stored_values_were_segmented(fake_segment):
    # a dim photo brightened with the layer's contrast limits looks fine in napari; the stored
    # values are segmented (fewer plants found), and nothing said so
    from napari_gardenseg._layers import run_notes

    v = ViewerModel()
    dim = v.add_image(np.full((40, 40, 3), 12, np.uint8), name="dim", rgb=True, contrast_limits=(0, 15))
    note = plane_source(dim).display_note
    assert "napari shows 'dim' stretched to its contrast limits 0..15" in note
    assert "* 17, 0, 255).astype('uint8'), rgb=True)" in note
    assert note in run_notes(fake_run(plane_source(dim), fake_segment))
    dim.contrast_limits = (0, 200)  # a mild stretch: nothing to say
    assert plane_source(dim).display_note is None
    wide = v.add_image(np.full((40, 40), 30, np.uint16), name="u16", contrast_limits=(0, 100))
    assert plane_source(wide).display_note is None  # scaled by the intensity rule, its own note


def test_a_projection_of_several_planes_is_said_and_not_called_blank(fake_segment):
    # napari 0.5's thick slices: a stack shown as the max projection of its planes, where the
    # plants are in plane 4 and the slider on plane 2; "current plane" segments plane 2 (black),
    # and the run called the image blank
    from napari_gardenseg._layers import run_notes
    from napari_gardenseg._planes import view_margins

    v = ViewerModel()
    z = np.zeros((5, 40, 40, 3), np.uint8)
    z[4, 10:30, 10:30] = (40, 160, 40)
    image = v.add_image(z, name="z", rgb=True, projection_mode="max", scale=(2, 1, 1))
    v.dims.set_point(0, 4.0)  # plane 2

    def source():
        return plane_source(image, point=v.dims.point, displayed=v.dims.displayed, margins=view_margins(v.dims))

    assert source().view_note is None  # thickness 0: one plane shown
    # the planes napari projects: the slab's ends rounded in data units, as napari rounds them (5
    # world units at scale 2: planes 1-2, not 1-3; 7: planes 0-3; 2: plane 2 alone)
    for thickness, planes, index in (
        (5.0, "1–2", "1:3"),
        (4.0, "1–3", "1:4"),  # a slab's end on a plane takes it
        (7.0, "0–3", "0:4"),
        (11.0, "0–4", "0:5"),
    ):
        v.dims.thickness = (thickness, 1.0, 1.0)
        got = source()
        assert got.planes == [(2,)] and got.projected
        assert f"max projection of its planes {planes} of axis 0" in got.view_note
        assert f".data[{index}].max(axis=0), rgb=True)" in got.view_note
    v.dims.thickness = (2.0, 1.0, 1.0)
    assert source().view_note is None
    v.dims.margin_left, v.dims.margin_right = (4.0, 0.0, 0.0), (0.0, 0.0, 0.0)  # a slab on one side
    assert "planes 0–2 of axis 0" in source().view_note
    v.dims.thickness = (5.0, 1.0, 1.0)
    notes = run_notes(fake_run(source(), fake_segment, n=0))
    assert source().view_note in notes and not any("blank" in n for n in notes)
    v.dims.ndisplay = 3  # the planes are on screen as a volume: no projection of them
    assert not source().projected and "the view is 3-D" in source().view_note
    v.dims.ndisplay = 2
    image.projection_mode = "none"  # what the screen shows is the plane again
    assert source().view_note is None


def test_a_projection_over_one_axis_of_several_names_the_plane_of_the_others():
    from napari_gardenseg._planes import view_margins

    v = ViewerModel()
    image = v.add_image(np.zeros((2, 5, 40, 40), np.uint8), name="tz", projection_mode="mean")
    v.dims.set_point(0, 1.0)
    v.dims.set_point(1, 2.0)
    v.dims.thickness = (0.0, 3.0, 1.0, 1.0)
    note = plane_source(image, point=v.dims.point, displayed=v.dims.displayed, margins=view_margins(v.dims)).view_note
    assert "mean projection of its planes 0–3 of axis 1" in note
    assert "viewer.add_image(viewer.layers['tz'].data[1, 0:4].mean(axis=0), rgb=False)" in note


def test_segment_layer_says_the_projection(viewer, fake_segment):
    z = np.zeros((3, 40, 40, 3), np.uint8)
    viewer.add_image(z, name="z", rgb=True, projection_mode="max")
    viewer.dims.set_point(0, 1.0)
    viewer.dims.thickness = (4.0, 1.0, 1.0)
    with pytest.warns(UserWarning, match="'z' is shown as the max projection of its planes 0–2"):
        segment_layer("z", model="fake", viewer=viewer)


def test_no_instances_gives_empty_layers(viewer, fake_segment):
    out = fake_run(plane_source(viewer.layers["garden"]), fake_segment, n=0)
    layers = write_layers(viewer, out, boxes=True)
    assert not layers["masks"].data.any() and len(layers["masks"].features) == 0
    assert len(layers["boxes"].data) == 0
    layers["masks"].paint((20, 20), 4)  # the user paints the plant the model missed
    assert layers["masks"].features[["label", "source"]].values.tolist() == [[4, "painted"]]


# -- segment_layer (the console entry point) with the bundled model ------------------


def test_segment_layer_end_to_end_with_the_bundled_model(scene):
    image, _, _ = scene
    v = ViewerModel()
    layer = v.add_image(image[:128, :128], name="garden")
    result = segment_layer(layer, model="garden", viewer=v, crf=False)
    assert isinstance(result, SegmentationResult)
    masks = v.layers["garden masks"]
    assert masks.data.shape == (128, 128) and "garden masks (CRF)" not in v.layers
    assert len(masks.features) == len(result) == int(masks.data.max()) >= 1  # plants were found
    np.testing.assert_array_equal(masks.data, result.labels)
    f = masks.features
    assert list(f["label"]) == list(range(1, len(result) + 1))
    assert list(f["class_name"]) == list(result.class_names)
    np.testing.assert_allclose(f["score"], result.scores)
    assert (f["score"] >= 0.5).all()
    assert list(f["area"]) == [int((masks.data == k).sum()) for k in f["label"]]
    assert result.meta["layers"] == {"masks": "garden masks"}


def test_the_crf_layers_features_describe_its_own_pixels(scene):
    image, _, _ = scene
    v = ViewerModel()
    v.add_image(image[:128, :128], name="garden")
    segment_layer("garden", model="garden", viewer=v)
    for name in ("garden masks", "garden masks (CRF)"):
        layer = v.layers[name]
        f = layer.features
        assert len(f) >= 1
        for k, y, x, area in zip(f["label"], f["centroid_y"], f["centroid_x"], f["area"]):
            ys, xs = np.nonzero(layer.data == k)
            assert area == len(ys)
            if len(ys):
                np.testing.assert_allclose((y, x), (ys.mean(), xs.mean()), atol=0.006)


def test_segment_layer_stack_returns_one_result_per_plane(scene):
    image, _, _ = scene
    v = ViewerModel()
    v.add_image(np.stack([image[:96, :96], image[96:192, 96:192]]), name="pair", rgb=True)
    results = segment_layer("pair", viewer=v, stack=True, crf=False)
    assert [r.meta["plane"] for r in results] == [(0,), (1,)]
    assert all(len(r) >= 1 for r in results)  # plants in both planes
    data = v.layers["pair masks"].data
    assert data.shape == (2, 96, 96) and int(data.max()) == sum(len(r) for r in results)
    # plane 1's ids follow plane 0's
    np.testing.assert_array_equal(data[0], results[0].labels)
    np.testing.assert_array_equal(data[1], np.where(results[1].labels > 0, results[1].labels + len(results[0]), 0))


def test_segment_layer_stack_gives_a_list_for_a_2d_layer_too_and_names_a_missing_layer(scene):
    # a console loop over a viewer's layers with stack=True failed on every plain photo
    image, _, _ = scene
    v = ViewerModel()
    v.add_image(image[:96, :96], name="plot 3")
    [result] = segment_layer("plot 3", viewer=v, stack=True, crf=False)
    assert len(result) >= 1
    with pytest.raises(KeyError, match=r"no layer named 'plot3' in this viewer; its layers: 'plot 3', 'plot 3 masks'"):
        segment_layer("plot3", viewer=v, crf=False)


def test_a_failed_run_changes_no_layer(viewer, fake_segment, monkeypatch):
    layers = write_layers(viewer, fake_run(plane_source(viewer.layers["garden"]), fake_segment))
    before = layers["masks"].data.copy()

    def broken(*a, **k):
        raise ValueError("boom")

    monkeypatch.setattr(_inference, "segment_with", broken)
    with pytest.raises(ValueError, match="boom"):
        segment_layer(viewer.layers["garden"], model="fake", viewer=viewer)
    assert len(viewer.layers) == 2
    np.testing.assert_array_equal(viewer.layers["garden masks"].data, before)


def test_triton_guard_only_acts_where_mesa_llvm_is_mapped(monkeypatch):
    import builtins
    import io
    import sys

    monkeypatch.delitem(sys.modules, "triton", raising=False)
    real_open = builtins.open

    def fake_open(path, *a, **k):
        if path == "/proc/self/maps":
            return io.StringIO(maps)
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", fake_open)
    maps = "7f00 r-xp /usr/lib/libc.so.6\n"
    _layers.avoid_triton_llvm_clash()
    assert "triton" not in sys.modules
    if sys.platform.startswith("linux"):
        maps += "7f01 r-xp /usr/lib/x86_64-linux-gnu/libLLVM-15.so.1\n"
        _layers.avoid_triton_llvm_clash()
        assert sys.modules["triton"] is None


def test_an_rgba_layer_is_segmented_as_the_photo_its_alpha_shows(scene):
    # an orthomosaic: the survey opaque inside a transparent frame over leftover colour (a mirrored copy)
    image, _, _ = scene
    photo = np.ascontiguousarray(image[:128, :128])
    rgba = np.zeros((256, 256, 4), np.uint8)
    rgba[..., :3] = image[::-1, ::-1]
    rgba[64:192, 64:192, :3] = photo
    rgba[64:192, 64:192, 3] = 255
    v = ViewerModel()
    framed = segment_layer(v.add_image(rgba, rgb=True, name="ortho"), model="garden", viewer=v, crf=False)
    alone = segment_layer(v.add_image(photo, rgb=True, name="photo"), model="garden", viewer=v, crf=False)
    assert framed.meta["data_window"] == [64, 64, 192, 192]
    assert len(framed) == len(alone) >= 1
    np.testing.assert_allclose(np.sort(framed.scores), np.sort(alone.scores), atol=1e-4)
    inside = framed.labels[64:192, 64:192]
    assert (inside > 0).sum() == (framed.labels > 0).sum()  # nothing under the transparent frame
    assert ((inside > 0) == (alone.labels > 0)).mean() > 0.995


def test_a_corrected_layer_saves_with_the_photos_georeferencing(tmp_path, fake_segment):
    """napari's Save Selected Layers with this plugin's writer: the labels as the user left them,
    their table, and the georeferencing of the file the image layer was read from (an orthophoto
    exported as JPEG with a world file)."""
    import pandas as pd
    import tifffile
    from PIL import Image

    from napari_gardenseg._label_files import batch_features

    photo = tmp_path / "ortho.jpg"
    Image.fromarray(rgb()).save(photo, quality=95)
    (tmp_path / "ortho.jgw").write_text("0.02\n0\n0\n-0.02\n300000.01\n6199999.99\n")
    npe2 = pytest.importorskip("npe2")
    npe2.PluginManager.instance().discover()  # napari's window does this at start; a ViewerModel does not
    viewer = ViewerModel()
    [image] = viewer.open(str(photo), plugin="napari-gardenseg")
    out = fake_run(plane_source(image), fake_segment, crf=False)
    masks = write_layers(viewer, out)["masks"]
    assert masks.metadata[_layers.META_KEY]["georeference_source"] == str(photo)
    masks.data[30:34, 40:44] = 5  # painted by hand
    viewer.layers.selection = {masks}
    saved = viewer.layers.save(str(tmp_path / "ortho_labels.tif"), selected=True, plugin="napari-gardenseg")
    assert [p.rsplit("/", 1)[-1] for p in saved] == [
        "ortho_labels.tif",
        "ortho_labels_instances.csv",
        "ortho_labels.tfw",
    ]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "ortho_labels.tif"), masks.data)
    assert [float(v) for v in (tmp_path / "ortho_labels.tfw").read_text().split()][0] == 0.02
    table = pd.read_csv(tmp_path / "ortho_labels_instances.csv")
    assert table["label"].tolist() == [1, 2, 5] and table["source"].tolist() == ["model", "model", "painted"]
    assert {"map_x", "map_y"} <= set(table.columns)
    assert batch_features(tmp_path / "ortho_labels.tif")["class_name"].tolist() == ["c1", "c2", ""]
    # a layer made in a script has no file: saved without georeferencing
    viewer.add_image(rgb(), name="garden")
    plain = write_layers(viewer, fake_run(plane_source(viewer.layers["garden"]), fake_segment))["masks"]
    assert "georeference_source" not in plain.metadata[_layers.META_KEY]


def test_a_rerun_on_a_photo_opened_again_lifts_its_results_above_it(viewer, fake_segment):
    """The photo removed and opened again lies above its earlier outputs; a rerun writes into them
    in place, so they must come above it or the opaque photo hides the new result."""
    first = write_layers(viewer, fake_run(plane_source(viewer.layers["garden"]), fake_segment, crf=True), boxes=True)
    viewer.add_image(rgb(), name="other")
    viewer.layers.remove("garden")
    image = viewer.add_image(rgb(), name="garden", scale=(2.0, 2.0), translate=(5.0, 7.0))
    assert [layer.name for layer in viewer.layers][-1] == "garden"
    again = write_layers(viewer, fake_run(plane_source(image), fake_segment, crf=True), boxes=True)
    assert all(again[k] is first[k] for k in ("masks", "crf", "boxes"))  # written in place
    names = [layer.name for layer in viewer.layers]
    assert names == ["other", "garden", "garden masks", "garden masks (CRF)", "garden boxes"]
    # outputs already above their image stay where the user put them
    viewer.layers.move(names.index("other"), len(names))
    write_layers(viewer, fake_run(plane_source(image), fake_segment, crf=True), boxes=True)
    assert [layer.name for layer in viewer.layers] == [
        "garden",
        "garden masks",
        "garden masks (CRF)",
        "garden boxes",
        "other",
    ]
    # under an image the user made see-through, outputs are where the user wants them
    viewer.layers.move(0, 4)
    image.opacity = 0.5
    write_layers(viewer, fake_run(plane_source(image), fake_segment, crf=True), boxes=True)
    assert [layer.name for layer in viewer.layers].index("garden") == 3


def test_after_the_image_is_renamed_a_rerun_takes_over_its_earlier_outputs(viewer, fake_segment):
    image = viewer.layers["garden"]
    first = write_layers(viewer, fake_run(plane_source(image), fake_segment, crf=True), boxes=True)
    first["crf"].data[40:44, 40:44] = 7  # edited: stays as the user left it, under its name
    copy = viewer.add_labels(first["masks"].data.copy(), name="my copy", metadata=first["masks"].metadata)
    image.name = "plot 3"
    second = write_layers(viewer, fake_run(plane_source(image), fake_segment, n=1, crf=True), boxes=True)
    # the unedited outputs took the new name and were replaced in place: two runs do not blend
    assert second["masks"] is first["masks"] and second["boxes"] is first["boxes"]
    assert (second["masks"].name, second["boxes"].name) == ("plot 3 masks", "plot 3 boxes")
    assert second["masks"].metadata["napari_gardenseg"]["image"] == "plot 3"
    assert second["crf"] is not first["crf"] and second["crf"].name == "plot 3 masks (CRF)"
    assert first["crf"].name == "garden masks (CRF)" and (first["crf"].data == 7).sum() == 16
    assert copy.name == "my copy"  # a copy the user made is theirs
    assert len(viewer.layers) == 6


def test_an_unedited_output_of_the_old_name_is_hidden_where_the_new_name_is_taken(viewer, fake_segment):
    image = viewer.layers["garden"]
    first = write_layers(viewer, fake_run(plane_source(image), fake_segment), boxes=False)
    viewer.add_labels(np.zeros((48, 64), np.int32), name="plot 3 masks")  # the user's own layer
    image.name = "plot 3"
    second = write_layers(viewer, fake_run(plane_source(image), fake_segment), boxes=False)
    assert second["masks"].name == "plot 3 masks [2]" and second["masks"].visible
    assert first["masks"].name == "garden masks" and not first["masks"].visible


def test_a_layer_in_millimetres_gives_its_instances_areas_in_mm2_that_follow_the_brush(viewer, fake_segment):
    # the table was in pixels while napari's axes said mm: a user read pixel counts as areas
    out = fake_run(plane_source(viewer.layers["garden"]), fake_segment, crf=True)
    layers = write_layers(viewer, out)
    masks, crf = layers["masks"], layers["crf"]
    assert list(masks.features["area_mm2"]) == [36 * 4.0, 36 * 4.0]  # 2 mm pixels: 4 mm² each
    assert list(out.results[0].table["area_mm2"]) == [36 * 4.0] * 2  # segment_layer's results say the same
    assert list(crf.features["area_mm2"]) == [0.0, 36 * 4.0]  # the refined layer's own pixels
    assert masks.metadata["napari_gardenseg"]["pixel_size"]["y_um"] == 2000.0
    masks.brush_size = 3
    masks.paint((40, 50), 9)
    masks.fill((6, 6), 0)
    rows = masks.features.set_index("label")
    assert rows.loc[9, "area_mm2"] == (masks.data == 9).sum() * 4.0
    assert list(rows.index) == [2, 9]
    # a layer in pixels (napari's default) has no such column
    plain = ViewerModel()
    plain.add_image(rgb(), name="g")
    out = write_layers(plain, fake_run(plane_source(plain.layers["g"]), fake_segment))["masks"]
    assert "area_mm2" not in out.features


def test_an_image_opened_from_a_scan_gives_its_instances_areas_in_mm2(tmp_path, fake_segment):
    # napari's own reader opens a 300-dpi scan at scale 1, in pixels: the size comes from the file
    from napari.layers._source import layer_source
    from PIL import Image as PILImage

    image = rgb()
    PILImage.fromarray(image).save(tmp_path / "scan.png", dpi=(300, 300))
    v = ViewerModel()
    with layer_source(path=str(tmp_path / "scan.png")):
        v.add_layer(Image(image, name="scan", rgb=True))
    masks = write_layers(v, fake_run(plane_source(v.layers["scan"]), fake_segment))["masks"]
    np.testing.assert_allclose(masks.features["area_mm2"], 36 * (25.4 / 300) ** 2, rtol=1e-5)
    # the file moved away since it was opened: pixels only, no error
    (tmp_path / "scan.png").rename(tmp_path / "moved.png")
    masks = write_layers(v, fake_run(plane_source(v.layers["scan"]), fake_segment))["masks"]
    assert "area_mm2" not in masks.features


def test_a_cmyk_jpeg_opened_by_naparis_reader_says_to_open_it_with_the_plugin(tmp_path, fake_segment):
    # napari's reader gives a CMYK JPEG's inks as four channels, which were segmented as RGBA
    from napari.layers._source import layer_source
    from PIL import Image as PILImage

    PILImage.fromarray(rgb()).convert("CMYK").save(tmp_path / "print.jpg")
    inks = np.asarray(PILImage.open(tmp_path / "print.jpg"))  # what napari's reader gives: (48, 64, 4)
    v = ViewerModel()
    with layer_source(path=str(tmp_path / "print.jpg")):
        v.add_layer(Image(inks, name="print", rgb=True))
    assert "CMYK" in plane_source(v.layers["print"]).display_note
    with layer_source(path=str(tmp_path / "print.jpg")):
        v.add_layer(Image(rgb(), name="converted", rgb=True))  # the plugin's reader: colours
    assert plane_source(v.layers["converted"]).display_note is None


def test_a_new_photo_that_takes_a_renamed_images_old_name_gets_layers_of_its_own(viewer, fake_segment):
    # it replaced the renamed image's unedited outputs in place, which then lay on another photo
    image = viewer.layers["garden"]
    first = write_layers(viewer, fake_run(plane_source(image), fake_segment), boxes=False)["masks"]
    assert isinstance(first.metadata["napari_gardenseg"]["image_id"], str)  # JSON, as layer metadata is saved
    image.name = "plot 3"
    other = viewer.add_image(rgb(seed=1), name="garden")
    second = write_layers(viewer, fake_run(plane_source(other), fake_segment), boxes=False)["masks"]
    assert second is not first and second.name == "garden masks [2]" and first.name == "garden masks"
    # the renamed image's next run takes its own outputs along
    third = write_layers(viewer, fake_run(plane_source(image), fake_segment), boxes=False)["masks"]
    assert third is first and first.name == "plot 3 masks"
    # (an image closed and opened again has a new id, and its outputs are replaced in place all the
    # same: test_a_rerun_on_a_photo_opened_again_lifts_its_results_above_it)


def test_a_layer_whose_affine_scales_gives_no_area_in_mm2_from_its_scale(fake_segment):
    v = ViewerModel()
    affine = np.diag([2.0, 2.0, 1.0])
    v.add_image(rgb(), name="g", scale=(0.5, 0.5), units=("mm", "mm"), affine=affine, rgb=True)
    assert plane_source(v.layers["g"]).layer_pixel_size is None  # 1 mm pixels shown, not 0.5 mm
    turned = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # a turn keeps areas
    v.add_image(rgb(), name="t", scale=(0.5, 0.5), units=("mm", "mm"), affine=turned, rgb=True)
    assert plane_source(v.layers["t"]).layer_pixel_size.mm2 == 0.25


def test_an_orthophoto_gives_its_instances_map_coordinates_and_ground_areas(tmp_path, fake_segment):
    # a drone orthophoto (PNG + world file + ESRI .prj in metres) opened in napari: the table had
    # pixels only, where the batch's CSV has map_x, map_y and the ground areas
    from napari.layers._source import layer_source
    from PIL import Image as PILImage

    image = rgb()
    PILImage.fromarray(image).save(tmp_path / "ortho.png")
    (tmp_path / "ortho.pgw").write_text("0.02\n0\n0\n-0.02\n500000.01\n4000000.99\n")  # 2 cm pixels
    (tmp_path / "ortho.prj").write_text(
        'PROJCS["WGS_1984_UTM_Zone_33N",GEOGCS["GCS_WGS_1984",UNIT["Degree",0.0174]],UNIT["Meter",1.0]]'
    )
    v = ViewerModel()
    with layer_source(path=str(tmp_path / "ortho.png")):
        v.add_layer(Image(image, name="ortho", rgb=True))
    output = fake_run(plane_source(v.layers["ortho"]), fake_segment, crf=True)
    layers = write_layers(v, output)
    masks, crf = layers["masks"], layers["crf"]
    row = masks.features.set_index("label").loc[1]  # the square at rows and columns 4..9
    assert (row["map_x"], row["map_y"]) == pytest.approx((500000 + 7 * 0.02, 4000001 - 7 * 0.02))
    # segment_layer's results: the same columns in their tables
    table = output.results[0].table.set_index("label")
    assert table.loc[1, "map_x"] == pytest.approx(row["map_x"]) and table.loc[1, "area_m2"] == row["area_m2"]
    assert row["area_m2"] == pytest.approx(36 * 0.0004) and "area_mm2" not in masks.features
    assert list(crf.features["area_m2"]) == pytest.approx([0.0, 36 * 0.0004])  # the refined layer's own
    masks.brush_size = 1
    masks.paint((30, 40), 9)  # one painted pixel: its map position and ground area follow
    painted = masks.features.set_index("label").loc[9]
    assert (painted["map_x"], painted["map_y"]) == pytest.approx((500000 + 40.5 * 0.02, 4000001 - 30.5 * 0.02))
    assert painted["area_m2"] == pytest.approx((masks.data == 9).sum() * 0.0004)
