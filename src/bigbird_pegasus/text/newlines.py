"""The `<n>` newline symbol: how paragraph breaks reach the model and come back out of it.

The arxiv and pubmed checkpoints were fine-tuned with each line break written as `<n>` (see docs/tokenizer.md);
`NewlineMode.TOKEN` joins paragraphs that way and turns `<n>` in a summary back into a line break.
`NewlineMode.SPACE` joins paragraphs with a space, for checkpoints without that convention.
"""

from __future__ import annotations

import enum
import re

from .tokenizer import PegasusTokenizer

NEWLINE_SYMBOL = "<n>"


def encode_newlines(text: str) -> str:
    """Write each newline as the `<n>` symbol the arxiv/pubmed checkpoints were trained with.

    Mirrors google-research/bigbird's input pipeline: "\\n" becomes "<n>" and one space right
    before it is dropped (BigBird removes the space before bracketed symbols).
    """
    return re.sub(r" ?\n", NEWLINE_SYMBOL, text)


def decode_newlines(text: str) -> str:
    """Inverse of `encode_newlines`: turn each `<n>` (and one space before it) back into "\\n"."""
    return re.sub(r" ?<n>", "\n", text)


class NewlineMode(str, enum.Enum):
    """How paragraph breaks reach the model: `<n>` tokens, plain spaces, or whichever the tokenizer knows."""

    AUTO = "auto"
    TOKEN = "token"
    SPACE = "space"

    def resolve(self, tokenizer: PegasusTokenizer) -> NewlineMode:
        """TOKEN or SPACE; AUTO is TOKEN when `<n>` is one piece of the tokenizer's vocabulary."""
        if self is not NewlineMode.AUTO:
            return self
        return NewlineMode.TOKEN if uses_newline_token(tokenizer) else NewlineMode.SPACE


def uses_newline_token(tokenizer: PegasusTokenizer) -> bool:
    """Whether the vocabulary has `<n>` as a piece of its own (the newline-aware PEGASUS vocabularies do)."""
    return tokenizer.convert_tokens_to_ids(NEWLINE_SYMBOL) != tokenizer.unk_token_id


def model_input(paragraph_list: list[str], *, mode: NewlineMode) -> str:
    """The text the model reads: paragraphs joined by `<n>` (TOKEN) or by a space (SPACE)."""
    if mode is NewlineMode.TOKEN:
        return encode_newlines("\n".join(paragraph_list))
    return " ".join(paragraph_list)


def clean_summary(decoded: str, *, mode: NewlineMode) -> str:
    """A decoded summary as text: `<n>` back to line breaks (TOKEN), whitespace collapsed within each line,
    empty lines dropped."""
    if mode is NewlineMode.TOKEN:
        decoded = decode_newlines(decoded)
    lines = (" ".join(line.split()) for line in decoded.split("\n"))
    return "\n".join(line for line in lines if line)
