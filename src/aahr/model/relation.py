"""High-order relations over the batch (spec §3.3; training only).

Nodes: the 2B local-branch embeddings ``v_hat = l2n(v_loc)``, ``t_hat = l2n(t_loc)`` of the (global)
batch. Edges:

- intra-modal correlation ``A_vv[i, j] = exp(-||v_hat_i - v_hat_j||)`` (same for text);
- inter-modal correlation from the detached fragments: cosine(word, region) -> LeakyReLU(0.1) ->
  L2 normalisation; t2i = mean over words of the max over regions (normalised over words),
  i2t = mean over regions of the max over words (normalised over regions), as in HREM;
- connectivity: each node keeps its top ``keep`` share of the other nodes in each block (cosine
  within a modality, the fine-grained similarity across), ties kept (HREM's rule).

Then, as the authors' code does it: an image GCN on ``A_vv`` and a text GCN on ``A_tt``, a joint GCN
over all 2B nodes on the whole ``A``, each ``LeakyReLU(A (dropout(H) W) + b)`` with the DENSE
correlation matrix as it is (no top-share mask, no degree normalisation); a residual
``l2n(H_joint) + [v_hat; t_hat]``; and one Transformer layer whose attention gets the additive bias
``lambda * A`` on connected pairs and -inf elsewhere (the connectivity is used only here). Outputs
``v_tilde``, ``t_tilde`` (unit norm). GCN weights Xavier-uniform, biases zero.

The GCN is dense (``DenseGCN``): the batch graph is complete, so one 2B x 2B matrix product is
simpler and much faster than message passing over ~4B^2 edges (bench/bench_train_step.py times both;
the layer computes exactly torch-geometric's ``GCNConv(normalize=False)`` with edge weights A, which
tests/test_model.py checks).
HREM's KL regulariser on a learned relevance is left out: in the authors' AAHR code that relevance
is bypassed, so the regulariser has zero gradient (QUIRK).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aahr.model.layers import l2n, xavier_


def intra_correlation(x_hat: torch.Tensor) -> torch.Tensor:
    """x_hat: N x E (unit rows) -> N x N, exp(-Euclidean distance)."""
    x_hat = x_hat.float()
    d2 = (2 - 2 * x_hat @ x_hat.T).clamp_min(1e-12)    # |a - b|^2 for unit vectors; no NaN gradient at 0
    return torch.exp(-d2.sqrt())


@torch.no_grad()
def fine_grained_similarity(regions: torch.Tensor, region_mask: torch.Tensor, words: torch.Tensor,
                            word_mask: torch.Tensor, chunk: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Word-region similarity of every image with every caption (no gradient).

    regions: Bi x K x E, region_mask: Bi x K, words: Bt x L x E, word_mask: Bt x L
    -> i2t: Bi x Bt (mean over regions of max over words), t2i: Bt x Bi (mean over words of max
    over regions). Images are processed ``chunk`` at a time (the full Bi x Bt x L x K tensor of a
    COCO batch would not fit in memory). Padded fragments become zero vectors, so their similarities
    are exactly 0 and drop out of the normalisations; an in-place additive -inf, once the norms are
    taken, keeps them out of the maxima (3.4x faster than masking the 4-d tensor at every step; the
    same numbers, tests/test_model.py).
    """
    r = l2n(regions.float()) * region_mask[..., None]                            # Bi x K x E
    w = l2n(words.float()) * word_mask[..., None]                                # Bt x L x E
    n_words = word_mask.sum(1).float()                                            # Bt
    no_region = torch.zeros(region_mask.shape, device=r.device).masked_fill_(~region_mask, -torch.inf)  # Bi x K
    no_word = torch.zeros(word_mask.shape, device=r.device).masked_fill_(~word_mask, -torch.inf)       # Bt x L
    i2t, t2i = [], []
    for s in range(0, r.shape[0], chunk):
        rm = region_mask[s:s + chunk]                                             # b x K
        sim = F.leaky_relu_(torch.einsum("bke,tle->btlk", r[s:s + chunk], w), 0.1)  # b x Bt x L x K, 0 on padding
        sq = sim * sim
        over_words = sq.sum(2, keepdim=True).sqrt_().clamp_min_(1e-12)           # b x Bt x 1 x K
        over_regions = sq.sum(3, keepdim=True).sqrt_().clamp_min_(1e-12)         # b x Bt x L x 1
        # padding -> -inf (after the norms): out of every maximum below
        sim += no_region[s:s + chunk, None, None, :]
        sim += no_word[None, :, :, None]
        # text -> image: normalise over words, best valid region per word, mean over the valid words
        per_word = (sim / over_words).amax(3)                                    # b x Bt x L
        t2i.append(per_word.masked_fill(~word_mask[None], 0.0).sum(2) / n_words[None])  # b x Bt
        # image -> text: normalise over regions, best valid word per region, mean over the valid regions
        per_region = (sim / over_regions).amax(2)                                # b x Bt x K
        i2t.append(per_region.masked_fill(~rm[:, None, :], 0.0).sum(2) / rm.sum(1, keepdim=True).float())
    return torch.cat(i2t, 0), torch.cat(t2i, 0).T


@torch.no_grad()
def top_share(scores: torch.Tensor, keep: float) -> torch.Tensor:
    """R x C -> bool R x C: per row, the entries >= the row's k-th largest, k = max(1, int(C keep))."""
    k = max(1, int(scores.shape[1] * keep))
    kth = scores.topk(k, dim=1).values[:, -1:]                                    # R x 1
    return scores >= kth


class DenseGCN(nn.Module):
    """One graph convolution ``LeakyReLU(A dropout(H) W + b)`` on a dense weighted adjacency A
    (row i aggregates from every column j with weight A[i, j]), as the authors' GCN layer."""

    def __init__(self, dim: int, dropout: float = 0.6, slope: float = 0.2):
        super().__init__()
        self.linear = xavier_(nn.Linear(dim, dim, bias=False))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.dropout, self.slope = nn.Dropout(dropout), slope

    def propagate(self, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """h: N x E, a: N x N -> A h W + b (torch-geometric's GCNConv without normalisation)."""
        return a @ self.linear(h) + self.bias

    def forward(self, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.propagate(self.dropout(h), a), self.slope)


class RelationGraph(nn.Module):
    """The batch relation graph and its GNN: (v_hat, t_hat, fragments) -> (v_tilde, t_tilde)."""

    def __init__(self, embed: int, heads: int, ff: int, dropout: float, gcn_dropout: float,
                 keep: float = 0.5, bias_weight: float = 1.0):
        super().__init__()
        self.keep, self.bias_weight = keep, bias_weight
        self.image_gcn = DenseGCN(embed, gcn_dropout)
        self.text_gcn = DenseGCN(embed, gcn_dropout)
        self.joint_gcn = DenseGCN(embed, gcn_dropout)
        self.transformer = nn.TransformerEncoderLayer(embed, heads, dim_feedforward=ff, dropout=dropout,
                                                      batch_first=True)

    def adjacency(self, v_hat: torch.Tensor, t_hat: torch.Tensor, regions: torch.Tensor, region_mask: torch.Tensor,
                  words: torch.Tensor, word_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> A: 2B x 2B correlations [[A_vv, A_vt], [A_tv, A_tt]], C: 2B x 2B connectivity (bool)."""
        a_vv, a_tt = intra_correlation(v_hat), intra_correlation(t_hat)           # B x B each
        a_vt, a_tv = fine_grained_similarity(regions, region_mask, words, word_mask)  # B x B each
        with torch.no_grad():
            c_vv = top_share(v_hat.float() @ v_hat.float().T, self.keep)
            c_tt = top_share(t_hat.float() @ t_hat.float().T, self.keep)
            c_vt, c_tv = top_share(a_vt, self.keep), top_share(a_tv, self.keep)
        a = torch.cat([torch.cat([a_vv, a_vt], 1), torch.cat([a_tv, a_tt], 1)], 0)  # 2B x 2B
        c = torch.cat([torch.cat([c_vv, c_vt], 1), torch.cat([c_tv, c_tt], 1)], 0)  # 2B x 2B
        return a, c

    def forward(self, v_hat: torch.Tensor, t_hat: torch.Tensor, regions: torch.Tensor, region_mask: torch.Tensor,
                words: torch.Tensor, word_mask: torch.Tensor,
                health: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """v_hat, t_hat: B x E unit local embeddings; fragments as fine_grained_similarity.
        -> v_tilde, t_tilde: B x E (unit). ``health``, when given, receives the graph's density."""
        b = v_hat.shape[0]
        a, c = self.adjacency(v_hat, t_hat, regions, region_mask, words, word_mask)
        x = torch.cat([v_hat, t_hat], 0).float()                                  # 2B x E
        h = torch.cat([self.image_gcn(x[:b], a[:b, :b]), self.text_gcn(x[b:], a[b:, b:])], 0)
        h = l2n(self.joint_gcn(h, a)) + x                                         # residual to the inputs
        bias = (self.bias_weight * a).masked_fill(~c, -torch.inf)                 # 2B x 2B attention bias
        out = self.transformer(h[None], src_mask=bias)[0]                         # 2B x E
        if health is not None:
            health["graph_density"] = float(c.float().mean())
        return l2n(out[:b]), l2n(out[b:])
