"""Fetch what of the real datasets is publicly downloadable (``aahr download --what ...``).

The sources are a manifest packaged with the project (``reference/downloads.json``; another one with
``--manifest`` or ``$AAHR_DOWNLOAD_MANIFEST``, e.g. a mirror or the tests' local server). Three kinds:

- ``url``: an archive over HTTP(S), fetched with the standard library into
  ``{data_root}/downloads/{file}.part``, resumed with a ``Range: bytes=N-`` request when the
  connection drops (here, up to ``retries`` times, or by running the command again), checked
  against the manifest's size and sha256, renamed to ``{file}``, then the members under the entry's
  ``from`` prefix are extracted into a temporary folder that is renamed into ``{data_root}/{to}``.
  Where the source publishes no hash, the sha256 is computed after the first download and recorded in
  ``{file}.sha256`` beside the archive (later downloads are checked against it). A free-disk check
  runs before the download and before the extraction. Nothing half-written is left behind: a failed
  checksum removes the partial file; a failed extraction removes its temporary folder.
- ``hf``: files of a Hugging Face hub repository through ``huggingface_hub`` (it honours
  ``HF_ENDPOINT`` and its cache), into ``{data_root}/{to}``; the config key to set is printed.
- ``manual``: behind a login or a form (Kaggle, Google Drive, the Flickr30K form): never fetched;
  where to get it and where to put it is printed.

One process at a time per data root (a file lock), so the workflow's parallel ``download_real``
jobs wait for each other and the later ones find everything in place.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import http.client
import json
import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from aahr.config import lookup
from aahr.errors import AahrError

MANIFEST = Path(__file__).parent / "reference" / "downloads.json"
MANIFEST_ENV = "AAHR_DOWNLOAD_MANIFEST"
WHAT = ("features", "images", "weights", "vocab", "annotations")
DOWNLOADS = "downloads"             # {data_root}/downloads: archives, their .part and .sha256 files
CHUNK = 1 << 20
TIMEOUT_S = 60
MARGIN = 1.05                       # free disk asked for beyond the estimate


def load_manifest(path: str | Path | None = None) -> list[dict]:
    """The manifest's sources: ``path``, else ``$AAHR_DOWNLOAD_MANIFEST``, else the packaged one."""
    path = Path(path or os.environ.get(MANIFEST_ENV) or MANIFEST)
    try:
        sources = json.loads(path.read_text(encoding="utf-8"))["sources"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AahrError(f"{path}: not a readable download manifest ({type(exc).__name__}: {exc})") from None
    for s in sources:
        if s.get("kind") not in ("url", "hf", "manual") or "name" not in s:
            raise AahrError(f"{path}: source {s.get('name')!r} has no valid kind (url, hf or manual)")
    return sources


def parse_what(text: str) -> list[str]:
    """``features,images`` -> ["features", "images"]; unknown names are refused."""
    items = [w.strip() for w in text.split(",") if w.strip()]
    bad = [w for w in items if w not in WHAT]
    if bad or not items:
        raise AahrError(f"--what {text!r}: expected a comma-separated list of {', '.join(WHAT)}")
    return list(dict.fromkeys(items))


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


# ------------------------------------------------------------------------------------- one file


def _open(url: str, offset: int):
    req = urllib.request.Request(url, headers={"User-Agent": "aahr-download"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(req, timeout=TIMEOUT_S)  # noqa: S310 (http(s) URLs of the manifest)


def _http_error(url: str, exc: Exception, dest: Path, source: dict) -> AahrError:
    alt = source.get("if_unavailable")
    nxt = f"get it from {alt}" if alt else "fetch it by hand"
    nxt += f" and put the archive at {dest} (this command then checks and extracts it)"
    if isinstance(exc, urllib.error.HTTPError):
        why = {404: "not found: the file has moved or is gone",
               401: "needs a login", 403: "refused (forbidden: a login or a licence form?)"}.get(exc.code, exc.reason)
        return AahrError(f"{url}: HTTP {exc.code} ({why}); next step: {nxt}")
    reason = getattr(exc, "reason", exc)
    return AahrError(f"{url}: cannot reach the server ({reason}); check the network (a proxy: set "
                     f"https_proxy / http_proxy), then run this command again, or {nxt}")


def _sha256(path: Path, progress: bool) -> str:
    from tqdm import tqdm

    h = hashlib.sha256()
    with open(path, "rb") as f, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, leave=False,
                                     desc=f"sha256 {path.name}", disable=not progress) as bar:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
            bar.update(len(block))
    return h.hexdigest()


def _record_file(archive: Path) -> Path:
    return archive.with_name(archive.name + ".sha256")


def _read_record(archive: Path) -> tuple[str, int] | None:
    path = _record_file(archive)
    if not path.is_file():
        return None
    parts = path.read_text().split()
    return (parts[0], int(parts[2])) if len(parts) >= 3 else None


def _check_disk(folder: Path, need: int, what: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if need * MARGIN > free:
        raise AahrError(f"not enough free disk in {folder} for {what}: about {_gb(need * MARGIN)} needed, "
                        f"{_gb(free)} free; free some space or set data_root to a larger disk")


def fetch_file(source: dict, dest: Path, progress: bool = True, retries: int = 3) -> list[str]:
    """Download ``source["url"]`` to ``dest`` (resuming ``dest.part``) and verify it; returns notes.

    A complete ``dest`` that passes the check is kept as is. Size and sha256 from the manifest; where
    it has no sha256, one recorded by an earlier download (``{dest}.sha256``) or, the first time, the
    computed one is recorded."""
    from tqdm import tqdm

    url, size, sha = source["url"], source.get("size"), source.get("sha256")
    record = _read_record(dest)
    notes: list[str] = []
    if dest.is_file():                                   # fetched before (e.g. --keep-archives, or by hand)
        _verify(dest, source, record, progress, notes)
        if sha is None and record is None:
            notes.append(_record(dest, notes.pop(), url))
        return notes
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    attempts = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        try:
            resp = _open(url, offset)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset and (size is None or offset >= size):
                break                                     # the part is already whole
            if exc.code == 416:
                part.unlink(missing_ok=True)
                continue
            raise _http_error(url, exc, dest, source) from None
        except (urllib.error.URLError, OSError) as exc:
            if attempts < retries and offset:
                attempts += 1
                continue
            raise _http_error(url, exc, dest, source) from None
        with resp:
            if offset and resp.status != 206:            # the server ignored the Range: start over
                offset = 0
            length = resp.headers.get("Content-Length")
            total = offset + int(length) if length is not None else size
            if size is not None and total is not None and total != size:
                part.unlink(missing_ok=True)
                raise AahrError(f"{url}: the server announces {total} bytes, the manifest says {size}: not the "
                                f"expected file; next step: check the URL in the manifest")
            if offset == 0 and total:
                _check_disk(dest.parent, total + int(source.get("extract_bytes") or total), f"{url} and its extraction")
            elif offset == 0 and source.get("approx_bytes"):
                _check_disk(dest.parent, 2 * int(source["approx_bytes"]), f"{url} and its extraction")
            try:
                with open(part, "ab" if offset else "wb") as out, tqdm(
                        total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name, leave=False,
                        disable=not progress, mininterval=1.0) as bar:
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        out.write(block)
                        bar.update(len(block))
                got = part.stat().st_size
                if total is not None and got < total:
                    raise http.client.IncompleteRead(b"", total - got)
                break
            except (http.client.HTTPException, OSError, socket.timeout) as exc:
                got = part.stat().st_size if part.exists() else 0
                if attempts < retries:
                    attempts += 1
                    notes.append(f"{dest.name}: connection lost at {got} bytes ({type(exc).__name__}); "
                                 f"resuming with a Range request")
                    continue
                raise AahrError(f"{url}: the download stopped at {got} bytes after {attempts + 1} attempts "
                                f"({type(exc).__name__}); the partial file {part} is kept: run this command "
                                f"again to resume it") from None
    _verify(part, source, record, progress, notes, shown=dest)
    os.replace(part, dest)
    if sha is None and record is None:
        notes.append(_record(dest, notes.pop(), url))     # _verify left the computed hash
    else:
        notes.append(f"{dest.name}: {url} downloaded, size and sha256 checked")
    return notes


def _record(archive: Path, digest: str, url: str) -> str:
    """Write ``{archive}.sha256`` (hash, name, size, URL); returns the note saying so."""
    record = _record_file(archive)
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(f"{digest}  {archive.name}  {archive.stat().st_size}  {url}\n")
    os.replace(tmp, record)
    return (f"{archive.name}: {url} publishes no checksum; sha256 {digest} computed after this first "
            f"download and recorded in {record} (later downloads are checked against it)")


def _verify(path: Path, source: dict, record, progress: bool, notes: list[str],
            shown: Path | None = None) -> None:
    """Size and sha256 of ``path`` against the manifest (else the recorded ones). A mismatch removes
    the file and raises. Without any expected hash, the computed one is appended to ``notes``."""
    url, size, sha = source["url"], source.get("size"), source.get("sha256")
    name = shown or path
    expect_sha, expect_size, against = sha, size, "the manifest"
    if sha is None and record is not None:
        expect_sha, against = record[0], f"the sha256 recorded at the first download ({_record_file(name)})"
        expect_size = size if size is not None else record[1]
    got_size = path.stat().st_size
    if expect_size is not None and got_size != expect_size:
        path.unlink()
        raise AahrError(f"{url}: {got_size} bytes downloaded, {against} says {expect_size}; the file was "
                        f"removed: run this command again (or fetch {name} by hand)")
    digest = _sha256(path, progress)
    if expect_sha is not None and digest != expect_sha.lower():
        path.unlink()
        raise AahrError(f"{url}: sha256 {digest} does not match {against} ({expect_sha}); the file was "
                        f"removed: run this command again; if it fails again the source has changed")
    if expect_sha is None:
        notes.append(digest)
    elif path == name:
        notes.append(f"{name.name}: already here, size and sha256 match {against}")


# ------------------------------------------------------------------------------------ extraction


def extract(archive: Path, prefix: str, dest: Path) -> int:
    """Members of the zip ``archive`` under ``prefix`` (stripped) into ``dest``, through a temporary
    folder beside ``dest`` renamed into place (files merged into an existing ``dest``). Returns the
    number of files. A corrupted archive is removed."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        archive.unlink()
        raise AahrError(f"{archive}: not a readable zip archive ({exc}); it was removed: run this command "
                        f"again") from None
    with zf:
        members = [m for m in zf.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
        if not members:
            raise AahrError(f"{archive}: no member under {prefix!r}; the archive's layout has changed (its "
                            f"first entries: {', '.join(n for n in zf.namelist()[:5])})")
        dest.parent.mkdir(parents=True, exist_ok=True)
        _check_disk(dest.parent, sum(m.file_size for m in members), f"extracting {archive.name}")
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract-", dir=dest.parent))
        try:
            for m in members:
                rel = Path(m.filename[len(prefix):])
                if rel.is_absolute() or ".." in rel.parts:
                    raise AahrError(f"{archive}: unsafe member name {m.filename!r}; not extracted")
                out = tmp / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
            if not dest.exists():
                os.replace(tmp, dest)
            else:
                for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
                    target = dest / f.relative_to(tmp)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(f, target)
        except zipfile.BadZipFile as exc:
            archive.unlink()
            raise AahrError(f"{archive}: corrupted archive ({exc}); it was removed: run this command again") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return len(members)


# -------------------------------------------------------------------------------------- weights


def with_downloaded_weights(params: dict, dataset: str, manifest: str | Path | None = None) -> dict:
    """``params`` (a copy) with each weights key left null (``global_branch.openclip.weights``,
    ``text.path``) set to where ``aahr download --dataset DATASET --what weights`` put that file,
    ``{data_root}/{to}/{value}`` of the manifest's entry, when it is there. A key already set is
    kept; synth has no such entries and comes back unchanged."""
    out = copy.deepcopy(params)
    for s in load_manifest(manifest):
        if s.get("what") != "weights" or dataset not in s.get("datasets", []) or "config" not in s:
            continue
        node, last = lookup(out, s["config"]["key"], f"{MANIFEST.name}: {s['name']}")
        if node[last] is not None:
            continue
        path = Path(out["data_root"]) / s["to"] / s["config"]["value"]
        if path.exists():
            node[last] = str(path)
    return out


# ----------------------------------------------------------------------------------------- plan


@dataclass
class Outcome:
    """What :func:`fetch` did: ``done`` lines, ``manual`` lines (where to get, where to put),
    ``config`` lines (keys to set for the weights)."""

    done: list[str] = field(default_factory=list)
    manual: list[str] = field(default_factory=list)
    config: list[str] = field(default_factory=list)

    def text(self) -> str:
        parts = list(self.done)
        if self.config:
            parts += ["weights: aahr train and aahr global-branch use these where the keys are null "
                      "(or set them in your --configfile):"] + [f"  {c}" for c in self.config]
        if self.manual:
            parts += ["not fetched (a login or a form is needed); get them by hand:"] + self.manual
        return "\n".join(parts)


@contextlib.contextmanager
def _lock(root: Path):
    import fcntl

    folder = root / DOWNLOADS
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _present(dest: Path) -> bool:
    return dest.is_dir() and any(dest.iterdir())


def fetch(data_root: str | Path, dataset: str, what: list[str], manifest: str | Path | None = None,
          progress: bool = True, retries: int = 3, keep_archives: bool = False,
          features_present: bool = False) -> Outcome:
    """Fetch every ``url`` / ``hf`` source of ``dataset`` whose ``what`` is asked for, and list the
    ``manual`` ones. ``features_present``: a complete precomp copy is already there (skip features)."""
    root = Path(data_root)
    out = Outcome()
    sources = [s for s in load_manifest(manifest) if s.get("what") in what and dataset in s.get("datasets", [])]
    with _lock(root):
        for s in sources:
            if s["kind"] == "manual":
                out.manual.append(f"  - {s['describe']}: {s['where']}\n    put it in "
                                  + s["put"].format(data_root=root, dataset=dataset))
            elif s["kind"] == "hf":
                out.done.append(_fetch_hf(s, root, out, progress))
            else:
                ex = s["extract"][dataset]
                dest = root / ex["to"]
                if s["what"] == "features" and features_present:
                    out.done.append(f"{s['name']}: the {dataset} features are already in place; not fetched")
                    continue
                if s["what"] != "features" and _present(dest):
                    out.done.append(f"{s['name']}: {dest} is already there; not fetched")
                    continue
                archive = root / DOWNLOADS / Path(s["url"].split("?")[0]).name
                out.done += fetch_file(s, archive, progress, retries)
                n = extract(archive, ex["from"], dest)
                out.done.append(f"{s['name']}: {n} files from {s['url']} extracted into {dest}")
                if not keep_archives:
                    archive.unlink()
    return out


def _fetch_hf(s: dict, root: Path, out: Outcome, progress: bool) -> str:
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import HfHubHTTPError
    except ImportError as exc:
        raise AahrError(f"huggingface_hub is not importable ({exc}); pip install huggingface_hub") from None
    dest = root / s["to"]
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    for name in s["files"]:
        try:
            hf_hub_download(s["repo_id"], name, local_dir=dest)
        except HfHubHTTPError as exc:
            raise AahrError(f"{endpoint}/{s['repo_id']} ({name}): {exc}; next step: check the repository name "
                            f"or a login (huggingface-cli login), or put the files in {dest} by hand") from None
        except (OSError, ValueError) as exc:   # offline, unreachable (incl. HF_HUB_OFFLINE without a copy)
            raise AahrError(f"{endpoint}/{s['repo_id']} ({name}): cannot fetch ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}); check the network or HF_ENDPOINT, "
                            f"or put the files in {dest} by hand") from None
    path = dest / s["config"]["value"] if s["config"]["value"] != "." else dest
    out.config.append(f"{s['config']['key']}: {path}")
    return f"{s['name']}: {s['repo_id']} ({', '.join(s['files'])}) in {dest}"
