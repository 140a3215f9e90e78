"""Fine-tuning cost: one training step of the large model, the reference vs ours; and 2-process CPU scaling.

    python benchmarks/train_step.py                      # the full measurement (needs a quiet machine)
    python benchmarks/train_step.py --tiny --rounds 1    # a smoke run on a small model

Step: the large config (`BigBirdPegasusConfig()` defaults) with random weights saved once by the reference in
`--workdir`; batch 1, `--source-length` tokens in, `--target-length` out, dropout on (training mode), forward +
backward + AdamW step; with and without gradient checkpointing. Each measurement is a fresh process (one
warm-up step, then `--repeats` timed steps; peak RSS from VmHWM); the libraries alternate. A process killed
for memory shows as an error.

Scaling: our `finetune` command on a small model, 1 process vs `torchrun --nproc-per-node 2` (gloo), one
thread and batch 1 per process; efficiency = (steps/s with 2 processes x 2 examples) / (2 x steps/s with 1).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from common import (child_environment, ensure_checkpoint, first_to_go_when_memory_runs_out, max_peak_mb,
                    median_seconds, peak_rss_mb, save_json)

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
SCALING_CONFIG = dict(d_model=256, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                      decoder_attention_heads=4, encoder_ffn_dim=1024, decoder_ffn_dim=1024,
                      max_position_embeddings=2048)
SCALING_WORDS = 2000  # word-level vocabulary of the scaling model; documents of ~1,500 words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="folder of the random weights (default benchmarks/out/{large,tiny}-random)")
    parser.add_argument("--rounds", type=int, default=2, help="processes per library and setting")
    parser.add_argument("--repeats", type=int, default=2, help="timed steps per process, after a warm-up step")
    parser.add_argument("--source-length", type=int, help="default 4096 (1024 with --tiny: its positions)")
    parser.add_argument("--target-length", type=int, default=256)
    parser.add_argument("--scaling-steps", type=int, default=12)
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="a small model, to check that the script runs")
    parser.add_argument("--out", help="also write the raw results as JSON here")
    parser.add_argument("--worker", choices=("ours", "reference"), help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        first_to_go_when_memory_runs_out()
        print(json.dumps(step_worker(args)))
        return

    checkpoint = ensure_checkpoint(args.workdir, tiny=args.tiny)
    args.source_length = args.source_length or (1024 if args.tiny else 4096)
    raw = {"step": step_comparison(args, checkpoint)}
    if not args.skip_scaling:
        raw["scaling"] = scaling(args, os.path.join(os.path.dirname(checkpoint), "scaling-tiny" if args.tiny else "scaling"))
    if args.out:
        save_json(args.out, raw)


# -- one training step, reference vs ours --------------------------------------------------------------------

def step_comparison(args: argparse.Namespace, checkpoint: str) -> dict:
    results = {}
    for checkpointing in (0, 1):
        runs = {"reference": [], "ours": []}
        for round_index in range(args.rounds):
            for library in runs:
                result = run_step_worker(library, checkpoint, checkpointing, args)
                print(f"  checkpointing={checkpointing} round {round_index + 1}/{args.rounds} {library}: "
                      f"{result.get('seconds', result.get('error'))}", file=sys.stderr)
                runs[library].append(result)
        results[checkpointing] = runs
    print(f"\nTraining step, batch 1, {args.source_length} tokens in, {args.target_length} out, dropout on, AdamW")
    print("| gradient checkpointing | reference s | ours s | speed-up | reference peak MiB | ours peak MiB |")
    print("|---|---|---|---|---|---|")
    for checkpointing, runs in results.items():
        theirs, ours = median_seconds(runs["reference"]), median_seconds(runs["ours"])
        speedup = f"{theirs / ours:.2f}x" if theirs and ours else "n/a"
        print(f"| {'on' if checkpointing else 'off'} | {_figure(theirs, '.2f', runs['reference'])} "
              f"| {_figure(ours, '.2f', runs['ours'])} | {speedup} "
              f"| {_figure(max_peak_mb(runs['reference']), '.0f', runs['reference'])} "
              f"| {_figure(max_peak_mb(runs['ours']), '.0f', runs['ours'])} |")
    return results


def _figure(value: float | None, spec: str, runs: list[dict]) -> str:
    if value is not None:
        return format(value, spec)
    return "failed: " + next((r["error"][:60] for r in runs if "error" in r), "?")


def run_step_worker(library: str, checkpoint: str, checkpointing: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", library, "--workdir", checkpoint,
               "--checkpointing", str(checkpointing), "--repeats", str(args.repeats),
               "--source-length", str(args.source_length), "--target-length", str(args.target_length)]
    done = subprocess.run(command, capture_output=True, text=True, env=child_environment(library))
    if done.returncode != 0:
        return {"library": library, "error": f"exit {done.returncode}: {done.stderr.strip()[-300:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def step_worker(args: argparse.Namespace) -> dict:
    """In a fresh process: load one library's model, time training steps, report peak RSS."""
    import torch

    if args.worker == "ours":
        import bigbird_pegasus as library
    else:
        import transformers as library
        library.logging.set_verbosity_error()
    model = library.BigBirdPegasusForConditionalGeneration.from_pretrained(args.workdir).train()
    model.config.use_cache = False
    if args.checkpointing:
        model.gradient_checkpointing_enable()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    input_ids = torch.randint(3, vocab, (1, args.source_length), generator=generator)
    labels = torch.randint(3, vocab, (1, args.target_length), generator=generator)
    times = []
    for _ in range(args.repeats + 1):
        start = time.perf_counter()
        loss = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return {"library": args.worker, "checkpointing": args.checkpointing, "seconds": times[1:],
            "warmup_seconds": times[0], "peak_rss_mb": peak_rss_mb()}


# -- scaling over processes ----------------------------------------------------------------------------------

def scaling(args: argparse.Namespace, folder: str) -> dict:
    """Our finetune command with 1 and 2 processes on a small model and data made in `folder`."""
    model, data = scaling_inputs(folder, args.tiny)
    results = {}
    for processes in (1, 2):
        output = os.path.join(folder, f"run-{processes}")
        options = ["--model", model, "--train", data, "--output-dir", output, "--max-steps", str(args.scaling_steps),
                   "--batch-size", "1", "--max-source-length", "2048", "--max-target-length", "64",
                   "--save-every", "0", "--no-progress", "--device", "cpu", "--seed", "0"]
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
        command = (launcher if processes > 1 else [sys.executable]) + ["-m", "bigbird_pegasus.finetune", *options]
        env = dict(os.environ, PYTHONPATH=SRC, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            results[processes] = {"error": done.stderr.strip()[-500:]}
            continue
        with open(os.path.join(output, "log.jsonl")) as f:
            steps = [r for r in map(json.loads, f) if r["event"] == "train"][2:]   # skip the warm-up steps
        seconds = statistics.median(r["seconds"] for r in steps)
        results[processes] = {"median_step_seconds": seconds, "examples_per_second": processes / seconds}
    if all("examples_per_second" in results[p] for p in (1, 2)):
        efficiency = results[2]["examples_per_second"] / (2 * results[1]["examples_per_second"])
        print(f"\nScaling (our finetune, gloo, 1 thread and batch 1 per process, {scaling_sizes(args.tiny)}):")
        print("| processes | median step s | examples/s |\n|---|---|---|")
        for processes in (1, 2):
            r = results[processes]
            print(f"| {processes} | {r['median_step_seconds']:.3f} | {r['examples_per_second']:.2f} |")
        print(f"efficiency with 2 processes: {efficiency:.0%}")
        results["efficiency"] = efficiency
    else:
        print(f"\nScaling failed: {results}")
    return results


def scaling_sizes(tiny: bool) -> dict:
    return dict(SCALING_CONFIG, d_model=64, encoder_ffn_dim=128, decoder_ffn_dim=128) if tiny else SCALING_CONFIG


def scaling_inputs(folder: str, tiny: bool) -> tuple[str, str]:
    """A small random model with a word-level tokenizer, and documents of ~1,500 words, made once."""
    model, data = os.path.join(folder, "model"), os.path.join(folder, "train.jsonl")
    if os.path.isfile(data):
        return model, data
    import random

    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import Unigram

    sys.path.insert(0, SRC)
    import bigbird_pegasus
    from bigbird_pegasus.text.tokenizer import SpecialTokens

    words = [f"w{i}" for i in range(SCALING_WORDS)]
    reserved = SpecialTokens().reserved()
    vocab = [(t, 0.0) for t in reserved] + [("<unk>", 0.0)] + [(f"\u2581{w}", -1.0) for w in words]
    os.makedirs(model, exist_ok=True)
    Tokenizer(Unigram(vocab, unk_id=len(reserved), byte_fallback=False)).save(os.path.join(model, "tokenizer.json"))
    torch.manual_seed(0)
    config = bigbird_pegasus.BigBirdPegasusConfig(vocab_size=len(vocab), **scaling_sizes(tiny))
    bigbird_pegasus.BigBirdPegasusForConditionalGeneration(config).save_pretrained(model)
    rng = random.Random(0)
    with open(data, "w") as f:
        for _ in range(64):
            document = " ".join(rng.choices(words, k=rng.randint(1400, 1600)))
            f.write(json.dumps({"document": document, "summary": " ".join(rng.choices(words, k=40))}) + "\n")
    return model, data


if __name__ == "__main__":
    main()
