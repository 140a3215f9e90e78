"""Greedy search and sampling: one token per row and step."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .decoding import CachedDecoder, DecodingPlan


def greedy_or_sample(decoder: CachedDecoder, *, prompt: torch.Tensor,
                     plan: DecodingPlan) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
    """One token per row and step, the best one or a sampled one, until every row has ended (an EOS id) or
    `max_length` is reached; ended rows get `pad_id`.

    prompt (rows, p) -> sequences (rows, length) and, when recorded, the processed scores (rows, vocab) per step.
    """
    rows, length = prompt.shape
    tokens = prompt.new_empty(rows, plan.max_length)
    tokens[:, :length] = prompt
    unfinished = torch.ones(rows, dtype=torch.bool, device=prompt.device)
    recorded = [] if plan.record_scores else None
    logits = decoder.prefill(prompt)
    while True:
        scores = plan.processors(tokens[:, :length], logits)
        if recorded is not None:
            recorded.append(scores)
        if plan.do_sample:
            next_tokens = torch.multinomial(F.softmax(scores, dim=-1), 1, generator=plan.generator).squeeze(1)
        else:
            next_tokens = scores.argmax(dim=-1)
        if plan.eos_ids is not None:
            next_tokens = torch.where(unfinished, next_tokens, plan.pad_id)
            unfinished &= ~torch.isin(next_tokens, plan.eos_ids)
        tokens[:, length] = next_tokens
        length += 1
        if length >= plan.max_length or not bool(unfinished.any()):
            return tokens[:, :length], None if recorded is None else tuple(recorded)
        logits = decoder.decode_one_token(next_tokens)
