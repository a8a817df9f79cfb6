"""aahr search / compare and the qualitative grid on two tiny trained runs.

The tiny world: the tiny synth captions, ids, positives and images; random region features; global
caption embeddings computed by a saved (randomly initialised) dual encoder, so a NEW caption can be
embedded exactly as the cached ones were; global image embeddings near the mean of their captions'.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from aahr import paths
from aahr.cli import main
from aahr.data import load_positives, read_captions
from aahr.evaluation import retrieval_metrics, retrieval_ranks
from aahr.inspect_figures import qualitative_grid
from aahr.text import tokenize
from aahr.search import (DUAL_ENCODER, ERROR, EXTENDED, TRUE, UNLABELLED, QueryEncoder, Searcher,
                         SearchError, UnknownWordsError, load_gallery, search_image,
                         search_text, top_rows)

from tiny_features import GLOBAL_DIM, REGION_DIM, REGIONS, tiny_train_params

SPLITS = ("train", "dev", "test")


def _build_world(raw_in: Path, root: Path) -> dict:
    from aahr.features import global_branch as gb
    from aahr.text import Vocabulary

    raw, pre, models = root / "synth" / "raw", root / "synth" / "precomp", root / "synth" / "models"
    for d in (raw, pre, models):
        d.mkdir(parents=True)
    for split in SPLITS:
        for name in (f"{split}_caps.txt", f"{split}_ids.txt", f"{split}_positives.npz"):
            shutil.copy(raw_in / name, raw / name)
    shutil.copy(raw_in / "id_mapping.json", raw / "id_mapping.json")
    os.symlink(raw_in / "images", raw / "images")

    params = tiny_train_params(epochs=3, lr=0.01, lr_steps=[10])   # enough to learn something
    params["data_root"] = str(root)
    cfg = dict(params["global_branch"], dim=GLOBAL_DIM)
    torch.manual_seed(0)
    vocab = Vocabulary.build(read_captions(raw, "train"))
    encoder = gb.DualEncoder(cfg, len(vocab)).eval()
    gb.save_checkpoint(models / DUAL_ENCODER, encoder, vocab, cfg, 0, "tests", {})
    rng = np.random.default_rng(0)
    for split in SPLITS:
        caps = read_captions(raw, split)
        n = len(caps) // 5
        g_txt = gb.embed_captions(encoder, vocab, caps, cfg, torch.device("cpu"))        # (5N, Dg)
        centre = g_txt.reshape(n, 5, -1).mean(1)
        centre -= centre.mean(0)                                                        # the captions' differences
        g_img = centre / np.linalg.norm(centre, axis=1, keepdims=True)
        g_img = g_img + 0.1 * rng.normal(size=g_img.shape)
        g_img = (g_img / np.linalg.norm(g_img, axis=1, keepdims=True)).astype(np.float32)  # (N, Dg)
        regions = rng.normal(size=(n, REGIONS, REGION_DIM)).astype(np.float32)
        regions[:, :, :GLOBAL_DIM] += 3 * g_img[:, None, :]
        np.save(pre / f"{split}_ims.npy", regions)
        np.save(pre / f"{split}_global_img.npy", g_img)
        np.save(pre / f"{split}_global_txt.npy", g_txt)
    params_path = root / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    for variant in ("aahr", "no_proto", "gpo"):
        out = paths.run_dir(params, "synth", variant, 0)
        assert main(["train", "--params", str(params_path), "--variant", variant, "--out", str(out), "--quiet"]) == 0
    return {"root": root, "raw": raw, "features": pre, "models": models, "params": params,
            "params_path": params_path, "run": paths.run_dir(params, "synth", "aahr", 0),
            "run_b": paths.run_dir(params, "synth", "no_proto", 0), "run_gpo": paths.run_dir(params, "synth", "gpo", 0)}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a busy 2-core machine several times faster for these tiny models."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world(tiny_synth, tmp_path_factory, one_thread) -> dict:
    return _build_world(tiny_synth, tmp_path_factory.mktemp("search"))


@pytest.fixture(scope="module")
def independent(world) -> dict:
    """The test split's embeddings computed without aahr.search: load_trained + encode_split."""
    from aahr.inference import encode_split, load_trained
    from aahr.splits import load_split

    out = {}
    for key in ("run", "run_b"):
        model, tokenizer, _ = load_trained(world[key] / "best.pt")
        split = load_split(world["features"], world["raw"], "test", model.uses_global)
        img, txt = encode_split(model, split, tokenizer, torch.device("cpu"), 64)
        out[key] = img @ txt.T                                                          # (N, 5N)
    return out


def searcher(world) -> Searcher:
    return Searcher(world["run"], world["features"], world["raw"], "test",
                    world["models"] / DUAL_ENCODER, "cpu")


def cli(world, *argv) -> int:
    return main([argv[0], "--params", str(world["params_path"]), "--device", "cpu", *argv[1:]])


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


# ------------------------------------------------------------------------------------------ queries


def test_a_text_query_ranks_as_the_models_own_similarity_and_marks_the_truth(world, independent):
    s = searcher(world)
    sims = independent["run"]                                   # (N, 5N)
    caps, ids = s.gallery.captions, s.gallery.ids
    indptr, indices = load_positives(world["raw"], "test")
    first = np.flatnonzero(sims.argmax(0) == np.arange(sims.shape[1]) // 5)
    assert len(first) >= 10, "the trained tiny model should rank its own image first for more captions than chance (5)"
    for j in list(first[:5]) + [3, 77, 150]:
        same_text = [k for k, c in enumerate(caps) if tokenize(c) == tokenize(caps[j])]  # its ground truth
        hits = s.text(caps[j], top=5, allow_unknown=True)
        # the new-caption path reproduces the gallery's own embedding of that caption
        np.testing.assert_allclose(s.encoder(caps[j], allow_unknown=True), s.gallery.txt[j], atol=1e-5)
        expected = np.argsort(-sims[:, j], kind="stable")[:5]
        assert [h.row for h in hits] == list(expected)
        np.testing.assert_allclose([h.score for h in hits], sims[expected, j], atol=1e-5)
        truth = {k // 5 for k in same_text}
        ext = set(np.concatenate([indices[indptr[k]:indptr[k + 1]] for k in same_text]).tolist())
        for h in hits:
            want = TRUE if h.row in truth else EXTENDED if h.row in ext else ERROR
            assert h.mark == want and h.image_id == int(ids[h.row])
        if j in first[:5]:
            assert hits[0].row == j // 5 and hits[0].mark == TRUE  # a known positive, first


def test_an_image_query_ranks_captions_and_marks_own_and_extended_ones(world, independent):
    s = searcher(world)
    sims = independent["run"]
    indptr, indices = load_positives(world["raw"], "test")
    n_ext = 0
    for row in (0, 7, 39):
        hits = s.image(int(s.gallery.ids[row]), top=10)
        expected = np.argsort(-sims[row], kind="stable")[:10]
        assert [h.row for h in hits] == list(expected)
        for h in hits:
            ext = row in indices[indptr[h.row]:indptr[h.row + 1]]
            want = TRUE if h.row // 5 == row else EXTENDED if ext else ERROR
            assert h.mark == want and h.caption == s.gallery.captions[h.row]
            n_ext += h.mark == EXTENDED
    assert n_ext > 0, "some retrieved caption should be an extended positive on synth"


def test_a_new_caption_is_unlabelled_and_ties_go_against_the_query(world):
    s = searcher(world)
    hits = s.text("a red star", top=3, allow_unknown=True)
    assert len(hits) == 3 and all(h.mark == UNLABELLED for h in hits)
    scores = np.array([0.5, 0.9, 0.9, 0.1, 0.9])
    matching = np.array([False, True, False, False, False])
    assert list(top_rows(scores, 3, matching)) == [2, 4, 1]   # the tied positive ranks last of the three
    assert list(top_rows(scores, 10, matching)) == [2, 4, 1, 0, 3]


def test_the_gallery_is_embedded_once_and_rebuilt_when_an_input_changes(world, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(world["run"] / "best.pt", run / "best.pt")
    g1 = load_gallery(run, world["features"], world["raw"])
    cache = run / "gallery_test.npz"
    assert g1.embedded and cache.is_file()
    stamp = cache.stat().st_mtime_ns
    g2 = load_gallery(run, world["features"], world["raw"])
    assert not g2.embedded and cache.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(g1.txt, g2.txt)
    st = (run / "best.pt").stat()                                 # a retrained model: embed again
    os.utime(run / "best.pt", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert load_gallery(run, world["features"], world["raw"]).embedded
    assert not load_gallery(run, world["features"], world["raw"]).embedded
    cache.write_bytes(b"not a zip")                               # a damaged cache: embed again
    assert load_gallery(run, world["features"], world["raw"]).embedded


def test_the_global_encoder_must_exist_and_reproduce_the_cached_features(world, tmp_path):
    from aahr.features import global_branch as gb
    from aahr.text import Vocabulary

    g = load_gallery(world["run"], world["features"], world["raw"])
    check = (world["features"], "test", g.captions)
    with pytest.raises(SearchError, match="uses the global branch.*missing"):
        QueryEncoder(world["run"] / "best.pt", tmp_path / "none.pt", check=check)
    cfg = dict(world["params"]["global_branch"], dim=GLOBAL_DIM)
    torch.manual_seed(1)                                          # another encoder: other embeddings
    vocab = Vocabulary.build(g.captions)
    gb.save_checkpoint(tmp_path / "other.pt", gb.DualEncoder(cfg, len(vocab)), vocab, cfg, 1, "x", {})
    with pytest.raises(SearchError, match="does not reproduce .*test_global_txt.npy"):
        QueryEncoder(world["run"] / "best.pt", tmp_path / "other.pt", check=check)
    encoder = QueryEncoder(world["run"] / "best.pt", world["models"] / DUAL_ENCODER, check=check)
    with pytest.raises(UnknownWordsError, match="'zorblax'") as err:
        encoder("a zorblax square")
    assert err.value.words == ["zorblax"]


def test_a_model_without_the_global_branch_needs_no_global_encoder(world, tmp_path):
    s = Searcher(world["run_gpo"], world["features"], world["raw"], "test", tmp_path / "none.pt", "cpu")
    assert s.encoder.global_text is None
    caps = s.gallery.captions
    for j in (0, 11, 199):
        np.testing.assert_allclose(s.encoder(caps[j], allow_unknown=True), s.gallery.txt[j], atol=1e-5)
        hits = s.text(caps[j], top=3, allow_unknown=True)
        assert [h.row for h in hits] == list(np.argsort(-(s.gallery.img @ s.gallery.txt[j]), kind="stable")[:3])
    with pytest.raises(UnknownWordsError, match="'zorblax' not in the text encoder's vocabulary"):
        s.text("a zorblax")


# ------------------------------------------------------------------------------- the command line


def test_search_cli_prints_marked_results_and_draws_the_grid(world, tmp_path, capsys):
    caption = read_captions(world["raw"], "test")[0]
    out = tmp_path / "grid.png"
    assert cli(world, "search", "--variant", "aahr", "--text", caption, "--top", "3", "--out", str(out)) == 0
    text = capsys.readouterr().out
    assert "a gallery caption of image" in text and str(out) in text
    assert any(m in text for m in (TRUE, EXTENDED, ERROR))
    assert png_size(out) == (3 * 160, 200 + 30)
    image_id = int((world["raw"] / "test_ids.txt").read_text().split()[0])
    n_captions = len(read_captions(world["raw"], "test"))
    assert cli(world, "search", "--run", str(world["run"]), "--image", str(image_id), "--top", str(n_captions)) == 0
    text = capsys.readouterr().out
    assert "read from" in text and "gallery_test.npz" in text                  # the cached gallery
    lines = [ln for ln in text.splitlines() if ln.strip()[:1].isdigit()]
    assert len(lines) == n_captions                                             # every caption, ranked
    assert sum("true positive" in ln for ln in lines) == 5                      # the image's own five


@pytest.mark.parametrize("argv, message", [
    (["--image", "999"], r"image id 999 is not in .*test_ids.txt"),
    (["--image", "abc"], r"image id 'abc' is not an integer"),
    (["--text", "   "], r"empty query"),
    (["--text", "..."], r"empty query"),
    (["--text", "a zorblax and a quuxle"], r"unknown words in the query: 'zorblax', 'quuxle'"),
    (["--text", "a red star", "--top", "0"], r"--top 0"),
])
def test_search_errors_name_the_problem(world, capsys, argv, message):
    import re

    assert cli(world, "search", "--variant", "aahr", *argv) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err


def test_missing_runs_are_named(world, tmp_path, capsys):
    assert cli(world, "search", "--run", str(tmp_path / "nothing"), "--image", "1") == 2
    assert "nothing: run folder not found" in capsys.readouterr().err
    assert cli(world, "search", "--variant", "no_gnn", "--image", "1") == 2     # never trained
    assert "no_gnn/seed0: run folder not found" in capsys.readouterr().err
    assert cli(world, "search", "--variant", "nope", "--image", "1") == 2
    assert "--variant nope: not a variant" in capsys.readouterr().err
    assert cli(world, "compare", "aahr", "nope") == 2
    assert "nope: neither a run folder nor a variant" in capsys.readouterr().err


def test_compare_ranks_agree_with_the_evaluation_metrics(world, independent, tmp_path, capsys):
    out, js = tmp_path / "cmp.png", tmp_path / "cmp.json"
    assert cli(world, "compare", "aahr", "no_proto", "--json", str(js), "--out", str(out), "--rows", "2",
               "--top", "2") == 0
    text = capsys.readouterr().out
    assert "text-to-image (rank of the caption's image under aahr / no_proto)" in text
    data = json.loads(js.read_text())
    for side, key in (("a", "run"), ("b", "run_b")):
        i2t, t2i = retrieval_ranks(independent[key])
        assert data["i2t"][side] == i2t.tolist() and data["t2i"][side] == t2i.tolist()
        m = retrieval_metrics(independent[key])
        assert 100 * np.mean(np.array(data["t2i"][side]) == 0) == pytest.approx(m["t2i_r1"])
        assert 100 * np.mean(np.array(data["i2t"][side]) == 0) == pytest.approx(m["i2t_r1"])
        assert data["summary"]["t2i"][f"{side}_r1"] == pytest.approx(m["t2i_r1"])
    a, b = np.array(data["t2i"]["a"]), np.array(data["t2i"]["b"])
    s = data["summary"]["t2i"]
    assert (s["a_wins"], s["b_wins"], s["ties"]) == (int((a < b).sum()), int((b < a).sum()), int((a == b).sum()))
    assert s["mean_change"] == pytest.approx((b - a).mean())
    assert data["a"]["label"] == "aahr" and data["b"]["label"] == "no_proto"
    assert png_size(out) == (5 * 160, 2 * 200 + 30)                # 2 + gap + 2 cells, 2 rows


# ------------------------------------------------------------------------ the figure stage's grid


def test_qualitative_grid_is_a_png_of_the_expected_size_and_deterministic(world, tmp_path):
    out = tmp_path / "q.png"
    queries = qualitative_grid(world["run"], world["features"], world["raw"], out, n_queries=3, top=4, seed=5)
    assert png_size(out) == (4 * 160, 3 * 200 + 30)
    again = qualitative_grid(world["run"], world["features"], world["raw"], tmp_path / "q2.png", n_queries=3,
                             top=4, seed=5)
    assert [q["caption_row"] for q in queries] == [q["caption_row"] for q in again]
    other = qualitative_grid(world["run"], world["features"], world["raw"], tmp_path / "q3.png", n_queries=3,
                             top=4, seed=6)
    assert [q["caption_row"] for q in other] != [q["caption_row"] for q in queries]
    assert len({q["caption_row"] // 5 for q in queries}) == 3      # distinct images
    for q in queries:
        assert len(q["hits"]) == 4
        for h in q["hits"]:
            assert (h["mark"] == TRUE) == (h["row"] == q["caption_row"] // 5)
        if q["rank"] < 4:                                          # its image is in the top 4, marked
            assert q["hits"][q["rank"]]["mark"] == TRUE
    pixels = np.asarray(Image.open(out).convert("RGB")).astype(int)
    green = (np.abs(pixels - [0x2C, 0xA0, 0x2C]).sum(-1) < 30).sum()
    red = (np.abs(pixels - [0xD6, 0x27, 0x28]).sum(-1) < 30).sum()
    assert red > 0                                                     # errors are marked (synth shapes can be
    if any(h["mark"] == TRUE for q in queries for h in q["hits"]):     # green too: green alone proves nothing)
        assert green > 0


def test_search_and_image_helpers_reject_bad_ids(world):
    g = load_gallery(world["run"], world["features"], world["raw"])
    with pytest.raises(SearchError, match="image id 5 is not in"):
        search_image(g, 5)
    assert len(search_text(g, g.txt[0], top=100)) == g.n_images    # top larger than the gallery
