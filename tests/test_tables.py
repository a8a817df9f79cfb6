"""Tables from metrics files: the right protocol per table, the ceiling row, seeds, the paper's
reported rows with their copy errors flagged, clear errors."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import keep_variants

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


def _write(results, dataset, method, seed, metrics):
    folder = results / dataset / method / ("" if seed is None else f"seed{seed}")
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def layout(tmp_path):
    """Seed 0 of every method scores 100 + i (1K) and 50 + i (5K); seed 1 scores 10 more."""
    results, raw = tmp_path / "results", tmp_path / "raw"
    _write(results, "synth", "zeroshot", None, _metrics(100, 50))
    for i, method in enumerate(VARIANTS, 1):
        for seed in (0, 1):
            _write(results, "synth", method, seed, _metrics(100 + i + 10 * seed, 50 + i + 10 * seed))
    ceiling = {k: 400.0 if k == "rsum" else 66.0 for k in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5",
                                                             "t2i_r10", "rsum")}
    raw.mkdir()
    (raw / "ceiling.json").write_text(json.dumps({"test": {"1k_folds": ceiling,
                                                           "full": dict(ceiling, rsum=300.0)}}))
    return results, raw


def test_each_table_reads_its_protocol_and_adds_the_ceiling(layout):
    results, raw = layout
    tables = build_tables(results, {"synth": raw / "ceiling.json"}, VARIANTS, [0])
    t1 = {r["method"]: r for r in tables["table1"]}
    assert [r["method"] for r in tables["table1"]] == ["zeroshot", "gpo", "aahr", "truth oracle (no priors)"]
    assert t1["aahr"]["rsum"] == 101.0 and t1["aahr"]["protocol"] == "5fold" and t1["aahr"]["seeds"] == "0"
    assert t1["gpo"]["rsum"] == 103.0 and t1["truth oracle (no priors)"]["rsum"] == 400.0
    assert t1["zeroshot"]["seeds"] == "" and "rsum_std" not in t1["aahr"]
    t2 = {r["method"]: r for r in tables["table2"]}
    assert t2["aahr"]["rsum"] == 51.0 and t2["truth oracle (no priors)"]["rsum"] == 300.0
    t3 = {r["method"]: r for r in tables["table3"]}
    assert t3["zeroshot"]["t2i_map_at_r"] == 13.0 and "truth oracle (no priors)" not in t3
    t4 = {r["method"]: r for r in tables["table4"]}
    assert list(t4) == VARIANTS
    assert (t4["no_gnn"]["rsum_1k"], t4["no_gnn"]["rsum_all"]) == (102.0, 52.0)


def test_several_seeds_give_mean_and_std(layout):
    results, raw = layout
    tables = build_tables(results, {"synth": raw / "ceiling.json"}, VARIANTS, [0, 1])
    t1 = {r["method"]: r for r in tables["table1"]}
    assert t1["aahr"]["seeds"] == "0 1" and t1["aahr"]["rsum"] == 106.0     # mean of 101 and 111
    assert t1["aahr"]["rsum_std"] == pytest.approx(7.07)                     # stdev (ddof 1) of 101, 111
    t4 = {r["method"]: r for r in tables["table4"]}
    assert (t4["gpo"]["rsum_all"], t4["gpo"]["rsum_all_std"]) == (58.0, pytest.approx(7.07))
    header = to_csv(tables["table1"]).splitlines()[0].split(",")
    assert "rsum_std" in header and header.index("rsum_std") > header.index("rsum")
    assert "| synth | aahr | measured | 0 1 | 106.0 ± 7.1 | 56.0 ± 7.1 |" in to_markdown("T4", tables["table4"])


def test_real_datasets_get_the_papers_rows_with_copy_errors_flagged(layout):
    results, raw = layout
    for method in ("zeroshot", *VARIANTS):
        src = results / "synth" / method
        for f in src.rglob("metrics.json"):
            dst = results / "coco" / f.relative_to(results / "synth")
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(f.read_text())
    tables = build_tables(results, {"coco": None}, VARIANTS, [0])
    t1 = tables["table1"]
    assert [r["source"] for r in t1[:3]] == ["measured"] * 3 and "truth oracle (no priors)" not in {r["method"] for r in t1}
    reported = {r["method"]: r for r in t1 if r["source"].startswith("reported")}
    assert reported["AAHR"]["source"] == "reported (KBS-25)"
    vsrn = reported["VSRN++"]
    cells = sum(vsrn[c] for c in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"))
    assert vsrn["rsum"] == pytest.approx(cells) and vsrn["rsum"] != vsrn["rsum_printed"]
    assert "copy error" in vsrn["note"] and not reported["AAHR"]["note"]
    t2 = {r["method"]: r for r in tables["table2"] if r["source"].startswith("reported")}
    assert t2["VSE++"]["rsum_printed"] == 409.8 and "copy error" in t2["VSE++"]["note"]
    assert sum("copy error" in r["note"] for r in t2.values()) == 1
    t3 = {r["method"]: r for r in tables["table3"] if r["source"] == "reported"}
    assert t3["AAHR"]["t2i_map_at_r"] == 49.7
    csv_rows = list(csv.DictReader(to_csv(t1).splitlines()))
    assert csv_rows[0]["note"] == "" and csv_rows[-1]["rsum_printed"] != ""


def test_csv_and_markdown_render_every_row(layout):
    results, raw = layout
    rows = build_tables(results, {"synth": raw / "ceiling.json"}, VARIANTS, [0])["table4"]
    parsed = list(csv.DictReader(to_csv(rows).splitlines()))
    assert [r["method"] for r in parsed] == VARIANTS and float(parsed[0]["rsum_1k"]) == 101.0
    md = to_markdown("Table 4", rows)
    assert md.count("\n| ") == len(rows) + 1 and "| aahr | measured | 0 | 101.0 |" in md


def test_a_missing_run_is_named(layout):
    results, raw = layout
    (results / "synth" / "gpo" / "seed0" / "metrics.json").unlink()
    with pytest.raises(TableError, match="gpo/seed0/metrics.json: metrics file not found"):
        build_tables(results, {"synth": raw / "ceiling.json"}, VARIANTS, [0])


def test_paired_differences_to_aahr_and_their_95_percent_interval(tmp_path):
    from scipy import stats

    results = tmp_path / "results"
    base = [200.0, 210.0, 205.0]
    gains = {"no_gnn": [5.0, 7.0, 6.0], "gpo": [-1.0, 3.0, -2.0]}    # paired by seed
    for s, b in enumerate(base):
        _write(results, "synth", "aahr", s, _metrics(b, b / 2))
        for m, g in gains.items():
            _write(results, "synth", m, s, _metrics(b + g[s], (b + g[s]) / 2))
    _write(results, "synth", "zeroshot", None, _metrics(100, 50))
    t4 = {r["method"]: r for r in build_tables(results, {"synth": None}, ["aahr", "no_gnn", "gpo"], [0, 1, 2])["table4"]}
    half = stats.t.ppf(0.975, 2) * 1.0 / 3 ** 0.5                       # std of (5, 7, 6) is 1
    assert t4["no_gnn"]["rsum_1k_diff"] == 6.0
    assert t4["no_gnn"]["rsum_1k_ci95_low"] == pytest.approx(6 - half, abs=0.01)
    assert t4["no_gnn"]["rsum_1k_verdict"] == "the gnn module: hurts"        # removing it helps, at 95%
    assert t4["gpo"]["rsum_1k_verdict"] == "aahr vs the baseline: no detectable effect"
    assert "rsum_1k_diff" not in t4["aahr"]
    md = to_markdown("t4", list(t4.values()))
    assert "+6.0 [" in md and "ci95" not in md


def test_table5_rows_carry_the_setting_and_the_modules_health(tmp_path):
    import yaml

    from aahr.config import validate_params
    from aahr.health import key
    from aahr.tables import build_table5
    from conftest import ROOT

    params = validate_params(yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text()))
    params |= {"results_root": str(tmp_path / "results"), "data_root": str(tmp_path / "data")}
    params["sensitivity"] = {"eps_005": params["sensitivity"]["eps_005"],
                             "no_gnn_2x": {"base": "no_gnn", "set": {"train.epochs": 4}}}   # a doubled schedule
    for name, entropy, rsum in (("aahr", 0.999, 200.0), ("eps_005", 0.8, 200.0), ("no_gnn", 0.8, 210.0),
                                ("no_gnn_2x", 0.8, 215.0)):
        _write(tmp_path / "results", "synth", name, 0, _metrics(rsum, 100))
        run = tmp_path / "data" / "synth" / "runs" / name / "seed0"
        run.mkdir(parents=True)
        records = [{"epoch": e, "lr": 1e-3, "dev_rsum": 300.0 + (10 * e if name == "aahr" else 0),
                    key("prototypes", "code_entropy"): entropy, key("prototypes", "code_agreement"): 0.1,
                    key("prototypes", "grad_ratio"): 0.5} for e in (1, 2, 3, 4)]
        (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    rows = {r["method"]: r for r in build_table5(params, "synth", [0])}
    assert rows["aahr"]["setting"] == "authors' values" and rows["eps_005"]["setting"] == "losses.prototypes.epsilon=0.05"
    assert rows["aahr"]["prototypes_status"] == "inert" and rows["eps_005"]["prototypes_status"] == "alive"
    assert rows["eps_005"]["prototypes_code_entropy"] == 0.8 and rows["eps_005"]["rsum_1k"] == 200.0
    assert rows["no_gnn_2x"]["base"] == "no_gnn" and rows["no_gnn_2x"]["rsum_1k_minus_base"] == 5.0
    assert rows["aahr"]["converged"] == "no" and rows["eps_005"]["converged"] == "yes"   # dev rsum climbing / flat


def test_variance_rows_separate_training_seeds_from_data_seeds(tmp_path):
    from aahr.tables import variance_rows

    roots = [tmp_path / "r0", tmp_path / "r1", tmp_path / "r2"]
    for s, (a, g) in enumerate([(200.0, 190.0), (202.0, 192.0), (204.0, 191.0)]):   # training seeds
        _write(roots[0], "synth", "aahr", s, _metrics(a, a / 2))
        _write(roots[0], "synth", "gpo", s, _metrics(g, g / 2))
    for root, (a, g) in zip(roots[1:], [(220.0, 180.0), (180.0, 200.0)]):           # data seeds 1, 2
        _write(root, "synth", "aahr", 0, _metrics(a, a / 2))
        _write(root, "synth", "gpo", 0, _metrics(g, g / 2))
    rows = {(r["column"], r["method"], r["source"]): r for r in variance_rows(roots)}
    assert rows[("rsum_1k", "aahr", "training seeds")]["std"] == 2.0
    assert rows[("rsum_1k", "aahr", "data seeds")]["mean"] == 200.0 and rows[("rsum_1k", "aahr", "data seeds")]["std"] == 20.0
    diff = rows[("rsum_1k", "aahr - gpo", "data seeds")]
    assert diff["mean"] == pytest.approx((10 + 40 - 20) / 3, abs=0.01) and diff["ci95_low"] < 0 < diff["ci95_high"]


def _dev_side(tmp_path, results, gpo=(300.0, 320.0), no_global=(380.0, 390.0), zeroshot_dev=250.0,
              split="dev") -> dict:
    """The files the regime reads: the zero-shot dev scores and the training runs' dev metrics."""
    data = tmp_path / "data"
    for method, values in (("gpo", gpo), ("no_global", no_global)):
        for seed, v in enumerate(values):
            folder = data / "synth" / "runs" / method / f"seed{seed}"
            folder.mkdir(parents=True)
            (folder / "metrics.json").write_text(json.dumps({"best_epoch": 3, "dev_rsum": v}))
    folder = results / "synth" / "zeroshot_dev"
    folder.mkdir(parents=True)
    m = {f"1k_{d}_r{k}": zeroshot_dev / 6 for d in ("i2t", "t2i") for k in (1, 5, 10)} | {"1k_rsum": zeroshot_dev}
    (folder / "metrics.json").write_text(json.dumps(m | {"evaluated": {"split": split, "view": "zero-shot"}}))
    return {"data_root": str(data), "results_root": str(results), "seeds": [0, 1],
            "variants": dict.fromkeys(("aahr", "no_global", "gpo"), {})}


def test_the_regime_ratio_is_read_on_the_dev_split_only(tmp_path, monkeypatch):
    from pathlib import Path

    from aahr.tables import regime_rows

    results = tmp_path / "results"
    params = _dev_side(tmp_path, results)
    # the test side holds files too, unreadable: the regime must never open one
    for method in ("zeroshot", "gpo", "no_global"):
        for seed in ((None,) if method == "zeroshot" else (0, 1)):
            _write(results, "synth", method, seed, {})
            (results / "synth" / method / ("" if seed is None else f"seed{seed}") / "metrics.json").write_text("not json")
    opened = []
    real = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: opened.append(str(self)) or real(self, *a, **k))
    rows = regime_rows(params, ["synth"])
    assert opened and all("zeroshot_dev" in f or "/runs/" in f for f in opened if "reference" not in f)
    synth = {r["against"]: r for r in rows if r["dataset"] == "synth"}
    assert synth["local model"]["global_rsum"] == 250.0 and synth["local model"]["baseline_rsum"] == 385.0
    assert synth["local model"]["ratio"] == round(250 / 385, 3) and synth["baseline"]["ratio"] == round(250 / 310, 3)
    assert {r["split"] for r in rows if r["source"] == "measured"} == {"dev"}
    paper = {(r["dataset"], r["against"]): r["ratio"] for r in rows if r["source"].startswith("reported")}
    assert paper[("f30k", "local model")] == round(526.86 / 524.1, 3)        # OpenCLIP over HREM: 1.005
    assert paper[("coco", "local model")] == round(403.66 / 450.9, 3)        # 0.895


def test_a_zero_shot_file_of_another_split_is_refused_for_the_regime(tmp_path):
    from aahr.tables import regime_rows

    params = _dev_side(tmp_path, tmp_path / "results", split="test")
    with pytest.raises(TableError, match="not scored on the dev split"):
        regime_rows(params, ["synth"])


def test_table4_orders_its_rows_itself_and_adds_the_local_view_and_the_interaction(tmp_path):
    results = tmp_path / "results"
    # per seed: aahr 300, no_gnn 310, no_global 305, no_global_no_gnn 290 (+ seed): interaction -25 each
    scores = {"aahr": 300.0, "no_gnn": 310.0, "no_global": 305.0, "no_global_no_gnn": 290.0, "base": 280.0,
              "gpo": 270.0, "aahr_local": 295.0}
    for s in (0, 1, 2):
        for m, v in scores.items():
            _write(results, "synth", m, s, _metrics(v + s + (s == 2) * (m == "aahr"), v / 2))
    _write(results, "synth", "zeroshot", None, _metrics(100, 50))
    raw = tmp_path / "raw"
    raw.mkdir()
    ceiling = {k: 400.0 for k in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")}
    (raw / "ceiling.json").write_text(json.dumps({"test": {"1k_folds": ceiling, "full": ceiling}}))
    shuffled = ["gpo", "no_global_no_gnn", "base", "no_global", "aahr", "no_gnn"]
    rows = build_tables(results, {"synth": raw / "ceiling.json"}, shuffled, [0, 1, 2])["table4"]
    assert [r["method"] for r in rows] == ["aahr", "no_global", "no_global_no_gnn", "no_gnn", "base", "gpo",
                                           "aahr_local", "interaction: global x gnn"]
    by = {r["method"]: r for r in rows}
    assert by["aahr_local"]["rsum_1k_verdict"].startswith("the global view at inference: helps")
    assert by["no_global_no_gnn"]["rsum_1k_verdict"].startswith("the global and the gnn modules together")
    assert by["base"]["rsum_1k_verdict"] == "the four modules together: helps"
    inter = by["interaction: global x gnn"]
    # per seed: (300 + s [+1 at seed 2]) - 310 - 305 + 290 = -25, -25, -24
    assert inter["rsum_1k"] == pytest.approx(-24.7, abs=0.05)
    assert inter["rsum_1k_ci95_high"] < 0 and "together worse than their separate effects add up" in inter["rsum_1k_verdict"]


def _stamp(results, method: str, seed: int | None, commit: str, clean: bool = True) -> None:
    """Give one metrics file of the layout a provenance record naming ``commit``."""
    path = results / "synth" / method / ("" if seed is None else f"seed{seed}") / "metrics.json"
    m = json.loads(path.read_text())
    m["provenance"] = {"code": {"commit": commit, "clean": clean, "sources_sha256": "0" * 64},
                       "params_sha256": "1" * 64}
    path.write_text(json.dumps(m))


def test_every_row_names_its_code_version_and_mixed_versions_are_refused(layout):
    from aahr.tables import MixedCodeVersions, check_one_code_version, code_versions

    results, raw = layout
    for method in ["zeroshot", *VARIANTS]:
        for seed in ([None] if method == "zeroshot" else [0]):
            _stamp(results, method, seed, "a" * 40)
    tables = build_tables(results, {"synth": raw / "ceiling.json"}, VARIANTS, [0])
    check_one_code_version(tables)                                          # one version: fine
    assert code_versions(tables) == {"aaaaaaa": ["table1", "table2", "table3", "table4"]}
    md = to_markdown("Table 1", tables["table1"])
    assert "| code |" not in md and "made by code version `aaaaaaa`" in md   # said once, under the table
    _stamp(results, "no_gnn", 0, "b" * 40)                                  # one run of another version
    _stamp(results, "gpo", 0, "a" * 40, clean=False)                        # and one from a changed tree
    tables = build_tables(results, {"synth": raw / "ceiling.json"}, VARIANTS, [0])
    with pytest.raises(MixedCodeVersions, match=r"3 code versions: aaaaaaa .*aaaaaaa\+dirty .*bbbbbbb \(table4\)"):
        check_one_code_version(tables)
    rows = {r["method"]: r for r in tables["table4"]}
    assert rows["no_gnn"]["code"] == "bbbbbbb" and rows["gpo"]["code"] == "aaaaaaa+dirty"
    assert "| code |" in to_markdown("Table 4", tables["table4"])           # mixed: a column per row


def test_the_tables_command_refuses_mixed_versions_unless_told(layout, tmp_path):
    import yaml

    from aahr.cli import main

    results, raw = layout
    (results / "synth" / "ceiling.json").write_text((raw / "ceiling.json").read_text())
    _stamp(results, "gpo", 0, "b" * 40)                     # gpo: bbbbbbb; the others carry no record
    params = yaml.safe_load(open("params.yaml"))
    dev = _dev_side(tmp_path, results, gpo=(300.0,), no_global=(380.0,))
    params |= {"results_root": str(results), "data_root": dev["data_root"], "seeds": [0]}
    keep_variants(params, VARIANTS)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    assert main(["tables", "--params", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()                  # nothing written
    assert main(["tables", "--params", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "out"),
                 "--allow-mixed-code"]) == 0
    with open(tmp_path / "out" / "table4.csv") as f:
        assert {r["method"]: r["code"] for r in csv.DictReader(f)}["gpo"] == "bbbbbbb"


def test_the_regime_sweep_pairs_each_points_aahr_with_the_local_model_and_reads_its_ratio_on_dev(tmp_path):
    from aahr.figures import regime_sweep
    from aahr.tables import paper_regimes, regime_sweep_rows

    results = tmp_path / "results"
    params = _dev_side(tmp_path, results, no_global=(380.0, 390.0))         # the local model: 385 on dev
    for s, v in enumerate((300.0, 302.0)):
        _write(results, "synth", "no_global", s, _metrics(v, v / 2))
    points = []
    for name, zs, gain in (("gb50k", 250.0, (-10.0, -10.5)), ("gb10k", 150.0, (-30.0, -20.0))):
        root = tmp_path / "regime" / name
        _dev_side(tmp_path / name, root, zeroshot_dev=zs)                    # its zero-shot dev file
        for s, g in enumerate(gain):
            _write(root, "synth", "aahr", s, _metrics(300.0 + 2 * s + g, 150.0))
        points.append(root)
    rows = regime_sweep_rows(params, points, results)
    assert [r["point"] for r in rows] == ["gb10k", "gb50k"]                 # by ratio
    assert rows[1]["ratio"] == round(250 / 385, 3) and rows[1]["effect_rsum_1k"] == pytest.approx(-10.2, abs=0.06)
    assert rows[0]["effect_rsum_1k_ci95_low"] < -25 < rows[0]["effect_rsum_1k_ci95_high"]
    assert rows[1]["verdict"] == "the global module: hurts"
    assert paper_regimes() == {"f30k 1k": pytest.approx(526.86 / 524.1), "coco 5k": pytest.approx(403.66 / 450.9)}
    regime_sweep(rows, tmp_path / "sweep.png", paper_regimes())
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
