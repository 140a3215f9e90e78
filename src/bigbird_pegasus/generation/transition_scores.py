"""The score of each generated token, from `generate`'s per-step scores (the reference's
`compute_transition_scores`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def transition_scores(sequences: torch.Tensor, scores: tuple[torch.Tensor, ...],
                      beam_indices: torch.Tensor | None = None, *, normalize_logits: bool = False) -> torch.Tensor:
    """The score each step gave the token it appended: sequences (rows, length) whose last len(scores) tokens
    were generated; scores: per step (step_rows, vocab); beam_indices (rows, steps) the row of `scores` each
    token came from, -1 past a sequence's end (beam search), or None (greedy search and sampling: row r is
    row r at every step). Returns (rows, steps), 0 past a sequence's end. normalize_logits: log-softmax the
    scores first (for raw logits)."""
    stacked = torch.stack(scores, dim=1)                                              # (step_rows, steps, vocab)
    if normalize_logits:
        stacked = F.log_softmax(stacked.float(), dim=-1).to(stacked.dtype)
    steps = stacked.shape[1]
    if beam_indices is None:
        beam_indices = torch.arange(sequences.shape[0], device=sequences.device)[:, None].expand(-1, steps)
    ended = beam_indices < 0                                                          # (rows, steps')
    generated = int((~ended).sum(dim=1).max())
    rows = beam_indices[:, :generated].clamp(min=0)                                   # (rows, generated)
    tokens = sequences[:, sequences.shape[1] - generated:]                            # (rows, generated)
    step = torch.arange(generated, device=sequences.device).expand_as(rows)
    picked = stacked[rows, step, tokens]                                              # (rows, generated)
    return picked.masked_fill(ended[:, :generated], 0.0)
