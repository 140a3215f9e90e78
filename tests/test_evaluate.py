"""ROUGE scores, bootstrap intervals and `bigbird-pegasus evaluate`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rouge_score import rouge_scorer

from bigbird_pegasus.cli import main
from bigbird_pegasus.evaluate import ROUGE_TYPES, bootstrap_interval, evaluate, sentences_per_line
from cli_fixtures import run_cli

PREDICTIONS = [
    "The council approved the budget. Critics called the figures incomplete.",
    "Farmers measured rainfall in the valley.<n>The drought lasted two years.",
    "A new method estimates housing prices.",
    "Nothing in common here",
    "Prices rose sharply in winter. The old bridge was repaired.",
]
REFERENCES = [
    "The city council approved the annual budget. Critics said the figures were incomplete.",
    "Local farmers measured the rainfall. The drought lasted for two years.",
    "The report describes a new method for estimating housing prices in the north.",
    "Completely different words entirely.",
    "The old bridge was repaired last year. Prices rose sharply during the winter.",
]


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


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "predictions.txt").write_text("".join(p + "\n" for p in PREDICTIONS), encoding="utf-8")
    (tmp_path / "references.txt").write_text("".join(r + "\n" for r in REFERENCES), encoding="utf-8")
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps({"summary": p, "abstract": r}) + "\n"
                                                  for p, r in zip(PREDICTIONS, REFERENCES)), encoding="utf-8")
    (tmp_path / "short.txt").write_text("only one line\n", encoding="utf-8")
    return tmp_path


def test_cli_prints_a_table_with_intervals(files):
    result = run_cli("evaluate", "--predictions", "predictions.txt", "--references", "references.txt",
                     "--bootstrap", "200", "--seed", "1", cwd=files)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    report = evaluate(PREDICTIONS, REFERENCES, bootstrap=200, seed=1)
    lines = result.stdout.splitlines()
    assert lines[0] == "ROUGE F1 x100 over 5 pairs; 95% bootstrap interval from 200 resamples (seed 1)"
    assert lines[1].split() == ["metric", "F1", "low", "high"]
    for line, name in zip(lines[2:], ROUGE_TYPES):
        score = report.scores[name]
        assert line.split() == [name, f"{score.f1:.2f}", f"{score.low:.2f}", f"{score.high:.2f}"]


def test_cli_json_from_one_jsonl_holding_both_fields(files, capsys):
    assert main(["evaluate", "--predictions", "pairs.jsonl", "--reference-field", "abstract", "--json",
                 "--bootstrap", "0"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = evaluate(PREDICTIONS, REFERENCES, bootstrap=0)
    assert printed["pairs"] == 5 and printed["bootstrap"] == 0
    assert printed["scores"] == {name: {"f1": s.f1, "low": None, "high": None} for name, s in expected.scores.items()}


@pytest.mark.parametrize("args, message", [
    (["--predictions", "predictions.txt", "--references", "short.txt"],
     "predictions.txt holds 5 predictions but short.txt holds 1 references"),
    (["--predictions", "predictions.txt"], "predictions.txt: pass --references, or a .jsonl file"),
    (["--predictions", "pairs.jsonl"], "pairs.jsonl:1: no field 'reference' (fields: 'summary', 'abstract'); "
                                       "choose one with --reference-field"),
    (["--predictions", "missing.txt", "--references", "references.txt"], "missing.txt: no such file"),
])
def test_cli_errors_name_the_file(files, capsys, args, message):
    assert main(["evaluate", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"bigbird-pegasus evaluate: error: {message}") and err.count("\n") == 1
