"""aahr search: query a trained model's gallery by caption or by image id, and see what it gets wrong.

    aahr search --dataset synth --variant aahr --text "a small red disk to the left of a blue square" \\
        --top 5 --out grid.png
    aahr search --run data/synth/runs/aahr/seed0 --image 4000123

The run is ``--run DIR`` (a folder holding ``best.pt`` from aahr train, or the checkpoint file) or
``--dataset/--variant/--seed`` resolved through params.yaml (aahr.paths.run_dir). The split's gallery
(``--split``, default test) is embedded once and cached beside the model (``gallery_{split}.npz``,
re-embedded when the checkpoint or the features change); later queries cost one matrix-vector
product. Every result is marked: true positive (the labelled pair), extended positive (synth: a
correct match the labels miss), error; a caption that is not in the gallery has no ground truth
(unlabelled). A new caption goes through the model's text encoder and, for models with the global
branch, the saved dual encoder ({data_root}/{dataset}/models/global_dual_encoder.pt).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

HELP = "Query a trained model by caption or image id: top results marked true/extended positive or error."


def add_location_arguments(p: argparse.ArgumentParser) -> None:
    """Where runs and their data are (shared with aahr compare)."""
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--dataset", default="synth", choices=("synth", "f30k", "coco"), help="dataset (default: synth)")
    p.add_argument("--seed", type=int, default=None, help="run seed (default: the first of seeds in params)")
    p.add_argument("--split", default="test", help="gallery split (default: test)")
    p.add_argument("--features", default=None, help="precomp folder (default: {data_root}/{dataset}/precomp)")
    p.add_argument("--raw", default=None,
                   help="folder with {split}_ids.txt, {split}_caps.txt, positives, images "
                        "(default: {data_root}/{dataset}/raw)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ... for embedding (default: auto)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--rebuild", action="store_true", help="embed the gallery again even if the cache is current")


def configure(p: argparse.ArgumentParser) -> None:
    add_location_arguments(p)
    p.add_argument("--run", default=None, help="run folder holding best.pt (or a checkpoint file); "
                                               "default: the --variant run of params.yaml")
    p.add_argument("--variant", default="aahr", help="variant whose run to use when --run is not given (default: aahr)")
    p.add_argument("--global-encoder", default=None,
                   help="saved global dual encoder for new captions "
                        "(default: {features}/../models/global_dual_encoder.pt)")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--text", help="a caption: the top images")
    q.add_argument("--image", help="an image id of {split}_ids.txt: the top captions")
    p.add_argument("--top", type=int, default=5, help="results to show (default: 5)")
    p.add_argument("--out", default=None, help="PNG of the results (the query and its top images / captions)")
    p.add_argument("--allow-unknown", action="store_true", help="read words outside the vocabulary as <unk>")


@dataclass
class Where:
    features: Path
    raw: Path
    params: dict | None


def data_folders(args: argparse.Namespace, need_params: bool = False) -> Where:
    """--features / --raw, else from params.yaml (read only when needed: a variant name to resolve,
    or a folder not given)."""
    from aahr import paths

    params = None
    if need_params or args.features is None or args.raw is None:
        params = load(args.params)
    features = Path(args.features) if args.features else paths.features_dir(params, args.dataset)
    raw = Path(args.raw) if args.raw else paths.raw_dir(params, args.dataset)
    return Where(features, raw, params)


def load(path: str) -> dict:
    from aahr.config import load_params
    from aahr.search import SearchError

    if not Path(path).is_file():
        raise SearchError(f"{path}: params file not found (it locates the runs and their data; "
                          "or pass --run DIR --features DIR --raw DIR)")
    return load_params(path)


def resolve_run(name: str, params: dict | None, args: argparse.Namespace) -> Path:
    """An existing run folder / checkpoint file, or a variant of params.yaml (its run for --seed,
    aahr.paths.run_dir)."""
    from aahr import paths
    from aahr.search import SearchError

    path = Path(name)
    if path.exists():
        return path
    if params is not None and name in params["variants"]:
        seed = args.seed if args.seed is not None else params["seeds"][0]
        return paths.run_dir(params, args.dataset, name, seed)
    if params is not None and "/" not in name and not name.endswith(".pt"):
        raise SearchError(f"{name}: neither a run folder nor a variant of {args.params} "
                          f"({', '.join(params['variants'])})")
    return path                                            # search.checkpoint_of says what is missing


def setup(args: argparse.Namespace) -> str:
    """Apply --threads; the device name is resolved only if something is embedded (torch is not
    imported for an image query on a cached gallery)."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return args.device


def run(args: argparse.Namespace) -> int:
    import time

    from aahr import paths
    from aahr.search import Searcher, SearchError

    if args.top < 1:
        raise SearchError(f"--top {args.top}: show at least one result")
    where = data_folders(args, need_params=args.run is None)
    if args.run is not None:
        run_path = Path(args.run)
    elif args.variant in where.params["variants"]:
        seed = args.seed if args.seed is not None else where.params["seeds"][0]
        run_path = paths.run_dir(where.params, args.dataset, args.variant, seed)
    else:
        raise SearchError(f"--variant {args.variant}: not a variant of {args.params} "
                          f"({', '.join(where.params['variants'])})")
    device = setup(args)
    t0 = time.perf_counter()
    s = Searcher(run_path, where.features, where.raw, args.split,
                 args.global_encoder or where.features.parent / "models" / "global_dual_encoder.pt",
                 device, rebuild=args.rebuild)
    g = s.gallery
    how = (f"embedded in {time.perf_counter() - t0:.1f} s, cached in {g.cache}" if g.embedded
           else f"read from {g.cache}")
    print(f"{g.checkpoint}: {args.split} gallery of {g.n_images} images, {len(g.captions)} captions ({how})")
    if args.text is not None:
        return _text(s, args)
    return _image(s, args)


def _text(s, args) -> int:
    import time

    from aahr.search import search_text

    g = s.gallery
    encoder = s.encoder                                     # model (and global encoder) loaded once
    t0 = time.perf_counter()
    query = encoder(args.text, args.allow_unknown)          # (E,)
    truth = g.caption_rows(args.text)
    hits = search_text(g, query, args.top, truth)
    ms = 1000 * (time.perf_counter() - t0)
    if truth:
        owners = sorted({int(g.ids[j // 5]) for j in truth})
        note = f"a gallery caption of image{'s' * (len(owners) > 1)} {', '.join(map(str, owners[:5]))}"
    else:
        note = "not a gallery caption: no ground truth, results unlabelled"
    print(f'text -> image: "{args.text}" ({note}); answered in {ms:.1f} ms')
    print(f"{'#':>4}  {'score':>7}  {'image id':>9}  mark")
    for h in hits:
        print(f"{h.rank:>4}  {h.score:7.4f}  {h.image_id:>9}  {h.mark}")
    if args.out:
        from aahr.inspect_figures import Cell, Row, draw_rows

        draw_rows([Row(f'query: "{args.text}"', [Cell(g.image_file(h.row), f"{h.rank}: {h.score:.2f}", h.mark)
                                                 for h in hits])], args.out, n_cols=args.top)
        print(f"wrote {args.out}")
    return 0


def _image(s, args) -> int:
    import time

    g = s.gallery
    t0 = time.perf_counter()
    hits = s.image(args.image, args.top)
    ms = 1000 * (time.perf_counter() - t0)
    row = g.row_of(args.image)
    print(f"image -> text: image {int(g.ids[row])} (row {row}); answered in {ms:.1f} ms")
    print(f"{'#':>4}  {'score':>7}  {'of image':>9}  {'mark':17s}  caption")
    for h in hits:
        print(f"{h.rank:>4}  {h.score:7.4f}  {h.image_id:>9}  {h.mark:17s}  {h.caption}")
    if args.out:
        from aahr.inspect_figures import draw_captions

        draw_captions(f"query: image {int(g.ids[row])}", g.image_file(row),
                      [(f"{h.rank}. ({h.score:.2f}) {h.caption}", h.mark) for h in hits], args.out)
        print(f"wrote {args.out}")
    return 0
