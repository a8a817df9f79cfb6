"""The base triplet ranking loss (spec §3.1), both directions, summed over the batch.

Anchors are every positive pair (a, p) of the batch: captions of the same image are positives,
never negatives (a batch of captions can hold one image twice). Per anchor one negative of the
anchor's row is chosen by

- ``distance_weighted`` (the authors' default; Wu et al., ICCV 2017): dist = sqrt(2 - 2 s) clamped
  at >= ``min_distance``, log-weight (2 - d) log dist - ((d - 3) / 2) log(1 - dist^2 / 4), weights
  zeroed on positives and where dist >= ``cutoff``, one negative drawn per positive pair;
- ``hardest`` (VSE++ max violation), after ``hardest_warmup_epochs`` of
- ``mean`` (the hinge averaged over all negatives of the row), also a sampling of its own.

Deviation, stated: where an anchor row has no eligible negative, the authors' code returns a zero
loss for the whole batch (a failed torch.multinomial); here only that anchor contributes zero.
"""

from __future__ import annotations

import torch

SAMPLINGS = ("distance_weighted", "hardest", "mean")


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
                   generator: torch.Generator | None, dws: dict,
                   truth: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
    """sims: R x C (rows are anchors' queries), positives: R x C -> (summed hinge, (negatives the
    loss used, how many of them are false negatives)). ``truth`` (R x C, true where the row's item
    truly matches the column's: the extended positives) is needed for the count, else it is (0, 0).
    The negatives a loss uses: the drawn one (distance-weighted), the hardest one, or (mean) every
    negative whose hinge is active."""
    negatives = ~positives
    anchor, pos = positives.nonzero(as_tuple=True)                            # P, P
    s_ap = sims[anchor, pos]                                                  # P
    used = torch.zeros_like(sims[anchor], dtype=torch.bool)                   # P x C
    if sampling == "mean":
        hinge = (margin + sims[anchor] - s_ap[:, None]).clamp_min(0) * negatives[anchor]  # P x C
        n = negatives[anchor].sum(1).clamp_min(1)
        loss = (hinge.sum(1) / n).sum()
        used = hinge.detach() > 0
    elif sampling == "hardest":
        s_an, hardest = sims.masked_fill(positives, -torch.inf).max(1)        # R, R
        has = negatives.any(1)[anchor]
        loss = ((margin + s_an[anchor] - s_ap).clamp_min(0) * has).nan_to_num(0.0).sum()
        rows = has.nonzero().squeeze(1)
        used[rows, hardest[anchor][rows]] = True
    elif sampling == "distance_weighted":
        w = distance_weights(sims, negatives, **dws)[anchor]                  # P x C
        has = w.sum(1) > 0
        if not has.any():
            return sims.sum() * 0.0, (0, 0)
        neg = torch.multinomial(w[has], 1, generator=generator).squeeze(1)    # P'
        loss = (margin + sims[anchor[has], neg] - s_ap[has]).clamp_min(0).sum()
        used[has.nonzero().squeeze(1), neg] = True
    else:
        raise ValueError(f"unknown negative sampling {sampling!r}")
    if truth is None:
        return loss, (0, 0)
    return loss, (int(used.sum()), int((used & truth[anchor]).sum()))


def triplet_loss(img: torch.Tensor, txt: torch.Tensor, img_ids: torch.Tensor, margin: float = 0.2,
                 sampling: str = "distance_weighted", generator: torch.Generator | None = None,
                 dws: dict | None = None, truth: torch.Tensor | None = None,
                 counts: list | None = None) -> torch.Tensor:
    """img: B x E, txt: B x E (row i of each from the pair i), img_ids: B -> scalar.

    ``dws`` holds ``dim``, ``min_distance`` and ``cutoff`` of distance-weighted sampling. With
    ``truth`` (B x B bool: image i truly matches caption j; synth knows it) and a ``counts`` list,
    (negatives used, false negatives among them) of both directions are appended to ``counts``.
    """
    sims = img.float() @ txt.float().T                                        # B x B
    positives = same_image(img_ids, img_ids)                                  # B x B
    dws = dws or {}
    i2t, n_i2t = _one_direction(sims, positives, margin, sampling, generator, dws, truth)
    t2i, n_t2i = _one_direction(sims.T, positives.T, margin, sampling, generator, dws,
                                None if truth is None else truth.T)
    if counts is not None and truth is not None:
        counts.append((n_i2t[0] + n_t2i[0], n_i2t[1] + n_t2i[1]))
    return i2t + t2i
