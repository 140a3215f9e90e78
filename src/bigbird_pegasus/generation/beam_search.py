"""Beam search: the reference's beam bookkeeping, vectorised over documents; the decoder cache follows the beams.

Per document we keep `num_beams` running hypotheses and `num_beams` finished ones. Each step scores every
continuation of every running beam, takes the best K = max(2, 1 + n_eos) * num_beams of them, continues with
the best `num_beams` that did not end, and lets the ones that ended among the first `num_beams` compete, with
their length-penalised scores, for a place among the finished hypotheses. Rankings, ties and stopping rules are
the reference's, so that the tokens are identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import kernels
from .decoding import CachedDecoder, DecodingPlan

# The reference's score for "cannot be chosen": added, not assigned, so rankings among such entries stay its own.
EXCLUDED = -1.0e9


@dataclass
class Hypotheses:
    """Per document and beam: tokens (docs, beams, max_length), scores (docs, beams), and sources
    (docs, beams, max_length - prompt) the flat running row each token was appended to (-1: none yet)."""

    tokens: torch.Tensor
    scores: torch.Tensor
    sources: torch.Tensor

    def take(self, index: torch.Tensor, scores: torch.Tensor | None = None) -> Hypotheses:
        """The hypotheses `index` (docs, k) of each document, with `scores` (docs, k) when given."""
        return Hypotheses(_take(self.tokens, index), _take(self.scores, index) if scores is None else scores,
                          _take(self.sources, index))


def _take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (docs, n, ...) -> (docs, k, ...) along dim 1 for index (docs, k)."""
    return torch.take_along_dim(values, index.view(*index.shape, *([1] * (values.dim() - 2))), dim=1)


@dataclass
class BeamSearchResult:
    sequences: torch.Tensor          # (docs * num_return_sequences, length)
    sequence_scores: torch.Tensor    # (docs * num_return_sequences,)
    scores: tuple[torch.Tensor, ...] | None
    beam_indices: torch.Tensor       # (docs * num_return_sequences, length - prompt)


def beam_search(decoder: CachedDecoder, *, prompt: torch.Tensor, plan: DecodingPlan) -> BeamSearchResult:
    """prompt (docs * num_beams, p), each document's prompt repeated num_beams times -> the best
    `num_return_sequences` finished hypotheses of each document, best first."""
    beams = plan.num_beams
    rows, prompt_length = prompt.shape
    docs, device = rows // beams, prompt.device
    n_eos = 0 if plan.eos_ids is None else len(plan.eos_ids)
    num_candidates = max(2, 1 + n_eos) * beams
    is_top_candidate = torch.arange(num_candidates, device=device) < beams                     # (k,)
    row_offsets = torch.arange(docs, device=device)[:, None] * beams                           # (docs, 1)

    running = _initial_hypotheses(prompt, docs=docs, beams=beams, plan=plan)
    finished = Hypotheses(running.tokens.clone(), torch.full_like(running.scores, EXCLUDED), running.sources.clone())
    is_finished = torch.zeros(docs, beams, dtype=torch.bool, device=device)
    can_improve = torch.ones(docs, 1, dtype=torch.bool, device=device)
    recorded = [] if plan.record_scores else None

    length = prompt_length
    logits = decoder.prefill(prompt)
    while True:
        log_probs = plan.processors(running.tokens.view(rows, -1)[:, :length], F.log_softmax(logits, dim=-1))
        if recorded is not None:
            recorded.append(log_probs)
        vocab = log_probs.shape[-1]
        totals = (log_probs.view(docs, beams, vocab) + running.scores[:, :, None]).view(docs, beams * vocab)
        candidate_scores, flat_index = _best_continuations(totals, k=num_candidates, plan=plan)  # (docs, k)
        source_beams = flat_index // vocab
        candidates = running.take(source_beams, candidate_scores)
        candidates.tokens[:, :, length] = flat_index % vocab
        candidates.sources[:, :, length - prompt_length] = (source_beams + row_offsets).to(torch.int32)
        ends = _ends(candidates.tokens[:, :, length], new_length=length + 1, plan=plan)         # (docs, k)

        alive_scores = candidate_scores + ends.to(torch.float32) * EXCLUDED
        survivors = torch.topk(alive_scores, beams).indices
        running = candidates.take(survivors, _take(alive_scores, survivors))

        finished, is_finished = _admit_finished(finished, is_finished=is_finished, candidates=candidates,
                                                just_ended=ends & is_top_candidate, can_improve=can_improve,
                                                generated_length=length + 1 - prompt_length, plan=plan)
        length += 1
        can_improve = _can_improve(can_improve, running_scores=running.scores, finished_scores=finished.scores,
                                   is_finished=is_finished, length=length, prompt_length=prompt_length, plan=plan)
        all_full = bool(is_finished.all()) and plan.early_stopping is True
        if not bool(can_improve.any()) or all_full or bool(ends.all()):
            break
        decoder.reorder(running.sources[:, :, length - 1 - prompt_length].reshape(rows).long())
        logits = decoder.decode_one_token(running.tokens[:, :, length - 1].reshape(rows))

    returned = plan.num_return_sequences
    sequences = finished.tokens[:, :returned].reshape(docs * returned, -1)                     # (docs*r, max_len)
    beam_indices = finished.sources[:, :returned].reshape(docs * returned, -1)                 # (docs*r, max_new)
    generated = int((beam_indices != -1).sum(dim=1).max())
    return BeamSearchResult(sequences[:, :prompt_length + generated], finished.scores[:, :returned].reshape(-1),
                            None if recorded is None else tuple(recorded), beam_indices[:, :generated])


def _initial_hypotheses(prompt: torch.Tensor, *, docs: int, beams: int, plan: DecodingPlan) -> Hypotheses:
    """Only beam 0 of each document is live at first (the others score EXCLUDED), so that the first step does
    not pick the same continuation `beams` times."""
    rows, prompt_length = prompt.shape
    # The reference fills unwritten positions with `pad_token_id or eos_token_id[0]`: a pad id of 0 counts as
    # unset there, so Pegasus' padding (0) shows up as EOS (1) in beam search outputs.
    if plan.eos_ids is None:
        fill = -1
    else:
        fill = plan.pad_id if plan.pad_id else int(plan.eos_ids[0])
    tokens = prompt.new_full((docs, beams, plan.max_length), fill)
    tokens[:, :, :prompt_length] = prompt.view(docs, beams, prompt_length)
    scores = torch.zeros(docs, beams, dtype=torch.float32, device=prompt.device)
    scores[:, 1:] = EXCLUDED
    sources = torch.full((docs, beams, plan.max_length - prompt_length), -1, dtype=torch.int32,
                         device=prompt.device)
    return Hypotheses(tokens, scores, sources)


def _best_continuations(totals: torch.Tensor, *, k: int, plan: DecodingPlan) -> tuple[torch.Tensor, torch.Tensor]:
    """totals (docs, beams * vocab) -> the k best (or, when sampling, k drawn without replacement and sorted)
    scores and their flat indices, (docs, k) each; equal best scores in index order where the CPU kernel serves
    (torch.topk leaves their order unspecified)."""
    if not plan.do_sample and not torch.compiler.is_compiling() and kernels.serves_top_k(totals, k):
        return kernels.top_k(totals, k)  # one pass, where torch.topk sorts a copy (0.1 against 1.6-6 ms a step)
    if not plan.do_sample:
        return torch.topk(totals, k)
    drawn = torch.multinomial(F.softmax(totals, dim=-1), k, generator=plan.generator)
    drawn_scores, order = totals.gather(1, drawn).sort(dim=-1, descending=True)
    return drawn_scores, drawn.gather(1, order)


def _ends(last_tokens: torch.Tensor, *, new_length: int, plan: DecodingPlan) -> torch.Tensor:
    """Whether each candidate (docs, k) is complete: it reached max_length or its last token is an EOS id."""
    if new_length >= plan.max_length:
        return torch.ones_like(last_tokens, dtype=torch.bool)
    if plan.eos_ids is None:
        return torch.zeros_like(last_tokens, dtype=torch.bool)
    return torch.isin(last_tokens, plan.eos_ids)


def _admit_finished(finished: Hypotheses, *, is_finished: torch.Tensor, candidates: Hypotheses,
                    just_ended: torch.Tensor, can_improve: torch.Tensor, generated_length: int,
                    plan: DecodingPlan) -> tuple[Hypotheses, torch.Tensor]:
    """Merge the candidates that just ended (docs, k) into the finished set, scored sum / length ** penalty,
    and keep the best `num_beams`. Nothing enters a document that cannot improve, nor one already full under
    `early_stopping=True`."""
    scores = candidates.scores / (generated_length ** plan.length_penalty)
    is_full = is_finished.all(dim=-1, keepdim=True) & (plan.early_stopping is True)            # (docs, 1)
    scores = scores + is_full.to(torch.float32) * EXCLUDED
    scores = scores + (~can_improve).to(torch.float32) * EXCLUDED
    scores = scores + (~just_ended).to(torch.float32) * EXCLUDED
    merged = Hypotheses(torch.cat([finished.tokens, candidates.tokens], dim=1),
                        torch.cat([finished.scores, scores], dim=1),
                        torch.cat([finished.sources, candidates.sources], dim=1))
    merged_is_finished = torch.cat([is_finished, just_ended], dim=1)                            # (docs, beams + k)
    best = torch.topk(merged.scores, plan.num_beams).indices
    return merged.take(best), _take(merged_is_finished, best)


def _can_improve(can_improve: torch.Tensor, *, running_scores: torch.Tensor, finished_scores: torch.Tensor,
                 is_finished: torch.Tensor, length: int, prompt_length: int, plan: DecodingPlan) -> torch.Tensor:
    """(docs, 1): whether the best running beam could still beat the worst finished one. Its final length is
    taken to be the current one, or max_length under early_stopping="never" with a positive length_penalty
    (the reference's heuristics)."""
    if plan.early_stopping == "never" and plan.length_penalty > 0.0:
        best_length = plan.max_length - prompt_length
    else:
        best_length = length - prompt_length
    best_running = running_scores[:, :1] / (best_length ** plan.length_penalty)
    worst_finished = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True).values, EXCLUDED)
    return can_improve & (best_running > worst_finished).any(dim=-1, keepdim=True)
