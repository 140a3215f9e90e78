"""Corpus runs of `summarize` (-o FILE.jsonl) and `extract`, on a folder of PDFs, text, Markdown and JSON Lines of
mixed lengths: every way of running it (batch sizes, `--shard K/N`, 2 processes under torchrun, killed with -9 then
resumed) gives the summaries of one uninterrupted process; bad PDFs are named, skipped or stop the run without
losing what it wrote.

The commands run as real processes (torchrun's too), each bounded by a timeout, with PYTHONFAULTHANDLER set so
that a crashed process shows its stacks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bigbird_pegasus import Summarizer
from bigbird_pegasus.cli.main import main
from bigbird_pegasus.text.documents import list_documents
from bigbird_pegasus.text.pdf import extract_pdf_text
from helpers.cli import run_cli
from helpers.pdfs import image_only_pdf, password_protected_pdf, truncated_pdf, typeset_paper
from helpers.spm import english_paragraphs, long_document

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TIMEOUT = 240  # seconds any command of these tests may take
SMALL_BLOCK_SPARSE_INPUT = 112  # (5 + 2 r) * block_size tokens of the tiny model: shorter inputs use full attention
DOCUMENTS = {  # the folder's documents, mixed lengths: a few words, a few hundred tokens, past the 512 positions
    "papers/a-long.pdf": lambda: typeset_paper(seed=1, sections=2).pdf,
    "papers/b-short.pdf": lambda: typeset_paper(seed=2, sections=1, paragraphs_per_section=1, columns=1).pdf,
    "papers/c.txt": lambda: long_document(pages=1, seed=3).encode(),
    "papers/d.md": lambda: "# Notes\n\nThe council approved the budget.".encode(),
    "papers/e.jsonl": lambda: "".join(json.dumps({"document": text}) + "\n"
                                      for text in english_paragraphs(3, seed=4)).encode(),
    "papers/nested/f.pdf": lambda: typeset_paper(seed=5, sections=1, paragraphs_per_section=2).pdf,
    "papers/nested/g.txt": lambda: " ".join(english_paragraphs(2, seed=6)).encode(),
    "papers/nested/h.txt": lambda: "A short one. It has two sentences.".encode(),
    "papers/.hidden.txt": lambda: b"left out: hidden",
    "papers/readme.rst": lambda: b"left out: not a document suffix",
}
IDS = ["papers/a-long.pdf", "papers/b-short.pdf", "papers/c.txt", "papers/d.md", "papers/e.jsonl:1",
       "papers/e.jsonl:2", "papers/e.jsonl:3", "papers/nested/f.pdf", "papers/nested/g.txt", "papers/nested/h.txt"]
MODEL = ("--model", "tiny")
# `summarize` with every generate call slowed down, so that a test can kill it while it works
SLOW_SUMMARIZE = """
import sys, time
from bigbird_pegasus.cli.main import main
from bigbird_pegasus.heads.conditional_generation import BigBirdPegasusForConditionalGeneration as Model
generate = Model.generate
def slow_generate(self, *args, **options):
    time.sleep(0.5)
    return generate(self, *args, **options)
Model.generate = slow_generate
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_checkpoint) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for name, content in DOCUMENTS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content())
    (folder / "tiny").symlink_to(tiny_checkpoint, target_is_directory=True)
    return folder


def env(**extra: str) -> dict:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"), "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONFAULTHANDLER": "1", **extra}


def summarize(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    result = run_cli("summarize", *args, *MODEL, cwd=workdir, env={"PYTHONFAULTHANDLER": "1"})
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return result


def torchrun(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               "-m", "bigbird_pegasus", "summarize", *args, *MODEL]
    result = subprocess.run(command, cwd=workdir, env=env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def same_summaries(got: list[dict], want: list[dict]) -> None:
    """Equal rows, but for the time each took."""
    fields = ("id", "summary", "input_tokens", "truncated", "chunks")
    assert [tuple(row[f] for f in fields) for row in got] == [tuple(row[f] for f in fields) for row in want]


@pytest.fixture(scope="module")
def runs(workdir) -> dict[str, subprocess.CompletedProcess]:
    """One process with each batch size, three shards and 2 processes under torchrun, side by side."""
    commands = {f"batch {size}": lambda size=size: summarize(workdir, "papers", "--batch-size", str(size),
                                                             "-o", f"batch{size}.jsonl") for size in (1, 4, 8)}
    commands |= {f"shard {k}": lambda k=k: summarize(workdir, "papers", "--shard", f"{k}/3", "-o", f"shard{k}.jsonl")
                 for k in range(3)}
    commands["torchrun"] = lambda: torchrun(workdir, "papers", "--batch-size", "2", "--progress", "-o", "two.jsonl")
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(command) for name, command in commands.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def single(runs, workdir) -> list[dict]:
    return rows(workdir / "batch4.jsonl")


def test_a_folder_is_read_in_sorted_order_with_paths_as_ids_like_the_api(single, workdir, tiny_checkpoint, monkeypatch):
    assert [row["id"] for row in single] == IDS  # hidden files and other suffixes left out
    monkeypatch.chdir(workdir)
    documents, _ = list_documents(["papers"])
    expected = Summarizer(tiny_checkpoint, device="cpu").summarize([d.read() for d in documents], ids=IDS)
    assert [row["summary"] for row in single] == [summary.summary for summary in expected]
    lengths = [row["input_tokens"] for row in single]  # mixed: full attention, block-sparse, truncated
    assert min(lengths) < SMALL_BLOCK_SPARSE_INPUT and max(lengths) > 512
    assert any(SMALL_BLOCK_SPARSE_INPUT < length <= 512 for length in lengths)


def test_batch_sizes_1_4_8_give_identical_summaries(runs, workdir, single):
    for size in (1, 8):
        same_summaries(rows(workdir / f"batch{size}.jsonl"), single)


def test_two_processes_under_torchrun_give_the_single_process_summaries(runs, workdir, single):
    same_summaries(rows(workdir / "two.jsonl"), single)
    assert not list(workdir.glob("two.jsonl.part-*")) and not list(workdir.glob(".two.jsonl*"))
    stderr = runs["torchrun"].stderr
    assert "summarizing (process 0 of 2)" in stderr and "process 1 of 2" not in stderr  # one progress bar


def test_shards_hold_every_third_document_with_the_single_process_summaries(runs, workdir, single):
    for k in range(3):
        same_summaries(rows(workdir / f"shard{k}.jsonl"), single[k::3])


def test_kill_9_then_resume_gives_the_uninterrupted_summaries_once_each(runs, workdir, single):
    output = workdir / "killed.jsonl"
    command = [sys.executable, "-c", SLOW_SUMMARIZE, "summarize", "papers", *MODEL, "--batch-size", "1",
               "-o", output.name]
    process = subprocess.Popen(command, cwd=workdir, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + TIMEOUT
    while not (output.exists() and output.read_bytes().count(b"\n") >= 3):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no summary written in time"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=TIMEOUT)
    process.stderr.close()
    kept = output.read_bytes().split(b"\n")[:-1]  # complete lines (a kill may have torn the last one)
    assert 3 <= len(kept) < len(IDS)
    with open(output, "ab") as file:
        file.write(b'{"id": "papers/nested/h.txt", "summary": "torn by the ki')  # as a kill mid-write leaves it

    resumed = summarize(workdir, "papers", "--resume", "--batch-size", "2", "-o", output.name)
    assert f"resuming: {len(kept)} of {len(IDS)} documents are already summarized" in resumed.stderr
    same_summaries(rows(output), single)


def test_resume_gathers_part_files_of_earlier_runs_with_other_process_counts(runs, workdir, single):
    """A torchrun run killed with 2 processes, another with 3: the next one (2 processes) goes on from both."""
    lines = [json.dumps(row) + "\n" for row in single]
    (workdir / "parts.jsonl.part-0-of-2").write_text(lines[4] + lines[0] + '{"id": "papers/c.t')
    (workdir / "parts.jsonl.part-2-of-3").write_text(lines[7])
    done = torchrun(workdir, "papers", "--resume", "-o", "parts.jsonl")
    assert f"resuming: 3 of {len(IDS)} documents" in done.stderr
    same_summaries(rows(workdir / "parts.jsonl"), single)
    assert not list(workdir.glob("parts.jsonl.part-*"))


def test_an_existing_output_is_refused_without_resume_or_overwrite(runs, workdir, capsys, single, monkeypatch):
    monkeypatch.chdir(workdir)
    output = workdir / "batch1.jsonl"
    before = output.read_bytes()
    assert main(["summarize", "papers", *MODEL, "-o", output.name]) == 1
    assert "batch1.jsonl already exists and is not empty: add --resume to go on with the run that wrote it, or " \
           "--overwrite to replace it" in capsys.readouterr().err
    assert output.read_bytes() == before
    assert main(["summarize", "papers/c.txt", *MODEL, "--resume", "-o", output.name]) == 1
    assert "batch1.jsonl holds 9 summaries of documents that are not among the inputs (e.g. id " \
           "\"papers/a-long.pdf\")" in capsys.readouterr().err
    assert main(["summarize", "papers/c.txt", *MODEL, "--overwrite", "-o", output.name]) == 0
    assert [row["id"] for row in rows(output)] == ["papers/c.txt"]


@pytest.mark.parametrize("args, message", [
    (["papers", "-o", "out.txt", "--resume"], "--resume needs a JSON Lines output (-o FILE.jsonl)"),
    (["papers", "--shard", "1/2"], "--shard needs a JSON Lines output"),
])
def test_corpus_options_need_a_jsonl_output(workdir, capsys, args, message, monkeypatch):
    monkeypatch.chdir(workdir)
    assert main(["summarize", *args, *MODEL]) == 1
    assert message in capsys.readouterr().err


def test_a_shard_that_does_not_exist_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        main(["summarize", "papers", "--shard", "3/3", "-o", "x.jsonl"])
    assert "--shard: shard 3 of 3 does not exist: K goes from 0 to N-1" in capsys.readouterr().err


def test_a_resumed_output_with_a_line_that_is_not_a_summary_is_named(workdir, capsys, monkeypatch):
    monkeypatch.chdir(workdir)
    (workdir / "foreign.jsonl").write_text('{"id": "papers/c.txt", "summary": "x"}\nold content\n')
    assert main(["summarize", "papers", *MODEL, "--resume", "-o", "foreign.jsonl"]) == 1
    assert "foreign.jsonl:2: not a summary (a JSON object with 'id' and 'summary')" in capsys.readouterr().err


# ---- bad PDFs -----------------------------------------------------------------------------------------------

BAD_PDFS = {"corrupt.pdf": (truncated_pdf, "corrupt PDF"), "locked.pdf": (password_protected_pdf, "needs a password"),
            "scanned.pdf": (image_only_pdf, "no text layer, OCR it first")}


@pytest.fixture(scope="module")
def bad_folder(workdir) -> Path:
    folder = workdir / "mixed"
    folder.mkdir()
    (folder / "a.txt").write_text("The first document, which is fine. It is read before the others.")
    for name, (make, _) in BAD_PDFS.items():
        (folder / name).write_bytes(make())
    (folder / "z.txt").write_text("The last document, fine as well.")
    return folder


@pytest.mark.parametrize("name", BAD_PDFS)
def test_a_bad_pdf_stops_the_run_in_one_line_keeping_what_was_written(workdir, bad_folder, capsys, name, monkeypatch):
    monkeypatch.chdir(workdir)
    output = workdir / f"stopped-{name}.jsonl"
    assert main(["summarize", "mixed/a.txt", f"mixed/{name}", "mixed/z.txt", *MODEL, "-o", output.name]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"bigbird-pegasus summarize: error: mixed/{name}: {BAD_PDFS[name][1]}")
    assert err.count("\n") == 1 and "--resume" in err
    assert [row["id"] for row in rows(output)] == ["mixed/a.txt"]


def test_errors_skip_reports_each_bad_pdf_and_goes_on(workdir, bad_folder, capsys, monkeypatch):
    monkeypatch.chdir(workdir)
    assert main(["summarize", "mixed", *MODEL, "--errors", "skip", "-o", "skipped.jsonl"]) == 0
    err = capsys.readouterr().err
    for name, (_, reason) in BAD_PDFS.items():
        assert f"bigbird-pegasus: skipped mixed/{name}: {reason}" in err
    assert "summarized 2 documents, skipped 3" in err
    assert [row["id"] for row in rows(workdir / "skipped.jsonl")] == ["mixed/a.txt", "mixed/z.txt"]


# ---- extract --------------------------------------------------------------------------------------------------

def test_extract_prints_a_pdfs_cleaned_text(workdir):
    result = run_cli("extract", "papers/a-long.pdf", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout == extract_pdf_text((workdir / "papers/a-long.pdf").read_bytes(),
                                             source="papers/a-long.pdf") + "\n"


def test_extract_writes_what_summarize_reads(runs, workdir, single, capsys, monkeypatch):
    """Summarizing the extracted texts (JSON Lines) gives the summaries of the folder itself."""
    monkeypatch.chdir(workdir)
    assert main(["extract", "papers", "-o", "texts.jsonl"]) == 0
    extracted = rows(workdir / "texts.jsonl")
    assert [row["id"] for row in extracted] == IDS and all("\n\n\n" not in row["document"] for row in extracted)
    assert main(["summarize", "texts.jsonl", "--id-field", "id", *MODEL, "-o", "from_texts.jsonl"]) == 0
    same_summaries(rows(workdir / "from_texts.jsonl"), single)
    assert main(["extract", "papers/c.txt", "papers/d.md"]) == 0
    assert capsys.readouterr().out.startswith("==> papers/c.txt <==\n")


def test_extract_names_a_bad_pdf_or_skips_it(workdir, bad_folder, capsys, monkeypatch):
    monkeypatch.chdir(workdir)
    assert main(["extract", "mixed/locked.pdf"]) == 1
    assert capsys.readouterr().err == "bigbird-pegasus extract: error: mixed/locked.pdf: needs a password (decrypt " \
                                      "it first, e.g. `qpdf --decrypt --password=... in.pdf out.pdf`)\n"
    assert main(["extract", "mixed", "--errors", "skip", "-o", "mixed.txt"]) == 0
    assert "extracted 2 documents, skipped 3" in capsys.readouterr().err
    assert (workdir / "mixed.txt").read_text().startswith("==> mixed/a.txt <==\nThe first document")
