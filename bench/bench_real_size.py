"""Benchmark: a full-sized real feature file on one machine (does anything load the whole array?).

Writes a Flickr30K-train-sized split of random features in the canonical layout ({workdir}/f30k/precomp/
with id_mapping.json beside it): train_ims.npy float32 (29000, 36, 2048), 8.6 GB, one random block of
256 images written over and over with plain file writes (``--coco``: COCO's 113,287 images, 33 GB; ``--images N``: N images), with matching
train_ids.txt, train_caps.txt and id_mapping.json. Then:

1. ``aahr check-data --splits train`` in a subprocess (every byte scanned for NaN / inf): seconds,
   throughput and that process's peak resident memory;
2. ``--steps`` training steps (default 50, after two warm-up steps) of the paper-sized model on CPU
   (configs/f30k.yaml merged over params.yaml, a BERT-base-sized text encoder from random weights, as
   ``bench_train_step.py --paper-size``), its batches drawn from the memory-mapped file as ``aahr train``
   draws them: seconds per step, images per second, peak resident memory, and at the end the resident
   memory split into anonymous (the model, activations) and file-backed pages (touched pages of the
   map; the kernel can drop them at any time).

Writes results/benchmarks/real_size.json. The goal is a peak resident memory of check-data under
4 GB with the 8.6 GB file (nothing loads the whole array); the training process's peak is dominated
by the paper-sized model itself (8.4 GB at batch 128 in bench_train_step.py --paper-size), so the JSON
also gives its file-backed share, which is what the feature file adds.

Usage: python bench/bench_real_size.py [--images 29000] [--coco] [--steps 50] [--batch 128]
                                       [--workdir data/bench_real_size] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

F30K_TRAIN, COCO_TRAIN, K, D = 29000, 113287, 36, 2048


def write_split(folder: Path, n: int, seed: int = 0) -> float:
    """{folder}/train_ims.npy (n, 36, 2048) random float32 in chunks, ids, captions, id_mapping.json
    beside the folder. Returns seconds."""
    t = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    block = rng.random((256, K, D), dtype=np.float32)           # 256 random images = 75 MB, written over
    # Plain writes, not a memory map: pages written through a map would raise this process's peak
    # resident memory to the file's size, and a child inherits that peak in its rusage (check_data).
    with open(folder / "train_ims.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n, K, D)})
        for s in range(0, n, 256):                              # and over (drawing 8.6 GB would take minutes)
            f.write(np.roll(block, s // 256, axis=0)[:min(n, s + 256) - s].tobytes())
    ids = np.arange(n) + 1000
    words = ["a", "man", "woman", "in", "red", "blue", "shirt", "riding", "bike", "down", "the", "street",
             "with", "dog", "park", "playing", "ball", "near", "river"]
    (folder / "train_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    with open(folder / "train_caps.txt", "w") as f:
        for _ in range(5 * n):
            f.write(" ".join(rng.choice(words, size=int(rng.integers(6, 16)))) + " .\n")
    (folder.parent / "id_mapping.json").write_text(json.dumps({str(i): f"{i}.jpg" for i in ids}))
    return time.perf_counter() - t


def rss_now() -> dict:
    """Resident memory of this process now (Linux /proc): anonymous, file-backed, peak (GB)."""
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 2 ** 20, 3)
    except OSError:
        pass
    return out


def check_data(root: Path) -> dict:
    """aahr check-data in a subprocess: seconds and its peak resident memory (wait4's rusage)."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "aahr", "check-data", "--dataset", "f30k", "--data-root",
                             str(root), "--splits", "train", "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t
    size = (root / "f30k/precomp/train_ims.npy").stat().st_size
    if proc.returncode != 0:
        raise SystemExit(f"aahr check-data failed ({proc.returncode}):\n{output}")
    return {"seconds": round(seconds, 2), "gb_per_second": round(size / 1e9 / seconds, 3),
            "peak_rss_gb": round(usage.ru_maxrss / 2 ** 20, 3), "output": output.strip()}


def train_steps(root: Path, steps: int, batch: int | None, threads: int) -> dict:
    import torch
    import yaml
    from transformers import BertConfig, BertModel, BertTokenizerFast

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_train_step import merged, time_variants

    from aahr.config import load_params, validate_params
    from aahr.text import packaged_minilm_dir
    from aahr.model.layers import l2n
    from aahr.splits import dataset_folders, load_split

    if threads:
        torch.set_num_threads(threads)
    before = rss_now()
    features, captions = dataset_folders(root, "f30k")
    split = load_split(features, captions, "train", with_global=False)
    if not isinstance(split.regions, np.memmap):
        raise SystemExit(f"{features}/train_ims.npy was loaded into memory, not memory-mapped")
    rng = np.random.default_rng(0)
    dg = 512
    split.global_img = l2n(torch.from_numpy(rng.normal(size=(split.n_images, dg)).astype(np.float32))).numpy()
    split.global_txt = l2n(torch.from_numpy(rng.normal(size=(len(split.captions), dg)).astype(np.float32))).numpy()
    with tempfile.TemporaryDirectory() as bert:
        tok = BertTokenizerFast.from_pretrained(packaged_minilm_dir(), local_files_only=True)
        torch.manual_seed(0)
        BertModel(BertConfig(vocab_size=tok.vocab_size)).save_pretrained(bert)     # BERT-base sizes, random
        tok.save_pretrained(bert)
        paper = merged(load_params("params.yaml"), yaml.safe_load(Path("configs/f30k.yaml").read_text()))
        paper["text"]["path"] = bert
        paper["train"]["device"] = "cpu"
        paper = validate_params(paper, "configs/f30k.yaml over params.yaml")
        batch = batch or paper["train"]["batch_size"]
        times = time_variants(paper, ["aahr"], split, steps, batch)[0]["aahr"]
    after = rss_now()
    return {"steps": len(times), "batch": batch, "threads": torch.get_num_threads(),
            "seconds_per_step": round(statistics.median(times), 3),
            "images_per_second": round(batch / statistics.median(times), 2),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 3),
            "rss_before_gb": before, "rss_after_gb": after,
            "features_memmap": True}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=None, help=f"train images (default {F30K_TRAIN}; --coco {COCO_TRAIN})")
    ap.add_argument("--coco", action="store_true", help=f"COCO's train size ({COCO_TRAIN} images, 33 GB)")
    ap.add_argument("--steps", type=int, default=50, help="paper-sized training steps (0: check-data only)")
    ap.add_argument("--batch", type=int, default=None, help="default: configs/f30k.yaml's train.batch_size (128)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--workdir", default="data/bench_real_size", help="where the random dataset is written")
    ap.add_argument("--keep", action="store_true", help="keep the random dataset afterwards")
    ap.add_argument("--out", default="results/benchmarks/real_size.json")
    args = ap.parse_args()
    n = args.images or (COCO_TRAIN if args.coco else F30K_TRAIN)
    root = Path(args.workdir)
    folder = root / "f30k" / "precomp"
    need = n * K * D * 4 * 1.1
    root.mkdir(parents=True, exist_ok=True)
    if shutil.disk_usage(root).free < need:
        raise SystemExit(f"not enough free disk in {root}: {need / 1e9:.1f} GB needed")
    try:
        seconds = write_split(folder, n)
        size = (folder / "train_ims.npy").stat().st_size
        print(f"wrote {folder}/train_ims.npy ({n}, {K}, {D}) float32, {size / 1e9:.2f} GB in {seconds:.1f} s")
        checked = check_data(root)
        print(f"aahr check-data: {checked['seconds']} s ({checked['gb_per_second']} GB/s), peak resident memory "
              f"{checked['peak_rss_gb']} GB: {checked['output']}")
        trained = train_steps(root, args.steps, args.batch, args.threads) if args.steps else None
        if trained:
            print(f"paper-sized aahr steps on CPU: {trained['seconds_per_step']} s/step ({trained['images_per_second']} "
                  f"images/s, batch {trained['batch']}, {trained['steps']} steps), peak resident memory "
                  f"{trained['peak_rss_gb']} GB; at the end {trained['rss_after_gb']}")
    finally:
        if not args.keep:
            shutil.rmtree(root / "f30k", ignore_errors=True)
    result = {"images": n, "file_gb": round(size / 1e9, 3), "write_seconds": round(seconds, 1),
              "check_data": checked, "train": trained,
              "check_data_under_4gb": checked["peak_rss_gb"] < 4.0}
    from aahr.io import write_json
    from aahr.provenance import provenance_of_file

    result["provenance"] = provenance_of_file("params.yaml")
    write_json(args.out, result)          # atomic, folders made
    print(args.out)


if __name__ == "__main__":
    main()
