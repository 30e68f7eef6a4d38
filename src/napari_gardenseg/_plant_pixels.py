"""Instances whose pixels follow plant colour: the model says where plants are, colour says which pixels.

Given the detector's compact instances and a photo's vegetation map
(:mod:`._vegetation`), :func:`follow_vegetation`:

1. measures each instance's green share (its painted pixels that are
   plant-coloured). An instance that is mostly green is *gated*: it keeps only
   vegetation pixels. One that is not (a red lettuce, a purple basil, a flower,
   a pot) keeps its model mask unchanged, so plants that are not green are
   never cut away; its score is lowered in proportion, and where most of the
   network's confident detections are not plant-coloured (:data:`KNOWN_SHARE`:
   a network that does not know these plants) it ranks below the colour-only
   instances;
2. gives the vegetation to the gated instances that seed a plant by a marker
   watershed (scikit-image) on the distance to the background: each seed's
   core (its green painted pixels) is a marker, so touching plants meet at the
   neck between them. A seed is an instance covering a fifth of its
   plant-coloured component, or a confident one lying beside better-scored
   instances rather than under them (:data:`SEPARATE_SHARE`): in a crowded
   bed touching plants form one large component that no single plant covers
   a fifth of. Other gated instances are pieces (a leaf) of a seeded plant;
3. adds the vegetation components that no instance claims as instances of
   their own (``source`` "colour") scoring in :data:`COLOUR_SCORE_RANGE`,
   larger components higher (below a confident detection, above the weak
   ones a low ``score_threshold`` keeps: they may be plants the network does
   not know). A seed scores at least what its claim would as a colour-only
   instance: a weak detection seeding a whole plant does not rank it lower
   than colour alone would. Specks (under
   :data:`MIN_COLOUR_SHARE` of the typical component,
   :data:`SPECK_OF_PLANT` of the network's median plant and
   :data:`PLANT_SIZED` of the image, itself at least
   :data:`PLANT_SIZED_MIN_PIXELS`) are not added, and a speck-sized seed keeps its detection's score;
4. writes the vegetation probability into the soft masks (the dense CRF's
   unary): inside an instance's claim ``0.5 + 0.5 p``, elsewhere in its box the
   model's soft value times ``p`` and below 0.5. Labels painted below 0.5 (the
   bundled model's 0.3) give a gated instance what scores above that outside its
   claim too: its fading edge and plant-coloured fragments beside it; keeping it
   off them was measured and not kept (docs/quality.md, "The mask threshold").

Memory: a few (H, W) maps of the whole image (labels, vegetation, distance),
never one per instance.
"""

from __future__ import annotations

import numpy as np

from ._instances import Instances, paint_image, visible_shares
from ._results import label_areas
from ._vegetation import VegetationMap, median_pixel_size, typical_area

__all__ = [
    "follow_vegetation",
    "vegetation_stage",
    "model_coverage",
    "COLOUR_SCORE_RANGE",
    "GROUND_COVER",
]

# Colour-only instances score in this range (below a detection's usual score),
# larger components higher: AP ranks them after the detector's confident ones.
COLOUR_SCORE_RANGE = (0.2, 0.6)
# A model instance is gated to vegetation when at least this share of it is plant-coloured.
MIN_GREEN_SHARE = 0.35
# A green instance seeds a plant of its vegetation component when it covers this share of the
# component; smaller ones are pieces (a leaf) of the plant that the component is.
MIN_SEED_SHARE = 0.2
# A detection scoring this much is confident: it may seed a plant in a shared component.
SPLIT_SCORE = 0.5
# An instance keeping this share of its own mask once better-scored ones are painted lies beside
# them, not under them (a leaf lies under its plant's mask): confident, it seeds a plant however
# large its component (plants in a crowded bed touch into one); less confident, it may still
# split a component it covers enough of.
SEPARATE_SHARE = 0.8
# A plant-coloured component over this share of the image and this many times the largest
# instance found in it is ground cover.
LAWN_RATIO = 8.0
LAWN_SHARE = 0.15
# The key, in the instances' meta and the stage's note, of the share of the image that is ground cover.
GROUND_COVER = "vegetation_ground_cover"
# "auto" leaves a photo to the network when its confident detections already cover this share of
# the plant-coloured pixels: the network knows these plants (its training scenes, say).
MODEL_COVERS = 0.9
# ...counting the detections scoring this much: the network's own confident finds.
COVERAGE_SCORE = 0.5
# The network's masks the stage starts from (seeds, coverage) are its soft masks above this,
# whatever ``mask_threshold`` is: colour, not the mask's edge, draws a seeded plant's outline,
# and a seed wider than the network is sure of claims its neighbour's leaves.
SEED_THRESHOLD = 0.5
# A free component holding pieces the model found scores this much of the best piece's score.
PIECE_WEIGHT = 0.5
SIZE_WEIGHT = 0.5
# A free plant-coloured component smaller than MIN_COLOUR_SHARE of the typical component and
# SPECK_OF_PLANT of the median confident green detection is a speck (JPEG blocks, algae, a moss spot),
# not a plant: it becomes no instance. (VegetationMap.plants already drops specks of a few pixels;
# this bound is relative to the plants of the photo, which only the stage knows.) The second bound
# keeps a small plant the network missed beside a crowded bed.
MIN_COLOUR_SHARE = 0.05
SPECK_OF_PLANT = 0.25
# ...and a component this share of the image or larger is never a speck: a weed seedling beside big
# crop plants, which the two bounds above, relative to the photo's plants, would drop where the
# network finds few of them (docs/quality.md, "When the network finds few plants"). A JPEG block or a
# moss spot is far smaller; the share follows the image's data, as the closing and min_area do.
PLANT_SIZED = 5e-4
# ...but never below this many pixels: a 16 x 16 block, a JPEG's chroma block at 4:2:0 (in a small
# photo the share alone would be a few such blocks)
PLANT_SIZED_MIN_PIXELS = 256
# Where fewer than this share of the network's confident detections are plant-coloured (MIN_GREEN_SHARE)
# in a photo whose plants are green, the network does not know these plants (a model trained on other
# photos finds soil clods and leaves): its detections off plant colour are more likely soil than
# plants that are not green, and rank below every colour-only instance (kept, never dropped; a red
# lettuce among them is demoted, not cut away). Decided from MIN_CONFIDENT confident detections or
# more (docs/quality.md, "A network that does not know the plants").
KNOWN_SHARE = 0.6
MIN_CONFIDENT = 3
# The stage holds a few image-sized maps; phone cameras' largest photos (108 MP) are under this.
# Beyond it, and in runs that never read the whole image, it runs window by window
# (_vegetation_windows; benchmarks/bench_stage.py --megapixels).
VEGETATION_MAX_PIXELS = 120_000_000


def vegetation_stage(
    found: Instances,
    source,
    options,
    *,
    classes_filtered: bool = False,
    windowed: bool = False,
    report=None,
    cancel=None,
) -> tuple[Instances, dict]:
    """``segment``'s vegetation stage: ``found`` made to follow plant colour, and a note of what was done and why.

    ``source``: the run's :class:`~napari_gardenseg._image_source.ImageSource`;
    ``options``: its :class:`~napari_gardenseg._options.SegmentOptions`.
    ``options.vegetation`` "off" never runs it, "on" whenever the photo's colours
    form two classes whose upper one is green (``ColourClasses.green``; without
    them the stage would make patches of soil into plants), and "auto" when
    the photo's colour separates plants from their background
    (:func:`._vegetation.colour_classes`, decided on a strided overview) and
    the network's confident detections hold less than :data:`MODEL_COVERS` of
    the plant-coloured pixels (else the network knows these plants already).
    Runs with a class filter skip it (colour knows no classes). Colours that
    pass the threshold but that the confident detections' plants lack (straw,
    pale mulch) are vetoed first (:mod:`._colour_veto`; the note's
    ``"vegetation_residue_vetoed"``: the share of the plant-coloured pixels vetoed). The note's
    ``"vegetation_confident_on_colour"`` is :func:`confident_on_colour` on the overview (None: too few
    confident detections to judge; absent when the stage stopped before it).

    It holds a few image-sized maps; ``windowed`` runs, which never read the
    whole image (``segment_to_zarr``, a lazy source in tiles), and images over
    :data:`VEGETATION_MAX_PIXELS` run it window by window
    (:mod:`._vegetation_windows`; the note's ``"windows"`` says how many).
    Tiled runs of an image in memory run it on the instances merged across
    tiles, and an untiled lazy source runs it whole too (reading it in bands).
    Raises :class:`~napari_gardenseg.Cancelled` when ``cancel`` is set.
    """
    import dataclasses

    from ._colour_veto import learn_residue_veto
    from ._vegetation import colour_classes, index_noise, sample_step

    mode = options.vegetation
    h, w = source.shape[:2]
    if mode == "off":
        return found, {"applied": False, "reason": "vegetation='off'"}
    if classes_filtered:  # a filtered detection could be taken for a piece of a plant
        return found, {"applied": False, "reason": "a class filter is set"}
    if report is not None:
        report(0.7, "finding plant pixels by colour")
    step = sample_step((h, w))
    overview = source.overview(step)
    # pixel noise is a property of full-resolution pixels: a strided overview's neighbours are farther apart
    centre = None if step == 1 else source.read(_central_window(h, w, NOISE_WINDOW))
    noise = None if centre is None else index_noise(centre)
    classes = colour_classes(overview, step=step, noise=noise)
    info = {"mode": mode, **classes.summary()}
    if mode == "auto" and not classes.informative:
        return found, {"applied": False, "reason": classes.reason, **info}
    if not classes.green:  # "on" too: its plant-coloured class would be soil, made into plants
        return found, {"applied": False, "reason": f"no plant colour to follow: {classes.reason}", **info}
    # straw and pale mulch pass the threshold: colours the confident detections' plants lack are vetoed
    veto, vetoed = learn_residue_veto(found, overview, classes, step, SEED_THRESHOLD, COVERAGE_SCORE)
    info["vegetation_residue_vetoed"] = round(vetoed, 3)
    if veto is not None:
        classes = dataclasses.replace(classes, veto=veto)
    # the overview's plant map as the classes were decided on it: the smoothing's sigma in overview pixels
    overview_plants = dataclasses.replace(classes, smooth=classes.smooth / step).map(overview).probability > 0.5
    # the plants' own scale bounds the closing and the speck size, one figure for every window
    classes = dataclasses.replace(classes, plant_area=plant_scale(classes, overview_plants, step, centre))
    del centre
    known = confident_on_colour(found, overview_plants, step)
    del overview_plants
    info["vegetation_confident_on_colour"] = None if known is None else round(known, 3)
    doubt = known is not None and known < KNOWN_SHARE and not classes.below_soil
    if windowed or h * w > VEGETATION_MAX_PIXELS:
        from ._vegetation import data_region
        from ._vegetation_windows import follow_in_windows

        # the data's extent (from the same overview): a nodata border does not widen the closing
        # or the speck size, as in a whole-image run
        region = data_region(source)
        out, covered, info["windows"] = follow_in_windows(
            found,
            source,
            classes,
            SEED_THRESHOLD,
            data_shape=None if region is None else (region[2] - region[0], region[3] - region[1]),
            score_threshold=options.score_threshold,
            doubt_off_colour=doubt,
            cancel=cancel,
            progress=None if report is None else (lambda f, m: report(0.7 + 0.05 * f, m)),
        )
    else:
        del overview
        from ._vegetation import data_window

        # band by band from the source: no float copy of the whole image (the stage's peak memory)
        y0, x0, y1, x1 = data_window(source)  # a nodata border does not widen the closing or the speck size
        vmap = classes.map(source, image_shape=(y1 - y0, x1 - x0))
        covered = model_coverage(found, vmap, SEED_THRESHOLD)
        out = None
    info["vegetation_model_coverage"] = None if covered is None else round(covered, 3)
    if mode == "auto" and covered is None:  # not "the network holds them all": there are none to hold
        reason = "no plant-coloured patch is larger than a speck (12 px to 2e-5 of the image's pixels)"
        return found, {"applied": False, "reason": reason, **info}
    if mode == "auto" and covered >= MODEL_COVERS:
        reason = f"the network's confident detections already hold {100 * covered:.0f}% of the plant-coloured pixels"
        return found, {"applied": False, "reason": reason, **info}
    if out is None:
        out = follow_vegetation(
            found, vmap, SEED_THRESHOLD, score_threshold=options.score_threshold, doubt_off_colour=doubt
        )
    info[GROUND_COVER] = out.meta.pop(GROUND_COVER, 0.0)
    return out, {"applied": True, "reason": classes.reason, **info}


# the side (pixels) of the full-resolution window a large photo's pixel noise is measured on
NOISE_WINDOW = 1024


def plant_scale(classes, overview_plants: np.ndarray, step: int, centre: np.ndarray | None = None) -> float | None:
    """The image's typical plant-coloured component, in pixels of the image
    (:func:`._vegetation.typical_area`): on ``centre``, a full-resolution window of it as float RGB
    (h, w, 3) in 0..1, where one is given and holds plant colour under ``classes``, else on
    ``overview_plants``, the bool plant-coloured pixels of every ``step``-th pixel. A strided
    overview samples leaves narrower than its stride (grass blades, onion and cereal seedlings in a
    big photo) into dots that do not connect, so their components look a fraction of their size."""
    if centre is not None:
        area = typical_area(classes.map(centre).probability > 0.5)
        if area is not None:
            return area
    return typical_area(overview_plants, step)


def _central_window(h: int, w: int, side: int) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) of the window of at most ``side`` x ``side`` pixels in the middle of an (h, w) image."""
    y0, x0 = max((h - side) // 2, 0), max((w - side) // 2, 0)
    return y0, x0, min(y0 + side, h), min(x0 + side, w)


def confident_on_colour(found: Instances, plants: np.ndarray, step: int) -> float | None:
    """Share (0..1) of ``found``'s confident detections (scoring :data:`COVERAGE_SCORE` or more) whose
    masks (above :data:`SEED_THRESHOLD`) are at least :data:`MIN_GREEN_SHARE` plant-coloured, read on
    ``plants``: bool, the plant-coloured pixels of the image's overview (every ``step``-th pixel along
    both axes; the colour classes' map, not closed: a photo-level count, not the gate's map). None
    with fewer than :data:`MIN_CONFIDENT` confident detections on the grid (too few to judge)."""
    from ._colour_veto import on_grid

    confident = np.flatnonzero(found.scores >= COVERAGE_SCORE)  # the network's own confident finds
    on_colour = []
    for i in confident:
        part, oy, ox = on_grid(found, int(i), step, plants.shape, SEED_THRESHOLD)
        if part.any():  # a small detection may fall between the grid's pixels: not counted
            on_colour.append(plants[oy : oy + part.shape[0], ox : ox + part.shape[1]][part].mean() >= MIN_GREEN_SHARE)
    return float(np.mean(on_colour)) if len(on_colour) >= MIN_CONFIDENT else None


def model_coverage(
    found: Instances, vegetation: VegetationMap, mask_threshold: float = 0.5, min_score: float = COVERAGE_SCORE
) -> float | None:
    """Share (0..1) of the plant-coloured pixels inside detections scoring at least ``min_score``;
    None where the map holds none (every plant-coloured patch smaller than a speck)."""
    veg = vegetation.plants
    if not veg.any():
        return None
    confident = found.take(np.flatnonzero(found.scores >= min_score))
    return float((paint_image(confident, mask_threshold)[veg] > 0).mean()) if len(confident) else 0.0


# instances x components up to this many are counted in one dense table (32 MB), more sparsely
_DENSE_PAIRS = 1 << 22


def _pair_counts(inst, comp, n: int, n_comps: int):
    """(instance, component, pixels) of every instance 1..n and component that share
    plant-coloured pixels; ``inst`` / ``comp``: each such pixel's ids. Never an n x n_comps
    table where that is large (a tiled tray: thousands of both)."""
    key = inst.astype(np.int64) * (n_comps + 1) + comp
    size = (n + 1) * (n_comps + 1)
    if size <= _DENSE_PAIRS:
        counts = np.bincount(key, minlength=size)
        keys = np.flatnonzero(counts)
        counts = counts[keys]
    else:
        keys, counts = np.unique(key, return_counts=True)
    i, c = np.divmod(keys, n_comps + 1)
    keep = i > 0
    return i[keep], c[keep], counts[keep]


def _largest(group, other, pixels, size: int):
    """For each group id 0..size-1: the ``other`` id it shares most pixels with (the lowest on a
    tie; 0 where none) and that count."""
    which, count = np.zeros(size, np.int64), np.zeros(size, np.int64)
    if len(group):
        order = np.lexsort((other, -pixels, group))
        first = order[np.r_[True, group[order][1:] != group[order][:-1]]]
        which[group[first]], count[group[first]] = other[first], pixels[first]
    return which, count


def _colour_score(size_q: float) -> float:
    """The score of a plant claimed by colour whose area is ``size_q`` (0..1) of the typical
    component's (capped at 1): :data:`COLOUR_SCORE_RANGE`, larger plants higher."""
    lo, hi = COLOUR_SCORE_RANGE
    return lo + (hi - lo) * size_q


def follow_vegetation(
    found: Instances,
    vegetation: VegetationMap,
    mask_threshold: float = 0.5,
    *,
    min_seed_share: float = MIN_SEED_SHARE,
    score_threshold: float = 0.0,
    return_origins: bool = False,
    split_sparse: bool = True,
    doubt_off_colour: bool = False,
):
    """Instances of ``found`` (an (H, W) image's) made to follow ``vegetation``; see the module docstring.

    Returns new :class:`Instances` (``found`` is not changed), best score
    first: the model instances that hold plant pixels and the colour-only
    ones. No score is below ``score_threshold``, which filters the network's
    detections: a detection that colour scores lower stays at it (ranked lower,
    never dropped), and so does a colour-only instance scoring below it (kept
    whatever the threshold: it is a plant the network missed). A seed scores at
    least what its claim would as a colour-only instance (:func:`_colour_score`),
    unless its claim is speck-sized.
    ``sources`` says "model" or "colour" per instance; ``class_ids`` of
    colour-only instances are 0 (no class). With ``return_origins`` also an
    int64 (N,) array: each returned instance's index in ``found`` (-1: colour-only), and a bool
    (N,) array: whether it claimed its pixels by colour (a seed, or colour-only; False: a model
    instance kept as the network painted it, not green or on ground cover).
    A colour-only component, or a seed's claim, whose box would be mostly
    empty and large (:func:`._vegetation_windows.fits_one_box`) is held in
    pieces (:func:`._vegetation_windows.pieces_of`; a seed keeps the cells of
    the cores' grid its detection's box meets), unless ``split_sparse`` is
    False (the windowed stage, which decides that when it stitches the windows).
    ``doubt_off_colour``: the photo's confident detections are mostly off plant colour
    (:data:`KNOWN_SHARE`), so instances that are not green score at most
    ``COLOUR_SCORE_RANGE[0]`` times their score, below every colour-only instance (or, where
    ``score_threshold`` lifts both, level with it).
    """
    from scipy import ndimage
    from skimage import segmentation

    from ._vegetation_windows import clip_piece, fits_one_box, grid_cells, pieces_of, split_on_grid, union_of

    h, w = found.shape
    prob = vegetation.probability
    if prob.shape != (h, w):
        raise ValueError(f"vegetation map of shape {prob.shape} for instances of an image of shape {(h, w)}")
    veg = vegetation.plants
    # the full-size id maps in 16 bits when their ids fit: they are most of this stage's peak memory
    try:
        comps, n_comps = ndimage.label(veg, structure=np.ones((3, 3), bool), output=np.uint16)
    except RuntimeError:  # more components than 16 bits hold
        comps, n_comps = ndimage.label(veg, structure=np.ones((3, 3), bool))
    n = len(found)
    id_type = np.uint16 if n < np.iinfo(np.uint16).max else np.int32
    labels = paint_image(found, mask_threshold, dtype=id_type) if n else np.zeros((h, w), id_type)
    painted = label_areas(labels, n)
    visible = np.concatenate([[0.0], visible_shares(found, painted[1:], mask_threshold)])
    on_veg = labels[veg]  # each plant-coloured pixel's instance (0: none), read once
    green = np.bincount(on_veg, minlength=n + 1)
    share = np.where(painted > 0, green / np.maximum(painted, 1), 0.0)
    gated = share >= MIN_GREEN_SHARE
    gated[0] = False
    comp_area = np.bincount(comps.ravel(), minlength=n_comps + 1)

    # each green instance's main component and how much of it the instance covers
    pair_inst, pair_comp, pair_pixels = _pair_counts(on_veg, comps[veg], n, n_comps)
    main, top = _largest(pair_inst, pair_comp, pair_pixels, n + 1)
    cover = top / np.maximum(comp_area[main], 1)
    # a plant-coloured region far larger than the plants the network found in it is ground cover
    # (a lawn, a hedge, a canopy), not a plant: instances on it keep the network's masks, and it
    # becomes no instance of its own
    biggest = np.zeros(n_comps + 1)
    np.maximum.at(biggest, main[gated], painted[gated])
    lawn = (comp_area > LAWN_SHARE * h * w) & (comp_area > LAWN_RATIO * biggest)
    lawn[0] = False
    # ground-cover-sized regions stay out of the typical plant, even the one taken for a plant below
    sizes = comp_area[1:][~lawn[1:]]
    if lawn.any() and vegetation.image_shape in (None, (h, w)):
        # ground cover runs on past the frame; a region the whole image holds with soil all round and no
        # detection in it is one plant the network missed (a close-up of a species it does not know).
        # A window of a big image cannot tell its own cut edges from the image's, so it keeps the rule.
        edges = np.concatenate([comps[0], comps[-1], comps[:, 0], comps[:, -1]])
        inside = np.ones(n_comps + 1, bool)
        inside[edges] = False
        lawn &= ~(inside & (biggest == 0))
    # a typical plant's area: the component size at the median plant-coloured pixel (ground cover aside)
    typical = median_pixel_size(sizes) or 1.0
    on_lawn = gated & lawn[main]
    gated = gated & ~on_lawn
    # splitting a component needs confident seeds; a lone seed may be less sure
    strong = np.zeros(n + 1, bool)
    strong[1:] = found.scores >= SPLIT_SCORE
    apart = visible >= SEPARATE_SHARE
    seed = gated & ((cover >= min_seed_share) | (strong & apart))
    # a component with seeds belongs to them; one seed takes it whole, several split it
    seeds_of = {}
    for i in np.flatnonzero(seed):
        seeds_of.setdefault(int(main[i]), []).append(int(i))
    for c, ids in seeds_of.items():
        if len(ids) > 1:
            sure = [i for i in ids if strong[i] or apart[i]]
            seeds_of[c] = sure if sure else [max(ids, key=lambda i: found.scores[i - 1])]
    seed[:] = False
    for ids in seeds_of.values():
        seed[ids] = True

    # not green, or on ground cover: kept as the network painted it
    claims = labels.copy()  # in place, no full-size temporaries (label 0 is never gated)
    claims[gated[labels]] = 0
    region = veg & (claims == 0)
    single = np.zeros(n_comps + 1, np.int32)
    split = np.zeros(n_comps + 1, bool)
    for c, ids in seeds_of.items():
        if len(ids) == 1:
            single[c] = ids[0]
        else:
            split[c] = True
    # pieces of a seeded plant that colour cut off (a leaf behind a thin petiole) join it:
    # a component lying mostly inside one seed's mask
    by_seed = seed[pair_inst]
    best, most = _largest(pair_comp[by_seed], pair_inst[by_seed], pair_pixels[by_seed], n_comps + 1)
    joins = (most >= 0.5 * comp_area) & (single == 0) & ~split
    joins[0] = False
    single[joins] = best[joins]
    take = region & (single > 0)[comps]  # a bool per pixel, not a full-size int32 copy
    claims[take] = single[comps[take]]
    comp_objects = ndimage.find_objects(comps)
    for c in np.flatnonzero(split):
        # each shared component in its own padded box: the distance map and watershed cost its area
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in comp_objects[c - 1])
        where = region[sl] & (comps[sl] == c)
        lab = labels[sl]
        markers = np.where(where & seed[lab] & split[main[lab]], lab, 0)
        grown = segmentation.watershed(-ndimage.distance_transform_edt(where), markers, mask=where)
        claims[sl][where] = grown[where]
    del labels, region, take  # full-size maps the masks below do not need: the peak is there

    # a crowded bed's typical component is many plants: a speck is also small beside one plant, the
    # median of the confident green detections (a low score threshold adds many leaf-sized ones)
    sure = gated & strong
    plant_area = float(np.median(painted[sure if sure.any() else gated])) if gated.any() else typical
    image_h, image_w = vegetation.image_shape or (h, w)
    plant_sized = max(PLANT_SIZED * image_h * image_w, PLANT_SIZED_MIN_PIXELS)

    def speck_sized(area):  # bool, of an area or an array of them: under all three bounds
        return (area < MIN_COLOUR_SHARE * typical) & (area < SPECK_OF_PLANT * plant_area) & (area < plant_sized)

    masks, offsets, boxes, scores, class_ids, source, origin, by_colour = [], [], [], [], [], [], [], []
    colour_pieces = []  # colour-only instances: ((mask, y0, x0), score)
    objects = ndimage.find_objects(claims, max_label=n)
    for i in range(n):
        sl = objects[i]
        if sl is None or not (seed[i + 1] or not gated[i + 1]):
            continue  # no pixels left, or a piece of a plant that another instance holds
        window = (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)
        own = claims[sl] == i + 1
        soft = found.crop(i, window)
        if gated[i + 1]:
            soft = np.where(own, 0.5 + 0.5 * prob[sl], np.minimum(soft * prob[sl], 0.49))
        else:
            soft = np.where(own, np.maximum(soft, 0.5 + 1e-3), np.minimum(soft, 0.49))
        soft, y0, x0 = soft.astype(np.float32), window[0], window[1]
        if split_sparse and seed[i + 1] and not fits_one_box(soft.size, int(own.sum())):
            # a seed along a diagonal row: the grid cells its detection's box meets, the rest in pieces
            b = found.boxes[i]
            box = (int(b[1]), int(b[0]), int(b[3]) + 1, int(b[2]) + 1)
            mine, rest = split_on_grid([(soft, y0, x0)], box, (h, w), mask_threshold)
            beyond = max(COLOUR_SCORE_RANGE[1], score_threshold)  # its plant-coloured row beyond its plant
            colour_pieces.extend((p, beyond) for p in (pieces_of(rest) if rest else []))
            if not mine:
                continue
            soft, y0, x0 = union_of(mine)
        masks.append(soft)
        offsets.append((y0, x0))
        boxes.append(found.boxes[i])
        # colour is evidence too: an instance with few plant-coloured pixels in a photo whose plants
        # are green is less likely a plant (it is kept, ranked lower); the more sure the network
        # is, the less colour lowers it (a pale seedling below a bright crop's threshold: the score
        # times itself at the least)
        claimed = float(own.sum())
        size_q = min(claimed / max(typical, 1.0), 1.0)
        if gated[i + 1]:
            factor = 1 - SIZE_WEIGHT + SIZE_WEIGHT * size_q
        elif on_lawn[i + 1]:
            factor = 1.0
        else:
            factor = max(share[i + 1] / MIN_GREEN_SHARE, float(found.scores[i]), 0.1)
            if doubt_off_colour:  # a network that does not know these plants: more likely soil than a red plant
                factor *= COLOUR_SCORE_RANGE[0]
        score = max(found.scores[i] * factor, min(score_threshold, found.scores[i]))
        if seed[i + 1] and not speck_sized(claimed):
            # a seed's claim is drawn by colour: it ranks at least as that claim would on its own (a weak
            # detection seeding a plant the network barely saw must not rank it below colour alone); a
            # speck-sized claim would be no instance on its own, so it keeps the detection's score
            score = max(score, _colour_score(size_q))
        scores.append(score)
        class_ids.append(found.class_ids[i])
        source.append("model")
        origin.append(i)
        by_colour.append(bool(seed[i + 1]))

    speck = speck_sized(comp_area)
    free = [c for c in range(1, n_comps + 1) if c not in seeds_of and single[c] == 0 and not lawn[c] and not speck[c]]
    # the best green piece (a leaf the model found) inside each free component
    piece = np.zeros(n_comps + 1, np.float32)
    for i in np.flatnonzero(gated & ~seed):
        piece[main[i]] = max(piece[main[i]], found.scores[i - 1])
    if free:
        areas = comp_area[free].astype(np.float64)
        rank = np.minimum(areas / max(typical, 1.0), 1.0)
        for c, q in zip(free, rank):
            score = max(_colour_score(q), PIECE_WEIGHT * piece[c])
            score = max(score, score_threshold)  # kept whatever the threshold (it filters detections)
            sl = comp_objects[c - 1]
            box_pixels = (sl[0].stop - sl[0].start) * (sl[1].stop - sl[1].start)
            if not split_sparse or fits_one_box(box_pixels, int(comp_area[c])):
                own = (comps[sl] == c) & (claims[sl] == 0)  # in the component's box (a claimed part too)
                if own.any():
                    soft = np.where(own, 0.5 + 0.5 * prob[sl], 0.0).astype(np.float32)
                    colour_pieces.append(((soft, sl[0].start, sl[1].start), score))
                continue
            parts = []  # a diagonal crop row: read cell by cell, held in pieces
            for cy, cx in grid_cells(sl, (h, w)):
                own = (comps[cy, cx] == c) & (claims[cy, cx] == 0)
                part = clip_piece((np.where(own, 0.5 + 0.5 * prob[cy, cx], 0.0), cy.start, cx.start), (0, 0, h, w))
                if part is not None:
                    parts.append(part)
            colour_pieces.extend((p, score) for p in (pieces_of(parts) if parts else []))
    for (soft, y0, x0), score in colour_pieces:
        masks.append(soft)
        offsets.append((y0, x0))
        boxes.append(np.array([x0, y0, x0 + soft.shape[1] - 1, y0 + soft.shape[0] - 1], np.float32))
        scores.append(score)
        class_ids.append(0)
        source.append("colour")
        origin.append(-1)
        by_colour.append(True)

    out = Instances(
        masks,
        np.asarray(offsets, np.int64).reshape(-1, 2),
        np.asarray(scores, np.float32),
        np.asarray(class_ids, np.int64),
        np.asarray(boxes, np.float32).reshape(-1, 4),
        (h, w),
        # the share of the image that is ground cover: it has no instance, and the widget says why
        meta={**found.meta, GROUND_COVER: round(float(comp_area[lawn].sum()) / (h * w), 4)},
        sources=np.asarray(source, dtype=object),
    )
    order = np.argsort(-out.scores, kind="stable")  # best first, as everywhere
    out = out.take(order)
    if not return_origins:
        return out
    return out, np.asarray(origin, np.int64).reshape(-1)[order], np.asarray(by_colour, bool).reshape(-1)[order]
