"""A shared DVC remote, as docs/dvc.md tells users to set one up: an S3 bucket (here moto's S3 server on
a free port of 127.0.0.1) named in .dvc/config.local with `dvc remote add -d --local`, `dvc push` from
one repository, `dvc pull` in a clone gets the same bytes back. A temporary repository with one
small tracked file: the project's pipeline does not run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import BIN, venv_env

pytestmark = pytest.mark.slow

KEY, SECRET = "aahr-test", "aahr-test-secret"   # moto accepts any credentials
BUCKET = "aahr-dvc"


def run(cmd: list[str], cwd: Path, env: dict, timeout: int = 120) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-4000:]}"
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def env(tmp_path) -> dict:
    """HOME in tmp_path (no user or global DVC / git / AWS config), credentials for the local S3 only,
    and no lookup of AWS's instance metadata."""
    env = {k: v for k, v in venv_env().items() if not k.startswith(("AWS_", "DVC_", "XDG_CONFIG"))}
    home = tmp_path / "home"
    home.mkdir()
    env.update(HOME=str(home), DVC_NO_ANALYTICS="1", AWS_EC2_METADATA_DISABLED="true",
               AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    return env


@pytest.fixture
def s3(tmp_path, env) -> str:
    """moto's S3 server on a free local port with an empty bucket; yields its endpoint URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "moto.log", "w")
    server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not come up:\n{(tmp_path / 'moto.log').read_text()[-2000:]}")
                time.sleep(0.2)
        # the bucket, with a plain S3 request (moto takes any signature)
        urllib.request.urlopen(urllib.request.Request(f"{url}/{BUCKET}", method="PUT"), timeout=10).close()
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_push_to_a_shared_s3_remote_and_pull_in_a_clone(tmp_path, env, s3):
    dvc = str(BIN / "dvc")
    repo = tmp_path / "repo"
    repo.mkdir()
    run([dvc, "config", "--global", "core.check_update", "false"], tmp_path, env)   # in the temporary HOME
    run(["git", "init", "-q"], repo, env)
    run([dvc, "init", "-q"], repo, env)
    data = os.urandom(200_000) + b"aahr\n"
    (repo / "data.bin").write_bytes(data)
    run([dvc, "add", "data.bin"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-q", "-m", "data"], repo, env)

    # what docs/dvc.md says: a default remote in .dvc/config.local (not committed), with its endpoint
    def add_remote(where: Path):
        run([dvc, "remote", "add", "-d", "--local", "shared", f"s3://{BUCKET}/aahr"], where, env)
        run([dvc, "remote", "modify", "--local", "shared", "endpointurl", s3], where, env)
        run([dvc, "remote", "modify", "--local", "shared", "access_key_id", KEY], where, env)
        run([dvc, "remote", "modify", "--local", "shared", "secret_access_key", SECRET], where, env)

    add_remote(repo)
    assert run(["git", "status", "--porcelain"], repo, env) == ""   # .dvc/config.local: not for git
    out = run([dvc, "push"], repo, env)
    assert "1 file pushed" in out, out

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    assert not (clone / "data.bin").exists()
    add_remote(clone)
    run([dvc, "pull"], clone, env)
    assert (clone / "data.bin").read_bytes() == data
