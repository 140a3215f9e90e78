"""Lines of a PDF, in reading order, joined into paragraphs; the references section and what follows dropped.

A new paragraph starts at another size of type, at an indented line, after a line that stops well short of its
column's right edge (the last line of a paragraph, a heading), and after a wider vertical gap than the
document's usual line spacing.
A word broken at a line end ("experi-" + "ment", or PDFium's soft-hyphen mark) is joined back without its
hyphen when the next line goes on in lower case, unless the document spells the word with the hyphen elsewhere
and never without ("long-" + "term" stays "long-term").
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from .pdf_layout import Line

SOFT_HYPHEN = "\u00ad"
HYPHENS = ("-", SOFT_HYPHEN)
PARAGRAPH_GAP = 1.3  # a baseline distance over this many times the usual one starts a paragraph
INDENT = 0.6  # an indentation of this many line heights starts a paragraph
SHORT_LINE = 2.0  # a line ending this many line heights short of its column's right edge ends a paragraph
TYPE_CHANGE = 1.08  # lines whose heights differ by this factor are set in different sizes (10 and 11 points: 1.1)
MAX_PITCH = 3.0  # baselines further apart than this many line heights are not consecutive lines of a paragraph
# Headings of the references section: alone on their line, maybe numbered ("7 References", "VII. REFERENCES").
_REFERENCES_HEADING = re.compile(
    r"(?:(?:\d+|[IVXLC]+)\.?\s+)?(?:references?(?:\s+and\s+notes)?|bibliography|works\s+cited|literature(?:\s+cited)?"
    r"|cited\s+literature|reference\s+list)\s*:?", re.IGNORECASE)
_TOKEN_EDGES = ".,;:!?()[]{}\"'“”‘’"


def paragraphs_of(lines: Sequence[Line]) -> list[str]:
    """The paragraphs of a document's lines (in reading order), each on one line of text."""
    lines = _before_references(lines)
    if not lines:
        return []
    spelled = _spellings(lines)
    layout = _Layout.of(lines)
    paragraphs: list[str] = []
    text = lines[0].text
    for previous, line in zip(lines, lines[1:]):
        if layout.starts_paragraph(previous, line):
            paragraphs.append(text)
            text = line.text
        else:
            text = _join(text, line.text, spelled=spelled)
    paragraphs.append(text)
    # soft hyphens left inside lines only mark where a word may be broken
    return [cleaned for paragraph in paragraphs if (cleaned := " ".join(paragraph.replace(SOFT_HYPHEN, "").split()))]


def _before_references(lines: Sequence[Line]) -> list[Line]:
    """The lines before the last references heading (all of them when there is none, or nothing before it)."""
    for index in range(len(lines) - 1, 0, -1):
        if _REFERENCES_HEADING.fullmatch(lines[index].text.strip()):
            return list(lines[:index])
    return list(lines)


@dataclass(frozen=True)
class _Layout:
    """A document's usual geometry: where the lines of each (page, column) start and end (medians), the
    usual line height and the usual distance between consecutive baselines of a column."""

    edges: dict[tuple[int, str], tuple[float, float]]
    height: float
    pitch: float

    @classmethod
    def of(cls, lines: Sequence[Line]) -> _Layout:
        groups: dict[tuple[int, str], list[Line]] = {}
        for line in lines:
            groups.setdefault((line.page, line.column), []).append(line)
        edges = {key: (statistics.median(l.left for l in group), statistics.median(l.right for l in group))
                 for key, group in groups.items()}
        height = statistics.median(line.height for line in lines)
        distances = [previous.bottom - line.bottom for previous, line in zip(lines, lines[1:])
                     if (previous.page, previous.column) == (line.page, line.column)
                     and 0 < previous.bottom - line.bottom < MAX_PITCH * previous.height]
        return cls(edges, height, statistics.median(distances) if distances else height)

    def starts_paragraph(self, previous: Line, line: Line) -> bool:
        """Whether `line` starts a paragraph after `previous`: its type is of another size, it is indented,
        `previous` stops short, or (when `line` stands below it) the space between them is wider than usual for
        their size."""
        if max(line.height, previous.height) > TYPE_CHANGE * min(line.height, previous.height):
            return True  # another size of type: a heading, or the text after it
        same_column = (previous.page, previous.column) == (line.page, line.column)
        column_left, _ = self.edges[line.page, line.column]
        indent = INDENT * line.height
        if line.left - column_left > indent and (not same_column or line.left - previous.left > indent):
            return True  # indented, and not as the whole block it continues (an abstract, a quotation)
        _, column_right = self.edges[previous.page, previous.column]
        # a block narrower than its column (an abstract) is measured against its own lines
        right_edge = min(column_right, line.right) if same_column else column_right
        if right_edge - previous.right > SHORT_LINE * previous.height:
            return True
        gap = previous.bottom - line.bottom  # measured where `line` comes below `previous` (not at a column's top)
        below = previous.page == line.page and gap > 0 and line.left < previous.right and previous.left < line.right
        return below and gap > PARAGRAPH_GAP * self.pitch * previous.height / self.height


def _join(text: str, line: str, *, spelled: set[str]) -> str:
    """`line` appended to the paragraph `text`: after a space, or glued to a word broken at the line end."""
    head = text.rsplit(None, 1)[-1][:-1]
    if not text.endswith(HYPHENS) or not head:  # no hyphen, or a dash standing alone
        return f"{text} {line}"
    tail = line.split(None, 1)[0]
    if head[-1].isalpha() and tail[0].islower() and not _keeps_hyphen(head, tail, spelled):
        return text[:-1] + line
    return text[:-1] + "-" + line


def _keeps_hyphen(head: str, tail: str, spelled: set[str]) -> bool:
    """Whether the document writes head-tail with a hyphen and never as one word."""
    hyphenated = f"{head}-{tail}".strip(_TOKEN_EDGES).lower()
    return hyphenated in spelled and hyphenated.replace("-", "") not in spelled


def _spellings(lines: Sequence[Line]) -> set[str]:
    """Every word of the document inside its lines (so never broken at a line end), lower-case."""
    return {word.text.strip(_TOKEN_EDGES).lower() for line in lines for word in line.words[:-1]} | {
        line.words[-1].text.strip(_TOKEN_EDGES).lower() for line in lines if not line.text.endswith(HYPHENS)}
