"""Load what the pipeline runs: the summarization model and its tokenizer, by name, with errors that say what
to do; dtype, device and quantization options by name."""

from __future__ import annotations

import os
import warnings

import torch

from ..checkpoint.hub import is_local
from ..errors import ModelLoadError
from ..heads.conditional_generation import BigBirdPegasusForConditionalGeneration
from ..modeling.linear import slow_products_reason
from ..modeling.quantization import quantize_int8
from ..text.tokenizer import PegasusTokenizer

DEFAULT_MODEL = "google/bigbird-pegasus-large-arxiv"
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}
# quantize: name -> quantize_int8's keywords ("int8": the fastest int8 path; with the encoder in bf16, fastest
# where the CPU has AMX or AVX512-BF16)
QUANTIZATIONS = {"int8": {}, "int8-bf16-encoder": {"encoder_dtype": torch.bfloat16}}
_LOAD_ERRORS = (OSError, ValueError, RuntimeError, KeyError)


def load_model(name_or_path: str | os.PathLike, *, dtype: str | torch.dtype | None = None,
               device: str | torch.device | None = None,
               quantize: str | None = None) -> BigBirdPegasusForConditionalGeneration:
    """The checkpoint in eval mode; a ModelLoadError that says what is wrong when it cannot be loaded. A warning
    where the dtype asked for runs several times slower than fp32 on this CPU.

    quantize: None, or a name of QUANTIZATIONS ("int8": `quantize_int8(model)`; "int8-bf16-encoder": with the
    encoder in bf16), applied after loading; it needs the CPU and fp32 weights (the default dtype then)."""
    dtype, device = parse_dtype(dtype), resolve_device(device)
    if quantize is not None:
        check_quantization(quantize, dtype=dtype, device=device)  # before the weights are read
        dtype = torch.float32
    if device.type == "cpu" and (reason := slow_products_reason(dtype)) is not None:
        warnings.warn(f"dtype {str(dtype).removeprefix('torch.')}: {reason}", RuntimeWarning, stacklevel=2)
    try:
        model = BigBirdPegasusForConditionalGeneration.from_pretrained(name_or_path, dtype=dtype, device=device)
    except _LOAD_ERRORS as error:
        raise ModelLoadError(f"cannot load the model {str(name_or_path)!r}: {_with_hub_hint(error, name_or_path)}"
                             ) from error
    return model if quantize is None else quantized(model, quantize)


def check_quantization(quantize: str, *, dtype: torch.dtype | None, device: torch.device) -> None:
    """A ValueError unless `quantize` names a quantization (QUANTIZATIONS) that can start from a model in `dtype`
    (None: any, it is loaded in fp32) on `device`."""
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantize!r}; use one of {', '.join(QUANTIZATIONS)}")
    if device.type != "cpu":
        raise ValueError(f"quantization {quantize!r} runs on the CPU, not on {device}: use device 'cpu'")
    if dtype not in (None, torch.float32):
        raise ValueError(f"quantization {quantize!r} starts from fp32 weights, not {str(dtype).removeprefix('torch.')}"
                         ": leave the dtype unset or use float32")


def quantized(model: BigBirdPegasusForConditionalGeneration, quantize: str) -> BigBirdPegasusForConditionalGeneration:
    """The model quantized in place as `quantize` (a name of QUANTIZATIONS) says; returns it."""
    check_quantization(quantize, dtype=model.dtype, device=model.device)
    return quantize_int8(model, **QUANTIZATIONS[quantize])


def load_tokenizer(name_or_path: str | os.PathLike) -> PegasusTokenizer:
    """The tokenizer saved with a checkpoint; a ModelLoadError when there is none."""
    try:
        return PegasusTokenizer.from_pretrained(name_or_path)
    except _LOAD_ERRORS as error:
        raise ModelLoadError(f"cannot load the tokenizer of {str(name_or_path)!r}: "
                             f"{_with_hub_hint(error, name_or_path)}") from error


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """A torch dtype from its name ("float32", "bf16", ...); None stays None (the checkpoint's own dtype)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """A usable torch device: None means "cuda" when available, else "cpu"; an unusable one raises ValueError."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {str(device)!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but this machine (or this torch build) has no CUDA GPU")
    return device


def _with_hub_hint(error: Exception, name_or_path: str | os.PathLike) -> str:
    """The error's message, followed for a hub id by what to do when the checkpoint is not at hand."""
    if is_local(name_or_path):
        return str(error)
    return (f"{str(error).rstrip('.')}. Hub checkpoints (about 2.3 GB for {DEFAULT_MODEL}) are downloaded on first "
            f"use and cached; without a network, fetch it where there is one (`hf download {name_or_path} "
            "--local-dir FOLDER`), copy the folder here and load it from there.")


def check_vocabulary(tokenizer: PegasusTokenizer, *, model: BigBirdPegasusForConditionalGeneration,
                     source: str | os.PathLike) -> None:
    """Refuse a tokenizer whose ids do not fit the model's embedding table."""
    if len(tokenizer) > model.config.vocab_size:
        raise ModelLoadError(f"the tokenizer of {str(source)!r} has {len(tokenizer)} tokens but the model's vocabulary "
                             f"has {model.config.vocab_size}: they do not belong together")
