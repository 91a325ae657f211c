"""Settings shared by the worker and the web app, parsed once, in one place.

Order of precedence: defaults -> the TOML file -> ``TARDIST_*`` environment
variables -> explicit overrides (tests, ``create_app(test_config)``).
"""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tardist import layout, signers
from tardist.gitconfig import git_config_pairs
from tardist.layout import is_branch_name
from tardist.source_config import Source, source_from_table

DEFAULT_CONFIG = "instance/tardist.toml"

# key: (default, meaning). The one table of every setting tardist reads.
SETTINGS: dict[str, tuple[Any, str]] = {
    "database": ("instance/tardist.sqlite3", "SQLite database (the worker writes, the web app reads)"),
    "mirrors": ("mirrors", "folder of bare git mirrors, mirrors/<kind>/<Name>.git"),
    "tarballs": ("tarballs", "folder of built tarballs, tarballs/<kind>/<file>, served as /dist/"),
    "published": ("published", "folder the worker writes the API's answers into as static files "
                               "(list.json, info/<kind>/<name>.json, ...); empty: none"),
    "tarball_url": ("/dist", "public base URL of the tarballs folder"),
    "branches": (["master", "REL1_45", "REL1_44", "REL1_43", "REL1_39"],
                 "snapshot branches, in display order"),
    "jobs": (4, "repositories synced in parallel"),
    "retention_days": (7, "days a superseded tarball (or a removed repository) is kept"),
    "git_timeout": (300, "seconds one git network operation may take before it is killed"),
    "database_timeout": (60, "seconds a write waits for another process's write to the database to end"),
    "heads_timeout": (20, "seconds one branch-head check (git ls-remote) may take; at most git_timeout"),
    "max_tarball_bytes": (512 * 1024 * 1024, "largest uncompressed tarball content built"),
    "max_files": (100_000, "most files one tarball may hold"),
    "max_manifest_bytes": (1024 * 1024, "largest extension.json/skin.json read"),
    "submodule_protocols": (["https", "http", "git", "ssh"],
                            "transports a repository's submodule URLs may use"),
    "schedule": ("0 * * * *", "cron expression for `tardist worker` syncs"),
    "gc_schedule": ("30 3 * * *", "cron expression for `tardist worker` garbage collection"),
    "poll_seconds": (60, "seconds between `tardist worker`'s checks for moved heads (`sync --changed`); 0: off"),
    "cache_seconds": (5, "Cache-Control max-age of API answers (then revalidated by ETag)"),
    "serve_tarballs": (True, "let Flask serve /dist/ (nginx serves it in production)"),
    "git_config": ({}, "git settings (name = value) given to every git command tardist runs"),
    "hook_secret": ("", "shared secret of POST /hooks/push; empty: webhooks are off"),
    "build_wait": (30, "seconds a request for a missing current-head tarball waits for its build"),
    "build_waiters": (4, "requests per web process that may wait for an on-demand build at once; "
                         "more are 503 with Retry-After (keep it below gunicorn's threads)"),
    "composer": ("composer", "composer command for branches whose composer.json requires packages; \"\" turns it off"),
    "composer_home": ("", "COMPOSER_HOME (config.json with repositories, auth); \"\" means mirrors/_composer/home"),
    "composer_timeout": (300, "seconds one composer install may take before it is killed"),
    "build_sandbox": ("", "\"bwrap\" or \"none\": where composer runs; \"\" means bwrap when it is on PATH"),
    "site_url": ("", "public base URL of the site (https://extdist.example.org), used in the verify commands "
                     "/browse shows; never taken from a request's Host"),
    "signing_key": ("", "OpenSSH private key file (mode 0600) the worker signs checksum files with; \"\": unsigned"),
    "retired_signing_keys": ([], "former signing keys, each \"<valid-before YYYYMMDD> <type> <base64>\": "
                                 "published in allowed_signers, trusted for signatures made before that date"),
}
SandboxMode = Literal["bwrap", "none"]  # where composer runs: in bubblewrap, or not confined
SANDBOXES: tuple[SandboxMode, ...] = ("bwrap", "none")
PATH_KEYS = ("database", "mirrors", "tarballs")

PROTOCOLS = {"https", "http", "git", "ssh", "file"}


class SettingsError(Exception):
    """The configuration is wrong; the message names the file, the key and what was expected."""


@dataclass(frozen=True)
class Settings:
    """Every setting, with paths made absolute."""

    config_file: Path
    database: Path
    mirrors: Path
    tarballs: Path
    published: Path | None
    tarball_url: str
    branches: tuple[str, ...]
    jobs: int
    retention_days: int
    git_timeout: int
    database_timeout: int
    heads_timeout: int
    max_tarball_bytes: int
    max_files: int
    max_manifest_bytes: int
    submodule_protocols: tuple[str, ...]
    schedule: str
    gc_schedule: str
    poll_seconds: int
    cache_seconds: int
    serve_tarballs: bool
    hook_secret: str
    build_wait: int
    build_waiters: int
    composer: str
    composer_home: Path
    composer_timeout: int
    build_sandbox: SandboxMode
    git_config: tuple[tuple[str, str], ...] = ()  # (name, value) in configuration order
    sources: tuple[Source, ...] = ()
    site_url: str = ""
    signing_key: Path | None = None
    retired_signing_keys: tuple[tuple[str, str], ...] = ()  # (valid-before, "type base64")

    @property
    def lock_file(self) -> Path:
        """The file `tardist sync` holds locked while it runs."""
        return layout.sync_lock_file(self.database)

    @property
    def directory_folders(self) -> tuple[Path, ...]:
        """The folders of the `directory` sources: git may read the repositories in them whoever owns them."""
        return tuple(source.path for source in self.sources if source.type == "directory" and source.path)

    @property
    def queue_file(self) -> Path:
        """The SQLite file of requests the web app and the command line leave for `tardist worker`."""
        return layout.queue_file(self.database)

    @property
    def locks(self) -> Path:
        """The folder of per-repository lock files, locks/<kind>/<Name>.lock."""
        return layout.locks_folder(self.database)


def load_settings(config_file: str | os.PathLike | None = None,
                  overrides: dict[str, Any] | None = None,
                  environ: dict[str, str] | None = None) -> Settings:
    """Read the TOML file (missing means defaults), the environment and overrides."""
    environ = os.environ if environ is None else environ
    path = Path(config_file or environ.get("TARDIST_CONFIG") or DEFAULT_CONFIG).absolute()
    raw: dict[str, Any] = {}
    if path.is_file():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    elif config_file is not None or "TARDIST_CONFIG" in environ:
        raise SettingsError(f"{path}: no such configuration file")
    where = str(path)
    origins: dict[str, str] = {}  # setting -> the environment variable it came from
    for key, text in environ.items():
        if key.startswith("TARDIST_") and key != "TARDIST_CONFIG":
            name = key[len("TARDIST_"):].lower()
            if name not in SETTINGS:
                raise SettingsError(f"environment {key}: unknown setting (known: {', '.join(SETTINGS)})")
            raw[name] = _check_type(f"environment {key}", name, _from_environment(key, text, SETTINGS[name][0]),
                                    SETTINGS[name][0])
            origins[name] = f"environment {key}"
    raw.update(overrides or {})
    for name in overrides or {}:
        origins.pop(name, None)
    return _build(raw, where, origins)


def _from_environment(key: str, text: str, default: Any) -> Any:
    if isinstance(default, bool):
        if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise SettingsError(f"environment {key}: expected true or false, got {text!r}")
        return text.lower() in ("1", "true", "yes")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise SettingsError(f"environment {key}: expected a whole number, got {text!r}") from None
    if isinstance(default, list):
        return [part.strip() for part in text.split(",") if part.strip()]
    if isinstance(default, dict):
        try:
            return json.loads(text)
        except ValueError:
            raise SettingsError(f"environment {key}: expected a JSON object of git settings, got {text!r}") from None
    return text


def _build(raw: dict[str, Any], where: str, origins: dict[str, str] | None = None) -> Settings:
    values: dict[str, Any] = {}
    for key in raw:
        if key not in SETTINGS and key != "source":
            raise SettingsError(f"{where}: unknown key {key!r} (known: {', '.join(SETTINGS)}, [[source]])")
    for key, (default, _meaning) in SETTINGS.items():
        values[key] = _check_type(where, key, raw.get(key, default), default)
    for key in PATH_KEYS:
        values[key] = Path(values[key]).absolute()
    values["published"] = Path(values["published"]).absolute() if values["published"] else None
    for branch in values["branches"]:
        if not is_branch_name(branch):
            raise SettingsError(f"{where}: key 'branches': {branch!r} is not a plain branch name "
                                "(letters, digits, '_', '.'; it becomes part of a file name, where '-' "
                                "separates the repository name, the branch and the commit)")
    if not values["branches"]:
        raise SettingsError(f"{where}: key 'branches': expected at least one branch")
    for key in ("jobs", "git_timeout", "database_timeout", "heads_timeout", "build_waiters", "max_tarball_bytes",
                "max_files", "max_manifest_bytes", "composer_timeout"):
        if values[key] < 1:
            raise SettingsError(f"{where}: key {key!r}: expected a whole number >= 1")
    if values["poll_seconds"] < 0:
        raise SettingsError(f"{where}: key 'poll_seconds': expected a whole number >= 0 (0: no polling)")
    for protocol in values["submodule_protocols"]:
        if protocol not in PROTOCOLS:
            raise SettingsError(f"{where}: key 'submodule_protocols': {protocol!r} is not one of "
                                f"{', '.join(sorted(PROTOCOLS))}")
    values["heads_timeout"] = min(values["heads_timeout"], values["git_timeout"])
    values["composer_home"] = Path(values["composer_home"]
                                   or layout.default_composer_home(values["mirrors"])).absolute()
    if not values["build_sandbox"]:
        values["build_sandbox"] = "bwrap" if shutil.which("bwrap") else "none"
    if values["build_sandbox"] not in SANDBOXES:
        raise SettingsError(f"{where}: key 'build_sandbox': expected one of {', '.join(SANDBOXES)}, "
                            f"got {values['build_sandbox']!r}")
    values["tarball_url"] = values["tarball_url"].rstrip("/")
    values["site_url"] = values["site_url"].rstrip("/")
    if values["site_url"] and not signers.is_site_url(values["site_url"]):
        raise SettingsError(f"{where}: key 'site_url': expected an http(s) URL such as https://extdist.example.org")
    values["branches"] = tuple(values["branches"])
    values["submodule_protocols"] = tuple(values["submodule_protocols"])
    try:
        values["git_config"] = git_config_pairs(values["git_config"])
    except ValueError as exc:
        raise SettingsError(f"{(origins or {}).get('git_config', where)}: key 'git_config': {exc}") from None
    sources = raw.get("source", [])
    if not isinstance(sources, list):
        raise SettingsError(f"{where}: key 'source': expected [[source]] tables")
    try:
        values["sources"] = tuple(source_from_table(index, entry) for index, entry in enumerate(sources))
    except ValueError as error:
        raise SettingsError(f"{where}: {error}") from None
    values["signing_key"] = Path(values["signing_key"]).absolute() if values["signing_key"] else None
    values["retired_signing_keys"] = tuple(_retired_key(where, entry) for entry in values["retired_signing_keys"])
    return Settings(config_file=Path(where), **values)


def _check_type(where: str, key: str, value: Any, default: Any) -> Any:
    expected: type = type(default)
    if expected is list:
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        wanted = "a list of strings"
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        wanted = "a whole number >= 0"
    elif expected is bool:
        ok, wanted = isinstance(value, bool), "true or false"
    elif expected is dict:
        ok, wanted = isinstance(value, dict), 'a table of git settings, such as { "http.proxy" = "..." }'

    else:
        ok, wanted = isinstance(value, str), "a string"
    if not ok:
        raise SettingsError(f"{where}: key {key!r}: expected {wanted}, got {value!r}")
    return value


def _retired_key(where: str, entry: str) -> tuple[str, str]:
    parsed = signers.retired_key(entry)
    if parsed is None:
        raise SettingsError(f"{where}: key 'retired_signing_keys': {entry[:100]!r} is not \"<valid-before date "
                            "YYYYMMDD> <public key type> <base64>\", such as \"20270101 ssh-ed25519 AAAAC3...\"")
    return parsed
