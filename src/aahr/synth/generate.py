"""Write the `synth` dataset in the field's raw layout.

Output folder (default ``{data_root}/synth/raw``)::

    images/{id:07d}.png           rendered RGB scenes (all splits)
    id_mapping.json               {image id: file name}, as Flickr30K's
    {split}_caps.txt              5 consecutive lines per image: caption i belongs to image i // 5
    {split}_ids.txt               one image id per line
    {split}_scenes.json           the generator's hidden truth: shapes, boxes, caption meanings
    {split}_positives.npz         exact extended positives, CSR (train / dev / test)
    ceiling.json                  the oracle's rsum per split and protocol (see oracle.py)
    summary.json                  counts and ambiguity statistics

Splits: ``pretrain`` (other scenes, noisy captions: for the feature extractors), ``train``,
``dev`` (model selection) and ``test``. Everything is a pure function of params and the seed.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from aahr.io import atomic_dir
from aahr.synth.captions import CaptionWriter, SceneTable, extended_positives
from aahr.synth.oracle import ceiling
from aahr.synth.scenes import SceneSampler, render

SPLITS = ("pretrain", "train", "dev", "test")
ID_STRIDE = 1_000_000  # image id = split number * ID_STRIDE + index: ids never collide across splits


def image_id(split: str, index: int) -> int:
    return (SPLITS.index(split) + 1) * ID_STRIDE + index


def image_file(image_id: int) -> str:
    return f"images/{image_id:07d}.png"


def _render_to(job: tuple) -> None:
    scene, size, path = job
    render(scene, size).save(path, compress_level=1)


def render_all(scenes, ids, size: int, out: Path, desc: str, progress: bool, workers: int) -> None:
    """Render and save every scene; rendering is a pure function of the scene, so worker
    processes give the same bytes as one process."""
    jobs = [(s, size, out / image_file(i)) for s, i in zip(scenes, ids)]
    bar = tqdm(total=len(jobs), desc=f"synth {desc}", unit="img", disable=not progress, mininterval=1.0)
    if workers > 1 and len(jobs) >= 256:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for _ in pool.imap_unordered(_render_to, jobs, chunksize=64):
                bar.update()
    else:
        for job in jobs:
            _render_to(job)
            bar.update()
    bar.close()


def generate_split(split: str, n: int, cfg: dict, seed: int, out: Path, progress: bool = True,
                   workers: int = 1) -> dict:
    """Sample, render and caption one split into ``out``; return its summary."""
    code = SPLITS.index(split)
    scenes = SceneSampler(cfg, np.random.default_rng([seed, code, 0])).sample(n)
    writer = CaptionWriter(cfg, np.random.default_rng([seed, code, 1]))
    noisy = split == "pretrain"
    ids = [image_id(split, i) for i in range(n)]
    captions, meanings = [], []
    for scene in scenes:
        for _ in range(cfg["captions_per_image"]):
            sem = writer.meaning(scene)
            if noisy and writer.rng.random() < cfg["pretrain_noise"]:
                sem = writer.corrupt(sem)
            meanings.append(sem)
            captions.append(writer.words(sem))
    render_all(scenes, ids, cfg["image_size"], out, split, progress, workers)
    (out / f"{split}_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    (out / f"{split}_caps.txt").write_text("".join(f"{c}\n" for c in captions))
    (out / f"{split}_scenes.json").write_text(json.dumps({
        "image_size": cfg["image_size"], "noisy_captions": noisy,
        "images": [dict(id=iid, **s.to_json()) for iid, s in zip(ids, scenes)],
        "captions": [m.to_json() for m in meanings]}))
    summary = {"images": n, "captions": len(captions),
               "variants": sum(s.variant_of is not None for s in scenes),
               "shapes_per_image": float(np.mean([len(s.objects) for s in scenes]))}
    if noisy:  # pretraining captions are noisy on purpose: no exact positives for them
        return summary
    indptr, indices = extended_positives(SceneTable(scenes, cfg["relation_margin"] * cfg["image_size"]),
                                         meanings)
    np.savez(out / f"{split}_positives.npz", indptr=indptr, indices=indices)
    m = np.diff(indptr)
    summary |= {"positives_per_caption_mean": float(m.mean()),
                "positives_per_caption_median": float(np.median(m)),
                "positives_per_caption_max": int(m.max()),
                "captions_with_one_positive": float((m == 1).mean()),
                "ceiling": ceiling(indptr, indices, n, cfg["captions_per_image"])}
    return summary


def generate(params: dict, out: str | Path, progress: bool = True, workers: int | None = None) -> dict:
    """Generate every split into ``out`` atomically (a failed run leaves no partial folder).

    ``workers``: rendering processes (default: the CPUs this process may use)."""
    workers = workers or len(os.sched_getaffinity(0))
    cfg, seed = params["synth"], params["data_seed"]
    t0 = time.perf_counter()
    out = Path(out)
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        summary = {"seed": seed, "image_size": cfg["image_size"], "splits": {}}
        for split in SPLITS:
            summary["splits"][split] = generate_split(split, cfg["splits"][split], cfg, seed, tmp, progress, workers)
        ids = {str(image_id(s, i)): image_file(image_id(s, i)) for s in SPLITS for i in range(cfg["splits"][s])}
        (tmp / "id_mapping.json").write_text(json.dumps(ids))
        (tmp / "ceiling.json").write_text(json.dumps(
            {s: v["ceiling"] for s, v in summary["splits"].items() if "ceiling" in v}, indent=1) + "\n")
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")  # no timing: DVC hashes it
    return {**summary, "seconds": round(time.perf_counter() - t0, 1)}
