"""Module health: the numbers that say whether each of AAHR's modules does anything, and the rule
that gives each module its status: alive, inert, untrained (the gate) or undecided.

Training measures them on every step of an epoch (averaged into the epoch's ``log.jsonl`` record as
``health/{module}/{metric}``); the gradient norms on ``health.grad_steps`` steps spread evenly over
each epoch. The metrics, per module:

- ``prototypes``: ``code_entropy`` (mean entropy of the Sinkhorn codes over ln K: 1 = uniform codes,
  no clustering signal), ``code_agreement`` (share of pairs whose image and caption codes pick the
  same prototype; chance ``1 / K`` is ``code_agreement_chance``), ``prototypes_in_use`` (share of
  the K prototypes that are some sample's argmax in the batch);
- ``moco``: ``positive_rank`` (mean rank of the paired key among itself and the queue's negatives,
  1 = first), ``top1`` (share of queries whose paired key ranks first; chance ``top1_chance`` =
  1 / (negatives + 1));
- ``relation``: ``local_cosine`` (mean pairwise cosine of the batch's local embeddings; near 1 the
  local views collapse), ``tilde_hat_cosine`` (mean cos(v_tilde, v_hat): how much the GNN changes a
  node), ``graph_density`` (share of the 2B x 2B pairs connected);
- ``fusion``: the gate z (1 = the local view only, 0 = the global view only) over samples and
  dimensions: ``gate_mean``, quantiles ``gate_q05`` ... ``gate_q95``, ``gate_saturated`` (share
  within 0.05 of 0 or 1) and ``gate_start`` (its mean on the first training step);
- every loss term: ``grad_ratio``, the norm of the gradient the term sends into the two encoders
  over that of the base triplet term (``grad_norm`` holds the raw norm), with ``grad_ratio_sd`` and
  ``grad_ratio_n`` over the epoch's measured steps;
- the ranking terms (``triplet``, ``relation``), on synth: ``false_negatives``, the share of the
  negatives the loss used that are in fact positives (the caption is true of that image too).

The status (``params.yaml: health``), from the last epoch and, for the gradient ratio, the steps of
the last ``window_epochs`` epochs pooled: inert when a rule fires (code entropy >
``max_code_entropy``; MoCo top-1 < ``min_top1_over_chance`` x chance; the gate mean outside
[``gate_min``, ``gate_max``]; the gradient ratio's 95% interval wholly below ``min_grad_ratio``);
untrained when the gate mean is within ``gate_untrained`` of its start; undecided when the gradient
ratio's interval straddles ``min_grad_ratio``; else alive.
"""

from __future__ import annotations

import math

import torch

MODULES = ("prototypes", "moco", "relation", "fusion")
PREFIX = "health/"
HEALTH_COLUMNS = ("variant", "seed", "module", "metric", "value", "ci95_low", "ci95_high", "status", "code")


def key(module: str, metric: str) -> str:
    return f"{PREFIX}{module}/{metric}"


def parse_key(name: str) -> tuple[str, str] | None:
    """``health/{module}/{metric}`` -> (module, metric); anything else -> None."""
    if not name.startswith(PREFIX):
        return None
    module, _, metric = name[len(PREFIX):].partition("/")
    return (module, metric) if metric else None


# ---------------------------------------------------------------------------- the metrics

@torch.no_grad()
def code_health(q_v: torch.Tensor, q_t: torch.Tensor) -> dict[str, float]:
    """Sinkhorn codes of the images and captions of B pairs (B x K, rows sum to 1)."""
    k = q_v.shape[1]
    codes = torch.cat([q_v, q_t], 0).float()
    entropy = -(codes * codes.clamp_min(1e-30).log()).sum(1).mean()
    picks = torch.cat([q_v.argmax(1), q_t.argmax(1)])
    return {"code_entropy": float(entropy) / math.log(k),
            "code_agreement": float((q_v.argmax(1) == q_t.argmax(1)).float().mean()),
            "code_agreement_chance": 1.0 / k,
            "prototypes_in_use": float(picks.unique().numel()) / k}


@torch.no_grad()
def contrast_health(l_pos: torch.Tensor, l_neg: torch.Tensor) -> dict[str, float]:
    """l_pos: B x 1 positive logits, l_neg: B x Q negative logits (-inf where masked)."""
    rank = 1 + (l_neg > l_pos).sum(1).float()                                   # B
    negatives = torch.isfinite(l_neg).sum(1).float().mean()
    return {"positive_rank": float(rank.mean()), "top1": float((rank == 1).float().mean()),
            "top1_chance": 1.0 / (float(negatives) + 1.0)}


@torch.no_grad()
def mean_pairwise_cosine(x: torch.Tensor) -> float:
    """x: N x E -> the mean cosine over the N (N - 1) ordered pairs of distinct rows."""
    u = torch.nn.functional.normalize(x.float(), dim=1)
    n = u.shape[0]
    s = u.sum(0)
    return float(((s @ s) - (u * u).sum()) / max(n * (n - 1), 1))


@torch.no_grad()
def rowwise_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean cos(a_i, b_i) over the rows."""
    return float(torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=1).mean())


def term_gradient_norms(terms: dict[str, torch.Tensor], params: list[torch.nn.Parameter]) -> dict[str, float]:
    """The norm of the gradient each loss term alone sends into ``params`` (the graph is kept)."""
    out = {}
    for name, term in terms.items():
        if not term.requires_grad:
            out[name] = 0.0
            continue
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        sq = sum(float(g.float().pow(2).sum()) for g in grads if g is not None)
        out[name] = math.sqrt(sq)
    return out


def gradient_health(norms: dict[str, float]) -> dict[str, float]:
    """Per-term gradient norms -> ``health/{term}/grad_norm`` and ``grad_ratio`` (to the triplet's)."""
    base = norms.get("triplet", 0.0)
    out = {}
    for term, n in norms.items():                     # loss terms are named after their modules
        out[key(term, "grad_norm")] = n
        if term != "triplet":
            out[key(term, "grad_ratio")] = n / base if base > 0 else math.nan
    return out


# ---------------------------------------------------------------------------- the fusion gate

GATE_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
GATE_SATURATED = 0.05        # a gate value within this of 0 or 1 is saturated (one view only)


@torch.no_grad()
def gate_health(z: torch.Tensor) -> dict[str, float]:
    """z: the fusion gate over samples and dimensions (any shape) -> mean, quantiles, saturated share."""
    z = z.float().flatten()
    qs = torch.quantile(z, torch.tensor(GATE_QUANTILES, dtype=z.dtype, device=z.device))
    out = {"gate_mean": float(z.mean())}
    out |= {f"gate_q{round(100 * q):02d}": float(v) for q, v in zip(GATE_QUANTILES, qs)}
    out["gate_saturated"] = float(((z < GATE_SATURATED) | (z > 1 - GATE_SATURATED)).float().mean())
    return out


# ---------------------------------------------------------------------------- the verdict

ALIVE, INERT, UNTRAINED, UNDECIDED = "alive", "inert", "untrained", "undecided"
Z95 = 1.959964


def pooled_ratio(records: list[dict], module: str) -> tuple[float, float, float, int] | None:
    """The gradient ratio of ``module`` pooled over the records' measured steps: (mean, 95% low,
    95% high, steps); None when not measured. Each epoch logs its steps' mean, sd and count."""
    stats = [(r[key(module, "grad_ratio")], r.get(key(module, "grad_ratio_sd"), 0.0),
              r.get(key(module, "grad_ratio_n"), 1)) for r in records
             if isinstance(r.get(key(module, "grad_ratio")), float) and not math.isnan(r[key(module, "grad_ratio")])]
    if not stats:
        return None
    n = sum(c for _, _, c in stats)
    mean = sum(m * c for m, _, c in stats) / n
    var = max(sum(c * (sd * sd + m * m) for m, sd, c in stats) / n - mean * mean, 0.0)
    half = Z95 * math.sqrt(var / max(n - 1, 1))
    return mean, mean - half, mean + half, int(n)


def judge_module(module: str, history: list[dict], rule: dict) -> tuple[str, list[str]]:
    """(status, reasons) of one module from a run's per-epoch records (the last ``rule['window_epochs']``
    pooled for the gradient ratio): inert when a rule fires, untrained when the gate stayed within
    ``gate_untrained`` of its start, undecided when the gradient ratio's 95% interval straddles the
    threshold, else alive."""
    metrics = by_module(history[-1]).get(module, {})
    get = metrics.get
    inert, untrained, undecided = [], [], []
    if module == "prototypes" and get("code_entropy") is not None and get("code_entropy") > rule["max_code_entropy"]:
        inert.append(f"code entropy {get('code_entropy'):.3f} ln K > {rule['max_code_entropy']} ln K")
    if module == "moco" and get("top1") is not None and get("top1_chance"):
        if get("top1") < rule["min_top1_over_chance"] * get("top1_chance"):
            inert.append(f"top-1 {get('top1'):.4f} < {rule['min_top1_over_chance']} x chance "
                         f"({get('top1_chance'):.4f})")
    if module == "fusion" and get("gate_mean") is not None:
        if not rule["gate_min"] <= get("gate_mean") <= rule["gate_max"]:
            inert.append(f"gate mean {get('gate_mean'):.3f} outside [{rule['gate_min']}, {rule['gate_max']}]")
        start = get("gate_start")
        if start is not None and abs(get("gate_mean") - start) < rule["gate_untrained"]:
            untrained.append(f"gate mean {get('gate_mean'):.3f} within {rule['gate_untrained']} of its start "
                             f"({start:.3f})")
    ratio = pooled_ratio(history[-rule["window_epochs"]:], module)
    if ratio is not None:
        mean, low, high, n = ratio
        where = f"gradient {mean:.4f} [{low:.4f}, {high:.4f}] x the triplet term's ({n} steps)"
        if high < rule["min_grad_ratio"]:
            inert.append(f"{where} < {rule['min_grad_ratio']}")
        elif low < rule["min_grad_ratio"]:
            undecided.append(f"{where} straddles {rule['min_grad_ratio']}")
    for status, reasons in ((INERT, inert), (UNTRAINED, untrained), (UNDECIDED, undecided)):
        if reasons:
            return status, reasons
    return ALIVE, []


def by_module(record: dict) -> dict[str, dict[str, float]]:
    """A log record -> {module: {metric: value}} of its health entries."""
    out: dict[str, dict[str, float]] = {}
    for name, value in record.items():
        parsed = parse_key(name)
        if parsed is not None:
            out.setdefault(parsed[0], {})[parsed[1]] = value
    return out


def verdicts(history: list[dict], rule: dict) -> dict[str, tuple[str, list[str]]]:
    """{module: (status, reasons)} for every module measured in the run's last record."""
    return {m: judge_module(m, history, rule) for m in by_module(history[-1]) if m in MODULES}


def health_rows(variant: str, seed: int, history: list[dict], rule: dict) -> list[dict]:
    """The rows of results/module_health.csv for one run: its last epoch's health metrics (the
    gradient ratio pooled over the verdict's window, with its 95% interval), each module's status,
    and the code version that made the run."""
    rows = []
    verdict = verdicts(history, rule)
    code = history[-1].get("provenance", {}).get("code", {}).get("commit", "")
    for module, metrics in sorted(by_module(history[-1]).items()):
        if module not in MODULES and module != "triplet":
            continue
        status = verdict[module][0] if module in verdict else ""
        pooled = pooled_ratio(history[-rule["window_epochs"]:], module)
        for metric, value in sorted(metrics.items()):
            if metric in ("grad_ratio_sd", "grad_ratio_n"):
                continue
            low = high = ""
            if metric == "grad_ratio" and pooled is not None:
                value, low, high = pooled[0], pooled[1], pooled[2]
            rows.append({"variant": variant, "seed": seed, "module": module, "metric": metric, "value": value,
                         "ci95_low": low, "ci95_high": high, "status": status, "code": code})
    return rows
