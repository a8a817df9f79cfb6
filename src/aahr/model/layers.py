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
    """One post-norm Transformer encoder layer over the fragments of each sample, padding masked:
    ``nn.TransformerEncoderLayer``'s parameters and arithmetic.

    With ``valid_only`` (the default), every per-fragment part (the Q/K/V and output projections,
    the residuals, LayerNorms, the feed-forward block and their dropouts) runs on the valid
    fragments only; only the attention itself sees the padded layout, its padded keys masked.
    Padded slots come out as zeros. The valid outputs are those of the whole layer, with fewer
    rows to compute (synth captions fill about 60% of their padded length) and fewer dropout masks
    to draw. ``valid_only=False`` runs the layer on every slot, for a consumer that reads the padded
    outputs (the unmasked attention pooling).
    """

    def __init__(self, embed: int, heads: int, ff: int, dropout: float, valid_only: bool = True):
        super().__init__()
        self.valid_only = valid_only
        self.layer = nn.TransformerEncoderLayer(embed, heads, dim_feedforward=ff, dropout=dropout,
                                                batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: B x L x E, mask: B x L -> B x L x E (padded slots: zeros with ``valid_only``, else
        the layer's output)."""
        layer = self.layer
        if not self.valid_only:
            return layer(x, src_key_padding_mask=~mask)
        rows = mask.nonzero(as_tuple=True)                                              # N valid slots
        xv = x[rows]                                                                    # N x E
        h = layer.norm1(xv + layer.dropout1(self.attention(xv, rows, mask)))            # N x E
        ff = layer.linear2(layer.dropout(layer.activation(layer.linear1(h))))
        h = layer.norm2(h + layer.dropout2(ff))                                         # N x E
        return h.new_zeros(*mask.shape, h.shape[1]).index_put(rows, h)               # B x L x E

    def attention(self, xv: torch.Tensor, rows: tuple, mask: torch.Tensor) -> torch.Tensor:
        """The layer's multi-head self-attention for the N valid fragments xv (N x E) -> N x E."""
        mha = self.layer.self_attn
        (b, length), e, heads = mask.shape, xv.shape[1], mha.num_heads
        qkv = F.linear(xv, mha.in_proj_weight, mha.in_proj_bias)                        # N x 3E
        qkv = qkv.new_zeros(b, length, 3 * e).index_put(rows, qkv)                      # B x L x 3E
        q, k, v = qkv.view(b, length, 3, heads, e // heads).permute(2, 0, 3, 1, 4)      # B x h x L x E/h each
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :],
                                             dropout_p=mha.dropout if self.training else 0.0)
        return mha.out_proj(out.transpose(1, 2).reshape(b, length, e)[rows])           # N x E
