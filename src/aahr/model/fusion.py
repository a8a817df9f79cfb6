"""The frozen global view (the CLIP role) and its gated fusion with the local view (spec §2.4-2.5)."""

from __future__ import annotations

import torch
from torch import nn

from aahr.model.layers import l2n, xavier_


class GlobalProjection(nn.Module):
    """``g = (W1 clip + b1) + (W2 clip + b2)``: the frozen global embedding in the model's space, in
    the authors' form (their one-layer FC_MLP: two parallel Linears summed, each Xavier-uniform with
    zero bias). It is one linear map, but under AdamW each Linear moves about lr per step, so the sum
    moves twice as fast as a single Linear would. It is the attention-pooling query and the global
    input of the gated fusion."""

    def __init__(self, global_dim: int, embed: int):
        super().__init__()
        self.first = xavier_(nn.Linear(global_dim, embed))
        self.second = xavier_(nn.Linear(global_dim, embed))

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        """B x Dg -> B x E."""
        return self.first(g) + self.second(g)


class GatedFusion(nn.Module):
    """``z = sigmoid(Linear(2E -> E)([l2n(v_loc); l2n(g)]))``, ``v = z l2n(v_loc) + (1 - z) l2n(g)``.
    The fused vector is not re-normalised (similarity is the plain dot product)."""

    def __init__(self, embed: int):
        super().__init__()
        self.gate = nn.Linear(2 * embed, embed)

    def forward(self, local: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """local, g: B x E -> B x E."""
        local, g = l2n(local), l2n(g)
        z = torch.sigmoid(self.gate(torch.cat([local, g], dim=-1)))               # B x E
        self.last_gate = z.detach()                                                # read by the health report
        return z * local + (1 - z) * g
