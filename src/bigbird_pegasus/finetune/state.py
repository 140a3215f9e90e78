"""Training checkpoints: written atomically, found, pruned, checked and read back for `--resume`.

A checkpoint is a folder `checkpoint-<step>` holding the model in `save_pretrained` format, the tokenizer,
`trainer_state.pt` (optimizer, scheduler and every process's RNG states) and `trainer_state.json`
(where the data stood, and what the run was started from). It is written into a temporary folder that is
renamed into place only when complete, so a crash or a full disk never leaves a half-written checkpoint,
and the previous ones stay intact.
"""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoint.atomic import write_folder_atomically
from ..config import BigBirdPegasusConfig
from .errors import FinetuneError

CHECKPOINT_PREFIX = "checkpoint-"
PROGRESS_FILE = "trainer_state.json"
STATE_FILE = "trainer_state.pt"
# Config fields that decide the shapes of the weights: a checkpoint that differs in one of them comes
# from another model.
ARCHITECTURE_FIELDS = ("vocab_size", "d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads",
                       "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim", "max_position_embeddings",
                       "attention_type", "block_size", "num_random_blocks", "use_bias", "tie_word_embeddings")
# Options that decide which examples each step sees: resuming needs the same ones.
DATA_ORDER_OPTIONS = ("batch_size", "grad_accum", "seed", "world_size", "train")


@dataclass
class Progress:
    """How far training got: optimizer steps done, the epoch in progress and the steps done in it."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0

    def advance(self, steps_in_epoch: int) -> None:
        self.step += 1
        self.step_in_epoch += 1
        if self.step_in_epoch == steps_in_epoch:
            self.epoch, self.step_in_epoch = self.epoch + 1, 0


# -- writing ---------------------------------------------------------------------------------------------

def write_checkpoint_folder(target: Path, fill: Callable[[Path], None]) -> Path:
    """`fill` a temporary folder and rename it to `target` (see `checkpoint.atomic.write_folder_atomically`);
    an OSError becomes a FinetuneError that says the earlier checkpoints are intact."""
    try:
        return write_folder_atomically(target, fill)
    except OSError as e:
        reason = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise FinetuneError(f"could not write {target}: {reason}; earlier checkpoints are intact") from None


def checkpoint_path(output_dir: Path, step: int) -> Path:
    return output_dir / f"{CHECKPOINT_PREFIX}{step}"


def write_state(folder: Path, progress: Progress, run: dict[str, Any], optimizer: dict, scheduler: dict,
                rng_states: list[dict]) -> None:
    """trainer_state.pt and trainer_state.json of a checkpoint (the model is written by the caller)."""
    torch.save({"optimizer": optimizer, "scheduler": scheduler, "rng": rng_states}, folder / STATE_FILE)
    (folder / PROGRESS_FILE).write_text(json.dumps({"progress": asdict(progress), "run": run}, indent=2) + "\n")


def prune_checkpoints(output_dir: Path, keep_last: int) -> None:
    """Delete all but the `keep_last` newest checkpoints (a folder that cannot be deleted is left)."""
    for folder in complete_checkpoints(output_dir)[:-keep_last]:
        shutil.rmtree(folder, ignore_errors=True)


# -- reading ---------------------------------------------------------------------------------------------

def complete_checkpoints(output_dir: Path) -> list[Path]:
    """The checkpoint folders in `output_dir`, oldest first."""
    found = [path for path in output_dir.glob(f"{CHECKPOINT_PREFIX}*")
             if path.name[len(CHECKPOINT_PREFIX):].isdigit() and (path / PROGRESS_FILE).is_file()]
    return sorted(found, key=lambda path: int(path.name[len(CHECKPOINT_PREFIX):]))


def resume_folder(option: str, output_dir: Path, latest_keyword: str) -> Path:
    """The checkpoint `--resume` names: the newest in `output_dir`, or the folder given."""
    if option == latest_keyword:
        found = complete_checkpoints(output_dir)
        if not found:
            raise FinetuneError(f"--resume: {output_dir} holds no checkpoint to resume from")
        return found[-1]
    folder = Path(option)
    if not (folder / PROGRESS_FILE).is_file():
        raise FinetuneError(f"--resume {option}: not a training checkpoint (no {PROGRESS_FILE} in it)")
    return folder


def read_progress(folder: Path) -> tuple[Progress, dict[str, Any]]:
    """The Progress and the run description stored in a checkpoint."""
    values = json.loads((folder / PROGRESS_FILE).read_text())
    return Progress(**values["progress"]), values["run"]


def read_state(folder: Path) -> dict[str, Any]:
    return torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)


def check_same_run(folder: Path, run: dict[str, Any], saved_run: dict[str, Any],
                   saved_config: BigBirdPegasusConfig, config: BigBirdPegasusConfig) -> None:
    """Refuse to resume from a checkpoint of another model, or with options that change the data order."""
    shapes = [f"{name} {getattr(saved_config, name)!r} (this run: {getattr(config, name)!r})"
              for name in ARCHITECTURE_FIELDS if getattr(saved_config, name) != getattr(config, name)]
    if shapes:
        raise FinetuneError(f"--resume {folder}: the checkpoint holds a different model: {'; '.join(shapes)}")
    if saved_run["model"] != run["model"]:
        raise FinetuneError(f"--resume {folder}: the checkpoint was fine-tuned from {saved_run['model']}, "
                            f"not from --model {run['model']}")
    changed = [f"{name} {saved_run[name]!r} (now {run[name]!r})" for name in DATA_ORDER_OPTIONS
               if saved_run[name] != run[name]]
    if changed:
        raise FinetuneError(f"--resume {folder}: resuming needs the same data order, but {'; '.join(changed)}")


# -- random number generators ----------------------------------------------------------------------------

def capture_rng(device: torch.device) -> dict[str, Any]:
    """torch's generator states (and the CUDA one of `device`): the only global generators training draws from
    (dropout); the data order and the evaluation sample have generators of their own."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def seed_torch(seed: int) -> None:
    """Seed torch's generators; Python's and numpy's global ones are left to the caller (nothing here uses them)."""
    torch.manual_seed(seed)
