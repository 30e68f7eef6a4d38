"""A colour card beside the plants: its chips are left out, and nothing else is."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from napari_gardenseg import segment
from napari_gardenseg._colour_card import colour_card
from napari_gardenseg._image_source import open_image
from napari_gardenseg._instances import Instances
from napari_gardenseg.synthetic import garden_scene

# an X-Rite ColorChecker's 24 chips (sRGB), row by row: foliage, bluish green, yellow green, green, cyan...
CHIPS = [
    (115, 82, 68), (194, 150, 130), (98, 122, 157), (87, 108, 67), (133, 128, 177), (103, 189, 170),
    (214, 126, 44), (80, 91, 166), (193, 90, 99), (94, 60, 108), (157, 188, 64), (224, 163, 46),
    (56, 61, 150), (70, 148, 73), (175, 54, 60), (231, 199, 31), (187, 86, 149), (8, 133, 161),
    (243, 243, 242), (200, 200, 200), (160, 160, 160), (122, 122, 121), (85, 85, 85), (52, 52, 52),
]  # fmt: skip


def _with_card(scene: np.ndarray, chip: int = 30) -> tuple[np.ndarray, int]:
    """``scene`` with a card to its right (dark frame, chips with sensor noise and uneven light),
    saved as a JPEG and read back; and the column where the card begins."""
    h, w = scene.shape[:2]
    canvas = np.full((h, w + 6 * chip, 3), 40, np.uint8)
    canvas[:, :w] = scene
    rng = np.random.default_rng(0)
    light = np.linspace(-5, 5, chip)[:, None, None]
    for k, colour in enumerate(CHIPS):
        y, x = 20 + (k // 4) * (chip + 12), w + 10 + (k % 4) * (chip + 6)
        patch = np.array(colour) + rng.normal(0, 3, (chip, chip, 3)) + light
        canvas[y : y + chip, x : x + chip] = np.clip(patch, 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, "JPEG", quality=85)
    return np.asarray(Image.open(buffer)), w


def test_a_colour_cards_chips_are_not_plants():
    # PlantCV-style photos hold a ColorChecker beside the plants: its green, cyan and yellow-green
    # chips came out as rosettes (one scored 0.98) and as colour instances, in the counts and areas
    scene = garden_scene(11, (300, 400))[0]
    photo, card_x = _with_card(scene)
    alone = segment(scene, "garden", crf=False)
    for vegetation in ("auto", "off"):
        res = segment(photo, "garden", crf=False, vegetation=vegetation)
        left = [b for b in res.table["bbox"] if b[3] > card_x]  # (y0, x0, y1, x1): reaching onto the card
        assert left == [], (vegetation, res.table)
        assert res.meta["colour_card"]["instances"] >= 3 and res.meta["colour_card"]["region"][1] >= card_x - 40
        if vegetation == "auto":
            assert len(res) >= len(alone) - 1  # the plants beside the card are kept
    from napari_gardenseg._hints import status_hint

    assert status_hint([res]).startswith(f"left out {res.meta['colour_card']['instances']} instances on a colour card")
    assert "colour_card" not in alone.meta
    # a photo of the card alone: the card is what it says, not "no detection scored 0.5" (the threshold)
    from napari_gardenseg._batch_file import _file_note

    card_only = segment(photo[:, card_x - 20 :], "garden", crf=False, score_threshold=0.5)
    assert len(card_only) == 0 and card_only.meta["colour_card"]["instances"] >= 3
    assert status_hint([card_only]).startswith("left out") and _file_note(card_only, 0.5).startswith("left out")


def _squares(image: np.ndarray, corners, side: int) -> Instances:
    masks = np.zeros((len(corners), *image.shape[:2]), np.float32)
    for k, (y, x) in enumerate(corners):
        masks[k, y : y + side, x : x + side] = 1.0
    return Instances.from_dense(masks)


def test_only_flat_squares_of_one_size_make_a_card():
    image = np.full((200, 300, 3), 90, np.uint8)
    corners = [(10, 10), (10, 60), (10, 110), (150, 250)]
    for (y, x), colour in zip(corners[:3], [(87, 108, 67), (70, 148, 73), (157, 188, 64)]):  # three greens
        image[y : y + 30, x : x + 30] = colour
    image[150:180, 250:280] = np.random.default_rng(1).integers(40, 200, (30, 30, 3))  # a plant's texture
    source = open_image(image)
    card, region = colour_card(_squares(image, corners[:3], 30), source, 0.5)
    assert card.all() and region == (0, 0, 70, 170)
    # a plant away from the card is not on it
    card, _ = colour_card(_squares(image, corners, 30), source, 0.5)
    assert card.tolist() == [True, True, True, False]
    # three flat squares far apart (plant tags in a bed's corners) are no card: its region spanned the
    # photo, and every plant inside was left out with them
    apart = [(10, 10), (10, 260), (160, 10)]
    scattered = image.copy()
    for y, x in apart:
        scattered[y : y + 30, x : x + 30] = (87, 108, 67)
    assert colour_card(_squares(scattered, apart, 30), open_image(scattered), 0.5)[1] is None
    # two chips are not a card; nor are flat blobs under a chip's size (a coarse drone image's plants)
    assert colour_card(_squares(image, corners[:2], 30), source, 0.5)[1] is None
    assert colour_card(_squares(image, corners[:3], 12), source, 0.5)[1] is None
    # nor squares of leaves: their middles vary
    leafy = image.copy()
    rng = np.random.default_rng(1)
    for y, x in corners[:3]:
        leafy[y : y + 30, x : x + 30] = rng.integers(40, 200, (30, 30, 3))
    assert colour_card(_squares(leafy, corners[:3], 30), open_image(leafy), 0.5)[1] is None
    # nor a grey image, which has no colour to tell chips by
    grey = open_image(image[..., 0])
    assert colour_card(_squares(image, corners[:3], 30), grey, 0.5)[1] is None


def test_a_card_on_a_white_scan_is_found_from_chips_masked_in_part():
    # a leaf scan's ColorChecker on white paper: the network's and the colour stage's masks of its
    # chips covered 0.2-0.9 of them, so no instance was a chip and 9 chips and strips became plants
    image = np.full((300, 400, 3), 246, np.uint8)  # paper
    image[180:290, 200:390] = 20  # the card's black frame
    corners = [(190 + (k // 4) * 50, 210 + (k % 4) * 44) for k in range(8)]
    for (y, x), colour in zip(corners, CHIPS):
        image[y : y + 40, x : x + 40] = colour
    image[40:140, 40:140] = np.random.default_rng(2).integers(40, 200, (100, 100, 3))  # a leaf's texture
    masks = np.zeros((5, *image.shape[:2]), np.float32)
    for k, (y, x) in enumerate(corners[:4]):  # a corner or a band of each chip
        masks[k, y + 5 : y + 22, x + (k % 2) * 18 : x + 22 + (k % 2) * 18] = 1.0
    masks[4, 40:140, 40:140] = 1.0
    card, region = colour_card(Instances.from_dense(masks), open_image(image), 0.5)
    assert card.tolist() == [True, True, True, True, False] and region[0] <= 190 and region[3] >= 370
    # the paper itself is no chip: an instance whose middle is blank paper reaches open white
    paper = np.zeros((4, *image.shape[:2]), np.float32)
    for k in range(4):
        paper[k, 10 + 40 * k : 40 + 40 * k, 160:200] = 1.0
    assert colour_card(Instances.from_dense(paper), open_image(image), 0.5)[1] is None


def test_a_trays_empty_cells_are_no_card():
    # a grid of flat squares of one colour (a seedling tray's empty cells, tiles) is no card: a
    # card's chips differ in colour; taken for one, every seedling in the grid was left out
    image = np.full((200, 300, 3), 200, np.uint8)
    corners = [(10 + 45 * (k // 4), 10 + 45 * (k % 4)) for k in range(8)]
    for k, (y, x) in enumerate(corners):
        image[y : y + 40, x : x + 40] = (38 + k, 36, 35 + k)  # black plastic, lit a little unevenly
    assert colour_card(_squares(image, corners, 40), open_image(image), 0.5)[1] is None


def test_seedlings_over_cells_of_substrate_in_shades_are_no_card():
    # a plug tray whose cells hold substrate of three shades, each with a two-leaved seedling whose
    # box middle is bare substrate: the flat cells around the seedlings made a card of them, and all
    # eight were left out; a chip is what the instance lies on, not what lies between its leaves
    rng = np.random.default_rng(1)
    side, wall = 44, 6
    soils = [(128, 100, 74), (66, 50, 38), (168, 160, 146)]  # dry peat, wet peat, vermiculite
    h, w = 2 * (side + wall) + wall, 4 * (side + wall) + wall
    image = np.full((h, w, 3), 30, np.float32)
    yy, xx = np.ogrid[:h, :w]
    masks = []
    for k in range(8):
        y, x = wall + (k // 4) * (side + wall), wall + (k % 4) * (side + wall)
        image[y : y + side, x : x + side] = soils[k % 3]
        mask = np.zeros((h, w), np.float32)
        for d in (-10, 10):  # two cotyledons diagonally across the cell's middle
            leaf = (yy - (y + side // 2 + d)) ** 2 + (xx - (x + side // 2 + d)) ** 2 <= 16
            image[leaf] = (70, 150, 60)
            mask[leaf] = 1
        masks.append(mask)
    image = np.clip(image + rng.normal(0, 1.5, image.shape), 0, 255).astype(np.uint8)
    assert colour_card(Instances.from_dense(np.stack(masks)), open_image(image), 0.5)[1] is None
