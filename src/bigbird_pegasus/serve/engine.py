"""The model behind the service: a loaded Summarizer (the service's defaults) that summarizes a batch of texts with
one request's options, and checks those options against the model before a request is queued."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from ..generation.settings import resolve_lengths, validate_generation_config
from ..pipeline.summarizer import Summarizer, Summary
from .errors import ServiceError
from .metrics import ServiceMetrics
from .payload import GENERATE_PARAMETERS, UNPROCESSABLE, SummaryOptions

# Beams per document a request may ask for: a bound on one request's work, since decoding time and memory grow with
# the beam width (the published checkpoints use 5).
MAX_NUM_BEAMS = 16


class SummaryEngine:
    """`summarizer` holds the model, the tokenizer and the service's defaults (long input, newlines, generation
    options); `model_name` is what /info reports; documents are decoded `max_batch_size` at a time."""

    def __init__(self, summarizer: Summarizer, *, model_name: str, max_batch_size: int,
                 metrics: ServiceMetrics | None = None):
        self.defaults = summarizer
        self.model_name = model_name
        self.max_batch_size = max_batch_size
        self.metrics = metrics
        self.positions = summarizer.model.config.max_position_embeddings

    def check(self, options: SummaryOptions) -> None:
        """A 422 ServiceError naming the first option that cannot work with this model."""
        config = self._generation_config(options)
        try:
            validate_generation_config(config)
            resolve_lengths(config, prompt_length=1, length_is_default=config.max_length is None,
                            max_positions=self.positions)
        except ValueError as error:
            raise ServiceError(UNPROCESSABLE, str(error)) from None
        if config.num_beams > MAX_NUM_BEAMS:
            raise ServiceError(UNPROCESSABLE, f"num_beams={config.num_beams}: at most {MAX_NUM_BEAMS} on this service")

    def summarize(self, texts: list[str], *, options: SummaryOptions) -> list[Summary]:
        """The summaries of `texts`, in order (run by the batcher's worker thread)."""
        summaries = self._summarizer(options).summarize(texts)
        if self.metrics is not None:
            tokenizer = self.defaults.tokenizer
            output_tokens = sum(len(ids) for ids in tokenizer([s.summary for s in summaries])["input_ids"])
            self.metrics.record_summaries(documents=len(summaries), output_tokens=output_tokens,
                                          input_tokens=sum(summary.input_tokens for summary in summaries))
        return summaries

    def describe(self) -> dict[str, Any]:
        """What `GET /info` reports: the model, its positions, the summaries' defaults and the version."""
        config = self._generation_config(SummaryOptions())
        model = self.defaults.model
        return {
            "model": self.model_name,
            "version": version("bigbird-pegasus"),
            "max_position_embeddings": self.positions,
            "dtype": str(model.dtype).removeprefix("torch."),
            "quantize": self.defaults.quantize,
            "device": str(model.device),
            "long_input": self.defaults.long_input.value,
            "newlines": self.defaults.newlines.value,
            "generation_defaults": {name: getattr(config, name) for name in GENERATE_PARAMETERS},
        }

    def _generation_config(self, options: SummaryOptions):
        """The model's generation settings under the service's defaults under the request's options."""
        defaults = {name: value for name, value in self.defaults.generation_options.items()
                    if name != "cross_attention_cache"}
        return self.defaults.model.generation_config.update(**defaults).update(**dict(options.generation))

    def _summarizer(self, options: SummaryOptions) -> Summarizer:
        """The service's Summarizer, or one sharing its model with the request's options (cheap to make)."""
        if options == SummaryOptions():
            return self.defaults
        defaults = self.defaults
        generation = {**defaults.generation_options, **dict(options.generation)}
        return Summarizer(defaults.model, defaults.tokenizer, batch_size=self.max_batch_size,
                          long_input=options.long_input or defaults.long_input, chunk_overlap=defaults.chunker.overlap,
                          newlines=defaults.newlines, **generation)
