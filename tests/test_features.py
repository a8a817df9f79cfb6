"""Feature stages: region features, the frozen global branch, the real-image paths and text backbones.

Tiny data (the session's tiny synth), tiny models and one epoch: the whole file runs in about a
minute on 2 CPU cores. The real-image tests build randomly initialised Faster R-CNN / OpenCLIP
models (nothing is downloaded).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from aahr.cli import main
from aahr.features import store
from aahr.features.common import box_geometry

SPLITS = ("pretrain", "train", "dev", "test")
TINY_SIZES = {"pretrain": 120, "train": 60, "dev": 20, "test": 40}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and on a machine shared with other jobs two threads
    can be several times slower (each parallel region waits for a descheduled thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def feature_params(tiny_params: dict) -> dict:
    """The shipped params with tiny splits and tiny, one-epoch feature models."""
    p = copy.deepcopy(tiny_params)
    p["regions"] |= {"feature_dim": 32, "width": 8, "pool": 4, "epochs": 1, "batch_size": 32,
                     "extract_batch_size": 64}
    p["global_branch"] |= {"dim": 16, "width": 8, "word_dim": 16, "hidden": 16, "epochs": 1,
                           "batch_size": 32, "embed_batch_size": 64}
    return p


def write_params(tmp_path: Path, params: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def run_stage(stage: str, params_file: Path, raw: Path, out: Path, models: Path, *extra: str) -> int:
    return main([stage, "--params", str(params_file), "--input", str(raw), "--out", str(out),
                 "--models", str(models), "--quiet", "--device", "cpu", *extra])


def leftovers(folder: Path) -> list[str]:
    """Temporary files aahr.io leaves only when an atomic write is interrupted badly."""
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


# ------------------------------------------------------------------------------------ synth regions


@pytest.fixture(scope="module")
def regions_run(tiny_synth, tmp_path_factory):
    """One extraction of every tiny split (shared by the shape, reuse and determinism tests)."""
    from conftest import tiny_params_dict

    tmp = tmp_path_factory.mktemp("regions")
    params = feature_params(tiny_params_dict())
    pfile = write_params(tmp, params)
    assert run_stage("regions", pfile, tiny_synth, tmp / "precomp", tmp / "models") == 0
    return tmp, params, pfile


def test_regions_write_every_split_in_the_fields_layout(regions_run, tiny_synth):
    tmp, params, _ = regions_run
    k, d = params["regions"]["regions_per_image"], params["regions"]["feature_dim"] + 5
    for split in SPLITS:
        ims, boxes = store.load_regions(tmp / "precomp", split, n_images=TINY_SIZES[split])
        assert isinstance(ims, np.memmap) and isinstance(boxes, np.memmap)
        assert ims.shape == (TINY_SIZES[split], k, d) and ims.dtype == np.float32
        assert boxes.shape == (TINY_SIZES[split], k, 4) and boxes.dtype == np.float32
        assert np.isfinite(ims).all()
        size = params["synth"]["image_size"]
        assert (boxes[..., 0] < boxes[..., 2]).all() and (boxes[..., 1] < boxes[..., 3]).all()
        assert boxes.min() >= 0 and boxes.max() <= size
        # The appended geometry is the box as fractions of the image.
        np.testing.assert_allclose(ims[..., -5:-1], boxes / size, atol=1e-6)
        assert ims[..., :-5].std() > 0  # not a constant filler
    summary = json.loads((tmp / "precomp/regions.json").read_text())
    m = summary["extractor_metrics"]
    assert m["heldout_objects"] > 0 and 0 <= m["shape_acc"] <= 100 and m["train_images"] == 108
    assert leftovers(tmp) == []


def test_regions_proposals_come_from_pixels_not_the_scene_file(regions_run, tiny_synth, tmp_path):
    """Extraction of a split whose scene description is absent works and gives the same boxes."""
    tmp, params, pfile = regions_run
    raw = tmp_path / "raw"
    raw.mkdir()
    for f in tiny_synth.iterdir():
        if f.name != "test_scenes.json":
            (raw / f.name).symlink_to(f)
    assert run_stage("regions", pfile, raw, tmp_path / "precomp", tmp / "models", "--splits", "test") == 0
    a = np.load(tmp / "precomp/test_boxes.npy")
    b = np.load(tmp_path / "precomp/test_boxes.npy")
    np.testing.assert_array_equal(a, b)


def test_regions_are_deterministic_under_the_seed_and_reuse_the_trained_extractor(regions_run, tiny_synth,
                                                                                   tmp_path, capsys):
    tmp, params, pfile = regions_run
    capsys.readouterr()
    assert run_stage("regions", pfile, tiny_synth, tmp_path / "again", tmp_path / "models", "--splits",
                     "dev") == 0
    assert "region extractor trained" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(tmp / "precomp/dev_ims.npy"), np.load(tmp_path / "again/dev_ims.npy"))
    np.testing.assert_array_equal(np.load(tmp / "precomp/dev_boxes.npy"),
                                  np.load(tmp_path / "again/dev_boxes.npy"))
    assert run_stage("regions", pfile, tiny_synth, tmp_path / "third", tmp_path / "models", "--splits",
                     "dev") == 0
    assert "region extractor reused" in capsys.readouterr().out
    # Another seed trains another extractor.
    other = dict(params, data_seed=params["data_seed"] + 1)
    assert run_stage("regions", write_params(tmp_path, other), tiny_synth, tmp_path / "seed1",
                     tmp_path / "models", "--splits", "dev") == 0
    assert "region extractor trained" in capsys.readouterr().out
    assert not np.array_equal(np.load(tmp / "precomp/dev_ims.npy"), np.load(tmp_path / "seed1/dev_ims.npy"))


def test_a_crash_during_extraction_leaves_the_old_file_and_no_partial_one(regions_run, tiny_synth, tmp_path,
                                                                          monkeypatch):
    from aahr.features import regions

    tmp, params, pfile = regions_run
    out = tmp_path / "precomp"
    out.mkdir()
    old = np.zeros((1, 1, 1), np.float32)
    np.save(out / "pretrain_ims.npy", old)
    real = regions.extract_batch
    calls = []

    def crash_on_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(regions, "extract_batch", crash_on_second_batch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_stage("regions", pfile, tiny_synth, out, tmp / "models")
    assert len(calls) == 2
    np.testing.assert_array_equal(np.load(out / "pretrain_ims.npy"), old)  # untouched
    assert sorted(p.name for p in out.iterdir()) == ["pretrain_ims.npy"]   # no boxes, no temporary file


def test_loader_names_the_file_on_a_bad_shape_or_dtype(tmp_path):
    np.save(tmp_path / "dev_ims.npy", np.zeros((4, 3, 8), np.float64))
    with pytest.raises(store.FeatureError, match="dev_ims.npy: dtype float64"):
        store.load_regions(tmp_path, "dev", with_boxes=False)
    np.save(tmp_path / "dev_ims.npy", np.zeros((4, 3, 8), np.float32))
    with pytest.raises(store.FeatureError, match=r"dev_ims.npy: shape \(4, 3, 8\), expected 5 along axis 0"):
        store.load_regions(tmp_path, "dev", n_images=5, with_boxes=False)
    np.save(tmp_path / "dev_boxes.npy", np.zeros((4, 2, 4), np.float32))
    with pytest.raises(store.FeatureError, match="dev_boxes.npy"):
        store.load_regions(tmp_path, "dev")
    with pytest.raises(store.FeatureError, match="test_ims.npy: file not found"):
        store.load_regions(tmp_path, "test")
    np.save(tmp_path / "dev_global_img.npy", np.zeros((4, 6), np.float32))
    np.save(tmp_path / "dev_global_txt.npy", np.zeros((19, 6), np.float32))
    with pytest.raises(store.FeatureError, match="dev_global_txt.npy: shape \\(19, 6\\), expected 20"):
        store.load_global(tmp_path, "dev")


def test_npy_writer_is_atomic(tmp_path):
    target = tmp_path / "x.npy"
    with pytest.raises(ValueError):
        with store.npy_writer(target, (3, 2)) as a:
            a[:] = 1
            raise ValueError("boom")
    assert list(tmp_path.iterdir()) == []
    with store.npy_writer(target, (3, 2)) as a:
        a[:] = 2
    assert np.load(target).tolist() == [[2, 2]] * 3 and leftovers(tmp_path) == []


def test_box_geometry_is_relative_to_each_image():
    g = box_geometry(np.array([[[0, 0, 50, 20]], [[10, 10, 20, 20]]], np.float32), np.array([[20, 100], [40, 40]]))
    np.testing.assert_allclose(g[0, 0], [0, 0, 0.5, 1.0, 0.5])
    np.testing.assert_allclose(g[1, 0], [0.25, 0.25, 0.5, 0.5, 0.0625])


# ------------------------------------------------------------------------------- synth global branch


def test_global_branch_writes_normalised_embeddings_deterministically(tiny_synth, tiny_params, tmp_path, capsys):
    params = feature_params(tiny_params)
    pfile = write_params(tmp_path, params)
    for name in ("a", "b"):
        assert run_stage("global-branch", pfile, tiny_synth, tmp_path / name, tmp_path / f"models_{name}") == 0
    out = capsys.readouterr().out
    assert "zero-shot on test: i2t R@1" in out and "dual encoder trained" in out
    dg = params["global_branch"]["dim"]
    for split in SPLITS:
        img, txt = store.load_global(tmp_path / "a", split, n_images=TINY_SIZES[split])
        assert img.shape == (TINY_SIZES[split], dg) and txt.shape == (5 * TINY_SIZES[split], dg)
        assert img.dtype == np.float32 and txt.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1, atol=1e-5)
        img_b, txt_b = store.load_global(tmp_path / "b", split)
        np.testing.assert_array_equal(img, img_b)
        np.testing.assert_array_equal(txt, txt_b)
    summary = json.loads((tmp_path / "a/global_branch.json").read_text())
    assert summary["encoder_metrics"]["vocabulary"] > 20
    assert set(summary["zero_shot_test"]) >= {"i2t_r1", "t2i_r1"}
    assert leftovers(tmp_path) == []


def test_global_branch_vocabulary_is_built_from_pretrain_captions_only(tiny_synth):
    from aahr.data import read_captions
    from aahr.text import Vocabulary

    caps = read_captions(tiny_synth, "pretrain")
    vocab = Vocabulary.build(caps)
    assert Vocabulary.build(list(caps)).words == vocab.words  # same captions, same indices
    ids, lengths = vocab.encode(["a red star, left of a zzzunknown ring."], 32)
    assert ids.shape == (1, 8) and lengths.tolist() == [8]
    assert ids[0, 6].item() == 1 and (ids[0, :6] > 1).all()  # only the unknown word is <unk>


# --------------------------------------------------------------------------------------- real images


def real_dataset(tmp_path: Path) -> Path:
    """Two small photos of different sizes in the field's raw layout (Flickr30K-style id_mapping)."""
    raw = tmp_path / "raw"
    (raw / "photos").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(60, 80), (96, 64)]):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(raw / "photos" / f"{i}.jpg")
    (raw / "id_mapping.json").write_text(json.dumps({"7": "0.jpg", "9": "1.jpg"}))
    (raw / "test_ids.txt").write_text("7\n9\n")
    (raw / "test_caps.txt").write_text("".join(f"a photo number {i}\n" for i in range(10)))
    return raw


def test_faster_rcnn_path_gives_k_regions_per_real_image(tmp_path):
    from aahr.features import detector
    from aahr.features.images import image_files

    raw = real_dataset(tmp_path)
    torch.manual_seed(0)
    model = detector.build_detector("fasterrcnn_resnet50_fpn", None, min_size=64, max_size=128)
    files = image_files(raw, "test", raw / "photos")
    shape = detector.extract_files(model, files, 5, 2, True, torch.device("cpu"), tmp_path / "test_ims.npy",
                                   tmp_path / "test_boxes.npy")
    assert shape == (2, 5, 1024 + 5)
    ims, boxes = store.load_regions(tmp_path, "test", n_images=2)
    assert ims.dtype == np.float32 and np.isfinite(ims).all()
    for i, (h, w) in enumerate([(60, 80), (96, 64)]):  # boxes in each image's own pixels
        assert boxes[i, :, [0, 2]].max() <= w + 1e-3 and boxes[i, :, [1, 3]].max() <= h + 1e-3
        np.testing.assert_allclose(ims[i, :, -5:-1], boxes[i] / [w, h, w, h], atol=1e-5)


def test_regions_command_on_real_images_loads_a_local_weights_file(tmp_path, tiny_params, capsys):
    from aahr.features import detector

    raw = real_dataset(tmp_path)
    params = copy.deepcopy(tiny_params)
    weights = tmp_path / "frcnn.pth"
    torch.manual_seed(0)
    torch.save(detector.build_detector("fasterrcnn_mobilenet_v3_large_fpn", None, 64, 128).state_dict(), weights)
    params["regions"]["detector"] |= {"arch": "fasterrcnn_mobilenet_v3_large_fpn", "min_size": 64, "max_size": 128}
    pfile = write_params(tmp_path, params)
    assert main(["regions", "--params", str(pfile), "--dataset", "f30k", "--input", str(raw), "--image-root",
                 str(raw / "photos"), "--out", str(tmp_path / "precomp"), "--weights", str(weights),
                 "--quiet"]) == 0
    ims, boxes = store.load_regions(tmp_path / "precomp", "test", n_images=2)
    assert ims.shape == (2, params["regions"]["regions_per_image"], 1024 + 5)
    assert "fasterrcnn_mobilenet_v3_large_fpn" in capsys.readouterr().out


@pytest.mark.parametrize("stage, words", [
    ("regions", ["Faster R-CNN", "weights file not found", "--weights", "_ims.npy", "precomp"]),
    ("global-branch", ["OpenCLIP ViT-B-32", "weights file not found", "--weights",
                       "aahr download --dataset DATASET --what weights"]),
])
def test_a_missing_weights_file_stops_with_a_clear_message(stage, words, tmp_path, tiny_params, capsys):
    raw = real_dataset(tmp_path)
    pfile = write_params(tmp_path, tiny_params)
    code = main([stage, "--params", str(pfile), "--dataset", "coco", "--input", str(raw), "--out",
                 str(tmp_path / "precomp"), "--weights", str(tmp_path / "nope.pth"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    for w in words:
        assert w in err, (w, err)
    assert "nope.pth" in err and not (tmp_path / "precomp").exists()


def test_a_file_that_is_not_a_detector_checkpoint_is_named(tmp_path, tiny_params, capsys):
    raw = real_dataset(tmp_path)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    code = main(["regions", "--params", str(write_params(tmp_path, tiny_params)), "--dataset", "f30k",
                 "--input", str(raw), "--out", str(tmp_path / "precomp"), "--weights", str(junk), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and f"{junk}: not a fasterrcnn_resnet50_fpn state dict" in err
    assert "Traceback" not in err and not (tmp_path / "precomp").exists()


def test_openclip_path_embeds_real_images_and_captions(tmp_path):
    from aahr.features import global_branch as gb
    from aahr.features.images import image_files

    raw = real_dataset(tmp_path)
    torch.manual_seed(0)
    model, preprocess, tokenizer = gb.build_openclip("ViT-B-32", None, torch.device("cpu"))
    caps = (raw / "test_caps.txt").read_text().splitlines()
    img, txt = gb.openclip_embed_split(model, preprocess, tokenizer, image_files(raw, "test", raw / "photos"),
                                       caps, 2, torch.device("cpu"))
    assert img.shape == (2, 512) and txt.shape == (10, 512)
    assert img.dtype == np.float32 and txt.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1, atol=1e-5)
    assert not np.allclose(txt[0], txt[1])  # different captions, different embeddings


# ----------------------------------------------------------------------------------------------- text


def test_packaged_minilm_loads_offline_and_gives_384_wide_words(monkeypatch):
    from aahr.text import BertTextEncoder, load_text_backbone, packaged_minilm_dir

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert (packaged_minilm_dir() / "model.safetensors").is_file()
    tokenizer, model = load_text_backbone()
    assert model.config.hidden_size == 384
    tok = tokenizer(["a small red star left of a blue ring"], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**tok).last_hidden_state
    assert hidden.shape == (1, tok["input_ids"].shape[1], 384)
    enc = BertTextEncoder(finetune=False, extra_layers=1, out_dim=64).train()
    assert not enc.backbone.training and not any(p.requires_grad for p in enc.backbone.parameters())
    t = enc.tokenize(["a red star", "two green rings and a tiny square"])
    words, mask = enc(t["input_ids"], t["attention_mask"])
    assert words.shape == (2, t["input_ids"].shape[1], 64) and mask.dtype == torch.bool
    assert mask[0].sum() < mask[1].sum()


def test_a_folder_without_a_model_is_a_clear_error(tmp_path):
    from aahr.text import TextBackboneError, load_text_backbone

    with pytest.raises(TextBackboneError, match="not a local Hugging Face model folder"):
        load_text_backbone(tmp_path)


def test_bigru_text_encoder_masks_padding():
    from aahr.text import BiGRUTextEncoder, Vocabulary

    vocab = Vocabulary.build(["a red star", "a blue ring left of a red star"])
    enc = BiGRUTextEncoder(len(vocab), 8, 8, 16)
    ids, lengths = vocab.encode(["a red star", "a blue ring left of a red star"], 32)
    words, mask = enc(ids, lengths)
    assert words.shape == (2, 8, 16) and mask.sum(1).tolist() == [3, 8]
    alone, _ = enc(*vocab.encode(["a red star"], 32))
    torch.testing.assert_close(alone[0], words[0, :3])  # padding does not leak into the short caption
