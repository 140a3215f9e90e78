"""Logits processors: the per-step rules that reshape next-token scores, in the reference's order.

Every processor maps (tokens (rows, t) long, scores (rows, vocab) float) -> scores (rows, vocab), where `tokens`
are the decoder tokens so far (the start token included). Their results equal the reference's value for value,
so that generated tokens are identical; none does per-step Python work that grows with the batch or the vocab.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .config import GenerationConfig

NEG_INF = float("-inf")


class LogitsProcessorList(list):
    """Processors applied one after the other."""

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for processor in self:
            scores = processor(tokens, scores)
        return scores


def build_logits_processors(config: GenerationConfig, *, eos_ids: torch.Tensor | None, min_length: int,
                            max_length: int, device: torch.device,
                            encoder_input_ids: torch.Tensor | None = None) -> LogitsProcessorList:
    """The processors `config` asks for, in the reference's order: repetition penalty, no-repeat n-grams (of the
    tokens so far, then of the encoder's input), bad words, minimum length, forced BOS/EOS, NaN/infinity removal;
    then, when sampling, temperature, top-k and top-p.

    eos_ids: (n_eos,) or None. min_length/max_length: total decoder lengths (prompt included), already resolved
    from `min_new_tokens`/`max_new_tokens`. encoder_input_ids (docs, s): the input whose n-grams
    `encoder_no_repeat_ngram_size` bans (the document; a causal LM's prompt).
    """
    processors = LogitsProcessorList()
    if config.repetition_penalty != 1.0:
        processors.append(RepetitionPenalty(config.repetition_penalty))
    if config.no_repeat_ngram_size > 0:
        processors.append(NoRepeatNGram(config.no_repeat_ngram_size))
    if config.encoder_no_repeat_ngram_size > 0:
        if encoder_input_ids is None:
            raise ValueError(f"encoder_no_repeat_ngram_size={config.encoder_no_repeat_ngram_size} bans the n-grams "
                             "of the input's tokens: pass input_ids (not encoder_outputs or inputs_embeds alone)")
        processors.append(EncoderNoRepeatNGram(config.encoder_no_repeat_ngram_size, encoder_input_ids.to(device)))
    if config.bad_words_ids is not None:
        processors.append(NoBadWords(config.bad_words_ids, eos_ids=eos_ids, device=device))
    if min_length > 0 and eos_ids is not None:
        processors.append(MinLength(min_length, eos_ids=eos_ids))
    if config.forced_bos_token_id is not None:
        processors.append(ForcedBOS(config.forced_bos_token_id))
    if config.forced_eos_token_id is not None:
        forced_eos = torch.tensor(config.forced_eos_token_id, device=device).reshape(-1)      # (n,)
        processors.append(ForcedEOS(max_length, token_ids=forced_eos))
    if config.remove_invalid_values:
        processors.append(RemoveInvalidValues())
    if config.do_sample:
        # Beam sampling keeps one token more than there are EOS ids, so that a beam can always continue.
        keep = 1 if config.num_beams == 1 else (1 if eos_ids is None else len(eos_ids)) + 1
        if config.temperature != 1.0:
            processors.append(Temperature(config.temperature))
        if config.top_k is not None and config.top_k != 0:
            processors.append(TopK(config.top_k, keep=keep))
        if config.top_p is not None and config.top_p < 1.0:
            processors.append(TopP(config.top_p, keep=keep))
    return processors


class RepetitionPenalty:
    """Every token already in `tokens`: its score divided by `penalty` when positive, multiplied when negative."""

    def __init__(self, penalty: float):
        self.penalty = penalty

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        seen = scores.gather(1, tokens)                                                   # (rows, t)
        penalised = torch.where(seen < 0, seen * self.penalty, seen / self.penalty)
        return scores.scatter(1, tokens, penalised)


class NoRepeatNGram:
    """Bans every token that would complete an n-gram already present in `tokens`."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        if length < self.size:
            return scores
        ngrams = tokens.unfold(1, self.size, 1)                                           # (rows, w, n)
        current_prefix = tokens[:, length - self.size + 1:]                                # (rows, n - 1)
        continues_prefix = (ngrams[:, :, :-1] == current_prefix[:, None]).all(-1)        # (rows, w)
        ban_counts = torch.zeros_like(scores).scatter_add_(1, ngrams[:, :, -1], continues_prefix.to(scores.dtype))
        return scores.masked_fill(ban_counts > 0, NEG_INF)


class EncoderNoRepeatNGram:
    """Bans every token that would complete an n-gram of the row's encoder input (docs, s), the rows of a
    document being consecutive (rows = docs * g): the decoder does not copy `size` tokens in a row from it."""

    def __init__(self, size: int, encoder_input_ids: torch.Tensor):
        self.size = size
        self.ngrams = None                                                                 # (docs, w, n)
        if encoder_input_ids.shape[1] >= size:
            self.ngrams = encoder_input_ids.unfold(1, size, 1)

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        if self.ngrams is None or length < self.size - 1:
            return scores
        ngrams = self.ngrams.repeat_interleave(scores.shape[0] // self.ngrams.shape[0], dim=0)  # (rows, w, n)
        current_prefix = tokens[:, length - self.size + 1:]                                 # (rows, n - 1)
        continues_prefix = (ngrams[:, :, :-1] == current_prefix[:, None]).all(-1)          # (rows, w)
        ban_counts = torch.zeros_like(scores).scatter_add_(1, ngrams[:, :, -1], continues_prefix.to(scores.dtype))
        return scores.masked_fill(ban_counts > 0, NEG_INF)


class NoBadWords:
    """Bans the last token of each bad word whose other tokens end `tokens`; single-token bad words always.
    A single-token bad word that is an EOS id is ignored, as in the reference."""

    def __init__(self, bad_words_ids: Sequence[Sequence[int]], *, eos_ids: torch.Tensor | None, device: torch.device):
        eos = set() if eos_ids is None else set(eos_ids.tolist())
        words = [list(word) for word in bad_words_ids if not (len(word) == 1 and word[0] in eos)]
        self.single_tokens = torch.tensor([w[0] for w in words if len(w) == 1], dtype=torch.long, device=device)
        by_prefix_length: dict[int, list[list[int]]] = {}
        for word in words:
            if len(word) > 1:
                by_prefix_length.setdefault(len(word) - 1, []).append(word)
        # Per prefix length: the prefixes (k, L) and the token each one bans (k,).
        self.sequences = [(torch.tensor([w[:-1] for w in group], device=device),
                           torch.tensor([w[-1] for w in group], device=device))
                          for group in by_prefix_length.values()]

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        ban_counts = torch.zeros_like(scores)
        ban_counts[:, self.single_tokens] = 1
        for prefixes, last_tokens in self.sequences:
            prefix_length = prefixes.shape[1]
            if prefix_length > tokens.shape[1]:
                continue
            ends_with_prefix = (tokens[:, None, -prefix_length:] == prefixes).all(-1)      # (rows, k)
            ban_counts.index_add_(1, last_tokens, ends_with_prefix.to(scores.dtype))
        return scores.masked_fill(ban_counts > 0, NEG_INF)


class MinLength:
    """No EOS while the decoder holds fewer than `min_length` tokens."""

    def __init__(self, min_length: int, *, eos_ids: torch.Tensor):
        self.min_length = min_length
        self.eos_ids = eos_ids

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] >= self.min_length:
            return scores
        scores = scores.clone()
        scores[:, self.eos_ids] = NEG_INF
        return scores


class ForcedBOS:
    """The first generated token (after the start token alone) is `token_id`."""

    def __init__(self, token_id: int):
        self.token_id = token_id

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] != 1:
            return scores
        forced = torch.full_like(scores, NEG_INF)
        forced[:, self.token_id] = 0
        return forced


class ForcedEOS:
    """The token that reaches `max_length` is one of `token_ids` (n,)."""

    def __init__(self, max_length: int, *, token_ids: torch.Tensor):
        self.max_length = max_length
        self.token_ids = token_ids

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] != self.max_length - 1:
            return scores
        forced = torch.full_like(scores, NEG_INF)
        forced[:, self.token_ids] = 0
        return forced


class RemoveInvalidValues:
    """NaN scores become 0 and infinite ones the dtype's extremes (the reference's `remove_invalid_values`)."""

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        finfo = torch.finfo(scores.dtype)
        return torch.nan_to_num(scores, nan=0.0, posinf=finfo.max, neginf=finfo.min)


class Temperature:
    def __init__(self, temperature: float):
        self.temperature = temperature

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores / self.temperature


class TopK:
    """Keeps the `top_k` (at least `keep`) best scores of each row; ties with the k-th are kept."""

    def __init__(self, top_k: int, *, keep: int):
        self.top_k = max(top_k, keep)

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        k = min(self.top_k, scores.shape[-1])
        kth_best = torch.topk(scores, k).values[:, -1:]                                    # (rows, 1)
        return scores.masked_fill(scores < kth_best, NEG_INF)


class TopP:
    """Keeps the smallest set of best tokens whose probability reaches `top_p` (at least `keep` tokens)."""

    def __init__(self, top_p: float, *, keep: int):
        self.top_p = top_p
        self.keep = keep

    def __call__(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        ascending, order = torch.sort(scores, descending=False)                           # (rows, vocab)
        mass_below = ascending.softmax(-1).cumsum(-1)
        drop_sorted = mass_below <= 1 - self.top_p
        drop_sorted[:, -self.keep:] = False
        drop = drop_sorted.scatter(1, order, drop_sorted)
        return scores.masked_fill(drop, NEG_INF)
