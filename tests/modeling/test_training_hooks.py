"""What PEFT/LoRA and the Trainer use: activation (gradient) checkpointing under the reference's names and
options, input embeddings that require gradients, config.gradient_checkpointing, prepare_inputs_for_generation."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

import bigbird_pegasus
from helpers.reference import CONFIG_B, NO_DROPOUT, padded_batch

CG = bigbird_pegasus.BigBirdPegasusForConditionalGeneration


def summarizer(**overrides) -> CG:
    torch.manual_seed(0)
    return CG(bigbird_pegasus.BigBirdPegasusConfig(**CONFIG_B, **NO_DROPOUT, **overrides)).train()


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    ids, mask = padded_batch(CONFIG_B["vocab_size"], 120, pad_last=11)
    labels, _ = padded_batch(CONFIG_B["vocab_size"], 7, pad_last=0, seed=2)
    model.zero_grad(set_to_none=True)
    model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    return {name: p.grad for name, p in model.named_parameters()}


@pytest.mark.parametrize("enable", [
    lambda m: m.gradient_checkpointing_enable(),
    lambda m: m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True}),
    lambda m: m.activation_checkpointing_enable({"use_reentrant": False}, every_n_layers=2),
    lambda m: m.activation_checkpointing_enable(offload=True),
], ids=["default", "reentrant", "every second layer", "offloaded"])
def test_checkpointing_gives_the_same_gradients(enable):
    expected = gradients(summarizer())
    model = summarizer()
    enable(model)
    assert model.is_activation_checkpointing and model.is_gradient_checkpointing
    actual = gradients(model)
    for name, grad in expected.items():
        assert actual[name] is not None, name  # the encoder's too, through the decoder's checkpointed layers
        assert (actual[name] - grad).abs().max() <= 1e-5 * max(1.0, grad.abs().max().item()), name
    model.gradient_checkpointing_disable()
    assert not model.is_activation_checkpointing


def test_every_n_layers_flags_the_reference_s_layers():
    config = dict(CONFIG_B, encoder_layers=3, decoder_layers=2)
    reference = transformers.BigBirdPegasusForConditionalGeneration(transformers.BigBirdPegasusConfig(**config))
    ours = CG(bigbird_pegasus.BigBirdPegasusConfig(**config))
    flags = []
    for model in (reference, ours):
        model.activation_checkpointing_enable(every_n_layers=2)
        layers = [*model.get_encoder().layers, *model.get_decoder().layers]
        flags.append([layer.gradient_checkpointing for layer in layers])
    assert flags[0] == flags[1] == [True, False, True, False, True]
    with pytest.raises(ValueError, match="every_n_layers=0"):
        ours.activation_checkpointing_enable(every_n_layers=0)


def test_input_require_grads_lets_adapters_learn_under_reentrant_checkpointing():
    """A frozen model with one trainable weight inside a checkpointed layer (what LoRA makes): with a reentrant
    checkpoint, gradients reach it only when the input embeddings' output requires them."""
    model = summarizer()
    model.requires_grad_(False)
    model.get_encoder().layers[1].fc1.weight.requires_grad_(True)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.disable_input_require_grads()
    with pytest.warns(UserWarning, match="requires_grad"), pytest.raises(RuntimeError, match="does not require grad"):
        gradients(model)
    model.enable_input_require_grads()
    assert gradients(model)["model.encoder.layers.1.fc1.weight"].abs().sum() > 0
    embedded = model.get_input_embeddings()(torch.tensor([[5, 6]]))
    assert embedded.requires_grad
    model.disable_input_require_grads()
    assert not model.get_input_embeddings()(torch.tensor([[5, 6]])).requires_grad


def test_config_gradient_checkpointing_is_honoured_and_dropped(tmp_path):
    model = summarizer(gradient_checkpointing=True)
    assert model.is_gradient_checkpointing and "gradient_checkpointing" not in model.config.to_dict()
    plain = summarizer()
    plain.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "gradient_checkpointing": True}))
    assert CG.from_pretrained(tmp_path).is_gradient_checkpointing
    assert not CG.from_pretrained(tmp_path, gradient_checkpointing=False).is_gradient_checkpointing


def test_prepare_inputs_for_generation_drives_a_decoding_loop_to_generate_s_tokens():
    model = summarizer().eval()
    ids, mask = padded_batch(CONFIG_B["vocab_size"], 120, pad_last=11)
    expected = model.generate(ids, attention_mask=mask, max_new_tokens=6)
    with torch.no_grad():
        encoder_outputs = model.get_encoder()(ids, attention_mask=mask)
        tokens, cache = expected[:, :1], None
        for _ in range(6):
            inputs = model.prepare_inputs_for_generation(tokens, past_key_values=cache, attention_mask=mask,
                                                         encoder_outputs=encoder_outputs, use_cache=True)
            out = model(**inputs)
            cache = out.past_key_values
            tokens = torch.cat([tokens, out.logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(tokens, expected)

    torch.manual_seed(0)
    causal = bigbird_pegasus.BigBirdPegasusForCausalLM(bigbird_pegasus.BigBirdPegasusConfig(**CONFIG_B)).eval()
    prompt = ids[:, :5]
    expected = causal.generate(prompt, max_new_tokens=4)
    with torch.no_grad():
        tokens, cache = prompt, None
        for _ in range(4):
            inputs = causal.prepare_inputs_for_generation(tokens, past_key_values=cache, use_cache=True)
            out = causal(**inputs)
            cache = out.past_key_values
            tokens = torch.cat([tokens, out.logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(tokens, expected)
    embeds = causal.get_input_embeddings()(prompt)
    inputs = causal.prepare_inputs_for_generation(prompt, inputs_embeds=embeds, output_attentions=True)
    assert "input_ids" not in inputs and inputs["inputs_embeds"] is embeds and inputs["output_attentions"] is True
    assert model.prepare_inputs_for_generation(prompt, custom=1)["custom"] == 1
