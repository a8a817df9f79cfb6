"""The training loop behind ``aahr train``: train, validate on dev, checkpoint, resume.

- AdamW with the paper's parameter groups (a pretrained text backbone at ``text_lr_factor`` x lr),
  the step schedule (lr x ``lr_gamma`` at each epoch of ``lr_steps``), gradient clipping.
- Model selection by rsum on the dev split (aahr.evaluation.retrieval_metrics); the test split is
  never read here.
- Every epoch, atomically: ``last.pt`` (model, optimizer, counters, log history) and, when dev rsum
  improves, ``.best.pt`` (model only), renamed to ``best.pt`` when the run ends; both hold state
  dicts and plain values only, loadable with ``torch.load(..., weights_only=True)``. Neither is
  touched by Snakemake's clean-up of a killed job's outputs (``best.pt``, ``log.jsonl``,
  ``metrics.json``), so the rerun resumes from ``last.pt`` and still has the best model so far. ``log.jsonl`` (one line per epoch: every loss term, dev
  metrics, timing) and, at the end, ``metrics.json`` (numeric: the best epoch's dev metrics).
- Repeatable: data order, augmentation, dropout and negative sampling are seeded by (seed, epoch /
  step), so a resumed run ends exactly where an uninterrupted one does.
- A non-finite loss term stops the run (NonFiniteLossError naming the step and the term); nothing is
  written for the failed epoch, so the last good checkpoint stays.
"""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from aahr.errors import AahrError
from aahr.health import gradient_health, key as hkey, term_gradient_norms, verdicts
from aahr.io import save_torch, split_timing, timing_path, write_json, write_text
from aahr.model.aahr import AAHR, build_model
from aahr.provenance import provenance
from aahr.training import distributed
from aahr.inference import build_tokenizer, evaluate_split, load_checkpoint, to_device
from aahr.splits import dataset_folders, load_split
from aahr.training.data import GlobalBatchSampler, PairDataset

LAST, BEST, LOG, METRICS = "last.pt", "best.pt", "log.jsonl", "metrics.json"
BEST_SO_FAR = ".best.pt"    # the best checkpoint while the run goes on (not a workflow output)
# Keys that may change when a run is resumed (they do not change what is computed).
RESUMABLE_CHANGES = {"epochs", "workers", "device", "nproc"}


class TrainingError(AahrError):
    """Training cannot start or continue (bad setup, incompatible checkpoint)."""


class NonFiniteLossError(TrainingError):
    """A loss term became NaN or infinite; the message names the step and the term."""


def run_fingerprint(params: dict, variant: str, seed: int) -> dict:
    """Everything that decides what a run computes (compared on --resume); ``seed`` is the training seed."""
    train = {k: v for k, v in params["train"].items() if k not in RESUMABLE_CHANGES}
    return {"seed": seed, "variant": variant, "switches": params["variants"][variant],
            "model": params["model"], "losses": params["losses"], "train": train, "text": params["text"],
            "numerics": params["numerics"]}


def step_seed(seed: int, *counters: int) -> int:
    s = seed
    for c in counters:
        s = (s * 1_000_003 + c + 1) % (2 ** 62)
    return s


def learning_rate_factor(epoch: int, steps: list[int], gamma: float) -> float:
    """The step schedule: gamma ** (number of milestones <= epoch), epochs counted from 0."""
    return gamma ** sum(epoch >= m for m in steps)


def vocab_size(params: dict, train_captions: list[str]) -> int | None:
    from aahr.text import Vocabulary

    return len(Vocabulary.build(train_captions)) if params["text"]["backbone"] == "bigru" else None


def optimizer_for(model: AAHR, train: dict) -> torch.optim.AdamW:
    """AdamW: the pretrained text backbone at ``text_lr_factor`` x lr, everything else at lr; the
    momentum encoders and frozen parts have no entry."""
    backbone = {id(p) for p in model.backbone_parameters()}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in backbone]
    groups = [{"params": rest, "lr": train["lr"], "base_lr": train["lr"], "name": "model"}]
    if backbone:
        lr = train["lr"] * train["text_lr_factor"]
        groups.append({"params": model.backbone_parameters(), "lr": lr, "base_lr": lr, "name": "text_backbone"})
    return torch.optim.AdamW(groups, lr=train["lr"], weight_decay=train["weight_decay"], fused=True)


@dataclass
class RunningMeans:
    """Per-key means over the steps that reported the key (health metrics come and go); keys in
    ``SPREAD`` also get their sample sd (``_sd``) and count (``_n``)."""

    SPREAD = ("grad_ratio",)
    sums: dict = field(default_factory=dict)
    squares: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)

    def add(self, values: dict) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.squares[k] = self.squares.get(k, 0.0) + v * v
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> dict:
        out = {}
        for k, total in self.sums.items():
            n = self.counts[k]
            out[k] = total / n
            if k.endswith(self.SPREAD):
                var = (self.squares[k] - total * total / n) / (n - 1) if n > 1 else 0.0
                out[f"{k}_sd"], out[f"{k}_n"] = math.sqrt(max(var, 0.0)), n
        return out


def measures_gradients(step_in_epoch: int, steps_per_epoch: int, grad_steps: int) -> bool:
    """Whether the gradient health is measured on this step: ``grad_steps`` steps spread evenly
    over the epoch (each stride's last step)."""
    stride = max(steps_per_epoch // max(grad_steps, 1), 1)
    return step_in_epoch % stride == stride - 1 and step_in_epoch // stride < grad_steps


def truth_lookup(captions: Path, split: str):
    """A function (img_ids, cap_ids) -> B x B bool (image i truly matches caption j) when the split
    knows its extended positives (synth), else None."""
    from aahr.data import load_positives

    if not (captions / f"{split}_positives.npz").is_file():
        return None
    indptr, indices = load_positives(captions, split)

    def truth(img_ids: torch.Tensor, cap_ids: torch.Tensor) -> torch.Tensor:
        imgs = img_ids.cpu().numpy()
        cols = [np.isin(imgs, indices[indptr[c]:indptr[c + 1]]) for c in cap_ids.cpu().tolist()]
        out = torch.from_numpy(np.stack(cols, 1)).to(img_ids.device)                    # B x B
        return out | (img_ids[:, None] == img_ids[None, :])
    return truth


@dataclass
class Options:
    params: dict
    variant: str
    out: Path
    dataset: str = "synth"
    seed: int | None = None        # the training seed; None: the first of the params' seeds
    features: Path | None = None
    captions: Path | None = None
    resume: bool = False
    resume_matching: bool = False  # resume only a checkpoint of these same settings, else start over
    device: str | None = None
    progress: bool = True


def train(opts: Options) -> dict:
    """Run (or resume) one training run; returns the best epoch's dev metrics (also metrics.json)."""
    from aahr.config import ConfigError, resolve_variant
    from aahr.features.common import pick_device

    try:
        params = resolve_variant(opts.params, opts.variant)
    except ConfigError as exc:
        raise TrainingError(str(exc)) from None
    _check_batch_against_queue(params, opts.variant)
    if opts.seed is None:
        opts = replace(opts, seed=params["seeds"][0])
    ctx = distributed.init(pick_device(opts.device or params["train"]["device"]))
    try:
        run = _set_up(opts, params, ctx, _resume_state(opts, params, ctx))
        for epoch in range(run.start_epoch, run.tcfg["epochs"]):
            means, seconds = _train_epoch(run, epoch)
            if ctx.main:
                _validate_and_save(run, epoch, means, seconds)
            distributed.barrier(ctx)
        return _finish(run)
    finally:
        distributed.shutdown(ctx)


def _check_batch_against_queue(params: dict, variant: str) -> None:
    if params["variants"][variant]["moco"]:
        q, b = params["losses"]["moco"]["queue_size"], params["train"]["batch_size"]
        if q % b:
            raise TrainingError(f"losses.moco.queue_size ({q}) must be a multiple of train.batch_size ({b}): "
                                "the queue is filled one global batch at a time")


def _resume_state(opts: Options, params: dict, ctx) -> dict | None:
    """``last.pt`` of this run when it may be continued (--resume, or --resume-matching and the same
    settings and unfinished), else None; a checkpoint in the way without --resume is an error."""
    out, variant, epochs = Path(opts.out), opts.variant, params["train"]["epochs"]
    last_path = out / LAST
    if not last_path.exists():
        if (opts.resume or opts.resume_matching) and ctx.main:
            print(f"no checkpoint in {out}: starting from epoch 0")
        return None
    if not (opts.resume or opts.resume_matching):
        raise TrainingError(f"{out} already holds a checkpoint ({LAST}); pass --resume to continue it "
                            "or choose another --out")
    state = load_checkpoint(last_path)
    if opts.resume_matching and state["epoch"] >= epochs:
        if ctx.main:  # a finished run asked for again: its code or inputs changed, so train anew
            print(f"{last_path}: a finished run: starting over")
        return None
    if state["fingerprint"] != run_fingerprint(params, variant, opts.seed):
        if not opts.resume_matching:
            raise TrainingError(f"{last_path}: the checkpoint was trained with other settings (only "
                                f"train.{', train.'.join(sorted(RESUMABLE_CHANGES))} may change on --resume)")
        if ctx.main:
            print(f"{last_path}: trained with other settings: starting over")
        return None
    return state


@dataclass
class Run:
    """One training run as it goes: settings, data, model, optimizer, counters and history."""

    opts: Options
    params: dict
    ctx: object
    model: AAHR
    tokenizer: object
    optimizer: torch.optim.Optimizer
    loader: torch.utils.data.DataLoader
    sampler: GlobalBatchSampler
    dev_split: object
    dims: dict
    trainable: list
    shared: list                      # the encoders' parameters: the gradient health is measured on them
    truth: object = None              # (img_ids, cap_ids) -> B x B true matches (synth), or None
    provenance: dict = field(default_factory=dict)
    start_epoch: int = 0
    iteration: int = 0
    gate_start: float | None = None   # the fusion gate's mean on the first step (the untrained-gate rule)
    best: dict = field(default_factory=lambda: {"rsum": -math.inf, "epoch": -1, "metrics": {}})
    history: list = field(default_factory=list)

    @property
    def tcfg(self) -> dict:
        return self.params["train"]

    @property
    def out(self) -> Path:
        return Path(self.opts.out)

    def autocast(self):
        bf16 = bool(self.tcfg["bf16"]) and self.ctx.device.type == "cuda"
        return torch.autocast(self.ctx.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def _set_up(opts: Options, params: dict, ctx, state: dict | None) -> Run:
    """Data (train and dev only: the test split is never read), model, tokenizer, optimizer and the
    epoch loader; the checkpoint's weights and counters when resuming."""
    from aahr.features.common import seed_everything

    variant, tcfg, seed = opts.variant, params["train"], opts.seed
    switches = params["variants"][variant]
    features, captions = dataset_folders(params["data_root"], opts.dataset, opts.features, opts.captions)
    train_split = load_split(features, captions, "train", switches["global_branch"])
    dev_split = load_split(features, captions, "dev", switches["global_branch"])
    dims = {"region": train_split.regions.shape[2],
            "global": train_split.global_img.shape[1] if train_split.global_img is not None else None}

    seed_everything(seed)
    vocab_words = state["vocab"] if state is not None else None
    n_vocab = len(vocab_words) if vocab_words is not None else vocab_size(params, train_split.captions)
    model = build_model(params, variant, dims["region"], dims["global"], n_vocab).to(ctx.device)
    tokenizer = build_tokenizer(params, model, train_split.captions, vocab_words)
    if ctx.distributed:
        distributed.sync_batchnorm(model)
    optimizer = optimizer_for(model, tcfg)
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    shared = [p for enc in (model.image, model.text) for p in enc.parameters() if p.requires_grad]

    augment = {k: tcfg[k] for k in ("region_drop", "word_drop", "word_mask", "word_replace")}
    dataset = PairDataset(train_split, tokenizer, seed, augment)
    sampler = GlobalBatchSampler(len(dataset), tcfg["batch_size"], seed, ctx.rank, ctx.world, tcfg["epoch_captions"])
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=dataset.collate,
                                         num_workers=tcfg["workers"], persistent_workers=False)
    run = Run(opts, params, ctx, model, tokenizer, optimizer, loader, sampler, dev_split, dims, trainable, shared,
              truth_lookup(captions, "train"), provenance(opts.params))
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        run.start_epoch, run.iteration, run.best, run.history = (state["epoch"], state["iteration"], state["best"],
                                                                 state["history"])
        run.gate_start = run.history[0].get(hkey("fusion", "gate_start")) if run.history else None
        if ctx.main:
            print(f"Resuming from epoch {run.start_epoch}: continuing with epoch {run.start_epoch + 1} of "
                  f"{tcfg['epochs']}")
    return run


def _train_epoch(run: Run, epoch: int) -> tuple[RunningMeans, float]:
    """One pass over the epoch's batches: (per-key means of the loss terms and health values, seconds)."""
    tcfg, ctx, seed, device = run.tcfg, run.ctx, run.opts.seed, run.ctx.device
    factor = learning_rate_factor(epoch, tcfg["lr_steps"], tcfg["lr_gamma"])
    for g in run.optimizer.param_groups:
        g["lr"] = g["base_lr"] * factor
    run.sampler.epoch = epoch
    torch.manual_seed(step_seed(seed, epoch, ctx.rank))        # the encoders' dropout
    run.model.train()
    steps_per_epoch = len(run.sampler)
    generator = torch.Generator(device=device)
    means = RunningMeans()
    t0 = time.perf_counter()
    bar = tqdm(run.loader, desc=f"{run.opts.variant} epoch {epoch + 1}/{tcfg['epochs']}", unit="step",
               disable=not (run.opts.progress and ctx.main), dynamic_ncols=True, leave=False)
    for batch in bar:
        batch = to_device(batch, device)
        with run.autocast():
            local = run.model(batch)
        glob = distributed.gather_output(ctx, local)
        generator.manual_seed(step_seed(seed, 10 ** 6 + run.iteration))
        health_values: dict = {}
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(step_seed(seed, 2 * 10 ** 6 + run.iteration))  # same on every process
            truth = run.truth(glob.img_ids, glob.cap_ids) if run.truth is not None else None
            terms = run.model.loss_terms(glob, run.iteration, epoch, steps_per_epoch, generator, health_values,
                                         truth)
        if run.iteration == 0 and hkey("fusion", "gate_mean") in health_values:
            run.gate_start = health_values[hkey("fusion", "gate_mean")]      # the gate before any update
        if measures_gradients(run.iteration % steps_per_epoch, steps_per_epoch, run.params["health"]["grad_steps"]):
            health_values |= gradient_health(term_gradient_norms(terms, run.shared))
        values = _finite_values(terms, run, epoch)
        run.optimizer.zero_grad(set_to_none=True)
        (sum(terms.values()) / ctx.world).backward()
        distributed.all_reduce_gradients(run.trainable)
        grad_norm = torch.nn.utils.clip_grad_norm_(run.trainable, tcfg["grad_clip"])
        run.optimizer.step()
        run.iteration += 1
        values["loss"] = sum(values.values())
        values["grad_norm"] = float(grad_norm)
        means.add(values | health_values)
        bar.set_postfix({k: f"{v:.3f}" for k, v in values.items() if k != "grad_norm"})
    bar.close()
    return means, time.perf_counter() - t0


def _finite_values(terms: dict, run: Run, epoch: int) -> dict:
    """The loss terms as floats; a NaN or infinite one stops the run, naming the step and the term."""
    values = {k: float(v.detach()) for k, v in terms.items()}
    last_path = run.out / LAST
    for name, v in values.items():
        if not math.isfinite(v):
            raise NonFiniteLossError(
                f"step {run.iteration + 1} (epoch {epoch + 1}): the loss term {name!r} is {v}; "
                f"training stopped, the last good checkpoint is {last_path}"
                + ("" if last_path.exists() else " (none written yet)"))
    return values


def _validate_and_save(run: Run, epoch: int, means: RunningMeans, seconds: float) -> None:
    """Dev metrics, the epoch's log line, ``.best.pt`` when dev rsum improved, ``last.pt`` always."""
    tcfg, variant = run.tcfg, run.opts.variant
    factor = learning_rate_factor(epoch, tcfg["lr_steps"], tcfg["lr_gamma"])
    metrics = evaluate_split(run.model, run.dev_split, run.tokenizer, run.ctx.device, tcfg["eval_batch_size"],
                             run.autocast)
    steps = max(len(run.sampler), 1)
    start = {hkey("fusion", "gate_start"): run.gate_start} if run.gate_start is not None else {}
    record = {"epoch": epoch + 1, "iteration": run.iteration, "lr": tcfg["lr"] * factor,
              "sampling": run.model.sampling(epoch), **means.means(), **start,
              **{f"dev_{k}": v for k, v in metrics.items()}, "seconds": seconds, "seconds_per_step": seconds / steps,
              "provenance": run.provenance}
    run.history.append(record)
    improved = metrics["rsum"] > run.best["rsum"]
    if improved:
        run.best = {"rsum": metrics["rsum"], "epoch": epoch + 1, "metrics": metrics}
    vocab = list(run.tokenizer.vocab.words) if run.tokenizer.vocab is not None else None
    common = {"epoch": epoch + 1, "variant": variant, "fingerprint": run_fingerprint(run.params, variant, run.opts.seed),
              "vocab": vocab, "dims": run.dims}
    if improved:
        save_torch(run.out / BEST_SO_FAR, {**common, "model": run.model.state_dict(), "dev": metrics})
    save_torch(run.out / LAST, {**common, "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
                                "iteration": run.iteration, "best": run.best, "history": run.history})
    write_log(run.out / LOG, run.history, run.provenance)
    if run.opts.progress:
        print(f"{variant} epoch {epoch + 1}/{tcfg['epochs']}: loss {record['loss']:.4f} "
              f"dev rsum {metrics['rsum']:.1f} (best {run.best['rsum']:.1f} @ epoch {run.best['epoch']}) "
              f"{seconds:.0f}s")


def write_log(path: Path, history: list[dict], record: dict) -> None:
    """``log.jsonl``: one line per epoch with the code and params that made it; the epochs' timings,
    which differ run to run, go to ``log.timing.json`` beside it."""
    lines, timings = [], []
    for r in history:
        kept, timing = split_timing(r)
        lines.append(json.dumps({**kept, "provenance": r.get("provenance", record)}) + "\n")
        timings.append({"epoch": r["epoch"], **(timing or {})})
    write_text(path, "".join(lines))
    write_json(timing_path(path), {"epochs": timings})


def _finish(run: Run) -> dict:
    """The inert-module warnings, ``best.pt`` in place and ``metrics.json`` (the best epoch's dev metrics)."""
    result = {"best_epoch": run.best["epoch"], **{f"dev_{k}": v for k, v in run.best["metrics"].items()}}
    if run.ctx.main and run.history:
        for module, (status, reasons) in verdicts(run.history, run.params["health"]).items():
            if reasons:
                print(f"warning: {run.opts.variant}: the {module} module looks {status} at the last epoch: "
                      f"{'; '.join(reasons)}", file=sys.stderr)
    if run.ctx.main:
        if (run.out / BEST_SO_FAR).exists():
            (run.out / BEST_SO_FAR).replace(run.out / BEST)
        write_json(run.out / METRICS, {**result, "provenance": run.provenance})
    return result
