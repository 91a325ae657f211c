"""worker/mirror.py as the attack: no template, hook or foreign config reaches a mirror's git, and no git
tardist starts outlives tardist or its time limit, or lets go of the lock of the mirror it writes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from helpers import directory_source, git, processes_naming, wait_done

from tardist.queue import HEADS, Queue
from worker.dispatcher import Dispatcher
from worker.git import run_git
from worker.lock import file_lock
from worker.mirror import ensure_mirror, fetch_branches

ROOT = Path(__file__).resolve().parent.parent


def hook(folder: Path, name: str, marker: Path) -> None:
    """An executable hook that leaves marker behind when it runs."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(f"#!/bin/sh\necho ran >> {marker}\n")
    (folder / name).chmod(0o755)


def fresh_config(tmp_path: Path) -> bytes:
    """The config of a bare repository made with an empty template."""
    subprocess.run(["git", "init", "-q", "--bare", "--template=", str(tmp_path / "fresh.git")], check=True)
    return (tmp_path / "fresh.git/config").read_bytes()


def test_a_template_never_reaches_a_mirror(tmp_path, upstream):
    """init.templateDir (refused at load; given here past the settings) copies no hook and no config."""
    repo = upstream("Cite")
    template = tmp_path / "template"
    marker = tmp_path / "MARKER"
    hook(template / "hooks", "reference-transaction", marker)
    (template / "config").write_text(f"[core]\n\tsshCommand = touch {marker}\n\tfsmonitor = true\n")
    mirror = tmp_path / "mirrors/Cite.git"
    fetch_branches(mirror, str(repo.path), ["master"], timeout=30, config=(("init.templateDir", str(template)),))
    assert not marker.exists(), "a template's hook ran"
    assert not (mirror / "hooks").exists()
    assert (mirror / "config").read_bytes() == fresh_config(tmp_path)


def test_no_hook_runs_even_when_the_settings_name_a_hook_folder(tmp_path, upstream):
    repo = upstream("Cite")
    mirror = tmp_path / "Cite.git"
    ensure_mirror(mirror)
    marker = tmp_path / "MARKER"
    hooks = tmp_path / "hooks"
    hook(hooks, "reference-transaction", marker)
    hook(mirror / "hooks", "reference-transaction", marker)  # planted after tardist last looked
    config = (("core.hooksPath", str(hooks)),)  # refused at load; the safety setting wins anyway
    run_git(["fetch", "--quiet", str(repo.path), "+refs/heads/*:refs/heads/*"], cwd=mirror, timeout=30, config=config)
    run_git(["update-ref", "-d", "refs/heads/master"], cwd=mirror, config=config)
    assert not marker.exists(), "a hook ran"


@pytest.mark.slow
def test_a_mirror_with_hooks_or_foreign_config_is_repaired(deployment, upstream, tmp_path):
    repo = upstream("Cite")
    deployment.sync()
    mirror = deployment.root / "mirrors/extensions/Cite.git"
    marker = tmp_path / "MARKER"
    hook(mirror / "hooks", "reference-transaction", marker)
    (mirror / "hooks/pre-receive.sample").write_text("never runs\n")
    head = repo.commit({"NEW": "new\n"})
    result = deployment.sync()
    assert "repaired mirror" in result.stderr and "reference-transaction" in result.stderr, result.stderr
    assert not (mirror / "hooks").exists() and not marker.exists()
    clean = deployment.sync()
    assert "repaired" not in clean.stderr, "a repaired mirror stays as tardist wrote it"

    with open(mirror / "config", "a") as config:  # as a template or a hand would: read by every git here
        config.write(f"[core]\n\tsshCommand = touch {marker}\n[include]\n\tpath = {tmp_path}/more\n")
    result = deployment.sync("--force")  # nothing to fetch: the mirror is read as it is
    assert "config tardist did not write" in result.stderr, result.stderr
    assert (mirror / "config").read_bytes() == fresh_config(tmp_path) and not marker.exists()
    info = deployment.app().test_client().get("/info/extensions/Cite").get_json()
    assert info["branches"]["master"]["commit"] == head


def run_in_child(tmp_path: Path, code: str) -> subprocess.Popen:
    """A Python process running code with tardist importable; it writes 'started' when git is about to start."""
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def wait_for(condition, seconds: float, what: str) -> float:
    """Wait until condition() is true; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, what
        time.sleep(0.05)
    return time.monotonic() - started


def test_git_ends_when_tardist_dies_children_included(tmp_path, hanging_remote):
    """An https remote that never answers: git ls-remote and its git-remote-https child both end."""
    url = f"http://127.0.0.1:{hanging_remote.port}/never/answers.git"
    child = run_in_child(tmp_path, f"""
        from worker.git import run_git
        run_git(["ls-remote", "{url}"], timeout=300)
    """)
    try:
        wait_for(lambda: any("git-remote-http" in p for p in processes_naming(url)), 30, "git-remote-http runs")
        child.kill()
        child.wait()
        wait_for(lambda: not processes_naming(url), 10, f"git outlived tardist: {processes_naming(url)}")
    finally:
        child.kill()
        child.wait()


def test_the_time_limit_holds_while_tardist_cannot_act(tmp_path, hanging_remote):
    """The timeout is enforced outside Python: a stopped tardist's git still ends on time."""
    url = hanging_remote.url("stopped")
    child = run_in_child(tmp_path, f"""
        from worker.git import run_git
        run_git(["ls-remote", "{url}"], timeout=2)
    """)
    try:
        wait_for(lambda: processes_naming(url), 30, "git runs")
        os.kill(child.pid, signal.SIGSTOP)
        waited = wait_for(lambda: not processes_naming(url), 15, f"git outlived its time: {processes_naming(url)}")
        assert waited < 4
    finally:
        os.kill(child.pid, signal.SIGCONT)
        child.kill()
        child.wait()


@pytest.mark.slow
def test_the_mirror_lock_is_free_only_once_every_git_of_a_dead_tardist_has_ended(tmp_path, upstream):
    """A git child that outlives tardist a while (here an ssh that shrugs off SIGTERM) keeps the lock."""
    mirror = tmp_path / "Cite.git"
    ensure_mirror(mirror)
    lock = tmp_path / "Cite.lock"
    token = f"stubborn-{os.getpid()}"
    started = tmp_path / "started"
    ssh = f"sh -c 'touch {started}; trap \"\" TERM; sleep 30; : {token}' --"
    child = run_in_child(tmp_path, f"""
        from pathlib import Path
        from worker.lock import file_lock
        from worker.git import run_git
        config = (("core.sshCommand", {ssh!r}),)  # refused at load; a stand-in for a slow end
        with file_lock(Path({str(lock)!r})):
            run_git(["fetch", "ssh://example.invalid/r.git"], cwd=Path({str(mirror)!r}), timeout=300, config=config)
    """)
    try:
        wait_for(started.exists, 30, "the fetch runs")
        child.kill()
        child.wait()
        assert processes_naming(token), "the stand-in outlives tardist for the grace period"
        with file_lock(lock):
            assert not processes_naming(token), "the lock was taken over while a git of the dead tardist ran"
        assert not processes_naming(token)
    finally:
        child.kill()
        child.wait()


def test_git_variables_of_tardists_environment_never_reach_git(tmp_path, upstream, monkeypatch):
    """GIT_CONFIG_PARAMETERS (what `git -c` passes on) would outvote the safety settings; GIT_TEMPLATE_DIR
    would fill a new mirror."""
    repo = upstream("Cite")
    marker = tmp_path / "MARKER"
    hook(tmp_path / "hooks", "reference-transaction", marker)
    hook(tmp_path / "template/hooks", "reference-transaction", marker)
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", f"'core.hookspath'='{tmp_path / 'hooks'}'")
    monkeypatch.setenv("GIT_TEMPLATE_DIR", str(tmp_path / "template"))
    mirror = tmp_path / "mirrors/Cite.git"
    fetch_branches(mirror, str(repo.path), ["master"], timeout=30)
    assert not marker.exists(), "a hook ran"
    assert git(mirror, "rev-parse", "refs/heads/master") == repo.head()


NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving repositories to another user (chown) needs root")


def give_away(folder: Path) -> None:
    """Make folder and everything in it belong to nobody, as repositories that Gerrit or a git user owns."""
    for path in (folder, *folder.rglob("*")):
        os.lchown(path, NOBODY, NOBODY)


@needs_root
def test_a_directory_sources_repositories_sync_whoever_owns_them(deployment, upstream, tmp_path):
    cite = upstream("Cite")  # a work tree: git names its .git
    git(cite.path, "branch", "REL1_45")
    vector = upstream("Vector", kind="skins", files={"skin.json": json.dumps({"name": "Vector", "type": "skin"})})
    git(tmp_path / "upstream/skins", "clone", "--quiet", "--bare", str(vector.path), "Bare.git")  # bare: its folder
    shutil.rmtree(vector.path)
    give_away(tmp_path / "upstream")
    result = deployment.sync(check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert deployment.summary(result)["built"] == 3  # Cite master and REL1_45, Bare master


@needs_root
def test_only_the_repositories_of_directory_sources_are_trusted(deployment, upstream, tmp_path):
    elsewhere = upstream("Elsewhere", kind="other")  # named by a list source: the operator named a URL, not a folder
    deeper = upstream("Deeper", kind="apps/nested")  # inside a source's folder, but not directly
    give_away(tmp_path / "upstream")
    deployment.write_config(directory_source("apps", tmp_path / "upstream/apps")
                            + f'\n[[source]]\nkind = "tools"\ntype = "list"\n'
                            f'repos = {{ Elsewhere = "{elsewhere.path}", Deeper = "{deeper.path}" }}\n')
    result = deployment.sync(check=False)
    assert deployment.summary(result)["failed"] == 2, result.stdout + result.stderr
    assert result.stderr.count("detected dubious ownership") == 2, result.stderr


@needs_root
def test_the_workers_head_checks_trust_directory_sources_too(deployment, upstream, tmp_path):
    head = upstream("Cite").head()
    give_away(tmp_path / "upstream")
    settings = deployment.settings()
    stop = threading.Event()
    thread = threading.Thread(target=Dispatcher(settings, stop).run)  # no sync ran: what a webhook's check meets
    thread.start()
    queue = Queue(settings.queue_file)
    try:
        answer = wait_done(queue, queue.request(HEADS, "extensions", "Cite", reason="build"))
        assert answer.result.get("heads") == {"master": head}, answer.result
    finally:
        stop.set()
        thread.join(60)
        queue.close()
