"""What goes into a tarball: a commit's files, its submodules, its symlinks resolved.

Everything is read from git objects, never from a checkout, so a symlink can
never make tardist read a file outside the repository.
"""

from __future__ import annotations

import posixpath
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tardist.layout import module_mirror_path
from tardist.settings import Settings
from worker.git import GitConfig, GitError, ObjectReader, run_git
from worker.mirror import fetch_commit

SYMLINK, GITLINK = "120000", "160000"
MAX_LINK_HOPS = 40  # what Linux allows before ELOOP
MAX_LINK_TARGET = 4096  # PATH_MAX
MAX_SUBMODULE_DEPTH = 5


class TreeError(Exception):
    """The branch cannot be packed (missing submodule commit, too large, ...)."""


@dataclass(frozen=True)
class Blob:
    """One file to pack: where its content lives and how big it is."""

    mirror: Path
    sha: str
    mode: str
    size: int


@dataclass
class Tree:
    """The files of a commit, submodules included, keyed by path below the top folder."""

    files: dict[str, Blob] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=lambda: {""})
    warnings: list[str] = field(default_factory=list)
    total_bytes: int = 0
    modules: set[str] = field(default_factory=set)  # folder names of the module mirrors used, for gc


def list_tree(mirror: Path, commit: str, config: GitConfig = ()) -> list[tuple[str, str, str, str]]:
    """(mode, sha, size, path) of every entry of a commit, recursively."""
    out = run_git(["ls-tree", "-r", "-z", "-l", "--full-tree", commit], cwd=mirror, config=config)
    entries = []
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, _type, sha, size = meta.decode().split()
        entries.append((mode, sha, size, path.decode("utf-8", "surrogateescape")))
    return entries


def read_tree(settings: Settings, reader: ObjectReader, mirror: Path, url: str, commit: str) -> Tree:
    """Collect a commit's files with submodules (recursively) and symlinks resolved."""
    raw = Tree()
    _collect(settings, raw, mirror, url, commit, prefix="", depth=0)
    return _resolve_symlinks(settings, reader, raw)


def _collect(settings: Settings, tree: Tree, mirror: Path, url: str,
             commit: str, prefix: str, depth: int) -> None:
    entries = list_tree(mirror, commit, settings.git_config)
    gitmodules = next((sha for mode, sha, _s, path in entries if path == ".gitmodules" and mode != GITLINK), None)
    for mode, sha, size, path in entries:
        full = prefix + path
        parts = path.split("/")
        if any(part.lower() == ".git" for part in parts):
            tree.warnings.append(f"left out {full}: a path named .git")
            continue
        if any(part in ("", ".", "..") for part in parts):  # crafted tree objects; extracted, they escape
            tree.warnings.append(f"left out {full}: not a safe path")
            continue
        if mode == GITLINK:
            _collect_submodule(settings, tree, mirror, url, gitmodules, sha, path, full, depth)
            continue
        _add_file(settings, tree, full, Blob(mirror, sha, mode if mode in ("100755", SYMLINK) else "100644",
                                             int(size)))


def _add_file(settings: Settings, tree: Tree, path: str, blob: Blob) -> None:
    if len(tree.files) >= settings.max_files:
        raise TreeError(f"more than {settings.max_files} files (max_files)")
    # A crafted tree (or a submodule, a folder link) can make one path both a file and a folder;
    # packed as is, the tarball would not unpack. The first one wins.
    new_dirs = []
    parent = posixpath.dirname(path)
    while parent not in tree.dirs:
        if parent in tree.files:
            tree.warnings.append(f"left out {path}: {parent} is a file")
            return
        new_dirs.append(parent)
        parent = posixpath.dirname(parent)
    if path in tree.dirs or path in tree.files:
        tree.warnings.append(f"left out {path}: the tree has {'a folder' if path in tree.dirs else 'a file'} "
                             "of that name already")
        return
    tree.total_bytes += blob.size
    if tree.total_bytes > settings.max_tarball_bytes:
        raise TreeError(f"content larger than {settings.max_tarball_bytes} bytes (max_tarball_bytes)")
    tree.files[path] = blob
    tree.dirs.update(new_dirs)


def _collect_submodule(settings: Settings, tree: Tree, mirror: Path, parent_url: str,
                       gitmodules: str | None, sha: str, path: str, full: str, depth: int) -> None:
    if depth >= MAX_SUBMODULE_DEPTH:
        raise TreeError(f"submodule {full}: nested more than {MAX_SUBMODULE_DEPTH} levels")
    url = submodule_url(mirror, gitmodules, path, settings.git_config)
    if url is None:
        raise TreeError(f"submodule {full}: no URL for it in .gitmodules")
    url = resolve_submodule_url(parent_url, url)
    refused = refused_submodule_url(url, settings.submodule_protocols)
    if refused:
        raise TreeError(f"submodule {full}: {refused}")
    module_mirror = module_mirror_path(settings.mirrors, url)
    tree.modules.add(module_mirror.name)
    try:
        fetch_commit(module_mirror, url, sha, settings.git_timeout, settings.submodule_protocols, settings.git_config)
    except GitError as exc:
        raise TreeError(f"submodule {full}: {exc}") from None
    _collect(settings, tree, module_mirror, url, sha, prefix=full + "/", depth=depth + 1)


def submodule_url(mirror: Path, gitmodules: str | None, path: str, config: GitConfig = ()) -> str | None:
    """The URL .gitmodules gives for the submodule at path."""
    if gitmodules is None:
        return None
    try:
        out = run_git(["config", "--blob", gitmodules, "-z", "--list"], cwd=mirror, config=config)
    except GitError:
        return None
    names: dict[str, dict[str, str]] = {}
    for item in out.decode("utf-8", "surrogateescape").split("\0"):  # as list_tree decodes paths
        key, _, value = item.partition("\n")
        section, _, rest = key.partition(".")
        name, _, attribute = rest.rpartition(".")
        if section == "submodule" and name:
            names.setdefault(name, {})[attribute] = value
    return next((module.get("url") for module in names.values() if module.get("path") == path), None)


def resolve_submodule_url(parent_url: str, url: str) -> str:
    """Resolve a relative submodule URL (./x, ../x) against the parent's remote, as git does."""
    if not url.startswith(("./", "../")):
        return url
    base = parent_url.rstrip("/")
    while True:
        if url.startswith("./"):
            url = url[2:]
        elif url.startswith("../"):
            url = url[3:]
            cut = max(base.rfind("/"), base.rfind(":") if "://" not in base else -1)
            base = base[:cut] if cut > 0 else base
        else:
            return f"{base}/{url}"


def refused_submodule_url(url: str, protocols: tuple[str, ...]) -> str | None:
    """Why a submodule URL may not be fetched, or None when it may."""
    if url.startswith("-") or any(ord(c) < 32 for c in url):
        return f"refusing URL {url!r}"
    if "::" in url.split("/", 1)[0]:
        scheme = url.split("::", 1)[0]  # remote helpers such as ext::
    elif "://" in url:
        scheme = urlsplit(url).scheme.lower()
        scheme = {"git+ssh": "ssh", "ssh+git": "ssh"}.get(scheme, scheme)
    elif ":" in url.split("/", 1)[0]:
        scheme = "ssh"  # scp-like host:path
    else:
        scheme = "file"  # a local path
    if scheme not in protocols:
        return f"transport {scheme!r} of {url!r} is not allowed (submodule_protocols)"
    return None


def _resolve_symlinks(settings: Settings, reader: ObjectReader, raw: Tree) -> Tree:
    """Replace in-tree symlinks by what they point at; leave the others out, with a warning."""
    out = Tree(warnings=list(raw.warnings), modules=raw.modules)
    links = {path: blob for path, blob in raw.files.items() if blob.mode == SYMLINK}
    # A link's target is its blob; one longer than PATH_MAX is no path at all, and not worth reading.
    targets = {path: reader.read(blob.mirror, blob.sha).decode("utf-8", "surrogateescape")
               if blob.size <= MAX_LINK_TARGET else None for path, blob in links.items()}
    for path, blob in raw.files.items():
        if blob.mode != SYMLINK:
            _add_file(settings, out, path, blob)
    # (path in the tarball, path in the commit, folders already entered through links on the way)
    pending: deque[tuple[str, str, frozenset[str]]] = deque((path, path, frozenset()) for path in sorted(links))
    followed = 0
    while pending:
        path, source, entered = pending.popleft()
        followed += 1
        if followed > settings.max_files:  # folder links can multiply paths without adding files
            raise TreeError(f"symlinks lead to more than {settings.max_files} paths (max_files)")
        kind, resolved = _resolve(raw, targets, source)
        if kind == "file":
            _add_file(settings, out, path, raw.files[resolved])
        elif kind == "dir" and (resolved == "" or path == resolved or path.startswith(resolved + "/")):
            out.warnings.append(f"left out symlink {path} -> {targets.get(source, source)}: it contains itself")
        elif kind == "dir" and resolved in entered:
            out.warnings.append(f"left out symlink {path} -> {targets.get(source, source)}: it is a symlink loop")
        elif kind == "dir":
            for inner in sorted(p for p in raw.files if p.startswith(resolved + "/")):
                pending.append((path + inner[len(resolved):], inner, entered | {resolved}))
        else:
            out.warnings.append(f"left out symlink {path} -> {targets.get(source) or '(too long to show)'}: {resolved}")
    return out


def _resolve(raw: Tree, targets: dict[str, str | None], path: str) -> tuple[str, str]:
    """Follow symlinks along path: ("file"|"dir", real path) or ("error", why)."""
    parts = deque(path.split("/"))
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                return "error", "it points outside the tree"
            resolved.pop()
            continue
        candidate = "/".join([*resolved, part])
        if candidate in targets:
            hops += 1
            if hops > MAX_LINK_HOPS:
                return "error", "it is a symlink loop"
            target = targets[candidate]
            if target is None:
                return "error", f"its target is longer than {MAX_LINK_TARGET} bytes"
            if target.startswith("/"):
                return "error", "it points outside the tree (absolute path)"
            parts.extendleft(reversed(target.split("/")))
        elif candidate in raw.files:
            if any(p not in ("", ".") for p in parts):
                return "error", "it points to nothing"
            resolved.append(part)
        elif candidate in raw.dirs:
            resolved.append(part)
        else:
            return "error", "it points to nothing"
    final = "/".join(resolved)
    return ("file", final) if final in raw.files else ("dir", final)
