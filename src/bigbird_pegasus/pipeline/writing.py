"""Summaries as output files: text (one summary per line), or JSON Lines records (one object per summary)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from ..errors import UserError
from ..text.documents import JSONL_SUFFIXES, TEXT_SUFFIXES
from ..text.sentences import one_line
from .summarizer import Summary


def summaries_as_text(results: Sequence[Summary]) -> str:
    """One summary per line, in order (a summary's own line breaks become spaces)."""
    return "".join(one_line(result.summary) + "\n" for result in results)


def summary_record(result: Summary) -> str:
    """One line of a JSON Lines output (line break included): id, summary, input_tokens, truncated, chunks,
    seconds."""
    return json.dumps({"id": result.id, "summary": result.summary, "input_tokens": result.input_tokens,
                       "truncated": result.truncated, "chunks": result.chunks, "seconds": result.seconds},
                      ensure_ascii=False) + "\n"


def id_key(value) -> str:
    """A document id as a key that tells 7 from "7" (ids are JSON strings or numbers)."""
    return json.dumps(value, ensure_ascii=False)


def check_output_path(path: str) -> None:
    """Refuse, before any work is done, an output whose kind is unknown or whose folder does not exist."""
    if not path.lower().endswith(JSONL_SUFFIXES + TEXT_SUFFIXES):
        raise UserError(f"{path}: the output must end in .txt (one summary per line) or .jsonl (one JSON object "
                        "per line)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"{path}: cannot write there, folder {folder} does not exist")
    if os.path.isdir(path):
        raise UserError(f"{path}: is a folder; name the file to write")
