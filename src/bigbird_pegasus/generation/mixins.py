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

from ..modeling.cache import CrossAttentionCache
from ..modeling.model import encoder_states_of
from .beam_search import beam_search
from .config import GenerationConfig
from .decoding import CachedDecoder, DecodingPlan
from .greedy import greedy_or_sample
from .logits_process import build_logits_processors
from .outputs import (GenerateBeamDecoderOnlyOutput, GenerateBeamEncoderDecoderOutput, GenerateDecoderOnlyOutput,
                      GenerateEncoderDecoderOutput)
from .settings import (decoder_prompt, resolve_cross_attention_cache, resolve_generation_config, resolve_lengths,
                       special_tokens, start_token, validate_generation_config)

HUB_OPTIONS = ("revision", "cache_dir", "local_files_only")


class GenerationConfigLoading:
    """`from_pretrained` that also reads the checkpoint's generation_config.json (or derives the defaults from
    config.json), for the classes that generate."""

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **options: Any):
        model = super().from_pretrained(name_or_path, **options)
        hub = {name: options.get(name) for name in HUB_OPTIONS}
        model.generation_config = GenerationConfig.from_pretrained(name_or_path, model_config=model.config, **hub)
        return model


class GenerationMixin(GenerationConfigLoading):
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
        config, length_is_default = resolve_generation_config(self.generation_config, passed=generation_config,
                                                              kwargs=kwargs)
        validate_generation_config(config)
        cross_attention_cache = resolve_cross_attention_cache(cross_attention_cache, decoder=self.get_decoder())
        encoder_states, encoder_mask = self._encode_once(input_ids, attention_mask=attention_mask,
                                                         encoder_outputs=encoder_outputs)
        prompt = decoder_prompt(decoder_input_ids, start_id=start_token(config), docs=encoder_states.shape[0],
                                device=encoder_states.device)
        return continue_prompts(self, config=config, length_is_default=length_is_default, prompt=prompt,
                                generator=generator, seed=seed, encoder_states=encoder_states,
                                encoder_mask=encoder_mask,
                                output_classes=(GenerateEncoderDecoderOutput, GenerateBeamEncoderDecoderOutput),
                                cross_attention_cache=cross_attention_cache)

    def _encode_once(self, input_ids: torch.Tensor | None, *, attention_mask: torch.Tensor | None,
                     encoder_outputs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encoder states (docs, n, d_model) and the mask (docs, n) cross-attention uses, or None."""
        if encoder_outputs is not None:
            states = encoder_states_of(encoder_outputs)
        elif input_ids is None:
            raise ValueError("input_ids: pass the document tokens (docs, n), or encoder_outputs")
        elif input_ids.dim() != 2:
            raise ValueError(f"input_ids must be 2-D (docs, n), got shape {tuple(input_ids.shape)}")
        else:
            states = self.get_encoder()(input_ids, attention_mask=attention_mask).last_hidden_state
        if attention_mask is not None and attention_mask.shape != states.shape[:2]:
            raise ValueError(f"attention_mask of shape {tuple(attention_mask.shape)} does not match the "
                             f"encoder states {tuple(states.shape[:2])}")
        return states, attention_mask


class DecoderOnlyGenerationMixin(GenerationConfigLoading):
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
        config, length_is_default = resolve_generation_config(self.generation_config, passed=generation_config,
                                                              kwargs=kwargs)
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
        return continue_prompts(self, config=config, length_is_default=length_is_default, prompt=input_ids.to(device),
                                generator=generator, seed=seed, encoder_states=None, encoder_mask=None,
                                output_classes=(GenerateDecoderOnlyOutput, GenerateBeamDecoderOnlyOutput))


def continue_prompts(model: torch.nn.Module, *, config: GenerationConfig, length_is_default: bool,
                     prompt: torch.Tensor, generator: torch.Generator | None, seed: int | None,
                     encoder_states: torch.Tensor | None, encoder_mask: torch.Tensor | None,
                     output_classes: tuple[type, type],
                     cross_attention_cache: CrossAttentionCache = CrossAttentionCache.KEYS_AND_VALUES) -> Any:
    """Decode from prompt (docs, p) with `model`'s decoder, over encoder_states (docs, s, d_model) when given
    (keeping for them what `cross_attention_cache` says): greedy search or sampling, or beam search. Returns the
    sequences, or an instance of `output_classes` (greedy/sampling, beam search) when `return_dict_in_generate`."""
    device = prompt.device
    eos_ids, pad_id = special_tokens(config, device=device)
    rows_per_doc = max(config.num_beams, config.num_return_sequences)
    prompt = prompt.repeat_interleave(rows_per_doc, dim=0)                            # (docs * g, p)
    max_length, min_length = resolve_lengths(config, prompt_length=prompt.shape[1],
                                             length_is_default=length_is_default,
                                             max_positions=model.config.max_position_embeddings)
    if generator is None and seed is not None:
        generator = torch.Generator(device).manual_seed(seed)
    plan = DecodingPlan(
        processors=build_logits_processors(config, eos_ids=eos_ids, min_length=min_length, max_length=max_length,
                                           device=device),
        max_length=max_length, eos_ids=eos_ids, pad_id=pad_id, do_sample=config.do_sample,
        generator=generator, record_scores=config.return_dict_in_generate and config.output_scores,
        num_beams=config.num_beams, num_return_sequences=config.num_return_sequences,
        length_penalty=config.length_penalty, early_stopping=config.early_stopping)
    decoder = CachedDecoder(model.get_decoder(), project_to_vocab=model.project_to_vocab,
                            encoder_states=encoder_states, encoder_mask=encoder_mask, capacity=max_length - 1,
                            step=getattr(model, "compiled_step", None), cross_attention_cache=cross_attention_cache)
    greedy_output, beam_output = output_classes
    if config.num_beams == 1:
        sequences, scores = greedy_or_sample(decoder, prompt=prompt, plan=plan)
        return greedy_output(sequences=sequences, scores=scores) if config.return_dict_in_generate else sequences
    result = beam_search(decoder, prompt=prompt, plan=plan)
    if not config.return_dict_in_generate:
        return result.sequences
    return beam_output(sequences=result.sequences,
                       sequences_scores=result.sequence_scores if config.output_scores else None,
                       scores=result.scores, beam_indices=result.beam_indices)
