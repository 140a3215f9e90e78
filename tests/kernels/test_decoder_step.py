"""A decoding step through all the decoder's layers in one kernel call (`kernels.DecoderStep`) against the same
layers run one by one in PyTorch's operators: the hidden states, the keys/values it writes into the cache, beam
search's tokens and scores; where it steps aside; and its self-check."""

from __future__ import annotations

import pytest
import torch

import bigbird_pegasus
from bigbird_pegasus import kernels
from bigbird_pegasus.kernels import decoder_step
from bigbird_pegasus.modeling.cache import DecoderCache
from bigbird_pegasus.modeling.fused_step import _fit, _weights
from bigbird_pegasus.modeling.masks import padding_bias
from helpers.cpu import needs_avx2, needs_int8_kernel

pytestmark = needs_avx2  # the step needs the cross-attention kernel, which serves with AVX2 or AVX-512

SOURCE_LENGTH, NEW_TOKENS = 37, 4


def small_model(*, activation: str = "gelu_new", int8: bool = False,
                bf16_cache: bool = False) -> bigbird_pegasus.BigBirdPegasusForConditionalGeneration:
    """A 2-layer model of the published head size (64), random weights (LayerNorms too, so that they count)."""
    config = bigbird_pegasus.BigBirdPegasusConfig(
        vocab_size=97, d_model=128, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=192, attention_type="original_full",
        max_position_embeddings=256, dropout=0.0, attention_dropout=0.0, activation_function=activation)
    torch.manual_seed(0)
    model = bigbird_pegasus.BigBirdPegasusForConditionalGeneration(config).eval()
    with torch.no_grad():
        for norm in model.modules():
            if isinstance(norm, torch.nn.LayerNorm):
                norm.weight.normal_(1.0, 0.2)
                norm.bias.normal_(0.0, 0.2)
    if int8:
        bigbird_pegasus.quantize_int8(model, cross_attention_dtype=torch.bfloat16 if bf16_cache else None)
    elif bf16_cache:
        bigbird_pegasus.reduce_cross_attention_cache(model)
    return model


def steps(model, *, docs: int, beams: int, fused: bool, monkeypatch,
          encoder: bool = True) -> tuple[list[torch.Tensor], DecoderCache]:
    """A prefill of one token, then NEW_TOKENS steps of docs x beams rows, the rows reordered after each (as beam
    search does); the fused step on or off; without `encoder`, no encoder states (a decoder alone, as a causal
    LM). Returns each step's hidden states and the cache."""
    monkeypatch.setattr(kernels, "serves_step", kernels.serves_step if fused else lambda *a, **k: False)
    generator = torch.Generator().manual_seed(docs * beams)
    rows = docs * beams
    states = torch.randn(docs, SOURCE_LENGTH, model.config.d_model, generator=generator) if encoder else None
    mask = torch.ones(docs, SOURCE_LENGTH, dtype=torch.long)
    mask[-1, -5:] = 0                                                                  # a padded document
    mask = mask if encoder else None
    decoder = model.get_decoder()
    cache = DecoderCache(len(decoder.layers))
    cache.reserve(1 + NEW_TOKENS)
    hidden = []
    with torch.no_grad():
        decoder(torch.zeros(rows, 1, dtype=torch.long), encoder_hidden_states=states, encoder_attention_mask=mask,
                past_key_values=cache, use_cache=True)
        for step in range(NEW_TOKENS):
            tokens = torch.randint(3, 97, (rows, 1), generator=generator)
            cross_bias = padding_bias(mask.bool(), torch.float32) if encoder else None
            hidden.append(decoder.step(tokens, position=torch.tensor(cache.length), encoder_states=states,
                                       cross_bias=cross_bias, cache=cache))
            cache.advance(1)
            cache.reorder(torch.randint(0, rows, (rows,), generator=generator))
    return hidden, cache


def counting_steps(monkeypatch) -> list[int]:
    """A list that counts the fused steps taken from now on (after the self-check's, which runs at first use)."""
    decoder_step._self_check()
    calls = []
    call = kernels.DecoderStep.__call__
    monkeypatch.setattr(kernels.DecoderStep, "__call__",
                        lambda self, *a, **k: calls.append(1) or call(self, *a, **k))
    return calls


@pytest.mark.parametrize("activation", ["gelu", "gelu_new", "relu"])
@pytest.mark.parametrize("docs, beams", [(1, 1), (1, 5), (2, 3), (1, 8), (4, 5), (8, 5)])
def test_a_fused_step_computes_what_the_layers_do_one_by_one(activation, docs, beams, monkeypatch):
    model = small_model(activation=activation)
    calls = counting_steps(monkeypatch)
    fused, fused_cache = steps(model, docs=docs, beams=beams, fused=True, monkeypatch=monkeypatch)
    assert len(calls) == NEW_TOKENS
    layers, layers_cache = steps(model, docs=docs, beams=beams, fused=False, monkeypatch=monkeypatch)
    assert len(calls) == NEW_TOKENS
    for fused_hidden, layers_hidden in zip(fused, layers):
        torch.testing.assert_close(fused_hidden, layers_hidden, atol=1e-5, rtol=1e-5)
    for layer in range(2):  # the keys/values it wrote, read in beam order through the origins
        torch.testing.assert_close(fused_cache.self_keys[layer], layers_cache.self_keys[layer], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fused_cache.self_values[layer], layers_cache.self_values[layer], atol=1e-5,
                                   rtol=1e-5)


def test_a_fused_step_without_encoder_states_skips_the_cross_attention(monkeypatch):
    model = small_model()
    calls = counting_steps(monkeypatch)
    fused, _ = steps(model, docs=1, beams=4, fused=True, monkeypatch=monkeypatch, encoder=False)
    layers, _ = steps(model, docs=1, beams=4, fused=False, monkeypatch=monkeypatch, encoder=False)
    assert len(calls) == NEW_TOKENS
    for fused_hidden, layers_hidden in zip(fused, layers):
        torch.testing.assert_close(fused_hidden, layers_hidden, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("int8, bf16_cache", [pytest.param(True, False, marks=needs_int8_kernel), (False, True),
                                              pytest.param(True, True, marks=needs_int8_kernel)])
@pytest.mark.parametrize("docs, beams", [(2, 3), (4, 5)])
def test_a_fused_step_takes_int8_layers_and_a_bf16_cross_attention_cache(int8, bf16_cache, docs, beams, monkeypatch):
    model = small_model(int8=int8, bf16_cache=bf16_cache)
    calls = counting_steps(monkeypatch)
    fused, _ = steps(model, docs=docs, beams=beams, fused=True, monkeypatch=monkeypatch)
    layers, _ = steps(model, docs=docs, beams=beams, fused=False, monkeypatch=monkeypatch)
    assert len(calls) == NEW_TOKENS
    for fused_hidden, layers_hidden in zip(fused, layers):
        torch.testing.assert_close(fused_hidden, layers_hidden, atol=1e-5, rtol=1e-5)


def test_beam_search_through_fused_steps_gives_the_tokens_and_scores_of_the_layers(monkeypatch):
    model = small_model()
    ids = torch.randint(3, 97, (2, 40), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0
    settings = dict(attention_mask=mask, num_beams=4, max_new_tokens=12, min_new_tokens=12, num_return_sequences=4,
                    output_scores=True, return_dict_in_generate=True)
    calls = counting_steps(monkeypatch)
    with torch.no_grad():
        fused = model.generate(ids, **settings)
        assert len(calls) == 11                                    # every step after the prefill
        monkeypatch.setattr(kernels, "serves_step", lambda *a, **k: False)
        layers = model.generate(ids, **settings)
    assert torch.equal(fused.sequences, layers.sequences)
    for fused_scores, layers_scores in zip(fused.scores, layers.scores):
        finite = torch.isfinite(layers_scores)
        assert torch.equal(finite, torch.isfinite(fused_scores))
        torch.testing.assert_close(fused_scores[finite], layers_scores[finite], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", ["forward hook", "training", "quick_gelu", "41 rows", "head size 32",
                                  "values cached only"])
def test_the_layers_run_one_by_one_where_the_kernels_do_not_take_the_step(case, monkeypatch):
    model = small_model(activation="quick_gelu" if case == "quick_gelu" else "gelu_new")
    beams = kernels.MAX_ROWS + 1 if case == "41 rows" else 3
    if case == "forward hook":
        seen = []
        model.get_decoder().layers[1].fc1.register_forward_hook(lambda *arguments: seen.append(1))
    if case == "training":
        model.train()
    if case == "head size 32":
        config = model.config
        config.decoder_attention_heads = 4
        model = bigbird_pegasus.BigBirdPegasusForConditionalGeneration(config).eval()
    calls = counting_steps(monkeypatch)
    ids = torch.randint(3, 97, (1, 20), generator=torch.Generator().manual_seed(2))
    settings = dict(num_beams=beams, max_new_tokens=5, min_new_tokens=5)
    if case == "values cached only":
        settings["cross_attention_cache"] = "values"
    model.generate(ids, **settings)
    assert calls == []
    if case == "forward hook":
        assert len(seen) == 5                                      # the prefill and 4 steps ran the hooked layer


def test_unavailable_step_reason_names_what_does_not_fit():
    model = small_model(activation="quick_gelu")
    assert "quick_gelu" in _fit(model.get_decoder().layers)[0]
    model = small_model()
    assert _fit(model.get_decoder().layers)[0] is None
    model.get_decoder().layers[0].fc2.register_forward_pre_hook(lambda *arguments: None)
    assert "hooks" in _fit(model.get_decoder().layers)[0]


def test_a_step_of_another_head_size_is_refused():
    layer = _weights(small_model().get_decoder().layers[0])                           # d_model 128: 2 heads of 64
    with pytest.raises(ValueError, match="not 4 heads of 64"):
        kernels.DecoderStep([layer], heads=4, activation="gelu_new", norm_eps=1e-5)


def test_the_self_check_refuses_a_step_that_disagrees_with_torch(monkeypatch):
    """The check at first use compares the built step with PyTorch's operators; a disagreement (here: PyTorch's
    side shifted) makes the step unavailable, with a reason, and the layers run one by one."""
    assert decoder_step._check_step() is None
    reference = decoder_step._step_in_torch
    monkeypatch.setattr(decoder_step, "_step_in_torch", lambda *a, **k: reference(*a, **k) + 1e-3)
    monkeypatch.setattr(decoder_step, "_checked", {})
    reason = kernels.unavailable_step_reason([], activation="gelu_new")
    assert reason is not None and "disagrees" in reason
    model = small_model()
    calls = counting_steps(monkeypatch)
    with torch.no_grad():
        model.generate(torch.randint(3, 97, (1, 20), generator=torch.Generator().manual_seed(3)), num_beams=2,
                       max_new_tokens=3, min_new_tokens=3)
    assert calls == []


def test_serves_step_refuses_what_the_kernel_does_not_take():
    x = torch.zeros(3, 128)
    keys = torch.zeros(3, 2, 8, 64)
    cross_keys = torch.zeros(1, 2, 64, 10).transpose(-1, -2)                          # position-minor
    cross_values = torch.zeros(1, 2, 10, 64)
    fits = dict(keys=keys, self_bias=None, cross_keys=cross_keys, cross_values=cross_values, cross_bias=None)
    with torch.no_grad():
        assert kernels.serves_step(x, **fits)
        assert not kernels.serves_step(torch.zeros(41, 128), **fits)                     # more rows than 40
        assert not kernels.serves_step(x.double(), **fits)
        assert not kernels.serves_step(x, **dict(fits, cross_keys=cross_values))          # keys not position-minor
        assert not kernels.serves_step(x, **dict(fits, cross_values=cross_values.half()))
        assert not kernels.serves_step(x, **dict(fits, cross_bias=torch.zeros(1, 1, 1, 11)))
        assert not kernels.serves_step(x, **dict(fits, keys=torch.zeros(4, 2, 8, 64)))   # rows differ
    assert not kernels.serves_step(x, **fits)                                            # gradients on
