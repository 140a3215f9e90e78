"""Every speed and memory figure of the README, in one command: ours and the reference on the same weights.

    python benchmarks/run.py                 # the full run (~1.5 hours on a 2-core machine)
    python benchmarks/run.py --tiny          # a smoke run of every step on a small model (report in benchmarks/out/)

Runs, each measurement in fresh processes with the libraries alternating (see each script):
  1. encoder.py       encoder forward at 1024, 2048 and 4096 tokens, both libraries;
  2. encoder.py       ours alone at 8192 and 16384 tokens (position table extended for the run);
  3. encoder.py       ours at 4096 with bf16, int8 dynamic quantization and torch.compile;
  4. generate.py      one 4096-token document, beam 5, length penalty 0.8, 64 new tokens, both libraries
                      (ours with each of its three cross-attention caches);
  5. train_step.py    one training step (4096 in, 256 out, batch 1, dropout on), with and without gradient
                      checkpointing, both libraries; and 2-process CPU scaling of `finetune`;
  6. decode.py        time per decoding step, ours (fp32, int8) against CTranslate2 (fp32, int8), byte floor;
  7. generate.py      the real job: as 4. with 256 new tokens, the reference, ours and ours with quantize_int8
                      (also with the encoder in bf16).
Then writes benchmarks/results.md (the tables) and benchmarks/scaling.png (time and peak memory against
input length). Raw JSON goes to benchmarks/out/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from datetime import date

from common import HERE, generate_run_label, max_peak_mb, median_seconds
from decode import report_lines as decode_report_lines

OUT = os.path.join(HERE, "out")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small model and lengths: check that every step runs")
    parser.add_argument("--rounds", type=int, default=2, help="processes per library and measurement")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=("encoder", "long", "variants", "generate", "train", "decode"))
    args = parser.parse_args()

    lengths = [256, 512, 1024] if args.tiny else [1024, 2048, 4096]
    long_lengths = [2048, 4096] if args.tiny else [8192, 16384]
    variant_length = lengths[-1]
    common = ["--tiny"] if args.tiny else []
    steps = {
        "encoder": ["encoder.py", "--lengths", *map(str, lengths), "--rounds", str(args.rounds), "--repeats", "2"],
        "long": ["encoder.py", "--libraries", "ours", "--lengths", *map(str, long_lengths), "--rounds", "1"],
        "bf16": ["encoder.py", "--libraries", "ours", "--dtype", "bfloat16", "--lengths", str(variant_length),
                 "--rounds", "1"],
        "int8": ["encoder.py", "--libraries", "ours", "--quantize", "int8", "--lengths", str(variant_length),
                 "--rounds", "1"],
        "compile": ["encoder.py", "--libraries", "ours", "--compile", "--lengths", str(variant_length),
                    "--rounds", "1"],
        "generate": ["generate.py", "--repeats", str(args.rounds),
                     "--cross-attention-cache", "keys_and_values", "values", "none"],
        "train": ["train_step.py", "--rounds", "1", "--repeats", "1"],
        "decode": ["decode.py", "--rounds", str(args.rounds), "--profile"],
        "generate-256": ["generate.py", "--repeats", "1", "--new-tokens", "256", "--int8", "--int8-bf16-encoder"],
    }
    groups = {"encoder": ["encoder"], "long": ["long"], "variants": ["bf16", "int8", "compile"],
              "generate": ["generate"], "train": ["train"], "decode": ["decode", "generate-256"]}
    skipped = {step for group in args.skip for step in groups[group]}
    results = {}
    for name, command in steps.items():
        path = os.path.join(OUT, f"{'tiny-' if args.tiny else ''}{name}.json")
        if name not in skipped:
            print(f"== {name}: {' '.join(command)}", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, os.path.join(HERE, command[0]), *command[1:], *common, "--out", path],
                           check=True)
        if os.path.exists(path):
            with open(path) as f:
                results[name] = json.load(f)
    write_report(results, args.tiny)


# -- the report -------------------------------------------------------------------------------------------

def write_report(results: dict, tiny: bool) -> None:
    lines = [f"# Benchmarks{' (tiny smoke run: not figures)' if tiny else ''}", "",
             f"Measured {date.today()} with `python benchmarks/run.py` on {machine()}; fp32 unless stated; "
             "each figure is the median over fresh processes, the libraries alternating; peak memory is the "
             "process's peak RSS (VmHWM), model weights included.", ""]
    if "encoder" in results:
        lines += encoder_table(results["encoder"]["results"], results.get("long", {}).get("results", {}))
    if any(name in results for name in ("bf16", "int8", "compile")):
        lines += variants_table(results)
    if "generate" in results:
        lines += generate_table(results["generate"])
    if "train" in results:
        lines += train_tables(results["train"])
    if "decode" in results:
        lines += ["## Time per decoding step: ours against CTranslate2 (`decode.py`)", "",
                  *decode_report_lines(results["decode"]), ""]
    if "generate-256" in results:
        lines += generate_table(results["generate-256"])
    folder, prefix = (OUT, "tiny-") if tiny else (HERE, "")  # a smoke run leaves the published figures alone
    with open(os.path.join(folder, f"{prefix}results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if "encoder" in results:
        plot(results["encoder"]["results"], results.get("long", {}).get("results", {}),
             os.path.join(folder, f"{prefix}scaling.png"))
    print("\n".join(lines))


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"


def encoder_table(both: dict, ours_alone: dict) -> list[str]:
    rows = ["## Encoder forward (batch 1)", "",
            "| tokens | reference s | ours s | speed-up | reference peak MiB | ours peak MiB | memory ratio |",
            "|---|---|---|---|---|---|---|"]
    for length, runs in sorted({**both, **ours_alone}.items(), key=lambda item: int(item[0])):
        theirs, ours = median_seconds(runs.get("reference", [])), median_seconds(runs.get("ours", []))
        their_peak, our_peak = max_peak_mb(runs.get("reference", [])), max_peak_mb(runs.get("ours", []))
        rows.append(f"| {length} | {fmt(theirs)} | {fmt(ours)} | {ratio(theirs, ours)} | {fmt(their_peak, 0)} "
                    f"| {fmt(our_peak, 0)} | {ratio(their_peak, our_peak)} |")
    return rows + ["", "Past 4096 tokens the reference cannot run (its position table ends there); ours runs "
                   "with the table extended, to show how time and memory grow.", ""]


def variants_table(results: dict) -> list[str]:
    baseline = results.get("encoder", {}).get("results", {})
    rows = ["## Reduced precision and torch.compile (encoder, ours)", "",
            "| variant | tokens | seconds | vs our fp32 | vs reference fp32 | peak MiB | first call s |",
            "|---|---|---|---|---|---|---|"]
    for name in ("bf16", "int8", "compile"):
        if name not in results:
            continue
        for length, runs in results[name]["results"].items():
            ours = median_seconds(runs["ours"])
            fp32 = median_seconds(baseline.get(length, {}).get("ours", []))
            theirs = median_seconds(baseline.get(length, {}).get("reference", []))
            first = runs["ours"][0].get("first_call_seconds") if runs["ours"] else None
            rows.append(f"| {name} | {length} | {fmt(ours)} | {ratio(fp32, ours)} | "
                        f"{ratio(theirs, ours)} | {fmt(max_peak_mb(runs['ours']), 0)} | {fmt(first)} |")
    return rows + [""]


def generate_table(result: dict) -> list[str]:
    rows = [f"## generate: {result.get('docs', 1)} x {result['document_length']}-token document, {result['options']}, "
            f"{result.get('new_tokens', 64)} new tokens", "",
            "| library | load s | generate s | end to end s | peak RSS GiB | tokens |", "|---|---|---|---|---|---|"]
    runs_by_label: dict[str, list[dict]] = {}
    for run in result["runs"]:
        runs_by_label.setdefault(generate_run_label(run), []).append(run)
    reference_tokens = runs_by_label.get("reference", [{}])[0].get("tokens")
    figures = {}
    for name, runs in sorted(runs_by_label.items(), key=lambda item: item[0] != "reference"):
        load, generate = (statistics.median(run[key] for run in runs) for key in ("load_s", "generate_s"))
        figures[name] = (generate, load + generate, max(run["peak_rss_gb"] for run in runs))
        same = "reference" if name == "reference" else "n/a" if reference_tokens is None else (
            "identical" if all(run["tokens"] == reference_tokens for run in runs) else "DIFFERENT")
        rows.append(f"| {name} | {load:.1f} | {generate:.1f} | {load + generate:.1f} | {figures[name][2]:.2f} "
                    f"| {same} |")
    if "ours, int8" in figures:
        rows += ["", "`ours, int8`: ours after `quantize_int8(model)` (int8 linear layers, cross-attention cache in bf16)."]
    if "ours, int8, bf16 encoder" in figures:
        rows += ["", "`ours, int8, bf16 encoder`: after `quantize_int8(model, encoder_dtype=torch.bfloat16)` (the "
                     "same, the encoder in bf16)."]
    if any(name in ("ours, values", "ours, none") for name in figures):
        rows += ["", "`ours, values` and `ours, none`: ours with `generate(..., cross_attention_cache=\"values\")` and "
                     "`\"none\"`, which keep less per document for cross-attention (README, \"Memory while generating\")."]
    if "reference" in figures:
        generate, end_to_end, peak = figures.pop("reference")
        rows.append("")
        for name, (ours_generate, ours_end_to_end, ours_peak) in figures.items():
            rows.append(f"reference / {name}: generate {generate / ours_generate:.2f}x faster, end to end "
                        f"{end_to_end / ours_end_to_end:.2f}x, peak memory {peak / ours_peak:.2f}x lower.  ")
    return rows + [""]


def train_tables(result: dict) -> list[str]:
    rows = ["## One training step (batch 1, 4096 in, 256 out, dropout on, forward + backward + AdamW)", "",
            "| gradient checkpointing | reference s | ours s | speed-up | reference peak MiB | ours peak MiB |",
            "|---|---|---|---|---|---|"]
    for setting, runs in sorted(result["step"].items()):
        theirs, ours = median_seconds(runs.get("reference", [])), median_seconds(runs.get("ours", []))
        failed = any("error" in r for r in runs.get("reference", []))
        their_cell = fmt(theirs) if theirs else ("killed (out of memory)" if failed else "-")
        rows.append(f"| {'on' if setting == '1' else 'off'} | {their_cell} | {fmt(ours)} | {ratio(theirs, ours)} | "
                    f"{fmt(max_peak_mb(runs.get('reference', [])), 0)} | {fmt(max_peak_mb(runs.get('ours', [])), 0)} |")
    scaling = result.get("scaling", {})
    if "efficiency" in scaling:
        one, two = scaling["1"]["examples_per_second"], scaling["2"]["examples_per_second"]
        rows += ["", f"2-process CPU scaling of `finetune` (gloo, one thread and batch 1 per process, small model): "
                     f"{one:.2f} examples/s with 1 process, {two:.2f} with 2: efficiency {scaling['efficiency']:.0%}."]
    return rows + [""]


def plot(both: dict, ours_alone: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(10, 4))
    merged = {int(length): runs for length, runs in {**both, **ours_alone}.items()}
    for library, style in (("reference", "o--"), ("ours", "s-")):
        points = [(length, median_seconds(runs[library]), max_peak_mb(runs[library]))
                  for length, runs in sorted(merged.items()) if runs.get(library) and median_seconds(runs[library])]
        if points:
            lengths, seconds, peaks = zip(*points)
            time_axis.plot(lengths, seconds, style, label=library)
            memory_axis.plot(lengths, [p / 1024 for p in peaks], style, label=library)
    for axis, label in ((time_axis, "encoder forward, seconds"), (memory_axis, "peak RSS, GiB")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("input tokens")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def ratio(numerator: float | None, denominator: float | None) -> str:
    return f"{numerator / denominator:.2f}x" if numerator and denominator else "-"


if __name__ == "__main__":
    main()
