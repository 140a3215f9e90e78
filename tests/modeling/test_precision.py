"""Reduced precision: the bf16 path, int8 dynamic quantization and the bf16 cross-attention cache stay close
to fp32."""

from __future__ import annotations

import pytest
import torch

import bigbird_pegasus
from bigbird_pegasus import quantize_int8, reduce_cross_attention_cache
from bigbird_pegasus.modeling.linear import Linear
from helpers.reference import CONFIG_A, difference, padded_batch


@pytest.fixture()
def model():
    torch.manual_seed(0)
    config = bigbird_pegasus.BigBirdPegasusConfig(**dict(CONFIG_A, dropout=0.0, d_model=64, encoder_ffn_dim=128,
                                                         decoder_ffn_dim=128))
    model = bigbird_pegasus.BigBirdPegasusForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.final_logits_bias.normal_(0, 1.0)
    return model


def fp32_and_other(model, convert, **inputs):
    with torch.no_grad():
        expected = model(**inputs).logits
        converted = convert(model)
        return expected, converted(**inputs).logits.float()


def test_bfloat16_logits_stay_close_to_fp32(model):
    ids, mask = padded_batch(model.config.vocab_size, 400, pad_last=50)
    decoder_ids, _ = padded_batch(model.config.vocab_size, 8, pad_last=0, seed=5)
    expected, bf16 = fp32_and_other(model, lambda m: m.to(torch.bfloat16), input_ids=ids, attention_mask=mask,
                                    decoder_input_ids=decoder_ids)
    assert torch.isfinite(bf16).all()
    assert difference(bf16, expected) <= 0.05 * expected.abs().max().item()
    assert (bf16.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.9


def test_bfloat16_generates(model):
    ids, mask = padded_batch(model.config.vocab_size, 300, pad_last=20)
    tokens = model.to(torch.bfloat16).generate(ids, attention_mask=mask, num_beams=2, max_new_tokens=5)
    assert tokens.shape == (2, 6) and tokens.dtype == torch.long


def test_int8_logits_stay_close_to_fp32(model):
    ids, mask = padded_batch(model.config.vocab_size, 400, pad_last=50)
    decoder_ids, _ = padded_batch(model.config.vocab_size, 8, pad_last=0, seed=5)
    expected, int8 = fp32_and_other(model, quantize_int8, input_ids=ids, attention_mask=mask,
                                    decoder_input_ids=decoder_ids)
    assert type(model.lm_head) is not torch.nn.Linear            # replaced by its int8 counterpart
    assert difference(int8, expected) <= 0.1 * expected.abs().max().item()
    assert (int8.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.8
    tokens = model.generate(ids, attention_mask=mask, max_new_tokens=4)
    assert tokens.shape == (2, 5)


def test_int8_refuses_other_dtypes(model):
    with pytest.raises(ValueError, match="fp32"):
        quantize_int8(model.to(torch.bfloat16))


def test_int8_with_the_encoder_in_bfloat16_stays_close_to_fp32(model):
    ids, mask = padded_batch(model.config.vocab_size, 400, pad_last=50)
    decoder_ids, _ = padded_batch(model.config.vocab_size, 8, pad_last=0, seed=5)
    inputs = dict(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids)
    expected, mixed = fp32_and_other(model, lambda m: quantize_int8(m, encoder_dtype=torch.bfloat16), **inputs)
    encoder, decoder = model.model.encoder, model.model.decoder
    assert {p.dtype for p in encoder.parameters()} == {torch.bfloat16}
    assert type(encoder.layers[0].fc1) is Linear                        # the encoder's products stay float
    assert type(decoder.layers[0].fc1) is not Linear and type(model.lm_head) is not torch.nn.Linear   # int8
    assert decoder.embed_tokens is model.model.shared and model.model.shared.weight.dtype == torch.float32
    cross_attention = decoder.layers[0].encoder_attn
    assert type(cross_attention.k_proj) is Linear and cross_attention.v_proj.weight.dtype == torch.bfloat16
    assert type(cross_attention.q_proj) is not Linear            # the per-document projections only are bf16
    assert difference(mixed, expected) <= 0.1 * expected.abs().max().item()
    assert (mixed.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.8
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
        plain = model(**inputs).logits
        as_tuple = model(**inputs, return_dict=False)
        embedded = model(inputs_embeds=encoder.embed_tokens(ids).float(), attention_mask=mask,
                         decoder_input_ids=decoder_ids)
    assert out.encoder_last_hidden_state.dtype == torch.float32                 # back in fp32 for the decoder
    assert all(state.dtype == torch.float32 for state in out.encoder_hidden_states)
    assert torch.equal(as_tuple[0], plain)
    assert torch.equal(embedded.logits, plain)                   # fp32 inputs_embeds are cast to bf16 first
    assert model.generate(ids, attention_mask=mask, num_beams=2, max_new_tokens=4).shape == (2, 5)


def test_a_bfloat16_encoder_with_a_float32_cross_attention_cache(model):
    ids, mask = padded_batch(model.config.vocab_size, 400, pad_last=50)
    decoder_ids, _ = padded_batch(model.config.vocab_size, 8, pad_last=0, seed=5)
    expected, mixed = fp32_and_other(
        model, lambda m: quantize_int8(m, cross_attention_dtype=None, encoder_dtype=torch.bfloat16),
        input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids)
    assert difference(mixed, expected) <= 0.1 * expected.abs().max().item()
    with torch.no_grad():
        tokens = model.generate(ids, attention_mask=mask, num_beams=2, max_new_tokens=4, return_dict_in_generate=True)
    cached_keys = tokens.past_key_values.cross_keys[0]
    assert cached_keys is not None and cached_keys.dtype == torch.float32


def test_encoder_dtype_needs_a_float_dtype_and_an_encoder(model):
    with pytest.raises(ValueError, match="encoder_dtype: .* floating-point"):
        quantize_int8(model, encoder_dtype=torch.int8)
    assert all(layer.encoder_attn.cache_dtype is None for layer in model.model.decoder.layers)   # left as it was
    assert type(model.lm_head) is Linear
    causal = bigbird_pegasus.BigBirdPegasusForCausalLM(model.config).eval()
    with pytest.raises(ValueError, match="BigBirdPegasusForCausalLM has no encoder"):
        quantize_int8(causal, encoder_dtype=torch.bfloat16)


def cached_forward(model, **inputs):
    """Logits of a forward that fills a decoder cache, and the dtype of the cross-attention keys it kept."""
    with torch.no_grad():
        out = model(**inputs, use_cache=True)
    return out.logits.float(), out.past_key_values.cross_keys[0].dtype


def test_bfloat16_cross_attention_cache_stays_close_to_fp32(model):
    ids, mask = padded_batch(model.config.vocab_size, 400, pad_last=50)
    decoder_ids, _ = padded_batch(model.config.vocab_size, 8, pad_last=0, seed=5)
    expected, expected_dtype = cached_forward(model, input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids)
    reduce_cross_attention_cache(model)
    reduced, reduced_dtype = cached_forward(model, input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids)
    assert (expected_dtype, reduced_dtype) == (torch.float32, torch.bfloat16)
    assert torch.isfinite(reduced).all()                         # the padding bias survives the narrower dtype
    assert 0 < difference(reduced, expected) <= 0.02 * expected.abs().max().item()
    tokens = model.generate(ids, attention_mask=mask, num_beams=2, max_new_tokens=5)
    assert tokens.shape == (2, 6)


def test_attention_probabilities_over_a_bfloat16_cache(model):
    """output_attentions runs the exact path: over cross-attention keys/values a fast step cached in bf16, it
    attends in bf16 too (its probabilities in the activations' dtype), and generate's records change no token."""
    ids, mask = padded_batch(model.config.vocab_size, 400, pad_last=50)
    decoder_ids, _ = padded_batch(model.config.vocab_size, 8, pad_last=0, seed=5)
    reduce_cross_attention_cache(model)
    with torch.no_grad():
        whole = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
        first = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids[:, :4], use_cache=True)
        rest = model(encoder_outputs=(first.encoder_last_hidden_state,), attention_mask=mask,
                     decoder_input_ids=decoder_ids[:, 4:], past_key_values=first.past_key_values,
                     output_attentions=True)
    assert all(layer.dtype == torch.float32 and torch.isfinite(layer).all() for layer in rest.cross_attentions)
    assert difference(rest.logits, whole[:, 4:]) <= 0.02 * whole.abs().max().item()
    options = dict(attention_mask=mask, num_beams=2, max_new_tokens=6, return_dict_in_generate=True)
    recorded = model.generate(ids, output_attentions=True, **options)
    assert torch.equal(model.generate(ids, **options).sequences, recorded.sequences)


def test_int8_caches_cross_attention_in_bfloat16_unless_told(model):
    ids, mask = padded_batch(model.config.vocab_size, 400, pad_last=50)
    decoder_ids, _ = padded_batch(model.config.vocab_size, 8, pad_last=0, seed=5)
    inputs = dict(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids)
    fp32_state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    _, default_dtype = cached_forward(quantize_int8(model), **inputs)
    model = bigbird_pegasus.BigBirdPegasusForConditionalGeneration(model.config).eval()
    model.load_state_dict(fp32_state)
    _, kept_dtype = cached_forward(quantize_int8(model, cross_attention_dtype=None), **inputs)
    assert (default_dtype, kept_dtype) == (torch.bfloat16, torch.float32)


def test_cross_attention_cache_refuses_integer_dtypes(model):
    with pytest.raises(ValueError, match="floating-point"):
        reduce_cross_attention_cache(model, dtype=torch.int8)
