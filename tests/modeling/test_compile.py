"""torch.compile: the encoder compiles without graph breaks and computes what eager mode does."""

from __future__ import annotations

import pytest
import torch

import bigbird_pegasus
from helpers.cpu import needs_onednn_int8
from helpers.reference import CONFIG_A, difference, padded_batch


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_encoder_compiles_without_graph_breaks(mode):
    torch.manual_seed(0)
    config = bigbird_pegasus.BigBirdPegasusConfig(**dict(CONFIG_A, dropout=0.0, encoder_layers=1))
    model = getattr(bigbird_pegasus.BigBirdPegasusModel(config), mode)()
    ids, mask = padded_batch(config.vocab_size, 300, pad_last=40)
    # block-sparse layouts are per input length, so lengths stay static: one graph per length
    compiled = torch.compile(model.encoder, fullgraph=True, dynamic=False, backend="eager")
    with torch.set_grad_enabled(mode == "train"):
        expected = model.encoder(ids, attention_mask=mask).last_hidden_state
        assert difference(compiled(ids, attention_mask=mask).last_hidden_state, expected) <= 1e-5
        short = ids[:, :50]   # too short for block-sparse: full attention, no graph break for the warning
        assert difference(compiled(short).last_hidden_state, model.encoder(short).last_hidden_state) <= 1e-5


@pytest.mark.parametrize("cross_attention_cache", ["keys_and_values", "none"])
def test_generation_compiles_without_graph_breaks(cross_attention_cache):
    """compile_for_generation: the encoder and the static-shape decoder step compile with fullgraph=True and
    generate the same tokens as eager mode (greedy and beam search, padded batch), cross-attention keys and values
    cached or folded into the queries."""
    torch.manual_seed(0)
    config = bigbird_pegasus.BigBirdPegasusConfig(**dict(CONFIG_A, dropout=0.0, encoder_layers=1, decoder_layers=2))
    model = bigbird_pegasus.BigBirdPegasusForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.final_logits_bias.normal_(0, 3.0)   # varied tokens from random weights
    ids, mask = padded_batch(config.vocab_size, 300, pad_last=40)
    options = dict(attention_mask=mask, max_new_tokens=6, cross_attention_cache=cross_attention_cache)
    expected = [model.generate(ids, **options), model.generate(ids, num_beams=3, **options)]
    model.compile_for_generation(backend="eager")
    actual = [model.generate(ids, **options), model.generate(ids, num_beams=3, **options)]
    for want, got in zip(expected, actual):
        assert torch.equal(want, got)


@needs_onednn_int8
def test_int8_generation_compiles_without_graph_breaks():
    """After quantize_int8 (Int8Linear everywhere, PyTorch's int8 product past the kernel's rows, its exactness
    checked before compiling), compile_for_generation generates eager mode's tokens."""
    torch.manual_seed(0)
    config = bigbird_pegasus.BigBirdPegasusConfig(**dict(CONFIG_A, dropout=0.0, encoder_layers=1, decoder_layers=2))
    model = bigbird_pegasus.quantize_int8(bigbird_pegasus.BigBirdPegasusForConditionalGeneration(config).eval())
    ids, mask = padded_batch(config.vocab_size, 300, pad_last=40)
    options = dict(attention_mask=mask, max_new_tokens=6, num_beams=3)
    expected = model.generate(ids, **options)
    model.compile_for_generation(backend="eager")
    assert torch.equal(model.generate(ids, **options), expected)
