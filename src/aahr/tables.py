"""The paper's tables from measured metrics: each a CSV plus a Markdown rendering.

Every measured number comes from a ``results/{dataset}/{method}/metrics.json`` written by
``aahr evaluate``; the synth tables add the oracle ceiling (``ceiling.json`` of the dataset), the
best any model can do without priors when captions are ambiguous (see aahr.synth.oracle).

- table1: the 1K-image protocol (COCO-style 5-fold mean when the test split has whole thousands);
- table2: the whole test split (COCO 5K when it has 5,000 images);
- table3: extended positives (mAP@R, R-Precision, R@1 both directions);
- table4: the ablations, every variant, headline numbers of the three protocols.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from aahr.errors import AahrError

RECALLS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")
EXTENDED = ("i2t_map_at_r", "i2t_r_precision", "i2t_r1", "t2i_map_at_r", "t2i_r_precision", "t2i_r1")
MAIN_ROWS = ("zeroshot", "gpo", "aahr")
# table -> (title, metrics.json prefixes in order of preference, columns, the ceiling's protocol)
TABLES = {
    "table1": ("1K-image protocol", ("5fold", "1k", "full"), RECALLS),
    "table2": ("whole test split (5K protocol at 5,000 images)", ("5k", "full"), RECALLS),
    "table3": ("extended positives", ("ext",), EXTENDED),
}
CEILING_OF = {"5fold": "1k_folds", "1k": "full", "5k": "full", "full": "full"}
ABLATION_COLUMNS = (("rsum_1k", ("5fold", "1k", "full"), "rsum"), ("rsum_all", ("5k", "full"), "rsum"),
                    ("ext_i2t_map_at_r", ("ext",), "i2t_map_at_r"), ("ext_t2i_map_at_r", ("ext",), "t2i_map_at_r"))


class TableError(AahrError):
    """A metrics file a table needs is missing or lacks a protocol."""


def _load(path: Path) -> dict:
    if not path.is_file():
        raise TableError(f"{path}: metrics file not found (run the evaluate stage first)")
    return json.loads(path.read_text())


def _prefix(metrics: dict, prefixes: tuple[str, ...], path: Path) -> str:
    for p in prefixes:
        if any(k.startswith(p + "_") for k in metrics):
            return p
    raise TableError(f"{path}: none of the protocols {', '.join(prefixes)} in it")


def _round(v: float) -> float:
    return round(float(v), 2)


def build_tables(results: Path, datasets: dict[str, Path], variants: list[str], seeds: list[int]) -> dict:
    """{table name: list of row dicts}. ``datasets``: name -> folder holding ``ceiling.json`` (synth)
    or None; metrics are read from ``results/{dataset}/{method}/metrics.json``."""
    tables: dict[str, list[dict]] = {name: [] for name in (*TABLES, "table4")}
    seed_text = " ".join(map(str, seeds))
    for dataset, raw in datasets.items():
        ceiling = json.loads((raw / "ceiling.json").read_text())["test"] if raw is not None else None
        for name, (_, prefixes, columns) in TABLES.items():
            for method in MAIN_ROWS:
                path = results / dataset / method / "metrics.json"
                m = _load(path)
                p = _prefix(m, prefixes, path)
                tables[name].append({"dataset": dataset, "protocol": p, "method": method, "source": "measured",
                                     "seeds": seed_text, **{c: _round(m[f"{p}_{c}"]) for c in columns}})
            if ceiling is not None and name != "table3":
                c = ceiling[CEILING_OF[p]]
                tables[name].append({"dataset": dataset, "protocol": p, "method": "oracle ceiling",
                                     "source": "exact (synth positives)", "seeds": "",
                                     **{k: _round(c[k]) for k in columns}})
        for method in variants:
            path = results / dataset / method / "metrics.json"
            m = _load(path)
            row = {"dataset": dataset, "method": method, "source": "measured", "seeds": seed_text}
            for column, prefixes, key in ABLATION_COLUMNS:
                row[column] = _round(m[f"{_prefix(m, prefixes, path)}_{key}"])
            tables["table4"].append(row)
    return tables


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_markdown(title: str, rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = [f"### {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.1f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def title_of(name: str) -> str:
    return "Table 4: ablations" if name == "table4" else f"Table {name[-1]}: {TABLES[name][0]}"
