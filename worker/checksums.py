"""Signed checksum files: per kind, the sha256 of every tarball served, and an SSH signature of that list.

published/checksums/<kind>/<version>/SHA256SUMS   `<sha256>  <file>` lines (what `sha256sum -c` reads) of
                                                   every tarball the database lists (current and retained)
published/checksums/<kind>/<version>/SHA256SUMS.sig  `ssh-keygen -Y sign -n file` of SHA256SUMS
published/checksums/<kind>/current -> <version>   a symbolic link: the newest version
published/checksums/allowed_signers               what `ssh-keygen -Y verify -f` reads (rotated keys with valid-before)
published/checksums/signing-key.pub               the public half of the `signing_key` setting

A version folder is never changed once it has its name (the first 16 hex digits of the sha256 of
the list and the public key), so a reader who fetches a version's two files always gets a pair
that belongs together, even while the worker writes the next version. A version is made in a
.tmp- folder and renamed into place; then `current` is switched by renaming a new link over it.
Nothing is written while the tarballs (and the key) stay the same. Old versions stay for
KEEP_OLD_SECONDS, so commands copied from a page a while ago still find both files.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import sqlite_utils

from tardist.layout import TEMP_PREFIX, atomic_write, fsync_dir
from tardist.schema import write_transaction
from tardist.settings import Settings

FOLDER = "checksums"
SUMS, SIGNATURE = "SHA256SUMS", "SHA256SUMS.sig"
ALLOWED_SIGNERS, PUBLIC_KEY = "allowed_signers", "signing-key.pub"
CURRENT = "current"
NAMESPACE = "file"  # ssh-keygen's own convention for signed files
PRINCIPAL = "tardist"  # the identity `ssh-keygen -Y verify -I` names
KEEP_OLD_SECONDS = 24 * 3600
SIGN_TIMEOUT = 60
VERSION_RE = re.compile(r"^[0-9a-f]{16}$")


class SigningError(OSError):
    """The checksum file could not be signed (key missing, unreadable or with open permissions).

    An OSError, as a file that cannot be read is: what publishes treats it as a failed publish
    (a warning of the run, every file checked again next time), not as the end of a sync.
    """


def checksum_lines(conn: sqlite3.Connection, kind: str) -> bytes:
    """The SHA256SUMS of a kind: every tarball the database lists, sorted by file name."""
    rows = conn.execute("SELECT file, sha256 FROM tarballs WHERE kind = ? AND sha256 IS NOT NULL ORDER BY file",
                        [kind]).fetchall()
    return "".join(f"{sha256}  {file}\n" for file, sha256 in rows).encode()


def run_ssh_keygen(args: list[str], data: bytes = b"") -> bytes:
    """The one door to ssh-keygen: input on stdin, a timeout, its own error line as the error."""
    try:
        done = subprocess.run(["ssh-keygen", *args], input=data, capture_output=True, timeout=SIGN_TIMEOUT,
                              start_new_session=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SigningError(f"ssh-keygen {args[0]}: {exc}") from None
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise SigningError(f"ssh-keygen {' '.join(args[:2])}: {lines[-1] if lines else f'exit {done.returncode}'}")
    return done.stdout


def public_key(settings: Settings) -> str:
    """The public key of the signing_key setting, as one `type base64` line; "" when signing is off
    (then no checksum file is written)."""
    if not settings.signing_key:
        return ""
    words = run_ssh_keygen(["-y", "-f", str(settings.signing_key)]).decode().split()
    return " ".join(words[:2])


def allowed_signers(settings: Settings, current_key: str) -> str:
    """The allowed_signers file: the current key, then each retired key valid only before its date."""
    lines = [f'{PRINCIPAL} namespaces="{NAMESPACE}" {current_key}']
    for valid_before, key in settings.retired_signing_keys:
        lines.append(f'{PRINCIPAL} namespaces="{NAMESPACE}",valid-before="{valid_before}" {key}')
    return "".join(line + "\n" for line in lines)


def sign(settings: Settings, data: bytes) -> bytes:
    """An SSH signature of data with the signing key, in the namespace `file`."""
    return run_ssh_keygen(["-Y", "sign", "-q", "-f", str(settings.signing_key), "-n", NAMESPACE], data)


def write_checksums(settings: Settings, db: sqlite_utils.Database) -> dict[str, int]:
    """Bring published/checksums/ up to date with the tarballs the database lists; report versions written.

    Call while holding the publish lock. The version of each kind and the allowed_signers
    text are recorded in the meta table, for the pages.
    """
    report = {"versions": 0, "removed": 0}
    if settings.published is None:
        return report
    root = settings.published / FOLDER
    key = public_key(settings)
    if not key:  # a list anyone could have written proves nothing an edge could not forge
        if root.exists():
            shutil.rmtree(root)
        _record(db, {}, "")
        return report
    signers = allowed_signers(settings, key)
    conn = db.conn
    kinds = [row[0] for row in conn.execute("SELECT DISTINCT kind FROM tarballs ORDER BY kind")]
    versions: dict[str, str] = {}
    for kind in kinds:
        sums = checksum_lines(conn, kind)
        version = hashlib.sha256(sums + b"\n" + key.encode()).hexdigest()[:16]
        versions[kind] = version
        folder = root / kind
        _clear_leftovers(folder)
        if not (folder / version).is_dir():
            _write_version(settings, folder, version, sums)
            report["versions"] += 1
        _point_current(folder, version)
        report["removed"] += _remove_old_versions(folder, version)
    for gone in sorted(root.iterdir()) if root.is_dir() else []:
        if gone.is_dir() and gone.name not in versions:  # a kind without tarballs any more
            shutil.rmtree(gone)
    _write_small(root / ALLOWED_SIGNERS, signers.encode())
    _write_small(root / PUBLIC_KEY, f"{key} {PRINCIPAL}\n".encode())
    _record(db, versions, signers)
    return report


def _write_version(settings: Settings, folder: Path, version: str, sums: bytes) -> None:
    """Write a version's files into a .tmp- folder, then rename the folder into place: both appear at once."""
    temp = folder / f"{TEMP_PREFIX}{version}.{os.getpid()}"
    temp.mkdir(parents=True)
    try:
        _write_file(temp / SUMS, sums)
        _write_file(temp / SIGNATURE, sign(settings, sums))
        fsync_dir(temp)
        os.rename(temp, folder / version)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    fsync_dir(folder)


def _point_current(folder: Path, version: str) -> None:
    """Switch `current` to version by renaming a new link over it (readers see the old or the new one)."""
    link = folder / CURRENT
    if link.is_symlink() and os.readlink(link) == version:
        return
    os.utime(folder / version)  # current again (tarballs added, then removed): kept KEEP_OLD_SECONDS from now
    temp = folder / f"{TEMP_PREFIX}{CURRENT}.{os.getpid()}"
    temp.unlink(missing_ok=True)
    os.symlink(version, temp)
    os.replace(temp, link)
    fsync_dir(folder)


def _remove_old_versions(folder: Path, current: str) -> int:
    """Remove the versions that are not current and older than KEEP_OLD_SECONDS."""
    removed = 0
    cutoff = time.time() - KEEP_OLD_SECONDS
    for path in folder.iterdir():
        if VERSION_RE.fullmatch(path.name) and path.name != current and path.stat().st_mtime < cutoff:
            shutil.rmtree(path)
            removed += 1
    return removed


def _clear_leftovers(folder: Path) -> None:
    """Remove what a killed publish left half made (publishes take turns: none is being written now)."""
    for path in folder.glob(f"{TEMP_PREFIX}*") if folder.is_dir() else []:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _write_small(path: Path, data: bytes) -> None:
    """Write a file atomically unless it holds data already."""
    if path.is_file() and path.read_bytes() == data:
        return
    with atomic_write(path) as out:
        out.write(data)


def _record(db: sqlite_utils.Database, versions: dict[str, str], signers: str) -> None:
    """Record what the pages show (the current version per kind, allowed_signers) when it changed."""
    wanted = {f"checksums:{kind}": version for kind, version in versions.items()}
    if signers:
        wanted["allowed_signers"] = signers
    stored = dict(db.execute("SELECT key, value FROM meta WHERE key LIKE 'checksums:%' "
                             "OR key = 'allowed_signers'").fetchall())
    if stored == wanted:
        return
    with write_transaction(db):
        db.execute("DELETE FROM meta WHERE key LIKE 'checksums:%' OR key = 'allowed_signers'")
        db["meta"].insert_all([{"key": k, "value": v} for k, v in wanted.items()], pk="key")


def checksums_path(settings: Settings, path: Path) -> bool:
    """True when path (a file under published/) belongs to the checksum files, which publish leaves alone."""
    assert settings.published is not None
    return path.is_relative_to(settings.published / FOLDER)
