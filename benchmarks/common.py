"""Shared by the benchmark drivers: the random-weight checkpoint and running workers side by side."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CHECKPOINT = os.path.join(HERE, "out", "large-random")


def ensure_checkpoint(folder: str = DEFAULT_CHECKPOINT, tiny: bool = False) -> str:
    """The large config (`BigBirdPegasusConfig()` defaults, ~576M parameters) with random weights, saved
    once by the reference so that both libraries load the very same file. `tiny` makes a small one."""
    if tiny:
        folder = folder + "-tiny"
    if os.path.isfile(os.path.join(folder, "config.json")):
        return folder
    import torch
    import transformers

    torch.manual_seed(0)
    sizes = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
                 encoder_attention_heads=4, decoder_attention_heads=4, vocab_size=1000) if tiny else {}
    config = transformers.BigBirdPegasusConfig(**sizes)
    print(f"creating a random-weight checkpoint in {folder} ...", file=sys.stderr)
    transformers.BigBirdPegasusForConditionalGeneration(config).save_pretrained(folder)
    return folder


def run_worker(library: str, task: str, checkpoint: str, **options) -> dict:
    """One worker process; its JSON result, or {"error": ...} when it failed (e.g. killed for memory)."""
    command = [sys.executable, os.path.join(HERE, "worker.py"), "--library", library, "--task", task,
               "--checkpoint", checkpoint]
    for name, value in options.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"library": library, "error": f"exit {done.returncode}: {done.stderr.strip()[-500:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def alternate(rounds: int, task: str, checkpoint: str, libraries=("reference", "ours"), **options) -> dict:
    """`rounds` processes per library, alternating between the libraries, -> {library: [results]}."""
    results: dict[str, list[dict]] = {library: [] for library in libraries}
    for round_index in range(rounds):
        for library in libraries:
            result = run_worker(library, task, checkpoint, **options)
            print(f"  round {round_index + 1}/{rounds} {library}: "
                  f"{result.get('seconds', result.get('error'))}", file=sys.stderr)
            results[library].append(result)
    return results


def median_seconds(results: list[dict]) -> float | None:
    times = [t for r in results if "seconds" in r for t in r["seconds"]]
    return statistics.median(times) if times else None


def max_peak_mb(results: list[dict]) -> float | None:
    peaks = [r["peak_rss_mb"] for r in results if "peak_rss_mb" in r]
    return max(peaks) if peaks else None


def save_json(path: str, payload) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
