"""`python -m bigbird_pegasus summarize` on a tiny checkpoint, for every input form and every error.

Every command line of RUNS runs once in a fresh process, several at a time (each spends seconds importing torch),
in a folder that holds the inputs and the checkpoint (as `tiny`); the tests then check what each one did. Every
unreadable-document message is checked in one such process (`--errors skip`); the failing exit for each of them,
and failures that never reach the model, go through `cli.main` in this process, which is the same code.
Summaries of a random-weight model are gibberish, so they are compared with the Python API's on the same input.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from bigbird_pegasus import BigBirdPegasusForConditionalGeneration, Summarizer
from bigbird_pegasus.cli.main import main
from bigbird_pegasus.pipeline.loading import DEFAULT_MODEL
from helpers.cli import MAX_POSITIONS, run_cli
from helpers.spm import english_paragraphs, long_document

PAPER = long_document(pages=3, seed=11)
NOTES = "# Field notes\n\n" + "\n\n".join(f"## Day {i + 1}\n\n{p}" for i, p in enumerate(english_paragraphs(4, 12)))
SHORT = "The council approved the budget on Monday.\nCritics said the figures were incomplete.\n"
JSONL_ROWS = [{"id": "a", "document": long_document(pages=2, seed=13)}, {"id": "b", "document": SHORT},
              {"id": 7, "document": english_paragraphs(3, seed=14)}]  # a list of strings is joined by line breaks
OTHER_ROWS = [{"text": english_paragraphs(1, seed=15)[0]}, None, {"text": "Short one. Two sentences."}]
FILES = {
    "paper.txt": PAPER.encode(),
    "notes.md": NOTES.encode(),
    "short.txt": SHORT.encode(),
    "docs.jsonl": "".join(json.dumps(row) + "\n" for row in JSONL_ROWS).encode(),
    "other.jsonl": "".join((json.dumps(row) if row else "   ") + "\n" for row in OTHER_ROWS).encode(),
    "empty.txt": b"",
    "blank.txt": b"  \n\t\n   \n",
    "binary.bin": b"%PDF-1.4\n\x00\x01\x02\xff binary",
    "latin1.txt": "First line.\nSecond line.\nCaf\u00e9 au lait.\n".encode("latin-1"),
    "bad.jsonl": b'{"document": "Fine first line."}\n{"document": "unterminated\n{"document": "Fine third."}\n',
    "nofield.jsonl": b'{"document": "Fine."}\n{"id": 2, "text": "Wrong field."}\n',
    "notext.jsonl": b'{"document": 42}\n',
    "kept.txt": b"old content\n",
    "not_a_model/config.json": b'{"model_type": "bert", "hidden_size": 32}\n',
    "folder/inside.txt": b"A file in a folder.",
    "nodocs/notes.rst": b"Not a document suffix.",
}
MODEL = ("--model", "tiny")

RUNS = {
    # input forms
    "text_and_markdown": (["summarize", "paper.txt", "notes.md", "short.txt", *MODEL], None),
    "jsonl_with_ids": (["summarize", "paper.txt", "docs.jsonl", "--id-field", "id", "--batch-size", "2", *MODEL,
                        "--output", "out/with_ids.jsonl"], None),
    "stdin_jsonl_text_field": (["summarize", "-", "--input-format", "jsonl", "--text-field", "text", *MODEL,
                                "-o", "out/stdin.jsonl"], FILES["other.jsonl"]),
    "stdin_dash_to_txt": (["summarize", "-", "short.txt", *MODEL, "--output", "out/both.txt"], NOTES.encode()),
    "stdin_implicit_chunk": (["summarize", "--long-input", "chunk", "--max-length", "30", *MODEL, "--progress",
                              "-o", "out/chunked.jsonl"], PAPER.encode()),
    "generation_options": (["summarize", "short.txt", "notes.md", *MODEL, "--num-beams", "2", "--length-penalty", "0.6",
                            "--max-length", "9", "--min-length", "4", "--no-repeat-ngram-size", "2", "--dtype",
                            "float32", "--device", "cpu", "--threads", "1", "--newlines", "space",
                            "--cross-attention-cache", "none"], None),
    # every unreadable document, skipped; a failing run with an existing output; unusable models
    "skip": (["summarize", "short.txt", "empty.txt", "blank.txt", "missing.txt", "nodocs", "binary.bin",
              "latin1.txt", "bad.jsonl", "nofield.jsonl", "--errors", "skip", *MODEL], None),
    "failed_run_keeps_output": (["summarize", "short.txt", "blank.txt", *MODEL, "-o", "kept.txt"], None),
    "not_a_checkpoint": (["summarize", "short.txt", "--model", "not_a_model"], None),
    "missing_model_folder": (["summarize", "short.txt", "--model", "./no_such_model"], None),
    "default_model_offline": (["summarize", "short.txt"], None),
}
EMPTY_HUB_CACHE = {"HF_HOME": "hf_home", "HF_HUB_CACHE": "hf_home/hub"}  # offline and nothing cached


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_checkpoint):
    """The inputs, an `out` folder and the checkpoint as `tiny`."""
    folder = tmp_path_factory.mktemp("cli")
    for name, content in FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    (folder / "out").mkdir()
    (folder / "tiny").symlink_to(tiny_checkpoint, target_is_directory=True)
    return folder


@pytest.fixture(scope="module")
def runs(workdir):
    """Name -> completed process of every command line in RUNS."""
    def run(name):
        args, stdin = RUNS[name]
        env = EMPTY_HUB_CACHE if name == "default_model_offline" else None
        return run_cli(*args, stdin=stdin, cwd=workdir, env=env)

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1) + 1) as pool:
        return dict(zip(RUNS, pool.map(run, RUNS)))


@pytest.fixture(scope="module")
def api(workdir):
    return Summarizer(workdir / "tiny", device="cpu")


def succeeded(result) -> None:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def failed(result, *fragments: str) -> None:
    """Assert a clean failure: status 1, an error line holding every fragment, no traceback, nothing on stdout."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert "bigbird-pegasus summarize: error: " in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
    assert ".." not in result.stderr.replace("./", ""), result.stderr  # messages joined without doubled stops


def jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---- input forms and outputs -----------------------------------------------------------------------------


def test_text_and_markdown_files_print_one_summary_per_line_like_the_api(runs, api):
    result = runs["text_and_markdown"]
    succeeded(result)
    assert result.stdout.splitlines() == api([PAPER, NOTES, SHORT])
    paper, notes, short = api.summarize([PAPER, NOTES, SHORT])
    assert paper.truncated > MAX_POSITIONS and short.truncated == 0
    for name, expected in (("paper.txt", paper), ("notes.md", notes)):
        assert (f"{name}: {expected.input_tokens:,} tokens, the model reads {MAX_POSITIONS}: "
                f"{expected.truncated:,} tokens were cut") in result.stderr
    assert "short.txt:" not in result.stderr
    assert "doc/s" not in result.stderr, "no progress bar when standard error is not a terminal"


def test_jsonl_output_rows_carry_ids_fields_and_truncation_in_input_order(runs, workdir):
    succeeded(runs["jsonl_with_ids"])
    assert runs["jsonl_with_ids"].stdout == ""
    rows = jsonl(workdir / "out/with_ids.jsonl")
    texts = [PAPER] + [row["document"] if isinstance(row["document"], str) else "\n".join(row["document"])
                       for row in JSONL_ROWS]
    expected = Summarizer(workdir / "tiny", device="cpu", batch_size=2).summarize(texts)
    assert [row["id"] for row in rows] == ["paper.txt", "a", "b", 7]
    for row, want in zip(rows, expected):
        assert set(row) == {"id", "summary", "input_tokens", "truncated", "chunks", "seconds"}
        assert (row["summary"], row["input_tokens"], row["truncated"], row["chunks"]) == (
            want.summary, want.input_tokens, want.truncated, want.chunks)
        assert row["seconds"] >= 0
    assert rows[0]["truncated"] > 0 and rows[2]["truncated"] == 0
    assert not [p.name for p in (workdir / "out").iterdir() if p.name.startswith(".")], "temporary file left"


def test_jsonl_on_standard_input_with_a_text_field_and_default_ids(runs, workdir, api):
    succeeded(runs["stdin_jsonl_text_field"])
    rows = jsonl(workdir / "out/stdin.jsonl")
    assert [row["id"] for row in rows] == ["<stdin>:1", "<stdin>:3"]  # line 2 is blank
    assert [row["summary"] for row in rows] == api([OTHER_ROWS[0]["text"], OTHER_ROWS[2]["text"]])


def test_dash_reads_standard_input_and_txt_output_holds_one_line_each(runs, workdir, api):
    succeeded(runs["stdin_dash_to_txt"])
    assert runs["stdin_dash_to_txt"].stdout == ""
    assert (workdir / "out/both.txt").read_text(encoding="utf-8").splitlines() == api([NOTES, SHORT])


def test_chunk_reads_standard_input_whole_with_a_forced_progress_bar(runs, workdir):
    result = runs["stdin_implicit_chunk"]
    succeeded(result)
    [row] = jsonl(workdir / "out/chunked.jsonl")
    [expected] = Summarizer(workdir / "tiny", device="cpu", long_input="chunk", max_length=30).summarize([PAPER])
    assert (row["id"], row["summary"], row["input_tokens"], row["truncated"], row["chunks"]) == (
        "<stdin>", expected.summary, expected.input_tokens, 0, expected.chunks)
    assert row["input_tokens"] > 3 * MAX_POSITIONS and row["chunks"] > 3
    assert "summarizing: 100%" in result.stderr and "1/1" in result.stderr and "doc/s" in result.stderr
    assert "were cut" not in result.stderr


def test_model_and_generation_options_reach_the_model(runs, workdir):
    """The run folds cross-attention (`--cross-attention-cache none`): the same summaries as the default."""
    succeeded(runs["generation_options"])
    expected = Summarizer(workdir / "tiny", device="cpu", dtype="float32", threads=1, newlines="space", num_beams=2,
                          length_penalty=0.6, max_length=9, min_length=4, no_repeat_ngram_size=2)([SHORT, NOTES])
    assert runs["generation_options"].stdout.splitlines() == expected
    assert all(len(summary.split()) <= 8 for summary in expected)


@pytest.mark.parametrize("value", ["values", "none"])
def test_cross_attention_cache_reaches_generate(workdir, monkeypatch, capsys, value):
    seen = []
    generate = BigBirdPegasusForConditionalGeneration.generate

    def recording_generate(self, *args, **kwargs):
        seen.append(kwargs["cross_attention_cache"])
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(BigBirdPegasusForConditionalGeneration, "generate", recording_generate)
    monkeypatch.chdir(workdir)
    assert main(["summarize", "short.txt", *MODEL, "--cross-attention-cache", value]) == 0
    assert seen == [value] and capsys.readouterr().out.strip()


def test_quantize_int8_prints_the_int8_summarizers_summaries(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    assert main(["summarize", "short.txt", "notes.md", *MODEL, "--device", "cpu", "--quantize", "int8"]) == 0
    quantized = Summarizer(workdir / "tiny", device="cpu", quantize="int8")
    assert capsys.readouterr().out.splitlines() == quantized([SHORT, NOTES])


# ---- errors ----------------------------------------------------------------------------------------------

DOCUMENT_ERRORS = {
    "empty.txt": "empty.txt: empty document",
    "blank.txt": "blank.txt: empty document (nothing but whitespace)",
    "missing.txt": "missing.txt: no such file",
    "nodocs": "nodocs: is a folder without documents (no .pdf, .txt, .md, .jsonl, .ndjson files in it)",
    "binary.bin": "binary.bin:2: binary content (a NUL byte), not text",
    "latin1.txt": "latin1.txt:3: not UTF-8 text (byte 0xe9 at column 4)",
    "bad.jsonl": "bad.jsonl:2: not valid JSON: Unterminated string",
    "nofield.jsonl": "nofield.jsonl:2: no field 'document' (fields: 'id', 'text'); choose one with --text-field",
    "notext.jsonl": "notext.jsonl:1: field 'document' holds a number, not text",
}


def test_errors_skip_goes_on_and_counts_what_it_skipped(runs, api):
    result = runs["skip"]
    succeeded(result)
    assert result.stdout.splitlines() == api([SHORT, "Fine first line.", "Fine third.", "Fine."])
    for name in ["empty.txt", "blank.txt", "missing.txt", "nodocs", "binary.bin", "latin1.txt", "bad.jsonl",
                 "nofield.jsonl"]:
        assert f"bigbird-pegasus: skipped {DOCUMENT_ERRORS[name]}" in result.stderr
    assert "summarized 4 documents, skipped 8" in result.stderr


@pytest.mark.parametrize("name", DOCUMENT_ERRORS)
def test_bad_input_fails_with_a_message_naming_the_file_and_line(workdir, monkeypatch, capsys, name):
    monkeypatch.chdir(workdir)
    assert main(["summarize", "short.txt", name, *MODEL]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"bigbird-pegasus summarize: error: {DOCUMENT_ERRORS[name]}")
    assert err.count("\n") == 1


def test_a_failed_run_leaves_an_existing_text_output_untouched(runs, workdir):
    """A .txt output is written at the end, once every document was read (JSON Lines: tests/cli/test_corpus.py)."""
    failed(runs["failed_run_keeps_output"], DOCUMENT_ERRORS["blank.txt"])
    assert (workdir / "kept.txt").read_bytes() == b"old content\n"
    assert not [p for p in workdir.iterdir() if p.name.startswith(".kept.txt")]


@pytest.mark.parametrize("name, fragments", [
    ("not_a_checkpoint", ["cannot load the model 'not_a_model'", "not a BigBirdPegasus checkpoint"]),
    ("missing_model_folder", ["cannot load the model './no_such_model'", "no_such_model"]),
    ("default_model_offline", [f"cannot load the model '{DEFAULT_MODEL}'", "downloaded on first use",
                               f"`hf download {DEFAULT_MODEL} --local-dir FOLDER`", "load it from there (--model FOLDER)."]),
])
def test_unusable_model_fails_with_a_message_saying_what_to_do(runs, name, fragments):
    failed(runs[name], *fragments)


def test_hub_messages_are_printed_once(tmp_path):
    """huggingface_hub logs through its own handler (its retries while the network is down): the command's
    logging must not print each of its lines a second time."""
    script = (
        "import importlib, sys\n"
        "summarize = importlib.import_module('bigbird_pegasus.pipeline.summarizer')\n"
        "from bigbird_pegasus.cli.main import main\n"
        "def load_model(*args, **options):\n"
        "    from huggingface_hub.utils import logging as hub_logging\n"
        "    hub_logging.get_logger('huggingface_hub.file_download').warning('hub retrying')\n"
        "    raise summarize.ModelLoadError('the hub could not be reached')\n"
        "summarize.load_model = load_model\n"
        f"sys.exit(main(['summarize', {str(tmp_path / 'doc.txt')!r}, '--model', 'someone/model']))\n")
    (tmp_path / "doc.txt").write_text(" ".join(english_paragraphs(3)))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("hub retrying") == 1, result.stderr


@pytest.mark.parametrize("args, message", [
    (["short.txt", "--model", "folder"], "cannot load the model 'folder': folder has no config.json"),
    (["short.txt", *MODEL, "-o", "out/summaries.csv"], "out/summaries.csv: the output must end in .txt"),
    (["short.txt", *MODEL, "-o", "no_folder/summaries.txt"], "no_folder/summaries.txt: cannot write there, folder"),
    (["blank.txt", "empty.txt", "missing.txt", "--errors", "skip", *MODEL], "no documents to summarize (3 skipped)"),
    (["short.txt", *MODEL, "--max-length", "600"], "a summary of 600 tokens (start token included) is longer than "
                                                   "the model's 512 positions"),
    (["short.txt", *MODEL, "--quantize", "int8", "--dtype", "bfloat16"],
     "quantization 'int8' starts from fp32 weights, not bfloat16: leave the dtype unset or use float32"),
])
def test_other_failures_say_what_is_wrong(workdir, monkeypatch, capsys, args, message):
    monkeypatch.chdir(workdir)
    assert main(["summarize", *args]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
    (["--cross-attention-cache", "keys"], "--cross-attention-cache: invalid choice: 'keys'"),
    (["--quantize", "int4"], "--quantize: invalid choice: 'int4'"),
])
def test_bad_option_values_are_usage_errors(capsys, args, message):
    with pytest.raises(SystemExit) as exit_status:
        main(["summarize", "short.txt", *args])
    assert exit_status.value.code == 2
    assert message in capsys.readouterr().err
