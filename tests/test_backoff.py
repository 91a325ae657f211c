"""Retries with backoff: what failed at a commit is not tried again at every run."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from helpers import git

from loopback.servers import RefusingGitServer
from worker.run import sync_one


@pytest.fixture
def refusing():
    server = RefusingGitServer()
    yield server
    server.close()


def utcnow() -> datetime:
    """Now, as a naive UTC datetime comparable with when()."""
    return datetime.now(UTC).replace(tzinfo=None)


def when(text: str) -> datetime:
    """A stored utc_iso time."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


def branch_errors(deployment) -> dict[str, dict]:
    status = json.loads(deployment.cli("status").stdout)
    return {e["branch"]: e for e in status["branch_errors"]}


def make_due(deployment, table: str = "branches") -> None:
    """Let time pass: every retry time is now in the past."""
    with sqlite3.connect(deployment.settings().database) as conn:
        conn.execute(f"UPDATE {table} SET retry_at = '2000-01-01T00:00:00Z' WHERE retry_at IS NOT NULL")


@pytest.fixture
def broken(deployment, upstream, refusing):
    """Cite: master and REL1_45 pin a submodule on a server that refuses every fetch."""
    cite = upstream("Cite")
    cite.pin_submodule("lib", refusing.url("Lib"), "1" * 40)
    git(cite.path, "branch", "REL1_45")
    deployment.write_config(submodule_protocols=["file", "git"])
    return cite


@pytest.mark.slow
def test_a_branch_that_failed_is_retried_with_backoff(deployment, broken, refusing):
    first = deployment.sync(check=False)
    assert first.returncode == 1
    fetches = refusing.connections
    assert fetches >= 2  # one per branch at least
    # one reason, said once for both branches
    assert f"FAILED extensions/Cite: master, REL1_45: submodule lib: cannot fetch {refusing.url('Lib')}" in first.stderr
    errors = branch_errors(deployment)
    assert set(errors) == {"master", "REL1_45"}
    assert timedelta(minutes=4) < when(errors["master"]["retry_at"]) - utcnow() <= timedelta(minutes=5)
    info = deployment.app().test_client().get("/info/extensions/Cite").get_json()
    assert info["failures"] == [{"branches": ["master", "REL1_45"], "error": errors["master"]["error"],
                                 "retry_at": errors["master"]["retry_at"]}]
    assert info["errors"] == {"master": errors["master"]["error"], "REL1_45": errors["REL1_45"]["error"]}

    again = deployment.sync(check=False)  # within 5 minutes, same heads: no fetch at all
    assert refusing.connections == fetches
    assert again.returncode == 1 and deployment.summary(again)["waiting"] == 1
    assert f"master, REL1_45: submodule lib: cannot fetch {refusing.url('Lib')}" in again.stderr
    assert f"(not tried again before {errors['master']['retry_at']})" in again.stderr
    assert branch_errors(deployment) == errors

    make_due(deployment)  # 5 minutes later: tried again, and the next wait doubles
    deployment.sync(check=False)
    assert refusing.connections > fetches
    fetches = refusing.connections
    retry = when(branch_errors(deployment)["master"]["retry_at"]) - utcnow()
    assert timedelta(minutes=9) < retry <= timedelta(minutes=10)

    deployment.sync("--retry", check=False)  # the operator asks: tried at once
    assert refusing.connections > fetches
    fetches = refusing.connections

    git(broken.path, "commit", "--quiet", "--allow-empty", "-m", "moved")  # master moves: tried again...
    # ...REL1_45 did not move: it waits
    moved = deployment.sync(check=False)
    assert refusing.connections > fetches, moved.stderr
    fetches = refusing.connections
    errors = branch_errors(deployment)
    assert errors["master"]["commit"] == broken.head()
    assert when(errors["REL1_45"]["retry_at"]) > when(errors["master"]["retry_at"])  # 20 min against 5
    assert "(not tried again before" in moved.stderr

    sync_one(deployment.settings(), "extensions", "Cite", retry=True)  # what the worker does for a webhook
    assert refusing.connections > fetches


def test_a_fixed_branch_forgets_its_failures(deployment, broken):
    deployment.sync(check=False)
    broken.commit({".gitmodules": None})  # master drops the submodule
    result = deployment.sync(check=False)
    assert "FAILED extensions/Cite: REL1_45: submodule lib: cannot fetch" in result.stderr  # master moved and built
    assert list(branch_errors(deployment)) == ["REL1_45"]
    info = deployment.app().test_client().get("/info/extensions/Cite").get_json()
    assert [f["branches"] for f in info["failures"]] == [["REL1_45"]]


@pytest.mark.slow
def test_a_failed_fetch_backs_off_but_ls_remote_never_does(deployment, upstream, tmp_path):
    cite = upstream("Cite")
    gone = tmp_path / "nowhere/Gone.git"
    deployment.write_config(f'\n[[source]]\nkind = "extensions"\ntype = "list"\n'
                            f'repos = {{ Cite = "{cite.path}", Gone = "{gone}" }}\n')
    # the remote lists its head but cannot send it: its commit object is gone
    head = cite.head()
    (cite.path / ".git/objects" / head[:2] / head[2:]).unlink()
    first = deployment.sync(check=False)
    assert "FAILED extensions/Cite: git fetch failed" in first.stderr
    status = json.loads(deployment.cli("status").stdout)
    errors = {e["name"]: e for e in status["repository_errors"]}
    assert errors["Gone"]["retry_at"] is None, "ls-remote is tried at every run"
    assert when(errors["Cite"]["retry_at"]) > utcnow() + timedelta(minutes=4)
    again = deployment.sync(check=False)
    assert f"FAILED extensions/Cite: {errors['Cite']['error']} (not tried again before " \
           f"{errors['Cite']['retry_at']})" in again.stderr
    assert "FAILED extensions/Gone: git ls-remote failed" in again.stderr
    assert deployment.summary(again)["waiting"] == 1
    make_due(deployment, "repos")
    third = deployment.sync(check=False)
    assert "not tried again" not in third.stderr
    status = json.loads(deployment.cli("status").stdout)
    [cite_error] = [e for e in status["repository_errors"] if e["name"] == "Cite"]
    assert when(cite_error["retry_at"]) > utcnow() + timedelta(minutes=9)  # doubled
