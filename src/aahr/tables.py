"""The paper's tables from measured metrics: each a CSV plus a Markdown rendering.

Every measured number comes from a ``metrics.json`` written by ``aahr evaluate``:
``results/{dataset}/zeroshot/metrics.json`` (the frozen global branch, no training seed) and
``results/{dataset}/{variant}/seed{seed}/metrics.json`` (one per training seed; with more than one
seed a row shows the mean and the standard deviation (ddof 1) in ``{column}_std`` columns). The synth
tables add the oracle ceiling (``{results_root}/synth/ceiling.json``, from ``aahr generate --ceiling``), the best any model can do without
priors when captions are ambiguous (see aahr.synth.oracle). The real datasets add the paper's
reported rows (``aahr/reference/*.csv``), marked ``reported``, with rsum recomputed from the six cells
and a note where the printed rsum disagrees (a copy error in the paper).

- table1: the 1K-image protocol (COCO-style 5-fold mean when the test split has whole thousands);
- table2: the whole test split (COCO 5K when it has 5,000 images);
- table3: extended positives (mAP@R, R-Precision, R@1 both directions; ECCV Caption on COCO);
- table4: the ablations, every variant, headline numbers of the three protocols; with two or more
  seeds, the paired difference to ``aahr`` (variant minus aahr, paired by seed) and its 95% t
  confidence interval (``{column}_diff``, ``{column}_ci95_low``, ``{column}_ci95_high``) and what it
  says (``rsum_1k_verdict``);
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


def verdict(method: str, low: float, high: float) -> str:
    """What a paired interval of (method - aahr) says at 95%."""
    if method == "gpo":
        subject, better, worse = "aahr vs the baseline", "aahr worse", "aahr better"
    else:
        module = method.removeprefix("no_")
        subject, better, worse = f"the {module} module", "hurts", "helps"
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
                tables[name].append({"dataset": dataset, "protocol": p, "method": "oracle ceiling",
                                     "source": "exact (synth positives)", "seeds": "",
                                     **{k: _round(c[k]) for k in columns}})
            if ceiling_file is None:
                tables[name] += reported_rows(name, dataset)
        for method in variants:
            cells, _ = _measured(metric_paths(results, dataset, method, seeds),
                                 {col: (prefixes, key) for col, prefixes, key in ABLATION_COLUMNS},
                                 optional=ceiling_file is None)
            paired = paired_columns(results, dataset, method, seeds) if "aahr" in variants else {}
            tables["table4"].append({"dataset": dataset, "method": method, "source": "measured",
                                     "seeds": seed_text, **cells, **paired})
    return tables


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


def regime_rows(tables: dict) -> list[dict]:
    """The global/baseline ratio: the frozen global branch's zero-shot rsum over the trained ``gpo``
    baseline's (mean over seeds), measured per dataset (Table 1's protocol) and as the paper's
    global branch has it (OpenCLIP ViT-B-32 against GPO; aahr/reference/global_branch_regime.csv)."""
    rows = []
    by = {(r["dataset"], r["method"]): r for r in tables["table1"] if r["source"] == "measured"}
    for (dataset, method), r in by.items():
        base = by.get((dataset, "gpo"))
        if method == "zeroshot" and base is not None and base["rsum"]:
            rows.append({"dataset": dataset, "protocol": r["protocol"], "global_branch": "zero-shot (measured)",
                         "global_rsum": r["rsum"], "baseline": f"gpo (seeds {base['seeds']})",
                         "baseline_rsum": base["rsum"], "ratio": round(r["rsum"] / base["rsum"], 3),
                         "source": "measured", "code": ", ".join(sorted({*r["code"].split(", "),
                                                                         *base["code"].split(", ")}))})
    for r in _reference("global_branch_regime.csv"):
        g, b = float(r["global_rsum"]), float(r["baseline_rsum"])
        rows.append({"dataset": r["dataset"], "protocol": r["protocol"], "global_branch": r["global_branch"],
                     "global_rsum": g, "baseline": r["baseline"], "baseline_rsum": b, "ratio": round(g / b, 3),
                     "source": f"reported ({r['source']})"})
    return rows


# Table 5: the module a sensitivity setting belongs to, and the health numbers shown for it.
MODULE_OF_SETTING = {"losses.prototypes": "prototypes", "losses.relation": "relation", "losses.moco": "moco"}
TABLE5_HEALTH = {"prototypes": ("code_entropy", "code_agreement", "grad_ratio"),
                 "relation": ("local_cosine", "tilde_hat_cosine", "grad_ratio"),
                 "moco": ("top1", "positive_rank", "grad_ratio")}


def module_of(dotted: str) -> str | None:
    return next((m for prefix, m in MODULE_OF_SETTING.items() if dotted.startswith(prefix + ".")), None)


def build_table5(params: dict, dataset: str, seeds: list[int]) -> list[dict]:
    """Rows: aahr at the authors' values, then each sensitivity row (mean over ``seeds``), with the
    health numbers (last epoch, mean over seeds) of every module the rows touch."""
    from aahr.health import by_module, verdicts
    from aahr.paths import run_dir

    results, rows = Path(params["results_root"]), []
    rows_spec = {"aahr": {}} | {n: r["set"] for n, r in params["sensitivity"].items()}
    modules = sorted({module_of(k) for spec in rows_spec.values() for k in spec} - {None})
    for name, setting in rows_spec.items():
        cells, _ = _measured(metric_paths(results, dataset, name, seeds),
                             {col: (prefixes, key) for col, prefixes, key in ABLATION_COLUMNS})
        row = {"dataset": dataset, "method": name, "setting": "; ".join(f"{k}={v}" for k, v in setting.items())
               or "authors' values", "seeds": " ".join(map(str, seeds)), **cells}
        records = [_last_record(run_dir(params, dataset, name, s) / "log.jsonl") for s in seeds]
        for module in modules:
            measured = [by_module(r).get(module, {}) for r in records]
            for metric in TABLE5_HEALTH[module]:
                vals = [m[metric] for m in measured if metric in m]
                row[f"{module}_{metric}"] = round(statistics.fmean(vals), 4) if vals else ""
            inert = [bool(verdicts(r, params["health"]).get(module)) for r in records]
            row[f"{module}_inert"] = "yes" if all(inert) else ("no" if not any(inert) else "some seeds")
        rows.append(row)
    return rows


def _last_record(path: Path) -> dict:
    if not path.is_file():
        raise TableError(f"{path}: training log not found (run the training stage first)")
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise TableError(f"{path}: the training log is empty")
    return json.loads(lines[-1])


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
    titles = {"table4": "Table 4: ablations", "regime": "The regime: frozen global branch (zero-shot) over the trained baseline", "table5": "Table 5: sensitivity of each module to its deciding setting",
              "variance": "Two sources of variance: training seeds against data seeds (whole pipeline)"}
    return titles.get(name) or f"Table {name[-1]}: {TABLES[name][0]}"
