"""The real datasets (Flickr30K, MSCOCO + ECCV Caption): find them, validate them, say where to get them.

Layout (the field's "precomp"), in ``{data_root}/{dataset}/precomp/`` (VSE-infinity, CHAN, ESA,
PCME++, AAHR) or ``{data_root}/{dataset}_precomp/`` (SCAN, HREM), per split:

    {split}_ims.npy      float32 (N, K, D) region features (K = 36, D = 2048 for the real data)
    {split}_caps.txt     5 N captions, 5 consecutive lines per image (caption i is image i // 5's)
    {split}_ids.txt      N image ids (integers, unique within the split)
    id_mapping.json      {image id: image file relative to the image root}; the global branch needs it;
                         in the precomp folder or beside it (``{data_root}/{dataset}/id_mapping.json``,
                         VSE-infinity's canonical layout, whose photos are in
                         ``{data_root}/f30k/flickr30k-images/`` and ``{data_root}/coco/images/``)
    testall_capids.txt   coco only: 5 N COCO caption ids of testall (the bridge to ECCV Caption)

:func:`validate_dataset` checks all of it and collects every problem (each names the file and, for
text files, the line); ``aahr check-data`` prints them. :func:`locate_or_link` is ``aahr download``:
it finds a copy, links the SCAN convention into the fixed path the workflow reads, or explains
(:data:`INSTRUCTIONS`) which files are needed and where they are published. Fetching what is
publicly downloadable (``aahr download --what ...``) is :mod:`aahr.download`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aahr.data import CAPTIONS_PER_IMAGE
from aahr.errors import AahrError
from aahr.paths import CANONICAL_IMAGES, ID_MAPPING, find_id_mapping, find_precomp, id_mapping_candidates, precomp_candidates

FEATURE_DIM = 2048
DATASETS = ("f30k", "coco")
SPLITS = {"f30k": ("train", "dev", "test"), "coco": ("train", "dev", "testall")}
ECCV_SPLIT = "testall"          # coco's 5K test, bridged to the eccv_caption package by caption ids
ECCV_IMAGES = 5000
_SHOW = 5                       # line numbers / ids quoted per problem
_SCAN_BYTES = 64 << 20          # NaN / inf scan: rows per chunk so that a chunk is about 64 MB
_ODD_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # line ends for str.splitlines, not for editors

# What `aahr download` prints when the data is not there; README's "Run on the real datasets" quotes
# it. Sizes: 36 x 2048 x 4 bytes = 295 KB per image (docs/evaluation.md).
INSTRUCTIONS = """\
no complete copy of the {name} features in {root}/{dataset}/precomp or {root}/{dataset}_precomp;
this form of aahr download fetches nothing (--what fetches what is public). Place these files in
{root}/{dataset}/precomp/ (or {root}/{dataset}_precomp/, the SCAN convention; then run this
command again to link it); id_mapping.json may also sit beside precomp/, in {root}/{dataset}/
(VSE-infinity's layout), and the photos in {images}/:
{files}
Where they are published:
  - {split_list} region features, captions and ids (the SCAN precomputed bottom-up-attention
    features, 36 regions x 2048): the Kaggle dataset kuanghueilee/scan-features
    (https://www.kaggle.com/datasets/kuanghueilee/scan-features, folder {dataset}_precomp).
{sources}
To use a copy that is elsewhere, set `data_root` in params.yaml (or your --configfile) to the
folder that holds {dataset}/precomp or {dataset}_precomp (both are accepted), and point
`real.{dataset}.image_root` at the raw images (default: {default_images}).
`aahr download --dataset {dataset} --data-root {root} --what features,images,weights`
fetches what is publicly downloadable. Then check it with
  aahr check-data --dataset {dataset} --data-root <data_root>"""

_FILES = {
    "f30k": [
        ("train_ims.npy", "~8.6 GB, float32 (29000, 36, 2048)"),
        ("train_caps.txt, train_ids.txt", "145,000 captions / 29,000 ids, a few MB"),
        ("dev_ims.npy", "~0.3 GB, float32 (1014, 36, 2048)"),
        ("dev_caps.txt, dev_ids.txt", "5,070 captions / 1,014 ids"),
        ("test_ims.npy", "~0.3 GB, float32 (1000, 36, 2048)"),
        ("test_caps.txt, test_ids.txt", "5,000 captions / 1,000 ids"),
        ("id_mapping.json", "required: image id -> Flickr30K file name, for the global branch"),
    ],
    "coco": [
        ("train_ims.npy", "~33 GB, float32 (113287, 36, 2048), train + restval"),
        ("train_caps.txt, train_ids.txt", "566,435 captions / 113,287 ids, tens of MB"),
        ("dev_ims.npy", "~1.5 GB, float32 (5000, 36, 2048)"),
        ("dev_caps.txt, dev_ids.txt", "25,000 captions / 5,000 ids"),
        ("testall_ims.npy", "~1.5 GB, float32 (5000, 36, 2048), the COCO 5K test"),
        ("testall_caps.txt, testall_ids.txt", "25,000 captions / 5,000 COCO image ids"),
        ("testall_capids.txt", "25,000 COCO caption ids: the bridge to ECCV Caption"),
        ("id_mapping.json", "image id -> COCO file (train2014/..., val2014/...): the global branch needs it"),
    ],
}
_SOURCES = {
    "f30k": """\
  - id_mapping.json: only in the VSE-infinity data package (https://github.com/woodfrog/vse_infty,
    section "Data"); it maps the ids in *_ids.txt to flickr30k-images file names.
  - raw images (global branch, ~4.4 GB): flickr30k-images, from the Flickr30K authors' request
    form (https://shannon.cs.illinois.edu/DenotationGraph/).""",
    "coco": """\
  - testall_capids.txt (and an id_mapping.json): the VSE-infinity or PCME++ annotation bundles
    (https://github.com/woodfrog/vse_infty, https://github.com/naver-ai/pcmepp); its caption ids
    must follow the eccv_caption package's coco_test_ids.npy order (aahr check-data verifies it).
  - raw images (global branch): COCO train2014 (~13 GB) and val2014 (~6 GB) from
    https://cocodataset.org/#download (the 5K test images are in val2014).""",
}
_NAMES = {"f30k": "Flickr30K", "coco": "MSCOCO"}


def instructions(dataset: str, data_root: str | Path) -> str:
    """The text of :data:`INSTRUCTIONS` for ``dataset`` under ``data_root``."""
    _known(dataset)
    width = max(len(f) for f, _ in _FILES[dataset])
    files = "\n".join(f"  {f:<{width}}  {what}" for f, what in _FILES[dataset])
    root = Path(data_root)
    return INSTRUCTIONS.format(name=_NAMES[dataset], root=root, dataset=dataset, files=files,
                               images=root / dataset / CANONICAL_IMAGES[dataset],
                               default_images=(f"{root / dataset / CANONICAL_IMAGES[dataset]} when it exists, "
                                               f"else {root / dataset / 'images'}"
                                               if CANONICAL_IMAGES[dataset] != "images" else root / dataset / "images"),
                               split_list=", ".join(SPLITS[dataset]), sources=_SOURCES[dataset])


def _known(dataset: str) -> None:
    if dataset not in DATASETS:
        raise AahrError(f"unknown real dataset {dataset!r} (expected one of {', '.join(DATASETS)})")


def locate(data_root: str | Path, dataset: str) -> tuple[Path | None, str | None]:
    """(precomp folder, convention) where convention is ``"{dataset}/precomp"`` or
    ``"{dataset}_precomp"``; (None, None) if neither folder exists (aahr.paths.find_precomp, the
    rule training uses too: the nested folder wins when both exist)."""
    folder = find_precomp(data_root, dataset)
    if folder is None:
        return None, None
    return folder, (f"{dataset}/precomp" if folder == precomp_candidates(data_root, dataset)[0]
                    else f"{dataset}_precomp")


def required_files(dataset: str, splits=None) -> list[str]:
    """File names a complete copy of ``splits`` (default: all of the dataset's) holds."""
    _known(dataset)
    names = []
    for s in _splits(dataset, splits):
        names += [f"{s}_ims.npy", f"{s}_caps.txt", f"{s}_ids.txt"]
    if dataset == "coco" and ECCV_SPLIT in _splits(dataset, splits):
        names.append(f"{ECCV_SPLIT}_capids.txt")
    names.append("id_mapping.json")   # the global branch finds each id's photo through it
    return names


def _splits(dataset: str, splits) -> tuple[str, ...]:
    if splits is None:
        return SPLITS[dataset]
    out = tuple(dict.fromkeys(splits))
    if not out:
        raise AahrError("no splits to check")
    return out


# ------------------------------------------------------------------------------------- the report


@dataclass
class Report:
    """What :func:`validate_dataset` found. ``problems``: one line each, naming the file (and line);
    empty when the dataset is usable. ``summary``: dataset, data_root, folder, convention, splits
    ({split: {images, captions, ids, features: [N, K, D]}}), regions (K), feature_dim, id_mapping
    (present and valid), and for coco ``eccv_full`` (testall is exactly the eccv_caption package's
    COCO 5K test, so the eccv protocol applies) and ``eccv_images`` (testall images matched)."""

    dataset: str
    problems: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def eccv_full(self) -> bool:
        return bool(self.summary.get("eccv_full", False))

    def to_dict(self) -> dict:
        return {"ok": self.ok, "summary": self.summary, "problems": list(self.problems)}

    def summary_line(self) -> str:
        s = self.summary
        where = f"{self.dataset} at {s.get('folder') or s.get('data_root')}"
        if s.get("convention"):
            where += f" ({s['convention']})"
        parts = []
        for name, sp in s.get("splits", {}).items():
            n = "?" if sp.get("images") is None else sp["images"]
            c = "?" if sp.get("captions") is None else sp["captions"]
            parts.append(f"{name} {n} images / {c} captions")
        line = where + (": " + ", ".join(parts) if parts else "")
        if s.get("regions") is not None:
            line += f"; features {s['regions']} x {s.get('feature_dim')}"
        if self.dataset == "coco" and ECCV_SPLIT in s.get("splits", {}):
            if s.get("eccv_full"):
                line += f"; {ECCV_SPLIT} is the full ECCV Caption 5K test (eccv protocol on)"
            elif s.get("eccv_images"):
                line += (f"; {ECCV_SPLIT} is {s['eccv_images']} of the {ECCV_IMAGES} ECCV Caption test "
                         f"images (eccv protocol off)")
        if self.problems:
            line += f"; {len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}"
        return line


# ---------------------------------------------------------------------------------------- checks


def _lines_problem(path: Path, items: list[tuple[int, str]], one: str, many: str) -> str:
    """One problem for a list of (line number, detail) in ``path``."""
    if len(items) == 1:
        n, d = items[0]
        return f"{path}, line {n}: {one}" + (f": {d}" if d else "")
    shown = ", ".join(f"{n}" + (f" ({d})" if d else "") for n, d in items[:_SHOW])
    more = f" and {len(items) - _SHOW} more" if len(items) > _SHOW else ""
    return f"{path}, lines {shown}{more}: {len(items)} {many}"


def _read_lines(path: Path, problems: list[str]) -> list[str] | None:
    """Lines as the loaders see them (str.splitlines), or None (problem added) if the file is absent."""
    if not path.is_file():
        problems.append(f"{path}: file not found")
        return None
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        problems.append(f"{path}, line {line}: not valid UTF-8 ({exc.reason})")
        text = data.decode("utf-8", errors="replace")
    return text.splitlines()


def _odd_break_hint(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    n = sum(text.count(ch) for ch in _ODD_BREAKS)
    return (f" (the file holds {n} unusual line-break characters, e.g. form feed or U+2028, that "
            f"Python counts as line ends)") if n else ""


def _read_int_lines(path: Path, what: str, problems: list[str]) -> list[int | None] | None:
    """Integers per line (None where a line is not one; those lines become one problem)."""
    lines = _read_lines(path, problems)
    if lines is None:
        return None
    values, bad = [], []
    for n, line in enumerate(lines, 1):
        try:
            values.append(int(line.strip()))
        except ValueError:
            values.append(None)
            bad.append((n, repr(line)))
    if bad:
        problems.append(_lines_problem(path, bad, f"not an integer {what} id", f"lines are not integer {what} ids"))
    if not lines:
        problems.append(f"{path}: empty file (no {what} ids)")
    return values


def _check_features(path: Path, feature_dim: int, problems: list[str]) -> tuple[tuple | None, np.ndarray | None]:
    """(shape from the header or None, memory-mapped array or None when its values cannot be read)."""
    if not path.is_file():
        problems.append(f"{path}: file not found")
        return None, None
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            offset = f.tell()
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        problems.append(f"{path}: not a readable .npy array ({exc}; {size} bytes: truncated or not an "
                        f".npy file?)")
        return None, None
    usable = True
    if dtype.hasobject or dtype != np.float32:
        problems.append(f"{path}: dtype {dtype}, expected float32")
        usable = False
    if len(shape) != 3:
        problems.append(f"{path}: shape {shape} has {len(shape)} axes, expected 3 (images, regions, "
                        f"{feature_dim})")
        return None, None
    if shape[2] != feature_dim:
        problems.append(f"{path}: shape {shape}: features of width {shape[2]}, expected {feature_dim} "
                        f"(--feature-dim / feature_dim)")
    if shape[0] == 0 or shape[1] == 0:
        problems.append(f"{path}: empty array of shape {shape}")
        usable = False
    expected = offset + int(np.prod(shape)) * (dtype.itemsize if not dtype.hasobject else 0)
    if usable and size < expected:
        problems.append(f"{path}: truncated: {size} bytes, its header's shape {shape} needs {expected} "
                        f"(an interrupted download?)")
        usable = False
    elif usable and size > expected:
        problems.append(f"{path}: {size - expected} bytes after the array's data (its header's shape "
                        f"{shape} needs {expected}): a corrupted file?")
    array = None
    if usable:
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            problems.append(f"{path}: not a readable .npy array ({exc})")
    return tuple(int(x) for x in shape), array


def _scan_values(path: Path, array: np.ndarray, ids: list | None, progress: bool,
                 problems: list[str]) -> None:
    """NaN / inf anywhere in an image's features: chunks of about _SCAN_BYTES, memory-mapped."""
    from tqdm import tqdm

    n = array.shape[0]
    step = max(1, _SCAN_BYTES // max(1, array[0].nbytes))
    first, count = None, 0
    # Chunks are read with plain file reads, not through the memory map: pages touched through a map
    # count in the process's resident memory until the kernel evicts them (8.6 GB for f30k train),
    # while a read's buffer is freed with the chunk.
    offset = getattr(array, "offset", None)
    reader = open(path, "rb") if isinstance(array, np.memmap) and offset is not None else None
    with reader or open(os.devnull, "rb"), tqdm(total=n, desc=f"scanning {path.name}", unit="img",
                                               disable=not progress, leave=False, mininterval=1.0) as bar:
        for start in range(0, n, step):
            if reader is not None:
                rows = min(step, n - start)
                reader.seek(offset + start * array[0].nbytes)
                chunk = np.fromfile(reader, dtype=array.dtype, count=rows * array[0].size).reshape(
                    (rows,) + array.shape[1:])
            else:
                chunk = array[start:start + step]
            # a float64 sum is finite exactly when every float32 value is (no overflow is possible)
            bad = np.flatnonzero(~np.isfinite(chunk.sum(axis=tuple(range(1, chunk.ndim)), dtype=np.float64)))
            if len(bad):
                count += len(bad)
                if first is None:
                    first = start + int(bad[0])
            bar.update(len(chunk))
    if count:
        where = f"row {first}"
        if ids is not None and first < len(ids) and ids[first] is not None:
            where += f", image id {ids[first]} (line {first + 1} of {path.name.replace('_ims.npy', '_ids.txt')})"
        problems.append(f"{path}: {count} of {n} images have NaN or inf features (first: {where})")


def _read_mapping(folder: Path, root: Path, dataset: str, problems: list[str]) -> tuple[dict | None, Path]:
    """(mapping or None, its path: the file found, else the first place looked at)."""
    path = find_id_mapping(folder, root, dataset)
    if path is None:
        looked = id_mapping_candidates(folder, root, dataset)
        where = ("the VSE-infinity data package" if dataset == "f30k"
                 else "the VSE-infinity / PCME++ annotation bundles")
        nor = "".join(f", nor {p}" for p in looked[1:])
        problems.append(f"{looked[0]}: file not found{nor} (the global branch needs it to find each id's "
                        f"photo; it is in {where}: aahr download)")
        return None, looked[0]
    return _parse_mapping(path, problems), path


def _parse_mapping(path: Path, problems: list[str]) -> dict | None:
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        problems.append(f"{path}: not valid UTF-8 ({exc.reason})")
        return None
    except json.JSONDecodeError as exc:
        problems.append(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})")
        return None
    if not isinstance(mapping, dict):
        problems.append(f"{path}: expected a JSON object {{image id: image file}}, found a "
                        f"{type(mapping).__name__}")
        return None
    return mapping


def _check_mapping(mapping: dict, path: Path, ids_path: Path, ids: list, image_root: Path | None,
                   problems: list[str]) -> None:
    missing, bad, absent = [], [], []
    for n, iid in enumerate(ids, 1):
        if iid is None:
            continue
        name = mapping.get(str(iid))
        if name is None:
            missing.append((n, iid))
        elif not isinstance(name, str) or not name.strip():
            bad.append((iid, name))
        elif image_root is not None and not (image_root / name).is_file():
            absent.append((iid, image_root / name))
    if missing:
        shown = ", ".join(f"{i} (line {n})" for n, i in missing[:_SHOW])
        more = f" and {len(missing) - _SHOW} more" if len(missing) > _SHOW else ""
        problems.append(f"{path}: no entry for {len(missing)} image id{'s' if len(missing) > 1 else ''} of "
                        f"{ids_path}: {shown}{more}")
    if bad:
        problems.append(f"{path}: the entry for image id {bad[0][0]} is not a file path: {bad[0][1]!r}"
                        + (f" ({len(bad)} such entries)" if len(bad) > 1 else ""))
    if absent:
        problems.append(f"{image_root}: {len(absent)} image file{'s' if len(absent) > 1 else ''} of "
                        f"{ids_path.name} not found (first: {absent[0][1]} for image id {absent[0][0]})")


def _check_eccv(folder: Path, ids: list, n_images: int | None, problems: list[str], summary: dict) -> None:
    """testall against the eccv_caption package's COCO 5K test: ids known, order kept, caption ids."""
    ids_path, cap_path = folder / f"{ECCV_SPLIT}_ids.txt", folder / f"{ECCV_SPLIT}_capids.txt"
    before = len(problems)
    capids = _read_int_lines(cap_path, "caption", problems)
    n = n_images if n_images is not None else len(ids)
    if capids is not None and len(capids) != CAPTIONS_PER_IMAGE * n:
        problems.append(f"{cap_path}: {len(capids)} caption ids, but {ECCV_SPLIT} holds {n} images "
                        f"({CAPTIONS_PER_IMAGE * n} expected, 5 consecutive per image)")
    try:
        from aahr.evaluation import eccv_test_ids

        e_img, e_cap = eccv_test_ids()
    except Exception as exc:  # noqa: BLE001  (the package is missing or broken: say so, do not guess)
        problems.append(f"{ids_path}: cannot check against ECCV Caption: the eccv_caption package "
                        f"failed to load ({type(exc).__name__}: {exc})")
        return
    pos_of = {int(i): p for p, i in enumerate(e_img)}
    unknown = [(n, repr(i)) for n, i in enumerate(ids, 1) if i is not None and i not in pos_of]
    if unknown:
        problems.append(_lines_problem(ids_path, [(n, f"id {d}") for n, d in unknown],
                                       "image id not in the eccv_caption package's COCO 5K test",
                                       "image ids not in the eccv_caption package's COCO 5K test"))
    usable = (not unknown and None not in ids and len(set(ids)) == len(ids))
    if usable:
        pos = np.array([pos_of[i] for i in ids])
        back = np.flatnonzero(np.diff(pos) <= 0)
        if len(back):
            k = int(back[0]) + 1          # 0-based index of the first image out of order
            problems.append(f"{ids_path}, line {k + 1}: image id {ids[k]} comes before image id "
                            f"{ids[k - 1]} (line {k}) in the eccv_caption package's COCO 5K test order "
                            f"({len(back)} place{'s' if len(back) > 1 else ''} out of order); {ECCV_SPLIT} "
                            f"must keep that order")
            usable = False
    if usable and capids is not None and len(capids) == CAPTIONS_PER_IMAGE * len(ids) and None not in capids:
        wrong = []
        for i, p in enumerate(pos):
            got = capids[CAPTIONS_PER_IMAGE * i:CAPTIONS_PER_IMAGE * (i + 1)]
            want = e_cap[CAPTIONS_PER_IMAGE * p:CAPTIONS_PER_IMAGE * (p + 1)].tolist()
            if got != want:
                wrong.append((i, got, want))
        if wrong:
            i, got, want = wrong[0]
            how = "same ids, other order" if sorted(got) == sorted(want) else "other ids"
            problems.append(f"{cap_path}, lines {CAPTIONS_PER_IMAGE * i + 1}-{CAPTIONS_PER_IMAGE * (i + 1)}: "
                            f"caption ids {got} of image {ids[i]} differ from the eccv_caption package's "
                            f"{want} ({how}; {len(wrong)} of {len(ids)} images differ); they must follow "
                            f"its coco_test_ids.npy")
    if len(problems) == before:
        summary["eccv_images"] = len(ids)
        summary["eccv_full"] = len(ids) == len(e_img)   # all 5000, in the package's order


def validate_dataset(data_root: str | Path, dataset: str, splits=None, feature_dim: int = FEATURE_DIM,
                     check_values: bool = True, progress: bool = False,
                     image_root: str | Path | None = None) -> Report:
    """Check a real dataset's precomp folder completely and collect every problem.

    ``splits`` defaults to the dataset's (f30k: train, dev, test; coco: train, dev, testall); a
    split absent on disk is a problem unless it is left out of ``splits``. ``check_values`` scans the
    memory-mapped features for NaN / inf (``progress``: a tqdm bar per file). ``image_root`` (optional)
    also checks that every image file id_mapping.json names exists. Never raises for bad data (only
    for an unknown dataset name); the report lists the problems.
    """
    _known(dataset)
    splits = _splits(dataset, splits)
    root = Path(data_root)
    folder, convention = locate(root, dataset)
    report = Report(dataset)
    problems = report.problems
    summary = report.summary
    summary.update(dataset=dataset, data_root=str(root), folder=None if folder is None else str(folder),
                   convention=convention, splits={}, regions=None, feature_dim=int(feature_dim),
                   id_mapping=False)
    if dataset == "coco":
        summary.update(eccv_full=False, eccv_images=0)
    if folder is None:
        problems.append(f"{root}: neither {root / dataset / 'precomp'} nor {root / (dataset + '_precomp')} "
                        f"exists (`aahr download --dataset {dataset} --data-root {root}` lists the files "
                        f"needed and where they are published)")
        return report
    mapping, mapping_path = _read_mapping(folder, root, dataset, problems)
    summary["id_mapping"] = mapping is not None
    summary["id_mapping_file"] = str(mapping_path) if mapping is not None else None
    img_root = None if image_root is None else Path(image_root)
    regions = {}
    for split in splits:
        ims_path, caps_path, ids_path = (folder / f"{split}_ims.npy", folder / f"{split}_caps.txt",
                                         folder / f"{split}_ids.txt")
        info = summary["splits"][split] = {"images": None, "captions": None, "ids": None, "features": None}
        if not any(p.exists() for p in (ims_path, caps_path, ids_path)):
            problems.append(f"{folder}: split {split!r} is missing (no {ims_path.name}, {caps_path.name} or "
                            f"{ids_path.name}); check only the splits you need with --splits")
            continue
        shape, array = _check_features(ims_path, feature_dim, problems)
        ids = _read_int_lines(ids_path, "image", problems)
        caps = _read_lines(caps_path, problems)
        n_img = shape[0] if shape is not None else None
        if shape is not None:
            info["features"] = list(shape)
            regions[split] = shape[1]
        if ids is not None:
            info["ids"] = len(ids)
            if n_img is not None and len(ids) != n_img:
                problems.append(f"{ids_path}: {len(ids)} image ids, but {ims_path.name} holds {n_img} images")
            first, dup = {}, []
            for n, i in enumerate(ids, 1):
                if i is None:
                    continue
                if i in first:
                    dup.append((n, f"id {i}, first on line {first[i]}"))
                else:
                    first[i] = n
            if dup:
                problems.append(_lines_problem(ids_path, dup, "repeated image id", "repeated image ids"))
        info["images"] = n_img if n_img is not None else (len(ids) if ids is not None else None)
        if caps is not None:
            info["captions"] = len(caps)
            empty = [(n, "") for n, c in enumerate(caps, 1) if not c.strip()]
            if empty:
                problems.append(_lines_problem(caps_path, empty, "empty caption", "empty captions"))
            n_ref = info["images"]
            if n_ref is not None and len(caps) != CAPTIONS_PER_IMAGE * n_ref:
                said = []
                if n_img is not None:
                    said.append(f"{ims_path.name} holds {n_img} images")
                if ids is not None:
                    said.append(f"{ids_path.name} lists {len(ids)} ids")
                problems.append(f"{caps_path}: {len(caps)} captions, i.e. {len(caps) / CAPTIONS_PER_IMAGE:g} "
                                f"images at {CAPTIONS_PER_IMAGE} per image, but {' and '.join(said)} "
                                f"({CAPTIONS_PER_IMAGE * n_ref} captions expected){_odd_break_hint(caps_path)}")
            elif n_ref is None and len(caps) % CAPTIONS_PER_IMAGE:
                problems.append(f"{caps_path}: {len(caps)} captions is not a multiple of {CAPTIONS_PER_IMAGE}")
        if mapping is not None and ids is not None:
            _check_mapping(mapping, mapping_path, ids_path, ids, img_root, problems)
        if check_values and array is not None:
            _scan_values(ims_path, array, ids, progress, problems)
        if dataset == "coco" and split == ECCV_SPLIT and ids is not None:
            _check_eccv(folder, ids, n_img, problems, summary)
        del array
    if len(set(regions.values())) > 1:
        problems.append(f"{folder}: the number of regions per image differs across splits ("
                        + ", ".join(f"{s}_ims.npy {k}" for s, k in regions.items())
                        + "); every split must have the same K")
    if regions:
        summary["regions"] = max(set(regions.values()), key=list(regions.values()).count)
    return report


# --------------------------------------------------------------------------------- aahr download


def _missing(folder: Path, dataset: str, splits, root: Path) -> list[str]:
    """Required files absent from ``folder`` (id_mapping.json may also be beside it, in {root}/{dataset})."""
    return [f for f in required_files(dataset, splits)
            if not (find_id_mapping(folder, root, dataset) if f == ID_MAPPING else (folder / f).is_file())]


def locate_or_link(data_root: str | Path, dataset: str, splits=None) -> str:
    """``aahr download``: find the data, link the SCAN convention into the workflow's path, or explain.

    Returns what was found or done. ``{root}/{dataset}/precomp`` complete: nothing to do. Only
    ``{root}/{dataset}_precomp`` complete: the relative symlink ``{root}/{dataset}/precomp ->
    ../{dataset}_precomp`` is created (an empty folder or a dangling link in its place is replaced).
    Otherwise raises AahrError with what is missing and :func:`instructions` (nothing is fetched).
    Files are only looked for here; ``aahr check-data`` validates their contents.
    """
    _known(dataset)
    root = Path(data_root)
    nested, flat = precomp_candidates(root, dataset)
    check = f"validate it with: aahr check-data --dataset {dataset} --data-root {root}"
    if nested.is_dir() and not _missing(nested, dataset, splits, root):
        how = f" (a link to {os.readlink(nested)})" if nested.is_symlink() else ""
        return f"{dataset}: found in {nested}{how}; nothing to download; {check}"
    notes = []
    if flat.is_dir() and not _missing(flat, dataset, splits, root):
        if nested.is_symlink() and not nested.exists():
            nested.unlink()                                   # a dangling link: replace it
        elif nested.is_dir() and not nested.is_symlink() and not any(nested.iterdir()):
            nested.rmdir()                                    # an empty folder: replace it
        if not (nested.exists() or nested.is_symlink()):
            nested.parent.mkdir(parents=True, exist_ok=True)
            target = os.path.join("..", flat.name)
            tmp = nested.parent / f".{nested.name}.link.tmp"
            tmp.unlink(missing_ok=True)
            os.symlink(target, tmp, target_is_directory=True)
            os.replace(tmp, nested)
            return (f"{dataset}: found in {flat} (SCAN convention); linked {nested} -> {target} so the "
                    f"workflow's paths find it; {check}")
        notes.append(f"{flat} is complete but {nested} exists and is incomplete (missing "
                     f"{', '.join(_missing(nested, dataset, splits, root))}); the workflow reads {nested}: "
                     f"remove it, then run this command again")
    for folder in (nested, flat):
        if folder.is_dir() and not notes:
            miss = _missing(folder, dataset, splits, root)
            notes.append(f"{folder} exists but lacks {len(miss)} file{'s' if len(miss) > 1 else ''}: "
                         f"{', '.join(miss)}")
    raise AahrError("\n".join(notes + [instructions(dataset, root)]))
