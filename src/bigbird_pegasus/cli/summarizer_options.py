"""The options `summarize` and `serve` share (model, generation defaults, long documents and text) and the
Summarizer they build."""

from __future__ import annotations

import argparse

from ..errors import UserError
from ..modeling.cache import CrossAttentionCache
from .arguments import non_negative_int, positive_int


def add_model_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """--model, --dtype, --device, --quantize, --threads; the group, for a command to add its own model options
    to."""
    from ..pipeline.loading import DEFAULT_MODEL, QUANTIZATIONS

    model = parser.add_argument_group("model")
    model.add_argument("--model", default=DEFAULT_MODEL,
                       help="checkpoint folder or Hugging Face hub id (default: %(default)s)")
    model.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                       help="weights and activations dtype (default: as saved)")
    model.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available, else cpu)")
    model.add_argument("--quantize", choices=list(QUANTIZATIONS),
                       help="int8: int8 linear layers and a bf16 cross-attention cache, faster on the CPU (summaries "
                            "may differ a little); int8-bf16-encoder: also the encoder in bf16, for CPUs with AMX "
                            "or AVX512-BF16. CPU and fp32 weights only (default: none)")
    model.add_argument("--threads", type=positive_int, help="CPU threads (default: torch's choice)")
    return model


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """--num-beams, --length-penalty, --max-length, --min-length, --no-repeat-ngram-size, --cross-attention-cache."""
    generation = parser.add_argument_group("generation (default: the checkpoint's generation settings)")
    generation.add_argument("--num-beams", type=positive_int, help="beam search width (1: greedy)")
    generation.add_argument("--length-penalty", type=float, help="beam score exponent on length (>1: longer)")
    generation.add_argument("--max-length", type=positive_int, help="most summary tokens, start token included")
    generation.add_argument("--min-length", type=non_negative_int, help="fewest summary tokens before </s>")
    generation.add_argument("--no-repeat-ngram-size", type=non_negative_int,
                            help="never repeat an n-gram of this size (0: allowed)")
    generation.add_argument("--cross-attention-cache", choices=[mode.value for mode in CrossAttentionCache],
                            default=CrossAttentionCache.KEYS_AND_VALUES.value,
                            help="kept per document for the decoder's cross-attention: keys_and_values (the fastest, "
                                 "default), values (half that memory) or none (only the encoder states; the least "
                                 "memory, the slowest steps); the summaries are the same")


def add_long_input_arguments(parser: argparse.ArgumentParser) -> None:
    """--long-input, --chunk-overlap, --newlines."""
    long_input = parser.add_argument_group("long documents and text")
    long_input.add_argument("--long-input", choices=("truncate", "chunk"), default="truncate",
                            help="a document longer than the model's positions is cut (default) or read in "
                                 "overlapping windows whose summaries are summarized again")
    long_input.add_argument("--chunk-overlap", type=non_negative_int, metavar="TOKENS",
                            help="tokens that consecutive windows may share (default: 1/8 of the positions)")
    long_input.add_argument("--newlines", choices=("auto", "token", "space"), default="auto",
                            help="paragraph breaks reach the model as <n> (token) or as spaces (space); auto: <n> "
                                 "when the tokenizer has that piece (default)")


def build_summarizer(args: argparse.Namespace, *, batch_size: int):
    """The Summarizer the shared options ask for; bad option values and unloadable models become UserErrors."""
    from ..checkpoint.hub import is_local
    from ..errors import ModelLoadError
    from ..pipeline.summarizer import Summarizer

    try:
        return Summarizer(args.model, dtype=args.dtype, device=args.device, quantize=args.quantize,
                          threads=args.threads, batch_size=batch_size, long_input=args.long_input,
                          chunk_overlap=args.chunk_overlap, newlines=args.newlines, num_beams=args.num_beams,
                          length_penalty=args.length_penalty, max_length=args.max_length, min_length=args.min_length,
                          no_repeat_ngram_size=args.no_repeat_ngram_size,
                          cross_attention_cache=args.cross_attention_cache)
    except ModelLoadError as error:
        raise UserError(str(error) if is_local(args.model) else f"{str(error).rstrip('.')} (--model FOLDER).") from None
    except ValueError as error:
        raise UserError(str(error)) from None
