"""Which repositories moved, from heads a source already knows: no git process, no round trip per repository.

A `gerrit` source learns every project's snapshot-branch heads from its one listing
request (`b=`); a directory source reads them from the repositories' ref files. A
check run (`tardist sync --changed`, the worker's polling) compares them with what is
recorded and sends only the repositories that moved, are new, or whose retry time has
come on to `ls-remote` and fetch. The scheduled full run still asks every remote: the
safety net for a listing that lies or lags behind its clone URL.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tardist import schema
from tardist.layout import tarball_path
from tardist.settings import Settings
from tardist.timestamps import utcnow

if TYPE_CHECKING:
    from worker.sources import Repo

SHA_RE = re.compile(rb"^[0-9a-f]{40}([0-9a-f]{24})?$")
MAX_REF_BYTES = 200  # a loose ref is a hash and a newline


def local_heads(folder: Path, branches: tuple[str, ...]) -> dict[str, str] | None:
    """The snapshot-branch heads of a repository on this disk, read from its ref files; None when
    they cannot be read plainly (a symbolic ref, reftable, a worktree's .git file): ls-remote tells then."""
    gitdir = folder if (folder / "HEAD").is_file() else folder / ".git"
    if not gitdir.is_dir() or (gitdir / "reftable").exists() or (gitdir / "commondir").exists():
        return None
    try:
        heads = {}
        # Loose refs first: `git pack-refs` writes packed-refs before it deletes the loose ones.
        for branch in branches:
            loose = gitdir / "refs" / "heads" / branch
            if loose.is_file():
                with open(loose, "rb") as file:
                    sha = file.read(MAX_REF_BYTES).strip()
                if not SHA_RE.match(sha):
                    return None
                heads[branch] = sha.decode()
        packed = _packed_refs(gitdir / "packed-refs")
    except OSError:
        return None
    for branch in branches:
        if branch not in heads and f"refs/heads/{branch}" in packed:
            heads[branch] = packed[f"refs/heads/{branch}"]
    return heads


def _packed_refs(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    refs = {}
    for line in path.read_bytes().splitlines():
        sha, _, ref = line.partition(b" ")
        if SHA_RE.match(sha) and ref.startswith(b"refs/heads/"):
            refs[ref.decode(errors="replace")] = sha.decode()
    return refs


def moved(settings: Settings, repos: list[Repo]) -> tuple[list[Repo], int]:
    """The repositories a check run syncs, and how many it leaves alone because their listed heads
    are what is recorded (built, or failed at that very head and waiting for their retry time)."""
    try:
        conn = schema.open_reader(settings.database)
    except (sqlite3.Error, schema.SchemaOutdated, schema.SchemaTooNew):
        conn = None  # the run itself says what is wrong with the database
    if conn is None:
        return repos, 0
    try:
        rows = {(row["kind"], row["name"]): dict(row) for row in conn.execute(
            "SELECT kind, name, present, retry_at, retry_heads FROM repos")}
        branches: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        for row in conn.execute("SELECT kind, name, branch, commit_sha, tarball, error, error_commit, retry_at "
                                "FROM branches"):
            branches.setdefault((row["kind"], row["name"]), {})[row["branch"]] = dict(row)
    finally:
        conn.close()
    now = utcnow()
    todo = [repo for repo in repos
            if not _settled(settings, repo, rows.get((repo.kind, repo.name)),
                            branches.get((repo.kind, repo.name), {}), now)]
    return todo, len(repos) - len(todo)


def _settled(settings: Settings, repo: Repo, row: dict | None, recorded: dict[str, dict], now: str) -> bool:
    """True when a sync of repo now would find every listed head as recorded and do nothing."""
    if repo.heads is None or row is None or not row["present"]:
        return False
    if set(recorded) - set(repo.heads):
        return False  # a branch is gone
    waiting_fetch = json.loads(row["retry_heads"] or "{}") if (row["retry_at"] or "") > now else {}
    for branch, head in repo.heads.items():
        if waiting_fetch.get(branch) == head:
            continue  # fetching this head failed; its retry time has not come
        known = recorded.get(branch)
        if known is None:
            return False
        if known["error"]:
            if not (known["error_commit"] == head and (known["retry_at"] or "") > now):
                return False
        elif not (known["commit_sha"] == head and known["tarball"]
                  and tarball_path(settings, repo.kind, known["tarball"]).is_file()):
            return False
    return True
