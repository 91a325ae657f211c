"""A real systemd, booted for the tests in namespaces of its own, with tardist deployed as docs/deploying.md says.

`unshare --pid --fork --mount --uts --net` runs BOOT_SCRIPT: an overlay of the host's / with its
changes on a tmpfs (nothing the units do reaches the host), the host's own services switched off,
then `pivot_root` into it and systemd as PID 1 of the new PID namespace. pivot_root rather than
chroot: the kernel refuses a user namespace to a chrooted process, and bubblewrap (composer's
sandbox) needs one. The network namespace is private (only its loopback is up), so the units' ports
never meet those of other tests on the host. Ending the namespace's PID 1 ends every process in it,
and with the last process the mounts go.

The deployment's virtualenv (`python3 -m venv .venv && .venv/bin/pip install .`, ~1 minute) is kept
as a tarball in ~/.cache/tardist/, keyed by setup.cfg, pyproject.toml and Debian's python3; later
boots unpack it and reinstall only tardist itself (--no-deps), which takes seconds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYSTEMD = Path("/lib/systemd/systemd")
DEBIAN_PYTHON = Path("/usr/bin/python3")  # a Python under /root (pyenv) is hidden from the units by ProtectHome
DEPLOYMENT = Path("/srv/tardist")  # docs/deploying.md's deployment root, inside the booted system
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tardist"
# The PATH of every command run inside: Debian's tools, not the host user's shims.
INSIDE_ENV = {**os.environ, "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "LC_ALL": "C.UTF-8", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}

BOOT_SCRIPT = r"""
set -e
base=$1
mount -t tmpfs -o mode=0755 tardist-systemd "$base"
mkdir "$base/upper" "$base/work" "$base/root"
mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$base/root"
R=$base/root
rm -f "$R"/etc/systemd/system/multi-user.target.wants/*.service "$R"/etc/systemd/system/timers.target.wants/*
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs tmpfs "$R/run"
mount -t tmpfs tmpfs "$R/tmp"
ip link set lo up
cd "$R"
mkdir -p .host
pivot_root . .host
umount -l /.host
rmdir /.host
exec /usr/bin/env -i container=other /lib/systemd/systemd --system
"""


def unavailable() -> str | None:
    """Why a systemd cannot be booted here, or None when it can."""
    if os.geteuid() != 0:
        return "booting systemd in namespaces needs root"
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: util-linux, iproute2)"
    for path in (SYSTEMD, DEBIAN_PYTHON):
        if not path.exists():
            return f"{path} is missing (Debian: apt install systemd python3 python3-venv)"
    return None


class BootError(Exception):
    """systemd did not come up."""


class System:
    """One booted systemd: run commands inside it, reach its files from the host."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="tardist-systemd-", dir="/var/tmp"))
        # --kill-child: should pytest die, unshare takes systemd (and so the namespace) with it.
        self.unshare = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount", "--uts", "--net", "--kill-child",
             "sh", "-c", BOOT_SCRIPT, "boot", str(self.base)],
            env=INSIDE_ENV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.pid = 0

    def wait_running(self, timeout: float = 60) -> str:
        """Wait until `systemctl is-system-running` says running or degraded; return what it says."""
        deadline = time.monotonic() + timeout
        while not self.pid:
            if self.unshare.poll() is not None:
                raise BootError(f"the boot script failed: {self.unshare.stderr.read().decode()}")
            children = Path(f"/proc/{self.unshare.pid}/task/{self.unshare.pid}/children").read_text().split()
            if children and Path(f"/proc/{children[0]}/comm").read_text().strip() == "systemd":
                self.pid = int(children[0])
            elif time.monotonic() > deadline:
                raise BootError("systemd never started")
            else:
                time.sleep(0.05)
        state = ""
        while time.monotonic() < deadline:
            state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return state
            time.sleep(0.1)
        raise BootError(f"systemctl is-system-running still says {state!r}")

    @property
    def root(self) -> Path:
        """The booted system's / as the host sees it."""
        return Path(f"/proc/{self.pid}/root")

    def path(self, inside: str | Path) -> Path:
        """A path of the booted system, as the host reaches it."""
        return self.root / str(inside).lstrip("/")

    def run(self, *argv: str, check: bool = True, timeout: float = 120, cwd: str = "/",
            user: str | None = None, host_network: bool = False) -> subprocess.CompletedProcess:
        """Run argv inside the booted system (its PID, mount, UTS and network namespaces), as root or user.

        With host_network, in the host's network instead (pip, which may need the package index).
        """
        namespaces = ["-p", "-m", "-u"] + ([] if host_network else ["-n"])
        command = ["nsenter", "-t", str(self.pid), *namespaces, "env", f"--chdir={cwd}"]
        if user:
            command += ["runuser", "-u", user, "--"]
        result = subprocess.run([*command, *argv], env=INSIDE_ENV, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{argv} exited {result.returncode}: {result.stdout[-2000:]}{result.stderr[-2000:]}")
        return result

    def systemctl(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """systemctl inside."""
        return self.run("systemctl", "--no-pager", *args, check=check, timeout=timeout)

    def show(self, unit: str, prop: str) -> str:
        """One property of a unit, as `systemctl show` gives it."""
        return self.systemctl("show", "-P", prop, unit).stdout.strip()

    def journal(self, unit: str, lines: int = 60) -> str:
        """The unit's last log lines, for assertion messages."""
        return self.run("journalctl", "--no-pager", "-q", "-o", "cat", "-n", str(lines), "-u", unit,
                        check=False).stdout

    def shutdown(self) -> None:
        """End the namespace's PID 1, with it every process inside, and remove the mount point."""
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.unshare.wait(timeout=30)  # unshare reaps systemd, then exits
        except subprocess.TimeoutExpired:
            self.unshare.kill()
            self.unshare.wait(timeout=30)
        self.unshare.stderr.close()
        self.base.rmdir()


def project_files() -> list[str]:
    """The files of this checkout that a deployment copies: tracked and new ones, not ignored ones."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    return [name for name in listed if name and (ROOT / name).is_file()]


def venv_key() -> str:
    """What decides the virtualenv's packages: the declared dependencies and the Python that runs them."""
    digest = hashlib.sha256()
    for name in ("setup.cfg", "pyproject.toml"):
        digest.update((ROOT / name).read_bytes())
    digest.update(os.path.realpath(DEBIAN_PYTHON).encode())
    return digest.hexdigest()[:16]


def deploy(system: System) -> None:
    """Deploy this checkout at /srv/tardist as docs/deploying.md does, and install the units."""
    root = system.path(DEPLOYMENT)
    for name in project_files():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    system.run("useradd", "--system", "--home-dir", str(DEPLOYMENT), "--shell", "/usr/sbin/nologin", "tardist")
    cached = CACHE / f"systemd-venv-{venv_key()}.tar"
    if cached.exists():
        with tarfile.open(cached) as tar:
            tar.extractall(root, filter="tar")
        system.run(".venv/bin/pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", ".",
                   cwd=str(DEPLOYMENT), timeout=300)
    else:
        system.run("sh", "-c", "python3 -m venv .venv && .venv/bin/pip install --quiet .", cwd=str(DEPLOYMENT),
                   timeout=600, host_network=True)
        # What later boots need to reinstall tardist alone, offline (setuptools builds wheels with it).
        system.run(".venv/bin/pip", "install", "--quiet", "wheel", cwd=str(DEPLOYMENT), timeout=300,
                   host_network=True)
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.partial")
        with tarfile.open(partial, "w") as tar:
            tar.add(root / ".venv", ".venv")
        partial.replace(cached)
    system.run("sh", "-c", "cp instance/tardist.toml.example instance/tardist.toml && "
               "mkdir -p mirrors tarballs published && chown -R tardist: mirrors tarballs published instance",
               cwd=str(DEPLOYMENT))
    system.run("bash", "-c", deploying_line("for unit in deploy/systemd/"), cwd=str(DEPLOYMENT))
    system.systemctl("daemon-reload")


def deploying_line(start: str) -> str:
    """The one shell line of docs/deploying.md that starts so."""
    lines = [line for line in (ROOT / "docs/deploying.md").read_text().splitlines() if line.startswith(start)]
    assert len(lines) == 1, f"docs/deploying.md has {len(lines)} lines starting {start!r}"
    return lines[0]
