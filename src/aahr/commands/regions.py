"""aahr regions: K region features per image for every split (the bottom-up-attention role).

synth: train the region extractor on the pretrain split's object labels (or reuse the saved one
trained with the same settings), then extract. Real datasets: a torchvision Faster R-CNN from a
local weights file. Writes {split}_ims.npy (N, K, D) and {split}_boxes.npy (N, K, 4), atomically.
"""

from __future__ import annotations

import argparse
import json
import time

from aahr.commands import _features

HELP = "Region features: train/load the region extractor and write {split}_ims.npy + {split}_boxes.npy."


def configure(p: argparse.ArgumentParser) -> None:
    _features.add_arguments(p, weights_help="real images: Faster R-CNN weights file "
                                            "(default: regions.detector.weights in params)")


def run(args: argparse.Namespace) -> int:
    summary, dirs = _features.run_stage(args, "regions.json", _run_synth, _run_detector)
    _print_summary(summary, dirs)
    return 0


def _run_synth(args, params, dirs, splits, device) -> dict:
    from aahr.data import DataError
    from aahr.features import images, regions, store
    from aahr.features.common import fingerprint

    cfg, seed = params["regions"], params["data_seed"]
    progress = not args.quiet
    scenes_file = dirs.input / "pretrain_scenes.json"
    if not scenes_file.is_file():
        raise DataError(f"{scenes_file}: file not found (the region extractor trains on the pretrain "
                        "split's objects; run `aahr generate`)")
    t = time.perf_counter()
    cap = cfg["pretrain_images"]                 # the extractor reads at most this many pretrain images
    files = images.image_files(dirs.input, "pretrain")
    pretrain = images.read_image_array(files[:cap] if cap else files, progress, "read pretrain")
    timings = {"read_pretrain": round(time.perf_counter() - t, 1)}
    scenes_text = scenes_file.read_text()
    data = fingerprint(pretrain, scenes_text)
    ckpt = dirs.models / "region_extractor.pt"
    loaded = None if args.retrain else regions.load_checkpoint(ckpt, cfg, seed, data, device)
    t = time.perf_counter()
    if loaded is None:
        labels = regions.scene_labels(json.loads(scenes_text))[:len(pretrain)]
        if len(labels) != len(pretrain):
            raise DataError(f"{scenes_file}: {len(labels)} scenes for {len(pretrain)} pretrain images")
        model, metrics = regions.train_extractor(pretrain, labels, cfg, seed, device, progress)
        regions.save_checkpoint(ckpt, model, cfg, seed, data, metrics)
        trained = True
    else:
        model, metrics = loaded
        trained = False
    timings["train"] = round(time.perf_counter() - t, 1)
    out_splits = {}
    for split in splits:
        t = time.perf_counter()
        imgs = pretrain if split == "pretrain" else images.read_image_array(
            images.image_files(dirs.input, split), progress, f"read {split}")
        read = time.perf_counter() - t
        n, k, d = len(imgs), cfg["regions_per_image"], regions.output_dim(cfg)
        with store.npy_writer(store.ims_path(dirs.out, split), (n, k, d)) as ims, \
                store.npy_writer(store.boxes_path(dirs.out, split), (n, k, 4)) as boxes:
            regions.extract_split(model, imgs, cfg, device, ims, boxes, progress, f"regions {split}")
        sec = time.perf_counter() - t - read
        out_splits[split] = {"images": n, "shape": [n, k, d], "read_seconds": round(read, 1),
                             "seconds": round(sec, 1), "images_per_second": round(n / max(sec, 1e-9), 1)}
    return {"dataset": "synth", "extractor": str(ckpt), "trained": trained, "extractor_metrics": metrics,
            "timings": timings, "splits": out_splits}


def _run_detector(args, params, dirs, splits, device) -> dict:
    from aahr.features import detector, images, store

    cfg = params["regions"]
    det = cfg["detector"]
    model = detector.load_detector(det["arch"], args.weights or det["weights"], det["min_size"],
                                   det["max_size"], device, precomp=dirs.out)
    out_splits = {}
    for split in splits:
        t = time.perf_counter()
        files = images.image_files(dirs.input, split, dirs.image_root)
        shape = detector.extract_files(model, files, cfg["regions_per_image"], det["batch_size"],
                                       cfg["append_box"], device, store.ims_path(dirs.out, split),
                                       store.boxes_path(dirs.out, split), not args.quiet, f"regions {split}")
        sec = time.perf_counter() - t
        out_splits[split] = {"images": len(files), "shape": list(shape), "seconds": round(sec, 1),
                             "images_per_second": round(len(files) / max(sec, 1e-9), 2)}
    return {"dataset": args.dataset, "detector": det["arch"], "splits": out_splits}


def _print_summary(s: dict, dirs) -> None:
    m = s.get("extractor_metrics") or {}
    if "detector" in s:
        print(f"detector: {s['detector']}")
    if s["dataset"] == "synth":
        how = "trained" if s["trained"] else "reused"
        print(f"region extractor {how}: {s['extractor']} (train {s['timings']['train']} s)")
        if "shape_acc" in m:
            print(f"  held-out pretrain objects: {m['heldout_objects']}  accuracy shape {m['shape_acc']:.2f}%  "
                  f"colour {m['colour_acc']:.2f}%  size {m['size_acc']:.2f}%  all three {m['all_three_acc']:.2f}%")
            print(f"  proposals: recall@K (IoU >= 0.5) {m['proposal_recall_iou50']:.2f}%  "
                  f"mean best IoU {m['proposal_mean_best_iou']:.3f}")
    for split, v in s["splits"].items():
        read = f"read {v['read_seconds']} s, " if "read_seconds" in v else ""
        print(f"  {split:8s} {v['images']:6d} images -> {dirs.out / (split + '_ims.npy')} "
              f"{tuple(v['shape'])} float32  ({read}extract {v['seconds']} s, {v['images_per_second']} img/s)")
    print(f"regions written to {dirs.out}/ in {s['seconds']} s on {s['device']} "
          f"(summary: {dirs.out / 'regions.json'})")
