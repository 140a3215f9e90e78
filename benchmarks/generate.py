"""Summarize one long document with beam search, ours against the reference (`transformers`) on the same weights.

Each run is a fresh Python process (loading, then `generate`), ours and the reference alternating, `--repeats`
times. Reported per run: load time, `quantize_int8`'s time (the int8 rows: once per process, before the first
document; in the end-to-end time), generate time, peak RSS of the whole process and peak RSS during `generate`
alone (quantize_int8 included), and whether the tokens equal the reference's. Prints a markdown table and writes
JSON to `--out`. Nothing is asserted: this measures.

    python benchmarks/generate.py                 # large config, 4096 tokens, beam 5, 64 new tokens
    python benchmarks/generate.py --tiny          # smoke run on a tiny config
    python benchmarks/generate.py --only ours --profile   # our time breakdown: encoder, cross K/V, steps
    python benchmarks/generate.py --cross-attention-cache keys_and_values values none   # ours in each mode
    python benchmarks/generate.py --new-tokens 256 --int8     # the real job; ours also with quantize_int8
    python benchmarks/generate.py --new-tokens 256 --int8 --int8-bf16-encoder   # and with the encoder in bf16
    python benchmarks/generate.py --only ours --docs 4 --new-tokens 256   # 4 documents in one generate call
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
EOS = 1
# The run the issue sets: a 4096-token document, beam 5, length penalty 0.8, exactly --new-tokens new tokens.
GENERATE_OPTIONS = dict(num_beams=5, length_penalty=0.8)
DOCUMENT_LENGTH = {"large": 4096, "tiny": 640}
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (checkpoint_folder, child_environment, first_to_go_when_memory_runs_out,  # noqa: E402
                    generate_run_label, peak_rss_mb, save_random_weights)  # (benchmarks/ is no package)


def main() -> None:
    args = parse_args()
    if args.child:
        run_child(args)
        return
    size = "tiny" if args.tiny else "large"
    workdir = Path(args.workdir or checkpoint_folder(args.tiny))
    if not (workdir / "model.safetensors").exists():
        print(f"saving random {size} weights with the reference into {workdir} ...", flush=True)
        subprocess.run([sys.executable, __file__, "--child", "save", "--workdir", str(workdir)]
                       + (["--tiny"] if args.tiny else []), check=True)
    ours = [("ours", mode) for mode in args.cross_attention_cache] + ([("ours", "int8")] if args.int8 else [])
    ours += [("ours", "int8, bf16 encoder")] if args.int8_bf16_encoder else []
    runs_per_repeat = {"both": ours + [("reference", None)], "ours": ours, "reference": [("reference", None)]}
    runs = []
    for repeat in range(args.repeats):
        for implementation, mode in runs_per_repeat[args.only]:
            result = run_in_subprocess(implementation, mode, workdir, args)
            result["repeat"] = repeat
            runs.append(result)
            print(f"{generate_run_label(result)} #{repeat}: load {result['load_s']:.1f} s, quantize "
                  f"{result.get('quantize_s', 0.0):.1f} s, generate {result['generate_s']:.1f} s, peak "
                  f"{result['peak_rss_gb']:.2f} GB", flush=True)
    report(runs, size, workdir, args)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", help="folder of the random weights (default benchmarks/out/{large,tiny}-random)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "generate.json"), help="JSON results")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each implementation, alternating")
    parser.add_argument("--tiny", action="store_true", help="a tiny config: a smoke run")
    parser.add_argument("--only", choices=("both", "ours", "reference"), default="both")
    parser.add_argument("--cross-attention-cache", nargs="+", default=["keys_and_values"],
                        choices=("keys_and_values", "values", "none"),
                        help="our generate's cross-attention cache; several: one run of ours in each, per repeat")
    parser.add_argument("--int8", action="store_true", help="one more run of ours per repeat, with quantize_int8")
    parser.add_argument("--int8-bf16-encoder", action="store_true",
                        help="one more run of ours per repeat, with quantize_int8(model, encoder_dtype=torch.bfloat16)")
    parser.add_argument("--encoder-dtype", choices=("bf16",), help=argparse.SUPPRESS)
    parser.add_argument("--new-tokens", type=int, default=64, help="new tokens (exactly: min = max)")
    parser.add_argument("--docs", type=int, default=1, help="documents generated together in one call")
    parser.add_argument("--profile", action="store_true", help="our time breakdown (encoder, cross K/V, steps)")
    parser.add_argument("--threads", type=int, help="torch threads in each run (default: torch's)")
    parser.add_argument("--reference-allocation", choices=("defaults", "package"), default="defaults",
                        help="the reference's process with PyTorch's and glibc's allocation defaults, as its users "
                             "run it (default), or with the settings importing this package makes (allocation.py)")
    parser.add_argument("--child", choices=("save", "ours", "reference"), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args()


def run_in_subprocess(implementation: str, mode: str | None, workdir: Path, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        result_file = Path(scratch) / "result.json"
        command = [sys.executable, __file__, "--child", implementation, "--workdir", str(workdir),
                   "--result", str(result_file)]
        command += ["--new-tokens", str(args.new_tokens), "--docs", str(args.docs)]
        if mode in ("int8", "int8, bf16 encoder"):
            command += ["--int8"] + (["--encoder-dtype", "bf16"] if mode != "int8" else [])
        elif mode:
            command += ["--cross-attention-cache", mode]
        command += ["--tiny"] if args.tiny else []
        command += ["--profile"] if args.profile and implementation == "ours" else []
        command += ["--threads", str(args.threads)] if args.threads else []
        subprocess.run(command, check=True,
                       env=child_environment(implementation, rival_allocation=args.reference_allocation))
        return json.loads(result_file.read_text())


# -- inside a child process -----------------------------------------------------------------------------

def run_child(args: argparse.Namespace) -> None:
    first_to_go_when_memory_runs_out()
    if args.threads:
        torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    if args.child == "save":
        save_random_weights(str(workdir), args.tiny)
        return
    model_class = imported_class(args.child)
    started = time.perf_counter()
    model = model_class.from_pretrained(workdir).eval()
    load_s = time.perf_counter() - started
    peak_after_load_mb = peak_rss_mb()
    reset_peak_rss()
    quantize_s = 0.0
    if args.int8:
        import bigbird_pegasus

        encoder_dtype = torch.bfloat16 if args.encoder_dtype == "bf16" else None
        started = time.perf_counter()
        bigbird_pegasus.quantize_int8(model, encoder_dtype=encoder_dtype)
        quantize_s = time.perf_counter() - started
    ids, mask = document(model.config.vocab_size, DOCUMENT_LENGTH["tiny" if args.tiny else "large"], docs=args.docs)
    options = dict(GENERATE_OPTIONS, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
    if args.child == "ours":
        options["cross_attention_cache"] = args.cross_attention_cache[0]
    started = time.perf_counter()
    with torch.no_grad():
        tokens = model.generate(ids, attention_mask=mask, **options)
    generate_s = time.perf_counter() - started
    # the label of the run ("ours, int8": quantize_int8 with the default cache)
    label = options.get("cross_attention_cache")
    if args.int8:
        label = "int8, bf16 encoder" if args.encoder_dtype else "int8"
    result = dict(implementation=args.child, cross_attention_cache=label,
                  load_s=load_s, quantize_s=quantize_s, generate_s=generate_s,
                  docs=args.docs, docs_per_s=args.docs / generate_s,
                  peak_rss_gb=max(peak_after_load_mb, peak_rss_mb()) / 1024,
                  generate_peak_rss_gb=peak_rss_mb() / 1024, tokens=tokens.tolist(), threads=torch.get_num_threads())
    if args.profile:
        result["profile"] = profile_ours(model, ids, mask, options)
    Path(args.result).write_text(json.dumps(result))


def imported_class(implementation: str):
    """The model class of `implementation`, imported outside the timed load."""
    if implementation == "ours":
        import bigbird_pegasus

        return bigbird_pegasus.BigBirdPegasusForConditionalGeneration
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers.BigBirdPegasusForConditionalGeneration


def document(vocab_size: int, length: int, *, docs: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """`docs` random documents (docs, length) ending in EOS, and their all-ones mask."""
    ids = torch.randint(3, vocab_size, (docs, length), generator=torch.Generator().manual_seed(0))
    ids[:, -1] = EOS
    return ids, torch.ones_like(ids)


def end_to_end_s(run: dict) -> float:
    """Loading, quantize_int8 where it ran (once per process: the int8 rows pay it before their first document),
    and generate."""
    return run["load_s"] + run.get("quantize_s", 0.0) + run["generate_s"]


def reset_peak_rss() -> None:
    """Start VmHWM again from the current RSS (Linux), so that the next reading covers `generate` alone."""
    Path("/proc/self/clear_refs").write_text("5")


def profile_ours(model, ids: torch.Tensor, mask: torch.Tensor, options: dict) -> dict:
    """A second, instrumented generate: encoder, prefill (cross K/V included), each decode step, and the rest
    (beam bookkeeping and logits processing); plus the cross K/V projections timed alone."""
    from bigbird_pegasus.generation import decoding as generation

    timings: dict[str, list[float]] = {"encoder": [], "prefill": [], "step": []}

    def timed(function, name):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            out = function(*args, **kwargs)
            timings[name].append(time.perf_counter() - started)
            return out
        return wrapper

    encoder = model.get_encoder()
    encoder.forward = timed(encoder.forward, "encoder")
    prefill, step = generation.CachedDecoder.prefill, generation.CachedDecoder.decode_one_token
    generation.CachedDecoder.prefill = timed(prefill, "prefill")
    generation.CachedDecoder.decode_one_token = timed(step, "step")
    started = time.perf_counter()
    with torch.no_grad():
        model.generate(ids, attention_mask=mask, **options)
        total = time.perf_counter() - started
        states = model.get_encoder()(ids, attention_mask=mask).last_hidden_state
        started = time.perf_counter()
        for layer in model.get_decoder().layers:
            layer.encoder_attn.k_proj(states), layer.encoder_attn.v_proj(states)
        cross_kv = time.perf_counter() - started
    generation.CachedDecoder.prefill, generation.CachedDecoder.decode_one_token = prefill, step
    steps = timings["step"]
    return dict(total_s=total, encoder_s=timings["encoder"][0], prefill_s=timings["prefill"][0],
                cross_kv_alone_s=cross_kv, steps=len(steps), steps_s=sum(steps),
                step_mean_s=sum(steps) / len(steps), step_min_s=min(steps), step_max_s=max(steps),
                rest_s=total - timings["encoder"][0] - timings["prefill"][0] - sum(steps))


# -- the report -----------------------------------------------------------------------------------------

def report(runs: list[dict], size: str, workdir: Path, args: argparse.Namespace) -> None:
    by_label: dict[str, list[dict]] = {}
    for run in runs:
        by_label.setdefault(generate_run_label(run), []).append(run)
    reference_tokens = by_label.get("reference", [{}])[0].get("tokens")

    def best(name: str, key: str) -> float:
        return min(run[key] for run in by_label[name])

    identical = None if reference_tokens is None else all(run["tokens"] == reference_tokens for run in runs)
    rows = [("| implementation | load s | quantize s | generate s | docs/s | end to end s | peak RSS GB "
             "| generate peak RSS GB | tokens |"), "|---|---|---|---|---|---|---|---|---|"]
    for name, its_runs in by_label.items():
        same = ("reference" if name == "reference" else
                "n/a" if reference_tokens is None else
                "identical" if all(run["tokens"] == reference_tokens for run in its_runs) else "DIFFERENT")
        end_to_end = min(end_to_end_s(run) for run in its_runs)
        rows.append(f"| {name} | {best(name, 'load_s'):.1f} | {min(r.get('quantize_s', 0.0) for r in its_runs):.1f} "
                    f"| {best(name, 'generate_s'):.1f} "
                    f"| {args.docs / best(name, 'generate_s'):.4f} | {end_to_end:.1f} "
                    f"| {best(name, 'peak_rss_gb'):.2f} | {best(name, 'generate_peak_rss_gb'):.2f} | {same} |")
    ratios = {}
    if "reference" in by_label:
        rows.append("")
        for name in [name for name in by_label if name != "reference"]:
            ratios[name] = {key: best("reference", key) / best(name, key)
                            for key in ("generate_s", "peak_rss_gb", "generate_peak_rss_gb")}
            ratios[name]["end_to_end_s"] = (min(end_to_end_s(r) for r in by_label["reference"])
                                            / min(end_to_end_s(r) for r in by_label[name]))
            rows.append("reference / %s (best of %d): generate %.2fx, end to end %.2fx, peak RSS %.2fx, "
                        "generate peak RSS %.2fx" % (name, args.repeats, ratios[name]["generate_s"],
                                                     ratios[name]["end_to_end_s"], ratios[name]["peak_rss_gb"],
                                                     ratios[name]["generate_peak_rss_gb"]))
    print(f"\n{size} config, {args.docs} x {DOCUMENT_LENGTH[size]}-token document, {GENERATE_OPTIONS}, "
          f"{args.new_tokens} new tokens, "
          f"{runs[0]['threads']} threads\n")
    print("\n".join(rows))
    for run in runs:
        if "profile" in run:
            print("\nour time breakdown (s):", json.dumps({k: round(v, 3) for k, v in run["profile"].items()}))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(size=size, workdir=str(workdir), document_length=DOCUMENT_LENGTH[size],
                                   options=GENERATE_OPTIONS, new_tokens=args.new_tokens, docs=args.docs, ratios=ratios, identical_tokens=identical,
                                   runs=runs), indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
