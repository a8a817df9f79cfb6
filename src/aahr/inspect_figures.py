"""Pictures of retrieval results (PNG, matplotlib's Agg backend) for ``aahr search`` / ``aahr
compare`` and the figure stage's qualitative grid.

- :func:`draw_rows`: rows of retrieved images under a title line each (the query); every image has a
  border coloured by its mark (green true positive, orange extended positive, red error, grey
  unlabelled) and a label under it. Pixel-exact size: :func:`grid_size`.
- :func:`draw_captions`: an image query and its retrieved captions, coloured the same way.
- :func:`qualitative_grid`: text -> image queries and their top images (the figure stage).
"""

from __future__ import annotations

import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from aahr.data import CAPTIONS_PER_IMAGE
from aahr.search import (ERROR, EXTENDED, MARKS, TRUE, UNLABELLED, load_gallery, pick_queries, search_text,
                         text_rank)

DPI = 100
CELL_PX = 160        # one image cell (square), label included
TITLE_PX = 40        # the query line(s) above each row
LEGEND_PX = 30       # the colour legend at the bottom
LABEL_PX = 18        # the label under each image, inside the cell
LINE_PX = 20         # one caption line in draw_captions
COLOURS = {TRUE: "#2ca02c", EXTENDED: "#ff7f0e", ERROR: "#d62728", UNLABELLED: "#7f7f7f"}


@dataclass
class Cell:
    image: Path          # picture file
    label: str           # text under it (e.g. "1: 0.83")
    mark: str            # one of aahr.search.MARKS: the border colour


@dataclass
class Row:
    title: str
    cells: list[Cell | None]   # None leaves a cell empty (a gap between groups)


def grid_size(n_rows: int, n_cols: int) -> tuple[int, int]:
    """(width, height) in pixels of :func:`draw_rows`' picture."""
    return n_cols * CELL_PX, n_rows * (TITLE_PX + CELL_PX) + LEGEND_PX


def _read(path: Path) -> np.ndarray:
    from aahr.features.images import open_rgb

    return np.asarray(open_rgb(Path(path)))


def _legend(fig, marks, width: int, height: int) -> None:
    handles = [Patch(facecolor="white", edgecolor=COLOURS[m], linewidth=2.5, label=m) for m in MARKS if m in marks]
    if handles:
        fig.legend(handles=handles, loc="center", bbox_to_anchor=(0.5, LEGEND_PX / 2 / height),
                   ncol=len(handles), fontsize=8, frameon=False, handlelength=1.2)


def _save(fig, out_png: str | Path) -> None:
    from aahr.io import atomic_path

    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    plt.close(fig)


def draw_rows(rows: list[Row], out_png: str | Path, n_cols: int | None = None) -> None:
    """One row per query: its title, then its cells left to right (``n_cols`` wide, default the
    longest row). The picture is exactly :func:`grid_size` (len(rows), n_cols) pixels."""
    n_cols = max(1, n_cols or max((len(r.cells) for r in rows), default=1))
    width, height = grid_size(len(rows), n_cols)
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    chars = max(20, int(width / 6.2))                                 # ~6 px per character at 8.5 pt
    pad = 8
    side = CELL_PX - LABEL_PX - 2 * pad                               # the image's side in pixels
    marks = set()
    for i, row in enumerate(rows):
        top = height - i * (TITLE_PX + CELL_PX)                       # this row's top edge (pixels from the bottom)
        lines = textwrap.wrap(row.title, chars)
        text = "\n".join(lines[:2]) + (" ..." if len(lines) > 2 else "")
        fig.text(4 / width, (top - TITLE_PX / 2) / height, text, ha="left", va="center", fontsize=8.5)
        for c, cell in enumerate(row.cells[:n_cols]):
            if cell is None:
                continue
            left = c * CELL_PX + (CELL_PX - side) / 2
            bottom = top - TITLE_PX - pad - side
            ax = fig.add_axes((left / width, bottom / height, side / width, side / height))
            ax.imshow(_read(cell.image), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor(COLOURS[cell.mark])
                spine.set_linewidth(4)
            fig.text((c + 0.5) * CELL_PX / width, (top - TITLE_PX - CELL_PX + LABEL_PX / 2 + 2) / height,
                     cell.label, ha="center", va="center", fontsize=8, color=COLOURS[cell.mark])
            marks.add(cell.mark)
    _legend(fig, marks, width, height)
    _save(fig, out_png)


def captions_size(n_captions: int, chars: int = 100) -> tuple[int, int]:
    """(width, height) in pixels of :func:`draw_captions`' picture."""
    return CELL_PX + int(chars * 6.2) + 16, max(CELL_PX, TITLE_PX + n_captions * LINE_PX) + TITLE_PX + LEGEND_PX


def draw_captions(title: str, image: Path, lines: list[tuple[str, str]], out_png: str | Path,
                  chars: int = 100) -> None:
    """An image query (left) and its retrieved captions (right), each line coloured by its mark.
    ``lines``: (text, mark) pairs, best first."""
    width, height = captions_size(len(lines), chars)
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    fig.text(4 / width, 1 - TITLE_PX / 2 / height, title, ha="left", va="center", fontsize=9)
    side = CELL_PX - 16
    ax = fig.add_axes((8 / width, (height - TITLE_PX - 8 - side) / height, side / width, side / height))
    ax.imshow(_read(image), interpolation="nearest")
    ax.set_axis_off()
    for k, (text, mark) in enumerate(lines):
        y = height - TITLE_PX - (k + 0.5) * LINE_PX
        fig.text((CELL_PX + 8) / width, y / height, textwrap.shorten(text, chars, placeholder=" ..."),
                 ha="left", va="center", fontsize=8.5, color=COLOURS[mark])
    _legend(fig, {m for _, m in lines}, width, height)
    _save(fig, out_png)


def qualitative_grid(run_dir, features_dir, raw_dir, out_png, split: str = "test", n_queries: int = 4,
                     top: int = 5, seed: int = 0, *, device="cpu", cache: bool = True) -> list[dict]:
    """Text -> image queries (gallery captions of distinct images, chosen by ``seed``) and their top
    ``top`` images, one row per query, each image's border green (true positive), orange (extended
    positive) or red (error); the PNG goes to ``out_png`` atomically. The gallery embeddings are
    cached in ``{run_dir}/gallery_{split}.npz`` unless ``cache`` is False. Returns per query: caption row, caption, its image
    id, the 0-based rank of that image and the hits (dicts of :class:`Hit`)."""
    gallery = load_gallery(run_dir, features_dir, raw_dir, split, device, cache=cache)
    queries, rows = [], []
    for j in pick_queries(gallery, n_queries, seed):
        j = int(j)
        hits = search_text(gallery, gallery.txt[j], top, [j])
        rank = text_rank(gallery, j)
        queries.append({"caption_row": j, "caption": gallery.captions[j],
                        "image_id": int(gallery.ids[j // CAPTIONS_PER_IMAGE]), "rank": rank,
                        "hits": [asdict(h) for h in hits]})
        rows.append(Row(f'"{gallery.captions[j]}"  (its image: rank {rank + 1})',
                        [Cell(gallery.image_file(h.row), f"{h.rank}: {h.score:.2f}", h.mark) for h in hits]))
    draw_rows(rows, out_png, n_cols=top)
    return queries
