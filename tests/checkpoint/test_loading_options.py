"""from_pretrained's keywords of the reference (config=, state_dict=, config fields, output_loading_info,
ignore_mismatched_sizes, subfolder), what save_pretrained writes per class, and the sizes models report,
against the reference."""

from __future__ import annotations

import os

import pytest
import torch
import transformers

import bigbird_pegasus
from helpers.checkpoints import CLASS_NAMES, TINY, max_difference, our_model, reference_model

TOLERANCE = 1e-4
CG = "BigBirdPegasusForConditionalGeneration"
SC = "BigBirdPegasusForSequenceClassification"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def summarizer_folder(tmp_path_factory):
    """A summarization checkpoint saved by the reference: (reference model, folder)."""
    model = reference_model(CG)
    folder = tmp_path_factory.mktemp("summarizer")
    model.save_pretrained(folder)
    return model, folder


def ours(name: str):
    return getattr(bigbird_pegasus, name)


def as_comparable(info: dict) -> dict:
    """Loading info with shapes as tuples (the reference reports torch.Size)."""
    return {"missing_keys": set(info["missing_keys"]), "unexpected_keys": set(info["unexpected_keys"]),
            "mismatched_keys": {(name, tuple(a), tuple(b)) for name, a, b in info["mismatched_keys"]},
            "error_msgs": list(info["error_msgs"])}


def test_config_and_state_dict_instead_of_files(summarizer_folder, tmp_path):
    reference, folder = summarizer_folder
    config = bigbird_pegasus.BigBirdPegasusConfig.from_pretrained(folder)
    model = ours(CG).from_pretrained(None, config=config, state_dict=reference.state_dict())
    assert max_difference(model, reference) <= TOLERANCE
    assert model.generation_config.decoder_start_token_id == config.decoder_start_token_id
    changed = bigbird_pegasus.BigBirdPegasusConfig.from_pretrained(folder, dropout=0.3)
    assert ours(CG).from_pretrained(folder, config=changed).config.dropout == 0.3
    ours(CG).from_pretrained(folder, config=changed, dropout=0.2)
    assert changed.dropout == 0.3  # the caller's config is not modified by overrides
    with pytest.raises(ValueError, match="config= and state_dict="):
        ours(CG).from_pretrained(None, config=config)


def test_loading_info_is_the_reference_s(summarizer_folder):
    _, folder = summarizer_folder
    for name in (CG, SC):
        _, theirs = getattr(transformers, name).from_pretrained(folder, output_loading_info=True)
        model, mine = ours(name).from_pretrained(folder, output_loading_info=True)
        assert as_comparable(mine) == as_comparable(theirs), name
        assert not model.training
    assert as_comparable(mine)["missing_keys"] == {f"classification_head.{layer}.{p}" for layer in ("dense", "out_proj")
                                                    for p in ("weight", "bias")}


def test_a_summarizer_over_a_classifier_checkpoint_ignores_its_head(tmp_path):
    reference_model(SC).save_pretrained(tmp_path)
    _, theirs = transformers.BigBirdPegasusForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    _, mine = ours(CG).from_pretrained(tmp_path, output_loading_info=True)
    assert as_comparable(mine) == as_comparable(theirs)
    assert {key.split(".")[0] for key in mine["unexpected_keys"]} == {"classification_head"}


def test_config_fields_as_keywords(summarizer_folder):
    _, folder = summarizer_folder
    model = ours(SC).from_pretrained(folder, num_labels=5, classifier_dropout=0.1)
    assert model.config.num_labels == 5 and model.config.classifier_dropout == 0.1
    assert model.classification_head.out_proj.out_features == 5
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    model = ours(SC).from_pretrained(folder, id2label=labels)
    assert model.config.label2id == {"negative": 0, "neutral": 1, "positive": 2}
    assert model.classification_head.out_proj.out_features == 3
    with pytest.raises(TypeError, match="no_such_option"):
        ours(CG).from_pretrained(folder, no_such_option=1)


def test_ignore_mismatched_sizes_reinitialises_a_head_of_another_size(tmp_path):
    """A classifier saved with 2 labels, loaded with 5: refused, unless asked to re-initialise its head; the
    info lists what the reference lists."""
    reference_model(SC).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"ignore_mismatched_sizes=True(.|\n)*"
                                         r"classification_head.out_proj.weight: checkpoint \(2, 32\), model \(5, 32\)"):
        ours(SC).from_pretrained(tmp_path, num_labels=5)
    model, mine = ours(SC).from_pretrained(tmp_path, num_labels=5, ignore_mismatched_sizes=True,
                                           output_loading_info=True)
    _, theirs = transformers.BigBirdPegasusForSequenceClassification.from_pretrained(
        tmp_path, num_labels=5, ignore_mismatched_sizes=True, output_loading_info=True)
    assert as_comparable(mine) == as_comparable(theirs)
    out_proj = model.classification_head.out_proj
    assert out_proj.weight.shape == (5, 32) and not out_proj.bias.any()
    assert abs(out_proj.weight.std().item() - model.config.init_std) < 0.01


def test_subfolder(tmp_path, monkeypatch):
    model = our_model(CG)
    model.save_pretrained(tmp_path / "checkpoints" / "best")
    loaded = ours(CG).from_pretrained(tmp_path / "checkpoints", subfolder="best")
    assert max_difference(loaded, model) <= TOLERANCE
    config = bigbird_pegasus.BigBirdPegasusConfig.from_pretrained(tmp_path / "checkpoints", subfolder="best")
    assert config.d_model == 32
    with pytest.raises(FileNotFoundError, match="no such checkpoint folder"):
        ours(CG).from_pretrained(tmp_path / "checkpoints", subfolder="latest")

    asked = []

    def hub_download(repo_id, filename, **options):
        asked.append(filename)
        path = tmp_path / "checkpoints" / filename
        if not path.exists():
            from huggingface_hub.errors import EntryNotFoundError
            raise EntryNotFoundError(filename)
        return str(path)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", hub_download)
    from_hub = ours(CG).from_pretrained("someone/summarizers", subfolder="best", token="hf_secret")
    assert max_difference(from_hub, model) <= TOLERANCE
    assert "best/config.json" in asked and "best/model.safetensors" in asked


def test_attention_implementation_is_accepted_and_checked(summarizer_folder):
    _, folder = summarizer_folder
    for name in ("eager", "sdpa"):
        ours(CG).from_pretrained(folder, attn_implementation=name)
    with pytest.raises(ValueError, match="attn_implementation='flash_attention_2'"):
        ours(CG).from_pretrained(folder, attn_implementation="flash_attention_2")


@pytest.mark.parametrize("name", CLASS_NAMES)
def test_generation_config_is_saved_for_the_classes_that_generate_only(tmp_path, name):
    reference_model(name).save_pretrained(tmp_path / "theirs")
    our_model(name).save_pretrained(tmp_path / "ours")
    has_generation_config = [os.path.exists(tmp_path / side / "generation_config.json") for side in ("theirs", "ours")]
    assert has_generation_config[0] == has_generation_config[1] == ours(name).can_generate()
    fresh = ours(name)(bigbird_pegasus.BigBirdPegasusConfig(**TINY))
    assert (fresh.generation_config is not None) == ours(name).can_generate()


@pytest.mark.parametrize("name", CLASS_NAMES)
def test_sizes_are_the_reference_s(name):
    reference, mine = reference_model(name), our_model(name)
    assert mine.get_memory_footprint() == reference.get_memory_footprint()
    assert mine.get_memory_footprint(return_buffers=False) == reference.get_memory_footprint(return_buffers=False)
    for options in ({}, {"exclude_embeddings": True}, {"only_trainable": True}):
        assert mine.num_parameters(**options) == reference.num_parameters(**options), options
    for model in (mine, reference):
        model.get_input_embeddings().weight.requires_grad_(False)
    assert mine.num_parameters(only_trainable=True) == reference.num_parameters(only_trainable=True)


def test_half_precision_footprint_halves():
    model = our_model(CG)
    assert model.to(torch.bfloat16).get_memory_footprint() * 2 == our_model(CG).get_memory_footprint()


def test_loading_under_a_meta_device_context_is_refused(summarizer_folder):
    """The weights would load onto no storage: the reference refuses it with the same message."""
    _, folder = summarizer_folder
    with torch.device("meta"), pytest.raises(RuntimeError, match="with a meta device context manager"):
        ours(CG).from_pretrained(folder)
    assert ours(CG).from_pretrained(folder).device.type == "cpu"  # the context is left as it was
