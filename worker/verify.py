"""`tardist verify`: rebuild a tarball from git with tardist's own code and compare it with a download.

The tarball's gitinfo.json names the clone URL, the branch and the commit. That commit is
fetched into a temporary mirror with the rules a sync follows (tardist's git environment,
the allowed transports of `submodule_protocols` for a URL the tarball gave), packed as a sync
packs it, and compared: byte for byte, and member by member to name the first that differs.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from tardist.layout import BRANCH_RE, is_plain_name
from tardist.settings import PROTOCOLS, Settings
from worker import composer
from worker.build import file_access, readable, write_tarball
from worker.composer_install import ComposerError, composer_command, remove_scratch_root
from worker.git import GitError, ObjectReader, run_git
from worker.mirror import fetch_commit
from worker.tarball import TarballWriteError, extra_files
from worker.tree import Tree, TreeError, read_tree

SHA_RE = re.compile(r"^[0-9a-f]{40}$")
CHUNK = 1 << 20
VENDOR = "vendor"


class CannotVerify(Exception):
    """The tarball could not be rebuilt (not a tardist tarball, no network, an unknown commit)."""


@dataclass
class Verdict:
    """What the comparison found: identical or the first difference, and what was not rebuilt."""

    sha256: str
    difference: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """True when every byte that was rebuilt is the same."""
        return self.difference is None


@dataclass(frozen=True)
class GitInfo:
    """What a tarball says it was built from."""

    name: str
    branch: str
    commit: str
    remote_url: str


@dataclass(frozen=True)
class Member:
    """What is compared of one tarball entry."""

    name: str
    type: bytes
    mode: int
    linkname: str
    size: int
    sha256: str
    mtime: int
    owner: tuple


def verify(settings: Settings, target: str, source: str | None = None) -> Verdict:
    """Rebuild the tarball at target (a file or an http(s) URL) and compare; CannotVerify when it cannot."""
    with tempfile.TemporaryDirectory(prefix="tardist-verify-") as folder:
        scratch = Path(folder)
        download = fetch_tarball(settings, target, scratch / "download.tar.gz")
        # content, plus headers and padding: generous per file (pax headers of long names), folders too
        damage = gzip_damage(download, settings.max_tarball_bytes + 8192 * (settings.max_files + 16))
        if damage:  # tardist writes whole gzip streams: this one was changed or cut on the way
            return Verdict(_file_sha256(download), f"the archive is damaged: {damage}")
        info = read_gitinfo(download)
        url = source or info.remote_url
        if not url:
            raise CannotVerify("the tarball names no clone URL (gitinfo.json remoteURL is empty): "
                               "give one with --source")
        # The URL of a tarball is untrusted like a repository's submodule URLs; --source is the user's own.
        protocols = tuple(sorted(PROTOCOLS)) if source else settings.submodule_protocols
        here = dataclasses.replace(settings, mirrors=scratch / "mirrors")
        rebuilt = scratch / "rebuilt.tar.gz"
        not_rebuilt = _rebuild(here, info, url, protocols, rebuilt)
        return compare(download, rebuilt, info.name, not_rebuilt)


def fetch_tarball(settings: Settings, target: str, dest: Path) -> Path:
    """The tarball as a local file: target itself, or downloaded from an http(s) URL into dest."""
    if not target.startswith(("http://", "https://")):
        path = Path(target)
        if not path.is_file():
            raise CannotVerify(f"{target}: no such file")
        return path
    limit = settings.max_tarball_bytes
    try:
        with urllib.request.urlopen(target, timeout=settings.git_timeout) as answer, open(dest, "wb") as out:
            size = 0
            while chunk := answer.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise CannotVerify(f"{target}: larger than {limit} bytes (max_tarball_bytes)")
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CannotVerify(f"cannot download {target}: {getattr(exc, 'reason', None) or exc}") from None
    return dest


def gzip_damage(path: Path, limit: int) -> str | None:
    """Why a gzip file does not decompress whole (its CRC and length checked), or None; CannotVerify
    when it is no gzip file at all, or unpacks to more than limit bytes (a bomb, or built with larger limits)."""
    with open(path, "rb") as raw:
        if raw.read(2) != b"\x1f\x8b":
            raise CannotVerify("not a readable .tar.gz: it does not start as a gzip file does")
    try:
        with gzip.open(path, "rb") as stream:
            unpacked = 0
            while chunk := stream.read(CHUNK):
                unpacked += len(chunk)
                if unpacked > limit:
                    raise CannotVerify(f"it unpacks to more than {limit} bytes, more than a tarball built with "
                                       "this configuration's max_tarball_bytes and max_files can (raise them, "
                                       "e.g. TARDIST_MAX_TARBALL_BYTES, to verify a larger one)")
    except (OSError, EOFError, zlib.error) as exc:
        return str(exc) or type(exc).__name__
    return None


def read_gitinfo(path: Path) -> GitInfo:
    """The gitinfo.json at the top of a tardist tarball, checked."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            first = tar.next()
            if first is None or not first.isdir() or not is_plain_name(first.name):
                raise CannotVerify("not a tardist tarball: it does not start with its top folder")
            try:
                member = tar.getmember(f"{first.name}/gitinfo.json")
            except KeyError:
                raise CannotVerify("not a tardist tarball: no gitinfo.json in its top folder") from None
            handle = tar.extractfile(member) if member.isfile() and member.size < 1 << 16 else None
            raw = handle.read() if handle else b""
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CannotVerify(f"not a readable .tar.gz: {exc}") from None
    try:
        info = json.loads(raw)
    except ValueError:
        raise CannotVerify("gitinfo.json is not JSON") from None
    if not isinstance(info, dict):
        raise CannotVerify("gitinfo.json is not a JSON object")
    commit, branch, url = info.get("headSHA1"), info.get("branch"), info.get("remoteURL", "")
    if not isinstance(commit, str) or not SHA_RE.fullmatch(commit):
        raise CannotVerify(f"gitinfo.json: headSHA1 is not a commit id: {str(commit)[:100]!r}")
    if not isinstance(branch, str) or not BRANCH_RE.fullmatch(branch):
        raise CannotVerify(f"gitinfo.json: branch is not a plain branch name: {str(branch)[:100]!r}")
    if not isinstance(url, str) or url.startswith("-") or any(ord(c) < 32 for c in url):
        raise CannotVerify(f"gitinfo.json: remoteURL is not a URL: {str(url)[:100]!r}")
    return GitInfo(first.name, branch, commit, url)


def _rebuild(settings: Settings, info: GitInfo, url: str, protocols: tuple[str, ...], dest: Path) -> str | None:
    """Build the tarball of info's commit into dest as a sync would. None when all of it was rebuilt; else
    why vendor/ was not (it is then left out).

    vendor/ is rebuilt only from a composer.lock the commit holds: the download's own lock names where its
    packages came from, and installing from it would reproduce whatever a forger put there.
    """
    config = settings.git_config
    mirror = settings.mirrors / "repo.git"
    try:
        fetch_commit(mirror, url, info.commit, settings.git_timeout, protocols, config)
        committed = int(run_git(["show", "-s", "--format=%ct", info.commit], cwd=mirror, config=config).strip())
        with ObjectReader(config) as reader:
            tree = read_tree(settings, reader, mirror, url, info.commit)
            size_of, read = file_access(reader, tree)
            requirements = composer.required(size_of, read, settings.max_manifest_bytes, [])
            generated = extra_files(info.name, info.branch, info.commit, committed, info.remote_url)
            why = None
            if requirements is not None:
                why = _cannot_rebuild_vendor(settings, tree)
                if why is None:
                    try:
                        write_tarball(settings, reader, tree, requirements, generated, info.name, info.commit,
                                      committed, dest)
                        return None
                    except (ComposerError, OSError) as exc:  # no registry here, most often
                        why = readable(f"composer failed: {exc}")
            write_tarball(settings, reader, tree, None, generated, info.name, info.commit, committed, dest)
            return why
    except (GitError, TreeError, TarballWriteError) as exc:
        raise CannotVerify(str(exc)) from None
    finally:
        shutil.rmtree(settings.mirrors, ignore_errors=True)
        remove_scratch_root(settings)


def _cannot_rebuild_vendor(settings: Settings, tree: Tree) -> str | None:
    """Why composer cannot rebuild this commit's vendor/ here, or None when it can try."""
    if composer_command(settings) is None:
        return "composer is off or not installed"
    if composer.COMPOSER_LOCK not in tree.files:
        return ("the commit holds no composer.lock, so which versions composer chose when the tarball was "
                "built is known only from the tarball's own lock, which proves nothing")
    return None


def compare(download: Path, rebuilt: Path, top: str, vendor_not_rebuilt: str | None = None) -> Verdict:
    """Compare two tarballs: the sha256 of the download, and the first member that differs; with
    vendor_not_rebuilt (why), everything but vendor/ and composer.lock."""
    sha256 = _file_sha256(download)
    skip_vendor = vendor_not_rebuilt is not None
    if not skip_vendor and sha256 == _file_sha256(rebuilt):
        return Verdict(sha256)
    vendor, lock = f"{top}/{VENDOR}", f"{top}/{composer.COMPOSER_LOCK}"
    keep = ((lambda name: name not in (vendor, lock) and not name.startswith(vendor + "/")) if skip_vendor
            else (lambda name: True))
    try:
        theirs = [m for m in _members(download) if keep(m.name)]
    except (tarfile.TarError, OSError, EOFError) as exc:
        return Verdict(sha256, f"the archive is damaged: {exc}")
    ours = [m for m in _members(rebuilt) if keep(m.name)]
    verdict = Verdict(sha256, _first_difference(theirs, ours))
    if verdict.identical and not skip_vendor:
        verdict.difference = "every member is the same, but the archive's bytes are not (tar headers or gzip)"
    if skip_vendor and any(m.name.startswith(vendor + "/") for m in _members(download)):
        verdict.notes.append(f"vendor/ (and composer.lock) was not rebuilt: {vendor_not_rebuilt}; everything "
                             "outside vendor/ was compared byte for byte")
        if verdict.identical:
            verdict.difference = _installed_against_lock(download, top)
            if verdict.identical:
                verdict.notes.append("vendor/composer/installed.json lists the packages composer.lock pins")
    return verdict


def _installed_against_lock(download: Path, top: str) -> str | None:
    """Why vendor/composer/installed.json does not list what composer.lock pins (both from the download)."""
    lock = _member_bytes(download, f"{top}/{composer.COMPOSER_LOCK}", 1 << 24)
    installed = _member_bytes(download, f"{top}/{VENDOR}/composer/installed.json", 1 << 24)
    try:
        pinned = {(p["name"], p["version"]) for p in json.loads(lock or b"{}").get("packages", [])}
        listed = json.loads(installed or b"{}")
        listed = listed.get("packages", []) if isinstance(listed, dict) else listed
        present = {(p["name"], p["version"]) for p in listed}
    except (ValueError, TypeError, KeyError, AttributeError):
        return "content: composer.lock or vendor/composer/installed.json is not what composer writes"
    if pinned != present:
        odd = sorted(pinned ^ present)[0]
        return f"content: vendor/composer/installed.json and composer.lock disagree about {odd[0]} {odd[1]}"
    return None


def _member_bytes(path: Path, name: str, limit: int) -> bytes | None:
    """The content of one regular file of a tarball, if it has it and it is smaller than limit."""
    with tarfile.open(path, "r:gz") as tar:
        for info in tar:
            if info.name == name and info.isfile() and info.size < limit:
                handle = tar.extractfile(info)
                assert handle is not None
                return handle.read()
    return None


def _first_difference(theirs: list[Member], ours: list[Member]) -> str | None:
    their_names, our_names = {m.name for m in theirs}, {m.name for m in ours}
    for index in range(max(len(theirs), len(ours))):
        mine = ours[index] if index < len(ours) else None
        their = theirs[index] if index < len(theirs) else None
        if their is not None and their.name not in our_names:
            return f"added: {their.name} is not in the rebuilt tarball"
        if mine is not None and mine.name not in their_names:
            return f"missing: {mine.name} is in the rebuilt tarball only"
        assert mine is not None and their is not None
        if mine.name != their.name:
            return f"order: {their.name} comes where the rebuilt tarball has {mine.name}"
        for what, ok in (("type", mine.type == their.type), ("link target", mine.linkname == their.linkname),
                         ("content", (mine.size, mine.sha256) == (their.size, their.sha256)),
                         ("mode", mine.mode == their.mode), ("mtime", mine.mtime == their.mtime),
                         ("owner", mine.owner == their.owner)):
            if not ok:
                detail = {"mode": f" ({their.mode:o}, rebuilt {mine.mode:o})",
                          "link target": f" ({their.linkname!r}, rebuilt {mine.linkname!r})",
                          "mtime": f" ({_when(their.mtime)}, rebuilt {_when(mine.mtime)}: the commit's date)",
                          }.get(what, "")
                return f"{what}: {their.name}{detail}"
    return None


def _when(stamp: int) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _members(path: Path) -> list[Member]:
    members = []
    with tarfile.open(path, "r:gz") as tar:
        for info in tar:
            digest = hashlib.sha256()
            if info.isfile():
                handle = tar.extractfile(info)
                assert handle is not None
                _hash_into(digest, handle)
            members.append(Member(info.name, info.type, info.mode, info.linkname, info.size if info.isfile() else 0,
                                  digest.hexdigest(), int(info.mtime), (info.uid, info.gid, info.uname, info.gname)))
    return members


def _hash_into(digest, handle: BinaryIO) -> None:
    while chunk := handle.read(CHUNK):
        digest.update(chunk)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        _hash_into(digest, handle)
    return digest.hexdigest()
