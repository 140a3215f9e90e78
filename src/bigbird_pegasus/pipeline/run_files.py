"""The JSON Lines output of a corpus run, made to survive the run being killed.

Each summary is appended to the file its process writes as soon as its batch is done, and flushed to disk: the
output itself, or under torchrun a part file beside it (`OUTPUT.part-R-of-N`, rank R of N). A run started again
with `--resume` reads what the output and every part file hold (a last line torn by the kill is left out, and
cut off before appending) and summarizes the rest. Once every document is done, the output is rewritten through
`checkpoint.atomic` with one summary per document in input order, and the part files are removed.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..checkpoint.atomic import write_file_atomically
from ..errors import UserError
from .sharing import Processes
from .summarizer import Summary
from .writing import id_key, summary_record

PART = ".part-"


@dataclass(frozen=True)
class Record:
    """One summary line of an output or part file: its id's key (`id_key`) and the line as written."""

    key: str
    line: str


def own_file(output: str, processes: Processes) -> str:
    """The file this process appends to: the output itself, or under torchrun its rank's part file."""
    if not processes.distributed:
        return output
    return f"{output}{PART}{processes.rank}-of-{processes.world_size}"


def part_files(output: str) -> list[str]:
    """The part files beside `output`, of this run or of earlier ones with another number of processes."""
    return sorted(glob.glob(f"{glob.escape(output)}{PART}*-of-*"))


def existing_records(output: str) -> dict[str, Record]:
    """The summaries that earlier runs wrote to `output` and its part files, by id key (the first of each)."""
    records: dict[str, Record] = {}
    for path in [output, *part_files(output)]:
        for record in read_records(path):
            records.setdefault(record.key, record)
    return records


def read_records(path: str) -> list[Record]:
    """The complete summary lines of a file (none when it does not exist); a last line without its line break,
    torn by a kill, is left out. A line that is not a summary raises UserError naming it."""
    try:
        with open(path, "rb") as file:
            complete = file.read().split(b"\n")[:-1]  # what follows the last line break is torn, or nothing
    except FileNotFoundError:
        return []
    records = []
    for number, raw in enumerate(complete, start=1):
        if not raw.strip():
            continue
        try:
            values = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            values = None
        if not isinstance(values, dict) or "id" not in values or "summary" not in values:
            raise UserError(f"{path}:{number}: not a summary (a JSON object with 'id' and 'summary'); fix or delete "
                            "that line, or start afresh with --overwrite")
        records.append(Record(id_key(values["id"]), raw.decode("utf-8") + "\n"))
    return records


def run_files(output: str) -> list[str]:
    """The output and its part files that exist."""
    return [path for path in [output, *part_files(output)] if os.path.exists(path)]


def holds_anything(output: str) -> bool:
    """Whether the output or a part file beside it has any content."""
    return any(os.path.getsize(path) for path in run_files(output))


def remove_run_files(output: str) -> None:
    """Delete the output and its part files (--overwrite)."""
    for path in run_files(output):
        os.unlink(path)


class Appender:
    """Appends summaries to one file, each flushed to disk as it comes; a torn last line is cut off first."""

    def __init__(self, path: str):
        _cut_torn_line(path)
        self.path = path
        self.file = open(path, "a", encoding="utf-8", newline="\n")

    def write(self, summary: Summary) -> None:
        self.file.write(summary_record(summary))
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Appender:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def merge(output: str, order: Mapping[str, int]) -> int:
    """Rewrite `output` atomically with every summary of the output and its part files in input order (`order`:
    id key -> input position; each id once), then remove the part files. Returns how many summaries it holds."""
    records = existing_records(output)
    lines = [records[key].line for key in sorted(records, key=order.__getitem__)]
    write_file_atomically(output, "".join(lines))
    for path in part_files(output):
        os.unlink(path)
    return len(lines)


def _cut_torn_line(path: str) -> None:
    """Truncate a file after its last line break (a kill may have left part of a line after it)."""
    try:
        with open(path, "rb+") as file:
            data = file.read()
            complete = data.rfind(b"\n") + 1
            if complete < len(data):
                file.truncate(complete)
    except FileNotFoundError:
        pass
