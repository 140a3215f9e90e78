"""Small models, word-level tokenizers and JSONL files for the fine-tuning tests (no downloads)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer
from tokenizers.models import Unigram

import bigbird_pegasus
from bigbird_pegasus.text.tokenizer import SpecialTokens

REPO = Path(__file__).resolve().parent.parent
WORDS = [f"w{i}" for i in range(60)]
# Tiny, but long enough inputs (> (5 + 2r) * block_size = 144 tokens) use block-sparse attention.
TINY = dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=64, decoder_ffn_dim=64, block_size=16, num_random_blocks=2, max_position_embeddings=512)


def word_tokenizer_files(folder: Path, words: list[str]) -> int:
    """tokenizer.json of a word-level PEGASUS-layout vocabulary (every word one piece); returns its size."""
    special = SpecialTokens()
    vocab = [(token, 0.0) for token in special.reserved()] + [("<unk>", 0.0)] + [(f"\u2581{w}", -1.0) for w in words]
    folder.mkdir(parents=True, exist_ok=True)
    Tokenizer(Unigram(vocab, unk_id=len(special.reserved()), byte_fallback=False)).save(str(folder / "tokenizer.json"))
    return len(vocab)


def tiny_model(folder: Path, words: list[str] = WORDS, seed: int = 0, **config) -> Path:
    """A random-weight model with a word-level tokenizer, saved in `folder` (our save_pretrained)."""
    vocab_size = word_tokenizer_files(folder, words)
    torch.manual_seed(seed)
    model = bigbird_pegasus.BigBirdPegasusForConditionalGeneration(
        bigbird_pegasus.BigBirdPegasusConfig(vocab_size=vocab_size, **{**TINY, **config}))
    model.save_pretrained(folder)
    return folder


def write_jsonl(path: Path, records: list) -> Path:
    """One JSON value per line (dicts, or raw strings written as they are)."""
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return path


def random_examples(count: int, seed: int = 0, min_words: int = 150, max_words: int = 400,
                    summary_words: int = 6) -> list[dict]:
    """Documents of random words (varied lengths) with short random summaries."""
    rng = random.Random(seed)
    return [{"document": " ".join(rng.choices(WORDS, k=rng.randint(min_words, max_words))),
             "summary": " ".join(rng.choices(WORDS, k=summary_words))} for _ in range(count)]


def run_options(model: Path, train: Path, output_dir: Path, **options) -> dict:
    """train() options for a short, quiet run on the CPU."""
    defaults = dict(max_source_length=512, max_target_length=16, batch_size=2, lr=1e-3, save_every=0,
                    progress=False, device="cpu")
    return dict(model=str(model), train=str(train), output_dir=str(output_dir), **{**defaults, **options})


def command_line(options: dict) -> list[str]:
    """The `finetune` command-line arguments for a dict of TrainConfig fields."""
    argv = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif name == "progress" and value is False:
            argv.append("--no-progress")
        elif value is not None and value is not False:
            argv += [flag, str(value)]
    return argv


def subprocess_env(threads: int = 1) -> dict:
    """Environment for a finetune subprocess: this source tree, offline, a fixed number of threads, and Python's
    stacks printed should a process crash."""
    return dict(os.environ, PYTHONPATH=str(REPO / "src"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(threads),
                TOKENIZERS_PARALLELISM="false", PYTHONFAULTHANDLER="1")


def finetune_command(options: dict) -> list[str]:
    """`bigbird-pegasus finetune ...` through the package's command line."""
    return [sys.executable, "-m", "bigbird_pegasus", "finetune", *command_line(options)]


def run_finetune(options: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(finetune_command(options), capture_output=True, text=True, env=subprocess_env(),
                          timeout=timeout)


def equal_length_examples(count: int, words: int = 300, seed: int = 0) -> list[dict]:
    """Documents of exactly `words` words (one token each): batches then need no padding, so the block-sparse
    layout does not depend on how examples are grouped."""
    return random_examples(count, seed, min_words=words, max_words=words)


def final_weights(output_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(output_dir / "final" / "model.safetensors")


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=atol, msg=lambda m: f"{name}: {m}")


def read_log(output_dir: Path, event: str | None = None) -> list[dict]:
    records = [json.loads(line) for line in (output_dir / "log.jsonl").read_text().splitlines()]
    return [r for r in records if event is None or r["event"] == event]
