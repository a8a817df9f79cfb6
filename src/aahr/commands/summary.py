"""aahr summary: where the pipeline's outputs are and their headline numbers (make reproduce ends here)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aahr.io import read_output_json

HELP = "Show where the pipeline's outputs went and their headline numbers."


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")


def _synth_raw(folder: Path) -> list[str]:
    summary = json.loads((folder / "summary.json").read_text())
    lines = [f"synth dataset: {folder}/ (seed {summary['seed']})"]
    for split, s in summary["splits"].items():
        line = f"  {split:8s} {s['images']:6d} images, {s['captions']:6d} captions"
        if "ceiling" in s:
            c = s["ceiling"]
            line += f"; oracle ceiling rsum {c['full']['rsum']:.1f} on all {s['images']} images"
            if "1k_folds" in c:
                line += f", {c['1k_folds']['rsum']:.1f} on 1K folds"
        lines.append(line)
    return lines


def _features(folder: Path) -> list[str]:
    lines = []
    regions, glob = folder / "regions.json", folder / "global_branch.json"
    if regions.is_file():
        r = read_output_json(regions)
        m = r["extractor_metrics"]
        shape = r["splits"]["test"]["shape"] if "test" in r["splits"] else "?"
        lines.append(f"region features: {folder}/{{split}}_ims.npy, test {shape} "
                     f"({r.get('seconds', '?')} s); extractor held-out accuracy shape {m['shape_acc']:.1f}%, "
                     f"colour {m['colour_acc']:.1f}%, size {m['size_acc']:.1f}%")
    if glob.is_file():
        g = read_output_json(glob)
        lines.append(f"global branch: {folder}/{{split}}_global_img.npy / _txt.npy ({g.get('seconds', '?')} s)")
    return lines


def _row(name: str, folder: Path, ceiling: dict) -> list[str]:
    path = folder / "metrics.json"
    if not path.is_file():
        return []
    m = json.loads(path.read_text())
    line = f"{name}: {path}"
    if "5fold_rsum" in m and "1k_folds" in ceiling:
        line += f"; test rsum 1K folds {m['5fold_rsum']:.1f} (ceiling {ceiling['1k_folds']['rsum']:.1f})"
    for key in ("5k_rsum", "full_rsum"):
        if key in m:
            line += f", all test images {m[key]:.1f} (ceiling {ceiling['full']['rsum']:.1f})"
    return [line]


def run(args: argparse.Namespace) -> int:
    from aahr.config import load_params
    from aahr.paths import result_dir

    params = load_params(args.params)
    data, results = Path(params["data_root"]), Path(params["results_root"])
    lines = []
    raw = data / "synth" / "raw"
    if "synth" in params["datasets"]:
        if not (raw / "summary.json").is_file():
            print(f"synth dataset: not generated yet ({raw})")
            return 0
        lines += _synth_raw(raw)
        lines += _features(data / "synth" / "precomp")
        ceiling = json.loads((raw / "ceiling.json").read_text())["test"]
        lines += _row("zero-shot global branch", results / "synth" / "zeroshot", ceiling)
        for variant in params["variants"]:
            for seed in params["seeds"]:
                lines += _row(f"{variant} seed {seed} (trained)", result_dir(params, "synth", variant, seed), ceiling)
    tables = [results / f"table{n}.csv" for n in (1, 2, 3, 4)]
    if all(t.is_file() for t in tables):
        lines.append(f"tables: {', '.join(map(str, tables))} (and .md)")
    print("\n".join(lines))
    return 0
