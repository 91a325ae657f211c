"""Bare git mirrors: learning remote branch heads, making, repairing and fetching into mirrors.

Every git runs through `worker.git.run_git`; objects are read with `worker.git.ObjectReader`.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Collection
from pathlib import Path

from tardist.layout import TEMP_PREFIX, module_lock_path
from worker.git import GitConfig, GitError, run_git
from worker.lock import file_lock

log = logging.getLogger("tardist.mirror")
SHA_RE = re.compile(r"^[0-9a-f]{40}$")
def upload_pack(url: str, trusted: Collection[Path]) -> list[str]:
    """The --upload-pack option that lets git read a directory source's repository that another user owns.

    git refuses a repository whose owner is not the user running it ("detected dubious ownership")
    unless safe.directory names it; the folder of a directory source (one of ``trusted``) is the
    operator's consent for the repositories directly in it, each named alone (its bare path, or its
    .git of a work tree), never `*`. git reads a local repository through `git upload-pack`, which
    does not see the caller's `-c` settings, so they go on that command.
    """
    path = Path(url)
    if not path.is_absolute() or path.parent not in trusted:
        return []
    named = " ".join(f"-c {shlex.quote(f'safe.directory={where}')}" for where in (path, path / ".git"))
    return [f"--upload-pack=git {named} upload-pack"]


def check_url(url: str) -> None:
    """Refuse URLs git would read as an option."""
    if not url or url.startswith("-"):
        raise GitError(f"refusing repository URL {url!r}")


def remote_heads(url: str, branches: tuple[str, ...], timeout: float, config: GitConfig = (),
                 trusted: Collection[Path] = ()) -> dict[str, str]:
    """The head commit of every snapshot branch the remote has, in one round trip (``trusted``: upload_pack)."""
    check_url(url)
    wanted = {f"refs/heads/{b}": b for b in branches}
    out = run_git(["ls-remote", *upload_pack(url, trusted), url, *wanted], timeout=timeout, config=config)
    heads: dict[str, str] = {}
    for line in out.decode(errors="replace").splitlines():
        sha, _, ref = line.partition("\t")
        if ref in wanted and SHA_RE.match(sha):
            heads[wanted[ref]] = sha
    return heads


def ensure_mirror(path: Path, config: GitConfig = ()) -> None:
    """Make path a bare repository holding only what tardist writes; a new one appears whole
    (made aside, then renamed) or not at all."""
    if (path / "HEAD").exists():
        repair_mirror(path)
        if (path / "HEAD").exists():
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{TEMP_PREFIX}{path.name}")  # one sync at a time, one thread per mirror
    shutil.rmtree(temp, ignore_errors=True)
    _init_bare(temp, config)
    shutil.rmtree(path, ignore_errors=True)  # what a killed run left of a mirror never made
    os.rename(temp, path)


def _init_bare(path: Path, config: GitConfig = ()) -> None:
    # An empty template: nothing (hooks, config, info/) is copied from any template folder.
    run_git(["init", "--quiet", "--bare", "--template=", str(path)], config=config)


@functools.cache
def _tardist_config() -> bytes:
    """The config file of a mirror as tardist makes it (`git init --bare` with an empty template)."""
    with tempfile.TemporaryDirectory(prefix="tardist-config-") as folder:
        _init_bare(Path(folder) / "m.git")
        return (Path(folder) / "m.git/config").read_bytes()


def repair_mirror(path: Path) -> None:
    """Bring an existing mirror back to what tardist writes, before any git runs in it.

    Hooks are removed (none would run: core.hooksPath points nowhere, but a mirror keeps
    no program). A config file tardist did not write (one a template or a hand copied in:
    core.sshCommand, include.path, ...) would be read by every git in the mirror: the
    mirror is removed, to be fetched anew. Lock files of dead git processes are removed
    (remove_stale_locks). Call under the mirror's lock.
    """
    repaired = []
    hooks = path / "hooks"
    if hooks.is_symlink() or hooks.is_file():
        hooks.unlink()
        repaired.append("hooks removed")
    elif hooks.is_dir():  # git's *.sample files (mirrors made before the empty template) never run: no word
        runnable = sorted(hook.name for hook in hooks.iterdir() if not hook.name.endswith(".sample"))
        shutil.rmtree(hooks)
        if runnable:
            repaired.append(f"hooks removed ({', '.join(runnable)})")
    config = path / "config"
    if not config.is_file() or config.is_symlink() or config.read_bytes() != _tardist_config():
        aside = path.with_name(f"{TEMP_PREFIX}{path.name}")
        shutil.rmtree(aside, ignore_errors=True)
        os.rename(path, aside)
        shutil.rmtree(aside)
        repaired.append("config tardist did not write: mirror removed, to be fetched anew")
    else:
        remove_stale_locks(path)
    if repaired:
        log.warning("repaired mirror %s: %s", path, "; ".join(repaired))


# Lock files git takes while updating a repository: a git process killed with its
# sync leaves them behind, and git then refuses to touch the repository again.
LOCK_FILES = ("HEAD.lock", "config.lock", "packed-refs.lock", "shallow.lock", "index.lock")


def remove_stale_locks(path: Path) -> None:
    """Delete the lock files killed git processes left in a mirror.

    Only tardist runs git in its mirrors, each under its lock file (the repository's, or
    the submodule mirror's), which every git it starts shares until it ends (run_git):
    whoever holds that lock knows no git still works here, so any lock file is a dead one's.
    """
    for name in LOCK_FILES:
        (path / name).unlink(missing_ok=True)
    for lock in (path / "refs").rglob("*.lock"):
        lock.unlink(missing_ok=True)


def fetch_branches(path: Path, url: str, branches: list[str], timeout: float, config: GitConfig = (),
                   trusted: Collection[Path] = ()) -> None:
    """Fetch just the given branches into the mirror's refs/heads (force, no tags)."""
    check_url(url)
    ensure_mirror(path, config)
    refspecs = [f"+refs/heads/{b}:refs/heads/{b}" for b in branches]
    run_git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", *upload_pack(url, trusted), url, *refspecs],
            cwd=path, timeout=timeout, config=config)


def branch_head(path: Path, branch: str, config: GitConfig = ()) -> str:
    """The commit the mirror's refs/heads/<branch> points at."""
    return run_git(["rev-parse", "--verify", "--end-of-options", f"refs/heads/{branch}^{{commit}}"],
                   cwd=path, config=config).decode().strip()


def delete_branches(path: Path, branches: list[str], config: GitConfig = ()) -> None:
    """Forget mirror branches the remote no longer has."""
    if branches and (path / "HEAD").exists():
        repair_mirror(path)
    for branch in branches:
        if (path / "HEAD").exists():
            try:
                run_git(["update-ref", "-d", f"refs/heads/{branch}"], cwd=path, config=config)
            except GitError:
                pass  # never fetched: nothing to forget


def has_commit(path: Path, sha: str, config: GitConfig = ()) -> bool:
    """True when the mirror at path has the commit sha."""
    if not (path / "HEAD").exists():
        return False
    try:
        run_git(["cat-file", "-e", f"{sha}^{{commit}}"], cwd=path, config=config)
        return True
    except GitError:
        return False


def fetch_commit(path: Path, url: str, sha: str, timeout: float, protocols: tuple[str, ...],
                 config: GitConfig = ()) -> None:
    """Make sure the mirror at path has commit sha from url (a submodule's pinned commit)."""
    check_url(url)
    # Submodule mirrors are shared by repositories, which other processes may sync at the same time.
    with file_lock(module_lock_path(path)):
        if (path / "HEAD").exists():
            repair_mirror(path)
        if has_commit(path, sha, config):
            os.utime(path)  # in use: gc keeps module mirrors used within the retention period
            return
        ensure_mirror(path, config)
        try:
            run_git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", url,
                     "+refs/heads/*:refs/heads/*"], cwd=path, timeout=timeout, protocols=protocols, config=config)
        except GitError as exc:
            raise GitError(f"cannot fetch {url}: {exc}") from None
        if has_commit(path, sha, config):
            return
        try:  # a commit no branch contains: servers may still allow asking for it by id
            run_git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", url, sha],
                    cwd=path, timeout=timeout, protocols=protocols, config=config)
        except GitError:
            pass
        if not has_commit(path, sha, config):
            raise GitError(f"commit {sha} is not in {url}")
