"""Paragraphs and sentences of a document's text."""

from __future__ import annotations

from bigbird_pegasus.text.sentences import paragraphs, split_sentences


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
