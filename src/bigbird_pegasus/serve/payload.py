"""What a request asks for: the texts to summarize and how, read from the Hugging Face Inference API's summarization
payload (`POST /`) or from query parameters (`POST /upload`).

    {"inputs": "text" | ["text", ...],
     "parameters": {"generate_parameters": {"num_beams": 4, "max_length": 128, ...},
                    "truncation": "only_first" | "longest_first" | "do_not_truncate",
                    "clean_up_tokenization_spaces": true}}

Anything else is a ServiceError naming the field: 400 for a body that is not UTF-8 JSON, 422 for JSON that does not
ask for summaries this service can make. Whether values fit the model (a length beyond its positions) is checked by
the engine, which knows the model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..pipeline.summarizer import LongInput
from ..text.documents import json_kind
from ..text.sentences import paragraphs
from .errors import ServiceError

BAD_REQUEST = 400
UNPROCESSABLE = 422


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_early_stopping(value: Any) -> bool:
    return isinstance(value, bool) or value == "never"


# The `generate` keywords a request may set, and what each must be. Sampling is left out on purpose: a service's
# summaries are reproducible (the same text and options always give the same summary, as the CLI prints it), and
# one summary per input is what the task returns (no num_return_sequences).
GENERATE_PARAMETERS = {
    "num_beams": (_is_int, "an integer"),
    "length_penalty": (_is_number, "a number"),
    "max_length": (_is_int, "an integer"),
    "min_length": (_is_int, "an integer"),
    "max_new_tokens": (_is_int, "an integer"),
    "min_new_tokens": (_is_int, "an integer"),
    "no_repeat_ngram_size": (_is_int, "an integer"),
    "repetition_penalty": (_is_number, "a number"),
    "early_stopping": (_is_early_stopping, 'true, false or "never"'),
}
# The Inference API's truncation strategies: cutting the input (the pipeline's "truncate"), or not cutting it,
# which this service does by reading a long document in windows ("chunk"). There is no second sequence to cut.
TRUNCATION = {"only_first": LongInput.TRUNCATE, "longest_first": LongInput.TRUNCATE,
              "do_not_truncate": LongInput.CHUNK}
PARAMETERS = ("generate_parameters", "truncation", "clean_up_tokenization_spaces")
UPLOAD_QUERY = ("filename", "truncation", *GENERATE_PARAMETERS)


@dataclass(frozen=True)
class SummaryOptions:
    """What a request changes from the service's defaults: `generate` keywords as sorted (name, value) pairs, and
    what to do with a long document (None: the service's --long-input). Hashable: requests with equal options
    can share a batch."""

    generation: tuple[tuple[str, Any], ...] = ()
    long_input: LongInput | None = None


@dataclass(frozen=True)
class SummaryRequest:
    """The texts of one `POST /` (a single string is a list of one) and their options."""

    texts: list[str]
    options: SummaryOptions


def parse_summary_request(body: bytes) -> SummaryRequest:
    """The request in a `POST /` body; a ServiceError (400, 422) naming what is wrong."""
    payload = _json_object(body)
    unknown = sorted(set(payload) - {"inputs", "parameters"})
    if unknown:
        raise ServiceError(UNPROCESSABLE, f"unknown field {unknown[0]!r}: the body holds 'inputs' and, optionally, "
                                          "'parameters'")
    if "inputs" not in payload:
        raise ServiceError(UNPROCESSABLE, "missing 'inputs': the text to summarize, or a list of texts")
    return SummaryRequest(_texts(payload["inputs"]), parse_parameters(payload.get("parameters")))


def parse_parameters(parameters: Any) -> SummaryOptions:
    """The options in a payload's `parameters` (absent or null: the defaults)."""
    if parameters is None:
        return SummaryOptions()
    if not isinstance(parameters, dict):
        raise ServiceError(UNPROCESSABLE, f"'parameters' must be an object, got {json_kind(parameters)}")
    for name in parameters:
        if name not in PARAMETERS:
            raise ServiceError(UNPROCESSABLE, f"unknown parameter {name!r} (known: {', '.join(PARAMETERS)})")
    generation = parameters.get("generate_parameters")
    if generation is not None and not isinstance(generation, dict):
        raise ServiceError(UNPROCESSABLE, f"'generate_parameters' must be an object, got {json_kind(generation)}")
    cleanup = parameters.get("clean_up_tokenization_spaces")
    if cleanup is not None and cleanup is not True:
        raise ServiceError(UNPROCESSABLE, "clean_up_tokenization_spaces: summaries always have their tokenization "
                                          "spaces cleaned up; only true (or leaving it out) is supported")
    return SummaryOptions(_generation(generation or {}), _long_input(parameters.get("truncation")))


def parse_upload_query(query: list[tuple[str, str]]) -> tuple[str | None, SummaryOptions]:
    """`POST /upload?filename=paper.pdf&num_beams=4&truncation=do_not_truncate`: the file's name (for messages and
    its kind; never opened) and the options. Values are read as JSON where they parse (`4`, `0.8`, `true`), else
    as text (`never`)."""
    seen: dict[str, str] = {}
    for name, value in query:
        if name not in UPLOAD_QUERY:
            raise ServiceError(UNPROCESSABLE, f"unknown query parameter {name!r} (known: {', '.join(UPLOAD_QUERY)})")
        if name in seen:
            raise ServiceError(UNPROCESSABLE, f"query parameter {name!r} is given twice")
        seen[name] = value
    filename = seen.pop("filename", None)
    truncation = seen.pop("truncation", None)
    return filename, SummaryOptions(_generation({name: _query_value(value) for name, value in seen.items()}),
                                    _long_input(truncation))


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ServiceError(BAD_REQUEST, f"the body is not UTF-8: byte 0x{body[error.start]:02x} at offset "
                                        f"{error.start}") from None
    if not text.strip():
        raise ServiceError(BAD_REQUEST, 'the body is empty; send JSON: {"inputs": "text to summarize"}')
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise ServiceError(BAD_REQUEST, f"the body is not valid JSON: {error.msg} (line {error.lineno}, column "
                                        f"{error.colno})") from None
    if not isinstance(payload, dict):
        raise ServiceError(UNPROCESSABLE, f'the body must be a JSON object {{"inputs": ...}}, got '
                                          f"{json_kind(payload)}")
    return payload


def _texts(inputs: Any) -> list[str]:
    """The texts of `inputs`: a string, or a non-empty list of strings, each with words in it."""
    if isinstance(inputs, str):
        if not paragraphs(inputs):
            raise ServiceError(UNPROCESSABLE, "'inputs' is empty: there is nothing to summarize")
        return [inputs]
    if not isinstance(inputs, list):
        raise ServiceError(UNPROCESSABLE, f"'inputs' must be a string or a list of strings, got {json_kind(inputs)}")
    if not inputs:
        raise ServiceError(UNPROCESSABLE, "'inputs' is an empty list: there is nothing to summarize")
    for index, text in enumerate(inputs):
        if not isinstance(text, str):
            raise ServiceError(UNPROCESSABLE, f"inputs[{index}] must be a string, got {json_kind(text)}")
        if not paragraphs(text):
            raise ServiceError(UNPROCESSABLE, f"inputs[{index}] is empty: there is nothing to summarize")
    return inputs


def _generation(values: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The set `generate` keywords as sorted (name, value) pairs; null leaves one at its default."""
    chosen = []
    for name, value in values.items():
        if name not in GENERATE_PARAMETERS:
            raise ServiceError(UNPROCESSABLE, f"unknown generation parameter {name!r} (supported: "
                                              f"{', '.join(GENERATE_PARAMETERS)})")
        if value is None:
            continue
        accepts, expected = GENERATE_PARAMETERS[name]
        if not accepts(value):
            raise ServiceError(UNPROCESSABLE, f"{name} must be {expected}, got {json.dumps(value)}")
        chosen.append((name, value))
    return tuple(sorted(chosen))


def _long_input(truncation: Any) -> LongInput | None:
    if truncation is None:
        return None
    if truncation not in TRUNCATION:
        raise ServiceError(UNPROCESSABLE, f"truncation must be one of {', '.join(TRUNCATION)}, got "
                                          f"{json.dumps(truncation)}")
    return TRUNCATION[truncation]


def _query_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
