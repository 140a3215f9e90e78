"""The training loop in-process: accumulation, checkpointing options, evaluation, the log, checkpoint pruning."""

from __future__ import annotations

import pytest
import torch

from bigbird_pegasus import BigBirdPegasusForConditionalGeneration
from bigbird_pegasus.finetune import train
from bigbird_pegasus.finetune.evaluation import rouge_scores
from helpers.finetune import (
    WORDS, assert_same_weights, equal_length_examples, final_weights, random_examples, read_log,
    run_options, tiny_model, write_jsonl,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def files(tmp_path):
    model = tiny_model(tmp_path / "model", dropout=0.0)
    data = write_jsonl(tmp_path / "train.jsonl", equal_length_examples(8))
    return model, data


def test_accumulated_micro_batches_give_the_big_batch_gradient(tmp_path, files):
    model, data = files
    runs = {}
    for batch_size, grad_accum in ((4, 1), (2, 2), (1, 4)):
        output = tmp_path / f"b{batch_size}"
        train(run_options(model, data, output, batch_size=batch_size, grad_accum=grad_accum, max_steps=2))
        runs[batch_size] = final_weights(output)
    assert_same_weights(runs[4], runs[2])
    assert_same_weights(runs[4], runs[1])
    first = runs[4]["model.encoder.layers.0.fc1.weight"]
    assert not torch.equal(first, BigBirdPegasusForConditionalGeneration.from_pretrained(model)
                           .model.encoder.layers[0].fc1.weight)


def test_gradient_checkpointing_and_evaluation_do_not_change_the_run(tmp_path):
    model = tiny_model(tmp_path / "model", attention_dropout=0.1)  # dropout on: the RNG streams must agree
    data = write_jsonl(tmp_path / "train.jsonl", random_examples(6))
    validation = write_jsonl(tmp_path / "val.jsonl", random_examples(3, seed=1))
    plain = tmp_path / "plain"
    train(run_options(model, data, plain, max_steps=3))
    recomputed = tmp_path / "recomputed"
    train(run_options(model, data, recomputed, max_steps=3, gradient_checkpointing=True, validation=str(validation),
                      eval_every=1))
    assert_same_weights(final_weights(plain), final_weights(recomputed))
    assert [r["step"] for r in read_log(recomputed, "eval")] == [1, 2, 3]


def test_log_records_every_figure_and_skipped_examples(tmp_path):
    model = tiny_model(tmp_path / "model")
    examples = random_examples(5) + [{"document": "", "summary": "w1"}, {"document": "w1 w2", "summary": " "}]
    data = write_jsonl(tmp_path / "train.jsonl", examples)
    validation = write_jsonl(tmp_path / "val.jsonl", random_examples(3, seed=1) + [{"document": "", "summary": "x"}])
    output = tmp_path / "out"
    result = train(run_options(model, data, output, validation=str(validation), max_steps=4, eval_every=2,
                               save_every=1, keep_last=2, eval_samples=2))

    start, = read_log(output, "start")
    assert start["examples"] == 5 and start["skipped"] == {"empty_document": 1, "empty_summary": 1}
    assert start["validation_examples"] == 3 and start["validation_skipped"]["empty_document"] == 1
    steps = read_log(output, "train")
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    for record in steps:
        assert {"loss", "lr", "grad_norm", "tokens_per_second", "source_tokens", "target_tokens"} <= record.keys()
        assert record["loss"] > 0 and record["tokens_per_second"] > 0
    evaluations = read_log(output, "eval")
    assert [r["step"] for r in evaluations] == [2, 4]
    for record in evaluations:
        assert record["eval_loss"] > 0 and 0 <= record["rouge1"] <= 100 and 0 <= record["rougeLsum"] <= 100
    assert [r["step"] for r in read_log(output, "checkpoint")] == [1, 2, 3, 4]
    assert sorted(p.name for p in output.iterdir()) == ["checkpoint-3", "checkpoint-4", "final", "log.jsonl"]
    assert result.steps == 4 and result.evaluation == {k: v for k, v in evaluations[-1].items()
                                                       if k not in ("event", "step")}
    assert BigBirdPegasusForConditionalGeneration.from_pretrained(result.final_model).config.vocab_size == 106 + len(WORDS)


@pytest.mark.parametrize("optimizer", ["adamw", "adafactor"])
def test_bf16_label_smoothing_and_both_optimizers_learn_a_small_set(tmp_path, optimizer):
    model = tiny_model(tmp_path / "model", dropout=0.0)
    data = write_jsonl(tmp_path / "train.jsonl", random_examples(2, max_words=200))
    output = tmp_path / "out"
    train(run_options(model, data, output, optimizer=optimizer, lr=1e-2, bf16=True, label_smoothing=0.1,
                      epochs=12, warmup_steps=2))
    losses = [r["loss"] for r in read_log(output, "train")]
    assert len(losses) == 12
    assert losses[-1] < 0.7 * losses[0]


def test_rouge_scores_of_generated_summaries():
    assert rouge_scores(["w1 w2 w3", "w4 w5"], ["w1 w2 w3", "w6 w7"]) == {"rouge1": 50.0, "rouge2": 50.0,
                                                                          "rougeL": 50.0, "rougeLsum": 50.0}
