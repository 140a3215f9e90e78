"""PEGASUS SentencePiece tokenizer, a drop-in replacement for `transformers.PegasusTokenizer`.

The work is done by the Rust `tokenizers` library with the same pipeline the reference builds:
SentencePiece's precompiled normalizer followed by collapsing runs of spaces, a Metaspace
pre-tokenizer, a Unigram model and a post-processor that appends `</s>`.

Vocabulary layout (PEGASUS): pad 0, eos 1, `<mask_1>` 2, `<mask_2>` 3, `<unk_2>` ... `<unk_102>`
at 4 ... 104, then SentencePiece piece `i` (for `i >= 2`) at `i + offset` with `offset = 103`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sentencepiece
import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram

from ..checkpoint.hub import is_local

TOKENIZER_FILE = "tokenizer.json"
SPM_FILE = "spiece.model"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
NO_MAX_LENGTH = int(1e30)  # the reference's "unlimited" model_max_length
_UNLIMITED_ABOVE = int(1e20)  # model_max_length above this means "no default truncation/padding length"
_PREFIX_CHARS_PER_TOKEN = 8  # text budget per kept token when encoding only the head of a long text


@dataclass(frozen=True)
class SpecialTokens:
    """The PEGASUS special tokens; `offset` reserved ids precede the SentencePiece pieces."""

    pad: str = "<pad>"
    eos: str = "</s>"
    unk: str = "<unk>"
    mask: str = "<mask_2>"
    mask_sent: str = "<mask_1>"
    offset: int = 103

    @classmethod
    def from_config(cls, config: dict) -> SpecialTokens:
        """Read token names and offset from merged tokenizer_config/special_tokens_map values."""
        keys = {"pad": "pad_token", "eos": "eos_token", "unk": "unk_token", "mask": "mask_token",
                "mask_sent": "mask_token_sent"}
        found = {field: _token_content(config[key]) for field, key in keys.items() if config.get(key)}
        return cls(**found, offset=int(config.get("offset", cls.offset)))

    def reserved(self) -> list[str]:
        """Tokens at ids 0 .. offset-1, in id order."""
        return [self.pad, self.eos, self.mask_sent, self.mask] + self.unused()

    def unused(self) -> list[str]:
        """The `<unk_i>` placeholders reserved for pre-training."""
        return [f"<unk_{i}>" for i in range(2, self.offset)]

    def all(self) -> list[str]:
        """Every special token, in the reference's `all_special_ids` order."""
        return [self.eos, self.unk, self.pad, self.mask, self.mask_sent] + self.unused()


class BatchEncoding(dict):
    """Tokenizer output: a dict (`input_ids`, `attention_mask`) with attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, device) -> BatchEncoding:
        """Move every tensor to `device` (in place); returns self."""
        for key, value in self.items():
            if hasattr(value, "to"):
                self[key] = value.to(device)
        return self


class PegasusTokenizer:
    """PEGASUS / BigBird-Pegasus tokenizer with the reference's ids, padding and decoding."""

    def __init__(self, backend: Tokenizer, special: SpecialTokens = SpecialTokens(),
                 model_max_length: int = NO_MAX_LENGTH, clean_up_tokenization_spaces: bool = False,
                 spm_file: str | None = None):
        """Wrap a `tokenizers.Tokenizer`; use `from_pretrained` to build one from files."""
        backend.no_padding()
        backend.no_truncation()
        self._backend = backend
        self.special = special
        self.model_max_length = model_max_length
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self._spm_file = spm_file
        self._prefix_safe = not any(" " in token.content for token in backend.get_added_tokens_decoder().values())

    # ---- loading and saving -------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, revision: str | None = None,
                        cache_dir: str | os.PathLike | None = None,
                        local_files_only: bool | None = None) -> PegasusTokenizer:
        """Load from a local folder or a Hugging Face Hub id (tokenizer.json preferred, else spiece.model).

        Hub files go through the shared cache; with HF_HUB_OFFLINE=1 only cached files are used.
        """
        folder = _tokenizer_folder(name_or_path, revision, cache_dir, local_files_only)
        config = {**_read_json(folder / CONFIG_FILE), **_read_json(folder / SPECIAL_TOKENS_FILE)}
        special = SpecialTokens.from_config(config)
        spm_file = folder / SPM_FILE
        if (folder / TOKENIZER_FILE).is_file():
            backend = _backend_from_tokenizer_json(folder / TOKENIZER_FILE, special)
        elif spm_file.is_file():
            backend = _backend_from_spm(spm_file, special)
        else:
            raise FileNotFoundError(f"No tokenizer in {folder}: looked for {TOKENIZER_FILE} and {SPM_FILE}")
        return cls(backend, special, model_max_length=int(config.get("model_max_length") or NO_MAX_LENGTH),
                   clean_up_tokenization_spaces=bool(config.get("clean_up_tokenization_spaces", False)),
                   spm_file=str(spm_file) if spm_file.is_file() else None)

    def save_pretrained(self, folder: str | os.PathLike) -> tuple[str, ...]:
        """Write tokenizer.json, tokenizer_config.json, special_tokens_map.json (and spiece.model if known)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._backend.save(str(folder / TOKENIZER_FILE))
        s = self.special
        token_map = {"pad_token": s.pad, "eos_token": s.eos, "unk_token": s.unk, "mask_token": s.mask,
                     "additional_special_tokens": [s.mask_sent] + s.unused()}
        config = {"tokenizer_class": "PegasusTokenizer", **token_map, "mask_token_sent": s.mask_sent,
                  "offset": s.offset, "model_max_length": self.model_max_length,
                  "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces}
        written = [folder / TOKENIZER_FILE, folder / CONFIG_FILE, folder / SPECIAL_TOKENS_FILE]
        written[1].write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written[2].write_text(json.dumps(token_map, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if self._spm_file and Path(self._spm_file).resolve() != (folder / SPM_FILE).resolve():
            written.append(Path(shutil.copyfile(self._spm_file, folder / SPM_FILE)))
        return tuple(str(path) for path in written)

    # ---- encoding -------------------------------------------------------------------------

    def __call__(self, text: str | list[str], padding: bool | str = False, truncation: bool | str | None = None,
                 max_length: int | None = None, return_tensors: str | None = None,
                 add_special_tokens: bool = True) -> BatchEncoding:
        """Encode one text or a batch; returns `input_ids` and `attention_mask` (lists, or tensors with "pt")."""
        if return_tensors not in (None, "pt"):
            raise ValueError(f"return_tensors={return_tensors!r} is not supported; use None or 'pt'")
        pad_to, cut_to = self._resolve_lengths(padding, truncation, max_length)
        texts = [text] if isinstance(text, str) else list(text)
        eos = [self.eos_token_id] if add_special_tokens else []
        limit = None if cut_to is None else cut_to - len(eos)
        if limit is not None and limit < 0:
            raise ValueError(f"max_length={cut_to} leaves no room for the {len(eos)} special token(s)")
        rows = [ids + eos for ids in self._encode_ids(texts, limit)]
        width = max(map(len, rows), default=0) if pad_to == "longest" else (pad_to or 0)
        if return_tensors == "pt":
            return BatchEncoding(zip(("input_ids", "attention_mask"), _padded_tensors(rows, width, self.pad_token_id)))
        masks = [[1] * len(ids) + [0] * (width - len(ids)) for ids in rows]
        rows = [ids + [self.pad_token_id] * (width - len(ids)) for ids in rows]
        if isinstance(text, str):
            rows, masks = rows[0], masks[0]
        return BatchEncoding(input_ids=rows, attention_mask=masks)

    def encode(self, text: str, add_special_tokens: bool = True, truncation: bool | str | None = None,
               max_length: int | None = None) -> list[int]:
        """Token ids of one text (with `</s>` unless `add_special_tokens=False`)."""
        encoding = self(text, truncation=truncation, max_length=max_length, add_special_tokens=add_special_tokens)
        return encoding["input_ids"]

    def tokenize(self, text: str) -> list[str]:
        """Token strings of one text, without special tokens added."""
        return self._backend.encode(text, add_special_tokens=False).tokens

    def _resolve_lengths(self, padding, truncation, max_length) -> tuple[int | str | None, int | None]:
        """Return (pad target: None, "longest" or a length; truncation length or None) like the reference."""
        if max_length is not None and padding is False and truncation is None:
            truncation = True
        if padding not in (False, True, "longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding={padding!r}; use False, True, 'longest', 'max_length' or 'do_not_pad'")
        if truncation not in (None, False, True, "longest_first", "only_first", "do_not_truncate"):
            raise ValueError(f"truncation={truncation!r}; use True, False, 'longest_first', 'only_first' "
                             "or 'do_not_truncate'")
        if max_length is None and self.model_max_length <= _UNLIMITED_ABOVE:
            max_length = self.model_max_length
        pad_to = {True: "longest", "longest": "longest", "max_length": max_length}.get(padding)
        return pad_to, max_length if truncation not in (None, False, "do_not_truncate") else None

    def _encode_ids(self, texts: list[str], limit: int | None) -> list[list[int]]:
        """Ids without special tokens, cut to `limit`; a text cut short is encoded by its head when that suffices."""
        if limit is None:
            return self._encode_batch(texts)
        heads = [self._head(text, limit) for text in texts]
        ids = self._encode_batch(heads)
        redo = [i for i, (head, text) in enumerate(zip(heads, texts)) if len(ids[i]) < limit and head != text]
        for i, full in zip(redo, self._encode_batch([texts[i] for i in redo])):
            ids[i] = full
        return [row[:limit] for row in ids]

    def _encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Ids of each text, without special tokens, encoded in parallel by the Rust backend."""
        return [encoding.ids for encoding in self._backend.encode_batch_fast(texts, add_special_tokens=False)]

    def _head(self, text: str, limit: int) -> str:
        """A prefix of `text` whose tokens are exactly the first tokens of the whole text.

        Cutting before a space that follows an ASCII letter, digit or punctuation mark ends a word,
        a grapheme and a whitespace-split pre-token at once, so normalizing and segmenting the prefix
        gives the same tokens as the full text up to that point.
        """
        budget = _PREFIX_CHARS_PER_TOKEN * limit + 64
        if not self._prefix_safe or len(text) <= budget:
            return text
        cut = text.rfind(" ", 0, budget)
        while cut > 0 and not _is_word_end(text[cut - 1]):
            cut = text.rfind(" ", 0, cut)
        return text[:cut] if cut > 0 else text

    # ---- decoding -------------------------------------------------------------------------

    def decode(self, token_ids, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None) -> str:
        """Text of a sequence of ids (list, tensor or single int)."""
        ids = token_ids.tolist() if hasattr(token_ids, "tolist") else token_ids
        text = self._backend.decode([ids] if isinstance(ids, int) else ids, skip_special_tokens=skip_special_tokens)
        return self._clean_up(text, clean_up_tokenization_spaces)

    def batch_decode(self, sequences, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None) -> list[str]:
        """Texts of a batch of id sequences (list of lists or 2-D tensor)."""
        rows = sequences.tolist() if hasattr(sequences, "tolist") else [list(map(int, row)) for row in sequences]
        texts = self._backend.decode_batch(rows, skip_special_tokens=skip_special_tokens)
        return [self._clean_up(text, clean_up_tokenization_spaces) for text in texts]

    def _clean_up(self, text: str, enabled: bool | None) -> str:
        """The reference's optional removal of spaces before punctuation and English contractions."""
        if not (self.clean_up_tokenization_spaces if enabled is None else enabled):
            return text
        for spaced, joined in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                               (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
            text = text.replace(spaced, joined)
        return text

    # ---- vocabulary ---------------------------------------------------------------------

    def convert_ids_to_tokens(self, ids: int | list[int]) -> str | list[str]:
        """Token string(s) for id(s)."""
        if isinstance(ids, int):
            return self._backend.id_to_token(ids)
        return [self._backend.id_to_token(int(i)) for i in ids]

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]:
        """Id(s) for token string(s); unknown tokens map to `unk_token_id`."""
        if isinstance(tokens, str):
            found = self._backend.token_to_id(tokens)
            return self.unk_token_id if found is None else found
        return [self.convert_tokens_to_ids(token) for token in tokens]

    @property
    def vocab_size(self) -> int:
        """Number of ids, reserved PEGASUS tokens included."""
        return self._backend.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    pad_token = property(lambda self: self.special.pad)
    eos_token = property(lambda self: self.special.eos)
    unk_token = property(lambda self: self.special.unk)
    mask_token = property(lambda self: self.special.mask)
    mask_token_sent = property(lambda self: self.special.mask_sent)
    pad_token_id = property(lambda self: self._backend.token_to_id(self.special.pad))
    eos_token_id = property(lambda self: self._backend.token_to_id(self.special.eos))
    unk_token_id = property(lambda self: self._backend.token_to_id(self.special.unk))
    mask_token_id = property(lambda self: self._backend.token_to_id(self.special.mask))
    all_special_ids = property(lambda self: [self._backend.token_to_id(token) for token in self.special.all()])


def _backend_from_spm(path: Path, special: SpecialTokens) -> Tokenizer:
    """Build the backend from a SentencePiece model, shifting piece ids by `special.offset`."""
    processor = sentencepiece.SentencePieceProcessor(model_file=str(path))
    pieces = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(2, processor.get_piece_size())]
    reserved = [(token, 0.0) for token in special.reserved()[:4]] + [(token, -100.0) for token in special.unused()]
    vocab = reserved + pieces
    backend = Tokenizer(Unigram(vocab, unk_id=processor.unk_id() + special.offset, byte_fallback=False))
    normalizer_spec = _proto_bytes_field(path.read_bytes(), 3) or b""
    return _with_pegasus_pipeline(backend, _proto_bytes_field(normalizer_spec, 2), special)


def _backend_from_tokenizer_json(path: Path, special: SpecialTokens) -> Tokenizer:
    """Load a tokenizer.json and give it the PEGASUS pipeline, as the reference rebuilds it."""
    raw = path.read_text(encoding="utf-8")
    normalizer = json.loads(raw).get("normalizer") or {}
    steps = normalizer.get("normalizers", [normalizer]) if normalizer.get("type") == "Sequence" else [normalizer]
    charsmap = next((step["precompiled_charsmap"] for step in steps if step.get("type") == "Precompiled"), None)
    backend = Tokenizer.from_str(raw)
    if not isinstance(backend.model, Unigram):
        raise ValueError(f"{path}: expected a Unigram (SentencePiece) model, found {type(backend.model).__name__}")
    return _with_pegasus_pipeline(backend, charsmap, special)


def _with_pegasus_pipeline(backend: Tokenizer, charsmap: bytes | str | None, special: SpecialTokens) -> Tokenizer:
    """Set normalizer, pre-tokenizer, decoder, `</s>` post-processor and the special tokens."""
    if charsmap:
        charsmap = charsmap if isinstance(charsmap, bytes) else base64.b64decode(charsmap)
        first = normalizers.Precompiled(charsmap)
    else:
        first = normalizers.Replace(Regex(r"\n"), " ")
    backend.normalizer = normalizers.Sequence([first, normalizers.Replace(Regex(r" {2,}"), " ")])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    present = {token.content for token in backend.get_added_tokens_decoder().values()}
    missing = [token for token in special.reserved() + [special.unk] if token not in present]
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in missing])
    eos_id = backend.token_to_id(special.eos)
    backend.post_processor = processors.TemplateProcessing(
        single=f"$A {special.eos}", pair=f"$A $B {special.eos}", special_tokens=[(special.eos, eos_id)])
    return backend


def _proto_bytes_field(message: bytes, wanted: int) -> bytes | None:
    """First length-delimited field number `wanted` of a protobuf message (no protobuf dependency).

    Used to read `ModelProto.normalizer_spec` (3) and its `precompiled_charsmap` (2).
    """
    position = 0
    while position < len(message):
        key, position = _varint(message, position)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, position = _varint(message, position)
        elif wire_type == 2:
            size, position = _varint(message, position)
            if field == wanted:
                return message[position: position + size]
            position += size
        elif wire_type in (1, 5):
            position += 8 if wire_type == 1 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type} in SentencePiece model")
    return None


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position, shift = position + 1, shift + 7
        if byte < 0x80:
            return value, position


def _tokenizer_folder(name_or_path, revision, cache_dir, local_files_only) -> Path:
    """A local folder as is; for a Hub id, the cached (or freshly downloaded) snapshot of the tokenizer files."""
    if is_local(name_or_path):
        folder = Path(name_or_path).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"Tokenizer folder {folder} does not exist "
                                    f"(expected it to hold {TOKENIZER_FILE} or {SPM_FILE})")
        return folder
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = bool(local_files_only) or os.environ.get("HF_HUB_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE")
    patterns = [TOKENIZER_FILE, SPM_FILE, CONFIG_FILE, SPECIAL_TOKENS_FILE]
    try:
        return Path(snapshot_download(str(name_or_path), revision=revision, cache_dir=cache_dir,
                                      allow_patterns=patterns, local_files_only=offline))
    except LocalEntryNotFoundError:
        raise OSError(
            f"Cannot load the tokenizer of {name_or_path!r}: offline (HF_HUB_OFFLINE=1 or local_files_only=True) "
            f"and it is not in the Hugging Face cache. Set HF_HUB_OFFLINE=0 to download it, download it beforehand "
            f"(`hf download {name_or_path}`), or pass a local folder with {TOKENIZER_FILE} or {SPM_FILE}.") from None


def _is_word_end(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char in ".,;:!?")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def _token_content(value) -> str:
    """A special token given as a string or as a serialized AddedToken dict."""
    return value["content"] if isinstance(value, dict) else str(value)


def _padded_tensors(rows: list[list[int]], width: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`input_ids` and `attention_mask` tensors with rows right-padded to `width` (longer rows must agree)."""
    lengths = np.array([len(row) for row in rows], dtype=np.int64)
    padded = np.maximum(lengths, width)
    if padded.size and padded.min() != padded.max():
        raise ValueError("Sequences have different lengths; pass padding=True (or truncation) to return tensors")
    ids = np.full((len(rows), int(padded.max(initial=0))), pad_id, dtype=np.int64)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = row
    mask = (np.arange(ids.shape[1]) < lengths[:, None]).astype(np.int64)
    return torch.from_numpy(ids), torch.from_numpy(mask)
