"""External processes: every one tardist starts ends by itself when tardist dies or its time is up.

A tool runs in a session of its own (a Ctrl-C meant for tardist must not stop the
repository in hand), so the kernel would not end it with tardist. It is started as
``setpriv --pdeathsig TERM -- timeout --kill-after=G T tool ...``: coreutils ``timeout``
enforces the time limit outside Python, and when tardist dies (SIGKILL, OOM killer) the
parent-death signal reaches ``timeout``, which passes it to the tool's whole process group
(``git-remote-https``, ``ssh``, ``index-pack`` included) and kills what is left G seconds
later. The parent-death signal follows the *thread* that started the process: every
caller waits for its child in the thread that started it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

KILL_GRACE = 5  # seconds between the TERM (time up, or tardist gone) and the KILL of what still runs
TIMED_OUT = 124  # timeout's exit status when the time limit ended the tool
BACKSTOP = KILL_GRACE + 30  # seconds past its limit after which tardist kills a tool timeout failed to end


class MissingTool(Exception):
    """setpriv (util-linux) or timeout (coreutils) is not installed."""


def bounded_command(argv: list[str], timeout: float | None) -> list[str]:
    """argv wrapped so that it ends after timeout seconds (None: no limit) and when tardist dies."""
    setpriv, limit = shutil.which("setpriv"), shutil.which("timeout")
    if not setpriv or not limit:
        raise MissingTool("setpriv (util-linux) and timeout (coreutils) are needed to run external tools")
    seconds = f"{timeout:g}s" if timeout else "0"  # 0: no limit, but still ended with tardist
    return [setpriv, "--pdeathsig", "TERM", "--", limit, f"--kill-after={KILL_GRACE}s", seconds, *argv]


def timed_out(returncode: int, seconds: float, timeout: float | None) -> bool:
    """True when a bounded command ended because its time was up (TERM, or KILL after the grace)."""
    return timeout is not None and returncode in (TIMED_OUT, -signal.SIGKILL) and seconds >= timeout


def kill_group(process: subprocess.Popen) -> None:
    """Kill a process started in its own session and everything it started; reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def wait_bounded(process: subprocess.Popen, timeout: float | None,
                 started: float) -> tuple[bytes | None, bytes | None, bool]:
    """Wait for a process started from bounded_command at `started`: (stdout, stderr, True if its time was up).

    The time limit is timeout's; this wait only guards against a timeout that never comes back,
    killing the whole group BACKSTOP seconds later. Whatever stops the wait kills the group too.
    """
    try:
        stdout, stderr = process.communicate(timeout=None if timeout is None else timeout + BACKSTOP)
    except subprocess.TimeoutExpired:
        kill_group(process)
        return None, None, True
    except BaseException:
        kill_group(process)
        raise
    return stdout, stderr, timed_out(process.returncode, time.monotonic() - started, timeout)
