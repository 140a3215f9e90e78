"""Token embeddings: the scaled embedding table, and resizing a vocabulary (tables and LM head) in place."""

from __future__ import annotations

import torch
from torch import nn

# The reference draws added rows from a normal distribution with the old rows' mean and this fraction of their
# covariance (`_init_added_embeddings_weights_with_mean`, after https://nlp.stanford.edu/~johnhew/vocab-expansion.html).
ADDED_ROWS_COVARIANCE_SCALE = 1e-9


class ScaledEmbedding(nn.Embedding):
    """nn.Embedding whose output is multiplied by `embed_scale` (sqrt(d_model) with `scale_embedding`), as the
    reference's: `model.get_input_embeddings()(ids)` is what the encoder adds positions to, so passing it as
    `inputs_embeds` gives the same outputs as `input_ids`. State-dict name `weight`, as nn.Embedding."""

    def __init__(self, num_embeddings: int, embedding_dim: int, *, padding_idx: int | None, embed_scale: float):
        super().__init__(num_embeddings, embedding_dim, padding_idx=padding_idx)
        self.embed_scale = embed_scale

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(...,) ids -> (..., embedding_dim)."""
        return super().forward(input_ids) * self.embed_scale


def resize_rows_(module: nn.Embedding | nn.Linear, num_rows: int, *, mean_resizing: bool, std: float) -> None:
    """Give an embedding table or an LM head `num_rows` rows (tokens), in place: the same module and Parameter,
    so ties and hooks are kept. Rows kept are copied; added rows are drawn around the old rows' mean
    (`mean_resizing`, the reference's default) or from N(0, std); an LM head's bias gets the old biases' mean
    (or zeros). A table whose padding row is cut loses its `padding_idx`."""
    weight = module.weight
    old_rows = weight.shape[0]
    if old_rows != num_rows:
        resized = weight.new_empty(num_rows, weight.shape[1])                      # (num_rows, dim)
        kept = min(old_rows, num_rows)
        resized[:kept] = weight.detach()[:kept]
        if num_rows > old_rows:
            resized[old_rows:] = _added_rows(weight.detach(), num_rows - old_rows, mean_resizing=mean_resizing,
                                             std=std)
        weight.data = resized
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data = _resized_bias(module.bias.detach(), num_rows, mean_resizing=mean_resizing)
    if isinstance(module, nn.Embedding):
        module.num_embeddings = num_rows
        if module.padding_idx is not None and module.padding_idx >= num_rows:
            module.padding_idx = None
    else:
        module.out_features = num_rows


def _added_rows(old: torch.Tensor, count: int, *, mean_resizing: bool, std: float) -> torch.Tensor:
    """(count, dim) new rows for a (rows, dim) matrix."""
    if not mean_resizing:
        return torch.randn(count, old.shape[1], dtype=old.dtype, device=old.device) * std
    rows = old.float()
    mean = rows.mean(dim=0)                                                         # (dim,)
    centered = rows - mean
    covariance = centered.T @ centered / rows.shape[0] * ADDED_ROWS_COVARIANCE_SCALE  # (dim, dim)
    try:
        distribution = torch.distributions.MultivariateNormal(mean, covariance_matrix=covariance)
        return distribution.sample((count,)).to(old.dtype)
    except (ValueError, RuntimeError):  # not positive definite (e.g. fewer rows than dimensions): the mean
        return mean.expand(count, -1).to(old.dtype)


def _resized_bias(bias: torch.Tensor, num_rows: int, *, mean_resizing: bool) -> torch.Tensor:
    if num_rows <= bias.shape[0]:
        return bias[:num_rows].clone()
    fill = bias.float().mean() if mean_resizing else 0.0
    added = torch.full((num_rows - bias.shape[0],), float(fill), dtype=bias.dtype, device=bias.device)
    return torch.cat([bias, added])


class EmbeddingsMixin:
    """The reference's embeddings API: get/set_input_embeddings, get/set_output_embeddings (the LM head, None for
    the classes without one) and resize_token_embeddings. The host is a BigBirdPegasusPreTrainedModel."""

    def get_input_embeddings(self) -> nn.Module:
        return self.base_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        """Replace the token table (shared by the encoder and the decoder); a tied LM head follows it."""
        self.base_model.set_input_embeddings(value)
        self.tie_weights()

    def get_output_embeddings(self) -> nn.Module | None:
        return getattr(self, "lm_head", None)

    def set_output_embeddings(self, value: nn.Module) -> None:
        if self.get_output_embeddings() is None:
            raise AttributeError(f"{type(self).__name__} has no output embeddings (no LM head) to replace")
        self.lm_head = value

    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                mean_resizing: bool = True) -> nn.Module:
        """Give the vocabulary `new_num_tokens` tokens (rounded up to a multiple of `pad_to_multiple_of`): the
        token tables, the LM head and `final_logits_bias`, in place, ties kept, `config.vocab_size` updated.
        Added rows are drawn around the old rows' mean (`mean_resizing`, as the reference) or from
        N(0, init_std). Without either argument, returns the input embeddings unchanged."""
        tables = token_tables(self)
        if new_num_tokens is None and pad_to_multiple_of is None:
            return tables[0]
        num_tokens = tables[0].num_embeddings if new_num_tokens is None else new_num_tokens
        if pad_to_multiple_of is not None:
            if not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1:
                raise ValueError(f"pad_to_multiple_of={pad_to_multiple_of!r}: must be a positive integer")
            num_tokens = -(-num_tokens // pad_to_multiple_of) * pad_to_multiple_of
        if not isinstance(num_tokens, int) or num_tokens < 1:
            raise ValueError(f"new_num_tokens={new_num_tokens!r}: must be a positive integer")
        resizable = [*tables, self.get_output_embeddings()]
        for module in {id(m): m for m in resizable if m is not None}.values():
            resize_rows_(module, num_tokens, mean_resizing=mean_resizing, std=self.config.init_std)
        self.resize_vocabulary_buffers(num_tokens)
        self.config.vocab_size = num_tokens
        self.tie_weights()
        return tables[0]

    def resize_vocabulary_buffers(self, num_tokens: int) -> None:
        """Resize buffers with one entry per token (a class with one overrides this: final_logits_bias)."""


def token_tables(model: nn.Module) -> list[nn.Module]:
    """The modules that embed input tokens, each once: the model's input embeddings first, then the encoder's
    and decoder's tables when they are not shared."""
    tables = [model.get_input_embeddings(), *(m for m in model.modules() if isinstance(m, ScaledEmbedding))]
    return list({id(table): table for table in tables}.values())
