"""The pieces of a corpus run: shards and shares, the output and part files (torn lines, merging in input order),
and what a plan leaves to do. The runs themselves, killed and resumed, sharded and under torchrun:
tests/cli/test_corpus.py."""

from __future__ import annotations

import json

import pytest

from bigbird_pegasus.errors import UserError
from bigbird_pegasus.pipeline.corpus import plan_corpus, summarize_corpus
from bigbird_pegasus.pipeline.run_files import Appender, merge, read_records
from bigbird_pegasus.pipeline.sharing import Processes, Shard
from bigbird_pegasus.pipeline.summarizer import Summarizer, Summary
from bigbird_pegasus.text.documents import Document


def record(identifier, summary: str = "s") -> str:
    return json.dumps({"id": identifier, "summary": summary}) + "\n"


def documents(*ids) -> list[Document]:
    return [Document(identifier, lambda identifier=identifier: f"Document {identifier} is here.") for identifier in ids]


@pytest.mark.parametrize("text, shard", [("0/1", Shard(0, 1)), ("2/3", Shard(2, 3)), (" 0/4 ", Shard(0, 4))])
def test_a_shard_is_parsed_from_k_of_n(text, shard):
    assert Shard.parse(text) == shard


@pytest.mark.parametrize("text, message", [("3/3", "shard 3 of 3 does not exist"), ("1/0", "does not exist"),
                                           ("1-3", "expected K/N"), ("-1/3", "expected K/N")])
def test_a_bad_shard_says_what_is_expected(text, message):
    with pytest.raises(ValueError, match=message):
        Shard.parse(text)


def test_shards_and_ranks_take_every_document_once():
    shards = [list(Shard(k, 3).positions(10)) for k in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    ranks = [Processes(rank, 2).share(shards[0]) for rank in range(2)]
    assert ranks == [[0, 6], [3, 9]]


def test_a_torn_last_line_is_left_out_and_cut_before_appending(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text(record("a") + record(7) + '{"id": "b", "summ')
    assert [r.key for r in read_records(str(path))] == ['"a"', "7"]
    with Appender(str(path)) as appender:
        appender.write(Summary("b", "new", 10, 0, 1, 0.5))
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a", 7, "b"]


def test_a_complete_line_that_is_not_a_summary_is_named(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text(record("a") + '["not", "an", "object"]\n')
    with pytest.raises(UserError, match=r"out.jsonl:2: not a summary"):
        read_records(str(path))


def test_merge_writes_each_summary_once_in_input_order_and_removes_the_parts(tmp_path):
    output = tmp_path / "out.jsonl"
    output.write_text(record("c", "from the output"))
    (tmp_path / "out.jsonl.part-0-of-2").write_text(record("b") + record("c", "again"))
    (tmp_path / "out.jsonl.part-1-of-3").write_text(record("a") + '{"id": "d"')
    assert merge(str(output), {'"a"': 0, '"b"': 1, '"c"': 2, '"d"': 3}) == 3
    assert output.read_text() == record("a") + record("b") + record("c", "from the output")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.jsonl"]


def test_a_plan_leaves_out_what_the_output_holds_and_refuses_strangers(tmp_path):
    output = tmp_path / "out.jsonl"
    (tmp_path / "out.jsonl.part-1-of-2").write_text(record("b") + record("d"))
    plan = plan_corpus(documents("a", "b", "c", "d", "e"), output=str(output), resume=True)
    assert plan.todo == [0, 2, 4] and plan.already_done == 2
    shard = plan_corpus(documents("a", "b", "c", "d", "e"), output=str(output), resume=True, shard=Shard(1, 2))
    assert shard.todo == [] and shard.order == {'"b"': 1, '"d"': 3}
    with pytest.raises(UserError, match=r"not among the documents of shard 0/2 \(e.g. id \"b\"\)"):
        plan_corpus(documents("a", "b", "c", "d", "e"), output=str(output), resume=True, shard=Shard(0, 2))
    with pytest.raises(UserError, match="already exists and is not empty: add --resume"):
        plan_corpus(documents("a", "b"), output=str(output))
    fresh = plan_corpus(documents("a", "b"), output=str(output), overwrite=True)
    assert fresh.todo == [0, 1] and not list(tmp_path.iterdir())


def test_two_documents_with_one_id_are_refused(tmp_path):
    with pytest.raises(UserError, match=r"two documents have the id \"a\""):
        plan_corpus(documents("a", "b", "a"), output=str(tmp_path / "out.jsonl"))


def test_a_run_appends_as_it_goes_and_ends_in_input_order(tmp_path, tiny_checkpoint, one_torch_thread):
    output = tmp_path / "out.jsonl"
    summarizer = Summarizer(tiny_checkpoint, device="cpu", batch_size=2)
    seen_during_the_run = []
    generate = summarizer.model.generate

    def watching_generate(*args, **options):
        seen_during_the_run.append(output.read_text().count("\n"))
        return generate(*args, **options)

    summarizer.model.generate = watching_generate
    texts = ["A short one.", "A much longer document, " * 20, "Middle sized text, " * 8]
    corpus = [Document(name, lambda text=text: text) for name, text in zip("xyz", texts)]
    run = summarize_corpus(plan_corpus(corpus, output=str(output)), summarizer, report=print)
    assert seen_during_the_run == [0, 2]  # the first batch's two summaries were on disk before the second batch
    assert (run.summarized, run.skipped, run.written) == (3, 0, 3)
    assert [json.loads(line)["id"] for line in output.read_text().splitlines()] == ["x", "y", "z"]
    assert [json.loads(line)["summary"] for line in output.read_text().splitlines()] == summarizer(texts)
