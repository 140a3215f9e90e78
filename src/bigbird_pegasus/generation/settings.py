"""The settings of one `generate` call: keywords over the passed config over the model's, validated, and the
values the decoding loops need (lengths, special tokens, the decoder prompt)."""

from __future__ import annotations

from typing import Any

import torch

from ..modeling.cache import CrossAttentionCache
from .config import DEFAULT_NEW_TOKENS, GenerationConfig


def resolve_generation_config(model_default: GenerationConfig, *, passed: Any,
                              kwargs: dict[str, Any]) -> tuple[GenerationConfig, bool]:
    """The call's settings: `kwargs` over `passed` over `model_default`, and whether no length was set anywhere.

    `passed` may be our GenerationConfig or any object with `to_dict()` (e.g. the reference's); only the values it
    sets count, i.e. those that differ from GenerationConfig's defaults (the reference: those that are not None).
    """
    fields = GenerationConfig.field_names()
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise ValueError(f"generate() got unknown argument(s) {unknown}: they are neither generation settings "
                         "nor inputs")
    config = model_default
    if passed is not None:
        config = config.update(**{k: v for k, v in passed.to_dict().items() if k in fields})
    config = config.update(**kwargs)
    return config, config.max_length is None


def validate_generation_config(config: GenerationConfig) -> None:
    """Raise a ValueError naming the first setting that cannot work."""
    def require(ok: bool, name: str, reason: str) -> None:
        if not ok:
            raise ValueError(f"{name}={getattr(config, name)!r}: {reason}")

    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    require(is_int(config.num_beams) and config.num_beams >= 1, "num_beams", "must be a positive integer")
    require(is_int(config.num_return_sequences) and config.num_return_sequences >= 1, "num_return_sequences",
            "must be a positive integer")
    if config.num_beams > 1:
        require(config.num_return_sequences <= config.num_beams, "num_return_sequences",
                f"must not exceed num_beams={config.num_beams}")
    else:
        require(config.num_return_sequences == 1 or config.do_sample, "num_return_sequences",
                "greedy search returns one sequence per input: use num_beams > 1 or do_sample=True")
    for name in ("max_length", "max_new_tokens"):
        value = getattr(config, name)
        require(value is None or (is_int(value) and value > 0), name, "must be a positive integer")
    for name in ("min_length", "min_new_tokens", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size"):
        value = getattr(config, name)
        require(value is None or (is_int(value) and value >= 0), name, "must be a non-negative integer")
    require(config.early_stopping is True or config.early_stopping is False or config.early_stopping == "never",
            "early_stopping", 'must be True, False or "never"')
    require(config.repetition_penalty > 0, "repetition_penalty", "must be positive (1.0: no penalty)")
    require(config.bad_words_ids is None or _is_token_lists(config.bad_words_ids), "bad_words_ids",
            "must be a non-empty list of non-empty lists of token ids")
    for name in ("eos_token_id", "forced_eos_token_id"):
        ids = getattr(config, name)
        require(ids is None or all(is_int(i) and i >= 0 for i in _as_list(ids)), name,
                "must be a token id or a list of token ids")
    if config.do_sample:
        require(config.temperature > 0, "temperature", "must be positive when sampling (do_sample=False is greedy)")
        require(config.top_p is None or 0 < config.top_p <= 1, "top_p", "must be in (0, 1] when sampling")
        require(config.top_k is None or (is_int(config.top_k) and config.top_k >= 0), "top_k",
                "must be a non-negative integer (0: no top-k filtering)")


def resolve_cross_attention_cache(value: str | CrossAttentionCache, *,
                                  decoder: torch.nn.Module) -> CrossAttentionCache:
    """The CrossAttentionCache `value` names; a ValueError naming the argument when it names none, or when it folds
    projections that are not plain float weights (an int8-quantized model)."""
    try:
        mode = CrossAttentionCache(value)
    except ValueError:
        choices = ", ".join(repr(choice.value) for choice in CrossAttentionCache)
        raise ValueError(f"cross_attention_cache={value!r}: must be one of {choices}") from None
    if mode is not CrossAttentionCache.KEYS_AND_VALUES and not all(
            _is_float_weight(layer.encoder_attn.k_proj.weight) for layer in decoder.layers):
        raise ValueError(f"cross_attention_cache={mode.value!r} folds the k_proj/v_proj weights into the attention, "
                         "which needs them in floating point: an int8-quantized model keeps 'keys_and_values'")
    return mode


def _is_float_weight(weight: Any) -> bool:
    """Whether a linear layer's `weight` is a floating-point tensor (a method on PyTorch's int8 layers, int8 in
    Int8Linear)."""
    return isinstance(weight, torch.Tensor) and weight.is_floating_point()


def _as_list(ids: int | list[int]) -> list[int]:
    return list(ids) if isinstance(ids, (list, tuple)) else [ids]


def _is_token_lists(value: Any) -> bool:
    return (isinstance(value, list) and len(value) > 0
            and all(isinstance(word, list) and word and all(isinstance(i, int) and i >= 0 for i in word)
                    for word in value))


def special_tokens(config: GenerationConfig, *, device: torch.device) -> tuple[torch.Tensor | None, int | None]:
    """eos ids (n_eos,) or None; the pad id (the first EOS id when unset)."""
    eos_ids = None if config.eos_token_id is None else torch.tensor(_as_list(config.eos_token_id), device=device)
    pad_id = config.pad_token_id
    if pad_id is None and eos_ids is not None:
        pad_id = int(eos_ids[0])
    return eos_ids, pad_id


def mask_from_padding(input_ids: torch.Tensor | None, config: GenerationConfig) -> torch.Tensor | None:
    """The attention mask (b, n) the reference infers for a decoder-only model when none is passed: 0 where
    input_ids hold pad_token_id, when they hold it at all and it is no EOS id; else None (every token attends)."""
    if input_ids is None or input_ids.dim() != 2 or config.pad_token_id is None:
        return None
    if config.eos_token_id is not None and config.pad_token_id in _as_list(config.eos_token_id):
        return None
    is_padding = input_ids == config.pad_token_id
    return (~is_padding).long() if bool(is_padding.any()) else None


def start_token(config: GenerationConfig) -> int:
    """The decoder start id (bos when unset)."""
    start_id = config.decoder_start_token_id if config.decoder_start_token_id is not None else config.bos_token_id
    if start_id is None:
        raise ValueError("decoder_start_token_id: set it (or bos_token_id) to start the decoder")
    return start_id


def decoder_prompt(decoder_input_ids: torch.Tensor | None, *, start_id: int, docs: int, device: torch.device,
                   mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(prompt (docs, p), its mask (docs, p) or None): the start token, or the given prompt with the start token
    prepended where no row begins with it; the given mask (0 on left padding) grown with it, None when it masks
    nothing."""
    start = torch.full((docs, 1), start_id, dtype=torch.long, device=device)
    if decoder_input_ids is None:
        if mask is not None:
            raise ValueError("decoder_attention_mask: pass it with the decoder_input_ids it masks")
        return start, None
    prompt = decoder_input_ids.to(device)
    if prompt.dim() != 2 or prompt.shape[0] != docs:
        raise ValueError(f"decoder_input_ids must be (docs={docs}, p), got shape {tuple(prompt.shape)}")
    if mask is not None and mask.shape != prompt.shape:
        raise ValueError(f"decoder_attention_mask of shape {tuple(mask.shape)} does not match decoder_input_ids "
                         f"{tuple(prompt.shape)}")
    if bool((prompt[:, 0] != start_id).all()):
        prompt = torch.cat([start, prompt], dim=1)
        if mask is not None:
            mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
    if mask is not None and bool(mask.bool().all()):
        mask = None
    return prompt, None if mask is None else mask.to(device)


def resolve_lengths(config: GenerationConfig, *, prompt_length: int, length_is_default: bool,
                    max_positions: int) -> tuple[int, int]:
    """Total decoder lengths (prompt included) (max_length, min_length), as the reference counts them; a
    ValueError when they leave no room for a token or need more than the decoder's `max_positions`."""
    if config.max_new_tokens is not None:
        max_length = prompt_length + config.max_new_tokens
    elif length_is_default:
        max_length = min(prompt_length + DEFAULT_NEW_TOKENS, max_positions)
    else:
        max_length = config.max_length
    if prompt_length >= max_length:
        raise ValueError(f"max_length={max_length}: the decoder prompt already holds {prompt_length} tokens; "
                         "raise max_length or set max_new_tokens")
    if max_length > max_positions:
        raise ValueError(f"a summary of {max_length} tokens (start token included) is longer than the model's "
                         f"{max_positions} positions: lower max_length or max_new_tokens")
    min_length = config.min_length
    if config.min_new_tokens is not None:
        min_length = prompt_length + config.min_new_tokens
    return max_length, min_length
