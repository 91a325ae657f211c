"""What the tests share besides fixtures: real git repositories, a deployment folder and its command line,
a `tardist worker` process, sample data. Fixtures built on these are in conftest.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from tardist import create_app, schema
from tardist.queue import Queue
from tardist.schema import MIGRATIONS
from tardist.settings import Settings, load_settings
from worker.publish import published_files

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author", "GIT_AUTHOR_EMAIL": "author@example.org",
    "GIT_COMMITTER_NAME": "Test Committer", "GIT_COMMITTER_EMAIL": "committer@example.org",
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
}
TARDIST = str(Path(sys.executable).with_name("tardist"))


def git(cwd: Path, *args: str, date: str = "2026-01-02T03:04:05Z") -> str:
    """Run git in cwd with a fixed identity and date; return its stdout."""
    env = {**os.environ, **GIT_ENV, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    return subprocess.run(["git", "-c", "protocol.file.allow=always", *args], cwd=cwd, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


class Repo:
    """A real non-bare git repository to commit to, standing in for an upstream."""

    def __init__(self, path: Path, branch: str = "master") -> None:
        self.path = path
        path.mkdir(parents=True)
        git(path, "init", "--quiet", "-b", branch)
        self.commits = 0

    def write(self, files: dict[str, str | bytes | None]) -> None:
        """Write (or with None delete) files in the work tree."""
        for name, content in files.items():
            target = self.path / name
            if content is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content if isinstance(content, bytes) else content.encode())

    def symlink(self, name: str, target: str) -> None:
        """Add a symlink name -> target to the work tree."""
        link = self.path / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)

    def commit(self, files: dict[str, str | bytes | None] | None = None, message: str | None = None) -> str:
        """Commit files (all changes); return the new commit id."""
        self.write(files or {})
        self.commits += 1
        git(self.path, "add", "-A")
        git(self.path, "commit", "--quiet", "--allow-empty", "-m", message or f"commit {self.commits}",
            date=f"2026-01-{self.commits:02d}T10:00:00Z")
        return self.head()

    def pin_submodule(self, path: str, url: str, commit: str) -> str:
        """Commit a submodule at path pinned to commit, with url in .gitmodules, however hostile."""
        name = f"module{self.commits}"
        git(self.path, "config", "-f", ".gitmodules", f"submodule.{name}.path", path)
        git(self.path, "config", "-f", ".gitmodules", f"submodule.{name}.url", url)
        git(self.path, "update-index", "--add", "--cacheinfo", f"160000,{commit},{path}")
        git(self.path, "add", ".gitmodules")
        self.commits += 1
        git(self.path, "commit", "--quiet", "-m", f"add submodule {path}",
            date=f"2026-01-{self.commits:02d}T10:00:00Z")
        return self.head()

    def head(self, ref: str = "HEAD") -> str:
        """The commit id of ref."""
        return git(self.path, "rev-parse", f"{ref}^{{commit}}")

    def checkout(self, branch: str, create: bool = False) -> None:
        """Switch (or create and switch) branch."""
        git(self.path, "checkout", "--quiet", *(["-b"] if create else []), branch)


def manifest(name: str, **fields: Any) -> str:
    """A realistic extension.json."""
    data = {"name": name, "version": "1.0.0", "author": ["Ada", "Grace"], "url": f"https://example.org/{name}",
            "descriptionmsg": f"{name.lower()}-desc", "license-name": "GPL-2.0-or-later", "type": "other",
            "requires": {"MediaWiki": ">= 1.45.0"}, "manifest_version": 2, **fields}
    return json.dumps(data, indent=1)


def extension_files(name: str, **fields: Any) -> dict[str, str]:
    """The files of a small, well-formed extension."""
    return {
        "extension.json": manifest(name, **fields),
        "i18n/en.json": json.dumps({f"{name.lower()}-desc": f"The {name} extension"}),
        f"includes/{name}.php": f"<?php\nclass {name} {{}}\n",
        "README.md": f"# {name}\n",
    }


def upstream_maker(tmp: Path) -> Callable[..., Repo]:
    """A function that makes upstream repositories under tmp/upstream/<kind>/<Name>, each with one commit
    (a small extension unless files are given)."""
    def make(name: str, kind: str = "extensions", files: dict | None = None, branch: str = "master") -> Repo:
        repo = Repo(tmp / "upstream" / kind / name, branch)
        repo.commit(extension_files(name) if files is None else files)
        return repo
    return make


@dataclass
class Deployment:
    """A tardist deployment folder: config file, database, mirrors, tarballs."""

    root: Path
    config: Path
    sources: str = ""

    def settings(self) -> Settings:
        """The deployment's settings, as the worker and the app load them."""
        return load_settings(self.config, environ={})

    def write_config(self, text: str | None = None, **keys: Any) -> None:
        """Write the TOML file: the standard paths, keys, then text ([[source]] tables; default: as before)."""
        self.sources = text = self.sources if text is None else text
        values = {"database": str(self.root / "instance/tardist.sqlite3"), "mirrors": str(self.root / "mirrors"),
                  "tarballs": str(self.root / "tarballs"), "published": str(self.root / "published"),
                  "branches": ["master", "REL1_45", "REL1_44"],
                  "jobs": 2, "submodule_protocols": ["file"], "git_timeout": 20, **keys}
        lines = [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        self.config.write_text("\n".join(lines) + "\n" + text)

    def sync(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run `tardist sync` as cron would; with check, it must exit 0."""
        return self.cli("sync", *args, check=check, timeout=timeout)

    def cli(self, *args: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run the tardist command line in the deployment folder."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TARDIST_")}
        result = subprocess.run([TARDIST, *args], cwd=self.root, env={**env, "TARDIST_CONFIG": str(self.config)},
                                capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def summary(self, result: subprocess.CompletedProcess) -> dict:
        """The JSON summary line `tardist sync` prints last on stdout."""
        return json.loads(result.stdout.strip().splitlines()[-1])

    def app(self, **overrides: Any):
        """The Flask app of this deployment (its TOML file's settings, then overrides)."""
        return create_app({"TESTING": True, **tomllib.loads(self.config.read_text()), **overrides})


def link_venv(root: Path) -> None:
    """root/.venv/bin with this interpreter's tardist and gunicorn, as a deployment's own virtualenv has them."""
    (root / ".venv/bin").mkdir(parents=True)
    for program in ("tardist", "gunicorn"):
        (root / ".venv/bin" / program).symlink_to(Path(sys.executable).with_name(program))


def directory_source(kind: str, path: Path) -> str:
    """A [[source]] table of type directory."""
    return f'\n[[source]]\nkind = "{kind}"\ntype = "directory"\npath = "{path}"\n'


def make_deployment(tmp: Path, sources: str | None = None, folder: str = "deploy", **keys: Any) -> Deployment:
    """A deployment in tmp/folder with its config file: the standard paths, keys, then sources ([[source]] tables;
    by default tmp/upstream/extensions and tmp/upstream/skins as directory sources, made empty if missing)."""
    root = tmp / folder
    root.mkdir(parents=True, exist_ok=True)
    deployment = Deployment(root, root / "tardist.toml")
    if sources is None:
        for kind in ("extensions", "skins"):
            (tmp / "upstream" / kind).mkdir(parents=True, exist_ok=True)
        sources = (directory_source("extensions", tmp / "upstream/extensions")
                   + directory_source("skins", tmp / "upstream/skins"))
    deployment.write_config(sources, **keys)
    return deployment


def unpack_every_tarball(tarballs: Path, into: Path) -> None:
    """Every tarball a test left published unpacks cleanly with GNU tar, as people unpack them."""
    for index, tarball in enumerate(sorted(tarballs.glob("*/*.tar.gz"))):
        if tarball.name.startswith("."):
            continue  # a temporary file, never served
        folder = into / str(index)
        folder.mkdir(parents=True)
        result = subprocess.run(["tar", "-xzf", str(tarball), "-C", str(folder)], capture_output=True, text=True)
        # GNU tar notes, and then unpacks as they are, the raw bytes of a file name that is not UTF-8.
        complaints = [line for line in result.stderr.splitlines()
                      if line != "tar: Ignoring unknown extended header keyword 'hdrcharset'"]
        assert result.returncode == 0 and not complaints, f"{tarball.name}: {result.stderr}"


def make_old_database(path: Path, version: int) -> None:
    """Replace the database at path by one as the tardist of schema `version` made it, with the same rows
    (those columns it had)."""
    current = path.with_name(f"current-{path.name}")
    path.rename(current)
    for leftover in path.parent.glob(path.name + "-*"):
        leftover.unlink()  # a closed WAL database leaves none; a killed one's belong to the old file
    db = sqlite_utils.Database(path)
    for number, step in enumerate(MIGRATIONS[:version], start=1):
        step(db)
        db.execute(f"PRAGMA user_version = {number}")
    source = sqlite_utils.Database(current)
    for table in db.table_names():
        if table == "meta":
            continue  # what tardist keeps about itself: the old one had its own
        columns = set(db[table].columns_dict)
        db[table].insert_all({k: v for k, v in row.items() if k in columns} for row in source[table].rows)
    db.conn.commit()
    db.close()
    source.close()
    current.unlink()


def populate(deployment: Deployment, upstream, tmp_path: Path) -> None:
    """Sync extensions and skins with good, warned, manifest-broken, branch-failed and unreachable repositories:
    a deployment with one of everything the API can say, for the OpenAPI, Gerrit, publish and fuzz tests."""
    cite = upstream("Cite")
    git(cite.path, "branch", "REL1_45")
    links = upstream("Links")
    links.symlink("dangling", "nowhere")
    links.commit()
    upstream("BadManifest", files={"extension.json": json.dumps({"name": 5, "requires": []})})
    upstream("NoManifest", files={"README": "nothing to see\n"})
    broken = upstream("Broken")
    git(broken.path, "branch", "REL1_45")
    broken.pin_submodule("lib", str(cite.path), "1" * 40)  # a commit that does not exist
    upstream("Vector", kind="skins", files={"skin.json": json.dumps({"name": "Vector", "type": "skin"})})
    deployment.write_config(
        directory_source("extensions", tmp_path / "upstream/extensions")
        + directory_source("skins", tmp_path / "upstream/skins")
        + f'\n[[source]]\nkind = "apps"\ntype = "list"\nrepos = {{ Gone = "{tmp_path}/nowhere/Gone.git" }}\n')
    result = deployment.sync(check=False)
    assert result.returncode == 1 and deployment.summary(result)["failed"] == 2, result.stderr


def on_disk(deployment: Deployment) -> dict[str, tuple[int, int]]:
    """Every file under published/: relative path -> (inode, mtime_ns)."""
    root = deployment.root / "published"
    return {path.relative_to(root).as_posix(): (path.stat().st_ino, path.stat().st_mtime_ns)
            for path in root.rglob("*") if path.is_file()}


def assert_published_is_the_app(deployment: Deployment) -> set[str]:
    """Every file under published/ is the app's answer for its URL, and no answer's file is missing."""
    settings = deployment.settings()
    conn = schema.open_reader(settings.database)
    try:
        expected = published_files(settings, conn)
    finally:
        conn.close()
    assert set(on_disk(deployment)) == set(expected)
    client = deployment.app().test_client()
    for relative, (url, _body) in expected.items():
        answer = client.get(url)
        assert answer.status_code == 200 and answer.mimetype == "application/json", url
        assert (deployment.root / "published" / relative).read_bytes() == answer.data, url
    return set(expected)


class Worker:
    """A `tardist worker` process whose log goes to a file; ready once it says so."""

    def __init__(self, deployment, log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self.offset = log.stat().st_size if log.exists() else 0
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [TARDIST, "worker"], cwd=deployment.root, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                env={"TARDIST_CONFIG": str(deployment.config), "PATH": "/usr/bin:/bin", **(env or {})})
        self.wait_for("worker ready: serving requests")

    def text(self) -> str:
        """What this process has logged."""
        return self.log.read_text()[self.offset:]

    def wait_for(self, line: str, seconds: float = 60) -> None:
        """Wait until the worker logs line; fail with its log if it exits or takes too long."""
        deadline = time.monotonic() + seconds
        while line not in self.text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"worker did not log {line!r}:\n{self.text()}")
            time.sleep(0.05)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Signal the worker and wait for it to exit."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        self.process.wait(timeout=60)


def wait_done(queue: Queue, request_id: int, seconds: float = 60):
    """The request once the worker has answered it; fail if it takes longer than seconds."""
    answered = queue.wait(request_id, seconds)
    assert answered is not None, f"request {request_id} was not served in {seconds} s"
    return answered


def processes_naming(token: str) -> list[str]:
    """Command lines of live processes (not zombies) whose command line, working folder or environment names token."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                if stat.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                cmdline = file.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/environ", "rb") as file:
                environ = file.read().decode(errors="replace")
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if token in cmdline or token in cwd or token in environ:
            found.append(f"{entry}: {cmdline}")
    return found


def git_shim(folder: Path, log: Path) -> str:
    """A PATH whose `git` logs its arguments, one line per command, then runs the real git."""
    folder.mkdir()
    shim = folder / "git"
    shim.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec /usr/bin/git "$@"\n')
    shim.chmod(0o755)
    return f"{folder}:/usr/bin:/bin"
