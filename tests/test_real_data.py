"""The real-dataset path of the DAG, end to end and offline: tiny Flickr30K- and COCO-format datasets
(random 36 x 2048 region features, real-looking captions, ids, id_mapping.json, photos, and ECCV
bridging files for a handful of the eccv_caption package's real COCO test ids) run through
download (locate) -> check-data -> OpenCLIP global branch -> training with a BERT-architecture text
backbone -> evaluation -> Tables 1-3, with randomly initialised BERT and OpenCLIP weights."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from conftest import BIN, ROOT, copy_project, keep_variants, venv_env
from real_fixtures import make_coco, make_f30k

pytestmark = pytest.mark.slow


def _random_bert(folder: Path) -> Path:
    """A BERT-architecture model with random weights and the packaged MiniLM's WordPiece vocabulary."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from aahr.text import packaged_minilm_dir

    tokenizer = BertTokenizerFast.from_pretrained(packaged_minilm_dir(), local_files_only=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _random_openclip(path: Path, model: str = "ViT-S-32") -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import open_clip

    torch.manual_seed(0)
    torch.save(open_clip.create_model(model).state_dict(), path)
    return path


def _run_real_tables(tmp_path_factory, datasets: list[str], variants: tuple[str, ...],
                     convention: str = "precomp", downloaded_weights: bool = False) -> Path:
    """A project copy after `snakemake ... table1-3` on tiny real-format ``datasets`` (folder layout
    ``convention``, see real_fixtures). ``downloaded_weights``: the OpenCLIP and BERT weights lie where
    `aahr download --what weights` puts them and the config leaves both keys null."""
    project = copy_project(tmp_path_factory.mktemp("real") / "project")
    data = project / "data" / "real"
    for d in datasets:
        (make_f30k if d == "f30k" else make_coco)(data, convention=convention)
    models = data / "weights" if downloaded_weights else tmp_path_factory.mktemp("models")
    openclip_file = models / ("CLIP-ViT-B-32-laion2B-s34B-b79K/open_clip_pytorch_model.bin" if downloaded_weights
                              else "oc.pt")
    bert_folder = models / ("bert-base-uncased" if downloaded_weights else "bert")
    openclip_file.parent.mkdir(parents=True, exist_ok=True)
    _random_openclip(openclip_file)
    _random_bert(bert_folder)
    params = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    params |= {"datasets": datasets, "data_root": "data/real", "results_root": "results/real", "seeds": [0]}
    keep_variants(params, variants)
    params["global_branch"]["openclip"] |= {"model": "ViT-S-32", "batch_size": 8,
                                            "weights": None if downloaded_weights else str(openclip_file)}
    params["text"] |= {"backbone": "bert-finetune", "max_tokens": 16,
                       "path": None if downloaded_weights else str(bert_folder)}
    params["train"] |= {"batch_size": 8, "eval_batch_size": 16}
    params["losses"]["moco"]["queue_size"] = 16
    # The project's params.yaml itself: a --configfile is merged into it, which cannot drop variants.
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = venv_env(HF_HUB_OFFLINE="1")
    targets = [f"results/real/table{n}.csv" for n in (1, 2, 3)]
    proc = subprocess.run([str(BIN / "snakemake"), *targets, "--cores", "2"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=1200)
    logs = "".join(f"\n== {p.name}\n{p.read_text()[-1500:]}" for p in (project / "results/real/logs").glob("*.log")
                   ) if (project / "results/real/logs").is_dir() else ""
    assert proc.returncode == 0, proc.stderr[-3000:] + logs
    return project


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """The project copy after `snakemake ... table1-3` on the tiny real-format datasets."""
    return _run_real_tables(tmp_path_factory, ["f30k", "coco"], ("aahr", "gpo"))


def _rows(project: Path, n: int) -> list[dict]:
    with open(project / f"results/real/table{n}.csv") as f:
        return list(csv.DictReader(f))


def test_every_stage_ran_on_both_datasets(real_run):
    for d, test in (("f30k", "test"), ("coco", "testall")):
        assert (real_run / f"results/real/{d}/check_data.json").is_file()
        for split in ("train", "dev", test):
            emb = real_run / f"data/real/{d}/precomp/{split}_global_txt.npy"
            assert emb.is_file(), emb
        for v in ("aahr", "gpo"):
            assert (real_run / f"data/real/{d}/runs/{v}/seed0/best.pt").is_file()
            assert (real_run / f"results/real/{d}/{v}/seed0/metrics.json").is_file()


def test_tables_put_measured_and_reported_rows_side_by_side(real_run):
    assert {r["method"] for r in _rows(real_run, 4)} == {"aahr", "gpo", "aahr_local"}   # + aahr's local view alone
    t1 = _rows(real_run, 1)
    for d, protocol in (("f30k", "full"), ("coco", "full")):   # tiny test splits: the whole-matrix protocol
        measured = [r for r in t1 if r["dataset"] == d and r["source"] == "measured"]
        assert [r["method"] for r in measured] == ["zeroshot", "gpo", "aahr"]
        assert {r["protocol"] for r in measured} == {protocol}
        reported = [r for r in t1 if r["dataset"] == d and r["source"].startswith("reported")]
        assert any(r["method"] == "AAHR" for r in reported)
    vsrn = next(r for r in t1 if r["dataset"] == "coco" and r["method"] == "VSRN++")
    assert "copy error" in vsrn["note"]
    t2 = _rows(real_run, 2)
    assert any(r["dataset"] == "coco" and r["method"] == "VSE++" and "copy error" in r["note"] for r in t2)
    assert {r["dataset"] for r in t2 if r["source"] == "measured"} == {"f30k", "coco"}
    t3 = _rows(real_run, 3)
    assert [r["method"] for r in t3 if r["dataset"] == "coco" and r["source"] == "reported"][0] == "AAHR"


def test_check_data_stops_the_dag_on_a_broken_dataset(real_run, tmp_path):
    caps = real_run / "data/real/f30k/precomp/dev_caps.txt"
    lines = caps.read_text().splitlines()
    caps.write_text("\n".join(lines[:-1]) + "\n")                 # 4 captions for the last image
    env = venv_env()
    proc = subprocess.run([str(BIN / "snakemake"), "results/real/f30k/check_data.json", "--cores", "1"],
                          cwd=real_run, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    log = (real_run / "results/real/logs/check_data_f30k.log").read_text()
    assert "dev_caps.txt" in log and "Traceback" not in log
    assert not (real_run / "results/real/f30k/check_data.json").exists()


def test_canonical_layout_runs_to_the_tables(tmp_path_factory):
    """VSE-infinity's tree (data/f30k/precomp/, data/f30k/id_mapping.json beside it, the photos in
    data/f30k/flickr30k-images/) and the weights where `aahr download --what weights` puts them, with no
    image_root and no weights in the config: every stage runs to Tables 1-3, the global branch reads the
    mapping beside precomp/ and the photos of flickr30k-images/, and the matcher trains the downloaded BERT."""
    project = _run_real_tables(tmp_path_factory, ["f30k"], ("aahr", "gpo"), convention="canonical",
                               downloaded_weights=True)
    data = project / "data/real/f30k"
    assert not (data / "precomp/id_mapping.json").exists() and not (data / "images").exists()
    assert (data / "precomp/test_global_img.npy").is_file()
    log = (project / "results/real/logs/global_branch_f30k_test.log").read_text()
    assert "Traceback" not in log
    measured = [r for r in _rows(project, 1) if r["dataset"] == "f30k" and r["source"] == "measured"]
    assert [r["method"] for r in measured] == ["zeroshot", "gpo", "aahr"]
    assert (project / "results/real/table3.csv").is_file()
    fingerprint = torch.load(data / "runs/aahr/seed0/best.pt", map_location="cpu", weights_only=False)
    assert Path(fingerprint["fingerprint"]["text"]["path"]) == Path("data/real/weights/bert-base-uncased")


@pytest.mark.parametrize("download", [False, True])
def test_download_rule_fetches_only_when_the_config_says_so(download, tmp_path):
    """`--config download=true` makes download_real run the fetching form (--what features,images,weights);
    by default it only locates. A dry run on a canonical tree that lacks one file; the tree's
    id_mapping.json beside precomp/ is an input as it is (no rule asked to make precomp/id_mapping.json)."""
    project = copy_project(tmp_path / "project")
    folder = make_f30k(project / "data" / "real", k=2, d=8, images=False, convention="canonical")
    (folder / "dev_caps.txt").unlink()
    proc = subprocess.run([str(BIN / "snakemake"), "results/real/f30k/check_data.json", "-n", "-p", "--cores", "1",
                           "--config", "datasets=[f30k]", "data_root=data/real", "results_root=results/real",
                           f"download={str(download).lower()}"],
                          cwd=project, env=venv_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    commands = [line for line in proc.stdout.splitlines() if "aahr download --dataset" in line]
    assert len(commands) == 1 and "data/real/f30k/precomp/dev_caps.txt" in proc.stdout
    assert ("--what features,images,weights" in commands[0]) is download
    assert "precomp/id_mapping.json" not in proc.stdout
