"""Writing reproducible tarballs, atomically (into tarballs/; publishing means published/, worker.publish).

Same commit in, same bytes out: entries sorted, every mtime the commit date,
owner 0/0 with no names, no timestamp or file name in the gzip header.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tardist.layout import TEMP_PREFIX, atomic_write
from tardist.timestamps import utc_iso
from worker.git import ObjectReader
from worker.lock import process_alive
from worker.tree import Blob, Tree


class TarballWriteError(Exception):
    """The tarball could not be written (disk full, permissions, ...)."""


@dataclass(frozen=True)
class Built:
    """A tarball written to tarballs/: its file name, size and SHA-256."""

    file: str
    size: int
    sha256: str


def extra_files(name: str, branch: str, commit: str, committed: int, remote_url: str) -> dict[str, bytes]:
    """The gitinfo.json and version files extdist put at the top of every tarball."""
    date = utc_iso(datetime.fromtimestamp(committed, UTC))
    gitinfo = {"head": f"refs/heads/{branch}", "headSHA1": commit, "headCommitDate": str(committed),
               "branch": branch, "remoteURL": remote_url}
    return {
        "gitinfo.json": json.dumps(gitinfo, indent=1).encode() + b"\n",
        "version": f"{name}: {branch}\n{date}\n{commit[:7]}\n".encode(),
    }


def place_extras(tree: Tree, extras: dict[str, bytes]) -> tuple[dict[str, bytes], list[str]]:
    """The generated files to pack with tree, and a warning for each one that replaces or yields a path.

    tardist's files win over a repository's own, as extdist's did. A folder of the same name
    wins over a generated file: packing both would give a tarball that does not unpack.
    """
    kept: dict[str, bytes] = {}
    warnings = []
    for path, data in extras.items():
        if path in tree.dirs:
            warnings.append(f"left out tardist's {path} file: the repository has a folder {path}/")
            continue
        if path in tree.files:
            warnings.append(f"replaced the repository's {path} with tardist's")
        kept[path] = data
    return kept, warnings


class _HashingWriter(io.RawIOBase):
    """A file wrapper that hashes and counts what passes through it."""

    def __init__(self, raw: io.BufferedWriter) -> None:
        self.raw, self.sha256, self.size = raw, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self.raw.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)


def build_tarball(reader: ObjectReader, tree: Tree, extras: dict[str, bytes | Path], top: str,
                  mtime: int, dest: Path) -> Built:
    """Write tree (plus extras: bytes, or built files read from disk) as `top/...` into dest, atomically."""
    try:
        with atomic_write(dest) as raw:
            hashing = _HashingWriter(raw)
            with gzip.GzipFile(filename="", mode="wb", fileobj=hashing, mtime=0, compresslevel=6) as gz:
                with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    _write_entries(tar, reader, tree, extras, top, mtime)
    except OSError as exc:
        raise TarballWriteError(f"cannot write {dest.name}: {exc.strerror or exc}") from None
    return Built(dest.name, hashing.size, hashing.sha256.hexdigest())


def _write_entries(tar: tarfile.TarFile, reader: ObjectReader, tree: Tree, extras: dict[str, bytes | Path],
                   top: str, mtime: int) -> None:
    files: dict[str, Blob | bytes | Path] = {**tree.files, **extras}
    dirs = tree.dirs | {""}
    for path in sorted(dirs | files.keys()):
        info = tarfile.TarInfo(f"{top}/{path}" if path else top)
        info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "", ""
        if path in files:
            item = files[path]
            if isinstance(item, Path):  # built (vendor/): streamed, it can be hundreds of MB
                with open(item, "rb") as handle:
                    stat = os.fstat(handle.fileno())
                    info.mode, info.size = (0o755 if stat.st_mode & 0o100 else 0o644), stat.st_size
                    tar.addfile(info, handle)
                continue
            data = item if isinstance(item, bytes) else reader.read(item.mirror, item.sha)
            executable = isinstance(item, Blob) and item.mode == "100755"
            info.mode, info.size = (0o755 if executable else 0o644), len(data)
            tar.addfile(info, io.BytesIO(data))
        else:
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporary files killed processes left behind; those of living processes are being written."""
    removed = 0
    if folder.is_dir():
        for kind_dir in folder.iterdir():
            if kind_dir.is_dir():
                for temp in kind_dir.glob(f"{TEMP_PREFIX}*"):
                    if not _writer_alive(temp):
                        temp.unlink(missing_ok=True)
                        removed += 1
    return removed


def _writer_alive(temp: Path) -> bool:
    """True when the process named by the temporary file's .<pid> suffix still runs."""
    pid = temp.suffix.lstrip(".")
    return pid.isdigit() and process_alive(int(pid))
