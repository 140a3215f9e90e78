"""Where our encoder spends its time at 4096 tokens: dense projections and feed-forward vs the rest.

    python benchmarks/profile_encoder.py                # large random checkpoint, 4096 tokens
    python benchmarks/profile_encoder.py --tiny --length 640

Runs one warm-up forward, then profiles one forward with torch.profiler and groups the operators' own CPU
time: dense matmuls (the Q/K/V/output projections and the feed-forward), attention (SDPA, gathering the key
blocks), and the elementwise rest (GELU, LayerNorm, residual adds, copies). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time

from common import ensure_checkpoint

GROUPS = {
    "dense matmuls": ("aten::addmm", "aten::mm", "aten::bmm"),
    "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu", "aten::index_select", "aten::index"),
    "GELU": ("aten::gelu",),
    "LayerNorm": ("aten::native_layer_norm",),
    "residual adds, copies, masks": ("aten::add", "aten::copy_", "aten::cat", "aten::mul", "aten::masked_fill_",
                                     "aten::embedding", "aten::constant_pad_nd", "aten::fill_", "aten::clone"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, help="input tokens (default: 4096, or 640 with --tiny)")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    args.length = args.length or (640 if args.tiny else 4096)

    import torch
    from torch.profiler import ProfilerActivity, profile

    import bigbird_pegasus

    model = bigbird_pegasus.BigBirdPegasusForConditionalGeneration.from_pretrained(ensure_checkpoint(tiny=args.tiny))
    encoder = model.get_encoder()
    ids = torch.randint(3, model.config.vocab_size, (1, args.length), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        encoder(ids)
        start = time.perf_counter()
        encoder(ids)
        wall = time.perf_counter() - start
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            encoder(ids)
    own = {event.key: event.self_cpu_time_total / 1e6 for event in prof.key_averages()}
    total = sum(own.values())
    grouped = {name: sum(own.get(op, 0.0) for op in ops) for name, ops in GROUPS.items()}
    grouped["other"] = total - sum(grouped.values())
    print(f"encoder, {args.length} tokens, {torch.get_num_threads()} threads: {wall:.2f} s unprofiled, "
          f"{total:.2f} s of operator time profiled")
    print("| part | seconds | share |")
    print("|---|---|---|")
    for name, seconds in grouped.items():
        print(f"| {name} | {seconds:.2f} | {100 * seconds / total:.1f}% |")


if __name__ == "__main__":
    main()
