"""Using a trained matcher: load a checkpoint alone (its settings travel inside it), rebuild its
tokenizer, and embed a split. Training (model selection on dev), evaluation, search and the figures all
go through here; nothing here trains.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from aahr.errors import AahrError
from aahr.model.aahr import AAHR, build_model
from aahr.model.layers import l2n
from aahr.splits import Split, Tokenizer, caption_batches, image_batches
from aahr.text import Vocabulary


class CheckpointError(AahrError):
    """A checkpoint file cannot be read; the message names it."""


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (to_device(v, device) if isinstance(v, dict) else v.to(device, non_blocking=True))
            for k, v in batch.items()}


def build_tokenizer(params: dict, model: AAHR, train_captions: list[str] | None, vocab_words=None):
    """The backbone's tokenizer: the BiGRU's vocabulary (built from the training captions, or the
    saved word list) or the BERT's WordPiece tokenizer."""
    text = params["text"]
    if text["backbone"] == "bigru":
        vocab = Vocabulary(vocab_words) if vocab_words is not None else Vocabulary.build(train_captions)
        return Tokenizer(text["max_tokens"], vocab=vocab)
    return Tokenizer(text["max_tokens"], hf=model.text.backbone.tokenizer)


VIEWS = ("fused", "local")


def _view(encoded, view: str) -> torch.Tensor:
    """The retrieval embedding (``fused``: the model's own; ``local``: l2n(v_loc), the local view
    alone, as if the global branch were not there at inference)."""
    return (encoded.embedding if view == "fused" else l2n(encoded.local)).float().cpu()


@torch.no_grad()
def encode_split(model: AAHR, split: Split, tokenizer: Tokenizer, device: torch.device, batch_size: int,
                 autocast=nullcontext, view: str = "fused") -> tuple[np.ndarray, np.ndarray]:
    """(N x E image embeddings, 5N x E caption embeddings) of a whole split, in eval mode."""
    was_training = model.training
    model.eval()
    img, txt = [], []
    with autocast():
        for b in image_batches(split, batch_size):
            b = to_device(b, device)
            img.append(_view(model.encode_images(b["regions"], b["region_mask"], b.get("global_img")), view))
        for b in caption_batches(split, tokenizer, batch_size):
            b = to_device(b, device)
            txt.append(_view(model.encode_texts(b["tokens"], b.get("global_txt")), view))
    model.train(was_training)
    return torch.cat(img).numpy(), torch.cat(txt).numpy()


def evaluate_split(model, split, tokenizer, device, batch_size, autocast=nullcontext) -> dict:
    from aahr.evaluation import retrieval_metrics

    img, txt = encode_split(model, split, tokenizer, device, batch_size, autocast)
    return retrieval_metrics(img @ txt.T)


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which
        raise CheckpointError(f"{path}: cannot read the checkpoint ({exc})") from None


def load_trained(path: str | Path, device: torch.device | str = "cpu") -> tuple[AAHR, Tokenizer, dict]:
    """A trained model from ``best.pt`` / ``last.pt`` alone (its settings travel in the checkpoint):
    (model in eval mode, its tokenizer, the checkpoint dict)."""
    ckpt = load_checkpoint(Path(path))
    fp, variant = ckpt["fingerprint"], ckpt["variant"]
    params = {"variants": {variant: fp["switches"]}, "model": fp["model"], "losses": fp["losses"], "text": fp["text"]}
    vocab = ckpt["vocab"]
    model = build_model(params, variant, ckpt["dims"]["region"], ckpt["dims"]["global"],
                        len(vocab) if vocab is not None else None)
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    return model, build_tokenizer(params, model, None, vocab), ckpt
