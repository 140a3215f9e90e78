"""The embeddings API: inputs_embeds from get_input_embeddings() as the reference, get/set of the input and
output embeddings, and resize_token_embeddings (tables, tied head, final_logits_bias, config)."""

from __future__ import annotations

import pytest
import torch
import transformers
from torch import nn

import bigbird_pegasus
from helpers.reference import CONFIG_A, CONFIG_B, difference, max_diff, padded_batch, reference_and_ours

TOLERANCE = 1e-4
CG = "BigBirdPegasusForConditionalGeneration"


@pytest.mark.parametrize("class_name", [CG, "BigBirdPegasusModel", "BigBirdPegasusForQuestionAnswering"])
@pytest.mark.parametrize("config", [CONFIG_A, CONFIG_B], ids=["scaled", "unscaled"])
def test_inputs_embeds_from_the_input_embeddings_equal_input_ids(tmp_path, class_name, config):
    reference, ours = reference_and_ours(class_name, tmp_path, **config)
    ids, mask = padded_batch(config["vocab_size"], 200, pad_last=30)
    decoder_ids, _ = padded_batch(config["vocab_size"], 6, pad_last=0, seed=3)
    with torch.no_grad():
        by_ids = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids)[0]
        embeds = dict(inputs_embeds=ours.get_input_embeddings()(ids),
                      decoder_inputs_embeds=ours.get_input_embeddings()(decoder_ids))
        by_embeds = ours(attention_mask=mask, **embeds)[0]
        theirs = reference(attention_mask=mask, **embeds)[0]
    assert max_diff(by_embeds, by_ids) <= TOLERANCE
    assert max_diff(by_embeds, theirs) <= TOLERANCE


def test_get_and_set_the_embeddings(tmp_path):
    _, summarizer = reference_and_ours(CG, tmp_path, **CONFIG_A)
    shared = summarizer.get_input_embeddings()
    assert shared is summarizer.model.shared is summarizer.get_encoder().embed_tokens
    assert summarizer.get_output_embeddings() is summarizer.lm_head and summarizer.lm_head.weight is shared.weight
    table = nn.Embedding(CONFIG_A["vocab_size"], CONFIG_A["d_model"])
    summarizer.set_input_embeddings(table)
    assert summarizer.get_input_embeddings() is table is summarizer.get_decoder().embed_tokens
    assert summarizer.lm_head.weight is table.weight  # the tie follows
    head = nn.Linear(CONFIG_A["d_model"], CONFIG_A["vocab_size"], bias=False)
    summarizer.set_output_embeddings(head)
    assert summarizer.get_output_embeddings() is head

    causal = bigbird_pegasus.BigBirdPegasusForCausalLM(bigbird_pegasus.BigBirdPegasusConfig(**CONFIG_A))
    assert causal.get_input_embeddings() is causal.get_decoder().embed_tokens
    assert causal.get_output_embeddings() is causal.lm_head
    config = bigbird_pegasus.BigBirdPegasusConfig(**CONFIG_A)
    classifier = bigbird_pegasus.BigBirdPegasusForSequenceClassification(config)
    assert classifier.get_output_embeddings() is None
    with pytest.raises(AttributeError, match="no output embeddings"):
        classifier.set_output_embeddings(head)


@pytest.mark.parametrize("new_size, multiple, expected", [(160, None, 160), (120, None, 120), (153, 8, 160),
                                                          (None, 64, 192)])
def test_resize_the_summarizer(tmp_path, new_size, multiple, expected):
    """Both tables, the tied head and final_logits_bias follow; kept rows keep their values, so logits over the
    kept vocabulary are unchanged; the resized model opens in the reference."""
    _, ours = reference_and_ours(CG, tmp_path / "before", **CONFIG_A)
    old = CONFIG_A["vocab_size"]
    kept = min(old, expected)
    ids, mask = padded_batch(kept, 60, pad_last=0)
    decoder_ids, _ = padded_batch(kept, 5, pad_last=0, seed=3)
    with torch.no_grad():
        before = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
    bias = ours.final_logits_bias.clone()
    returned = ours.resize_token_embeddings(new_size, pad_to_multiple_of=multiple)
    assert returned is ours.get_input_embeddings() and returned.weight.shape == (expected, CONFIG_A["d_model"])
    assert ours.config.vocab_size == ours.vocab_size == expected and ours.lm_head.out_features == expected
    assert ours.lm_head.weight is returned.weight is ours.model.decoder.embed_tokens.weight
    assert torch.equal(ours.final_logits_bias[0, :kept], bias[0, :kept])
    assert not ours.final_logits_bias[0, kept:].any()
    with torch.no_grad():
        after = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
    assert after.shape[-1] == expected
    assert max_diff(after[..., :kept], before[..., :kept]) <= TOLERANCE
    ours.save_pretrained(tmp_path / "after")
    reference = transformers.BigBirdPegasusForConditionalGeneration.from_pretrained(tmp_path / "after").eval()
    with torch.no_grad():
        theirs = reference(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
    assert max_diff(after, theirs) <= TOLERANCE


def test_added_rows_are_drawn_around_the_old_mean_or_from_the_init():
    torch.manual_seed(0)
    config = bigbird_pegasus.BigBirdPegasusConfig(**{**CONFIG_A, "vocab_size": 400})
    model = bigbird_pegasus.BigBirdPegasusModel(config)
    table = model.resize_token_embeddings(420)
    torch.testing.assert_close(table.weight[400:].mean(0), table.weight[:400].mean(0), rtol=1e-3, atol=1e-3)
    table = model.resize_token_embeddings(520, mean_resizing=False)
    assert abs(table.weight[420:].std().item() - config.init_std) < 0.003
    assert difference(table.weight[420:].mean(0), table.weight[:400].mean(0)) > 1e-3


def test_resize_untied_tables_and_the_causal_lm_head():
    config = bigbird_pegasus.BigBirdPegasusConfig(**CONFIG_A, tie_word_embeddings=False)
    summarizer = bigbird_pegasus.BigBirdPegasusForConditionalGeneration(config)
    summarizer.resize_token_embeddings(170)
    for module in (summarizer.model.shared, summarizer.get_encoder().embed_tokens,
                   summarizer.get_decoder().embed_tokens, summarizer.lm_head):
        assert module.weight.shape[0] == 170
    assert summarizer.lm_head.weight is not summarizer.model.shared.weight

    causal = bigbird_pegasus.BigBirdPegasusForCausalLM(bigbird_pegasus.BigBirdPegasusConfig(**CONFIG_A))
    head = causal.lm_head.weight.detach().clone()
    causal.resize_token_embeddings(100)
    assert causal.get_input_embeddings().weight.shape[0] == causal.lm_head.weight.shape[0] == 100
    assert torch.equal(causal.lm_head.weight, head[:100])
    logits = causal(input_ids=torch.tensor([[2, 99, 5]])).logits
    assert logits.shape == (1, 3, 100)


def test_cutting_the_padding_row_drops_padding_idx():
    config = bigbird_pegasus.BigBirdPegasusConfig(**{**CONFIG_A, "pad_token_id": 140})
    model = bigbird_pegasus.BigBirdPegasusModel(config)
    assert model.resize_token_embeddings(130).padding_idx is None


def test_invalid_sizes_raise_naming_the_argument():
    model = bigbird_pegasus.BigBirdPegasusModel(bigbird_pegasus.BigBirdPegasusConfig(**CONFIG_A))
    assert model.resize_token_embeddings() is model.get_input_embeddings()  # no argument: nothing changes
    with pytest.raises(ValueError, match="pad_to_multiple_of=1.3"):
        model.resize_token_embeddings(160, pad_to_multiple_of=1.3)
    with pytest.raises(ValueError, match="new_num_tokens=0"):
        model.resize_token_embeddings(0)
