"""Two tarballs compared: byte for byte (their sha256), then member by member to name the first that
differs (added, missing, content, mode, link target, type, mtime, owner, order). `tardist verify` compares
a download with its rebuild."""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from worker import composer

CHUNK = 1 << 20
VENDOR = "vendor"


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


def compare(download: Path, rebuilt: Path, top: str, vendor_not_rebuilt: str | None = None) -> Verdict:
    """Compare two tarballs: the sha256 of the download, and the first member that differs; with
    vendor_not_rebuilt (why), everything but vendor/ and composer.lock."""
    sha256 = file_sha256(download)
    skip_vendor = vendor_not_rebuilt is not None
    if not skip_vendor and sha256 == file_sha256(rebuilt):
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
    lock, installed = _member_contents(download, [f"{top}/{composer.COMPOSER_LOCK}",
                                                  f"{top}/{VENDOR}/composer/installed.json"], 1 << 24)
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


def _member_contents(path: Path, names: list[str], limit: int) -> list[bytes | None]:
    """The contents of these regular files of a tarball (None for one it lacks or holds at limit bytes or more),
    read in one pass."""
    found: dict[str, bytes] = {}
    with tarfile.open(path, "r:gz") as tar:
        for info in tar:
            if info.name in names and info.isfile() and info.size < limit:
                handle = tar.extractfile(info)
                assert handle is not None
                found[info.name] = handle.read()
    return [found.get(name) for name in names]


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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        _hash_into(digest, handle)
    return digest.hexdigest()
