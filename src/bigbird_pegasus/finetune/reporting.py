"""What a run reports: every figure as one JSON line in `log.jsonl`, and a progress bar on the terminal."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

LOG_NAME = "log.jsonl"


class RunLog:
    """Appends records to `output_dir/log.jsonl` (main process only).

    On resume, records of steps after the checkpoint (written by the run that was stopped) are dropped
    first, so the log reads as one uninterrupted run."""

    def __init__(self, output_dir: Path, enabled: bool, resumed_at_step: int | None = None):
        self.path = output_dir / LOG_NAME
        self.enabled = enabled
        if enabled and resumed_at_step is not None and self.path.is_file():
            self._drop_after(resumed_at_step)

    def write(self, event: str, **figures: Any) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"event": event, **figures}) + "\n")

    def _drop_after(self, step: int) -> None:
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # the last line of a run killed while writing it
                continue
            if record.get("step", 0) <= step:
                kept.append(line)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(temporary, self.path)


class ProgressBar:
    """A tqdm bar over optimizer steps showing loss and tokens/s, and notes (evaluations, checkpoints);
    the main process prints them, the bar only when `show_bar`."""

    def __init__(self, total_steps: int, done: int, main: bool, show_bar: bool):
        self.main = main
        self.bar = tqdm(total=total_steps, initial=done, unit="step", dynamic_ncols=True, file=sys.stderr,
                        disable=not (main and show_bar))

    def step(self, loss: float, tokens_per_second: float) -> None:
        self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_second:,.0f}", refresh=False)
        self.bar.update(1)

    def note(self, text: str) -> None:
        if self.main:
            self.bar.write(text, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
