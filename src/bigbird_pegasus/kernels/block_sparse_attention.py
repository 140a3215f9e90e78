"""BigBird's block-sparse attention in `block_sparse_attention.c`: every query block over its key blocks, read
where they lie (no gathered copies), on the CPU, computed in fp32 over fp32 or bf16 inputs; checked against the
same attention in PyTorch's operators before it serves."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .library import ATTENTION_HEAD_DIM, LANES, call, loaded, unavailable_reason

_ENTRY_POINTS = {torch.float32: "block_sparse_attention_float32", torch.bfloat16: "block_sparse_attention_bfloat16"}


@dataclass(frozen=True)
class BlockRows:
    """Query blocks that see the same number of key blocks, as `block_attention` takes them.

    query_blocks: (m,) int64, the query blocks.
    key_blocks: (m, w) int64, the key blocks each sees (every head alike).
    bias: (b, m, w * block_size) fp32 added to the scaled scores (the dtype's minimum hides a key), or None.
    """

    query_blocks: torch.Tensor
    key_blocks: torch.Tensor
    bias: torch.Tensor | None


def serves_block_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, heads: int, block_size: int) -> bool:
    """Whether `block_attention` takes q, k, v (b, n, heads x ATTENTION_HEAD_DIM): fp32 or bf16 (all three
    alike), contiguous on the CPU, n a multiple of block_size and block_size of LANES, no gradients, not under
    torch.compile, and the kernel built with AVX2 or AVX-512 and self-checked."""
    tensors = (q, k, v)
    return (q.dim() == 3 and q.shape == k.shape == v.shape and q.shape[2] == heads * ATTENTION_HEAD_DIM
            and block_size % LANES == 0 and q.shape[1] % block_size == 0
            and q.dtype == k.dtype == v.dtype and q.dtype in _ENTRY_POINTS
            and all(t.device.type == "cpu" and t.is_contiguous() for t in tensors)
            and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
            and not torch.compiler.is_compiling()
            and loaded() is not None and unavailable_reason(attention=True) is None and _self_check() is None)


def block_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, heads: int, block_size: int,
                    rows: tuple[BlockRows, ...], packed: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(64) + bias) v of each query block over its key blocks, where `serves_block_attention`
    holds: q, k, v (b, n, heads x 64) -> (b, n, heads x 64) in their dtype (computed in fp32, bf16 results rounded
    to nearest). `rows` together name every query block once; `packed` is an fp32 buffer of at least
    2 x b x n x heads x 64 floats (each head's keys and values are copied into it contiguous). A ValueError names
    what does not fit: a query block left out or named twice, a key block out of range, a bias of another shape,
    a buffer too small."""
    b, n, hidden = q.shape
    blocks = n // block_size
    named = torch.cat([group.query_blocks for group in rows]).sort().values
    if not torch.equal(named, torch.arange(blocks)):
        raise ValueError(f"block_attention: the rows name query blocks {named.tolist()}, not each of 0..{blocks - 1} "
                         "once")
    if packed.dtype != torch.float32 or not packed.is_contiguous() or packed.numel() < 2 * q.numel():
        raise ValueError(f"block_attention: packed must be a contiguous fp32 buffer of at least {2 * q.numel()} "
                         f"floats, not {packed.dtype} of {packed.numel()}")
    for group in rows:
        m, width = group.key_blocks.shape
        indices = (group.query_blocks, group.key_blocks)
        if (any(t.dtype != torch.int64 for t in indices) or group.key_blocks.min() < 0
                or group.key_blocks.max() >= blocks):
            raise ValueError(f"block_attention: query and key blocks must be int64, the key blocks in 0..{blocks - 1}")
        if group.bias is not None and (group.bias.shape != (b, m, width * block_size)
                                       or group.bias.dtype != torch.float32):
            raise ValueError(f"block_attention: bias of shape {tuple(group.bias.shape)} ({group.bias.dtype}), "
                             f"expected {(b, m, width * block_size)} (torch.float32)")
    out = torch.empty_like(q)                                                          # (b, n, heads * 64)
    for index, group in enumerate(rows):
        query_blocks, key_blocks = group.query_blocks.contiguous(), group.key_blocks.contiguous()
        bias = None if group.bias is None else group.bias.contiguous()
        m, width = key_blocks.shape
        call(_ENTRY_POINTS[q.dtype], q.data_ptr(), k.data_ptr(), v.data_ptr(), packed.data_ptr(), int(index == 0),
             query_blocks.data_ptr(), key_blocks.data_ptr(), None if bias is None else bias.data_ptr(),
             out.data_ptr(), b, heads, blocks, block_size, m, width, ATTENTION_HEAD_DIM ** -0.5,
             torch.get_num_threads())
    return out


_checked: dict[int, str | None] = {}


def _self_check() -> str | None:
    """block_attention against the same attention in PyTorch's operators, once per loaded library; None when they
    agree."""
    library = loaded()
    if id(library) not in _checked:
        _checked[id(library)] = _check_block_attention()
    return _checked[id(library)]


def _check_block_attention() -> str | None:
    """2 documents, 2 heads, 5 blocks of 16 (LANES) and of 64 positions (both score tiles), fp32 and bf16: the 3
    middle query blocks over 3 random key blocks each with a random bias hiding some keys, the first and the last over
    every key, hiding the second document's last 5 positions."""
    generator = torch.Generator().manual_seed(0)
    docs, heads, blocks = 2, 2, 5
    for dtype, tolerance in ((torch.float32, 1e-4), (torch.bfloat16, 1e-2)):
        for block_size in (LANES, 4 * LANES):
            n = blocks * block_size
            q, k, v = (torch.randn(docs, n, heads * ATTENTION_HEAD_DIM, generator=generator).to(dtype)
                       for _ in range(3))
            middle = BlockRows(torch.arange(1, blocks - 1),
                               torch.randint(0, blocks, (blocks - 2, 3), generator=generator),
                               torch.randn(docs, blocks - 2, 3 * block_size, generator=generator))
            middle.bias[middle.bias < -1.5] = torch.finfo(torch.float32).min
            hidden = torch.zeros(docs, 2, n)
            hidden[1, :, -5:] = torch.finfo(torch.float32).min
            edges = BlockRows(torch.tensor([0, blocks - 1]), torch.arange(blocks).repeat(2, 1), hidden)
            packed = torch.empty(2 * q.numel())
            out = block_attention(q, k, v, heads=heads, block_size=block_size, rows=(middle, edges), packed=packed)
            expected = torch.empty(q.shape)
            for group in (middle, edges):
                _expected_rows(q.float(), k.float(), v.float(), group, heads=heads, block_size=block_size,
                               out=expected)
            if not torch.allclose(out.float(), expected.to(dtype).float(), atol=tolerance, rtol=tolerance):
                return f"the built {_ENTRY_POINTS[dtype]} disagrees with torch at block size {block_size}"
    return None


def _expected_rows(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rows: BlockRows, *, heads: int,
                  block_size: int, out: torch.Tensor) -> None:
    """What `block_attention` computes for `rows`, in PyTorch's operators, written into out (b, n, heads x 64)."""
    b, n, hidden = q.shape
    for index, (query_block, key_blocks) in enumerate(zip(rows.query_blocks.tolist(), rows.key_blocks.tolist())):
        positions = torch.cat([torch.arange(block * block_size, (block + 1) * block_size) for block in key_blocks])
        queries = q[:, query_block * block_size:(query_block + 1) * block_size].view(b, block_size, heads, -1)
        keys, values = (t[:, positions].view(b, len(positions), heads, -1) for t in (k, v))
        scores = torch.einsum("bqhd,bkhd->bhqk", queries, keys) * ATTENTION_HEAD_DIM ** -0.5
        if rows.bias is not None:
            scores = scores + rows.bias[:, None, None, index]
        context = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), values)
        out[:, query_block * block_size:(query_block + 1) * block_size] = context.reshape(b, block_size, hidden)
