"""One measurement in a fresh process: load a checkpoint with one library, run one task, print JSON.

    python benchmarks/worker.py --library ours|reference --task encoder --checkpoint DIR --length 4096

Run by the drivers (`encoder.py`, `run.py`), never imported: each library gets a process of its own,
so neither's allocations, threads or caches colour the other's figures.
"""

from __future__ import annotations

import argparse
import json
import time

from common import first_to_go_when_memory_runs_out, peak_rss_mb


def load(library: str, checkpoint: str, dtype: str, quantize: str | None):
    import torch

    if library == "ours":
        import bigbird_pegasus as lib
    else:
        import transformers as lib
        lib.logging.set_verbosity_error()
    model = lib.BigBirdPegasusForConditionalGeneration.from_pretrained(checkpoint)
    model = model.to(getattr(torch, dtype)).eval()
    if quantize == "int8":
        from bigbird_pegasus import quantize_int8

        quantize_int8(model)
    return model


def extend_positions(model, length: int) -> None:
    """Grow our encoder's learned position table to `length` by repeating the trained rows (runs past
    the checkpoint's 4096 positions, for the scaling figures only)."""
    import torch

    table = model.model.encoder.embed_positions
    if length <= table.num_embeddings:
        return
    repeats = -(-length // table.num_embeddings)
    grown = torch.nn.Embedding(length, table.embedding_dim, dtype=table.weight.dtype)
    grown.weight.data.copy_(table.weight.data.repeat(repeats, 1)[:length])
    model.model.encoder.embed_positions = grown


def encoder_task(model, length: int, repeats: int) -> list[float]:
    import torch

    ids = torch.randint(3, model.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(0))
    encoder = model.get_encoder()
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            encoder(input_ids=ids)
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", choices=("ours", "reference"), required=True)
    parser.add_argument("--task", choices=("encoder",), required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs after one warm-up run")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--quantize", choices=("int8",), help="ours only: int8 dynamic quantization")
    parser.add_argument("--compile", action="store_true", help="ours only: torch.compile the encoder")
    args = parser.parse_args()
    first_to_go_when_memory_runs_out()

    start = time.perf_counter()
    model = load(args.library, args.checkpoint, args.dtype, args.quantize)
    load_seconds = time.perf_counter() - start
    loaded_rss = peak_rss_mb()
    if args.library == "ours":
        extend_positions(model, args.length)
    if args.compile:
        model.get_encoder().compile(fullgraph=True, dynamic=False)
    times = encoder_task(model, args.length, args.repeats + 1)
    print(json.dumps({"library": args.library, "task": args.task, "length": args.length, "dtype": args.dtype,
                      "quantize": args.quantize, "compile": args.compile, "seconds": times[1:],
                      "first_call_seconds": times[0], "load_seconds": load_seconds, "loaded_rss_mb": loaded_rss,
                      "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
