"""Our five classes against the reference on the same random weights: fp32 max |diff| <= 1e-4."""

from __future__ import annotations

import logging

import pytest
import torch
import transformers

import bigbird_pegasus
from helpers.reference import CONFIG_A, CONFIG_B, difference, max_diff, padded_batch, reference_and_ours

TOLERANCE = 1e-4
CONFIGS = {"A": CONFIG_A, "B": CONFIG_B}


def lengths_for(config: dict) -> dict[str, int]:
    """Input lengths that exercise each path of the encoder for this config."""
    block, threshold = config["block_size"], (5 + 2 * config["num_random_blocks"]) * config["block_size"]
    return {"block_multiple": threshold + 3 * block, "not_a_multiple": threshold + 3 * block + 5,
            "too_short": threshold - 3}


def run_both(reference, ours, mode: str, **inputs):
    getattr(reference, mode)()
    getattr(ours, mode)()
    with torch.no_grad():
        return reference(**inputs), ours(**inputs)


def assert_cache_matches(reference_cache, our_cache):
    assert our_cache.get_seq_length() == reference_cache.get_seq_length()
    for layer, (keys, values, cross_keys, cross_values) in enumerate(our_cache.to_legacy()):
        assert max_diff(keys, reference_cache.self_attention_cache.layers[layer].keys) <= TOLERANCE
        assert max_diff(values, reference_cache.self_attention_cache.layers[layer].values) <= TOLERANCE
        assert max_diff(cross_keys, reference_cache.cross_attention_cache.layers[layer].keys) <= TOLERANCE
        assert max_diff(cross_values, reference_cache.cross_attention_cache.layers[layer].values) <= TOLERANCE


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("length_name", ["block_multiple", "not_a_multiple", "too_short"])
@pytest.mark.parametrize("attention_type", ["block_sparse", "original_full"])
@pytest.mark.parametrize("config_name", ["A", "B"])
def test_conditional_generation(tmp_path, config_name, attention_type, length_name, mode):
    config = CONFIGS[config_name]
    reference, ours = reference_and_ours("BigBirdPegasusForConditionalGeneration", tmp_path,
                                         attention_type=attention_type, **config)
    length = lengths_for(config)[length_name]
    ids, mask = padded_batch(config["vocab_size"], length, pad_last=length // 3)
    labels, _ = padded_batch(config["vocab_size"], 7, pad_last=0, seed=2)
    labels[1, -2:] = -100
    decoder_ids, decoder_mask = padded_batch(config["vocab_size"], 6, pad_last=2, seed=3)

    theirs, mine = run_both(reference, ours, mode, input_ids=ids, attention_mask=mask, labels=labels)
    assert max_diff(mine.logits, theirs.logits) <= TOLERANCE
    assert max_diff(mine.encoder_last_hidden_state, theirs.encoder_last_hidden_state) <= TOLERANCE
    assert abs(mine.loss.item() - theirs.loss.item()) <= TOLERANCE

    theirs, mine = run_both(reference, ours, mode, input_ids=ids, attention_mask=mask,
                            decoder_input_ids=decoder_ids, decoder_attention_mask=decoder_mask)
    assert max_diff(mine.logits, theirs.logits) <= TOLERANCE
    assert_cache_matches(theirs.past_key_values, mine.past_key_values)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("length", [1024, 3072, 4096])
def test_paper_plan_lengths(tmp_path, length, mode):
    """1024/3072/4096 draw training-mode random blocks from the reference's paper plan."""
    reference, ours = reference_and_ours("BigBirdPegasusForConditionalGeneration", tmp_path, **CONFIG_A)
    ids, mask = padded_batch(CONFIG_A["vocab_size"], length, pad_last=100)
    decoder_ids, _ = padded_batch(CONFIG_A["vocab_size"], 5, pad_last=0, seed=3)
    theirs, mine = run_both(reference, ours, mode, input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids)
    assert max_diff(mine.encoder_last_hidden_state, theirs.encoder_last_hidden_state) <= TOLERANCE
    assert max_diff(mine.logits, theirs.logits) <= TOLERANCE


def test_paper_plan_with_second_config(tmp_path):
    reference, ours = reference_and_ours("BigBirdPegasusModel", tmp_path, **CONFIG_B)
    ids, mask = padded_batch(CONFIG_B["vocab_size"], 4096, pad_last=0)
    theirs, mine = run_both(reference, ours, "train", input_ids=ids[:1], attention_mask=mask[:1])
    assert max_diff(mine.encoder_last_hidden_state, theirs.encoder_last_hidden_state) <= TOLERANCE
    assert max_diff(mine.last_hidden_state, theirs.last_hidden_state) <= TOLERANCE


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("attention_type", ["block_sparse", "original_full"])
def test_bare_model(tmp_path, attention_type, mode):
    reference, ours = reference_and_ours("BigBirdPegasusModel", tmp_path, attention_type=attention_type,
                                         **CONFIG_B)
    ids, mask = padded_batch(CONFIG_B["vocab_size"], lengths_for(CONFIG_B)["not_a_multiple"], pad_last=20)
    theirs, mine = run_both(reference, ours, mode, input_ids=ids, attention_mask=mask)
    assert max_diff(mine.last_hidden_state, theirs.last_hidden_state) <= TOLERANCE
    assert max_diff(mine.encoder_last_hidden_state, theirs.encoder_last_hidden_state) <= TOLERANCE
    assert_cache_matches(theirs.past_key_values, mine.past_key_values)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("config_name", ["A", "B"])
def test_sequence_classification(tmp_path, config_name, mode):
    config = CONFIGS[config_name]
    reference, ours = reference_and_ours("BigBirdPegasusForSequenceClassification", tmp_path, num_labels=3,
                                         **config)
    ids, mask = padded_batch(config["vocab_size"], lengths_for(config)["not_a_multiple"], pad_last=9)
    labels = torch.tensor([2, 0])
    theirs, mine = run_both(reference, ours, mode, input_ids=ids, attention_mask=mask, labels=labels)
    assert mine.logits.shape == (2, 3)
    assert max_diff(mine.logits, theirs.logits) <= TOLERANCE
    assert abs(mine.loss.item() - theirs.loss.item()) <= TOLERANCE
    assert max_diff(mine.encoder_last_hidden_state, theirs.encoder_last_hidden_state) <= TOLERANCE


def test_sequence_classification_needs_equal_eos_counts(tmp_path):
    _, ours = reference_and_ours("BigBirdPegasusForSequenceClassification", tmp_path, **CONFIG_A)
    ids, mask = padded_batch(CONFIG_A["vocab_size"], 40, pad_last=0)
    ids[0, 5] = 1
    with pytest.raises(ValueError, match="same number of </s>"):
        ours(input_ids=ids, attention_mask=mask)


@pytest.mark.parametrize("problem", ["regression", "multi_label_classification"])
def test_sequence_classification_other_losses(tmp_path, problem):
    num_labels = 1 if problem == "regression" else 3
    reference, ours = reference_and_ours("BigBirdPegasusForSequenceClassification", tmp_path,
                                         num_labels=num_labels, problem_type=problem, **CONFIG_A)
    ids, mask = padded_batch(CONFIG_A["vocab_size"], 50, pad_last=4)
    labels = torch.rand(2, num_labels) if num_labels > 1 else torch.rand(2)
    theirs, mine = run_both(reference, ours, "eval", input_ids=ids, attention_mask=mask, labels=labels)
    assert abs(mine.loss.item() - theirs.loss.item()) <= TOLERANCE


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("attention_type", ["block_sparse", "original_full"])
def test_question_answering(tmp_path, attention_type, mode):
    reference, ours = reference_and_ours("BigBirdPegasusForQuestionAnswering", tmp_path,
                                         attention_type=attention_type, **CONFIG_A)
    ids, mask = padded_batch(CONFIG_A["vocab_size"], lengths_for(CONFIG_A)["not_a_multiple"], pad_last=30)
    start, end = torch.tensor([3, 500]), torch.tensor([9, 12])         # 500 is outside: ignored
    theirs, mine = run_both(reference, ours, mode, input_ids=ids, attention_mask=mask,
                            start_positions=start, end_positions=end)
    assert max_diff(mine.start_logits, theirs.start_logits) <= TOLERANCE
    assert max_diff(mine.end_logits, theirs.end_logits) <= TOLERANCE
    assert abs(mine.loss.item() - theirs.loss.item()) <= TOLERANCE


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("config_name", ["A", "B"])
def test_causal_lm(tmp_path, config_name, mode):
    config = CONFIGS[config_name]
    reference, ours = reference_and_ours("BigBirdPegasusForCausalLM", tmp_path, **config)
    ids, mask = padded_batch(config["vocab_size"], 12, pad_last=3)
    labels, _ = padded_batch(config["vocab_size"], 12, pad_last=0, seed=4)
    encoder_states = torch.randn(2, 30, config["d_model"])
    encoder_mask = torch.ones(2, 30, dtype=torch.long)
    encoder_mask[0, -7:] = 0
    theirs, mine = run_both(reference, ours, mode, input_ids=ids, attention_mask=mask, labels=labels)
    assert max_diff(mine.logits, theirs.logits) <= TOLERANCE
    assert abs(mine.loss.item() - theirs.loss.item()) <= TOLERANCE
    theirs, mine = run_both(reference, ours, mode, input_ids=ids, attention_mask=mask,
                            encoder_hidden_states=encoder_states, encoder_attention_mask=encoder_mask)
    assert max_diff(mine.logits, theirs.logits) <= TOLERANCE


@pytest.mark.parametrize("attention_type", ["block_sparse", "original_full"])
def test_gradients_match(tmp_path, attention_type):
    reference, ours = reference_and_ours("BigBirdPegasusForConditionalGeneration", tmp_path,
                                         attention_type=attention_type, **CONFIG_B)
    ids, mask = padded_batch(CONFIG_B["vocab_size"], lengths_for(CONFIG_B)["not_a_multiple"], pad_last=11)
    labels, _ = padded_batch(CONFIG_B["vocab_size"], 9, pad_last=0, seed=2)
    for model in (reference, ours):
        model.train()
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    their_grads = {name: p.grad for name, p in reference.named_parameters()}
    largest = max(grad.abs().max().item() for grad in their_grads.values())
    checked = 0
    for name, param in ours.named_parameters():
        expected = their_grads[name]
        # relative to the parameter's largest entry; key biases get exactly zero gradient (softmax ignores
        # a shift) and both sides hold rounding noise there, hence a floor tied to the model's largest
        scale = max(expected.abs().max().item(), 1e-3 * largest)
        assert max_diff(param.grad, expected) <= TOLERANCE * scale, name
        checked += 1
    assert checked == len(their_grads)


def test_labels_alone_build_decoder_inputs(tmp_path):
    _, ours = reference_and_ours("BigBirdPegasusForConditionalGeneration", tmp_path, **CONFIG_A)
    ids, mask = padded_batch(CONFIG_A["vocab_size"], 60, pad_last=0)
    labels = torch.tensor([[5, 6, 7, 1], [8, 9, -100, -100]])
    shifted = torch.tensor([[2, 5, 6, 7], [2, 8, 9, 0]])    # decoder_start_token_id 2, -100 -> pad 0
    with torch.no_grad():
        from_labels = ours(input_ids=ids, attention_mask=mask, labels=labels).logits
        explicit = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=shifted).logits
    assert torch.equal(from_labels, explicit)


def test_decoder_inputs_default_to_shifted_input_ids(tmp_path):
    reference, ours = reference_and_ours("BigBirdPegasusModel", tmp_path, **CONFIG_A)
    ids, mask = padded_batch(CONFIG_A["vocab_size"], 60, pad_last=5)
    theirs, mine = run_both(reference, ours, "eval", input_ids=ids, attention_mask=mask)
    assert mine.last_hidden_state.shape == (2, 60, CONFIG_A["d_model"])
    assert max_diff(mine.last_hidden_state, theirs.last_hidden_state) <= TOLERANCE


def test_incremental_decoding_matches_full_forward(tmp_path):
    reference, ours = reference_and_ours("BigBirdPegasusForConditionalGeneration", tmp_path, **CONFIG_A)
    ids, mask = padded_batch(CONFIG_A["vocab_size"], 200, pad_last=40)
    decoder_ids, _ = padded_batch(CONFIG_A["vocab_size"], 6, pad_last=0, seed=3)
    with torch.no_grad():
        full = reference(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
        encoder_outputs = ours.get_encoder()(ids, attention_mask=mask)
        out = ours(attention_mask=mask, encoder_outputs=encoder_outputs, decoder_input_ids=decoder_ids[:, :2])
        steps = [out.logits]
        for position in range(2, 6):
            out = ours(attention_mask=mask, encoder_outputs=encoder_outputs,
                       decoder_input_ids=decoder_ids[:, position:position + 1], past_key_values=out.past_key_values)
            steps.append(out.logits)
    assert max_diff(torch.cat(steps, dim=1), full) <= TOLERANCE


def test_short_input_does_not_switch_the_model_for_good(tmp_path, caplog):
    """The reference switches to full attention for good after one short input; we decide per call."""
    reference, ours = reference_and_ours("BigBirdPegasusModel", tmp_path, **CONFIG_A)
    fresh_reference, _ = reference_and_ours("BigBirdPegasusModel", tmp_path / "fresh", **CONFIG_A)
    short, _ = padded_batch(CONFIG_A["vocab_size"], 40, pad_last=0)
    long, _ = padded_batch(CONFIG_A["vocab_size"], 300, pad_last=0)
    with torch.no_grad(), caplog.at_level(logging.WARNING, logger="bigbird_pegasus"):
        reference(input_ids=short)
        ours(input_ids=short)
        ours(input_ids=short)
        after_short = ours(input_ids=long).encoder_last_hidden_state
        block_sparse = fresh_reference(input_ids=long).encoder_last_hidden_state
        switched = reference(input_ids=long).encoder_last_hidden_state
    assert reference.encoder.attention_type == "original_full"
    assert max_diff(after_short, block_sparse) <= TOLERANCE
    assert difference(switched, block_sparse) > 1e-3
    assert sum("too short for block-sparse" in r.getMessage() for r in caplog.records) <= 1


def test_fixed_random_attention_keeps_the_training_layout_in_eval(tmp_path):
    """`random_attention="fixed"` in eval mode equals the reference in training mode (dropout 0)."""
    reference, _ = reference_and_ours("BigBirdPegasusModel", tmp_path, **CONFIG_A)
    config = bigbird_pegasus.BigBirdPegasusConfig.from_pretrained(tmp_path)
    config.random_attention = "fixed"
    config.save_pretrained(tmp_path)
    fixed = bigbird_pegasus.BigBirdPegasusModel.from_pretrained(tmp_path)
    ids, mask = padded_batch(CONFIG_A["vocab_size"], 400, pad_last=33)
    reference.train()
    with torch.no_grad():
        theirs = reference(input_ids=ids, attention_mask=mask).encoder_last_hidden_state
        reference.eval()
        their_eval = reference(input_ids=ids, attention_mask=mask).encoder_last_hidden_state
        mine = fixed(input_ids=ids, attention_mask=mask).encoder_last_hidden_state
    assert max_diff(mine, theirs) <= TOLERANCE
    assert difference(mine, their_eval) > 1e-3


def test_return_dict_false_gives_tuples(tmp_path):
    reference, ours = reference_and_ours("BigBirdPegasusForConditionalGeneration", tmp_path, **CONFIG_A)
    ids, mask = padded_batch(CONFIG_A["vocab_size"], 60, pad_last=0)
    with torch.no_grad():
        out = ours(input_ids=ids, attention_mask=mask, return_dict=False)
        record = ours(input_ids=ids, attention_mask=mask)
    assert isinstance(out, tuple)
    assert torch.equal(out[0], record.logits) and torch.equal(record[0], record["logits"])
    assert record.cache is record.past_key_values


def test_public_names_match_the_reference():
    for name in bigbird_pegasus.__all__:
        if name.startswith(("BigBirdPegasus", "PegasusTokenizer")):
            assert hasattr(transformers, name), name
