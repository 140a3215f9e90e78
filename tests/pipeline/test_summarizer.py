"""The Summarizer and summarize(): truncation, chunking, batching, int8 quantization and bad arguments."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import bigbird_pegasus
from bigbird_pegasus import BigBirdPegasusForConditionalGeneration, Summarizer
from bigbird_pegasus.modeling.linear import Linear
from bigbird_pegasus.pipeline.loading import check_quantization
from bigbird_pegasus.text.newlines import NewlineMode, model_input
from bigbird_pegasus.text.sentences import paragraphs, split_sentences
from helpers.cli import MAX_POSITIONS, SUMMARY_TOKENS
from helpers.spm import english_paragraphs, long_document

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def summarizer(tiny_checkpoint):
    return Summarizer(tiny_checkpoint, device="cpu", batch_size=3)


def all_sentences(text: str) -> list[str]:
    return [sentence for paragraph in paragraphs(text) for sentence in split_sentences(paragraph)]


def test_truncate_reports_the_tokens_cut(summarizer, tiny_tokenizer):
    texts = [long_document(pages=3, seed=1), "A short note. It fits easily.", long_document(pages=1, seed=3)]
    results = summarizer.summarize(texts, ids=["long", "short", "medium"])
    assert [r.id for r in results] == ["long", "short", "medium"]
    for text, result in zip(texts, results):
        full = len(tiny_tokenizer(model_input(paragraphs(text), mode=NewlineMode.TOKEN))["input_ids"])
        assert result.input_tokens == full
        assert result.truncated == max(full - MAX_POSITIONS, 0)
        assert result.chunks == 1 and result.seconds >= 0
        assert len(tiny_tokenizer(result.summary, add_special_tokens=False)["input_ids"]) <= SUMMARY_TOKENS + 1
    assert results[0].truncated > 2 * MAX_POSITIONS and results[1].truncated == 0


def test_results_do_not_depend_on_order_or_batch_size(tiny_checkpoint, tiny_tokenizer):
    """Documents of mixed lengths (block-sparse ones of several lengths, and one short enough for full attention):
    each summary is the same alone, in batches of 4 or 8, and in any order, because each document is encoded at
    its own length (in a padded batch, BigBird's layout of a short document would follow the longest one)."""
    paragraphs_ = english_paragraphs(12, seed=21)
    texts = [long_document(pages=2, seed=5), paragraphs_[0], " ".join(paragraphs_[1:3]), "Tiny text here.",
             long_document(pages=1, seed=6), " ".join(paragraphs_[3:7]), paragraphs_[7], "Two. Sentences."]
    lengths = [len(ids) for ids in tiny_tokenizer(texts)["input_ids"]]
    assert max(lengths) > MAX_POSITIONS and min(lengths) < 112 < sorted(lengths)[2] < 300  # sparse from 113
    alone = [Summarizer(tiny_checkpoint, device="cpu", batch_size=1)(text) for text in texts]
    for batch_size in (4, 8):
        summarizer = Summarizer(tiny_checkpoint, device="cpu", batch_size=batch_size)
        assert summarizer(texts) == alone
        assert summarizer(texts[::-1]) == alone[::-1]
    assert len(set(alone)) == len(texts)


def test_chunk_reads_everything_and_recurses_until_the_summaries_fit(tiny_checkpoint, tiny_tokenizer):
    model = bigbird_pegasus.BigBirdPegasusForConditionalGeneration.from_pretrained(tiny_checkpoint)
    inputs = []
    encoder = model.get_encoder()
    encode = encoder.forward

    def recording_encode(input_ids, **options):
        inputs.extend(input_ids.tolist())
        return encode(input_ids, **options)

    encoder.forward = recording_encode
    summarizer = Summarizer(model, tiny_tokenizer, long_input="chunk", batch_size=4, max_length=60)
    document = long_document(pages=4, seed=7)
    [result] = summarizer.summarize([document])

    assert result.input_tokens > 4 * MAX_POSITIONS and result.truncated == 0
    assert result.chunks > 5 and result.summary
    assert max(len(ids) for ids in inputs) <= MAX_POSITIONS
    # first level: the windows; then at least one level of joined partial summaries, then the final summary
    assert len(inputs) > result.chunks + 1
    sentences = all_sentences(document)
    read = " ".join(tiny_tokenizer.decode(ids[:-1]) for ids in inputs)
    assert sentences[0] in read and sentences[len(sentences) // 2] in read and sentences[-1] in read


def test_a_document_that_fits_is_not_chunked(tiny_checkpoint, summarizer):
    chunking = Summarizer(tiny_checkpoint, device="cpu", batch_size=3, long_input="chunk")
    text = "A short note about rivers. It fits in one window."
    [result] = chunking.summarize([text])
    assert result.chunks == 1 and result.truncated == 0
    assert result.summary == summarizer(text)


def test_summarize_function_and_generation_options(tiny_checkpoint, summarizer):
    texts = ["The council approved the budget. Critics said the figures were incomplete.", long_document(1)]
    assert bigbird_pegasus.summarize(texts, model=tiny_checkpoint, device="cpu") == summarizer(texts)
    assert bigbird_pegasus.summarize(texts[0], model=tiny_checkpoint, device="cpu") == summarizer(texts)[0]
    short = bigbird_pegasus.summarize(texts, model=tiny_checkpoint, device="cpu", max_length=4)
    assert all(len(s.split()) <= 3 for s in short) and short != summarizer(texts)


def test_api_rejects_bad_arguments(tiny_checkpoint, summarizer):
    with pytest.raises(ValueError, match="'empty' is empty"):
        summarizer.summarize(["Some text.", " \n\t "], ids=["ok", "empty"])
    with pytest.raises(ValueError, match="2 texts but 1 ids"):
        summarizer.summarize(["One.", "Two."], ids=["only one"])
    with pytest.raises(TypeError, match="num_beam"):
        Summarizer(tiny_checkpoint, num_beam=4)
    with pytest.raises(ValueError, match="chunk_overlap"):
        Summarizer(tiny_checkpoint, chunk_overlap=MAX_POSITIONS)
    with pytest.raises(ValueError, match="cross_attention_cache='keys': must be one of"):
        Summarizer(tiny_checkpoint, cross_attention_cache="keys")
    with pytest.raises(ValueError, match="unknown device 'nonsense'"):
        Summarizer(tiny_checkpoint, device="nonsense")
    with pytest.raises(ValueError, match="a summary of 600 tokens .* longer than the model's 512 positions"):
        Summarizer(tiny_checkpoint, max_length=600)
    with pytest.raises(ValueError, match="num_beams=0: must be a positive integer"):
        Summarizer(tiny_checkpoint, num_beams=0)


def int8_layers(model) -> bool:
    """Whether every linear layer of `model` was replaced by an int8 one (none is float any more)."""
    return not any(type(module) in (nn.Linear, Linear) for module in model.modules())


def test_quantize_int8_loads_fp32_converts_and_summarizes(tiny_checkpoint, tmp_path, summarizer):
    """A checkpoint saved in bf16 is read in fp32 and converted; the int8 summaries are whole summaries."""
    BigBirdPegasusForConditionalGeneration.from_pretrained(tiny_checkpoint, dtype=torch.bfloat16).save_pretrained(
        tmp_path / "bf16")
    quantized = Summarizer(tmp_path / "bf16", tokenizer=tiny_checkpoint, device="cpu", quantize="int8")
    assert quantized.quantize == "int8" and int8_layers(quantized.model)
    assert all(p.dtype == torch.float32 for p in quantized.model.parameters())
    texts = ["The council approved the budget. Critics said the figures were incomplete.", long_document(1)]
    summaries = quantized(texts)
    assert len(summaries) == 2 and all(summary.strip() for summary in summaries)
    assert bigbird_pegasus.summarize(texts, model=tmp_path / "bf16", tokenizer=tiny_checkpoint, device="cpu",
                                     quantize="int8") == summaries
    assert summarizer.quantize is None and not int8_layers(summarizer.model)


def test_quantize_converts_a_model_passed_in_in_place(tiny_checkpoint, tiny_tokenizer):
    model = BigBirdPegasusForConditionalGeneration.from_pretrained(tiny_checkpoint)
    assert Summarizer(model, tiny_tokenizer, quantize="int8").model is model and int8_layers(model)


def test_quantize_rejects_what_it_cannot_start_from_before_loading(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="unknown quantization 'int4'; use one of int8, int8-bf16-encoder"):
        Summarizer(tmp_path / "no_such_model", quantize="int4")  # refused before the (missing) weights are read
    with pytest.raises(ValueError, match="quantization 'int8' starts from fp32 weights, not bfloat16: leave the "
                                         "dtype unset or use float32"):
        Summarizer(tiny_checkpoint, device="cpu", dtype="bfloat16", quantize="int8")
    with pytest.raises(ValueError, match="quantization 'int8' runs on the CPU, not on meta: use device 'cpu'"):
        check_quantization("int8", dtype=None, device=torch.device("meta"))


@pytest.mark.parametrize("long_input", ["truncate", "chunk"])
def test_each_summary_is_reported_once_as_soon_as_its_last_batch_is_done(tiny_checkpoint, long_input):
    """`finished` gets each document's Summary when the batch that ends it is done, in the order they end (the
    longest first, as batches are grouped by length); chunked documents end at their last level."""
    summarizer = Summarizer(tiny_checkpoint, device="cpu", batch_size=2, long_input=long_input, max_length=30)
    texts = ["A short note.", long_document(pages=2, seed=8), english_paragraphs(1, seed=9)[0]]
    events = []
    generate = summarizer.model.generate

    def counting_generate(*args, **options):
        events.append("batch")
        return generate(*args, **options)

    summarizer.model.generate = counting_generate
    results = summarizer.summarize(texts, ids=["short", "long", "medium"], progress=lambda n: events.append(n),
                                   finished=events.append)
    finished = [event for event in events if not isinstance(event, (str, int))]
    assert sorted(summary.id for summary in finished) == ["long", "medium", "short"]
    assert {summary.id: summary for summary in finished} == {result.id: result for result in results}
    assert sum(event for event in events if isinstance(event, int)) == 3
    assert events[-1] == 1 and events[-2] is finished[-1]  # each report follows the batch that ended it
    if long_input == "truncate":
        assert events == ["batch", finished[0], finished[1], 2, "batch", finished[2], 1]
