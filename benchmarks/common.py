"""Shared by the benchmark drivers: the random-weight checkpoint and running workers side by side."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


# A small config for smoke runs (`--tiny`): the package's "tiny" preset.
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))
from bigbird_pegasus.config import PRESETS  # noqa: E402

TINY_CONFIG = PRESETS["tiny"]
# Random weights that write varied text: linear layers of unit gain (the context matters, not only the last token),
# random signs in the decoder's final LayerNorm (the tied LM head stops repeating the input token) sized so that
# the logits spread over ~LOGIT_SCALE, and a random `final_logits_bias`.
LOGIT_SCALE = 3.0


def checkpoint_folder(tiny: bool = False) -> str:
    return os.path.join(HERE, "out", "tiny-random" if tiny else "large-random")


def ensure_checkpoint(folder: str | None = None, tiny: bool = False) -> str:
    """Random weights of the large config (`BigBirdPegasusConfig()` defaults, ~576M parameters), or of
    TINY_CONFIG, saved once by the reference so that both libraries load the very same file."""
    folder = folder or checkpoint_folder(tiny)
    if not os.path.isfile(os.path.join(folder, "config.json")):
        print(f"saving random {'tiny' if tiny else 'large'} weights with the reference into {folder} ...",
              file=sys.stderr)
        save_random_weights(folder, tiny)
    return folder


def save_random_weights(folder: str, tiny: bool) -> None:
    import torch
    import transformers
    from torch import nn

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = transformers.BigBirdPegasusConfig(**(TINY_CONFIG if tiny else {}))
    reference = transformers.BigBirdPegasusForConditionalGeneration(config)
    with torch.no_grad():
        for module in reference.modules():  # layers of unit gain, so that the context matters, not just the last token
            if isinstance(module, nn.Linear) and module is not reference.lm_head:
                module.weight.normal_(0, module.in_features ** -0.5)
        # logits = (normalised state * LayerNorm weight) . embedding rows of std init_std, over d_model terms
        norm_std = LOGIT_SCALE / (config.init_std * config.d_model ** 0.5)
        reference.model.decoder.layernorm_embedding.weight.normal_(0, norm_std)
        reference.final_logits_bias.normal_(0, 1)
    reference.save_pretrained(folder)


def first_to_go_when_memory_runs_out() -> None:
    """Ask Linux to kill this (measuring) process first if memory runs out: a run that needs more than the
    machine has then fails alone, and shows as an error, instead of taking another process down."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass  # not Linux, or not allowed: measure anyway


def peak_rss_mb() -> float:
    """The process's peak resident set so far (VmHWM), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


@contextlib.contextmanager
def decoding_steps_timed():
    """(start, end) perf_counter times of every decoding step (`CachedDecoder.decode_one_token`) run within the
    block, in a list."""
    from bigbird_pegasus.generation import decoding

    steps: list[tuple[float, float]] = []
    original = decoding.CachedDecoder.decode_one_token

    def timed(*arguments, **options):
        start = time.perf_counter()
        result = original(*arguments, **options)
        steps.append((start, time.perf_counter()))
        return result

    decoding.CachedDecoder.decode_one_token = timed
    try:
        yield steps
    finally:
        decoding.CachedDecoder.decode_one_token = original


# The other engines (the reference, CTranslate2) run as their users run them, with PyTorch's and glibc's allocation
# defaults. Their processes import this package (the config, above), whose import would otherwise apply the
# package's process-wide settings to them too (huge pages, freed memory kept: src/bigbird_pegasus/allocation.py):
# the reference's real job took 542 s with the defaults, 333-353 s with huge pages (every run until 2026-11-30) and
# 222 s with both, on a 2-core AMD EPYC Zen 3.
RIVAL_ALLOCATION = {"THP_MEM_ALLOC_ENABLE": "0", "BIGBIRD_PEGASUS_REUSE_FREED_MEMORY": "0"}


def child_environment(engine: str, *, rival_allocation: str = "defaults", **variables: str) -> dict[str, str]:
    """The environment of a benchmark's child process running `engine` (ours: "ours..."; another: the reference,
    CTranslate2): the package's source on PYTHONPATH, no network, `variables` on top; another engine with the
    allocation defaults, or with the package's settings where `rival_allocation` is "package" (to compare the
    code alone)."""
    python_path = os.pathsep.join([os.path.join(os.path.dirname(HERE), "src"), os.environ.get("PYTHONPATH", "")])
    environment = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=python_path, **variables)
    if not engine.startswith("ours") and rival_allocation == "defaults":
        return {**environment, **RIVAL_ALLOCATION}
    return environment


def run_worker(library: str, task: str, checkpoint: str, **options) -> dict:
    """One worker process; its JSON result, or {"error": ...} when it failed (e.g. killed for memory)."""
    command = [sys.executable, os.path.join(HERE, "worker.py"), "--library", library, "--task", task,
               "--checkpoint", checkpoint]
    for name, value in options.items():
        command += [f"--{name.replace('_', '-')}"] + ([str(value)] if value != "" else [])
    done = subprocess.run(command, capture_output=True, text=True,
                          env=child_environment(library, TOKENIZERS_PARALLELISM="false"))
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


def generate_run_label(run: dict) -> str:
    """A generate run's row name: "reference", "ours", or e.g. "ours, values" for ours with another
    cross-attention cache than the default ("ours, int8": with quantize_int8)."""
    mode = run.get("cross_attention_cache")
    return run["implementation"] if mode in (None, "keys_and_values") else f"{run['implementation']}, {mode}"


def save_json(path: str, payload) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
