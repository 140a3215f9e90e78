"""The words of PDF pages laid out as lines in reading order, without running headers, footers and page numbers.

Each page's words are grouped into rows (words sharing a baseline, across the whole page width). Rows at the top
and bottom edges of pages that repeat on other pages (numbers aside: "Journal 12 (2024), page 3") are running
headers and footers, and so is an edge row standing exactly where they stand (a header alternating between odd
and even pages may be seen once), and a top row in small print set well apart from the text below it (a header
seen once in a short document); an edge row that is only a page number ("3", "Page 3 of 9", "- iv -") is
dropped too.
A page is read in two columns when a vertical gutter separates the words of most rows: rows that cross it
(titles, the abstract, wide figures) split the page into bands, and each band is read left column first.
"""

from __future__ import annotations

import collections
import functools
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EDGE_ROWS = 2  # rows at the top and at the bottom of a page that may be running headers or footers
RUNNING_SHARE = 0.25  # an edge row repeated on at least this share of the pages (and on two) is a running one
ROW_TOLERANCE = 0.5  # the centres of a row's words lie within this many heights of its lowest word
GUTTER_GAP = 1.0  # a gap of at least this many row heights between words can be a column gutter
GUTTER_BAND = (0.3, 0.7)  # where a gutter is looked for, as fractions of the text's width
GUTTER_STEP = 2.0  # points between the positions tried for a gutter
MIN_COLUMN_ROWS = 1  # rows each column needs for a page to be read as two columns (the last page may hold one)
SMALL_PRINT = 0.9  # a row whose words are lower than this share of the document's usual height is small print
SET_APART = 1.5  # a row this many usual word heights above the next is set apart from it
_PAGE_NUMBER = re.compile(r"[-–—\s]*(page\s+)?(\d{1,4}|[ivxlcdm]{1,7})(\s*(/|of)\s*\d{1,4})?[-–—\s]*",
                          re.IGNORECASE)


@dataclass(frozen=True)
class Word:
    """A word and its box on the page, in PDF points with y upwards."""

    text: str
    left: float
    right: float
    bottom: float
    top: float

    @property
    def height(self) -> float:
        return self.top - self.bottom

    @property
    def centre(self) -> float:
        return (self.top + self.bottom) / 2


@dataclass(frozen=True)
class PageWords:
    """The words of one page (numbered from 0), in the order they are drawn."""

    number: int
    words: list[Word]


@dataclass(frozen=True)
class Line:
    """Words read together on one line of one column. column: "full" for a line across the page (or a page of
    one column), "left" or "right" for a line of a two-column band."""

    words: tuple[Word, ...]
    page: int
    column: str

    @functools.cached_property
    def text(self) -> str:
        return " ".join(word.text for word in self.words)

    @functools.cached_property
    def left(self) -> float:
        return self.words[0].left

    @functools.cached_property
    def right(self) -> float:
        return self.words[-1].right

    @functools.cached_property
    def bottom(self) -> float:
        return min(word.bottom for word in self.words)

    @functools.cached_property
    def height(self) -> float:
        """The median height of its words (the size of its type, whatever a tall symbol in it)."""
        return statistics.median(word.height for word in self.words)


Row = list[Word]  # words sharing a baseline, left to right


def reading_order(pages: Sequence[PageWords]) -> list[Line]:
    """The lines of all pages in reading order, running headers, footers and page numbers left out."""
    rows = [_rows(page.words) for page in pages]
    running = _running_rows(rows)
    lines: list[Line] = []
    for page, page_rows in zip(pages, rows):
        edges = _edge_indices(len(page_rows))
        kept = [row for index, row in enumerate(page_rows)
                if index not in edges or not _is_running(index, page_rows, running)]
        lines.extend(_page_lines(kept, page=page.number))
    return lines


def _rows(words: list[Word]) -> list[Row]:
    """Words grouped by baseline, top of the page first; each row sorted left to right.

    The words, sorted by centre, are cut at the widest gap between consecutive centres, again and again, until
    no row's centres span more than ROW_TOLERANCE of its lowest word. (Cutting wherever the centres move past a
    tolerance instead would part words of one line whose centres differ by a hair, when the line of the other
    column sits near that tolerance.)"""
    ordered = sorted(words, key=lambda word: -word.centre)
    centres = np.array([word.centre for word in ordered])                                 # (w,)
    heights = np.array([word.height for word in ordered])                                 # (w,)
    gaps = centres[:-1] - centres[1:]                                                     # (w - 1,)
    rows: list[Row] = []
    pending = [(0, len(ordered))] if ordered else []
    while pending:  # ranges of `ordered`, the topmost on top of the stack
        start, end = pending.pop()
        if centres[start] - centres[end - 1] <= ROW_TOLERANCE * heights[start:end].min():
            rows.append(sorted(ordered[start:end], key=lambda word: word.left))
            continue
        cut = start + 1 + int(np.argmax(gaps[start:end - 1]))
        pending += [(cut, end), (start, cut)]
    return rows


@dataclass(frozen=True)
class _RunningRows:
    """What running headers and footers look like in a document: their texts (`_row_key`) and the heights on
    the page where they stand (rounded to points), for the pages whose header text is not repeated (a header
    alternating between odd and even pages seen once); and the usual height of its words."""

    keys: set[str]
    places: set[int]
    word_height: float


def _running_rows(pages: list[list[Row]]) -> _RunningRows:
    """The edge rows repeated on enough pages to be running headers or footers, and where they stand."""
    seen = collections.Counter()
    for rows in pages:
        seen.update({_row_key(rows[index]) for index in _edge_indices(len(rows))})
    needed = max(2, RUNNING_SHARE * len(pages))
    keys = {key for key, count in seen.items() if count >= needed}
    places = {round(rows[index][0].bottom) for rows in pages for index in _edge_indices(len(rows))
              if _row_key(rows[index]) in keys}
    heights = [word.height for rows in pages for row in rows for word in row]
    return _RunningRows(keys, places, float(np.median(heights)) if heights else 0.0)


def _is_running(index: int, rows: list[Row], running: _RunningRows) -> bool:
    """Whether the edge row `rows[index]` is a running header or footer, or a page number: its text or its place
    is a running row's, or it is a number alone, or it heads the page in small print, set apart from the rest
    (a running header seen once, in a short document)."""
    row = rows[index]
    if _row_key(row) in running.keys or round(row[0].bottom) in running.places:
        return True
    if _PAGE_NUMBER.fullmatch(" ".join(word.text for word in row)):
        return True
    if index > 0 or len(rows) == 1:
        return False
    height = max(word.height for word in row)
    gap_below = min(word.bottom for word in row) - max(word.top for word in rows[1])
    return height < SMALL_PRINT * running.word_height and gap_below > SET_APART * running.word_height


def _row_key(row: Row) -> str:
    """What repeats from page to page in a running header: the text, lower-case, numbers as '#'."""
    return re.sub(r"\d+", "#", " ".join(word.text for word in row).lower())


def _edge_indices(count: int) -> set[int]:
    return set(range(min(EDGE_ROWS, count))) | set(range(max(count - EDGE_ROWS, 0), count))


def _page_lines(rows: list[Row], *, page: int) -> list[Line]:
    """A page's rows as lines in reading order: top to bottom, or by bands and columns when it has two."""
    gutter = _gutter(rows)
    if gutter is None:
        return [Line(tuple(row), page, "full") for row in rows]
    lines: list[Line] = []
    band: list[tuple[Row, Row]] = []
    for row in rows:
        left = [word for word in row if word.right <= gutter]
        right = [word for word in row if word.left >= gutter]
        crosses = len(left) + len(right) < len(row) or _narrow_gap(left, right)
        # the last lines of a block across the page (say, the abstract's) may end before the gutter: until the
        # right column starts, they go on with that block
        goes_on = not band and not right and lines and lines[-1].column == "full"
        if crosses or goes_on:
            lines.extend(_band_lines(band, page=page))
            band = []
            lines.append(Line(tuple(row), page, "full"))
        else:
            band.append((left, right))
    return lines + _band_lines(band, page=page)


def _band_lines(band: list[tuple[Row, Row]], *, page: int) -> list[Line]:
    """A two-column band: its left column top to bottom, then its right column."""
    return ([Line(tuple(left), page, "left") for left, _ in band if left]
            + [Line(tuple(right), page, "right") for _, right in band if right])


def _narrow_gap(left: Row, right: Row) -> bool:
    """Whether words on both sides of a gutter are only a word space apart (one line across it)."""
    if not left or not right:
        return False
    return right[0].left - left[-1].right < GUTTER_GAP * max(word.height for word in left + right)


def _gutter(rows: list[Row]) -> float | None:
    """The x of the gutter between two columns, or None for a page of one column.

    Tried at positions across the middle of the text: a row crosses a position when one of its words covers it,
    or when it has words on both sides only a word space apart. The gutter is where the fewest rows cross, if
    both columns then have MIN_COLUMN_ROWS rows and fewer rows cross than either column holds; the middle of
    the best positions, so that it sits in the middle of the gap."""
    words = [word for row in rows for word in row]
    if len(rows) < 2 * MIN_COLUMN_ROWS:
        return None
    lefts = np.array([word.left for word in words])                                       # (w,)
    rights = np.array([word.right for word in words])                                     # (w,)
    heights = np.array([max(word.height for word in row) for row in rows])                # (r,)
    start, end = lefts.min(), rights.max()
    xs = np.arange(start + GUTTER_BAND[0] * (end - start), start + GUTTER_BAND[1] * (end - start), GUTTER_STEP)
    if not len(xs):
        return None
    covers = (lefts[:, None] < xs) & (rights[:, None] > xs)                                # (w, x)
    before = np.where(rights[:, None] <= xs, rights[:, None], -np.inf)                    # (w, x)
    after = np.where(lefts[:, None] >= xs, lefts[:, None], np.inf)                        # (w, x)
    first_word = np.concatenate([[0], np.cumsum([len(row) for row in rows])[:-1]])         # (r,)
    row_covers = np.logical_or.reduceat(covers, first_word, axis=0)                       # (r, x)
    row_before = np.maximum.reduceat(before, first_word, axis=0)                          # (r, x)
    row_after = np.minimum.reduceat(after, first_word, axis=0)                            # (r, x)
    has_left, has_right = np.isfinite(row_before), np.isfinite(row_after)
    narrow = has_left & has_right & (row_after - row_before < GUTTER_GAP * heights[:, None])
    crossing = row_covers | narrow                                                        # (r, x)
    crossed = crossing.sum(axis=0)                                                        # (x,)
    column_rows = np.minimum((has_left & ~crossing).sum(axis=0), (has_right & ~crossing).sum(axis=0))  # (x,)
    usable = (column_rows >= MIN_COLUMN_ROWS) & (crossed < column_rows)
    if not usable.any():
        return None
    fewest = crossed[usable].min()
    best = usable & (crossed == fewest)
    best &= column_rows == column_rows[best].max()
    return float(np.median(xs[best]))
