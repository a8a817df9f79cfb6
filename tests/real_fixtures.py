"""Tiny Flickr30K / MSCOCO datasets in the exact real precomp formats (for check-data and the workflow).

Each split: ``{split}_ims.npy`` float32 (N, K, D) (36 x 2048 like the SCAN features unless told),
``{split}_caps.txt`` 5 consecutive captions per image, ``{split}_ids.txt``; ``id_mapping.json``
({id: file relative to the image root}) with small JPEGs under ``{root}/{dataset}/images/``. COCO's
testall holds REAL image ids of the eccv_caption package's COCO 5K test (spread over it, in its order)
with their REAL caption ids in ``testall_capids.txt``, so the ECCV bridge can be checked.
``convention="canonical"``: VSE-infinity's layout, ``id_mapping.json`` beside ``precomp/`` in
``{root}/{dataset}/`` and the Flickr30K photos in ``{root}/f30k/flickr30k-images/``.
Everything is deterministic in ``seed``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

F30K_IMAGES = 31014          # Karpathy Flickr30K: ids index these images
COCO_MAX_ID = 581929         # largest COCO 2014 image id

_SUBJECTS = ["man", "woman", "young boy", "little girl", "dog", "older man", "teenager", "cyclist",
             "musician", "child", "police officer", "tourist"]
_COLOURS = ["red", "blue", "green", "black", "white", "yellow", "striped", "brown"]
_CLOTHES = ["shirt", "jacket", "hat", "dress", "helmet", "coat", "sweater", "cap"]
_ACTIONS = ["is riding a bicycle", "is walking a dog", "is playing a guitar", "is reading a book",
            "is throwing a ball", "is carrying a bag", "is crossing the road", "is eating a sandwich",
            "is sitting on a bench", "is talking on a phone"]
_PLACES = ["down the street", "in the park", "on the beach", "near a fountain", "at the market",
           "in front of a building", "next to a parked car", "on a snowy hill", "by the river"]
_GROUPS = ["Two men", "Three children", "A group of people", "Several tourists", "Two dogs",
           "A crowd of people", "Two women"]
_GROUP_ACTIONS = ["are standing", "are playing", "are waiting", "are walking", "are sitting together"]


def _caption(rng: np.random.Generator) -> str:
    def pick(words):
        return words[int(rng.integers(len(words)))]

    form = int(rng.integers(3))
    if form == 0:
        return f"A {pick(_SUBJECTS)} in a {pick(_COLOURS)} {pick(_CLOTHES)} {pick(_ACTIONS)} {pick(_PLACES)} ."
    if form == 1:
        return f"{pick(_GROUPS)} {pick(_GROUP_ACTIONS)} {pick(_PLACES)} ."
    return f"A {pick(_SUBJECTS)} wearing a {pick(_COLOURS)} {pick(_CLOTHES)} {pick(_ACTIONS)[3:]} {pick(_PLACES)} ."


def _jpeg(path: Path, rng: np.random.Generator) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    colour = rng.integers(0, 256, 3)
    pixels = np.clip(colour + rng.integers(-40, 41, (48, 64, 3)), 0, 255).astype(np.uint8)  # 64 x 48
    Image.fromarray(pixels).save(path, "JPEG", quality=80)


def _folder(root: Path, dataset: str, convention: str) -> Path:
    if convention not in ("precomp", "_precomp", "canonical"):
        raise ValueError(f"convention must be 'precomp', '_precomp' or 'canonical', got {convention!r}")
    folder = root / f"{dataset}_precomp" if convention == "_precomp" else root / dataset / "precomp"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_split(folder: Path, split: str, ids, rng: np.random.Generator, k: int, d: int) -> None:
    n = len(ids)
    feats = rng.random((n, k, d), dtype=np.float32) * np.float32(2.0)  # non-negative, like ReLU outputs
    np.save(folder / f"{split}_ims.npy", feats)
    (folder / f"{split}_caps.txt").write_text("".join(_caption(rng) + "\n" for _ in range(5 * n)))
    (folder / f"{split}_ids.txt").write_text("".join(f"{int(i)}\n" for i in ids))


def _write_mapping(root: Path, dataset: str, folder: Path, mapping: dict, convention: str) -> None:
    where = root / dataset if convention == "canonical" else folder
    (where / "id_mapping.json").write_text(json.dumps(mapping))


def make_f30k(root, n_train: int = 12, n_dev: int = 4, n_test: int = 4, k: int = 36, d: int = 2048,
              seed: int = 0, images: bool = True, convention: str = "precomp") -> Path:
    """A tiny Flickr30K: ids index the 31,014 Karpathy images, ``id_mapping.json`` maps them to
    Flickr-style file names (``1000092795.jpg``) under ``{root}/f30k/images`` (``flickr30k-images``
    with ``convention="canonical"``). Returns the precomp folder (``{root}/f30k/precomp``, or
    ``{root}/f30k_precomp`` with ``convention="_precomp"``)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    folder = _folder(root, "f30k", convention)
    sizes = {"train": n_train, "dev": n_dev, "test": n_test}
    all_ids = rng.choice(F30K_IMAGES, sum(sizes.values()), replace=False)
    names = 1000092795 + np.cumsum(rng.integers(1, 5_000_000, len(all_ids)))
    mapping, start = {}, 0
    for split, n in sizes.items():
        ids = all_ids[start:start + n]
        start += n
        _write_split(folder, split, ids, rng, k, d)
        for j, i in enumerate(ids, start - n):
            mapping[str(int(i))] = f"{int(names[j])}.jpg"
    _write_mapping(root, "f30k", folder, mapping, convention)
    if images:
        photos = "flickr30k-images" if convention == "canonical" else "images"
        for name in mapping.values():
            _jpeg(root / "f30k" / photos / name, rng)
    return folder


def eccv_subset(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(image ids (n,), caption ids (5n,)) of n real COCO 5K test images spread evenly over the
    eccv_caption package's order (every 1000th for n = 5), in that order."""
    from aahr.evaluation import eccv_test_ids

    img, cap = eccv_test_ids()
    if not 1 <= n <= len(img):
        raise ValueError(f"n must be in 1..{len(img)}, got {n}")
    pos = np.arange(n) * (len(img) // n)
    return img[pos], np.concatenate([cap[5 * p:5 * p + 5] for p in pos])


def make_coco(root, n_train: int = 12, n_dev: int = 4, n_test: int = 5, k: int = 36, d: int = 2048,
              seed: int = 0, images: bool = True, convention: str = "precomp") -> Path:
    """A tiny MSCOCO: train / dev with arbitrary COCO ids outside the 5K test; testall with real
    ECCV Caption test ids (:func:`eccv_subset`) and their caption ids in ``testall_capids.txt``;
    ``id_mapping.json`` to ``train2014/`` / ``val2014/`` JPEGs under ``{root}/coco/images``.
    ``n_test=5000`` gives the full 5K test (use ``images=False`` and small ``k``, ``d`` then).
    Returns the precomp folder."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    folder = _folder(root, "coco", convention)
    test_img, test_cap = eccv_subset(n_test)
    taken = {int(i) for i in test_img}
    pool = [i for i in rng.choice(np.arange(1, COCO_MAX_ID + 1), 4 * (n_train + n_dev) + 10, replace=False)
            if int(i) not in taken]
    train_ids, dev_ids = pool[:n_train], pool[n_train:n_train + n_dev]
    mapping = {}
    for split, ids, sub in (("train", train_ids, "train2014"), ("dev", dev_ids, "val2014"),
                            ("testall", test_img, "val2014")):
        _write_split(folder, split, ids, rng, k, d)
        for i in ids:
            mapping[str(int(i))] = f"{sub}/COCO_{sub}_{int(i):012d}.jpg"
    (folder / "testall_capids.txt").write_text("".join(f"{int(c)}\n" for c in test_cap))
    _write_mapping(root, "coco", folder, mapping, convention)
    if images:
        for name in mapping.values():
            _jpeg(root / "coco" / "images" / name, rng)
    return folder
