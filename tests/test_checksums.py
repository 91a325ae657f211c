"""Signed checksum files, checked as a user does: the commands /browse shows, run with real curl,
ssh-keygen and sha256sum against real nginx (deploy/nginx.conf, and deploy/nginx-static.conf as an edge)."""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import Deployment, Repo, directory_source, extension_files, git
from serving import (
    HOST,
    NGINX,
    fetch,
    free_port,
    render_site,
    running_nginx,
    site_values,
    start_gunicorn,
)

from loopback.gitdaemon import stop
from tardist import schema
from tardist.settings import SettingsError, load_settings
from worker.checksums import FOLDER, write_checksums
from worker.publish import publish

pytestmark = [pytest.mark.skipif(not os.access(NGINX, os.X_OK), reason="nginx is not installed"), pytest.mark.nginx]


def make_key(path: Path) -> Path:
    """A new ed25519 key pair at path and path.pub, as an operator makes one."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tardist", "-f", str(path)], check=True)
    return path


def public(key: Path) -> str:
    """`type base64` of a key's public half."""
    return " ".join(key.with_name(key.name + ".pub").read_text().split()[:2])


def commands_of(page: bytes) -> list[str]:
    """The shell commands a page shows, as a user copies them."""
    return [html.unescape(text) for text in re.findall(r'<pre class="command">(.*?)</pre>', page.decode(), re.S)]


def run_shell(commands: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run commands one after the other in bash, stopping at the first that fails."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["bash", "-e", "-c", "\n".join(commands)], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


@dataclass
class Site:
    """A synced, signing deployment behind nginx, and an edge: nginx-static serving a copy of its files."""

    deployment: Deployment
    port: int
    edge_port: int
    edge: Path  # the edge's copy: edge/published, edge/tarballs
    key: Path
    tmp: Path

    def url(self, port: int | None = None) -> str:
        return f"http://{HOST}:{port or self.port}"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("checksums")
    cite = Repo(tmp / "upstream/extensions/Cite")
    cite.commit(extension_files("Cite"))
    git(cite.path, "branch", "REL1_45")
    Repo(tmp / "upstream/extensions/Echo").commit(extension_files("Echo"))
    Repo(tmp / "upstream/skins/Vector").commit({"skin.json": json.dumps({"name": "Vector"})})
    (tmp / "deploy").mkdir()
    key = make_key(tmp / "signing_key")
    api_port, port, edge_port = free_port(), free_port(), free_port()
    deployment = Deployment(tmp / "deploy", tmp / "deploy/tardist.toml")
    deployment.write_config(directory_source("extensions", tmp / "upstream/extensions")
                            + directory_source("skins", tmp / "upstream/skins"),
                            signing_key=str(key), site_url=f"http://{HOST}:{port}")
    deployment.sync()
    settings = deployment.settings()
    edge = tmp / "edge"
    edge.mkdir()
    shutil.copytree(settings.published, edge / "published", symlinks=True)  # as `rsync -a` copies
    shutil.copytree(settings.tarballs, edge / "tarballs", symlinks=True)
    gunicorn = start_gunicorn(deployment, api_port, tmp / "gunicorn.log")
    try:
        nginx_dir = tmp / "nginx"
        sites = {"tardist.conf": render_site(site_values(deployment, nginx_dir, port, api_port)),
                 "edge.conf": render_site({
                     "LISTEN": f"{HOST}:{edge_port}", "SERVER_NAME": "localhost", "TARBALLS": str(edge / "tarballs"),
                     "PUBLISHED": str(edge / "published"), "CACHE_SECONDS": "5"}, "deploy/nginx-static.conf")}
        with running_nginx(nginx_dir, sites, (port, edge_port)):
            yield Site(deployment, port, edge_port, edge, key, tmp)
    finally:
        stop(gunicorn)


def page_commands(site: Site, branch: str = "master") -> list[str]:
    """The commands /browse/extensions/Cite shows under the branch's download, fetched through nginx."""
    page = fetch(site.port, "/browse/extensions/Cite")
    assert page.status == 200
    section = page.body.split(f'id="branch-{branch}"'.encode())[1].split(b'<section class="branch"')[0]
    return commands_of(section)


def from_edge(site: Site, commands: list[str]) -> list[str]:
    """The same commands downloading from the edge; allowed_signers comes from the tardist site's page."""
    return [command.replace(site.url(), site.url(site.edge_port)) for command in commands]


def test_the_page_shows_the_key_and_commands_that_verify_a_good_download(site):
    browse = fetch(site.port, "/browse")
    assert public(site.key) in html.unescape(browse.body.decode())
    published = fetch(site.port, "/checksums/allowed_signers")
    assert published.status == 200 and published.body.decode() == f'tardist namespaces="file" {public(site.key)}\n'
    commands = page_commands(site)
    assert len(commands) == 3 and commands[0].endswith("> allowed_signers")
    # A version folder, never current/: the list and its signature a user downloads always belong together.
    version = os.readlink(site.deployment.settings().published / FOLDER / "extensions/current")
    assert f"/checksums/extensions/{version}/SHA256SUMS.sig" in commands[1] and "current" not in commands[1]
    for port in (site.port, site.edge_port):
        done = run_shell(commands if port == site.port else from_edge(site, commands), site.tmp / f"good-{port}")
        assert done.returncode == 0, done.stderr
        tarball = re.search(r"Cite-master-[0-9a-f]{7}\.tar\.gz", commands[1])[0]
        assert done.stdout.startswith('Good "file" signature for tardist')
        assert done.stdout.endswith(f"\n{tarball}: OK\n")


def test_a_tarball_changed_by_one_byte_on_the_edge_fails(site):
    commands = page_commands(site)
    tarball = re.search(r"Cite-master-[0-9a-f]{7}\.tar\.gz", commands[1])[0]
    path = site.edge / "tarballs/extensions" / tarball
    original = path.read_bytes()
    try:
        path.write_bytes(original[:100] + bytes([original[100] ^ 1]) + original[101:])
        done = run_shell(from_edge(site, commands), site.tmp / "byte")
    finally:
        path.write_bytes(original)
    assert done.returncode == 1
    assert 'Good "file" signature' in done.stdout  # the list is tardist's...
    assert f"{tarball}: FAILED" in done.stdout  # ...and the tarball is not the one it lists


def version_folder(site: Site) -> Path:
    return next(p for p in (site.edge / "published" / FOLDER / "extensions").iterdir() if len(p.name) == 16)


def test_a_checksum_file_changed_by_one_line_on_the_edge_fails(site):
    commands = page_commands(site)
    sums = version_folder(site) / "SHA256SUMS"
    original = sums.read_bytes()
    tarball = site.edge / "tarballs/extensions" / re.search(r"Cite-master-[0-9a-f]{7}\.tar\.gz", commands[1])[0]
    saved = tarball.read_bytes()
    try:  # the edge serves its own tarball, and a list that names its sha256
        tarball.write_bytes(saved + b"\0")
        forged = hashlib.sha256(saved + b"\0").hexdigest()
        lines = [(f"{forged}  {tarball.name}" if line.endswith(tarball.name) else line)
                 for line in original.decode().splitlines()]
        sums.write_text("\n".join(lines) + "\n")
        done = run_shell(from_edge(site, commands), site.tmp / "line")
    finally:
        sums.write_bytes(original)
        tarball.write_bytes(saved)
    assert done.returncode != 0
    assert "Could not verify signature" in done.stderr + done.stdout and ": OK" not in done.stdout


def test_a_checksum_file_signed_by_another_key_fails(site):
    commands = page_commands(site)
    folder = version_folder(site)
    original = (folder / "SHA256SUMS.sig").read_bytes()
    other = make_key(site.tmp / "other_key")
    try:
        signed = subprocess.run(["ssh-keygen", "-Y", "sign", "-q", "-f", str(other), "-n", "file"],
                                input=(folder / "SHA256SUMS").read_bytes(), capture_output=True, check=True)
        (folder / "SHA256SUMS.sig").write_bytes(signed.stdout)
        done = run_shell(from_edge(site, commands), site.tmp / "other")
    finally:
        (folder / "SHA256SUMS.sig").write_bytes(original)
    assert done.returncode != 0
    assert "Could not verify signature" in done.stderr + done.stdout and ": OK" not in done.stdout


def test_version_folders_are_served_immutable_and_dot_folders_not_at_all(site):
    folder = version_folder(site)
    (site.deployment.settings().published / FOLDER / "extensions" / ".tmp-x").mkdir(exist_ok=True)
    for port in (site.port, site.edge_port):
        answer = fetch(port, f"/checksums/extensions/{folder.name}/SHA256SUMS.sig")
        assert answer.status == 200 and answer.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert answer.headers["content-type"] == "text/plain"
        current = fetch(port, "/checksums/extensions/current/SHA256SUMS")
        assert current.status == 200 and current.headers["cache-control"] == "public, max-age=5"
        assert current.body == (folder / "SHA256SUMS").read_bytes()
    assert fetch(site.port, "/checksums/extensions/.tmp-x/").status == 404


# Writing: versions, atomicity, rotation (files on disk; the commands as a user runs them).

def verify(folder: Path, signers: str, tarballs: Path, *options: str) -> subprocess.CompletedProcess:
    """`ssh-keygen -Y verify` of folder's SHA256SUMS, then `sha256sum --ignore-missing -c` in tarballs."""
    (folder.parent / "allowed_signers.test").write_text(signers)
    return subprocess.run(
        ["bash", "-e", "-c", f"ssh-keygen -Y verify -f {folder.parent}/allowed_signers.test -I tardist -n file "
                             f"-s {folder}/SHA256SUMS.sig {' '.join(options)} < {folder}/SHA256SUMS && "
                             f"sha256sum --ignore-missing -c {folder}/SHA256SUMS"],
        cwd=tarballs, capture_output=True, text=True, timeout=60)


def test_versions_change_only_with_the_tarballs_and_list_retained_ones(deployment, upstream, tmp_path):
    key = make_key(tmp_path / "key")
    deployment.write_config(signing_key=str(key))
    repo = upstream("Cite", files=extension_files("Cite"))
    deployment.sync()
    settings = deployment.settings()
    kind_folder = settings.published / FOLDER / "extensions"
    first = os.readlink(kind_folder / "current")
    first_sums = (kind_folder / first / "SHA256SUMS").read_bytes()
    stamp = (kind_folder / first / "SHA256SUMS").stat().st_mtime_ns
    deployment.sync("--force")  # nothing new: nothing written
    assert os.readlink(kind_folder / "current") == first
    assert (kind_folder / first / "SHA256SUMS").stat().st_mtime_ns == stamp
    repo.commit({"README": "new"})
    deployment.sync()
    second = os.readlink(kind_folder / "current")
    assert second != first and (kind_folder / first / "SHA256SUMS").read_bytes() == first_sums  # old pair kept
    lines = (kind_folder / second / "SHA256SUMS").read_text().splitlines()
    listed = r"[0-9a-f]{64}  Cite-master-[0-9a-f]{7}\.tar\.gz"
    assert len(lines) == 2 and all(re.fullmatch(listed, line) for line in lines)
    done = verify(kind_folder / second, f'tardist namespaces="file" {public(key)}\n', settings.tarballs / "extensions")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(": OK") == 2  # the current and the retained tarball
    assert not list(kind_folder.glob(".tmp-*"))
    deployment.write_config(signing_key=str(key), retention_days=0)
    assert deployment.cli("gc").returncode == 0  # the retained tarball goes: so does its line
    third = os.readlink(kind_folder / "current")
    assert third not in (first, second)
    assert (kind_folder / third / "SHA256SUMS").read_text().splitlines() == [
        line for line in lines if (settings.tarballs / "extensions" / line.split("  ")[1]).is_file()]
    assert verify(kind_folder / third, f'tardist namespaces="file" {public(key)}\n',
                  settings.tarballs / "extensions").stdout.count(": OK") == 1


def test_a_full_publish_leaves_the_checksum_files_alone(deployment, upstream, tmp_path):
    deployment.write_config(signing_key=str(make_key(tmp_path / "key")))
    upstream("Cite", files=extension_files("Cite"))
    deployment.sync()
    settings = deployment.settings()
    def files():  # path -> (inode, mtime): a file removed and written again shows
        return {p.relative_to(settings.published): (p.lstat().st_ino, p.lstat().st_mtime_ns)
                for p in (settings.published / FOLDER).rglob("*")}

    before = files()
    db = schema.open_writer(settings.database, settings.database_timeout)
    try:
        publish(settings, db, None)
    finally:
        db.close()
    assert files() == before


def test_a_file_signed_before_a_key_rotation(deployment, upstream, tmp_path):
    old, new = make_key(tmp_path / "old"), make_key(tmp_path / "new")
    deployment.write_config(signing_key=str(old))
    upstream("Cite", files=extension_files("Cite"))
    deployment.sync()
    settings = deployment.settings()
    kind_folder = settings.published / FOLDER / "extensions"
    before = kind_folder / os.readlink(kind_folder / "current")
    signed_at = datetime.now(UTC)
    retired = (signed_at + timedelta(seconds=1)).strftime("%Y%m%d%H%M%SZ")
    deployment.write_config(signing_key=str(new), retired_signing_keys=[f"{retired} {public(old)} old key"])
    settings = deployment.settings()
    db = schema.open_writer(settings.database, settings.database_timeout)
    try:
        assert write_checksums(settings, db)["versions"] == 1  # a new key signs everything again
    finally:
        db.close()
    signers = (settings.published / FOLDER / "allowed_signers").read_text()
    assert signers == (f'tardist namespaces="file" {public(new)}\n'
                       f'tardist namespaces="file",valid-before="{retired}" {public(old)}\n')
    after = kind_folder / os.readlink(kind_folder / "current")
    assert after != before
    tarballs = settings.tarballs / "extensions"
    assert verify(after, signers, tarballs).returncode == 0
    time.sleep(2)
    # The old key's signature is refused today (it may have leaked since it was retired)...
    stale = verify(before, signers, tarballs)
    assert stale.returncode != 0 and "Could not verify signature" in stale.stderr + stale.stdout
    # ...and accepted for the time the user says they downloaded it, before the rotation.
    then = verify(before, signers, tarballs, f"-Overify-time={signed_at.strftime('%Y%m%d%H%M%SZ')}")
    assert then.returncode == 0, then.stderr
    assert then.stdout.endswith(": OK\n")


@pytest.mark.parametrize("entry", [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO",  # no date
    "20270101 ssh-dss AAAAB3NzaC1kc3MAAACBAP",  # a key type ssh-keygen does not sign with
    '20270101 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO\ntardist ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE',  # a second line
    '20270101" cert-authority ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO',  # options smuggled in
])
def test_a_retired_key_that_is_not_a_date_and_a_key_is_refused(entry):
    with pytest.raises(SettingsError, match="retired_signing_keys"):
        load_settings(None, {"retired_signing_keys": [entry]}, environ={})


@pytest.mark.parametrize("url", ["javascript:alert(1)", "https://example.org/'; rm -rf ~; '", "example.org"])
def test_a_site_url_that_is_not_a_plain_http_url_is_refused(url):
    with pytest.raises(SettingsError, match="site_url"):
        load_settings(None, {"site_url": url}, environ={})


def test_a_key_that_cannot_sign_fails_publish_and_gc_with_a_reason_not_a_traceback(deployment, upstream, tmp_path):
    upstream("Cite", files=extension_files("Cite"))
    deployment.sync()
    broken = tmp_path / "not-a-key"
    broken.write_text("not an OpenSSH key\n")
    broken.chmod(0o600)
    deployment.write_config(signing_key=str(broken))
    for command in ("publish", "gc"):
        result = deployment.cli(command)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert "tardist: cannot sign the checksum files: ssh-keygen" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
