"""A split of a dataset on disk, as every stage that embeds it reads it: region features (memory-mapped),
optional global-branch embeddings, 5 captions per image; the tokenizer that turns captions into a text
backbone's input; and the split in order, batch by batch (for evaluation and search).

Per split, in the features folder: ``{split}_ims.npy`` (N, K, D) region features and, for the global
branch, ``{split}_global_img.npy`` (N, Dg) / ``{split}_global_txt.npy`` (5N, Dg); captions
``{split}_caps.txt`` in the features folder or the raw folder beside it. Caption j is image j // 5's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aahr.data import read_captions
from aahr.features.store import load_global, load_regions
from aahr.paths import find_precomp, precomp_candidates


def dataset_folders(data_root: str | Path, dataset: str, features: str | Path | None = None,
                    captions: str | Path | None = None) -> tuple[Path, Path]:
    """(features folder, captions folder). Features: ``{root}/{dataset}/precomp`` (or the SCAN / HREM
    ``{root}/{dataset}_precomp``); captions: the features folder if it holds ``train_caps.txt``,
    else ``{root}/{dataset}/raw``."""
    root = Path(data_root)
    if features is None:
        features = find_precomp(root, dataset) or precomp_candidates(root, dataset)[0]
    features = Path(features)
    if captions is None:
        captions = features if (features / "train_caps.txt").is_file() else root / dataset / "raw"
    return features, Path(captions)


@dataclass
class Split:
    """One split, memory-mapped: regions (N, K, D), optional global embeddings, 5N captions."""

    name: str
    regions: np.ndarray
    captions: list[str]
    global_img: np.ndarray | None = None
    global_txt: np.ndarray | None = None

    @property
    def n_images(self) -> int:
        return self.regions.shape[0]


def load_split(features: Path, captions: Path, split: str, with_global: bool) -> Split:
    regions, _ = load_regions(features, split, with_boxes=False)
    caps = read_captions(captions, split, regions.shape[0])
    g_img = g_txt = None
    if with_global:
        g_img, g_txt = load_global(features, split, regions.shape[0])
    return Split(split, regions, caps, g_img, g_txt)


class Tokenizer:
    """Captions -> token id lists -> the text backbone's padded keyword arguments.

    ``vocab`` (a aahr.text.Vocabulary) for the BiGRU, ``hf`` (a Hugging Face tokenizer) for
    BERT-family backbones."""

    def __init__(self, max_tokens: int, vocab=None, hf=None):
        if (vocab is None) == (hf is None):
            raise ValueError("give exactly one of vocab or hf")
        self.max_tokens, self.vocab, self.hf = max_tokens, vocab, hf
        if vocab is not None:
            self.mask_id, self.random_range, self.keep_ends = 1, (2, max(3, len(vocab))), False
        else:
            self.mask_id = hf.mask_token_id
            self.random_range, self.keep_ends = (0, hf.vocab_size), True

    def ids(self, captions: list[str]) -> list[list[int]]:
        if self.vocab is not None:
            from aahr.text import tokenize

            index = self.vocab.index
            return [[index.get(w, 1) for w in tokenize(c)][:self.max_tokens] or [1] for c in captions]
        return self.hf(captions, truncation=True, max_length=self.max_tokens)["input_ids"]

    def pad(self, seqs: list[list[int]]) -> dict[str, torch.Tensor]:
        lengths = torch.tensor([len(s) for s in seqs])
        ids = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)
        if self.hf is not None and self.hf.pad_token_id:
            ids.fill_(self.hf.pad_token_id)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s)
        if self.vocab is not None:
            return {"ids": ids, "lengths": lengths}
        mask = (torch.arange(ids.shape[1])[None] < lengths[:, None]).long()
        return {"input_ids": ids, "attention_mask": mask}

    def augment(self, seq: list[int], rng: np.random.Generator, drop: float, mask_share: float,
                replace_share: float) -> list[int]:
        """Word masking / replacement / deletion of one caption (ends kept for BERT)."""
        lo, hi = (1, len(seq) - 1) if self.keep_ends else (0, len(seq))
        out = list(seq[:lo])
        for tok in seq[lo:hi]:
            u = rng.random()
            if u >= drop:
                out.append(tok)
                continue
            r = u / drop                                               # uniform in [0, 1)
            if r < mask_share:
                out.append(self.mask_id)
            elif r < mask_share + replace_share:
                out.append(int(rng.integers(*self.random_range)))
            # else: deleted
        out += seq[hi:]
        return out if len(out) > len(seq) - (hi - lo) else list(seq)   # never delete every word


def image_batches(split: Split, batch_size: int):
    """Every image of the split once, in order: dicts of regions, region_mask (all valid), global_img."""
    for s in range(0, split.n_images, batch_size):
        regions = torch.from_numpy(np.array(split.regions[s:s + batch_size], dtype=np.float32))
        batch = {"regions": regions, "region_mask": torch.ones(regions.shape[:2], dtype=torch.bool)}
        if split.global_img is not None:
            batch["global_img"] = torch.from_numpy(np.array(split.global_img[s:s + batch_size]))
        yield batch


def caption_batches(split: Split, tokenizer: Tokenizer, batch_size: int, token_ids=None):
    """Every caption of the split once, in order: dicts of tokens, global_txt."""
    token_ids = token_ids if token_ids is not None else tokenizer.ids(split.captions)
    for s in range(0, len(split.captions), batch_size):
        batch = {"tokens": tokenizer.pad(token_ids[s:s + batch_size])}
        if split.global_txt is not None:
            batch["global_txt"] = torch.from_numpy(np.array(split.global_txt[s:s + batch_size]))
        yield batch
