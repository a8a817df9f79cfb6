"""Region proposals for synth: a learned centre/size head (CenterNet-style), decoded from pixels only.

Why learned: the synth scenes overlap, occlude and carry clutter (thin lines, specks), so colour
segmentation merges touching shapes and picks up clutter; a dense head trained on the pretrain
split's boxes (the role of the detector trained on Visual Genome) separates them. At extraction the
boxes come from the image alone, never from the generator's scene description.

Per cell of a stride-``s`` grid the head predicts 5 numbers: a centre logit, the centre's offset
inside the cell (2, in cells) and the log half-width / half-height of the box (2, in cells).
Decoding keeps local maxima of the centre map (3x3 max-pool NMS) and takes the K best; when fewer
than K peaks exist the best remaining cells fill in, so every image gets exactly K boxes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

HEAD_CHANNELS = 5  # centre logit, offset x, offset y, log half-width, log half-height


def centre_targets(boxes: list[np.ndarray], grid: int, stride: float) -> dict[str, torch.Tensor]:
    """Dense targets for a batch.

    boxes: per image an (M_i, 4) array of x0 y0 x1 y1 in input pixels.
    Returns heat (B, G, G) Gaussian bumps with a 1 at each centre cell, reg (B, 4, G, G) regression
    targets at centre cells and mask (B, G, G) marking those cells.
    """
    b = len(boxes)
    heat = np.zeros((b, grid, grid), np.float32)
    reg = np.zeros((b, 4, grid, grid), np.float32)
    mask = np.zeros((b, grid, grid), bool)
    ys, xs = np.mgrid[0:grid, 0:grid].astype(np.float32)  # (G, G) cell indices
    for i, bx in enumerate(boxes):
        for x0, y0, x1, y1 in np.asarray(bx, np.float32).reshape(-1, 4):
            cx, cy = (x0 + x1) / 2 / stride, (y0 + y1) / 2 / stride  # centre, in cells
            hw, hh = max((x1 - x0) / 2 / stride, 0.25), max((y1 - y0) / 2 / stride, 0.25)
            gx, gy = min(int(cx), grid - 1), min(int(cy), grid - 1)
            sigma = max(0.5, min(hw, hh) / 2.5)
            bump = np.exp(-((xs - gx) ** 2 + (ys - gy) ** 2) / (2 * sigma**2))
            heat[i] = np.maximum(heat[i], bump)
            reg[i, :, gy, gx] = (cx - gx, cy - gy, np.log(hw), np.log(hh))
            mask[i, gy, gx] = True
    return {"heat": torch.from_numpy(heat), "reg": torch.from_numpy(reg), "mask": torch.from_numpy(mask)}


def centre_loss(out: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Penalty-reduced focal loss on the centre map (CenterNet) + L1 on offsets / sizes at centres.

    out: (B, 5, G, G) raw head output.
    """
    heat = targets["heat"]  # (B, G, G)
    mask = targets["mask"]  # (B, G, G)
    logit = out[:, 0]
    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos = heat.eq(1.0) & mask
    pos_loss = -(F.logsigmoid(logit) * (1 - p) ** 2)[pos].sum()
    neg_loss = -(F.logsigmoid(-logit) * p**2 * (1 - heat) ** 4)[~pos].sum()
    n_pos = pos.sum().clamp(min=1)
    reg = out[:, 1:].permute(0, 2, 3, 1)[mask]             # (P, 4)
    reg_t = targets["reg"].permute(0, 2, 3, 1)[mask]       # (P, 4)
    reg_loss = F.l1_loss(reg, reg_t, reduction="sum")
    return (pos_loss + neg_loss + reg_loss) / n_pos


@torch.no_grad()
def decode(out: torch.Tensor, k: int, stride: float, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The K best boxes per image from the head output.

    out: (B, 5, G, G). size: (height, width) of the input in pixels.
    Returns boxes (B, K, 4) x0 y0 x1 y1 in input pixels (clipped, at least 1 pixel wide) and
    scores (B, K) in [0, 1], best first.
    """
    b, _, g, _ = out.shape
    heat = torch.sigmoid(out[:, 0])                                    # (B, G, G)
    peak = heat.eq(F.max_pool2d(heat[:, None], 3, 1, 1)[:, 0])         # (B, G, G) local maxima
    rank = torch.where(peak, heat, heat - 1.0).flatten(1)              # (B, G*G) peaks first
    k_eff = min(k, g * g)
    _, idx = rank.topk(k_eff, dim=1)                                   # (B, K)
    scores = heat.flatten(1).gather(1, idx)                            # (B, K)
    reg = out[:, 1:].flatten(2)                                        # (B, 4, G*G)
    reg = reg.gather(2, idx[:, None, :].expand(-1, 4, -1))             # (B, 4, K)
    gy, gx = (idx // g).float(), (idx % g).float()
    cx = (gx + reg[:, 0]) * stride
    cy = (gy + reg[:, 1]) * stride
    hw = reg[:, 2].clamp(-3, 4).exp() * stride
    hh = reg[:, 3].clamp(-3, 4).exp() * stride
    h, w = size
    x0 = (cx - hw).clamp(0, w - 1)
    y0 = (cy - hh).clamp(0, h - 1)
    x1 = torch.maximum((cx + hw).clamp(0, w), x0 + 1)
    y1 = torch.maximum((cy + hh).clamp(0, h), y0 + 1)
    boxes = torch.stack([x0, y0, x1, y1], -1)                          # (B, K, 4)
    if k_eff < k:  # a tiny grid: repeat the whole image to reach K
        pad = torch.tensor([0.0, 0.0, w, h]).expand(b, k - k_eff, 4)
        boxes = torch.cat([boxes, pad.to(boxes)], 1)
        scores = torch.cat([scores, scores.new_zeros(b, k - k_eff)], 1)
    return boxes, scores


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (M, N) of boxes a (M, 4) and b (N, 4), x0 y0 x1 y1."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)
