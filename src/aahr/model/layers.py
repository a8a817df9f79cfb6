"""Small building blocks shared by both encoders.

Masks follow one convention everywhere: ``mask`` is True on valid fragments (regions or words),
False on padding and on dropped regions.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def l2n(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Unit-normalise along ``dim`` (a zero vector stays zero)."""
    return F.normalize(x, dim=dim, eps=1e-8)


def xavier_(linear: nn.Linear) -> nn.Linear:
    """Xavier-uniform weight, zero bias (the authors' initialisation of their Linear layers)."""
    nn.init.xavier_uniform_(linear.weight)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear


class MaskedBatchNorm1d(nn.Module):
    """BatchNorm1d over the valid fragments only, with statistics that can span processes.

    The authors' MLP normalises over every slot of the padded (B, K, D) tensor, padding included;
    here only valid fragments count, so a batch normalises the same whatever its padding. The
    per-feature sums pass through ``self.reduce`` (identity by default; under data parallelism
    aahr.training.distributed sets an autograd-aware all-reduce), so a batch split over processes
    is normalised exactly like the whole batch on one process.
    """

    def __init__(self, dim: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))
        self.reduce: Callable[[torch.Tensor], torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: N x D (valid fragments of the batch) -> N x D."""
        dtype, x = x.dtype, x.float()
        d = x.shape[1]
        if self.training:
            stats = torch.cat([x.sum(0), (x * x).sum(0), x.new_tensor([float(x.shape[0])])])  # 2D+1
            if self.reduce is not None:
                stats = self.reduce(stats)
            n = stats[-1]
            mean = stats[:d] / n
            var = (stats[d:2 * d] / n - mean * mean).clamp_min(0)  # biased, as BatchNorm normalises
            with torch.no_grad():
                unbiased = var * n / (n - 1).clamp_min(1)
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(unbiased.detach(), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias
        return y.to(dtype)


class FragmentProjection(nn.Module):
    """Regions -> embedding space: ``Linear(D -> E)(R) + MLP(D -> E/2 -> E, BatchNorm, ReLU)(R)``.

    Runs on the valid fragments only (their BatchNorm statistics ignore padding), then scatters
    them back into the padded layout (zeros elsewhere). Linear weights Xavier-uniform, biases zero,
    as the authors initialise their projections.
    """

    def __init__(self, in_dim: int, embed: int):
        super().__init__()
        self.fc = nn.Linear(in_dim, embed)
        self.mlp = nn.Sequential(nn.Linear(in_dim, embed // 2), MaskedBatchNorm1d(embed // 2),
                                 nn.ReLU(inplace=True), nn.Linear(embed // 2, embed))
        for linear in (self.fc, self.mlp[0], self.mlp[3]):
            xavier_(linear)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: B x K x D, mask: B x K -> B x K x E."""
        valid = x[mask]                                                    # N x D
        y = self.fc(valid) + self.mlp(valid)                               # N x E
        out = y.new_zeros(*mask.shape, y.shape[-1])                        # B x K x E
        out[mask] = y
        return out


class FragmentTransformer(nn.Module):
    """One TransformerEncoder layer over the fragments of each sample, padding masked."""

    def __init__(self, embed: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(embed, heads, dim_feedforward=ff, dropout=dropout,
                                                batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: B x L x E, mask: B x L -> B x L x E (padded slots are don't-care)."""
        return self.layer(x, src_key_padding_mask=~mask)
