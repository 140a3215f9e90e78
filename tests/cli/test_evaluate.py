"""`bigbird-pegasus evaluate`: the table, JSON, and errors that name the file."""

from __future__ import annotations

import json

import pytest

from bigbird_pegasus.cli.main import main
from bigbird_pegasus.pipeline.rouge import ROUGE_TYPES, evaluate
from helpers.cli import run_cli
from helpers.summaries import PREDICTIONS, REFERENCES


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
