"""from_pretrained: a checkpoint saved by this library or by `transformers`, in the reference's files and key names.

Loading builds the model on the meta device and assigns the file's memory-mapped tensors to it, so it holds
about one copy of the weights. Pickled `.bin` files are read by torch's weights-only unpickler: no pickled code
ever runs.
"""

from __future__ import annotations

import collections
import copy
import itertools
import json
import logging
import os
import zipfile
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from torch.overrides import TorchFunctionMode

from ..config import BigBirdPegasusConfig
from .files import BASE_MODEL_PREFIX, WEIGHT_FILES, listing, tied_groups
from .hub import describe, resolve_file
from .mapped_pages import file_mappings, hand_back

logger = logging.getLogger("bigbird_pegasus")

# Keys a checkpoint may lack (the reference's `_keys_to_ignore_on_load_missing`); they start at zero.
OPTIONAL_KEYS = ("final_logits_bias",)


def load_pretrained(cls, name_or_path: str | os.PathLike | None, *, config: BigBirdPegasusConfig | None = None,
                    state_dict: dict[str, torch.Tensor] | None = None, dtype: torch.dtype | str | None = None,
                    torch_dtype: torch.dtype | str | None = None, device: str | torch.device | None = None,
                    subfolder: str = "", revision: str | None = None, cache_dir: str | os.PathLike | None = None,
                    local_files_only: bool | None = None, token: str | bool | None = None, strict: bool = True,
                    ignore_mismatched_sizes: bool = False, output_loading_info: bool = False,
                    config_overrides: dict[str, Any] | None = None):
    """A `cls` model, in eval mode, from a folder or hub id saved by this library or by `transformers` (or from
    `config` and `state_dict`); with `output_loading_info`, also what did not load, as the reference reports it.

    config: used instead of the checkpoint's config.json (a copy); config_overrides: fields to change in it
    (`num_labels=5`, ...); a name that is no field raises a TypeError. state_dict: used instead of the checkpoint's
    weights. dtype: torch.float32 / bfloat16 / float16 or their names; None or "auto" keep the dtype of the
    weights; `torch_dtype` is its older `transformers` name (both at once must agree). device: where the model
    goes after loading. subfolder, revision, cache_dir, local_files_only, token: as in `huggingface_hub`
    (HF_HUB_OFFLINE=1 also keeps it to the local cache).

    Keys: a task head's weights that the checkpoint lacks (a classifier over a summarization checkpoint) are
    initialised, and those it has for another head ignored, with a warning, as the reference. Missing or
    unexpected weights of the shared model raise, unless strict=False (then: a warning, and missing ones are
    initialised). A weight of the wrong shape raises, unless ignore_mismatched_sizes=True (then it is
    initialised, and listed in "mismatched_keys").
    """
    if torch.get_default_device().type == "meta":
        raise RuntimeError("You are using `from_pretrained` with a meta device context manager (`with "
                           "torch.device('meta')`): the weights would load onto no storage. Load outside it, then "
                           "move the model with `device=` or `.to()`")
    hub = dict(subfolder=subfolder, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
               token=token)
    requested_dtype = _requested_dtype(dtype)
    if torch_dtype is not None:
        if dtype is not None and requested_dtype != _requested_dtype(torch_dtype):
            raise ValueError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree: pass only dtype")
        requested_dtype = _requested_dtype(torch_dtype)
    if name_or_path is None and (config is None or state_dict is None):
        raise ValueError("pass a checkpoint folder or hub id, or both config= and state_dict=")
    config = copy.deepcopy(config) if config is not None else BigBirdPegasusConfig.from_pretrained(name_or_path, **hub)
    unused = config.apply_overrides(config_overrides or {})
    if unused:
        raise TypeError(f"from_pretrained() got unexpected keyword arguments {sorted(unused)}: they are neither "
                        "loading options nor fields of BigBirdPegasusConfig")
    state = dict(state_dict) if state_dict is not None else read_weights(find_weight_files(name_or_path, **hub))
    with torch.device("meta"), _SkipRandomInitOnMeta():
        model = cls(config)
    state = _in_model_layout(state, model)
    source = "the state_dict passed" if state_dict is not None else describe(name_or_path, local_files_only)
    info = _check_keys(state, model=model, strict=strict, ignore_mismatched_sizes=ignore_mismatched_sizes,
                       source=source)
    uninitialised = [name for name in model.state_dict() if name not in state]
    load_dtype = requested_dtype or _stored_dtype(state)
    model.load_state_dict(_cast(state, dtype=load_dtype), strict=False, assign=True)
    del state  # the uncast tensors: a cast copy must not sit beside them any longer than needed
    _initialise_missing(model, names=uninitialised, dtype=load_dtype)
    model.tie_weights()
    _check_materialised(model, source=source)
    if device is not None:
        model.to(device)
    model.eval()
    return (model, info) if output_loading_info else model


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


def _cast(state: dict[str, torch.Tensor], *, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floating tensors in `dtype`; a tensor stored under several (tied) names is cast once. The memory-mapped
    pages of a tensor that was cast leave the process as soon as its copy is made (`mapped_pages`), so that a
    checkpoint loaded in another dtype does not peak at both copies."""
    cast: dict[int, torch.Tensor] = {}
    mapped = file_mappings()
    for tensor in state.values():
        if id(tensor) not in cast:
            cast[id(tensor)] = tensor.to(dtype) if tensor.is_floating_point() else tensor
            if cast[id(tensor)] is not tensor:
                hand_back([tensor], mapped=mapped)
    return {name: cast[id(tensor)] for name, tensor in state.items()}


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


def _check_keys(state: dict[str, torch.Tensor], *, model: nn.Module, strict: bool, ignore_mismatched_sizes: bool,
                source: str) -> dict[str, Any]:
    """Compare the file's keys and shapes with the model's; drop from `state` what will not be loaded (unexpected
    keys, wrong shapes when ignored). Raises as `load_pretrained` says. Returns the reference's loading info:
    missing_keys and unexpected_keys (sets of names), mismatched_keys (a set of (name, checkpoint shape, model
    shape)), error_msgs (a list)."""
    expected = model.state_dict()
    mismatched = {(name, tuple(state[name].shape), tuple(tensor.shape)) for name, tensor in expected.items()
                  if name in state and state[name].shape != tensor.shape}
    if mismatched and not ignore_mismatched_sizes:
        shapes = [f"{name}: checkpoint {checkpoint}, model {shape}" for name, checkpoint, shape in sorted(mismatched)]
        raise ValueError(f"{source} holds tensors of the wrong shape for {type(model).__name__} (is config.json the "
                         f"one the weights were saved with? To initialise them anew instead, e.g. a classifier's "
                         f"head for another number of labels, pass ignore_mismatched_sizes=True):\n  "
                         + "\n  ".join(shapes))
    missing = [name for name in expected if name not in state and name not in OPTIONAL_KEYS]
    unexpected = [name for name in state if name not in expected]
    # The keys of the model every class shares: all of them for the bare model, else those under its prefix
    bare = not any(name.startswith(BASE_MODEL_PREFIX) for name in expected)
    shared = [name for name in missing + unexpected if bare or name.startswith(BASE_MODEL_PREFIX)]
    if missing or unexpected:
        message = f"{source} does not match {type(model).__name__}:"
        if missing:
            message += f"\n  missing keys ({len(missing)}): {listing(missing)}"
        if unexpected:
            message += f"\n  unexpected keys ({len(unexpected)}): {listing(unexpected)}"
        if shared and strict:
            raise ValueError(message + "\nPass strict=False to load it anyway (missing weights are then "
                             "initialised, unexpected ones ignored).")
        logger.warning(message + "\nLoading anyway: missing weights are initialised, unexpected ones ignored"
                       + (" (strict=False)." if shared else " (a task head this checkpoint was not saved with)."))
    for name in [*unexpected, *(name for name, _, _ in mismatched)]:
        del state[name]
    return {"missing_keys": set(missing), "unexpected_keys": set(unexpected), "mismatched_keys": mismatched,
            "error_msgs": []}


def _initialise_missing(model: nn.Module, *, names: list[str], dtype: torch.dtype) -> None:
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


def _check_materialised(model: nn.Module, *, source: str) -> None:
    tensors = itertools.chain(model.named_parameters(remove_duplicate=False),
                              model.named_buffers(remove_duplicate=False))
    on_meta = [name for name, tensor in tensors if tensor.is_meta]
    if on_meta:
        raise RuntimeError(f"loading {source} left {len(on_meta)} tensor(s) without values (still on the meta "
                           f"device): {listing(on_meta)}")
