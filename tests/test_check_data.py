"""aahr check-data / aahr download on tiny datasets in the exact real formats (tests/real_fixtures.py).

One test per defect a broken or partial download really has; each must give exit 2, a message that
names the file (and the line), and no traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from real_fixtures import eccv_subset, make_coco, make_f30k

from aahr import realdata
from aahr.cli import main
from aahr.realdata import validate_dataset


@pytest.fixture(scope="session")
def f30k_base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("f30k_base")
    make_f30k(root)
    return root


@pytest.fixture(scope="session")
def coco_base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coco_base")
    make_coco(root)
    return root


@pytest.fixture(scope="session")
def coco_full_base(tmp_path_factory) -> Path:
    """The full ECCV 5K testall (5000 images, 25000 caption ids), features 1 x 8 to stay small."""
    root = tmp_path_factory.mktemp("coco_full")
    make_coco(root, n_test=5000, k=1, d=8, images=False)
    return root


def _copy(base: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(base, root, symlinks=True)
    return root


def check(root: Path, dataset: str, *extra: str) -> int:
    return main(["check-data", "--dataset", dataset, "--data-root", str(root), "--quiet", *extra])


# ------------------------------------------------------------------------------------- valid data


def test_valid_f30k_passes_with_a_one_line_summary(f30k_base, capsys):
    assert check(f30k_base, "f30k") == 0
    out, err = capsys.readouterr()
    assert out.count("\n") == 1 and err == ""
    assert f"f30k at {f30k_base / 'f30k' / 'precomp'} (f30k/precomp): " in out
    for part in ("train 12 images / 60 captions", "dev 4 images / 20 captions",
                 "test 4 images / 20 captions", "features 36 x 2048"):
        assert part in out


def test_valid_coco_passes_and_reports_an_eccv_subset(coco_base, capsys):
    assert check(coco_base, "coco") == 0
    out = capsys.readouterr().out
    assert "testall 5 images / 25 captions" in out and "train 12 images / 60 captions" in out
    assert "testall is 5 of the 5000 ECCV Caption test images (eccv protocol off)" in out
    report = validate_dataset(coco_base, "coco")
    assert report.ok and report.problems == []
    assert report.eccv_full is False and report.summary["eccv_images"] == 5
    assert report.summary["splits"]["testall"] == {"images": 5, "captions": 25, "ids": 5,
                                                   "features": [5, 36, 2048]}
    assert report.summary["convention"] == "coco/precomp" and report.summary["regions"] == 36


def test_coco_id_mapping_is_checked_and_required(coco_base, tmp_path):
    root = _copy(coco_base, tmp_path)
    mapping_file = root / "coco" / "precomp" / "id_mapping.json"
    mapping = json.loads(mapping_file.read_text())
    mapping.pop(_lines(root / "coco" / "precomp" / "testall_ids.txt")[4])
    mapping_file.write_text(json.dumps(mapping))
    (problem,) = validate_dataset(root, "coco").problems
    assert problem.startswith(f"{mapping_file}: no entry for 1 image id of ")
    mapping_file.unlink()
    report = validate_dataset(root, "coco")
    assert not report.ok and report.summary["id_mapping"] is False
    assert report.problems == [f"{mapping_file}: file not found, nor {root / 'coco' / 'id_mapping.json'} (the "
                               "global branch needs it to find each id's photo; it is in the VSE-infinity / "
                               "PCME++ annotation bundles: aahr download)"]


def test_fixture_testall_uses_real_spread_eccv_ids_in_package_order(coco_base):
    from aahr.evaluation import eccv_test_ids

    img, cap = eccv_test_ids()
    folder = coco_base / "coco" / "precomp"
    ids = [int(x) for x in (folder / "testall_ids.txt").read_text().split()]
    capids = [int(x) for x in (folder / "testall_capids.txt").read_text().split()]
    pos = [int(np.flatnonzero(img == i)[0]) for i in ids]
    assert pos == [0, 1000, 2000, 3000, 4000]
    assert capids == [int(c) for p in pos for c in cap[5 * p:5 * p + 5]]


def test_full_eccv_5k_testall_is_flagged_and_any_k_d_accepted(coco_full_base, tmp_path, capsys):
    report = validate_dataset(coco_full_base, "coco", feature_dim=8)
    assert report.problems == [] and report.eccv_full is True
    assert report.summary["regions"] == 1 and report.summary["splits"]["testall"]["captions"] == 25000
    assert "testall is the full ECCV Caption 5K test (eccv protocol on)" in report.summary_line()
    assert check(coco_full_base, "coco", "--feature-dim", "8") == 0
    assert "features 1 x 8; testall is the full ECCV Caption 5K test" in capsys.readouterr().out
    assert check(coco_full_base, "coco") == 2                            # the default width is 2048
    assert "features of width 8, expected 2048" in capsys.readouterr().err
    # the same 5000 images with two neighbours (and their captions) swapped: no longer the package's order
    root = _copy(coco_full_base, tmp_path)
    folder = root / "coco" / "precomp"
    ids = (folder / "testall_ids.txt").read_text().splitlines()
    caps = (folder / "testall_capids.txt").read_text().splitlines()
    ids[10], ids[11] = ids[11], ids[10]
    caps[50:55], caps[55:60] = caps[55:60], caps[50:55]
    (folder / "testall_ids.txt").write_text("\n".join(ids) + "\n")
    (folder / "testall_capids.txt").write_text("\n".join(caps) + "\n")
    bad = validate_dataset(root, "coco", feature_dim=8)
    assert bad.eccv_full is False
    assert len(bad.problems) == 1 and f"{folder / 'testall_ids.txt'}, line 12: image id {ids[11]} comes before image id {ids[10]} (line 11)" in bad.problems[0]


@pytest.mark.parametrize("dataset", ["f30k", "coco"])
def test_canonical_layout_is_accepted(dataset, tmp_path, capsys):
    """VSE-infinity's tree: data/{dataset}/precomp/, data/{dataset}/id_mapping.json beside it, the photos in
    data/f30k/flickr30k-images/ or data/coco/images/{train2014,val2014}/."""
    from aahr.features.images import image_files
    from aahr.paths import default_image_root

    root = tmp_path / "data"
    folder = (make_f30k if dataset == "f30k" else make_coco)(root, convention="canonical")
    photos = root / dataset / ("flickr30k-images" if dataset == "f30k" else "images")
    assert sorted(p.name for p in (root / dataset).iterdir()) == sorted(["id_mapping.json", "precomp", photos.name])
    assert not (folder / "id_mapping.json").exists() and photos.is_dir()
    assert check(root, dataset) == 0
    assert f"{dataset} at {folder} ({dataset}/precomp): " in capsys.readouterr().out
    report = validate_dataset(root, dataset)
    assert report.summary["id_mapping"] is True
    assert report.summary["id_mapping_file"] == str(root / dataset / "id_mapping.json")
    assert default_image_root(root, dataset) == photos
    assert check(root, dataset, "--image-root", str(photos)) == 0          # every photo found there
    files = image_files(folder, "train", photos)                             # the global branch's reader
    assert len(files) == 12 and all(f.is_file() and f.parent.is_relative_to(photos) for f in files)
    assert download(root, dataset) == 0                                      # located: nothing missing
    assert f"{dataset}: found in {folder}; nothing to download" in capsys.readouterr().out


def test_id_mapping_in_precomp_wins_and_absence_names_every_place(f30k_base, tmp_path):
    from aahr.data import DataError
    from aahr.features.images import image_files
    from aahr.paths import default_image_root

    root = _copy(f30k_base, tmp_path)
    folder = root / "f30k" / "precomp"
    beside = root / "f30k" / "id_mapping.json"
    beside.write_text("{}")                                   # an empty mapping beside: precomp/'s is read first
    assert validate_dataset(root, "f30k").ok
    assert default_image_root(root, "f30k") == root / "f30k" / "images"     # no flickr30k-images: the old default
    (folder / "id_mapping.json").unlink()
    problems = validate_dataset(root, "f30k").problems
    assert len(problems) == 3 and all(str(beside) in p and "no entry for" in p for p in problems)
    beside.unlink()
    (problem,) = validate_dataset(root, "f30k").problems
    assert problem.startswith(f"{folder / 'id_mapping.json'}: file not found, nor {beside} (")
    with pytest.raises(DataError) as err:
        image_files(folder, "test")
    assert str(folder / "id_mapping.json") in str(err.value) and str(beside) in str(err.value)


@pytest.mark.parametrize("dataset", ["f30k", "coco"])
def test_scan_convention_folder_is_accepted(dataset, tmp_path, capsys):
    make = make_f30k if dataset == "f30k" else make_coco
    folder = make(tmp_path, convention="_precomp", images=False)
    assert folder == tmp_path / f"{dataset}_precomp" and not (tmp_path / dataset / "precomp").exists()
    assert check(tmp_path, dataset) == 0
    assert f"{dataset} at {folder} ({dataset}_precomp): " in capsys.readouterr().out


def test_loaders_memory_map_the_real_format(f30k_base):
    from aahr.data import read_captions, read_ids
    from aahr.features.store import load_regions

    folder = f30k_base / "f30k" / "precomp"
    ims, boxes = load_regions(folder, "train", n_images=12, with_boxes=False)
    assert isinstance(ims, np.memmap) and ims.shape == (12, 36, 2048) and boxes is None
    assert len(read_captions(folder, "train", ims.shape[0])) == 60 and len(read_ids(folder, "train")) == 12


def test_splits_option_checks_only_those_splits(f30k_base, tmp_path, capsys):
    root = _copy(f30k_base, tmp_path)
    for name in ("train_ims.npy", "train_caps.txt", "train_ids.txt"):
        (root / "f30k" / "precomp" / name).unlink()
    assert check(root, "f30k", "--splits", "test") == 0
    assert "test 4 images / 20 captions" in capsys.readouterr().out
    assert check(root, "f30k") == 2
    assert "split 'train' is missing" in capsys.readouterr().err


# ------------------------------------------------------------------------------- one test per defect


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def remove_split_file(f):
    (f / "dev_caps.txt").unlink()
    return "dev_caps.txt", ["dev_caps.txt: file not found"]


def remove_whole_split(f):
    for name in ("dev_ims.npy", "dev_caps.txt", "dev_ids.txt"):
        (f / name).unlink()
    return None, ["split 'dev' is missing"]


def remove_a_caption(f):                     # image 1 now has 4 captions
    caps = _lines(f / "train_caps.txt")
    _write_lines(f / "train_caps.txt", caps[:7] + caps[8:])
    return "train_caps.txt", ["train_caps.txt: 59 captions, i.e. 11.8 images", "train_ims.npy holds 12 images",
                              "train_ids.txt lists 12 ids", "(60 captions expected)"]


def empty_caption(f):
    caps = _lines(f / "train_caps.txt")
    caps[6] = "   "
    _write_lines(f / "train_caps.txt", caps)
    return "train_caps.txt", ["train_caps.txt, line 7: empty caption"]


def wrong_width(f):
    np.save(f / "test_ims.npy", np.ones((4, 36, 1024), np.float32))
    return "test_ims.npy", ["test_ims.npy: shape (4, 36, 1024): features of width 1024, expected 2048"]


def wrong_dtype(f):
    np.save(f / "test_ims.npy", np.ones((4, 36, 2048), np.float64))
    return "test_ims.npy", ["test_ims.npy: dtype float64, expected float32"]


def other_region_count(f):
    np.save(f / "dev_ims.npy", np.ones((4, 12, 2048), np.float32))
    return None, ["regions per image differs across splits", "train_ims.npy 36", "dev_ims.npy 12"]


def nan_features(f):
    a = np.load(f / "test_ims.npy")
    a[2, 5, 100] = np.nan
    a[3, 0, 0] = np.inf
    np.save(f / "test_ims.npy", a)
    test_id = _lines(f / "test_ids.txt")[2]
    return "test_ims.npy", ["test_ims.npy: 2 of 4 images have NaN or inf features",
                            f"first: row 2, image id {test_id} (line 3 of test_ids.txt)"]


def truncated_npy(f):
    data = (f / "dev_ims.npy").read_bytes()
    (f / "dev_ims.npy").write_bytes(data[:-1000])
    return "dev_ims.npy", [f"dev_ims.npy: truncated: {len(data) - 1000} bytes", f"needs {len(data)}"]


def truncated_npy_header(f):
    (f / "dev_ims.npy").write_bytes((f / "dev_ims.npy").read_bytes()[:50])
    return "dev_ims.npy", ["dev_ims.npy: not a readable .npy array", "50 bytes"]


def extra_bytes_npy(f):
    with open(f / "dev_ims.npy", "ab") as out:
        out.write(b"\0" * 16)
    return "dev_ims.npy", ["dev_ims.npy: 16 bytes after the array's data"]


def ids_count_mismatch(f):
    _write_lines(f / "test_ids.txt", _lines(f / "test_ids.txt")[:3])
    return "test_ids.txt", ["test_ids.txt: 3 image ids, but test_ims.npy holds 4 images"]


def duplicate_id(f):
    ids = _lines(f / "train_ids.txt")
    ids[2] = ids[0]
    _write_lines(f / "train_ids.txt", ids)
    return "train_ids.txt", [f"train_ids.txt, line 3: repeated image id: id {ids[0]}, first on line 1"]


def non_integer_id(f):
    ids = _lines(f / "train_ids.txt")
    ids[1] = ids[1] + "a"
    _write_lines(f / "train_ids.txt", ids)
    return "train_ids.txt", [f"train_ids.txt, line 2: not an integer image id: '{ids[1]}'"]


def mapping_lacks_an_id(f):
    dev_id = _lines(f / "dev_ids.txt")[1]
    mapping = json.loads((f / "id_mapping.json").read_text())
    del mapping[dev_id]
    (f / "id_mapping.json").write_text(json.dumps(mapping))
    return "id_mapping.json", [f"id_mapping.json: no entry for 1 image id of {f / 'dev_ids.txt'}: {dev_id} (line 2)"]


def mapping_invalid_json(f):
    (f / "id_mapping.json").write_text('{"1": "a.jpg",\n "2": }\n')
    return "id_mapping.json", ["id_mapping.json, line 2: not valid JSON"]


def mapping_absent(f):
    (f / "id_mapping.json").unlink()
    return "id_mapping.json", [f"id_mapping.json: file not found, nor {f.parent / 'id_mapping.json'} (the global "
                               "branch needs it"]


def capids_wrong_order(f):
    caps = _lines(f / "testall_capids.txt")
    caps[0], caps[1] = caps[1], caps[0]
    _write_lines(f / "testall_capids.txt", caps)
    return "testall_capids.txt", ["testall_capids.txt, lines 1-5: caption ids", "(same ids, other order; 1 of 5 images differ)"]


def capids_of_another_image(f):
    caps = _lines(f / "testall_capids.txt")
    caps[5:10], caps[10:15] = caps[10:15], caps[5:10]
    _write_lines(f / "testall_capids.txt", caps)
    return "testall_capids.txt", ["testall_capids.txt, lines 6-10: caption ids", "(other ids; 2 of 5 images differ)"]


def capids_count(f):
    _write_lines(f / "testall_capids.txt", _lines(f / "testall_capids.txt")[:-1])
    return "testall_capids.txt", ["testall_capids.txt: 24 caption ids, but testall holds 5 images (25 expected"]


def capids_non_integer(f):
    caps = _lines(f / "testall_capids.txt")
    caps[3] = "n/a"
    _write_lines(f / "testall_capids.txt", caps)
    return "testall_capids.txt", ["testall_capids.txt, line 4: not an integer caption id: 'n/a'"]


def capids_absent(f):
    (f / "testall_capids.txt").unlink()
    return "testall_capids.txt", ["testall_capids.txt: file not found"]


def id_not_in_eccv_test(f):
    ids = _lines(f / "testall_ids.txt")
    ids[2] = _lines(f / "train_ids.txt")[0]
    _write_lines(f / "testall_ids.txt", ids)
    return "testall_ids.txt", [(f"testall_ids.txt, line 3: image id not in the eccv_caption package's COCO 5K "
                                f"test: id {ids[2]}")]


def images_out_of_eccv_order(f):
    ids, caps = _lines(f / "testall_ids.txt"), _lines(f / "testall_capids.txt")
    ids[0], ids[1] = ids[1], ids[0]              # captions swapped with them: only the order is wrong
    caps[0:5], caps[5:10] = caps[5:10], caps[0:5]
    _write_lines(f / "testall_ids.txt", ids)
    _write_lines(f / "testall_capids.txt", caps)
    return "testall_ids.txt", [(f"testall_ids.txt, line 2: image id {ids[1]} comes before image id {ids[0]} "
                                f"(line 1)"), "must keep that order"]


F30K_DEFECTS = [remove_split_file, remove_whole_split, remove_a_caption, empty_caption, wrong_width,
                wrong_dtype, other_region_count, nan_features, truncated_npy, truncated_npy_header,
                extra_bytes_npy, ids_count_mismatch, duplicate_id, non_integer_id, mapping_lacks_an_id,
                mapping_invalid_json, mapping_absent]
COCO_DEFECTS = [capids_wrong_order, capids_of_another_image, capids_count, capids_non_integer,
                capids_absent, id_not_in_eccv_test, images_out_of_eccv_order]


@pytest.mark.parametrize("defect", [pytest.param(("f30k", d), id=d.__name__) for d in F30K_DEFECTS]
                         + [pytest.param(("coco", d), id=d.__name__) for d in COCO_DEFECTS])
def test_each_defect_gives_exit_2_and_names_the_file(defect, f30k_base, coco_base, tmp_path, capsys):
    dataset, breaks = defect
    root = _copy(f30k_base if dataset == "f30k" else coco_base, tmp_path)
    folder = root / dataset / "precomp"
    assert validate_dataset(root, dataset).ok       # the copy was valid before the defect
    name, fragments = breaks(folder)
    report = validate_dataset(root, dataset)
    assert len(report.problems) == 1, report.problems   # the defect, not a cascade of others
    assert report.eccv_full is False
    assert check(root, dataset) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[0] == report.problems[0]
    assert err.splitlines()[-1].startswith(f"aahr check-data: error: 1 problem in {dataset} (listed above): ")
    if name is not None:
        assert str(folder / name) in report.problems[0]
    for fragment in fragments:
        assert fragment in report.problems[0]


def test_no_folder_at_all_points_to_aahr_download(tmp_path, capsys):
    assert check(tmp_path, "coco") == 2
    err = capsys.readouterr().err
    assert f"neither {tmp_path / 'coco' / 'precomp'} nor {tmp_path / 'coco_precomp'} exists" in err
    assert f"aahr download --dataset coco --data-root {tmp_path}" in err


def test_two_defects_are_both_listed_without_a_traceback(f30k_base, tmp_path):
    root = _copy(f30k_base, tmp_path)
    folder = root / "f30k" / "precomp"
    nan_features(folder)
    remove_a_caption(folder)
    proc = subprocess.run([sys.executable, "-m", "aahr", "check-data", "--dataset", "f30k", "--data-root",
                           str(root), "--quiet"], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert any(line.startswith(f"{folder / 'test_ims.npy'}: 2 of 4 images have NaN") for line in lines)
    assert any(line.startswith(f"{folder / 'train_caps.txt'}: 59 captions") for line in lines)
    assert lines[-1].startswith("aahr check-data: error: 2 problems in f30k")


def test_many_bad_lines_are_counted_and_the_first_few_quoted(f30k_base, tmp_path):
    root = _copy(f30k_base, tmp_path)
    caps = root / "f30k" / "precomp" / "train_caps.txt"
    lines = _lines(caps)
    for i in (1, 3, 5, 7, 9, 11, 13):
        lines[i] = ""
    _write_lines(caps, lines)
    (problem,) = validate_dataset(root, "f30k").problems
    assert problem == f"{caps}, lines 2, 4, 6, 8, 10 and 2 more: 7 empty captions"


def test_nan_scan_works_across_chunks_and_shows_progress(f30k_base, tmp_path, monkeypatch, capsys):
    root = _copy(f30k_base, tmp_path)
    path = root / "f30k" / "precomp" / "train_ims.npy"
    a = np.load(path)
    a[9, 0, 0] = np.nan
    a[11, 35, 2047] = -np.inf
    np.save(path, a)
    monkeypatch.setattr(realdata, "_SCAN_BYTES", 3 * 36 * 2048 * 4)   # chunks of 3 rows
    report = validate_dataset(root, "f30k", progress=True)
    assert report.problems == [(f"{path}: 2 of 12 images have NaN or inf features (first: row 9, image id "
                                f"{_lines(path.with_name('train_ids.txt'))[9]} (line 10 of train_ids.txt))")]
    assert "scanning train_ims.npy" in capsys.readouterr().err
    assert validate_dataset(root, "f30k", check_values=False).ok      # --skip-values


def test_image_root_finds_missing_image_files(f30k_base, tmp_path, capsys):
    root = _copy(f30k_base, tmp_path)
    images = root / "f30k" / "images"
    assert check(root, "f30k", "--image-root", str(images)) == 0
    mapping = json.loads((root / "f30k" / "precomp" / "id_mapping.json").read_text())
    test_id = _lines(root / "f30k" / "precomp" / "test_ids.txt")[0]
    (images / mapping[test_id]).unlink()
    capsys.readouterr()
    assert check(root, "f30k", "--image-root", str(images)) == 2
    assert (f"{images}: 1 image file of test_ids.txt not found (first: {images / mapping[test_id]} for image "
            f"id {test_id})") in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ --json


def test_json_is_written_for_valid_and_invalid_data(f30k_base, tmp_path, capsys):
    out = tmp_path / "report" / "check.json"
    assert check(f30k_base, "f30k", "--json", str(out)) == 0
    good = json.loads(out.read_text())
    assert good["ok"] is True and good["problems"] == []
    assert good["summary"]["splits"]["train"] == {"images": 12, "captions": 60, "ids": 12, "features": [12, 36, 2048]}
    assert good["summary"]["convention"] == "f30k/precomp" and good["summary"]["id_mapping"] is True
    root = _copy(f30k_base, tmp_path)
    ids_count_mismatch(root / "f30k" / "precomp")
    assert check(root, "f30k", "--json", str(out)) == 2
    bad = json.loads(out.read_text())
    assert bad["ok"] is False and len(bad["problems"]) == 1 and "test_ids.txt" in bad["problems"][0]
    assert sorted(p.name for p in out.parent.iterdir()) == ["check.json"]   # no temporary files left


def test_json_is_never_written_partially(f30k_base, tmp_path, monkeypatch):
    out = tmp_path / "check.json"
    out.write_text("previous\n")
    real_write_text = Path.write_text

    def half_then_fail(self, data, *a, **k):          # a crash (disk full, kill) in the middle of the write
        real_write_text(self, data[:len(data) // 2], *a, **k)
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises(OSError):
        check(f30k_base, "f30k", "--json", str(out))
    monkeypatch.undo()
    assert out.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["check.json"]


# --------------------------------------------------------------------------------------- download


def download(root: Path, dataset: str, *extra: str) -> int:
    return main(["download", "--dataset", dataset, "--data-root", str(root), *extra])


def test_download_finds_data_already_in_place(f30k_base, capsys):
    assert download(f30k_base, "f30k") == 0
    out = capsys.readouterr().out
    assert f"f30k: found in {f30k_base / 'f30k' / 'precomp'}; nothing to download" in out
    assert f"aahr check-data --dataset f30k --data-root {f30k_base}" in out


@pytest.mark.parametrize("leftover", [None, "empty folder", "dangling link"])
def test_download_links_the_scan_convention_into_place(leftover, tmp_path, capsys):
    folder = make_coco(tmp_path, convention="_precomp", images=False)
    nested = tmp_path / "coco" / "precomp"
    if leftover == "empty folder":
        nested.mkdir(parents=True)
    elif leftover == "dangling link":
        nested.parent.mkdir()
        nested.symlink_to("../nowhere")
    else:
        assert not nested.parent.exists()
    assert download(tmp_path, "coco") == 0
    assert f"linked {nested} -> ../coco_precomp" in capsys.readouterr().out
    assert nested.is_symlink() and os.readlink(nested) == "../coco_precomp"     # relative: survives a move
    assert nested.resolve() == folder.resolve()
    assert [p.name for p in nested.parent.iterdir()] == ["precomp"]             # no temporary link left
    report = validate_dataset(tmp_path, "coco")
    assert report.ok and report.summary["convention"] == "coco/precomp"
    assert download(tmp_path, "coco") == 0                                       # again: found, unchanged
    assert "found in" in capsys.readouterr().out and os.readlink(nested) == "../coco_precomp"


@pytest.mark.parametrize("dataset", ["f30k", "coco"])
def test_download_explains_what_is_needed_when_absent(dataset, tmp_path, capsys):
    assert download(tmp_path, dataset) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("aahr download: error: no complete copy of the ")
    assert err.rstrip("\n").endswith(realdata.instructions(dataset, tmp_path))
    for name in realdata.required_files(dataset):
        assert name in err
    assert "kuanghueilee/scan-features" in err and "params.yaml" in err and f"real.{dataset}.image_root" in err
    if dataset == "f30k":
        for part in ("train_ims.npy", "~8.6 GB", "id_mapping.json", "VSE-infinity", "flickr30k-images"):
            assert part in err
    else:
        for part in ("train_ims.npy", "~33 GB", "testall_ims.npy", "~1.5 GB", "testall_capids.txt", "PCME++",
                     "train2014", "val2014", "cocodataset.org"):
            assert part in err
    assert not (tmp_path / dataset).exists()                                    # nothing created


def test_download_names_the_missing_files_of_a_partial_copy(f30k_base, tmp_path, capsys):
    root = _copy(f30k_base, tmp_path)
    (root / "f30k" / "precomp" / "dev_caps.txt").unlink()
    assert download(root, "f30k") == 2
    err = capsys.readouterr().err
    assert f"{root / 'f30k' / 'precomp'} exists but lacks 1 file: dev_caps.txt" in err
    assert "kuanghueilee/scan-features" in err


def test_download_does_not_hide_an_incomplete_nested_copy(f30k_base, tmp_path, capsys):
    root = _copy(f30k_base, tmp_path)
    shutil.copytree(root / "f30k" / "precomp", root / "f30k_precomp")
    (root / "f30k" / "precomp" / "dev_caps.txt").unlink()
    assert download(root, "f30k") == 2
    err = capsys.readouterr().err
    assert f"{root / 'f30k_precomp'} is complete but {root / 'f30k' / 'precomp'} exists and is incomplete" in err
    assert not (root / "f30k" / "precomp").is_symlink()


def test_unknown_dataset_is_refused_by_the_api(tmp_path):
    from aahr.errors import AahrError

    with pytest.raises(AahrError, match="unknown real dataset 'synth'"):
        validate_dataset(tmp_path, "synth")
    assert eccv_subset(5)[0].shape == (5,)


def test_the_features_stay_a_memory_map_from_the_loader_to_the_batch(tmp_path):
    """The training loader never loads a whole feature file: the split's array is an np.memmap and a
    batch is made by fancy-indexing it with the batch's image rows (anything that converts the whole
    array, np.asarray or a full slice, is refused by the spy)."""
    from aahr.splits import Tokenizer, dataset_folders, load_split
    from aahr.training.data import GlobalBatchSampler, PairDataset
    from aahr.text import Vocabulary

    root = tmp_path / "data"
    make_f30k(root, n_train=10, k=4, d=16, images=False, convention="canonical")
    features, captions = dataset_folders(root, "f30k")
    split = load_split(features, captions, "train", with_global=False)
    assert isinstance(split.regions, np.memmap) and split.regions.shape == (10, 4, 16)
    assert Path(split.regions.filename) == (features / "train_ims.npy").resolve()

    class Spy:
        def __init__(self, array):
            self.array, self.keys = array, []
            self.shape, self.ndim, self.dtype = array.shape, array.ndim, array.dtype

        def __getitem__(self, key):
            rows = np.atleast_1d(np.arange(self.shape[0])[key])
            assert len(rows) < self.shape[0], f"the whole array was read ({key!r})"
            self.keys.append(rows)
            return self.array[key]

        def __array__(self, *a, **k):
            raise AssertionError("the whole feature array was converted")

        def __len__(self):
            return self.shape[0]

    spy = split.regions = Spy(split.regions)
    tok = Tokenizer(16, vocab=Vocabulary.build(split.captions))
    data = PairDataset(split, tok, 0)
    keys = next(iter(GlobalBatchSampler(len(data), 4, 0)))
    batch = data.collate(keys)
    assert batch["regions"].shape == (4, 4, 16)
    assert [list(k) for k in spy.keys] == [[j // 5 for _, j in keys]]        # one fancy index: the batch's rows
    np.testing.assert_array_equal(batch["regions"].numpy(), np.load(features / "train_ims.npy")[[j // 5 for _, j in keys]])
