"""push_to_hub through huggingface_hub, without a network: a fake HfApi records the calls and the folder it is
asked to upload, which must be a checkpoint the reference opens."""

from __future__ import annotations

import json
import os
import shutil
from types import SimpleNamespace

import pytest
import transformers

import bigbird_pegasus
from helpers.checkpoints import max_difference, our_model

TOLERANCE = 1e-4


class FakeHfApi:
    """Records every call; keeps a copy of each uploaded folder (the real one is temporary)."""

    calls: list[tuple[str, dict]] = []
    uploads: list[str] = []
    copies_to: str = ""

    def __init__(self, token=None):
        self.calls.append(("HfApi", {"token": token}))

    def create_repo(self, repo_id, **options):
        self.calls.append(("create_repo", {"repo_id": repo_id, **options}))
        return SimpleNamespace(repo_id=repo_id if "/" in repo_id else f"me/{repo_id}")

    def create_branch(self, repo_id, **options):
        self.calls.append(("create_branch", {"repo_id": repo_id, **options}))

    def upload_folder(self, **options):
        self.calls.append(("upload_folder", options))
        copy = os.path.join(self.copies_to, f"upload-{len(self.uploads)}")
        shutil.copytree(options["folder_path"], copy)
        self.uploads.append(copy)
        return SimpleNamespace(commit_url=f"https://huggingface.co/{options['repo_id']}/commit/1", pr_url=None)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    monkeypatch.setattr("huggingface_hub.HfApi", FakeHfApi)
    FakeHfApi.calls, FakeHfApi.uploads, FakeHfApi.copies_to = [], [], str(tmp_path)
    return FakeHfApi


def calls_named(hub, name):
    return [options for call, options in hub.calls if call == name]


def test_push_to_hub_uploads_a_checkpoint_the_reference_opens(hub):
    model = our_model("BigBirdPegasusForConditionalGeneration")
    commit = model.push_to_hub("someone/bigbird-papers", private=True, token="hf_token", max_shard_size="100KB")
    assert commit.commit_url.startswith("https://huggingface.co/someone/bigbird-papers/")
    assert calls_named(hub, "HfApi") == [{"token": "hf_token"}]
    assert calls_named(hub, "create_repo") == [{"repo_id": "someone/bigbird-papers", "private": True, "exist_ok": True}]
    assert calls_named(hub, "create_branch") == []
    (upload,) = calls_named(hub, "upload_folder")
    assert upload["repo_id"] == "someone/bigbird-papers" and upload["commit_message"] == "Upload model"
    assert upload["revision"] is None and upload["create_pr"] is False
    assert not os.path.exists(upload["folder_path"])  # the temporary folder is gone after the upload
    (folder,) = hub.uploads
    names = sorted(os.listdir(folder))
    assert "config.json" in names and "generation_config.json" in names and "model.safetensors.index.json" in names
    with open(os.path.join(folder, "config.json")) as f:
        assert json.load(f)["architectures"] == ["BigBirdPegasusForConditionalGeneration"]
    reference = transformers.BigBirdPegasusForConditionalGeneration.from_pretrained(folder)
    assert max_difference(reference.eval(), model) <= TOLERANCE


def test_a_branch_a_pull_request_and_a_message(hub):
    model = our_model("BigBirdPegasusForSequenceClassification")
    model.push_to_hub("someone/classifier", revision="v2", create_pr=True, commit_message="Five labels",
                      commit_description="fine-tuned")
    assert calls_named(hub, "create_branch") == [{"repo_id": "someone/classifier", "branch": "v2", "exist_ok": True}]
    (upload,) = calls_named(hub, "upload_folder")
    assert upload["commit_message"] == "Five labels" and upload["commit_description"] == "fine-tuned"
    assert upload["revision"] == "v2" and upload["create_pr"] is True
    assert "generation_config.json" not in os.listdir(hub.uploads[0])


def test_save_pretrained_can_push_the_folder_it_wrote(hub, tmp_path):
    model = our_model("BigBirdPegasusModel")
    model.save_pretrained(tmp_path / "bare-model", push_to_hub=True, private=False)
    (create,) = calls_named(hub, "create_repo")
    assert create["repo_id"] == "bare-model" and create["private"] is False  # the folder's name, as the reference
    (upload,) = calls_named(hub, "upload_folder")
    assert upload["repo_id"] == "me/bare-model" and upload["folder_path"] == str(tmp_path / "bare-model")
    model.save_pretrained(tmp_path / "elsewhere", push_to_hub=True, repo_id="someone/bare")
    assert calls_named(hub, "create_repo")[-1]["repo_id"] == "someone/bare"
    loaded = bigbird_pegasus.BigBirdPegasusModel.from_pretrained(hub.uploads[-1])
    assert max_difference(loaded, model) <= TOLERANCE


def test_bad_arguments_raise_before_any_upload(hub, tmp_path):
    model = our_model("BigBirdPegasusModel")
    with pytest.raises(ValueError, match="repo_id=''"):
        model.push_to_hub("")
    with pytest.raises(TypeError, match="privat"):
        model.save_pretrained(tmp_path, push_to_hub=True, privat=True)
    assert calls_named(hub, "upload_folder") == []
