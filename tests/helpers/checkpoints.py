"""Tiny models of both libraries, their inputs and outputs, for the checkpoint tests."""

from __future__ import annotations

import os

import torch
import transformers
from safetensors import safe_open

import bigbird_pegasus

CLASS_NAMES = (
    "BigBirdPegasusForConditionalGeneration",
    "BigBirdPegasusModel",
    "BigBirdPegasusForSequenceClassification",
    "BigBirdPegasusForQuestionAnswering",
    "BigBirdPegasusForCausalLM",
)
TIED_EMBEDDING_KEYS = ("model.shared.weight", "model.encoder.embed_tokens.weight",
                       "model.decoder.embed_tokens.weight", "lm_head.weight")
# Block-sparse applies above (5 + 2 * 1) * 8 = 56 tokens: the encoder inputs (64) take the sparse path.
TINY = dict(vocab_size=100, d_model=32, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=64, decoder_ffn_dim=64,
            encoder_attention_heads=2, decoder_attention_heads=2, max_position_embeddings=128, block_size=8,
            num_random_blocks=1)
EOS = 1


def reference_model(name: str, seed: int = 0, **overrides) -> torch.nn.Module:
    """A `transformers` model of the tiny config with random weights (and a random final_logits_bias)."""
    torch.manual_seed(seed)
    model = getattr(transformers, name)(transformers.BigBirdPegasusConfig(**{**TINY, **overrides}))
    if hasattr(model, "final_logits_bias"):
        model.final_logits_bias.normal_()
    return model.eval()


def our_model(name: str, seed: int = 0, **overrides) -> torch.nn.Module:
    """One of our models of the tiny config with random weights (and a random final_logits_bias)."""
    torch.manual_seed(seed)
    model = getattr(bigbird_pegasus, name)(bigbird_pegasus.BigBirdPegasusConfig(**{**TINY, **overrides}))
    if hasattr(model, "final_logits_bias"):
        with torch.no_grad():
            model.final_logits_bias.normal_()
    return model.eval()


def inputs() -> dict[str, torch.Tensor]:
    """Two encoder rows of 64 tokens ending in </s>, two decoder rows of 6 tokens."""
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(3, TINY["vocab_size"], (2, 64), generator=generator)
    input_ids[:, -1] = EOS
    decoder_input_ids = torch.randint(3, TINY["vocab_size"], (2, 6), generator=generator)
    return {"input_ids": input_ids, "decoder_input_ids": decoder_input_ids}


@torch.no_grad()
def outputs(model: torch.nn.Module) -> list[torch.Tensor]:
    """The main outputs of any of the five classes, on `inputs()`."""
    batch = inputs()
    name = type(model).__name__
    if name == "BigBirdPegasusForCausalLM":
        return [model(input_ids=batch["decoder_input_ids"]).logits]
    if name == "BigBirdPegasusForSequenceClassification":  # pools at </s>: decoder inputs are the shifted inputs
        return [model(input_ids=batch["input_ids"]).logits]
    out = model(**batch)
    if name == "BigBirdPegasusModel":
        return [out.last_hidden_state, out.encoder_last_hidden_state]
    if name == "BigBirdPegasusForQuestionAnswering":
        return [out.start_logits, out.end_logits]
    return [out.logits]


def max_difference(model_a: torch.nn.Module, model_b: torch.nn.Module) -> float:
    """Largest |difference| between the outputs of two models (fp32)."""
    return max((a.float() - b.float()).abs().max().item() for a, b in zip(outputs(model_a), outputs(model_b)))


def stored_keys(folder: str | os.PathLike) -> set[str]:
    """Names of the tensors in a folder's safetensors files."""
    keys: set[str] = set()
    for name in os.listdir(folder):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(folder, name), "pt") as f:
                keys.update(f.keys())
    return keys


def fake_hub_cache(cache_dir: str | os.PathLike, repo_id: str, files_from: str | os.PathLike,
                   commit: str = "0123456789abcdef0123456789abcdef01234567") -> str:
    """A huggingface_hub cache (refs/main -> snapshots/<commit>/...) holding the files of a folder."""
    repo = os.path.join(cache_dir, "models--" + repo_id.replace("/", "--"))
    snapshot = os.path.join(repo, "snapshots", commit)
    os.makedirs(snapshot)
    os.makedirs(os.path.join(repo, "refs"))
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(commit)
    for name in os.listdir(files_from):
        os.link(os.path.join(files_from, name), os.path.join(snapshot, name))
    return commit
