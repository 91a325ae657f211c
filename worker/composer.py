"""The composer build step: a branch whose composer.json requires packages ships them in vendor/, as extdist did.

composer runs on a copy of the branch's files in a scratch folder of its own, in the
build sandbox (`worker.composer_install`), with scripts and plugins off; only vendor/ and
composer.lock come back into the tarball. What the branch's composer files may ask for is
checked before composer runs and again before anything is packed (`worker.composer_policy`).
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tardist.layout import scratch_root
from tardist.settings import Settings
from worker.composer_install import ComposerError, composer_command, install
from worker.composer_policy import operator_folders, refused_in_json, refused_in_lock
from worker.git import ObjectReader
from worker.manifest import load_json
from worker.tree import Tree

COMPOSER_JSON, COMPOSER_LOCK, VENDOR = "composer.json", "composer.lock", "vendor"
# Root composer.json settings kept in the scratch copy; the others name folders (vendor-dir,
# cache-dir, ...) that would let a repository make composer write outside its scratch folder.
KEPT_CONFIG = ("platform", "optimize-autoloader", "classmap-authoritative", "apcu-autoloader",
               "prepend-autoloader", "platform-check", "preferred-install", "sort-packages")
@dataclass
class Vendored:
    """What a branch's tarball holds once composer has run: the tree and the files it added."""

    tree: Tree
    files: dict[str, Path] = field(default_factory=dict)  # path below the top folder -> built file
    packages: list[dict[str, str]] = field(default_factory=list)  # {"name", "version"}, sorted by name
    warnings: list[str] = field(default_factory=list)  # what the step left out or could not do


def required(size_of: Callable[[str], int | None], read: Callable[[str], bytes], max_bytes: int,
             errors: list[str]) -> dict[str, Any] | None:
    """The branch's composer.json when its `require` is not empty, else None; problems go to errors."""
    if size_of(COMPOSER_JSON) is None:
        return None
    document, error = load_json(COMPOSER_JSON, size_of, read, max_bytes)
    if error:
        errors.append(error)
        return None
    if not isinstance(document, dict):
        errors.append(f"{COMPOSER_JSON}: expected a JSON object")
        return None
    requires = document.get("require")
    if requires is not None and not isinstance(requires, dict):
        errors.append(f"{COMPOSER_JSON}: require: expected an object")
        return None
    return document if requires else None


@contextmanager
def vendor_tree(settings: Settings, reader: ObjectReader, tree: Tree, document: dict[str, Any] | None,
                commit: str) -> Iterator[Vendored]:
    """Run composer on the branch's files when document requires packages; yield what to pack.

    The built files live in the scratch folder, which is removed when the block ends.
    Without a document (or with the step off) the tree comes back unchanged.
    """
    if document is None:
        yield Vendored(tree)
        return
    command = composer_command(settings)
    if command is None:
        yield Vendored(tree, warnings=[f"{COMPOSER_JSON} requires packages, but composer is off or "
                                       "not installed: built without vendor/"])
        return
    folders = operator_folders(settings.composer_home)
    _refuse(refused_in_json(document) + refused_in_lock(_committed_lock(reader, tree, settings), COMPOSER_LOCK,
                                                         folders))
    root = scratch_root(settings)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=root, prefix=f"{os.getpid()}-{commit[:12]}-"))  # pid: see remove_stale_scratch
    try:
        source = scratch / "src"
        _write_files(reader, tree, source)
        _write_composer_json(source / COMPOSER_JSON, document, commit)
        install(settings, command, scratch)
        _refuse_installed(settings, source, folders)
        yield _collect(settings, tree, source, [])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _refuse(refused: list[str]) -> None:
    """Fail the branch with what was refused, when anything was."""
    if refused:
        more = f" (and {len(refused) - 3} more)" if len(refused) > 3 else ""
        raise ComposerError(f"composer: refused {'; '.join(refused[:3])}{more}: nothing of the build host "
                            "may reach a tarball")


def _committed_lock(reader: ObjectReader, tree: Tree, settings: Settings) -> Any:
    """The branch's own composer.lock, which composer installs from whatever composer.json says."""
    blob = tree.files.get(COMPOSER_LOCK)
    if blob is None:
        return None
    document, error = load_json(COMPOSER_LOCK, lambda path: blob.size, lambda path: reader.read(blob.mirror, blob.sha),
                                settings.max_manifest_bytes * 16)
    if error:
        raise ComposerError(f"composer: {error}")
    return document


def _refuse_installed(settings: Settings, source: Path, folders: list[Path]) -> None:
    """Check what composer installed, as it wrote it down: a registry the branch names can offer any dist."""
    for name, path in ((COMPOSER_LOCK, source / COMPOSER_LOCK),
                       ("vendor/composer/installed.json", source / VENDOR / "composer" / "installed.json")):
        if not path.is_file() or path.is_symlink():
            continue
        document, error = load_json(name, lambda _, path=path: path.stat().st_size,
                                    lambda _, path=path: path.read_bytes(), settings.max_manifest_bytes * 16)
        if error:
            raise ComposerError(f"composer: {error}")
        _refuse(refused_in_lock(document, name, folders))


def _write_files(reader: ObjectReader, tree: Tree, source: Path) -> None:
    """The branch's files as they go into the tarball (tree paths are checked: no '..', no '.git')."""
    for path, blob in tree.files.items():
        target = source / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(reader.read(blob.mirror, blob.sha))
        if blob.mode == "100755":
            target.chmod(0o755)


def _write_composer_json(path: Path, document: dict[str, Any], commit: str) -> None:
    """The scratch copy of composer.json: no require-dev, no folder settings, a fixed autoloader suffix."""
    copy = {key: value for key, value in document.items() if key not in ("require-dev", "autoload-dev", "scripts")}
    config = document.get("config") if isinstance(document.get("config"), dict) else {}
    # The suffix names the autoloader's classes; composer picks a random one otherwise.
    copy["config"] = {**{key: config[key] for key in KEPT_CONFIG if key in config}, "autoloader-suffix": commit}
    path.write_text(json.dumps(copy, indent=4))


def _collect(settings: Settings, tree: Tree, source: Path, warnings: list[str]) -> Vendored:
    """vendor/ and composer.lock from the scratch folder, in place of any the branch has."""
    kept = {path: blob for path, blob in tree.files.items()
            if path != COMPOSER_LOCK and not path.startswith(f"{VENDOR}/")}
    result = Tree(files=kept, dirs=set(), warnings=list(tree.warnings))
    for path in kept:
        _add_parents(result.dirs, path)
    result.dirs.add("")
    files: dict[str, Path] = {}
    total = sum(blob.size for blob in kept.values())
    lock = source / COMPOSER_LOCK
    if lock.is_file() and not lock.is_symlink():
        files[COMPOSER_LOCK] = lock
        total += lock.stat().st_size
    for folder, dirnames, filenames in os.walk(source / VENDOR):
        relative = Path(folder).relative_to(source).as_posix()
        result.dirs.add(relative)
        for name in sorted(dirnames):
            if (Path(folder) / name).is_symlink():  # os.walk lists links to folders but does not enter them
                warnings.append(f"left out symlink {relative}/{name}: a link to a folder")
        for name in filenames:
            path, on_disk = f"{relative}/{name}", Path(folder) / name
            target = _regular_file(on_disk, source)
            if target is None:
                warnings.append(f"left out {path}: not a regular file inside the tree")
                continue
            files[path] = target
            total += target.stat().st_size
            if len(kept) + len(files) > settings.max_files:
                raise ComposerError(f"composer: more than {settings.max_files} files with vendor/ (max_files)")
            if total > settings.max_tarball_bytes:
                raise ComposerError(f"composer: content with vendor/ larger than {settings.max_tarball_bytes} "
                                    "bytes (max_tarball_bytes)")
    result.total_bytes = total
    return Vendored(result, files, _packages(source, settings.max_manifest_bytes), warnings)


def _add_parents(dirs: set[str], path: str) -> None:
    parent = posixpath.dirname(path)
    while parent and parent not in dirs:
        dirs.add(parent)
        parent = posixpath.dirname(parent)


def _regular_file(path: Path, source: Path) -> Path | None:
    """path, or the file a symlink there points at inside source; None for anything else."""
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(source.resolve()) or not real.is_file():
        return None
    return real


def _packages(source: Path, max_bytes: int) -> list[dict[str, str]]:
    """(name, version) of every installed package, from vendor/composer/installed.json."""
    installed = source / VENDOR / "composer" / "installed.json"

    def size_of(path: str) -> int | None:
        return installed.stat().st_size if installed.is_file() else None

    document, error = load_json("installed.json", size_of, lambda path: installed.read_bytes(), max_bytes * 16)
    if error:
        return []
    packages = document.get("packages") if isinstance(document, dict) else document  # composer 2, composer 1
    found = [{"name": str(package.get("name")), "version": str(package.get("version"))}
             for package in packages or [] if isinstance(package, dict)]
    return sorted(found, key=lambda package: package["name"])
