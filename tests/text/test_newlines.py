"""The `<n>` newline convention: model inputs, summaries, and the automatic mode."""

from __future__ import annotations

import sentencepiece

from bigbird_pegasus import PegasusTokenizer
from bigbird_pegasus.text.newlines import NewlineMode, clean_summary, model_input
from helpers.spm import english_paragraphs


def test_model_input_and_summary_follow_the_newline_convention():
    assert model_input(["First paragraph.", "Second one."], mode=NewlineMode.TOKEN) == "First paragraph.<n>Second one."
    assert model_input(["First paragraph.", "Second one."], mode=NewlineMode.SPACE) == "First paragraph. Second one."
    assert clean_summary("  We  study it. <n>It works.<n><n> ", mode=NewlineMode.TOKEN) == "We study it.\nIt works."
    assert clean_summary("We study it.<n>It works.", mode=NewlineMode.SPACE) == "We study it.<n>It works."


def test_newline_mode_auto_follows_the_vocabulary(tiny_tokenizer, tmp_path):
    assert NewlineMode.AUTO.resolve(tiny_tokenizer) is NewlineMode.TOKEN
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(english_paragraphs(60)), model_prefix=str(tmp_path / "spiece"), vocab_size=300,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    without_newline_piece = PegasusTokenizer.from_pretrained(tmp_path)
    assert NewlineMode.AUTO.resolve(without_newline_piece) is NewlineMode.SPACE
    assert NewlineMode.TOKEN.resolve(without_newline_piece) is NewlineMode.TOKEN
