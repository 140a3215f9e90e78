"""Corpus runs: how well and how fast PDFs are read, and how many documents an hour `summarize` gets through.

    python benchmarks/corpus.py extraction            # typeset papers: words recovered, leftovers, pages/s
    python benchmarks/corpus.py throughput            # large config, random weights: documents per hour
    python benchmarks/corpus.py throughput --settings 1x2 2x1 --rounds 2   # some settings, alternating twice
    python benchmarks/corpus.py throughput --tiny     # a smoke run on the tiny preset

extraction: papers typeset with reportlab (tests/helpers/pdfs.py: one and two columns, three fonts, hyphenated
line ends, ligature glyphs, running headers that alternate between odd and even pages, page numbers, a
references section and an appendix after it), read by `extract_pdf_text` and, side by side, by PDFium's own
text (`get_text_range`, no cleaning). Reported: the share of the source's words recovered, the words left over
that the source does not hold (running headers, page numbers, references and appendix, words glued or cut
wrongly), papers whose paragraphs all come back exactly, and pages per second.

throughput: `bigbird-pegasus summarize FOLDER -o out.jsonl` over a folder of typeset papers long enough to fill
the model's 4096 positions, on random weights of the large configuration (`common.ensure_checkpoint`) with a
small SentencePiece vocabulary trained for the run. Summaries are kept short (beam 5, exactly
SUMMARY_TOKENS new tokens) so that each run stays bounded: the figures are dominated by reading and encoding,
as a run with longer summaries would not be. Each setting is a fresh command (its wall time includes starting
Python, loading the model and extracting the PDFs): batch sizes 1, 4 and 8 in one process of 2 threads, and
batch size 4 in 1 process x 2 threads against 2 processes x 1 thread under torchrun. With --rounds R the settings
alternate R times and each keeps its fastest round (the machine is shared).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))  # the typesetter and word counts the tests use
from common import checkpoint_folder, ensure_checkpoint, save_json  # noqa: E402

PAPERS = [dict(seed=seed, columns=1 + seed % 2, font=("Vera", "Helvetica", "Times-Roman")[seed % 3],
               sections=2 + seed % 8) for seed in range(48)]
SUMMARY_TOKENS = 16  # new tokens per summary: short, so that a run is bounded (see the docstring)
SETTINGS = {  # name: (processes, threads per process, batch size)
    "b1": (1, 2, 1), "b4": (1, 2, 4), "b8": (1, 2, 8), "1x2": (1, 2, 4), "2x1": (2, 1, 4),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("extraction", "throughput"))
    parser.add_argument("--repeats", type=int, default=3, help="extraction: timed passes over the papers")
    parser.add_argument("--documents", type=int, default=8, help="throughput: papers in the folder")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS),
                        help="throughput: b1, b4, b8 (batch size, 1 process x 2 threads), 1x2 and 2x1 "
                             "(processes x threads, batch size 4)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="throughput: rounds of every setting, alternating; each setting keeps its fastest")
    parser.add_argument("--tiny", action="store_true", help="throughput on the tiny preset: a smoke run")
    parser.add_argument("--out", help="JSON results (default benchmarks/out/corpus-PART.json)")
    args = parser.parse_args()
    out = args.out or str(HERE / "out" / f"{'tiny-' if args.tiny else ''}corpus-{args.part}.json")
    results = extraction(args.repeats) if args.part == "extraction" else throughput(args)
    save_json(out, results)
    print(f"\nraw results: {out}")


# -- extraction ------------------------------------------------------------------------------------------

def extraction(repeats: int) -> dict:
    import pypdfium2

    from bigbird_pegasus.text.pdf import extract_pdf_text
    from helpers.pdfs import RUNNING_HEADERS, leftover_words, typeset_paper, words, words_recovered

    papers = [typeset_paper(**options) for options in PAPERS]
    pages = sum(paper.pages for paper in papers)

    def raw_text(pdf: bytes) -> str:
        document = pypdfium2.PdfDocument(pdf)
        text = "\n".join(document[i].get_textpage().get_text_range() for i in range(len(document)))
        document.close()
        return text

    readers = {"ours": lambda paper: extract_pdf_text(paper.pdf, source="paper.pdf"),
               "PDFium text": lambda paper: raw_text(paper.pdf)}
    rows = {}
    for name, read in readers.items():
        texts = [read(paper) for paper in papers]
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            for paper in papers:
                read(paper)
            seconds.append(time.perf_counter() - started)
        leftovers = [leftover_words(paper.text, text) for paper, text in zip(papers, texts)]
        header_words = set(words(" ".join(RUNNING_HEADERS)))
        reference_words = [set(words(" ".join(paper.references + paper.appendix))) for paper in papers]
        kinds = collections.Counter()
        for left, references in zip(leftovers, reference_words):
            for word in left:
                kind = ("page numbers" if word.isdigit() else "running headers" if word in header_words
                        else "references and appendix" if word in references else "other")
                kinds[kind] += 1
        rows[name] = dict(
            recovered_mean=sum(words_recovered(p.text, t) for p, t in zip(papers, texts)) / len(papers),
            recovered_min=min(words_recovered(p.text, t) for p, t in zip(papers, texts)),
            leftover_words=sum(map(len, leftovers)), leftover_kinds=dict(kinds),
            exact_papers=sum(t.split("\n\n") == p.text for p, t in zip(papers, texts)),
            pages_per_second=pages / min(seconds), other_leftovers=sorted(
                word for left, refs in zip(leftovers, reference_words) for word in left
                if not word.isdigit() and word not in header_words and word not in refs))
    source_words = sum(len(words(" ".join(paper.text))) for paper in papers)
    print(f"{len(papers)} typeset papers, {pages} pages, {source_words} source words, "
          f"{sum(p.hyphenated for p in papers)} words hyphenated at line ends, "
          f"{sum(p.ligatures for p in papers)} ligature glyphs\n")
    print("| reader | words recovered (mean / worst paper) | words left over | papers exact | pages/s |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(row["leftover_kinds"].items()))
        print(f"| {name} | {row['recovered_mean']:.2%} / {row['recovered_min']:.2%} | {row['leftover_words']}"
              f"{f' ({kinds})' if kinds else ''} | {row['exact_papers']}/{len(papers)} | "
              f"{row['pages_per_second']:.1f} |")
    print(f"\nours, other leftovers: {rows['ours']['other_leftovers']}")
    return dict(papers=len(papers), pages=pages, source_words=source_words, readers=rows)


# -- throughput ------------------------------------------------------------------------------------------

def throughput(args: argparse.Namespace) -> dict:
    workdir = HERE / "out" / ("tiny-corpus" if args.tiny else "corpus")
    model = prepared_model(workdir / "model", tiny=args.tiny)
    folder = prepared_papers(workdir / "papers", args.documents, tiny=args.tiny)
    runs = {}
    for round_index in range(args.rounds):  # the settings alternate; each keeps its fastest round
        for name in args.settings:
            run = run_setting(name, model, folder, workdir)
            print(f"round {round_index + 1}, {name}: {run['documents']} documents in {run['seconds']:.1f} s",
                  flush=True)
            if name not in runs or run["seconds"] < runs[name]["seconds"]:
                runs[name] = run
    first = next(iter(runs.values()))
    identical = all(run["summaries"] == first["summaries"] for run in runs.values())
    positions = json.loads((model / "config.json").read_text())["max_position_embeddings"]
    print(f"\n{first['documents']} papers of {min(first['input_tokens'])}-{max(first['input_tokens'])} tokens "
          f"(the model reads {positions}), beam 5, {SUMMARY_TOKENS} new tokens; summaries identical across "
          f"settings: {identical}\n")
    base_name = "b1" if "b1" in runs else next(iter(runs))
    print(f"| setting | processes x threads | batch size | seconds | documents/hour | vs {base_name} |")
    print("|---|---|---|---|---|---|")
    base = runs[base_name]["documents_per_hour"]
    for name, run in runs.items():
        print(f"| {name} | {run['processes']} x {run['threads']} | {run['batch_size']} | {run['seconds']:.1f} | "
              f"{run['documents_per_hour']:.0f} | {run['documents_per_hour'] / base:.2f}x |")
    return dict(tiny=args.tiny, rounds=args.rounds, positions=positions, summary_tokens=SUMMARY_TOKENS,
                identical=identical, runs=runs)


def run_setting(name: str, model: Path, folder: Path, workdir: Path) -> dict:
    """One `summarize` command (under torchrun for several processes) over the folder, timed from start to end."""
    processes, threads, batch_size = SETTINGS[name]
    output = workdir / f"{name}.jsonl"
    command = ["-m", "bigbird_pegasus", "summarize", str(folder), "--model", str(model), "--device", "cpu",
               "--batch-size", str(batch_size), "--threads", str(threads), "--num-beams", "5",
               "--min-length", str(SUMMARY_TOKENS), "--max-length", str(SUMMARY_TOKENS + 1),
               "-o", str(output), "--overwrite", "--no-progress"]
    if processes > 1:
        command = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", *command]
    environment = dict(os.environ, PYTHONPATH=str(REPO / "src"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(threads),
                       TOKENIZERS_PARALLELISM="false")
    started = time.perf_counter()
    subprocess.run([sys.executable, *command], check=True, env=environment, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    summaries = [json.loads(line) for line in output.read_text().splitlines()]
    return dict(processes=processes, threads=threads, batch_size=batch_size, seconds=seconds,
                documents=len(summaries), documents_per_hour=len(summaries) / seconds * 3600,
                input_tokens=[row["input_tokens"] for row in summaries],
                model_seconds=[row["seconds"] for row in summaries], summaries=[row["summary"] for row in summaries])


def prepared_model(folder: Path, *, tiny: bool) -> Path:
    """The random checkpoint's files, linked, with a SentencePiece tokenizer trained for the run."""
    from helpers.spm import train_pegasus_spm

    if not (folder / "spiece.model").exists():
        weights = Path(ensure_checkpoint(checkpoint_folder(tiny), tiny=tiny))
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "model.safetensors"):
            if not (folder / name).exists():
                (folder / name).symlink_to(weights / name)
        train_pegasus_spm(folder, vocab_size=300 if tiny else 2000)
    return folder


def prepared_papers(folder: Path, count: int, *, tiny: bool) -> Path:
    """`count` typeset two-column papers: of five pages (about 4,800 tokens, cut to the model's 4096), or of two
    (--tiny)."""
    from helpers.pdfs import typeset_paper

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        path = folder / f"paper-{index:03d}.pdf"
        if not path.exists():
            sections = 1 if tiny else 6
            path.write_bytes(typeset_paper(seed=100 + index, columns=2, sections=sections).pdf)
    return folder


if __name__ == "__main__":
    main()
