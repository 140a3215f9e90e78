"""PDFs typeset for the tests and benchmarks (reportlab): papers of generated prose in one or two justified
columns, with hyphenated line ends, fi/fl ligature glyphs, a running header, page numbers, a references
section and an appendix after it; and the three kinds of PDF the reader refuses (corrupt, password, no text).

`Paper.text` holds the paragraphs a reader should recover, in reading order, as they were before they were
hyphenated and broken into lines; `words_recovered` and `leftover_words` measure an extraction against them.
"""

from __future__ import annotations

import collections
import io
import os
import random
import re
from dataclasses import dataclass

import reportlab
from reportlab.lib.pagesizes import letter
from reportlab.lib.pdfencrypt import StandardEncryption
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from helpers.spm import NOUNS, english_paragraphs

PAGE_WIDTH, PAGE_HEIGHT = letter  # 612 x 792 points
MARGIN = 72  # one inch
GUTTER = 20  # between the two columns
BODY_SIZE, LEADING = 10, 12
HEADER_SIZE = 8
SECTION_TITLES = ["Introduction", "Related Work", "Method", "Experiments", "Results", "Discussion", "Conclusion"]
RUNNING_HEADERS = ("Journal of Synthetic Studies, Volume 12", "Typeset Papers for Extraction Tests")
BOLD = {"Vera": "Vera-Bold", "Helvetica": "Helvetica-Bold", "Times-Roman": "Times-Bold"}
PASSWORD = "secret"
LIGATURES = {"fi": "\ufb01", "fl": "\ufb02"}  # the glyphs Vera has (no ff/ffi/ffl)
MIN_HYPHEN_PART = 3  # letters kept on each side of a hyphenation point


def register_fonts() -> None:
    """Vera and Vera-Bold (TrueType, with fi/fl ligature glyphs and a soft hyphen) for reportlab."""
    fonts = os.path.join(os.path.dirname(reportlab.__file__), "fonts")  # Bitstream Vera ships with reportlab
    for name, file in (("Vera", "Vera.ttf"), ("Vera-Bold", "VeraBd.ttf")):
        if name not in pdfmetrics.getRegisteredFontNames():
            pdfmetrics.registerFont(TTFont(name, os.path.join(fonts, file)))


@dataclass(frozen=True)
class Paper:
    """A typeset paper and what it holds."""

    pdf: bytes
    pages: int
    text: list[str]  # the paragraphs a reader should recover (title, authors, headings, abstract, body)
    references: list[str]
    appendix: list[str]
    hyphenated: int  # words broken across lines
    ligatures: int  # ligature glyphs drawn (fi, fl)


def typeset_paper(*, seed: int = 0, columns: int = 2, sections: int = 6, paragraphs_per_section: int = 4,
                  font: str = "Vera", ligatures: bool = True) -> Paper:
    """A paper of generated prose (`font` "Vera", a TrueType font with ligature glyphs, or a standard font such
    as "Helvetica"), in `columns` (1 or 2) justified columns, as PDF bytes and its source text."""
    register_fonts()
    rng = random.Random(seed)
    title = f"On the {rng.choice(NOUNS).capitalize()} of {rng.choice(NOUNS).capitalize()} in Long Documents"
    authors = "Ada Lovelace, Alan Turing and Grace Hopper"
    abstract = english_paragraphs(1, seed=seed * 7 + 1, unicode_every=0)[0]
    body = english_paragraphs(sections * paragraphs_per_section, seed=seed * 7 + 2, unicode_every=0)
    writer = _Typesetter(columns=columns, font=font, ligatures=ligatures and font == "Vera")
    text = [title, authors, "Abstract", abstract]
    writer.centered(title, size=16, bold=True, space_after=8)
    writer.centered(authors, size=11, space_after=10)
    writer.centered("Abstract", size=BODY_SIZE, bold=True, space_after=2)
    writer.paragraph(abstract, width=PAGE_WIDTH - 2 * MARGIN - 60, left=MARGIN + 30, indent=0, full_width=True)
    writer.start_columns(space_before=14)
    for number in range(sections):
        heading = f"{number + 1} {SECTION_TITLES[number % len(SECTION_TITLES)]}"
        writer.heading(heading)
        text.append(heading)
        for index in range(paragraphs_per_section):
            paragraph = body[number * paragraphs_per_section + index]
            writer.paragraph(paragraph, indent=0 if index == 0 else 12)
            text.append(paragraph)
    references = [_reference(rng, number) for number in range(1, 9)]
    writer.heading("References")
    for entry in references:
        writer.paragraph(entry, indent=0, size=8, leading=9.5, hanging=10)
    appendix = english_paragraphs(2, seed=seed * 7 + 3, unicode_every=0)
    writer.heading("A Additional Results")
    for paragraph in appendix:
        writer.paragraph(paragraph, indent=12)
    return Paper(writer.finish(), writer.page, text, references, appendix, writer.hyphenated, writer.ligatures)


def _reference(rng: random.Random, number: int) -> str:
    names = ["Okafor", "Lindqvist", "Moreau", "Tanaka", "Schmidt", "Alvarez", "Novak", "Haddad"]
    title = " ".join(rng.choice(NOUNS) for _ in range(5)).capitalize()
    return (f"[{number}] {rng.choice(names)}, K. and {rng.choice(names)}, P. {title}. Proceedings of the "
            f"Workshop on Imaginary Venues, pages {rng.randint(1, 400)}-{rng.randint(401, 900)}, {rng.randint(1990, 2023)}.")


class _Typesetter:
    """Draws centered lines, headings and justified paragraphs that flow over columns and pages."""

    def __init__(self, *, columns: int, font: str, ligatures: bool):
        self.buffer = io.BytesIO()
        self.canvas = Canvas(self.buffer, pagesize=letter, invariant=1)
        self.columns, self.font, self.use_ligatures = columns, font, ligatures
        self.bold = BOLD[font]
        self.column_width = (PAGE_WIDTH - 2 * MARGIN - (columns - 1) * GUTTER) / columns
        self.page, self.column, self.hyphenated, self.ligatures = 1, 0, 0, 0
        self.top = PAGE_HEIGHT - MARGIN
        self.y = self.top
        self._decorate_page()

    def centered(self, text: str, *, size: float, bold: bool = False, space_after: float = 0) -> None:
        self.y -= size * 1.2
        font = self.bold if bold else self.font
        self._draw(PAGE_WIDTH / 2 - self._width(text, font, size) / 2, self.y, text, font, size)
        self.y -= space_after

    def start_columns(self, *, space_before: float) -> None:
        self.y -= space_before
        self.top = self.y

    def heading(self, text: str) -> None:
        if self.y - 3 * LEADING < MARGIN:
            self._next_column()
        self.y -= 8  # space above a heading
        self.paragraph(text, indent=0, font=self.bold, size=11, leading=13, justify=False)
        self.y -= 3

    def paragraph(self, text: str, *, indent: float, width: float | None = None, left: float | None = None,
                  size: float = BODY_SIZE, leading: float = LEADING, font: str | None = None, hanging: float = 0,
                  justify: bool = True, full_width: bool = False) -> None:
        font = font or self.font
        width = width or self.column_width
        lines = self._break_lines(text.split(), width=width, indent=indent, hanging=hanging, font=font, size=size)
        for number, words in enumerate(lines):
            if self.y - leading < MARGIN and not full_width:
                self._next_column()
            self.y -= leading
            x = (left if left is not None else self._column_left()) + (indent if number == 0 else hanging)
            line_width = width - (indent if number == 0 else hanging)
            last = number == len(lines) - 1
            self._draw_words(words, x=x, width=line_width, font=font, size=size, justify=justify and not last)

    def finish(self) -> bytes:
        self.canvas.save()
        return self.buffer.getvalue()

    def _break_lines(self, words: list[str], *, width: float, indent: float, hanging: float, font: str,
                     size: float) -> list[list[str]]:
        """Greedy line breaking; a long word that does not fit is hyphenated."""
        lines, line = [], []
        space = self._width(" ", font, size)
        words = list(words)
        while words:
            word = words.pop(0)
            available = width - (indent if not lines else hanging)
            used = sum(self._width(w, font, size) for w in line) + space * len(line)
            if used + self._width(word, font, size) <= available:
                line.append(word)
                continue
            head, tail = self._hyphenate(word, available - used, font, size)
            if head:
                line.append(head)
                words.insert(0, tail)
                self.hyphenated += 1
            elif not line:  # wider than the column: let it stick out
                line.append(word)
            else:
                words.insert(0, word)
            lines.append(line)
            line = []
        return lines + [line] if line else lines

    def _hyphenate(self, word: str, room: float, font: str, size: float) -> tuple[str | None, str]:
        """The longest head of `word` that fits `room` with its hyphen ("exam-", "ination"), at a letter boundary
        or at the word's own hyphen ("long-", "term"); (None, word) when none fits."""
        if "-" in word[1:-1]:
            head, tail = word.split("-", 1)
            return (head + "-", tail) if self._width(head + "-", font, size) <= room else (None, word)
        letters = re.match(r"[A-Za-z]*", word).group()
        for cut in range(len(letters) - MIN_HYPHEN_PART, MIN_HYPHEN_PART - 1, -1):
            if self._width(word[:cut] + "-", font, size) <= room:
                return word[:cut] + "-", word[cut:]
        return None, word

    def _draw_words(self, words: list[str], *, x: float, width: float, font: str, size: float, justify: bool) -> None:
        widths = [self._width(word, font, size) for word in words]
        gap = self._width(" ", font, size)
        if justify and len(words) > 1:
            gap = (width - sum(widths)) / (len(words) - 1)
        for word, word_width in zip(words, widths):
            self._draw(x, self.y, word, font, size)
            x += word_width + gap

    def _draw(self, x: float, y: float, text: str, font: str, size: float) -> None:
        glyphs = self._glyphs(text, font)
        self.ligatures += sum(glyphs.count(glyph) for glyph in LIGATURES.values())
        self.canvas.setFont(font, size)
        self.canvas.drawString(x, y, glyphs)

    def _width(self, text: str, font: str, size: float) -> float:
        return pdfmetrics.stringWidth(self._glyphs(text, font), font, size)

    def _glyphs(self, text: str, font: str) -> str:
        if self.use_ligatures and font.startswith("Vera"):
            for letters, glyph in LIGATURES.items():
                text = text.replace(letters, glyph)
        return text

    def _column_left(self) -> float:
        return MARGIN + self.column * (self.column_width + GUTTER)

    def _next_column(self) -> None:
        self.column += 1
        if self.column == self.columns:
            self.canvas.showPage()
            self.page += 1
            self.column = 0
            self.top = PAGE_HEIGHT - MARGIN
            self._decorate_page()
        self.y = self.top

    def _decorate_page(self) -> None:
        """The running header (alternating between even and odd pages, none on the first) and the page number."""
        if self.page > 1:
            self._draw(MARGIN, PAGE_HEIGHT - 40, RUNNING_HEADERS[self.page % 2], self.font, HEADER_SIZE)
            self._draw(PAGE_WIDTH - MARGIN - 20, PAGE_HEIGHT - 40, str(self.page), self.font, HEADER_SIZE)
        number = str(self.page)
        self._draw(PAGE_WIDTH / 2 - self._width(number, self.font, BODY_SIZE) / 2, 40, number, self.font, BODY_SIZE)


def password_protected_pdf() -> bytes:
    """A one-page paper that opens only with PASSWORD."""
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=letter, encrypt=StandardEncryption(PASSWORD, canPrint=0))
    canvas.drawString(MARGIN, PAGE_HEIGHT - MARGIN, "A secret paper about the weather.")
    canvas.save()
    return buffer.getvalue()


def image_only_pdf(pages: int = 2) -> bytes:
    """Pages holding a raster picture each (as a scanner makes) and no text."""
    from PIL import Image, ImageDraw
    from reportlab.lib.utils import ImageReader

    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=letter)
    for page in range(pages):
        image = Image.new("L", (300, 400), 255)
        draw = ImageDraw.Draw(image)
        for line in range(20):
            draw.rectangle((20, 20 + 18 * line, 280 - 7 * ((line + page) % 5), 30 + 18 * line), fill=0)
        canvas.drawImage(ImageReader(image), MARGIN, MARGIN, width=PAGE_WIDTH - 2 * MARGIN,
                         height=PAGE_HEIGHT - 2 * MARGIN)
        canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def truncated_pdf() -> bytes:
    """The first half of a typeset paper, as a download that stopped midway leaves it."""
    data = typeset_paper(sections=1, paragraphs_per_section=2).pdf
    return data[:len(data) // 2]


def words(text: str) -> list[str]:
    """The words of a text, compared lower-case, without the punctuation around them."""
    return [token for token in (raw.strip(".,;:!?()[]\"'").lower() for raw in text.split()) if token]


def words_recovered(source: list[str], extracted: str) -> float:
    """The share of the source's words (counted with repeats) found in the extraction."""
    wanted = collections.Counter(w for paragraph in source for w in words(paragraph))
    found = collections.Counter(words(extracted))
    return sum((wanted & found).values()) / sum(wanted.values())


def leftover_words(source: list[str], extracted: str) -> list[str]:
    """Words of the extraction that the source does not hold (that many times): running headers, page numbers,
    references, words glued or cut wrongly."""
    extra = collections.Counter(words(extracted)) - collections.Counter(w for p in source for w in words(p))
    return sorted(extra.elements())
