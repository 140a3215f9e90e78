"""Find a checkpoint's files: in a local folder, or on the Hugging Face hub through its shared cache.

Hub files go through `huggingface_hub`, so `HF_HOME`, `HF_HUB_CACHE` and `HF_HUB_OFFLINE` mean what they
mean to every other library, and files a user already downloaded (with `transformers`, say) are reused.
"""

from __future__ import annotations

import os

OFFLINE_VALUES = ("1", "ON", "YES", "TRUE")


def is_local(name_or_path: str | os.PathLike) -> bool:
    """A folder that exists, or a name that can only be a path (absolute, ./, ~, or several slashes)."""
    text = str(name_or_path)
    return os.path.isdir(text) or text.startswith((".", "/", "~")) or text.count("/") > 1


def is_offline(local_files_only: bool | None = None) -> bool:
    """True when only the local cache may be used: `local_files_only`, or `HF_HUB_OFFLINE` set (read at each
    call, so setting it after import works too)."""
    return bool(local_files_only) or os.environ.get("HF_HUB_OFFLINE", "0").upper() in OFFLINE_VALUES


def describe(name_or_path: str | os.PathLike, local_files_only: bool | None = None) -> str:
    """Where files were looked for, for error messages."""
    if is_local(name_or_path):
        return f"folder {os.path.expanduser(str(name_or_path))}"
    where = f"hub repository {name_or_path!r}"
    if is_offline(local_files_only):
        where += " (offline: only the local cache was searched)"
    return where


def resolve_file(
    name_or_path: str | os.PathLike,
    filename: str,
    *,
    subfolder: str = "",
    required: bool = True,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
) -> str | None:
    """Path of `filename` in a local folder or a hub repository (downloaded into the shared cache), in its
    `subfolder` when given; `token` authenticates hub downloads (default: the logged-in user's).

    Returns None when the file does not exist and `required` is False; otherwise raises an OSError
    that names the folder or repository and the file.
    """
    if is_local(name_or_path):
        folder = os.path.expanduser(str(name_or_path))
        if subfolder:
            folder = os.path.join(folder, subfolder)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"no such checkpoint folder: {folder}")
        path = os.path.join(folder, filename)
        if os.path.isfile(path):
            return path
        if required:
            raise FileNotFoundError(f"{folder} has no {filename}")
        return None
    if subfolder:
        filename = f"{subfolder.strip('/')}/{filename}"
    return _download(str(name_or_path), filename, required, revision, cache_dir, local_files_only, token)


def _download(repo_id, filename, required, revision, cache_dir, local_files_only, token) -> str | None:
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError, HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = is_offline(local_files_only)
    try:
        return hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir,
                               local_files_only=offline, token=token)
    except LocalEntryNotFoundError:  # before EntryNotFoundError, its base class
        if not required and _cached_repo_exists(repo_id, revision, cache_dir, folder=os.path.dirname(filename)):
            return None
        if os.environ.get("HF_HUB_OFFLINE", "0").upper() in OFFLINE_VALUES:
            reason, access = "HF_HUB_OFFLINE is set", "with network access (unset HF_HUB_OFFLINE)"
        elif local_files_only:
            reason, access = "local_files_only=True", "with network access (local_files_only=False)"
        else:
            reason, access = "the hub could not be reached", "where the hub can be reached"
        raise OSError(
            f"cannot load {filename} of {repo_id!r}: {reason} and it is not in the local cache "
            f"({cache_dir or constants.HF_HUB_CACHE}), and no local folder has that name. Download it once "
            f"{access}, or pass the path of a local folder that holds the checkpoint."
        ) from None
    except EntryNotFoundError:
        if required:
            raise FileNotFoundError(f"hub repository {repo_id!r} has no {filename}") from None
        return None
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise OSError(f"{repo_id!r} is neither a local folder nor a hub repository you can access "
                      f"({type(e).__name__}; for a private or gated one, log in with `hf auth login`)") from None
    except HFValidationError:
        raise OSError(f"{repo_id!r} is neither a local folder nor a valid hub repository id") from None


def _cached_repo_exists(repo_id: str, revision: str | None, cache_dir, *, folder: str) -> bool:
    """Whether the cache holds this revision of the repository (the config.json of `folder` in it)."""
    from huggingface_hub import try_to_load_from_cache

    config_path = f"{folder}/config.json" if folder else "config.json"
    found = try_to_load_from_cache(repo_id, config_path, cache_dir=cache_dir, revision=revision)
    return isinstance(found, str)
