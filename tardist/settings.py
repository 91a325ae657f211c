"""Settings shared by the worker and the web app, parsed once, in one place.

Order of precedence: defaults -> the TOML file -> ``TARDIST_*`` environment
variables -> explicit overrides (tests, ``create_app(test_config)``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
}
SANDBOXES = ("bwrap", "none")
PATH_KEYS = ("database", "mirrors", "tarballs")
SOURCE_TYPES = {"directory": ("path",), "list": ("repos",), "gerrit": ("url", "prefix")}

KIND_RE = re.compile(r"^[a-z][a-z0-9]{0,31}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
BRANCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]{0,99}$")  # no '-': Foo + a-b and Foo-a + b would clash
PROTOCOLS = {"https", "http", "git", "ssh", "file"}


class SettingsError(Exception):
    """The configuration is wrong; the message names the file, the key and what was expected."""


def is_plain_name(name: str) -> bool:
    """True when name is safe as a repository name and a file-name component."""
    return bool(NAME_RE.fullmatch(name)) and ".." not in name and not name.endswith((".git", "."))


def is_kind(kind: str) -> bool:
    """True when kind is a lower-case word usable as a folder name."""
    return bool(KIND_RE.fullmatch(kind))


@dataclass(frozen=True)
class Source:
    """One configured place repositories come from."""

    kind: str
    type: str
    path: Path | None = None
    repos: dict[str, str] = field(default_factory=dict)
    url: str = ""
    prefix: str = ""
    public_url: str = ""  # template of the clone URL shown to people, with {name}

    def shown_url(self, name: str, clone_url: str) -> str | None:
        """What people are shown as a repository's clone URL: the public_url template, else the clone
        URL of a list or gerrit source; never a directory source's path on this server."""
        if self.public_url:
            return self.public_url.replace("{name}", name)
        return None if self.type == "directory" else clone_url

    @property
    def key(self) -> str:
        """What identifies the source across runs and edits of other sources: kind, type and where."""
        where = {"directory": str(self.path), "gerrit": f"{self.url}/projects/?p={self.prefix}", "list": ""}
        return f"{self.kind} {self.type} {where[self.type]}".rstrip()


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
    build_sandbox: str
    git_config: tuple[tuple[str, str], ...] = ()  # (name, value) in configuration order
    sources: tuple[Source, ...] = ()

    @property
    def lock_file(self) -> Path:
        """The file `tardist sync` holds locked while it runs."""
        return self.database.with_name(self.database.name + ".lock")

    @property
    def queue_file(self) -> Path:
        """The SQLite file of requests the web app and the command line leave for `tardist worker`."""
        return self.database.with_name(self.database.stem + ".queue.sqlite3")

    @property
    def locks(self) -> Path:
        """The folder of per-repository lock files, locks/<kind>/<Name>.lock."""
        return self.database.with_name("locks")


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
        if not BRANCH_RE.fullmatch(branch) or ".." in branch or branch.endswith(".lock"):
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
    values["composer_home"] = Path(values["composer_home"] or values["mirrors"] / "_composer/home").absolute()
    if not values["build_sandbox"]:
        values["build_sandbox"] = "bwrap" if shutil.which("bwrap") else "none"
    if values["build_sandbox"] not in SANDBOXES:
        raise SettingsError(f"{where}: key 'build_sandbox': expected one of {', '.join(SANDBOXES)}, "
                            f"got {values['build_sandbox']!r}")
    values["tarball_url"] = values["tarball_url"].rstrip("/")
    values["branches"] = tuple(values["branches"])
    values["submodule_protocols"] = tuple(values["submodule_protocols"])
    values["git_config"] = git_config_pairs((origins or {}).get("git_config", where), values["git_config"])
    sources = raw.get("source", [])
    if not isinstance(sources, list):
        raise SettingsError(f"{where}: key 'source': expected [[source]] tables")
    values["sources"] = tuple(_source(where, index, entry) for index, entry in enumerate(sources))
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


# section[.subsection].name, as git spells a configuration key (the subsection may hold anything but a newline)
GIT_KEY_RE = re.compile(r"^([A-Za-z0-9-]+)(?:\.([^\n\x00]*))?\.([A-Za-z][A-Za-z0-9-]*)$")
# The git settings an operator may give (an allow-list: anything else is refused). None runs a program,
# none sends or rewrites a file: URL rewriting, proxies, TLS trust (a CA file only decides which servers
# git believes; a client certificate, key or cookie file would be sent, and is refused), protocol and
# transfer tuning, memory limits. Section and name are matched ignoring case, as git does.
GIT_SETTINGS_ALLOWED = {
    "url": {"insteadof", "pushinsteadof"},  # url.<base>.insteadOf
    "http": {"proxy", "proxyauthmethod", "sslverify", "sslcainfo", "sslcapath", "sslversion", "sslcipherlist",
             "sslbackend", "version", "postbuffer", "lowspeedlimit", "lowspeedtime", "maxrequests", "useragent"},
    "protocol": {"version"},  # never protocol.allow or protocol.<name>.allow: submodule_protocols stays tardist's
    "core": {"compression", "packedgitlimit", "packedgitwindowsize", "deltabasecachelimit", "bigfilethreshold"},
    "pack": {"compression", "threads", "window", "depth", "windowmemory", "deltacachesize", "deltacachelimit",
             "packsizelimit"},
}
SUBSECTIONS_ALLOWED = {"url": True, "http": True}  # url.<base>.insteadOf; http.<url>.proxy: for one site
GIT_SETTINGS_SHOWN = ("url.<base>.insteadOf, url.<base>.pushInsteadOf, http[.<url>].proxy, proxyAuthMethod, "
                      "sslVerify, sslCAInfo, sslCAPath, sslVersion, sslCipherList, sslBackend, version, postBuffer, "
                      "lowSpeedLimit, lowSpeedTime, maxRequests, userAgent, protocol.version, core.compression, "
                      "core.packedGitLimit, core.packedGitWindowSize, core.deltaBaseCacheLimit, "
                      "core.bigFileThreshold, pack.compression, pack.threads, pack.window, pack.depth, "
                      "pack.windowMemory, pack.deltaCacheSize, pack.deltaCacheLimit, pack.packSizeLimit")


def git_setting_allowed(key: str) -> bool:
    """True when key (a git setting name) is one an operator may give in git_config."""
    match = GIT_KEY_RE.fullmatch(key)
    if not match:
        return False
    section, subsection, name = match.group(1).lower(), match.group(2), match.group(3).lower()
    if subsection is not None and not SUBSECTIONS_ALLOWED.get(section, False):
        return False
    if section == "url" and subsection is None:
        return False
    return name in GIT_SETTINGS_ALLOWED.get(section, set())


def git_config_pairs(where: str, table: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The git_config table as (name, value) pairs, accepting only the settings of GIT_SETTINGS_ALLOWED."""
    pairs = []
    for key, value in table.items():
        if not GIT_KEY_RE.fullmatch(key):
            raise SettingsError(f"{where}: key 'git_config': {key!r} is not a git setting name "
                                "(section.name or section.subsection.name)")
        if not git_setting_allowed(key):
            raise SettingsError(f"{where}: key 'git_config': {key!r} is refused: git_config accepts only URL "
                                "rewriting, proxies, TLS trust and transfer tuning, none of which runs a program "
                                f"or reads a file it sends ({GIT_SETTINGS_SHOWN})")
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int):
            value = str(value)
        if not isinstance(value, str) or "\n" in value or "\x00" in value:
            raise SettingsError(f"{where}: key 'git_config': {key!r}: expected a one-line string, number or "
                                f"true/false, got {value!r}")
        pairs.append((key, value))
    return tuple(pairs)


def _source(where: str, index: int, entry: Any) -> Source:
    at = f"{where}: source[{index}]"
    if not isinstance(entry, dict):
        raise SettingsError(f"{at}: expected a table")
    kind, type_ = entry.get("kind"), entry.get("type")
    if not isinstance(kind, str) or not is_kind(kind):
        raise SettingsError(f"{at}: key 'kind': expected a lower-case word such as 'extensions', got {kind!r}")
    if type_ not in SOURCE_TYPES:
        raise SettingsError(f"{at}: key 'type': expected one of {', '.join(SOURCE_TYPES)}, got {type_!r}")
    allowed = {"kind", "type", "public_url", *SOURCE_TYPES[type_]}
    for key in entry:
        if key not in allowed:
            raise SettingsError(f"{at}: unknown key {key!r} for type {type_!r} (allowed: {', '.join(sorted(allowed))})")
    for key in SOURCE_TYPES[type_]:
        if key not in entry:
            raise SettingsError(f"{at}: key {key!r} is required for type {type_!r}")
    public = entry.get("public_url", "")
    if not isinstance(public, str) or (public and "{name}" not in public):
        raise SettingsError(f"{at}: key 'public_url': expected a URL template with {{name}}, such as "
                            f"'https://gerrit.example.org/r/mediawiki/extensions/{{name}}', got {public!r}")
    if type_ == "directory":
        if not isinstance(entry["path"], str):
            raise SettingsError(f"{at}: key 'path': expected a folder path string")
        return Source(kind, type_, path=Path(entry["path"]).absolute(), public_url=public)
    if type_ == "list":
        repos = entry["repos"]
        if not isinstance(repos, dict) or not all(isinstance(v, str) for v in repos.values()):
            raise SettingsError(f"{at}: key 'repos': expected a table of name = \"clone URL\"")
        for name in repos:
            if not is_plain_name(name):
                raise SettingsError(f"{at}: key 'repos': {name!r} is not a plain repository name")
        return Source(kind, type_, repos=dict(repos), public_url=public)
    for key in ("url", "prefix"):
        if not isinstance(entry[key], str):
            raise SettingsError(f"{at}: key {key!r}: expected a string")
    return Source(kind, type_, url=entry["url"].rstrip("/"), prefix=entry["prefix"], public_url=public)
