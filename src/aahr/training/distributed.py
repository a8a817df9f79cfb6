"""Data parallelism through torchrun: gloo on CPU, NCCL on GPU, exact with respect to the batch split.

The scheme (one global batch of B pairs, each of W processes encodes a contiguous B / W share):

1. each process encodes its share (``AAHR.forward``);
2. the embeddings are all-gathered; the local slot keeps its autograd graph (``all_gather_with_grad``);
3. every process computes the same loss L on the global batch (same inputs, same random streams:
   distance-weighted sampling and the relation module's dropout are seeded by the step) and
   back-propagates L / W;
4. gradients are summed over processes (``all_reduce_gradients``).

Why this is exact: the backward of the gather sums the W copies of (1/W) dL/dG, so each process
receives the full gradient for its own slot; encoder parameters then hold that slot's share of
dL/dtheta (the shares add up to dL/dtheta), and parameters used after the gather (relation GNN,
prototypes) hold (1/W) dL/dphi on every process (W of them add up to dL/dphi). BatchNorm statistics
are summed over processes the same way (``sync_batchnorm``), and the momentum queues receive the
gathered keys, so queues, batch relation graph and Sinkhorn codes all see the global batch.
Only the encoders' own dropout draws differ between a split and an unsplit run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from aahr.model.aahr import StepOutput
from aahr.model.encoders import Encoded
from aahr.model.layers import MaskedBatchNorm1d


@dataclass
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def launched_by_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def init(device: torch.device) -> Context:
    """Join the process group torchrun set up (if any). Under torchrun with CUDA, each process uses
    cuda:LOCAL_RANK and NCCL; on CPU gloo."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Context(device=device)
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), local_rank, device)


def shutdown(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


class _AllGatherWithGrad(torch.autograd.Function):
    """Concatenate every process's equally-sized tensor along dim 0; backward sums the incoming
    gradients over processes and returns this process's slot."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


class _AllReduceWithGrad(torch.autograd.Function):
    """Sum over processes; backward sums the gradients over processes too."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """n x ... on each process -> (W n) x ..., gradient flowing back to each process's slot."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return x
    return _AllGatherWithGrad.apply(x)


@torch.no_grad()
def all_gather(x: torch.Tensor) -> torch.Tensor:
    """n x ... on each process -> (W n) x ... (no gradient)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, 0)


def all_reduce_with_grad(x: torch.Tensor) -> torch.Tensor:
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return x
    return _AllReduceWithGrad.apply(x)


def _pad_length(x: torch.Tensor, length: int, value=0) -> torch.Tensor:
    """Pad dim 1 (fragments) to ``length``."""
    if x.shape[1] == length:
        return x
    pad = x.new_full((x.shape[0], length - x.shape[1], *x.shape[2:]), value)
    return torch.cat([x, pad], 1)


def gather_output(ctx: Context, out: StepOutput) -> StepOutput:
    """Every process's StepOutput -> the global batch's, in rank order (rank 0's pairs first).
    Embeddings keep their gradient; fragments (used detached) and ids do not. Word sequences are
    padded to the longest over processes first."""
    if not ctx.distributed:
        return out

    def encoded(e: Encoded) -> Encoded:
        length = torch.tensor([e.mask.shape[1]], device=e.mask.device)
        dist.all_reduce(length, op=dist.ReduceOp.MAX)
        n = int(length)
        return Encoded(fragments=all_gather(_pad_length(e.fragments.detach(), n)),
                       mask=all_gather(_pad_length(e.mask, n, False).to(torch.uint8)).bool(),  # NCCL-safe dtype
                       local=all_gather_with_grad(e.local),
                       embedding=all_gather_with_grad(e.embedding))

    keys = [None if k is None else all_gather(k) for k in (out.img_keys, out.txt_keys)]
    cap_ids = None if out.cap_ids is None else all_gather(out.cap_ids)
    return StepOutput(encoded(out.img), encoded(out.txt), all_gather(out.img_ids), *keys, cap_ids)


def sync_batchnorm(model: torch.nn.Module) -> None:
    """Make every MaskedBatchNorm1d sum its statistics over processes."""
    for m in model.modules():
        if isinstance(m, MaskedBatchNorm1d):
            m.reduce = all_reduce_with_grad


def all_reduce_gradients(params: list[torch.nn.Parameter]) -> None:
    """Sum every gradient over processes (one flat buffer, one collective)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
