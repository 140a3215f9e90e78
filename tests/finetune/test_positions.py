"""Beyond the checkpoint's positions: the tables grow by copying trained rows, and the saved result opens in
our loader and the reference's with the same logits."""

from __future__ import annotations

import pytest
import torch
import transformers

from bigbird_pegasus import BigBirdPegasusConfig, BigBirdPegasusForConditionalGeneration
from bigbird_pegasus.finetune import extend_position_embeddings, train
from helpers.finetune import (
    TINY, random_examples, read_log, run_options, tiny_model, write_jsonl,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_tables_grow_by_repeating_the_trained_rows():
    model = BigBirdPegasusForConditionalGeneration(BigBirdPegasusConfig(vocab_size=50, **{**TINY, "max_position_embeddings": 64}))
    encoder_rows = model.model.encoder.embed_positions.weight.detach().clone()
    decoder_rows = model.model.decoder.embed_positions.weight.detach().clone()
    extend_position_embeddings(model, 150)
    for table, old in ((model.model.encoder.embed_positions, encoder_rows),
                       (model.model.decoder.embed_positions, decoder_rows)):
        assert table.weight.shape == (150, TINY["d_model"]) and table.weight.requires_grad
        assert torch.equal(table.weight[:64], old) and torch.equal(table.weight[64:128], old)
        assert torch.equal(table.weight[128:], old[:22])
    assert model.config.max_position_embeddings == 150
    grown = model.model.encoder.embed_positions
    extend_position_embeddings(model, 100)
    assert model.model.encoder.embed_positions is grown and model.config.max_position_embeddings == 150


def test_finetuned_beyond_the_positions_opens_in_both_libraries(tmp_path):
    model = tiny_model(tmp_path / "model", max_position_embeddings=256)
    data = write_jsonl(tmp_path / "train.jsonl", random_examples(4, min_words=300, max_words=500))
    output = tmp_path / "out"
    result = train(run_options(model, data, output, max_source_length=512, max_steps=2))
    assert read_log(output, "start")[0]["max_position_embeddings"] == 512

    ours = BigBirdPegasusForConditionalGeneration.from_pretrained(result.final_model)
    reference = transformers.BigBirdPegasusForConditionalGeneration.from_pretrained(result.final_model).eval()
    assert ours.config.max_position_embeddings == reference.config.max_position_embeddings == 512
    ids = torch.randint(106, ours.config.vocab_size, (2, 450), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 400:] = 0
    labels = torch.randint(106, ours.config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        mine = ours(input_ids=ids, attention_mask=mask, labels=labels).logits
        theirs = reference(input_ids=ids, attention_mask=mask, labels=labels).logits
    assert (mine - theirs).abs().max().item() <= 1e-4
