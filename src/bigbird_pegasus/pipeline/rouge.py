"""ROUGE as the summarization papers report it, with bootstrap confidence intervals.

ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum F-measures (x100) from Google's `rouge-score` package with stemming,
averaged over the (prediction, reference) pairs. ROUGE-Lsum is computed over sentences, one per line: `<n>`
marks are turned into line breaks first, then each line is split into sentences (as Hugging Face's scripts do
with nltk before calling rouge-score). Intervals: percentile bootstrap over pairs, resampled with replacement.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from rouge_score import rouge_scorer

from ..text.newlines import decode_newlines
from ..text.sentences import split_sentences

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_RESAMPLES_PER_STEP = 100  # bootstrap resamples drawn at once (bounds the index array to 100 x pairs)


@dataclass(frozen=True)
class Score:
    """Mean F-measure (x100) and, with bootstrap, the interval's bounds."""

    f1: float
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class RougeReport:
    """Scores of every ROUGE type over `pairs` pairs, and how their intervals were drawn."""

    pairs: int
    scores: dict[str, Score]
    bootstrap: int
    confidence: float
    seed: int

    def to_json(self) -> str:
        """The report as a JSON object."""
        return json.dumps(asdict(self), indent=2)

    def to_table(self) -> str:
        """A small text table, one line per ROUGE type."""
        with_interval = self.bootstrap > 0
        title = f"ROUGE F1 x100 over {self.pairs} pairs"
        if with_interval:
            title += (f"; {self.confidence:.0%} bootstrap interval from {self.bootstrap} resamples "
                      f"(seed {self.seed})")
        header = f"{'metric':<10}{'F1':>7}" + (f"{'low':>7}{'high':>7}" if with_interval else "")
        rows = [f"{name:<10}{score.f1:>7.2f}" + (f"{score.low:>7.2f}{score.high:>7.2f}" if with_interval else "")
                for name, score in self.scores.items()]
        return "\n".join([title, header, *rows]) + "\n"


def evaluate(predictions: Sequence[str], references: Sequence[str], bootstrap: int = 1000,
             confidence: float = 0.95, seed: int = 0) -> RougeReport:
    """ROUGE of `predictions` against `references` (same order, same count); `bootstrap` resamples (0: none)
    give `confidence` intervals, reproducible from `seed`."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("nothing to evaluate: no predictions")
    if bootstrap < 0:
        raise ValueError(f"bootstrap must be 0 (no interval) or a number of resamples, got {bootstrap}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    per_pair = rouge_f_measures(predictions, references)                            # (pairs, types)
    means = per_pair.mean(axis=0)
    if bootstrap:
        low, high = bootstrap_interval(per_pair, bootstrap, confidence, seed)
        scores = {name: Score(float(means[i]), float(low[i]), float(high[i])) for i, name in enumerate(ROUGE_TYPES)}
    else:
        scores = {name: Score(float(means[i])) for i, name in enumerate(ROUGE_TYPES)}
    return RougeReport(len(predictions), scores, bootstrap, confidence, seed)


def rouge_f_measures(predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """F-measures x100 of each pair, (pairs, len(ROUGE_TYPES)), stemming on."""
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    rows = []
    for prediction, reference in zip(predictions, references):
        scores = scorer.score(target=sentences_per_line(reference), prediction=sentences_per_line(prediction))
        rows.append([100 * scores[name].fmeasure for name in ROUGE_TYPES])
    return np.array(rows, dtype=np.float64)


def sentences_per_line(text: str) -> str:
    """`text` with one sentence per line, as ROUGE-Lsum expects: `<n>` and line breaks kept as breaks, and each
    line split into sentences."""
    lines = decode_newlines(text).split("\n")
    return "\n".join(sentence for line in lines for sentence in split_sentences(" ".join(line.split())))


def bootstrap_interval(per_pair: np.ndarray, resamples: int, confidence: float, seed: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap bounds of the column means of `per_pair` (pairs, k): two arrays of k values."""
    generator = np.random.default_rng(seed)
    pairs = per_pair.shape[0]
    means = []
    for first in range(0, resamples, _RESAMPLES_PER_STEP):
        count = min(_RESAMPLES_PER_STEP, resamples - first)
        picks = generator.integers(0, pairs, size=(count, pairs))                     # (count, pairs)
        means.append(per_pair[picks].mean(axis=1))                                    # (count, k)
    means = np.concatenate(means)                                                     # (resamples, k)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail], axis=0)
    return low, high
