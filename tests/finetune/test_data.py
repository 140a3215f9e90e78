"""JSONL reading (errors name the line), skipping empty examples, bucketed batches, shares, token batches."""

from __future__ import annotations

import pytest

from bigbird_pegasus import PegasusTokenizer
from bigbird_pegasus.finetune.data import (
    IGNORED_LABEL, BatchEncoder, Example, epoch_steps, micro_batches, process_share, read_jsonl,
)
from bigbird_pegasus.finetune.errors import FinetuneError
from helpers.finetune import WORDS, word_tokenizer_files, write_jsonl


def test_reads_usable_lines_skips_and_counts_empty_ones(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [
        {"document": "first document", "summary": "first"},
        "",
        {"document": "   ", "summary": "no document"},
        {"document": "no summary", "summary": ""},
        {"document": "naïve café\nsecond line", "summary": "second", "extra": 1},
    ])
    data = read_jsonl(str(path), "document", "summary")
    assert len(data) == 2
    assert data.line_numbers == [1, 5]
    assert data.skipped == {"empty_document": 1, "empty_summary": 1}
    assert data.lengths == [len("first document"), len("naïve café\nsecond line")]
    assert data.read([1, 0]) == [Example("naïve café\nsecond line", "second"), Example("first document", "first")]


@pytest.mark.parametrize("line, message", [
    ('{"document": "a", "summary": "b"', "train.jsonl:2: not valid JSON"),
    ('["a", "b"]', "train.jsonl:2: expected a JSON object, found list"),
    ('{"text": "a", "summary": "b"}', "train.jsonl:2: no field 'document' (the line has 'text', 'summary'); "
                                      "choose the field with --text-field"),
    ('{"document": "a", "summary": ["b"]}', "train.jsonl:2: field 'summary' is list, expected a string"),
])
def test_malformed_line_is_named(tmp_path, line, message):
    path = write_jsonl(tmp_path / "train.jsonl", [{"document": "a", "summary": "b"}, line])
    with pytest.raises(FinetuneError) as caught:
        read_jsonl(str(path), "document", "summary")
    assert str(caught.value).startswith(f"{tmp_path}/{message}")


def test_undecodable_bytes_are_named(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"document": "a", "summary": "b"}\n{"document": "\xff", "summary": "b"}\n')
    with pytest.raises(FinetuneError, match=r"train.jsonl:2: not UTF-8 text"):
        read_jsonl(str(path), "document", "summary")


def test_custom_fields_and_no_usable_example(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"article": "x", "abstract": "y"}])
    assert read_jsonl(str(path), "article", "abstract").read([0]) == [Example("x", "y")]
    empty = write_jsonl(tmp_path / "e.jsonl", [{"document": "", "summary": "y"}])
    with pytest.raises(FinetuneError, match="e.jsonl: no usable examples .1 skipped for an empty document"):
        read_jsonl(str(empty), "document", "summary")


def test_epoch_steps_cover_every_example_once_in_length_buckets():
    lengths = [(i * 7919) % 1000 for i in range(1000)]
    steps = epoch_steps(lengths, step_size=8, world_size=2, seed=3, epoch=0)
    assert sorted(i for step in steps for i in step) == list(range(1000))
    assert all(len(step) == 8 for step in steps)
    # within a step, longest first; across the epoch, steps are far more uniform than random ones
    assert all([lengths[i] for i in step] == sorted((lengths[i] for i in step), reverse=True) for step in steps)
    spread = sum(lengths[step[0]] - lengths[step[-1]] for step in steps) / len(steps)
    assert spread < 100
    assert steps == epoch_steps(lengths, 8, 2, seed=3, epoch=0)
    assert steps != epoch_steps(lengths, 8, 2, seed=3, epoch=1)
    assert steps != epoch_steps(lengths, 8, 2, seed=4, epoch=0)


def test_last_step_is_cut_to_a_multiple_of_the_processes():
    assert sorted(map(len, epoch_steps([5] * 11, step_size=4, world_size=2, seed=0, epoch=0))) == [2, 4, 4]
    assert sorted(map(len, epoch_steps([5] * 9, step_size=4, world_size=2, seed=0, epoch=0))) == [4, 4]
    assert sorted(map(len, epoch_steps([5] * 9, step_size=4, world_size=1, seed=0, epoch=0))) == [1, 4, 4]


def test_micro_batches_and_process_shares_split_contiguously():
    assert micro_batches([9, 8, 7, 6, 5], 2) == [[9, 8], [7, 6], [5]]
    batch = list(range(7))
    assert [process_share(batch, rank, 3) for rank in range(3)] == [[0, 1], [2, 3], [4, 5, 6]]
    assert process_share(batch, 0, 1) == batch


def test_batch_encoder_truncates_pads_and_ignores_label_padding(tmp_path):
    word_tokenizer_files(tmp_path, WORDS)
    tokenizer = PegasusTokenizer.from_pretrained(tmp_path)
    encode = BatchEncoder(tokenizer, max_source_length=4, max_target_length=3)
    batch = encode([Example("w1 w2 w3 w4 w5", "w6"), Example("w7", "w8 w9 w10 w11")])
    eos = tokenizer.eos_token_id
    first, seventh = tokenizer.convert_tokens_to_ids(["\u2581w1", "\u2581w7"])
    assert batch.input_ids.tolist() == [[first, first + 1, first + 2, eos], [seventh, eos, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch.labels[0].tolist()[1:] == [eos, IGNORED_LABEL]
    assert batch.labels[1].tolist()[2] == eos
    assert (batch.source_tokens, batch.target_tokens) == (6, 5)
    assert not encode.newline_piece
