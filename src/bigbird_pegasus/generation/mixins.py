"""`generate`: greedy search, sampling and beam search with the reference's keywords, defaults and tokens.

The work is laid out for speed: the encoder runs once per document; the decoder keeps a self-attention cache
preallocated to the final length; cross-attention keys/values are projected once per layer and document and
shared by all the rows (beams, samples) of that document (or, to save memory, folded into the queries: see
`CrossAttentionCache`); each step computes logits for the last position only; beam search reorders only the
self-attention cache.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ..modeling.cache import CrossAttentionCache, DecoderCache
from ..modeling.model import as_encoder_output
from ..modeling.outputs import EncoderOutput
from .beam_search import beam_search
from .config import GenerationConfig
from .decoding import CachedDecoder, DecodingPlan
from .greedy import greedy_or_sample
from .logits_process import build_logits_processors
from .outputs import (GenerateBeamDecoderOnlyOutput, GenerateBeamEncoderDecoderOutput, GenerateDecoderOnlyOutput,
                      GenerateEncoderDecoderOutput)
from .recording import RecordingDecoder
from .settings import (decoder_prompt, mask_from_padding, resolve_cross_attention_cache, resolve_generation_config,
                       resolve_lengths, special_tokens, start_token, validate_generation_config)
from .transition_scores import transition_scores

HUB_OPTIONS = ("subfolder", "revision", "cache_dir", "local_files_only", "token")


class GenerationCommon:
    """What both generating classes share: `from_pretrained` that also reads the checkpoint's
    generation_config.json (or derives the defaults from config.json), `can_generate` and
    `compute_transition_scores`."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None = None, **options: Any):
        loaded = super().from_pretrained(pretrained_model_name_or_path, **options)
        model = loaded[0] if options.get("output_loading_info") else loaded
        if pretrained_model_name_or_path is None:  # from config= and state_dict=
            model.generation_config = GenerationConfig.from_model_config(model.config)
        else:
            hub = {name: options[name] for name in HUB_OPTIONS if options.get(name) is not None}
            model.generation_config = GenerationConfig.from_pretrained(pretrained_model_name_or_path,
                                                                       model_config=model.config, **hub)
        return loaded

    @classmethod
    def can_generate(cls) -> bool:
        return True

    def compute_transition_scores(self, sequences: torch.Tensor, scores: tuple[torch.Tensor, ...],
                                  beam_indices: torch.Tensor | None = None,
                                  normalize_logits: bool = False) -> torch.Tensor:
        """The score of each generated token (rows, steps) from the `sequences`, `scores` (or `logits`, with
        normalize_logits=True) and, for beam search, `beam_indices` of a `generate` output; 0 past a sequence's
        end. For beam search, their sum divided by length ** length_penalty is `sequences_scores`."""
        return transition_scores(sequences, scores, beam_indices, normalize_logits=normalize_logits)


class GenerationMixin(GenerationCommon):
    """`generate` for encoder-decoder models. The host class provides `config`, `generation_config`,
    `get_encoder()`, `get_decoder()` and `project_to_vocab(hidden (..., d_model)) -> logits (..., vocab)`."""

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, *,
                 generation_config: GenerationConfig | None = None, encoder_outputs: Any = None,
                 decoder_input_ids: torch.Tensor | None = None, decoder_attention_mask: torch.Tensor | None = None,
                 past_key_values: DecoderCache | None = None, generator: torch.Generator | None = None,
                 seed: int | None = None,
                 cross_attention_cache: str | CrossAttentionCache = CrossAttentionCache.KEYS_AND_VALUES,
                 **kwargs: Any) -> torch.Tensor | GenerateEncoderDecoderOutput | GenerateBeamEncoderDecoderOutput:
        """Generate decoder tokens for input_ids (docs, n) (attention_mask (docs, n), 1 for real tokens).

        Keywords are those of the reference: any GenerationConfig field (`num_beams`, `max_new_tokens`,
        `length_penalty`, `do_sample`, ...) overrides `generation_config` (default: `self.generation_config`).
        `encoder_outputs` skips the encoder; `decoder_input_ids` (docs, p) is a decoder prompt (the start token is
        prepended when missing), left-padded with `decoder_attention_mask` (docs, p) 0 on the padding; with
        `past_key_values` (an earlier call's, holding all but the prompt's last positions) only those are run.
        Sampling draws from `generator`, or from a new one seeded with `seed`, or from torch's global generator.

        `cross_attention_cache` (ours, not the reference's) trades speed for memory: "keys_and_values" (the
        fastest), "values" (half the cross-attention memory) or "none" (only the encoder states are kept); see
        `CrossAttentionCache`. The tokens are the same up to float rounding.

        Returns sequences (docs * num_return_sequences, length), the decoder start token first and finished rows
        padded; or, with `return_dict_in_generate=True`, an output holding them, and what `output_scores`,
        `output_logits`, `output_attentions` and `output_hidden_states` ask for (see `generation.outputs`;
        attentions and hidden states come from the exact path, only when asked for).
        """
        if "inputs" in kwargs:  # the reference's name for the first argument
            input_ids = kwargs.pop("inputs")
        config, length_is_default = resolve_generation_config(self.generation_config, passed=generation_config,
                                                              kwargs=kwargs)
        validate_generation_config(config)
        cross_attention_cache = resolve_cross_attention_cache(cross_attention_cache, decoder=self.get_decoder())
        encoded = self._encode_once(input_ids, attention_mask=attention_mask, encoder_outputs=encoder_outputs,
                                    config=config)
        states = encoded.last_hidden_state
        prompt, prompt_mask = decoder_prompt(decoder_input_ids, start_id=start_token(config), docs=states.shape[0],
                                             device=states.device, mask=decoder_attention_mask)
        return continue_prompts(self, config=config, length_is_default=length_is_default, prompt=prompt,
                                past=past_key_values,
                                prompt_mask=prompt_mask, input_ids=input_ids if encoder_outputs is None else None,
                                generator=generator, seed=seed, encoded=encoded, encoder_mask=attention_mask,
                                output_classes=(GenerateEncoderDecoderOutput, GenerateBeamEncoderDecoderOutput),
                                cross_attention_cache=cross_attention_cache)

    def _encode_once(self, input_ids: torch.Tensor | None, *, attention_mask: torch.Tensor | None,
                     encoder_outputs: Any, config: GenerationConfig) -> EncoderOutput:
        """The encoder's output for input_ids (docs, n) (last_hidden_state (docs, n, d_model), and the attentions
        and hidden states `config` asks for), or `encoder_outputs` when given; the attention_mask must fit it."""
        if encoder_outputs is not None:
            encoded = as_encoder_output(encoder_outputs)
        elif input_ids is None:
            raise ValueError("input_ids: pass the document tokens (docs, n), or encoder_outputs")
        elif input_ids.dim() != 2:
            raise ValueError(f"input_ids must be 2-D (docs, n), got shape {tuple(input_ids.shape)}")
        else:
            recorded = config.return_dict_in_generate
            encoded = self.get_encoder()(input_ids, attention_mask=attention_mask,
                                         output_attentions=recorded and config.output_attentions,
                                         output_hidden_states=recorded and config.output_hidden_states)
        states = encoded.last_hidden_state
        if attention_mask is not None and attention_mask.shape != states.shape[:2]:
            raise ValueError(f"attention_mask of shape {tuple(attention_mask.shape)} does not match the "
                             f"encoder states {tuple(states.shape[:2])}")
        return encoded

    def prepare_inputs_for_generation(self, input_ids: torch.Tensor, past_key_values: DecoderCache | None = None,
                                      attention_mask: torch.Tensor | None = None, use_cache: bool | None = None,
                                      encoder_outputs: Any = None, **kwargs: Any) -> dict[str, Any]:
        """The forward's keywords for the next step of a decoding loop run outside `generate` (PEFT's, a custom
        one): of the decoder tokens so far, input_ids (b, t), those the cache does not hold yet, as
        decoder_input_ids; the cache, the encoder's output and mask; other keywords passed on."""
        cached = 0 if past_key_values is None else past_key_values.get_seq_length()
        return {"decoder_input_ids": input_ids[:, cached:], "past_key_values": past_key_values,
                "attention_mask": attention_mask, "encoder_outputs": encoder_outputs, "use_cache": use_cache,
                **kwargs}


class DecoderOnlyGenerationMixin(GenerationCommon):
    """`generate` for the causal LM (the decoder alone). The host class provides `config`, `generation_config`,
    `get_decoder()` and `project_to_vocab`."""

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, *,
                 generation_config: GenerationConfig | None = None, inputs_embeds: torch.Tensor | None = None,
                 past_key_values: DecoderCache | None = None,
                 generator: torch.Generator | None = None, seed: int | None = None, logits_to_keep: int | None = None,
                 **kwargs: Any) -> torch.Tensor | GenerateDecoderOnlyOutput | GenerateBeamDecoderOnlyOutput:
        """Continue the prompts input_ids (rows, p) (default: one row holding `bos_token_id`); keywords as for
        the encoder-decoder `generate`. Returns sequences (rows * num_return_sequences, length) that begin with
        their prompt, finished rows padded; or, with `return_dict_in_generate=True`, an output holding them.
        Prompts of different lengths are left-padded, with an attention_mask (rows, p) that is 0 on the padding
        (the reference's convention; no position attends to the padding); without one, positions holding
        `pad_token_id` are taken for padding when it is no EOS id, as the reference does.

        inputs_embeds (rows, p, d_model): the prompt as input embeddings (what `get_input_embeddings()` gives for
        tokens, or any others), read instead of the tokens; with input_ids (rows, p) too, the sequences begin with
        them, else they hold the new tokens only, and lengths count those. `logits_to_keep` (a forward option of
        the reference) is accepted: generation computes the last position's logits only, whatever its value.
        `past_key_values`: an earlier call's cache holding all but the prompt's last positions; only those are run."""
        if "inputs" in kwargs:  # the reference's name for the first argument
            input_ids = kwargs.pop("inputs")
        config, length_is_default = resolve_generation_config(self.generation_config, passed=generation_config,
                                                              kwargs=kwargs)
        validate_generation_config(config)
        if logits_to_keep is not None and not (isinstance(logits_to_keep, int) and logits_to_keep >= 0):
            raise ValueError(f"logits_to_keep={logits_to_keep!r}: must be a non-negative integer")
        device = self.get_decoder().embed_tokens.weight.device
        if inputs_embeds is not None:
            input_ids = _prompt_beside_embeddings(input_ids, inputs_embeds, d_model=self.config.d_model)
        elif input_ids is None:
            if config.bos_token_id is None:
                raise ValueError("input_ids: pass a prompt (rows, p), or set bos_token_id to start from it")
            input_ids = torch.full((1, 1), config.bos_token_id, dtype=torch.long, device=device)
        elif input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids must be a prompt of shape (rows, p) with p >= 1, got {tuple(input_ids.shape)}")
        if attention_mask is None:  # as the reference's decoder-only generate (not its encoder-decoder one)
            attention_mask = mask_from_padding(input_ids, config)
        prompt_shape = tuple(input_ids.shape if inputs_embeds is None else inputs_embeds.shape[:2])
        if attention_mask is not None and tuple(attention_mask.shape) != prompt_shape:
            raise ValueError(f"attention_mask of shape {tuple(attention_mask.shape)} does not match the prompt "
                             f"{prompt_shape}")
        if attention_mask is not None and bool(attention_mask.bool().all()):
            attention_mask = None  # nothing is padded: the plain causal mask
        return continue_prompts(self, config=config, length_is_default=length_is_default, prompt=input_ids.to(device),
                                past=past_key_values,
                                generator=generator, seed=seed, encoded=None, encoder_mask=None,
                                prompt_mask=None if attention_mask is None else attention_mask.to(device),
                                prompt_embeds=None if inputs_embeds is None else inputs_embeds.to(device),
                                input_ids=input_ids if input_ids.shape[1] else None,
                                output_classes=(GenerateDecoderOnlyOutput, GenerateBeamDecoderOnlyOutput))

    def prepare_inputs_for_generation(self, input_ids: torch.Tensor, past_key_values: DecoderCache | None = None,
                                      attention_mask: torch.Tensor | None = None,
                                      inputs_embeds: torch.Tensor | None = None, use_cache: bool | None = None,
                                      **kwargs: Any) -> dict[str, Any]:
        """The forward's keywords for the next step of a decoding loop run outside `generate` (PEFT's, a custom
        one): the tokens (b, t) the cache does not hold yet (or `inputs_embeds` before anything is cached), the
        cache and the attention mask over all positions."""
        cached = 0 if past_key_values is None else past_key_values.get_seq_length()
        inputs = {"past_key_values": past_key_values, "attention_mask": attention_mask, "use_cache": use_cache,
                  **kwargs}
        if inputs_embeds is not None and cached == 0:
            return {"inputs_embeds": inputs_embeds, **inputs}
        return {"input_ids": input_ids[:, cached:], **inputs}


def continue_prompts(model: torch.nn.Module, *, config: GenerationConfig, length_is_default: bool,
                     prompt: torch.Tensor, generator: torch.Generator | None, seed: int | None,
                     encoded: EncoderOutput | None, encoder_mask: torch.Tensor | None,
                     output_classes: tuple[type, type], prompt_mask: torch.Tensor | None = None,
                     prompt_embeds: torch.Tensor | None = None, input_ids: torch.Tensor | None = None,
                     past: DecoderCache | None = None,
                     cross_attention_cache: CrossAttentionCache = CrossAttentionCache.KEYS_AND_VALUES) -> Any:
    """Decode from prompt (docs, p) (prompt_mask (docs, p), 0 on padding, or None) with `model`'s decoder, over
    the encoder's output (last_hidden_state (docs, s, d_model)) when given, keeping for it what
    `cross_attention_cache` says: greedy search or sampling, or beam search. input_ids (docs, s): the tokens whose
    n-grams `encoder_no_repeat_ngram_size` bans (the document, a causal LM's prompt). prompt_embeds (docs, e,
    d_model): the decoder reads these instead of the prompt's tokens (then p is e, or 0 when the sequences hold only
    the new tokens). past: an earlier call's cache (its `past_key_values`) holding the prompt's first positions:
    only the others are run. Returns the sequences, or an instance of `output_classes` (greedy/sampling, beam
    search) when `return_dict_in_generate`."""
    device = prompt.device
    eos_ids, pad_id = special_tokens(config, device=device)
    rows_per_doc = max(config.num_beams, config.num_return_sequences)
    prompt = prompt.repeat_interleave(rows_per_doc, dim=0)                            # (docs * g, p)
    if past is not None:
        check_past(past, prompt=prompt, use_cache=config.use_cache, embeds=prompt_embeds is not None)
    if prompt_mask is not None:
        prompt_mask = prompt_mask.repeat_interleave(rows_per_doc, dim=0)              # (docs * g, p)
    # positions the decoder reads before the returned sequence's own (embeddings without their tokens)
    unreturned = 0
    if prompt_embeds is not None:
        prompt_embeds = prompt_embeds.repeat_interleave(rows_per_doc, dim=0)          # (docs * g, e, d_model)
        unreturned = prompt_embeds.shape[1] - prompt.shape[1]
    max_length, min_length = resolve_lengths(config, prompt_length=prompt.shape[1],
                                             length_is_default=length_is_default,
                                             max_positions=model.config.max_position_embeddings - unreturned)
    if generator is None and seed is not None:
        generator = torch.Generator(device).manual_seed(seed)
    plan = DecodingPlan(
        processors=build_logits_processors(config, eos_ids=eos_ids, min_length=min_length, max_length=max_length,
                                           device=device, encoder_input_ids=input_ids),
        max_length=max_length, eos_ids=eos_ids, pad_id=pad_id, do_sample=config.do_sample,
        generator=generator, record_scores=config.return_dict_in_generate and config.output_scores,
        num_beams=config.num_beams, num_return_sequences=config.num_return_sequences,
        length_penalty=config.length_penalty, early_stopping=config.early_stopping)
    options = dict(project_to_vocab=model.project_to_vocab,
                   encoder_states=None if encoded is None else encoded.last_hidden_state, encoder_mask=encoder_mask,
                   capacity=unreturned + max_length - 1, step=getattr(model, "compiled_step", None),
                   cross_attention_cache=cross_attention_cache, prompt_mask=prompt_mask, prompt_embeds=prompt_embeds,
                   past=past)
    recorded = config.return_dict_in_generate and (config.output_logits or config.output_attentions
                                                   or config.output_hidden_states)
    if recorded:
        decoder = RecordingDecoder(model.get_decoder(), output_logits=config.output_logits,
                                   output_attentions=config.output_attentions,
                                   output_hidden_states=config.output_hidden_states, use_cache=config.use_cache,
                                   **options)
    else:
        decoder = CachedDecoder(model.get_decoder(), **options)
    greedy_output, beam_output = output_classes
    if config.num_beams == 1:
        sequences, scores = greedy_or_sample(decoder, prompt=prompt, plan=plan)
        fields = dict(sequences=sequences, scores=scores)
        output_class = greedy_output
    else:
        result = beam_search(decoder, prompt=prompt, plan=plan)
        fields = dict(sequences=result.sequences, scores=result.scores, beam_indices=result.beam_indices,
                      sequences_scores=result.sequence_scores if config.output_scores else None)
        output_class = beam_output
    if not config.return_dict_in_generate:
        return fields["sequences"]
    records = decoder.records() if recorded else {}
    fields.update(logits=records.get("logits"), cache=decoder.cache if config.use_cache else None)
    if encoded is None:
        fields.update(attentions=records.get("attentions"), hidden_states=records.get("hidden_states"))
    else:
        fields.update(encoder_attentions=encoded.attentions, encoder_hidden_states=encoded.hidden_states,
                      decoder_attentions=records.get("attentions"), cross_attentions=records.get("cross_attentions"),
                      decoder_hidden_states=records.get("hidden_states"))
    return output_class(**fields)


def _prompt_beside_embeddings(input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor, *,
                              d_model: int) -> torch.Tensor:
    """The prompt tokens that begin the sequences when the decoder reads inputs_embeds (rows, e, d_model):
    input_ids (rows, e), or none (rows, 0)."""
    if inputs_embeds.dim() != 3 or inputs_embeds.shape[1] == 0 or inputs_embeds.shape[2] != d_model:
        raise ValueError(f"inputs_embeds must be (rows, p, d_model={d_model}) with p >= 1, got "
                         f"{tuple(inputs_embeds.shape)}")
    if input_ids is None:
        return torch.empty(inputs_embeds.shape[0], 0, dtype=torch.long, device=inputs_embeds.device)
    if tuple(input_ids.shape) != tuple(inputs_embeds.shape[:2]):
        raise ValueError(f"input_ids of shape {tuple(input_ids.shape)} do not match inputs_embeds "
                         f"{tuple(inputs_embeds.shape)}: they must be the same prompt")
    return input_ids


def check_past(past: Any, *, prompt: torch.Tensor, use_cache: bool, embeds: bool) -> None:
    """A ValueError naming past_key_values unless it is a cache of ours that holds fewer positions than the prompt
    (rows, p), one row per prompt row, and the call uses the cache and a prompt of tokens."""
    if not isinstance(past, DecoderCache):
        raise ValueError(f"past_key_values: pass the `past_key_values` (a DecoderCache) of an earlier generate or "
                         f"forward of this library, not a {type(past).__name__}")
    if not use_cache or embeds:
        raise ValueError("past_key_values: continuing needs use_cache=True and a prompt of tokens (not inputs_embeds)")
    if past.length >= prompt.shape[1]:
        raise ValueError(f"past_key_values holds {past.length} positions, the prompt {prompt.shape[1]}: pass the "
                         "whole sequence so far as the prompt, the cache covering all but its last tokens")
    rows = next((keys.shape[0] for keys in past.self_keys if keys is not None), prompt.shape[0])
    if rows != prompt.shape[0]:
        raise ValueError(f"past_key_values has {rows} rows, the prompt {prompt.shape[0]} (documents x beams or "
                         "sequences): continue with the settings that made it")
