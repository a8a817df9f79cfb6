"""Where the pipeline keeps things, in one place (the Snakemake rules follow the same layout).

- ``{data_root}/{dataset}/raw``: captions, ids, positives (synth: also images and scenes);
- ``{data_root}/{dataset}/precomp``: region features and the global branch's embeddings;
- ``{data_root}/{dataset}/runs/{variant}/seed{seed}``: one training run (best.pt, last.pt, log.jsonl);
- ``{results_root}/{dataset}/{method}/seed{seed}``: its test metrics (the zero-shot row has no seed).
"""

from __future__ import annotations

from pathlib import Path


def precomp_candidates(data_root: str | Path, dataset: str) -> tuple[Path, Path]:
    """The two folder conventions of the field's features: ``{root}/{dataset}/precomp``
    (VSE-infinity, CHAN, ESA, AAHR) and ``{root}/{dataset}_precomp`` (SCAN, HREM)."""
    root = Path(data_root)
    return root / dataset / "precomp", root / f"{dataset}_precomp"


def find_precomp(data_root: str | Path, dataset: str) -> Path | None:
    """The dataset's feature folder: the nested convention when it exists, else the flat one, else None."""
    return next((f for f in precomp_candidates(data_root, dataset) if f.is_dir()), None)


def raw_dir(params: dict, dataset: str) -> Path:
    return Path(params["data_root"]) / dataset / "raw"


def features_dir(params: dict, dataset: str) -> Path:
    return Path(params["data_root"]) / dataset / "precomp"


def run_dir(params: dict, dataset: str, variant: str, seed: int) -> Path:
    return Path(params["data_root"]) / dataset / "runs" / variant / f"seed{seed}"


def results_folder(results_root: str | Path, dataset: str, method: str, seed: int | None = None) -> Path:
    folder = Path(results_root) / dataset / method
    return folder if seed is None else folder / f"seed{seed}"


def result_dir(params: dict, dataset: str, method: str, seed: int | None = None) -> Path:
    return results_folder(params["results_root"], dataset, method, seed)
