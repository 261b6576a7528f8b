"""Read a page of handwriting: find each character, classify it, group characters into lines and words.

Characters are the connected components of the page's ink map; pieces of one broken character
(the same x-range within a line) are merged, and so are small pieces with the character they sit over,
under or across (an i's dot, a t's loose bar); over-wide blobs of touching digits are split at their
thinnest column (digit models only: letters such as m and w are wide), and dust (too little ink, or too small
both ways, however dark) is dropped. Words are separated by gaps wider than WORD_GAP times the line's median
character height.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from neurodigits import NeuroDigitsError
from neurodigits.inference import Classifier, LineReader, Prediction, classify
from neurodigits.preprocess import MAX_PAGE_SIDE, fit_line, ink_map, mnist_style

DOT_SHARE = 0.01  # components with less ink than this share of a typical one are specks (an i's dot has more)
DUST_SHARE = 0.03  # ... as are those with less than this share, unless they join a character as one of its pieces
MIN_MASS_SHARE = 0.15  # ... and so are merged blobs with less than this share, unless a stroke half a character tall
MIN_SIDE = 0.3  # ... and, however dark, blobs under this many character heights both ways
PIECE_SHARE = 0.35  # a blob with less ink than this share of a typical one, and less than half a character
PIECE_REACH = 0.75  # tall, is a piece (a dot, a loose bar): it joins a small blob this many heights above or below
PIECE_SLACK = 0.15  # whose columns (widened by this many heights) reach its centre
MAX_ASPECT = 1.8  # a blob wider than this times its height is split into several digits
SPECK_SHARE = 0.001  # strokes with less than this share of a page's ink are specks, not writing
TALL_LINE = 1.7  # a band of writing taller than this many typical lines is several lines touching
MIN_LINE_SHARE = 0.4  # bands thinner than this share of the typical line join the nearest line
WORD_GAP = 0.8  # a gap wider than this times the line's median character height starts a new word

Box = tuple[int, int, int, int]  # top, left, bottom, right (exclusive)


@dataclass(frozen=True)
class Digit:
    """One digit found on the page: its class, probability and box."""

    label: str
    probability: float
    box: Box


@dataclass
class _Blob:
    box: Box
    ids: set[int]
    mass: float
    tallest: int  # the height of its tallest connected stroke

    @property
    def centre_row(self) -> float:
        return (self.box[0] + self.box[2]) / 2

    def merge(self, other: _Blob) -> _Blob:
        box = (min(self.box[0], other.box[0]), min(self.box[1], other.box[1]),
               max(self.box[2], other.box[2]), max(self.box[3], other.box[3]))
        return _Blob(box, self.ids | other.ids, self.mass + other.mass, max(self.tallest, other.tallest))


def _lines(blobs: list[_Blob]) -> list[list[_Blob]]:
    """Group blobs whose vertical centre falls inside a line's extent; lines top to bottom."""
    lines: list[list[_Blob]] = []
    spans: list[list[int]] = []
    for blob in sorted(blobs, key=lambda b: -(b.box[2] - b.box[0])):  # tall blobs define the lines
        for line, span in zip(lines, spans):
            if span[0] <= blob.centre_row <= span[1]:
                line.append(blob)
                break
        else:
            lines.append([blob])
            spans.append([blob.box[0], blob.box[2]])
    order = sorted(range(len(lines)), key=lambda i: spans[i][0])
    return [sorted(lines[i], key=lambda b: b.box[1]) for i in order]


def _merge_pieces(blobs: list[_Blob], height: float) -> list[_Blob]:
    """Merge the pieces of broken characters: blobs whose x-ranges overlap by half the narrower one's
    width and which are vertically less than a quarter of a character's height apart. Given blobs of a
    character's size only: small pieces, specks among them, join in `_join_pieces`, where they cannot chain."""
    blobs = sorted(blobs, key=lambda b: b.box[1])
    merged = True
    while merged:
        merged = False
        for i, a in enumerate(blobs):
            for j in range(i + 1, len(blobs)):
                b = blobs[j]
                if b.box[1] >= a.box[3]:
                    break
                overlap = min(a.box[3], b.box[3]) - b.box[1]
                gap = max(a.box[0], b.box[0]) - min(a.box[2], b.box[2])
                if overlap >= 0.5 * min(a.box[3] - a.box[1], b.box[3] - b.box[1]) and gap <= 0.25 * height:
                    blobs[i] = a.merge(b)
                    del blobs[j]
                    merged = True
                    break
            if merged:
                break
    return blobs


def _is_piece(blob: _Blob, height: float, typical: float) -> bool:
    """Under PIECE_SHARE of a typical character's ink and half its height: an i's dot, a t's loose bar, a speck."""
    return blob.mass < PIECE_SHARE * typical and blob.box[2] - blob.box[0] < 0.5 * height


def _join_pieces(blobs: list[_Blob], pieces: list[_Blob], height: float, typical: float) -> list[_Blob]:
    """Each piece (`_is_piece`, or a dot too light to stand alone), smallest first, joins the nearest blob by rows
    that may take it: one holding a stroke a quarter of a character tall (specks never gather into a character),
    whose columns reach the piece's centre and, beside it (sharing rows), overlap it; from more than a quarter of
    a character above or below, only a small blob (an i's stem, not a whole letter). Distances are measured from
    each blob's own box, not from the pieces it took: specks near a character do not chain into a tall blob.
    Dots that join none are dropped."""
    blobs = blobs + pieces
    boxes = np.array([b.box for b in blobs], dtype=float).reshape(-1, 4)
    mass = np.array([b.mass for b in blobs])
    tallest = np.array([b.tallest for b in blobs])
    alive = np.ones(len(blobs), dtype=bool)
    for i in np.argsort(mass, kind="stable"):
        top, left, bottom, right = boxes[i]
        if not _is_piece(blobs[i], height, typical):
            continue
        gap = np.maximum(top, boxes[:, 0]) - np.minimum(bottom, boxes[:, 2])  # negative: rows shared
        centre = (left + right) / 2
        reaches = (boxes[:, 1] - PIECE_SLACK * height <= centre) & (centre <= boxes[:, 3] + PIECE_SLACK * height)
        apart = (gap < 0) & (np.minimum(right, boxes[:, 3]) <= np.maximum(left, boxes[:, 1]))
        near = (gap <= 0.25 * height) | ((gap <= PIECE_REACH * height) & (mass < PIECE_SHARE * typical))
        takers = alive & reaches & ~apart & near & (tallest >= 0.25 * height)
        takers[i] = False
        if takers.any():
            j = np.flatnonzero(takers)[np.argmin(gap[takers])]
            blobs[j] = blobs[j].merge(blobs[i])
            mass[j], tallest[j], alive[i] = blobs[j].mass, blobs[j].tallest, False
    return [b for b, keep in zip(blobs, alive) if keep and b.mass >= DUST_SHARE * typical]


def _split_wide(blob: _Blob, ink: np.ndarray, height: float) -> list[_Blob]:
    """Split a blob much wider than a digit at its thinnest column near each expected cut."""
    top, left, bottom, right = blob.box
    count = round((right - left) / (0.8 * height))
    if (right - left) <= MAX_ASPECT * height or count < 2:
        return [blob]
    profile = ink[top:bottom, left:right].sum(axis=0)
    cuts, width = [0], (right - left) / count
    for k in range(1, count):
        lo, hi = int((k - 0.3) * width), int((k + 0.3) * width)
        cuts.append(lo + int(np.argmin(profile[lo:hi])))
    cuts.append(right - left)
    return [_Blob((top, left + a, bottom, left + b), blob.ids, float(profile[a:b].sum()), blob.tallest)
            for a, b in zip(cuts, cuts[1:]) if b > a]


def find_digits(ink: np.ndarray, split_wide: bool = True) -> list[list[tuple[Box, np.ndarray]]]:
    """Each line's characters, left to right, as (box, the character's own ink cropped to the box);
    `split_wide` cuts over-wide blobs into several (touching digits)."""
    labels, count = ndimage.label(ink > 0, structure=np.ones((3, 3)))
    if not count:
        return []
    masses = ndimage.sum(ink, labels, np.arange(1, count + 1))
    blobs = [_Blob((s[0].start, s[1].start, s[0].stop, s[1].stop), {i}, float(mass), s[0].stop - s[0].start)
             for i, (s, mass) in enumerate(zip(ndimage.find_objects(labels), masses), start=1)]
    large = [b for b in blobs if b.mass >= 0.1 * max(masses)]
    typical = float(np.median([b.mass for b in large]))
    height = float(np.median([b.box[2] - b.box[0] for b in large]))
    dots = [b for b in blobs if DOT_SHARE * typical <= b.mass < DUST_SHARE * typical]
    pieces, characters = [], []
    for blob in blobs:
        if blob.mass >= DUST_SHARE * typical:
            (pieces if _is_piece(blob, height, typical) else characters).append(blob)
    lines = _lines(_join_pieces(_merge_pieces(characters, height), pieces + dots, height, typical))
    found = []
    for line in lines:  # a thin i, l or 1 holds little ink, but is half a character tall, and a stroke
        line = [b for b in line if (b.mass >= MIN_MASS_SHARE * typical
                                    or (b.box[2] - b.box[0] >= 0.5 * height and b.tallest >= 0.25 * height))
                and max(b.box[2] - b.box[0], b.box[3] - b.box[1]) >= MIN_SIDE * height]
        if not line:
            continue
        line_height = float(np.median([b.box[2] - b.box[0] for b in line]))
        digits = []
        for blob in (piece for b in line for piece in (_split_wide(b, ink, line_height) if split_wide else [b])):
            top, left, bottom, right = blob.box
            own = np.isin(labels[top:bottom, left:right], list(blob.ids))
            digits.append((blob.box, np.where(own, ink[top:bottom, left:right], 0.0)))
        found.append(digits)
    return found


def classify_crops(crops: list[np.ndarray], classifier: Classifier) -> list[Prediction]:
    """Characters cut from a page's ink map, each put through `predict`'s MNIST-style step, classified."""
    return classify(classifier, np.stack([mnist_style(crop, classifier.image_size) for crop in crops]))


def read_page(gray: np.ndarray, classifier: Classifier) -> list[list[Digit]]:
    """Grayscale page in [0, 1] -> its lines of classified characters, top to bottom, left to right."""
    try:
        ink = ink_map(gray)
    except NeuroDigitsError:
        raise NeuroDigitsError("no handwriting found on the page") from None
    lines = find_digits(ink, split_wide=not any(name.isalpha() for name in classifier.classes))
    crops = [crop for line in lines for _, crop in line if crop.any()]
    if not crops:
        raise NeuroDigitsError("no handwriting found on the page")
    predictions = iter(classify_crops(crops, classifier))
    return [[Digit(p.label, p.probability, box) for (box, crop) in line if crop.any()
             for p in [next(predictions)]] for line in lines]


@dataclass(frozen=True)
class TextLine:
    """One line of handwriting read by a line model: its text, confidence and box."""

    text: str
    confidence: float
    box: Box


def find_lines(ink: np.ndarray) -> list[Box]:
    """The text lines of a page's ink map, top to bottom. Strokes (connected ink) whose rows overlap belong to
    one line, so a word's loose loops and accents stay together; a band taller than TALL_LINE typical lines
    (lines touching through ascenders and descenders) is cut at its emptiest row; bands much thinner than a
    typical line (an i's dots, a stray mark) join their nearest neighbour; specks are dropped. Each box spans
    its band's rows and the ink's columns."""
    labels, count = ndimage.label(ink > 0, structure=np.ones((3, 3)))
    if not count:
        return []
    masses = ndimage.sum(ink, labels, np.arange(1, count + 1))
    spans = sorted((s[0].start, s[0].stop) for s, mass in zip(ndimage.find_objects(labels), masses)
                   if mass >= SPECK_SHARE * masses.sum())
    bands: list[list[int]] = []
    for top, bottom in spans:
        if bands and top < bands[-1][1]:
            bands[-1][1] = max(bands[-1][1], bottom)
        else:
            bands.append([top, bottom])
    profile = ink.sum(axis=1)
    heights = np.array([b - a for a, b in bands])
    order = np.argsort(heights)
    mass = np.cumsum([profile[a:b].sum() for a, b in (bands[k] for k in order)])
    typical = float(heights[order[np.searchsorted(mass, mass[-1] / 2)]])  # a line's height, weighted by ink
    for i in range(len(bands) - 1, -1, -1):  # cut over-tall bands at their emptiest row
        top, bottom = bands[i]
        cuts = []
        while bottom - top > TALL_LINE * typical:
            low, high = top + int(0.6 * typical), bottom - int(0.6 * typical)
            cut = low + int(np.argmin(profile[low:high]))
            cuts.append(cut)
            top = cut
        edges = [bands[i][0], *cuts, bands[i][1]]
        bands[i:i + 1] = [[a, b] for a, b in zip(edges, edges[1:])]
    while len(bands) > 1:
        i = min(range(len(bands)), key=lambda k: bands[k][1] - bands[k][0])  # the thinnest band
        top, bottom = bands[i]
        if bottom - top >= MIN_LINE_SHARE * typical:
            break
        gaps = [(top - bands[i - 1][1], i - 1) if i > 0 else (np.inf, -1),
                (bands[i + 1][0] - bottom, i + 1) if i + 1 < len(bands) else (np.inf, -1)]
        j = min(gaps)[1]
        bands[j] = [min(bands[j][0], top), max(bands[j][1], bottom)]
        del bands[i]
    boxes = []
    for top, bottom in bands:
        cols = np.flatnonzero(ink[top:bottom].max(axis=0) > 0)
        boxes.append((top, int(cols.min()), bottom, int(cols.max()) + 1))
    return boxes


def read_text_page(gray: np.ndarray, reader: LineReader) -> list[TextLine]:
    """Grayscale page or paragraph in [0, 1] -> its lines, each read whole by a line model."""
    try:
        ink = ink_map(gray)
    except NeuroDigitsError:
        raise NeuroDigitsError("no handwriting found on the page") from None
    boxes = find_lines(ink)
    if not boxes:
        raise NeuroDigitsError("no handwriting found on the page")
    lines = [fit_line(ink[top:bottom, left:right], reader.image_size, MAX_PAGE_SIDE)
             for top, left, bottom, right in boxes]
    return [TextLine(text, confidence, box) for (text, confidence), box in zip(reader.read(lines), boxes)]


def words(line: list[Digit]) -> list[list[Digit]]:
    """A line's characters grouped into words at the gaps wider than WORD_GAP character heights."""
    if not line:
        return []
    height = float(np.median([d.box[2] - d.box[0] for d in line]))
    grouped = [[line[0]]]
    for previous, current in zip(line, line[1:]):
        if current.box[1] - previous.box[3] > WORD_GAP * height:
            grouped.append([])
        grouped[-1].append(current)
    return grouped


def line_text(line: list[Digit]) -> str:
    """A line's text: its words separated by single spaces."""
    return " ".join("".join(d.label for d in word) for word in words(line))


def annotate(gray: np.ndarray, marks: Iterable[tuple[Box, str, float]]) -> Image.Image:
    """The page in colour with each mark's box drawn and its label above it: green when its probability
    (confidence) is at least 0.8, else orange."""
    image = Image.fromarray((np.clip(gray, 0, 1) * 255).astype(np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for (top, left, bottom, right), label, probability in marks:
        colour = (0, 160, 0) if probability >= 0.8 else (220, 120, 0)
        draw.rectangle((left, top, right - 1, bottom - 1), outline=colour, width=2)
        draw.text((left, max(0, top - 12)), label, fill=colour)
    return image
