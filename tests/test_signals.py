"""Ctrl-C and SIGTERM to the whole process group: the repository in hand finishes, the rest waits.

A terminal's Ctrl-C, and systemd's default stop, signal every process of the group at once: the
git processes tardist started (fetches, `cat-file` readers) must not die with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import TARDIST, Repo, extension_files

pytestmark = pytest.mark.slow  # a big repository, signalled mid-fetch and mid-pack

BIG_FILES, BIG_FILE_BYTES = 160, 256 * 1024  # 40 MiB that does not compress: seconds to fetch and to pack


@pytest.fixture(scope="module")
def big_repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    """An extension large enough that a signal reliably lands while it is fetched and packed."""
    repo = Repo(tmp_path_factory.mktemp("big") / "Big")
    files: dict[str, str | bytes] = dict(extension_files("Big"))
    for index in range(BIG_FILES):
        files[f"data/blob{index:03}.bin"] = os.urandom(BIG_FILE_BYTES)
    repo.commit(files)
    return repo


def wait_for_file(pattern: str, root: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(root.glob(pattern)):
            return
        assert process.poll() is None, "tardist ended before the moment to signal came"
        time.sleep(0.002)
    raise AssertionError(f"no {pattern} appeared")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("moment, pattern", [
    ("fetch", "mirrors/extensions/Big.git/objects/pack/tmp_pack_*"),
    ("pack", "tarballs/extensions/.tmp-Big-master-*"),
])
def test_a_signal_to_the_process_group_finishes_the_repository_in_hand(deployment, upstream, big_repo,
                                                                       signum, moment, pattern):
    small = upstream("Small")
    deployment.write_config(f'[[source]]\nkind = "extensions"\ntype = "list"\n'
                            f'repos = {{ Big = "{big_repo.path}", Small = "{small.path}" }}\n', jobs=1,
                            git_timeout=300)  # the 40 MiB fetch must outlast a loaded machine
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARDIST_")}
    process = subprocess.Popen([TARDIST, "sync"], cwd=deployment.root, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env={**env, "TARDIST_CONFIG": str(deployment.config)})
    try:
        wait_for_file(pattern, deployment.root, process)
        os.killpg(process.pid, signum)  # as a terminal's Ctrl-C or systemd's KillMode=control-group
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, err
    assert f"{signal.Signals(signum).name}: finishing the repositories in hand, then stopping" in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["interrupted"] is True
    assert (summary["repositories"], summary["built"], summary["failed"]) == (1, 1, 0), err
    facts = deployment.app().test_client().get("/info/extensions/Big").get_json()
    assert facts["errors"] == {} and facts["error"] is None
    published = deployment.root / "tarballs/extensions" / facts["branches"]["master"]["tarball"]
    assert hashlib.sha256(published.read_bytes()).hexdigest() == facts["branches"]["master"]["sha256"]
    assert deployment.app().test_client().get("/info/extensions/Small").status_code == 404, "not started"
    assert json.loads(deployment.cli("status").stdout)["runs"][0]["status"] == "interrupted"
