"""deploy/systemd/: every unit passes `systemd-analyze verify` with no warning, filled in as docs/deploying.md says."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import link_venv

ROOT = Path(__file__).resolve().parents[1]
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

pytestmark = [pytest.mark.systemd, pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (Debian: apt install systemd; CI installs it)")]


def readme_install_line() -> str:
    """docs/deploying.md's shell line that fills in and installs the units."""
    lines = [line for line in (ROOT / "docs/deploying.md").read_text().splitlines()
             if line.startswith("for unit in deploy/systemd/")]
    assert len(lines) == 1, "docs/deploying.md installs the units with one for loop"
    return lines[0]


@pytest.fixture
def deployment_root(tmp_path: Path) -> Path:
    """A deployment root whose .venv/bin holds the real tardist and gunicorn, with tardist's folders."""
    root = tmp_path / "srv-tardist"
    link_venv(root)
    for folder in ("mirrors", "tarballs", "published", "instance"):
        (root / folder).mkdir()
    shutil.copytree(ROOT / "deploy", root / "deploy")
    return root


@pytest.fixture
def installed(tmp_path: Path, deployment_root: Path) -> list[Path]:
    """The units as docs/deploying.md's install line writes them, into a stand-in for /etc/systemd/system."""
    etc = tmp_path / "etc-systemd-system"
    etc.mkdir()
    line = readme_install_line().replace("/etc/systemd/system/", f"{etc}/")
    subprocess.run(["bash", "-c", line], cwd=deployment_root, check=True, timeout=60)
    units = sorted(etc.iterdir())
    assert [unit.name for unit in units] == [
        "tardist-gc.service", "tardist-gc.timer", "tardist-sync.service", "tardist-sync.timer",
        "tardist-web.service", "tardist-worker.service"]
    for unit in units:
        assert not re.search(r"@[A-Z_]+@", unit.read_text()), (
            f"{unit.name}: a placeholder docs/deploying.md does not fill")
    return units


def test_systemd_analyze_verify_passes_without_a_warning(installed):
    units = installed
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", *map(str, units)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result.stdout + result.stderr


def test_verify_would_catch_a_broken_unit(installed):
    worker = next(unit for unit in installed if unit.name == "tardist-worker.service")
    worker.write_text(worker.read_text().replace("ProtectHome=yes", "ProtectHome=maybe"))
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", str(worker)], capture_output=True, text=True, timeout=120)
    assert "ProtectHome" in result.stderr or "protect home" in result.stderr


def services(units: list[Path]) -> dict[str, dict[str, list[str]]]:
    """The [Service] settings of every service: name -> key -> values."""
    found = {}
    for unit in units:
        if unit.suffix != ".service":
            continue
        settings: dict[str, list[str]] = {}
        section = ""
        for line in unit.read_text().splitlines():
            if line.startswith("["):
                section = line
            elif section == "[Service]" and "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                settings.setdefault(key, []).append(value)
        found[unit.name] = settings
    return found


def test_every_service_is_hardened_and_stops_gracefully(installed, deployment_root):
    units = installed
    root = str(deployment_root)
    writable = {f"{root}/{folder}" for folder in ("mirrors", "tarballs", "published", "instance")}
    for name, settings in services(units).items():
        for key, value in {"User": "tardist", "ProtectSystem": "strict", "ProtectHome": "yes",
                           "PrivateTmp": "yes", "NoNewPrivileges": "yes",
                           "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "KillMode": "mixed"}.items():
            assert settings.get(key) == [value], (name, key)
        # What builds tarballs runs composer in bubblewrap: namespaces and mounts, and nothing more.
        builds = name in ("tardist-worker.service", "tardist-sync.service")
        assert settings["SystemCallFilter"] == (["@system-service", "@mount"] if builds else ["@system-service"])
        assert settings["RestrictNamespaces"] == (["user mnt pid ipc uts cgroup"] if builds else ["yes"]), name
        paths = set(" ".join(settings["ReadWritePaths"]).split())
        assert paths <= writable and f"{root}/instance" in paths, name
        assert settings["WorkingDirectory"] == [root]
        if name == "tardist-web.service":
            assert paths == {f"{root}/instance"}  # the app only reads
        else:
            assert paths == writable and settings["TimeoutStopSec"] == ["10min"]
        daemon = name in ("tardist-web.service", "tardist-worker.service")
        assert settings.get("Restart") == (["on-failure"] if daemon else None), name


def test_systemd_rates_the_services_well_hardened(installed):
    for unit in installed:
        if unit.suffix == ".service":
            # The units that build tarballs give bubblewrap its namespaces, mounts and a fresh /proc
            # for composer: that costs them a point.
            builds = unit.name in ("tardist-worker.service", "tardist-sync.service")
            result = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes",
                                     f"--threshold={35 if builds else 25}", str(unit)],
                                    capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, result.stdout[-2000:] + result.stderr
            level = r"[0-3]" if builds else r"[0-2]"
            assert re.search(rf"Overall exposure level for \S+: {level}\.\d", result.stdout), result.stdout[-300:]
