"""Pooling fragments into one vector (spec §2.4, "adaptive aggregation").

AAHR: ``v_loc = beta * v_res + (1 - beta) * v_att`` with
- ``v_res`` = MaxK over the projected fragments (the residual path, before the fragment Transformer,
  as in the authors' HREM-derived encoders),
- ``v_att`` = multi-head attention pooling of the Transformer's output, queried by the projected
  global embedding.
The GPO baseline pools with VSE-infinity's generalised pooling operator instead.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from aahr.model.layers import l2n


class MaxKPooling(nn.Module):
    """Per dimension, the mean of the top-k values over the valid fragments (k shrinks to the number
    of valid fragments when a sample has fewer)."""

    def __init__(self, k: int = 2):
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: B x L x E, mask: B x L -> B x E."""
        k = min(self.k, x.shape[1])
        top = x.masked_fill(~mask[..., None], -torch.inf).topk(k, dim=1).values   # B x k x E
        n = mask.sum(1).clamp(max=k)                                               # B
        keep = torch.arange(k, device=x.device)[None] < n[:, None]                 # B x k
        top = top.masked_fill(~keep[..., None], 0.0)
        return top.sum(1) / n[:, None].to(top.dtype)


class AttentionPooling(nn.Module):
    """Global-queried attention pooling with ``heads`` independent full-width heads, as the authors'
    code: head j has its own ``Q_j, K_j, V_j = Linear(E -> E)``, scores cosine(K_j x_l, Q_j query)
    over all E dims -> softmax over the fragments -> the weighted sum of ``V_j x``; the heads' outputs
    are averaged (not split, not concatenated).

    Because V_j is affine and the weights sum to 1, ``sum_l a_jl V_j x_l = V_j (sum_l a_jl x_l)``: the
    fragments are pooled first and each head's V applied once to the pooled vector (exact, and E
    times cheaper than projecting every fragment). Q and K of all heads are one Linear(E -> heads E).

    ``mask_padding`` (default True) excludes padded fragments from the softmax; the authors' code
    does not (QUIRK), which lets padding dilute the attention of short captions.
    """

    def __init__(self, embed: int, heads: int = 8, mask_padding: bool = True):
        super().__init__()
        self.heads, self.embed, self.mask_padding = heads, embed, mask_padding
        self.q = nn.Linear(embed, heads * embed)
        self.k = nn.Linear(embed, heads * embed)
        self.v_weight = nn.Parameter(torch.empty(heads, embed, embed))             # h x E_out x E_in
        self.v_bias = nn.Parameter(torch.empty(heads, embed))
        bound = 1 / embed ** 0.5                                                    # nn.Linear's default init
        nn.init.uniform_(self.v_weight, -bound, bound)
        nn.init.uniform_(self.v_bias, -bound, bound)

    def weights(self, x: torch.Tensor, mask: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """x: B x L x E, mask: B x L, query: B x E -> attention B x h x L (rows sum to 1).

        With ``mask_padding``, the cosine is split so that no B x L x h x E tensor is formed:
        ``(W_j x + b_j) . q_j = x . (W_j^T q_j) + b_j . q_j`` (q_j unit) is one small product per
        sample and head, and only the norms ``|W_j x + b_j|`` need the h full-width K projections,
        computed for the valid fragments only (the padded ones get weight 0 anyway)."""
        b, length, e = x.shape
        q = l2n(self.q(query).view(b, self.heads, e))                               # B x h x E
        if not self.mask_padding:
            k = l2n(self.k(x).view(b, length, self.heads, e))                       # B x L x h x E
            return torch.einsum("blhe,bhe->bhl", k, q).softmax(-1)
        w = self.k.weight.view(self.heads, e, e)                                    # h x E_out x E_in
        u = torch.einsum("bho,hoi->bhi", q, w)                                      # B x h x E: W_j^T q_j
        c = (q * self.k.bias.view(self.heads, e)).sum(-1)                           # B x h: b_j . q_j
        dots = torch.einsum("bli,bhi->blh", x, u) + c[:, None, :]                  # B x L x h
        rows = mask.nonzero(as_tuple=True)                                          # N valid (sample, slot)
        norms = self.k(x[rows]).view(-1, self.heads, e).float().norm(dim=-1)        # N x h
        scale = norms.new_ones(dots.shape).index_put(rows, norms.clamp_min(1e-8))   # B x L x h
        return (dots.float() / scale).masked_fill(~mask[..., None], -torch.inf).transpose(1, 2).softmax(-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """-> B x E."""
        attn = self.weights(x, mask, query)                                         # B x h x L
        pooled = torch.einsum("bhl,ble->bhe", attn, x)                              # B x h x E
        out = torch.einsum("bhe,hoe->bho", pooled, self.v_weight) + self.v_bias     # B x h x E (V_j per head)
        return out.mean(1)                                                          # heads averaged


def positional_encoding(length: int, dim: int, device=None) -> torch.Tensor:
    """Sinusoidal positions: length x dim."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


class GPOPooling(nn.Module):
    """VSE-infinity's Generalised Pooling Operator: per dimension, the valid values sorted in
    decreasing order are weighted by softmax(w / 0.1), w generated from the positions by a BiGRU."""

    def __init__(self, pe_dim: int = 32, hidden: int = 32, temperature: float = 0.1):
        super().__init__()
        self.pe_dim, self.temperature = pe_dim, temperature
        self.gru = nn.GRU(pe_dim, hidden, batch_first=True, bidirectional=True)
        self.linear = nn.Linear(hidden, 1, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: B x L x E, mask: B x L -> B x E."""
        b, length, _ = x.shape
        n = mask.sum(1)                                                             # B
        slots = torch.arange(length, device=x.device)[None] < n[:, None]            # B x L sorted slots
        pe = positional_encoding(length, self.pe_dim, x.device).expand(b, -1, -1)   # B x L x P
        packed = pack_padded_sequence(pe, n.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=length)    # B x L x 2H
        h = out.shape[-1] // 2
        scores = self.linear((out[..., :h] + out[..., h:]) / 2)                     # B x L x 1
        scores = scores.masked_fill(~slots[..., None], -torch.inf)
        weights = (scores / self.temperature).softmax(1)                            # B x L x 1
        ranked = x.masked_fill(~mask[..., None], -torch.inf).sort(dim=1, descending=True).values
        ranked = ranked.masked_fill(~slots[..., None], 0.0)                         # B x L x E
        return (ranked * weights.to(ranked.dtype)).sum(1)
