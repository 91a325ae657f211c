"""Shared fixtures: real git repositories in tmp_path, a tardist deployment folder, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import sqlite_utils
from gitservers import SilentServer

from tardist import create_app
from tardist.schema import MIGRATIONS
from tardist.settings import Settings, load_settings

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


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's instance/tardist.toml or TARDIST_* variables."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("TARDIST_"):
            monkeypatch.delenv(key)


@pytest.fixture
def upstream(tmp_path: Path):
    """Make upstream repositories under tmp_path/upstream/<kind>/<Name>."""
    def make(name: str, kind: str = "extensions", files: dict | None = None, branch: str = "master") -> Repo:
        repo = Repo(tmp_path / "upstream" / kind / name, branch)
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


def directory_source(kind: str, path: Path) -> str:
    """A [[source]] table of type directory."""
    return f'\n[[source]]\nkind = "{kind}"\ntype = "directory"\npath = "{path}"\n'


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """An empty deployment whose config lists tmp_path/upstream/extensions and .../skins as sources."""
    root = tmp_path / "deploy"
    root.mkdir()
    deployment = Deployment(root, root / "tardist.toml")
    for kind in ("extensions", "skins"):
        (tmp_path / "upstream" / kind).mkdir(parents=True, exist_ok=True)
    deployment.write_config(directory_source("extensions", tmp_path / "upstream/extensions")
                            + directory_source("skins", tmp_path / "upstream/skins"))
    yield deployment
    unpack_every_tarball(root / "tarballs", tmp_path / "unpacked")


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


@pytest.fixture
def hanging_remote():
    """A git remote that never answers until the test releases it."""
    remote = SilentServer()
    yield remote
    remote.close()


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
        db[table].insert_all(({k: v for k, v in row.items() if k in columns} for row in source[table].rows))
    db.conn.commit()
    db.close()
    source.close()
    current.unlink()
