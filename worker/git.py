"""The one door to git: every git process tardist starts gets its environment, settings, session and
time limit here (`run_git`, and `ObjectReader` for the long-lived `git cat-file --batch` readers)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from worker.children import MissingTool, bounded_command, wait_bounded
from worker.lock import held_locks

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
# The operator's `git_config` settings, (name, value) in order, checked by tardist.gitconfig: every
# function that runs git takes them as its `config` argument (callers pass settings.git_config).
GitConfig = tuple[tuple[str, str], ...]


class GitError(Exception):
    """A git operation failed; the message is readable on its own."""


def git_env(config: GitConfig = (), protocols: tuple[str, ...] | None = None) -> dict[str, str]:
    """The environment of every git process tardist starts.

    tardist's own environment (PATH, HOME, an ssh agent, proxies) less every GIT_* variable,
    which could name a template, a config or a program, or outvote the settings below.
    ``config`` is the operator's git settings, given as if with `git -c`.
    ``protocols`` limits the transports git may use (GIT_ALLOW_PROTOCOL), for URLs
    that come from repository contents rather than from the operator.
    """
    env = {key: value for key, value in os.environ.items() if not key.upper().startswith("GIT_")}
    env.update(BASE_ENV)
    # GIT_CONFIG_* entries act as if given with `git -c`, in order: the safety settings come last and win.
    pairs = (*config, *SAFETY_CONFIG)
    env["GIT_CONFIG_COUNT"] = str(len(pairs))
    for index, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{index}"], env[f"GIT_CONFIG_VALUE_{index}"] = key, value
    if protocols is not None:
        env["GIT_ALLOW_PROTOCOL"] = ":".join(protocols)
    return env


def run_git(args: list[str], cwd: Path | None = None, timeout: float | None = None,
            protocols: tuple[str, ...] | None = None, config: GitConfig = ()) -> bytes:
    """Run one git command and return its standard output.

    git runs in a session of its own (a Ctrl-C or SIGTERM meant for tardist must not kill the
    git of a repository in hand, which tardist finishes before it stops), ends by itself at
    its timeout or when tardist dies (worker.children), and shares the file locks the calling
    thread holds, so that nobody takes over a mirror while a git of a dead tardist still writes.
    """
    try:
        command = bounded_command(["git", *args], timeout)
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=cwd, env=git_env(config, protocols), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                   pass_fds=held_locks())
    except (OSError, MissingTool) as exc:
        raise GitError(f"git {args[0]} failed: cannot run git: {exc}") from None
    stdout, stderr, out_of_time = wait_bounded(process, timeout, started)
    if out_of_time:
        raise GitError(f"git {args[0]} failed: timed out after {timeout:g} seconds")
    if process.returncode == 0:
        assert stdout is not None
        return stdout
    assert stderr is not None
    lines = [line.strip() for line in stderr.decode(errors="replace").strip().splitlines()]
    lines = [line for line in lines if line]
    # git's own verdict ("fatal: ...", "error: ...") says why; progress and hints do not.
    verdicts = [line for line in lines if line.startswith(("fatal:", "error:"))]
    detail = " ".join((verdicts or lines)[-3:])
    raise GitError(f"git {args[0]} failed: {detail or f'exit status {process.returncode}'}")


class ObjectReader:
    """Reads objects from one or more mirrors through persistent `git cat-file --batch` processes.

    Started like every other git process (run_git): the same scrubbed environment, a
    session of their own, so a Ctrl-C meant for tardist does not break the branch in hand,
    and ended with tardist (worker.children; they end on their own when their input closes
    too). Use a reader in the one thread that made it: its processes end with that thread.
    """

    def __init__(self, config: GitConfig = ()) -> None:
        self._config = config
        self._processes: dict[Path, subprocess.Popen] = {}

    def read(self, mirror: Path, sha: str) -> bytes:
        """The content of object sha in mirror; GitError when it cannot be read."""
        process = self._processes.get(mirror)
        if process is None:
            process = self._processes[mirror] = subprocess.Popen(
                bounded_command(["git", "cat-file", "--batch"], None), cwd=mirror, env=git_env(self._config),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
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

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
