"""from_pretrained / save_pretrained in the reference's files and key names.

Loading builds the model on the meta device and assigns the file's memory-mapped tensors to it, so it
holds about one copy of the weights. Saving writes every file under a temporary name first and renames
it into place, so an interrupted save leaves a folder that loads the old or the new checkpoint, or that
fails to load, never one that loads a mix of the two.
"""

from __future__ import annotations

import collections
import copy
import itertools
import json
import logging
import os
import re
import uuid
import zipfile
from collections.abc import Callable
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.overrides import TorchFunctionMode

from .config import CONFIG_NAME, BigBirdPegasusConfig
from .generation_config import GENERATION_CONFIG_NAME, GenerationConfig
from .hub import describe, resolve_file

logger = logging.getLogger("bigbird_pegasus")

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
BIN_WEIGHTS_NAME = "pytorch_model.bin"
BIN_WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
# Looked for in this order, as the reference does: safetensors before pickled .bin files.
WEIGHT_FILES = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, BIN_WEIGHTS_NAME, BIN_WEIGHTS_INDEX_NAME)
SHARD_NAME = "model-{index:05d}-of-{count:05d}.safetensors"
SHARD_PATTERN = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
# The reference's `base_model_prefix`: the task classes hold the bare model under `model`.
BASE_MODEL_PREFIX = "model."
# Keys a checkpoint may lack (the reference's `_keys_to_ignore_on_load_missing`); they start at zero.
OPTIONAL_KEYS = ("final_logits_bias",)
DEFAULT_MAX_SHARD_SIZE = "5GB"
# Decimal units as the reference reads them ("5GB" is 5 * 10**9 bytes); binary ones with "i".
SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
              "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
LISTED_KEYS = 20  # error messages list this many keys, then a count


# -- loading ----------------------------------------------------------------------------------------------

def load_pretrained(cls, name_or_path: str | os.PathLike, *, dtype: torch.dtype | str | None = None,
                    device: str | torch.device | None = None, revision: str | None = None,
                    cache_dir: str | os.PathLike | None = None, local_files_only: bool | None = None,
                    strict: bool = True, torch_dtype: torch.dtype | str | None = None):
    """A `cls` model, in eval mode, from a folder or hub id saved by this library or by `transformers`.

    dtype: torch.float32 / bfloat16 / float16 or their names; None or "auto" keep the dtype of the file;
    `torch_dtype` is its older `transformers` name (both at once must agree).
    device: where the model goes after loading. revision, cache_dir, local_files_only: as in
    `huggingface_hub` (HF_HUB_OFFLINE=1 also keeps it to the local cache). strict=False loads a checkpoint
    with missing or unexpected keys, with a warning; missing weights get the model's initialisation.
    """
    hub = dict(revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    requested_dtype = _requested_dtype(dtype)
    if torch_dtype is not None:
        if dtype is not None and requested_dtype != _requested_dtype(torch_dtype):
            raise ValueError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree: pass only dtype")
        requested_dtype = _requested_dtype(torch_dtype)
    config = BigBirdPegasusConfig.from_pretrained(name_or_path, **hub)
    state = read_weights(find_weight_files(name_or_path, **hub))
    with torch.device("meta"), _SkipRandomInitOnMeta():
        model = cls(config)
    state = _in_model_layout(state, model)
    source = describe(name_or_path, local_files_only)
    missing = _check_keys(state, model, strict, source)
    load_dtype = requested_dtype or _stored_dtype(state)
    model.load_state_dict(_cast(state, load_dtype), strict=False, assign=True)
    del state  # the uncast tensors: a cast copy must not sit beside them any longer than needed
    _initialise_missing(model, missing, load_dtype)
    model.tie_weights()
    _check_materialised(model, source)
    model.generation_config = _generation_config(name_or_path, config, hub)
    if device is not None:
        model.to(device)
    return model.eval()


class _SkipRandomInitOnMeta(TorchFunctionMode):
    """Skips `normal_` on meta tensors while a model is built for loading: its values are about to be
    replaced, and torch runs `normal_` on meta through a path that imports torch._dynamo (~2 s and ~80 MiB,
    once per process)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", None) == "normal_":
            tensor = args[0] if args else kwargs.get("tensor")  # torch.nn.init passes it by keyword
            if isinstance(tensor, torch.Tensor) and tensor.is_meta:
                return tensor
        return func(*args, **kwargs)


def find_weight_files(name_or_path: str | os.PathLike, **hub: Any) -> list[str]:
    """Paths of a checkpoint's weights: its single file, or the shards its index lists."""
    for name in WEIGHT_FILES:
        path = resolve_file(name_or_path, name, required=False, **hub)
        if path is None:
            continue
        if not name.endswith(".index.json"):
            return [path]
        shards = []
        for shard in _shard_names(path):
            try:
                shards.append(resolve_file(name_or_path, shard, **hub))
            except FileNotFoundError as e:
                raise FileNotFoundError(f"{e} (listed in {path})") from None
        return shards
    raise FileNotFoundError(f"{describe(name_or_path, hub.get('local_files_only'))} has no weights: "
                            f"looked for {', '.join(WEIGHT_FILES)}")


def read_weights(paths: list[str]) -> dict[str, torch.Tensor]:
    """All tensors of these safetensors or .bin files, memory-mapped where the format allows."""
    state: dict[str, torch.Tensor] = {}
    for path in paths:
        state.update(_read_safetensors(path) if path.endswith(".safetensors") else _read_bin(path))
    return state


def _shard_names(index_path: str) -> list[str]:
    try:
        with open(index_path, encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
        return sorted(set(weight_map.values()))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{index_path} is not a shard index (JSON with a 'weight_map' of key -> file): "
                         f"{type(e).__name__}: {e}") from None


def _read_safetensors(path: str) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)  # tensors backed by a private memory map of the file
    except SafetensorError as e:
        raise OSError(f"{path} is not a readable safetensors file (corrupt or truncated?): {e}") from e


def _read_bin(path: str) -> dict[str, torch.Tensor]:
    """A pickled state dict, unpickled by torch's weights-only loader: no pickled code ever runs."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OSError(f"{path} cannot be read as PyTorch weights: it is corrupt or truncated, or it holds pickled "
                      f"objects other than tensors, which are never loaded (torch.load(weights_only=True)). "
                      f"{type(e).__name__}: {first_line}") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return state


def _requested_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A floating torch.dtype, or None for "keep the file's" (None or "auto")."""
    if dtype is None or dtype == "auto":
        return None
    resolved = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(f"dtype={dtype!r}: expected 'auto', a floating torch.dtype, or its name "
                         "('float32', 'bfloat16', 'float16')")
    return resolved


def _stored_dtype(state: dict[str, torch.Tensor]) -> torch.dtype:
    """The floating dtype that holds most of the file's weights."""
    elements: collections.Counter[torch.dtype] = collections.Counter()
    for tensor in state.values():
        if tensor.is_floating_point():
            elements[tensor.dtype] += tensor.numel()
    return elements.most_common(1)[0][0] if elements else torch.get_default_dtype()


def _cast(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floating tensors in `dtype`; a tensor stored under several (tied) names is cast once."""
    cast: dict[int, torch.Tensor] = {}
    for tensor in state.values():
        if id(tensor) not in cast:
            cast[id(tensor)] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    return {name: cast[id(tensor)] for name, tensor in state.items()}


def tied_groups(model: nn.Module) -> list[list[str]]:
    """State-dict names that share one tensor, canonical name first (the one the reference saves)."""
    names: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        names.setdefault(id(tensor), []).append(name)
    return [sorted(group, key=lambda n: ("shared" not in n, n)) for group in names.values() if len(group) > 1]


def _in_model_layout(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The file's tensors under the model's names.

    As the reference's base_model_prefix logic: a bare-model checkpoint loads into a task class (keys gain
    `model.`), and a task checkpoint into the bare model (keys lose it; the head's weights are left out).
    Tied names (shared embedding, encoder/decoder embed_tokens, lm_head) all get whichever of them the file
    stores, the canonical one first.
    """
    expected = model.state_dict().keys()
    stored_prefixed = any(name.startswith(BASE_MODEL_PREFIX) for name in state)
    expects_prefixed = any(name.startswith(BASE_MODEL_PREFIX) for name in expected)
    if expects_prefixed and not stored_prefixed:
        state = {BASE_MODEL_PREFIX + name: tensor for name, tensor in state.items()}
    elif stored_prefixed and not expects_prefixed:
        head = sorted(name for name in state if not name.startswith(BASE_MODEL_PREFIX))
        if head:
            logger.info("loading the bare model from a task checkpoint: its head weights are not used: %s",
                        ", ".join(head))
        state = {name.removeprefix(BASE_MODEL_PREFIX): tensor for name, tensor in state.items()
                 if name.startswith(BASE_MODEL_PREFIX)}
    for group in tied_groups(model):
        stored = [name for name in group if name in state]
        if stored:
            for name in group:
                state[name] = state[stored[0]]
    return state


def _check_keys(state: dict[str, torch.Tensor], model: nn.Module, strict: bool, source: str) -> list[str]:
    """Raise on wrong shapes, and on missing or unexpected keys when `strict` (else warn and drop the
    unexpected ones from `state`). Returns the model's names that the file does not fill."""
    expected = model.state_dict()
    wrong_shapes = [f"{name}: checkpoint {tuple(state[name].shape)}, model {tuple(tensor.shape)}"
                    for name, tensor in expected.items() if name in state and state[name].shape != tensor.shape]
    if wrong_shapes:
        raise ValueError(f"{source} holds tensors of the wrong shape for {type(model).__name__} "
                         f"(is config.json the one the weights were saved with?):\n  " + "\n  ".join(wrong_shapes))
    missing = [name for name in expected if name not in state and name not in OPTIONAL_KEYS]
    unexpected = [name for name in state if name not in expected]
    if missing or unexpected:
        message = f"{source} does not match {type(model).__name__}:"
        if missing:
            message += f"\n  missing keys ({len(missing)}): {_listing(missing)}"
        if unexpected:
            message += f"\n  unexpected keys ({len(unexpected)}): {_listing(unexpected)}"
        if strict:
            raise ValueError(message + "\nPass strict=False to load it anyway (missing weights are then "
                             "initialised, unexpected ones ignored).")
        logger.warning(message + "\nLoading anyway (strict=False): missing weights are initialised, "
                       "unexpected ones ignored.")
        for name in unexpected:
            del state[name]
    return [name for name in expected if name not in state]


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:LISTED_KEYS])
    return shown if len(names) <= LISTED_KEYS else f"{shown}, ... and {len(names) - LISTED_KEYS} more"


def _initialise_missing(model: nn.Module, names: list[str], dtype: torch.dtype) -> None:
    """Give tensors the file lacks their initial values (the model's `init_weights` for a layer's weights,
    zeros for buffers such as final_logits_bias) instead of leaving them on the meta device."""
    for name in names:
        owner_name, _, attribute = name.rpartition(".")
        owner = model.get_submodule(owner_name)
        placeholder = getattr(owner, attribute)
        if not placeholder.is_meta:  # a tied name whose tensor is already done
            continue
        if next(owner.children(), None) is None:  # a layer: initialise a copy of it as the model does
            fresh = copy.deepcopy(owner).to_empty(device="cpu")
            model.init_weights(fresh)
            value = getattr(fresh, attribute).detach().to(dtype)
        else:
            value = torch.zeros(placeholder.shape, dtype=dtype)
        if attribute in owner._parameters:
            owner._parameters[attribute] = nn.Parameter(value, requires_grad=placeholder.requires_grad)
        else:
            owner._buffers[attribute] = value


def _check_materialised(model: nn.Module, source: str) -> None:
    tensors = itertools.chain(model.named_parameters(remove_duplicate=False),
                              model.named_buffers(remove_duplicate=False))
    on_meta = [name for name, tensor in tensors if tensor.is_meta]
    if on_meta:
        raise RuntimeError(f"loading {source} left {len(on_meta)} tensor(s) without values (still on the meta "
                           f"device): {_listing(on_meta)}")


def _generation_config(name_or_path, config: BigBirdPegasusConfig, hub: dict[str, Any]) -> GenerationConfig:
    """generation_config.json when the checkpoint has one, else the defaults of the model config."""
    path = resolve_file(name_or_path, GENERATION_CONFIG_NAME, required=False, **hub)
    return GenerationConfig.from_json_file(path) if path else GenerationConfig.from_model_config(config)


# -- saving -----------------------------------------------------------------------------------------------

def save_pretrained(model: nn.Module, folder: str | os.PathLike, *,
                    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE) -> None:
    """config.json, generation_config.json and safetensors weights that `transformers` opens too.

    Weights larger than `max_shard_size` (bytes, or a string such as "200MB" or "2GiB") are split into
    `model-00001-of-0000N.safetensors` files listed in `model.safetensors.index.json`. Tied weights are written
    once, under the reference's name (`model.shared.weight`).
    """
    folder = os.fspath(folder)
    shards = _plan_shards(_state_to_save(model), parse_size(max_shard_size))
    os.makedirs(folder, exist_ok=True)
    staged: dict[str, str] = {}  # final name -> temporary path
    try:
        if len(shards) == 1:
            staged[SAFE_WEIGHTS_NAME] = _stage(folder, SAFE_WEIGHTS_NAME, _safetensors_writer(shards[0]))
        else:
            names = [SHARD_NAME.format(index=i + 1, count=len(shards)) for i in range(len(shards))]
            for name, shard in zip(names, shards):
                staged[name] = _stage(folder, name, _safetensors_writer(shard))
            staged[SAFE_WEIGHTS_INDEX_NAME] = _stage(folder, SAFE_WEIGHTS_INDEX_NAME,
                                                     _text_writer(_index_json(model, names, shards)))
        staged[CONFIG_NAME] = _stage(folder, CONFIG_NAME, _text_writer(_config_json(model)))
        staged[GENERATION_CONFIG_NAME] = _stage(folder, GENERATION_CONFIG_NAME,
                                                _text_writer(_json(model.generation_config.to_dict())))
        _publish(folder, staged)
    finally:
        for path in staged.values():
            if os.path.exists(path):
                os.remove(path)


def parse_size(size: int | str) -> int:
    """Bytes from an int or a string such as "5GB" (10**9 bytes per GB, as the reference) or "2GiB"."""
    if isinstance(size, int) and not isinstance(size, bool):
        number = size
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(size))
        unit = match.group(2).upper() if match else ""
        if not match or (unit or "B") not in SIZE_UNITS:
            raise ValueError(f"max_shard_size={size!r}: expected bytes (an int) or a size such as '200MB' or '2GiB'")
        number = int(float(match.group(1)) * SIZE_UNITS[unit or "B"])
    if number <= 0:
        raise ValueError(f"max_shard_size={size!r} must be positive")
    return number


def _state_to_save(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without tied duplicates, in contiguous tensors."""
    state = model.state_dict()
    for _, *aliases in tied_groups(model):
        for name in aliases:
            state.pop(name)
    on_meta = [name for name, tensor in state.items() if tensor.is_meta]
    if on_meta:
        raise ValueError(f"cannot save tensors that have no values (on the meta device): {_listing(on_meta)}")
    return {name: tensor.contiguous() for name, tensor in state.items()}


def _plan_shards(state: dict[str, torch.Tensor], limit: int) -> list[dict[str, torch.Tensor]]:
    """Consecutive groups of tensors of at most `limit` bytes each (a larger tensor gets a shard of its own)."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    return shards


def _index_json(model: nn.Module, names: list[str], shards: list[dict[str, torch.Tensor]]) -> str:
    weight_map = {key: name for name, shard in zip(names, shards) for key in shard}
    total_size = sum(t.numel() * t.element_size() for shard in shards for t in shard.values())
    metadata = {"total_size": total_size, "total_parameters": sum(p.numel() for p in model.parameters())}
    return _json({"metadata": metadata, "weight_map": dict(sorted(weight_map.items()))})


def _config_json(model: nn.Module) -> str:
    """config.json as the reference writes it: with the model's class and dtype."""
    values = model.config.to_dict()
    values.pop("torch_dtype", None)  # the reference's older name for `dtype`
    values["dtype"] = str(model.dtype).removeprefix("torch.")
    values["architectures"] = [type(model).__name__]
    return _json(values)


def _json(values: dict[str, Any]) -> str:
    return json.dumps(values, indent=2, sort_keys=True) + "\n"


def _safetensors_writer(shard: dict[str, torch.Tensor]) -> Callable[[str], None]:
    return lambda path: save_file(shard, path, metadata={"format": "pt"})


def _text_writer(text: str) -> Callable[[str], None]:
    def write(path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return write


def _stage(folder: str, name: str, write: Callable[[str], None]) -> str:
    """Write a file under a hidden temporary name in `folder`, flushed to disk; returns its path."""
    path = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
    write(path)
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    return path


def _publish(folder: str, staged: dict[str, str]) -> None:
    """Rename the staged files into place, in an order that keeps the folder loadable only as a whole.

    The old weights' entry point (model.safetensors or the index) goes first, so that until the new entry
    point is renamed, last, the folder has no safetensors weights and fails to load. Old shards that the
    new checkpoint does not overwrite are removed at the end.
    """
    for name in (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME):
        if os.path.exists(os.path.join(folder, name)):
            os.remove(os.path.join(folder, name))
    entry_point = SAFE_WEIGHTS_INDEX_NAME if SAFE_WEIGHTS_INDEX_NAME in staged else SAFE_WEIGHTS_NAME
    for name in sorted(staged, key=lambda n: n == entry_point):
        os.replace(staged[name], os.path.join(folder, name))
    for name in os.listdir(folder):
        if SHARD_PATTERN.fullmatch(name) and name not in staged:
            os.remove(os.path.join(folder, name))
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
