"""The frozen global branch: the role of OpenCLIP ViT-B/32 (LAION-2B) in AAHR.

On synth, a small CLIP-style dual encoder (a CNN image tower, a BiGRU text tower over a word
vocabulary built from the pretrain captions) is trained contrastively (symmetric InfoNCE, learned
temperature) on the pretraining split only, then frozen. On real images, OpenCLIP ViT-B-32 loads
from a local weights file. Either way the branch is never trained with AAHR and runs in eval mode
without augmentation, so its embeddings are computed once per image / caption and cached: that
is exact, not an approximation.

The image tower flattens its last 8x8 map instead of pooling it: the synth captions are mostly about
spatial relations ("a red star to the left of a blue ring"), which global average pooling forgets.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from aahr.data import CAPTIONS_PER_IMAGE
from aahr.features.common import (MissingWeightsError, batches, load_stage, require_weights, save_stage,
                                  seed_everything)
from aahr.features.regions import conv_bn, to_input
from aahr.text import BiGRUTextEncoder, Vocabulary

OPENCLIP_HOW = ("Copy an OpenCLIP checkpoint for this model (for ViT-B-32 the LAION-2B one, "
                "open_clip_pytorch_model.bin from huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K, "
                "downloaded on a machine with internet) and pass it with --weights PATH or set "
                "global_branch.openclip.weights in params.yaml; or run `aahr download --dataset DATASET "
                "--what weights`, which puts it where a null global_branch.openclip.weights finds it.")


class ImageTower(nn.Module):
    """(B, 3, S, S) -> (B, dim): four conv layers down to S/8, flattened (keeps where things are)."""

    def __init__(self, image_size: int, width: int, dim: int):
        super().__init__()
        w = width
        self.convs = nn.Sequential(conv_bn(3, w, 2), conv_bn(w, 2 * w, 2), conv_bn(2 * w, 4 * w, 2),
                                   conv_bn(4 * w, 4 * w))                      # (B, 4w, S/8, S/8)
        cells = math.ceil(image_size / 8) ** 2
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * cells, 2 * dim), nn.ReLU(inplace=True),
                                  nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(x))


class TextTower(nn.Module):
    """(B, L) word ids -> (B, dim): a BiGRU, mean over the valid words."""

    def __init__(self, vocab_size: int, word_dim: int, hidden: int, dim: int):
        super().__init__()
        self.encoder = BiGRUTextEncoder(vocab_size, word_dim, hidden, dim)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        words, mask = self.encoder(ids, lengths)                             # (B, L, dim), (B, L)
        m = mask.unsqueeze(-1).float()
        return (words * m).sum(1) / m.sum(1).clamp(min=1)


class DualEncoder(nn.Module):
    def __init__(self, cfg: dict, vocab_size: int):
        super().__init__()
        self.image = ImageTower(cfg["image_size"], cfg["width"], cfg["dim"])
        self.text = TextTower(vocab_size, cfg["word_dim"], cfg["hidden"], cfg["dim"])
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg["temperature"])))


def model_config(cfg: dict) -> dict:
    keys = ("dim", "image_size", "width", "word_dim", "hidden", "max_words", "epochs", "batch_size", "lr",
            "weight_decay", "temperature")
    return {k: cfg[k] for k in keys}


def info_nce(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over the batch: img, txt (B, dim) L2-normalised; pair i is the positive."""
    logits = logit_scale.clamp(max=math.log(100.0)).exp() * img @ txt.T     # (B, B)
    target = torch.arange(len(img), device=img.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def train_dual_encoder(images: np.ndarray, captions: list[str], cfg: dict, seed: int, device: torch.device,
                       progress: bool = True) -> tuple[DualEncoder, Vocabulary, dict]:
    """Contrastive pretraining on (image, one of its 5 captions) pairs; a new caption draw each epoch.

    images: uint8 (N, H, W, 3); captions: 5N strings (caption i of image i // 5).
    """
    t0 = time.perf_counter()
    gen = seed_everything(seed)
    vocab = Vocabulary.build(captions)
    n = len(images)
    model = DualEncoder(cfg, len(vocab)).to(device)
    ids_all, len_all = vocab.encode(captions, cfg["max_words"])             # (5N, L), (5N,)
    decay = [p for name, p in model.named_parameters() if name != "logit_scale"]
    opt = torch.optim.AdamW([{"params": decay}, {"params": [model.logit_scale], "weight_decay": 0.0}],
                            lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    bs = cfg["batch_size"]
    n_used = n - n % bs if n >= bs else n  # drop the last short batch: every step sees bs - 1 negatives
    steps = math.ceil(n_used / bs) * cfg["epochs"]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=max(steps, 1), pct_start=0.1)
    bar = tqdm(total=steps, desc="global-branch: pretrain dual encoder", unit="step", disable=not progress,
               mininterval=1.0)
    model.train()
    epoch_losses: list[float] = []
    for _ in range(cfg["epochs"]):
        order = torch.randperm(n, generator=gen)
        pick = torch.randint(CAPTIONS_PER_IMAGE, (n,), generator=gen)
        epoch_losses = []
        for sl in batches(n_used, bs):
            idx = order[sl]
            cap = idx * CAPTIONS_PER_IMAGE + pick[idx]
            lengths = len_all[cap]
            ids = ids_all[cap, :int(lengths.max())]
            x = to_input(images[idx.numpy()], cfg["image_size"], device)   # (B, 3, S, S)
            img = F.normalize(model.image(x), dim=-1)                        # (B, dim)
            txt = F.normalize(model.text(ids.to(device), lengths), dim=-1)  # (B, dim)
            loss = info_nce(img, txt, model.logit_scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            epoch_losses.append(loss.item())
            bar.set_postfix(loss=f"{epoch_losses[-1]:.3f}", refresh=False)
            bar.update()
    bar.close()
    model.eval().requires_grad_(False)
    metrics = {"pretrain_images": n, "vocabulary": len(vocab),
               "last_epoch_loss": round(float(np.mean(epoch_losses)), 4) if epoch_losses else None,
               "temperature": round(float(1.0 / model.logit_scale.exp()), 4),
               "train_seconds": round(time.perf_counter() - t0, 1)}
    return model, vocab, metrics


@torch.no_grad()
def embed_images(model: DualEncoder, images: np.ndarray, cfg: dict, device: torch.device,
                 progress: bool = False, desc: str = "") -> np.ndarray:
    """uint8 (N, H, W, 3) -> (N, dim) float32, L2-normalised."""
    model.eval()
    out = np.empty((len(images), cfg["dim"]), np.float32)
    for sl in tqdm(list(batches(len(images), cfg["embed_batch_size"])), desc=desc, unit="batch",
                   disable=not progress, mininterval=1.0):
        out[sl] = F.normalize(model.image(to_input(images[sl], cfg["image_size"], device)), dim=-1).cpu().numpy()
    return out


@torch.no_grad()
def embed_captions(model: DualEncoder, vocab: Vocabulary, captions: list[str], cfg: dict,
                   device: torch.device) -> np.ndarray:
    """5N captions -> (5N, dim) float32, L2-normalised (unknown words map to <unk>)."""
    model.eval()
    out = np.empty((len(captions), cfg["dim"]), np.float32)
    for sl in batches(len(captions), cfg["embed_batch_size"]):
        ids, lengths = vocab.encode(captions[sl], cfg["max_words"])
        out[sl] = F.normalize(model.text(ids.to(device), lengths), dim=-1).cpu().numpy()
    return out


def save_checkpoint(path: Path, model: DualEncoder, vocab: Vocabulary, cfg: dict, seed: int, data: str,
                    metrics: dict) -> None:
    meta = {"config": model_config(cfg), "seed": seed, "data": data, "metrics": metrics}
    save_stage(path, {"state_dict": model.state_dict(), "vocabulary": vocab.words}, meta)


def load_checkpoint(path: Path, cfg: dict, seed: int, data: str,
                    device: torch.device) -> tuple[DualEncoder, Vocabulary, dict] | None:
    """The saved dual encoder if it was trained with the same settings and seed on the same data
    (``data``: common.fingerprint of the pretrain images and captions), else None."""
    ckpt = load_stage(path, {"config": model_config(cfg), "seed": seed, "data": data})
    if ckpt is None:
        return None
    vocab = Vocabulary(ckpt["vocabulary"])
    model = DualEncoder(cfg, len(vocab))
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval().requires_grad_(False), vocab, ckpt["meta"].get("metrics", {})


# ------------------------------------------------------------------------------------ OpenCLIP


def build_openclip(model_name: str, pretrained: str | None, device: torch.device):
    """(model, preprocess, tokenizer), eval mode. ``pretrained`` is a local file or None (random
    weights: tests only). Hub downloads are switched off."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained, device=device)
    tokenizer = open_clip.get_tokenizer(model_name)
    return model.eval().requires_grad_(False), preprocess, tokenizer


def load_openclip(model_name: str, weights: str | Path | None, device: torch.device):
    """OpenCLIP from a local weights file; a clear MissingWeightsError without one."""
    path = require_weights(weights, f"OpenCLIP {model_name}", OPENCLIP_HOW)
    try:
        return build_openclip(model_name, str(path), device)
    except Exception as exc:  # whatever the file holds, say which file and what was expected
        first = (str(exc).splitlines() or [""])[0][:200]
        raise MissingWeightsError(f"{path}: not an OpenCLIP {model_name} checkpoint "
                                  f"({type(exc).__name__}: {first}). {OPENCLIP_HOW}") from None


@torch.no_grad()
def openclip_embed_images(model, preprocess, pil_images: list, device: torch.device) -> np.ndarray:
    """PIL images -> (B, 512) float32, L2-normalised (eval preprocessing: resize, centre crop)."""
    x = torch.stack([preprocess(im) for im in pil_images]).to(device)       # (B, 3, 224, 224)
    return F.normalize(model.encode_image(x).float(), dim=-1).cpu().numpy()


@torch.no_grad()
def openclip_embed_texts(model, tokenizer, captions: list[str], device: torch.device) -> np.ndarray:
    """captions -> (B, 512) float32, L2-normalised."""
    tokens = tokenizer(captions).to(device)                                  # (B, 77)
    return F.normalize(model.encode_text(tokens).float(), dim=-1).cpu().numpy()


def openclip_embed_split(model, preprocess, tokenizer, files: list[Path], captions: list[str], batch_size: int,
                         device: torch.device, progress: bool = False,
                         desc: str = "") -> tuple[np.ndarray, np.ndarray]:
    """A split's image embeddings (N, 512) and caption embeddings (5N, 512), float32, in file order."""
    from aahr.features.images import iter_image_batches

    img = [openclip_embed_images(model, preprocess, batch, device)
           for batch in tqdm(iter_image_batches(files, batch_size), total=-(-len(files) // batch_size),
                             desc=desc, unit="batch", disable=not progress, mininterval=1.0)]
    txt = [openclip_embed_texts(model, tokenizer, captions[sl], device)
           for sl in batches(len(captions), 4 * batch_size)]
    return np.concatenate(img).astype(np.float32), np.concatenate(txt).astype(np.float32)
