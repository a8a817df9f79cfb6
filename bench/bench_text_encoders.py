"""Seconds per training step of the text-encoder options, at the paper's batch size, on this machine.

    .venv/bin/python bench/bench_text_encoders.py [--batch 128] [--steps 3] [--threads 0]

One step = encode a batch of captions into word features (B, L, 1024), mean-pool, a dummy loss,
backward, AdamW step; the image side is left out (it is the same for every option). Options:

  (a) bigru          a BiGRU over a word vocabulary (word 300, hidden 512 per direction)
  (b) frozen+layer   the packaged MiniLM frozen (forward under no_grad every step) + 1 trainable
                     Transformer layer
  (b') cached+layer  the same, with the frozen features computed once per caption beforehand (exact:
                     the backbone never changes), so a step runs only the trainable layer
  (c) finetune       MiniLM fine-tuned end to end (the paper's setting, with BERT-base)

Captions come from data/synth/raw/train_caps.txt when it exists, else a small synth split is
generated into a temporary folder. Prints seconds per step and the ratio to (a).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT_DIM = 1024  # AAHR's joint embedding width


def captions(n: int) -> list[str]:
    path = ROOT / "data/synth/raw/train_caps.txt"
    if path.is_file():
        return path.read_text().splitlines()[:n]
    from aahr.config import load_params
    from aahr.synth.generate import generate

    params = load_params(ROOT / "params.yaml")
    params["synth"]["splits"] = {"pretrain": 1, "train": -(-n // 5), "dev": 1, "test": 1}
    with tempfile.TemporaryDirectory() as tmp:
        generate(params, Path(tmp) / "raw", progress=False)
        return (Path(tmp) / "raw/train_caps.txt").read_text().splitlines()[:n]


def timed(step, steps: int) -> float:
    step()  # warm-up (allocations, lazy init)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def make_step(module: torch.nn.Module, forward, lr: float = 5e-4):
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)

    def step():
        words, mask = forward()                                         # (B, L, 1024), (B, L)
        m = mask.unsqueeze(-1).float()
        pooled = (words * m).sum(1) / m.sum(1)                           # (B, 1024)
        loss = pooled.pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step, sum(p.numel() for p in params)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--path", default=None, help="local BERT folder (default: the packaged MiniLM)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from aahr.text import BertTextEncoder, BiGRUTextEncoder, Vocabulary

    caps = captions(max(args.batch, 2000))
    batch = caps[:args.batch]
    results = {}

    vocab = Vocabulary.build(caps)
    gru = BiGRUTextEncoder(len(vocab), 300, 512, OUT_DIM).train()
    ids, lengths = vocab.encode(batch, 32)
    step, n = make_step(gru, lambda: gru(ids, lengths))
    results["(a) bigru"] = (timed(step, args.steps), n)

    frozen = BertTextEncoder(args.path, finetune=False, extra_layers=1, out_dim=OUT_DIM).train()
    tok = frozen.tokenize(batch, 32)
    step, n = make_step(frozen, lambda: frozen(tok["input_ids"], tok["attention_mask"]))
    results["(b) frozen MiniLM + 1 layer"] = (timed(step, args.steps), n)
    with torch.no_grad():
        cached = frozen.backbone_features(tok["input_ids"], tok["attention_mask"])   # (B, L, 384)
    mask = tok["attention_mask"]
    step, n = make_step(frozen, lambda: (frozen.head(cached, mask), mask.bool()))
    results["(b') cached MiniLM + 1 layer"] = (timed(step, args.steps), n)

    tuned = BertTextEncoder(args.path, finetune=True, out_dim=OUT_DIM).train()
    step, n = make_step(tuned, lambda: tuned(tok["input_ids"], tok["attention_mask"]))
    results["(c) fine-tuned MiniLM"] = (timed(step, args.steps), n)

    base = results["(a) bigru"][0]
    print(f"text encoders: batch {args.batch}, {args.steps} timed steps after 1 warm-up, "
          f"{torch.get_num_threads()} CPU threads, {tok['input_ids'].shape[1]} WordPiece tokens / "
          f"{ids.shape[1]} words per padded caption")
    print(f"{'option':32s} {'s/step':>8s} {'x (a)':>7s} {'trainable':>11s}")
    for name, (sec, n) in results.items():
        print(f"{name:32s} {sec:8.3f} {sec / base:7.1f} {n:11,d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
