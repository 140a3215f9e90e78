"""Checkpoint loading, the reference's `from_pretrained` against ours: time and peak memory.

    python benchmarks/load_checkpoint.py [--workdir DIR] [--repeats 3] [--dtype float32] [--tiny]

Creates once (in --workdir) a checkpoint of the large config (`BigBirdPegasusConfig()`: d_model 1024,
16 + 16 layers, vocab 96103, ~576M parameters) with random weights, saved by the reference. Then loads
it with each library in a fresh process, alternating, --repeats times, and prints a markdown table of
medians. Every process also reads every weight once after loading ("load + touch", a sum per tensor),
so that a loader that maps the file lazily pays for reading it too. The page cache is warm after the
first run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from common import child_environment, peak_rss_mb

HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARIES = ("reference", "ours")
TINY = dict(vocab_size=1000, d_model=64, encoder_layers=2, decoder_layers=2, encoder_ffn_dim=128,
            decoder_ffn_dim=128, encoder_attention_heads=4, decoder_attention_heads=4)
# (label, result key, unit, how the ratio reads): reference / ours, so that > 1 means ours is better.
METRICS = (
    ("import", "import_s", "s"),
    ("from_pretrained", "load_s", "s"),
    ("load + touch every weight", "load_touch_s", "s"),
    ("peak RSS after from_pretrained", "peak_load_mib", "MiB"),
    ("peak RSS after touching", "peak_touch_mib", "MiB"),
    ("RSS added by loading (peak - after import)", "added_mib", "MiB"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None, help="checkpoint folder (default benchmarks/out/large-random, "
                                                        "or benchmarks/out/tiny-random with --tiny)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--tiny", action="store_true", help="a tiny config, for a smoke run")
    parser.add_argument("--worker", choices=LIBRARIES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    workdir = args.workdir or os.path.join(HERE, "out", "tiny-random" if args.tiny else "large-random")
    if args.worker:
        print(json.dumps(measure_loading(args.worker, workdir, args.dtype)))
        return
    ensure_checkpoint(workdir, args.tiny)
    results = {library: [] for library in LIBRARIES}
    for round_index in range(args.repeats):
        order = LIBRARIES if round_index % 2 == 0 else LIBRARIES[::-1]
        for library in order:
            results[library].append(run_worker(library, workdir, args.dtype))
            print(f"round {round_index + 1}: {library}: {results[library][-1]}", file=sys.stderr)
    checksums = {r["checksum"] for runs in results.values() for r in runs}
    if len(checksums) != 1:
        raise SystemExit(f"the libraries loaded different weights: checksums {checksums}")
    print(table(results, workdir, args))


def ensure_checkpoint(folder: str, tiny: bool) -> None:
    """Save a random-weight checkpoint with the reference, unless the folder already holds one."""
    if os.path.isfile(os.path.join(folder, "config.json")):
        return
    print(f"creating a random-weight checkpoint in {folder} ...", file=sys.stderr)
    script = ("import sys, torch, transformers; torch.manual_seed(0); "
              f"config = transformers.BigBirdPegasusConfig(**{TINY if tiny else {}!r}); "
              "transformers.BigBirdPegasusForConditionalGeneration(config).save_pretrained(sys.argv[1])")
    subprocess.run([sys.executable, "-c", script, folder], check=True)


def run_worker(library: str, workdir: str, dtype: str) -> dict:
    """One load in a fresh process -> its measurements."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", library, "--workdir", workdir, "--dtype", dtype]
    done = subprocess.run(command, capture_output=True, text=True, env=child_environment(library))
    if done.returncode != 0:
        raise SystemExit(f"{library} worker failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_loading(library: str, workdir: str, dtype_name: str) -> dict:
    """Run in the worker process: import, from_pretrained, then read every weight once."""
    start = time.perf_counter()
    import torch

    if library == "ours":
        import bigbird_pegasus as lib
    else:
        import transformers as lib
        lib.logging.set_verbosity_error()
    model_class = lib.BigBirdPegasusForConditionalGeneration
    imported = time.perf_counter()
    rss_after_import = peak_rss_mb()
    model = model_class.from_pretrained(workdir, dtype=getattr(torch, dtype_name))
    loaded = time.perf_counter()
    peak_load = peak_rss_mb()
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            tensor.sum()  # reads every page of a lazily mapped file
    touched = time.perf_counter()
    return {"import_s": imported - start, "load_s": loaded - imported, "load_touch_s": touched - imported,
            "peak_load_mib": peak_load, "peak_touch_mib": peak_rss_mb(),
            "added_mib": peak_rss_mb() - rss_after_import, "checksum": checksum(model),
            "parameters": sum(p.numel() for p in model.parameters()),
            "dtype": str(next(model.parameters()).dtype)}


def checksum(model) -> float:
    """A sum over every 997th element of every weight: equal when both libraries loaded the same values."""
    import torch

    with torch.no_grad():
        tensors = list(model.parameters()) + list(model.buffers())
        return round(sum(t.reshape(-1)[::997].double().sum().item() for t in tensors), 6)


def table(results: dict[str, list[dict]], workdir: str, args) -> str:
    """Markdown: the median of each metric per library, and reference / ours."""
    first = results["ours"][0]
    size = sum(os.path.getsize(os.path.join(workdir, f)) for f in os.listdir(workdir) if f.endswith(".safetensors"))
    lines = [f"Checkpoint: {workdir} ({first['parameters'] / 1e6:.0f}M parameters, {size / 2**20:.0f} MiB of "
             f"safetensors), loaded as {args.dtype}; median of {args.repeats} fresh processes per library, "
             f"alternating; {os.cpu_count()} CPUs.",
             "",
             "| metric | reference | ours | reference / ours |",
             "|---|---:|---:|---:|"]
    for label, key, unit in METRICS:
        reference = statistics.median(r[key] for r in results["reference"])
        ours = statistics.median(r[key] for r in results["ours"])
        precision = 2 if unit == "s" else 0
        ratio = f"{reference / ours:.2f}x" if ours > 0 else "n/a"
        lines.append(f"| {label} | {reference:.{precision}f} {unit} | {ours:.{precision}f} {unit} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
