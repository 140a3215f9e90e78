"""Optimizers (AdamW, and the Adafactor the PEGASUS paper used) and the learning-rate schedule."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW or Adafactor over `model`'s trainable parameters; biases and LayerNorm weights (1-D) are not
    decayed, as the Hugging Face Trainer does."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    return Adafactor(groups, lr=lr)


def linear_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """Linear warm-up from 0 over `warmup_steps`, then linear decay to 0 at `total_steps`
    (the schedule of `transformers.get_linear_schedule_with_warmup`)."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return LambdaLR(optimizer, factor)


class Adafactor(torch.optim.Optimizer):
    """Adafactor (Shazeer & Stern, 2018) with an external learning rate, no momentum and update clipping.

    Matrices keep factored second moments (a row and a column vector) instead of a full one: the optimizer
    state of a weight of shape (m, n) is m + n numbers, not 2mn as with Adam. This is the variant of
    `transformers.Adafactor(scale_parameter=False, relative_step=False, warmup_init=False)`, the usual
    choice for fine-tuning with a schedule; `torch.optim.Adafactor` (torch >= 2.5) scales steps differently.

    decay_rate: the second-moment decay is 1 - step ** decay_rate. clip_threshold: the root-mean-square
    of an update is clipped to this. eps: added to the squared gradients.
    """

    def __init__(self, params, lr: float, decay_rate: float = -0.8, clip_threshold: float = 1.0,
                 eps: float = 1e-30, weight_decay: float = 0.0):
        if lr <= 0:
            raise ValueError(f"Adafactor lr={lr}: must be positive")
        super().__init__(params, dict(lr=lr, decay_rate=decay_rate, clip_threshold=clip_threshold, eps=eps,
                                      weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self._update(param, group)
        return loss

    def _update(self, param: torch.Tensor, group: dict) -> None:
        grad = param.grad.float()
        state = self.state[param]
        factored = grad.dim() >= 2
        if not state:
            state["step"] = torch.tensor(0.0)
            if factored:
                state["row_mean_sq"] = grad.new_zeros(grad.shape[:-1])                       # (..., m)
                state["col_mean_sq"] = grad.new_zeros(grad.shape[:-2] + grad.shape[-1:])     # (..., n)
            else:
                state["mean_sq"] = torch.zeros_like(grad)
        state["step"] += 1
        decay = 1.0 - state["step"].item() ** group["decay_rate"]
        squared = grad.square() + group["eps"]
        if factored:
            row, col = state["row_mean_sq"], state["col_mean_sq"]
            row.lerp_(squared.mean(dim=-1), 1.0 - decay)
            col.lerp_(squared.mean(dim=-2), 1.0 - decay)
            row_factor = (row / row.mean(dim=-1, keepdim=True)).rsqrt().unsqueeze(-1)       # (..., m, 1)
            update = row_factor * col.unsqueeze(-2).rsqrt() * grad
        else:
            state["mean_sq"].lerp_(squared, 1.0 - decay)
            update = state["mean_sq"].rsqrt() * grad
        rms = update.square().mean().sqrt()
        update.div_((rms / group["clip_threshold"]).clamp(min=1.0)).mul_(group["lr"])
        weights = param.float()
        if group["weight_decay"]:
            weights.add_(weights, alpha=-group["weight_decay"] * group["lr"])
        weights.sub_(update)
        if weights is not param:
            param.copy_(weights)
