"""Benchmark: seconds per training step of AAHR variants (the training-time cost of the extra modules)
and the dense batch GCN against torch-geometric's GCNConv on the same relation graph.

A step is what ``aahr train`` does per batch: encode, losses, backward, gradient clipping, AdamW.
Every module is timed in its active state: the step counter is past every warm-up and the momentum
queues are pre-filled (with random unit keys), so the relation, prototype and MoCo terms all run.
Features: ``{features}/train_ims.npy`` and, if present, the global embeddings (else random unit
vectors of ``global_branch.dim``); captions ``{captions}/train_caps.txt``.

Usage: python bench/bench_train_step.py [--variants aahr gpo] [--steps 10] [--batch 128] [--threads 0]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from aahr.config import load_params
from aahr.features.store import load_global, load_regions
from aahr.model.aahr import build_model
from aahr.model.layers import l2n
from aahr.training.data import GlobalBatchSampler, PairDataset, Split, dataset_folders
from aahr.training.loop import build_tokenizer, optimizer_for, vocab_size
from aahr.data import read_captions


def load_train(params: dict, features: Path, captions: Path) -> Split:
    regions, _ = load_regions(features, "train", with_boxes=False)
    caps = read_captions(captions, "train", regions.shape[0])
    try:
        g_img, g_txt = load_global(features, "train", regions.shape[0])
    except Exception:  # the global-branch stage has not run: random unit vectors of the right size
        rng = np.random.default_rng(0)
        dg = params["global_branch"]["dim"]
        g_img = l2n(torch.from_numpy(rng.normal(size=(regions.shape[0], dg)).astype(np.float32))).numpy()
        g_txt = l2n(torch.from_numpy(rng.normal(size=(len(caps), dg)).astype(np.float32))).numpy()
    return Split("train", regions, caps, g_img, g_txt)


def time_variant(params: dict, variant: str, split: Split, steps: int, batch: int) -> list[float]:
    torch.manual_seed(0)
    params = {**params, "train": {**params["train"], "batch_size": batch}}
    model = build_model(params, variant, split.regions.shape[2], split.global_img.shape[1],
                        vocab_size(params, split.captions))
    tok = build_tokenizer(params, model, split.captions)
    if model.momentum is not None:
        for q in (model.image_queue, model.text_queue):
            q.keys.copy_(l2n(torch.randn_like(q.keys)))
            q.count.fill_(q.keys.shape[0])
    opt = optimizer_for(model, params["train"])
    trainable = [p for g in opt.param_groups for p in g["params"]]
    data = PairDataset(split, tok, 0, {k: params["train"][k] for k in ("region_drop", "word_drop", "word_mask", "word_replace")})
    sampler = GlobalBatchSampler(len(data), batch, 0)
    batches = iter(sampler)
    model.train()
    times = []
    for i in range(steps + 2):
        b = data.collate(next(batches))
        t = time.perf_counter()
        out = model(b)
        terms = model.loss_terms(out, 10 ** 9, 10 ** 3, len(sampler))
        loss = sum(terms.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, params["train"]["grad_clip"])
        opt.step()
        if i >= 2:                      # two warm-up steps (allocator, lazy init)
            times.append(time.perf_counter() - t)
    return times


def time_gcn(nodes: int, dim: int, repeats: int) -> dict:
    """Dense GCN vs torch_geometric GCNConv on a random graph where each node keeps half the others."""
    from aahr.model.relation import DenseGCN, top_share

    torch.manual_seed(0)
    x = torch.randn(nodes, dim, requires_grad=True)
    a = torch.rand(nodes, nodes)
    a = a * top_share(a, 0.5)
    a.fill_diagonal_(1.0)
    dense = DenseGCN(dim, dropout=0.0)
    out = {}
    t = time.perf_counter()
    for _ in range(repeats):
        dense.propagate(x, a).sum().backward()
    out["dense_ms"] = 1000 * (time.perf_counter() - t) / repeats
    try:
        from torch_geometric.nn import GCNConv
    except ImportError:
        return out
    conv = GCNConv(dim, dim, add_self_loops=False, normalize=True)
    tgt, src = a.nonzero(as_tuple=True)                 # row i aggregates from column j: edge j -> i
    edge_index, weight = torch.stack([src, tgt]), a[tgt, src]
    t = time.perf_counter()
    for _ in range(repeats):
        conv(x, edge_index, weight).sum().backward()
    out["pyg_ms"] = 1000 * (time.perf_counter() - t) / repeats
    out["edges"] = int(edge_index.shape[1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--variants", nargs="+", default=["aahr", "gpo"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=None, help="default: train.batch_size")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--features", default=None)
    ap.add_argument("--captions", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(args.params)
    batch = args.batch or params["train"]["batch_size"]
    features, captions = dataset_folders(params["data_root"], "synth", args.features, args.captions)
    split = load_train(params, features, captions)
    print(f"torch threads {torch.get_num_threads()}, batch {batch}, regions {split.regions.shape[1:]}, "
          f"text {params['text']['backbone']}, embed {params['model']['embed_size']}")
    results = {}
    for v in args.variants:
        t = time_variant(params, v, split, args.steps, batch)
        results[v] = statistics.median(t)
        print(f"{v:10s} {statistics.median(t):.3f} s/step median ({statistics.mean(t):.3f} mean, {len(t)} steps)")
    if "gpo" in results:
        for v, s in results.items():
            if v != "gpo":
                print(f"{v} / gpo = {s / results['gpo']:.2f}x")
    g = time_gcn(2 * batch, params["model"]["embed_size"], 20)
    print("relation GCN layer, forward+backward on", 2 * batch, "nodes:", g)


if __name__ == "__main__":
    main()
