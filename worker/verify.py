"""`tardist verify`: rebuild a tarball from git with tardist's own code and compare it with a download.

The tarball's gitinfo.json names the clone URL, the branch and the commit. That commit is
fetched into a temporary mirror with the rules a sync follows (tardist's git environment,
the allowed transports of `submodule_protocols` for a URL the tarball gave), packed as a sync
packs it, and compared (`worker.tarball_compare`).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from tardist.layout import BRANCH_RE, is_plain_name
from tardist.settings import PROTOCOLS, Settings
from worker import composer
from worker.build import file_access, readable, write_tarball
from worker.composer_install import ComposerError, composer_command, remove_scratch_root
from worker.git import GitError, ObjectReader, run_git
from worker.mirror import fetch_commit
from worker.tarball import TarballWriteError, extra_files
from worker.tarball_compare import CHUNK, Verdict, compare, file_sha256
from worker.tree import Tree, TreeError, read_tree

SHA_RE = re.compile(r"^[0-9a-f]{40}$")


class CannotVerify(Exception):
    """The tarball could not be rebuilt (not a tardist tarball, no network, an unknown commit)."""


@dataclass(frozen=True)
class GitInfo:
    """What a tarball says it was built from."""

    name: str
    branch: str
    commit: str
    remote_url: str


def verify(settings: Settings, target: str, source: str | None = None) -> Verdict:
    """Rebuild the tarball at target (a file or an http(s) URL) and compare; CannotVerify when it cannot."""
    with tempfile.TemporaryDirectory(prefix="tardist-verify-") as folder:
        scratch = Path(folder)
        download = fetch_tarball(settings, target, scratch / "download.tar.gz")
        # content, plus headers and padding: generous per file (pax headers of long names), folders too
        damage = gzip_damage(download, settings.max_tarball_bytes + 8192 * (settings.max_files + 16))
        if damage:  # tardist writes whole gzip streams: this one was changed or cut on the way
            return Verdict(file_sha256(download), f"the archive is damaged: {damage}")
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
