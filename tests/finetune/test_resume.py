"""Checkpoints: a run killed with SIGKILL and resumed ends with the same weights as an uninterrupted one;
a full disk while saving leaves the previous checkpoint intact; resuming another model's run is refused."""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from bigbird_pegasus.finetune import FinetuneError, train
from bigbird_pegasus.finetune import state as state_module
from helpers.finetune import (
    command_line, random_examples, read_log, run_options, subprocess_env, tiny_model, write_jsonl,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Runs the finetune command with every optimizer step slowed down, so that the test can kill it mid-run.
SLOW_RUN = """
import sys, time
from bigbird_pegasus.cli import finetune as command
from bigbird_pegasus.finetune import trainer
step = trainer.Trainer._train_step
def slow_step(self, batches):
    time.sleep(0.3)
    return step(self, batches)
trainer.Trainer._train_step = slow_step
raise SystemExit(command.main(sys.argv[1:]))
"""


def finetune(argv, slow=False):
    code = SLOW_RUN if slow else "import sys; from bigbird_pegasus.cli import finetune as command; " \
                                 "raise SystemExit(command.main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *argv], env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_sigkill_then_resume_gives_the_uninterrupted_weights(tmp_path):
    model = tiny_model(tmp_path / "model", attention_dropout=0.1, activation_dropout=0.1)  # dropout 0.1 too
    data = write_jsonl(tmp_path / "train.jsonl", random_examples(10))
    options = dict(max_steps=8, save_every=2, keep_last=10, grad_accum=2, batch_size=1)  # 5 steps an epoch

    def argv(output):
        return command_line(run_options(model, data, output, **options))

    whole = finetune(argv(tmp_path / "whole"))
    assert whole.wait(timeout=180) == 0, whole.stderr.read()

    killed_dir = tmp_path / "killed"
    killed = finetune(argv(killed_dir), slow=True)
    deadline = time.monotonic() + 180
    while not (killed_dir / "checkpoint-4").is_dir() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    _, stderr = killed.communicate()
    assert killed.returncode == -signal.SIGKILL, stderr
    assert not (killed_dir / "final").exists() and not (killed_dir / "checkpoint-8").exists()
    assert max(r["step"] for r in read_log(killed_dir, "train")) < 8

    resumed = finetune(argv(killed_dir) + ["--resume"])
    assert resumed.wait(timeout=180) == 0, resumed.stderr.read()
    assert read_log(killed_dir, "resume")[0]["step"] >= 4

    expected = load_file(tmp_path / "whole" / "final" / "model.safetensors")
    got = load_file(killed_dir / "final" / "model.safetensors")
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    # the resumed log reads as the uninterrupted one: the same losses, each step once
    assert [r["loss"] for r in read_log(killed_dir, "train")] == [r["loss"] for r in read_log(tmp_path / "whole", "train")]


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = tiny_model(tmp_path / "model")
    data = write_jsonl(tmp_path / "train.jsonl", random_examples(8))
    output = tmp_path / "out"
    options = run_options(model, data, output, max_steps=4, save_every=2)
    real_save = torch.save
    calls = []

    def save_then_fill_the_disk(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # the second checkpoint: write half a file, then run out of space
            with open(path, "wb") as f:
                f.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(state_module.torch, "save", save_then_fill_the_disk)
    with pytest.raises(FinetuneError, match=r"could not write .*checkpoint-4: the disk is full; earlier checkpoints"):
        train(options)
    monkeypatch.undo()
    assert sorted(p.name for p in output.iterdir()) == ["checkpoint-2", "log.jsonl"]
    intact = torch.load(output / "checkpoint-2" / "trainer_state.pt", weights_only=True)
    assert intact["optimizer"]["state"]
    result = train({**options, "resume": "latest"})
    assert result.steps == 4


def test_resume_refuses_another_model_and_another_data_order(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", random_examples(6))
    output = tmp_path / "out"
    train(run_options(tiny_model(tmp_path / "a"), data, output, max_steps=1))
    wider = tiny_model(tmp_path / "b", d_model=48)
    same_shape = tiny_model(tmp_path / "c", seed=1)

    with pytest.raises(FinetuneError, match=r"checkpoint-1: the checkpoint holds a different model: "
                                            r"d_model 32 \(this run: 48\)"):
        train(run_options(wider, data, output, max_steps=2, resume="latest"))
    with pytest.raises(FinetuneError, match=r"fine-tuned from .*/a, not from --model .*/c"):
        train(run_options(same_shape, data, output, max_steps=2, resume="latest"))
    with pytest.raises(FinetuneError, match=r"needs the same data order, but batch_size 2 \(now 3\)"):
        train(run_options(tmp_path / "a", data, output, max_steps=2, batch_size=3, resume="latest"))
    with pytest.raises(FinetuneError, match=r"--resume .*/b: not a training checkpoint"):
        train(run_options(tmp_path / "a", data, output, max_steps=2, resume=str(tmp_path / "b")))
    with pytest.raises(FinetuneError, match=r"--resume: .*/empty holds no checkpoint"):
        train(run_options(tmp_path / "a", data, tmp_path / "empty", max_steps=2, resume="latest"))
