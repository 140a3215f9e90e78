"""torch.compile: the encoder compiles without graph breaks and computes what eager mode does."""

from __future__ import annotations

import pytest
import torch

import bigbird_pegasus
from reference_models import CONFIG_A, max_diff, padded_batch


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_encoder_compiles_without_graph_breaks(mode):
    torch.manual_seed(0)
    config = bigbird_pegasus.BigBirdPegasusConfig(**dict(CONFIG_A, dropout=0.0, encoder_layers=1))
    model = getattr(bigbird_pegasus.BigBirdPegasusModel(config), mode)()
    ids, mask = padded_batch(config.vocab_size, 300, pad_last=40)
    # block-sparse layouts are per input length, so lengths stay static: one graph per length
    compiled = torch.compile(model.encoder, fullgraph=True, dynamic=False, backend="eager")
    with torch.set_grad_enabled(mode == "train"):
        expected = model.encoder(ids, mask).last_hidden_state
        assert max_diff(compiled(ids, mask).last_hidden_state, expected) <= 1e-5
        short = ids[:, :50]   # too short for block-sparse: full attention, no graph break for the warning
        assert max_diff(compiled(short).last_hidden_state, model.encoder(short).last_hidden_state) <= 1e-5
