"""Where the pipeline keeps things, in one place (the Snakemake rules follow the same layout).

- ``{data_root}/{dataset}/raw``: captions, ids, positives (synth: also images and scenes);
- ``{data_root}/{dataset}/precomp``: region features and the global branch's embeddings;
- real datasets (:func:`find_precomp`, :func:`id_mapping_candidates`, :func:`default_image_root`): the
  field's canonical layout (VSE-infinity, HREM, the AAHR authors) is ``{data_root}/{dataset}/precomp/``
  with ``id_mapping.json`` beside it in ``{data_root}/{dataset}/`` and the photos in
  ``{data_root}/f30k/flickr30k-images/`` or ``{data_root}/coco/images/{train2014,val2014}/``;
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


ID_MAPPING = "id_mapping.json"
CANONICAL_IMAGES = {"f30k": "flickr30k-images", "coco": "images"}   # VSE-infinity's image folders


def id_mapping_candidates(folder: str | Path, data_root: str | Path | None = None,
                          dataset: str | None = None) -> list[Path]:
    """Where a dataset's ``id_mapping.json`` may be, in the order looked at: in its precomp ``folder``,
    then beside it (``{data_root}/{dataset}/``, the canonical layout; without ``data_root`` and
    ``dataset``, the folder's parent when the folder is named ``precomp``)."""
    folder = Path(folder)
    found = [folder / ID_MAPPING]
    if data_root is not None and dataset is not None:
        found.append(Path(data_root) / dataset / ID_MAPPING)
    elif folder.name == "precomp":
        found.append(folder.parent / ID_MAPPING)
    return list(dict.fromkeys(found))


def find_id_mapping(folder: str | Path, data_root: str | Path | None = None,
                    dataset: str | None = None) -> Path | None:
    """The first of :func:`id_mapping_candidates` that is a file, or None."""
    return next((p for p in id_mapping_candidates(folder, data_root, dataset) if p.is_file()), None)


def default_image_root(data_root: str | Path, dataset: str) -> Path:
    """The photos when ``real.{dataset}.image_root`` is null: the canonical folder
    (``{root}/f30k/flickr30k-images``, ``{root}/coco/images``) when it exists, else
    ``{root}/{dataset}/images``."""
    base = Path(data_root) / dataset
    canonical = base / CANONICAL_IMAGES.get(dataset, "images")
    return canonical if canonical.is_dir() else base / "images"


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
