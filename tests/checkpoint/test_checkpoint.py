"""from_pretrained / save_pretrained against the reference: both directions, every format, every error."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import bigbird_pegasus
from bigbird_pegasus.checkpoint import saving
from bigbird_pegasus.checkpoint.atomic import TEMPORARY_MARK
from helpers.checkpoints import (
    CLASS_NAMES, TIED_EMBEDDING_KEYS, fake_hub_cache, max_difference, our_model, outputs, reference_model,
    stored_keys,
)

TOLERANCE = 1e-4
CG = "BigBirdPegasusForConditionalGeneration"
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test may reach the network."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def reference_folders(tmp_path_factory):
    """Folders saved by the reference, one per class: (model, folder)."""
    folders = {}
    for name in CLASS_NAMES:
        model = reference_model(name)
        folder = tmp_path_factory.mktemp(name)
        model.save_pretrained(folder)
        folders[name] = (model, folder)
    return folders


def ours(name: str):
    return getattr(bigbird_pegasus, name)


def reference(name: str):
    return getattr(transformers, name)


def reference_load(name: str, folder, **options):
    """The reference's from_pretrained, asserting that every key matched."""
    model, info = reference(name).from_pretrained(folder, output_loading_info=True, **options)
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]), info
    return model.eval()


def save_bin(state: dict[str, torch.Tensor], folder, shards: int = 1) -> None:
    """pytorch_model.bin as older hub checkpoints ship it, or `shards` .bin files with an index."""
    os.makedirs(folder, exist_ok=True)
    if shards == 1:
        torch.save(state, os.path.join(folder, "pytorch_model.bin"))
        return
    keys = list(state)
    weight_map = {}
    for i in range(shards):
        name = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        part = keys[i::shards]
        torch.save({k: state[k] for k in part}, os.path.join(folder, name))
        weight_map.update(dict.fromkeys(part, name))
    with open(os.path.join(folder, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)


def write_config(folder, name: str = CG, **changes) -> None:
    reference_model(name).config.save_pretrained(folder)
    if changes:
        path = os.path.join(folder, "config.json")
        with open(path) as f:
            values = json.load(f)
        values.update(changes)
        with open(path, "w") as f:
            json.dump(values, f)


# -- round trips ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CLASS_NAMES)
def test_reference_checkpoint_gives_identical_outputs(name, reference_folders):
    ref, folder = reference_folders[name]
    model = ours(name).from_pretrained(folder)
    assert not model.training
    assert max_difference(model, ref) <= TOLERANCE


@pytest.mark.parametrize("name", CLASS_NAMES)
def test_our_checkpoint_opens_in_reference_with_identical_outputs(name, reference_folders, tmp_path):
    model = our_model(name, seed=3)
    model.save_pretrained(tmp_path)
    assert stored_keys(tmp_path) == stored_keys(reference_folders[name][1])  # the reference's key layout
    assert max_difference(reference_load(name, tmp_path), model) <= TOLERANCE
    # float rounding only: MKL picks its kernels by the weights' address alignment, and memory-mapped weights
    # sit at other offsets than freshly allocated ones (few-row products, bigbird_pegasus/linear.py)
    assert max_difference(ours(name).from_pretrained(tmp_path), model) <= 1e-6


def test_tied_weights_are_written_once_under_the_reference_name(tmp_path):
    our_model(CG).save_pretrained(tmp_path)
    assert stored_keys(tmp_path) & set(TIED_EMBEDDING_KEYS) == {"model.shared.weight"}


def test_an_int8_quantized_model_is_refused_before_anything_is_written(tmp_path):
    model = bigbird_pegasus.quantize_int8(our_model(CG).eval())
    folder = tmp_path / "int8"
    with pytest.raises(ValueError, match=r"not floating-point tensors .*quantize_int8.*: model\.encoder\.layers\.0\."):
        model.save_pretrained(folder)
    assert not folder.exists()


def test_untied_embeddings_both_ways(tmp_path):
    ref = reference_model(CG, tie_word_embeddings=False)
    ref.save_pretrained(tmp_path / "reference")
    assert set(TIED_EMBEDDING_KEYS) <= stored_keys(tmp_path / "reference")
    model = ours(CG).from_pretrained(tmp_path / "reference")
    embeddings = [model.model.shared.weight, model.model.encoder.embed_tokens.weight,
                  model.model.decoder.embed_tokens.weight, model.lm_head.weight]
    assert len({id(p) for p in embeddings}) == 4
    assert max_difference(model, ref) <= TOLERANCE

    model.save_pretrained(tmp_path / "ours")
    assert set(TIED_EMBEDDING_KEYS) <= stored_keys(tmp_path / "ours")
    assert max_difference(reference_load(CG, tmp_path / "ours"), model) <= TOLERANCE


def test_sharded_safetensors_both_ways(tmp_path):
    ref = reference_model(CG)
    ref.save_pretrained(tmp_path / "reference", max_shard_size="20KB")
    assert max_difference(ours(CG).from_pretrained(tmp_path / "reference"), ref) <= TOLERANCE

    model = our_model(CG, seed=5)
    model.save_pretrained(tmp_path / "ours", max_shard_size="20KB")
    files = sorted(os.listdir(tmp_path / "ours"))
    shards = [f for f in files if f.endswith(".safetensors")]
    assert len(shards) > 1
    assert shards == [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    assert "model.safetensors.index.json" in files and "model.safetensors" not in files
    with open(tmp_path / "ours" / "model.safetensors.index.json") as f:
        index = json.load(f)
    assert set(index["weight_map"]) == stored_keys(tmp_path / "ours")
    assert index["metadata"]["total_size"] == sum(t.numel() * 4 for t in saving._state_to_save(model).values())
    for shard in shards:
        assert os.path.getsize(tmp_path / "ours" / shard) < 20_000 + 1_000  # the limit, plus the header
    assert max_difference(reference_load(CG, tmp_path / "ours"), model) <= TOLERANCE
    assert max_difference(ours(CG).from_pretrained(tmp_path / "ours"), model) == 0


def test_pytorch_bin_as_older_hub_checkpoints_ship_it(tmp_path):
    ref = reference_model(CG)
    state = ref.state_dict()  # every tied name, sharing one storage, as the 2021 checkpoints hold them
    assert set(TIED_EMBEDDING_KEYS) <= set(state)
    save_bin(state, tmp_path)
    write_config(tmp_path)
    model = ours(CG).from_pretrained(tmp_path)
    assert model.lm_head.weight is model.model.shared.weight
    assert max_difference(model, ref) <= TOLERANCE


def test_sharded_pytorch_bin(tmp_path):
    ref = reference_model(CG)
    save_bin(ref.state_dict(), tmp_path, shards=3)
    write_config(tmp_path)
    assert max_difference(ours(CG).from_pretrained(tmp_path), ref) <= TOLERANCE


@pytest.mark.parametrize("kept", TIED_EMBEDDING_KEYS)
def test_any_one_tied_name_fills_the_others(kept, tmp_path):
    ref = reference_model(CG)
    state = {k: v.clone() for k, v in ref.state_dict().items() if k == kept or k not in TIED_EMBEDDING_KEYS}
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    write_config(tmp_path)
    model = ours(CG).from_pretrained(tmp_path)
    assert model.lm_head.weight is model.model.shared.weight is model.model.encoder.embed_tokens.weight
    assert max_difference(model, ref) <= TOLERANCE


def test_missing_final_logits_bias_starts_at_zero(tmp_path):
    ref = reference_model(CG)
    ref.final_logits_bias.zero_()
    state = {k: v for k, v in ref.state_dict().items() if k != "final_logits_bias"}
    save_bin(state, tmp_path)
    write_config(tmp_path)
    model = ours(CG).from_pretrained(tmp_path)  # strict: the reference allows this key to be missing
    assert not model.final_logits_bias.is_meta
    assert torch.equal(model.final_logits_bias, torch.zeros(1, 100))
    assert max_difference(model, ref) <= TOLERANCE


def test_task_checkpoint_loads_into_the_bare_model_and_back(reference_folders):
    _, task_folder = reference_folders[CG]
    bare = ours("BigBirdPegasusModel").from_pretrained(task_folder)
    assert max_difference(bare, reference("BigBirdPegasusModel").from_pretrained(task_folder).eval()) <= TOLERANCE

    _, bare_folder = reference_folders["BigBirdPegasusModel"]
    task = ours(CG).from_pretrained(bare_folder)
    assert torch.equal(task.final_logits_bias, torch.zeros(1, 100))
    assert max_difference(task, reference(CG).from_pretrained(bare_folder).eval()) <= TOLERANCE


def test_loaded_weights_are_memory_mapped_real_and_tied(reference_folders):
    _, folder = reference_folders[CG]
    model = ours(CG).from_pretrained(folder)
    tensors = list(model.parameters()) + list(model.buffers())
    assert not any(t.is_meta for t in tensors)
    assert model.lm_head.weight is model.model.shared.weight
    weights_file = os.path.realpath(folder / "model.safetensors")
    mapped = [tuple(int(x, 16) for x in line.split()[0].split("-")) for line in open("/proc/self/maps")
              if line.rstrip().endswith(weights_file)]
    pointer = model.model.encoder.layers[0].fc1.weight.data_ptr()
    assert any(low <= pointer < high for low, high in mapped), "weights were copied instead of memory-mapped"


def test_meta_tensors_left_after_loading_are_an_error(reference_folders):
    class WithScratchBuffer(bigbird_pegasus.BigBirdPegasusModel):
        def __init__(self, config):
            super().__init__(config)
            self.register_buffer("scratch", torch.zeros(3), persistent=False)  # in no checkpoint

    with pytest.raises(RuntimeError, match="scratch"):
        WithScratchBuffer.from_pretrained(reference_folders["BigBirdPegasusModel"][1])


def test_generation_config_is_read_written_and_derived(reference_folders, tmp_path):
    _, folder = reference_folders["BigBirdPegasusModel"]  # the reference writes none for the bare model
    derived = ours(CG).from_pretrained(folder).generation_config
    assert (derived.eos_token_id, derived.decoder_start_token_id, derived.pad_token_id) == (1, 2, 0)

    model = our_model(CG)
    model.generation_config = model.generation_config.update(num_beams=4, max_length=77, length_penalty=0.8)
    model.save_pretrained(tmp_path)
    for loaded in (ours(CG).from_pretrained(tmp_path), reference_load(CG, tmp_path)):
        config = loaded.generation_config
        assert (config.num_beams, config.max_length, config.length_penalty) == (4, 77, 0.8)


@pytest.mark.parametrize("dtype", [torch.bfloat16, "bfloat16", torch.float16, "float16", "float32"])
def test_dtype_casts_every_tensor(dtype, reference_folders):
    ref, folder = reference_folders[CG]
    model = ours(CG).from_pretrained(folder, dtype=dtype, device="cpu")
    expected = dtype if isinstance(dtype, torch.dtype) else getattr(torch, dtype)
    assert {t.dtype for t in list(model.parameters()) + list(model.buffers())} == {expected}
    assert torch.equal(model.model.encoder.layers[0].fc1.weight, ref.model.encoder.layers[0].fc1.weight.to(expected))
    assert model.lm_head.weight is model.model.shared.weight


def test_torch_dtype_is_the_older_name_of_dtype(reference_folders):
    folder = reference_folders[CG][1]
    assert ours(CG).from_pretrained(folder, torch_dtype=torch.bfloat16).dtype == torch.bfloat16
    assert ours(CG).from_pretrained(folder, dtype="float16", torch_dtype=torch.float16).dtype == torch.float16
    with pytest.raises(ValueError, match="torch_dtype"):
        ours(CG).from_pretrained(folder, dtype=torch.float16, torch_dtype=torch.bfloat16)


@pytest.mark.parametrize("dtype", [None, "auto"])
def test_auto_dtype_keeps_the_file_dtype(dtype, tmp_path):
    model = our_model(CG).to(torch.bfloat16)
    model.save_pretrained(tmp_path)
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["dtype"] == "bfloat16"
    loaded = ours(CG).from_pretrained(tmp_path, dtype=dtype)
    assert loaded.dtype == torch.bfloat16 and loaded.final_logits_bias.dtype == torch.bfloat16
    assert reference_load(CG, tmp_path).dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", ["int64", "fp33", torch.int8])
def test_invalid_dtype_is_refused(dtype, reference_folders):
    with pytest.raises(ValueError, match="dtype"):
        ours(CG).from_pretrained(reference_folders[CG][1], dtype=dtype)


@pytest.mark.parametrize("size, expected", [(1234, 1234), ("200MB", 200 * 10**6), ("5GB", 5 * 10**9),
                                            ("2GiB", 2 * 2**30), ("1.5kb", 1500), (" 64 KiB ", 65536)])
def test_shard_sizes_are_parsed_like_the_reference(size, expected):
    assert saving.parse_size(size) == expected


@pytest.mark.parametrize("size", ["five", "10XB", "0", -1, "GB"])
def test_bad_shard_sizes_are_refused(size):
    with pytest.raises(ValueError, match="max_shard_size"):
        saving.parse_size(size)


# -- saving safely ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("old_shard_size, new_shard_size",
                         [("5GB", "5GB"), ("60KB", "60KB"), ("5GB", "60KB"), ("60KB", "5GB")])
def test_interrupted_save_never_loads_a_mix(old_shard_size, new_shard_size, tmp_path, monkeypatch):
    """Crash the save at each file operation in turn: the folder must load the old checkpoint, the new one,
    or fail. The new one differs in weights and in a config field that changes outputs, not shapes."""
    old = our_model(CG, seed=1)
    new = our_model(CG, seed=2, scale_embedding=False)
    old_outputs, new_outputs = outputs(old), outputs(new)
    real_replace, real_remove = os.replace, os.remove
    calls = {"count": 0, "fail_at": -1}

    def counted(operation):
        def run(*args, **kwargs):
            calls["count"] += 1
            if calls["count"] == calls["fail_at"]:
                raise OSError("simulated crash")
            return operation(*args, **kwargs)
        return run

    monkeypatch.setattr(os, "replace", counted(real_replace))
    monkeypatch.setattr(os, "remove", counted(real_remove))
    step, completed = 0, False
    while not completed:
        step += 1
        folder = tmp_path / f"crash-at-{step}"
        old.save_pretrained(folder, max_shard_size=old_shard_size)
        calls.update(count=0, fail_at=step)
        try:
            new.save_pretrained(folder, max_shard_size=new_shard_size)
            completed = True
        except OSError as e:
            assert "simulated crash" in str(e)
        calls["fail_at"] = -1
        assert not [f for f in os.listdir(folder) if TEMPORARY_MARK in f], "temporary files left behind"
        try:
            loaded = outputs(ours(CG).from_pretrained(folder))
        except (OSError, ValueError):
            assert not completed
            continue
        matches_old = all(torch.equal(a, b) for a, b in zip(loaded, old_outputs))
        matches_new = all(torch.equal(a, b) for a, b in zip(loaded, new_outputs))
        assert matches_new if completed else (matches_old or matches_new), f"a mix after a crash at step {step}"
    assert step > 3


def test_failed_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    old = our_model(CG, seed=1)
    old.save_pretrained(tmp_path)
    monkeypatch.setattr(saving, "save_file", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        our_model(CG, seed=2).save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "generation_config.json", "model.safetensors"]
    assert max_difference(ours(CG).from_pretrained(tmp_path), old) == 0


def test_saving_over_the_folder_it_was_loaded_from(tmp_path):
    model = our_model(CG)
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    loaded = ours(CG).from_pretrained(tmp_path)  # memory-mapped from the files it now replaces
    expected = outputs(model)
    loaded.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "generation_config.json", "model.safetensors"]
    assert all(torch.equal(a, b) for a, b in zip(outputs(loaded), expected))
    assert max_difference(ours(CG).from_pretrained(tmp_path), model) == 0
    loaded.save_pretrained(tmp_path, max_shard_size="20KB")
    assert "model.safetensors" not in os.listdir(tmp_path)
    assert max_difference(ours(CG).from_pretrained(tmp_path), model) == 0


# -- errors -----------------------------------------------------------------------------------------------

def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no such checkpoint folder: {tmp_path / 'nowhere'}"):
        ours(CG).from_pretrained(tmp_path / "nowhere")


def test_folder_without_config_names_the_file(tmp_path, reference_folders):
    os.link(reference_folders[CG][1] / "model.safetensors", tmp_path / "model.safetensors")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} has no config.json"):
        ours(CG).from_pretrained(tmp_path)


def test_folder_without_weights_names_the_files_looked_for(tmp_path):
    write_config(tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        ours(CG).from_pretrained(tmp_path)
    message = str(error.value)
    assert str(tmp_path) in message
    for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json"):
        assert name in message


def test_config_of_another_model_type_is_refused(tmp_path, reference_folders):
    write_config(tmp_path, model_type="bert")
    os.link(reference_folders[CG][1] / "model.safetensors", tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="model_type 'bert'"):
        ours(CG).from_pretrained(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_safetensors_names_the_file(damage, tmp_path, reference_folders):
    data = (reference_folders[CG][1] / "model.safetensors").read_bytes()
    damaged = {"truncated": data[: len(data) - 1000], "garbage": b"not a safetensors file" * 100, "empty": b""}
    write_config(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(damaged[damage])
    with pytest.raises(OSError, match=f"{tmp_path / 'model.safetensors'} is not a readable safetensors file"):
        ours(CG).from_pretrained(tmp_path)


def test_missing_shard_names_the_shard_and_the_index(tmp_path):
    our_model(CG).save_pretrained(tmp_path, max_shard_size="20KB")
    shard = sorted(f for f in os.listdir(tmp_path) if f.endswith(".safetensors"))[1]
    os.remove(tmp_path / shard)
    with pytest.raises(FileNotFoundError, match=f"has no {shard} .listed in .*model.safetensors.index.json"):
        ours(CG).from_pretrained(tmp_path)


def test_corrupt_bin_names_the_file(tmp_path):
    save_bin(reference_model(CG).state_dict(), tmp_path)
    data = (tmp_path / "pytorch_model.bin").read_bytes()
    (tmp_path / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    write_config(tmp_path)
    with pytest.raises(OSError, match="pytorch_model.bin cannot be read as PyTorch weights"):
        ours(CG).from_pretrained(tmp_path)


class PlantsAFile:
    """Pickled, this object would run code when unpickled: create `path`."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_bin_with_pickled_code_is_refused_without_running_it(tmp_path):
    planted = tmp_path / "planted"
    state = dict(reference_model(CG).state_dict(), payload=PlantsAFile(planted))
    save_bin(state, tmp_path)
    write_config(tmp_path)
    with pytest.raises(OSError, match="never loaded"):
        ours(CG).from_pretrained(tmp_path)
    assert not planted.exists()


def test_wrong_shape_names_the_key_and_both_shapes(tmp_path, reference_folders):
    write_config(tmp_path, d_model=64, encoder_attention_heads=2, decoder_attention_heads=2)
    os.link(reference_folders[CG][1] / "model.safetensors", tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"model\.shared\.weight: checkpoint \(100, 32\), model \(100, 64\)"):
        ours(CG).from_pretrained(tmp_path)


def test_missing_and_unexpected_keys_are_listed(tmp_path, reference_folders):
    state = load_file(reference_folders[CG][1] / "model.safetensors")
    del state["model.encoder.layers.0.fc1.weight"]
    state["model.encoder.layers.0.extra.weight"] = torch.zeros(2)
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    write_config(tmp_path)
    with pytest.raises(ValueError) as error:
        ours(CG).from_pretrained(tmp_path)
    message = str(error.value)
    assert "missing keys (1): model.encoder.layers.0.fc1.weight" in message
    assert "unexpected keys (1): model.encoder.layers.0.extra.weight" in message
    assert "strict=False" in message


def test_not_strict_warns_and_initialises_what_is_missing(tmp_path, reference_folders, caplog):
    ref, folder = reference_folders[CG]
    state = load_file(folder / "model.safetensors")
    missing = ["model.encoder.layers.0.fc1.weight", "model.encoder.layers.0.fc1.bias",
               "model.decoder.layers.0.final_layer_norm.weight", "model.decoder.layers.0.final_layer_norm.bias"]
    for name in missing:
        state[name] = state[name] + 1  # so that neither ones nor zeros could be left over from the file
    save_file({k: v for k, v in state.items() if k not in missing[:1]}, tmp_path / "model.safetensors",
              metadata={"format": "pt"})
    write_config(tmp_path)
    with caplog.at_level(logging.WARNING, logger="bigbird_pegasus"):
        model = ours(CG).from_pretrained(tmp_path, strict=False)
    assert "missing keys (1): model.encoder.layers.0.fc1.weight" in caplog.text
    fc1 = model.model.encoder.layers[0].fc1
    assert not fc1.weight.is_meta and fc1.weight.requires_grad
    assert abs(fc1.weight.std().item() - model.config.init_std) < 0.005  # the model's initialisation
    assert torch.equal(fc1.bias, state["model.encoder.layers.0.fc1.bias"])  # its loaded sibling is kept

    for name in missing:
        del state[name]
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    layer_norm = ours(CG).from_pretrained(tmp_path, strict=False).model.decoder.layers[0].final_layer_norm
    assert torch.equal(layer_norm.weight, torch.ones(32)) and torch.equal(layer_norm.bias, torch.zeros(32))


def test_not_strict_ignores_unexpected_keys(tmp_path, reference_folders, caplog):
    ref, folder = reference_folders[CG]
    state = dict(load_file(folder / "model.safetensors"), surplus=torch.zeros(3))
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    write_config(tmp_path)
    with caplog.at_level(logging.WARNING, logger="bigbird_pegasus"):
        model = ours(CG).from_pretrained(tmp_path, strict=False)
    assert "unexpected keys (1): surplus" in caplog.text
    assert max_difference(model, ref) <= TOLERANCE


def test_a_task_head_the_checkpoint_lacks_is_initialised_with_a_warning(reference_folders, caplog):
    """As the reference: a classifier over a bare (or summarization) checkpoint loads, its head initialised."""
    _, folder = reference_folders["BigBirdPegasusModel"]
    with caplog.at_level(logging.WARNING, logger="bigbird_pegasus"):
        model = ours("BigBirdPegasusForSequenceClassification").from_pretrained(folder)
    assert "missing keys (4): classification_head" in caplog.text and "a task head" in caplog.text
    dense = model.classification_head.dense
    assert not dense.weight.is_meta and abs(dense.weight.std().item() - model.config.init_std) < 0.005


# -- the hub ----------------------------------------------------------------------------------------------

def test_hub_id_offline_and_not_cached_says_how_to_fix(tmp_path):
    with pytest.raises(OSError) as error:
        ours(CG).from_pretrained("google/bigbird-pegasus-large-arxiv", cache_dir=tmp_path)
    message = str(error.value)
    assert "HF_HUB_OFFLINE is set" in message and "not in the local cache" in message
    assert "unset HF_HUB_OFFLINE" in message and "local folder" in message


def test_hub_id_not_cached_with_local_files_only_names_that_setting(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")  # local_files_only alone keeps the hub out of reach
    with pytest.raises(OSError) as error:
        ours(CG).from_pretrained("google/bigbird-pegasus-large-arxiv", cache_dir=tmp_path, local_files_only=True)
    message = str(error.value)
    assert "local_files_only=True" in message and "(local_files_only=False)" in message
    assert "HF_HUB_OFFLINE" not in message


def test_hub_id_loads_from_the_shared_cache_offline(tmp_path, reference_folders):
    ref, folder = reference_folders[CG]
    commit = fake_hub_cache(tmp_path, "google/bigbird-pegasus-large-arxiv", folder)
    for revision in (None, "main", commit):
        model = ours(CG).from_pretrained("google/bigbird-pegasus-large-arxiv", cache_dir=tmp_path,
                                         revision=revision)
        assert max_difference(model, ref) <= TOLERANCE


def test_hub_cache_under_hf_home_is_found_in_a_fresh_process(tmp_path, reference_folders):
    """HF_HOME is read by huggingface_hub at import: a fresh process sees the cache under it. The process
    also shows that loading does not import torch._dynamo (seconds and ~80 MiB for nothing)."""
    ref, folder = reference_folders[CG]
    fake_hub_cache(tmp_path / "hub", "someone/tiny-bigbird", folder)
    script = ("import sys, bigbird_pegasus as b; m = b.BigBirdPegasusForConditionalGeneration.from_pretrained("
              "'someone/tiny-bigbird'); print(m.lm_head.weight.sum().item(), 'torch._dynamo' in sys.modules)")
    env = dict(os.environ, HF_HOME=str(tmp_path), HF_HUB_OFFLINE="1", PYTHONPATH=SRC)
    env.pop("HF_HUB_CACHE", None)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    checksum, dynamo_imported = result.stdout.split()
    assert float(checksum) == pytest.approx(ref.lm_head.weight.sum().item(), abs=1e-5)
    assert dynamo_imported == "False"
