"""The whole BigBird idea in one file: which key blocks each query block sees, its masks, and the attention.

Over `nb = seq_len / block_size` blocks, the first and the last query blocks are global: they see every key.
Every other query block q sees both global key blocks, its window (q-1, q, q+1) and `num_random_blocks`
random blocks; blocks 1 and nb-2 have the narrower edge sets ({0, 1, 2, nb-1} and {0, nb-3, nb-2, nb-1}).
An input needs more than `BlockLayout.min_length` tokens for that to apply; shorter ones use full attention.

The random blocks follow the reference exactly: in training it draws them per layer from numpy's legacy
generator seeded with the layer index (one of two plans, by length); in eval mode it points them all at
block 0, so block 0 enters the softmax 1 + r times. The reference counts duplicates, so the layout keeps
each distinct key block once with its multiplicity: `score + log(count)` reproduces the softmax. A layout
is a pure function of its arguments, cached, and never computed inside `forward`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .. import kernels
from .masks import padding_bias

# The reference uses the BigBird paper's plan for these padded lengths: random blocks are drawn from
# the first 1024 tokens of a `max_position_embeddings`-long plan.
PAPER_PLAN_LENGTHS = (1024, 3072, 4096)
PAPER_PLAN_LAST_TOKEN = 1024
GLOBAL_BLOCKS = 2  # the first and the last block
WINDOW_BLOCKS = 3  # a query block's own block and its two neighbours


# -- the layout -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BlockLayout:
    """Key blocks of the middle query blocks 1 .. nb-2 (R = nb - 2 rows) of one layer.

    key_blocks: (R, H, W) long, H = 1 when every head shares the layout.
    counts: (R, H, W) float, how often the reference counts that key block; 0 marks an unused slot.
    global_blocks: the query blocks that see every key, and that every query block sees: the first and the
        last (0, nb - 1). They are not rows of `key_blocks`. (Fields, not properties: under torch.compile the
        layout is a constant, and dynamo reads a constant dataclass's fields but not its properties.)
    """

    key_blocks: torch.Tensor
    counts: torch.Tensor
    global_blocks: tuple[int, int]

    @staticmethod
    def min_length(block_size: int, num_random_blocks: int) -> int:
        """Inputs of at most this many tokens are too short for block-sparse attention: it needs the global,
        window and twice `num_random_blocks` blocks (the reference's threshold)."""
        return (GLOBAL_BLOCKS + WINDOW_BLOCKS + 2 * num_random_blocks) * block_size

    @property
    def shared_by_heads(self) -> bool:
        return self.key_blocks.shape[1] == 1


def block_layout(seq_len: int, *, block_size: int, num_random_blocks: int, num_heads: int, layer_index: int,
                 max_seq_len: int, seeded: bool, device: torch.device | str = "cpu") -> BlockLayout:
    """The layout of one layer for a padded length; `seeded` draws the training-mode random blocks,
    otherwise every random block is block 0 (the reference's eval mode). Under `torch.compile` the
    result is a constant of the graph (it depends on Python values only)."""
    layout = _cpu_layout(seq_len, block_size=block_size, num_random_blocks=num_random_blocks,
                         num_heads=num_heads if seeded else 1, seed=layer_index if seeded else 0,
                         max_seq_len=max_seq_len, seeded=seeded)
    if torch.device(device).type == "cpu":
        return layout
    return _device_layout(layout, str(device))


# What `torch.compiler.assume_constant_result(block_layout)` does, without importing torch._dynamo at
# import time (seconds and ~80 MiB): under torch.compile the layout becomes a constant of the graph.
# tests/modeling/test_compile.py compiles the encoder with fullgraph=True, which fails if this stops working.
block_layout._dynamo_marked_constant = True


@functools.lru_cache(maxsize=256)
def _device_layout(layout: BlockLayout, device: str) -> BlockLayout:
    return BlockLayout(layout.key_blocks.to(device), layout.counts.to(device), layout.global_blocks)


@functools.lru_cache(maxsize=256)
def _cpu_layout(seq_len: int, *, block_size: int, num_random_blocks: int, num_heads: int, seed: int,
                max_seq_len: int, seeded: bool) -> BlockLayout:
    num_blocks = seq_len // block_size
    if seeded:
        random = random_blocks(seq_len, block_size=block_size, num_random=num_random_blocks, num_heads=num_heads,
                               seed=seed, max_seq_len=max_seq_len)
    else:
        random = np.zeros((1, num_blocks - GLOBAL_BLOCKS, num_random_blocks), dtype=np.int64)
    return _layout_from_random(num_blocks, torch.from_numpy(random.astype(np.int64)))


def _layout_from_random(num_blocks: int, random: torch.Tensor) -> BlockLayout:
    """Multisets of key blocks per (row, head) -> distinct blocks with their counts.

    random: (H, R, r) random key blocks of rows 1 .. nb-2, -1 where a row drew fewer than r.
    """
    heads, rows, _ = random.shape
    first, last = 0, num_blocks - 1                                       # the global blocks
    q = torch.arange(first + 1, last)                                     # query blocks, (R,)
    window = torch.stack([q - 1, q, q + 1], dim=1)                        # (R, 3)
    window[0, 0] = -1                       # row 1: {0, 1, 2}; block 0 is its global block already
    window[-1, -1] = -1                     # row nb-2: {nb-3, nb-2, nb-1}; nb-1 is already global
    fixed = torch.cat([torch.full((rows, 1), first), window, torch.full((rows, 1), last)], dim=1)  # (R, 5)
    every = torch.cat([fixed.expand(heads, rows, 5), random], dim=2)     # (H, R, 5 + r)
    counts = torch.zeros(heads, rows, num_blocks + 1)                     # last column collects the -1s
    counts.scatter_add_(2, every.where(every >= 0, num_blocks), torch.ones(every.shape))
    counts = counts[..., :num_blocks]                                     # (H, R, nb)
    present = counts > 0
    width = int(present.sum(-1).max())
    key_blocks = torch.argsort(present.to(torch.int8), dim=-1, descending=True, stable=True)[..., :width]
    key_counts = counts.gather(-1, key_blocks)                            # (H, R, W); 0 in unused slots
    key_blocks = key_blocks.masked_fill(key_counts == 0, 0)
    return BlockLayout(key_blocks.transpose(0, 1).contiguous(), key_counts.transpose(0, 1).contiguous(),
                       global_blocks=(first, last))


def random_blocks(seq_len: int, *, block_size: int, num_random: int, num_heads: int, seed: int,
                  max_seq_len: int) -> np.ndarray:
    """The reference's training-mode random key blocks: (heads, nb - 2, num_random), -1 where fewer.

    Drawn from a private numpy RandomState seeded with `seed` (the layer index), in the reference's order,
    so the blocks are identical to those the reference draws after seeding numpy's global generator; the
    global generator itself is never touched.
    """
    rng = np.random.RandomState(seed)
    num_blocks = seq_len // block_size
    if seq_len in PAPER_PLAN_LENGTHS:
        plan_blocks = max_seq_len // block_size
        rows = [_paper_plan(rng, plan_blocks, block_size=block_size, num_random=num_random)[: num_blocks - 2]
                for _ in range(num_heads)]
        return np.stack(rows)
    return _banded_plan(rng, num_blocks, num_random=num_random, num_heads=num_heads)


def _paper_plan(rng: np.random.RandomState, num_blocks: int, *, block_size: int, num_random: int) -> np.ndarray:
    """One head of the paper's plan over `num_blocks` blocks: random blocks from the first 1024 tokens,
    away from the row's window. The edge rows keep the reference's off-by-one choices (its comments
    "Missing -3" / "Missing -4"), so they can repeat a window block."""
    middle = np.arange(1, num_blocks - 1, dtype=np.int32)
    last = num_blocks - 1
    if PAPER_PLAN_LAST_TOKEN > 2 * block_size:
        last = PAPER_PLAN_LAST_TOKEN // block_size - 1
    out = np.full((num_blocks - 2, num_random), -1, dtype=np.int64)
    for row in range(1, num_blocks - 1):
        start, end = row - 2, row
        if row == 1:
            choices = middle[2:last]
        elif row == 2:
            choices = middle[3:last]
        elif row in (num_blocks - 3, num_blocks - 2):
            choices = middle[:last]
        elif start > last:
            choices = middle[:last]
        elif end + 1 == last:
            choices = middle[:start]
        else:
            choices = np.concatenate((middle[:start], middle[end + 1:last]))
        picked = rng.permutation(choices)[:num_random]
        out[row - 1, : len(picked)] = picked
    return out


def _banded_plan(rng: np.random.RandomState, num_blocks: int, *, num_random: int, num_heads: int) -> np.ndarray:
    """The reference's plan for other lengths, for inputs long enough for block-sparse attention
    (more than 2r + 5 blocks): every row draws its random blocks from the first 2r + 5 blocks, avoiding
    its window, the two global blocks and, for the edge rows, the mirrored second block."""
    plan_end = 2 * num_random + GLOBAL_BLOCKS + WINDOW_BLOCKS
    out = np.full((num_heads, num_blocks - 2, num_random), -1, dtype=np.int64)
    if num_random == 0:
        return out
    for row in range(1, num_blocks - 1):
        for head in range(num_heads):
            perm = rng.permutation(np.arange(0, plan_end, dtype=np.int32))
            illegal = {row - 1, row, row + 1, 0, plan_end - 1}
            if row == 1:
                illegal.add(plan_end - 2)
            if row == plan_end - 2:
                illegal.add(1)
            picked = [block for block in perm if block not in illegal][:num_random]
            out[head, row - 1, : len(picked)] = picked
    return out


# -- masks, built once per forward ------------------------------------------------------------------------

@dataclass
class SparseMasks:
    """What block-sparse attention needs for one layout, built once per forward.

    Every query block q gets W key blocks (the global rows reuse the rows next to them: they are recomputed
    over every key, and one batched call over all nb rows avoids copying the queries).
    block_index: rows of the key blocks to gather, (nb * W,) into (b, nb, bs*h*d) when the heads share
        the layout, else (nb * h * W,) into head-major (b, nb*h, bs, d).
    row_bias: (b * nb, H, 1, W * bs) additive: log(count) for each key, the dtype's minimum for padding
        and unused slots; H is 1 when the heads share the layout.
    global_bias: (b, 1, 1, n) padding bias for the global query blocks, or None without padding.
    query_keep: (b, n, 1) 1.0 for real queries, 0.0 for padding (the reference zeroes their output).
    layout, key_valid: what the masks were built from ((b, n) bool, or None), for the exact path that computes
        attention probabilities (`attention_weights.py`).
    kernel_rows: the middle and the global query blocks as `kernels.block_attention` takes them (fp32 or bf16
        masks on the CPU whose heads share the layout; the biases in fp32), else None.
    workspace: buffers for the gathered (or packed) keys and values, reused by the layers of one forward.
    """

    block_index: torch.Tensor
    row_bias: torch.Tensor
    global_bias: torch.Tensor | None
    query_keep: torch.Tensor | None
    width: int
    shared_by_heads: bool
    global_blocks: tuple[int, int]
    layout: BlockLayout
    key_valid: torch.Tensor | None
    kernel_rows: tuple[kernels.BlockRows, kernels.BlockRows] | None
    workspace: dict[str, torch.Tensor] = field(default_factory=dict)


def sparse_masks(layout: BlockLayout, *, key_valid: torch.Tensor | None, batch_size: int, num_heads: int,
                 block_size: int, dtype: torch.dtype) -> SparseMasks:
    """key_valid: (b, n) bool over the padded length, or None when no token is padding."""
    # The global rows reuse the rows beside them (their results are replaced): (R, H, W) -> (nb, H, W)
    key_blocks = torch.cat([layout.key_blocks[:1], layout.key_blocks, layout.key_blocks[-1:]])
    counts = torch.cat([layout.counts[:1], layout.counts, layout.counts[-1:]])
    num_blocks, layout_heads, width = key_blocks.shape
    shared_by_heads = layout_heads == 1
    if shared_by_heads:
        block_index = key_blocks[:, 0].reshape(-1)
    else:
        heads = torch.arange(num_heads, device=key_blocks.device)
        block_index = (key_blocks * num_heads + heads[None, :, None]).reshape(-1)
    allowed = (counts > 0)[None, :, :, :, None]                                  # (1, nb, H, W, 1)
    if key_valid is not None:
        blocks_valid = key_valid.view(batch_size, num_blocks, block_size)       # (b, nb, bs)
        allowed = allowed & blocks_valid[:, key_blocks]                         # (b, nb, H, W, bs)
    log_counts = counts.clamp(min=1).log().to(dtype)[None, :, :, :, None]
    bias = log_counts.masked_fill(~allowed, torch.finfo(dtype).min)
    bias = bias.expand(batch_size, num_blocks, layout_heads, width, block_size)
    row_bias = bias.reshape(batch_size * num_blocks, layout_heads, 1, width * block_size)
    query_keep = None if key_valid is None else key_valid[:, :, None].to(dtype)
    global_bias = padding_bias(key_valid, dtype)
    kernel_rows = None
    if shared_by_heads and dtype in (torch.float32, torch.bfloat16) and key_blocks.device.type == "cpu":
        kernel_rows = _kernel_rows(key_blocks[:, 0],
                                   row_bias.reshape(batch_size, num_blocks, width * block_size).float(),
                                   None if global_bias is None else global_bias.float(),
                                   global_blocks=layout.global_blocks)
    return SparseMasks(block_index=block_index, row_bias=row_bias, global_bias=global_bias, query_keep=query_keep,
                       width=width, shared_by_heads=shared_by_heads, global_blocks=layout.global_blocks,
                       layout=layout, key_valid=key_valid, kernel_rows=kernel_rows)


def _kernel_rows(key_blocks: torch.Tensor, row_bias: torch.Tensor, global_bias: torch.Tensor | None, *,
                 global_blocks: tuple[int, int]) -> tuple[kernels.BlockRows, kernels.BlockRows]:
    """key_blocks (nb, W), row_bias (b, nb, W * bs), global_bias (b, 1, 1, n) or None -> the middle query blocks
    over their W key blocks, the global ones over every block."""
    first, last = global_blocks
    num_blocks = key_blocks.shape[0]
    middle = kernels.BlockRows(torch.arange(first + 1, last), key_blocks[first + 1:last].contiguous(),
                               row_bias[:, first + 1:last].contiguous())
    every_key = None if global_bias is None else global_bias[:, 0].expand(-1, 2, -1).contiguous()  # (b, 2, n)
    edges = kernels.BlockRows(torch.tensor([first, last]), torch.arange(num_blocks).repeat(2, 1), every_key)
    return middle, edges


# -- attention --------------------------------------------------------------------------------------------

def block_sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, masks: SparseMasks,
                           num_heads: int, block_size: int) -> torch.Tensor:
    """BigBird ITC attention. q, k, v: (b, n, h * d) with n a multiple of block_size -> (b, n, h * d).

    On the CPU in fp32 or bf16 inference with the heads sharing the layout (eval mode), one kernel reads each query
    block's key blocks where they lie (`kernels.block_attention`, computing in fp32). Otherwise one batched SDPA
    call for every query block over its gathered key blocks (a single gather, no loop over blocks), one for the
    global query blocks over all keys; then the global rows replace theirs.
    """
    b, n, hidden = q.shape
    h, bs = num_heads, block_size
    if masks.kernel_rows is not None and kernels.serves_block_attention(q, k, v, heads=h, block_size=bs):
        packed = _workspace(masks, name="packed", shape=(2 * q.numel(),), dtype=torch.float32)
        context = kernels.block_attention(q, k, v, heads=h, block_size=bs, rows=masks.kernel_rows, packed=packed)
        return context if masks.query_keep is None else context * masks.query_keep
    d, nb = hidden // h, n // bs
    shape = _BlockShape(batch=b, blocks=nb, block_size=bs, heads=h, head_size=d)

    q_rows = q.view(b * nb, bs, h, d).transpose(1, 2)                                   # (b*nb, h, bs, d)
    k_rows = _gather_key_blocks(k, masks=masks, name="keys", shape=shape)               # (b*nb, h, W*bs, d)
    v_rows = _gather_key_blocks(v, masks=masks, name="values", shape=shape)
    rows = F.scaled_dot_product_attention(q_rows, k_rows, v_rows, attn_mask=masks.row_bias)
    rows = rows.transpose(1, 2).reshape(b, nb, bs, hidden)                              # (b, nb, bs, h*d)

    first, last = masks.global_blocks
    q_global = q.view(b, nb, bs, h, d)[:, [first, last]].reshape(b, 2 * bs, h, d).transpose(1, 2)  # (b, h, 2bs, d)
    k_all = k.view(b, n, h, d).transpose(1, 2)                                          # (b, h, n, d)
    v_all = v.view(b, n, h, d).transpose(1, 2)
    global_rows = F.scaled_dot_product_attention(q_global, k_all, v_all, attn_mask=masks.global_bias)
    global_rows = global_rows.transpose(1, 2).reshape(b, 2, bs, hidden)                  # (b, 2, bs, h*d)

    # The global rows are the first and the last: (b, nb, bs, h*d) -> (b, n, h*d)
    context = torch.cat([global_rows[:, :1], rows[:, first + 1:last], global_rows[:, 1:]], dim=1).view(b, n, hidden)
    if masks.query_keep is not None:
        context = context * masks.query_keep
    return context


@dataclass(frozen=True)
class _BlockShape:
    """Batch, blocks, block size, heads and head size of one block-sparse call."""

    batch: int
    blocks: int
    block_size: int
    heads: int
    head_size: int


def _gather_key_blocks(x: torch.Tensor, *, masks: SparseMasks, name: str, shape: _BlockShape) -> torch.Tensor:
    """x: (b, n, h * d) -> the W key blocks of every query block, (b * nb, h, W * bs, d)."""
    b, nb, bs, h, d = shape.batch, shape.blocks, shape.block_size, shape.heads, shape.head_size
    width = masks.width
    if masks.shared_by_heads:
        blocks = x.reshape(b, nb, bs * h * d)                                            # all heads at once
        gathered = _select_blocks(blocks, masks=masks, name=name)                        # (b, nb*W, bs*h*d)
        return gathered.view(b * nb, width * bs, h, d).transpose(1, 2)
    blocks = x.view(b, nb, bs, h, d).transpose(2, 3).reshape(b, nb * h, bs, d)           # head-major
    gathered = _select_blocks(blocks, masks=masks, name=name)                            # (b, nb*h*W, bs, d)
    return gathered.view(b * nb, h, width * bs, d)


def _select_blocks(blocks: torch.Tensor, *, masks: SparseMasks, name: str) -> torch.Tensor:
    """blocks.index_select(1, masks.block_index), written into a buffer that every layer of the forward reuses
    when no gradient is recorded: a fresh ~80 MB buffer per layer (4096 tokens, large config) is paid for in
    page faults, about a tenth of the encoder's time."""
    if torch.is_grad_enabled() or torch.compiler.is_compiling():
        return blocks.index_select(1, masks.block_index)
    shape = (blocks.shape[0], masks.block_index.numel(), *blocks.shape[2:])
    buffer = _workspace(masks, name=name, shape=shape, dtype=blocks.dtype)
    return torch.index_select(blocks, 1, masks.block_index, out=buffer)


def _workspace(masks: SparseMasks, *, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """The buffer `name` of masks.workspace (on the masks' device), made anew when it has another shape or dtype."""
    buffer = masks.workspace.get(name)
    if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
        buffer = masks.workspace[name] = torch.empty(shape, dtype=dtype, device=masks.block_index.device)
    return buffer
