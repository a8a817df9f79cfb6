"""aahr download --what: fetching against a local HTTP server on 127.0.0.1 (nothing leaves the machine).

The server (standard library http.server in a thread) serves tiny zip archives, honours
``Range: bytes=N-``, and can be told to cut the connection after N bytes or to answer 404. Each test
checks that nothing half-written is left behind (no .part file, no temporary extraction folder).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import socket
import threading
import zipfile
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from real_fixtures import make_f30k

from aahr import download as dl
from aahr.cli import main


class Handler(BaseHTTPRequestHandler):
    """Serves ``server.files`` {path: bytes}; ``server.cut`` {path: N} cuts the first answer of that
    path after N body bytes; unknown paths get 404. Every request's (path, Range header) is logged."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        srv = self.server
        srv.log.append((self.path, self.headers.get("Range")))
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        cut = srv.cut.pop(self.path, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)     # the connection drops mid-body
            return
        self.wfile.write(body)

    def log_message(self, *args):  # quiet
        pass


Server = namedtuple("Server", "url files cut log")


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.files, httpd.cut, httpd.log = {}, {}, []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", httpd.files, httpd.cut, httpd.log)
    httpd.shutdown()
    httpd.server_close()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:   # stored: the bytes are what is served
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _precomp_zip(tmp_path: Path) -> bytes:
    """SCAN's data.zip in miniature: data/f30k_precomp/* of a tiny valid Flickr30K (k=2, d=8)."""
    src = make_f30k(tmp_path / "src", n_train=3, n_dev=2, n_test=2, k=2, d=8, images=False)
    members = {f"data/f30k_precomp/{p.name}": p.read_bytes() for p in sorted(src.iterdir())
               if p.name != "id_mapping.json"}                     # not in SCAN's features
    members["data/coco_precomp/train_caps.txt"] = b"not extracted for f30k\n"
    return _zip(members)


def _manifest(tmp_path: Path, url: str, data: bytes | None = None, sha: str | None = "auto",
              size: int | None = "auto", what: str = "features", extract=None) -> Path:
    entry = {"name": "test-archive", "kind": "url", "what": what, "datasets": ["f30k", "coco"], "url": url,
             "size": len(data) if size == "auto" and data is not None else (None if size == "auto" else size),
             "sha256": hashlib.sha256(data).hexdigest() if sha == "auto" and data is not None else
             (None if sha == "auto" else sha),
             "approx_bytes": None,
             "extract": extract or {"f30k": {"from": "data/f30k_precomp/", "to": "f30k/precomp"}},
             "describe": "a test archive", "if_unavailable": "https://example.org/mirror (login)"}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"sources": [entry]}))
    return path


def _leftovers(root: Path) -> list[str]:
    """Half-written things: .part files, temporary extraction folders, temporary records."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.endswith((".part", ".tmp")) or ".extract-" in p.name)


def run_download(root: Path, manifest: Path, *extra: str, what: str = "features") -> int:
    return main(["download", "--dataset", "f30k", "--data-root", str(root), "--what", what,
                 "--manifest", str(manifest), "--quiet", *extra])


# ----------------------------------------------------------------------------------------- tests


def test_clean_download_is_verified_extracted_and_located(server, tmp_path, capsys):
    data = _precomp_zip(tmp_path)
    server.files["/scan/data.zip"] = data
    root = tmp_path / "data"
    manifest = _manifest(tmp_path, server.url + "/scan/data.zip", data)
    # the features lack id_mapping.json (as SCAN's do): the command fetches, then says what is missing
    assert run_download(root, manifest) == 2
    captured = capsys.readouterr()
    assert "data.zip: " + server.url + "/scan/data.zip downloaded, size and sha256 checked" in captured.err
    assert f"test-archive: 9 files from {server.url}/scan/data.zip extracted into {root / 'f30k/precomp'}" in captured.err
    assert "lacks 1 file: id_mapping.json" in captured.err
    folder = root / "f30k" / "precomp"
    assert np.load(folder / "train_ims.npy", mmap_mode="r").shape == (3, 2, 8)
    assert not (root / "coco_precomp").exists() and not (root / "coco").exists()   # only f30k's members
    assert not (root / "downloads" / "data.zip").exists()                          # archive removed
    assert _leftovers(root) == []
    assert [r for r in server.log if r[1]] == []                                   # no Range needed
    # the id_mapping.json placed by hand beside precomp/ (the canonical layout): located, nothing fetched again
    (root / "f30k" / "id_mapping.json").write_text((tmp_path / "src/f30k/precomp/id_mapping.json").read_text())
    n = len(server.log)
    assert run_download(root, manifest) == 0
    out = capsys.readouterr().out
    assert "the f30k features are already in place; not fetched" in out and f"found in {folder}" in out
    assert len(server.log) == n
    assert main(["check-data", "--dataset", "f30k", "--data-root", str(root), "--feature-dim", "8", "--quiet"]) == 0


def test_a_cut_download_resumes_with_a_range_request(server, tmp_path, capsys):
    data = _precomp_zip(tmp_path)
    server.files["/data.zip"] = data
    server.cut["/data.zip"] = len(data) // 3
    root = tmp_path / "data"
    manifest = _manifest(tmp_path, server.url + "/data.zip", data)
    assert run_download(root, manifest, "--keep-archives") == 2            # 2: id_mapping.json is missing
    err = capsys.readouterr().err
    assert f"connection lost at {len(data) // 3} bytes" in err and "resuming with a Range request" in err
    assert server.log == [("/data.zip", None), ("/data.zip", f"bytes={len(data) // 3}-")]
    assert (root / "downloads" / "data.zip").read_bytes() == data           # whole and correct
    assert (root / "f30k" / "precomp" / "train_caps.txt").is_file()
    assert _leftovers(root) == []


def test_a_download_cut_for_good_keeps_its_part_and_the_next_run_resumes(server, tmp_path, capsys):
    data = _precomp_zip(tmp_path)
    server.files["/data.zip"] = data
    server.cut["/data.zip"] = 1000
    root = tmp_path / "data"
    manifest = _manifest(tmp_path, server.url + "/data.zip", data)
    assert run_download(root, manifest, "--retries", "0") == 2
    err = capsys.readouterr().err
    part = root / "downloads" / "data.zip.part"
    assert "the download stopped at 1000 bytes after 1 attempts" in err and f"partial file {part} is kept" in err
    assert part.stat().st_size == 1000 and not (root / "f30k").exists()
    assert run_download(root, manifest, "--retries", "0") == 2              # resumed: only id_mapping is missing
    assert server.log[-1] == ("/data.zip", "bytes=1000-")
    assert (root / "f30k" / "precomp" / "test_ids.txt").is_file() and _leftovers(root) == []


def test_a_wrong_checksum_is_refused_and_the_partial_file_removed(server, tmp_path, capsys):
    data = _precomp_zip(tmp_path)
    server.files["/data.zip"] = data
    root = tmp_path / "data"
    manifest = _manifest(tmp_path, server.url + "/data.zip", data, sha="0" * 64)
    assert run_download(root, manifest) == 2
    err = capsys.readouterr().err
    assert f"{server.url}/data.zip: sha256 {hashlib.sha256(data).hexdigest()} does not match the manifest" in err
    assert "the file was removed" in err
    assert list((root / "downloads").iterdir()) == [root / "downloads" / ".lock"]
    assert not (root / "f30k").exists() and _leftovers(root) == []


def test_a_wrong_size_is_refused_before_writing(server, tmp_path, capsys):
    data = _precomp_zip(tmp_path)
    server.files["/data.zip"] = data
    root = tmp_path / "data"
    assert run_download(root, _manifest(tmp_path, server.url + "/data.zip", data, size=len(data) + 1)) == 2
    assert f"the server announces {len(data)} bytes, the manifest says {len(data) + 1}" in capsys.readouterr().err
    assert _leftovers(root) == [] and not (root / "f30k").exists()


def test_without_a_published_hash_the_first_download_records_it(server, tmp_path, capsys):
    data = _zip({"val2014/COCO_val2014_000000000042.jpg": b"jpeg bytes"})
    server.files["/zips/val2014.zip"] = data
    root = tmp_path / "data"
    extract = {"coco": {"from": "val2014/", "to": "coco/images/val2014"}}
    manifest = _manifest(tmp_path, server.url + "/zips/val2014.zip", data, sha=None, size=None, what="images",
                         extract=extract)
    args = ["download", "--dataset", "coco", "--data-root", str(root), "--what", "images", "--manifest",
            str(manifest), "--quiet", "--keep-archives"]
    assert main(args) == 0
    out = capsys.readouterr().out
    record = root / "downloads" / "val2014.zip.sha256"
    digest = hashlib.sha256(data).hexdigest()
    assert f"publishes no checksum; sha256 {digest} computed after this first download and recorded in {record}" in out
    assert record.read_text().split()[:3] == [digest, "val2014.zip", str(len(data))]
    assert (root / "coco/images/val2014/COCO_val2014_000000000042.jpg").read_bytes() == b"jpeg bytes"
    assert _leftovers(root) == []
    # the archive changes on the server: a new download is checked against the recorded hash, and refused
    (root / "downloads" / "val2014.zip").unlink()
    server.files["/zips/val2014.zip"] = _zip({"val2014/COCO_val2014_000000000042.jpg": b"jpeg bytez"})      # same size, other bytes
    shutil.rmtree(root / "coco")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"does not match the sha256 recorded at the first download ({record})" in err
    assert not (root / "coco").exists() and _leftovers(root) == []


def test_http_404_names_the_url_and_the_next_step(server, tmp_path, capsys):
    root = tmp_path / "data"
    url = server.url + "/gone/data.zip"
    assert run_download(root, _manifest(tmp_path, url)) == 2
    err = capsys.readouterr().err
    assert f"{url}: HTTP 404 (not found: the file has moved or is gone); next step: get it from " \
           f"https://example.org/mirror (login) and put the archive at {root / 'downloads' / 'data.zip'}" in err
    assert _leftovers(root) == [] and not (root / "downloads" / "data.zip").exists()


def test_a_refused_connection_names_the_url(tmp_path, capsys):
    with socket.socket() as s:                      # a port that was free a moment ago: nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/data.zip"
    root = tmp_path / "data"
    assert run_download(root, _manifest(tmp_path, url)) == 2
    err = capsys.readouterr().err
    assert f"{url}: cannot reach the server (" in err and "refused" in err.lower()
    assert "Traceback" not in err and _leftovers(root) == []


def test_a_corrupt_archive_is_removed_and_no_extraction_folder_left(server, tmp_path, capsys):
    data = b"PK\x03\x04 this is not really a zip archive" * 10
    server.files["/data.zip"] = data
    root = tmp_path / "data"
    assert run_download(root, _manifest(tmp_path, server.url + "/data.zip", data)) == 2
    assert "not a readable zip archive" in capsys.readouterr().err
    assert not (root / "downloads" / "data.zip").exists() and _leftovers(root) == []


def test_a_failed_extraction_leaves_no_temporary_folder(server, tmp_path, capsys, monkeypatch):
    data = _precomp_zip(tmp_path)
    server.files["/data.zip"] = data
    root = tmp_path / "data"

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(dl.shutil, "copyfileobj", fail)
    with pytest.raises(OSError, match="disk full"):
        run_download(root, _manifest(tmp_path, server.url + "/data.zip", data))
    assert not (root / "f30k" / "precomp").exists() and _leftovers(root) == []
    assert (root / "f30k").is_dir() and list((root / "f30k").iterdir()) == []


def test_not_enough_disk_is_said_before_downloading(server, tmp_path, capsys, monkeypatch):
    data = _precomp_zip(tmp_path)
    server.files["/data.zip"] = data
    root = tmp_path / "data"
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda p: usage(10 ** 9, 10 ** 9 - 100, 100))
    assert run_download(root, _manifest(tmp_path, server.url + "/data.zip", data)) == 2
    err = capsys.readouterr().err
    assert f"not enough free disk in {root / 'downloads'}" in err and "100 bytes free" not in err
    assert "free some space or set data_root to a larger disk" in err
    assert _leftovers(root) == [] and not (root / "downloads" / "data.zip").exists()


def test_login_sources_are_explained_not_fetched(tmp_path, capsys):
    """The packaged manifest: f30k's photos (a form) and id_mapping.json are only explained; the manifest
    lists every source the README names."""
    root = tmp_path / "data"
    assert main(["download", "--dataset", "f30k", "--data-root", str(root), "--what", "images", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "not fetched (a login or a form is needed)" in out
    assert "https://shannon.cs.illinois.edu/DenotationGraph/" in out and f"{root}/f30k/flickr30k-images/" in out
    assert not (root / "f30k").exists()
    urls = {s.get("url") or s.get("repo_id") for s in dl.load_manifest()}
    assert {"https://scanproject.blob.core.windows.net/scan-data/data.zip",
            "https://scanproject.blob.core.windows.net/scan-data/vocab.zip",
            "http://images.cocodataset.org/zips/train2014.zip", "http://images.cocodataset.org/zips/val2014.zip",
            "http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
            "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "bert-base-uncased"} <= urls


def test_weights_go_through_huggingface_hub(tmp_path, capsys, monkeypatch):
    import huggingface_hub

    calls = []

    def fake(repo_id, filename, local_dir):
        calls.append((repo_id, filename))
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        (Path(local_dir) / filename).write_bytes(b"w")
        return str(Path(local_dir) / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    root = tmp_path / "data"
    assert main(["download", "--dataset", "coco", "--data-root", str(root), "--what", "weights", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert ("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "open_clip_pytorch_model.bin") in calls
    assert ("bert-base-uncased", "model.safetensors") in calls
    oc = root / "weights/CLIP-ViT-B-32-laion2B-s34B-b79K/open_clip_pytorch_model.bin"
    assert f"global_branch.openclip.weights: {oc}" in out and f"text.path: {root / 'weights/bert-base-uncased'}" in out

    # the null keys of a real dataset's config now find them; a key already set and synth are left alone
    params = {"data_root": str(root), "global_branch": {"openclip": {"weights": None}},
              "text": {"backbone": "bert-finetune", "path": None}}
    found = dl.with_downloaded_weights(params, "coco")
    assert found["global_branch"]["openclip"]["weights"] == str(oc)
    assert found["text"]["path"] == str(root / "weights/bert-base-uncased")
    assert params["text"]["path"] is None                                     # a copy
    assert dl.with_downloaded_weights(params, "synth") == params
    mine = {**params, "text": {"backbone": "bert-finetune", "path": "/models/bert"}}
    assert dl.with_downloaded_weights(mine, "f30k")["text"]["path"] == "/models/bert"
    oc.unlink()
    assert dl.with_downloaded_weights(params, "coco")["global_branch"]["openclip"]["weights"] is None


def test_what_is_validated_and_help_explains(capsys):
    assert main(["download", "--dataset", "f30k", "--data-root", "x", "--what", "features,photos"]) == 2
    assert "--what 'features,photos': expected a comma-separated list of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["download", "--help"])
    out = capsys.readouterr().out
    for part in ("--what", "Range", "sha256", "login", "download: true", "train2014"):
        assert part in out
