"""Image-caption pairs in the precomp layout, batching and training-time augmentation.

Pair j is caption j with image j // 5. One epoch visits every caption once (the VSE-infinity / HREM
convention) or, with ``train.epoch_captions`` < 5, that many captions of each image (drawn afresh
every epoch): shorter epochs, so a CPU run gets several dev evaluations. Per split, in the features folder: ``{split}_ims.npy`` (N, K, D) region features and,
for the global branch, ``{split}_global_img.npy`` (N, Dg) / ``{split}_global_txt.npy`` (5N, Dg);
captions ``{split}_caps.txt`` in the features folder or the raw folder beside it.

Augmentation (spec §2.2), drawn from a generator seeded by (seed, epoch, caption index), so it does
not depend on worker count, process count or resumption:
- regions: each dropped with probability ``region_drop`` (at least one kept);
- words: each with probability ``word_drop`` is masked (share ``word_mask``), replaced by a random
  token (share ``word_replace``) or deleted (the rest). BERT's [CLS] / [SEP] are never touched; the
  BiGRU vocabulary has no mask token, so masking writes <unk>.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aahr.data import DataError, read_captions
from aahr.paths import find_precomp, precomp_candidates
from aahr.features.store import load_global, load_regions

CAPTIONS_PER_IMAGE = 5


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


# ----------------------------------------------------------------------------------- tokenisation


class Tokenizer:
    """Captions -> token id lists -> the text backbone's padded keyword arguments.

    ``vocab`` (a aahr.features.text.Vocabulary) for the BiGRU, ``hf`` (a Hugging Face tokenizer) for
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
            from aahr.features.text import tokenize

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


# ------------------------------------------------------------------------------------- batching


class GlobalBatchSampler:
    """Per epoch, the pairs to visit (every caption, or ``captions_per_image`` < 5 captions of each
    image drawn afresh each epoch) in an order seeded by (seed, epoch), cut into global batches of
    ``batch_size`` (the last partial batch dropped: every batch fills the momentum queues evenly);
    process ``rank`` of ``world`` takes the contiguous ``rank``-th share of each global batch. Items
    are (epoch, pair index) so augmentation can be seeded per item."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 captions_per_image: int = CAPTIONS_PER_IMAGE):
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} is not divisible by {world} processes")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.per_image = min(captions_per_image, CAPTIONS_PER_IMAGE)
        if self.pairs_per_epoch < batch_size:
            raise DataError(f"{self.pairs_per_epoch} training pairs per epoch are fewer than one batch of {batch_size}")
        self.epoch = 0

    @property
    def pairs_per_epoch(self) -> int:
        return self.n // CAPTIONS_PER_IMAGE * self.per_image

    def __len__(self) -> int:
        return self.pairs_per_epoch // self.batch_size

    def pairs(self) -> torch.Tensor:
        """This epoch's pair indices, in visiting order."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.per_image >= CAPTIONS_PER_IMAGE:
            idx = torch.arange(self.n)
        else:
            n_img = self.n // CAPTIONS_PER_IMAGE
            pick = torch.rand(n_img, CAPTIONS_PER_IMAGE, generator=g).argsort(1)[:, :self.per_image]
            idx = (torch.arange(n_img)[:, None] * CAPTIONS_PER_IMAGE + pick).reshape(-1)
        return idx[torch.randperm(len(idx), generator=g)]

    def __iter__(self):
        perm = self.pairs()
        local = self.batch_size // self.world
        for b in range(len(self)):
            chunk = perm[b * self.batch_size:(b + 1) * self.batch_size]
            yield [(self.epoch, int(j)) for j in chunk[self.rank * local:(self.rank + 1) * local]]


class PairDataset(torch.utils.data.Dataset):
    """Pair j = (image j // 5, caption j). Items are keys; ``collate`` reads and augments a whole
    batch at once (memory-mapped fancy indexing), in the DataLoader's worker processes."""

    def __init__(self, split: Split, tokenizer: Tokenizer, seed: int, augment: dict | None = None):
        self.split, self.tokenizer, self.seed, self.augment = split, tokenizer, seed, augment
        self.token_ids = tokenizer.ids(split.captions)          # tokenised once

    def __len__(self) -> int:
        return len(self.split.captions)

    def __getitem__(self, key):
        return key

    def collate(self, keys: list[tuple[int, int]]) -> dict:
        caps = np.array([j for _, j in keys])
        imgs = caps // CAPTIONS_PER_IMAGE
        regions = torch.from_numpy(np.ascontiguousarray(self.split.regions[imgs], dtype=np.float32))  # B x K x D
        mask = torch.ones(regions.shape[:2], dtype=torch.bool)                                      # B x K
        seqs = [self.token_ids[j] for j in caps]
        aug = self.augment
        if aug is not None:
            for i, (epoch, j) in enumerate(keys):
                rng = np.random.default_rng([self.seed, epoch, j])
                keep = rng.random(mask.shape[1]) >= aug["region_drop"]
                if not keep.any():
                    keep[rng.integers(mask.shape[1])] = True
                mask[i] = torch.from_numpy(keep)
                seqs[i] = self.tokenizer.augment(seqs[i], rng, aug["word_drop"], aug["word_mask"],
                                                 aug["word_replace"])
        batch = {"regions": regions, "region_mask": mask, "tokens": self.tokenizer.pad(seqs),
                 "img_ids": torch.from_numpy(imgs), "cap_ids": torch.from_numpy(caps)}
        if self.split.global_img is not None:
            batch["global_img"] = torch.from_numpy(np.ascontiguousarray(self.split.global_img[imgs]))
            batch["global_txt"] = torch.from_numpy(np.ascontiguousarray(self.split.global_txt[caps]))
        return batch


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
