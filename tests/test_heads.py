"""Fresh without webhooks: a Gerrit listing's `b=` heads (or a folder's ref files) tell which repositories moved,
and only those cost git processes; `tardist worker` polls with them."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import TARDIST, Deployment, Repo, Worker, directory_source, git, git_shim

from loopback.gerrit import FakeGerrit
from loopback.gitdaemon import git_daemon
from tardist.settings import load_settings
from worker.gerrit_listing import listed_heads
from worker.heads import local_heads
from worker.sources import list_repos

PREFIX = "mediawiki/extensions/"
BRANCHES = ("master", "REL1_45", "REL1_44")


def upstream_heads(folder: Path) -> dict[str, str]:
    """{branch: sha1} of a repository, read with the real git (never the logging shim)."""
    out = subprocess.run(["/usr/bin/git", "-C", str(folder), "for-each-ref", "--format=%(refname:short) %(objectname)",
                          "refs/heads/"], capture_output=True, text=True, check=True).stdout
    return dict(line.split(" ") for line in out.splitlines())


@dataclass
class Stack:
    """A deployment whose one source is a Gerrit-shaped listing of tmp_path/upstream/extensions, cloned
    through a real git daemon; `check` runs tardist with every git command it starts logged."""

    deployment: Deployment
    gerrit: FakeGerrit
    shim_path: str
    git_log: Path
    repos: dict[str, Repo]

    def run(self, *args: str, exit_status: int = 0) -> tuple[dict, list[str]]:
        """`tardist sync *args` (it must exit with exit_status): its summary and the git commands it ran."""
        before = len(self.git_commands())
        env = {k: v for k, v in os.environ.items() if not k.startswith("TARDIST_")}
        result = subprocess.run([TARDIST, "sync", *args], cwd=self.deployment.root, capture_output=True, text=True,
                                env={**env, "TARDIST_CONFIG": str(self.deployment.config), "PATH": self.shim_path},
                                timeout=120, stdin=subprocess.DEVNULL)
        assert result.returncode == exit_status, result.stderr
        return self.deployment.summary(result), self.git_commands()[before:]

    def git_commands(self) -> list[str]:
        """Every git command tardist has run so far."""
        return self.git_log.read_text().splitlines() if self.git_log.exists() else []

    def runs(self) -> int:
        """How many sync runs the database records."""
        with sqlite3.connect(self.deployment.settings().database) as db:
            return db.execute("SELECT count(*) FROM runs").fetchone()[0]

    def info(self, name: str) -> dict:
        """/info of an extension, from the database."""
        return self.deployment.app().test_client().get(f"/info/extensions/{name}").get_json()



def gerrit_projects(upstream_root: Path):
    """What the fake Gerrit lists: every repository in upstream_root, with its heads as they are now."""
    def projects() -> dict[str, dict[str, str]]:
        return {PREFIX + folder.name: upstream_heads(folder) for folder in sorted(upstream_root.iterdir())}
    return projects


@pytest.fixture
def stack(deployment, upstream, tmp_path) -> Iterator[Stack]:
    """Cite, Echo and Gadgets behind a paged Gerrit listing (two projects a page) and a git daemon."""
    repos = {name: upstream(name) for name in ("Cite", "Echo", "Gadgets")}
    (tmp_path / "gerrit/mediawiki").mkdir(parents=True)
    (tmp_path / "gerrit/mediawiki/extensions").symlink_to(tmp_path / "upstream/extensions")
    gerrit = FakeGerrit(gerrit_projects(tmp_path / "upstream/extensions"), page_size=2)
    try:
        with git_daemon(tmp_path / "gerrit") as daemon:
            deployment.write_config(
                f'git_config = {{ "url.{daemon}/.insteadOf" = "{gerrit.base}/" }}\n'
                f'[[source]]\nkind = "extensions"\ntype = "gerrit"\nurl = "{gerrit.base}"\nprefix = "{PREFIX}"\n',
                submodule_protocols=["git"], poll_seconds=0)
            git_log = tmp_path / "git.log"
            yield Stack(deployment, gerrit, git_shim(tmp_path / "shim", git_log), git_log, repos)
    finally:
        gerrit.close()


def test_the_listing_asks_for_every_snapshot_branch_and_reads_every_page(stack):
    repos = list_repos(stack.deployment.settings(), []).repos
    heads = stack.gerrit.projects()
    assert [(repo.name, repo.heads) for repo in repos] == [
        (name, heads[PREFIX + name]) for name in ("Cite", "Echo", "Gadgets")]
    branches = "&b=master&b=REL1_45&b=REL1_44"
    assert stack.gerrit.asked == [f"/r/projects/?p=mediawiki%2Fextensions%2F{branches}",
                                  f"/r/projects/?p=mediawiki%2Fextensions%2F{branches}&S=2"]


def test_a_listing_that_says_nothing_moved_costs_no_git_process_and_a_moved_head_is_built(stack, tmp_path):
    first, _ = stack.run()
    assert first["built"] == 3
    runs = stack.runs()
    quiet, commands = stack.run("--changed")
    assert commands == [] and quiet["settled"] == 3 and quiet["repositories"] == 0
    assert stack.runs() == runs, "a check that found nothing moved records no run"
    cite = stack.repos["Cite"]
    cite.commit({"README.md": "news\n"})
    summary, commands = stack.run("--changed")
    assert (summary["repositories"], summary["built"], summary["settled"]) == (1, 1, 2)
    assert [c for c in commands if c.startswith("ls-remote")] == [
        f"ls-remote {stack.gerrit.base}/{PREFIX}Cite refs/heads/master refs/heads/REL1_45 refs/heads/REL1_44"]
    assert not any("Echo" in c or "Gadgets" in c for c in commands)
    assert stack.info("Cite")["branches"]["master"]["commit"] == cite.head()
    last_run = stack.deployment.app().test_client().get("/status").get_json()["runs"][0]
    assert last_run["options"]["changed"] is True and last_run["built"] == 1, "/status tells a check run"
    assert stack.run("--changed")[1] == []


def test_a_tarball_gone_from_disk_is_built_again_by_a_check(stack):
    stack.run()
    tarballs = stack.deployment.settings().tarballs / "extensions"
    (tarballs / stack.info("Echo")["branches"]["master"]["tarball"]).unlink()
    summary, _ = stack.run("--changed")
    assert (summary["repositories"], summary["built"], summary["settled"]) == (1, 1, 2)
    assert (tarballs / stack.info("Echo")["branches"]["master"]["tarball"]).is_file()


def test_a_gerrit_that_says_more_forever_is_listed_once_per_new_page(tmp_path):
    projects = {PREFIX + "Cite": {"master": "a" * 40}, PREFIX + "Echo": {"master": "b" * 40}}
    gerrit = FakeGerrit(lambda: projects, page_size=1)
    gerrit.answer = lambda query: {PREFIX + "Cite": {"id": "x", "_more_projects": True}}  # S= ignored
    try:
        config = tmp_path / "tardist.toml"
        config.write_text(f'[[source]]\nkind = "extensions"\ntype = "gerrit"\nurl = "{gerrit.base}"\n'
                          f'prefix = "{PREFIX}"\n')
        repos = list_repos(load_settings(config, environ={}), []).repos
    finally:
        gerrit.close()
    assert [repo.name for repo in repos] == ["Cite"] and len(gerrit.asked) == 2


def test_a_branch_the_listing_no_longer_has_is_removed_by_a_check(stack, tmp_path):
    echo = stack.repos["Echo"]
    echo.checkout("REL1_45", create=True)
    echo.checkout("master")
    stack.run()
    assert set(stack.info("Echo")["branches"]) == {"master", "REL1_45"}
    git(echo.path, "branch", "-D", "REL1_45")
    summary, _ = stack.run("--changed")
    assert summary["repositories"] == 1
    assert set(stack.info("Echo")["branches"]) == {"master"}


def test_a_branch_waiting_for_its_retry_costs_nothing_until_its_retry_time(stack, tmp_path):
    gadgets = stack.repos["Gadgets"]
    gadgets.commit({"big.bin": os.urandom(300_000)})
    stack.deployment.write_config(max_tarball_bytes=200_000, submodule_protocols=["git"], poll_seconds=0)
    first, _ = stack.run(exit_status=1)
    assert first["failed"] == 1
    summary, commands = stack.run("--changed")
    assert commands == [] and summary["settled"] == 3
    with sqlite3.connect(stack.deployment.settings().database) as db:  # time passes: the retry time comes
        db.execute("UPDATE branches SET retry_at = '2000-01-01T00:00:00Z' WHERE name = 'Gadgets'")
    summary, commands = stack.run("--changed", exit_status=1)
    assert summary["repositories"] == 1 and summary["failed"] == 1
    assert [c.split()[1] for c in commands if c.startswith("ls-remote")] == [f"{stack.gerrit.base}/{PREFIX}Gadgets"]


def test_a_listing_without_heads_sends_every_repository_to_ls_remote(stack):
    stack.run()
    stack.gerrit.honour_b = False  # a Gerrit (or a proxy) that drops b=
    summary, commands = stack.run("--changed")
    assert summary["repositories"] == 3 and len([c for c in commands if c.startswith("ls-remote")]) == 3


@pytest.mark.parametrize("facts", [
    {"id": "x"}, {"branches": ["master"]}, {"branches": {"master": "HEAD"}},
    {"branches": {"master": "a" * 39}}, {"branches": {"master": 1234}}, {"branches": {"master": "A" * 40}},
    "not an object",
])
def test_heads_a_listing_gives_are_taken_only_when_they_are_plain_hashes(facts):
    assert listed_heads(facts, BRANCHES) is None


def test_listed_heads_keep_only_the_snapshot_branches():
    facts = {"branches": {"master": "a" * 40, "REL1_44": "b" * 64, "wip": "c" * 40}}
    assert listed_heads(facts, BRANCHES) == {"master": "a" * 40, "REL1_44": "b" * 64}


def test_a_folder_repositorys_heads_are_read_from_loose_and_packed_refs(upstream, tmp_path):
    cite = upstream("Cite")
    cite.checkout("REL1_45", create=True)
    cite.commit({"README.md": "release\n"})
    cite.checkout("master")
    assert local_heads(cite.path, BRANCHES) == {"master": cite.head("master"), "REL1_45": cite.head("REL1_45")}
    git(cite.path, "pack-refs", "--all")
    assert not (cite.path / ".git/refs/heads/master").exists()
    assert local_heads(cite.path, BRANCHES) == {"master": cite.head("master"), "REL1_45": cite.head("REL1_45")}
    bare = tmp_path / "Bare.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(cite.path), str(bare))
    assert local_heads(bare, BRANCHES) == {"master": cite.head("master"), "REL1_45": cite.head("REL1_45")}
    git(cite.path, "symbolic-ref", "refs/heads/REL1_44", "refs/heads/master")
    assert local_heads(cite.path, BRANCHES) is None  # ls-remote resolves what a plain read cannot
    (cite.path / ".git/refs/heads/REL1_44").write_text("ref: ../../../../../etc/passwd\n")
    assert local_heads(cite.path, BRANCHES) is None


def test_a_directory_source_check_reads_heads_without_git(deployment, upstream, tmp_path):
    cite, upstream_echo = upstream("Cite"), upstream("Echo")
    git_log = tmp_path / "git.log"
    shim = git_shim(tmp_path / "shim", git_log)
    deployment.write_config(directory_source("extensions", tmp_path / "upstream/extensions"), poll_seconds=0)
    fake = FakeGerrit(lambda: {})
    try:
        stack = Stack(deployment, fake, shim, git_log, {})
        stack.run()
        summary, commands = stack.run("--changed")
        assert commands == [] and summary["settled"] == 2
        cite.commit({"README.md": "news\n"})
        summary, commands = stack.run("--changed")
        # the repository is the first path (a directory source's --upload-pack comes before it)
        looked_at = [next(arg for arg in c.split()[1:] if arg.startswith("/")) for c in commands
                     if c.startswith("ls-remote")]
        assert summary["built"] == 1 and looked_at == [str(cite.path)]
        assert upstream_echo.head() == stack.info("Echo")["branches"]["master"]["commit"]
    finally:
        fake.close()


@pytest.mark.slow
def test_the_worker_builds_a_push_within_its_poll_time_without_any_webhook(stack, tmp_path):
    stack.deployment.write_config(submodule_protocols=["git"], poll_seconds=1,
                                  schedule="0 0 1 1 *")
    worker = Worker(stack.deployment, tmp_path / "worker.log", env={"PATH": stack.shim_path})
    try:
        worker.wait_for("sync finished")
        cite = stack.repos["Cite"]
        pushed = time.monotonic()
        head = cite.commit({"README.md": "pushed\n"})
        while stack.info("Cite")["branches"]["master"]["commit"] != head:
            assert time.monotonic() - pushed < 30, worker.text()
            time.sleep(0.2)
        assert "check finished" in worker.text()
    finally:
        worker.stop()
    assert worker.process.returncode == 0
