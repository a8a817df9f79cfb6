"""Tables from metrics files: the right protocol per table, the ceiling row, clear errors."""

from __future__ import annotations

import csv
import json

import pytest

from aahr.tables import TableError, build_tables, to_csv, to_markdown

VARIANTS = ["aahr", "no_gnn", "gpo"]


def _metrics(rsum_1k: float, rsum_5k: float) -> dict:
    m = {}
    for prefix, rsum in (("5fold", rsum_1k), ("5k", rsum_5k)):
        m |= {f"{prefix}_{d}_r{k}": rsum / 6 for d in ("i2t", "t2i") for k in (1, 5, 10)}
        m[f"{prefix}_rsum"] = rsum
    m |= {f"ext_{d}_{k}": 10.0 + i for i, (d, k) in enumerate(
        (d, k) for d in ("i2t", "t2i") for k in ("map_at_r", "r_precision", "r1"))}
    return m


@pytest.fixture
def layout(tmp_path):
    results, raw = tmp_path / "results", tmp_path / "raw"
    for i, method in enumerate(["zeroshot", *VARIANTS]):
        (results / "synth" / method).mkdir(parents=True)
        (results / "synth" / method / "metrics.json").write_text(json.dumps(_metrics(100 + i, 50 + i)))
    ceiling = {k: 400.0 if k == "rsum" else 66.0 for k in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5",
                                                             "t2i_r10", "rsum")}
    raw.mkdir()
    (raw / "ceiling.json").write_text(json.dumps({"test": {"1k_folds": ceiling,
                                                           "full": dict(ceiling, rsum=300.0)}}))
    return results, raw


def test_each_table_reads_its_protocol_and_adds_the_ceiling(layout):
    results, raw = layout
    tables = build_tables(results, {"synth": raw}, VARIANTS, [0, 1])
    t1 = {r["method"]: r for r in tables["table1"]}
    assert [r["method"] for r in tables["table1"]] == ["zeroshot", "gpo", "aahr", "oracle ceiling"]
    assert t1["aahr"]["rsum"] == 101.0 and t1["aahr"]["protocol"] == "5fold" and t1["aahr"]["seeds"] == "0 1"
    assert t1["gpo"]["rsum"] == 103.0 and t1["oracle ceiling"]["rsum"] == 400.0
    t2 = {r["method"]: r for r in tables["table2"]}
    assert t2["aahr"]["rsum"] == 51.0 and t2["oracle ceiling"]["rsum"] == 300.0
    t3 = {r["method"]: r for r in tables["table3"]}
    assert t3["zeroshot"]["t2i_map_at_r"] == 13.0 and "oracle ceiling" not in t3
    t4 = {r["method"]: r for r in tables["table4"]}
    assert list(t4) == VARIANTS
    assert (t4["no_gnn"]["rsum_1k"], t4["no_gnn"]["rsum_all"]) == (102.0, 52.0)


def test_csv_and_markdown_render_every_row(layout):
    results, raw = layout
    rows = build_tables(results, {"synth": raw}, VARIANTS, [0])["table4"]
    parsed = list(csv.DictReader(to_csv(rows).splitlines()))
    assert [r["method"] for r in parsed] == VARIANTS and float(parsed[0]["rsum_1k"]) == 101.0
    md = to_markdown("Table 4", rows)
    assert md.count("\n| ") == len(rows) + 1 and "| aahr | measured | 0 | 101.0 |" in md


def test_a_missing_run_is_named(layout):
    results, raw = layout
    (results / "synth" / "gpo" / "metrics.json").unlink()
    with pytest.raises(TableError, match="gpo/metrics.json: metrics file not found"):
        build_tables(results, {"synth": raw}, VARIANTS, [0])
