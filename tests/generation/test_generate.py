"""`generate` against the reference's: identical tokens for greedy search and beam search with every length,
penalty and stopping option, on padded batches, with block-sparse and full attention, on two configurations;
sampling reproducibility; argument errors; the encoder and cross-attention K/V computed once, or folded into the
queries (`cross_attention_cache`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from torch import nn  # noqa: E402

import bigbird_pegasus  # noqa: E402
from bigbird_pegasus.modeling.attention import DecoderAttention  # noqa: E402
from bigbird_pegasus.modeling.masks import padding_bias  # noqa: E402
from bigbird_pegasus.modeling.cache import DecoderCache  # noqa: E402
from bigbird_pegasus.generation.config import GenerationConfig  # noqa: E402
from bigbird_pegasus.generation.logits_process import (  # noqa: E402
    EncoderNoRepeatNGram, ForcedBOS, ForcedEOS, MinLength, NoBadWords, NoRepeatNGram, RepetitionPenalty, Temperature,
    TopK, TopP,
)
from bigbird_pegasus import quantize_int8  # noqa: E402

transformers.logging.set_verbosity_error()

EOS = 1
# Weight scales found by hand: the layers matter as much as the input token, and EOS comes after a few tokens.
LAYER_GAIN, LOGIT_SCALE, EOS_BIAS = 1.5, 3.0, 5.0
# Two configurations that differ in block size, random blocks, activation, biases and embedding scale. Their
# documents are longer than (5 + 2r) * block_size tokens, so that block-sparse attention really applies.
CONFIGS = {
    "A": dict(vocab_size=150, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
              decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, block_size=16, num_random_blocks=2,
              max_position_embeddings=512, activation_function="gelu_new", use_bias=False, scale_embedding=True),
    "B": dict(vocab_size=130, d_model=48, encoder_layers=2, decoder_layers=2, encoder_attention_heads=6,
              decoder_attention_heads=3, encoder_ffn_dim=40, decoder_ffn_dim=56, block_size=8, num_random_blocks=3,
              max_position_embeddings=512, activation_function="relu", use_bias=True, scale_embedding=False),
    # the published checkpoints' head size (64), which the decoding steps' C kernels are written for
    "C": dict(vocab_size=150, d_model=128, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
              decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, block_size=16, num_random_blocks=2,
              max_position_embeddings=512, activation_function="gelu_new", use_bias=True, scale_embedding=True),
}
# (padded length, real length of the second document), both above the block-sparse threshold.
DOCUMENT_LENGTHS = {"A": (208, 170), "B": (120, 97), "C": (208, 170)}
NO_DROPOUT = dict(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
MODELS = ["A-block_sparse", "B-block_sparse", "A-original_full", "B-original_full", "C-original_full"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """name -> (reference, ours, input_ids, attention_mask), built on first use."""
    built = {}

    def get(name: str):
        if name not in built:
            config_name, attention_type = name.split("-")
            folder = tmp_path_factory.mktemp(name)
            reference, ours = reference_and_ours(folder, dict(CONFIGS[config_name], attention_type=attention_type))
            built[name] = (reference, ours, *padded_documents(config_name))
        return built[name]

    return get


def reference_and_ours(folder, config: dict, seed: int = 0, **generation_defaults):
    """The reference with random weights that make peaked, context-dependent next-token distributions (so that
    sequences vary and end with EOS at different steps) and `generation_defaults` in its generation config,
    saved to `folder`; ours loaded from it."""
    torch.manual_seed(seed)
    reference = transformers.BigBirdPegasusForConditionalGeneration(
        transformers.BigBirdPegasusConfig(**NO_DROPOUT, **config))
    for name, value in generation_defaults.items():
        setattr(reference.generation_config, name, value)
    d_model = config["d_model"]
    embedding_std = d_model ** -0.5 if config["scale_embedding"] else 1.0   # scaled embeddings of unit size
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, nn.Embedding):
                module.weight.normal_(0, embedding_std)
            elif isinstance(module, nn.Linear) and module is not reference.lm_head:
                module.weight.normal_(0, LAYER_GAIN * module.in_features ** -0.5)
        # Random signs in the final LayerNorm stop the tied LM head from favouring the input token; its size
        # sets the logits' spread to about LOGIT_SCALE.
        reference.model.decoder.layernorm_embedding.weight.normal_(0, LOGIT_SCALE / (embedding_std * d_model ** 0.5))
        reference.final_logits_bias.normal_(0, 1)
        reference.final_logits_bias[0, EOS] += EOS_BIAS
    reference.save_pretrained(folder)
    ours = bigbird_pegasus.BigBirdPegasusForConditionalGeneration.from_pretrained(folder)
    return reference.eval(), ours


def padded_documents(config_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Two documents (2, n) ending in EOS, the second right-padded."""
    length, second_length = DOCUMENT_LENGTHS[config_name]
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, CONFIGS[config_name]["vocab_size"], (2, length), generator=generator)
    mask = torch.ones(2, length, dtype=torch.long)
    ids[:, -1] = EOS
    ids[1, second_length - 1] = EOS
    ids[1, second_length:] = 0
    mask[1, second_length:] = 0
    return ids, mask


def both(models, name: str, **kwargs):
    """The reference's and our `generate` on the same documents and keywords."""
    reference, ours, ids, mask = models(name)
    return reference.generate(ids, attention_mask=mask, **kwargs), ours.generate(ids, attention_mask=mask, **kwargs)


def assert_same_tokens(expected: torch.Tensor, actual: torch.Tensor) -> None:
    assert actual.shape == expected.shape, (expected, actual)
    assert torch.equal(actual, expected), (expected, actual)


# -- parity: greedy and beam search -------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_greedy_matches_reference(models, name):
    expected, actual = both(models, name, max_new_tokens=16)
    assert_same_tokens(expected, actual)
    assert len(set(expected[:, 1:].flatten().tolist())) > 4, "the weights should give varied tokens"


@pytest.mark.parametrize("name", MODELS)
def test_beam_search_matches_reference(models, name):
    options = dict(num_beams=4, length_penalty=0.6, no_repeat_ngram_size=3, min_new_tokens=3,
                   num_return_sequences=3, max_new_tokens=14, return_dict_in_generate=True, output_scores=True)
    expected, actual = both(models, name, **options)
    assert_same_tokens(expected.sequences, actual.sequences)
    torch.testing.assert_close(actual.sequences_scores, expected.sequences_scores, atol=1e-4, rtol=1e-4)
    assert_same_tokens(expected.beam_indices.long(), actual.beam_indices.long())
    assert len(actual.scores) == len(expected.scores)
    for ours_step, reference_step in zip(actual.scores, expected.scores):
        torch.testing.assert_close(ours_step, reference_step, atol=1e-4, rtol=1e-4)


def test_sequences_end_at_different_steps(models):
    """The fixture is meaningful: some beam hypotheses end with EOS before max_length, at different lengths."""
    expected, actual = both(models, "A-block_sparse", num_beams=4, num_return_sequences=4, max_new_tokens=20)
    assert_same_tokens(expected, actual)
    eos_positions = {int((row == EOS).nonzero()[0]) for row in actual[:, 1:] if (row == EOS).any()}
    assert len(eos_positions) >= 2, actual


@pytest.mark.parametrize("options", [
    dict(repetition_penalty=1.8, max_new_tokens=12),
    dict(repetition_penalty=0.7, num_beams=3, max_new_tokens=12),
    dict(bad_words_ids=[[EOS], [7], [40, 41], [5, 6, 9]], max_new_tokens=12),
    dict(bad_words_ids=[[10, 20]], num_beams=3, max_new_tokens=12),
    dict(forced_bos_token_id=9, forced_eos_token_id=[5, 6], max_new_tokens=8),
    dict(forced_bos_token_id=9, forced_eos_token_id=5, num_beams=3, max_length=9),
    dict(eos_token_id=[EOS, 17, 33], max_new_tokens=12),
    dict(eos_token_id=[EOS, 17, 33], num_beams=3, max_new_tokens=12),
    dict(min_length=6, max_length=10),
    dict(max_length=7),
    dict(num_beams=2),
    dict(max_new_tokens=12, num_beams=3, early_stopping=True, length_penalty=2.0),
    dict(max_new_tokens=10, num_beams=2, early_stopping=True, length_penalty=2.0),
    dict(max_new_tokens=12, num_beams=3, early_stopping=False, length_penalty=-1.0),
    dict(max_new_tokens=12, num_beams=3, early_stopping="never", length_penalty=1.5),
    dict(max_new_tokens=12, num_beams=3, early_stopping="never", length_penalty=-0.5),
    # 149 and 7 are frequent tokens of this model: as EOS ids, many hypotheses end early and the stopping
    # heuristics decide the result.
    *(dict(max_new_tokens=10, num_beams=3, early_stopping=early_stopping, length_penalty=2.0,
           eos_token_id=[EOS, 149, 7]) for early_stopping in (True, False, "never")),
    dict(max_new_tokens=10, num_beams=3, pad_token_id=7),
    dict(no_repeat_ngram_size=1, max_new_tokens=12),
    dict(encoder_no_repeat_ngram_size=1, max_new_tokens=12),
    dict(encoder_no_repeat_ngram_size=2, max_new_tokens=12, num_beams=3, no_repeat_ngram_size=2),
], ids=repr)
def test_options_match_reference(models, options):
    expected, actual = both(models, "A-block_sparse", **options)
    assert_same_tokens(expected, actual)


REFERENCE_PROCESSORS = transformers.generation.logits_process
PROCESSORS = {
    "repetition_penalty": (lambda: RepetitionPenalty(1.7),
                           lambda: REFERENCE_PROCESSORS.RepetitionPenaltyLogitsProcessor(1.7)),
    "no_repeat_1gram": (lambda: NoRepeatNGram(1), lambda: REFERENCE_PROCESSORS.NoRepeatNGramLogitsProcessor(1)),
    "no_repeat_2gram": (lambda: NoRepeatNGram(2), lambda: REFERENCE_PROCESSORS.NoRepeatNGramLogitsProcessor(2)),
    "no_repeat_3gram": (lambda: NoRepeatNGram(3), lambda: REFERENCE_PROCESSORS.NoRepeatNGramLogitsProcessor(3)),
    "bad_words": (lambda: NoBadWords(BAD_WORDS, eos_ids=torch.tensor([1]), device=torch.device("cpu")),
                  lambda: REFERENCE_PROCESSORS.NoBadWordsLogitsProcessor(BAD_WORDS, 1)),
    "min_length": (lambda: MinLength(4, eos_ids=torch.tensor([1, 2])),
                   lambda: REFERENCE_PROCESSORS.MinLengthLogitsProcessor(4, [1, 2])),
    "forced_bos": (lambda: ForcedBOS(3), lambda: REFERENCE_PROCESSORS.ForcedBOSTokenLogitsProcessor(3)),
    "forced_eos": (lambda: ForcedEOS(5, token_ids=torch.tensor([1, 2])),
                   lambda: REFERENCE_PROCESSORS.ForcedEOSTokenLogitsProcessor(5, [1, 2])),
    "temperature": (lambda: Temperature(0.7), lambda: REFERENCE_PROCESSORS.TemperatureLogitsWarper(0.7)),
    "top_k": (lambda: TopK(3, keep=1), lambda: REFERENCE_PROCESSORS.TopKLogitsWarper(3, min_tokens_to_keep=1)),
    "top_k_keep": (lambda: TopK(2, keep=3), lambda: REFERENCE_PROCESSORS.TopKLogitsWarper(2, min_tokens_to_keep=3)),
    "top_p": (lambda: TopP(0.6, keep=1), lambda: REFERENCE_PROCESSORS.TopPLogitsWarper(0.6, min_tokens_to_keep=1)),
    "top_p_keep": (lambda: TopP(0.3, keep=2), lambda: REFERENCE_PROCESSORS.TopPLogitsWarper(0.3, min_tokens_to_keep=2)),
}
BAD_WORDS = [[1], [3], [2, 4], [0, 1, 2], [4, 4]]
# Two documents whose rows (3 each) the encoder n-gram processors see: small ids, so that n-grams recur.
ENCODER_IDS = torch.randint(0, 5, (2, 9), generator=torch.Generator().manual_seed(3))
PROCESSORS.update({
    f"encoder_no_repeat_{n}gram": (
        lambda n=n: EncoderNoRepeatNGram(n, ENCODER_IDS),
        lambda n=n: REFERENCE_PROCESSORS.EncoderNoRepeatNGramLogitsProcessor(n, ENCODER_IDS))
    for n in (1, 2, 3)})


@pytest.mark.parametrize("name", PROCESSORS)
def test_logits_processors_match_reference(name):
    """Every history length from 1 (the start token alone) on, with many repeats: boundaries included."""
    ours, reference = (make() for make in PROCESSORS[name])
    generator = torch.Generator().manual_seed(0)
    for length in range(1, 8):
        tokens = torch.randint(0, 5, (6, length), generator=generator)
        scores = torch.randn(6, 12, generator=generator)
        scores[0, 5] = float("-inf")
        assert torch.equal(ours(tokens, scores.clone()), reference(tokens, scores.clone())), length


def test_max_length_counts_the_start_token_and_max_new_tokens_does_not(models):
    _, ours, ids, mask = models("B-block_sparse")
    no_eos = dict(attention_mask=mask, min_new_tokens=30)
    assert ours.generate(ids, max_length=9, **no_eos).shape == (2, 9)
    assert ours.generate(ids, max_new_tokens=9, **no_eos).shape == (2, 10)
    assert ours.generate(ids, **no_eos).shape == (2, 21)  # nothing set: 20 new tokens, as the reference


def test_decoder_prompt_matches_reference(models):
    prompt = torch.tensor([[2, 11, 12], [2, 13, 14]])
    expected, actual = both(models, "B-original_full", decoder_input_ids=prompt, num_beams=3, max_new_tokens=8)
    assert_same_tokens(expected, actual)
    expected, actual = both(models, "B-original_full", decoder_input_ids=prompt[:, 1:], max_new_tokens=8)
    assert_same_tokens(expected, actual)


@pytest.mark.parametrize("options", [dict(max_new_tokens=8), dict(max_new_tokens=8, num_beams=3)], ids=repr)
def test_left_padded_decoder_prompts_match_reference(models, options):
    """decoder_input_ids of different lengths, left-padded, with their decoder_attention_mask (grown by the start
    token the reference prepends)."""
    prompt = torch.tensor([[0, 0, 11, 12], [13, 14, 15, 16]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    expected, actual = both(models, "A-block_sparse", decoder_input_ids=prompt, decoder_attention_mask=mask,
                            **options)
    assert_same_tokens(expected, actual)
    _, ours, ids, attention_mask = models("A-block_sparse")
    unpadded = ours.generate(ids[1:], attention_mask=attention_mask[1:], decoder_input_ids=prompt[1:], **options)
    assert torch.equal(actual[1, :unpadded.shape[1]], unpadded[0])


@pytest.mark.parametrize("output_attentions", [False, True], ids=["fast path", "recorded"])
def test_continuing_from_past_key_values_matches_reference(models, output_attentions):
    """generate(past_key_values=...) continues an earlier greedy call (its cache holds all but the last token):
    the same tokens as one call of all the new tokens, and as the reference's continuation; the earlier call's
    cache is left as it was. The reference needs a decoder_attention_mask for it (without one it feeds the cached
    positions again and its tokens go wrong: a bug we do not reproduce), ours works with or without."""
    reference, ours, ids, mask = models("A-block_sparse")
    first = dict(attention_mask=mask, max_new_tokens=4, min_new_tokens=4, return_dict_in_generate=True,
                 output_attentions=output_attentions)
    mine, theirs = ours.generate(ids, **first), reference.generate(ids, **first)
    assert torch.equal(mine.sequences, theirs.sequences)
    cached_before = mine.past_key_values.self_keys[0].clone()
    rest = dict(attention_mask=mask, max_new_tokens=5, min_new_tokens=5)
    continued = ours.generate(ids, decoder_input_ids=mine.sequences, past_key_values=mine.past_key_values, **rest)
    decoder_mask = torch.ones_like(theirs.sequences)
    expected = reference.generate(ids, decoder_input_ids=theirs.sequences, decoder_attention_mask=decoder_mask,
                                  past_key_values=theirs.past_key_values, **rest)
    assert_same_tokens(expected, continued)
    with_mask = ours.generate(ids, decoder_input_ids=mine.sequences, decoder_attention_mask=decoder_mask,
                              past_key_values=mine.past_key_values, **rest)
    assert torch.equal(continued, with_mask)
    assert torch.equal(continued, ours.generate(ids, attention_mask=mask, max_new_tokens=9, min_new_tokens=9))
    assert torch.equal(mine.past_key_values.self_keys[0], cached_before)


def test_documents_holding_the_pad_id_without_a_mask_match_reference(models):
    """The reference's encoder-decoder generate infers no attention mask from pad ids (its decoder-only one does):
    padding passed without its mask is read as tokens, by both."""
    reference, ours, ids, mask = models("A-block_sparse")
    assert ours.generation_config.pad_token_id == 0 and bool((ids == 0).any())
    expected = reference.generate(ids, max_new_tokens=8)
    assert_same_tokens(expected, ours.generate(ids, max_new_tokens=8))
    assert not torch.equal(expected, ours.generate(ids, attention_mask=mask, max_new_tokens=8))


def test_past_key_values_that_do_not_fit_the_prompt_raise(models):
    _, ours, ids, mask = models("A-block_sparse")
    first = ours.generate(ids, attention_mask=mask, max_new_tokens=4, return_dict_in_generate=True)
    for prompt, named in ((first.sequences[:, :2], "holds 4 positions, the prompt 2"),
                          (first.sequences[:1], "decoder_input_ids must be")):
        with pytest.raises(ValueError, match=named):
            ours.generate(ids, attention_mask=mask, decoder_input_ids=prompt, past_key_values=first.past_key_values)
    with pytest.raises(ValueError, match="has 2 rows, the prompt 6"):
        ours.generate(ids, attention_mask=mask, decoder_input_ids=first.sequences,
                      past_key_values=first.past_key_values, num_beams=3)
    with pytest.raises(ValueError, match="use_cache=True"):
        ours.generate(ids, attention_mask=mask, decoder_input_ids=first.sequences,
                      past_key_values=first.past_key_values, use_cache=False)


def test_defaults_come_from_the_checkpoint_generation_config(tmp_path):
    defaults = dict(num_beams=3, length_penalty=0.5, max_length=10, no_repeat_ngram_size=2)
    reference, ours = reference_and_ours(tmp_path, dict(CONFIGS["B"], attention_type="original_full"), **defaults)
    ids, mask = padded_documents("B")
    expected = reference.generate(ids, attention_mask=mask)
    assert_same_tokens(expected, ours.generate(ids, attention_mask=mask))
    assert_same_tokens(reference.generate(ids, attention_mask=mask, num_beams=1),
                       ours.generate(ids, attention_mask=mask, num_beams=1))
    assert not torch.equal(expected, ours.generate(ids, attention_mask=mask, num_beams=1))


def test_generation_config_argument(models):
    reference, ours, ids, mask = models("B-block_sparse")
    settings = dict(num_beams=3, length_penalty=0.5, max_new_tokens=9, no_repeat_ngram_size=2)
    expected = reference.generate(ids, attention_mask=mask, **settings)
    assert_same_tokens(expected, ours.generate(ids, attention_mask=mask,
                                               generation_config=GenerationConfig(**settings)))
    assert_same_tokens(expected, ours.generate(ids, attention_mask=mask,
                                               generation_config=transformers.GenerationConfig(**settings)))


def test_encoder_outputs_skip_the_encoder(models):
    _, ours, ids, mask = models("A-block_sparse")
    expected = ours.generate(ids, attention_mask=mask, num_beams=3, max_new_tokens=8)
    encoder_outputs = ours.get_encoder()(ids, attention_mask=mask)
    with input_shapes(ours.get_encoder()) as (encoder_calls,):
        actual = ours.generate(attention_mask=mask, encoder_outputs=encoder_outputs, num_beams=3, max_new_tokens=8)
    assert encoder_calls == [] and torch.equal(actual, expected)


@pytest.mark.parametrize("early_stopping", [True, False, "never"])
def test_beam_search_runs_as_many_decoder_steps_as_the_reference(models, early_stopping):
    reference, ours, ids, mask = models("A-block_sparse")
    options = dict(attention_mask=mask, max_new_tokens=12, num_beams=3, early_stopping=early_stopping,
                   length_penalty=2.0, eos_token_id=[EOS, 149, 7])
    # one call of the first decoder layer per decoder step (ours runs its steps through `decoder.step`)
    with input_shapes(reference.model.decoder.layers[0], ours.get_decoder().layers[0]) as (reference_steps,
                                                                                           our_steps):
        reference.generate(ids, **options)
        ours.generate(ids, **options)
    assert len(our_steps) == len(reference_steps)
    if early_stopping is True:
        assert len(our_steps) < 12, "all beams finish early here"


# -- the fast path --------------------------------------------------------------------------------------

@contextmanager
def input_shapes(*modules: nn.Module) -> Iterator[list[list[tuple[int, ...]]]]:
    """Per module, the shape of the first input (positional, or `input_ids`) of each call inside the block."""
    shapes: list[list[tuple[int, ...]]] = [[] for _ in modules]

    def recorder(seen: list[tuple[int, ...]]):
        def record(_module, args, kwargs, _output):
            seen.append(tuple((args[0] if args else kwargs["input_ids"]).shape))
        return record

    hooks = [module.register_forward_hook(recorder(seen), with_kwargs=True) for module, seen in zip(modules, shapes)]
    try:
        yield shapes
    finally:
        for hook in hooks:
            hook.remove()


@pytest.mark.parametrize("options", [dict(max_new_tokens=10), dict(num_beams=4, max_new_tokens=10),
                                     dict(do_sample=True, num_return_sequences=3, max_new_tokens=10, seed=0)],
                         ids=repr)
def test_encoder_and_cross_attention_keys_values_run_once_per_document(models, options):
    _, ours, ids, mask = models("A-block_sparse")
    layers = ours.get_decoder().layers
    projections = [layer.encoder_attn.k_proj for layer in layers] + [layer.encoder_attn.v_proj for layer in layers]
    with input_shapes(ours.get_encoder(), *projections) as (encoder_calls, *projection_calls):
        ours.generate(ids, attention_mask=mask, **options)
    documents = (2, ids.shape[1], CONFIGS["A"]["d_model"])
    assert encoder_calls == [tuple(ids.shape)]
    assert projection_calls == [[documents]] * len(projections), "one projection per layer, not per beam"


# -- cross-attention cache: keys (and values) folded into the queries -------------------------------------

FOLDED = ["values", "none"]


@pytest.mark.parametrize("cross_attention_cache", FOLDED)
@pytest.mark.parametrize("name", MODELS)
def test_folded_cross_attention_generates_the_reference_tokens(models, name, cross_attention_cache):
    reference, ours, ids, mask = models(name)
    options = dict(num_beams=4, length_penalty=0.6, no_repeat_ngram_size=3, min_new_tokens=3,
                   num_return_sequences=3, max_new_tokens=14, return_dict_in_generate=True, output_scores=True)
    expected = reference.generate(ids, attention_mask=mask, **options)
    actual = ours.generate(ids, attention_mask=mask, cross_attention_cache=cross_attention_cache, **options)
    assert_same_tokens(expected.sequences, actual.sequences)
    torch.testing.assert_close(actual.sequences_scores, expected.sequences_scores, atol=1e-4, rtol=1e-4)
    greedy = dict(max_new_tokens=16)
    assert_same_tokens(reference.generate(ids, attention_mask=mask, **greedy),
                       ours.generate(ids, attention_mask=mask, cross_attention_cache=cross_attention_cache, **greedy))


@pytest.mark.parametrize("cross_attention_cache, projected", [("keys_and_values", ["k_proj", "v_proj"]),
                                                               ("values", ["v_proj"]), ("none", [])])
def test_folded_projections_are_never_applied_to_the_encoder_states(models, cross_attention_cache, projected):
    """What is not projected is not kept: `values` keeps one (docs, s, d_model) tensor per layer, `none` none."""
    _, ours, ids, mask = models("B-block_sparse")
    layers = ours.get_decoder().layers
    names = ["k_proj", "v_proj"]
    projections = [getattr(layer.encoder_attn, name) for name in names for layer in layers]
    with input_shapes(*projections) as calls:
        ours.generate(ids, attention_mask=mask, num_beams=3, max_new_tokens=6,
                      cross_attention_cache=cross_attention_cache)
    documents = (2, ids.shape[1], CONFIGS["B"]["d_model"])
    for index, name in enumerate(names):
        expected = [[documents]] if name in projected else [[]]
        assert calls[index * len(layers):(index + 1) * len(layers)] == expected * len(layers), name


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cross_attention_cache", FOLDED)
def test_folded_cross_attention_equals_attention_over_projected_keys(bias, cross_attention_cache):
    """Several query rows per document (g = 3) and positions (t = 2), a padded document, with and without
    projection biases: the folded computation is the projected one up to float rounding."""
    torch.manual_seed(0)
    attention = DecoderAttention(d_model=24, num_heads=4, bias=bias, dropout=0.0).eval()
    x, states = torch.randn(2 * 3, 2, 24), torch.randn(2, 10, 24)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 7:] = False
    cross_bias = padding_bias(mask, torch.float32)
    expected = attention.cross_attention(x, encoder_states=states, bias=cross_bias, cache=DecoderCache(1), layer=0)
    actual = attention.cross_attention(x, encoder_states=states, bias=cross_bias,
                                      cache=DecoderCache(1, cross_attention_cache=cross_attention_cache), layer=0)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_bad_cross_attention_cache_values_raise_naming_the_argument(models):
    _, ours, ids, mask = models("B-original_full")
    with pytest.raises(ValueError, match="cross_attention_cache='keys': must be one of 'keys_and_values', "):
        ours.generate(ids, attention_mask=mask, cross_attention_cache="keys")
    quantized = bigbird_pegasus.BigBirdPegasusForConditionalGeneration(ours.config).eval()
    quantize_int8(quantized)
    with pytest.raises(ValueError, match="cross_attention_cache='values' .* int8-quantized model keeps"):
        quantized.generate(ids, attention_mask=mask, cross_attention_cache="values")
    assert quantized.generate(ids, attention_mask=mask, max_new_tokens=3).shape[0] == 2


# -- sampling -------------------------------------------------------------------------------------------

def test_sampling_is_reproducible_with_a_seed_or_a_generator(models):
    _, ours, ids, mask = models("A-block_sparse")
    sample = dict(attention_mask=mask, do_sample=True, max_new_tokens=12, min_new_tokens=12)
    first = ours.generate(ids, seed=3, **sample)
    assert torch.equal(ours.generate(ids, seed=3, **sample), first)
    assert torch.equal(ours.generate(ids, generator=torch.Generator().manual_seed(3), **sample), first)
    assert not torch.equal(ours.generate(ids, seed=4, **sample), first)
    torch.manual_seed(5)
    global_draw = ours.generate(ids, **sample)
    torch.manual_seed(5)
    assert torch.equal(ours.generate(ids, **sample), global_draw)


@pytest.mark.parametrize("options", [
    dict(max_new_tokens=12),
    dict(top_k=5, top_p=0.8, temperature=0.7, max_new_tokens=12, num_return_sequences=3),
    dict(num_beams=3, max_new_tokens=12, top_k=20),
    dict(num_beams=3, max_new_tokens=12, temperature=1.5, num_return_sequences=2),
], ids=repr)
def test_sampling_from_the_global_generator_draws_the_reference_tokens(models, options):
    """Same seed, same draws: we sample from the same distributions, in the same order, as the reference."""
    reference, ours, ids, mask = models("A-block_sparse")
    for seed in range(2):
        torch.manual_seed(seed)
        expected = reference.generate(ids, attention_mask=mask, do_sample=True, **options)
        torch.manual_seed(seed)
        assert_same_tokens(expected, ours.generate(ids, attention_mask=mask, do_sample=True, **options))


def test_sampling_filters_reduce_to_greedy(models):
    _, ours, ids, mask = models("A-block_sparse")
    greedy = ours.generate(ids, attention_mask=mask, max_new_tokens=12)
    for narrow in (dict(top_k=1), dict(top_p=1e-6), dict(temperature=1e-3)):
        assert torch.equal(ours.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=True, seed=0,
                                         **narrow), greedy), narrow


def test_sampling_draws_only_from_the_top_k(models):
    _, ours, ids, mask = models("A-block_sparse")
    out = ours.generate(ids, attention_mask=mask, do_sample=True, top_k=3, seed=0, max_new_tokens=1,
                        num_return_sequences=40, return_dict_in_generate=True, output_scores=True)
    first_tokens = out.sequences[:, 1]
    allowed = out.scores[0].isfinite()                                                 # (80, vocab)
    assert int(allowed.sum(-1).max()) == 3
    assert bool(allowed[torch.arange(len(first_tokens)), first_tokens].all())
    assert len(set(first_tokens[:40].tolist())) > 1


def test_beam_sampling_is_reproducible(models):
    _, ours, ids, mask = models("A-block_sparse")
    sample = dict(attention_mask=mask, do_sample=True, num_beams=3, max_new_tokens=10, top_k=20)
    first = ours.generate(ids, seed=1, **sample)
    assert torch.equal(ours.generate(ids, seed=1, **sample), first)
    assert first.shape[0] == 2


# -- errors ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, named", [
    (dict(num_beams=0), "num_beams"),
    (dict(max_new_tokens=-1), "max_new_tokens"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
    (dict(num_return_sequences=2), "num_return_sequences"),
    (dict(do_sample=True, temperature=0.0), "temperature"),
    (dict(do_sample=True, temperature=-1.0), "temperature"),
    (dict(do_sample=True, top_p=0.0), "top_p"),
    (dict(do_sample=True, top_p=1.5), "top_p"),
    (dict(do_sample=True, top_k=-2), "top_k"),
    (dict(early_stopping="sometimes"), "early_stopping"),
    (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(no_repeat_ngram_size=-1), "no_repeat_ngram_size"),
    (dict(min_new_tokens=-3), "min_new_tokens"),
    (dict(bad_words_ids=[[]]), "bad_words_ids"),
    (dict(eos_token_id=[1, -4]), "eos_token_id"),
    (dict(max_length=1), "max_length"),
    (dict(num_beam=3), "num_beam"),
    (dict(encoder_no_repeat_ngram_size=-1), "encoder_no_repeat_ngram_size"),
    (dict(decoder_input_ids=torch.tensor([[2, 5], [2, 6]]), decoder_attention_mask=torch.ones(2, 3)),
     "decoder_attention_mask"),
    (dict(decoder_attention_mask=torch.ones(2, 1)), "decoder_attention_mask"),
    (dict(past_key_values=((torch.zeros(2, 1, 1, 4),) * 4,)), "past_key_values: pass the `past_key_values`"),
], ids=repr)
def test_invalid_arguments_raise_naming_them(models, options, named):
    _, ours, ids, mask = models("B-original_full")
    with pytest.raises(ValueError, match=named):
        ours.generate(ids, attention_mask=mask, **options)


def test_missing_inputs_raise(models):
    _, ours, _, _ = models("B-original_full")
    with pytest.raises(ValueError, match="input_ids"):
        ours.generate()


def test_encoder_no_repeat_ngram_size_needs_the_input_tokens(models):
    _, ours, ids, mask = models("B-original_full")
    encoded = ours.get_encoder()(ids, attention_mask=mask)
    with pytest.raises(ValueError, match="encoder_no_repeat_ngram_size=2 bans the n-grams of the input's tokens"):
        ours.generate(encoder_outputs=encoded, attention_mask=mask, encoder_no_repeat_ngram_size=2)
