"""Summarize long documents: load a checkpoint once, then turn texts into summaries.

    >>> from bigbird_pegasus import Summarizer, summarize
    >>> summarize(["A long paper ..."], model="google/bigbird-pegasus-large-arxiv")      # -> list[str]
    >>> summarizer = Summarizer(num_beams=5, long_input="chunk")
    >>> for result in summarizer.summarize(texts, ids=names): print(result.id, result.truncated, result.summary)

A document longer than the model's positions (`config.max_position_embeddings`, 4096 for the published
checkpoints) is either truncated (`long_input="truncate"`, the default) or read in overlapping windows of whole
sentences whose summaries are joined and summarized again, level after level, until they fit (`"chunk"`).
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..generation.config import GenerationConfig
from ..generation.settings import (resolve_cross_attention_cache, resolve_generation_config, resolve_lengths,
                                   validate_generation_config)
from ..heads.conditional_generation import BigBirdPegasusForConditionalGeneration
from ..modeling.cache import CrossAttentionCache
from ..text.newlines import NewlineMode, clean_summary, model_input
from ..text.sentences import paragraphs
from ..text.tokenizer import PegasusTokenizer
from .batching import padded_states, run_in_batches
from .chunking import Chunker
from .loading import DEFAULT_MODEL, check_vocabulary, load_model, load_tokenizer, quantized

DEFAULT_BATCH_SIZE = 4
DEFAULT_OVERLAP_FRACTION = 8  # windows share up to 1/8 of the model's positions (512 tokens for 4096)


class LongInput(str, enum.Enum):
    """What to do with a document longer than the model's positions."""

    TRUNCATE = "truncate"
    CHUNK = "chunk"


@dataclass(frozen=True)
class Summary:
    """One document's summary and how it was read.

    input_tokens: the document's length in tokens (`</s>` included); truncated: how many of them the model never
    read (0 unless `long_input="truncate"` cut the document); chunks: the windows it was read in at the first
    level (1 when it fit); seconds: model time spent on it (a batch's time is shared by the inputs in it).
    """

    id: Any
    summary: str
    input_tokens: int
    truncated: int
    chunks: int
    seconds: float


@dataclass
class _Progress:
    """Where one document stands: the paragraphs still to summarize and what was measured so far."""

    paragraphs: list[str]
    input_tokens: int = 0
    truncated: int = 0
    chunks: int = 0  # windows at the first level; 0 until that level is planned
    seconds: float = 0.0
    truncate_next: bool = False  # set when chunking stopped shortening the text
    summary: str | None = None


@dataclass(frozen=True)
class _Job:
    """One model input: a whole document (final) or one of its windows."""

    document: int
    ids: list[int]
    final: bool


class Summarizer:
    """Loads a checkpoint and its tokenizer once and summarizes many texts with the same options.

    model: a folder, a Hugging Face hub id, or a loaded `BigBirdPegasusForConditionalGeneration` (then pass
        `tokenizer` too); tokenizer: a `PegasusTokenizer` or where to load one (default: where the model is).
    dtype: "float32", "bfloat16", "float16" or a torch dtype (default: as saved); device: default "cuda" when
        available, else "cpu"; threads: torch's CPU threads (default: torch's choice).
    quantize: "int8" (`quantize_int8`: int8 linear layers, a bf16 cross-attention cache: faster on the CPU, the
        summaries may differ a little) or "int8-bf16-encoder" (and the encoder in bf16: for CPUs with AMX or
        AVX512-BF16); on the CPU, from fp32 weights; a model passed in is quantized in place. Default None.
    batch_size: model inputs per batch (grouped by length); long_input: "truncate" or "chunk";
        chunk_overlap: tokens that consecutive windows may share (default: 1/8 of the positions);
        newlines: "auto" (paragraph breaks as `<n>` when the vocabulary has that piece), "token" or "space".
    cross_attention_cache: "keys_and_values" (the fastest), "values" or "none" (less memory per document in a
        batch, slower steps): see `generate`.
    generation_options: keywords of `generate` (`num_beams`, `length_penalty`, `max_length`, `min_length`,
        `no_repeat_ngram_size`, `max_new_tokens`, ...); None or absent means the checkpoint's default.
    """

    def __init__(self, model: str | os.PathLike | BigBirdPegasusForConditionalGeneration = DEFAULT_MODEL,
                 tokenizer: str | os.PathLike | PegasusTokenizer | None = None, *,
                 dtype: str | torch.dtype | None = None, device: str | torch.device | None = None,
                 quantize: str | None = None, threads: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 long_input: str | LongInput = LongInput.TRUNCATE, chunk_overlap: int | None = None,
                 newlines: str | NewlineMode = NewlineMode.AUTO,
                 cross_attention_cache: str | CrossAttentionCache = CrossAttentionCache.KEYS_AND_VALUES,
                 **generation_options: Any):
        unknown = set(generation_options) - GenerationConfig.field_names()
        if unknown:
            raise TypeError(f"unknown generation option(s): {', '.join(sorted(unknown))}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if threads is not None:
            torch.set_num_threads(threads)
        if isinstance(model, torch.nn.Module):
            if tokenizer is None:
                raise TypeError("pass `tokenizer` along with a loaded model")
            self.model = model.eval() if quantize is None else quantized(model.eval(), quantize)
        else:
            self.model = load_model(model, dtype=dtype, device=device, quantize=quantize)
        self.quantize = quantize
        self.tokenizer = tokenizer if isinstance(tokenizer, PegasusTokenizer) else load_tokenizer(tokenizer or model)
        check_vocabulary(self.tokenizer, model=self.model, source=tokenizer or model)
        self.limit = self.model.config.max_position_embeddings
        self.batch_size = batch_size
        self.long_input = LongInput(long_input)
        self.newlines = NewlineMode(newlines).resolve(self.tokenizer)
        overlap = self.limit // DEFAULT_OVERLAP_FRACTION if chunk_overlap is None else chunk_overlap
        if not 0 <= overlap < self.limit // 2:
            raise ValueError(f"chunk_overlap must be between 0 and {self.limit // 2 - 1} tokens, got {overlap}")
        self.chunker = Chunker(self._count_tokens, limit=self.limit, overlap=overlap, mode=self.newlines)
        self.generation_options = {name: value for name, value in generation_options.items() if value is not None}
        _check_generation_options(self.model, self.generation_options)
        self.generation_options["cross_attention_cache"] = resolve_cross_attention_cache(
            cross_attention_cache, decoder=self.model.get_decoder())

    def __call__(self, texts: str | Sequence[str]) -> str | list[str]:
        """The summary of each text (a single text gives a single summary)."""
        if isinstance(texts, str):
            return self.summarize([texts])[0].summary
        return [result.summary for result in self.summarize(texts)]

    def summarize(self, texts: Sequence[str], ids: Sequence[Any] | None = None,
                  progress: Callable[[int], None] | None = None, *,
                  finished: Callable[[Summary], None] | None = None) -> list[Summary]:
        """A `Summary` per text, in input order; `ids` label them (default 0, 1, ...). `progress(n)` is called
        each time n more documents are finished, and `finished(summary)` with each document's summary as soon as
        its last batch is done (in the order they finish). A text without any words raises ValueError."""
        ids = list(range(len(texts))) if ids is None else list(ids)
        if len(ids) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(ids)} ids")
        documents = [_Progress(paragraphs(text)) for text in texts]
        for document, label in zip(documents, ids):
            if not document.paragraphs:
                raise ValueError(f"document {label!r} is empty (no words)")
        progress = progress or (lambda count: None)
        finished = finished or (lambda summary: None)

        def report(indices: list[int]) -> None:
            for index in indices:
                finished(_summary(ids[index], documents[index]))
            if indices:
                progress(len(indices))

        pending = list(range(len(documents)))
        while pending:  # one level: whole documents or windows; then the joined summaries of the windows
            jobs = [job for index in pending for job in self._jobs(index, documents[index])]
            summaries = self._generate(jobs, documents, report)
            for index in pending:
                if documents[index].summary is None:
                    partial = [summary for job, summary in zip(jobs, summaries) if job.document == index]
                    self._read_partial_summaries(documents[index], partial)
                    if documents[index].summary is not None:
                        report([index])
            pending = [index for index in pending if documents[index].summary is None]
        return [_summary(label, document) for label, document in zip(ids, documents)]

    def _jobs(self, index: int, document: _Progress) -> list[_Job]:
        """The model inputs of a document at this level: itself (cut when truncating) or its windows."""
        ids = self._encode(document.paragraphs)
        document.input_tokens = document.input_tokens or len(ids)
        if len(ids) <= self.limit or self.long_input is LongInput.TRUNCATE or document.truncate_next:
            document.truncated += max(len(ids) - self.limit, 0)
            document.chunks = document.chunks or 1
            return [_Job(index, self._cut(ids), final=True)]
        windows = [self._encode(window) for window in self.chunker.split(document.paragraphs)]
        document.chunks = document.chunks or len(windows)
        document.truncated += sum(max(len(window) - self.limit, 0) for window in windows)
        return [_Job(index, self._cut(window), final=False) for window in windows]

    def _read_partial_summaries(self, document: _Progress, partial: list[str]) -> None:
        """Make the windows' summaries, joined in order, the text to summarize at the next level (an empty summary
        when they are all empty). If they are no shorter than what they summarize, chunking cannot converge, so
        the next level truncates them."""
        before = self._count_tokens([self._input(document.paragraphs)])[0]
        document.paragraphs = [line for summary in partial for line in summary.split("\n") if line]
        if not document.paragraphs:
            document.summary = ""
        elif self._count_tokens([self._input(document.paragraphs)])[0] >= before:
            document.truncate_next = True

    def _generate(self, jobs: list[_Job], documents: list[_Progress], report: Callable[[list[int]], None]
                  ) -> list[str]:
        """Summaries of all jobs, run in length-grouped batches; the documents each batch finishes are recorded
        and reported (their indices)."""

        def run_batch(indices: list[int]) -> list[str]:
            started = time.perf_counter()
            with torch.inference_mode():
                states, mask = self._encode_each([jobs[i].ids for i in indices])
                output = self.model.generate(encoder_outputs=states, attention_mask=mask, **self.generation_options)
            texts = [clean_summary(text, mode=self.newlines)
                     for text in self.tokenizer.batch_decode(output, skip_special_tokens=True)]
            share = (time.perf_counter() - started) / len(indices)
            for i, text in zip(indices, texts):
                document = documents[jobs[i].document]
                document.seconds += share
                if jobs[i].final:
                    document.summary = text
            report([jobs[i].document for i in indices if jobs[i].final])
            return texts

        return run_in_batches([job.ids for job in jobs], self.batch_size, run_batch)

    def _encode_each(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each document encoded alone, at its own length (the encoder pads it to a multiple of the block size
        only), so that its block-sparse layout, and so its summary, does not depend on the other documents of its
        batch (padding a document moves its last global block); the decoding is then batched, where masked
        cross-attention is exact. rows: token ids -> encoder states (b, n_max, d_model) and their mask (b, n_max)."""
        encoder = self.model.get_encoder()
        states = [encoder(torch.tensor([row], device=self.model.device)).last_hidden_state[0] for row in rows]
        return padded_states(states)

    def _input(self, paragraph_list: list[str]) -> str:
        return model_input(paragraph_list, mode=self.newlines)

    def _encode(self, paragraph_list: list[str]) -> list[int]:
        """Token ids of the model input for these paragraphs, `</s>` included, not truncated."""
        return self.tokenizer(self._input(paragraph_list))["input_ids"]

    def _count_tokens(self, texts: list[str]) -> list[int]:
        """Token counts of model-input texts, `</s>` included."""
        return [len(ids) for ids in self.tokenizer(texts)["input_ids"]] if texts else []

    def _cut(self, ids: list[int]) -> list[int]:
        """`ids` cut to the model's positions, keeping the final `</s>` (as the tokenizer's truncation does)."""
        return ids if len(ids) <= self.limit else ids[:self.limit - 1] + [self.tokenizer.eos_token_id]


def _summary(label: Any, document: _Progress) -> Summary:
    return Summary(label, document.summary, document.input_tokens, document.truncated, document.chunks,
                   round(document.seconds, 3))


def _check_generation_options(model: BigBirdPegasusForConditionalGeneration, options: dict[str, Any]) -> None:
    """A ValueError naming the first generation option that cannot work with `model` (an invalid value, or a
    summary longer than the decoder's positions), before any document is read."""
    config, length_is_default = resolve_generation_config(model.generation_config, passed=None, kwargs=options)
    validate_generation_config(config)
    resolve_lengths(config, prompt_length=1, length_is_default=length_is_default,
                    max_positions=model.config.max_position_embeddings)


def summarize(texts: str | Sequence[str], model: str | os.PathLike = DEFAULT_MODEL, **options: Any
              ) -> str | list[str]:
    """Summaries of `texts` (one string per text; a single text gives a single string).

    `options` are those of `Summarizer`: dtype, device, quantize, threads, batch_size, long_input, chunk_overlap,
    newlines, cross_attention_cache and the generation keywords. To summarize several times, build a `Summarizer`
    once instead.
    """
    return Summarizer(model, **options)(texts)
