"""The summarization pipeline: text preparation, the chunker, length-grouped batching and the Python API."""

from __future__ import annotations

import pytest
import sentencepiece

import bigbird_pegasus
from bigbird_pegasus import PegasusTokenizer, Summarizer
from bigbird_pegasus.batching import length_grouped_batches, padded, run_in_batches
from bigbird_pegasus.chunking import Chunker, Unit, pack_windows, window_paragraphs
from bigbird_pegasus.text import NewlineMode, clean_summary, model_input, paragraphs, split_sentences
from cli_fixtures import MAX_POSITIONS, SUMMARY_TOKENS, one_torch_thread, tiny_checkpoint
from spm_fixtures import english_paragraphs, long_document


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def tokenizer(checkpoint):
    return PegasusTokenizer.from_pretrained(checkpoint)


@pytest.fixture(scope="module")
def summarizer(checkpoint):
    return Summarizer(checkpoint, device="cpu", batch_size=3)


def token_counter(tokenizer):
    return lambda texts: [len(ids) for ids in tokenizer(texts)["input_ids"]]


def all_sentences(text: str) -> list[str]:
    return [sentence for paragraph in paragraphs(text) for sentence in split_sentences(paragraph)]


# ---- text ------------------------------------------------------------------------------------------------


def test_paragraphs_are_blank_line_blocks_with_whitespace_collapsed():
    text = "Title of  the paper\r\n\r\nFirst line\nwrapped\tline.  \n \n\n\fSecond\u00a0paragraph.\n"
    assert paragraphs(text) == ["Title of the paper", "First line wrapped line.", "Second paragraph."]
    assert paragraphs("one paragraph per line\nand another\n  third  ") == [
        "one paragraph per line", "and another", "third"]
    assert paragraphs(" \n\t\n ") == []


def test_sentences_split_after_terminal_punctuation_but_not_abbreviations():
    paragraph = ("Dr. Smith et al. (2020) measured 3.5 kg, see Fig. 2 and e.g. Table 1. It worked! Did it? "
                 "\"Yes,\" said J. Doe. (The end.) 2021 was next.")
    assert split_sentences(paragraph) == [
        "Dr. Smith et al. (2020) measured 3.5 kg, see Fig. 2 and e.g. Table 1.", "It worked!", "Did it?",
        "\"Yes,\" said J. Doe.", "(The end.)", "2021 was next."]
    assert split_sentences("no final stop") == ["no final stop"]
    assert split_sentences("2. Methods We used 12 probes. 4.1. Data Prices rose in 2021. Then fell.") == [
        "2. Methods We used 12 probes.", "4.1. Data Prices rose in 2021.", "Then fell."]


def test_model_input_and_summary_follow_the_newline_convention():
    assert model_input(["First paragraph.", "Second one."], NewlineMode.TOKEN) == "First paragraph.<n>Second one."
    assert model_input(["First paragraph.", "Second one."], NewlineMode.SPACE) == "First paragraph. Second one."
    assert clean_summary("  We  study it. <n>It works.<n><n> ", NewlineMode.TOKEN) == "We study it.\nIt works."
    assert clean_summary("We study it.<n>It works.", NewlineMode.SPACE) == "We study it.<n>It works."


def test_newline_mode_auto_follows_the_vocabulary(tokenizer, tmp_path):
    assert NewlineMode.AUTO.resolve(tokenizer) is NewlineMode.TOKEN
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(english_paragraphs(60)), model_prefix=str(tmp_path / "spiece"), vocab_size=300,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    without_newline_piece = PegasusTokenizer.from_pretrained(tmp_path)
    assert NewlineMode.AUTO.resolve(without_newline_piece) is NewlineMode.SPACE
    assert NewlineMode.TOKEN.resolve(without_newline_piece) is NewlineMode.TOKEN


# ---- chunking --------------------------------------------------------------------------------------------


def test_pack_windows_respects_budget_overlap_and_paragraphs():
    costs = [2] * 20
    assert pack_windows(costs, [0] * 20, budget=10, overlap=0) == [range(i, i + 5) for i in range(0, 20, 5)]
    overlapped = pack_windows(costs, [0] * 20, budget=10, overlap=4)
    assert overlapped[:3] == [range(0, 5), range(3, 8), range(6, 11)] and overlapped[-1].stop == 20
    # A paragraph starting at unit 4 keeps the first window 8/10 full: it ends there.
    assert pack_windows(costs, [0] * 4 + [1] * 16, budget=10, overlap=0)[0] == range(0, 4)
    # One starting at unit 2 would leave it under half full: it ends at the budget instead.
    assert pack_windows(costs, [0] * 2 + [1] * 18, budget=10, overlap=0)[0] == range(0, 5)


def test_pack_windows_always_moves_forward():
    assert pack_windows([50, 1, 1], [0, 0, 0], budget=10, overlap=5) == [range(0, 1), range(1, 3)]
    assert pack_windows([6, 6, 6], [0, 0, 0], budget=12, overlap=100) == [range(0, 2), range(1, 3)]
    assert pack_windows([], [], budget=10, overlap=0) == []


def test_window_paragraphs_regroups_sentences_by_paragraph():
    units = [Unit("A.", 0), Unit("B.", 0), Unit("C.", 1), Unit("D.", 3)]
    assert window_paragraphs(units) == ["A. B.", "C.", "D."]


@pytest.mark.parametrize("mode", [NewlineMode.TOKEN, NewlineMode.SPACE])
def test_chunker_windows_fit_overlap_and_cover_every_sentence(tokenizer, mode):
    document = long_document(pages=5, seed=2)
    count = token_counter(tokenizer)
    limit, overlap = 200, 40
    windows = Chunker(count, limit, overlap, mode).split(paragraphs(document))
    assert count([model_input(paragraphs(document), mode)])[0] > 5 * limit

    texts = [model_input(window, mode) for window in windows]
    assert max(count(texts)) <= limit
    sentences = all_sentences(document)
    spans = sentence_spans(sentences, [[s for paragraph in window for s in split_sentences(paragraph)]
                                       for window in windows])
    assert spans[0].start == 0 and spans[-1].stop == len(sentences)
    for before, after in zip(spans, spans[1:]):
        assert before.start < after.start <= before.stop, "windows leave a gap or go backwards"
        shared = sentences[after.start:before.stop]
        assert sum(count([model_input([s], mode) for s in shared])) <= overlap
        if count([model_input([sentences[before.stop - 1]], mode)])[0] <= overlap:
            assert shared, "consecutive windows do not overlap"
    normalized = "\n".join(paragraphs(document))
    assert all(paragraph in normalized for window in windows for paragraph in window), "a paragraph was altered"


def sentence_spans(sentences: list[str], windows: list[list[str]]) -> list[range]:
    """Where each window's sentences lie in the document, as consecutive whole sentences (the first such place
    after the previous window's start); fails if a window is not a run of whole sentences."""
    spans, start = [], 0
    for window in windows:
        while sentences[start:start + len(window)] != window:
            start += 1
            assert start < len(sentences), f"window is not a run of whole sentences: {window[:2]}..."
        spans.append(range(start, start + len(window)))
        start += 1
    return spans


def test_chunker_ends_windows_at_paragraph_breaks(tokenizer):
    # paragraphs of three sentences, well under half a window: a window can always end at a paragraph break
    paragraph_list = [" ".join(split_sentences(p)[:3]) for p in english_paragraphs(40, seed=4)]
    count = token_counter(tokenizer)
    assert max(count(paragraph_list)) < 150
    windows = Chunker(count, 300, 0, NewlineMode.TOKEN).split(paragraph_list)
    assert len(windows) > 5
    assert [paragraph for window in windows for paragraph in window] == paragraph_list


def test_chunker_cuts_a_sentence_longer_than_a_window_between_words(tokenizer):
    words = " ".join(f"word{i % 97} and" for i in range(1500))
    count = token_counter(tokenizer)
    windows = Chunker(count, 100, 0, NewlineMode.TOKEN).split([words])
    assert max(count([model_input(window, NewlineMode.TOKEN) for window in windows])) <= 100
    assert " ".join(paragraph for window in windows for paragraph in window) == words


# ---- batching --------------------------------------------------------------------------------------------


def test_length_grouped_batches_sort_longest_first_and_respect_the_size():
    lengths = [5, 30, 7, 30, 1, 12, 9]
    batches = length_grouped_batches(lengths, batch_size=3)
    assert batches == [[1, 3, 5], [6, 2, 0], [4]]
    with pytest.raises(ValueError, match="batch_size"):
        length_grouped_batches(lengths, 0)


def test_run_in_batches_restores_input_order():
    rows = [[1] * n for n in (3, 9, 1, 9, 4, 6, 2)]
    seen = []

    def run_batch(indices):
        seen.append([len(rows[i]) for i in indices])
        return [f"row {i}" for i in indices]

    assert run_in_batches(rows, 2, run_batch) == [f"row {i}" for i in range(len(rows))]
    assert seen == [[9, 9], [6, 4], [3, 2], [1]]


def test_padded_right_pads_with_a_mask():
    ids, mask = padded([[5, 6, 1], [7, 1]], pad_id=0)
    assert ids.tolist() == [[5, 6, 1], [7, 1, 0]] and mask.tolist() == [[1, 1, 1], [1, 1, 0]]


# ---- the Python API --------------------------------------------------------------------------------------


def test_truncate_reports_the_tokens_cut(summarizer, tokenizer):
    texts = [long_document(pages=3, seed=1), "A short note. It fits easily.", long_document(pages=1, seed=3)]
    results = summarizer.summarize(texts, ids=["long", "short", "medium"])
    assert [r.id for r in results] == ["long", "short", "medium"]
    for text, result in zip(texts, results):
        full = len(tokenizer(model_input(paragraphs(text), NewlineMode.TOKEN))["input_ids"])
        assert result.input_tokens == full
        assert result.truncated == max(full - MAX_POSITIONS, 0)
        assert result.chunks == 1 and result.seconds >= 0
        assert len(tokenizer(result.summary, add_special_tokens=False)["input_ids"]) <= SUMMARY_TOKENS + 1
    assert results[0].truncated > 2 * MAX_POSITIONS and results[1].truncated == 0


def test_results_do_not_depend_on_order_or_batch_size(checkpoint, summarizer):
    texts = [long_document(pages=2, seed=5), "Tiny text here.", long_document(pages=1, seed=6), "Two. Sentences."]
    forward = summarizer(texts)
    assert summarizer(texts[::-1]) == forward[::-1]
    one_at_a_time = Summarizer(checkpoint, device="cpu", batch_size=1)
    assert [one_at_a_time(text) for text in texts] == forward
    assert len(set(forward)) == len(texts)


def test_chunk_reads_everything_and_recurses_until_the_summaries_fit(checkpoint, tokenizer):
    model = bigbird_pegasus.BigBirdPegasusForConditionalGeneration.from_pretrained(checkpoint)
    inputs = []
    generate = model.generate

    def recording_generate(input_ids, **options):
        inputs.extend(row[mask.bool()].tolist() for row, mask in zip(input_ids, options["attention_mask"]))
        return generate(input_ids, **options)

    model.generate = recording_generate
    summarizer = Summarizer(model, tokenizer, long_input="chunk", batch_size=4, max_length=60)
    document = long_document(pages=4, seed=7)
    [result] = summarizer.summarize([document])

    assert result.input_tokens > 4 * MAX_POSITIONS and result.truncated == 0
    assert result.chunks > 5 and result.summary
    assert max(len(ids) for ids in inputs) <= MAX_POSITIONS
    # first level: the windows; then at least one level of joined partial summaries, then the final summary
    assert len(inputs) > result.chunks + 1
    sentences = all_sentences(document)
    read = " ".join(tokenizer.decode(ids[:-1]) for ids in inputs)
    assert sentences[0] in read and sentences[len(sentences) // 2] in read and sentences[-1] in read


def test_a_document_that_fits_is_not_chunked(checkpoint, summarizer):
    chunking = Summarizer(checkpoint, device="cpu", batch_size=3, long_input="chunk")
    text = "A short note about rivers. It fits in one window."
    [result] = chunking.summarize([text])
    assert result.chunks == 1 and result.truncated == 0
    assert result.summary == summarizer(text)


def test_summarize_function_and_generation_options(checkpoint, summarizer):
    texts = ["The council approved the budget. Critics said the figures were incomplete.", long_document(1)]
    assert bigbird_pegasus.summarize(texts, model=checkpoint, device="cpu") == summarizer(texts)
    assert bigbird_pegasus.summarize(texts[0], model=checkpoint, device="cpu") == summarizer(texts)[0]
    short = bigbird_pegasus.summarize(texts, model=checkpoint, device="cpu", max_length=4)
    assert all(len(s.split()) <= 3 for s in short) and short != summarizer(texts)


def test_api_rejects_bad_arguments(checkpoint, summarizer):
    with pytest.raises(ValueError, match="'empty' is empty"):
        summarizer.summarize(["Some text.", " \n\t "], ids=["ok", "empty"])
    with pytest.raises(ValueError, match="2 texts but 1 ids"):
        summarizer.summarize(["One.", "Two."], ids=["only one"])
    with pytest.raises(TypeError, match="num_beam"):
        Summarizer(checkpoint, num_beam=4)
    with pytest.raises(ValueError, match="chunk_overlap"):
        Summarizer(checkpoint, chunk_overlap=MAX_POSITIONS)
    with pytest.raises(ValueError, match="cross_attention_cache='keys': must be one of"):
        Summarizer(checkpoint, cross_attention_cache="keys")
    with pytest.raises(ValueError, match="unknown device 'nonsense'"):
        Summarizer(checkpoint, device="nonsense")
