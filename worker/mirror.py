"""Bare git mirrors: learning remote branch heads, fetching, reading objects."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from worker.children import BACKSTOP, MissingTool, bounded_command, kill_group, timed_out
from worker.lock import file_lock, held_locks

log = logging.getLogger("tardist.mirror")
TEMP_PREFIX = ".tmp-"  # what is being made or removed; never a final name
MODULES_FOLDER = "_modules"  # mirrors/_modules/: submodule mirrors, shared by every repository
SHA_RE = re.compile(r"^[0-9a-f]{40}$")
# Never ask for credentials, never read the operator's global git config.
BASE_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "true",
    "SSH_ASKPASS": "true",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "LC_ALL": "C",
}
# Crash safety. Fetched objects always arrive as one pack, which appears whole or
# not at all (a small fetch would otherwise write loose objects one by one, and a
# killed one leaves a commit without its tree). The automatic `git gc` a fetch may
# start runs inside it, not detached, outliving and racing the sync that started it.
# No hook ever runs: git looks for hooks under /dev/null, where nothing can be put.
SAFETY_CONFIG = (("fetch.unpackLimit", "1"), ("gc.autoDetach", "false"), ("core.hooksPath", os.devnull))
_operator_config: tuple[tuple[str, str], ...] = ()
_directory_sources: frozenset[Path] = frozenset()


def use_git_config(pairs: tuple[tuple[str, str], ...], directory_sources: Iterable[Path] = ()) -> None:
    """Give every git process from now on the operator's `git_config` settings (checked by tardist.settings),
    and trust the repositories directly inside the folders of `directory` sources, whoever owns them."""
    global _operator_config, _directory_sources
    _operator_config = tuple(pairs)
    _directory_sources = frozenset(directory_sources)


def upload_pack(url: str) -> list[str]:
    """The --upload-pack option that lets git read a directory source's repository that another user owns.

    git refuses a repository whose owner is not the user running it ("detected dubious ownership")
    unless safe.directory names it; the folder of a directory source is the operator's consent for the
    repositories in it, each named alone (its bare path, or its .git of a work tree), never `*`. git
    reads a local repository through `git upload-pack`, which does not see the caller's `-c` settings,
    so they go on that command.
    """
    path = Path(url)
    if not path.is_absolute() or path.parent not in _directory_sources:
        return []
    trusted = " ".join(f"-c {shlex.quote(f'safe.directory={where}')}" for where in (path, path / ".git"))
    return [f"--upload-pack=git {trusted} upload-pack"]


class GitError(Exception):
    """A git operation failed; the message is readable on its own."""


def git_env(protocols: tuple[str, ...] | None = None) -> dict[str, str]:
    """The environment of every git process tardist starts.

    tardist's own environment (PATH, HOME, an ssh agent, proxies) less every GIT_* variable,
    which could name a template, a config or a program, or outvote the settings below.
    ``protocols`` limits the transports git may use (GIT_ALLOW_PROTOCOL), for URLs
    that come from repository contents rather than from the operator.
    """
    env = {key: value for key, value in os.environ.items() if not key.upper().startswith("GIT_")}
    env.update(BASE_ENV)
    # GIT_CONFIG_* entries act as if given with `git -c`, in order: the safety settings come last and win.
    pairs = (*_operator_config, *SAFETY_CONFIG)
    env["GIT_CONFIG_COUNT"] = str(len(pairs))
    for index, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{index}"], env[f"GIT_CONFIG_VALUE_{index}"] = key, value
    if protocols is not None:
        env["GIT_ALLOW_PROTOCOL"] = ":".join(protocols)
    return env


def run_git(args: list[str], cwd: Path | None = None, timeout: float | None = None,
            protocols: tuple[str, ...] | None = None) -> bytes:
    """Run one git command and return its standard output.

    git runs in a session of its own (a Ctrl-C or SIGTERM meant for tardist must not kill the
    git of a repository in hand, which tardist finishes before it stops), ends by itself at
    its timeout or when tardist dies (worker.children), and shares the file locks the calling
    thread holds, so that nobody takes over a mirror while a git of a dead tardist still writes.
    """
    try:
        command = bounded_command(["git", *args], timeout)
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=cwd, env=git_env(protocols), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                   pass_fds=held_locks())
    except (OSError, MissingTool) as exc:
        raise GitError(f"git {args[0]} failed: cannot run git: {exc}") from None
    try:  # the time limit is timeout's; this wait only guards against a timeout that never comes back
        stdout, stderr = process.communicate(timeout=None if timeout is None else timeout + BACKSTOP)
    except subprocess.TimeoutExpired:
        kill_group(process)
        raise GitError(f"git {args[0]} failed: timed out after {timeout:g} seconds") from None
    except BaseException:
        kill_group(process)
        raise
    if process.returncode == 0:
        return stdout
    if timed_out(process.returncode, time.monotonic() - started, timeout):
        raise GitError(f"git {args[0]} failed: timed out after {timeout:g} seconds")
    lines = [line.strip() for line in stderr.decode(errors="replace").strip().splitlines()]
    lines = [line for line in lines if line]
    # git's own verdict ("fatal: ...", "error: ...") says why; progress and hints do not.
    verdicts = [line for line in lines if line.startswith(("fatal:", "error:"))]
    detail = " ".join((verdicts or lines)[-3:])
    raise GitError(f"git {args[0]} failed: {detail or f'exit status {process.returncode}'}")


def check_url(url: str) -> None:
    """Refuse URLs git would read as an option."""
    if not url or url.startswith("-"):
        raise GitError(f"refusing repository URL {url!r}")


def remote_heads(url: str, branches: tuple[str, ...], timeout: float) -> dict[str, str]:
    """The head commit of every snapshot branch the remote has, in one round trip."""
    check_url(url)
    wanted = {f"refs/heads/{b}": b for b in branches}
    out = run_git(["ls-remote", *upload_pack(url), url, *wanted], timeout=timeout)
    heads: dict[str, str] = {}
    for line in out.decode(errors="replace").splitlines():
        sha, _, ref = line.partition("\t")
        if ref in wanted and SHA_RE.match(sha):
            heads[wanted[ref]] = sha
    return heads


def ensure_mirror(path: Path) -> None:
    """Make path a bare repository holding only what tardist writes; a new one appears whole
    (made aside, then renamed) or not at all."""
    if (path / "HEAD").exists():
        repair_mirror(path)
        if (path / "HEAD").exists():
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{TEMP_PREFIX}{path.name}")  # one sync at a time, one thread per mirror
    shutil.rmtree(temp, ignore_errors=True)
    _init_bare(temp)
    shutil.rmtree(path, ignore_errors=True)  # what a killed run left of a mirror never made
    os.rename(temp, path)


def _init_bare(path: Path) -> None:
    # An empty template: nothing (hooks, config, info/) is copied from any template folder.
    run_git(["init", "--quiet", "--bare", "--template=", str(path)])


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


def fetch_branches(path: Path, url: str, branches: list[str], timeout: float) -> None:
    """Fetch just the given branches into the mirror's refs/heads (force, no tags)."""
    check_url(url)
    ensure_mirror(path)
    refspecs = [f"+refs/heads/{b}:refs/heads/{b}" for b in branches]
    run_git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", *upload_pack(url), url, *refspecs],
            cwd=path, timeout=timeout)


def branch_head(path: Path, branch: str) -> str:
    """The commit the mirror's refs/heads/<branch> points at."""
    return run_git(["rev-parse", "--verify", "--end-of-options", f"refs/heads/{branch}^{{commit}}"],
                   cwd=path).decode().strip()


def delete_branches(path: Path, branches: list[str]) -> None:
    """Forget mirror branches the remote no longer has."""
    if branches and (path / "HEAD").exists():
        repair_mirror(path)
    for branch in branches:
        if (path / "HEAD").exists():
            try:
                run_git(["update-ref", "-d", f"refs/heads/{branch}"], cwd=path)
            except GitError:
                pass  # never fetched: nothing to forget


def has_commit(path: Path, sha: str) -> bool:
    """True when the mirror at path has the commit sha."""
    if not (path / "HEAD").exists():
        return False
    try:
        run_git(["cat-file", "-e", f"{sha}^{{commit}}"], cwd=path)
        return True
    except GitError:
        return False


def fetch_commit(path: Path, url: str, sha: str, timeout: float, protocols: tuple[str, ...]) -> None:
    """Make sure the mirror at path has commit sha from url (a submodule's pinned commit)."""
    check_url(url)
    # Submodule mirrors are shared by repositories, which other processes may sync at the same time.
    with file_lock(module_lock_path(path)):
        if (path / "HEAD").exists():
            repair_mirror(path)
        if has_commit(path, sha):
            os.utime(path)  # in use: gc keeps module mirrors used within the retention period
            return
        ensure_mirror(path)
        try:
            run_git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", url,
                     "+refs/heads/*:refs/heads/*"], cwd=path, timeout=timeout, protocols=protocols)
        except GitError as exc:
            raise GitError(f"cannot fetch {url}: {exc}") from None
        if has_commit(path, sha):
            return
        try:  # a commit no branch contains: servers may still allow asking for it by id
            run_git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", url, sha],
                    cwd=path, timeout=timeout, protocols=protocols)
        except GitError:
            pass
        if not has_commit(path, sha):
            raise GitError(f"commit {sha} is not in {url}")


def module_lock_path(module_mirror: Path) -> Path:
    """The lock file held while a submodule mirror is fetched into or removed."""
    return module_mirror.with_name(module_mirror.name + ".lock")


def module_mirror_path(mirrors: Path, url: str) -> Path:
    """Where the shared mirror of a submodule URL lives."""
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))[:40]
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return mirrors / MODULES_FOLDER / f"{base or 'module'}-{digest}.git"


class ObjectReader:
    """Reads objects from one or more mirrors through persistent `git cat-file --batch` processes.

    Started like every other git process (run_git): the same scrubbed environment, a
    session of their own, so a Ctrl-C meant for tardist does not break the branch in hand,
    and ended with tardist (worker.children; they end on their own when their input closes
    too). Use a reader in the one thread that made it: its processes end with that thread.
    """

    def __init__(self) -> None:
        self._processes: dict[Path, subprocess.Popen] = {}

    def read(self, mirror: Path, sha: str) -> bytes:
        """The content of object sha in mirror; GitError when it cannot be read."""
        process = self._processes.get(mirror)
        if process is None:
            process = self._processes[mirror] = subprocess.Popen(
                bounded_command(["git", "cat-file", "--batch"], None), cwd=mirror, env=git_env(), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(sha.encode() + b"\n")
            process.stdin.flush()
            header = process.stdout.readline().split()
            if len(header) != 3:
                raise GitError(f"cannot read object {sha} from {mirror.name}: "
                               f"{b' '.join(header[1:]).decode(errors='replace') or 'git cat-file ended'}")
            size = int(header[2])
            data = process.stdout.read(size + 1)[:size]
        except (OSError, ValueError) as exc:
            self._processes.pop(mirror, None)
            process.kill()
            raise GitError(f"cannot read object {sha} from {mirror.name}: {exc}") from None
        if len(data) != size:
            self._processes.pop(mirror, None)
            process.kill()
            raise GitError(f"cannot read object {sha} from {mirror.name}: git cat-file ended early")
        return data

    def close(self) -> None:
        """Stop the git processes."""
        for process in self._processes.values():
            if process.stdin:
                process.stdin.close()
            process.wait()
            if process.stdout:
                process.stdout.close()
        self._processes.clear()

    def __enter__(self) -> "ObjectReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
