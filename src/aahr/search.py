"""Use a trained model: embed a split's gallery once, answer text and image queries, mark what is
right and wrong, and compare two runs query by query.

- :func:`load_gallery`: the split's image embeddings v (N, E) and caption embeddings t (5N, E) from a
  run's ``best.pt`` (aahr.training.loop.encode_split), cached beside the checkpoint in
  ``gallery_{split}.npz`` with a fingerprint of the checkpoint and of the feature and caption files
  (resolved path, size, mtime): a retrained model or re-extracted features re-embed, otherwise a
  query costs one matrix-vector product.
- :class:`QueryEncoder`: a NEW caption -> t (E,) through the model's text encoder. A model with the
  global branch also needs the caption's frozen global embedding; on synth the saved dual encoder
  (``{data_root}/synth/models/global_dual_encoder.pt``) computes it, after checking that it
  reproduces the cached ``{split}_global_txt.npy``. Words outside a vocabulary are named.
- :func:`search_text` / :func:`search_image`: the top results, each marked ``true positive`` (the
  labelled pair), ``extended positive`` (synth ``{split}_positives.npz``: a correct match the labels
  miss), ``error``, or ``unlabelled`` (a new caption that is no gallery caption has no ground truth).
- :func:`compare`: per query, the 0-based rank of the first ground-truth item under two runs
  (aahr.evaluation.retrieval_ranks), with a summary and the largest differences.

Tie rule, as in aahr.evaluation: ties are broken against the query. A rank counts every
non-matching item scoring >= the true one, and in a result list a tied wrong item comes first.
"""

from __future__ import annotations

import json
import sys
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from aahr.data import CAPTIONS_PER_IMAGE, load_positives, read_captions, read_ids
from aahr.errors import AahrError

BEST = "best.pt"
DUAL_ENCODER = "global_dual_encoder.pt"
CACHE_VERSION = 1
TRUE, EXTENDED, ERROR, UNLABELLED = "true positive", "extended positive", "error", "unlabelled"
MARKS = (TRUE, EXTENDED, ERROR, UNLABELLED)   # marks are stored as indices into this tuple
GLOBAL_CHECK_CAPTIONS = 8                     # gallery captions re-embedded to check the global encoder
GLOBAL_CHECK_TOLERANCE = 1e-4


class SearchError(AahrError):
    """A run, a query or an id cannot be used; the message names the problem and the file."""


class UnknownWordsError(SearchError):
    """The query holds words outside a vocabulary of the model; ``words`` lists them."""

    def __init__(self, message: str, words: list[str]):
        super().__init__(message)
        self.words = words


# ------------------------------------------------------------------------------------- the gallery


def checkpoint_of(run: str | Path) -> Path:
    """The trained model of a run: ``{run}/best.pt``, or ``run`` itself when it is a checkpoint file."""
    run = Path(run)
    if run.is_file():
        return run
    if not run.is_dir():
        raise SearchError(f"{run}: run folder not found (`aahr train --out {run}` creates it)")
    ckpt = run / BEST
    if not ckpt.is_file():
        raise SearchError(f"{ckpt}: file not found: {run} holds no trained model (aahr train writes {BEST})")
    return ckpt


def captions_folder(features: Path, raw: Path, split: str) -> Path:
    """Where ``{split}_caps.txt`` is: the features folder if it holds one (SCAN / HREM layout), else raw."""
    return features if (features / f"{split}_caps.txt").is_file() else raw


def gallery_fingerprint(checkpoint: Path, features: Path, captions: Path, split: str) -> str:
    """What the cached embeddings depend on: the checkpoint and the split's input files (resolved
    path, size, mtime in ns; a file that is absent is recorded as absent)."""
    from aahr.features import store

    files = {"checkpoint": checkpoint, "regions": store.ims_path(features, split),
             "global_img": store.global_img_path(features, split),
             "global_txt": store.global_txt_path(features, split),
             "captions": captions / f"{split}_caps.txt"}
    out = {"version": CACHE_VERSION, "split": split}
    for role, path in files.items():
        st = path.stat() if path.is_file() else None
        out[role] = [str(path.resolve()), st.st_size, st.st_mtime_ns] if st else None
    return json.dumps(out, sort_keys=True)


def _read_cache(path: Path, fingerprint: str) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["fingerprint"]) != fingerprint:
                return None
            return z["img"], z["txt"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # unreadable: embed again
        return None


def _write_cache(path: Path, fingerprint: str, img: np.ndarray, txt: np.ndarray) -> None:
    from aahr.io import atomic_path

    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, img=img, txt=txt, fingerprint=np.array(fingerprint))
    except OSError as exc:  # a read-only run folder: search still works, it just re-embeds next time
        print(f"warning: cannot cache the gallery embeddings in {path} ({exc})", file=sys.stderr)


def _device(device):
    """A torch.device from a name ("auto": cuda when available) or a device."""
    from aahr.features.common import pick_device

    return pick_device(device) if isinstance(device, str) else device


def embed_gallery(checkpoint: Path, features: Path, captions: Path, split: str, device="cpu",
                  batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(N x E image embeddings v, 5N x E caption embeddings t) of a split, in eval mode."""
    from aahr.inference import encode_split, load_trained
    from aahr.splits import load_split

    device = _device(device)
    model, tokenizer, _ = load_trained(checkpoint, device)
    data = load_split(features, captions, split, model.uses_global)
    return encode_split(model, data, tokenizer, device, batch_size)


@dataclass
class Gallery:
    """One split as a trained model sees it. Caption j describes image row j // 5."""

    img: np.ndarray               # (N, E) image embeddings v, L2-normalised
    txt: np.ndarray               # (5N, E) caption embeddings t, L2-normalised
    captions: list[str]           # (5N,)
    ids: np.ndarray               # (N,) image ids, in row order ({raw}/{split}_ids.txt)
    split: str
    checkpoint: Path
    features: Path
    raw: Path
    cache: Path
    embedded: bool                # True: embedded by this call; False: read from the cache
    positives: tuple[np.ndarray, np.ndarray] | None = None  # CSR caption -> images (synth), or None

    @property
    def n_images(self) -> int:
        return len(self.ids)

    @cached_property
    def _row_of_id(self) -> dict[int, int]:
        return {int(i): r for r, i in enumerate(self.ids)}

    def row_of(self, image_id: int | str) -> int:
        """The gallery row of an image id; SearchError naming the ids file when it is not there."""
        ids_file = self.raw / f"{self.split}_ids.txt"
        try:
            key = int(str(image_id).strip())
        except ValueError:
            raise SearchError(f"image id {image_id!r} is not an integer (ids are listed in {ids_file})") from None
        if key not in self._row_of_id:
            raise SearchError(f"image id {key} is not in {ids_file} ({self.n_images} images, ids "
                              f"{int(self.ids.min())} .. {int(self.ids.max())})")
        return self._row_of_id[key]

    @cached_property
    def _caption_rows(self) -> dict[str, list[int]]:
        from aahr.text import tokenize

        index: dict[str, list[int]] = {}
        for j, c in enumerate(self.captions):
            index.setdefault(" ".join(tokenize(c)), []).append(j)
        return index

    def caption_rows(self, text: str) -> list[int]:
        """The gallery captions with the same words as ``text`` (case and punctuation ignored)."""
        from aahr.text import tokenize

        return list(self._caption_rows.get(" ".join(tokenize(text)), []))

    @cached_property
    def _caption_of_positive(self) -> np.ndarray:
        indptr, _ = self.positives
        return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))

    def text_marks(self, caption_rows) -> np.ndarray:
        """(N,) mark of every image for a query whose ground truth is the gallery captions
        ``caption_rows``: their images are true positives, their extended positives extended;
        an empty list (a new caption) leaves every image unlabelled."""
        rows = np.asarray(list(caption_rows), np.int64)
        if rows.size == 0:
            return np.full(self.n_images, MARKS.index(UNLABELLED), np.int8)
        marks = np.full(self.n_images, MARKS.index(ERROR), np.int8)
        if self.positives is not None:
            indptr, indices = self.positives
            for j in rows:
                marks[indices[indptr[j]:indptr[j + 1]]] = MARKS.index(EXTENDED)
        marks[rows // CAPTIONS_PER_IMAGE] = MARKS.index(TRUE)
        return marks

    def image_marks(self, row: int) -> np.ndarray:
        """(5N,) mark of every caption for image ``row`` as the query: its own 5 captions are true
        positives, captions that ``{split}_positives.npz`` says it satisfies are extended."""
        marks = np.full(len(self.captions), MARKS.index(ERROR), np.int8)
        if self.positives is not None:
            marks[self._caption_of_positive[self.positives[1] == row]] = MARKS.index(EXTENDED)
        marks[row * CAPTIONS_PER_IMAGE:(row + 1) * CAPTIONS_PER_IMAGE] = MARKS.index(TRUE)
        return marks

    def image_file(self, row: int) -> Path:
        """The picture of image ``row``: through ``{raw}/id_mapping.json`` where there is one (real
        datasets), else synth's ``{raw}/images/{id:07d}.png``."""
        return self._image_files[row]

    @cached_property
    def _image_files(self) -> list[Path]:
        if (self.raw / "id_mapping.json").is_file():
            from aahr.features.images import image_files

            return image_files(self.raw, self.split)
        return [self.raw / "images" / f"{int(i):07d}.png" for i in self.ids]


def load_gallery(run: str | Path, features: str | Path, raw: str | Path, split: str = "test",
                 device="cpu", batch_size: int = 256, rebuild: bool = False, cache: bool = True) -> Gallery:
    """The split's gallery embeddings under the run's ``best.pt``: read from the cache beside it when
    its fingerprint matches, else embedded (once) and cached atomically. ``cache=False``: embed, and
    neither read nor write the cache (a pipeline stage must not write into another stage's outputs)."""
    checkpoint = checkpoint_of(run)
    features, raw = Path(features), Path(raw)
    caps_dir = captions_folder(features, raw, split)
    ids = read_ids(raw, split)
    captions = read_captions(caps_dir, split, len(ids))
    fingerprint = gallery_fingerprint(checkpoint, features, caps_dir, split)
    cache_file = checkpoint.parent / f"gallery_{split}.npz"
    arrays = None if rebuild or not cache else _read_cache(cache_file, fingerprint)
    embedded = arrays is None
    if embedded:
        arrays = embed_gallery(checkpoint, features, caps_dir, split, device, batch_size)
        if cache:
            _write_cache(cache_file, fingerprint, *arrays)
    img, txt = (np.ascontiguousarray(a, np.float32) for a in arrays)
    if img.shape[0] != len(ids) or txt.shape[0] != len(captions):
        raise SearchError(f"{features}: {img.shape[0]} images and {txt.shape[0]} captions embedded for "
                          f"{len(ids)} ids in {raw / f'{split}_ids.txt'}")
    positives = None
    if (raw / f"{split}_positives.npz").is_file():
        positives = load_positives(raw, split)
        if len(positives[0]) != len(captions) + 1:
            raise SearchError(f"{raw / f'{split}_positives.npz'}: positives for {len(positives[0]) - 1} "
                              f"captions, the split has {len(captions)}")
    return Gallery(img, txt, captions, ids, split, checkpoint, features, raw, cache_file, embedded, positives)


# ------------------------------------------------------------------------------- new text queries


class GlobalTextEncoder:
    """The frozen global branch's text tower on new captions: synth's saved dual encoder
    (aahr.features.global_branch), captions -> (B, Dg) L2-normalised."""

    def __init__(self, path: str | Path, device="cpu"):
        import torch

        from aahr.features.global_branch import DualEncoder
        from aahr.text import Vocabulary

        self.path = Path(path)
        self.device = _device(device)
        try:
            ckpt = torch.load(self.path, map_location="cpu", weights_only=True)
            cfg = ckpt["meta"]["config"]
            self.vocab = Vocabulary(ckpt["vocabulary"])
            model = DualEncoder(cfg, len(self.vocab))
            model.load_state_dict(ckpt["state_dict"])
        except FileNotFoundError:
            raise SearchError(f"{self.path}: file not found") from None
        except Exception as exc:  # a foreign or truncated file: say which
            raise SearchError(f"{self.path}: not a saved global dual encoder ({type(exc).__name__}: {exc})") from None
        self.max_words, self.dim = cfg["max_words"], cfg["dim"]
        self.model = model.to(self.device).eval().requires_grad_(False)

    def unknown_words(self, text: str) -> list[str]:
        from aahr.text import tokenize

        return [w for w in tokenize(text) if w not in self.vocab.index]

    def embed(self, captions: list[str]) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        ids, lengths = self.vocab.encode(captions, self.max_words)           # (B, L), (B,)
        with torch.no_grad():
            out = F.normalize(self.model.text(ids.to(self.device), lengths), dim=-1)  # (B, Dg)
        return out.float().cpu().numpy()

    def check(self, features: Path, split: str, captions: list[str]) -> None:
        """Raise SearchError unless this encoder reproduces ``{features}/{split}_global_txt.npy`` on
        the split's first captions (the cached global embeddings the model was given)."""
        from aahr.features.store import global_txt_path, load_array

        path = global_txt_path(features, split)
        cached = load_array(path, 2, (len(captions), None))                 # (5N, Dg)
        if cached.shape[1] != self.dim:
            raise SearchError(f"{self.path} embeds captions in {self.dim} dimensions, {path} holds "
                              f"{cached.shape[1]}: the features come from another global encoder "
                              "(rerun `aahr global-branch`)")
        k = min(GLOBAL_CHECK_CAPTIONS, len(captions))
        diff = float(np.abs(self.embed(captions[:k]) - cached[:k]).max())
        if not diff <= GLOBAL_CHECK_TOLERANCE:
            raise SearchError(f"{self.path} does not reproduce {path} (largest difference {diff:.3g} on its "
                              f"first {k} captions): the features were computed by another global encoder "
                              "(rerun `aahr global-branch`)")


class QueryEncoder:
    """New captions -> embeddings t (E,) with a trained model's text encoder.

    ``global_encoder``: the saved dual encoder file, needed when the model uses the global branch
    (``model.uses_global``); ``check``: (features folder, split, the split's captions) to verify that
    it reproduces the cached global caption embeddings (done once, here)."""

    def __init__(self, checkpoint: str | Path, global_encoder: str | Path | None = None, device="cpu",
                 check: tuple[Path, str, list[str]] | None = None):

        from aahr.inference import load_trained

        self.checkpoint = Path(checkpoint)
        self.device = _device(device)
        self.model, self.tokenizer, ckpt = load_trained(self.checkpoint, self.device)
        self.variant = ckpt["variant"]
        self.global_text = None
        if self.model.uses_global:
            path = Path(global_encoder) if global_encoder is not None else None
            if path is None or not path.is_file():
                where = f"{path} is missing" if path is not None else "none was given"
                raise SearchError(
                    f"{self.checkpoint}: this {self.variant!r} model uses the global branch, so a new caption "
                    f"needs the frozen global text encoder ({DUAL_ENCODER}), and {where} (synth: run "
                    "`aahr global-branch`; real datasets' OpenCLIP text tower is not supported here). "
                    "Query by --image, or use a model without the global branch (no_global, gpo)")
            self.global_text = GlobalTextEncoder(path, self.device)
            if check is not None:
                self.global_text.check(*check)

    def unknown_words(self, text: str) -> dict[str, list[str]]:
        """{which vocabulary: its unknown words} for ``text`` (empty when every word is known)."""
        out = {}
        if self.tokenizer.vocab is not None:
            from aahr.text import tokenize

            index = self.tokenizer.vocab.index
            words = [w for w in tokenize(text) if w not in index]
        else:
            hf = self.tokenizer.hf
            words = [w for w in text.split()
                     if hf.unk_token_id in hf(w, add_special_tokens=False)["input_ids"]]
        if words:
            out["the text encoder's vocabulary (the training captions' words)"] = words
        if self.global_text is not None:
            words = self.global_text.unknown_words(text)
            if words:
                out[f"the global encoder's vocabulary ({self.global_text.path})"] = words
        return out

    def __call__(self, text: str, allow_unknown: bool = False) -> np.ndarray:
        """``text`` -> (E,) float32, L2-normalised; SearchError for an empty query, UnknownWordsError
        naming words outside a vocabulary (unless ``allow_unknown``: they are read as <unk>)."""
        import torch

        from aahr.text import tokenize
        from aahr.inference import to_device

        if not text.strip() or (self.tokenizer.vocab is not None and not tokenize(text)):
            raise SearchError(f"empty query {text!r}: a text query needs at least one word")
        unknown = self.unknown_words(text)
        if unknown and not allow_unknown:
            words = sorted({w for ws in unknown.values() for w in ws})
            where = "; ".join(f"{', '.join(map(repr, ws))} not in {v}" for v, ws in unknown.items())
            raise UnknownWordsError(f"unknown words in the query: {where} "
                                    "(use the captions' words, or pass --allow-unknown to read them as <unk>)",
                                    words)
        tokens = to_device(self.tokenizer.pad(self.tokenizer.ids([text])), self.device)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one caption is too small for intra-op threads: on a busy 2-core
        try:                      # machine one thread answers ~10x faster (measured, see README)
            g = None
            if self.global_text is not None:
                g = torch.from_numpy(self.global_text.embed([text])).to(self.device)  # (1, Dg)
            with torch.no_grad():
                t = self.model.encode_texts(tokens, g).embedding.float()     # (1, E)
        finally:
            torch.set_num_threads(threads)
        return t[0].cpu().numpy()


# ---------------------------------------------------------------------------------------- queries


@dataclass
class Hit:
    """One retrieved item."""

    rank: int            # 1 = first
    row: int             # gallery row: an image row (text query) or a caption row (image query)
    score: float         # cosine similarity
    mark: str            # one of MARKS
    image_id: int        # the retrieved image, or the image the retrieved caption belongs to
    caption: str | None = None   # image queries: the retrieved caption


def top_rows(scores: np.ndarray, k: int, matching: np.ndarray) -> np.ndarray:
    """Rows of the ``k`` highest ``scores``, best first; among equal scores non-matching rows come
    first (ties broken against the query). O(n) selection, then a sort of the few candidates."""
    n = len(scores)
    k = min(int(k), n)
    if k <= 0:
        return np.zeros(0, np.int64)
    kth = np.partition(scores, n - k)[n - k]                                 # the k-th highest score
    cand = np.flatnonzero(scores >= kth)
    order = np.lexsort((matching[cand], -scores[cand]))                      # score desc, wrong first
    return cand[order[:k]]


def _hits(scores: np.ndarray, marks: np.ndarray, top: int, image_of, caption_of=None) -> list[Hit]:
    matching = (marks == MARKS.index(TRUE)) | (marks == MARKS.index(EXTENDED))
    rows = top_rows(scores, top, matching)
    return [Hit(rank=i + 1, row=int(r), score=float(scores[r]), mark=MARKS[marks[r]], image_id=image_of(r),
                caption=caption_of(r) if caption_of else None) for i, r in enumerate(rows)]


def search_text(gallery: Gallery, query: np.ndarray, top: int = 5, caption_rows=()) -> list[Hit]:
    """The ``top`` images for a text embedding ``query`` (E,); ``caption_rows``: the gallery
    captions that are this query (its ground truth; empty for a new caption)."""
    scores = gallery.img @ np.asarray(query, np.float32)                    # (N,)
    marks = gallery.text_marks(caption_rows)
    return _hits(scores, marks, top, lambda r: int(gallery.ids[r]))


def search_image(gallery: Gallery, image_id: int | str, top: int = 5) -> list[Hit]:
    """The ``top`` captions for gallery image ``image_id``."""
    row = gallery.row_of(image_id)
    scores = gallery.txt @ gallery.img[row]                                 # (5N,)
    return _hits(scores, gallery.image_marks(row), top,
                 lambda j: int(gallery.ids[j // CAPTIONS_PER_IMAGE]), lambda j: gallery.captions[j])


def text_rank(gallery: Gallery, caption_row: int) -> int:
    """0-based rank of caption ``caption_row``'s own image among all images (ties against the query)."""
    scores = gallery.img @ gallery.txt[caption_row]
    return int(np.count_nonzero(scores >= scores[caption_row // CAPTIONS_PER_IMAGE])) - 1


class Searcher:
    """A gallery plus, on the first text query, the model's query encoder."""

    def __init__(self, run: str | Path, features: str | Path, raw: str | Path, split: str = "test",
                 global_encoder: str | Path | None = None, device="cpu", rebuild: bool = False):
        self.gallery = load_gallery(run, features, raw, split, device, rebuild=rebuild)
        self.global_encoder, self.device = global_encoder, device
        self._encoder: QueryEncoder | None = None

    @property
    def encoder(self) -> QueryEncoder:
        if self._encoder is None:
            g = self.gallery
            self._encoder = QueryEncoder(g.checkpoint, self.global_encoder, self.device,
                                         check=(g.features, g.split, g.captions))
        return self._encoder

    def text(self, text: str, top: int = 5, allow_unknown: bool = False) -> list[Hit]:
        return search_text(self.gallery, self.encoder(text, allow_unknown), top, self.gallery.caption_rows(text))

    def image(self, image_id: int | str, top: int = 5) -> list[Hit]:
        return search_image(self.gallery, image_id, top)


# ------------------------------------------------------------------------------- comparing two runs


@dataclass
class Comparison:
    """Per-query 0-based ranks of the first ground-truth item under runs A and B (one gallery)."""

    label_a: str
    label_b: str
    split: str
    i2t_a: np.ndarray    # (N,) per image: rank of its best own caption
    i2t_b: np.ndarray
    t2i_a: np.ndarray    # (5N,) per caption: rank of its image
    t2i_b: np.ndarray

    def ranks(self, direction: str) -> tuple[np.ndarray, np.ndarray]:
        return (self.i2t_a, self.i2t_b) if direction == "i2t" else (self.t2i_a, self.t2i_b)

    def summary(self) -> dict:
        out = {}
        for d in ("i2t", "t2i"):
            a, b = self.ranks(d)
            change = b - a                                                      # > 0: B ranks it lower
            out[d] = {"queries": len(a), "a_wins": int(np.count_nonzero(a < b)),
                      "b_wins": int(np.count_nonzero(b < a)), "ties": int(np.count_nonzero(a == b)),
                      "a_mean_rank": float(a.mean()), "b_mean_rank": float(b.mean()),
                      "mean_change": float(change.mean()), "median_change": float(np.median(change)),
                      "a_r1": 100.0 * float(np.count_nonzero(a == 0)) / len(a),
                      "b_r1": 100.0 * float(np.count_nonzero(b == 0)) / len(b)}
        return out

    def largest(self, direction: str, n: int = 10) -> np.ndarray:
        """Query indices of the ``n`` largest rank differences, largest first: by the rank ratio
        |log(1 + rank B) - log(1 + rank A)| (first vs 20th beats 1710th vs 2906th), then by
        |rank B - rank A|, then by index. Queries both runs rank the same are left out."""
        a, b = self.ranks(direction)
        diff = np.abs(b - a)
        ratio = np.abs(np.log1p(b) - np.log1p(a))
        order = np.lexsort((np.arange(len(a)), -diff, -ratio))
        return order[:n][diff[order[:n]] > 0]


def gallery_ranks(gallery: Gallery) -> tuple[np.ndarray, np.ndarray]:
    """(i2t (N,), t2i (5N,)) 0-based ranks: aahr.evaluation.retrieval_ranks on v @ t^T (N, 5N)."""
    from aahr.evaluation import retrieval_ranks

    return retrieval_ranks(gallery.img @ gallery.txt.T)


def compare(a: Gallery, b: Gallery, label_a: str = "A", label_b: str = "B") -> Comparison:
    """Two runs' per-query ranks on the same split (same image ids and captions, else SearchError)."""
    if a.split != b.split or not np.array_equal(a.ids, b.ids) or a.captions != b.captions:
        raise SearchError(f"{a.checkpoint} and {b.checkpoint}: not the same gallery (split {a.split} of "
                          f"{a.raw} vs split {b.split} of {b.raw})")
    i2t_a, t2i_a = gallery_ranks(a)
    i2t_b, t2i_b = gallery_ranks(b)
    return Comparison(label_a, label_b, a.split, i2t_a, i2t_b, t2i_a, t2i_b)


def comparison_json(c: Comparison, a: Gallery, b: Gallery) -> dict:
    """Everything ``aahr compare --json`` writes: per-query ranks (0-based) and the summary."""
    return {"split": c.split, "ranks": "0-based: the number of wrong items scoring >= the first "
                                      "ground-truth item (ties against the query, as aahr.evaluation)",
            "a": {"label": c.label_a, "checkpoint": str(a.checkpoint)},
            "b": {"label": c.label_b, "checkpoint": str(b.checkpoint)},
            "summary": c.summary(),
            "i2t": {"image_ids": a.ids.tolist(), "a": c.i2t_a.tolist(), "b": c.i2t_b.tolist()},
            "t2i": {"captions": a.captions, "a": c.t2i_a.tolist(), "b": c.t2i_b.tolist()}}


# ------------------------------------------------------------------------- the figure stage's grid


def pick_queries(gallery: Gallery, n_queries: int, seed: int = 0) -> np.ndarray:
    """``n_queries`` caption rows of distinct images, drawn from ``seed`` alone."""
    rng = np.random.default_rng(seed)
    images = rng.choice(gallery.n_images, size=min(n_queries, gallery.n_images), replace=False)
    return images * CAPTIONS_PER_IMAGE + rng.integers(CAPTIONS_PER_IMAGE, size=len(images))
