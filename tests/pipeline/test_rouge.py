"""ROUGE scores as the papers report them, and bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
from rouge_score import rouge_scorer

from bigbird_pegasus.pipeline.rouge import ROUGE_TYPES, bootstrap_interval, evaluate, sentences_per_line
from helpers.summaries import PREDICTIONS, REFERENCES


def test_scores_are_rouge_score_f_measures_with_stemming_and_sentences_for_lsum():
    report = evaluate(PREDICTIONS, REFERENCES, bootstrap=0)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    expected = [scorer.score(r.replace(". ", ".\n"), p.replace("<n>", "\n").replace(". ", ".\n"))
                for p, r in zip(PREDICTIONS, REFERENCES)]
    for name in ROUGE_TYPES:
        mean = 100 * np.mean([scores[name].fmeasure for scores in expected])
        assert report.scores[name].f1 == pytest.approx(mean)
        assert report.scores[name].low is None and report.scores[name].high is None
    assert report.scores["rougeLsum"].f1 > report.scores["rougeL"].f1, "Lsum must see sentences in any order"
    identical = evaluate(REFERENCES, REFERENCES, bootstrap=0)
    assert all(score.f1 == pytest.approx(100) for score in identical.scores.values())


def test_sentences_per_line_follows_newline_marks_and_sentence_ends():
    assert sentences_per_line("First one. Second one!<n>Third  line\nFourth. ") == (
        "First one.\nSecond one!\nThird line\nFourth.")


def test_bootstrap_interval_is_reproducible_and_contains_the_mean():
    report = evaluate(PREDICTIONS * 5, REFERENCES * 5, bootstrap=500, confidence=0.9, seed=3)
    assert report == evaluate(PREDICTIONS * 5, REFERENCES * 5, bootstrap=500, confidence=0.9, seed=3)
    for score in report.scores.values():
        assert score.low < score.f1 < score.high
    wider = evaluate(PREDICTIONS * 5, REFERENCES * 5, bootstrap=500, confidence=0.99, seed=3)
    assert all(wider.scores[n].high - wider.scores[n].low > report.scores[n].high - report.scores[n].low
               for n in ROUGE_TYPES)


def test_bootstrap_interval_of_known_values():
    constant = np.full((7, 2), 40.0)
    low, high = bootstrap_interval(constant, resamples=250, confidence=0.95, seed=0)
    assert low.tolist() == high.tolist() == [40.0, 40.0]
    two_values = np.array([[0.0], [100.0]] * 50)                     # mean 50, standard error 5
    low, high = bootstrap_interval(two_values, resamples=2000, confidence=0.95, seed=0)
    assert low[0] == pytest.approx(40, abs=1.5) and high[0] == pytest.approx(60, abs=1.5)


def test_evaluate_rejects_bad_arguments():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        evaluate(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="confidence"):
        evaluate(["a"], ["a"], confidence=1.0)
    with pytest.raises(ValueError, match="no predictions"):
        evaluate([], [])
