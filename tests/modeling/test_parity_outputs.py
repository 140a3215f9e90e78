"""output_hidden_states / output_attentions against the reference on the same random weights (fp32 <= 1e-4):
every layer's hidden states and attention probabilities of the encoder (block-sparse, in the reference's dense
format, and full), the decoder and its cross-attention; eval and train mode (dropout 0), padded batches, inputs
that are not a multiple of the block size. The default path is not changed by asking."""

from __future__ import annotations

import pytest
import torch

import bigbird_pegasus.modeling.attention_weights as attention_weights
from helpers.reference import CONFIG_A, CONFIG_B, max_diff, padded_batch, reference_and_ours

TOLERANCE = 1e-4
CONFIGS = {"A": CONFIG_A, "B": CONFIG_B}
FLAGS = dict(output_attentions=True, output_hidden_states=True)


def padded_length(config: dict) -> int:
    """Long enough for block-sparse attention, and not a multiple of the block size."""
    return (5 + 2 * config["num_random_blocks"]) * config["block_size"] + 3 * config["block_size"] + 5


def assert_layers_match(mine: tuple, theirs: tuple, *, length: int | None = None,
                        valid_queries: torch.Tensor | None = None) -> None:
    """Per layer, ours against the reference's, cut to `length` positions (the reference keeps the block-size
    padding in the encoder's inner layers) and, for attentions, over `valid_queries` (b, n) only."""
    assert len(mine) == len(theirs)
    for ours_layer, their_layer in zip(mine, theirs):
        if length is not None:
            their_layer = their_layer[..., :length, :] if their_layer.dim() == 3 else their_layer[..., :length, :length]
        if valid_queries is not None:
            keep = valid_queries[:, None, :, None].to(ours_layer.dtype)                 # (b, 1, n, 1)
            ours_layer, their_layer = ours_layer * keep, their_layer * keep
        assert max_diff(ours_layer, their_layer) <= TOLERANCE


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("attention_type", ["block_sparse", "original_full"])
@pytest.mark.parametrize("config_name", ["A", "B"])
def test_hidden_states_and_attentions_match_reference(tmp_path, config_name, attention_type, mode):
    config = CONFIGS[config_name]
    reference, ours = reference_and_ours("BigBirdPegasusForConditionalGeneration", tmp_path,
                                         attention_type=attention_type, **config)
    length = padded_length(config)
    ids, mask = padded_batch(config["vocab_size"], length, pad_last=length // 3)
    decoder_ids, decoder_mask = padded_batch(config["vocab_size"], 6, pad_last=2, seed=3)
    inputs = dict(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids,
                  decoder_attention_mask=decoder_mask)
    for model in (reference, ours):
        getattr(model, mode)()
    with torch.no_grad():
        theirs, mine, plain = reference(**inputs, **FLAGS), ours(**inputs, **FLAGS), ours(**inputs)

    assert list(mine.keys()) == list(theirs.keys())
    assert len(mine.encoder_hidden_states) == config["encoder_layers"] + 1
    assert_layers_match(mine.encoder_hidden_states, theirs.encoder_hidden_states, length=length)
    # Block-sparse rows of padding queries (whose outputs both zero) are not compared: see attention_weights.py.
    valid = mask.bool() if attention_type == "block_sparse" else None
    assert_layers_match(mine.encoder_attentions, theirs.encoder_attentions, length=length, valid_queries=valid)
    assert mine.encoder_attentions[0].shape == (2, config["encoder_attention_heads"], length, length)
    assert_layers_match(mine.decoder_hidden_states, theirs.decoder_hidden_states)
    assert_layers_match(mine.decoder_attentions, theirs.decoder_attentions)
    assert_layers_match(mine.cross_attentions, theirs.cross_attentions)
    assert max_diff(mine.logits, theirs.logits) <= TOLERANCE
    assert max_diff(mine.logits, plain.logits) <= TOLERANCE
    assert "encoder_attentions" not in plain and "decoder_hidden_states" not in plain


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_block_sparse_probabilities_at_the_paper_plan_length(tmp_path, mode):
    """1024 tokens: the training-mode random blocks of the paper's plan, some repeating a window block."""
    reference, ours = reference_and_ours("BigBirdPegasusModel", tmp_path, **CONFIG_A)
    ids, mask = padded_batch(CONFIG_A["vocab_size"], 1024, pad_last=100)
    for model in (reference, ours):
        getattr(model, mode)()
    with torch.no_grad():
        theirs = reference(input_ids=ids, attention_mask=mask, output_attentions=True)
        mine = ours(input_ids=ids, attention_mask=mask, output_attentions=True)
    assert_layers_match(mine.encoder_attentions, theirs.encoder_attentions, valid_queries=mask.bool())


@pytest.mark.parametrize("config_name", ["A", "B"])
def test_causal_lm_hidden_states_and_attentions_match_reference(tmp_path, config_name):
    config = CONFIGS[config_name]
    reference, ours = reference_and_ours("BigBirdPegasusForCausalLM", tmp_path, **config)
    ids, mask = padded_batch(config["vocab_size"], 12, pad_last=3)
    encoder_states = torch.randn(2, 30, config["d_model"])
    with torch.no_grad():
        theirs, mine = (model(input_ids=ids, attention_mask=mask, **FLAGS) for model in (reference, ours))
        assert list(mine.keys()) == list(theirs.keys())
        assert mine.cross_attentions == theirs.cross_attentions == ()  # no encoder states: none, as the reference
        assert_layers_match(mine.hidden_states, theirs.hidden_states)
        assert_layers_match(mine.attentions, theirs.attentions)
        theirs, mine = (model(input_ids=ids, attention_mask=mask, encoder_hidden_states=encoder_states, **FLAGS)
                        for model in (reference, ours))
        assert_layers_match(mine.cross_attentions, theirs.cross_attentions)


@pytest.mark.parametrize("class_name", ["BigBirdPegasusModel", "BigBirdPegasusForQuestionAnswering",
                                        "BigBirdPegasusForSequenceClassification"])
def test_return_dict_false_gives_the_reference_tuple(tmp_path, class_name):
    reference, ours = reference_and_ours(class_name, tmp_path, **CONFIG_A)
    ids, mask = padded_batch(CONFIG_A["vocab_size"], padded_length(CONFIG_A), pad_last=7)
    with torch.no_grad():
        theirs, mine = (model(input_ids=ids, attention_mask=mask, return_dict=False, **FLAGS)
                        for model in (reference, ours))
    assert isinstance(mine, tuple) and len(mine) == len(theirs)
    for ours_item, their_item in zip(mine, theirs):
        if isinstance(their_item, torch.Tensor):
            assert max_diff(ours_item, their_item) <= TOLERANCE
        elif isinstance(their_item, tuple):
            assert len(ours_item) == len(their_item)


def test_the_config_switches_them_on(tmp_path):
    _, ours = reference_and_ours("BigBirdPegasusModel", tmp_path, **CONFIG_A)
    ids, _ = padded_batch(CONFIG_A["vocab_size"], 60, pad_last=0)
    ours.config.output_attentions = ours.config.output_hidden_states = True
    with torch.no_grad():
        out = ours(input_ids=ids)
        off = ours(input_ids=ids, output_attentions=False, output_hidden_states=False)
    assert len(out.encoder_attentions) == len(out.decoder_hidden_states) - 1 == CONFIG_A["decoder_layers"]
    assert "encoder_attentions" not in off and "decoder_hidden_states" not in off


def test_the_default_path_never_computes_probabilities(tmp_path, monkeypatch):
    """Without output_attentions, neither the encoder's block-sparse layers nor the decoder nor generate go
    through the exact path."""
    _, ours = reference_and_ours("BigBirdPegasusForConditionalGeneration", tmp_path, **CONFIG_A)

    def forbidden(*args, **kwargs):
        raise AssertionError("the exact attention path ran without being asked for")

    import bigbird_pegasus.modeling.attention as attention
    monkeypatch.setattr(attention_weights, "block_sparse_weights", forbidden)
    monkeypatch.setattr(attention, "block_sparse_weights", forbidden)
    monkeypatch.setattr(attention, "eager_attention", forbidden)
    ids, mask = padded_batch(CONFIG_A["vocab_size"], padded_length(CONFIG_A), pad_last=9)
    with torch.no_grad():
        ours(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        ours.generate(ids, attention_mask=mask, max_new_tokens=3, num_beams=2)
    with pytest.raises(AssertionError, match="exact attention path"), torch.no_grad():
        ours(input_ids=ids, attention_mask=mask, output_attentions=True)
