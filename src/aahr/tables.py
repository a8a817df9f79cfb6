"""The paper's tables from measured metrics: each a CSV plus a Markdown rendering.

Every measured number comes from a ``metrics.json`` written by ``aahr evaluate``:
``results/{dataset}/zeroshot/metrics.json`` (the frozen global branch, no training seed) and
``results/{dataset}/{variant}/seed{seed}/metrics.json`` (one per training seed; with more than one
seed a row shows the mean and the standard deviation (ddof 1) in ``{column}_std`` columns). The synth
tables add the truth oracle (``{results_root}/synth/ceiling.json``, from ``aahr generate --ceiling``;
aahr.synth.oracle): it knows which captions are true of which image but not which one was written
for it, so it ranks every true image equally. It is not a ceiling: a trained model that learns the
caption writer's priors (which true scene a caption was more likely written for) passes it. The real datasets add the paper's
reported rows (``aahr/reference/*.csv``), marked ``reported``, with rsum recomputed from the six cells
and a note where the printed rsum disagrees (a copy error in the paper).

- table1: the 1K-image protocol (COCO-style 5-fold mean when the test split has whole thousands);
- table2: the whole test split (COCO 5K when it has 5,000 images);
- table3: extended positives (mAP@R, R-Precision, R@1 both directions; ECCV Caption on COCO);
- table4: the ablations, every variant (aahr, the leave-one-out rows, then the rest, by name),
  headline numbers of the three protocols; ``aahr_local`` (aahr's own checkpoint scored with its
  local view alone) where it was evaluated; with two or more seeds, the paired difference to
  ``aahr`` (row minus aahr, paired by seed) and its 95% t confidence interval (``{column}_diff``,
  ``{column}_ci95_low``, ``{column}_ci95_high``) and what it says (``rsum_1k_verdict``); with the
  2 x 2 of the global branch and the GNN measured, their interaction (aahr - no_gnn - no_global +
  no_global_no_gnn, per seed) with its interval;
- table5: the sensitivity rows (params.yaml ``sensitivity``: aahr with one setting moved) beside aahr
  at the authors' values, with the health numbers of the module the setting belongs to.

Every measured row has a ``code`` cell: the code version(s) of its metrics files (aahr.provenance).
The Markdown shows it once under the table when all rows agree; :func:`check_one_code_version`
refuses tables whose rows come from several versions (unless told to mix them).
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from importlib import resources
from pathlib import Path

from aahr.errors import AahrError
from aahr.paths import results_folder
from aahr.provenance import label

RECALLS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")
EXTENDED = ("i2t_map_at_r", "i2t_r_precision", "i2t_r1", "t2i_map_at_r", "t2i_r_precision", "t2i_r1")
MAIN_ROWS = ("zeroshot", "gpo", "aahr")
LOCAL_VIEW = "aahr_local"     # aahr's checkpoint scored with its local view alone (aahr evaluate --view local)
ZEROSHOT_DEV = "zeroshot_dev"  # the global branch's zero-shot scores on the dev split (the regime)
TRUTH_ORACLE = "truth oracle (no priors)"
# The 2 x 2 of the global branch and the GNN: (row, sign) of the interaction
INTERACTION = (("aahr", 1), ("no_gnn", -1), ("no_global", -1), ("no_global_no_gnn", 1))
# table -> (title, metrics.json prefixes in order of preference, columns)
TABLES = {
    "table1": ("1K-image protocol", ("5fold", "1k", "full"), RECALLS),
    "table2": ("whole test split (5K protocol at 5,000 images)", ("5k", "full"), RECALLS),
    "table3": ("extended positives", ("eccv", "ext"), EXTENDED),
}
CEILING_OF = {"5fold": "1k_folds", "1k": "full", "5k": "full", "full": "full"}
ABLATION_COLUMNS = (("rsum_1k", ("5fold", "1k", "full"), "rsum"), ("rsum_all", ("5k", "full"), "rsum"),
                    ("ext_i2t_map_at_r", ("eccv", "ext"), "i2t_map_at_r"),
                    ("ext_t2i_map_at_r", ("eccv", "ext"), "t2i_map_at_r"))
# The paper's protocol names (paper_results.csv) per table and dataset.
REPORTED_PROTOCOL = {("table1", "f30k"): "1k", ("table1", "coco"): "1k_5fold", ("table2", "coco"): "5k"}
ROUNDING = 0.35    # |printed rsum - sum of the six printed cells| above this is a copy error, not rounding


class TableError(AahrError):
    """A metrics file a table needs is missing or lacks a protocol."""


class MixedCodeVersions(TableError):
    """A table's rows come from several code versions."""


class MissingProtocol(TableError):
    """A metrics file lacks a protocol (e.g. extended positives on Flickr30K, which has none)."""


def _need_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise TableError(f"{path}: {what} not found (run the workflow's earlier stages first)")
    return path


def _load(path: Path) -> dict:
    if not path.is_file():
        raise TableError(f"{path}: metrics file not found (run the evaluate stage first)")
    return json.loads(path.read_text())


def _prefix(metrics: dict, prefixes: tuple[str, ...], path: Path) -> str:
    for p in prefixes:
        if any(k.startswith(p + "_") for k in metrics):
            return p
    raise MissingProtocol(f"{path}: none of the protocols {', '.join(prefixes)} in it")


def _round(v: float) -> float:
    return round(float(v), 2)


def metric_paths(results: Path, dataset: str, method: str, seeds: list[int]) -> list[Path]:
    """The metrics files of one table row: the zero-shot row has one, a trained method one per seed."""
    if method == "zeroshot":
        return [results_folder(results, dataset, method) / "metrics.json"]
    return [results_folder(results, dataset, method, s) / "metrics.json" for s in seeds]


def _measured(paths: list[Path], columns: dict[str, tuple[tuple[str, ...], str]],
              optional: bool = False) -> tuple[dict, str]:
    """Mean (and std with several files) of each column over the files; columns: name -> (prefixes,
    metric). Returns (cells, the protocol used for the first column). ``optional``: a column whose
    protocol the files lack is left empty instead of an error."""
    loaded = [(p, _load(p)) for p in paths]
    values, protocol = {}, None
    for name, (prefixes, key) in columns.items():
        try:
            found = [(_prefix(m, prefixes, path), m) for path, m in loaded]
        except MissingProtocol:
            if not optional:
                raise
            values[name] = ""
            continue
        protocol = protocol or found[0][0]
        vals = [float(m[f"{p}_{key}"]) for p, m in found]
        values[name] = _round(statistics.fmean(vals))
        if len(vals) > 1:
            values[f"{name}_std"] = _round(statistics.stdev(vals))
    values["code"] = code_of(m for _, m in loaded)
    return values, protocol


def code_of(metrics) -> str:
    """The code versions (aahr.provenance.label) of some metrics files, sorted, comma-separated."""
    return ", ".join(sorted({label(m.get("provenance")) for m in metrics}))


def code_versions(tables: dict) -> dict[str, list[str]]:
    """{code version: the tables with a row of it}, over every measured row."""
    found: dict[str, list[str]] = {}
    for name, rows in tables.items():
        for r in rows:
            for version in filter(None, str(r.get("code", "")).split(", ")):
                if name not in found.setdefault(version, []):
                    found[version].append(name)
    return found


def check_one_code_version(tables: dict) -> None:
    """Raise when the measured rows come from more than one code version (or from a dirty tree
    beside a clean one)."""
    found = code_versions(tables)
    if len(found) > 1:
        listed = "; ".join(f"{v} ({', '.join(names)})" for v, names in sorted(found.items()))
        raise MixedCodeVersions(f"the rows come from {len(found)} code versions: {listed}. Rerun the stale runs "
                                "(snakemake reruns what the code changed), or pass --allow-mixed-code")


def _per_seed(paths: list[Path], prefixes: tuple[str, ...], key: str) -> list[float]:
    return [float(m[f"{_prefix(m, prefixes, p)}_{key}"]) for p, m in ((p, _load(p)) for p in paths)]


def paired_ci(diffs: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the t confidence interval of the mean of paired differences (n >= 2)."""
    from scipy import stats

    n = len(diffs)
    mean = statistics.fmean(diffs)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * statistics.stdev(diffs) / n ** 0.5
    return mean, mean - half, mean + half


def ordered(variants: list[str]) -> list[str]:
    """Table 4's row order, whatever the params file's order: aahr, the leave-one-out rows, the rest."""
    return (["aahr"] * ("aahr" in variants) + sorted(v for v in variants if v.startswith("no_"))
            + sorted(v for v in variants if v != "aahr" and not v.startswith("no_")))


def subject_of(method: str) -> str:
    """What a row's difference to aahr measures."""
    if method == LOCAL_VIEW:
        return "the global view at inference"
    if method == "base":
        return "the four modules together"
    return " and ".join(f"the {m}" for m in method.removeprefix("no_").split("_no_")) + \
        (" modules together" if "_no_" in method else " module")


def verdict(method: str, low: float, high: float) -> str:
    """What a paired interval of (method - aahr) says at 95%."""
    if method == "gpo":
        subject, better, worse = "aahr vs the baseline", "aahr worse", "aahr better"
    else:
        subject, better, worse = subject_of(method), "hurts", "helps"
    if low > 0:
        return f"{subject}: {better}"
    if high < 0:
        return f"{subject}: {worse}"
    return f"{subject}: no detectable effect"


def paired_columns(results: Path, dataset: str, method: str, seeds: list[int]) -> dict:
    """The paired differences to aahr of the rsum columns, with their 95% intervals (>= 2 seeds)."""
    if method == "aahr" or len(seeds) < 2:
        return {}
    mine = [(p, _load(p)) for p in metric_paths(results, dataset, method, seeds)]     # each file read once
    base = [(p, _load(p)) for p in metric_paths(results, dataset, "aahr", seeds)]
    cells = {}
    for col, prefixes, key in ABLATION_COLUMNS[:2]:
        diffs = [float(m[f"{_prefix(m, prefixes, p)}_{key}"]) - float(b[f"{_prefix(b, prefixes, q)}_{key}"])
                 for (p, m), (q, b) in zip(mine, base)]
        mean, low, high = paired_ci(diffs)
        cells |= {f"{col}_diff": _round(mean), f"{col}_ci95_low": _round(low), f"{col}_ci95_high": _round(high)}
        if col == "rsum_1k":
            cells["rsum_1k_verdict"] = verdict(method, low, high)
    return cells


def _reference(name: str) -> list[dict]:
    with resources.files("aahr.reference").joinpath(name).open() as f:
        return list(csv.DictReader(f))


def reported_rows(table: str, dataset: str) -> list[dict]:
    """The paper's rows for one table and dataset, rsum recomputed and copy errors noted."""
    rows = []
    if table == "table3":
        if dataset != "coco":
            return rows
        for r in _reference("eccv_results.csv"):
            rows.append({"dataset": dataset, "protocol": "eccv", "method": r["method"], "source": "reported",
                         "seeds": "", **{c: _round(r[c]) if r[c] else "" for c in EXTENDED},
                         "note": r["source"]})
        return rows
    protocol = REPORTED_PROTOCOL.get((table, dataset))
    for r in _reference("paper_results.csv") if protocol else []:
        if r["dataset"] != dataset or r["protocol"] != protocol:
            continue
        cells = {c: _round(r[c]) for c in RECALLS[:-1]}
        total, printed = round(sum(cells.values()), 1), float(r["rsum_as_printed"])
        note = (f"copy error in the paper: printed rsum {printed}, its cells sum to {total}"
                if abs(total - printed) > ROUNDING else "")
        rows.append({"dataset": dataset, "protocol": protocol, "method": r["method"],
                     "source": f"reported ({r['venue']})", "seeds": "", **cells, "rsum": total,
                     "rsum_printed": printed, "note": note})
    return rows


def build_tables(results: Path, datasets: dict[str, Path | None], variants: list[str], seeds: list[int]) -> dict:
    """{table name: list of row dicts}. ``datasets``: name -> its ``ceiling.json`` (synth: written by
    ``aahr generate --ceiling``) or None (a real dataset: the paper's reported rows are added)."""
    tables: dict[str, list[dict]] = {name: [] for name in (*TABLES, "table4")}
    seed_text = " ".join(map(str, seeds))
    for dataset, ceiling_file in datasets.items():
        ceiling = json.loads(_need_file(ceiling_file, "ceiling file").read_text())["test"] if ceiling_file is not None else None
        for name, (_, prefixes, columns) in TABLES.items():
            for method in MAIN_ROWS:
                paths = metric_paths(results, dataset, method, seeds)
                try:
                    cells, p = _measured(paths, {c: (prefixes, c) for c in columns})
                except MissingProtocol:
                    if ceiling_file is not None or name != "table3":
                        raise
                    continue    # a real dataset without extended positives (Flickr30K; COCO without ECCV)
                tables[name].append({"dataset": dataset, "protocol": p, "method": method, "source": "measured",
                                     "seeds": "" if method == "zeroshot" else seed_text, **cells})
            if ceiling is not None and name != "table3":
                c = ceiling[CEILING_OF[p]]
                tables[name].append({"dataset": dataset, "protocol": p, "method": TRUTH_ORACLE,
                                     "source": "exact (synth positives)", "seeds": "",
                                     **{k: _round(c[k]) for k in columns}})
            if ceiling_file is None:
                tables[name] += reported_rows(name, dataset)
        local = [LOCAL_VIEW] if (results_folder(results, dataset, LOCAL_VIEW)).is_dir() else []
        for method in ordered(variants) + local:
            cells, _ = _measured(metric_paths(results, dataset, method, seeds),
                                 {col: (prefixes, key) for col, prefixes, key in ABLATION_COLUMNS},
                                 optional=ceiling_file is None)
            paired = paired_columns(results, dataset, method, seeds) if "aahr" in variants else {}
            tables["table4"].append({"dataset": dataset, "method": method, "source": "measured",
                                     "seeds": seed_text, **cells, **paired})
        if all(v in variants for v, _ in INTERACTION):
            tables["table4"].append(interaction_row(results, dataset, seeds))
    return tables


def interaction_row(results: Path, dataset: str, seeds: list[int]) -> dict:
    """The global x GNN interaction per seed, aahr - no_gnn - no_global + no_global_no_gnn (0 when
    the two modules' effects add up), its mean and, with two or more seeds, its 95% t interval."""
    row = {"dataset": dataset, "method": "interaction: global x gnn", "source": "measured (2 x 2)",
           "seeds": " ".join(map(str, seeds))}
    files = {v: [(p, _load(p)) for p in metric_paths(results, dataset, v, seeds)] for v, _ in INTERACTION}
    row["code"] = code_of([m for pairs in files.values() for _, m in pairs])
    for col, prefixes, key in ABLATION_COLUMNS[:2]:
        per_seed = [sum(sign * float(m[f"{_prefix(m, prefixes, p)}_{key}"])
                        for (v, sign) in INTERACTION for p, m in [files[v][i]]) for i in range(len(seeds))]
        row[col] = _round(statistics.fmean(per_seed))
        if len(seeds) > 1:
            mean, low, high = paired_ci(per_seed)
            row |= {f"{col}_diff": _round(mean), f"{col}_ci95_low": _round(low), f"{col}_ci95_high": _round(high)}
            if col == "rsum_1k":
                row["rsum_1k_verdict"] = ("global x gnn: " + ("together better than their separate effects add up"
                                          if low > 0 else "together worse than their separate effects add up"
                                          if high < 0 else "no detectable interaction"))
    return row


def _seed_values(root: Path, dataset: str, method: str, col: tuple) -> dict[int, float]:
    """{training seed: value} of every evaluated seed of ``method`` under one results root."""
    _, prefixes, key = col
    found = sorted(results_folder(root, dataset, method).glob("seed*/metrics.json"),
                   key=lambda p: int(p.parent.name[4:]))
    return {int(p.parent.name[4:]): v for p, v in zip(found, _per_seed(found, prefixes, key))}


def variance_rows(roots: list[Path], dataset: str = "synth", methods: tuple[str, str] = ("aahr", "gpo")) -> list[dict]:
    """The two sources of variance side by side. ``roots[0]`` holds every training seed of the data
    seed of params.yaml; each further root the runs of another data seed (its whole learned pipeline
    retrained: data, region extractor, global branch). Per method: the spread over training seeds
    (data fixed) and over data seeds (training seed 0); then ``methods[0] - methods[1]`` paired by
    seed within each source, with its 95% t interval."""
    rows = []
    for col in ABLATION_COLUMNS[:2]:
        name = col[0]
        by_source = {}
        for m in methods:
            train = _seed_values(roots[0], dataset, m, col)
            data = [train[0]] + [_seed_values(r, dataset, m, col)[0] for r in roots[1:]] if 0 in train else []
            by_source[m] = {"training seeds": list(train.values()), "data seeds": data}
        for source in ("training seeds", "data seeds"):
            for m in methods:
                vals = by_source[m][source]
                rows.append({"dataset": dataset, "column": name, "method": m, "source": source, "n": len(vals),
                             "mean": _round(statistics.fmean(vals)) if vals else "",
                             "std": _round(statistics.stdev(vals)) if len(vals) > 1 else ""})
            a, b = (by_source[m][source] for m in methods)
            diffs = [x - y for x, y in zip(a, b)]
            row = {"dataset": dataset, "column": name, "method": f"{methods[0]} - {methods[1]}", "source": source,
                   "n": len(diffs), "mean": _round(statistics.fmean(diffs)) if diffs else ""}
            if len(diffs) > 1:
                mean, low, high = paired_ci(diffs)
                row |= {"std": _round(statistics.stdev(diffs)), "ci95_low": _round(low), "ci95_high": _round(high)}
            rows.append(row)
    return rows


def regime_rows(params: dict, datasets: list[str]) -> list[dict]:
    """The regime, on the dev split only: the frozen global branch's zero-shot dev rsum
    (``results/{dataset}/zeroshot_dev/metrics.json``) over the best dev rsum of the local model
    (``no_global``: AAHR without the global branch) and of the baseline (``gpo``), from their training
    runs' ``metrics.json`` (mean over seeds); then the paper's regime (OpenCLIP zero-shot over HREM,
    the best local model, and over GPO; aahr/reference/global_branch_regime.csv). No test-split file
    is read: the ratio may steer a choice (the pretraining size) without touching the test split."""
    from aahr.paths import result_dir, run_dir

    rows = []
    for dataset in datasets:
        zs_path = _need_file(result_dir(params, dataset, ZEROSHOT_DEV) / "metrics.json", "zero-shot dev metrics")
        zs = _load(zs_path)
        if zs.get("evaluated", {}).get("split") != "dev":
            raise TableError(f"{zs_path}: not scored on the dev split ({zs.get('evaluated')}); the regime reads dev only")
        protocol = _prefix(zs, ("1k", "full"), zs_path)
        for against, method in (("local model", "no_global"), ("baseline", "gpo")):
            if method not in params["variants"]:
                continue
            files = [_load(_need_file(run_dir(params, dataset, method, s) / "metrics.json", "training metrics"))
                     for s in params["seeds"]]
            base = statistics.fmean(float(m["dev_rsum"]) for m in files)
            g = float(zs[f"{protocol}_rsum"])
            rows.append({"dataset": dataset, "split": "dev", "protocol": protocol, "global_branch": "zero-shot (measured)",
                         "global_rsum": _round(g), "against": against,
                         "baseline": f"{method} (seeds {' '.join(map(str, params['seeds']))})",
                         "baseline_rsum": _round(base), "ratio": round(g / base, 3), "source": "measured",
                         "code": code_of([zs, *files])})
    for r in _reference("global_branch_regime.csv"):
        g, b = float(r["global_rsum"]), float(r["baseline_rsum"])
        rows.append({"dataset": r["dataset"], "split": "test", "protocol": r["protocol"],
                     "global_branch": r["global_branch"], "global_rsum": g, "against": r["against"],
                     "baseline": r["baseline"], "baseline_rsum": b, "ratio": round(g / b, 3),
                     "source": f"reported ({r['source']})"})
    return rows


def regime_sweep_rows(params: dict, points: list[Path], local_root: Path, dataset: str = "synth") -> list[dict]:
    """The global branch at several strengths (each point a results root of the whole pipeline with
    other global-branch settings: ``make study``'s regime sweep). Per point, on the seeds its aahr was
    evaluated at: its zero-shot dev rsum over the local model's best dev rsum (``no_global``'s training
    runs under ``params``' data_root): the ratio, dev only; and the global module's effect, the point's
    ``aahr`` minus ``no_global`` under ``local_root``, test 1K rsum, paired by seed, with its 95% t
    interval."""
    from aahr.paths import run_dir

    col = ABLATION_COLUMNS[0]
    rows = []
    for root in map(Path, points):
        zs_path = _need_file(results_folder(root, dataset, ZEROSHOT_DEV) / "metrics.json", "zero-shot dev metrics")
        zs = _load(zs_path)
        if zs.get("evaluated", {}).get("split") != "dev":
            raise TableError(f"{zs_path}: not scored on the dev split ({zs.get('evaluated')})")
        g = float(zs[f"{_prefix(zs, ('1k', 'full'), zs_path)}_rsum"])
        seeds = sorted(int(p.parent.name[4:]) for p in results_folder(root, dataset, "aahr").glob("seed*/metrics.json"))
        if not seeds:
            raise TableError(f"{results_folder(root, dataset, 'aahr')}: no evaluated aahr run (seed*/metrics.json)")
        local_dev = statistics.fmean(float(_load(_need_file(run_dir(params, dataset, "no_global", s) / "metrics.json",
                                                            "training metrics"))["dev_rsum"]) for s in seeds)
        mine = _per_seed(metric_paths(root, dataset, "aahr", seeds), col[1], col[2])
        local = _per_seed(metric_paths(Path(local_root), dataset, "no_global", seeds), col[1], col[2])
        diffs = [a - b for a, b in zip(mine, local)]
        row = {"dataset": dataset, "point": root.name, "global_dev_rsum": _round(g), "local_dev_rsum": _round(local_dev),
               "ratio": round(g / local_dev, 3), "seeds": " ".join(map(str, seeds)),
               "aahr_rsum_1k": _round(statistics.fmean(mine)), "no_global_rsum_1k": _round(statistics.fmean(local)),
               "effect_rsum_1k": _round(statistics.fmean(diffs))}
        if len(diffs) > 1:
            _, low, high = paired_ci(diffs)
            row |= {"effect_rsum_1k_ci95_low": _round(low), "effect_rsum_1k_ci95_high": _round(high),
                    "verdict": verdict("no_global", -high, -low)}
        row["code"] = code_of([zs] + [_load(p) for p in metric_paths(root, dataset, "aahr", seeds)])
        rows.append(row)
    return sorted(rows, key=lambda r: r["ratio"])


def paper_regimes() -> dict[str, float]:
    """The paper's global/local ratios (OpenCLIP zero-shot over HREM), per dataset and protocol."""
    return {f"{r['dataset']} {r['protocol']}": float(r["global_rsum"]) / float(r["baseline_rsum"])
            for r in _reference("global_branch_regime.csv") if r["against"] == "local model"}


# Table 5: the module a sensitivity setting belongs to, and the health numbers shown for it.
MODULE_OF_SETTING = {"losses.prototypes": "prototypes", "losses.relation": "relation", "losses.moco": "moco"}
TABLE5_HEALTH = {"prototypes": ("code_entropy", "code_agreement", "grad_ratio"),
                 "relation": ("local_cosine", "tilde_hat_cosine", "grad_ratio"),
                 "moco": ("top1", "positive_rank", "grad_ratio")}


def module_of(dotted: str) -> str | None:
    return next((m for prefix, m in MODULE_OF_SETTING.items() if dotted.startswith(prefix + ".")), None)


def build_table5(params: dict, dataset: str, seeds: list[int]) -> list[dict]:
    """Rows: aahr at the authors' values, then each sensitivity row (mean over ``seeds``), with its
    base variant's rsum beside it (a row may move any setting of any variant: the doubled-schedule
    check is a row of the base with twice the epochs), whether its runs converged at full learning
    rate, and the health numbers (last epoch, mean over seeds) of every module the rows touch."""
    from aahr.convergence import convergence
    from aahr.health import by_module, judge_module
    from aahr.paths import run_dir

    results, rows = Path(params["results_root"]), []
    rows_spec = {"aahr": ("aahr", {})} | {n: (r["base"], r["set"]) for n, r in params["sensitivity"].items()}
    modules = sorted({module_of(k) for _, spec in rows_spec.values() for k in spec} - {None})
    col = ABLATION_COLUMNS[0]
    for name, (base, setting) in rows_spec.items():
        cells, _ = _measured(metric_paths(results, dataset, name, seeds),
                             {c: (prefixes, key) for c, prefixes, key in ABLATION_COLUMNS})
        row = {"dataset": dataset, "method": name, "base": base,
               "setting": "; ".join(f"{k}={v}" for k, v in setting.items()) or "authors' values",
               "seeds": " ".join(map(str, seeds)), **cells}
        if name != base:
            diffs = [a - b for a, b in zip(_per_seed(metric_paths(results, dataset, name, seeds), col[1], col[2]),
                                           _per_seed(metric_paths(results, dataset, base, seeds), col[1], col[2]))]
            row["rsum_1k_minus_base"] = _round(statistics.fmean(diffs))
        histories = [_history(run_dir(params, dataset, name, s) / "log.jsonl") for s in seeds]
        done = {convergence(h, params["health"]["convergence_window"], params["health"]["convergence_gain"])["converged"]
                for h in histories}
        row["converged"] = "yes" if done == {True} else "no" if done == {False} else "seeds differ"
        for module in modules:
            measured = [by_module(h[-1]).get(module, {}) for h in histories]
            for metric in TABLE5_HEALTH[module]:
                vals = [m[metric] for m in measured if metric in m]
                row[f"{module}_{metric}"] = round(statistics.fmean(vals), 4) if vals else ""
            status = sorted({judge_module(module, h, params["health"])[0] for h in histories})
            row[f"{module}_status"] = status[0] if len(status) == 1 else "seeds differ: " + ", ".join(status)
        rows.append(row)
    return rows


def _history(path: Path) -> list[dict]:
    if not path.is_file():
        raise TableError(f"{path}: training log not found (run the training stage first)")
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise TableError(f"{path}: the training log is empty")
    return [json.loads(line) for line in lines]


def columns_of(rows: list[dict]) -> list[str]:
    """Every column of the rows, in order of first appearance (measured, std, then reported ones)."""
    cols: dict[str, None] = {}
    for r in rows:
        cols |= dict.fromkeys(r)
    return list(cols)


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns_of(rows), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_markdown(title: str, rows: list[dict]) -> str:
    """Standard deviations, where there are any, are shown as mean ± std in the mean's column. The
    code version is a line under the table when every measured row has the same one."""
    versions = code_versions({title: rows})
    footer = ""
    cols = [c for c in columns_of(rows) if not c.endswith(("_std", "_ci95_low", "_ci95_high"))]
    if len(versions) == 1:
        cols = [c for c in cols if c != "code"]
        footer = (f"\nMeasured rows made by code version `{next(iter(versions))}` (the last commit that changed "
                  "the code; each metrics.json names it).\n")
    lines = [f"### {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]

    def cell(r: dict, c: str) -> str:
        v = r.get(c, "")
        if not isinstance(v, float):
            return str(v)
        std, low, high = r.get(f"{c}_std"), r.get(f"{c[:-5]}_ci95_low"), r.get(f"{c[:-5]}_ci95_high")
        if c.endswith("_diff") and isinstance(low, float):
            return f"{v:+.1f} [{low:+.1f}, {high:+.1f}]"
        if c == "ratio" or (abs(v) < 1 and v != 0):
            return f"{v:.3f}"
        return f"{v:.1f} ± {std:.1f}" if isinstance(std, float) else f"{v:.1f}"

    for r in rows:
        lines.append("| " + " | ".join(cell(r, c) for c in cols) + " |")
    return "\n".join(lines) + "\n" + footer


def title_of(name: str) -> str:
    titles = {"table4": "Table 4: ablations",
              "regime": "The regime: frozen global branch (zero-shot) over the local model and the baseline, dev split",
              "table5": "Table 5: sensitivity of each module to its deciding setting",
              "regime_sweep": "The regime sweep: the global module's effect against the global/local dev ratio",
              "regime_sweep": "The regime sweep: the global module's effect against the global/local dev ratio",
              "variance": "Two sources of variance: training seeds against data seeds (whole pipeline)"}
    return titles.get(name) or f"Table {name[-1]}: {TABLES[name][0]}"
