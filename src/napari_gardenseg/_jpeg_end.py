"""A JPEG whose pixels are whole but whose end marker (EOI) is missing: read, not refused as cut short.

Samsung's panoramas put their video straight after the scan, and a copy may lose a file's last two
bytes (libjpeg-turbo #163); Pillow then raises "image file is truncated" though every row decodes.
Pillow cannot say how many rows a cut file had (``LOAD_TRUNCATED_IMAGES`` fills the rest), so the
scan's end is found in the file's markers (ITU-T T.81: a sequential frame, one scan of every
component, its restart markers) and the rows are checked by decoding the scan with other bits after
it: a row that needed a byte past the cut comes out different.
"""

from __future__ import annotations

import io
import re

import numpy as np

__all__ = ["jpeg_without_end"]


# a marker in a JPEG's scan data: 0xFF then neither a stuffed 0 nor a restart marker (fill 0xFFs before it)
_MARKER_IN_SCAN = re.compile(
    rb"\xff[^\x00\xd0-\xd7\xff]"
)  # one 0xFF: a run of them (an erased card's tail) never backtracks
_RESTART = re.compile(rb"\xff[\xd0-\xd7]")
# entropy-coded bits to end a scan with, other than the zeros libjpeg decodes where its data ends:
# all ones (0xFF, stuffed), and alternating
_FILLS = (b"\xff\x00" * 512, b"\xaa" * 1024)


def jpeg_without_end(source) -> tuple[np.ndarray, dict] | None:
    """:func:`pillow_pixels` of a JPEG whose scan is whole but whose end marker (EOI) is missing (a
    Samsung panorama with its video after the scan, a copy that lost its last 2 bytes), with a note;
    None for a file cut inside its pixels, or that this cannot tell.

    Only a sequential JPEG of one scan holding every component, as phones and cameras write them:
    its pixels end at its first marker after the scan starts (or the file's end). Decoded ended
    there by an end marker, and again after other bits (:data:`_FILLS`) than the zeros libjpeg
    decodes where data is missing: the pixels agree only when no row took a bit past that point.
    """
    from ._pillow_reader import open_pillow, pillow_pixels, source_bytes

    if source is None:
        return None
    try:
        data = source_bytes(source)
    except OSError:
        return None
    scan = _one_scan(data)
    if scan is None:
        return None
    start, restarts = scan
    marker = _MARKER_IN_SCAN.search(data, start)
    if marker is not None and data[marker.end() - 1] == 0xD9:  # it ends as a JPEG should: damaged elsewhere
        return None
    # a 0xFF at its end: the lost marker's, or a data byte whose stuffed 0 was cut (then bits are missing)
    pixels = data[: marker.start() if marker else len(data)].rstrip(b"\xff")
    if len(_RESTART.findall(pixels, start)) != restarts:  # whole intervals missing, which libjpeg skips
        return None
    try:
        with open_pillow(io.BytesIO(pixels + b"\xff\xd9")) as ended:
            ended.load()
            for fill in _FILLS:
                with open_pillow(io.BytesIO(pixels + fill + b"\xff\xd9")) as filled:
                    filled.load()
                    same = _same(ended, filled)
                    filled.close()  # leaving ``with`` closes the file only, not the decoded pixels
                if not same:
                    return None  # a row took bits past the file's end: cut inside its pixels
            arr, applied = pillow_pixels(ended)
    except (OSError, ValueError, SyntaxError):
        return None
    applied["jpeg_end"] = (
        "no end marker (EOI) after the pixels (a phone's panorama, or its last 2 bytes lost): every row read"
    )
    return arr, applied


# rows compared at a time: a difference image of two whole decodes would be a third decode's size
_BAND_ROWS = 256


def _same(a, b) -> bool:
    """Whether Pillow images ``a`` and ``b`` (same size and mode) have the same pixels, compared a
    band of :data:`_BAND_ROWS` rows at a time."""
    from PIL import ImageChops

    width, height = a.size
    for top in range(0, height, _BAND_ROWS):
        box = (0, top, width, min(top + _BAND_ROWS, height))
        if ImageChops.difference(a.crop(box), b.crop(box)).getbbox(alpha_only=False) is not None:
            return False
    return True


def _one_scan(data: bytes) -> tuple[int, int] | None:
    """Where the scan data of a sequential JPEG of one scan (every component in it) starts, and how
    many restart markers it holds when whole; None for another JPEG (progressive, several scans,
    height in a DNL marker, cut before its scan)."""
    if data[:2] != b"\xff\xd8":
        return None
    at, frame, interval = 2, None, 0
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        body = data[at + 4 : at + 2 + length]
        if marker in (0xC0, 0xC1) and len(body) >= 6:  # baseline, extended sequential (Huffman)
            frame = body
        elif 0xC2 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # progressive, lossless, arithmetic
            return None
        elif marker == 0xDD and len(body) >= 2:
            interval = int.from_bytes(body[:2], "big")
        elif marker == 0xDA:
            if frame is None or not body or body[0] != frame[5] or at + 2 + length > len(data):
                return None
            h, w, n = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big"), frame[5]
            factors = [(b >> 4, b & 15) for b in frame[7 : 6 + 3 * n : 3]]
            if not h or not w or len(factors) != n or not all(min(f) for f in factors):
                return None
            mcu_w, mcu_h = (8 * max(f[0] for f in factors), 8 * max(f[1] for f in factors)) if n > 1 else (8, 8)
            mcus = -(-w // mcu_w) * -(-h // mcu_h)
            return at + 2 + length, (-(-mcus // interval) - 1 if interval else 0)
        at += 2 + length
    return None
