"""aahr compare: two runs on the same split, query by query (which queries does each get right?).

    aahr compare aahr no_proto --out compare.png --json compare.json
    aahr compare data/synth/runs/aahr/seed0 data/synth/runs/no_proto/seed0

RUN_A / RUN_B: a run folder (holding best.pt) or a variant of params.yaml (its run for --seed). Both
galleries come from the cache beside each model (aahr search embeds them the same way). Per query,
the 0-based rank of the first ground-truth item (aahr.evaluation.retrieval_ranks: ties broken
against the query; i2t: the best of the image's 5 captions, t2i: the caption's image). Prints how
many queries each run wins, the mean / median rank change (B - A) and the largest differences;
``--out`` draws the largest text-to-image differences (the caption, then each run's top images),
``--json`` writes every query's ranks.
"""

from __future__ import annotations

import argparse

from aahr.commands.search import add_location_arguments

HELP = "Compare two runs query by query: per-query ranks, who wins, the largest differences."


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_a", metavar="RUN_A", help="run folder (with best.pt) or variant name")
    p.add_argument("run_b", metavar="RUN_B", help="run folder (with best.pt) or variant name")
    add_location_arguments(p)
    p.add_argument("--show", type=int, default=5, help="largest differences to list per direction (default: 5)")
    p.add_argument("--top", type=int, default=3, help="--out: each run's top images per query (default: 3)")
    p.add_argument("--rows", type=int, default=4, help="--out: queries drawn (default: 4)")
    p.add_argument("--out", default=None, help="PNG of the largest text-to-image differences")
    p.add_argument("--json", default=None, help="JSON file of the per-query ranks and the summary")


def _label(name: str) -> str:
    """A short name for a run: the variant name given, or the run folder's (``.../aahr/seed0`` -> aahr)."""
    from pathlib import Path

    p = Path(name)
    if not p.exists():
        return name
    if p.is_file():
        p = p.parent
    p = p.resolve()
    return p.parent.name if p.name.startswith("seed") else p.name


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aahr.commands.search import data_folders, resolve_run, setup
    from aahr.search import SearchError, compare, comparison_json, load_gallery

    for flag in ("show", "top", "rows"):
        if getattr(args, flag) < 1:
            raise SearchError(f"--{flag} {getattr(args, flag)}: must be at least 1")
    need = not (Path(args.run_a).exists() and Path(args.run_b).exists())
    where = data_folders(args, need_params=need)
    runs = [resolve_run(n, where.params, args) for n in (args.run_a, args.run_b)]
    device = setup(args)
    galleries = []
    for name, path in zip((args.run_a, args.run_b), runs):
        g = load_gallery(path, where.features, where.raw, args.split, device, rebuild=args.rebuild)
        print(f"{name}: {g.checkpoint} ({'embedded, cached in' if g.embedded else 'read from'} {g.cache})")
        galleries.append(g)
    a, b = galleries
    labels = (_label(args.run_a), _label(args.run_b))
    if labels[0] == labels[1]:
        labels = ("A", "B")
    c = compare(a, b, *labels)
    _print(c, a, args.show)
    if args.json:
        from aahr.io import write_json

        write_json(args.json, comparison_json(c, a, b))
        print(f"wrote {args.json}")
    if args.out:
        _draw(c, a, b, args)
        print(f"wrote {args.out}")
    return 0


def _print(c, g, show: int) -> None:
    s = c.summary()
    print(f"\n{c.split} split, {g.n_images} images, {len(g.captions)} captions. A = {c.label_a}, B = {c.label_b}; "
          "rank 1 = the ground truth first (ties against the query)")
    print(f"{'':15s} {'queries':>7} {'A better':>8} {'B better':>8} {'same':>6} {'R@1 A':>6} {'R@1 B':>6} "
          f"{'mean rank A':>11} {'mean rank B':>11} {'mean B-A':>8} {'median B-A':>10}")
    for d, name in (("i2t", "image-to-text"), ("t2i", "text-to-image")):
        x = s[d]
        print(f"{name:15s} {x['queries']:>7} {x['a_wins']:>8} {x['b_wins']:>8} {x['ties']:>6} {x['a_r1']:>6.1f} "
              f"{x['b_r1']:>6.1f} {x['a_mean_rank'] + 1:>11.2f} {x['b_mean_rank'] + 1:>11.2f} "
              f"{x['mean_change']:>+8.2f} {x['median_change']:>+10.1f}")
    print("\nlargest differences by rank ratio (1 vs 20 before 1000 vs 2000)")
    print(f"text-to-image (rank of the caption's image under {c.label_a} / {c.label_b}):")
    for j in c.largest("t2i", show):
        print(f"  caption {j:>6} (image {int(g.ids[j // 5])}): {c.t2i_a[j] + 1:>5} / {c.t2i_b[j] + 1:<5} "
              f'"{g.captions[j]}"')
    print(f"image-to-text (rank of the image's best own caption under {c.label_a} / "
          f"{c.label_b}):")
    for i in c.largest("i2t", show):
        print(f"  image {int(g.ids[i]):>9}: {c.i2t_a[i] + 1:>5} / {c.i2t_b[i] + 1:<5} "
              f'(its captions: "{g.captions[5 * i]}", ...)')


def _draw(c, a, b, args) -> None:
    from aahr.inspect_figures import Cell, Row, draw_rows
    from aahr.search import search_text

    rows = []
    for j in c.largest("t2i", args.rows):
        cells = []
        for tag, g in (("A", a), ("B", b)):
            hits = search_text(g, g.txt[j], args.top, [int(j)])
            cells += [Cell(g.image_file(h.row), f"{tag}{h.rank}: {h.score:.2f}", h.mark) for h in hits]
            cells += [None] * (args.top - len(hits))
            if tag == "A":
                cells.append(None)                                # a gap between the two runs
        rows.append(Row(f'"{a.captions[j]}": its image at rank {c.t2i_a[j] + 1} under A = {c.label_a} (left), '
                        f"{c.t2i_b[j] + 1} under B = {c.label_b} (right)", cells))
    if not rows:
        from aahr.search import SearchError

        raise SearchError(f"{c.label_a} and {c.label_b} rank every text-to-image query the same: nothing to draw")
    draw_rows(rows, args.out, n_cols=2 * args.top + 1)
