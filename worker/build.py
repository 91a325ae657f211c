"""One branch's build: read its tree and manifest, vendor composer packages, write its tarball.

Failures become a failed BranchRecord with a readable message; nothing here touches the database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tardist.layout import tarball_name, tarball_path
from tardist.records import BranchRecord
from tardist.settings import Settings
from tardist.timestamps import utc_iso
from worker import composer
from worker.composer_install import ComposerError
from worker.git import GitError, ObjectReader, run_git
from worker.manifest import read_manifest
from worker.sources import Repo
from worker.tarball import Built, TarballWriteError, build_tarball, extra_files, place_extras
from worker.tree import Tree, TreeError, read_tree

log = logging.getLogger("tardist.sync")
MAX_MESSAGES = 100  # manifest errors or warnings kept per branch: a hostile repository can make millions


def build_branch(settings: Settings, reader: ObjectReader, repo: Repo, mirror: Path,
                 branch: str, commit: str, reuse: dict | None = None) -> BranchRecord:
    """Build and write the tarball of one branch head; failures become a failed record.

    With ``reuse`` (the recorded tarball of this commit, still on disk) the manifest
    and warnings are read again but the tarball is not rebuilt.
    """
    try:
        committed = int(run_git(["show", "-s", "--format=%ct", commit], cwd=mirror,
                                config=settings.git_config).strip())
        tree = read_tree(settings, reader, mirror, repo.url, commit)
        size_of, read = file_access(reader, tree)
        manifest = read_manifest(repo.kind, size_of, read, settings.max_manifest_bytes, files=tree.files)
        requirements = composer.required(size_of, read, settings.max_manifest_bytes, manifest.errors)
        # remoteURL is what people may be shown: never a directory source's path on this server.
        generated = extra_files(repo.name, branch, commit, committed, repo.public_url or "")
        if reuse:
            built = Built(reuse["file"], reuse["size"], reuse["sha256"])
            vendored = composer.Vendored(tree, packages=json.loads(reuse.get("vendor") or "[]"))
            extras, extra_warnings = place_extras(tree, generated)
        else:
            dest = tarball_path(settings, repo.kind, tarball_name(repo.name, branch, commit))
            built, vendored, extra_warnings = write_tarball(settings, reader, tree, requirements, generated,
                                                            repo.name, commit, committed, dest)
    except (GitError, TreeError, TarballWriteError, ComposerError) as exc:
        return BranchRecord(branch, commit, "failed", error=readable(str(exc)))
    except Exception as exc:  # a bug or a broken mirror must cost this branch only
        log.exception("unexpected error building %s/%s %s", repo.kind, repo.name, branch)
        return BranchRecord(branch, commit, "failed", error=readable(f"internal error: {exc!r}"))
    return BranchRecord(
        branch, commit, "reused" if reuse else "built", built_at=reuse["built_at"] if reuse else "",
        committed_at=utc_iso(datetime.fromtimestamp(committed, UTC)),
        tarball=built.file, size=built.size, sha256=built.sha256,
        manifest=manifest.fields, manifest_errors=shown(manifest.errors),
        warnings=shown(extra_warnings + tree.warnings + vendored.warnings), modules=sorted(tree.modules),
        descriptions=manifest.descriptions, vendor=vendored.packages)


def file_access(reader: ObjectReader, tree: Tree) -> tuple[Callable[[str], int | None], Callable[[str], bytes]]:
    """size_of and read of a tree's files by path, for the manifest and composer.json readers."""
    def size_of(path: str) -> int | None:
        blob = tree.files.get(path)
        return blob.size if blob else None

    def read(path: str) -> bytes:
        return reader.read(tree.files[path].mirror, tree.files[path].sha)

    return size_of, read


def write_tarball(settings: Settings, reader: ObjectReader, tree: Tree, requirements: dict[str, Any] | None,
                  generated: dict[str, bytes], name: str, commit: str, committed: int,
                  dest: Path) -> tuple[Built, composer.Vendored, list[str]]:
    """Pack a tree as every build does: composer's vendor/ when requirements ask for packages, tardist's
    own files placed, the tarball written to dest."""
    with composer.vendor_tree(settings, reader, tree, requirements, commit) as vendored:
        extras, warnings = place_extras(vendored.tree, generated)
        built = build_tarball(reader, vendored.tree, {**extras, **vendored.files}, name, committed, dest)
    return built, vendored, warnings


def shown(messages: list[str]) -> list[str]:
    """Messages as recorded and served: readable, and no more than MAX_MESSAGES of them."""
    kept = [readable(message) for message in messages[:MAX_MESSAGES]]
    if len(messages) > MAX_MESSAGES:
        kept.append(f"... and {len(messages) - MAX_MESSAGES} more")
    return kept


def readable(text: str) -> str:
    """Text that SQLite and JSON can hold: bytes of file names that are not UTF-8 shown as \\xNN."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that did not come from a file name (a JSON escape)
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")
