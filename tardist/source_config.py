"""One `[[source]]` table of the configuration: a place repositories come from (a folder of repositories, a
list of clone URLs, or a Gerrit's project listing), checked key by key. `tardist.settings` reads the tables;
`worker.sources` lists the repositories of each."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tardist.layout import is_kind, is_plain_name

SOURCE_TYPES = {"directory": ("path",), "list": ("repos",), "gerrit": ("url", "prefix")}  # type: required keys


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


def source_from_table(index: int, entry: Any) -> Source:
    """The source the index-th `[[source]]` table describes; ValueError naming the table and key if it is wrong."""
    at = f"source[{index}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{at}: expected a table")
    kind, type_ = entry.get("kind"), entry.get("type")
    if not isinstance(kind, str) or not is_kind(kind):
        raise ValueError(f"{at}: key 'kind': expected a lower-case word such as 'extensions', got {kind!r}")
    if type_ not in SOURCE_TYPES:
        raise ValueError(f"{at}: key 'type': expected one of {', '.join(SOURCE_TYPES)}, got {type_!r}")
    allowed = {"kind", "type", "public_url", *SOURCE_TYPES[type_]}
    for key in entry:
        if key not in allowed:
            raise ValueError(f"{at}: unknown key {key!r} for type {type_!r} (allowed: {', '.join(sorted(allowed))})")
    for key in SOURCE_TYPES[type_]:
        if key not in entry:
            raise ValueError(f"{at}: key {key!r} is required for type {type_!r}")
    public = entry.get("public_url", "")
    if not isinstance(public, str) or (public and "{name}" not in public):
        raise ValueError(f"{at}: key 'public_url': expected a URL template with {{name}}, such as "
                         f"'https://gerrit.example.org/r/mediawiki/extensions/{{name}}', got {public!r}")
    if type_ == "directory":
        if not isinstance(entry["path"], str):
            raise ValueError(f"{at}: key 'path': expected a folder path string")
        return Source(kind, type_, path=Path(entry["path"]).absolute(), public_url=public)
    if type_ == "list":
        repos = entry["repos"]
        if not isinstance(repos, dict) or not all(isinstance(v, str) for v in repos.values()):
            raise ValueError(f"{at}: key 'repos': expected a table of name = \"clone URL\"")
        for name in repos:
            if not is_plain_name(name):
                raise ValueError(f"{at}: key 'repos': {name!r} is not a plain repository name")
        return Source(kind, type_, repos=dict(repos), public_url=public)
    for key in ("url", "prefix"):
        if not isinstance(entry[key], str):
            raise ValueError(f"{at}: key {key!r}: expected a string")
    return Source(kind, type_, url=entry["url"].rstrip("/"), prefix=entry["prefix"], public_url=public)
