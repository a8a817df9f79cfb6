"""aahr summary: where the pipeline's outputs are and their headline numbers (make reproduce ends here)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "Show where the pipeline's outputs went and their headline numbers."


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")


def _synth_raw(folder: Path) -> list[str]:
    summary = json.loads((folder / "summary.json").read_text())
    lines = [f"synth dataset: {folder}/ (generated in {summary['seconds']} s)"]
    for split, s in summary["splits"].items():
        line = f"  {split:8s} {s['images']:6d} images, {s['captions']:6d} captions"
        if "ceiling" in s:
            c = s["ceiling"]
            line += f"; oracle ceiling rsum {c['full']['rsum']:.1f} on all {s['images']} images"
            if "1k_folds" in c:
                line += f", {c['1k_folds']['rsum']:.1f} on 1K folds"
        lines.append(line)
    return lines


def run(args: argparse.Namespace) -> int:
    from aahr.config import load_params

    params = load_params(args.params)
    data = Path(params["data_root"])
    lines = []
    raw = data / "synth" / "raw"
    if "synth" in params["datasets"]:
        lines += _synth_raw(raw) if (raw / "summary.json").is_file() else [f"synth dataset: not generated yet ({raw})"]
    print("\n".join(lines))
    return 0
