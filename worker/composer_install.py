"""Running `composer install` for a build: the command, its sandbox, a home without credentials, its error line,
and the scratch folders builds run in (`tardist.layout.scratch_root`).

What composer may be asked for is `worker.composer`'s (and `worker.composer_policy`'s) business.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from tardist.layout import composer_cache, scratch_root
from tardist.settings import Settings
from worker.composer_policy import operator_folders
from worker.lock import process_alive
from worker.sandbox import Sandbox, SandboxError, find_bwrap, run_sandboxed, scrubbed_env

INSTALL = ["install", "--no-dev", "--no-scripts", "--no-plugins", "--no-interaction", "--ignore-platform-reqs",
           "--prefer-dist"]
# Where the operator's credentials live in COMPOSER_HOME: composer gets them in COMPOSER_AUTH, never as a file.
AUTH_FILE, AUTH_KEYS = "auth.json", ("http-basic", "github-oauth", "gitlab-oauth", "gitlab-token", "bitbucket-oauth",
                                     "bearer", "forgejo-token", "client-certificate")
HIDDEN_SYSTEM = (Path("/var/log"),)


class ComposerError(Exception):
    """composer failed for a branch; the message is composer's own error line."""


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


def install(settings: Settings, command: str, scratch: Path) -> None:
    """Run `composer install` in scratch/src, in its sandbox; ComposerError with composer's own error line."""
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
