"""`tardist sync` killed at any moment (SIGKILL: power cut, OOM killer) never publishes a broken file.

After every kill: each file under a final tarball name is a complete tar.gz whose
sha256 is what the database records, and the database is intact. A sync after the
kills finishes and ends exactly where an uninterrupted sync ends.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from helpers import (
    TARDIST,
    Deployment,
    Repo,
    assert_published_is_the_app,
    directory_source,
    extension_files,
    git,
    make_deployment,
    processes_naming,
)

from loopback.gitdaemon import git_daemon
from loopback.servers import HangingFetchServer
from tardist.answers import GERRIT_XSSI_PREFIX

pytestmark = pytest.mark.slow  # each test kills a sync, fills a disk or hangs a fetch on purpose

KILLS = 32
KINDS = ("extensions", "skins")


def make_corpus(root: Path) -> None:
    """18 small repositories (one with a submodule, some with big files) with up to 3 snapshot branches."""
    rng = random.Random(5)
    lib = Repo(root / "lib" / "SharedLib")
    lib.commit({"shared.js": "// shared\n" * 200})
    for index in range(18):
        kind = KINDS[index % 5 == 4]
        name = f"Corpus{index:02d}"
        repo = Repo(root / kind / name)
        files: dict[str, str | bytes] = dict(extension_files(name))
        files.update({f"includes/File{n}.php": f"<?php // {name} {n}\n" * 50 for n in range(12)})
        if index % 3 == 0:  # incompressible: writing the tarball takes a while, so kills land in it
            files["assets/blob.bin"] = rng.randbytes(400_000)
        repo.commit(files)
        if index % 2 == 0:
            git(repo.path, "branch", "REL1_44")
        repo.commit({"README.md": f"# {name}, newer\n"})
        if index % 3 != 2:
            git(repo.path, "branch", "REL1_45")
        if index == 7:
            git(repo.path, "submodule", "add", "--quiet", str(lib.path), "lib/shared")
            repo.commit(message="add a submodule")
        repo.commit({"CHANGELOG": "master moves on\n"})


def new_deployment(root: Path, corpus: Path) -> Deployment:
    """A deployment folder syncing the corpus."""
    return make_deployment(root.parent, directory_source("extensions", corpus / "extensions")
                           + directory_source("skins", corpus / "skins"), folder=root.name, jobs=2)


def reset(deployment: Deployment) -> None:
    """Back to a deployment that never synced."""
    for folder in ("mirrors", "tarballs", "published", "instance"):
        shutil.rmtree(deployment.root / folder, ignore_errors=True)


def start_sync(deployment: Deployment) -> subprocess.Popen:
    """`tardist sync` in its own process group (git and composer run in sessions of their own: a group
    kill reaches tardist alone, and they end because tardist did; see worker/children.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARDIST_")}
    env["TARDIST_CONFIG"] = str(deployment.config)
    return subprocess.Popen([TARDIST, "sync"], cwd=deployment.root, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def kill_after(deployment: Deployment, seconds: float) -> bool:
    """Start a sync and SIGKILL its process group after seconds; True when it was still running."""
    process = start_sync(deployment)
    time.sleep(seconds)
    running = process.poll() is None
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)
    return running


def final_tarballs(deployment: Deployment) -> list[Path]:
    """Files under a final tarball name."""
    return sorted(path for kind in KINDS for path in (deployment.root / "tarballs" / kind).glob("*.tar.gz")
                  if not path.name.startswith("."))


def temporaries(deployment: Deployment) -> list[Path]:
    """Temporary tarball files."""
    return sorted((deployment.root / "tarballs").glob("*/.tmp-*"))


def check_consistent(deployment: Deployment) -> int:
    """Every published tarball and answer is whole, tarballs match the database; the database is intact.

    Returns the count of tarballs.
    """
    for path in (deployment.root / "published").rglob("*.json"):
        if not path.name.startswith("."):
            # never a half-written answer under a final name (Gerrit's answers start with its XSSI line)
            json.loads(path.read_bytes().removeprefix(GERRIT_XSSI_PREFIX))
    digests = {}
    for path in final_tarballs(deployment):
        data = path.read_bytes()
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:  # gzip checks CRC and length
            for member in tar:
                if member.isfile():
                    tar.extractfile(member).read()
        digests[(path.parent.name, path.name)] = (hashlib.sha256(data).hexdigest(), len(data))
    database = deployment.root / "instance/tardist.sqlite3"
    if database.exists():
        with sqlite3.connect(database) as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            if db.execute("PRAGMA user_version").fetchone()[0] > 0:
                for kind, file, sha256, size in db.execute("SELECT kind, file, sha256, size FROM tarballs"):
                    assert digests.get((kind, file)) == (sha256, size), f"{kind}/{file} is not what was recorded"
                for kind, file, sha256 in db.execute(
                        "SELECT kind, tarball, sha256 FROM branches WHERE tarball IS NOT NULL"):
                    assert digests.get((kind, file), ("",))[0] == sha256, f"{kind}/{file} is not what was recorded"
        db.close()
    return len(digests)


def answers(deployment: Deployment) -> dict:
    """What the API says, less the times that differ between two runs."""
    client = deployment.app().test_client()
    facts = {"/list": client.get("/list").get_json()}
    for kind in KINDS:
        repos = client.get(f"/info/{kind}").get_json()[kind]
        for repo in repos.values():
            for branch in repo["branches"].values():
                branch.pop("built_at")
        facts[f"/info/{kind}"] = repos
    facts["counts"] = client.get("/status").get_json()["counts"]
    return facts


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    make_corpus(tmp_path / "corpus")
    return tmp_path / "corpus"


def test_sigkill_at_any_moment_leaves_only_whole_tarballs_and_a_sound_database(tmp_path, corpus):
    clean = new_deployment(tmp_path / "clean", corpus)
    killed = new_deployment(tmp_path / "killed", corpus)
    full_runs = []
    for deployment in (clean, killed):  # the faster of two runs, so that kills land inside the run
        started = time.monotonic()
        deployment.sync()
        full_runs.append(time.monotonic() - started)
    full_run = min(full_runs)
    expected = answers(clean)
    total = check_consistent(clean)
    assert total == 39  # 18 master, 12 REL1_45, 9 REL1_44

    seen_counts, interrupted = set(), 0
    for attempt in range(KILLS):
        if attempt % 4 != 3:  # mostly from scratch; every fourth kill lands on what the previous one left
            reset(killed)
        moment = full_run * (0.03 + 0.95 * (attempt + random.random()) / KILLS)
        interrupted += kill_after(killed, moment)
        seen_counts.add(check_consistent(killed))
    assert interrupted >= KILLS // 2, f"most kills must land while the sync runs (full run {full_run:.1f}s)"
    assert len(seen_counts) >= 5, f"kills should land all along the run, saw tarball counts {sorted(seen_counts)}"

    result = killed.sync(check=False)
    assert result.returncode == 0, result.stderr
    assert temporaries(killed) == []
    assert list(killed.root.rglob(".tmp-*")) == [], "no temporary file or folder is left anywhere"
    assert check_consistent(killed) == total
    assert [p.name for p in final_tarballs(killed)] == [p.name for p in final_tarballs(clean)]
    assert answers(killed) == expected
    assert_published_is_the_app(killed)
    assert json.loads(killed.cli("status").stdout)["repository_errors"] == []


def test_a_killed_git_fetch_does_not_wedge_the_mirror(tmp_path, corpus):
    """Stale git lock files (a fetch killed while updating refs) must not fail every later sync."""
    deployment = new_deployment(tmp_path / "deploy", corpus)
    deployment.sync()
    mirror = deployment.root / "mirrors/extensions/Corpus00.git"
    for lock in ("refs/heads/master.lock", "packed-refs.lock", "shallow.lock", "config.lock", "HEAD.lock"):
        (mirror / lock).write_text("")
    repo = corpus / "extensions/Corpus00"
    git(repo, "commit", "--quiet", "--allow-empty", "-m", "new commit")
    head = git(repo, "rev-parse", "HEAD")
    result = deployment.sync(check=False)
    assert result.returncode == 0, result.stderr
    facts = deployment.app().test_client().get("/info/extensions/Corpus00").get_json()
    assert facts["branches"]["master"]["commit"] == head


def test_sigkill_during_a_hanging_fetch_leaves_no_git_and_the_next_fetch_is_safe(tmp_path, upstream):
    """ls-remote answers, the fetch hangs; SIGKILL the sync: its git ends, and the next run fetches whole."""
    repo = upstream("Cite")
    bare = tmp_path / "served/Cite.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(repo.path), str(bare))
    deployment = make_deployment(tmp_path, "")  # its sources are written once the daemon runs
    with git_daemon(tmp_path / "served") as daemon:
        proxy = HangingFetchServer(daemon)
        try:
            url = proxy.url("Cite")
            deployment.write_config(f'[[source]]\nkind = "extensions"\ntype = "list"\nrepos = {{ Cite = "{url}" }}\n',
                                    git_timeout=300)
            process = start_sync(deployment)
            assert proxy.fetching.wait(60), "the sync reached its fetch"
            time.sleep(0.5)
            assert any("fetch" in p for p in processes_naming(url)), processes_naming(url)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            deadline = time.monotonic() + 10
            while processes_naming(url) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert processes_naming(url) == [], "git outlived the killed sync"
        finally:
            proxy.close()
        deployment.write_config(f'[[source]]\nkind = "extensions"\ntype = "list"\n'
                                f'repos = {{ Cite = "{daemon}/Cite.git" }}\n')
        deployment.sync()
    mirror = deployment.root / "mirrors/extensions/Cite.git"
    subprocess.run(["git", "fsck", "--no-progress", "--strict"], cwd=mirror, check=True, capture_output=True)
    assert git(mirror, "rev-parse", "refs/heads/master") == repo.head()
    assert processes_naming(str(deployment.root)) == []


@pytest.fixture
def small_tarballs_disk(tmp_path: Path):
    """A 512 KiB tmpfs as the deployment's tarballs folder."""
    folder = tmp_path / "deploy" / "tarballs"
    folder.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0755", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_disk_full_while_writing_a_tarball_leaves_no_partial_file(tmp_path, upstream, small_tarballs_disk):
    upstream("Huge", files={"blob.bin": random.Random(1).randbytes(2 * 1024 * 1024)})
    upstream("Small")
    deployment = make_deployment(tmp_path, directory_source("extensions", tmp_path / "upstream/extensions"), jobs=1)
    result = deployment.sync(check=False)
    assert result.returncode == 1, result.stderr
    summary = deployment.summary(result)
    assert (summary["built"], summary["failed"]) == (1, 1)
    status = json.loads(deployment.cli("status").stdout)
    [error] = status["branch_errors"]
    assert (error["name"], error["branch"]) == ("Huge", "master")
    assert error["error"].startswith("cannot write Huge-master-") and "No space left on device" in error["error"]
    files = sorted(p.name for p in (small_tarballs_disk / "extensions").iterdir())
    assert len(files) == 1 and files[0].startswith("Small-master-"), files
    check_consistent(deployment)
