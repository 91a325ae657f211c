"""What a branch's composer files may ask composer for: packages from network registries, nothing of the build host.

An allow-list, checked twice: on the branch's composer.json and composer.lock before composer runs,
and on the composer.lock and vendor/composer/installed.json composer wrote before anything is packed
(a registry the branch names can offer any dist). The only local dists accepted are those inside the
folders of the operator's own path and artifact repositories (COMPOSER_HOME/config.json).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOCAL_REPOSITORIES = ("path", "artifact")  # in the operator's config.json only
NETWORK_URL = re.compile(r"https?://[^/\s?#@]", re.IGNORECASE)
ARCHIVE_DISTS = ("zip", "tar", "xz")  # what composer unpacks; a "file" dist would publish any answer verbatim
SOURCE_TYPES = ("git", "hg", "svn")
REPOSITORY_KEYS = ("type", "url", "canonical", "only", "exclude")  # no "options": they name local files
AUTOLOAD_KINDS = ("psr-4", "psr-0", "classmap", "files", "exclude-from-classmap")
GLOB_RE = re.compile(r"[*?\[{]")
SHOWN = 200  # characters of a refused value quoted in the reason


def operator_folders(home: Path) -> list[Path]:
    """The folders of the operator's path and artifact repositories (COMPOSER_HOME/config.json)."""
    try:
        config = json.loads((home / "config.json").read_text())
    except (OSError, ValueError):
        return []
    repositories = config.get("repositories") if isinstance(config, dict) else None
    items = repositories.values() if isinstance(repositories, dict) else repositories or []
    folders = []
    for entry in items:
        if isinstance(entry, dict) and entry.get("type") in LOCAL_REPOSITORIES and isinstance(entry.get("url"), str):
            url = entry["url"].removeprefix("file://")
            parts = Path(url).parts
            plain = next((index for index, part in enumerate(parts) if GLOB_RE.search(part)), len(parts))
            if url.startswith("/") and plain > 1:
                folders.append(Path(*parts[:plain]))
    return folders


def refused_in_json(document: dict[str, Any]) -> list[str]:
    """Why the branch's composer.json asks for something of the build host (nothing when it does not)."""
    refused = []
    repositories = document.get("repositories")
    if repositories is not None:
        if not isinstance(repositories, (list, dict)):
            refused.append("composer.json: repositories: expected a list or an object")
            repositories = []
        entries = repositories.items() if isinstance(repositories, dict) else enumerate(repositories)
        refused += [f"composer.json: repositories[{key!r}]: {why}" for key, entry in entries
                    for why in _refused_repository(entry)]
    refused += [f"composer.json: {why}" for why in _refused_paths(document)]
    return refused


def refused_in_lock(document: Any, filename: str, folders: list[Path]) -> list[str]:
    """Why a composer.lock or installed.json installs something of the build host (nothing when it does not)."""
    if isinstance(document, dict):
        packages = [*_list(document.get("packages")), *_list(document.get("packages-dev"))]
    else:
        packages = _list(document)  # installed.json of composer 1
    refused = []
    for package in packages:
        name = str(package.get("name"))[:SHOWN] if isinstance(package, dict) else "?"
        refused += [f"{filename}: package {name}: {why}" for why in _refused_package(package, folders)]
    return refused


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _refused_repository(entry: Any) -> Iterator[str]:
    if isinstance(entry, dict) and len(entry) == 1 and list(entry.values()) == [False]:
        return  # {"packagist.org": false} turns a registry off
    if not isinstance(entry, dict):
        yield "expected an object"
        return
    kind = entry.get("type")
    if kind == "composer":
        if not _network(entry.get("url")):
            yield f"a composer repository at {_shown(entry.get('url'))} (only http(s) URLs are accepted)"
        for key in sorted(set(entry) - set(REPOSITORY_KEYS)):
            yield f"the composer repository's {key!r} (accepted: {', '.join(REPOSITORY_KEYS)})"
    elif kind == "package":
        packages = entry.get("package")
        for package in packages if isinstance(packages, list) else [packages]:
            yield from _refused_package(package, [])
    else:
        yield (f"a {_shown(kind)} repository at {_shown(entry.get('url'))} (accepted: composer repositories at "
               "http(s) URLs, and package repositories whose dists are archives at http(s) URLs)")


def _refused_package(package: Any, folders: list[Path]) -> Iterator[str]:
    if not isinstance(package, dict):
        yield "expected an object"
        return
    dist, source = package.get("dist"), package.get("source")
    if dist is not None:
        if not isinstance(dist, dict):
            yield "dist: expected an object"
        elif not (_network(dist.get("url")) and dist.get("type") in ARCHIVE_DISTS
                  or _inside(dist.get("url"), folders) and dist.get("type") in ("path", *ARCHIVE_DISTS)):
            yield (f"a {_shown(dist.get('type'))} dist at {_shown(dist.get('url'))} (accepted: "
                   f"{', '.join(ARCHIVE_DISTS)} archives at http(s) URLs)")
    if source is not None:
        if not isinstance(source, dict):
            yield "source: expected an object"
        elif not (_network(source.get("url")) and source.get("type") in SOURCE_TYPES):
            yield (f"a {_shown(source.get('type'))} source at {_shown(source.get('url'))} (accepted: "
                   f"{', '.join(SOURCE_TYPES)} at http(s) URLs)")
    yield from _refused_paths(package)


def _refused_paths(document: dict[str, Any]) -> Iterator[str]:
    """Autoload and bin paths that are absolute or leave the package: composer would scan host folders."""
    autoload = document.get("autoload")
    if autoload is not None and not isinstance(autoload, dict):
        yield "autoload: expected an object"
        autoload = {}
    for kind, value in (autoload or {}).items():
        if kind not in AUTOLOAD_KINDS:
            yield f"autoload: {_shown(kind)} (accepted: {', '.join(AUTOLOAD_KINDS)})"
            continue
        for path in _strings(value):
            if path is None or _leaves(path):
                yield f"autoload.{kind}: the path {_shown(path)} (only relative paths inside the package)"
    for path in _strings(document.get("bin", [])):
        if path is None or _leaves(path):
            yield f"bin: the path {_shown(path)} (only relative paths inside the package)"


def _strings(value: Any) -> Iterator[str | None]:
    """Every path in value (a string, a list, or an object of strings and lists); None for anything else."""
    items = list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else [value]
    for item in items:
        for path in item if isinstance(item, list) else [item]:
            yield path if isinstance(path, str) else None


def _leaves(path: str) -> bool:
    parts = re.split(r"[/\\]+", path)
    return path.startswith(("/", "\\", "~")) or re.match(r"[A-Za-z]:", path) is not None or ".." in parts \
        or "\0" in path


def _network(url: Any) -> bool:
    return isinstance(url, str) and NETWORK_URL.match(url) is not None


def _inside(url: Any, folders: list[Path]) -> bool:
    """url is a local path inside one of the operator's folders (symlinks resolved)."""
    if not isinstance(url, str) or not url.startswith("/") or "\0" in url:
        return False
    real = Path(os.path.realpath(url))
    return any(real.is_relative_to(os.path.realpath(folder)) for folder in folders)


def _shown(value: Any) -> str:
    return repr(value if isinstance(value, str) else json.dumps(value))[:SHOWN]
