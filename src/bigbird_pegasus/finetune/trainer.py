"""The training loop behind `bigbird-pegasus finetune`: `train(options)` runs it in this process."""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..checkpoint.atomic import remove_leftovers
from ..config import BigBirdPegasusConfig
from ..heads.conditional_generation import BigBirdPegasusForConditionalGeneration
from ..text.tokenizer import PegasusTokenizer
from .data import BatchEncoder, TokenBatch, epoch_steps, micro_batches, process_share, read_jsonl
from .distributed import (
    Processes, clip_gradients, full_model, gradient_sync, load_optimizer_state, optimizer_state, processes,
    unwrap, wrap,
)
from .errors import FinetuneError
from .evaluation import generate_summaries, rouge_scores, validation_loss
from .objective import summed_loss
from .optim import build_optimizer, linear_schedule
from .options import RESUME_LATEST, TrainConfig
from .positions import extend_position_embeddings
from .reporting import ProgressBar, RunLog
from .state import (
    Progress, capture_rng, check_same_run, checkpoint_path, prune_checkpoints,
    read_progress, read_state, restore_rng, resume_folder, seed_torch, write_checkpoint_folder, write_state,
)

MODEL_CLASS = BigBirdPegasusForConditionalGeneration
FINAL_MODEL_FOLDER = "final"


@dataclass
class TrainResult:
    """Where the fine-tuned model is, after how many steps, and the last evaluation's figures."""

    final_model: str
    steps: int
    evaluation: dict[str, float]


def train(options: TrainConfig | argparse.Namespace | dict[str, Any] | list[str]) -> TrainResult:
    """Fine-tune as `bigbird-pegasus finetune` does, in this process (or in each process under torchrun).

    `options`: a TrainConfig, parsed arguments, a dict of TrainConfig fields, or a list of command-line
    arguments. Raises FinetuneError for problems with the input, the options or the output folder."""
    config = TrainConfig.from_any(options)
    config.validate()
    with processes(config.device) as procs:
        return Trainer(config, procs).run()


class Trainer:
    """One fine-tuning run in this process: data, model, optimizer and the position reached, built (or resumed)
    at construction; `run()` trains to the last step, evaluating and saving as the options say."""

    def __init__(self, config: TrainConfig, procs: Processes):
        self.config, self.procs = config, procs
        self.output_dir = Path(config.output_dir)
        resume_from = resume_folder(config.resume, self.output_dir, RESUME_LATEST) if config.resume else None
        self.train_data = read_jsonl(config.train, config.text_field, config.summary_field)
        self.validation_data = (read_jsonl(config.validation, config.text_field, config.summary_field)
                                if config.validation else None)
        tokenizer_option = f"--tokenizer {config.tokenizer}" if config.tokenizer else f"--model {config.model}"
        self.tokenizer = _opened(tokenizer_option, PegasusTokenizer.from_pretrained, config.tokenizer or config.model)
        self.encode = BatchEncoder(self.tokenizer, config.max_source_length, config.max_target_length)
        self.global_batch = config.batch_size * procs.world_size
        self.examples_per_step = self.global_batch * config.grad_accum
        self._plan: tuple[int | None, list[list[int]]] = (None, [])
        self.steps_per_epoch = len(self._epoch_plan(0))
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch

        model = self._load_model(resume_from)
        self.model_config = model.config
        self.model = wrap(model, procs, config.fsdp)
        self.optimizer = build_optimizer(self.model, config.optimizer, config.learning_rate, config.weight_decay)
        self.scheduler = linear_schedule(self.optimizer, config.warmup_steps, self.total_steps)
        self.progress = Progress()
        seed_torch(config.seed + procs.rank)
        if resume_from is not None:
            self._resume(resume_from)
        self.evaluation: dict[str, float] = {}

        if procs.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            remove_leftovers(self.output_dir)
        self.log = RunLog(self.output_dir, procs.is_main, self.progress.step if resume_from else None)
        self.bar = ProgressBar(self.total_steps, self.progress.step, procs.is_main, config.progress)
        self._announce(resume_from)

    # -- the run ---------------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        last_saved = last_evaluated = self.progress.step if self.config.resume else None
        while self.progress.step < self.total_steps:
            steps = self._epoch_plan(self.progress.epoch)
            epoch = self.progress.epoch
            figures = self._train_step(steps[self.progress.step_in_epoch])
            self.progress.advance(len(steps))
            step = self.progress.step
            self.log.write("train", step=step, epoch=epoch, **figures)
            self.bar.step(figures["loss"], figures["tokens_per_second"])
            if self.validation_data and self.config.eval_every and step % self.config.eval_every == 0:
                self.evaluate()
                last_evaluated = step
            if self.config.save_every and step % self.config.save_every == 0:
                self.save_checkpoint()
                last_saved = step
        if self.validation_data and last_evaluated != self.progress.step:
            self.evaluate()
        if last_saved != self.progress.step:
            self.save_checkpoint()
        final = self._save_final_model()
        self.bar.close()
        self.log.write("end", step=self.progress.step, final_model=str(final), **self.evaluation)
        return TrainResult(str(final), self.progress.step, self.evaluation)

    def _train_step(self, examples: list[int]) -> dict[str, float]:
        """One optimizer step over these examples: up to `grad_accum` micro-batches, each process taking its
        share of each."""
        start = time.perf_counter()
        procs, config = self.procs, self.config
        batches = [self._tokens(process_share(batch, procs.rank, procs.world_size))
                   for batch in micro_batches(examples, self.global_batch)]
        source_tokens, target_tokens = procs.sum([sum(b.source_tokens for b in batches),
                                                  sum(b.target_tokens for b in batches)])
        # DDP and FSDP average gradients over processes; scaling by world_size makes that a sum, so the
        # gradient is that of the mean loss per target token over the whole step.
        scale = procs.world_size / target_tokens
        loss_sum = 0.0
        for index, batch in enumerate(batches):
            with gradient_sync(self.model, enabled=index == len(batches) - 1):
                loss = summed_loss(self.model, config=self.model_config, batch=batch,
                                   label_smoothing=config.label_smoothing, bf16=config.bf16)
                (loss * scale).backward()
            loss_sum += loss.item()
        grad_norm = clip_gradients(self.model, config.grad_clip)
        learning_rate = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        (loss_sum,) = procs.sum([loss_sum])
        seconds = time.perf_counter() - start
        return {"loss": loss_sum / target_tokens, "lr": learning_rate, "grad_norm": grad_norm,
                "source_tokens": int(source_tokens), "target_tokens": int(target_tokens),
                "tokens_per_second": (source_tokens + target_tokens) / seconds, "seconds": seconds}

    def _tokens(self, indices: list[int]) -> TokenBatch:
        return self.encode(self.train_data.read(indices)).to(self.procs.device)

    def _epoch_plan(self, epoch: int) -> list[list[int]]:
        """The optimizer steps of `epoch` (the examples of each), computed once per epoch."""
        if self._plan[0] != epoch:
            self._plan = (epoch, epoch_steps(self.train_data.lengths, self.examples_per_step, self.procs.world_size,
                                             self.config.seed, epoch))
        return self._plan[1]

    # -- evaluation ------------------------------------------------------------------------------------

    def evaluate(self) -> dict[str, float]:
        """Validation loss (all processes) and ROUGE of generated summaries (main process); the training
        RNG streams are left untouched, so evaluating does not change the run."""
        rng = capture_rng(self.procs.device)
        self.model.eval()
        try:
            figures = {"eval_loss": validation_loss(unwrap(self.model), config=self.model_config,
                                                    data=self.validation_data, encode=self.encode,
                                                    batch_size=self.config.batch_size, procs=self.procs,
                                                    bf16=self.config.bf16)}
            figures.update(self._rouge())
        finally:
            self.model.train()
            restore_rng(rng, self.procs.device)
        self.evaluation = figures
        self.log.write("eval", step=self.progress.step, **figures)
        self.bar.note(f"step {self.progress.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))
        return figures

    def _rouge(self) -> dict[str, float]:
        """ROUGE of summaries of the same `eval_samples` validation documents at every evaluation."""
        data, config = self.validation_data, self.config
        generator = full_model(self.model, MODEL_CLASS, self.procs)
        figures = {}
        if generator is not None:
            sample = sorted(random.Random(config.seed).sample(range(len(data)), min(config.eval_samples, len(data))))
            examples = data.read(sample)
            summaries = generate_summaries(generator.eval(), encode=self.encode,
                                           documents=[e.document for e in examples],
                                           max_new_tokens=config.max_target_length, num_beams=config.eval_beams,
                                           batch_size=config.batch_size, bf16=config.bf16)
            figures = rouge_scores(summaries, [e.summary for e in examples])
        return self.procs.gather(figures)[0]

    # -- checkpoints -----------------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """checkpoint-<step>: model, tokenizer, optimizer, scheduler, data position and RNG states, written
        atomically by the main process; older checkpoints beyond --keep-last are then deleted."""
        model = full_model(self.model, MODEL_CLASS, self.procs)
        optimizer = optimizer_state(self.model, self.optimizer)
        rng_states = self.procs.gather(capture_rng(self.procs.device))

        def fill(folder: Path) -> None:
            model.save_pretrained(folder)
            self.tokenizer.save_pretrained(folder)
            write_state(folder, self.progress, self._run_description(), optimizer, self.scheduler.state_dict(),
                        rng_states)

        target = self._write_on_main(checkpoint_path(self.output_dir, self.progress.step), fill)
        if self.procs.is_main:
            prune_checkpoints(self.output_dir, self.config.keep_last)
        self.log.write("checkpoint", step=self.progress.step, path=str(target))
        return target

    def _save_final_model(self) -> Path:
        """The fine-tuned model and its tokenizer in `output_dir/final`, ready for `from_pretrained`."""
        model = full_model(self.model, MODEL_CLASS, self.procs)

        def fill(folder: Path) -> None:
            model.save_pretrained(folder)
            self.tokenizer.save_pretrained(folder)

        return self._write_on_main(self.output_dir / FINAL_MODEL_FOLDER, fill)

    def _write_on_main(self, target: Path, fill: Callable[[Path], None]) -> Path:
        """The main process writes `target` atomically; if it fails, every process raises its FinetuneError."""
        error = None
        if self.procs.is_main:
            try:
                write_checkpoint_folder(target, fill)
            except FinetuneError as e:
                error = str(e)
        error = next((e for e in self.procs.gather(error) if e), None)
        if error:
            raise FinetuneError(error)
        return target

    def _run_description(self) -> dict[str, Any]:
        """What a checkpoint records of the run, to check a resume against."""
        return {"model": _normalized_source(self.config.model), "train": os.path.abspath(self.config.train),
                "batch_size": self.config.batch_size, "grad_accum": self.config.grad_accum,
                "seed": self.config.seed, "world_size": self.procs.world_size, "options": asdict(self.config)}

    # -- start -----------------------------------------------------------------------------------------

    def _load_model(self, resume_from: Path | None) -> BigBirdPegasusForConditionalGeneration:
        """The model to train, on this process's device: --model's with its position tables grown to
        --max-source-length, or the checkpoint's when resuming (after checking that it is the same model)."""
        config = self.config
        if resume_from is None:
            model = _opened(f"--model {config.model}", MODEL_CLASS.from_pretrained, config.model)
            self.positions_grown_from = model.config.max_position_embeddings
            extend_position_embeddings(model, config.max_source_length)
        else:
            expected = _opened(f"--model {config.model}", BigBirdPegasusConfig.from_pretrained, config.model)
            expected.max_position_embeddings = max(expected.max_position_embeddings, config.max_source_length)
            check_same_run(resume_from, self._run_description(), read_progress(resume_from)[1],
                           BigBirdPegasusConfig.from_pretrained(resume_from), expected)
            model = MODEL_CLASS.from_pretrained(resume_from)
            self.positions_grown_from = model.config.max_position_embeddings
        if config.max_target_length > model.config.max_position_embeddings:
            raise FinetuneError(f"--max-target-length {config.max_target_length} is more than the model's "
                                f"{model.config.max_position_embeddings} positions")
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        return model.to(self.procs.device).train()

    def _resume(self, folder: Path) -> None:
        """Load optimizer, scheduler, data position and this process's RNG state from a checkpoint."""
        self.progress, _ = read_progress(folder)
        state = read_state(folder)
        load_optimizer_state(self.model, self.optimizer, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        restore_rng(state["rng"][self.procs.rank], self.procs.device)

    def _announce(self, resume_from: Path | None) -> None:
        """The run's first log record and notes: data counts, skipped examples, grown positions, resume."""
        data, validation = self.train_data, self.validation_data
        positions = self.model_config.max_position_embeddings
        if resume_from is not None:
            self.log.write("resume", step=self.progress.step, checkpoint=str(resume_from))
            self.bar.note(f"resuming from {resume_from} at step {self.progress.step}")
            return
        figures = {"examples": len(data), "skipped": data.skipped, "steps": self.total_steps,
                   "steps_per_epoch": self.steps_per_epoch, "processes": self.procs.world_size,
                   "examples_per_step": self.examples_per_step,
                   "parameters": unwrap(self.model).num_parameters(), "max_position_embeddings": positions}
        if validation is not None:
            figures.update(validation_examples=len(validation), validation_skipped=validation.skipped)
        self.log.write("start", step=0, options=asdict(self.config), **figures)
        if positions != self.positions_grown_from:
            self.bar.note(f"position tables extended from {self.positions_grown_from} to {positions} rows "
                          "(copies of the trained rows)")
        for name, examples in (("training", data), ("validation", validation)):
            if examples is not None and any(examples.skipped.values()):
                self.bar.note(f"{name} data: skipped {examples.skipped['empty_document']} example(s) with an "
                              f"empty document and {examples.skipped['empty_summary']} with an empty summary")


def _opened(what: str, load: Callable[[str], Any], source: str) -> Any:
    """`load(source)`, with a missing or unreadable source reported as a FinetuneError naming the option."""
    try:
        return load(source)
    except (OSError, ValueError) as e:
        raise FinetuneError(f"{what}: {e}") from None


def _normalized_source(model: str) -> str:
    """A model folder as an absolute path (a hub id unchanged), so runs from other directories compare equal."""
    return os.path.abspath(model) if os.path.isdir(model) else model
