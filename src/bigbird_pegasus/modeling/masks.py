"""Additive attention masks for SDPA: padding, causal, built once per forward and shared by the layers."""

from __future__ import annotations

import torch


def masked_bias(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """bool mask -> additive bias of the same shape: 0 where allowed, the dtype's minimum elsewhere."""
    bias = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return bias.masked_fill_(~allowed, torch.finfo(dtype).min)


def padding_bias(key_valid: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(b, n) bool, True for real tokens -> additive (b, 1, 1, n) bias: 0 for real keys, the dtype's
    minimum for padding (the reference's value for full attention)."""
    if key_valid is None:
        return None
    return masked_bias(key_valid, dtype)[:, None, None, :]


def causal_bias(query_len: int, *, past_len: int, key_valid: torch.Tensor | None, dtype: torch.dtype,
                device: torch.device) -> tuple[torch.Tensor | None, bool]:
    """Decoder self-attention mask as (bias, is_causal) for SDPA.

    key_valid: (b, past_len + query_len) bool or None. Without padding, a prompt from position 0 uses
    SDPA's own causal mask and a single new token needs none; otherwise an additive (b|1, 1, tq, tk) bias.
    """
    if key_valid is None and past_len == 0:
        return None, query_len > 1
    if key_valid is None and query_len == 1:
        return None, False
    keys = torch.arange(past_len + query_len, device=device)
    queries = torch.arange(past_len, past_len + query_len, device=device)
    allowed = (keys[None, :] <= queries[:, None])[None, None]                   # (1, 1, tq, tk)
    if key_valid is not None:
        allowed = allowed & key_valid[:, None, None, :].bool()                  # (b, 1, tq, tk)
    return masked_bias(allowed, dtype), False
