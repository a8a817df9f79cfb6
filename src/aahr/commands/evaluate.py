"""aahr evaluate: the field's retrieval metrics of a trained model or of a similarity matrix.

Input, one of: ``--run RUN_DIR --features DIR --split NAME``, a trained model (its ``best.pt``,
through aahr.inference) embedding the split; ``--sims FILE.npy``, an (N images, 5 N captions) float
matrix (caption j belongs to image j // 5); or ``--zeroshot FEATURES_DIR --split NAME``: the frozen
global branch's own similarity (``{split}_global_img.npy @ {split}_global_txt.npy.T``, the
``zeroshot`` row of the tables). Each computes the matrix and calls :func:`evaluate_and_write`.

Protocols (``--protocol``, several allowed; default ``auto``):

====================  ===============================================  ==================
protocol              what                                             metrics.json prefix
====================  ===============================================  ==================
``1k``                whole matrix, exactly 1,000 images (Flickr30K)   ``1k_``
``5k``                whole matrix, exactly 5,000 images (COCO 5K)     ``5k_``
``full``              whole matrix, any N (e.g. the synth splits)      ``full_``
``5fold``             COCO 1K: mean over N / 1,000 folds of 1,000      ``5fold_``
``extended``          mAP@R, R-Precision, R@1 on extended positives    ``ext_``
``eccv``              ECCV Caption + COCO 1K/5K + CxC (eccv_caption)   ``eccv_``
``auto``              the whole-matrix one (1k / 5k / full by N); 5fold when N is a multiple of
                      1,000 and >= 2,000; extended with ``--positives/--split``; eccv with
                      ``--image-ids/--caption-ids``
====================  ===============================================  ==================

metrics.json key scheme: one flat object, every value a number, every key ``{prefix}_{metric}``:

- whole-matrix and 5fold: ``i2t_r1 i2t_r5 i2t_r10 i2t_medr i2t_meanr t2i_r1 t2i_r5 t2i_r10
  t2i_medr t2i_meanr rsum`` (e.g. ``5k_rsum``, ``5fold_t2i_r1``);
- extended: ``i2t_map_at_r i2t_r_precision i2t_r1 t2i_map_at_r t2i_r_precision t2i_r1``
  (e.g. ``ext_t2i_map_at_r``);
- eccv: the ECCV Caption metrics under the same names as extended (``eccv_i2t_map_at_r``), then
  ``eccv_{coco1k,coco5k,cxc}_{i2t,t2i}_r{1,5,10}`` and ``eccv_{coco1k,coco5k,cxc}_rsum``.

Recalls, mAP@R and R-Precision are percentages; medr / meanr are 1-based ranks. Ties are broken
against the query (see aahr.evaluation). ``--out DIR`` receives ``metrics.json`` and ``ranks.npz``
(per query: the rank of its first true item and its top-10 items, see
:func:`aahr.evaluation.ranked_results`; the figures and ``aahr compare`` read it), both written
atomically and only after every input has been validated and every metric computed: on any error
nothing is written. ``--save-sims`` also keeps the whole matrix as ``sims.npy`` (5K: 477 MB).
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Evaluate a similarity matrix: recalls (1K / 5K / 5-fold), extended positives, ECCV Caption."

PROTOCOL_CHOICES = ["1k", "5fold", "5k", "full", "extended", "eccv", "auto"]


def configure(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--sims", metavar="FILE.npy",
                        help="(N, 5N) similarity matrix: rows images, columns captions")
    source.add_argument("--zeroshot", metavar="FEATURES_DIR",
                        help="evaluate the frozen global branch: its {split}_global_img/txt.npy in this folder")
    source.add_argument("--run", metavar="RUN_DIR",
                        help="evaluate a trained model: RUN_DIR/best.pt (from aahr train) embeds --split of "
                             "--features / --captions")
    p.add_argument("--params", default="params.yaml",
                   help="params file: its numerics (threads, CPU kernels) and its hash in metrics.json's "
                        "provenance (default: params.yaml)")
    p.add_argument("--features", metavar="DIR", help="with --run: folder of {split}_ims.npy (and global embeddings)")
    p.add_argument("--captions", metavar="DIR", help="with --run: folder of {split}_caps.txt (default: --features)")
    p.add_argument("--device", default="auto", help="with --run: auto, cpu, cuda, ... (default: auto)")
    p.add_argument("--view", default="fused", choices=("fused", "local"),
                   help="with --run: score with the model's fused embedding (default) or its local view alone "
                        "(l2n(v_loc): what the model ranks without the global branch, no retraining)")
    p.add_argument("--protocol", nargs="+", default=["auto"], choices=PROTOCOL_CHOICES,
                   metavar="P", help=f"one or more of {', '.join(PROTOCOL_CHOICES)} (default: auto)")
    p.add_argument("--positives", metavar="DIR",
                   help="dataset folder holding {split}_positives.npz (extended positives)")
    p.add_argument("--split", metavar="NAME", help="split of --positives / --zeroshot (e.g. test)")
    p.add_argument("--image-ids", metavar="FILE",
                   help="COCO image id per row (.npy or one per line) for the eccv protocol")
    p.add_argument("--caption-ids", metavar="FILE",
                   help="COCO caption id per column (.npy or one per line) for the eccv protocol")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: metrics.json and ranks.npz")
    p.add_argument("--save-sims", action="store_true", help="also write the whole matrix to --out/sims.npy")


def _load_sims(path: Path):
    import numpy as np

    from aahr.evaluation import EvaluationError

    if not path.is_file():
        raise EvaluationError(f"{path}: file not found")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise EvaluationError(f"{path}: not a readable .npy array ({exc})") from None
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise EvaluationError(f"{path}: expected a single .npy array, found an .npz archive")
    return arr


def _load_ids(path: Path, what: str):
    import numpy as np

    from aahr.evaluation import EvaluationError

    if not path.is_file():
        raise EvaluationError(f"{path}: {what} ids file not found")
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise EvaluationError(f"{path}: not a readable .npy array ({exc})") from None
    ids = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            ids.append(int(line.strip()))
        except ValueError:
            raise EvaluationError(f"{path}, line {n}: not an integer {what} id: {line!r}") from None
    return np.array(ids, np.int64)


def _load_positives(folder: Path, split: str, sims_shape: tuple[int, int]):
    import numpy as np

    from aahr.data import load_positives, positive_lists
    from aahr.evaluation import EvaluationError

    indptr, indices = load_positives(folder, split)
    n_img, n_cap = sims_shape
    where = folder / f"{split}_positives.npz"
    if indptr.ndim != 1 or len(indptr) != n_cap + 1:
        raise EvaluationError(f"{where}: positives for {len(indptr) - 1} captions, sims has {n_cap}")
    if indptr[0] != 0 or (np.diff(indptr) < 0).any() or indptr[-1] != len(indices):
        raise EvaluationError(f"{where}: malformed CSR (indptr must rise from 0 to len(indices))")
    if len(indices) and (indices.min() < 0 or indices.max() >= n_img):
        raise EvaluationError(f"{where}: image rows outside [0, {n_img}) (sims has {n_img} images)")
    t2i, i2t = positive_lists(indptr, indices, n_img)
    return i2t, t2i


def evaluate_and_write(sims, out: Path, protocols=("auto",), save_sims: bool = False, provenance: dict | None = None,
                       evaluated: dict | None = None, **inputs) -> dict:
    """Compute every protocol on ``sims`` (see aahr.evaluation.evaluate_protocols), then write
    ``out/ranks.npz``, ``out/metrics.json`` (with ``evaluated``, what was scored: split and view, and
    ``provenance``, aahr.provenance) and ``out/sims.npy`` with ``save_sims``, atomically. Nothing is
    written if anything fails."""
    from aahr.evaluation import evaluate_protocols, ranked_results
    from aahr.io import save_npy, save_npz, write_json

    metrics = evaluate_protocols(sims, protocols, **inputs)
    ranked = ranked_results(sims)
    if save_sims:
        save_npy(Path(out) / "sims.npy", sims)
    save_npz(Path(out) / "ranks.npz", **ranked)
    write_json(Path(out) / "metrics.json", {**metrics, "evaluated": evaluated or {}, "provenance": provenance})
    return metrics


def _summary(metrics: dict) -> list[str]:
    lines = []
    for prefix in ("1k", "5k", "full", "5fold"):
        if f"{prefix}_rsum" in metrics:
            m = {k[len(prefix) + 1:]: v for k, v in metrics.items() if k.startswith(prefix + "_")}
            lines.append(f"  {prefix:6s} i2t R@1/5/10 {m['i2t_r1']:5.1f} {m['i2t_r5']:5.1f} "
                         f"{m['i2t_r10']:5.1f}  t2i {m['t2i_r1']:5.1f} {m['t2i_r5']:5.1f} "
                         f"{m['t2i_r10']:5.1f}  rsum {m['rsum']:6.1f}")
    for prefix in ("ext", "eccv"):
        if f"{prefix}_i2t_map_at_r" in metrics:
            m = {k[len(prefix) + 1:]: v for k, v in metrics.items() if k.startswith(prefix + "_")}
            lines.append(f"  {prefix:6s} mAP@R i2t {m['i2t_map_at_r']:5.1f} t2i {m['t2i_map_at_r']:5.1f}"
                         f"  R-P i2t {m['i2t_r_precision']:5.1f} t2i {m['t2i_r_precision']:5.1f}"
                         f"  R@1 i2t {m['i2t_r1']:5.1f} t2i {m['t2i_r1']:5.1f}")
    return lines


def model_sims(run_dir: Path, features: Path, captions: Path, split: str, device: str = "auto", view: str = "fused"):
    """(N, 5N) similarities of a trained model (its best.pt) on one split: one matrix product of the
    independently embedded images and captions (spec §2.6); ``view`` as aahr.inference.encode_split."""
    from aahr.features.common import pick_device
    from aahr.inference import encode_split, load_trained
    from aahr.splits import load_split

    dev = pick_device(device)
    model, tokenizer, ckpt = load_trained(run_dir / "best.pt", dev)
    data = load_split(features, captions, split, with_global=model.uses_global)
    img, txt = encode_split(model, data, tokenizer, dev, ckpt["fingerprint"]["train"]["eval_batch_size"], view=view)
    return img @ txt.T


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from aahr.evaluation import EvaluationError, check_sims

    if (args.positives is not None or args.zeroshot is not None or args.run is not None) and args.split is None:
        raise EvaluationError("--positives, --zeroshot and --run need --split")
    if args.run is not None and args.features is None:
        raise EvaluationError("--run needs --features (the folder of {split}_ims.npy)")
    if args.view != "fused" and args.run is None:
        raise EvaluationError("--view local needs --run (a trained model's local view)")
    if (args.image_ids is None) != (args.caption_ids is None):
        raise EvaluationError("--image-ids and --caption-ids go together")
    if args.zeroshot is not None:
        from aahr.features.store import load_global

        img, txt = load_global(args.zeroshot, args.split)  # (N, Dg), (5N, Dg)
        source = f"zero-shot global branch, {args.zeroshot} {args.split}"
        sims = check_sims(np.asarray(img, np.float32) @ np.asarray(txt, np.float32).T, name=source)
    elif args.run is not None:
        source = f"model {Path(args.run) / 'best.pt'}, {args.features} {args.split}"
        sims = check_sims(model_sims(Path(args.run), Path(args.features), Path(args.captions or args.features),
                                     args.split, args.device, args.view), name=source)
    else:
        source = str(args.sims)
        sims = check_sims(_load_sims(Path(args.sims)), name=source)
    inputs = {}
    if args.positives is not None:
        inputs["positives"] = _load_positives(Path(args.positives), args.split, sims.shape)
    if args.image_ids is not None:
        inputs["image_ids"] = _load_ids(Path(args.image_ids), "image")
        inputs["caption_ids"] = _load_ids(Path(args.caption_ids), "caption")
    from aahr.provenance import provenance_of_file

    evaluated = {"split": args.split or "", "view": ("zero-shot" if args.zeroshot is not None
                                                     else args.view if args.run is not None else "given")}
    metrics = evaluate_and_write(sims, Path(args.out), args.protocol, args.save_sims,
                                 provenance_of_file(args.params), evaluated, **inputs)
    print(f"evaluated {sims.shape[0]} images x {sims.shape[1]} captions ({source}):")
    for line in _summary(metrics):
        print(line)
    print(f"{len(metrics)} metrics written to {Path(args.out) / 'metrics.json'}")
    return 0
