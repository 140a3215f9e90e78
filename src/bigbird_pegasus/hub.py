"""Find a checkpoint's files: in a local folder, or on the Hugging Face hub through its shared cache."""

from __future__ import annotations

import os


def is_local(name_or_path: str | os.PathLike) -> bool:
    """A folder that exists, or a name that can only be a path (absolute, ./, ~, or several slashes)."""
    text = str(name_or_path)
    return os.path.isdir(text) or text.startswith((".", "/", "~")) or text.count("/") > 1


def resolve_file(
    name_or_path: str | os.PathLike,
    filename: str,
    *,
    required: bool = True,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
) -> str | None:
    """Path of `filename` in a local folder or a hub repository (downloaded into the shared cache).

    Returns None when the file does not exist and `required` is False; otherwise raises an OSError
    that names the folder or repository and the file.
    """
    if is_local(name_or_path):
        folder = os.path.expanduser(str(name_or_path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"no such checkpoint folder: {folder}")
        path = os.path.join(folder, filename)
        if os.path.isfile(path):
            return path
        if required:
            raise FileNotFoundError(f"{folder} has no {filename}")
        return None
    return _download(str(name_or_path), filename, required, revision, cache_dir, local_files_only)


def _download(repo_id, filename, required, revision, cache_dir, local_files_only) -> str | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError,
    )

    offline = os.environ.get("HF_HUB_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE")
    try:
        return hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir,
                               local_files_only=bool(local_files_only) or offline)
    except EntryNotFoundError:
        if required:
            raise FileNotFoundError(f"hub repository {repo_id} has no {filename}") from None
        return None
    except LocalEntryNotFoundError:
        if not required and _cached_repo_exists(repo_id, cache_dir):
            return None
        reason = "HF_HUB_OFFLINE is set" if offline else "the hub could not be reached"
        raise OSError(
            f"cannot load {filename} of {repo_id!r}: {reason} and it is not in the local cache. "
            f"Connect to the internet once (unset HF_HUB_OFFLINE) to download it, or pass a local folder "
            f"that holds the checkpoint."
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise OSError(f"{repo_id!r} is neither a local folder nor a hub repository ({type(e).__name__})") from None


def _cached_repo_exists(repo_id: str, cache_dir) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir), str)
