"""aahr global-branch: frozen global image and caption embeddings per split (the OpenCLIP role).

synth: pretrain a small CLIP-style dual encoder on the pretrain split (or reuse the saved one trained
with the same settings), freeze it, embed every split. Real datasets: OpenCLIP from a local weights
file. Writes {split}_global_img.npy (N, Dg) and {split}_global_txt.npy (5N, Dg), L2-normalised.
"""

from __future__ import annotations

import argparse
import json
import time

from aahr.commands import _features

HELP = "Frozen global branch: pretrain/load the dual encoder and write {split}_global_img/_txt.npy."


def configure(p: argparse.ArgumentParser) -> None:
    _features.add_arguments(p, weights_help="real images: OpenCLIP checkpoint file "
                                            "(default: global_branch.openclip.weights in params)")


def run(args: argparse.Namespace) -> int:
    summary, dirs = _features.run_stage(args, "global_branch.json", _run_synth, _run_openclip)
    _print_summary(summary, dirs)
    return 0


def _write(dirs, split: str, img, txt) -> None:
    from aahr.features import store
    from aahr.io import save_npy

    save_npy(store.global_txt_path(dirs.out, split), txt)
    save_npy(store.global_img_path(dirs.out, split), img)


def _run_synth(args, params, dirs, splits, device) -> dict:
    from aahr.data import DataError, read_captions
    from aahr.features import global_branch as gb
    from aahr.features import images
    from aahr.evaluation import RECALL_KEYS, retrieval_metrics
    from aahr.features.common import fingerprint

    cfg, seed = params["global_branch"], params["data_seed"]
    progress = not args.quiet
    t = time.perf_counter()
    files = images.image_files(dirs.input, "pretrain")
    n_pretrain = len(files)
    if cfg["pretrain_images"]:            # a weaker global branch: the first N pretrain images (the regime sweep)
        if cfg["pretrain_images"] > n_pretrain:
            raise DataError(f"global_branch.pretrain_images: {cfg['pretrain_images']} asked for, but "
                               f"{dirs.input} holds {n_pretrain} pretrain images")
        files = files[:cfg["pretrain_images"]]
    pretrain = images.read_image_array(files, progress, "read pretrain")
    pretrain_caps = read_captions(dirs.input, "pretrain", n_pretrain)[:len(pretrain) * 5]
    timings = {"read_pretrain": round(time.perf_counter() - t, 1)}
    ckpt = dirs.models / "global_dual_encoder.pt"
    data = fingerprint(pretrain, "\n".join(pretrain_caps))
    loaded = None if args.retrain else gb.load_checkpoint(ckpt, cfg, seed, data, device)
    t = time.perf_counter()
    if loaded is None:
        model, vocab, metrics = gb.train_dual_encoder(pretrain, pretrain_caps, cfg, seed, device, progress)
        gb.save_checkpoint(ckpt, model, vocab, cfg, seed, data, metrics)
        trained = True
    else:
        model, vocab, metrics = loaded
        trained = False
    timings["train"] = round(time.perf_counter() - t, 1)
    out_splits, zero_shot = {}, None
    for split in splits:
        t = time.perf_counter()
        imgs = pretrain if split == "pretrain" else images.read_image_array(
            images.image_files(dirs.input, split), progress, f"read {split}")
        caps = pretrain_caps if split == "pretrain" else read_captions(dirs.input, split, len(imgs))
        img = gb.embed_images(model, imgs, cfg, device, progress, f"global {split}")   # (N, Dg)
        txt = gb.embed_captions(model, vocab, caps, cfg, device)                      # (5N, Dg)
        _write(dirs, split, img, txt)
        out_splits[split] = {"images": len(img), "captions": len(txt), "img_shape": list(img.shape),
                             "txt_shape": list(txt.shape), "seconds": round(time.perf_counter() - t, 1)}
        if split == "test":
            recalls = retrieval_metrics(img @ txt.T)                                  # the tie rule of the tables
            zero_shot = {k: round(recalls[k], 2) for k in (*RECALL_KEYS, "rsum")}
            ceiling_file = dirs.input / "ceiling.json"  # the truth oracle's recalls (no priors; aahr.synth.oracle)
            if ceiling_file.is_file():
                full = json.loads(ceiling_file.read_text()).get("test", {}).get("full", {})
                zero_shot["oracle"] = {k: round(v, 2) for k, v in full.items()}
    return {"dataset": "synth", "encoder": str(ckpt), "trained": trained, "encoder_metrics": metrics,
            "timings": timings, "splits": out_splits, "zero_shot_test": zero_shot}


def _run_openclip(args, params, dirs, splits, device) -> dict:
    from aahr.data import DataError, read_captions
    from aahr.features import global_branch as gb
    from aahr.features import images

    from aahr.download import with_downloaded_weights

    oc = with_downloaded_weights(params, args.dataset)["global_branch"]["openclip"]  # null: downloaded file
    model, preprocess, tokenizer = gb.load_openclip(oc["model"], args.weights or oc["weights"], device)
    out_splits = {}
    for split in splits:
        t = time.perf_counter()
        files = images.image_files(dirs.input, split, dirs.image_root)
        caps = read_captions(dirs.input, split, len(files))
        img, txt = gb.openclip_embed_split(model, preprocess, tokenizer, files, caps, oc["batch_size"], device,
                                           not args.quiet, f"global {split}")
        _write(dirs, split, img, txt)
        out_splits[split] = {"images": len(img), "captions": len(txt), "img_shape": list(img.shape),
                             "txt_shape": list(txt.shape), "seconds": round(time.perf_counter() - t, 1)}
    return {"dataset": args.dataset, "encoder": f"openclip {oc['model']}", "splits": out_splits}


def _print_summary(s: dict, dirs) -> None:
    if s["dataset"] == "synth":
        m = s["encoder_metrics"]
        how = "trained" if s["trained"] else "reused"
        print(f"dual encoder {how}: {s['encoder']} (train {s['timings']['train']} s, vocabulary "
              f"{m.get('vocabulary')} words, last-epoch InfoNCE {m.get('last_epoch_loss')}, "
              f"temperature {m.get('temperature')})")
    for split, v in s["splits"].items():
        print(f"  {split:8s} {v['images']:6d} images {tuple(v['img_shape'])}  {v['captions']:7d} captions "
              f"{tuple(v['txt_shape'])}  float32  {v['seconds']} s")
    z = s.get("zero_shot_test")
    if z:
        print(f"  zero-shot on test: i2t R@1 {z['i2t_r1']:.2f}  R@5 {z['i2t_r5']:.2f}  R@10 {z['i2t_r10']:.2f}  "
              f"t2i R@1 {z['t2i_r1']:.2f}  R@5 {z['t2i_r5']:.2f}  R@10 {z['t2i_r10']:.2f}  rsum {z['rsum']:.1f}")
        if "oracle" in z:
            o = z["oracle"]
            print(f"  (truth oracle on test, no priors: i2t R@1 {o.get('i2t_r1')}  t2i R@1 {o.get('t2i_r1')}  "
                  f"rsum {o.get('rsum')}; exact extended positives make many captions fit many images)")
    print(f"global embeddings written to {dirs.out}/ in {s['seconds']} s on {s['device']} "
          f"(summary: {dirs.out / 'global_branch.json'})")
