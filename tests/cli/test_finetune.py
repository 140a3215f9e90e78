"""The command line: errors exit non-zero with one clear line and no traceback."""

from __future__ import annotations

import pytest

from bigbird_pegasus.cli import main as cli
from bigbird_pegasus.cli import finetune as command
from helpers.finetune import random_examples, run_finetune, run_options, tiny_model, write_jsonl


def test_malformed_jsonl_names_the_line_without_a_traceback(tmp_path):
    model = tiny_model(tmp_path / "model")
    data = write_jsonl(tmp_path / "train.jsonl", random_examples(2) + ['{"document": "w1", "summary": '])
    done = run_finetune(run_options(model, data, tmp_path / "out"))
    assert done.returncode == 1
    assert done.stderr.strip() == (f"bigbird-pegasus finetune: error: {data}:3: not valid JSON "
                                   "(Expecting value at column 31)")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change, message", [
    (dict(batch_size=0), "--batch-size must be a positive integer"),
    (dict(label_smoothing=1.5), "--label-smoothing must be in [0, 1)"),
    (dict(train="missing.jsonl"), "--train missing.jsonl: no such file"),
    (dict(validation="."), "--validation .: is a folder, not a file"),
    (dict(model="no/such/model"), "--model no/such/model: Tokenizer folder no/such/model does not exist"),
    (dict(tokenizer="no/such/tokenizer"), "--tokenizer no/such/tokenizer: Tokenizer folder no/such/tokenizer"),
    (dict(model="no/such/model", tokenizer="TOKENIZER"), "--model no/such/model: no such checkpoint folder"),
    (dict(max_target_length=600), "--max-target-length 600 is more than the model's 512 positions"),
    (dict(fsdp=True), "--fsdp needs several processes: start the command with torchrun"),
    (dict(device="cuda:0"), "--device cuda:0: no CUDA device is available"),
])
def test_bad_options_are_reported(tmp_path, capsys, change, message):
    model = tiny_model(tmp_path / "model")
    data = write_jsonl(tmp_path / "train.jsonl", random_examples(2))
    options = {**run_options(model, data, tmp_path / "out"), **change}
    if options.get("tokenizer") == "TOKENIZER":
        options["tokenizer"] = str(model)
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in options.items() if not isinstance(v, bool)]
    argv += [f"--{k}" for k, v in options.items() if v is True]
    assert command.main(argv) == 1
    assert capsys.readouterr().err.startswith(f"bigbird-pegasus finetune: error: {message}")


def test_registered_in_the_package_command_line(tmp_path, capsys):
    missing = tmp_path / "missing.jsonl"
    assert cli.main(["finetune", "--model", "m", "--train", str(missing), "--output-dir", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == f"bigbird-pegasus finetune: error: --train {missing}: no such file\n"


def test_missing_required_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_status:
        command.main(["--model", "m", "--output-dir", "o"])
    assert exit_status.value.code == 2
    assert "the following arguments are required: --train" in capsys.readouterr().err


@pytest.mark.parametrize("entry_point", [cli.main, command.main], ids=["bigbird-pegasus finetune", "standalone"])
def test_ctrl_c_says_how_to_continue(tmp_path, capsys, monkeypatch, entry_point):
    def interrupted_training(config):
        raise KeyboardInterrupt

    monkeypatch.setattr("bigbird_pegasus.finetune.trainer.train", interrupted_training)
    argv = ["--model", "m", "--train", "t.jsonl", "--output-dir", str(tmp_path / "out")]
    assert entry_point(["finetune", *argv] if entry_point is cli.main else argv) == 130
    assert capsys.readouterr().err == "bigbird-pegasus finetune: interrupted; continue with --resume\n"
