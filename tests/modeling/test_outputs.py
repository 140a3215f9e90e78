"""Output records behave as the reference's: the same operations give the same answers on both."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
import torch
import transformers.modeling_outputs as reference_outputs

from bigbird_pegasus.modeling import outputs


def records():
    """Ours and the reference's Seq2SeqLMOutput with the same values (one field left unset)."""
    logits, cache, states = torch.randn(2, 3, 5), object(), torch.randn(2, 4, 8)
    values = dict(logits=logits, cache=cache, encoder_last_hidden_state=states, decoder_hidden_states=(states,))
    return outputs.Seq2SeqLMOutput(**values), reference_outputs.Seq2SeqLMOutput(**values)


@pytest.mark.parametrize("operation", [
    lambda out: list(out),
    lambda out: list(out.keys()),
    lambda out: [id(value) for value in out.values()],
    lambda out: [(key, id(value)) for key, value in out.items()],
    lambda out: [id(value) for value in out.to_tuple()],
    lambda out: len(out),
    lambda out: ("logits" in out, "loss" in out, "cache" in out, "past_key_values" in out),
    lambda out: (id(out[0]), id(out[1]), id(out["logits"]), id(out["past_key_values"]), id(out.past_key_values)),
    lambda out: id(out.get("past_key_values")),
    lambda out: isinstance(out, dict),
], ids=["iteration", "keys", "values", "items", "to_tuple", "len", "in", "indexing", "get", "a dict"])
def test_operations_answer_as_the_reference(operation):
    ours, theirs = records()
    assert operation(ours) == operation(theirs)


def test_setting_a_field_sets_the_key_in_both():
    ours, theirs = records()
    loss = torch.tensor(1.5)
    for out in (ours, theirs):
        out.loss = loss
        out["encoder_attentions"] = (loss,)
    assert list(ours.keys()) == list(theirs.keys())
    assert ours.loss is ours["loss"] is loss and ours.encoder_attentions == (loss,)


def test_copies_and_pickles_keep_the_fields():
    ours, _ = records()
    for clone in (copy.deepcopy(ours), pickle.loads(pickle.dumps(outputs.Seq2SeqLMOutput(logits=ours.logits)))):
        assert torch.equal(clone.logits, ours.logits)
    assert list(copy.copy(ours).keys()) == list(ours.keys())


def test_field_names_and_order_are_the_reference():
    pairs = [(outputs.Seq2SeqModelOutput, reference_outputs.Seq2SeqModelOutput),
             (outputs.Seq2SeqLMOutput, reference_outputs.Seq2SeqLMOutput),
             (outputs.Seq2SeqSequenceClassifierOutput, reference_outputs.Seq2SeqSequenceClassifierOutput),
             (outputs.Seq2SeqQuestionAnsweringModelOutput, reference_outputs.Seq2SeqQuestionAnsweringModelOutput),
             (outputs.CausalLMOutput, reference_outputs.CausalLMOutputWithCrossAttentions),
             (outputs.EncoderOutput, reference_outputs.BaseModelOutput),
             (outputs.DecoderOutput, reference_outputs.BaseModelOutputWithPastAndCrossAttentions)]
    for ours, theirs in pairs:
        assert [f.name for f in dataclasses.fields(ours)] == [f.name for f in dataclasses.fields(theirs)]
