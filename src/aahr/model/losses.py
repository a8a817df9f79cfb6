"""The base triplet ranking loss (spec §3.1), both directions, summed over the batch.

Anchors are every positive pair (a, p) of the batch: captions of the same image are positives,
never negatives (a batch of captions can hold one image twice). Per anchor one negative of the
anchor's row is chosen by

- ``distance_weighted`` (the authors' default; Wu et al., ICCV 2017): dist = sqrt(2 - 2 s) clamped
  at >= ``min_distance``, log-weight (2 - d) log dist - ((d - 3) / 2) log(1 - dist^2 / 4), weights
  zeroed on positives and where dist >= ``cutoff``, one negative drawn per positive pair;
- ``hardest`` (VSE++ max violation), after ``hardest_warmup_epochs`` of
- ``mean`` (the hinge averaged over all negatives of the row).

Deviation, stated: where an anchor row has no eligible negative, the authors' code returns a zero
loss for the whole batch (a failed torch.multinomial); here only that anchor contributes zero.
"""

from __future__ import annotations

import torch

SAMPLINGS = ("distance_weighted", "hardest")


def same_image(row_ids: torch.Tensor, col_ids: torch.Tensor) -> torch.Tensor:
    """R x C bool: True where row and column come from the same image (positives)."""
    return row_ids[:, None] == col_ids[None, :]


def distance_weights(sims: torch.Tensor, negatives: torch.Tensor, dim: int = 512,
                     min_distance: float = 0.5, cutoff: float = 1.7) -> torch.Tensor:
    """Sampling weights over each row's negatives: R x C, rows sum to 1 (or are all zero)."""
    sims = sims.detach().float()
    dist = (2 - 2 * sims).clamp_min(0).sqrt().clamp_min(min_distance)
    log_w = (2.0 - dim) * dist.log() - ((dim - 3.0) / 2.0) * (1.0 - 0.25 * dist * dist).clamp_min(1e-8).log()
    eligible = negatives & (dist < cutoff)
    log_w = log_w.masked_fill(~eligible, -torch.inf)
    top = log_w.amax(1, keepdim=True).nan_to_num(0.0, neginf=0.0)
    w = (log_w - top).exp()                                                   # exp(-inf) = 0
    return w / w.sum(1, keepdim=True).clamp_min(1e-30)


def _one_direction(sims: torch.Tensor, positives: torch.Tensor, margin: float, sampling: str,
                   generator: torch.Generator | None, dws: dict) -> torch.Tensor:
    """sims: R x C (rows are anchors' queries), positives: R x C -> summed hinge."""
    negatives = ~positives
    anchor, pos = positives.nonzero(as_tuple=True)                            # P, P
    s_ap = sims[anchor, pos]                                                  # P
    if sampling == "mean":
        hinge = (margin + sims[anchor] - s_ap[:, None]).clamp_min(0) * negatives[anchor]  # P x C
        n = negatives[anchor].sum(1).clamp_min(1)
        return (hinge.sum(1) / n).sum()
    if sampling == "hardest":
        s_an = sims.masked_fill(positives, -torch.inf).amax(1)[anchor]        # P
        has = negatives.any(1)[anchor]
        return ((margin + s_an - s_ap).clamp_min(0) * has).nan_to_num(0.0).sum()
    if sampling == "distance_weighted":
        w = distance_weights(sims, negatives, **dws)[anchor]                  # P x C
        has = w.sum(1) > 0
        if not has.any():
            return sims.sum() * 0.0
        neg = torch.multinomial(w[has], 1, generator=generator).squeeze(1)    # P'
        s_an = sims[anchor[has], neg]
        return (margin + s_an - s_ap[has]).clamp_min(0).sum()
    raise ValueError(f"unknown negative sampling {sampling!r}")


def triplet_loss(img: torch.Tensor, txt: torch.Tensor, img_ids: torch.Tensor, margin: float = 0.2,
                 sampling: str = "distance_weighted", generator: torch.Generator | None = None,
                 dws: dict | None = None) -> torch.Tensor:
    """img: B x E, txt: B x E (row i of each from the pair i), img_ids: B -> scalar.

    ``dws`` holds ``dim``, ``min_distance`` and ``cutoff`` of distance-weighted sampling.
    """
    sims = img.float() @ txt.float().T                                        # B x B
    positives = same_image(img_ids, img_ids)                                  # B x B
    dws = dws or {}
    return (_one_direction(sims, positives, margin, sampling, generator, dws)        # image -> text
            + _one_direction(sims.T, positives.T, margin, sampling, generator, dws))  # text -> image
