"""Training pairs: the epoch's order and batches, and training-time augmentation (aahr.splits reads a split).

Pair j is caption j with image j // 5. One epoch visits every caption once (the VSE-infinity / HREM
convention) or, with ``train.epoch_captions`` < 5, that many captions of each image (drawn afresh
every epoch): shorter epochs, so a CPU run gets several dev evaluations.

Augmentation (docs/method.md), drawn from a generator seeded by (seed, epoch, caption index), so it does
not depend on worker count, process count or resumption:
- regions: each dropped with probability ``region_drop`` (at least one kept);
- words: each with probability ``word_drop`` is masked (share ``word_mask``), replaced by a random
  token (share ``word_replace``) or deleted (the rest). BERT's [CLS] / [SEP] are never touched; the
  BiGRU vocabulary has no mask token, so masking writes <unk>.
"""

from __future__ import annotations

import numpy as np
import torch

from aahr.data import CAPTIONS_PER_IMAGE, DataError
from aahr.splits import Split, Tokenizer


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
