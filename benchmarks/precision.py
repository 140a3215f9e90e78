"""How far reduced precision moves our outputs from fp32, on the same random large-config weights.

    python benchmarks/precision.py                      # 4096-token input, every variant against fp32
    python benchmarks/precision.py --tiny --length 640
    python benchmarks/precision.py --variants "quantize_int8 + bf16 encoder"     # fp32 and that variant only

Variants: the whole model in bf16; `quantize_int8` (int8 linear layers and the cross-attention cache in bf16,
"ours int8" in benchmarks/decode.py) and each of its two parts alone; `quantize_int8` with the encoder in bf16. For
each: the max |diff| of the decoder logits (teacher-forced on fp32's greedy tokens) relative to the logits' range,
and how many of `--new-tokens` tokens of greedy search and of beam search (beam 5, length penalty 0.8, the issue's
setting) equal fp32's at the same position, with the first position that differs.
"""

from __future__ import annotations

import argparse
import time

from common import ensure_checkpoint

BEAM_OPTIONS = dict(num_beams=5, length_penalty=0.8)
VARIANTS = ("bf16", "int8 weights (cross-attention cache fp32)", "bf16 cross-attention cache (weights fp32)",
            "quantize_int8 (both)", "quantize_int8 + bf16 encoder")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, help="input tokens (default: 4096, or 640 with --tiny)")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="the variants to compare with fp32 (default: all)")
    args = parser.parse_args()
    args.length = args.length or (640 if args.tiny else 4096)

    import torch

    import bigbird_pegasus
    from bigbird_pegasus import quantize_int8, reduce_cross_attention_cache

    folder = ensure_checkpoint(tiny=args.tiny)
    vocab_size = bigbird_pegasus.BigBirdPegasusConfig.from_pretrained(folder).vocab_size
    ids = torch.randint(3, vocab_size, (1, args.length), generator=torch.Generator().manual_seed(0))
    ids[0, -1] = 1
    variants = {"fp32": lambda m: m, "bf16": lambda m: m.to(torch.bfloat16),
                "int8 weights (cross-attention cache fp32)": lambda m: quantize_int8(m, cross_attention_dtype=None),
                "bf16 cross-attention cache (weights fp32)": reduce_cross_attention_cache,
                "quantize_int8 (both)": quantize_int8,
                "quantize_int8 + bf16 encoder": lambda m: quantize_int8(m, encoder_dtype=torch.bfloat16)}
    variants = {name: convert for name, convert in variants.items() if name == "fp32" or name in args.variants}
    lengths = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
    results = {}
    for name, convert in variants.items():
        model = convert(bigbird_pegasus.BigBirdPegasusForConditionalGeneration.from_pretrained(folder))
        with torch.inference_mode():
            start = time.perf_counter()
            encoded = (model.get_encoder()(ids).last_hidden_state,)
            greedy = model.generate(encoder_outputs=encoded, **lengths)
            beam = model.generate(encoder_outputs=encoded, **BEAM_OPTIONS, **lengths)
            seconds = time.perf_counter() - start
            forced = results.get("fp32", {}).get("greedy", greedy)
            logits = model(encoder_outputs=encoded, decoder_input_ids=forced[:, :-1]).logits.float()
        results[name] = {"greedy": greedy, "beam": beam, "logits": logits, "seconds": seconds}
        del model, encoded
    expected = results["fp32"]
    scale = expected["logits"].abs().max().item()
    print(f"{args.length}-token input, {args.new_tokens} new tokens; logits range max |x| = {scale:.2f}")
    print("| variant | encode + greedy + beam s | max abs diff of logits | relative to max abs logit "
          "| greedy tokens equal fp32 (first differing) | beam-5 tokens equal fp32 (first differing) |")
    print("|---|---|---|---|---|---|")
    for name, result in results.items():
        diff = (result["logits"] - expected["logits"]).abs().max().item()
        print(f"| {name} | {result['seconds']:.1f} | {diff:.3g} | {diff / scale:.2%} | "
              f"{agreement(result['greedy'], expected['greedy'])} | {agreement(result['beam'], expected['beam'])} |")


def agreement(tokens, expected) -> str:
    """'k/n (first differing position)' over the generated positions (the start token excluded)."""
    same = (tokens[0, 1:] == expected[0, 1:])
    differing = (~same).nonzero()
    first = "-" if len(differing) == 0 else str(int(differing[0, 0]))
    return f"{int(same.sum())}/{len(same)} ({first})"


if __name__ == "__main__":
    main()
