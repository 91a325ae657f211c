"""`tardist verify`, run as a user runs it (no configuration of theirs), on tarballs of real syncs served
by a git daemon, from a file and through nginx; tampered copies must fail naming the member."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest
from helpers import TARDIST, Deployment, extension_files
from serving import HOST, free_port, render_site, running_nginx

from loopback.gitdaemon import git_daemon
from loopback.servers import closed_port


def run_verify(cwd: Path, *args: str, **settings: str) -> subprocess.CompletedProcess:
    """`tardist verify ...` in a folder without a configuration, as someone who downloaded a tarball runs it
    (settings: TARDIST_* variables, such as TARDIST_COMPOSER_HOME)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARDIST_")}
    return subprocess.run([TARDIST, "verify", *args], cwd=cwd, env={**env, **settings}, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture
def synced(tmp_path: Path, deployment: Deployment, upstream):
    """Cite (two commits) synced through a git daemon: yields (its master tarball, the repository)."""
    cite = upstream("Cite", files=extension_files("Cite"))
    cite.commit({"README": "Cite\n", "bin/run": "#!/bin/sh\n"})
    with git_daemon(tmp_path / "upstream") as base:
        deployment.write_config(f'\n[[source]]\nkind = "extensions"\ntype = "list"\n'
                                f'repos = {{ Cite = "{base}/extensions/Cite" }}\n', submodule_protocols=["git"])
        deployment.sync()
        info = deployment.app().test_client().get("/info/extensions/Cite").get_json()
        yield deployment.root / "tarballs/extensions" / info["branches"]["master"]["tarball"], cite


def repack(source: Path, dest: Path, edit: Callable[[list[tuple[tarfile.TarInfo, bytes]]], None]) -> Path:
    """Copy a tarball as tardist writes one (PAX, gzip without name or time), with edit applied to its members."""
    with tarfile.open(source, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else b"") for m in tar.getmembers()]
    edit(members)
    with open(dest, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as out:
            for info, data in members:
                info.size = len(data) if info.isfile() else 0
                out.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return dest


def member(members, name: str) -> int:
    return next(i for i, (info, _data) in enumerate(members) if info.name == name)


def test_a_synced_tarball_verifies_from_a_file(synced, tmp_path):
    tarball, _cite = synced
    done = run_verify(tmp_path, str(tarball))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"identical (sha256 {hashlib.sha256(tarball.read_bytes()).hexdigest()})\n"
    assert not (tmp_path / "mirrors").exists()  # the temporary mirror is gone


@pytest.mark.nginx
def test_a_synced_tarball_verifies_by_url_through_nginx(synced, tmp_path):
    tarball, _cite = synced
    port = free_port()
    site = render_site({"LISTEN": f"{HOST}:{port}", "SERVER_NAME": "localhost",
                        "TARBALLS": str(tarball.parent.parent), "PUBLISHED": str(tmp_path / "published"),
                        "CACHE_SECONDS": "5"}, "deploy/nginx-static.conf")
    with running_nginx(tmp_path / "nginx", {"static.conf": site}, (port,)):
        done = run_verify(tmp_path, f"http://{HOST}:{port}/dist/extensions/{tarball.name}")
        missing = run_verify(tmp_path, f"http://{HOST}:{port}/dist/extensions/Nope-master-1234567.tar.gz")
    assert done.returncode == 0 and done.stdout.startswith("identical (sha256 "), done.stderr
    assert missing.returncode == 2 and "cannot download" in missing.stderr and "Not Found" in missing.stderr


def change_byte(members):
    index = member(members, "Cite/extension.json")
    info, data = members[index]
    members[index] = (info, data[:5] + bytes([data[5] ^ 1]) + data[6:])


def add_member(members):
    info = tarfile.TarInfo("Cite/includes/Evil.php")
    info.mtime, info.mode = members[0][0].mtime, 0o644
    members.insert(member(members, "Cite/includes/Cite.php") + 1, (info, b"<?php system($_GET['x']);\n"))


def change_mode(members):
    members[member(members, "Cite/README")][0].mode = 0o755


def drop_member(members):
    del members[member(members, "Cite/README")]


@pytest.mark.parametrize("edit, expected", [
    (change_byte, "differs: content: Cite/extension.json\n"),
    (add_member, "differs: added: Cite/includes/Evil.php is not in the rebuilt tarball\n"),
    (change_mode, "differs: mode: Cite/README (755, rebuilt 644)\n"),
    (drop_member, "differs: missing: Cite/README is in the rebuilt tarball only\n"),
])
def test_a_tampered_tarball_fails_naming_the_member(synced, tmp_path, edit, expected):
    tarball, _cite = synced
    tampered = repack(tarball, tmp_path / tarball.name, edit)
    done = run_verify(tmp_path, str(tampered))
    assert (done.returncode, done.stdout) == (1, expected), done.stderr


def test_a_repacked_but_unchanged_tarball_is_identical_member_by_member(synced, tmp_path):
    tarball, _cite = synced
    repacked = repack(tarball, tmp_path / "same.tar.gz", lambda members: None)
    if repacked.read_bytes() == tarball.read_bytes():
        pytest.skip("this Python repacks to the very same bytes")
    done = run_verify(tmp_path, str(repacked))
    assert done.returncode == 1 and "every member is the same" in done.stdout


def test_a_swapped_gitinfo_commit_fails_naming_the_member(synced, tmp_path):
    tarball, cite = synced
    older = cite.head("HEAD~1")

    def swap(members):
        index = member(members, "Cite/gitinfo.json")
        gitinfo = json.loads(members[index][1])
        gitinfo["headSHA1"] = older
        members[index] = (members[index][0], json.dumps(gitinfo, indent=1).encode() + b"\n")

    done = run_verify(tmp_path, str(repack(tarball, tmp_path / tarball.name, swap)))
    # The older commit has another date: the top folder, the first member, already differs.
    assert done.returncode == 1 and done.stdout.startswith("differs: mtime: Cite (")


def test_a_byte_flipped_on_the_wire_is_a_damaged_archive(synced, tmp_path):
    tarball, _cite = synced
    data = bytearray(tarball.read_bytes())
    data[len(data) // 2] ^= 0x40
    (tmp_path / "flipped.tar.gz").write_bytes(bytes(data))
    done = run_verify(tmp_path, str(tmp_path / "flipped.tar.gz"))
    assert done.returncode == 1 and done.stdout.startswith("differs: the archive is damaged: "), done.stderr


def test_a_gzip_bomb_is_refused_before_it_is_unpacked_whole(tmp_path):
    bomb = tmp_path / "bomb.tar.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as out:  # 64 MiB of zeros in about 64 KiB
        for _ in range(64):
            out.write(bytes(1 << 20))
    limits = {"TARDIST_MAX_TARBALL_BYTES": str(16 << 20), "TARDIST_MAX_FILES": "100"}
    done = run_verify(tmp_path, str(bomb), **limits)
    assert done.returncode == 2, done
    assert done.stderr == (f"tardist verify: cannot verify: it unpacks to more than {(16 << 20) + 8192 * 116} "
                           "bytes, more than a tarball built with this configuration's max_tarball_bytes and "
                           "max_files can (raise them, e.g. TARDIST_MAX_TARBALL_BYTES, to verify a larger one)\n")


def test_an_unknown_commit_or_an_unreachable_source_cannot_be_verified(synced, tmp_path):
    tarball, _cite = synced

    def unknown(members):
        index = member(members, "Cite/gitinfo.json")
        gitinfo = json.loads(members[index][1])
        gitinfo["headSHA1"] = "0123456789" * 4
        members[index] = (members[index][0], json.dumps(gitinfo).encode())

    done = run_verify(tmp_path, str(repack(tarball, tmp_path / "unknown.tar.gz", unknown)))
    assert done.returncode == 2 and "cannot verify: commit 0123456789" in done.stderr, done.stderr
    unreachable = run_verify(tmp_path, str(tarball), "--source", f"git://127.0.0.1:{closed_port()}/Cite")
    assert unreachable.returncode == 2 and "cannot verify: cannot fetch" in unreachable.stderr
    missing = run_verify(tmp_path, str(tmp_path / "nothing.tar.gz"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    (tmp_path / "plain.tar.gz").write_bytes(b"not a tarball")
    plain = run_verify(tmp_path, str(tmp_path / "plain.tar.gz"))
    assert plain.returncode == 2 and "not a readable .tar.gz" in plain.stderr


def test_source_overrides_the_clone_url(synced, tmp_path):
    tarball, cite = synced
    mirror = tmp_path / "elsewhere.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(cite.path), str(mirror)], check=True)
    done = run_verify(tmp_path, str(tarball), "--source", str(mirror))
    assert done.returncode == 0, done.stderr


def test_a_file_url_in_gitinfo_is_refused_as_a_submodule_url_would_be(synced, tmp_path):
    tarball, cite = synced

    def local(members):
        index = member(members, "Cite/gitinfo.json")
        gitinfo = json.loads(members[index][1])
        gitinfo["remoteURL"] = str(cite.path)  # a path on the verifying machine: never read unless asked
        members[index] = (members[index][0], json.dumps(gitinfo).encode())

    done = run_verify(tmp_path, str(repack(tarball, tmp_path / "local.tar.gz", local)))
    assert done.returncode == 2 and "cannot verify" in done.stderr


@pytest.fixture
def make_needy(tmp_path: Path, deployment: Deployment, upstream):
    """Needy requires acme/hello 1.2.3 from a path repository (its registry); make(locked) commits its
    composer.lock or not, syncs it through a git daemon and returns (its master tarball, the composer home
    that reaches the registry)."""
    if shutil.which("composer") is None:
        pytest.skip("composer is not installed")
    daemon = ExitStack()

    def make(locked: bool) -> tuple[Path, Path]:
        packages = tmp_path / "packages/acme/hello"
        (packages / "src").mkdir(parents=True)
        (packages / "composer.json").write_text(json.dumps({"name": "acme/hello", "version": "1.2.3"}))
        (packages / "src/Hello.php").write_text("<?php\nclass Hello {}\n")
        home = tmp_path / "composer-home"
        home.mkdir()
        (home / "config.json").write_text(json.dumps({"repositories": [
            {"type": "path", "url": f"{tmp_path}/packages/*/*"}, {"packagist.org": False}]}))
        files = {**extension_files("Needy"), "composer.json": json.dumps(
            {"name": "mediawiki/needy", "require": {"acme/hello": "^1.0"}})}
        if locked:
            work = tmp_path / "locking"
            work.mkdir()
            (work / "composer.json").write_text(files["composer.json"])
            subprocess.run(["composer", "update", "--no-install", "--no-interaction", "--no-plugins", "--no-scripts"],
                           cwd=work, env={**os.environ, "COMPOSER_HOME": str(home)}, check=True,
                           capture_output=True, timeout=120)
            files["composer.lock"] = (work / "composer.lock").read_text()
        upstream("Needy", files=files)
        base = daemon.enter_context(git_daemon(tmp_path / "upstream"))
        deployment.write_config(f'\n[[source]]\nkind = "extensions"\ntype = "list"\n'
                                f'repos = {{ Needy = "{base}/extensions/Needy" }}\n', submodule_protocols=["git"],
                                composer_home=str(home))
        deployment.sync()
        tarball = next((deployment.root / "tarballs/extensions").glob("Needy-master-*.tar.gz"))
        with tarfile.open(tarball) as tar:
            assert "Needy/vendor/acme/hello/src/Hello.php" in tar.getnames()
        return tarball, home

    with daemon:
        yield make


def forge_hello(tmp_path: Path):
    """An edit of a tarball's members: acme/hello's code replaced, and composer.lock made to say it came
    from a folder holding that code, as someone would forge it for a verifier that trusted the lock."""
    evil = tmp_path / "evil/acme/hello"
    (evil / "src").mkdir(parents=True)
    (evil / "src/Hello.php").write_text("<?php system('id');\n")

    def forge(members):
        index = member(members, "Needy/vendor/acme/hello/src/Hello.php")
        members[index] = (members[index][0], (evil / "src/Hello.php").read_bytes())
        index = member(members, "Needy/composer.lock")
        lock = json.loads(members[index][1])
        lock["packages"][0]["dist"]["url"] = str(evil)
        members[index] = (members[index][0], json.dumps(lock, indent=4).encode())
    return forge


@pytest.mark.composer
def test_a_vendored_tarball_whose_commit_locks_its_packages_is_rebuilt_whole(tmp_path, make_needy):
    tarball, home = make_needy(locked=True)
    registry = {"TARDIST_COMPOSER_HOME": str(home)}
    identical = f"identical (sha256 {hashlib.sha256(tarball.read_bytes()).hexdigest()})\n"
    done = run_verify(tmp_path, str(tarball), **registry)
    assert (done.returncode, done.stdout) == (0, identical), done.stderr
    newer = tmp_path / "packages/acme-next/hello"  # the registry moves on: the committed lock still pins
    shutil.copytree(tmp_path / "packages/acme/hello", newer)
    (newer / "composer.json").write_text(json.dumps({"name": "acme/hello", "version": "1.2.4"}))
    assert run_verify(tmp_path, str(tarball), **registry).stdout == identical

    def inside(members):
        change_byte_of(members, "Needy/vendor/acme/hello/src/Hello.php")

    changed = run_verify(tmp_path, str(repack(tarball, tmp_path / "inside.tar.gz", inside)), **registry)
    assert (changed.returncode, changed.stdout) == (1, "differs: content: Needy/vendor/acme/hello/src/Hello.php\n")
    forged = run_verify(tmp_path, str(repack(tarball, tmp_path / "forged.tar.gz", forge_hello(tmp_path))),
                        **registry)
    assert forged.returncode == 1 and forged.stdout in ("differs: content: Needy/composer.lock\n",
                                                        "differs: content: Needy/vendor/acme/hello/src/Hello.php\n")
    refused = run_verify(tmp_path, str(tarball))  # no registry: the lock's folder is nobody's repository here
    assert refused.returncode == 0 and refused.stdout.startswith("identical outside vendor/ (sha256 ")
    assert "vendor/ (and composer.lock) was not rebuilt: composer failed: composer: refused composer.lock" in (
        refused.stdout)
    off = run_verify(tmp_path, str(tarball), TARDIST_COMPOSER="", **registry)
    assert off.returncode == 0 and "was not rebuilt: composer is off or not installed" in off.stdout
    shutil.rmtree(tmp_path / "packages")  # the registry is gone: composer runs and cannot install
    gone = run_verify(tmp_path, str(tarball), **registry)
    assert gone.returncode == 0 and gone.stdout.startswith("identical outside vendor/ (sha256 "), gone.stderr
    assert "was not rebuilt: composer failed: " in gone.stdout and "refused" not in gone.stdout, gone.stdout


@pytest.mark.composer
def test_a_vendored_tarball_of_a_commit_without_a_lock_is_verified_outside_vendor_and_says_why(tmp_path,
                                                                                              make_needy):
    tarball, home = make_needy(locked=False)
    registry = {"TARDIST_COMPOSER_HOME": str(home)}
    done = run_verify(tmp_path, str(tarball), **registry)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("identical outside vendor/ (sha256 ")
    assert "vendor/ (and composer.lock) was not rebuilt: the commit holds no composer.lock" in done.stdout
    assert "installed.json lists the packages composer.lock pins" in done.stdout
    forged = run_verify(tmp_path, str(repack(tarball, tmp_path / "forged.tar.gz", forge_hello(tmp_path))),
                        **registry)  # never "identical": vendor/ is said to be unproven
    assert forged.returncode == 0 and forged.stdout.startswith("identical outside vendor/")

    def outside(members):
        change_byte_of(members, "Needy/extension.json")

    bad = run_verify(tmp_path, str(repack(tarball, tmp_path / "outside.tar.gz", outside)), **registry)
    assert (bad.returncode, bad.stdout) == (1, "differs: content: Needy/extension.json\n")

    def unpinned(members):
        index = member(members, "Needy/vendor/composer/installed.json")
        members[index] = (members[index][0], members[index][1].replace(b'"1.2.3"', b'"1.2.4"'))

    lock = run_verify(tmp_path, str(repack(tarball, tmp_path / "unpinned.tar.gz", unpinned)), **registry)
    assert (lock.returncode, lock.stdout) == (
        1, "differs: content: vendor/composer/installed.json and composer.lock disagree about acme/hello 1.2.3\n")


def change_byte_of(members, name: str) -> None:
    index = member(members, name)
    info, data = members[index]
    members[index] = (info, data[:5] + bytes([data[5] ^ 1]) + data[6:])
