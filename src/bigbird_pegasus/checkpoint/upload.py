"""push_to_hub: a saved checkpoint folder uploaded to a Hugging Face hub repository through `huggingface_hub`,
as the reference does (the repository created if needed, one commit)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

DEFAULT_COMMIT_MESSAGE = "Upload model"  # the reference's message for models


def push_to_hub(save: Callable[[str], None], repo_id: str, *, commit_message: str | None = None,
                commit_description: str | None = None, private: bool | None = None, token: str | bool | None = None,
                revision: str | None = None, create_pr: bool = False) -> Any:
    """Save with `save(folder)` into a temporary folder and upload it as one commit to `repo_id` (created when
    missing, `private` as asked); `revision` names a branch (created when missing), `create_pr` opens a pull
    request instead of committing to it. Returns huggingface_hub's CommitInfo (its `.commit_url`, `.pr_url`)."""
    check_repo_id(repo_id)
    with tempfile.TemporaryDirectory() as folder:
        save(folder)
        return upload_folder(folder, repo_id, commit_message=commit_message, commit_description=commit_description,
                             private=private, token=token, revision=revision, create_pr=create_pr)


def upload_folder(folder: str | os.PathLike, repo_id: str, *, commit_message: str | None = None,
                  commit_description: str | None = None, private: bool | None = None,
                  token: str | bool | None = None, revision: str | None = None, create_pr: bool = False) -> Any:
    """Upload the files of `folder` to `repo_id` as `push_to_hub` does."""
    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision is not None and not revision.startswith("refs/pr"):
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    return api.upload_folder(repo_id=repo_id, folder_path=os.fspath(folder),
                             commit_message=commit_message or DEFAULT_COMMIT_MESSAGE,
                             commit_description=commit_description, revision=revision, create_pr=create_pr)


def check_repo_id(repo_id: str) -> None:
    if not isinstance(repo_id, str) or not repo_id.strip("/"):
        raise ValueError(f"repo_id={repo_id!r}: name the hub repository, e.g. 'your-name/bigbird-pegasus-papers'")
