"""The build sandbox: the one door through which tardist runs a build tool (composer) on a repository.

With bubblewrap (``build_sandbox = "bwrap"``) the command sees a read-only system, a
private /tmp, only its scratch folder and the given cache writable, and none of the
folders it must not reach (mirrors, tarballs, the database, the operator's home); it
runs in new namespaces and a new session and dies with tardist. Without it
(``"none"``) it runs as tardist's child with the same scrubbed environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tardist.settings import SandboxMode
from worker.children import MissingTool, bounded_command, wait_bounded

# The only variables a build tool gets from tardist's environment: proxies an operator set.
PASSED_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OUTPUT_KEPT = 64 * 1024  # the tail of a tool's output that is read back for its error line


class SandboxError(Exception):
    """The command could not be run, or was killed at its timeout; the message is readable on its own."""


@dataclass(frozen=True)
class Sandbox:
    """Where a command runs and what it may see.

    ``hidden`` folders are covered by empty ones; then ``readable`` folders and files
    are mounted read-only and ``writable`` ones read-write at their own paths, so
    something below a hidden folder can be shown again.
    """

    mode: SandboxMode
    writable: tuple[Path, ...] = ()
    readable: tuple[Path, ...] = ()
    hidden: tuple[Path, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Finished:
    """How a command ended: its exit status and the tail of its output (stdout and stderr)."""

    returncode: int
    output: str


def find_bwrap() -> str | None:
    """The bwrap command on PATH, if any."""
    return shutil.which("bwrap")


def scrubbed_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment a build tool gets: a fixed PATH, C locale, proxies, and extra."""
    env = {"PATH": SAFE_PATH, "LC_ALL": "C", "LANG": "C"}
    env.update({key: os.environ[key] for key in PASSED_VARIABLES if key in os.environ})
    env.update(extra)
    return env


def bwrap_command(bwrap: str, argv: list[str], sandbox: Sandbox, cwd: Path) -> list[str]:
    """The bwrap command line that runs argv in cwd inside sandbox."""
    command = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
               "--unshare-all", "--share-net",  # composer downloads packages
               "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    for path in sorted(sandbox.hidden, key=lambda path: len(path.parts)):  # a folder before what it holds
        # An empty read-only folder in its place; never "/" (nothing would be left to run).
        if path.is_dir() and path != path.parent:
            command += ["--perms", "0555", "--tmpfs", str(path)]
    for path in sandbox.readable:
        if path.exists():
            command += ["--ro-bind", str(path), str(path)]
    for path in sandbox.writable:
        command += ["--bind", str(path), str(path)]
    command += ["--chdir", str(cwd), "--clearenv"]
    for key, value in sorted(sandbox.env.items()):
        command += ["--setenv", key, value]
    return [*command, "--", *argv]


def run_sandboxed(argv: list[str], sandbox: Sandbox, cwd: Path, timeout: float) -> Finished:
    """Run argv in cwd inside sandbox; kill it (and what it started) after timeout seconds."""
    if sandbox.mode == "bwrap":
        bwrap = find_bwrap()
        if bwrap is None:
            raise SandboxError("bwrap is not installed (build_sandbox = \"bwrap\")")
        command = bwrap_command(bwrap, argv, sandbox, cwd)
        env = {"PATH": SAFE_PATH}
    else:
        command, env = list(argv), sandbox.env
    try:  # ends with tardist, and what it started too (bwrap's sandbox dies with bwrap: --die-with-parent)
        command = bounded_command(command, timeout)
    except MissingTool as exc:
        raise SandboxError(str(exc)) from None
    # Output goes to an unnamed file outside the sandbox: memory stays flat whatever a tool prints.
    with tempfile.TemporaryFile() as output:
        try:
            # A session of its own: a Ctrl-C meant for tardist must not kill the build in hand,
            # and the whole group can be killed at the timeout.
            started = time.monotonic()
            process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise SandboxError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        # A kill of the group ends bwrap's sandbox too (--die-with-parent).
        _stdout, _stderr, out_of_time = wait_bounded(process, timeout, started)
        if out_of_time:
            raise SandboxError(f"timed out after {timeout:g} seconds")
        output.seek(max(0, output.seek(0, os.SEEK_END) - OUTPUT_KEPT))
        return Finished(process.returncode, output.read().decode(errors="replace"))
