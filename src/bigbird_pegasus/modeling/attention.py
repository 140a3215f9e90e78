"""Attention: the encoder's self-attention (full, or block-sparse through `block_sparse.py`), the decoder's
cached self-attention and its cross-attention. Every path ends in
`torch.nn.functional.scaled_dot_product_attention`, except the decoding steps' cross-attention on the CPU, whose
few query rows per document take `few_query_attention`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import kernels
from .attention_weights import block_sparse_weights, eager_attention
from .block_sparse import SparseMasks, block_sparse_attention
from .cache import CrossAttentionCache, DecoderCache
from .linear import Linear


# -- encoder self-attention -----------------------------------------------------------------------------

class QueryKeyValue(nn.Module):
    """The encoder's query/key/value projections (state-dict names `self.query` ... as the reference)."""

    def __init__(self, d_model: int, *, bias: bool):
        super().__init__()
        self.query = Linear(d_model, d_model, bias=bias)
        self.key = Linear(d_model, d_model, bias=bias)
        self.value = Linear(d_model, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.query(x), self.key(x), self.value(x)


class EncoderAttention(nn.Module):
    """Encoder self-attention, full or block-sparse depending on the masks it is given."""

    def __init__(self, d_model: int, *, num_heads: int, block_size: int, bias: bool, dropout: float):
        super().__init__()
        self.self = QueryKeyValue(d_model, bias=bias)
        self.output = Linear(d_model, d_model, bias=bias)
        self.num_heads = num_heads
        self.block_size = block_size
        self.dropout = dropout

    def forward(self, x: torch.Tensor, *, masks: SparseMasks | torch.Tensor | None,
                record: list[torch.Tensor] | None = None) -> torch.Tensor:
        """x: (b, n, d_model); masks: SparseMasks for block-sparse, else a padding bias or None. With a `record`
        list, the probabilities (b, h, n, n) are appended to it (the exact path of `attention_weights.py`)."""
        q, k, v = self.self(x)
        dropout = self.dropout if self.training else 0.0
        if isinstance(masks, SparseMasks):
            context = block_sparse_attention(q, k, v, masks=masks, num_heads=self.num_heads,
                                             block_size=self.block_size)
            if record is not None:
                record.append(block_sparse_weights(q, k, masks=masks, num_heads=self.num_heads,
                                                   block_size=self.block_size))
        elif record is not None:
            context = self._recorded_full_attention(q, k, v, bias=masks, dropout=dropout, record=record)
        else:
            context = full_attention(q, k, v, bias=masks, num_heads=self.num_heads, dropout=dropout)
        return self.output(context)

    def _recorded_full_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                                 bias: torch.Tensor | None, dropout: float, record: list[torch.Tensor]) -> torch.Tensor:
        """full_attention through the exact path, its probabilities appended to `record`."""
        b, n, hidden = q.shape
        q, k, v = (t.view(b, n, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))    # (b, h, n, d)
        context, weights = eager_attention(q, k, v, bias=bias, dropout=dropout)
        record.append(weights)
        return context.transpose(1, 2).reshape(b, n, hidden)


def full_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, bias: torch.Tensor | None,
                   num_heads: int, dropout: float = 0.0) -> torch.Tensor:
    """q, k, v: (b, n, h * d); bias: (b, 1, 1, n) or None -> (b, n, h * d)."""
    b, n, hidden = q.shape
    q, k, v = (t.view(b, n, num_heads, -1).transpose(1, 2) for t in (q, k, v))    # (b, h, n, d)
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
    return context.transpose(1, 2).reshape(b, n, hidden)


# -- decoder attention ----------------------------------------------------------------------------------

class DecoderAttention(nn.Module):
    """Multi-head attention with the reference's `q_proj`/`k_proj`/`v_proj`/`out_proj` names, used for
    the decoder's causal self-attention and for its cross-attention over the encoder output."""

    def __init__(self, d_model: int, *, num_heads: int, bias: bool, dropout: float):
        super().__init__()
        self.q_proj = Linear(d_model, d_model, bias=bias)
        self.k_proj = Linear(d_model, d_model, bias=bias)
        self.v_proj = Linear(d_model, d_model, bias=bias)
        self.out_proj = Linear(d_model, d_model, bias=bias)
        self.num_heads = num_heads
        self.dropout = dropout
        # The dtype cross-attention keys/values are cached and attended in (None: the activations'); a smaller one
        # halves what each decoding step reads (see `quantization.reduce_cross_attention_cache`).
        self.cache_dtype: torch.dtype | None = None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, -1).transpose(1, 2)                        # (b, h, t, d)

    def _merge(self, context: torch.Tensor) -> torch.Tensor:
        b, _, t, _ = context.shape
        return self.out_proj(context.transpose(1, 2).reshape(b, t, -1))                 # (b, t, h*d)

    def self_attention(self, x: torch.Tensor, *, bias: torch.Tensor | None, is_causal: bool,
                       cache: DecoderCache | None, layer: int, position: torch.Tensor | None = None,
                       record: list[torch.Tensor] | None = None) -> torch.Tensor:
        """x: (b, t, d_model) -> (b, t, d_model); appends this step's keys/values to `cache`, or writes them at
        `position` (a 0-d tensor) of its preallocated buffers for a static-shape step. With a `record` list, the
        probabilities (b, h, t, past + t) are appended to it (the exact path)."""
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        if cache is not None and position is not None and record is None and self._steps_by_origins(q, cache, layer,
                                                                                                    bias=bias):
            stored_keys, stored_values, origins = cache.stored_for_step(layer, keys=k, values=v, position=position)
            return self._merge(kernels.self_attention(q, stored_keys, stored_values, origins=origins,
                                                      length=int(position) + 1, bias=bias))
        if cache is not None and position is not None:
            k, v = cache.write_at(layer, keys=k, values=v, position=position)
        elif cache is not None:
            k, v = cache.append(layer, keys=k, values=v)
        dropout = self.dropout if self.training else 0.0
        if record is not None:
            context, weights = eager_attention(q, k, v, bias=bias, is_causal=is_causal, dropout=dropout)
            record.append(weights)
            return self._merge(context)
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout, is_causal=is_causal)
        return self._merge(context)

    def _steps_by_origins(self, q: torch.Tensor, cache: DecoderCache, layer: int, *,
                          bias: torch.Tensor | None) -> bool:
        """Whether a decoding step's self-attention takes the CPU kernel, which reads each beam's past through the
        cache's origins (so that beam search moves no keys): inference, the cache's buffers and bias as it takes."""
        stored_keys, stored_values = cache.stored(layer)
        return (not self.training and stored_keys is not None and not torch.compiler.is_compiling()
                and kernels.serves_self_attention(q, stored_keys, stored_values, bias))

    def cross_attention(self, x: torch.Tensor, *, encoder_states: torch.Tensor | None, bias: torch.Tensor | None,
                        cache: DecoderCache | None, layer: int,
                        record: list[torch.Tensor] | None = None) -> torch.Tensor:
        """x: (b, t, d_model) over encoder_states (docs, s, d_model) with b = docs * beams -> (b, t, d_model).

        Keys/values are projected once per document and kept in `cache` (those its `cross_attention_cache`
        keeps; see `folded_cross_attention` for the others); the beams of a document share them.
        bias: (docs, 1, 1, s) or None. With a `record` list, the probabilities (b, h, t, s) are appended to it
        (the exact path, over projected keys and values whatever the cache keeps).
        """
        q = self._heads(self.q_proj(x))                                                 # (b, h, t, d)
        dropout = self.dropout if self.training else 0.0
        if record is not None:
            return self._merge(self._recorded_cross_attention(q, encoder_states=encoder_states, bias=bias,
                                                              cache=cache, layer=layer, dropout=dropout, record=record))
        if cache is not None and cache.cross_attention_cache is not CrossAttentionCache.KEYS_AND_VALUES:
            values = None
            if cache.cross_attention_cache is CrossAttentionCache.VALUES:
                values = self._cross_projection(self.v_proj, encoder_states=encoder_states,
                                                cached=cache.cross_values, layer=layer)
            return self._merge(self.folded_cross_attention(q, encoder_states=encoder_states, values=values,
                                                           bias=bias, dropout=dropout))
        dtype = self.cache_dtype or q.dtype
        k = self._cross_projection(self.k_proj, encoder_states=encoder_states,
                                   cached=None if cache is None else cache.cross_keys, layer=layer, dtype=dtype,
                                   position_minor=True)
        v = self._cross_projection(self.v_proj, encoder_states=encoder_states,
                                   cached=None if cache is None else cache.cross_values, layer=layer, dtype=dtype)
        return self._merge(grouped_attention(q, k, v, bias=bias, dropout=dropout))

    def _recorded_cross_attention(self, q: torch.Tensor, *, encoder_states: torch.Tensor, bias: torch.Tensor | None,
                                  cache: DecoderCache | None, layer: int, dropout: float,
                                  record: list[torch.Tensor]) -> torch.Tensor:
        """Cross-attention through the exact path over projected keys and values (kept in `cache` as far as it
        keeps them), its probabilities appended to `record`; in `cache_dtype` where the fast path uses it.
        q (b, h, t, d) -> context (b, h, t, d)."""
        kept = CrossAttentionCache.NONE if cache is None else cache.cross_attention_cache
        keys = cache.cross_keys if kept is CrossAttentionCache.KEYS_AND_VALUES else None
        values = None if kept is CrossAttentionCache.NONE else cache.cross_values
        as_fast_path = cache is None or kept is CrossAttentionCache.KEYS_AND_VALUES
        dtype = self.cache_dtype if as_fast_path and self.cache_dtype is not None else q.dtype
        k = self._cross_projection(self.k_proj, encoder_states=encoder_states, cached=keys, layer=layer, dtype=dtype,
                                   position_minor=True)
        v = self._cross_projection(self.v_proj, encoder_states=encoder_states, cached=values, layer=layer,
                                   dtype=dtype)
        narrow_q, narrow_bias = in_dtype(q, bias, dtype=dtype)
        context, weights = eager_attention(narrow_q, k, v, bias=narrow_bias, dropout=dropout)
        record.append(weights.to(q.dtype))
        return context.to(q.dtype)

    def _cross_projection(self, projection: nn.Module, *, encoder_states: torch.Tensor,
                          cached: list[torch.Tensor | None] | None, layer: int,
                          dtype: torch.dtype | None = None, position_minor: bool = False) -> torch.Tensor:
        """Keys or values (docs, h, s, d) of the encoder states in `dtype` (default: theirs), from `cached[layer]`
        or projected (and kept there, laid out once for the steps that read them: contiguous, or with
        `position_minor` on the CPU (`_position_minor`), which `few_query_attention` scores faster)."""
        if cached is not None and cached[layer] is not None:
            return cached[layer]
        cpu_keys = position_minor and encoder_states.device.type == "cpu"  # GPU kernels want them contiguous
        if cached is not None and cpu_keys and _projects_transposed(projection, encoder_states):
            projected = cached[layer] = _projected_position_minor(projection, encoder_states, heads=self.num_heads,
                                                                  dtype=dtype or encoder_states.dtype)
            return projected
        projected = self._heads(projection(encoder_states)).to(dtype or encoder_states.dtype)
        if cached is not None:
            projected = cached[layer] = _position_minor(projected) if cpu_keys else projected.contiguous()
        return projected

    def folded_cross_attention(self, q: torch.Tensor, *, encoder_states: torch.Tensor, values: torch.Tensor | None,
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


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, bias: torch.Tensor | None,
                      dropout: float = 0.0) -> torch.Tensor:
    """q: (docs * g, h, t, d) attending to k, v: (docs, h, s, d), the g query rows of a document sharing
    its keys without copying them -> (docs * g, h, t, d) in q's dtype; k and v may be kept in a narrower dtype."""
    docs = k.shape[0]
    groups = q.shape[0] // docs
    _, h, t, d = q.shape
    if groups > 1:
        q = q.view(docs, groups, h, t, d).transpose(1, 2).reshape(docs, h, groups * t, d)   # (docs, h, g*t, d)
    if _few_queries(q, k, v, dropout=dropout):
        context = few_query_attention(q, k, v, bias=bias)
    else:
        narrow_q, narrow_bias = in_dtype(q, bias, dtype=k.dtype)
        context = F.scaled_dot_product_attention(narrow_q, k, v, attn_mask=narrow_bias, dropout_p=dropout)
        context = context.to(q.dtype)
    if groups == 1:
        return context
    return context.view(docs, h, groups, t, d).transpose(1, 2).reshape(docs * groups, h, t, d)


def few_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                        bias: torch.Tensor | None) -> torch.Tensor:
    """Softmax attention of a few query rows q (b, h, r, d) over k, v (b, h, s, d), kept in q's dtype or a narrower
    one, bias broadcastable to (b, h, r, s) or None -> (b, h, r, d) in q's dtype.

    The CPU kernel where it serves (`kernels.attention`: fp32 queries, keys position-minor, head size 64), which
    reads the keys and the values once at near bandwidth, in fp32 throughout. Otherwise two batched products, the
    scores in the keys' dtype, the softmax in fp32: on the CPU they read long keys/values faster than SDPA's fused
    kernel does for a few rows, the more so over keys laid out position-minor (`_position_minor`): the score product
    then streams whole rows of (d, s)."""
    if not torch.compiler.is_compiling() and kernels.serves_attention(q, k, v, bias):
        return kernels.attention(q, k, v, bias=bias)
    narrow_q, narrow_bias = in_dtype(q, bias, dtype=k.dtype)
    scores = torch.matmul(narrow_q * q.shape[-1] ** -0.5, k.transpose(-1, -2))        # (b, h, r, s)
    if narrow_bias is not None:
        scores = scores + narrow_bias
    weights = torch.softmax(scores, -1, dtype=torch.float32)
    return torch.matmul(weights.to(v.dtype), v).to(q.dtype)


# Up to this many query rows per head (beams x new tokens of a document), `few_query_attention` is no slower than
# SDPA on the CPU over a 4096-token document's keys/values (measured on 2 cores; 32 rows: 20% slower).
FEW_QUERIES = 16


def _few_queries(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, dropout: float) -> bool:
    """Whether `few_query_attention` serves: CPU, inference (SDPA's backward keeps less), no dropout, at most
    FEW_QUERIES rows."""
    return (q.device.type == "cpu" and dropout == 0.0 and q.shape[2] <= FEW_QUERIES
            and not (torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))))


# The cached keys' rows (a head's features, each of s positions) start an odd number of cache lines apart. Rows a
# multiple of 4 KiB apart (s = 4096 in fp32: 16 KiB) fall into the same few sets of the CPU's caches, and the
# attention kernel's scores pass, which reads all 64 rows of a head a line at a time, evicts its own prefetched
# lines: on a 2-core AMD EPYC Zen 3, that pass over a 4096-token document's 16 layers took 14.2-15.1 ms a step with
# the rows padded against 18.5-19.7 unpadded (medians of 25 interleaved, scratch `/tmp/s28/harness_i.c`); the whole
# kernel calls of a step 33.7 against 38.9 ms in fp32, 27.5 against 28.5 in bf16 (medians of 15 alternating,
# `/tmp/s28/attn_ab.py`); whole fp32 steps 87.1 against 88.6 ms, within the noise (12 alternating, `pad_ab.py`).
CACHE_LINE_BYTES = 64


def _padded_length(s: int, element_size: int) -> int:
    """The elements a cached key row of s positions takes: an odd number of cache lines."""
    lines = -(-s * element_size // CACHE_LINE_BYTES)
    lines += 1 - lines % 2
    return lines * CACHE_LINE_BYTES // element_size


def _position_minor_buffer(docs: int, heads: int, d: int, s: int, *, dtype: torch.dtype,
                           device: torch.device) -> torch.Tensor:
    """An empty (docs, heads, d, s) tensor for keys stored position-minor, each row padded (`_padded_length`)."""
    stored = torch.empty(docs, heads, d, _padded_length(s, dtype.itemsize), dtype=dtype, device=device)
    return stored[..., :s]                                                             # (docs, h, d, s), padded rows


def _position_minor(x: torch.Tensor) -> torch.Tensor:
    """x (b, h, s, d) stored (b, h, d, s) with padded rows (`_position_minor_buffer`): the same tensor, its
    positions contiguous per feature."""
    b, h, s, d = x.shape
    stored = _position_minor_buffer(b, h, d, s, dtype=x.dtype, device=x.device)       # (b, h, d, s)
    return stored.copy_(x.transpose(-1, -2)).transpose(-1, -2)                       # (b, h, s, d)


def _projects_transposed(projection: nn.Module, states: torch.Tensor) -> bool:
    """Whether `_projected_position_minor` computes what `projection(states)` would: a plain fp32 linear layer
    without hooks, fp32 states, no gradients."""
    return (type(projection) in (Linear, nn.Linear) and not (projection._forward_hooks
                                                             or projection._forward_pre_hooks)
            and states.dtype == projection.weight.dtype == torch.float32
            and not (torch.is_grad_enabled() and (states.requires_grad or projection.weight.requires_grad)))


def _projected_position_minor(projection: nn.Module, states: torch.Tensor, *, heads: int,
                              dtype: torch.dtype) -> torch.Tensor:
    """projection(states) for states (docs, s, d_model) as keys (docs, h, s, d) stored position-minor (docs, h, d,
    s) with padded rows (`_position_minor_buffer`), in `dtype`: W @ states^T per document writes that layout
    directly (no transposing copy of the keys)."""
    docs, s, _ = states.shape
    weight, bias = projection.weight, projection.bias
    d = weight.shape[0] // heads
    out = _position_minor_buffer(docs, heads, d, s, dtype=states.dtype, device=states.device)  # (docs, h, d, s)
    rows = out.flatten(1, 2)                                                           # (docs, h*d, s), a view
    for doc in range(docs):
        if bias is None:
            torch.mm(weight, states[doc].t(), out=rows[doc])
        else:
            torch.addmm(bias[:, None], weight, states[doc].t(), out=rows[doc])
    if dtype != out.dtype:
        out = _position_minor_buffer(docs, heads, d, s, dtype=dtype, device=states.device).copy_(out)
    return out.transpose(-1, -2)                                                       # (docs, h, s, d)


def in_dtype(q: torch.Tensor, bias: torch.Tensor | None, *,
             dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Queries (b, h, t, d) and an additive bias cast to `dtype` for attention over keys cached in it; the bias
    clamped first (the activations' minimum would overflow to -inf in a narrower dtype)."""
    if dtype == q.dtype:
        return q, bias
    if bias is not None:
        bias = bias.clamp(min=torch.finfo(dtype).min).to(dtype)
    return q.to(dtype), bias
