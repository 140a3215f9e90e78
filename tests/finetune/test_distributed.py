"""Two processes under torchrun (gloo, CPU, localhost) reach the weights of one process with the doubled batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bigbird_pegasus.finetune import train
from helpers.finetune import (
    assert_same_weights, command_line, equal_length_examples, final_weights, read_log, run_options,
    subprocess_env, tiny_model, write_jsonl,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# train() under torchrun, checking that leaving the process group destroys the default group there and then
LEAVE_CHECKER = """
import sys, weakref
import torch.distributed as dist
from bigbird_pegasus.finetune import train

leave = dist.destroy_process_group
def leave_and_check():
    world = weakref.ref(dist.group.WORLD)
    leave()
    print(f"default group destroyed on leaving: {world() is None}")

dist.destroy_process_group = leave_and_check
train(sys.argv[1:])
"""


def torchrun(options: dict, processes: int = 2, script: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m bigbird_pegasus.finetune` (or `script`) with these options, in `processes` processes."""
    target = [str(script)] if script else ["-m", "bigbird_pegasus.finetune"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               *target, *command_line(options)]
    return subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=300)


@pytest.mark.parametrize("sharding, optimizer", [("ddp", "adamw"), ("fsdp", "adafactor")])
def test_two_processes_match_one_with_the_doubled_batch(tmp_path, sharding, optimizer):
    model = tiny_model(tmp_path / "model", dropout=0.0)
    data = write_jsonl(tmp_path / "train.jsonl", equal_length_examples(12))
    options = dict(max_steps=3, save_every=2, optimizer=optimizer, lr=1e-2, grad_accum=2)

    alone = tmp_path / "alone"
    train(run_options(model, data, alone, batch_size=2, **options))
    together = tmp_path / "together"
    done = torchrun(run_options(model, data, together, batch_size=1, fsdp=sharding == "fsdp", **options))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("fine-tuned model:") == 1 and "returned a view tensor" not in done.stderr

    assert_same_weights(final_weights(alone), final_weights(together), atol=1e-5)
    # only the main process writes: one start record, each step once, one checkpoint
    assert len(read_log(together, "start")) == 1 and read_log(together, "start")[0]["processes"] == 2
    assert [r["step"] for r in read_log(together, "train")] == [1, 2, 3]
    assert [r["loss"] for r in read_log(together, "train")] == pytest.approx(
        [r["loss"] for r in read_log(alone, "train")], rel=1e-5)
    assert sorted(p.name for p in together.iterdir()) == ["checkpoint-2", "checkpoint-3", "final", "log.jsonl"]


@pytest.mark.parametrize("sharding", ["ddp", "fsdp"])
def test_leaving_destroys_the_default_group(tmp_path, sharding):
    """Nothing keeps the default group (our last collectives) alive past destroy_process_group, so its gloo
    threads are joined before the interpreter shuts down; one left running there can abort the process."""
    model = tiny_model(tmp_path / "model", dropout=0.0)
    data = write_jsonl(tmp_path / "train.jsonl", equal_length_examples(4))
    script = tmp_path / "leave_and_check.py"
    script.write_text(LEAVE_CHECKER)
    options = run_options(model, data, tmp_path / "run", batch_size=1, max_steps=1, fsdp=sharding == "fsdp",
                          optimizer="adafactor" if sharding == "fsdp" else "adamw")
    done = torchrun(options, script=script)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("default group destroyed on leaving: True") == 2, done.stdout
