"""Time per decoding step: ours (fp32 and int8) against CTranslate2 (fp32 and int8) on the same decoder.

    python benchmarks/decode.py                      # large config, 4096-token source, beam 5, 3 rounds
    python benchmarks/decode.py --tiny               # smoke run on the tiny config
    python benchmarks/decode.py --engines ours ours-int8 --profile      # ours alone, with a per-op profile
    python benchmarks/decode.py --engines ours-int8-weights ours-bf16-cache ours-bf16   # quantize_int8's parts; bf16
    python benchmarks/decode.py --docs 4             # 4 documents decoded together
    python benchmarks/decode.py --engines ours ours-kernels   # our step against its streaming kernels alone

CTranslate2 runs Pegasus, not BigBird-Pegasus (it has no block-sparse encoder), so the decoder of the random
checkpoint (`benchmarks/out/large-random`, saved by `transformers`) is copied into a
`transformers.PegasusForConditionalGeneration` of the same decoder shape (a 1-layer encoder: its time cancels),
saved, and converted with CTranslate2's converter in fp32 and with int8 quantization.

`ours-kernels` reads the bytes of our fp32 step through the package's streaming kernels alone: the few-row product
over every weight a step reads (the decoder's but its cross-attention key/value projections, which run once per
document, and the LM head) for the step's rows, and the cross-attention kernel over keys/values of the documents'
shape. Its process alternates them with our real steps, timed one by one, 4 x `--repeats` times, and reports their
ratio: what the step spends beyond streaming its bytes (norms, self-attention, beam bookkeeping, Python), measured
side by side in one process (across processes the machine's swings are larger than that).

Each run is a fresh process that generates `--short` and then `--long` new tokens with beam search
(`min_length = max_length`, so that every run decodes exactly that many steps), `--repeats` times; the time per
step is (fastest t_long - fastest t_short) / (long - short), so loading, the encoder and the prefill cancel. The engines
alternate over `--rounds`; the table shows medians and the ratios against CTranslate2. The byte floor is what a
step must read (decoder weights, LM head, cross-attention keys/values, self-attention cache) over the bandwidth
of a 1 GiB `torch.sum`, measured in a process of its own each round. Nothing is asserted: this measures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (checkpoint_folder, child_environment, decoding_steps_timed, ensure_checkpoint,  # noqa: E402
                    first_to_go_when_memory_runs_out)

ENGINES = ("ours", "ours-int8", "ctranslate2", "ctranslate2-int8")
# Ours with one of quantize_int8's two parts only: int8 weights (cross-attention cache in fp32), or fp32 weights
# with the cross-attention cache in bf16; ours loaded in bf16 altogether; our fp32 step's streaming kernels alone.
PARTIAL_ENGINES = ("ours-int8-weights", "ours-bf16-cache", "ours-bf16", "ours-kernels")
SOURCE_LENGTH = {"large": 4096, "tiny": 640}
EOS = 1
# The setting: beam 5, length penalty 0.8.
BEAMS, LENGTH_PENALTY = 5, 0.8
BANDWIDTH_BYTES = 1 << 30  # a 1 GiB fp32 tensor summed: the machine's read bandwidth, for the byte floor
CT2_FOLDER = {"ctranslate2": "ct2-float32", "ctranslate2-int8": "ct2-int8"}
# Bytes per number each engine reads per step: (weights, cross-attention keys/values). CTranslate2's int8 keeps
# its activations, so its keys/values, in fp32; `quantize_int8` keeps ours in bf16.
ITEM_BYTES = {"ours": (4, 4), "ours-int8": (1, 2), "ctranslate2": (4, 4), "ctranslate2-int8": (1, 4),
              "ours-int8-weights": (1, 4), "ours-bf16-cache": (4, 2), "ours-bf16": (2, 2), "ours-kernels": (4, 4)}


def main() -> None:
    args = parse_args()
    if args.child:
        first_to_go_when_memory_runs_out()
        print(json.dumps(CHILDREN[args.child](args)))
        return
    size = "tiny" if args.tiny else "large"
    checkpoint = Path(ensure_checkpoint(args.checkpoint, tiny=args.tiny))
    if any(engine.startswith("ctranslate2") for engine in args.engines):
        run_child("convert", args, checkpoint)
    runs: dict[str, list[dict]] = {engine: [] for engine in (*args.engines, "bandwidth")}
    for round_index in range(args.rounds):
        for engine in (*args.engines, "bandwidth"):
            result = run_child(engine, args, checkpoint)
            runs[engine].append(result)
            print(f"  round {round_index + 1}/{args.rounds} {engine}: "
                  f"{result.get('step_s', result.get('bytes_per_s', result.get('error')))}", file=sys.stderr)
    report(runs, size, checkpoint, args)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", nargs="+", choices=ENGINES + PARTIAL_ENGINES, default=list(ENGINES))
    parser.add_argument("--rounds", type=int, default=3, help="processes per engine, alternating")
    parser.add_argument("--repeats", type=int, default=3, help="short and long runs per process")
    parser.add_argument("--short", type=int, default=8, help="new tokens of the short run")
    parser.add_argument("--long", type=int, default=56, help="new tokens of the long run")
    parser.add_argument("--docs", type=int, default=1, help="documents decoded together")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads of every engine")
    parser.add_argument("--profile", action="store_true", help="a per-op profile of our decoding steps")
    parser.add_argument("--tiny", action="store_true", help="the tiny config: a smoke run")
    parser.add_argument("--checkpoint", help="default: benchmarks/out/{large,tiny}-random")
    parser.add_argument("--out", help="JSON results (default: benchmarks/out/[tiny-]decode.json)")
    parser.add_argument("--child", choices=sorted(CHILDREN_NAMES), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    return parser.parse_args()


def run_child(name: str, args: argparse.Namespace, checkpoint: Path) -> dict:
    """One fresh process; its JSON result, or {"error": ...}."""
    command = [sys.executable, __file__, "--child", name, "--workdir", str(checkpoint), "--threads",
               str(args.threads), "--repeats", str(args.repeats), "--short", str(args.short), "--long",
               str(args.long), "--docs", str(args.docs)]
    command += ["--tiny"] if args.tiny else []
    command += ["--profile"] if args.profile else []
    done = subprocess.run(command, capture_output=True, text=True,
                          env=child_environment(name, TOKENIZERS_PARALLELISM="false"))
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-800:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- inside a child process -----------------------------------------------------------------------------

def source_ids(vocab_size: int, length: int, docs: int):
    """`docs` random documents (docs, length) ending in EOS, the same in every process."""
    import torch

    ids = torch.randint(3, vocab_size, (docs, length), generator=torch.Generator().manual_seed(0))
    ids[:, -1] = EOS
    return ids


def time_steps(generate, args: argparse.Namespace) -> dict:
    """Per-step seconds: (fastest long run - fastest short run) / (long - short) over `repeats` runs of each,
    after a warm-up. The fastest of each, not a median of differences: on a shared machine a stall that hits one
    run of a pair would otherwise move the difference by its whole length."""
    generate(2)
    short, long = [], []
    for _ in range(args.repeats):
        for new_tokens, times in ((args.short, short), (args.long, long)):
            started = time.perf_counter()
            generate(new_tokens)
            times.append(time.perf_counter() - started)
    return {"step_s": (min(long) - min(short)) / (args.long - args.short), "short_s": short, "long_s": long}


def ours_child(args: argparse.Namespace) -> dict:
    import torch

    import bigbird_pegasus

    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.child == "ours-bf16" else torch.float32
    model = bigbird_pegasus.BigBirdPegasusForConditionalGeneration.from_pretrained(args.workdir, dtype=dtype).eval()
    if args.child == "ours-int8":
        bigbird_pegasus.quantize_int8(model)
    elif args.child == "ours-int8-weights":
        bigbird_pegasus.quantize_int8(model, cross_attention_dtype=None)
    elif args.child == "ours-bf16-cache":
        bigbird_pegasus.reduce_cross_attention_cache(model)
    length = SOURCE_LENGTH["tiny" if args.tiny else "large"]
    # Only the decoding is timed, and its time does not depend on the encoder states' values: random states
    # spare each process the encoder (10-20 s at 4096 tokens).
    seeded = torch.Generator().manual_seed(0)
    states = torch.randn(args.docs, length, model.config.d_model, generator=seeded).to(dtype)

    def generate(new_tokens: int):
        with torch.inference_mode():
            return model.generate(encoder_outputs=(states,), num_beams=BEAMS, length_penalty=LENGTH_PENALTY,
                                  max_new_tokens=new_tokens, min_new_tokens=new_tokens)

    result = {"engine": args.child, "threads": torch.get_num_threads(), **time_steps(generate, args)}
    if args.profile:
        result["profile"] = profile_steps(generate, new_tokens=args.short)
    return result


def kernels_child(args: argparse.Namespace) -> dict:
    """Our fp32 step against its streaming kernels alone over its bytes (module doc), alternating 4 x repeats times
    in this process: each time one `generate` of `--long` tokens, its steps timed one by one (from one step's start
    to the next's: the beam bookkeeping in between included; the median after the first 4), then the median of 5
    passes of the kernels alone."""
    import torch

    import bigbird_pegasus
    from bigbird_pegasus import kernels

    torch.set_num_threads(args.threads)
    model = bigbird_pegasus.BigBirdPegasusForConditionalGeneration.from_pretrained(args.workdir).eval()
    decoder, rows = model.get_decoder(), args.docs * BEAMS
    once_per_document = {id(projection) for layer in decoder.layers
                         for projection in (layer.encoder_attn.k_proj, layer.encoder_attn.v_proj)}
    weights = [module.weight for module in decoder.modules()
               if isinstance(module, torch.nn.Linear) and id(module) not in once_per_document]
    weights.append(model.lm_head.weight)
    seeded = torch.Generator().manual_seed(0)
    inputs = [torch.randn(rows, weight.shape[1], generator=seeded) for weight in weights]
    heads, length = decoder.layers[0].encoder_attn.num_heads, SOURCE_LENGTH["tiny" if args.tiny else "large"]
    head_dim = model.config.d_model // heads
    queries = torch.randn(args.docs, heads, BEAMS, head_dim, generator=seeded)              # (docs, h, beams, d)
    keys = [torch.randn(args.docs, heads, head_dim, length, generator=seeded).transpose(-1, -2)  # position-minor
            for _ in decoder.layers]
    values = [torch.randn(args.docs, heads, length, head_dim, generator=seeded) for _ in decoder.layers]
    states = torch.randn(args.docs, length, model.config.d_model, generator=seeded)
    with torch.inference_mode():  # as the step runs: the kernels take no tensors that need gradients
        unserved = [f"the {tuple(weight.shape)} weight" for x, weight in zip(inputs, weights)
                    if not kernels.serves_linear(x, weight, None)][:1]
        if not all(kernels.serves_attention(queries, k, v, None) for k, v in zip(keys, values)):
            unserved.append(f"the cross-attention (head size {head_dim}; the kernel takes "
                            f"{kernels.ATTENTION_HEAD_DIM})")
    if unserved:
        reason = kernels.unavailable_reason(attention=True)
        raise SystemExit(f"ours-kernels: the package's kernels do not take {' or '.join(unserved)} here"
                         + (f" ({reason})" if reason else ""))

    def kernels_alone() -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            for x, weight in zip(inputs, weights):
                kernels.linear(x, weight)
            for k, v in zip(keys, values):
                kernels.attention(queries, k, v)
        return time.perf_counter() - started

    def one_step_at_a_time() -> float:
        with decoding_steps_timed() as steps, torch.inference_mode():
            model.generate(encoder_outputs=(states,), num_beams=BEAMS, length_penalty=LENGTH_PENALTY,
                           max_new_tokens=args.long, min_new_tokens=args.long)
        starts = [start for start, _ in steps[4:]]
        return statistics.median(later - earlier for earlier, later in itertools.pairwise(starts))

    one_step_at_a_time(), kernels_alone()
    pairs = [(one_step_at_a_time(), statistics.median(kernels_alone() for _ in range(5)))
             for _ in range(4 * args.repeats)]
    return {"engine": args.child, "threads": torch.get_num_threads(),
            "step_s": statistics.median(alone for _, alone in pairs),
            "step_in_process_s": statistics.median(step for step, _ in pairs),
            "step_over_kernels": [step / alone for step, alone in pairs]}


def profile_steps(generate, *, new_tokens: int) -> list[dict]:
    """Own CPU time per operator over the decoding steps of one generate (the prefill excluded)."""
    from torch.profiler import ProfilerActivity, profile

    from bigbird_pegasus.generation import decoding

    profiler = profile(activities=[ProfilerActivity.CPU])
    original = decoding.CachedDecoder.decode_one_token

    def start_at_first_step(self, tokens):
        if not getattr(profiler, "started", False):
            profiler.started = True
            profiler.start()
        return original(self, tokens)

    decoding.CachedDecoder.decode_one_token = start_at_first_step
    try:
        generate(new_tokens)
    finally:
        decoding.CachedDecoder.decode_one_token = original
        profiler.stop()
    averages = sorted(profiler.key_averages(), key=lambda event: event.self_cpu_time_total, reverse=True)
    total = sum(event.self_cpu_time_total for event in averages)
    return [{"op": event.key, "share": event.self_cpu_time_total / total, "calls": event.count}
            for event in averages[:15]]


def ctranslate2_child(args: argparse.Namespace) -> dict:
    import ctranslate2

    folder = Path(args.workdir) / CT2_FOLDER[args.child]
    compute_type = "int8" if args.child.endswith("int8") else "float32"
    translator = ctranslate2.Translator(str(folder), device="cpu", compute_type=compute_type,
                                        intra_threads=args.threads, inter_threads=1)
    vocab_size = json.loads((Path(args.workdir) / "config.json").read_text())["vocab_size"]
    ids = source_ids(vocab_size, SOURCE_LENGTH["tiny" if args.tiny else "large"], args.docs)
    vocabulary = json.loads((folder / "shared_vocabulary.json").read_text())
    sources = [[vocabulary[token] for token in row] for row in ids.tolist()]

    def generate(new_tokens: int):
        return translator.translate_batch(sources, beam_size=BEAMS, length_penalty=LENGTH_PENALTY,
                                          max_decoding_length=new_tokens, min_decoding_length=new_tokens,
                                          max_input_length=0)

    return {"engine": args.child, "threads": args.threads, "compute_type": compute_type, **time_steps(generate, args)}


def bandwidth_child(args: argparse.Namespace) -> dict:
    """Read bandwidth: the median of 5 sums of a 1 GiB fp32 tensor."""
    import torch

    torch.set_num_threads(args.threads)
    data = torch.ones(BANDWIDTH_BYTES // 4)
    data.sum()
    times = []
    for _ in range(5):
        started = time.perf_counter()
        data.sum()
        times.append(time.perf_counter() - started)
    return {"engine": "bandwidth", "bytes_per_s": BANDWIDTH_BYTES / statistics.median(times)}


def convert_child(args: argparse.Namespace) -> dict:
    """Our checkpoint's decoder in a Pegasus model, converted by CTranslate2 (fp32 and int8), once."""
    workdir = Path(args.workdir)
    if all((workdir / name / "model.bin").exists() for name in CT2_FOLDER.values()):
        return {"converted": "already"}
    import torch
    import transformers
    from safetensors.torch import load_file

    transformers.logging.set_verbosity_error()
    ours = json.loads((workdir / "config.json").read_text())
    config = transformers.PegasusConfig(
        vocab_size=ours["vocab_size"], d_model=ours["d_model"], encoder_layers=1,
        decoder_layers=ours["decoder_layers"], encoder_attention_heads=ours["encoder_attention_heads"],
        decoder_attention_heads=ours["decoder_attention_heads"], encoder_ffn_dim=ours["encoder_ffn_dim"],
        decoder_ffn_dim=ours["decoder_ffn_dim"], max_position_embeddings=ours["max_position_embeddings"],
        activation_function=ours["activation_function"], scale_embedding=ours["scale_embedding"],
        pad_token_id=0, eos_token_id=EOS, decoder_start_token_id=0,
        # CTranslate2's Pegasus loader reads these; recent transformers configs no longer carry them
        normalize_before=True, add_final_layer_norm=True, normalize_embedding=False, static_position_embeddings=True)
    torch.manual_seed(0)
    pegasus = transformers.PegasusForConditionalGeneration(config)
    weights = load_file(workdir / "model.safetensors")
    decoder = {name: tensor for name, tensor in weights.items()
               if name.startswith("model.decoder.layers.") or name in ("model.shared.weight", "final_logits_bias")}
    # BigBird-Pegasus names the decoder's final LayerNorm `layernorm_embedding`; Pegasus names it `layer_norm`
    for kind in ("weight", "bias"):
        decoder[f"model.decoder.layer_norm.{kind}"] = weights[f"model.decoder.layernorm_embedding.{kind}"]
    pegasus.load_state_dict(decoder, strict=False)  # the Pegasus encoder and attention biases stay as initialised
    with tempfile.TemporaryDirectory() as scratch:
        pegasus.save_pretrained(scratch)
        converter = ctranslate2_converter(scratch, vocab_size=config.vocab_size)
        for quantization, name in (("float32", CT2_FOLDER["ctranslate2"]), ("int8", CT2_FOLDER["ctranslate2-int8"])):
            converter.convert(str(workdir / name), quantization=quantization, force=True)
    return {"converted": "now"}


def ctranslate2_converter(folder: str, *, vocab_size: int):
    """CTranslate2's converter for the saved Pegasus model in `folder`, given the vocabulary that a tokenizer
    would supply (placeholder names; the special tokens at Pegasus' ids 0, 1, 2)."""
    import ctranslate2.converters

    class VocabularyOnly:
        pad_token, eos_token, unk_token = "<pad>", "</s>", "<unk>"

        def get_vocab(self) -> dict[str, int]:
            names = ["<pad>", "</s>", "<unk>"] + [f"t{i}" for i in range(3, vocab_size)]
            return {name: index for index, name in enumerate(names)}

    class Converter(ctranslate2.converters.TransformersConverter):
        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            return VocabularyOnly()

    return Converter(folder)


CHILDREN = {"ours": ours_child, "ours-int8": ours_child, "ours-int8-weights": ours_child,
            "ours-bf16-cache": ours_child, "ours-bf16": ours_child, "ours-kernels": kernels_child,
            "ctranslate2": ctranslate2_child,
            "ctranslate2-int8": ctranslate2_child, "bandwidth": bandwidth_child, "convert": convert_child}
CHILDREN_NAMES = tuple(CHILDREN)


# -- the report -----------------------------------------------------------------------------------------

def step_bytes(config: dict, *, engine: str, source_length: int, docs: int, position: int) -> dict[str, int]:
    """What one decoding step must read: the weights of the decoder layers (self-attention, cross-attention
    query and output, feed-forward), the LM head, the documents' cross-attention keys/values, and the
    self-attention cache at `position`."""
    d, layers, ffn = config["d_model"], config["decoder_layers"], config["decoder_ffn_dim"]
    weight, key_value = ITEM_BYTES[engine]
    parts = {"decoder weights": layers * (6 * d * d + 2 * d * ffn) * weight,
             "LM head": config["vocab_size"] * d * weight,
             "cross-attention keys/values": 2 * layers * docs * source_length * d * key_value,
             "self-attention cache": 0 if engine == "ours-kernels" else 2 * layers * docs * BEAMS * position * d * 4}
    return {**parts, "total": sum(parts.values())}


def report(runs: dict[str, list[dict]], size: str, checkpoint: Path, args: argparse.Namespace) -> None:
    """Write the results as JSON and print them (`report_lines`)."""
    bandwidth = statistics.median(run["bytes_per_s"] for run in runs["bandwidth"] if "bytes_per_s" in run)
    steps = {engine: statistics.median(run["step_s"] for run in its_runs if "step_s" in run)
             for engine, its_runs in runs.items() if engine != "bandwidth" and any("step_s" in r for r in its_runs)}
    config = json.loads((checkpoint / "config.json").read_text())
    read = {engine: step_bytes(config, engine=engine, source_length=SOURCE_LENGTH[size], docs=args.docs,
                               position=(args.short + args.long) // 2) for engine in steps}
    result = dict(size=size, source_length=SOURCE_LENGTH[size], docs=args.docs, beams=BEAMS, short=args.short,
                  long=args.long, threads=args.threads, rounds=args.rounds, repeats=args.repeats,
                  bandwidth_bytes_per_s=bandwidth, steps=steps, step_bytes=read, runs=runs)
    print("\n" + "\n".join(report_lines(result)))
    default_out = checkpoint_folder(args.tiny).replace(f"{size}-random", f"{'tiny-' if args.tiny else ''}decode.json")
    out = Path(args.out or default_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {out}")


def report_lines(result: dict) -> list[str]:
    """The table (engine: step time, ratios against CTranslate2, byte floor), the bytes per step and the
    per-op profiles, as markdown lines (benchmarks/run.py puts them in results.md)."""
    steps, bandwidth = result["steps"], result["bandwidth_bytes_per_s"]
    lines = [f"{result['size']} config, {result['source_length']}-token source, {result['docs']} document(s), beam "
             f"{result['beams']}, steps {result['short']}..{result['long']}, {result['threads']} threads; median of "
             f"{result['rounds']} processes, each the fastest of {result['repeats']} runs per length",
             f"read bandwidth (1 GiB torch.sum): {bandwidth / 1e9:.1f} GB/s", "",
             "| engine | step s | vs CTranslate2 fp32 | vs CTranslate2 int8 | step bytes GB | byte floor s | step / floor |",
             "|---|---|---|---|---|---|---|"]
    for engine, seconds in steps.items():
        floor = result["step_bytes"][engine]["total"] / bandwidth
        cells = [ratio(steps.get("ctranslate2"), seconds), ratio(steps.get("ctranslate2-int8"), seconds),
                 f"{result['step_bytes'][engine]['total'] / 1e9:.2f}", f"{floor:.3f}", f"{seconds / floor:.2f}x"]
        lines.append(f"| {engine} | {seconds:.4f} | " + " | ".join(cells) + " |")
    for run in result["runs"].get("ours-kernels", []):
        if "step_over_kernels" in run:
            ratios = run["step_over_kernels"]
            each = ", ".join(f"{r:.2f}" for r in ratios)
            lines += ["", (f"ours-kernels: our step {run['step_in_process_s']:.4f} s (the beam bookkeeping after it "
                           f"included) over its streaming kernels alone {run['step_s']:.4f} s, alternating in one "
                           f"process: median {statistics.median(ratios):.3f}x ({each}): what the step spends beyond "
                           "reading its bytes (norms, self-attention, beam bookkeeping, Python)")]
    lines += ["", "vs CTranslate2: its step time over the engine's (above 1: the engine is faster). Step bytes (GB):"]
    for engine, parts in result["step_bytes"].items():
        lines.append(f"- {engine}: " + ", ".join(f"{name} {value / 1e9:.3f}" for name, value in parts.items()))
    for engine, its_runs in result["runs"].items():
        errors = [run["error"] for run in its_runs if "error" in run]
        if errors:
            lines.append(f"{engine} failed: {errors[0]}")
        profiles = [run["profile"] for run in its_runs if "profile" in run]
        if profiles:
            lines += ["", f"{engine}: own CPU time per op over the decoding steps (first process)", ""]
            lines += [f"    {entry['share']:6.1%}  {entry['calls']:6d} calls  {entry['op']}" for entry in profiles[0]]
    return lines


def ratio(numerator: float | None, denominator: float | None) -> str:
    return f"{numerator / denominator:.2f}x" if numerator and denominator else "-"


if __name__ == "__main__":
    main()
