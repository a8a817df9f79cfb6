"""aahr train on tiny random features: outputs, resume, NaN handling, data parallelism, batching."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from aahr.cli import main
from aahr.model.aahr import AAHR
from aahr.splits import Tokenizer, load_split
from aahr.training.data import GlobalBatchSampler, PairDataset

from tiny_features import tiny_train_params, write_tiny_features

TERMS = ("triplet", "relation", "prototypes", "moco")


@pytest.fixture(scope="module")
def data_root(tiny_synth, tmp_path_factory) -> Path:
    return write_tiny_features(tiny_synth, tmp_path_factory.mktemp("data"))


def params_file(folder: Path, data_root: Path, name: str = "p.yaml", **train) -> Path:
    params = tiny_train_params(**train)
    params["data_root"] = str(data_root)
    path = folder / name
    path.write_text(yaml.safe_dump(params))
    return path


def train_cli(params: Path, out: Path, *extra: str, variant: str = "aahr") -> int:
    return main(["train", "--params", str(params), "--variant", variant, "--out", str(out), "--quiet", *extra])


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def full_run(data_root, tmp_path_factory) -> Path:
    """An uninterrupted 2-epoch aahr run on the tiny data."""
    tmp = tmp_path_factory.mktemp("full")
    assert train_cli(params_file(tmp, data_root), tmp / "out") == 0
    return tmp / "out"


def test_train_writes_checkpoints_log_and_numeric_dev_metrics(full_run):
    assert {p.name for p in full_run.iterdir()} == {"last.pt", "best.pt", "log.jsonl", "log.timing.json",
                                                    "metrics.json"}
    log = read_log(full_run)
    assert [r["epoch"] for r in log] == [1, 2]
    for r in log:   # no timing in the log (its bytes must not change run to run): that is in log.timing.json
        assert all(t in r for t in TERMS) and "dev_rsum" in r and not any("seconds" in k for k in r)
        assert len(r["provenance"]["code"]["sources_sha256"]) == 64 and len(r["provenance"]["params_sha256"]) == 64
        assert r["loss"] == pytest.approx(sum(r[t] for t in TERMS))
    timing = json.loads((full_run / "log.timing.json").read_text())["epochs"]
    assert [t["epoch"] for t in timing] == [1, 2] and all(t["seconds_per_step"] > 0 for t in timing)
    assert log[1]["relation"] > 0 and log[1]["moco"] > 0 and log[1]["prototypes"] > 0
    assert log[1]["lr"] == pytest.approx(0.1 * log[0]["lr"])            # lr step at epoch 1 (tiny.yaml)
    metrics = json.loads((full_run / "metrics.json").read_text())
    assert set(metrics.pop("provenance")) == {"code", "params_sha256"}
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values())
    best = max(log, key=lambda r: r["dev_rsum"])
    assert metrics["best_epoch"] == best["epoch"] and metrics["dev_rsum"] == best["dev_rsum"]
    last = torch.load(full_run / "last.pt", weights_only=True)            # state dicts and plain values only
    best_ckpt = torch.load(full_run / "best.pt", weights_only=True)
    assert last["epoch"] == 2 and best_ckpt["epoch"] == best["epoch"] and "optimizer" not in best_ckpt
    assert any(k.startswith("momentum.") for k in last["model"]) and "image_queue.keys" in last["model"]


def test_every_epoch_logs_the_health_of_every_module_that_is_on(full_run):
    from aahr.health import MODULES, by_module

    for r in read_log(full_run):
        health = by_module(r)
        assert set(MODULES) <= set(health)
        assert 0 <= health["prototypes"]["code_entropy"] <= 1 + 1e-6
        assert health["fusion"]["gate_mean"] == pytest.approx(health["fusion"]["gate_mean"]) and \
            0 < health["fusion"]["gate_mean"] < 1
        assert health["triplet"]["grad_norm"] > 0                          # measured on the epoch's last step
    last = by_module(read_log(full_run)[-1])
    for module in ("relation", "prototypes", "moco"):
        assert last[module]["grad_ratio"] > 0                               # every term past its warm-up by then
        assert last[module]["grad_ratio_n"] == 2 and last[module]["grad_ratio_sd"] >= 0   # health.grad_steps
    assert 0 < last["moco"]["top1_chance"] < 1 and last["moco"]["positive_rank"] >= 1
    gate = last["fusion"]
    assert 0 <= gate["gate_q05"] <= gate["gate_q25"] <= gate["gate_q50"] <= gate["gate_q75"] <= gate["gate_q95"] <= 1
    assert 0 <= gate["gate_saturated"] <= 1
    assert {by_module(r)["fusion"]["gate_start"] for r in read_log(full_run)} == {gate["gate_start"]}
    # synth knows every caption's true images: the share of used negatives that are true matches
    assert 0 <= last["triplet"]["false_negatives"] <= 1 and 0 <= last["relation"]["false_negatives"] <= 1


def test_a_variant_trains_with_the_loss_it_declares_warm_up_included(data_root, tmp_path, monkeypatch):
    import aahr.model.aahr as aahr_model
    from aahr.config import resolve_variant

    params = tiny_train_params()
    params["data_root"] = str(data_root)
    params["variants"]["gpo"]["set"] = {"losses.sampling": "hardest", "losses.hardest_warmup_epochs": 1}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(params))
    assert resolve_variant(params, "gpo")["losses"]["sampling"] == "hardest"
    assert resolve_variant(params, "aahr")["losses"]["sampling"] == "distance_weighted"   # the others keep theirs
    used = []
    real = aahr_model.triplet_loss

    def spy(img, txt, ids, margin, sampling, *args, **kwargs):
        used.append(sampling)
        return real(img, txt, ids, margin, sampling, *args, **kwargs)

    monkeypatch.setattr(aahr_model, "triplet_loss", spy)
    assert train_cli(path, tmp_path / "out", variant="gpo") == 0
    steps = len(used) // 2
    assert used[:steps] == ["mean"] * steps and used[steps:] == ["hardest"] * steps   # one warm-up epoch, then max
    assert [r["sampling"] for r in read_log(tmp_path / "out")] == ["mean", "hardest"]
    ckpt = torch.load(tmp_path / "out" / "last.pt", weights_only=True)
    assert ckpt["fingerprint"]["losses"]["sampling"] == "hardest" and "set" not in ckpt["fingerprint"]["switches"]


def test_the_best_checkpoint_alone_restores_the_model_and_its_dev_metrics(full_run, data_root):
    from aahr.inference import evaluate_split, load_trained

    model, tokenizer, ckpt = load_trained(full_run / "best.pt")
    dev = load_split(data_root / "synth" / "precomp", data_root / "synth" / "raw", "dev", with_global=True)
    metrics = evaluate_split(model, dev, tokenizer, torch.device("cpu"), 64)
    assert metrics == ckpt["dev"]
    assert metrics["rsum"] == json.loads((full_run / "metrics.json").read_text())["dev_rsum"]


def test_resume_continues_from_the_last_epoch_and_matches_an_uninterrupted_run(full_run, data_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert train_cli(params_file(tmp_path, data_root, "one.yaml", epochs=1), out) == 0
    assert [r["epoch"] for r in read_log(out)] == [1]
    capsys.readouterr()
    assert train_cli(params_file(tmp_path, data_root, "two.yaml", epochs=2), out, "--resume") == 0
    assert "Resuming from epoch 1" in capsys.readouterr().out
    def numbers(record: dict) -> dict:   # the params files differ (epochs), so their hashes do
        return {k: v for k, v in record.items() if k != "provenance"}

    assert numbers(json.loads((out / "metrics.json").read_text())) == numbers(json.loads((full_run / "metrics.json").read_text()))
    for a, b in zip(read_log(out), read_log(full_run)):
        assert numbers(a) == numbers(b)


def test_an_existing_run_is_not_overwritten_and_changed_settings_cannot_resume(full_run, data_root, tmp_path, capsys):
    p = params_file(tmp_path, data_root)
    assert train_cli(p, full_run) == 2
    assert "pass --resume" in capsys.readouterr().err
    changed = params_file(tmp_path, data_root, "lr.yaml", lr=0.1)
    assert train_cli(changed, full_run, "--resume") == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.slow   # among the heaviest: kept out of the quick tier
def test_resume_matching_resumes_the_same_settings_and_restarts_changed_ones(full_run, data_root, tmp_path,
                                                                           capsys):
    out = tmp_path / "out"
    assert train_cli(params_file(tmp_path, data_root, "one.yaml", epochs=1), out) == 0
    capsys.readouterr()
    assert train_cli(params_file(tmp_path, data_root, "two.yaml", epochs=2), out, "--resume-matching") == 0
    assert "Resuming from epoch 1" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text()) == json.loads((full_run / "metrics.json").read_text())
    assert train_cli(params_file(tmp_path, data_root, "two.yaml", epochs=2), out, "--resume-matching") == 0
    assert "a finished run: starting over" in capsys.readouterr().out  # asked again: code or inputs changed
    assert json.loads((out / "metrics.json").read_text()) == json.loads((full_run / "metrics.json").read_text())
    assert train_cli(params_file(tmp_path, data_root, "one.yaml", epochs=1), out, "--resume-matching") == 0
    capsys.readouterr()
    changed = params_file(tmp_path, data_root, "lr.yaml", lr=0.002, epochs=2)
    assert train_cli(changed, out, "--resume-matching") == 0
    assert "trained with other settings: starting over" in capsys.readouterr().out
    assert [r["epoch"] for r in read_log(out)] == [1, 2]
    assert read_log(out)[0]["loss"] != read_log(full_run)[0]["loss"]


def test_evaluate_run_embeds_the_test_split_with_the_best_checkpoint(full_run, data_root, tmp_path):
    from aahr.commands.evaluate import model_sims
    from aahr.inference import encode_split, load_trained

    pre, raw = data_root / "synth" / "precomp", data_root / "synth" / "raw"
    assert main(["evaluate", "--run", str(full_run), "--features", str(pre), "--captions", str(raw),
                 "--split", "test", "--protocol", "full", "--out", str(tmp_path / "ev"), "--save-sims"]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    sims = np.load(tmp_path / "ev" / "sims.npy")
    model, tokenizer, _ = load_trained(full_run / "best.pt")
    img, txt = encode_split(model, load_split(pre, raw, "test", True), tokenizer, torch.device("cpu"), 7)
    assert sims.shape == (len(img), len(txt)) and np.allclose(sims, img @ txt.T, atol=1e-5)
    assert np.array_equal(model_sims(full_run, pre, raw, "test"), sims)
    assert metrics["full_rsum"] == pytest.approx(sum(metrics[f"full_{d}_r{k}"] for d in ("i2t", "t2i")
                                                     for k in (1, 5, 10)))


def test_the_local_view_scores_l2n_v_loc_of_the_same_checkpoint(full_run, data_root, tmp_path):
    from aahr.inference import encode_split, load_trained
    from aahr.model.layers import l2n

    pre, raw = data_root / "synth" / "precomp", data_root / "synth" / "raw"
    assert main(["evaluate", "--run", str(full_run), "--view", "local", "--features", str(pre), "--captions", str(raw),
                 "--split", "test", "--protocol", "full", "--out", str(tmp_path / "ev"), "--save-sims"]) == 0
    sims = np.load(tmp_path / "ev" / "sims.npy")
    model, tokenizer, _ = load_trained(full_run / "best.pt")
    split = load_split(pre, raw, "test", True)
    img, txt = encode_split(model, split, tokenizer, torch.device("cpu"), 7, view="local")
    fused_img, _ = encode_split(model, split, tokenizer, torch.device("cpu"), 7)
    assert np.allclose(sims, img @ txt.T, atol=1e-5) and not np.allclose(img, fused_img, atol=1e-3)
    with torch.no_grad():
        b = {"regions": torch.from_numpy(np.array(split.regions[:3], np.float32)),
             "mask": torch.ones(3, split.regions.shape[1], dtype=torch.bool),
             "g": torch.from_numpy(np.array(split.global_img[:3]))}
        local = l2n(model.encode_images(b["regions"], b["mask"], b["g"]).local)
    assert np.allclose(img[:3], local.numpy(), atol=1e-5)
    evaluated = json.loads((tmp_path / "ev" / "metrics.json").read_text())["evaluated"]
    assert evaluated == {"split": "test", "view": "local"}


def test_a_nan_loss_stops_training_naming_the_step_and_the_term(data_root, tmp_path, monkeypatch, capsys):
    real = AAHR.loss_terms

    def poisoned(self, out, iteration, *args, **kwargs):
        terms = real(self, out, iteration, *args, **kwargs)
        if iteration == 20:                                    # epoch 2 (18 steps per epoch)
            terms["prototypes"] = terms["prototypes"] * math.nan
        return terms

    monkeypatch.setattr(AAHR, "loss_terms", poisoned)
    out = tmp_path / "out"
    assert train_cli(params_file(tmp_path, data_root), out) == 2
    err = capsys.readouterr().err
    assert "step 21 (epoch 2)" in err and "'prototypes'" in err and "Traceback" not in err
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1   # the last good checkpoint stays
    assert not (out / "metrics.json").exists()


def test_queue_size_must_be_a_multiple_of_the_batch(data_root, tmp_path, capsys):
    params = tiny_train_params()
    params["data_root"] = str(data_root)
    params["losses"]["moco"]["queue_size"] = 40                # batch 16
    path = tmp_path / "q.yaml"
    path.write_text(yaml.safe_dump(params))
    assert train_cli(path, tmp_path / "out") == 2
    assert "must be a multiple of train.batch_size" in capsys.readouterr().err


def test_training_reads_train_and_dev_never_test(data_root, tmp_path, monkeypatch):
    import aahr.training.loop as loop

    seen = []

    def spy(features, captions, split, with_global):
        seen.append(split)
        return load_split(features, captions, split, with_global)

    monkeypatch.setattr(loop, "load_split", spy)
    assert train_cli(params_file(tmp_path, data_root, epochs=1), tmp_path / "out", variant="gpo") == 0
    assert sorted(seen) == ["dev", "train"]


@pytest.mark.slow   # among the heaviest: kept out of the quick tier
def test_two_processes_under_torchrun_give_the_same_losses_as_one(data_root, tmp_path):
    """The global batch is split over 2 gloo processes; gathered embeddings, synced BatchNorm, the
    batch relation graph and the queues make it train like one process (dropout and augmentation off)."""
    params = tiny_train_params(epochs=1, region_drop=0.0, word_drop=0.0)
    params["model"]["dropout"] = 0.0
    params["losses"]["relation"]["gcn_dropout"] = 0.0
    params["data_root"] = str(data_root)
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(params))
    assert train_cli(path, tmp_path / "one") == 0
    proc = subprocess.run([sys.executable, "-m", "aahr", "train", "--params", str(path), "--out",
                           str(tmp_path / "two"), "--nproc", "2", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = read_log(tmp_path / "one")[0], read_log(tmp_path / "two")[0]
    for key in TERMS + ("loss",):
        assert two[key] == pytest.approx(one[key], rel=1e-5), key
    # the gradient is summed over the processes (all-reduce): float32 summation order moves its norm
    assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4)
    assert two["dev_rsum"] == pytest.approx(one["dev_rsum"], abs=0.5)


# ------------------------------------------------------------------------------------ batching


def test_global_batches_split_over_processes_cover_the_same_pairs():
    whole = GlobalBatchSampler(100, 8, seed=3)
    parts = [GlobalBatchSampler(100, 8, seed=3, rank=r, world=2) for r in range(2)]
    for b, p0, p1 in zip(whole, *parts):
        assert b == p0 + p1
    assert len(whole) == 12
    one = GlobalBatchSampler(100, 8, seed=3, captions_per_image=1)
    pairs = one.pairs()
    assert len(one) == 2 and sorted((pairs // 5).tolist()) == list(range(20))   # one caption per image
    one.epoch = 1
    assert not torch.equal(one.pairs(), pairs)                                     # drawn afresh


def test_augmentation_is_seeded_per_item_and_keeps_something(tiny_synth, data_root):
    from aahr.text import Vocabulary

    split = load_split(data_root / "synth" / "precomp", data_root / "synth" / "raw", "dev", with_global=True)
    tok = Tokenizer(16, vocab=Vocabulary.build(split.captions))
    aug = {"region_drop": 0.5, "word_drop": 0.5, "word_mask": 0.5, "word_replace": 0.1}
    ds = PairDataset(split, tok, seed=0, augment=aug)
    keys = [(0, j) for j in range(0, 40, 3)]
    a, b = ds.collate(keys), ds.collate(list(reversed(keys)))
    assert torch.equal(a["region_mask"], b["region_mask"].flip(0))             # per item, not per batch
    assert a["region_mask"].any(1).all() and not a["region_mask"].all()
    assert (a["tokens"]["lengths"] >= 1).all()
    plain = PairDataset(split, tok, seed=0, augment=None).collate(keys)
    assert plain["region_mask"].all()
    assert not torch.equal(a["tokens"]["ids"][:, :3], plain["tokens"]["ids"][:, :3])
    assert torch.equal(a["global_txt"][1], torch.from_numpy(np.array(split.global_txt[3])))


def test_bert_word_augmentation_never_touches_cls_and_sep():
    from aahr.text import packaged_minilm_dir
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(packaged_minilm_dir(), local_files_only=True)
    tok = Tokenizer(32, hf=hf)
    seq = tok.ids(["a small pink square to the left of a green disk"])[0]
    rng = np.random.default_rng(0)
    for _ in range(50):
        out = tok.augment(seq, rng, 0.9, 0.5, 0.1)
        assert out[0] == hf.cls_token_id and out[-1] == hf.sep_token_id and len(out) >= 3
    padded = tok.pad([seq, seq[:4]])
    assert padded["attention_mask"].sum(1).tolist() == [len(seq), 4]


def test_a_pretrained_text_backbone_gets_a_tenth_of_the_learning_rate():
    from aahr.model.aahr import build_model
    from aahr.training.loop import optimizer_for

    params = tiny_train_params()
    params["text"]["backbone"] = "bert-finetune"
    model = build_model(params, "gpo", 12, None)
    groups = {g["name"]: g for g in optimizer_for(model, params["train"]).param_groups}
    lr = params["train"]["lr"]
    assert groups["text_backbone"]["lr"] == pytest.approx(lr * params["train"]["text_lr_factor"])
    assert groups["model"]["lr"] == lr
    backbone = {id(p) for p in model.text.backbone.backbone.parameters()}
    assert {id(p) for p in groups["text_backbone"]["params"]} == backbone
    assert not backbone & {id(p) for p in groups["model"]["params"]}


class _Payload:
    """Unpickling this runs code: what a tampered checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_tampered_checkpoint_is_refused_without_running_its_code(full_run, data_root, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    ckpt = torch.load(full_run / "best.pt", weights_only=True)
    ckpt["extra"] = _Payload(tmp_path / "pwned")               # not a plain state dict any more
    torch.save(ckpt, run / "best.pt")
    pre, raw = data_root / "synth" / "precomp", data_root / "synth" / "raw"
    assert main(["evaluate", "--run", str(run), "--features", str(pre), "--captions", str(raw),
                 "--split", "test", "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'best.pt'}: cannot read the checkpoint" in err and "Traceback" not in err
    assert not (tmp_path / "pwned").exists(), "the checkpoint's code ran"
    assert not (tmp_path / "ev").exists()
    torch.save(ckpt, run / "last.pt")                           # nor is it resumed from
    assert train_cli(params_file(tmp_path, data_root), run, "--resume") == 2
    assert not (tmp_path / "pwned").exists()


def test_train_warns_naming_a_module_that_is_inert(data_root, tmp_path, capsys):
    params = yaml.safe_load(params_file(tmp_path, data_root, epochs=1).read_text())
    params["losses"]["prototypes"]["weight"] = 0.0                      # a dead term: no gradient at all
    path = tmp_path / "dead.yaml"
    path.write_text(yaml.safe_dump(params))
    assert train_cli(path, tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert "the prototypes module looks inert" in err and "gradient 0.0000 [0.0000, 0.0000] x the triplet term's" in err
    assert "the fusion module looks untrained" in err          # one tiny epoch: the gate is still at its start
