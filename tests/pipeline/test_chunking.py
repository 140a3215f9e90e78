"""Windows of whole sentences for documents longer than the model reads."""

from __future__ import annotations

import pytest

from bigbird_pegasus.pipeline.chunking import Chunker, Unit, pack_windows, window_paragraphs
from bigbird_pegasus.text.newlines import NewlineMode, model_input
from bigbird_pegasus.text.sentences import paragraphs, split_sentences
from helpers.spm import english_paragraphs, long_document


def token_counter(tokenizer):
    return lambda texts: [len(ids) for ids in tokenizer(texts)["input_ids"]]


def all_sentences(text: str) -> list[str]:
    return [sentence for paragraph in paragraphs(text) for sentence in split_sentences(paragraph)]


def test_pack_windows_respects_budget_overlap_and_paragraphs():
    costs = [2] * 20
    windows = pack_windows(costs, paragraph_of=[0] * 20, budget=10, overlap=0)
    assert windows == [range(i, i + 5) for i in range(0, 20, 5)]
    overlapped = pack_windows(costs, paragraph_of=[0] * 20, budget=10, overlap=4)
    assert overlapped[:3] == [range(0, 5), range(3, 8), range(6, 11)] and overlapped[-1].stop == 20
    # A paragraph starting at unit 4 keeps the first window 8/10 full: it ends there.
    assert pack_windows(costs, paragraph_of=[0] * 4 + [1] * 16, budget=10, overlap=0)[0] == range(0, 4)
    # One starting at unit 2 would leave it under half full: it ends at the budget instead.
    assert pack_windows(costs, paragraph_of=[0] * 2 + [1] * 18, budget=10, overlap=0)[0] == range(0, 5)


def test_pack_windows_always_moves_forward():
    assert pack_windows([50, 1, 1], paragraph_of=[0, 0, 0], budget=10, overlap=5) == [range(0, 1), range(1, 3)]
    assert pack_windows([6, 6, 6], paragraph_of=[0, 0, 0], budget=12, overlap=100) == [range(0, 2), range(1, 3)]
    assert pack_windows([], paragraph_of=[], budget=10, overlap=0) == []


def test_window_paragraphs_regroups_sentences_by_paragraph():
    units = [Unit("A.", 0), Unit("B.", 0), Unit("C.", 1), Unit("D.", 3)]
    assert window_paragraphs(units) == ["A. B.", "C.", "D."]


@pytest.mark.parametrize("mode", [NewlineMode.TOKEN, NewlineMode.SPACE])
def test_chunker_windows_fit_overlap_and_cover_every_sentence(tiny_tokenizer, mode):
    document = long_document(pages=5, seed=2)
    count = token_counter(tiny_tokenizer)
    limit, overlap = 200, 40
    windows = Chunker(count, limit, overlap, mode).split(paragraphs(document))
    assert count([model_input(paragraphs(document), mode=mode)])[0] > 5 * limit

    texts = [model_input(window, mode=mode) for window in windows]
    assert max(count(texts)) <= limit
    sentences = all_sentences(document)
    spans = sentence_spans(sentences, [[s for paragraph in window for s in split_sentences(paragraph)]
                                       for window in windows])
    assert spans[0].start == 0 and spans[-1].stop == len(sentences)
    for before, after in zip(spans, spans[1:]):
        assert before.start < after.start <= before.stop, "windows leave a gap or go backwards"
        shared = sentences[after.start:before.stop]
        assert sum(count([model_input([s], mode=mode) for s in shared])) <= overlap
        if count([model_input([sentences[before.stop - 1]], mode=mode)])[0] <= overlap:
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


def test_chunker_ends_windows_at_paragraph_breaks(tiny_tokenizer):
    # paragraphs of three sentences, well under half a window: a window can always end at a paragraph break
    paragraph_list = [" ".join(split_sentences(p)[:3]) for p in english_paragraphs(40, seed=4)]
    count = token_counter(tiny_tokenizer)
    assert max(count(paragraph_list)) < 150
    windows = Chunker(count, 300, 0, NewlineMode.TOKEN).split(paragraph_list)
    assert len(windows) > 5
    assert [paragraph for window in windows for paragraph in window] == paragraph_list


def test_chunker_cuts_a_sentence_longer_than_a_window_between_words(tiny_tokenizer):
    words = " ".join(f"word{i % 97} and" for i in range(1500))
    count = token_counter(tiny_tokenizer)
    windows = Chunker(count, 100, 0, NewlineMode.TOKEN).split([words])
    assert max(count([model_input(window, mode=NewlineMode.TOKEN) for window in windows])) <= 100
    assert " ".join(paragraph for window in windows for paragraph in window) == words
