"""Reduced precision: the bf16 path and int8 dynamic quantization stay close to fp32."""

from __future__ import annotations

import pytest
import torch

import bigbird_pegasus
from bigbird_pegasus import quantize_int8
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
