"""One-line hints about a run's results: why it found nothing, or what to try when it found too
little. The segmentation widget's status line, the batch's notes and ``adapt`` say these.

Each hint reads what the run recorded in its results' ``meta`` (the vegetation stage's notes,
the input's range and channels, the network's passes); none looks at pixels.
"""

from __future__ import annotations

import numpy as np

from ._instances import FULL_PASSES
from ._plant_pixels import GROUND_COVER, KNOWN_SHARE, LAWN_SHARE

__all__ = [
    "COLOURLESS",
    "adapt_hint",
    "dark_hint",
    "ground_cover_hint",
    "network_full_hint",
    "shrunk_hint",
    "card_hint",
    "not_green_hint",
    "nothing_found",
    "status_hint",
]


def status_hint(results) -> str | None:
    """One line that says why a run found nothing, or that the model missed many plants; else None.

    ``results``: the :class:`~napari_gardenseg.SegmentationResult` of each plane.
    Nothing found in a grey image (``meta["channels"]`` 1 or 2): the bundled
    model tells plants by colour too, so a channel split off a colour photo
    is the likely cause. Nothing found in colour: the score threshold. Else
    :func:`network_full_hint`, :func:`adapt_hint`, :func:`shrunk_hint`, :func:`ground_cover_hint`. First of all, an image
    whose values fill a small part of its type's range (``meta["dark_input"]``): it ran dark.
    """
    results = list(results)
    dark = dark_hint(results)
    if dark is not None:
        return dark
    why = nothing_found(results)
    if why == "grey":
        return (
            "grey image (one channel): the models need colour; if it is a channel of a colour photo, make its "
            "channels one RGB layer (select them, right-click > Merge to RGB)"
        )
    if why == "colourless":
        return COLOURLESS
    if why == "score threshold":  # or all it found was a colour card's
        return card_hint(results) or (
            f"no detection scored {results[0].meta.get('score_threshold')} or more: try a lower *min score* (score_threshold)"
        )
    return (
        network_full_hint(results)
        or adapt_hint(results)
        or shrunk_hint(results)
        or ground_cover_hint(results)
        or not_green_hint(results)
        or card_hint(results)
    )


def dark_hint(results) -> str | None:
    """One line when a result's image filled a small part of its type's range
    (``meta["dark_input"]``, :func:`napari_gardenseg._inference.dark_input`): the model saw it nearly
    black, whatever it found; else None. The widget's and the batch's first hint."""
    dark = next((r.meta["dark_input"] for r in results if r.meta.get("dark_input")), None)
    if dark is None:
        return None
    low, high = dark["range"]
    if "above_1" in dark:
        # floats above FLOAT_OVERSHOOT are read as 0..255: a few glints in 0..1 reflectance do it
        how = "a 0..1 image with a few values above 2 (glints, sensor spikes) is read as 0..255: clip it to 0..1"
    else:
        how = "scale it to 0..255 or 0..1 first (a 12-bit camera's values: multiply by 16)"
    return (
        f"the image's brightest value is {dark['brightest']:g} of {low:g}..{high:g}: the model saw it nearly "
        f"black (a viewer stretches it for the eye); {how}"
    )


# Otsu's eta above which two colour classes are clear (one Gaussian class gives 2/pi, 0.64)
CLEAR_CLASSES_ETA = 0.7


def not_green_hint(results) -> str | None:
    """One line when a photo has two clear colour classes and neither is green (a false-colour or
    near-infrared composite, red or purple foliage, a strong cast) yet something was found: the
    models and the colour stage know green plants in RGB, so plants of other colours are mostly
    missed; else None. ``results``: :class:`~napari_gardenseg.SegmentationResult` objects."""
    from ._vegetation import NOT_GREEN

    for r in results:
        veg = r.meta.get("vegetation") or {}
        if (
            len(r)
            and str(veg.get("reason", "")).startswith(NOT_GREEN)
            and veg.get("vegetation_eta", 0) >= CLEAR_CLASSES_ETA
        ):
            return (
                "the photo's colours split clearly but neither part is green (a false-colour or near-infrared "
                "composite, red or purple foliage, a strong colour cast?): the models and the colour stage know "
                "green plants in RGB photos, so plants of other colours are mostly missed"
            )
    return None


# a colour image whose channels agree (meta["colourless"], ImageSource.colourless)
COLOURLESS = "no colour in this photo (black and white, saved as RGB): the models need colour photos"


def nothing_found(results) -> str | None:
    """Why no plane found an instance: "grey", "colourless" or "score threshold"; None when one
    did (or no results).

    ``results``: :class:`~napari_gardenseg.SegmentationResult` objects (one per
    plane). "grey" when every plane is grey (``meta["channels"]`` 1 or 2), "colourless" when
    every plane is grey or an RGB image whose channels agree (``meta["colourless"]``): the
    models tell plants by colour too. Else the score threshold left nothing.
    """
    results = list(results)
    if not results or any(len(r) for r in results):
        return None
    if all(r.meta.get("channels", 3) < 3 for r in results):
        return "grey"
    if all(r.meta.get("channels", 3) < 3 or r.meta.get("colourless") for r in results):
        return "colourless"
    return "score threshold"


def network_full_hint(results) -> str | None:
    """One line when a network pass returned as many instances as one pass may (``meta["full_passes"]``,
    :data:`~napari_gardenseg._instances.FULL_PASSES`): it may have dropped plants, which smaller
    tiles find; else None. ``results``: :class:`~napari_gardenseg.SegmentationResult` objects."""
    passes = sum(r.meta.get(FULL_PASSES, 0) for r in results)
    if not passes:
        return None
    return (
        f"the network returned as many instances as one pass may ({passes} pass{'es' if passes > 1 else ''}): "
        "plants may be missing; segment in smaller tiles (tiles: size in pixels, 512 say) to find them"
    )


def ground_cover_hint(
    results, action: str = "paint its plants and *Train on my labels*", scale_action: str = "set *scale* to auto"
) -> str | None:
    """One line when plant-coloured ground cover (:data:`LAWN_SHARE` of the image or more, far larger
    than any plant found in it: a lawn, a hedge, a bed grown together) was left without instances;
    else None. ``results``: :class:`~napari_gardenseg.SegmentationResult` objects (one per plane);
    ``action``: what to do, in the widget's words (a batch gives its own).

    In a run on tiles (``meta["tiles"]``: a big image at its own resolution) ground cover is judged
    window by window, and a plant larger than the network's tiles (a herbarium sheet or a close-up
    scanned at full resolution, the network finding its leaves) looks the same: then
    :data:`TILED_COVER` of the image is enough, and ``scale_action`` (a smaller scale, at which the
    network sees such plants whole) is the other advice."""
    share, tiled = 0.0, False
    for r in results:
        cover = (r.meta.get("vegetation") or {}).get(GROUND_COVER, 0.0)
        if cover > share:  # tiles at a scale of the run's own choosing: it may be smaller
            share, tiled = cover, bool(r.meta.get("tiles")) and getattr(r.meta.get("options"), "scale", None) != "auto"
    if share < (TILED_COVER if tiled else LAWN_SHARE):
        return None
    text = (
        f"{100 * share:.0f}% of the {'image' if tiled else 'photo'} is plant-coloured ground cover, far larger than "
        f"any plant found in it (a lawn, a hedge, plants grown together): left without instances; {action} to have "
        "them told apart"
    )
    if tiled:
        text += (
            f"; or they are plants larger than the network's tiles, found only in part: {scale_action} "
            "for the network to see them whole"
        )
    return text


# the share of a tiled run's image left as ground cover that the hint speaks of (see ground_cover_hint)
TILED_COVER = 0.05


# an image shrunk more than this many times for one network pass shows the network plants a few
# pixels across: tiles at its own resolution are the remedy for what the model missed, not adapt
SHRUNK_FACTOR = 4
# plants this many pixels across as the network saw them are at its limit: Mask R-CNN's smallest
# anchors are 32 px (torchvision's FPN), and its masks of objects under half that are a few cells
SMALL_IN_VIEW = 16


def card_hint(results) -> str | None:
    """One line when instances on a colour card were left out (``meta["colour_card"]``,
    :mod:`~napari_gardenseg._colour_card`), saying where the card is; else None."""
    cards = [r.meta["colour_card"] for r in results if r.meta.get("colour_card")]
    if not cards:
        return None
    y0, x0, y1, x1 = cards[0]["region"]
    n = sum(c["instances"] for c in cards)
    return (
        f"left out {n} instance{'s' if n != 1 else ''} on a colour card (rows {y0}-{y1}, columns {x0}-{x1}): its "
        "flat chips are not plants"
    )


def shrunk_hint(results, tiles_action: str = "set *tiles* to auto") -> str | None:
    """One line when an image was shrunk more than :data:`SHRUNK_FACTOR` times for one untiled
    network pass (``meta["shrink"]``: a panorama, a 48 MP photo) and the plants found were under
    :data:`SMALL_IN_VIEW` pixels across as the network saw them (their median area's square root):
    smaller ones were likely missed, and tiles at the image's own resolution find them; else None."""
    sides = []
    for r in results:
        shrink = float(r.meta.get("shrink") or 1.0)
        if r.meta.get("tiles") or shrink <= SHRUNK_FACTOR or not len(r):
            continue
        sides.append((float(np.sqrt(np.median(r.table["area"]))) / shrink, shrink))
    if not sides:
        return None
    side, shrink = min(sides)
    if side >= SMALL_IN_VIEW:
        return None
    return (
        f"the image was shrunk {shrink:.0f} times to fit the network's input, so the plants it found were about "
        f"{max(side, 1):.0f} px across there, too small for it to find them all: plants may be missing; {tiles_action} "
        "to segment it at its own resolution"
    )


def adapt_hint(
    results, action: str = "try *Adapt to these photos*", tiles_action: str = "set *tiles* to auto"
) -> str | None:
    """One line when the model missed many of a photo's plants, else None.

    ``results``: :class:`~napari_gardenseg.SegmentationResult` objects (one per
    plane); ``action``: what to do, in the widget's words (a batch gives its own).
    Counts the "colour" instances (plant-coloured components no detection
    claimed) at least a quarter the size of the median model instance; when
    they are as many as the model's instances (and at least 3), the model has
    not learnt these plants yet, or, when the image was shrunk more than
    :data:`SHRUNK_FACTOR` times for one untiled pass (``meta["shrink"]``), never
    saw them at a size it knows: then ``tiles_action`` is the advice. Also when fewer than
    :data:`KNOWN_SHARE` of its confident detections were plant-coloured (the stage's note,
    ``"vegetation_confident_on_colour"``, the lowest of the images the stage ran on): the network
    finds other things than these plants.
    """
    n_model = n_colour = 0
    for r in results:
        if r.sources is None or not len(r):
            continue
        table = r.table
        model = table[table["source"] == "model"]
        colour = table[table["source"] == "colour"]
        typical = float(model["area"].median()) if len(model) else 0.0
        n_model += len(model)
        n_colour += int((colour["area"] >= 0.25 * typical).sum())
    # the lowest share of the images the stage ran on (an image it ranked so gets the hint)
    notes = [r.meta.get("vegetation") for r in results]
    shares = [v.get("vegetation_confident_on_colour") for v in notes if isinstance(v, dict) and v.get("applied")]
    shares = [v for v in shares if v is not None]
    off_colour = bool(shares) and min(shares) < KNOWN_SHARE
    missed = n_colour >= max(3, n_model)
    if not (missed or off_colour):
        return None
    if missed:
        found = f"the model found {n_model} plant{'s' if n_model != 1 else ''}; colour shows {n_colour} more plant-sized patches it missed (source 'colour', at least a quarter of its typical plant)"
    else:
        found = (
            f"under {np.ceil(100 * KNOWN_SHARE):.0f}% of the model's confident finds are plant-coloured "
            f"({np.floor(100 * min(shares)):.0f}%), so it does not know these plants, or they are not green "
            "(its finds that are not plant-coloured now rank below the colour-only ones)"
        )
    shrink = max((float(r.meta.get("shrink") or 1.0) for r in results if not r.meta.get("tiles")), default=1.0)
    if shrink > SHRUNK_FACTOR:
        return (
            f"{found}: the image was shrunk {shrink:.0f} times to fit the network's input, so its plants "
            f"were a few pixels across; {tiles_action} to segment it at its own resolution"
        )
    return f"{found}: {action}"
