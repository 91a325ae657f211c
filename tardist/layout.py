"""Names and places on disk, in one place: what a tarball is called, which names are safe, where
each file lives under mirrors/, tarballs/, published/ and instance/, and how a file is written
atomically. Flask-free: both processes import it.

    instance/tardist.sqlite3                 the database (setting `database`)
    instance/tardist.sqlite3.lock            held by a full sync, gc, init-db, publish
    instance/tardist.sqlite3.publish-lock    held while published/ is written
    instance/tardist.queue.sqlite3           requests for `tardist worker`
    instance/locks/<kind>/<Name>.lock        held while one repository syncs
    mirrors/<kind>/<Name>.git                bare mirror of one repository
    mirrors/_modules/<base>-<hash>.git       shared mirror of a submodule URL (+ .lock beside it)
    mirrors/_composer/cache, home            composer's download cache and default COMPOSER_HOME
    tarballs/<kind>/<Name>-<branch>-<sha7>.tar.gz
    published/...                            the static API (worker.publish.PUBLISHED)
    $TMPDIR/tardist-build-<hash>/<pid>-...   scratch folders of composer builds
    .tmp-<name>[.<pid>]                      anything being written or removed; never a final name
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

if TYPE_CHECKING:
    from tardist.settings import Settings

TEMP_PREFIX = ".tmp-"  # what is being made or removed; never a final name
MODULES_FOLDER = "_modules"  # mirrors/_modules/: submodule mirrors, shared by every repository
COMPOSER_FOLDER = "_composer"  # mirrors/_composer/: composer's cache and default home
TARBALL_SUFFIX = ".tar.gz"

KIND_PATTERN = r"[a-z][a-z0-9]{0,31}"
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"
BRANCH_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.]{0,99}"  # no '-': Foo + a-b and Foo-a + b would clash
KIND_RE = re.compile(rf"^{KIND_PATTERN}$")
NAME_RE = re.compile(rf"^{NAME_PATTERN}$")
BRANCH_RE = re.compile(rf"^{BRANCH_PATTERN}$")
# <Name>-<branch>-<sha7>.tar.gz; names may hold '-', branches may not.
TARBALL_FILE_RE = re.compile(rf"(?P<name>{NAME_PATTERN})-(?P<branch>{BRANCH_PATTERN})-(?P<sha7>[0-9a-f]{{7}})"
                             + re.escape(TARBALL_SUFFIX))
# /<kind>/<file>, as a tarball's path below the tarball URL
TARBALL_PATH_RE = re.compile(rf"/(?P<kind>{KIND_PATTERN})/{TARBALL_FILE_RE.pattern}")


def is_plain_name(name: str) -> bool:
    """True when name is safe as a repository name and a file-name component."""
    return bool(NAME_RE.fullmatch(name)) and ".." not in name and not name.endswith((".git", "."))


def is_kind(kind: str) -> bool:
    """True when kind is a lower-case word usable as a folder name."""
    return bool(KIND_RE.fullmatch(kind))


def is_branch_name(branch: str) -> bool:
    """True when branch is a plain branch name usable in a tarball file name."""
    return bool(BRANCH_RE.fullmatch(branch)) and ".." not in branch and not branch.endswith(".lock")


class TarballName(NamedTuple):
    """What a tarball file name says: repository, branch and the first 7 hex digits of the commit."""

    name: str
    branch: str
    sha7: str


def tarball_name(name: str, branch: str, commit: str) -> str:
    """`<Name>-<branch>-<sha7>.tar.gz`, the name ExtensionDistributor computes on its own."""
    return f"{name}-{branch}-{commit[:7]}{TARBALL_SUFFIX}"


def parse_tarball_name(file: str) -> TarballName | None:
    """The parts of a tarball file name, or None when file is not one tardist would make."""
    match = TARBALL_FILE_RE.fullmatch(file)
    if match is None or not is_plain_name(match["name"]):
        return None
    return TarballName(match["name"], match["branch"], match["sha7"])


def is_tarball_file(file: str) -> bool:
    """True when file may name a tarball: ends in .tar.gz, is no hidden or temporary file, fits a file name."""
    return file.endswith(TARBALL_SUFFIX) and not file.startswith(".") and len(file) <= 255


def mirror_path(settings: Settings, kind: str, name: str) -> Path:
    """`mirrors/<kind>/<Name>.git`."""
    return settings.mirrors / kind / f"{name}.git"


def module_mirror_path(mirrors: Path, url: str) -> Path:
    """`mirrors/_modules/<base>-<hash>.git`, the shared mirror of a submodule URL."""
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))[:40]
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return mirrors / MODULES_FOLDER / f"{base or 'module'}-{digest}.git"


def module_lock_path(module_mirror: Path) -> Path:
    """The lock file held while a submodule mirror is fetched into or removed."""
    return module_mirror.with_name(module_mirror.name + ".lock")


def composer_cache(settings: Settings) -> Path:
    """`mirrors/_composer/cache`: composer's download cache, shared by every build."""
    return settings.mirrors / COMPOSER_FOLDER / "cache"


def default_composer_home(mirrors: Path) -> Path:
    """`mirrors/_composer/home`: COMPOSER_HOME when the setting composer_home is empty."""
    return mirrors / COMPOSER_FOLDER / "home"


def tarball_path(settings: Settings, kind: str, file: str) -> Path:
    """`tarballs/<kind>/<file>`."""
    return settings.tarballs / kind / file


def sync_lock_file(database: Path) -> Path:
    """The file a full sync (and gc, init-db, publish) holds locked while it runs."""
    return database.with_name(database.name + ".lock")


def publish_lock_file(settings: Settings) -> Path:
    """The file held locked while published/ is written: publishes take turns."""
    return settings.database.with_name(settings.database.name + ".publish-lock")


def queue_file(database: Path) -> Path:
    """The SQLite file of requests the web app and the command line leave for `tardist worker`."""
    return database.with_name(database.stem + ".queue.sqlite3")


def locks_folder(database: Path) -> Path:
    """The folder of per-repository lock files, locks/<kind>/<Name>.lock."""
    return database.with_name("locks")


def repo_lock_path(settings: Settings, kind: str, name: str) -> Path:
    """`locks/<kind>/<Name>.lock`: held while the repository syncs, by whichever process syncs it."""
    return settings.locks / kind / f"{name}.lock"


def scratch_root(settings: Settings) -> Path:
    """The folder of this deployment's scratch folders (one per build), outside everything tardist keeps."""
    digest = hashlib.sha256(str(settings.database).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"tardist-build-{digest}"


def stats_export_file(folder: Path, day: str) -> Path:
    """`tardist-requests-<day>.jsonl.gz`, one day of anonymised tarball requests."""
    return folder / f"tardist-requests-{day}.jsonl.gz"


def temporary_twin(path: Path) -> Path:
    """`.tmp-<name>.<pid>` beside path: where this process writes path before renaming it into place."""
    return path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}")


def fsync_dir(path: Path) -> None:
    """fsync a folder, so the renames and removals in it survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: Path, mode: int | None = None, sync_folder: bool = True) -> Iterator[BinaryIO]:
    """Write path whole or not at all: into a temporary twin in the same folder, fsynced, renamed over path.

    ``mode`` sets the file's permissions (else the umask's); ``sync_folder=False`` leaves the fsync of
    the folder, which makes the rename itself survive a crash, to a caller that writes many files.
    On any error the temporary file is removed and path is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temporary_twin(path)
    try:
        with open(temp, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        if mode is not None:
            os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        try:
            temp.unlink(missing_ok=True)
        except OSError:
            pass  # never made: nothing to discard
        raise
    if sync_folder:
        fsync_dir(path.parent)
