"""Split a document that is too long for the model into overlapping windows of whole sentences.

A window is a run of consecutive sentences whose model input fits `limit` tokens (`</s>` included). Windows end
at a paragraph break when one lies in their second half, otherwise at a sentence end; consecutive windows share
their last/first sentences, up to `overlap` tokens of them. A sentence longer than a window is cut between words.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..text.newlines import NewlineMode, model_input
from ..text.sentences import split_sentences

TokenCounter = Callable[[list[str]], list[int]]  # model-input texts -> token counts, `</s>` included


@dataclass(frozen=True)
class Unit:
    """A sentence (or a piece of an over-long sentence) and the paragraph it belongs to."""

    text: str
    paragraph: int


@dataclass
class Chunker:
    """Cuts paragraph lists into windows that fit the model; `count_tokens` measures model inputs."""

    count_tokens: TokenCounter
    limit: int
    overlap: int
    mode: NewlineMode

    def split(self, paragraph_list: list[str]) -> list[list[str]]:
        """The windows of a document, each as its list of paragraphs (sentences of one paragraph re-joined)."""
        units = [Unit(sentence, index) for index, paragraph in enumerate(paragraph_list)
                 for sentence in split_sentences(paragraph)]
        units = self._cut_long_units(units)
        return [window_paragraphs(window) for window in self._fit(units, budget=self.limit)]

    def _cut_long_units(self, units: list[Unit]) -> list[Unit]:
        """Units that each fit a window: a longer sentence is cut between words into pieces that fit."""
        costs = self.count_tokens([model_input([unit.text], mode=self.mode) for unit in units])
        fitted = []
        for unit, cost in zip(units, costs):
            if cost <= self.limit:
                fitted.append(unit)
                continue
            words = unit.text.split(" ")
            word_costs = self.count_tokens([model_input([word], mode=self.mode) for word in words])
            for piece in pack_windows(word_costs, paragraph_of=[0] * len(words), budget=self.limit, overlap=0):
                fitted.append(Unit(" ".join(words[piece.start:piece.stop]), unit.paragraph))
        return fitted

    def _fit(self, units: list[Unit], *, budget: int) -> list[list[Unit]]:
        """Pack `units` into windows of at most `budget` summed unit costs, then re-pack any window whose real
        token count exceeds the limit (joining pieces can tokenize differently) with a smaller budget."""
        costs = self.count_tokens([model_input([unit.text], mode=self.mode) for unit in units])
        windows = pack_windows(costs, paragraph_of=[unit.paragraph for unit in units], budget=budget,
                               overlap=self.overlap)
        texts = [model_input(window_paragraphs(units[window.start:window.stop]), mode=self.mode) for window in windows]
        fitted = []
        for window, tokens in zip(windows, self.count_tokens(texts)):
            members = units[window.start:window.stop]
            if tokens <= self.limit or len(members) == 1:
                fitted.append(members)
            else:
                smaller = min(budget, sum(costs[window.start:window.stop])) - (tokens - self.limit)
                fitted.extend(self._fit(members, budget=max(smaller, 1)))
        return fitted


def pack_windows(costs: list[int], *, paragraph_of: list[int], budget: int, overlap: int) -> list[range]:
    """Cover units 0..n-1 (unit i costs `costs[i]`, belongs to paragraph `paragraph_of[i]`) with windows of
    consecutive units whose costs sum to at most `budget` (a unit costing more stands alone).

    A window that is not the last ends at the last paragraph start that keeps it at least half full, if any;
    the next one starts with as many of its last units as cost at most `overlap`, always moving forward.
    """
    windows: list[range] = []
    start = 0
    while start < len(costs):
        end, total = start, 0
        while end < len(costs) and total + costs[end] <= budget:
            total += costs[end]
            end += 1
        end = max(end, start + 1)
        if end < len(costs):
            end = _paragraph_end(costs, paragraph_of=paragraph_of, start=start, end=end, at_least=budget / 2)
        windows.append(range(start, end))
        if end == len(costs):
            break
        start = _overlapped_start(costs, start=start, end=end, overlap=overlap)
    return windows


def _paragraph_end(costs: list[int], *, paragraph_of: list[int], start: int, end: int, at_least: float) -> int:
    """The last k in (start, end] where a paragraph starts and units start..k-1 cost at least `at_least`;
    `end` when there is none."""
    filled = sum(costs[start:end])
    for k in range(end, start, -1):
        if filled < at_least:
            break
        if k < len(paragraph_of) and paragraph_of[k] != paragraph_of[k - 1]:
            return k
        filled -= costs[k - 1]
    return end


def _overlapped_start(costs: list[int], *, start: int, end: int, overlap: int) -> int:
    """Where the window after start..end-1 begins: back from `end` over units costing at most `overlap`
    in all, but after `start`."""
    next_start, shared = end, 0
    while next_start - 1 > start and shared + costs[next_start - 1] <= overlap:
        next_start -= 1
        shared += costs[next_start]
    return next_start


def window_paragraphs(units: list[Unit]) -> list[str]:
    """Consecutive units as paragraphs: units of the same paragraph joined by spaces."""
    grouped: list[list[str]] = []
    previous = None
    for unit in units:
        if unit.paragraph != previous:
            grouped.append([])
            previous = unit.paragraph
        grouped[-1].append(unit.text)
    return [" ".join(texts) for texts in grouped]
