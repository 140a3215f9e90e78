"""What `generate` returns for output_scores, output_logits, output_attentions and output_hidden_states against
the reference (fp32 <= 1e-4, per step and layer), with and without the cache; remove_invalid_values;
compute_transition_scores."""

from __future__ import annotations

import pytest
import torch

from bigbird_pegasus.generation.logits_process import RemoveInvalidValues
from helpers.reference import CONFIG_A, max_diff, padded_batch, reference_and_ours

TOLERANCE = 1e-4
RECORD = dict(return_dict_in_generate=True, output_scores=True, output_logits=True, output_attentions=True,
              output_hidden_states=True)
LENGTH, PADDING = 230, 40  # a padded batch of two documents, long enough for block-sparse attention

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def summarizers(tmp_path_factory):
    reference, ours = reference_and_ours("BigBirdPegasusForConditionalGeneration", tmp_path_factory.mktemp("cg"),
                                         **CONFIG_A)
    ids, mask = padded_batch(CONFIG_A["vocab_size"], LENGTH, pad_last=PADDING)
    return reference, ours, ids, mask


@pytest.fixture(scope="module")
def causal_lms(tmp_path_factory):
    reference, ours = reference_and_ours("BigBirdPegasusForCausalLM", tmp_path_factory.mktemp("lm"), **CONFIG_A)
    prompts, mask = padded_batch(CONFIG_A["vocab_size"], 7, pad_last=0, seed=5)
    prompts[0, :3], mask[0, :3] = 0, 0          # left-padded, as the reference expects
    return reference, ours, prompts, mask


def assert_steps_match(mine, theirs, *, cut: int | None = None, valid: torch.Tensor | None = None) -> None:
    """Tuples (per step, or per step and layer) of tensors, ours against the reference's."""
    assert len(mine) == len(theirs)
    for ours_item, their_item in zip(mine, theirs):
        if isinstance(their_item, tuple):
            assert_steps_match(ours_item, their_item, cut=cut, valid=valid)
            continue
        if cut is not None:  # the reference keeps the block-size padding in the encoder's inner layers
            their_item = their_item[:, :cut] if their_item.dim() == 3 else their_item[..., :cut, :cut]
        if valid is not None:  # block-sparse rows of padding queries are not compared (see attention_weights.py)
            keep = valid[:, None, :, None].to(ours_item.dtype)
            ours_item, their_item = ours_item * keep, their_item * keep
        assert ours_item.shape == their_item.shape
        assert max_diff(ours_item, their_item) <= TOLERANCE


@pytest.mark.parametrize("options", [dict(max_new_tokens=4), dict(max_new_tokens=4, num_beams=3),
                                     dict(max_new_tokens=3, num_beams=2, num_return_sequences=2),
                                     dict(max_new_tokens=3, use_cache=False)], ids=repr)
def test_encoder_decoder_records_match_reference(summarizers, options):
    reference, ours, ids, mask = summarizers
    theirs = reference.generate(ids, attention_mask=mask, **RECORD, **options)
    mine = ours.generate(ids, attention_mask=mask, **RECORD, **options)
    assert type(mine).__name__ == type(theirs).__name__
    assert torch.equal(mine.sequences, theirs.sequences)
    assert_steps_match(mine.scores, theirs.scores)
    assert_steps_match(mine.logits, theirs.logits)
    assert_steps_match(mine.encoder_hidden_states, theirs.encoder_hidden_states, cut=LENGTH)
    assert_steps_match(mine.encoder_attentions, theirs.encoder_attentions, cut=LENGTH, valid=mask.bool())
    assert_steps_match(mine.decoder_attentions, theirs.decoder_attentions)
    assert_steps_match(mine.cross_attentions, theirs.cross_attentions)
    assert_steps_match(mine.decoder_hidden_states, theirs.decoder_hidden_states)
    if "num_beams" in options:
        assert torch.equal(mine.beam_indices, theirs.beam_indices)
        assert max_diff(mine.sequences_scores, theirs.sequences_scores) <= TOLERANCE
    assert (mine.cache is None) == (theirs.cache is None) == (options.get("use_cache") is False)


@pytest.mark.parametrize("options", [dict(max_new_tokens=5), dict(max_new_tokens=5, num_beams=2)], ids=repr)
def test_causal_lm_records_match_reference(causal_lms, options):
    reference, ours, prompts, mask = causal_lms
    theirs = reference.generate(prompts, attention_mask=mask, **RECORD, **options)
    mine = ours.generate(prompts, attention_mask=mask, **RECORD, **options)
    assert type(mine).__name__ == type(theirs).__name__
    assert torch.equal(mine.sequences, theirs.sequences)
    assert_steps_match(mine.logits, theirs.logits)
    assert_steps_match(mine.hidden_states, theirs.hidden_states)
    # the padded prompt rows' keys are masked; their own (padding) query rows hold what both compute
    assert_steps_match(mine.attentions, theirs.attentions)


def test_switches_set_to_false_are_accepted_and_asking_changes_no_token(summarizers):
    _, ours, ids, mask = summarizers
    plain = ours.generate(ids, attention_mask=mask, max_new_tokens=4, num_beams=2)
    quiet = ours.generate(ids, attention_mask=mask, max_new_tokens=4, num_beams=2, output_attentions=False,
                          output_hidden_states=False, output_logits=False, remove_invalid_values=False)
    recorded = ours.generate(ids, attention_mask=mask, max_new_tokens=4, num_beams=2, **RECORD)
    assert torch.equal(plain, quiet) and torch.equal(plain, recorded.sequences)
    unrecorded = ours.generate(ids, attention_mask=mask, max_new_tokens=4, output_attentions=True)
    assert torch.equal(unrecorded, ours.generate(ids, attention_mask=mask, max_new_tokens=4))


@pytest.mark.parametrize("options", [dict(max_new_tokens=4), dict(max_new_tokens=4, num_beams=3,
                                                                   num_return_sequences=2, length_penalty=0.7)],
                         ids=repr)
def test_transition_scores_match_reference(summarizers, options):
    reference, ours, ids, mask = summarizers
    record = dict(return_dict_in_generate=True, output_scores=True, output_logits=True)
    theirs = reference.generate(ids, attention_mask=mask, **record, **options)
    mine = ours.generate(ids, attention_mask=mask, **record, **options)
    beams = (mine.beam_indices, theirs.beam_indices) if "num_beams" in options else (None, None)
    for normalize, (my_scores, their_scores) in ((False, (mine.scores, theirs.scores)),
                                                 (True, (mine.logits, theirs.logits))):
        expected = reference.compute_transition_scores(theirs.sequences, their_scores, beams[1],
                                                       normalize_logits=normalize)
        actual = ours.compute_transition_scores(mine.sequences, my_scores, beams[0], normalize_logits=normalize)
        assert max_diff(actual, expected) <= TOLERANCE
    if "num_beams" in options:
        scores = ours.compute_transition_scores(mine.sequences, mine.scores, mine.beam_indices)
        lengths = (mine.beam_indices >= 0).sum(dim=1)
        assert max_diff(scores.sum(1) / lengths ** 0.7, mine.sequences_scores) <= TOLERANCE


def test_remove_invalid_values(summarizers):
    reference, ours, ids, mask = summarizers
    options = dict(max_new_tokens=5, num_beams=2, remove_invalid_values=True, bad_words_ids=[[7]])
    assert torch.equal(ours.generate(ids, attention_mask=mask, **options),
                       reference.generate(ids, attention_mask=mask, **options))
    scores = torch.tensor([[float("nan"), float("inf"), -float("inf"), 1.5]])
    cleaned = RemoveInvalidValues()(torch.zeros(1, 1, dtype=torch.long), scores)
    finfo = torch.finfo(torch.float32)
    assert cleaned.tolist() == [[0.0, finfo.max, finfo.min, 1.5]]
