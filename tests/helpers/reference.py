"""Random-weight models saved by the reference and loaded by us: the parity tests' raw material."""

from __future__ import annotations

import torch
import transformers

import bigbird_pegasus

# Two small configurations that differ in every option that changes the arithmetic. The position table
# holds 4096 so that the reference's paper plan (lengths 1024/3072/4096) is exercised.
CONFIG_A = dict(vocab_size=150, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, block_size=16,
                num_random_blocks=2, max_position_embeddings=4096, activation_function="gelu_new",
                use_bias=False, scale_embedding=True)
CONFIG_B = dict(vocab_size=130, d_model=48, encoder_layers=2, decoder_layers=1, encoder_attention_heads=6,
                decoder_attention_heads=3, encoder_ffn_dim=40, decoder_ffn_dim=56, block_size=8,
                num_random_blocks=3, max_position_embeddings=4096, activation_function="relu",
                use_bias=True, scale_embedding=False)
NO_DROPOUT = dict(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, classifier_dropout=0.0)


def reference_and_ours(class_name: str, folder, seed: int = 0, **config):
    """The reference's `class_name` with randomised weights (LayerNorms and biases too, so that a weight we
    failed to load shows), saved to `folder`, and ours loaded from it. Both in eval mode."""
    torch.manual_seed(seed)
    reference = getattr(transformers, class_name)(transformers.BigBirdPegasusConfig(**NO_DROPOUT, **config))
    with torch.no_grad():
        for name, param in reference.named_parameters():
            if "norm" in name:
                param.add_(0.1 * torch.randn_like(param))
            elif name.endswith("bias"):
                param.normal_(0, 0.05)
        if hasattr(reference, "final_logits_bias"):
            reference.final_logits_bias.normal_(0, 0.5)
    reference.save_pretrained(folder)
    ours = getattr(bigbird_pegasus, class_name).from_pretrained(folder)
    return reference.eval(), ours.eval()


def padded_batch(vocab_size: int, length: int, pad_last: int, seed: int = 1, eos_id: int = 1):
    """(2, length) ids ending in </s>; the second row is right-padded by `pad_last` tokens."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab_size, (2, length), generator=generator)
    mask = torch.ones(2, length, dtype=torch.long)
    ids[:, -1] = eos_id
    if pad_last:
        mask[1, -pad_last:] = 0
        ids[1, -pad_last:] = 0
        ids[1, -pad_last - 1] = eos_id
    return ids, mask


# Every parity comparison's max |diff|, for the worst-case line printed at the end of the run (conftest.py).
PARITY_DIFFS: list[float] = []


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| of two results that should agree; recorded as a parity figure."""
    diff = difference(a, b)
    PARITY_DIFFS.append(diff)
    return diff


def difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b|, not recorded: for results that must differ."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()
