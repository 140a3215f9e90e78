"""`BigBirdPegasusForCausalLM.generate` against the reference's: identical tokens for greedy search, beam search
and sampling on prompts of the decoder alone; its own argument errors."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from torch import nn  # noqa: E402

import bigbird_pegasus  # noqa: E402

transformers.logging.set_verbosity_error()

CONFIG = dict(vocab_size=120, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
              decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=128,
              activation_function="gelu_new", dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
# encoder_layers = decoder_layers: the reference sizes the causal LM's cache by encoder_layers.
# Weight scales that make peaked, context-dependent next-token distributions.
LAYER_GAIN, LOGIT_STD = 1.5, 0.6


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(reference, ours, prompts (3, 6)): the reference's random causal LM saved, ours loaded from it. Its EOS
    id is a token that the reference's greedy search emits early in one row and never in another, so that
    rows end at different steps."""
    torch.manual_seed(0)
    reference = transformers.BigBirdPegasusForCausalLM(transformers.BigBirdPegasusConfig(**CONFIG)).eval()
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, nn.Linear) and module is not reference.lm_head:
                module.weight.normal_(0, LAYER_GAIN * module.in_features ** -0.5)
        reference.lm_head.weight.normal_(0, LOGIT_STD)
    prompts = torch.randint(3, CONFIG["vocab_size"], (3, 6), generator=torch.Generator().manual_seed(1))
    continuations = reference.generate(prompts, max_new_tokens=20)[:, prompts.shape[1]:]
    eos = next(int(token) for token in continuations[0, 3:]
               if token not in continuations[0, :3] and token not in continuations[1])
    reference.config.eos_token_id = reference.generation_config.eos_token_id = eos
    folder = tmp_path_factory.mktemp("causal-lm")
    reference.save_pretrained(folder)
    ours = bigbird_pegasus.BigBirdPegasusForCausalLM.from_pretrained(folder)
    return reference, ours, prompts


@pytest.mark.parametrize("options", [
    dict(max_new_tokens=20),
    dict(max_length=15, min_new_tokens=5),
    dict(max_new_tokens=20, no_repeat_ngram_size=2, repetition_penalty=1.3),
    dict(num_beams=3, max_new_tokens=20),
    dict(num_beams=4, max_new_tokens=20, length_penalty=0.6, num_return_sequences=2, no_repeat_ngram_size=3),
    dict(num_beams=3, max_new_tokens=20, min_new_tokens=8, early_stopping=True),
], ids=repr)
def test_tokens_match_reference(models, options):
    reference, ours, prompts = models
    expected = reference.generate(prompts, attention_mask=torch.ones_like(prompts), **options)
    actual = ours.generate(prompts, attention_mask=torch.ones_like(prompts), **options)
    assert torch.equal(actual, expected), (expected, actual)
    assert torch.equal(actual[:, :prompts.shape[1]], prompts.repeat_interleave(actual.shape[0] // 3, dim=0))


def test_rows_end_at_different_steps(models):
    """The parity above covers finished rows padded while others go on."""
    _, ours, prompts = models
    eos = ours.generation_config.eos_token_id
    sequences = ours.generate(prompts, max_new_tokens=20)[:, prompts.shape[1]:]
    ends = [(row == eos).nonzero()[0].item() if (row == eos).any() else None for row in sequences]
    assert len(set(ends)) > 1 and any(end is not None for end in ends), sequences


@pytest.mark.parametrize("options", [dict(max_new_tokens=12, top_k=10, top_p=0.9, temperature=0.8),
                                     dict(max_new_tokens=12, num_beams=2)], ids=repr)
def test_sampling_draws_the_reference_tokens(models, options):
    reference, ours, prompts = models
    for seed in range(2):
        torch.manual_seed(seed)
        expected = reference.generate(prompts, do_sample=True, **options)
        torch.manual_seed(seed)
        assert torch.equal(ours.generate(prompts, do_sample=True, **options), expected)


def test_scores_and_output_fields_match_reference(models):
    reference, ours, prompts = models
    options = dict(num_beams=3, max_new_tokens=10, return_dict_in_generate=True, output_scores=True)
    expected, actual = reference.generate(prompts, **options), ours.generate(prompts, **options)
    assert type(actual).__name__ == type(expected).__name__ == "GenerateBeamDecoderOnlyOutput"
    assert torch.equal(actual.sequences, expected.sequences)
    torch.testing.assert_close(actual.sequences_scores, expected.sequences_scores, rtol=0, atol=1e-4)
    greedy = ours.generate(prompts, max_new_tokens=4, return_dict_in_generate=True, output_scores=True)
    assert type(greedy).__name__ == "GenerateDecoderOnlyOutput" and len(greedy.scores) == 4


def test_no_prompt_starts_from_bos(models):
    reference, ours, _ = models
    assert torch.equal(ours.generate(max_new_tokens=8), reference.generate(max_new_tokens=8))


@pytest.mark.parametrize("options", [dict(max_new_tokens=12), dict(max_new_tokens=12, num_beams=3),
                                     dict(max_new_tokens=12, num_beams=3, num_return_sequences=2,
                                          no_repeat_ngram_size=2)], ids=repr)
def test_left_padded_prompts_generate_the_reference_tokens(models, options):
    """Prompts of different lengths, left-padded with their attention_mask 0 on the padding, as the reference."""
    reference, ours, prompts = models
    padded, mask = prompts.clone(), torch.ones_like(prompts)
    padded[0, :2], mask[0, :2] = 0, 0
    padded[2, :4], mask[2, :4] = 0, 0
    expected = reference.generate(padded, attention_mask=mask, **options)
    actual = ours.generate(padded, attention_mask=mask, **options)
    assert torch.equal(actual, expected), (expected, actual)


@pytest.mark.parametrize("options", [
    dict(max_new_tokens=10),
    dict(max_new_tokens=10, num_beams=3, no_repeat_ngram_size=2, repetition_penalty=1.2),
    dict(max_new_tokens=10, return_dict_in_generate=True, output_scores=True, output_hidden_states=True),
    dict(max_new_tokens=10, return_dict_in_generate=True, output_logits=True, use_cache=False),
], ids=repr)
@pytest.mark.parametrize("with_ids", [True, False], ids=["with input_ids", "embeddings alone"])
def test_prompts_given_as_embeddings_generate_the_reference_tokens(models, options, with_ids):
    """generate(inputs_embeds=...): the decoder reads embeddings that no token gives (noise added), left-padded;
    with input_ids the sequences begin with them, else they hold the new tokens only, as the reference's."""
    reference, ours, prompts = models
    mask = torch.ones_like(prompts)
    mask[1, :2] = 0
    embeds = ours.get_input_embeddings()(prompts) + 0.05 * torch.randn(*prompts.shape, CONFIG["d_model"],
                                                                       generator=torch.Generator().manual_seed(2))
    ids = dict(input_ids=prompts) if with_ids else {}
    expected = reference.generate(**ids, inputs_embeds=embeds, attention_mask=mask, **options)
    actual = ours.generate(**ids, inputs_embeds=embeds, attention_mask=mask, **options)
    if not options.get("return_dict_in_generate"):
        assert torch.equal(actual, expected), (expected, actual)
        return
    assert torch.equal(actual.sequences, expected.sequences)
    for field in ("scores", "logits"):
        if getattr(expected, field) is not None:
            assert max((a - b).abs().max() for a, b in zip(getattr(actual, field), getattr(expected, field))) < 1e-4
    if expected.hidden_states is not None:
        assert len(actual.hidden_states) == len(expected.hidden_states)
        assert max((a - b).abs().max() for step_a, step_b in zip(actual.hidden_states, expected.hidden_states)
                   for a, b in zip(step_a, step_b)) < 1e-4


def test_continuing_from_past_key_values_matches_reference(models):
    """The first call generates the pad id (0) as a token in one row: continued without an attention mask, the
    reference takes it for padding (its mask inferred from pad ids), and so do we; with a mask of ones, the
    continuation equals one call of all the new tokens."""
    reference, ours, prompts = models
    first = dict(max_new_tokens=4, min_new_tokens=4, return_dict_in_generate=True)
    mine, theirs = ours.generate(prompts, **first), reference.generate(prompts, **first)
    assert bool((mine.sequences == 0).any())
    continued = ours.generate(mine.sequences, past_key_values=mine.past_key_values, max_new_tokens=6)
    expected = reference.generate(theirs.sequences, past_key_values=theirs.past_key_values, max_new_tokens=6)
    assert torch.equal(continued, expected)
    mine = ours.generate(prompts, **first)
    continued = ours.generate(mine.sequences, attention_mask=torch.ones_like(mine.sequences),
                              past_key_values=mine.past_key_values, max_new_tokens=6)
    assert torch.equal(continued, ours.generate(prompts, max_new_tokens=10, min_new_tokens=4))


def test_prompts_holding_the_pad_id_without_a_mask_match_reference(models):
    """Without an attention_mask the reference masks the pad id's positions (when it is no EOS id), as we do."""
    reference, ours, prompts = models
    padded = prompts.clone()
    padded[0, 2], padded[1, :2] = 0, 0
    for options in (dict(max_new_tokens=8), dict(max_new_tokens=8, num_beams=2)):
        assert torch.equal(ours.generate(padded, **options), reference.generate(padded, **options))


def test_logits_to_keep_is_accepted_and_changes_no_token(models):
    reference, ours, prompts = models
    expected = reference.generate(prompts, max_new_tokens=8, logits_to_keep=0)
    assert torch.equal(ours.generate(prompts, max_new_tokens=8, logits_to_keep=0), expected)
    assert torch.equal(ours.generate(prompts, max_new_tokens=8, logits_to_keep=1), expected)
    with pytest.raises(ValueError, match="logits_to_keep"):
        ours.generate(prompts, logits_to_keep=-1)


@pytest.mark.parametrize("call, named", [
    (lambda m, p: m.generate(p, attention_mask=torch.ones_like(p)[:, 1:]), "attention_mask"),
    (lambda m, p: m.generate(p[0]), "input_ids"),
    (lambda m, p: m.generate(p, num_beams=0), "num_beams"),
    (lambda m, p: m.generate(p, max_new_tokens=-1), "max_new_tokens"),
    (lambda m, p: m.generate(p, num_beams=2, num_return_sequences=3), "num_return_sequences"),
    (lambda m, p: m.generate(inputs_embeds=torch.zeros(2, 3, 5)), "inputs_embeds"),
    (lambda m, p: m.generate(p, inputs_embeds=torch.zeros(3, 5, CONFIG["d_model"])), "input_ids"),
], ids=["mask of another shape", "1-D prompt", "num_beams=0", "negative max_new_tokens", "more sequences than beams",
        "embeddings of another width", "embeddings of another prompt"])
def test_invalid_arguments_raise_naming_them(models, call, named):
    _, ours, prompts = models
    with pytest.raises(ValueError, match=named):
        call(ours, prompts)
