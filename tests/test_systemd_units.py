"""deploy/systemd/ under a real systemd (tests/systemd_root.py), the units installed as docs/deploying.md says.

Marked `systemd`: `-m "not systemd"` leaves them out of a quick loop.
"""

from __future__ import annotations

import json
import re
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import GIT_ENV, extension_files
from systemd_root import DEPLOYMENT, System, deploy, unavailable

pytestmark = [pytest.mark.systemd, pytest.mark.slow,
              pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))]

UPSTREAM = Path("/srv/git/extensions")  # a directory source whose repositories root owns, as a git user would
PACKAGES = Path("/srv/composer-packages")
SLOW_COMPOSER = Path("/srv/slow-composer")  # composer, 4 s late: a build that a stop can land in
# Properties of a unit that say what it runs and how it is supervised; the rest is its sandbox.
NOT_SANDBOX = {"Type", "NotifyAccess", "ExecStart", "ExecReload", "Restart", "RestartSec", "KillMode",
               "TimeoutStopSec"}
HOOK_SECRET = "a-long-random-hook-secret"
CONFIG = f"""
branches = ["master"]
composer = "{SLOW_COMPOSER}"
hook_secret = "{HOOK_SECRET}"

[[source]]
kind = "extensions"
type = "directory"
path = "{UPSTREAM}"
"""


def upstream(system: System, name: str, files: dict[str, str]) -> None:
    """A repository of the directory source with one commit of files (git runs inside: git resolves the
    host's /proc/PID/root/ paths to the host's own /)."""
    folder = system.path(UPSTREAM / name)
    for file, content in files.items():
        (folder / file).parent.mkdir(parents=True, exist_ok=True)
        (folder / file).write_text(content)
    identity = [f"{key}={value}" for key, value in GIT_ENV.items()]
    for args in (["init", "--quiet", "-b", "master"], ["add", "-A"], ["commit", "--quiet", "-m", "upstream"]):
        system.run("env", *identity, "git", *args, cwd=str(UPSTREAM / name))


def write_packages(system: System) -> None:
    """Two composer packages in a path repository, and COMPOSER_HOME (tardist's default) offering only them."""
    for name, fields in (("acme/hello", {"autoload": {"classmap": ["src/"]}}),
                         ("acme/world", {"require": {"acme/hello": "^1.0"}})):
        folder = system.path(PACKAGES / name)
        (folder / "src").mkdir(parents=True)
        (folder / "composer.json").write_text(json.dumps({"name": name, "version": "1.2.3", **fields}))
        (folder / "src" / "Hello.php").write_text("<?php\nclass Hello {}\n")
    home = system.path(DEPLOYMENT / "mirrors/_composer/home")
    home.mkdir(parents=True)
    (home / "config.json").write_text(json.dumps({"repositories": [
        {"type": "path", "url": f"{PACKAGES}/*/*"}, {"packagist.org": False}]}))
    (home / "auth.json").write_text(json.dumps({"http-basic": {"repo.example.org": {
        "username": "tardist", "password": "the-worker's-secret"}}}))
    system.run("chown", "-R", "tardist:", str(DEPLOYMENT / "mirrors"))
    system.path(SLOW_COMPOSER).write_text('#!/bin/sh\nsleep 4\nexec composer "$@"\n')
    system.path(SLOW_COMPOSER).chmod(0o755)


@pytest.fixture(scope="session")
def system() -> Iterator[System]:
    """A booted systemd with tardist deployed at /srv/tardist, its units installed, two upstream extensions."""
    started = time.monotonic()
    booted = System()
    try:
        booted.wait_running()
        deploy(booted)
        upstream(booted, "Plain", extension_files("Plain"))
        upstream(booted, "Needy", {**extension_files("Needy"), "composer.json": json.dumps(
            {"name": "mediawiki/needy", "type": "mediawiki-extension", "require": {"acme/world": "^1.0"}})})
        write_packages(booted)
        booted.path(DEPLOYMENT / "instance/tardist.toml").write_text(CONFIG)
        booted.run(".venv/bin/tardist", "init-db", cwd=str(DEPLOYMENT), user="tardist")
        print(f"systemd booted and tardist deployed in {time.monotonic() - started:.1f} s")
        yield booted
    finally:
        booted.shutdown()
    assert booted.unshare.returncode is not None and not Path(f"/proc/{booted.pid}").exists()


@pytest.fixture(scope="session")
def synced(system: System) -> System:
    """The timer's service has run one sync."""
    result = system.systemctl("start", "tardist-sync.service", timeout=300, check=False)
    assert result.returncode == 0, system.journal("tardist-sync.service")
    return system


def tarball_members(system: System, name: str) -> set[str]:
    folder = system.path(DEPLOYMENT / "tarballs/extensions")
    found = sorted(folder.glob(f"{name}-master-*.tar.gz"))
    assert found, f"no tarball of {name}: {sorted(folder.iterdir())}"
    with tarfile.open(found[-1]) as tar:
        return set(tar.getnames())


def sandbox_of(system: System, unit: str) -> list[str]:
    """systemd-run's -p arguments that give a probe the [Service] sandbox of an installed unit."""
    properties, section = [], ""
    for line in system.path(f"/etc/systemd/system/{unit}").read_text().splitlines():
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            if line.split("=", 1)[0] not in NOT_SANDBOX:
                properties += ["-p", line]
    return properties


def probe_writes(system: System, unit: str, paths: list[str]) -> dict[str, str]:
    """Try to create a file in each folder from inside the unit's sandbox; folder -> "ok" or the error."""
    script = ("import json, sys\nfound = {}\nfor folder in sys.argv[1:]:\n"
              "    try:\n        open(folder + '/probe', 'w').close()\n        found[folder] = 'ok'\n"
              "    except OSError as exc:\n        found[folder] = exc.strerror\nprint(json.dumps(found))\n")
    result = system.run("systemd-run", "--quiet", "--wait", "--pipe", *sandbox_of(system, unit),
                        "/usr/bin/python3", "-c", script, *paths, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def probe_reads(system: System, unit: str, path: str) -> str:
    """Read a file from inside the unit's sandbox: "ok" or the error."""
    script = "import sys\ntry:\n    open(sys.argv[1]).read()\n    print('ok')\nexcept OSError as exc:\n" \
             "    print(exc.strerror)\n"
    result = system.run("systemd-run", "--quiet", "--wait", "--pipe", *sandbox_of(system, unit),
                        "/usr/bin/python3", "-c", script, path, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def wait_for(what, timeout: float, why) -> None:
    """Poll what() until true, or fail with why()."""
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, why()
        time.sleep(0.2)


def test_the_system_boots_and_the_units_install_with_the_readme_line(system):
    assert system.run("systemctl", "is-system-running").stdout.strip() == "running"
    for unit in ("tardist-web.service", "tardist-worker.service", "tardist-sync.timer", "tardist-gc.timer"):
        assert system.show(unit, "LoadState") == "loaded", unit
        assert system.show(unit, "FragmentPath") == f"/etc/systemd/system/{unit}"


def test_the_sync_service_builds_as_tardist_a_composer_branch_in_bubblewrap(synced):
    system = synced
    assert system.show("tardist-sync.service", "Result") == "success", system.journal("tardist-sync.service")
    assert system.show("tardist-sync.service", "ExecMainStatus") == "0"
    # The upstream repositories belong to root: a directory source is trusted whoever owns its repositories.
    assert "dubious ownership" not in system.journal("tardist-sync.service")
    assert "Plain/includes/Plain.php" in tarball_members(system, "Plain")
    needy = tarball_members(system, "Needy")
    assert {"Needy/vendor/acme/hello/src/Hello.php", "Needy/vendor/autoload.php"} <= needy
    status = json.loads(system.run(".venv/bin/tardist", "status", cwd=str(DEPLOYMENT), user="tardist").stdout)
    assert "build_sandbox" not in json.dumps(status.get("warnings", [])), status
    tarballs = system.path(DEPLOYMENT / "tarballs/extensions")
    assert {path.stat().st_uid for path in tarballs.iterdir()} == {int(system.run("id", "-u", "tardist").stdout)}


def test_the_timers_compute_their_next_time_and_their_services_run(synced):
    system = synced
    for timer in ("tardist-sync.timer", "tardist-gc.timer"):
        system.systemctl("start", timer)
        assert system.show(timer, "ActiveState") == "active"
        assert system.show(timer, "NextElapseUSecRealtime") not in ("", "0", "n/a"), timer
    system.systemctl("start", "tardist-gc.service", timeout=300)
    assert system.show("tardist-gc.service", "Result") == "success", system.journal("tardist-gc.service")


def test_the_web_unit_answers_list_and_restarts_after_kill_9(synced):
    system = synced
    system.systemctl("start", "tardist-web.service", timeout=60)  # Type=notify: started once gunicorn says ready
    answer = system.run("curl", "-sS", "--fail", "http://127.0.0.1:8000/list").stdout
    assert "Plain" in answer and "Needy" in answer, answer
    first = system.show("tardist-web.service", "MainPID")
    system.run("kill", "-9", first)
    deadline = time.monotonic() + 30  # RestartSec=5
    while system.show("tardist-web.service", "MainPID") in ("0", first) or \
            system.show("tardist-web.service", "ActiveState") != "active":
        assert time.monotonic() < deadline, system.journal("tardist-web.service")
        time.sleep(0.2)
    assert system.show("tardist-web.service", "NRestarts") == "1"
    assert "Plain" in system.run("curl", "-sS", "--fail", "http://127.0.0.1:8000/list").stdout


def documented_sed_line() -> str:
    """The line of deploy/nginx.conf's header that fills in its placeholders, as an operator copies it."""
    lines = (Path(__file__).resolve().parents[1] / "deploy/nginx.conf").read_text().splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("#   sed "))
    command = []
    for line in lines[start:]:
        command.append(line.removeprefix("#").strip().removesuffix("\\").strip())
        if not line.endswith("\\"):
            return " ".join(command)
    raise AssertionError("the sed line of deploy/nginx.conf does not end")


def test_nginx_with_the_documented_site_serves_published_files_tarballs_and_the_web_unit(synced):
    system = synced
    if not system.path("/usr/sbin/nginx").exists():
        pytest.skip("nginx is not installed (Debian: apt install nginx-light; ./scripts/test installs it)")
    sed = documented_sed_line()
    assert sed.endswith("deploy/nginx.conf > /etc/nginx/sites-enabled/tardist") and "/srv/tardist/" in sed, sed
    system.run("sh", "-c", sed, cwd=str(DEPLOYMENT))
    started = system.systemctl("start", "tardist-web.service", "nginx.service", timeout=60, check=False)
    assert started.returncode == 0, system.journal("nginx.service") + system.journal("tardist-web.service")
    host = "extdist.example.org"  # the sed line's server_name, beside Debian's default site on port 80

    def get(path: str) -> str:
        return system.run("curl", "-sS", "--fail", "-H", f"Host: {host}", f"http://127.0.0.1{path}").stdout

    listed = json.loads(get("/list"))  # a file of published/, written by the sync unit
    assert {"Plain", "Needy"} <= set(listed["extensions"]), listed
    assert "Plain" in get("/browse/extensions")  # proxied to gunicorn in tardist-web.service
    assert json.loads(get("/info/extensions/Plain?uselang=en"))["name"] == "Plain"  # a query: the app answers
    tarball = sorted(system.path(DEPLOYMENT / "tarballs/extensions").glob("Plain-master-*.tar.gz"))[-1]
    copy = f"/tmp/{tarball.name}"
    system.run("curl", "-sS", "--fail", "-H", f"Host: {host}", "-o", copy, f"http://127.0.0.1/dist/extensions/{tarball.name}")
    assert system.path(copy).read_bytes() == tarball.read_bytes()
    log = system.path("/var/log/nginx/tardist.access.log").read_text()
    assert f"/dist/extensions/{tarball.name}" in log, "the access log tardist stats ingest reads"


def test_the_web_unit_writes_its_instance_folder_and_nothing_else(synced):
    system = synced
    root = str(DEPLOYMENT)
    found = probe_writes(system, "tardist-web.service", [
        f"{root}/instance", f"{root}/tarballs", f"{root}/mirrors", f"{root}/published", root, str(UPSTREAM),
        "/var/tmp", "/etc", "/srv"])
    assert found.pop(f"{root}/instance") == "ok"
    assert found.pop("/var/tmp") == "ok" and not system.path("/var/tmp/probe").exists()  # PrivateTmp: its own
    assert found.pop(f"{root}/mirrors") == "Permission denied"  # InaccessiblePaths
    assert set(found.values()) == {"Read-only file system"}, found


def test_the_building_units_write_their_four_folders_and_nothing_else(synced):
    system = synced
    root = str(DEPLOYMENT)
    writable = [f"{root}/instance", f"{root}/tarballs", f"{root}/mirrors", f"{root}/published"]
    for unit in ("tardist-sync.service", "tardist-worker.service", "tardist-gc.service"):
        found = probe_writes(system, unit, [*writable, root, f"{root}/.venv", str(UPSTREAM), "/var/tmp", "/etc"])
        assert all(found.pop(folder) == "ok" for folder in writable), (unit, found)
        assert found.pop("/var/tmp") == "ok" and not system.path("/var/tmp/probe").exists()
        assert set(found.values()) == {"Read-only file system"}, (unit, found)


def test_stopping_a_sync_during_a_build_finishes_the_branch_in_hand(synced):
    system = synced
    upstream(system, "Later", {**extension_files("Later"), "composer.json": json.dumps(
        {"name": "mediawiki/later", "type": "mediawiki-extension", "require": {"acme/hello": "^1.0"}})})
    system.systemctl("start", "--no-block", "tardist-sync.service")
    deadline = time.monotonic() + 60
    while system.run("pgrep", "-f", str(SLOW_COMPOSER), check=False).returncode != 0:
        assert time.monotonic() < deadline, system.journal("tardist-sync.service")
        time.sleep(0.1)
    started = time.monotonic()
    system.systemctl("stop", "tardist-sync.service", timeout=120)  # returns once the unit has stopped
    # KillMode=mixed: SIGTERM to tardist alone; the composer (4 s late) of the branch in hand finishes.
    assert time.monotonic() - started > 2
    assert "Later/vendor/acme/hello/src/Hello.php" in tarball_members(system, "Later"), \
        system.journal("tardist-sync.service")
    assert "finishing the repositories in hand" in system.journal("tardist-sync.service")


def test_the_web_unit_cannot_read_the_workers_secrets(synced):
    system = synced
    auth = str(DEPLOYMENT / "mirrors/_composer/home/auth.json")
    assert probe_reads(system, "tardist-worker.service", auth) == "ok"
    assert probe_reads(system, "tardist-web.service", auth) in ("Permission denied", "No such file or directory")


def test_systemd_rates_the_loaded_units_as_the_offline_check_does(synced):
    system = synced
    for unit, threshold in (("tardist-web.service", 25), ("tardist-sync.service", 35), ("tardist-gc.service", 25),
                            ("tardist-worker.service", 35)):
        result = system.run("systemd-analyze", "security", f"--threshold={threshold}", unit, check=False)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr
        exposure = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
        assert exposure and float(exposure[1]) <= threshold / 10, result.stdout[-300:]


def test_the_worker_unit_serves_a_webhook_and_a_stop_finishes_the_branch_in_hand(synced):
    system = synced
    upstream(system, "Hooked", {**extension_files("Hooked"), "composer.json": json.dumps(
        {"name": "mediawiki/hooked", "type": "mediawiki-extension", "require": {"acme/hello": "^1.0"}})})
    system.systemctl("start", "tardist-web.service", "tardist-worker.service", timeout=60)
    wait_for(lambda: system.run("curl", "-sf", "http://127.0.0.1:8000/list", check=False).returncode == 0, 30,
             lambda: system.journal("tardist-web.service"))
    answer = system.run("curl", "-sS", "-w", "%{http_code}", "-H", f"Authorization: Bearer {HOOK_SECRET}",
                        "-d", '{"kind": "extensions", "name": "Hooked"}', "http://127.0.0.1:8000/hooks/push").stdout
    assert answer.endswith("202"), answer
    wait_for(lambda: system.run("pgrep", "-f", str(SLOW_COMPOSER), check=False).returncode == 0, 60,
             lambda: system.journal("tardist-worker.service"))
    started = time.monotonic()
    system.systemctl("stop", "tardist-worker.service", timeout=120)
    assert time.monotonic() - started > 2  # composer (4 s late) was waited for, not killed
    assert "Hooked/vendor/acme/hello/src/Hello.php" in tarball_members(system, "Hooked"), \
        system.journal("tardist-worker.service")
    assert system.show("tardist-worker.service", "Result") == "success", system.journal("tardist-worker.service")


def test_the_worker_restarts_after_kill_9(synced):
    system = synced
    system.systemctl("start", "tardist-worker.service", timeout=60)
    first = system.show("tardist-worker.service", "MainPID")
    system.run("kill", "-9", first)
    wait_for(lambda: system.show("tardist-worker.service", "MainPID") not in ("0", first), 60,  # RestartSec=30
             lambda: system.journal("tardist-worker.service"))
    assert system.show("tardist-worker.service", "NRestarts") == "1"
    system.systemctl("stop", "tardist-worker.service", timeout=120)
