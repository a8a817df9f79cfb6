"""The synth region extractor: the role of bottom-up attention (Faster R-CNN trained on Visual Genome
objects and attributes), scaled to 64x64 scenes of shapes.

A small CNN gives a stride-2 feature map (a stride-4 branch upsampled into it widens the receptive
field); a centre/size head on that map proposes boxes (proposals.py); RoIAlign pools each box and
an MLP turns it into the region feature; linear heads classify shape (+ background), colour and
size, the labels that shape the feature space (as VG's object and attribute heads do). Only the
pretrain split's objects are used as labels; the last ``heldout`` share of pretrain images is kept
out of training for the accuracy report.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align
from tqdm import tqdm

from aahr.features import proposals
from aahr.features.common import batches, box_geometry, load_stage, save_stage, seed_everything
from aahr.synth.scenes import COLOURS, SHAPES, SIZES

COLOUR_NAMES = tuple(COLOURS)
BACKGROUND = len(SHAPES)  # extra shape class for boxes that hold no object
IGNORE = -100
BOX_FEATURES = 5  # x0, y0, x1, y1, area as fractions of the image (appended when append_box)


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class RegionExtractor(nn.Module):
    """CNN + centre head + RoIAlign + region MLP + shape / colour / size heads.

    Two maps: stride 2 (``width`` channels: fine enough to separate small touching shapes) and
    stride 4 (3 x ``width`` channels: the receptive field that sees whole large shapes). The stride-4
    map is upsampled into the stride-2 one for the centre head; a region's feature pools both.
    """

    stride = 2  # of the map the centre head reads
    C4_MULT = 3  # stride-4 channels per stride-2 channel

    def __init__(self, width: int = 16, feature_dim: int = 256, pool: int = 6):
        super().__init__()
        w, w4 = width, self.C4_MULT * width
        self.pool = pool
        self.c2 = nn.Sequential(conv_bn(3, w, 2), conv_bn(w, w))                          # stride 2
        self.c4 = nn.Sequential(conv_bn(w, w4, 2), conv_bn(w4, w4), conv_bn(w4, w4))      # stride 4
        self.lateral = nn.Conv2d(w4, w, 1)
        self.fuse = conv_bn(w, w)
        self.centre = nn.Sequential(nn.Conv2d(w, w, 3, 1, 1), nn.ReLU(inplace=True),
                                    nn.Conv2d(w, proposals.HEAD_CHANNELS, 1))
        self.centre[-1].bias.data[0] = -2.19  # prior: few cells are centres (CenterNet init)
        pooled = w * pool * pool + w4 * (pool // 2) ** 2
        self.embed = nn.Sequential(nn.Linear(pooled, feature_dim), nn.ReLU(inplace=True),
                                   nn.Linear(feature_dim, feature_dim), nn.ReLU(inplace=True))
        self.shape_head = nn.Linear(feature_dim, len(SHAPES) + 1)
        self.colour_head = nn.Linear(feature_dim, len(COLOUR_NAMES))
        self.size_head = nn.Linear(feature_dim, len(SIZES))

    def feature_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, 3, H, W) in [-0.5, 0.5] -> (B, w, H/2, W/2) fused map and (B, 3w, H/4, W/4)."""
        c2 = self.c2(x)
        c4 = self.c4(c2)
        up = F.interpolate(self.lateral(c4), size=c2.shape[-2:], mode="nearest")
        return self.fuse(c2 + up), c4

    def region_features(self, maps: tuple[torch.Tensor, torch.Tensor], boxes: list[torch.Tensor]) -> torch.Tensor:
        """maps from feature_maps(); boxes: per image (R_i, 4) in input pixels -> (sum R_i, D)."""
        p2, c4 = maps
        r2 = roi_align(p2, boxes, output_size=self.pool, spatial_scale=0.5, sampling_ratio=2,
                       aligned=True)                                   # (R, w, pool, pool)
        r4 = roi_align(c4, boxes, output_size=self.pool // 2, spatial_scale=0.25, sampling_ratio=2,
                       aligned=True)                                   # (R, 3w, pool/2, pool/2)
        return self.embed(torch.cat([r2.flatten(1), r4.flatten(1)], 1))

    def classify(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.shape_head(feats), self.colour_head(feats), self.size_head(feats)


def model_config(cfg: dict) -> dict:
    """The parts of params.regions that change the trained weights (for reuse checks)."""
    keys = ("feature_dim", "width", "pool", "image_size", "epochs", "batch_size", "lr", "weight_decay", "heldout")
    return {k: cfg[k] for k in keys}


def build_model(cfg: dict) -> RegionExtractor:
    return RegionExtractor(cfg["width"], cfg["feature_dim"], cfg["pool"])


# ----------------------------------------------------------------------------------------- labels


def scene_labels(scenes_json: dict) -> list[dict]:
    """Per image: boxes (M, 4) float32 in image pixels and shape / colour / size indices (M,)."""
    out = []
    for im in scenes_json["images"]:
        objs = im["objects"]
        out.append({
            "boxes": np.array([o["box"] for o in objs], np.float32).reshape(-1, 4),
            "shape": np.array([SHAPES.index(o["shape"]) for o in objs], np.int64),
            "colour": np.array([COLOUR_NAMES.index(o["colour"]) for o in objs], np.int64),
            "size": np.array([SIZES.index(o["size"]) for o in objs], np.int64),
        })
    return out


def to_input(images: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, size, size) in [-0.5, 0.5] on ``device``."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float() / 255.0 - 0.5
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


def _roi_samples(labels: list[dict], rng: np.random.Generator, size: int, n_background: int = 2):
    """Training RoIs per image: jittered object boxes (so proposals at test time are in-distribution)
    plus ``n_background`` random boxes that overlap no object (shape class BACKGROUND)."""
    boxes, shape, colour, sz = [], [], [], []
    for lab in labels:
        b = lab["boxes"].astype(np.float64)
        m = len(b)
        w = b[:, 2] - b[:, 0]
        h = b[:, 3] - b[:, 1]
        cx = (b[:, 0] + b[:, 2]) / 2 + rng.uniform(-0.1, 0.1, m) * w
        cy = (b[:, 1] + b[:, 3]) / 2 + rng.uniform(-0.1, 0.1, m) * h
        s = rng.uniform(0.85, 1.15, (2, m))
        jit = np.stack([cx - w * s[0] / 2, cy - h * s[1] / 2, cx + w * s[0] / 2, cy + h * s[1] / 2], 1)
        bg = []
        for _ in range(8 * n_background):
            if len(bg) == n_background:
                break
            r = rng.uniform(0.04, 0.18) * size
            c = rng.uniform(r, size - r, 2)
            cand = np.array([[c[0] - r, c[1] - r, c[0] + r, c[1] + r]])
            if m == 0 or proposals.box_iou(cand, b).max() < 0.3:
                bg.append(cand[0])
        bg = np.array(bg, np.float64).reshape(-1, 4)
        boxes.append(torch.from_numpy(np.concatenate([jit, bg]).astype(np.float32)))
        shape.append(np.concatenate([lab["shape"], np.full(len(bg), BACKGROUND)]))
        colour.append(np.concatenate([lab["colour"], np.full(len(bg), IGNORE)]))
        sz.append(np.concatenate([lab["size"], np.full(len(bg), IGNORE)]))
    cat = lambda xs: torch.from_numpy(np.concatenate(xs).astype(np.int64))  # noqa: E731
    return boxes, cat(shape), cat(colour), cat(sz)


def _scaled(labels: list[dict], scale: float, flip: np.ndarray, size: int) -> list[dict]:
    """Labels with boxes scaled to the input size and mirrored where ``flip``."""
    out = []
    for lab, f in zip(labels, flip):
        b = lab["boxes"] * scale
        if f:
            b = np.stack([size - b[:, 2], b[:, 1], size - b[:, 0], b[:, 3]], 1)
        out.append(dict(lab, boxes=b.astype(np.float32)))
    return out


# --------------------------------------------------------------------------------------- training


def train_extractor(images: np.ndarray, labels: list[dict], cfg: dict, seed: int, device: torch.device,
                    progress: bool = True) -> tuple[RegionExtractor, dict]:
    """Train on the first (1 - heldout) share of the pretrain images; report on the rest.

    images: uint8 (N, H, W, 3); labels: scene_labels() of the same images.
    Returns the model (eval mode, on ``device``) and metrics (held-out accuracies, proposal recall).
    """
    t0 = time.perf_counter()
    gen = seed_everything(seed)
    n = len(images)
    n_train = n - int(round(cfg["heldout"] * n)) if n > 1 else n
    size = cfg["image_size"]
    scale = size / images.shape[1]
    model = build_model(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    steps_per_epoch = math.ceil(n_train / cfg["batch_size"])
    total = steps_per_epoch * cfg["epochs"]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=max(total, 1),
                                                pct_start=0.15)
    grid = size // model.stride
    bar = tqdm(total=total, desc="regions: train extractor", unit="step", disable=not progress,
               mininterval=1.0)
    model.train()
    last = {}
    for epoch in range(cfg["epochs"]):
        order = torch.randperm(n_train, generator=gen).numpy()
        rng = np.random.default_rng([seed, epoch])
        for sl in batches(n_train, cfg["batch_size"]):
            idx = np.sort(order[sl])
            flip = rng.random(len(idx)) < 0.5
            x = to_input(images[idx], size, device)                      # (B, 3, S, S)
            x = torch.where(torch.from_numpy(flip).to(device)[:, None, None, None], x.flip(-1), x)
            labs = _scaled([labels[i] for i in idx], scale, flip, size)
            tgt = {k: v.to(device) for k, v in proposals.centre_targets(
                [lab["boxes"] for lab in labs], grid, model.stride).items()}
            rois, y_shape, y_colour, y_size = _roi_samples(labs, rng, size)
            maps = model.feature_maps(x)                                 # (B, w, S/2, S/2), (B, 3w, S/4, S/4)
            det_loss = proposals.centre_loss(model.centre(maps[0]), tgt)
            ls, lc, lz = model.classify(model.region_features(maps, [r.to(device) for r in rois]))
            cls_loss = (F.cross_entropy(ls, y_shape.to(device))
                        + F.cross_entropy(lc, y_colour.to(device), ignore_index=IGNORE)
                        + F.cross_entropy(lz, y_size.to(device), ignore_index=IGNORE))
            loss = det_loss + cls_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            last = {"det": round(det_loss.item(), 4), "cls": round(cls_loss.item(), 4)}
            bar.set_postfix(epoch=epoch + 1, det=f"{last['det']:.3f}", cls=f"{last['cls']:.3f}", refresh=False)
            bar.update()
    bar.close()
    model.eval()
    metrics = {"train_images": int(n_train), "heldout_images": int(n - n_train),
               "train_seconds": round(time.perf_counter() - t0, 1), "final_loss": last}
    if n - n_train:
        metrics |= evaluate_extractor(model, images[n_train:], labels[n_train:], cfg, device)
    return model, metrics


@torch.no_grad()
def evaluate_extractor(model: RegionExtractor, images: np.ndarray, labels: list[dict], cfg: dict,
                       device: torch.device) -> dict:
    """Held-out accuracy (percent) of shape / colour / size on the true boxes, and how many true
    objects the K proposals find (recall at IoU >= 0.5, mean best IoU)."""
    model.eval()
    size, k = cfg["image_size"], cfg["regions_per_image"]
    scale = size / images.shape[1]
    correct = np.zeros(4)
    n_obj, found, best_iou = 0, 0, []
    for sl in batches(len(images), cfg["extract_batch_size"]):
        x = to_input(images[sl], size, device)
        maps = model.feature_maps(x)
        boxes, _ = proposals.decode(model.centre(maps[0]), k, model.stride, (size, size))  # (B, K, 4)
        labs = labels[sl]
        gt = [torch.from_numpy(lab["boxes"] * scale).to(device) for lab in labs]
        ls, lc, lz = model.classify(model.region_features(maps, gt))
        y = {key: np.concatenate([lab[key] for lab in labs]) for key in ("shape", "colour", "size")}
        ps = ls[:, :BACKGROUND].argmax(1).cpu().numpy()  # an object box: best object class
        pc, pz = lc.argmax(1).cpu().numpy(), lz.argmax(1).cpu().numpy()
        correct += [(ps == y["shape"]).sum(), (pc == y["colour"]).sum(), (pz == y["size"]).sum(),
                    ((ps == y["shape"]) & (pc == y["colour"]) & (pz == y["size"])).sum()]
        n_obj += len(ps)
        for lab, b in zip(labs, boxes.cpu().numpy()):
            if len(lab["boxes"]):
                iou = proposals.box_iou(lab["boxes"] * scale, b).max(1)  # (M,) best proposal per object
                found += int((iou >= 0.5).sum())
                best_iou.extend(iou.tolist())
    acc = [round(float(a), 2) for a in 100.0 * correct / max(n_obj, 1)]
    return {"heldout_objects": n_obj, "shape_acc": acc[0], "colour_acc": acc[1], "size_acc": acc[2],
            "all_three_acc": acc[3],
            "proposal_recall_iou50": round(100.0 * found / max(n_obj, 1), 2),
            "proposal_mean_best_iou": round(float(np.mean(best_iou)) if best_iou else 0.0, 3)}


# ------------------------------------------------------------------------------------- extraction


def output_dim(cfg: dict) -> int:
    return cfg["feature_dim"] + (BOX_FEATURES if cfg["append_box"] else 0)


@torch.no_grad()
def extract_batch(model: RegionExtractor, images: np.ndarray, cfg: dict,
                  device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (B, H, W, 3) -> features (B, K, D) float32 and boxes (B, K, 4) in the images' pixels."""
    size, k = cfg["image_size"], cfg["regions_per_image"]
    b, h, w = images.shape[:3]
    x = to_input(images, size, device)                                       # (B, 3, S, S)
    maps = model.feature_maps(x)                                             # (B, w, S/2, S/2), (B, 3w, S/4, S/4)
    boxes, _ = proposals.decode(model.centre(maps[0]), k, model.stride, (size, size))  # (B, K, 4)
    feats = model.region_features(maps, list(boxes)).view(b, k, -1)          # (B, K, D)
    boxes = boxes * boxes.new_tensor([w / size, h / size, w / size, h / size])  # back to image pixels
    feats, boxes = feats.float().cpu().numpy(), boxes.float().cpu().numpy()
    if cfg["append_box"]:
        geo = box_geometry(boxes, np.tile([h, w], (b, 1)))                   # (B, K, 5)
        feats = np.concatenate([feats, geo], -1)                             # (B, K, D + 5)
    return feats, boxes


def extract_split(model: RegionExtractor, images: np.ndarray, cfg: dict, device: torch.device,
                  ims_out: np.ndarray, boxes_out: np.ndarray, progress: bool = True, desc: str = "") -> None:
    """Fill ``ims_out`` (N, K, D) and ``boxes_out`` (N, K, 4) batch by batch."""
    model.eval()
    bs = cfg["extract_batch_size"]
    for sl in tqdm(list(batches(len(images), bs)), desc=desc, unit="batch", disable=not progress,
                   mininterval=1.0):
        feats, boxes = extract_batch(model, images[sl], cfg, device)
        ims_out[sl] = feats
        boxes_out[sl] = boxes


# ------------------------------------------------------------------------------------ checkpoints


def save_checkpoint(path: Path, model: RegionExtractor, cfg: dict, seed: int, data: str,
                    metrics: dict) -> None:
    meta = {"config": model_config(cfg), "seed": seed, "data": data, "metrics": metrics}
    save_stage(path, {"state_dict": model.state_dict()}, meta)


def load_checkpoint(path: Path, cfg: dict, seed: int, data: str,
                    device: torch.device) -> tuple[RegionExtractor, dict] | None:
    """The saved extractor if it was trained with the same settings and seed on the same data
    (``data``: common.fingerprint of the pretrain images and labels), else None."""
    ckpt = load_stage(path, {"config": model_config(cfg), "seed": seed, "data": data})
    if ckpt is None:
        return None
    model = build_model(cfg)
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt["meta"].get("metrics", {})
