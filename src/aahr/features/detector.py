"""Region features on real images: a torchvision Faster R-CNN from a local weights file.

The field's features come from bottom-up attention (Caffe Faster R-CNN, ResNet-101, Visual Genome's
1600 objects + 400 attributes, 2048-d per box). torchvision ships the same detector family; with its
COCO weights (or any torchvision-format checkpoint, e.g. one trained on Visual Genome) this stage
gives the same layout: the K most confident boxes per image and the box head's pooled feature per
box (1024-d for the torchvision heads). The pipeline never downloads: without a weights file it
stops and says how to get one, or to use the field's precomputed ``{split}_ims.npy`` instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchvision
from torchvision.ops import box_iou, nms

from aahr.features.common import MissingWeightsError, require_weights

ARCHS = ("fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn")
WEIGHT_ENUMS = {  # torchvision's COCO weights for each architecture (their URLs, for the error message)
    "fasterrcnn_resnet50_fpn": "FasterRCNN_ResNet50_FPN_Weights",
    "fasterrcnn_resnet50_fpn_v2": "FasterRCNN_ResNet50_FPN_V2_Weights",
    "fasterrcnn_mobilenet_v3_large_fpn": "FasterRCNN_MobileNet_V3_Large_FPN_Weights",
}
CLASS_KEY = "roi_heads.box_predictor.cls_score.weight"


def weights_url(arch: str) -> str:
    enum = getattr(torchvision.models.detection, WEIGHT_ENUMS.get(arch, ""), None)
    return enum.DEFAULT.url if enum is not None else "see torchvision.models.detection"


def how_to_get(arch: str, precomp: str | Path = "{data_root}/{dataset}/precomp") -> str:
    return (f"Download the {arch} weights on a machine with internet (torchvision's COCO checkpoint: "
            f"{weights_url(arch)}, or any torchvision-format state dict), "
            "copy the file to this machine and pass --weights PATH or set regions.detector.weights in params.yaml. "
            "Or skip this stage: put the field's precomputed bottom-up-attention features "
            "({split}_ims.npy, e.g. from the Kaggle dataset kuanghueilee/scan-features) in "
            f"{precomp}/ and go on with the next stage.")


def build_detector(arch: str, state_dict: dict | None, min_size: int, max_size: int,
                   num_classes: int = 91) -> torch.nn.Module:
    """The torchvision detector with ``state_dict`` loaded (None = random weights: tests only)."""
    if arch not in ARCHS:
        raise MissingWeightsError(f"regions.detector.arch: unknown detector {arch!r} (known: {', '.join(ARCHS)})")
    if state_dict is not None and CLASS_KEY in state_dict:
        num_classes = int(state_dict[CLASS_KEY].shape[0])  # e.g. 1601 for a Visual Genome checkpoint
    builder = getattr(torchvision.models.detection, arch)
    model = builder(weights=None, weights_backbone=None, num_classes=num_classes, min_size=min_size,
                    max_size=max_size, box_score_thresh=0.0)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model.eval().requires_grad_(False)


def load_detector(arch: str, weights: str | Path | None, min_size: int, max_size: int, device: torch.device,
                  precomp: str | Path | None = None) -> torch.nn.Module:
    """The detector from a local weights file; MissingWeightsError (how to get them, or where the
    precomputed features would go: ``precomp``) without one."""
    how = how_to_get(arch) if precomp is None else how_to_get(arch, precomp)
    path = require_weights(weights, f"Faster R-CNN ({arch})", how)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]  # a training checkpoint wrapping the state dict
        return build_detector(arch, state, min_size, max_size).to(device)
    except Exception as exc:  # whatever the file holds, say which file and what was expected
        first = (str(exc).splitlines() or [""])[0][:200]
        raise MissingWeightsError(f"{path}: not a {arch} state dict ({type(exc).__name__}: {first}). "
                                  + how) from None


def _pick_boxes(dets: torch.Tensor, scores: torch.Tensor, proposals: torch.Tensor, k: int,
                height: int, width: int) -> torch.Tensor:
    """K boxes: the most confident detections (class-agnostic NMS at IoU 0.7, as one box can be
    detected under several classes), then the best RPN proposals, then the whole image."""
    keep = nms(dets, scores, 0.7)[:k]
    boxes = dets[keep]                                                       # (<=K, 4)
    if len(boxes) < k and len(proposals):
        fresh = proposals if not len(boxes) else proposals[box_iou(proposals, boxes).amax(1) < 0.7]
        boxes = torch.cat([boxes, fresh[:k - len(boxes)]])
    if len(boxes) < k:
        whole = boxes.new_tensor([[0.0, 0.0, width, height]]).expand(k - len(boxes), 4)
        boxes = torch.cat([boxes, whole])
    return boxes


@torch.no_grad()
def extract_regions(model: torch.nn.Module, images: list[torch.Tensor], k: int) -> tuple[np.ndarray, np.ndarray]:
    """images: (3, H_i, W_i) floats in [0, 1] on the model's device -> features (B, K, D) float32
    (D = the box head's width, 1024) and boxes (B, K, 4) x0 y0 x1 y1 in each image's pixels."""
    original = [tuple(im.shape[-2:]) for im in images]
    batch, _ = model.transform(images)                                       # resized + normalised
    feats = model.backbone(batch.tensors)                                    # FPN levels
    props, _ = model.rpn(batch, feats)                                       # per image (P, 4), best first
    dets, _ = model.roi_heads(feats, props, batch.image_sizes)               # per image boxes / scores
    boxes = [_pick_boxes(d["boxes"], d["scores"], p, k, h, w)
             for d, p, (h, w) in zip(dets, props, batch.image_sizes)]       # per image (K, 4), resized coords
    pooled = model.roi_heads.box_roi_pool(feats, boxes, batch.image_sizes)  # (B K, C, 7, 7)
    region = model.roi_heads.box_head(pooled).view(len(images), k, -1)      # (B, K, D)
    back = model.transform.postprocess([{"boxes": b} for b in boxes], batch.image_sizes, original)
    out_boxes = torch.stack([b["boxes"] for b in back])                      # (B, K, 4) original pixels
    return region.float().cpu().numpy(), out_boxes.float().cpu().numpy()


def extract_files(model: torch.nn.Module, files: list[Path], k: int, batch_size: int, append_box: bool,
                  device: torch.device, ims_file: Path, boxes_file: Path, progress: bool = False,
                  desc: str = "") -> tuple[int, int, int]:
    """Features of ``files`` (in order) into ``ims_file`` (N, K, D [+5]) and ``boxes_file`` (N, K, 4),
    written atomically batch by batch (memory stays flat on 100k-image splits). Returns (N, K, D)."""
    import contextlib

    import torchvision.transforms.functional as TF
    from tqdm import tqdm

    from aahr.features.common import box_geometry
    from aahr.features.images import iter_image_batches
    from aahr.features.store import npy_writer

    n = len(files)
    ims = boxes = None
    row = 0
    with contextlib.ExitStack() as stack:  # the writers open once the feature width is known
        for batch in tqdm(iter_image_batches(files, batch_size), total=-(-n // batch_size), desc=desc,
                          unit="batch", disable=not progress, mininterval=1.0):
            tensors = [TF.to_tensor(im).to(device) for im in batch]          # (3, H, W) in [0, 1]
            feats, bx = extract_regions(model, tensors, k)                   # (B, K, D), (B, K, 4)
            if append_box:
                hw = np.array([[im.height, im.width] for im in batch])
                feats = np.concatenate([feats, box_geometry(bx, hw)], -1)   # (B, K, D + 5)
            if ims is None:
                ims = stack.enter_context(npy_writer(ims_file, (n, k, feats.shape[-1])))
                boxes = stack.enter_context(npy_writer(boxes_file, (n, k, 4)))
            ims[row:row + len(batch)] = feats
            boxes[row:row + len(batch)] = bx
            row += len(batch)
        shape = ims.shape
    return shape
