"""The embedded synth dataset: determinism, layout, exact extended positives, rendering, ceiling."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from PIL import Image

from aahr.data import load_positives, positive_lists, read_captions, read_ids
from aahr.synth.captions import CaptionWriter, ObjectSpec, SceneTable, Semantics, extended_positives
from aahr.synth.generate import SPLITS, generate
from aahr.synth.oracle import oracle_recalls
from aahr.synth.scenes import COLOURS, RELATIONS, Scene, SceneObject, SceneSampler, relation_holds, render

MARGIN = 7.68  # 0.12 * 64: the default relation margin in pixels


def _bytes_of(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_generation_is_deterministic(tiny_params, tiny_synth, tmp_path):
    generate(tiny_params, tmp_path / "again", progress=False)
    first, second = _bytes_of(tiny_synth), _bytes_of(tmp_path / "again")
    assert first.keys() == second.keys() and "summary.json" in first
    assert all(first[k] == second[k] for k in first)        # summary.json too: no timing in DVC-hashed data


def test_parallel_rendering_gives_the_same_bytes(tiny_params, tmp_path):
    from aahr.synth.generate import generate_split

    for workers in (1, 2):
        (tmp_path / str(workers) / "images").mkdir(parents=True)
        generate_split("dev", 300, tiny_params["synth"], 0, tmp_path / str(workers), False, workers)
    assert _bytes_of(tmp_path / "1") == _bytes_of(tmp_path / "2")


def test_another_seed_gives_other_data(tiny_params, tiny_synth, tmp_path):
    tiny_params["data_seed"] = 1
    generate(tiny_params, tmp_path / "other", progress=False)
    assert (tmp_path / "other" / "test_caps.txt").read_text() != (tiny_synth / "test_caps.txt").read_text()


def test_counts_and_layout(tiny_params, tiny_synth):
    mapping = json.loads((tiny_synth / "id_mapping.json").read_text())
    seen = set()
    for split in SPLITS:
        n = tiny_params["synth"]["splits"][split]
        ids = read_ids(tiny_synth, split)
        caps = read_captions(tiny_synth, split, n_images=len(ids))
        assert len(ids) == n and len(caps) == 5 * n
        assert not seen & set(ids.tolist()), "image ids must not repeat across splits"
        seen |= set(ids.tolist())
        for i in ids[:3]:
            img = Image.open(tiny_synth / mapping[str(i)])
            assert img.mode == "RGB" and img.size == (64, 64)
        scenes = json.loads((tiny_synth / f"{split}_scenes.json").read_text())
        assert [s["id"] for s in scenes["images"]] == ids.tolist()
        assert len(scenes["captions"]) == 5 * n
    assert len(mapping) == len(seen)


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_every_caption_is_a_positive_of_its_own_image(tiny_synth, split):
    indptr, indices = load_positives(tiny_synth, split)
    n = len(read_ids(tiny_synth, split))
    t2i, i2t = positive_lists(indptr, indices, n)
    assert len(t2i) == 5 * n
    for j, pos in enumerate(t2i):
        assert j // 5 in pos
    for i, caps in enumerate(i2t):
        assert set(range(5 * i, 5 * i + 5)) <= set(caps.tolist())


def _brute_force(scene: Scene, sem: Semantics, margin: float) -> bool:
    """Reference semantics: try every assignment of distinct shapes to the descriptions."""
    def fits(o: SceneObject, s: ObjectSpec) -> bool:
        return all(getattr(s, f) in (None, getattr(o, f)) for f in ("shape", "colour", "size"))

    if sem.count is not None and len(scene.objects) != sem.count:
        return False
    for combo in itertools.permutations(scene.objects, len(sem.objects)):
        if all(fits(o, s) for o, s in zip(combo, sem.objects)) and (
                sem.relation is None
                or relation_holds(combo[0].x, combo[0].y, combo[1].x, combo[1].y, sem.relation, margin)):
            return True
    return False


@pytest.mark.slow   # among the heaviest: kept out of the quick tier
def test_extended_positives_match_a_brute_force_reference(tiny_params):
    cfg = tiny_params["synth"]
    scenes = SceneSampler(cfg, np.random.default_rng(5)).sample(150)
    writer = CaptionWriter(cfg, np.random.default_rng(6))
    meanings = [writer.meaning(s) for s in scenes for _ in range(5)]
    # add meanings that are not true of their scene, and vague ones, to exercise both answers
    meanings += [writer.corrupt(m) for m in meanings[:200]]
    meanings += [Semantics("shape", None, (ObjectSpec("star"),)), Semantics("count", 3)]
    indptr, indices = extended_positives(SceneTable(scenes, MARGIN), meanings)
    for j, sem in enumerate(meanings):
        expected = [i for i, s in enumerate(scenes) if _brute_force(s, sem, MARGIN)]
        assert indices[indptr[j]:indptr[j + 1]].tolist() == expected, sem


def test_underspecified_captions_have_many_positives(tiny_params):
    cfg = tiny_params["synth"]
    scenes = SceneSampler(cfg, np.random.default_rng(7)).sample(400)
    writer = CaptionWriter(cfg, np.random.default_rng(8))
    specific = [writer.meaning(s) for s in scenes]
    specific = [m for m in specific if m.kind in ("relation", "three_objects")]
    vague = [Semantics("shape", None, (ObjectSpec(shape),)) for shape in ("circle", "star", "square")]
    indptr, _ = extended_positives(SceneTable(scenes, MARGIN), vague + specific)
    counts = np.diff(indptr)
    assert counts[:3].min() >= 60, "a bare shape name fits a large share of scenes"
    assert np.median(counts[3:]) <= 5, "detailed captions fit few scenes"


def test_variants_share_content_but_differ(tiny_params):
    cfg = dict(tiny_params["synth"], variant_rate=1.0)
    scenes = SceneSampler(cfg, np.random.default_rng(3)).sample(60)
    variants = [s for s in scenes[1:] if s.variant_of is not None]
    assert len(variants) >= 50
    for v in variants:
        b = scenes[v.variant_of]
        assert len(v.objects) == len(b.objects)
        changed = sum(o != p for o, p in zip(v.objects, b.objects))
        assert 1 <= changed <= len(v.objects)  # one edit: one shape, two (swap) or all (mirror)


def _scene(*objects, n_clutter=0):
    return Scene(list(objects), background=100, clutter_seed=0, n_clutter=n_clutter)


def test_rendered_image_matches_its_scene_description():
    red = SceneObject("square", "red", "large", x=16.0, y=20.0, r=10.0, rgb=COLOURS["red"])
    ring = SceneObject("ring", "blue", "large", x=46.0, y=44.0, r=11.0, rgb=COLOURS["blue"])
    img = np.asarray(render(_scene(red, ring), 64)).astype(int)
    assert img.shape == (64, 64, 3)
    near = lambda px, rgb: np.abs(px - np.array(rgb)).max() <= 25  # noqa: E731 (noise sigma 5)
    assert near(img[20, 16], COLOURS["red"])          # square centre (row = y, column = x)
    assert near(img[44, 46 + 9], COLOURS["blue"])     # on the ring's band
    assert not near(img[44, 46], COLOURS["blue"])     # the ring's hole shows the background
    assert not near(img[60, 4], COLOURS["red"]) and not near(img[60, 4], COLOURS["blue"])
    # Where the scene says the square is, the image is red; where it says nothing is, it is not.
    box = red.box()
    inside = img[int(box[1]) + 3:int(box[3]) - 3, int(box[0]) + 3:int(box[2]) - 3]
    assert (np.abs(inside - np.array(COLOURS["red"])).max(-1) <= 25).mean() > 0.95


def test_relations_are_antisymmetric_and_need_the_margin():
    a = SceneObject("star", "red", "small", 10.0, 10.0, 5.0, (0, 0, 0))
    b = SceneObject("star", "red", "small", 30.0, 12.0, 5.0, (0, 0, 0))
    holds = {r: relation_holds(a.x, a.y, b.x, b.y, r, MARGIN) for r in RELATIONS}
    assert holds == {"left": True, "right": False, "above": False, "below": False}  # dy = 2 < margin
    assert relation_holds(b.x, b.y, a.x, a.y, "right", MARGIN)


def test_oracle_ceiling_agrees_with_simulated_random_tie_breaking(tiny_synth):
    indptr, indices = load_positives(tiny_synth, "test")
    n = len(read_ids(tiny_synth, "test"))
    expected = oracle_recalls(indptr, indices, n)
    t2i, i2t = positive_lists(indptr, indices, n)
    rng = np.random.default_rng(0)
    hits = {k: [] for k in expected if k != "rsum"}
    for _ in range(400):
        for i, caps in enumerate(i2t):  # the image's positives in random order
            order = rng.permutation(caps)
            first_own = np.flatnonzero(order // 5 == i)[0]
            for k in (1, 5, 10):
                hits[f"i2t_r{k}"].append(first_own < k)
        for j, imgs in enumerate(t2i):
            rank = np.flatnonzero(rng.permutation(imgs) == j // 5)[0]
            for k in (1, 5, 10):
                hits[f"t2i_r{k}"].append(rank < k)
    for key, h in hits.items():
        assert abs(100 * np.mean(h) - expected[key]) < 1.5, key
    assert expected["rsum"] < 600


def test_generation_failure_leaves_no_partial_output(tiny_params, tmp_path, monkeypatch):
    import aahr.synth.generate as gen

    calls = {"n": 0}
    real = gen.render

    def flaky(scene, size):
        calls["n"] += 1
        if calls["n"] > 50:
            raise RuntimeError("disk full")
        return real(scene, size)

    monkeypatch.setattr(gen, "render", flaky)
    with pytest.raises(RuntimeError):
        generate(tiny_params, tmp_path / "out", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_an_impossible_crowd_is_refused_with_the_keys_named(tiny_params, monkeypatch):
    from aahr.errors import AahrError
    from aahr.synth import scenes

    for size in scenes.SIZES:  # every shape large: 8 of them cannot keep 1.5 radii apart
        monkeypatch.setitem(scenes.SIZE_RADIUS, size, 0.165)
    cfg = dict(tiny_params["synth"], objects_min=8, objects_max=8, overlap=1.5)
    with pytest.raises(AahrError, match="synth.objects_max"):
        SceneSampler(cfg, np.random.default_rng(0)).sample(3)
