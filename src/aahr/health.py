"""Module health: the numbers that say whether each of AAHR's modules does anything, and the rule
that calls a module inert.

Training measures them on every step of an epoch (averaged into the epoch's ``log.jsonl`` record as
``health/{module}/{metric}``); the gradient norms on the last ``health.grad_steps`` steps of each
epoch. The metrics, per module:

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
- ``fusion``: ``gate_mean`` (mean fusion gate z: 1 = the local view only, 0 = the global view only);
- every loss term: ``grad_ratio``, the norm of the gradient the term sends into the two encoders
  over that of the base triplet term (``grad_norm`` holds the raw norm).

The inert rule (``params.yaml: health``): a module is inert when any of its rules fires at the last
epoch: codes entropy > ``max_code_entropy``; MoCo top-1 < ``min_top1_over_chance`` x chance; a
term's grad ratio < ``min_grad_ratio``; the gate mean outside [``gate_min``, ``gate_max``].
"""

from __future__ import annotations

import math

import torch

MODULES = ("prototypes", "moco", "relation", "fusion")
PREFIX = "health/"
HEALTH_COLUMNS = ("variant", "seed", "module", "metric", "value", "inert")


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


# ---------------------------------------------------------------------------- the inert rule

def inert_reasons(module: str, metrics: dict[str, float], rule: dict) -> list[str]:
    """The rules that fire for ``module`` given its metrics (empty: alive)."""
    reasons = []
    get = metrics.get
    if module == "prototypes" and get("code_entropy") is not None and get("code_entropy") > rule["max_code_entropy"]:
        reasons.append(f"code entropy {get('code_entropy'):.3f} ln K > {rule['max_code_entropy']} ln K")
    if module == "moco" and get("top1") is not None and get("top1_chance"):
        if get("top1") < rule["min_top1_over_chance"] * get("top1_chance"):
            reasons.append(f"top-1 {get('top1'):.4f} < {rule['min_top1_over_chance']} x chance "
                           f"({get('top1_chance'):.4f})")
    if module == "fusion" and get("gate_mean") is not None:
        if not rule["gate_min"] <= get("gate_mean") <= rule["gate_max"]:
            reasons.append(f"gate mean {get('gate_mean'):.3f} outside [{rule['gate_min']}, {rule['gate_max']}]")
    ratio = get("grad_ratio")
    if ratio is not None and not math.isnan(ratio) and ratio < rule["min_grad_ratio"]:
        reasons.append(f"gradient {ratio:.4f} x the triplet term's < {rule['min_grad_ratio']}")
    return reasons


def by_module(record: dict) -> dict[str, dict[str, float]]:
    """A log record -> {module: {metric: value}} of its health entries."""
    out: dict[str, dict[str, float]] = {}
    for name, value in record.items():
        parsed = parse_key(name)
        if parsed is not None:
            out.setdefault(parsed[0], {})[parsed[1]] = value
    return out


def verdicts(record: dict, rule: dict) -> dict[str, list[str]]:
    """{module: reasons} for every module measured in ``record`` (an empty list: alive)."""
    return {m: inert_reasons(m, metrics, rule) for m, metrics in by_module(record).items() if m in MODULES}


def health_rows(variant: str, seed: int, record: dict, rule: dict) -> list[dict]:
    """The rows of results/module_health.csv for one run's last epoch."""
    rows = []
    verdict = verdicts(record, rule)
    for module, metrics in sorted(by_module(record).items()):
        if module not in MODULES:
            continue
        for metric, value in sorted(metrics.items()):
            rows.append({"variant": variant, "seed": seed, "module": module, "metric": metric,
                         "value": value, "inert": bool(verdict[module])})
    return rows
