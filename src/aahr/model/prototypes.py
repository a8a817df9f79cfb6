"""Dynamic clustering prototypes (spec §3.2; training only): SwAV-style online clustering.

K learnable prototypes C (unit rows, re-normalised at every step and trained by gradient) score the
fused embeddings, ``S = v C^T``. Codes come from Sinkhorn-Knopp on exp(S / eps) without gradient,
per modality, on the current (global) batch: an equal partition of the batch over prototypes. The
swapped prediction makes the text codes supervise the image scores and vice versa, so an image and
its captions are pulled to the same cluster and near-duplicates ("soft positives") can share one.
"""

from __future__ import annotations

import torch
from torch import nn

from aahr.health import code_health
from aahr.model.layers import l2n


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.1, iterations: int = 3) -> torch.Tensor:
    """scores: B x K -> codes B x K: each row sums to 1 and, as iterations grow, each prototype
    receives B / K of the mass (equal partition)."""
    scores = scores.float()
    q = torch.exp((scores - scores.max()) / epsilon).T                           # K x B
    q /= q.sum()
    k, b = q.shape
    for _ in range(iterations):
        q /= q.sum(1, keepdim=True)                                               # each prototype: 1/K
        q /= k
        q /= q.sum(0, keepdim=True)                                               # each sample: 1/B
        q /= b
    return (q * b).T                                                              # B x K, rows sum to 1


class Prototypes(nn.Module):
    """K prototypes and the swapped-prediction loss."""

    def __init__(self, count: int, embed: int, epsilon: float = 0.1, iterations: int = 3,
                 temperature: float = 0.1):
        super().__init__()
        self.weight = nn.Parameter(l2n(torch.randn(count, embed)))               # K x E
        self.epsilon, self.iterations, self.temperature = epsilon, iterations, temperature

    @torch.no_grad()
    def normalize_(self) -> None:
        """Put the prototypes back on the unit sphere (SwAV does this before every step)."""
        self.weight.copy_(l2n(self.weight))

    def loss(self, img: torch.Tensor, txt: torch.Tensor, health: dict | None = None) -> torch.Tensor:
        """img, txt: B x E fused embeddings of the pairs -> scalar
        ``-mean sum_k Q_t log softmax(S_v / T) - mean sum_k Q_v log softmax(S_t / T)``.
        ``health``, when given, receives the codes' health (aahr.health.code_health)."""
        self.normalize_()
        s_v = img.float() @ self.weight.T                                        # B x K
        s_t = txt.float() @ self.weight.T                                        # B x K
        q_v = sinkhorn(s_v, self.epsilon, self.iterations)                       # B x K (no gradient)
        q_t = sinkhorn(s_t, self.epsilon, self.iterations)
        if health is not None:
            health.update(code_health(q_v, q_t))
        log_p_v = (s_v / self.temperature).log_softmax(1)
        log_p_t = (s_t / self.temperature).log_softmax(1)
        return -(q_t * log_p_v).sum(1).mean() - (q_v * log_p_t).sum(1).mean()
