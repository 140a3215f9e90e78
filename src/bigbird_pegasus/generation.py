"""`generate`: greedy search, sampling and beam search with the reference's keywords, defaults and tokens.

The work is laid out for speed: the encoder runs once per document; the decoder keeps a self-attention cache
preallocated to the final length; cross-attention keys/values are projected once per layer and document and
shared by all the rows (beams, samples) of that document (or, to save memory, folded into the queries: see
`CrossAttentionCache`); each step computes logits for the last position only; beam search reorders only the
self-attention cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .beam_search import beam_search
from .attention import padding_bias
from .cache import CrossAttentionCache, DecoderCache
from .generation_config import DEFAULT_NEW_TOKENS, GenerationConfig
from .logits_process import LogitsProcessorList, build_logits_processors
from .model import encoder_states_of
from .outputs import (GenerateBeamDecoderOnlyOutput, GenerateBeamEncoderDecoderOutput, GenerateDecoderOnlyOutput,
                      GenerateEncoderDecoderOutput)


class GenerationMixin:
    """`generate` for encoder-decoder models. The host class provides `config`, `generation_config`,
    `get_encoder()`, `get_decoder()` and `project_to_vocab(hidden (..., d_model)) -> logits (..., vocab)`."""

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, *,
                 generation_config: GenerationConfig | None = None, encoder_outputs: Any = None,
                 decoder_input_ids: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 seed: int | None = None,
                 cross_attention_cache: str | CrossAttentionCache = CrossAttentionCache.KEYS_AND_VALUES,
                 **kwargs: Any) -> torch.Tensor | GenerateEncoderDecoderOutput | GenerateBeamEncoderDecoderOutput:
        """Generate decoder tokens for input_ids (docs, n) (attention_mask (docs, n), 1 for real tokens).

        Keywords are those of the reference: any GenerationConfig field (`num_beams`, `max_new_tokens`,
        `length_penalty`, `do_sample`, ...) overrides `generation_config` (default: `self.generation_config`).
        `encoder_outputs` skips the encoder; `decoder_input_ids` (docs, p) is a decoder prompt (the start token is
        prepended when missing). Sampling draws from `generator`, or from a new one seeded with `seed`, or from
        torch's global generator.

        `cross_attention_cache` (ours, not the reference's) trades speed for memory: "keys_and_values" (the
        fastest), "values" (half the cross-attention memory) or "none" (only the encoder states are kept); see
        `CrossAttentionCache`. The tokens are the same up to float rounding.

        Returns sequences (docs * num_return_sequences, length), the decoder start token first and finished rows
        padded; or, with `return_dict_in_generate=True`, an output holding them (and the scores when
        `output_scores=True`).
        """
        if "inputs" in kwargs:  # the reference's name for the first argument
            input_ids = kwargs.pop("inputs")
        config, length_is_default = resolve_generation_config(self.generation_config, generation_config, kwargs)
        validate_generation_config(config)
        cross_attention_cache = resolve_cross_attention_cache(cross_attention_cache, self.get_decoder())
        encoder_states, encoder_mask = self._encode_once(input_ids, attention_mask, encoder_outputs)
        prompt = decoder_prompt(decoder_input_ids, start_token(config), encoder_states.shape[0],
                                encoder_states.device)
        return continue_prompts(self, config, length_is_default, prompt, generator, seed, encoder_states,
                                encoder_mask, (GenerateEncoderDecoderOutput, GenerateBeamEncoderDecoderOutput),
                                cross_attention_cache)

    def _encode_once(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
                     encoder_outputs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encoder states (docs, n, d_model) and the mask (docs, n) cross-attention uses, or None."""
        if encoder_outputs is not None:
            states = encoder_states_of(encoder_outputs)
        elif input_ids is None:
            raise ValueError("input_ids: pass the document tokens (docs, n), or encoder_outputs")
        elif input_ids.dim() != 2:
            raise ValueError(f"input_ids must be 2-D (docs, n), got shape {tuple(input_ids.shape)}")
        else:
            states = self.get_encoder()(input_ids, attention_mask).last_hidden_state
        if attention_mask is not None and attention_mask.shape != states.shape[:2]:
            raise ValueError(f"attention_mask of shape {tuple(attention_mask.shape)} does not match the "
                             f"encoder states {tuple(states.shape[:2])}")
        return states, attention_mask


class DecoderOnlyGenerationMixin:
    """`generate` for the causal LM (the decoder alone). The host class provides `config`, `generation_config`,
    `get_decoder()` and `project_to_vocab`."""

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, *,
                 generation_config: GenerationConfig | None = None, generator: torch.Generator | None = None,
                 seed: int | None = None, **kwargs: Any
                 ) -> torch.Tensor | GenerateDecoderOnlyOutput | GenerateBeamDecoderOnlyOutput:
        """Continue the prompts input_ids (rows, p) (default: one row holding `bos_token_id`); keywords as for
        the encoder-decoder `generate`. Returns sequences (rows * num_return_sequences, length) that begin with
        their prompt, finished rows padded; or, with `return_dict_in_generate=True`, an output holding them.
        The prompts must be unpadded: an attention_mask (rows, p) with a zero is refused."""
        if "inputs" in kwargs:  # the reference's name for the first argument
            input_ids = kwargs.pop("inputs")
        config, length_is_default = resolve_generation_config(self.generation_config, generation_config, kwargs)
        validate_generation_config(config)
        device = self.get_decoder().embed_tokens.weight.device
        if input_ids is None:
            if config.bos_token_id is None:
                raise ValueError("input_ids: pass a prompt (rows, p), or set bos_token_id to start from it")
            input_ids = torch.full((1, 1), config.bos_token_id, dtype=torch.long, device=device)
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids must be a prompt of shape (rows, p) with p >= 1, got {tuple(input_ids.shape)}")
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            raise ValueError("attention_mask: padded prompts are not supported by the causal LM's generate; "
                             "generate prompts of different lengths in separate calls")
        return continue_prompts(self, config, length_is_default, input_ids.to(device), generator, seed, None, None,
                                (GenerateDecoderOnlyOutput, GenerateBeamDecoderOnlyOutput))


def continue_prompts(model: torch.nn.Module, config: GenerationConfig, length_is_default: bool, prompt: torch.Tensor,
                     generator: torch.Generator | None, seed: int | None, encoder_states: torch.Tensor | None,
                     encoder_mask: torch.Tensor | None, output_classes: tuple[type, type],
                     cross_attention_cache: CrossAttentionCache = CrossAttentionCache.KEYS_AND_VALUES) -> Any:
    """Decode from prompt (docs, p) with `model`'s decoder, over encoder_states (docs, s, d_model) when given
    (keeping for them what `cross_attention_cache` says): greedy search or sampling, or beam search. Returns the
    sequences, or an instance of `output_classes` (greedy/sampling, beam search) when `return_dict_in_generate`."""
    docs, device = prompt.shape[0], prompt.device
    eos_ids, pad_id = special_tokens(config, device)
    rows_per_doc = max(config.num_beams, config.num_return_sequences)
    prompt = prompt.repeat_interleave(rows_per_doc, dim=0)                            # (docs * g, p)
    max_length, min_length = resolve_lengths(config, prompt.shape[1], length_is_default,
                                             model.config.max_position_embeddings)
    if generator is None and seed is not None:
        generator = torch.Generator(device).manual_seed(seed)
    plan = DecodingPlan(
        processors=build_logits_processors(config, eos_ids, min_length, max_length, device),
        max_length=max_length, eos_ids=eos_ids, pad_id=pad_id, do_sample=config.do_sample,
        generator=generator, record_scores=config.return_dict_in_generate and config.output_scores,
        num_beams=config.num_beams, num_return_sequences=config.num_return_sequences,
        length_penalty=config.length_penalty, early_stopping=config.early_stopping)
    decoder = CachedDecoder(model.get_decoder(), model.project_to_vocab, encoder_states, encoder_mask,
                            capacity=max_length - 1, step=getattr(model, "compiled_step", None),
                            cross_attention_cache=cross_attention_cache)
    greedy_output, beam_output = output_classes
    if config.num_beams == 1:
        sequences, scores = greedy_or_sample(decoder, prompt, plan)
        return greedy_output(sequences=sequences, scores=scores) if config.return_dict_in_generate else sequences
    result = beam_search(decoder, prompt, plan)
    if not config.return_dict_in_generate:
        return result.sequences
    return beam_output(sequences=result.sequences,
                       sequences_scores=result.sequence_scores if config.output_scores else None,
                       scores=result.scores, beam_indices=result.beam_indices)


# -- settings -------------------------------------------------------------------------------------------

def resolve_generation_config(model_default: GenerationConfig, passed: Any,
                              kwargs: dict[str, Any]) -> tuple[GenerationConfig, bool]:
    """The call's settings: `kwargs` over `passed` over `model_default`, and whether no length was set anywhere.

    `passed` may be our GenerationConfig or any object with `to_dict()` (e.g. the reference's); only the values it
    sets count, i.e. those that differ from GenerationConfig's defaults (the reference: those that are not None).
    """
    fields = GenerationConfig.field_names()
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise ValueError(f"generate() got unknown argument(s) {unknown}: they are neither generation settings "
                         "nor inputs")
    config = model_default
    if passed is not None:
        config = config.update(**{k: v for k, v in passed.to_dict().items() if k in fields})
    config = config.update(**kwargs)
    return config, config.max_length is None


def validate_generation_config(config: GenerationConfig) -> None:
    """Raise a ValueError naming the first setting that cannot work."""
    def require(ok: bool, name: str, reason: str) -> None:
        if not ok:
            raise ValueError(f"{name}={getattr(config, name)!r}: {reason}")

    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    require(is_int(config.num_beams) and config.num_beams >= 1, "num_beams", "must be a positive integer")
    require(is_int(config.num_return_sequences) and config.num_return_sequences >= 1, "num_return_sequences",
            "must be a positive integer")
    if config.num_beams > 1:
        require(config.num_return_sequences <= config.num_beams, "num_return_sequences",
                f"must not exceed num_beams={config.num_beams}")
    else:
        require(config.num_return_sequences == 1 or config.do_sample, "num_return_sequences",
                "greedy search returns one sequence per input: use num_beams > 1 or do_sample=True")
    for name in ("max_length", "max_new_tokens"):
        value = getattr(config, name)
        require(value is None or (is_int(value) and value > 0), name, "must be a positive integer")
    for name in ("min_length", "min_new_tokens", "no_repeat_ngram_size"):
        value = getattr(config, name)
        require(value is None or (is_int(value) and value >= 0), name, "must be a non-negative integer")
    require(config.early_stopping is True or config.early_stopping is False or config.early_stopping == "never",
            "early_stopping", 'must be True, False or "never"')
    require(config.repetition_penalty > 0, "repetition_penalty", "must be positive (1.0: no penalty)")
    require(config.bad_words_ids is None or _is_token_lists(config.bad_words_ids), "bad_words_ids",
            "must be a non-empty list of non-empty lists of token ids")
    for name in ("eos_token_id", "forced_eos_token_id"):
        ids = getattr(config, name)
        require(ids is None or all(is_int(i) and i >= 0 for i in _as_list(ids)), name,
                "must be a token id or a list of token ids")
    if config.do_sample:
        require(config.temperature > 0, "temperature", "must be positive when sampling (do_sample=False is greedy)")
        require(config.top_p is None or 0 < config.top_p <= 1, "top_p", "must be in (0, 1] when sampling")
        require(config.top_k is None or (is_int(config.top_k) and config.top_k >= 0), "top_k",
                "must be a non-negative integer (0: no top-k filtering)")


def resolve_cross_attention_cache(value: str | CrossAttentionCache, decoder: torch.nn.Module) -> CrossAttentionCache:
    """The CrossAttentionCache `value` names; a ValueError naming the argument when it names none, or when it folds
    projections that are not plain float weights (an int8-quantized model)."""
    try:
        mode = CrossAttentionCache(value)
    except ValueError:
        choices = ", ".join(repr(choice.value) for choice in CrossAttentionCache)
        raise ValueError(f"cross_attention_cache={value!r}: must be one of {choices}") from None
    if mode is not CrossAttentionCache.KEYS_AND_VALUES and not all(
            isinstance(layer.encoder_attn.k_proj.weight, torch.Tensor) for layer in decoder.layers):
        raise ValueError(f"cross_attention_cache={mode.value!r} folds the k_proj/v_proj weights into the attention, "
                         "which needs them in floating point: an int8-quantized model keeps 'keys_and_values'")
    return mode


def _as_list(ids: int | list[int]) -> list[int]:
    return list(ids) if isinstance(ids, (list, tuple)) else [ids]


def _is_token_lists(value: Any) -> bool:
    return (isinstance(value, list) and len(value) > 0
            and all(isinstance(word, list) and word and all(isinstance(i, int) and i >= 0 for i in word)
                    for word in value))


def special_tokens(config: GenerationConfig, device: torch.device) -> tuple[torch.Tensor | None, int | None]:
    """eos ids (n_eos,) or None; the pad id (the first EOS id when unset)."""
    eos_ids = None if config.eos_token_id is None else torch.tensor(_as_list(config.eos_token_id), device=device)
    pad_id = config.pad_token_id
    if pad_id is None and eos_ids is not None:
        pad_id = int(eos_ids[0])
    return eos_ids, pad_id


def start_token(config: GenerationConfig) -> int:
    """The decoder start id (bos when unset)."""
    start_id = config.decoder_start_token_id if config.decoder_start_token_id is not None else config.bos_token_id
    if start_id is None:
        raise ValueError("decoder_start_token_id: set it (or bos_token_id) to start the decoder")
    return start_id


def decoder_prompt(decoder_input_ids: torch.Tensor | None, start_id: int, docs: int,
                   device: torch.device) -> torch.Tensor:
    """(docs, p): the start token, or the given prompt with the start token prepended where no row begins with it."""
    start = torch.full((docs, 1), start_id, dtype=torch.long, device=device)
    if decoder_input_ids is None:
        return start
    prompt = decoder_input_ids.to(device)
    if prompt.dim() != 2 or prompt.shape[0] != docs:
        raise ValueError(f"decoder_input_ids must be (docs={docs}, p), got shape {tuple(prompt.shape)}")
    if bool((prompt[:, 0] != start_id).all()):
        prompt = torch.cat([start, prompt], dim=1)
    return prompt


def resolve_lengths(config: GenerationConfig, prompt_length: int, length_is_default: bool,
                    max_positions: int) -> tuple[int, int]:
    """Total decoder lengths (prompt included) (max_length, min_length), as the reference counts them."""
    if config.max_new_tokens is not None:
        max_length = prompt_length + config.max_new_tokens
    elif length_is_default:
        max_length = min(prompt_length + DEFAULT_NEW_TOKENS, max_positions)
    else:
        max_length = config.max_length
    if prompt_length >= max_length:
        raise ValueError(f"max_length={max_length}: the decoder prompt already holds {prompt_length} tokens; "
                         "raise max_length or set max_new_tokens")
    min_length = config.min_length
    if config.min_new_tokens is not None:
        min_length = prompt_length + config.min_new_tokens
    return max_length, min_length


@dataclass
class DecodingPlan:
    """What the decoding loops need, resolved once per call. max_length counts the prompt; eos_ids: (n_eos,)."""

    processors: LogitsProcessorList
    max_length: int
    eos_ids: torch.Tensor | None
    pad_id: int | None
    do_sample: bool
    generator: torch.Generator | None
    record_scores: bool
    num_beams: int
    num_return_sequences: int
    length_penalty: float
    early_stopping: bool | str


# -- the decoder side -----------------------------------------------------------------------------------

class CachedDecoder:
    """The decoder during generation: its self-attention cache is preallocated to `capacity` positions; the
    cross-attention keys/values that `cross_attention_cache` keeps are projected from the encoder states
    (docs, s, d_model) once per layer, at the prefill, and shared by the rows = docs * g of each document (no
    encoder states: the decoder alone, as a causal LM); logits come from the last position only."""

    def __init__(self, decoder: torch.nn.Module, project_to_vocab, encoder_states: torch.Tensor | None,
                 encoder_mask: torch.Tensor | None, capacity: int, step=None,
                 cross_attention_cache: CrossAttentionCache = CrossAttentionCache.KEYS_AND_VALUES):
        self.decoder = decoder
        self.project_to_vocab = project_to_vocab
        self.encoder_states = encoder_states
        self.encoder_mask = encoder_mask
        self.cross_bias = None if encoder_mask is None else padding_bias(encoder_mask.bool(), encoder_states.dtype)
        self.cache = DecoderCache(len(decoder.layers), cross_attention_cache)
        self.cache.reserve(capacity)
        self.step = step or decoder.step  # the static-shape one-token step, compiled or not

    def prefill(self, prompt: torch.Tensor) -> torch.Tensor:
        """prompt (rows, p) -> next-token logits (rows, vocab), float32."""
        hidden = self.decoder(prompt, None, self.encoder_states, self.encoder_mask, self.cache,
                              use_cache=True).last_hidden_state
        return self.project_to_vocab(hidden[:, -1]).float()

    def decode_one_token(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (rows,) appended at the next position -> next-token logits (rows, vocab), float32."""
        position = torch.tensor(self.cache.length, device=tokens.device)
        hidden = self.step(tokens[:, None], position, self.encoder_states, self.cross_bias, self.cache)
        self.cache.advance(1)
        return self.project_to_vocab(hidden[:, -1]).float()

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep the self-attention cache of `rows` (rows,), in that order (beam search)."""
        self.cache.reorder(rows)



# -- greedy search and sampling -------------------------------------------------------------------------

def greedy_or_sample(decoder: CachedDecoder, prompt: torch.Tensor,
                     plan: DecodingPlan) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
    """One token per row and step, the best one or a sampled one, until every row has ended (an EOS id) or
    `max_length` is reached; ended rows get `pad_id`.

    prompt (rows, p) -> sequences (rows, length) and, when recorded, the processed scores (rows, vocab) per step.
    """
    rows, length = prompt.shape
    tokens = prompt.new_empty(rows, plan.max_length)
    tokens[:, :length] = prompt
    unfinished = torch.ones(rows, dtype=torch.bool, device=prompt.device)
    recorded = [] if plan.record_scores else None
    logits = decoder.prefill(prompt)
    while True:
        scores = plan.processors(tokens[:, :length], logits)
        if recorded is not None:
            recorded.append(scores)
        if plan.do_sample:
            next_tokens = torch.multinomial(F.softmax(scores, dim=-1), 1, generator=plan.generator).squeeze(1)
        else:
            next_tokens = scores.argmax(dim=-1)
        if plan.eos_ids is not None:
            next_tokens = torch.where(unfinished, next_tokens, plan.pad_id)
            unfinished &= ~torch.isin(next_tokens, plan.eos_ids)
        tokens[:, length] = next_tokens
        length += 1
        if length >= plan.max_length or not bool(unfinished.any()):
            return tokens[:, :length], None if recorded is None else tuple(recorded)
        logits = decoder.decode_one_token(next_tokens)
