"""quantize_int8 drops the memory-mapped pages of the fp32 weights it replaced from the process, leaves them in
the page cache, and a weight someone still holds keeps its values."""

from __future__ import annotations

import mmap
import sys

import pytest
import torch

import bigbird_pegasus
from bigbird_pegasus import quantize_int8
from helpers.pages import cached_fraction_of, resident_bytes_of
from helpers.reference import CONFIG_A

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="memory maps read through /proc (Linux)")


@pytest.fixture()
def loaded(tmp_path):
    """A model of 1 MiB weight matrices loaded from its safetensors file (memory-mapped), and that file."""
    torch.manual_seed(0)
    config = bigbird_pegasus.BigBirdPegasusConfig(**dict(CONFIG_A, d_model=256, encoder_ffn_dim=1024,
                                                         decoder_ffn_dim=1024))
    bigbird_pegasus.BigBirdPegasusForConditionalGeneration(config).save_pretrained(tmp_path)
    model = bigbird_pegasus.BigBirdPegasusForConditionalGeneration.from_pretrained(tmp_path).eval()
    return model, (tmp_path / "model.safetensors").resolve()


def touch_every_weight(model) -> None:
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            tensor.sum()


def test_the_replaced_weights_pages_leave_the_resident_set_not_the_page_cache(loaded):
    model, file = loaded
    touch_every_weight(model)
    tensors = len([*model.parameters(), *model.buffers()])
    before = resident_bytes_of(file)
    assert before >= 0.9 * file.stat().st_size                  # every weight was read in

    quantize_int8(model)

    still_from_file = sum(t.untyped_storage().nbytes() for t in (*model.parameters(), *model.buffers())
                          if t.dtype == torch.float32 and t.numel())
    after = resident_bytes_of(file)
    assert after <= still_from_file + 2 * mmap.PAGESIZE * tensors  # and the partial pages at the tensors' ends
    assert after < 0.5 * before                                  # the replaced fp32 matrices were most of it
    assert cached_fraction_of(file) >= 0.9                       # a later load reads no disk


def test_a_weight_still_held_keeps_its_values(loaded):
    model, _ = loaded
    changed = model.model.decoder.layers[0].fc1.weight          # written in place: copied-on-write pages
    untouched = model.model.encoder.layers[0].fc2.weight        # the file's own pages
    with torch.no_grad():
        changed.mul_(2)
    expected_changed, expected_untouched = changed.clone(), untouched.clone()

    quantize_int8(model)

    assert type(model.model.decoder.layers[0].fc1) is not bigbird_pegasus.modeling.linear.Linear
    assert torch.equal(changed, expected_changed)
    assert torch.equal(untouched, expected_untouched)
