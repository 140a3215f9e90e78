"""Attention: the encoder's full and block-sparse self-attention, the decoder's cached self-attention and
its cross-attention. Every path ends in `torch.nn.functional.scaled_dot_product_attention`."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .cache import CrossAttentionCache, DecoderCache
from .layout import BlockLayout
from .linear import Linear


# -- masks, built once per forward ----------------------------------------------------------------------

def padding_bias(key_valid: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(b, n) bool, True for real tokens -> additive (b, 1, 1, n) bias: 0 for real keys, the dtype's
    minimum for padding (the reference's value for full attention)."""
    if key_valid is None:
        return None
    return masked_bias(key_valid, dtype)[:, None, None, :]


def masked_bias(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """bool mask -> additive bias of the same shape: 0 where allowed, the dtype's minimum elsewhere."""
    bias = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return bias.masked_fill_(~allowed, torch.finfo(dtype).min)


@dataclass
class SparseMasks:
    """What block-sparse attention needs for one layout, built once per forward.

    Every query block q gets W key blocks (rows 0 and nb-1 reuse rows 1 and nb-2: they are recomputed
    as global blocks, and one batched call over all nb rows avoids copying the queries).
    block_index: rows of the key blocks to gather, (nb * W,) into (b, nb, bs*h*d) when the heads share
        the layout, else (nb * h * W,) into head-major (b, nb*h, bs, d).
    row_bias: (b * nb, H, 1, W * bs) additive: log(count) for each key, the dtype's minimum for padding
        and unused slots; H is 1 when the heads share the layout.
    global_bias: (b, 1, 1, n) padding bias for the two global query blocks, or None without padding.
    query_keep: (b, n, 1) 1.0 for real queries, 0.0 for padding (the reference zeroes their output).
    workspace: buffers for the gathered keys and values, reused by the layers of one forward.
    """

    block_index: torch.Tensor
    row_bias: torch.Tensor
    global_bias: torch.Tensor | None
    query_keep: torch.Tensor | None
    width: int
    shared_by_heads: bool
    workspace: dict[str, torch.Tensor] = field(default_factory=dict)


def sparse_masks(layout: BlockLayout, key_valid: torch.Tensor | None, batch_size: int, num_heads: int,
                 block_size: int, dtype: torch.dtype) -> SparseMasks:
    """key_valid: (b, n) bool over the padded length, or None when no token is padding."""
    key_blocks = torch.cat([layout.key_blocks[:1], layout.key_blocks, layout.key_blocks[-1:]])   # (nb, H, W)
    counts = torch.cat([layout.counts[:1], layout.counts, layout.counts[-1:]])
    num_blocks, layout_heads, width = key_blocks.shape
    shared_by_heads = layout_heads == 1
    if shared_by_heads:
        block_index = key_blocks[:, 0].reshape(-1)
    else:
        heads = torch.arange(num_heads, device=key_blocks.device)
        block_index = (key_blocks * num_heads + heads[None, :, None]).reshape(-1)
    allowed = (counts > 0)[None, :, :, :, None]                                  # (1, nb, H, W, 1)
    if key_valid is not None:
        blocks_valid = key_valid.view(batch_size, num_blocks, block_size)       # (b, nb, bs)
        allowed = allowed & blocks_valid[:, key_blocks]                         # (b, nb, H, W, bs)
    log_counts = counts.clamp(min=1).log().to(dtype)[None, :, :, :, None]
    bias = log_counts.masked_fill(~allowed, torch.finfo(dtype).min)
    bias = bias.expand(batch_size, num_blocks, layout_heads, width, block_size)
    row_bias = bias.reshape(batch_size * num_blocks, layout_heads, 1, width * block_size)
    query_keep = None if key_valid is None else key_valid[:, :, None].to(dtype)
    return SparseMasks(block_index, row_bias, padding_bias(key_valid, dtype), query_keep, width, shared_by_heads)


def causal_bias(query_len: int, past_len: int, key_valid: torch.Tensor | None, dtype: torch.dtype,
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


# -- encoder self-attention -----------------------------------------------------------------------------

class QueryKeyValue(nn.Module):
    """The encoder's query/key/value projections (state-dict names `self.query` ... as the reference)."""

    def __init__(self, d_model: int, bias: bool):
        super().__init__()
        self.query = Linear(d_model, d_model, bias=bias)
        self.key = Linear(d_model, d_model, bias=bias)
        self.value = Linear(d_model, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.query(x), self.key(x), self.value(x)


class EncoderAttention(nn.Module):
    """Encoder self-attention, full or block-sparse depending on the masks it is given."""

    def __init__(self, d_model: int, num_heads: int, block_size: int, bias: bool, dropout: float):
        super().__init__()
        self.self = QueryKeyValue(d_model, bias)
        self.output = Linear(d_model, d_model, bias=bias)
        self.num_heads = num_heads
        self.block_size = block_size
        self.dropout = dropout

    def forward(self, x: torch.Tensor, masks: SparseMasks | torch.Tensor | None) -> torch.Tensor:
        """x: (b, n, d_model); masks: SparseMasks for block-sparse, else a padding bias or None."""
        q, k, v = self.self(x)
        if isinstance(masks, SparseMasks):
            context = block_sparse_attention(q, k, v, masks, self.num_heads, self.block_size)
        else:
            dropout = self.dropout if self.training else 0.0
            context = full_attention(q, k, v, masks, self.num_heads, dropout)
        return self.output(context)


def full_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
                   num_heads: int, dropout: float = 0.0) -> torch.Tensor:
    """q, k, v: (b, n, h * d); bias: (b, 1, 1, n) or None -> (b, n, h * d)."""
    b, n, hidden = q.shape
    q, k, v = (t.view(b, n, num_heads, -1).transpose(1, 2) for t in (q, k, v))    # (b, h, n, d)
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
    return context.transpose(1, 2).reshape(b, n, hidden)


def block_sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, masks: SparseMasks,
                           num_heads: int, block_size: int) -> torch.Tensor:
    """BigBird ITC attention. q, k, v: (b, n, h * d) with n a multiple of block_size -> (b, n, h * d).

    One batched SDPA call for every query block over its gathered key blocks (a single gather, no loop
    over blocks), one for the two global query blocks over all keys; then the global rows replace
    theirs.
    """
    b, n, hidden = q.shape
    h, bs = num_heads, block_size
    d, nb = hidden // h, n // bs

    q_rows = q.view(b * nb, bs, h, d).transpose(1, 2)                                   # (b*nb, h, bs, d)
    k_rows = _gather_key_blocks(k, masks, "keys", b, nb, bs, h, d)                      # (b*nb, h, W*bs, d)
    v_rows = _gather_key_blocks(v, masks, "values", b, nb, bs, h, d)
    rows = F.scaled_dot_product_attention(q_rows, k_rows, v_rows, attn_mask=masks.row_bias)
    rows = rows.transpose(1, 2).reshape(b, nb, bs, hidden)                              # (b, nb, bs, h*d)

    q_global = q.view(b, nb, bs, h, d)[:, [0, nb - 1]].reshape(b, 2 * bs, h, d).transpose(1, 2)
    k_all = k.view(b, n, h, d).transpose(1, 2)                                          # (b, h, n, d)
    v_all = v.view(b, n, h, d).transpose(1, 2)
    global_rows = F.scaled_dot_product_attention(q_global, k_all, v_all, attn_mask=masks.global_bias)
    global_rows = global_rows.transpose(1, 2).reshape(b, 2, bs, hidden)                  # (b, 2, bs, h*d)

    context = torch.cat([global_rows[:, :1], rows[:, 1:-1], global_rows[:, 1:]], dim=1).view(b, n, hidden)
    if masks.query_keep is not None:
        context = context * masks.query_keep
    return context


def _gather_key_blocks(x: torch.Tensor, masks: SparseMasks, name: str, b, nb, bs, h, d) -> torch.Tensor:
    """x: (b, n, h * d) -> the W key blocks of every query block, (b * nb, h, W * bs, d)."""
    width = masks.width
    if masks.shared_by_heads:
        blocks = x.reshape(b, nb, bs * h * d)                                            # all heads at once
        gathered = _select_blocks(blocks, masks, name)                                   # (b, nb*W, bs*h*d)
        return gathered.view(b * nb, width * bs, h, d).transpose(1, 2)
    blocks = x.view(b, nb, bs, h, d).transpose(2, 3).reshape(b, nb * h, bs, d)           # head-major
    gathered = _select_blocks(blocks, masks, name)                                       # (b, nb*h*W, bs, d)
    return gathered.view(b * nb, h, width * bs, d)


def _select_blocks(blocks: torch.Tensor, masks: SparseMasks, name: str) -> torch.Tensor:
    """blocks.index_select(1, masks.block_index), written into a buffer that every layer of the forward reuses
    when no gradient is recorded: a fresh ~80 MB buffer per layer (4096 tokens, large config) is paid for in
    page faults, about a tenth of the encoder's time."""
    if torch.is_grad_enabled() or torch.compiler.is_compiling():
        return blocks.index_select(1, masks.block_index)
    shape = (blocks.shape[0], masks.block_index.numel(), *blocks.shape[2:])
    buffer = masks.workspace.get(name)
    if buffer is None or buffer.shape != shape or buffer.dtype != blocks.dtype:
        buffer = masks.workspace[name] = blocks.new_empty(shape)
    return torch.index_select(blocks, 1, masks.block_index, out=buffer)


# -- decoder attention ----------------------------------------------------------------------------------

class DecoderAttention(nn.Module):
    """Multi-head attention with the reference's `q_proj`/`k_proj`/`v_proj`/`out_proj` names, used for
    the decoder's causal self-attention and for its cross-attention over the encoder output."""

    def __init__(self, d_model: int, num_heads: int, bias: bool, dropout: float):
        super().__init__()
        self.q_proj = Linear(d_model, d_model, bias=bias)
        self.k_proj = Linear(d_model, d_model, bias=bias)
        self.v_proj = Linear(d_model, d_model, bias=bias)
        self.out_proj = Linear(d_model, d_model, bias=bias)
        self.num_heads = num_heads
        self.dropout = dropout

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, -1).transpose(1, 2)                        # (b, h, t, d)

    def _merge(self, context: torch.Tensor) -> torch.Tensor:
        b, _, t, _ = context.shape
        return self.out_proj(context.transpose(1, 2).reshape(b, t, -1))                 # (b, t, h*d)

    def self_attention(self, x: torch.Tensor, bias: torch.Tensor | None, is_causal: bool,
                       cache: DecoderCache | None, layer: int, position: torch.Tensor | None = None) -> torch.Tensor:
        """x: (b, t, d_model) -> (b, t, d_model); appends this step's keys/values to `cache`, or writes them at
        `position` (a 0-d tensor) of its preallocated buffers for a static-shape step."""
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        if cache is not None and position is not None:
            k, v = cache.write_at(layer, k, v, position)
        elif cache is not None:
            k, v = cache.append(layer, k, v)
        dropout = self.dropout if self.training else 0.0
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout, is_causal=is_causal)
        return self._merge(context)

    def cross_attention(self, x: torch.Tensor, encoder_states: torch.Tensor | None, bias: torch.Tensor | None,
                        cache: DecoderCache | None, layer: int) -> torch.Tensor:
        """x: (b, t, d_model) over encoder_states (docs, s, d_model) with b = docs * beams -> (b, t, d_model).

        Keys/values are projected once per document and kept in `cache` (those its `cross_attention_cache`
        keeps; see `folded_cross_attention` for the others); the beams of a document share them.
        bias: (docs, 1, 1, s) or None.
        """
        q = self._heads(self.q_proj(x))                                                 # (b, h, t, d)
        dropout = self.dropout if self.training else 0.0
        if cache is not None and cache.cross_attention_cache is not CrossAttentionCache.KEYS_AND_VALUES:
            values = None
            if cache.cross_attention_cache is CrossAttentionCache.VALUES:
                values = self._cross_projection(self.v_proj, encoder_states, cache.cross_values, layer)
            return self._merge(self.folded_cross_attention(q, encoder_states, values, bias, dropout))
        k = self._cross_projection(self.k_proj, encoder_states, None if cache is None else cache.cross_keys, layer)
        v = self._cross_projection(self.v_proj, encoder_states, None if cache is None else cache.cross_values, layer)
        return self._merge(grouped_attention(q, k, v, bias, dropout))

    def _cross_projection(self, projection: nn.Module, encoder_states: torch.Tensor,
                          cached: list[torch.Tensor | None] | None, layer: int) -> torch.Tensor:
        """Keys or values (docs, h, s, d) of the encoder states, from `cached[layer]` or projected (and kept
        there, contiguous once: every later step reads them; strided: ~20% slower attention)."""
        if cached is not None and cached[layer] is not None:
            return cached[layer]
        projected = self._heads(projection(encoder_states))
        if cached is not None:
            projected = cached[layer] = projected.contiguous()
        return projected

    def folded_cross_attention(self, q: torch.Tensor, encoder_states: torch.Tensor, values: torch.Tensor | None,
                               bias: torch.Tensor | None, dropout: float) -> torch.Tensor:
        """Cross-attention without projected keys: q (docs * g, h, t, d) over encoder_states (docs, s, d_model),
        values (docs, h, s, d), or None to fold W_v too -> context (docs * g, h, t, d).

        Per head, q . (W_k e + b_k) = (W_k^T q) . e + q . b_k: the last term is the same for every key, and the
        softmax ignores it; so the queries are mapped into the model dimension and scored against the states.
        Likewise sum_s p_s (W_v e_s + b_v) = W_v (sum_s p_s e_s) + b_v, since the weights p sum to one.
        """
        b, h, t, d = q.shape
        docs, s, width = encoder_states.shape
        groups = b // docs
        w_k = self.k_proj.weight.view(h, d, width)                                     # (h, d, d_model)
        queries = torch.einsum("bhtd,hdm->bhtm", q * d ** -0.5, w_k)                  # (b, h, t, d_model)
        queries = queries.view(docs, groups, h, t, width).transpose(1, 2)              # (docs, h, g, t, d_model)
        queries = queries.reshape(docs, h * groups * t, width)                         # (docs, h*g*t, d_model)
        scores = torch.bmm(queries, encoder_states.transpose(1, 2))                    # (docs, h*g*t, s)
        if bias is not None:
            scores = scores + bias[:, 0]                                               # bias (docs, 1, s)
        weights = F.dropout(torch.softmax(scores, -1, dtype=torch.float32).to(q.dtype), dropout, dropout > 0)
        if values is not None:
            context = torch.matmul(weights.view(docs, h, groups * t, s), values)       # (docs, h, g*t, d)
        else:
            mixed = torch.bmm(weights, encoder_states).view(docs, h, groups * t, width)  # (docs, h, g*t, d_model)
            w_v = self.v_proj.weight.view(h, d, width)                                 # (h, d, d_model)
            context = torch.einsum("xhtm,hdm->xhtd", mixed, w_v)                       # (docs, h, g*t, d)
            if self.v_proj.bias is not None:
                context = context + self.v_proj.bias.view(h, 1, d)
        return context.view(docs, h, groups, t, d).transpose(1, 2).reshape(b, h, t, d)       # (b, h, t, d)


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
                      dropout: float = 0.0) -> torch.Tensor:
    """q: (docs * g, h, t, d) attending to k, v: (docs, h, s, d), the g query rows of a document sharing
    its keys without copying them -> (docs * g, h, t, d)."""
    docs = k.shape[0]
    groups = q.shape[0] // docs
    if groups == 1:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
    _, h, t, d = q.shape
    q = q.view(docs, groups, h, t, d).transpose(1, 2).reshape(docs, h, groups * t, d)   # (docs, h, g*t, d)
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
    return context.view(docs, h, groups, t, d).transpose(1, 2).reshape(docs * groups, h, t, d)
