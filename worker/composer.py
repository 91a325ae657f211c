"""The composer build step: a branch whose composer.json requires packages ships them in vendor/, as extdist did.

composer runs on a copy of the branch's files in a scratch folder of its own, in the
build sandbox (`worker.sandbox`), with scripts and plugins off; only vendor/ and
composer.lock come back into the tarball. What the branch's composer files may ask for is
checked before composer runs and again before anything is packed (`worker.composer_policy`).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from tardist.layout import composer_cache, scratch_root
from tardist.settings import Settings
from worker.composer_policy import operator_folders, refused_in_json, refused_in_lock
from worker.lock import process_alive
from worker.manifest import load_json
from worker.mirror import ObjectReader
from worker.sandbox import Sandbox, SandboxError, find_bwrap, run_sandboxed, scrubbed_env
from worker.tree import Tree

COMPOSER_JSON, COMPOSER_LOCK, VENDOR = "composer.json", "composer.lock", "vendor"
INSTALL = ["install", "--no-dev", "--no-scripts", "--no-plugins", "--no-interaction", "--ignore-platform-reqs",
           "--prefer-dist"]
# Root composer.json settings kept in the scratch copy; the others name folders (vendor-dir,
# cache-dir, ...) that would let a repository make composer write outside its scratch folder.
KEPT_CONFIG = ("platform", "optimize-autoloader", "classmap-authoritative", "apcu-autoloader",
               "prepend-autoloader", "platform-check", "preferred-install", "sort-packages")
# Where the operator's credentials live in COMPOSER_HOME: composer gets them in COMPOSER_AUTH, never as a file.
AUTH_FILE, AUTH_KEYS = "auth.json", ("http-basic", "github-oauth", "gitlab-oauth", "gitlab-token", "bitbucket-oauth",
                                     "bearer", "forgejo-token", "client-certificate")
HIDDEN_SYSTEM = (Path("/var/log"),)


class ComposerError(Exception):
    """composer failed for a branch; the message is composer's own error line."""


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


def composer_command(settings: Settings) -> str | None:
    """The composer executable the step runs, or None when the step is off or composer is missing."""
    return shutil.which(settings.composer) if settings.composer else None


def notes(settings: Settings) -> list[str]:
    """Why vendored builds are missing or unconfined, for `tardist status` (nothing when all is well)."""
    if not settings.composer:
        return []
    if composer_command(settings) is None:
        return [f"composer {settings.composer!r} is not installed: branches whose composer.json requires "
                "packages are built without vendor/"]
    if settings.build_sandbox == "none":
        missing = " (bwrap is not installed)" if find_bwrap() is None else ""
        return [f"build_sandbox is \"none\"{missing}: composer runs without a sandbox, with tardist's "
                "own permissions"]
    if find_bwrap() is None:
        return ["build_sandbox is \"bwrap\" but bwrap is not installed: branches whose composer.json requires "
                "packages fail"]
    return []


def remove_stale_scratch(settings: Settings) -> int:
    """Delete the scratch folders killed processes left behind; those of living ones are builds in flight
    (the worker builds single repositories beside a full run). Returns how many were removed."""
    root = scratch_root(settings)
    if not root.is_dir():
        return 0
    removed = 0
    for scratch in root.iterdir():
        pid = scratch.name.split("-", 1)[0]
        if not (pid.isdigit() and process_alive(int(pid))):
            shutil.rmtree(scratch, ignore_errors=True)
            removed += 1
    return removed


def remove_scratch_root(settings: Settings) -> None:
    """Remove the (empty) scratch root at the end of a run, so nothing is left in the temp folder."""
    try:
        scratch_root(settings).rmdir()
    except OSError:
        pass  # never made, or a build is still in it


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
        _install(settings, command, scratch)
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
        document, error = load_json(name, lambda _: path.stat().st_size, lambda _: path.read_bytes(),
                                    settings.max_manifest_bytes * 16)
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


def composer_sandbox(settings: Settings, command: str, scratch: Path) -> Sandbox:
    """The sandbox composer runs in for one build: scratch and the download cache writable.

    composer's home is a copy of the operator's config.json in scratch, without credentials: those reach
    composer in COMPOSER_AUTH alone, so no file of them can be named by a package (and no dist may name
    /proc, see worker.composer_policy). The operator's COMPOSER_HOME itself is hidden.
    """
    cache = composer_cache(settings)
    cache.mkdir(parents=True, exist_ok=True)
    home, auth = _composer_home(settings.composer_home, scratch / "composer-home")
    env = scrubbed_env({
        "HOME": str(scratch / "home"), "COMPOSER_HOME": str(home),
        "COMPOSER_CACHE_DIR": str(cache), "COMPOSER_NO_INTERACTION": "1",
        "COMPOSER_MIRROR_PATH_REPOS": "1",  # copies, not symlinks to the operator's local packages
        "COMPOSER_ALLOW_SUPERUSER": "1", "COMPOSER_DISABLE_XDEBUG_WARN": "1",
        **({"COMPOSER_AUTH": json.dumps(auth)} if auth else {}),
    })
    hidden = (settings.mirrors, settings.tarballs, settings.database.parent, settings.config_file.parent,
              settings.composer_home, Path.home(), scratch_root(settings), *HIDDEN_SYSTEM,
              *_source_folders(settings))
    readable = (Path(command).resolve(), *operator_folders(settings.composer_home))
    return Sandbox(settings.build_sandbox, writable=(scratch, cache), readable=readable, hidden=hidden, env=env)


def _composer_home(operator: Path, home: Path) -> tuple[Path, dict[str, Any]]:
    """home made from the operator's COMPOSER_HOME: config.json without credentials; and the credentials."""
    home.mkdir(exist_ok=True)
    try:
        auth = json.loads((operator / AUTH_FILE).read_text())
    except (OSError, ValueError):
        auth = {}
    auth = auth if isinstance(auth, dict) else {}
    try:
        config = json.loads((operator / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    if isinstance(config, dict):
        settings = config.get("config")
        if isinstance(settings, dict):
            for key in AUTH_KEYS:
                value = settings.pop(key, None)
                if isinstance(value, dict) and isinstance(auth.get(key, {}), dict):
                    auth[key] = {**value, **auth.get(key, {})}  # auth.json wins, as in composer
        (home / "config.json").write_text(json.dumps(config))
    return home, auth


def _source_folders(settings: Settings) -> list[Path]:
    """The folders of directory sources and local repositories of list sources: never composer's business."""
    folders = [source.path for source in settings.sources if source.path is not None]
    for source in settings.sources:
        for url in source.repos.values():
            local = url.removeprefix("file://")
            if local.startswith("/"):
                folders.append(Path(local))
    return folders


def _install(settings: Settings, command: str, scratch: Path) -> None:
    (scratch / "home").mkdir()
    sandbox = composer_sandbox(settings, command, scratch)
    try:
        finished = run_sandboxed([command, *INSTALL], sandbox, scratch / "src", settings.composer_timeout)
    except SandboxError as exc:
        raise ComposerError(f"composer: {exc}") from None
    if finished.returncode != 0:
        raise ComposerError(f"composer: {error_line(finished.output) or f'exit status {finished.returncode}'}")


def error_line(output: str, limit: int = 500) -> str:
    """composer's own verdict from its output: the first problem, the boxed exception, or the last line."""
    lines = [line.strip() for line in output.splitlines()]
    for index, line in enumerate(lines):
        if re.fullmatch(r"Problem \d+", line):
            detail = next((text for text in lines[index + 1:] if text), "")
            return detail.removeprefix("- ")[:limit]
    for index, line in enumerate(lines):
        if re.fullmatch(r"(In .+ line \d+|\[[\w\\]+(Exception|Error)\]):?", line):
            box = lines[index + 1:]
            start = next((at for at, text in enumerate(box) if text), len(box))
            end = next((at for at, text in enumerate(box[start:], start) if not text), len(box))
            if box[start:end]:  # the message, wrapped over lines of the box
                return " ".join(box[start:end])[:limit]
    return next((line for line in reversed(lines) if line), "")[:limit]


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
