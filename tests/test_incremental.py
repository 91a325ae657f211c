"""Incremental, parallel sync: cost follows what changed, not what exists."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
from helpers import TARDIST, git


def mirror_refs(deployment, name: str) -> list[str]:
    return git(deployment.root / f"mirrors/extensions/{name}.git", "for-each-ref", "--format=%(refname)").split()


def test_only_snapshot_branches_are_fetched(deployment, upstream):
    repo = upstream("Cite")
    for number in range(12):
        git(repo.path, "branch", f"wmf/1.46.0-wmf.{number}")
    git(repo.path, "branch", "REL1_44")
    git(repo.path, "tag", "-a", "1.0.0", "-m", "a release tag")
    deployment.sync()
    assert mirror_refs(deployment, "Cite") == ["refs/heads/REL1_44", "refs/heads/master"]


@pytest.mark.slow
def test_noop_sync_does_not_fetch(deployment, upstream):
    upstream("Cite")
    changed = upstream("Echo")
    deployment.sync()
    for name in ("Cite", "Echo"):
        shutil.rmtree(deployment.root / f"mirrors/extensions/{name}.git")
    summary = deployment.summary(deployment.sync())
    assert (summary["built"], summary["unchanged"]) == (0, 2)
    assert not (deployment.root / "mirrors/extensions/Cite.git").exists(), "an unchanged repository is not fetched"
    changed.commit({"README.md": "changed\n"})
    summary = deployment.summary(deployment.sync())
    assert (summary["built"], summary["unchanged"]) == (1, 1)
    assert (deployment.root / "mirrors/extensions/Echo.git").exists()
    assert not (deployment.root / "mirrors/extensions/Cite.git").exists()


@pytest.mark.slow
def test_missing_tarball_file_is_rebuilt(deployment, upstream):
    repo = upstream("Cite")
    deployment.sync()
    path = deployment.root / f"tarballs/extensions/Cite-master-{repo.head()[:7]}.tar.gz"
    path.unlink()
    assert deployment.summary(deployment.sync())["built"] == 1
    assert path.is_file()


def test_a_slow_repository_does_not_hold_up_the_others(deployment, upstream, hanging_remote, tmp_path):
    for name in ("Cite", "Echo", "Math", "Thanks"):
        upstream(name)
    names = ("Cite", "Echo", "Math", "Thanks")
    repos = ", ".join(f'{name} = "{tmp_path}/upstream/extensions/{name}"' for name in names)
    deployment.write_config(f'[[source]]\nkind = "extensions"\ntype = "list"\n'
                            f'repos = {{ Aaa = "{hanging_remote.url("Aaa")}", {repos} }}\n', jobs=2, git_timeout=120)
    sync = subprocess.Popen([TARDIST, "sync"], cwd=deployment.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={"TARDIST_CONFIG": str(deployment.config), "PATH": "/usr/bin:/bin"})
    try:
        client = deployment.app().test_client()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            response = client.get("/list/extensions")
            if response.status_code == 200 and len(response.get_json()["extensions"]) == 4:
                break
            time.sleep(0.2)
        assert response.get_json() == {"extensions": ["Cite", "Echo", "Math", "Thanks"]}
        assert sync.poll() is None, "the hanging repository is still in hand while the others are recorded"
    finally:
        hanging_remote.close()
        out, err = sync.communicate(timeout=60)
    assert sync.returncode == 1
    summary = json.loads(out.splitlines()[-1])
    assert (summary["repositories"], summary["built"], summary["failed"]) == (5, 4, 1)
    assert "FAILED extensions/Aaa" in err


def test_progress_lines_when_not_on_a_terminal(deployment, upstream):
    upstream("Cite")
    result = deployment.sync()
    lines = [line for line in result.stderr.splitlines() if not line.startswith("tardist: warning:")]
    assert lines[0] == "syncing 1 repositories"
    assert lines[-1].startswith("1/1 repositories, 1 tarballs built, 0 failed")


@pytest.mark.slow
def test_a_branch_moved_back_to_a_kept_tarball_is_not_rebuilt(deployment, upstream):
    repo = upstream("Cite")
    old = repo.head()
    deployment.sync()
    old_tarball = deployment.root / f"tarballs/extensions/Cite-master-{old[:7]}.tar.gz"
    mtime = old_tarball.stat().st_mtime_ns
    new = repo.commit({"README.md": "a change that gets reverted by a force-push\n"})
    deployment.sync()
    assert (deployment.root / f"tarballs/extensions/Cite-master-{new[:7]}.tar.gz").is_file()
    git(repo.path, "reset", "--hard", "--quiet", old)
    summary = deployment.summary(deployment.sync())
    assert (summary["built"], summary["unchanged"]) == (0, 1)
    assert old_tarball.stat().st_mtime_ns == mtime
    facts = deployment.app().test_client().get("/info/extensions/Cite").get_json()
    assert facts["branches"]["master"]["commit"] == old
    status = json.loads(deployment.cli("status").stdout)
    assert (status["counts"]["tarballs"], status["counts"]["superseded_tarballs"]) == (1, 1)
