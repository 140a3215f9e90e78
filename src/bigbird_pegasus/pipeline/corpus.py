"""Summarize a corpus into a JSON Lines file: a run that survives `kill -9`, resumes where it stopped, and is
shared out over shards (`--shard K/N`) and processes (torchrun).

    plan = plan_corpus(documents, output="summaries.jsonl", resume=True)
    run = summarize_corpus(plan, Summarizer(...), report=print)

Every process lists the same documents in the same order. Its shard takes every N-th of them; what the output
(and its part files) already holds is left out; the processes under torchrun share out the rest. Each reads its
documents a few batches at a time (PDFs are extracted then), summarizes them and appends each summary as soon
as its batch is done (`run_files`). When every process is done, the main one merges the summaries into the
output in input order. A document's summary does not depend on its batch, shard or process count: each is
encoded alone (see `Summarizer`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..errors import DocumentError, UserError
from ..text.documents import Document
from .run_files import Appender, existing_records, holds_anything, merge, own_file, remove_run_files
from .sharing import Processes, Shard
from .summarizer import Summarizer, Summary
from .writing import id_key

GROUP_BATCHES = 8  # documents are read (PDFs extracted) this many batches at a time, then summarized


@dataclass(frozen=True)
class CorpusPlan:
    """What this process is to do: `todo`, positions in `documents` of the ones it summarizes; `order`, the id
    key -> input position of every document of its shard (the output holds them in that order); `already_done`,
    how many of the shard's the output held when the run started."""

    documents: Sequence[Document]
    output: str
    processes: Processes
    todo: list[int]
    order: dict[str, int]
    already_done: int


@dataclass
class CorpusRun:
    """What the run did: documents summarized and skipped as unreadable (`--errors skip`) by all processes,
    this process's truncated summaries, and (main process) how many summaries the merged output holds."""

    summarized: int = 0
    skipped: int = 0
    truncated: list[Summary] = field(default_factory=list)
    written: int | None = None


def plan_corpus(documents: Sequence[Document], *, output: str, resume: bool = False, overwrite: bool = False,
                shard: Shard = Shard(), processes: Processes = Processes()) -> CorpusPlan:
    """Check `output` (.jsonl) and find this process's documents. resume: go on with the summaries the output
    and its part files hold; overwrite: delete them and start afresh; neither: refuse an output with content.
    Every process must call it (they wait for each other before anyone appends)."""
    keys = _unique_keys(documents)
    positions = shard.positions(len(documents))
    order = {keys[position]: position for position in positions}
    done = _summarized_before(output, order, processes=processes, resume=resume, overwrite=overwrite, shard=shard)
    processes.wait_for_all()
    todo = processes.share([position for position in positions if keys[position] not in done])
    return CorpusPlan(documents, output, processes, todo, order, len(done))


def summarize_corpus(plan: CorpusPlan, summarizer: Summarizer, *, skip_errors: bool = False, progress: bool = False,
                     report: Callable[[str], None]) -> CorpusRun:
    """Summarize the plan's documents, appending each summary to this process's file as soon as its batch is
    done; then (main process, once every process is done) merge them all into the output in input order.

    skip_errors: an unreadable document is reported (`report`) and left out, instead of stopping the run (the
    summaries written so far stay either way). progress: a bar over this process's documents on stderr."""
    run = CorpusRun()
    procs = plan.processes

    def finished(summary: Summary) -> None:
        appender.write(summary)
        run.summarized += 1
        if summary.truncated:
            run.truncated.append(summary)

    label = f"summarizing (process {procs.rank} of {procs.world_size})" if procs.distributed else "summarizing"
    with Appender(own_file(plan.output, procs)) as appender, \
            tqdm(total=len(plan.todo), unit="doc", desc=label, file=sys.stderr, disable=not progress,
                 dynamic_ncols=True) as bar, logging_redirect_tqdm():
        group = summarizer.batch_size * GROUP_BATCHES
        for start in range(0, len(plan.todo), group):
            texts, ids = [], []
            for position in plan.todo[start:start + group]:
                document = plan.documents[position]
                try:
                    texts.append(document.read())
                    ids.append(document.id)
                except DocumentError as error:
                    if not skip_errors:  # the documents read before it are summarized first
                        summarizer.summarize(texts, ids, progress=bar.update, finished=finished)
                        raise UserError(f"{error} (the summaries done so far are kept: fix or remove it, or add "
                                        "--errors skip, and go on with --resume)") from None
                    run.skipped += 1
                    report(f"skipped {error}")
                    bar.update(1)
            summarizer.summarize(texts, ids, progress=bar.update, finished=finished)
    run.summarized, run.skipped = procs.sum([run.summarized, run.skipped])  # once every process is done
    if procs.is_main:
        run.written = merge(plan.output, plan.order)
    return run


def _unique_keys(documents: Sequence[Document]) -> list[str]:
    """The id key of each document; a UserError when two share an id (a run resumes by id)."""
    keys = [id_key(document.id) for document in documents]
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise UserError(f"two documents have the id {key}: a JSON Lines output needs one id per document "
                            "(give each file once; with --id-field, ids that differ)")
        seen.add(key)
    return keys


def _summarized_before(output: str, order: dict[str, int], *, processes: Processes, resume: bool, overwrite: bool,
                       shard: Shard) -> set[str]:
    """The id keys already in the output and its part files (with --resume); nothing with --overwrite, which
    (main process) deletes them. An output with content and neither option is refused."""
    if overwrite:
        if processes.is_main:
            remove_run_files(output)
        return set()
    if not resume:
        if holds_anything(output):
            raise UserError(f"{output} already exists and is not empty: add --resume to go on with the run that "
                            "wrote it, or --overwrite to replace it")
        return set()
    records = existing_records(output)
    strangers = [key for key in records if key not in order]
    if strangers:
        inputs = "the inputs" if shard.count == 1 else f"the documents of shard {shard}"
        raise UserError(f"{output} holds {len(strangers)} summaries of documents that are not among {inputs} "
                        f"(e.g. id {strangers[0]}): resume with the same inputs, named as before, or start afresh "
                        "with --overwrite")
    return set(records)
