"""Momentum contrast for negative-set expansion (spec §3.4; training only).

Momentum copies of both encoders (EMA, updated every step before the keys are computed) give keys;
one FIFO queue per modality keeps the last ``size`` keys with their image ids. Queries are the online
local-branch embeddings (normalised); the positive is the paired key of the other modality, the
negatives that modality's queue. Keys are L2-normalised (MoCo's convention; the fused embeddings are
not unit-norm). Queue entries of the query's own image are masked out of the negatives (the authors
do not mask them: false negatives, QUIRK fixed; ``mask_same_image`` switches the fix).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from aahr.health import contrast_health


class MomentumEncoders(nn.Module):
    """EMA copies of the image and text encoders; never trained by gradient."""

    def __init__(self, image: nn.Module, text: nn.Module, momentum: float = 0.999):
        super().__init__()
        self.momentum = momentum
        self.image = copy.deepcopy(image).requires_grad_(False)
        self.text = copy.deepcopy(text).requires_grad_(False)

    @torch.no_grad()
    def update(self, image: nn.Module, text: nn.Module) -> None:
        """theta_k <- m theta_k + (1 - m) theta_q for every parameter (buffers keep their own)."""
        for online, ema in ((image, self.image), (text, self.text)):
            torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in online.parameters()],
                                 1.0 - self.momentum)


class KeyQueue(nn.Module):
    """FIFO queue of ``size`` keys (size x E) and their image ids; saved with the model."""

    def __init__(self, size: int, embed: int):
        super().__init__()
        self.register_buffer("keys", torch.zeros(size, embed))
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @property
    def full(self) -> bool:
        return int(self.count) >= self.keys.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, ids: torch.Tensor) -> None:
        """keys: n x E, ids: n; n divides the queue size (checked when the run starts)."""
        n, size = keys.shape[0], self.keys.shape[0]
        if size % n:
            raise ValueError(f"a batch of {n} keys does not divide the queue size {size}")
        p = int(self.ptr)
        self.keys[p:p + n] = keys.detach().to(self.keys.dtype)
        self.ids[p:p + n] = ids
        self.ptr.fill_((p + n) % size)
        self.count.fill_(min(int(self.count) + n, size))


def masked_info_nce(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor, query_ids: torch.Tensor,
                    queue_ids: torch.Tensor, temperature: float = 0.07, mask_same_image: bool = True,
                    health: list | None = None) -> torch.Tensor:
    """query: B x E, key: B x E (positives), queue: Q x E, ids: B and Q -> mean InfoNCE.

    Queue entries of the query's own image are removed from the negatives when ``mask_same_image``.
    ``health``, when given, receives the positive's rank and top-1 (aahr.health.contrast_health).
    """
    query, key, queue = query.float(), key.float(), queue.float()
    l_pos = (query * key).sum(1, keepdim=True)                                  # B x 1
    l_neg = query @ queue.T                                                      # B x Q
    if mask_same_image:
        l_neg = l_neg.masked_fill(query_ids[:, None] == queue_ids[None, :], -torch.inf)
    if health is not None:
        health.append(contrast_health(l_pos, l_neg))
    logits = torch.cat([l_pos, l_neg], 1) / temperature                          # B x (1+Q)
    return F.cross_entropy(logits, torch.zeros(query.shape[0], dtype=torch.long, device=query.device))
