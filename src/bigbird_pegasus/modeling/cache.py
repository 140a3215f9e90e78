"""The decoder's key/value cache: self-attention written by position, cross-attention computed once."""

from __future__ import annotations

import enum

import torch


class CrossAttentionCache(str, enum.Enum):
    """What generation keeps per document and decoder layer for cross-attention over s encoder states.

    KEYS_AND_VALUES: keys and values projected once (2 * s * d_model numbers): the fastest steps.
    VALUES: values only; W_k is folded into the queries, which are scored against the encoder states
        themselves (half the memory; each step does d_model / head_dim times the score work).
    NONE: nothing beyond the encoder states; W_v is folded into the output too (twice that extra work).
    All three compute the same attention up to float rounding.
    """

    KEYS_AND_VALUES = "keys_and_values"
    VALUES = "values"
    NONE = "none"


class DecoderCache:
    """Per decoder layer: self-attention keys/values (b, h, capacity, d) written at `length`, and the
    cross-attention keys/values (docs, h, source_len, d) projected once from the encoder output, those that
    `cross_attention_cache` keeps (the others stay None).

    Cross-attention entries may have fewer rows than the queries: with beam search, `docs` documents
    are shared by `b = docs * beams` hypotheses (see `DecoderAttention.cross_attention`).

    Beam search reorders the self-attention rows at every step. Once a decoding step's attention has read the cache
    through `stored_for_step` (the CPU kernel, which follows each beam's positions to the rows that wrote them), a
    reorder moves no keys: it only reorders `origins` (rows, capacity), which maps each beam's positions to the stored
    rows. Whatever else reads `self_keys`/`self_values` finds them in beam order (moved there on first read).
    """

    def __init__(self, num_layers: int, *,
                 cross_attention_cache: CrossAttentionCache = CrossAttentionCache.KEYS_AND_VALUES):
        self.cross_attention_cache = CrossAttentionCache(cross_attention_cache)
        self._self_keys: list[torch.Tensor | None] = [None] * num_layers
        self._self_values: list[torch.Tensor | None] = [None] * num_layers
        self.cross_keys: list[torch.Tensor | None] = [None] * num_layers
        self.cross_values: list[torch.Tensor | None] = [None] * num_layers
        # Beam search reorders the self-attention cache into these, then swaps them with the current buffers.
        self._spare_keys: list[torch.Tensor | None] = [None] * num_layers
        self._spare_values: list[torch.Tensor | None] = [None] * num_layers
        self._origins: torch.Tensor | None = None  # (rows, capacity) int64 stored rows; None: in beam order
        self._reorders_origins = False              # set once a step has read the cache through origins
        # (the decoder's layers, laid out for kernels.DecoderStep or None where they do not fit), made at the first
        # decoding step through this cache (modeling/fused_step.py)
        self.fused_step: tuple[object, object] | None = None
        self.length = 0
        self.reserved = 0

    def __len__(self) -> int:
        return len(self._self_keys)

    @property
    def self_keys(self) -> list[torch.Tensor | None]:
        """Per layer, the self-attention keys (b, h, capacity, d) in beam order."""
        self._into_beam_order()
        return self._self_keys

    @property
    def self_values(self) -> list[torch.Tensor | None]:
        """Per layer, the self-attention values (b, h, capacity, d) in beam order."""
        self._into_beam_order()
        return self._self_values

    @property
    def capacity(self) -> int:
        """Positions the self-attention buffers hold (0 before the first write)."""
        keys = self._self_keys[0] if self._self_keys else None
        return 0 if keys is None else keys.shape[2]

    def get_seq_length(self) -> int:
        """Number of decoder positions already cached (the reference's name)."""
        return self.length

    def reserve(self, capacity: int) -> None:
        """Make room for `capacity` positions in every layer, so that appends never reallocate."""
        self.reserved = capacity
        for layer, keys in enumerate(self.self_keys):
            if keys is not None and keys.shape[2] < capacity:
                self._self_keys[layer] = _grown(keys, like=keys, length=self.length, capacity=capacity)
                self._self_values[layer] = _grown(self._self_values[layer], like=keys, length=self.length,
                                                  capacity=capacity)

    def continue_from(self, past: DecoderCache) -> None:
        """Start from a copy of the self-attention positions `past` holds (rows as this cache's queries), in buffers
        of the reserved capacity; `past` is left as it was. Cross-attention entries are computed anew."""
        if len(past) != len(self):
            raise ValueError(f"past_key_values holds {len(past)} layers, the decoder has {len(self)}")
        if past.length >= self.reserved:
            raise ValueError(f"past_key_values holds {past.length} positions: no room left for new ones")
        for layer, keys in enumerate(past.self_keys):
            if past.length and keys is not None:
                self._self_keys[layer] = _grown(keys, like=keys, length=past.length, capacity=self.reserved)
                self._self_values[layer] = _grown(past.self_values[layer], like=keys, length=past.length,
                                                  capacity=self.reserved)
        self.length = past.length

    def append(self, layer: int, *, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this step's (b, h, t, d) keys/values after the cached ones; return all (b, h, length + t, d)."""
        self._into_beam_order()
        start, end = self.length, self.length + keys.shape[2]
        cached = self._self_keys[layer]
        if cached is None and end >= self.reserved:  # a first write that fills all the room asked for
            self._self_keys[layer], self._self_values[layer] = keys, values
            return keys, values
        if cached is None or cached.shape[2] < end:
            capacity = max(end, self.reserved, 2 * start)
            self._self_keys[layer] = _grown(cached, like=keys, length=start, capacity=capacity)
            self._self_values[layer] = _grown(self._self_values[layer], like=keys, length=start, capacity=capacity)
        self._self_keys[layer][:, :, start:end] = keys
        self._self_values[layer][:, :, start:end] = values
        return self._self_keys[layer][:, :, :end], self._self_values[layer][:, :, :end]

    def write_at(self, layer: int, *, keys: torch.Tensor, values: torch.Tensor,
                 position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write one step's (b, h, 1, d) keys/values at `position` (a 0-d tensor) of the reserved buffers and
        return them whole, (b, h, capacity, d), in beam order: static shapes for a compiled decoding step, whose
        causal mask hides the positions not written yet."""
        self._into_beam_order()
        self._self_keys[layer].index_copy_(2, position.view(1), keys)
        self._self_values[layer].index_copy_(2, position.view(1), values)
        return self._self_keys[layer], self._self_values[layer]

    def stored_for_step(self, layer: int, *, keys: torch.Tensor, values: torch.Tensor, position: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Like `write_at`, for an attention that follows `origins`: the buffers (b, h, capacity, d) as stored and
        the origins (b, capacity) (None: in beam order); beam i's position p is in stored row origins[i, p]. From
        then on, `reorder` reorders the origins only."""
        self.reads_through_origins()
        self._self_keys[layer].index_copy_(2, position.view(1), keys)
        self._self_values[layer].index_copy_(2, position.view(1), values)
        return self._self_keys[layer], self._self_values[layer], self._origins

    def stored_buffers(self) -> tuple[list[torch.Tensor | None], list[torch.Tensor | None], torch.Tensor | None]:
        """Every layer's self-attention buffers (b, h, capacity, d) as stored and the origins (b, capacity) (None:
        in beam order), for a step that writes and reads them itself and then calls `reads_through_origins`."""
        return self._self_keys, self._self_values, self._origins

    def reads_through_origins(self) -> None:
        """A step reads (and writes) the buffers as stored, following `origins`: from now on `reorder` reorders
        the origins only (as after `stored_for_step`)."""
        self._reorders_origins = True

    def stored(self, layer: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The self-attention buffers (b, h, capacity, d) of `layer` as stored (see `stored_for_step`)."""
        return self._self_keys[layer], self._self_values[layer]

    def advance(self, steps: int) -> None:
        """Called once all layers have appended `steps` positions."""
        self.length += steps

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the self-attention rows `index` (beam search), in that order; cross-attention entries are per
        document. Once steps read the cache through origins, only the origins move (rows x capacity indices);
        before, the positions written so far move, into spare buffers kept for the next reorder: no allocation,
        and a step early in a long generation moves little."""
        if self._reorders_origins and self.capacity:
            rows = self._self_keys[0].shape[0]
            in_order = torch.arange(rows, device=index.device)[:, None].expand(rows, self.capacity)  # (rows, capacity)
            origins = (in_order if self._origins is None else self._origins).index_select(0, index)
            origins[:, self.length:] = in_order[:, self.length:]          # positions to come: written in order
            self._origins = origins
            return
        for layer, keys in enumerate(self._self_keys):
            if keys is not None:
                self._self_keys[layer], self._spare_keys[layer] = _reordered(
                    keys, index, length=self.length, spare=self._spare_keys[layer])
                self._self_values[layer], self._spare_values[layer] = _reordered(
                    self._self_values[layer], index, length=self.length, spare=self._spare_values[layer])

    def _into_beam_order(self) -> None:
        """Move the written positions to the rows of their beams, where `origins` says they are stored."""
        if self._origins is None:
            return
        origins, positions = self._origins[:, :self.length], torch.arange(self.length, device=self._origins.device)
        for buffers, spares in ((self._self_keys, self._spare_keys), (self._self_values, self._spare_values)):
            for layer, stored in enumerate(buffers):
                if stored is not None:
                    spare = spares[layer] if spares[layer] is not None else torch.zeros_like(stored)
                    spare[:, :, :self.length] = stored[origins, :, positions].transpose(1, 2)  # (b, h, length, d)
                    buffers[layer], spares[layer] = spare, stored
        self._origins = None

    def to_legacy(self) -> tuple[tuple[torch.Tensor, ...], ...]:
        """Per layer (self keys, self values, cross keys, cross values), the reference's old tuple layout."""
        return tuple(
            (k[:, :, : self.length], v[:, :, : self.length], ck, cv)
            for k, v, ck, cv in zip(self.self_keys, self.self_values, self.cross_keys, self.cross_values)
        )

    @classmethod
    def from_legacy(cls, layers: tuple[tuple[torch.Tensor, ...], ...]) -> DecoderCache:
        cache = cls(len(layers))
        for i, entry in enumerate(layers):
            cache._self_keys[i], cache._self_values[i] = entry[0], entry[1]
            if len(entry) == 4:
                cache.cross_keys[i], cache.cross_values[i] = entry[2], entry[3]
        cache.length = layers[0][0].shape[2] if layers else 0
        return cache


def _reordered(buffer: torch.Tensor, index: torch.Tensor, *, length: int,
               spare: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(the rows `index` of buffer (b, h, capacity, d) in `spare`, buffer as the next spare), for the first
    `length` positions; a spare of another shape is replaced by zeros (its unwritten slots must be finite)."""
    if spare is None or spare.shape != buffer.shape:
        spare = torch.zeros_like(buffer)
    # straight into the spare's slots: a temporary would double the bytes moved (19 vs 12 ms a step at 128 positions)
    torch.index_select(buffer[:, :, :length], 0, index, out=spare[:, :, :length])
    return spare, buffer


def _grown(buffer: torch.Tensor | None, *, like: torch.Tensor, length: int, capacity: int) -> torch.Tensor:
    """A (b, h, capacity, d) buffer shaped like `like`, holding the first `length` positions of `buffer` and
    zeros after them (a masked slot must hold a finite value: 0 * NaN would still be NaN)."""
    grown = like.new_zeros(like.shape[0], like.shape[1], capacity, like.shape[3])
    if length:
        grown[:, :, :length] = buffer[:, :, :length]
    return grown
