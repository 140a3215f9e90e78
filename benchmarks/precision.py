"""How far reduced precision moves our outputs from fp32, on the same random large-config weights.

    python benchmarks/precision.py                      # 4096-token input, bf16 and int8 against fp32
    python benchmarks/precision.py --tiny --length 640

For each variant: the max |diff| of the decoder logits (teacher-forced on fp32's greedy tokens) relative to
the logits' range, and whether greedy decoding of `--new-tokens` tokens gives the same tokens as fp32.
"""

from __future__ import annotations

import argparse
import time

from common import ensure_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, help="input tokens (default: 4096, or 640 with --tiny)")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    args.length = args.length or (640 if args.tiny else 4096)

    import torch

    import bigbird_pegasus
    from bigbird_pegasus import quantize_int8

    folder = ensure_checkpoint(tiny=args.tiny)
    vocab_size = bigbird_pegasus.BigBirdPegasusConfig.from_pretrained(folder).vocab_size
    ids = torch.randint(3, vocab_size, (1, args.length), generator=torch.Generator().manual_seed(0))
    ids[0, -1] = 1
    variants = {"fp32": lambda m: m, "bf16": lambda m: m.to(torch.bfloat16), "int8 dynamic": quantize_int8}
    results = {}
    for name, convert in variants.items():
        model = convert(bigbird_pegasus.BigBirdPegasusForConditionalGeneration.from_pretrained(folder))
        with torch.inference_mode():
            start = time.perf_counter()
            tokens = model.generate(ids, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
            seconds = time.perf_counter() - start
            reference_tokens = results.get("fp32", {}).get("tokens", tokens)
            logits = model(input_ids=ids, decoder_input_ids=reference_tokens[:, :-1]).logits.float()
        results[name] = {"tokens": tokens, "logits": logits, "seconds": seconds}
        del model
    expected = results["fp32"]
    scale = expected["logits"].abs().max().item()
    print(f"{args.length}-token input, greedy {args.new_tokens} new tokens; logits range max |x| = {scale:.2f}")
    print("| variant | generate s | max abs diff of logits | relative to max abs logit | greedy tokens equal fp32 | first differing position |")
    print("|---|---|---|---|---|---|")
    for name, result in results.items():
        diff = (result["logits"] - expected["logits"]).abs().max().item()
        same = torch.equal(result["tokens"], expected["tokens"])
        differing = (result["tokens"] != expected["tokens"]).nonzero()
        first = "-" if same else str(int(differing[0, 1]))
        print(f"| {name} | {result['seconds']:.1f} | {diff:.3g} | {diff / scale:.2%} | {'yes' if same else 'no'} | {first} |")


if __name__ == "__main__":
    main()
