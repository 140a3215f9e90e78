"""quantize_int8 hands the memory-mapped pages of the fp32 weights it replaced back to the kernel, and a weight
someone still holds keeps its values."""

from __future__ import annotations

import ctypes
import mmap
import sys
from pathlib import Path

import pytest
import torch

import bigbird_pegasus
from bigbird_pegasus import quantize_int8
from bigbird_pegasus.modeling.replaced_weights import MADV_PAGEOUT
from helpers.reference import CONFIG_A

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="memory maps read through /proc (Linux)")


def pageout_supported() -> bool:
    """Whether this kernel knows MADV_PAGEOUT (Linux 5.4+)."""
    region = mmap.mmap(-1, mmap.PAGESIZE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(region))
    libc = ctypes.CDLL(None, use_errno=True)
    supported = libc.madvise(ctypes.c_void_p(address), ctypes.c_size_t(mmap.PAGESIZE), MADV_PAGEOUT) == 0
    region.close()
    return supported


@pytest.fixture()
def loaded(tmp_path):
    """A model of 1 MiB weight matrices loaded from its safetensors file (memory-mapped), and that file."""
    torch.manual_seed(0)
    config = bigbird_pegasus.BigBirdPegasusConfig(**dict(CONFIG_A, d_model=256, encoder_ffn_dim=1024,
                                                         decoder_ffn_dim=1024))
    bigbird_pegasus.BigBirdPegasusForConditionalGeneration(config).save_pretrained(tmp_path)
    model = bigbird_pegasus.BigBirdPegasusForConditionalGeneration.from_pretrained(tmp_path).eval()
    return model, (tmp_path / "model.safetensors").resolve()


def resident_bytes_of(file: Path) -> int:
    """The resident bytes of this process's mappings of `file` (/proc/self/smaps)."""
    total, in_file = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:  # a mapping's header: addresses ... path
            in_file = len(fields) >= 6 and Path(fields[5]) == file
        elif in_file and fields[0] == "Rss:":
            total += int(fields[1]) * 1024
    return total


def touch_every_weight(model) -> None:
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            tensor.sum()


@pytest.mark.skipif(not pageout_supported(), reason="this kernel has no MADV_PAGEOUT (Linux < 5.4)")
def test_the_replaced_weights_pages_leave_the_resident_set(loaded):
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
