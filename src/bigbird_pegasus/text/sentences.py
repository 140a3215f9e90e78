"""Paragraphs and sentences of a document's text.

A document becomes a list of paragraphs. Paragraphs are separated by blank lines and the lines inside one are
joined (hard-wrapped text is unwrapped); a text without any blank line is read as one paragraph per line.
Within a paragraph every run of whitespace becomes one space.
"""

from __future__ import annotations

import re

_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")
# Sentence ends: terminal punctuation, closing quotes/brackets, whitespace, then what can start a sentence.
_SENTENCE_END = re.compile(r"""[.!?]+["'”’)\]]*\s+(?=["'“‘(\[]?[A-Z0-9])""")
_SECTION_NUMBER = re.compile(r"[(\[]?\d+(\.\d+)*\.")  # "2." or "4.1." heading a section
# Words whose final period does not end a sentence (compared lower-case, without the period).
ABBREVIATIONS = frozenset(
    "al approx cf dr e.g eq eqs fig figs i.e inc jr ltd mr mrs ms no nos pp prof ref refs sec sect st "
    "vol vs".split())


def paragraphs(text: str) -> list[str]:
    """The paragraphs of `text`, whitespace collapsed, empty ones dropped (see the module docstring)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    blocks = _BLANK_LINE.split(text) if _BLANK_LINE.search(text) else text.split("\n")
    return [collapsed for block in blocks if (collapsed := " ".join(block.split()))]


def split_sentences(paragraph: str) -> list[str]:
    """The sentences of one paragraph: cut after `.`, `!` or `?` (and closing quotes or brackets) that is
    followed by whitespace and a capital letter, digit, opening quote or bracket; not after an abbreviation
    such as "Fig." or "e.g.", an initial such as "J." or a leading section number such as "2."."""
    sentences, start = [], 0
    for end in _SENTENCE_END.finditer(paragraph):
        if _is_false_end(paragraph[start:end.start() + 1]):
            continue
        sentences.append(paragraph[start:end.end()].strip())
        start = end.end()
    tail = paragraph[start:].strip()
    return sentences + [tail] if tail else sentences


def _is_false_end(sentence: str) -> bool:
    """Whether the period ending this would-be sentence belongs to an abbreviation, an initial or a section
    number ("2." or "4.1." at the start of a heading)."""
    if not sentence.endswith("."):
        return False
    if _SECTION_NUMBER.fullmatch(sentence.strip()):
        return True
    word = sentence.rsplit(None, 1)[-1].lstrip("([\"'“‘").rstrip(".").lower()
    return word in ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def one_line(summary: str) -> str:
    """A summary on a single line (line breaks become spaces), as `.txt` outputs hold one summary per line."""
    return " ".join(summary.split())
