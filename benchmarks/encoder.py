"""Encoder forward time and peak memory, the reference vs ours, on the same random large-config weights.

    python benchmarks/encoder.py --lengths 4096 --rounds 3

Each measurement is a fresh process (one warm-up call, then `--repeats` timed calls); the libraries
alternate. Prints a markdown table of medians and the speed-up; `--tiny` smoke-tests on a small model.
"""

from __future__ import annotations

import argparse

from common import DEFAULT_CHECKPOINT, alternate, ensure_checkpoint, max_peak_mb, median_seconds, save_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096])
    parser.add_argument("--rounds", type=int, default=3, help="processes per library and length")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per process, after a warm-up")
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    parser.add_argument("--tiny", action="store_true", help="a small model, to check that the script runs")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args()

    checkpoint = ensure_checkpoint(args.checkpoint, tiny=args.tiny)
    rows, raw = [], {}
    for length in args.lengths:
        results = alternate(args.rounds, "encoder", checkpoint, length=length, repeats=args.repeats)
        raw[length] = results
        theirs, ours = median_seconds(results["reference"]), median_seconds(results["ours"])
        speedup = f"{theirs / ours:.2f}x" if theirs and ours else "n/a"
        rows.append(f"| {length} | {theirs or float('nan'):.2f} | {ours or float('nan'):.2f} | {speedup} "
                    f"| {max_peak_mb(results['reference']) or float('nan'):.0f} "
                    f"| {max_peak_mb(results['ours']) or float('nan'):.0f} |")
    print("| tokens | reference s | ours s | speed-up | reference peak MiB | ours peak MiB |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    if args.out:
        save_json(args.out, raw)


if __name__ == "__main__":
    main()
