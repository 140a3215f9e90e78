"""BigBirdPegasusConfig: the reference's fields and defaults, config.json both ways, validation."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from bigbird_pegasus import BigBirdPegasusConfig


def test_defaults_equal_the_reference():
    theirs = transformers.BigBirdPegasusConfig().to_dict()
    ours = BigBirdPegasusConfig().to_dict()
    for name, value in ours.items():
        if name in ("id2label",):
            continue
        assert theirs[name] == value, name
    fields = set(transformers.BigBirdPegasusConfig.__annotations__)
    assert fields <= set(ours), fields - set(ours)


def test_reference_config_json_opens_with_every_field(tmp_path):
    reference = transformers.BigBirdPegasusConfig(d_model=64, encoder_layers=3, block_size=32, num_random_blocks=2,
                                                  activation_function="gelu_fast", use_bias=True, num_labels=4)
    reference.save_pretrained(tmp_path)
    # the published checkpoints keep generation defaults in config.json
    values = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(values, length_penalty=0.8, num_beams=5)))
    ours = BigBirdPegasusConfig.from_pretrained(tmp_path)
    assert (ours.d_model, ours.encoder_layers, ours.block_size, ours.num_random_blocks) == (64, 3, 32, 2)
    assert ours.activation_function == "gelu_fast" and ours.use_bias is True
    assert ours.num_labels == 4 and ours.id2label[3] == "LABEL_3"
    assert ours.length_penalty == 0.8 and ours.num_beams == 5          # kept from config.json


def test_our_config_json_opens_in_the_reference(tmp_path):
    ours = BigBirdPegasusConfig(d_model=48, encoder_attention_heads=6, attention_type="original_full",
                                num_labels=3, custom_key="kept")
    ours.save_pretrained(tmp_path)
    theirs = transformers.BigBirdPegasusConfig.from_pretrained(tmp_path)
    assert (theirs.d_model, theirs.encoder_attention_heads, theirs.attention_type) == (48, 6, "original_full")
    assert theirs.num_labels == 3 and theirs.custom_key == "kept"
    on_disk = json.loads((tmp_path / "config.json").read_text())
    assert on_disk["model_type"] == "bigbird_pegasus" and "random_attention" not in on_disk


def test_unknown_keys_round_trip_and_aliases(tmp_path):
    config = BigBirdPegasusConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=8, foo={"a": 1})
    assert (config.d_model, config.encoder_layers, config.encoder_attention_heads) == (64, 3, 8)
    assert config.hidden_size == 64 and config.num_hidden_layers == 3
    config.save_pretrained(tmp_path)
    again = BigBirdPegasusConfig.from_pretrained(tmp_path)
    assert again.foo == {"a": 1} and again == config


def test_our_options_round_trip(tmp_path):
    BigBirdPegasusConfig(random_attention="fixed", num_random_blocks=0).save_pretrained(tmp_path)
    again = BigBirdPegasusConfig.from_pretrained(tmp_path)
    assert again.random_attention == "fixed" and again.num_random_blocks == 0


@pytest.mark.parametrize("field,value", [
    ("attention_type", "sparse"),
    ("block_size", 0),
    ("num_random_blocks", -1),
    ("encoder_attention_heads", 7),
    ("decoder_attention_heads", 5),
    ("activation_function", "gelu_newest"),
    ("random_attention", "sometimes"),
    ("dropout", 1.5),
    ("vocab_size", 0),
])
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        BigBirdPegasusConfig(**{field: value})


def test_another_model_type_is_refused(tmp_path):
    transformers.BartConfig().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="model_type 'bart'"):
        BigBirdPegasusConfig.from_pretrained(tmp_path)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint folder"):
        BigBirdPegasusConfig.from_pretrained(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        BigBirdPegasusConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        BigBirdPegasusConfig.from_pretrained(tmp_path)


def test_presets_by_name():
    assert BigBirdPegasusConfig.from_name("large").to_dict() == BigBirdPegasusConfig().to_dict()
    tiny = BigBirdPegasusConfig.from_name("tiny", encoder_layers=1)
    assert tiny.d_model == 64 and tiny.encoder_layers == 1 and tiny.vocab_size == 500
    with pytest.raises(ValueError, match="no preset named 'huge'; choose one of large, tiny"):
        BigBirdPegasusConfig.from_name("huge")


def test_num_labels_set_after_construction_is_kept():
    """It used to be stored as an unknown key: a classifier built from the config kept 2 labels."""
    import bigbird_pegasus

    ours, theirs = BigBirdPegasusConfig.from_name("tiny"), transformers.BigBirdPegasusConfig()
    for config in (ours, theirs):
        config.num_labels = 5
    assert ours.num_labels == 5 and ours.id2label == theirs.id2label and ours.label2id == theirs.label2id
    assert "num_labels" not in ours.extra
    classifier = bigbird_pegasus.BigBirdPegasusForSequenceClassification(ours)
    assert classifier.classification_head.out_proj.out_features == 5
    ours.num_labels = 5  # the same count keeps the names
    ours.id2label = {0: "a", 1: "b", 2: "c", 3: "d", 4: "e"}
    ours.num_labels = 5
    assert ours.id2label[4] == "e"


def test_json_file_dict_and_update_as_the_reference(tmp_path):
    ours = BigBirdPegasusConfig(d_model=48, encoder_attention_heads=6, custom_key="kept")
    ours.to_json_file(tmp_path / "ours.json")
    assert BigBirdPegasusConfig.from_json_file(tmp_path / "ours.json") == ours
    assert transformers.BigBirdPegasusConfig.from_json_file(tmp_path / "ours.json").d_model == 48

    values = ours.to_dict()
    mine, my_unused = BigBirdPegasusConfig.from_dict(values, return_unused_kwargs=True, num_labels=4, dropout=0.2,
                                                     not_a_field=1)
    theirs, their_unused = transformers.BigBirdPegasusConfig.from_dict(values, return_unused_kwargs=True,
                                                                       num_labels=4, dropout=0.2, not_a_field=1)
    assert my_unused == their_unused == {"not_a_field": 1}
    assert (mine.num_labels, mine.dropout) == (theirs.num_labels, theirs.dropout) == (4, 0.2)
    assert BigBirdPegasusConfig.from_dict(values, dropout=0.3).dropout == 0.3

    for config in (mine, theirs):
        config.update({"dropout": 0.25, "hidden_size": 96, "extra_key": [1, 2]})
    assert mine.dropout == theirs.dropout == 0.25 and mine.d_model == theirs.d_model == 96
    assert mine.extra_key == theirs.extra_key == [1, 2] and mine.to_dict()["extra_key"] == [1, 2]
    with pytest.raises(ValueError, match="dropout"):
        mine.update({"dropout": 2.0})


def test_run_time_switches_are_written_only_when_set(tmp_path):
    for library in (BigBirdPegasusConfig, transformers.BigBirdPegasusConfig):
        library().save_pretrained(tmp_path / "default")
        on_disk = json.loads((tmp_path / "default" / "config.json").read_text())
        assert "output_attentions" not in on_disk and "return_dict" not in on_disk
        library(output_attentions=True, return_dict=False).save_pretrained(tmp_path / "set")
        on_disk = json.loads((tmp_path / "set" / "config.json").read_text())
        assert on_disk["output_attentions"] is True and on_disk["return_dict"] is False
    assert BigBirdPegasusConfig.from_pretrained(tmp_path / "set").return_dict is False
    config = BigBirdPegasusConfig(dropout=0.2, custom_key=1)
    assert config.to_diff_dict() == {"custom_key": 1, "dropout": 0.2, "model_type": "bigbird_pegasus"}
    assert {"d_model", "dropout", "custom_key"} <= set(config) and "extra" not in set(config)
    assert config.get_text_config() is config and config.model_type == BigBirdPegasusConfig.model_type


@pytest.mark.parametrize("given", ["float16", torch.float16])
@pytest.mark.parametrize("name", ["dtype", "torch_dtype"])
def test_dtype_is_a_torch_dtype_as_the_reference_s(tmp_path, name, given):
    ours, theirs = BigBirdPegasusConfig(**{name: given}), transformers.BigBirdPegasusConfig(**{name: given})
    assert ours.dtype == theirs.dtype == torch.float16
    ours.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "float16"
    assert transformers.BigBirdPegasusConfig.from_pretrained(tmp_path).dtype == torch.float16
    ours.dtype = torch.bfloat16
    assert ours.dtype == torch.bfloat16 and BigBirdPegasusConfig().dtype is None


def test_label2id_as_the_reference_keeps_it():
    given = dict(id2label={0: "label"}, label2id={"label": "0"})
    assert BigBirdPegasusConfig(**given).label2id == transformers.BigBirdPegasusConfig(**given).label2id
    ours, theirs = BigBirdPegasusConfig(**given, num_labels=3), transformers.BigBirdPegasusConfig(**given, num_labels=3)
    assert ours.label2id == theirs.label2id == {"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2}
    assert BigBirdPegasusConfig(id2label={0: "no", 1: "yes"}).label2id == {"no": 0, "yes": 1}
