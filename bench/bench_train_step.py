"""Benchmark: seconds per training step of AAHR variants (the training-time cost of the extra modules),
a per-module profile of one step, and the dense batch GCN against torch-geometric's GCNConv.

Writes results/benchmarks/train_step.json: ``{variant: seconds per step, ...}`` at the top level, the
ratios to ``gpo`` under ``"ratio_to_gpo"`` and, under ``"profile"``, per variant, the seconds each part
of a step takes (forward and backward of every encoder part and training-only module, each loss term,
the momentum update, the optimizer step), measured by hooks on one step at a time (median of the steps).

A step is what ``aahr train`` does per batch: encode, losses, backward, gradient clipping, AdamW.
Every module is timed in its active state: the step counter is past every warm-up and the momentum
queues are pre-filled (with random unit keys), so the relation, prototype and MoCo terms all run.
Features: ``{features}/train_ims.npy`` and, if present, the global embeddings (else random unit
vectors of ``global_branch.dim``); captions ``{captions}/train_caps.txt``.

The variants' steps are interleaved (one step of each in turn, same batches), so a change in the
machine's speed during the run hits them alike: the ratio is the number to read, the seconds move
with the machine's load.

With ``--paper-size``, the paper's model on CPU instead (configs/f30k.yaml merged over params.yaml):
a BERT-base-sized text encoder from random weights (fine-tuned), 36 x 2048 random regions, embedding
1024, 16 heads, 384 prototypes, batch 128, for ``gpo`` and ``aahr`` (interleaved); it reports their
seconds per step, the ratio and the peak resident memory of the process (both models) under
``"paper_size"`` in the JSON.

Threads and CPU kernels are pinned as params.yaml's ``numerics`` pins them for every pipeline job
(``--native-kernels`` leaves the kernels to the processor; ``--threads`` overrides the thread count).

Every write of the JSON also writes train_step.md beside it (the tables docs/performance.md includes).

Usage: python bench/bench_train_step.py [--variants gpo aahr no_gnn] [--steps 8] [--batch 128] [--threads 0]
       python bench/bench_train_step.py --paper-size [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from aahr.config import load_params
from aahr.numerics import KERNEL_VARIABLES, pin, pinned
from aahr.provenance import provenance
from aahr.features.store import load_global, load_regions
from aahr.model.aahr import build_model
from aahr.model.layers import l2n
from aahr.inference import build_tokenizer
from aahr.splits import Split, dataset_folders
from aahr.training.data import GlobalBatchSampler, PairDataset
from aahr.training.loop import optimizer_for, vocab_size
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


# The parts of a step the profile names (module paths in the model; absent ones are skipped).
PARTS = {
    "image.project": "image: region projection",
    "image.head.transformer": "image: fragment Transformer",
    "image.head.maxk": "image: MaxK",
    "image.head.attention": "image: attention pooling",
    "image.head.gpo": "image: GPO pooling",
    "image.head.global_proj": "image: global projection",
    "image.head.fusion": "image: gated fusion",
    "text.backbone": "text: backbone (BiGRU / BERT)",
    "text.head.transformer": "text: fragment Transformer",
    "text.head.maxk": "text: MaxK",
    "text.head.attention": "text: attention pooling",
    "text.head.gpo": "text: GPO pooling",
    "text.head.global_proj": "text: global projection",
    "text.head.fusion": "text: gated fusion",
    "momentum.image": "moco: momentum image encoder (forward)",
    "momentum.text": "moco: momentum text encoder (forward)",
    "relation": "relation: graph + GNN",
}


class Profile:
    """Wall-clock seconds per named part of a step (CPU: every op is synchronous)."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self._open: dict[str, float] = {}

    @contextmanager
    def part(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t

    def hook(self, model: torch.nn.Module) -> list:
        handles = []
        modules = dict(model.named_modules())
        for path, label in PARTS.items():
            m = modules.get(path)
            if m is None:
                continue

            def pre(_m, _i, label=label):
                self._open[label] = time.perf_counter()

            def post(_m, _i, _o, label=label):
                self.seconds[f"{label} [forward]"] += time.perf_counter() - self._open.pop(label)

            handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
            if not path.startswith("momentum"):
                def bpre(_m, _g, label=label):
                    self._open[label + "/b"] = time.perf_counter()

                def bpost(_m, _gi, _go, label=label):
                    t0 = self._open.pop(label + "/b", None)
                    if t0 is not None:
                        self.seconds[f"{label} [backward]"] += time.perf_counter() - t0

                handles += [m.register_full_backward_pre_hook(bpre), m.register_full_backward_hook(bpost)]
        return handles


@contextmanager
def timed_functions(profile: Profile):
    """Time the loss functions the model calls (patched in aahr.model.aahr's namespace)."""
    import aahr.model.aahr as mod
    from aahr.model.prototypes import Prototypes

    saved = {n: getattr(mod, n) for n in ("triplet_loss", "masked_info_nce")}
    saved_proto = Prototypes.loss

    def wrap(fn, label):
        def timed(*a, **k):
            with profile.part(label):
                return fn(*a, **k)
        return timed

    mod.triplet_loss = wrap(saved["triplet_loss"], "loss: triplet terms (base + relation's three)")
    mod.masked_info_nce = wrap(saved["masked_info_nce"], "loss: MoCo InfoNCE")
    Prototypes.loss = wrap(saved_proto, "loss: prototypes (Sinkhorn + swapped prediction)")
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(mod, n, f)
        Prototypes.loss = saved_proto


def step_runner(params: dict, variant: str, split: Split, batch: int):
    """A function that runs one training step of ``variant`` (every module active) and returns its
    seconds; given a Profile, it also times the step's parts."""
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

    def step(prof: Profile | None = None) -> float:
        b = data.collate(next(batches))
        p = prof or Profile()
        t = time.perf_counter()
        with p.part("forward (encoders + momentum keys)"):
            out = model(b)
        with p.part("loss terms (total)"):
            terms = model.loss_terms(out, 10 ** 9, 10 ** 3, len(sampler))
        loss = sum(terms.values())
        opt.zero_grad(set_to_none=True)
        with p.part("backward (total)"):
            loss.backward()
        with p.part("gradient clipping + AdamW"):
            torch.nn.utils.clip_grad_norm_(trainable, params["train"]["grad_clip"])
            opt.step()
        return time.perf_counter() - t

    step.model = model
    return step


def time_variants(params: dict, variants: list[str], split: Split, steps: int, batch: int,
                  profile: bool = False) -> tuple[dict[str, list[float]], dict[str, dict[str, float]]]:
    """({variant: seconds of each step}, {variant: median seconds per profiled part}).

    The variants' steps are interleaved (one step of each in turn), so a change in the machine's
    speed during the run hits every variant alike and their ratio stays fair. Every variant sees the
    same batches. Profiling hooks slow a step a little, so the step times come from separate,
    unhooked steps."""
    runners = {v: step_runner(params, v, split, batch) for v in variants}
    times: dict[str, list[float]] = {v: [] for v in variants}
    for i in range(steps + 2):                              # two warm-up steps (allocator, lazy init)
        for v, step in runners.items():
            t = step()
            if i >= 2:
                times[v].append(t)
    parts: dict[str, dict[str, float]] = {}
    for v, step in runners.items() if profile else ():
        runs = []
        for _ in range(max(3, steps // 2)):
            prof = Profile()
            handles = prof.hook(step.model)
            with timed_functions(prof):
                step(prof)
            for h in handles:
                h.remove()
            runs.append(dict(prof.seconds))
        keys = sorted({k for r in runs for k in r})
        parts[v] = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in keys}
    return times, parts


def time_gcn(nodes: int, dim: int, repeats: int) -> dict:
    """Dense GCN vs torch_geometric GCNConv on a random graph where each node keeps half the others."""
    from aahr.model.relation import DenseGCN, top_share

    torch.manual_seed(0)
    x = torch.randn(nodes, dim, requires_grad=True)
    a = torch.rand(nodes, nodes)
    a = a * top_share(a, 0.5)
    a.fill_diagonal_(1.0)
    dense = DenseGCN(dim, dropout=0.0)
    out = {"nodes": nodes}
    t = time.perf_counter()
    for _ in range(repeats):
        dense.propagate(x, a).sum().backward()
    out["dense_ms"] = 1000 * (time.perf_counter() - t) / repeats
    try:
        from torch_geometric.nn import GCNConv
    except ImportError:
        return out
    conv = GCNConv(dim, dim, add_self_loops=False, normalize=False)
    tgt, src = a.nonzero(as_tuple=True)                 # row i aggregates from column j: edge j -> i
    edge_index, weight = torch.stack([src, tgt]), a[tgt, src]
    t = time.perf_counter()
    for _ in range(repeats):
        conv(x, edge_index, weight).sum().backward()
    out["pyg_ms"] = 1000 * (time.perf_counter() - t) / repeats
    out["edges"] = int(edge_index.shape[1])
    return out


def merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merged(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def paper_size(params: dict, steps: int, batch: int, folder: Path) -> dict:
    """Seconds per gpo and aahr step, and the peak resident memory, of the paper-sized models on this
    machine's CPU."""
    import resource

    import yaml
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from aahr.config import validate_params
    from aahr.text import packaged_minilm_dir

    tok = BertTokenizerFast.from_pretrained(packaged_minilm_dir(), local_files_only=True)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size)).save_pretrained(folder)      # BERT-base sizes, random
    tok.save_pretrained(folder)
    paper = merged(params, yaml.safe_load(Path("configs/f30k.yaml").read_text()))
    paper["text"]["path"] = str(folder)
    paper["train"]["device"] = "cpu"
    paper = validate_params(paper, "configs/f30k.yaml over params.yaml")
    rng = np.random.default_rng(0)
    n = 4 * batch
    regions = rng.normal(size=(n, 36, paper["real"]["feature_dim"])).astype(np.float32)
    words = ["a", "man", "in", "red", "shirt", "riding", "bike", "down", "the", "street", "with", "dog"]
    caps = [" ".join(rng.choice(words, size=rng.integers(6, 16))) for _ in range(5 * n)]
    dg = 512
    g_img = l2n(torch.from_numpy(rng.normal(size=(n, dg)).astype(np.float32))).numpy()
    g_txt = l2n(torch.from_numpy(rng.normal(size=(5 * n, dg)).astype(np.float32))).numpy()
    split = Split("train", regions, caps, g_img, g_txt)
    times, _ = time_variants(paper, ["gpo", "aahr"], split, steps, batch)
    step = {v: statistics.median(t) for v, t in times.items()}
    return {"seconds_per_step": step["aahr"], "gpo_seconds_per_step": step["gpo"],
            "ratio_to_gpo": step["aahr"] / step["gpo"], "steps": len(times["aahr"]), "batch": batch,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
            "threads": torch.get_num_threads(), "model": "configs/f30k.yaml: embed 1024, BERT-base (random), "
                                                          "36 x 2048 regions, 384 prototypes"}


def markdown(results: dict) -> str:
    """The JSON's numbers as the Markdown that docs/performance.md includes (train_step.md)."""
    lines = []
    if "setup" in results:
        su, code = results["setup"], results.get("provenance", {}).get("code", {})
        variants = [v for v in results if isinstance(results[v], float)]
        lines += [f"Synth sizes: batch {su['batch']}, {su['threads']} thread(s), {su['steps']} timed steps, embedding "
                  f"{su['embed']}, text {su['text']}; code `{(code.get('commit') or '?')[:7]}`.", "",
                  "| variant | s / step | / `gpo` |", "|---|---|---|"]
        lines += [f"| `{v}` | {results[v]:.3f} | {results.get('ratio_to_gpo', {}).get(v, float('nan')):.2f} |"
                  for v in variants]
        parts = results.get("profile", {}).get("aahr") or {}
        if parts:
            lines += ["", "Where one hooked `aahr` step goes (parts nest: the totals hold the others):", "",
                      "| part | ms |", "|---|---|"]
            lines += [f"| {k} | {1000 * x:.0f} |" for k, x in sorted(parts.items(), key=lambda kv: -kv[1])[:12]]
        if "gcn" in results:
            lines += ["", "Relation GCN layer, forward + backward: "
                      + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                 for k, v in results["gcn"].items()) + "."]
    if "paper_size" in results:
        ps = results["paper_size"]
        lines += ["", f"Paper sizes ({ps['model']}; batch {ps['batch']}, {ps['threads']} thread(s), median of "
                      f"{ps['steps']} steps): `aahr` {ps['seconds_per_step']:.1f} s per step, `gpo` "
                      f"{ps['gpo_seconds_per_step']:.1f} s, ratio {ps['ratio_to_gpo']:.2f}; peak resident memory "
                      f"{ps['peak_rss_gb']:.1f} GB (both models in one process)."]
    return "\n".join(lines) + "\n"


def write(out: Path, results: dict) -> None:
    """The JSON and its Markdown rendering beside it, each atomically."""
    from aahr.io import write_json, write_text

    write_json(out, results)
    write_text(out.with_suffix(".md"), markdown(results))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--variants", nargs="+", default=["gpo", "aahr", "no_gnn"])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=None, help="default: train.batch_size")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: params.yaml's numerics.threads)")
    ap.add_argument("--features", default=None)
    ap.add_argument("--captions", default=None)
    ap.add_argument("--no-profile", action="store_true", help="step times only")
    ap.add_argument("--paper-size", action="store_true", help="the paper-sized gpo and aahr steps on CPU (see above)")
    ap.add_argument("--report", action="store_true", help="only rewrite --out's Markdown (.md) from its JSON")
    ap.add_argument("--native-kernels", action="store_true",
                    help="leave the CPU kernels to the processor (default: pin them as params.yaml's numerics "
                         "does for every pipeline job; bench/bench_numerics.py compares the two)")
    ap.add_argument("--out", default="results/benchmarks/train_step.json")
    args = ap.parse_args()
    if args.report:
        out = Path(args.out)
        write(out, json.loads(out.read_text()))
        print(out.with_suffix(".md"))
        return
    params = load_params(args.params)
    numerics = dict(params["numerics"], threads=args.threads or params["numerics"]["threads"])
    if args.native_kernels:
        numerics |= dict.fromkeys(KERNEL_VARIABLES)      # unset: each library picks the processor's best
        for variable in KERNEL_VARIABLES.values():
            os.environ.pop(variable, None)
    pin(numerics)                                         # before the first torch kernel
    batch = args.batch or params["train"]["batch_size"]
    if args.paper_size:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            result = paper_size(params, args.steps, batch, Path(tmp))
        print(f"paper-sized step on CPU: aahr {result['seconds_per_step']:.2f} s, gpo "
              f"{result['gpo_seconds_per_step']:.2f} s (medians of {result['steps']}), "
              f"aahr / gpo = {result['ratio_to_gpo']:.2f}x, "
              f"peak resident memory {result['peak_rss_gb']:.2f} GB, {result['threads']} threads")
        out = Path(args.out)
        previous = json.loads(out.read_text()) if out.is_file() else {}
        result["provenance"] = provenance(params)
        write(out, {**previous, "paper_size": result})
        print(out)
        return
    features, captions = dataset_folders(params["data_root"], "synth", args.features, args.captions)
    split = load_train(params, features, captions)
    print(f"torch threads {torch.get_num_threads()}, batch {batch}, regions {split.regions.shape[1:]}, "
          f"text {params['text']['backbone']}, embed {params['model']['embed_size']}")
    times, profiles = time_variants(params, args.variants, split, args.steps, batch, profile=not args.no_profile)
    results: dict = {}
    for v, t in times.items():
        results[v] = statistics.median(t)
        print(f"{v:10s} {results[v]:.3f} s/step median ({statistics.mean(t):.3f} mean, {len(t)} steps)")
    if "gpo" in results:
        results["ratio_to_gpo"] = {v: results[v] / results["gpo"] for v in args.variants}
        for v in args.variants:
            if v != "gpo":
                print(f"{v} / gpo = {results['ratio_to_gpo'][v]:.2f}x")
    for v, parts in profiles.items():
        if not parts:
            continue
        total = sum(x for k, x in parts.items() if k in ("forward (encoders + momentum keys)", "loss terms (total)",
                                                          "backward (total)", "gradient clipping + AdamW"))
        print(f"\nprofile of one {v} step ({total:.3f} s hooked; parts nest: [forward]/[backward] lie inside the totals)")
        for k, x in sorted(parts.items(), key=lambda kv: -kv[1]):
            print(f"  {x * 1000:8.1f} ms  {100 * x / total:5.1f}%  {k}")
    results["profile"] = profiles
    results["gcn"] = time_gcn(2 * batch, params["model"]["embed_size"], 20)
    results["setup"] = {"batch": batch, "threads": torch.get_num_threads(), "steps": args.steps,
                        "embed": params["model"]["embed_size"], "text": params["text"]["backbone"],
                        "numerics": pinned()}
    results["provenance"] = provenance(params)
    print("relation GCN layer, forward+backward:", results["gcn"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.is_file() and "paper_size" in json.loads(out.read_text()):       # kept from a --paper-size run
        results["paper_size"] = json.loads(out.read_text())["paper_size"]
    write(out, results)
    print(out)


if __name__ == "__main__":
    main()
