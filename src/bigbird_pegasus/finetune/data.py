"""Training data: JSONL examples indexed once, length-bucketed batches, each process's share, token batches.

Every process indexes the whole file (one pass of JSON parsing, no tokenization) and draws the same
optimizer steps from the seed and the epoch. A step's examples are cut into micro-batches (gradient
accumulation) and each micro-batch into one share per process; a process reads and tokenizes only its
own shares. Batches are bucketed by the documents' character counts, which needs no tokenizer.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..text.newlines import encode_newlines, uses_newline_token
from ..text.tokenizer import PegasusTokenizer
from .errors import FinetuneError

# Examples are shuffled, cut into pools of this many steps' worth, sorted by length within a pool and
# cut into steps: the examples of a step have similar lengths, and the steps still come in a random order.
STEPS_PER_POOL = 50
IGNORED_LABEL = -100  # cross-entropy's ignore_index: padding in the labels


@dataclass(frozen=True)
class Example:
    document: str
    summary: str


@dataclass
class JsonlExamples:
    """The usable lines of a JSONL file: byte offsets, line numbers and document lengths (characters).

    Lines whose document or summary is empty are skipped and counted in `skipped`."""

    path: str
    text_field: str
    summary_field: str
    offsets: list[int] = field(default_factory=list)
    line_numbers: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=lambda: {"empty_document": 0, "empty_summary": 0})

    def __len__(self) -> int:
        return len(self.offsets)

    def read(self, indices: Sequence[int]) -> list[Example]:
        """The examples at these indices (0 .. len-1), read from the file."""
        examples = []
        with open(self.path, "rb") as f:
            for index in indices:
                f.seek(self.offsets[index])
                record = json.loads(f.readline())
                examples.append(Example(record[self.text_field], record[self.summary_field]))
        return examples


def read_jsonl(path: str, text_field: str, summary_field: str) -> JsonlExamples:
    """Index a JSONL file; a malformed line raises a FinetuneError naming `path:line` and the problem."""
    examples = JsonlExamples(path, text_field, summary_field)
    offset = 0
    with open(path, "rb") as f:
        for line_number, raw in enumerate(f, start=1):
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            record = _parse_line(raw, f"{path}:{line_number}", text_field, summary_field)
            document, summary = record[text_field], record[summary_field]
            if not document.strip():
                examples.skipped["empty_document"] += 1
            elif not summary.strip():
                examples.skipped["empty_summary"] += 1
            else:
                examples.offsets.append(start)
                examples.line_numbers.append(line_number)
                examples.lengths.append(len(document))
    if not examples:
        raise FinetuneError(f"{path}: no usable examples ({_skipped_text(examples.skipped)})")
    return examples


def _parse_line(raw: bytes, where: str, text_field: str, summary_field: str) -> dict:
    try:
        record = json.loads(raw.rstrip(b"\r\n"))
    except UnicodeDecodeError as e:
        raise FinetuneError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise FinetuneError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(record, dict):
        raise FinetuneError(f"{where}: expected a JSON object, found {type(record).__name__}")
    for name, option in ((text_field, "--text-field"), (summary_field, "--summary-field")):
        if name not in record:
            raise FinetuneError(f"{where}: no field {name!r} (the line has {', '.join(map(repr, record)) or 'none'}); "
                                f"choose the field with {option}")
        if not isinstance(record[name], str):
            raise FinetuneError(f"{where}: field {name!r} is {type(record[name]).__name__}, expected a string")
    return record


def _skipped_text(skipped: dict[str, int]) -> str:
    return ", ".join(f"{count} skipped for an {reason.replace('_', ' ')}" for reason, count in skipped.items())


# -- batches ---------------------------------------------------------------------------------------------

def epoch_steps(lengths: Sequence[int], step_size: int, world_size: int, seed: int, epoch: int) -> list[list[int]]:
    """One epoch's optimizer steps: lists of `step_size` example indices (longest first), the same in every
    process. The last, smaller step is cut to a multiple of `world_size` so every process gets examples."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = step_size * STEPS_PER_POOL
    steps = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: -lengths[i])
        steps += [chunk[i:i + step_size] for i in range(0, len(chunk), step_size)]
    if len(steps[-1]) < step_size:
        steps[-1] = steps[-1][:len(steps[-1]) - len(steps[-1]) % world_size]
    steps = [step for step in steps if step]
    rng.shuffle(steps)
    return steps


def micro_batches(step: Sequence[int], batch_size: int) -> list[list[int]]:
    """A step's examples cut into consecutive batches of `batch_size` (batch size x processes) for
    gradient accumulation; the last may be smaller."""
    return [list(step[i:i + batch_size]) for i in range(0, len(step), batch_size)]


def process_share(batch: Sequence[int], rank: int, world_size: int) -> list[int]:
    """This process's contiguous part of a batch; the parts differ in size by at most one."""
    return list(batch[rank * len(batch) // world_size:(rank + 1) * len(batch) // world_size])


# -- tokens ----------------------------------------------------------------------------------------------

@dataclass
class TokenBatch:
    """input_ids, attention_mask (b, n); labels (b, t) with IGNORED_LABEL at padding."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def to(self, device: torch.device) -> TokenBatch:
        return TokenBatch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))

    @property
    def source_tokens(self) -> int:
        return int(self.attention_mask.sum())

    @property
    def target_tokens(self) -> int:
        return int((self.labels != IGNORED_LABEL).sum())


class BatchEncoder:
    """Examples -> TokenBatch, truncated to the maximum lengths. Newlines become `<n>` when the vocabulary
    has that piece (as the arxiv/pubmed checkpoints were trained), else spaces."""

    def __init__(self, tokenizer: PegasusTokenizer, max_source_length: int, max_target_length: int):
        self.tokenizer = tokenizer
        self.max_source_length = max_source_length
        self.max_target_length = max_target_length
        self.newline_piece = uses_newline_token(tokenizer)

    def prepare(self, text: str) -> str:
        return encode_newlines(text) if self.newline_piece else text

    def __call__(self, examples: Sequence[Example]) -> TokenBatch:
        sources = self.tokenizer([self.prepare(e.document) for e in examples], padding=True, truncation=True,
                                 max_length=self.max_source_length, return_tensors="pt")
        targets = self.tokenizer([self.prepare(e.summary) for e in examples], padding=True, truncation=True,
                                 max_length=self.max_target_length, return_tensors="pt")
        labels = targets["input_ids"].masked_fill(targets["attention_mask"] == 0, IGNORED_LABEL)
        return TokenBatch(sources["input_ids"], sources["attention_mask"], labels)
