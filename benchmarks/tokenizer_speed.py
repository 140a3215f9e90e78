"""Batch-encoding speed of bigbird_pegasus.PegasusTokenizer versus transformers.PegasusTokenizer.

    python benchmarks/tokenizer_speed.py [--tokenizer FOLDER] [--docs 64] [--words 20000] [--max-length 4096]

Without --tokenizer a SentencePiece model with the PEGASUS layout is trained on generated English.
Both tokenizers encode the same long documents, first truncated to --max-length (what summarization
feeds the model), then in full; outputs are checked to be identical before timing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from bigbird_pegasus import PegasusTokenizer  # noqa: E402
from helpers.spm import long_document, train_pegasus_spm  # noqa: E402


def documents(count: int, words: int) -> list[str]:
    """`count` different generated documents of about `words` words each."""
    pages = max(1, round(words / 530))  # a generated page has about 530 words
    return [long_document(pages, seed=seed) for seed in range(count)]


def best_time(encode, repeats: int) -> float:
    """Fastest of `repeats` wall-clock runs, in seconds."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        encode()
        timings.append(time.perf_counter() - start)
    return min(timings)


def compare(label: str, ours, reference, docs: list[str], repeats: int, **options) -> None:
    expected, got = reference(docs, return_tensors="pt", **options), ours(docs, return_tensors="pt", **options)
    assert torch.equal(got["input_ids"], expected["input_ids"]), f"{label}: ids differ from the reference"
    ours_s = best_time(lambda: ours(docs, return_tensors="pt", **options), repeats)
    reference_s = best_time(lambda: reference(docs, return_tensors="pt", **options), repeats)
    print(f"{label:<28} tokens/doc {got['input_ids'].shape[1]:>6}  ours {len(docs) / ours_s:8.1f} docs/s  "
          f"reference {len(docs) / reference_s:8.1f} docs/s  speed-up x{reference_s / ours_s:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", type=Path, help="folder with tokenizer.json or spiece.model")
    parser.add_argument("--docs", type=int, default=64)
    parser.add_argument("--words", type=int, default=20_000)
    parser.add_argument("--max-length", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        folder = args.tokenizer or train_pegasus_spm(scratch).parent
        ours = PegasusTokenizer.from_pretrained(folder)
        reference = transformers.PegasusTokenizer.from_pretrained(folder)
    docs = documents(args.docs, args.words)
    print(f"{len(docs)} documents, {sum(len(d.split()) for d in docs) / len(docs):.0f} words each, "
          f"torch threads {torch.get_num_threads()}")
    compare(f"truncated to {args.max_length}", ours, reference, docs, args.repeats,
            padding=True, truncation=True, max_length=args.max_length)
    compare("full documents", ours, reference, docs, args.repeats, padding=True)


if __name__ == "__main__":
    main()
