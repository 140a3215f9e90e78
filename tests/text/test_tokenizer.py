"""PegasusTokenizer against the reference `transformers.PegasusTokenizer` on a locally trained model."""

from __future__ import annotations

import base64
import json
import random
import shutil

import pytest
import sentencepiece
import torch
import transformers
from tokenizers import Tokenizer, normalizers, pre_tokenizers

from bigbird_pegasus import PegasusTokenizer, decode_newlines, encode_newlines
from helpers.spm import UNICODE_SENTENCES, english_paragraphs, long_document, train_pegasus_spm

SAMPLES = [
    long_document(pages=4, seed=1),
    "The court ruled on Monday.",
    " ".join(UNICODE_SENTENCES),
    "Line one\nLine two\n\n\tIndented  text   with    spaces \t and tabs\r\nthe end  ",
    "Masks: <mask_1> sentence, <mask_2>word, eos </s> mid-text, <pad> padding and <unk> <unk_7> too</s>",
    "Spaced punctuation , like this . Isn 't it ? They 're sure ! It 's 'quoted' .",
    "Unseen symbols: Ωμέγα ∑ 🦜 ﬁ ① ｆｕｌｌｗｉｄｔｈ",
    encode_newlines("A title\nFirst paragraph.\nSecond paragraph with the <n> symbol."),
    "",
    "   ",
    "\n",
]
BATCH_OPTIONS = [
    dict(padding=True),
    dict(padding="longest", truncation=True, max_length=50),
    dict(padding="max_length", truncation=True, max_length=300),
    dict(padding="max_length", truncation="longest_first", max_length=7),
    dict(max_length=40),
    dict(truncation="only_first", max_length=1000, padding=True),
    dict(add_special_tokens=False, padding=True, truncation=True, max_length=20),
    dict(padding=True, max_length=10),
    dict(padding="do_not_pad", truncation=False),
]


@pytest.fixture(scope="session")
def spm_dir(tmp_path_factory):
    """A folder holding only spiece.model (PEGASUS layout, trained on generated English)."""
    return train_pegasus_spm(tmp_path_factory.mktemp("spm")).parent


@pytest.fixture(scope="session")
def reference(spm_dir):
    return transformers.PegasusTokenizer.from_pretrained(spm_dir)


@pytest.fixture(scope="session")
def reference_saved_dir(reference, tmp_path_factory):
    """What the reference writes: tokenizer.json + tokenizer_config.json, no spiece.model."""
    folder = tmp_path_factory.mktemp("reference_saved")
    reference.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session", params=["spiece.model", "tokenizer.json"])
def ours(request, spm_dir, reference_saved_dir):
    """Our tokenizer loaded through each path."""
    return PegasusTokenizer.from_pretrained(spm_dir if request.param == "spiece.model" else reference_saved_dir)


def test_vocabulary_layout_shifts_sentencepiece_ids_by_offset(ours, spm_dir):
    expected = ["<pad>", "</s>", "<mask_1>", "<mask_2>", "<unk_2>", "<unk_102>"]
    assert ours.convert_ids_to_tokens([0, 1, 2, 3, 4, 104]) == expected
    processor = sentencepiece.SentencePieceProcessor(model_file=str(spm_dir / "spiece.model"))
    text = "The committee approved the annual budget for public transport.<n>Critics said the figures were incomplete."
    assert ours.encode(text) == [i + 103 if i > 1 else i for i in processor.encode(text)] + [1]
    assert ours.vocab_size == processor.get_piece_size() + 103
    assert ours.unk_token_id == processor.unk_id() + 103


@pytest.mark.parametrize("text", SAMPLES, ids=range(len(SAMPLES)))
def test_ids_and_tokens_match_reference(ours, reference, text):
    ids = ours(text)["input_ids"]
    assert ids == reference(text)["input_ids"]
    assert ours.tokenize(text) == reference.tokenize(text)
    assert ours.convert_ids_to_tokens(ids) == reference.convert_ids_to_tokens(ids)
    assert ours.encode(text, add_special_tokens=False) == reference.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("skip_special_tokens", [False, True])
@pytest.mark.parametrize("clean_up", [None, True, False])
def test_decode_matches_reference(ours, reference, skip_special_tokens, clean_up):
    rng = random.Random(0)
    sequences = [reference(text)["input_ids"] for text in SAMPLES]
    sequences += [[rng.randrange(len(reference)) for _ in range(60)] for _ in range(5)]
    options = dict(skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=clean_up)
    expected = [reference.decode(ids, **options) for ids in sequences]
    assert [ours.decode(ids, **options) for ids in sequences] == expected
    assert ours.batch_decode(sequences, **options) == expected
    assert ours.decode(torch.tensor(sequences[1]), **options) == expected[1]


@pytest.mark.parametrize("options", BATCH_OPTIONS, ids=[str(o) for o in BATCH_OPTIONS])
def test_batches_match_reference(ours, reference, options):
    batch = SAMPLES[:7]
    expected = reference(batch, **options)
    assert ours(batch, **options) == {"input_ids": expected["input_ids"], "attention_mask": expected["attention_mask"]}
    if len({len(ids) for ids in expected["input_ids"]}) == 1:
        expected, got = reference(batch, return_tensors="pt", **options), ours(batch, return_tensors="pt", **options)
        assert torch.equal(got.input_ids, expected.input_ids) and got.input_ids.dtype == expected.input_ids.dtype
        assert torch.equal(got.attention_mask, expected.attention_mask)


def test_truncating_long_documents_matches_reference(ours, reference):
    documents = [long_document(pages=12, seed=seed) for seed in range(3)]
    documents.append("<mask_1>  " + "\t".join(english_paragraphs(40, seed=5)) + "  </s>")
    documents.append("東京" * 5000 + " end")
    documents.append(encode_newlines("\n".join(english_paragraphs(60, seed=6))))
    documents.append(("word" + " " * 30) * 1000)  # few tokens per character: the head alone is too short
    for max_length in (1, 2, 3, 17, 250, 511, 4096):
        expected = reference(documents, truncation=True, max_length=max_length, padding=True)
        assert ours(documents, truncation=True, max_length=max_length, padding=True) == dict(expected), max_length


def test_single_text_tensors_and_attribute_access(ours, reference):
    encoding = ours(SAMPLES[1], return_tensors="pt")
    expected = reference(SAMPLES[1], return_tensors="pt")
    assert encoding.input_ids is encoding["input_ids"]
    assert encoding.input_ids.shape == expected.input_ids.shape == (1, len(reference(SAMPLES[1]).input_ids))
    assert encoding.to("cpu") is encoding and torch.equal(encoding.attention_mask, expected.attention_mask)
    with pytest.raises(AttributeError):
        encoding.token_type_ids


def test_special_token_attributes_match_reference(ours, reference):
    for name in ["pad_token_id", "eos_token_id", "unk_token_id", "mask_token_id", "vocab_size", "all_special_ids",
                 "model_max_length", "pad_token", "eos_token", "unk_token", "mask_token"]:
        assert getattr(ours, name) == getattr(reference, name), name
    assert len(ours) == len(reference)
    tokens = ["<mask_1>", "▁the", "never-seen-token", "<n>"]
    assert ours.convert_tokens_to_ids(tokens) == reference.convert_tokens_to_ids(tokens)
    assert ours.convert_tokens_to_ids("</s>") == reference.convert_tokens_to_ids("</s>") == 1


def test_ragged_batch_cannot_become_tensors(ours):
    with pytest.raises(ValueError, match="padding=True"):
        ours(["short", "a somewhat longer text"], return_tensors="pt")


@pytest.mark.parametrize("options", [dict(return_tensors="np"), dict(padding="left"), dict(truncation="only_second")])
def test_unsupported_options_are_rejected(ours, options):
    with pytest.raises(ValueError):
        ours("text", **options)


def test_reference_loads_what_we_save(ours, reference, tmp_path):
    written = ours.save_pretrained(tmp_path)
    expected_files = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
    assert expected_files <= {path.rsplit("/", 1)[-1] for path in written} == {p.name for p in tmp_path.iterdir()}
    reloaded = transformers.PegasusTokenizer.from_pretrained(tmp_path)
    assert reloaded(SAMPLES, padding=True)["input_ids"] == reference(SAMPLES, padding=True)["input_ids"]
    assert reloaded.all_special_ids == reference.all_special_ids
    ids = reference(SAMPLES[4])["input_ids"]
    assert reloaded.decode(ids, skip_special_tokens=True) == reference.decode(ids, skip_special_tokens=True)


def test_legacy_tokenizer_json_gets_the_reference_pipeline(reference_saved_dir, reference, tmp_path):
    """Older hub files carry other normalizers/pre-tokenizers and settings; the reference rebuilds its own."""
    legacy = Tokenizer.from_file(str(reference_saved_dir / "tokenizer.json"))
    data = json.loads(legacy.to_str())
    charsmap = base64.b64decode(data["normalizer"]["normalizers"][0]["precompiled_charsmap"])
    legacy.normalizer = normalizers.Precompiled(charsmap)
    legacy.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace()])
    legacy.enable_truncation(16)
    legacy.save(str(tmp_path / "tokenizer.json"))
    shutil.copy(reference_saved_dir / "tokenizer_config.json", tmp_path)
    expected = transformers.PegasusTokenizer.from_pretrained(tmp_path)(SAMPLES)["input_ids"]
    assert expected == reference(SAMPLES)["input_ids"]
    assert PegasusTokenizer.from_pretrained(tmp_path)(SAMPLES)["input_ids"] == expected


def test_saving_copies_the_sentencepiece_model(spm_dir, reference, tmp_path):
    PegasusTokenizer.from_pretrained(spm_dir).save_pretrained(tmp_path)
    assert (tmp_path / "spiece.model").read_bytes() == (spm_dir / "spiece.model").read_bytes()
    (tmp_path / "tokenizer.json").unlink()
    assert PegasusTokenizer.from_pretrained(tmp_path)(SAMPLES)["input_ids"] == reference(SAMPLES)["input_ids"]


def test_config_files_set_max_length_and_clean_up(spm_dir, tmp_path):
    shutil.copy(spm_dir / "spiece.model", tmp_path)
    config = {"model_max_length": 64, "clean_up_tokenization_spaces": True, "tokenizer_class": "PegasusTokenizer"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    token_map = {"eos_token": {"content": "</s>"}, "pad_token": "<pad>"}
    (tmp_path / "special_tokens_map.json").write_text(json.dumps(token_map))
    ours = PegasusTokenizer.from_pretrained(tmp_path)
    reference = transformers.PegasusTokenizer.from_pretrained(tmp_path)
    assert ours.model_max_length == reference.model_max_length == 64
    for options in (dict(truncation=True), dict(padding="max_length", truncation=True)):
        assert ours(SAMPLES, **options) == dict(reference(SAMPLES, **options))
    ids = reference("It 's done , isn't it ?").input_ids
    assert ours.decode(ids) == reference.decode(ids) == "It's done, isn't it?</s>"


def test_newline_helpers_follow_the_bigbird_convention(ours, reference):
    assert encode_newlines("First line.\nSecond line. \n\nThird.") == "First line.<n>Second line.<n><n>Third."
    text = "A title\n" + "\n".join(english_paragraphs(3, seed=2))
    assert decode_newlines(encode_newlines(text)) == text
    ids = ours(encode_newlines(text))["input_ids"]
    assert ids == reference(encode_newlines(text))["input_ids"]
    assert ids.count(ours.convert_tokens_to_ids("<n>")) == text.count("\n")
    assert decode_newlines(ours.decode(ids, skip_special_tokens=True)) == text
    assert ours("one\ntwo")["input_ids"] == ours("one two")["input_ids"], "a raw newline is only whitespace"


def test_hub_id_resolves_from_the_cache_when_offline(spm_dir, reference, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "models--acme--pegasus-tokenizer" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    shutil.copy(spm_dir / "spiece.model", snapshot)
    (tmp_path / "models--acme--pegasus-tokenizer" / "refs").mkdir()
    (tmp_path / "models--acme--pegasus-tokenizer" / "refs" / "main").write_text(commit)
    loaded = PegasusTokenizer.from_pretrained("acme/pegasus-tokenizer", cache_dir=tmp_path)
    assert loaded(SAMPLES)["input_ids"] == reference(SAMPLES)["input_ids"]


@pytest.mark.parametrize("offline", [dict(env="1"), dict(env="0", local_files_only=True)], ids=["env", "argument"])
def test_offline_without_cache_says_how_to_fix_it(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("HF_HUB_OFFLINE", offline["env"])
    with pytest.raises(OSError, match=r"offline.*HF_HUB_OFFLINE=0.*local folder"):
        PegasusTokenizer.from_pretrained("acme/not-downloaded", cache_dir=tmp_path,
                                         local_files_only=offline.get("local_files_only"))


def test_missing_or_empty_folder_names_the_folder_and_files(tmp_path):
    missing = tmp_path / "does-not-exist"
    with pytest.raises(FileNotFoundError, match=r"does-not-exist.*tokenizer\.json.*spiece\.model"):
        PegasusTokenizer.from_pretrained(missing)
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path.name}.*tokenizer\.json.*spiece\.model"):
        PegasusTokenizer.from_pretrained(tmp_path)
