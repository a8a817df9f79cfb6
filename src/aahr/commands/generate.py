"""aahr generate: render the embedded `synth` dataset (images, captions, exact extended positives)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Generate the embedded synth dataset: images, 5 captions each, exact extended positives."


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--out", default=None,
                   help="output folder (default: {data_root}/synth/raw from params)")
    p.add_argument("--workers", type=int, default=None,
                   help="rendering processes (default: every CPU available; the bytes do not depend on it)")
    p.add_argument("--ceiling", default=None, metavar="FILE.json",
                   help="also write the oracle ceiling of each split (the raw folder's ceiling.json, with its "
                        "provenance) here: the tables read it from {results_root}/synth/ceiling.json, a small "
                        "file kept in git, so they rebuild without the data")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from aahr.config import load_params
    from aahr.synth.generate import generate

    params = load_params(args.params)
    out = Path(args.out) if args.out else Path(params["data_root"]) / "synth" / "raw"
    summary = generate(params, out, progress=not args.quiet, workers=args.workers)
    if args.ceiling:
        import json

        from aahr.io import write_json
        from aahr.provenance import provenance

        ceilings = json.loads((out / "ceiling.json").read_text())
        write_json(args.ceiling, {**ceilings, "provenance": provenance(params)})
    for split, s in summary["splits"].items():
        line = f"  {split:8s} {s['images']:6d} images {s['captions']:7d} captions"
        if "ceiling" in s:
            c = s["ceiling"]
            line += (f"  positives/caption mean {s['positives_per_caption_mean']:.1f}"
                     f"  truth-oracle rsum {c['full']['rsum']:.1f}")
            if "1k_folds" in c:
                line += f" (1K folds {c['1k_folds']['rsum']:.1f})"
        print(line)
    print(f"synth written to {out}/ in {summary['seconds']} s "
          f"(summary: {out / 'summary.json'}, ceilings: {out / 'ceiling.json'})")
    return 0
