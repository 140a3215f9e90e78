"""Encoder forward time and peak memory, the reference vs ours, on the same random large-config weights.

    python benchmarks/encoder.py --lengths 1024 2048 4096 --rounds 3
    python benchmarks/encoder.py --libraries ours --lengths 8192 16384        # ours alone, past 4096 positions
    python benchmarks/encoder.py --libraries ours --dtype bfloat16             # variants of ours: bf16, int8,
    python benchmarks/encoder.py --libraries ours --quantize int8              # torch.compile
    python benchmarks/encoder.py --libraries ours --compile

Each measurement is a fresh process (one warm-up call, then `--repeats` timed calls); the libraries
alternate. Prints a markdown table of medians (and the speed-up when both ran); `--tiny` smoke-tests on a
small model.
"""

from __future__ import annotations

import argparse

from common import alternate, ensure_checkpoint, max_peak_mb, median_seconds, save_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096])
    parser.add_argument("--libraries", nargs="+", choices=("reference", "ours"), default=["reference", "ours"])
    parser.add_argument("--rounds", type=int, default=3, help="processes per library and length")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per process, after a warm-up")
    parser.add_argument("--dtype", default="float32", help="ours only unless float32")
    parser.add_argument("--quantize", choices=("int8",), help="ours only")
    parser.add_argument("--compile", action="store_true", help="ours only")
    parser.add_argument("--checkpoint", default=None, help="default: benchmarks/out/large-random")
    parser.add_argument("--tiny", action="store_true", help="a small model, to check that the script runs")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args()

    checkpoint = ensure_checkpoint(args.checkpoint, tiny=args.tiny)
    variant = {name: value for name, value in (("dtype", args.dtype), ("quantize", args.quantize),
                                                ("compile", args.compile)) if value not in (None, False, "float32")}
    if variant and "reference" in args.libraries:
        parser.error(f"{variant} applies to ours only: pass --libraries ours")
    rows, raw = [], {}
    for length in args.lengths:
        results = alternate(args.rounds, "encoder", checkpoint, libraries=args.libraries, length=length,
                            repeats=args.repeats, **{k: v for k, v in variant.items() if k != "compile"},
                            **({"compile": ""} if args.compile else {}))
        raw[length] = results
        seconds = {library: median_seconds(results[library]) for library in args.libraries}
        peaks = {library: max_peak_mb(results[library]) for library in args.libraries}
        speedup = (f"{seconds['reference'] / seconds['ours']:.2f}x"
                   if seconds.get("reference") and seconds.get("ours") else "")
        cells = [f"{seconds[lib]:.2f}" if seconds[lib] else "failed" for lib in args.libraries]
        cells += [f"{peaks[lib]:.0f}" if peaks[lib] else "-" for lib in args.libraries]
        rows.append(f"| {length} | " + " | ".join(cells) + f" | {speedup} |")
    name = " ".join(f"{k}={v}" for k, v in variant.items())
    print(f"encoder forward, batch 1{', ours: ' + name if name else ''}")
    print("| tokens | " + " | ".join(f"{lib} s" for lib in args.libraries) + " | "
          + " | ".join(f"{lib} peak MiB" for lib in args.libraries) + " | speed-up |")
    print("|" + "---|" * (2 + 2 * len(args.libraries)))
    print("\n".join(rows))
    if args.out:
        save_json(args.out, {"variant": variant, "results": raw})


if __name__ == "__main__":
    main()
