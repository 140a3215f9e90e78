"""Loading a checkpoint in another dtype drops each stored tensor's memory-mapped pages from the process as soon as
its copy is made, so the load does not peak at both copies; the page cache keeps them."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import bigbird_pegasus
from helpers.pages import cached_fraction_of
from helpers.reference import CONFIG_A

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="memory maps read through /proc (Linux)")

# In a fresh process: the growth of the peak resident set over loading the checkpoint in bf16, in bytes.
PEAK_GROWTH_OF_A_BF16_LOAD = """
import sys
from pathlib import Path
import torch
import bigbird_pegasus

def status(key):
    line = next(line for line in open("/proc/self/status") if line.startswith(key + ":"))
    return int(line.split()[1]) * 1024

before = status("VmRSS")
Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from here
model = bigbird_pegasus.BigBirdPegasusForConditionalGeneration.from_pretrained(sys.argv[1], dtype=torch.bfloat16)
assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
print(status("VmHWM") - before)
"""


def test_a_bf16_load_of_an_fp32_checkpoint_does_not_peak_at_both_copies(tmp_path):
    torch.manual_seed(0)
    config = bigbird_pegasus.BigBirdPegasusConfig(**dict(CONFIG_A, vocab_size=8000, d_model=512, encoder_ffn_dim=2048,
                                                         decoder_ffn_dim=2048, encoder_attention_heads=8,
                                                         decoder_attention_heads=8))
    bigbird_pegasus.BigBirdPegasusForConditionalGeneration(config).save_pretrained(tmp_path)
    file = (tmp_path / "model.safetensors").resolve()
    fp32_bytes = file.stat().st_size                            # ~90 MB; the bf16 copy half of it

    done = subprocess.run([sys.executable, "-c", PEAK_GROWTH_OF_A_BF16_LOAD, str(tmp_path)], capture_output=True,
                          text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) < fp32_bytes            # 0.74x here; holding both copies: 1.56x
    assert cached_fraction_of(file) >= 0.9                       # the next load reads no disk
