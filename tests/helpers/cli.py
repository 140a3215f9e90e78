"""A tiny random-weight checkpoint with its tokenizer (the `tiny_checkpoint` fixture), and the command line run
on it as a real process.

The model has 512 positions, so the generated multi-page documents (`spm_fixtures.long_document`) are several
times longer than what it reads. Special tokens and `</s>` get a large negative output bias, so every summary is
ordinary text of exactly `SUMMARY_TOKENS` pieces (random weights: gibberish, but of a known length).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

import bigbird_pegasus
from bigbird_pegasus import BigBirdPegasusConfig, BigBirdPegasusForConditionalGeneration, PegasusTokenizer
from helpers.spm import train_pegasus_spm

MAX_POSITIONS = 512
SUMMARY_TOKENS = 12  # generated pieces per summary, start token excluded
TINY_CONFIG = dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                   decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, block_size=16,
                   num_random_blocks=1, max_position_embeddings=MAX_POSITIONS, dropout=0.0,
                   init_std=0.5, max_length=SUMMARY_TOKENS + 1, num_beams=1,
                   no_repeat_ngram_size=1)
SRC = str(Path(bigbird_pegasus.__file__).resolve().parents[1])


def build_tiny_checkpoint(folder: Path) -> Path:
    """config.json, model.safetensors and the tokenizer files of the tiny summarizer, in `folder`."""
    train_pegasus_spm(folder, vocab_size=1000, paragraphs=300)
    tokenizer = PegasusTokenizer.from_pretrained(folder)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    model = BigBirdPegasusForConditionalGeneration(BigBirdPegasusConfig(vocab_size=len(tokenizer), **TINY_CONFIG))
    with torch.no_grad():
        model.final_logits_bias[0, :tokenizer.unk_token_id + 1] = -1e4  # never special tokens nor </s>
    model.save_pretrained(folder)
    return folder


def run_cli(*args: str, stdin: bytes | None = None, cwd: Path | None = None, env: dict | None = None
            ) -> subprocess.CompletedProcess:
    """`python -m bigbird_pegasus ARGS` in a fresh process (offline, one thread, this checkout's sources)."""
    environment = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    completed = subprocess.run([sys.executable, "-m", "bigbird_pegasus", *args], input=stdin, cwd=cwd,
                               env=environment, capture_output=True, timeout=300)
    completed.stdout = completed.stdout.decode("utf-8")
    completed.stderr = completed.stderr.decode("utf-8")
    return completed
