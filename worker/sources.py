"""Which repositories exist: the configured sources, listed."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from tardist.settings import Settings, SettingsError, Source, is_plain_name

GERRIT_XSSI_PREFIX = ")]}'"


@dataclass(frozen=True)
class Repo:
    """One repository to mirror: its kind, its name and where to clone it from."""

    kind: str
    name: str
    url: str
    public_url: str | None = None  # the clone URL shown to people; None: show none


def public_url(source: Source, name: str, clone_url: str) -> str | None:
    """What people are shown as the clone URL: the source's public_url template, else the clone URL
    of a list or gerrit source; never a directory source's path on this server."""
    if source.public_url:
        return source.public_url.replace("{name}", name)
    return None if source.type == "directory" else clone_url


def list_repos(settings: Settings, warnings: list[str]) -> list[Repo]:
    """Every repository of every source, sorted by kind and name; the first source wins a name."""
    found: dict[tuple[str, str], Repo] = {}
    for index, source in enumerate(settings.sources):
        listed = [Repo(repo.kind, repo.name, repo.url, public_url(source, repo.name, repo.url))
                  for repo in _list_source(settings, index, source, warnings)]
        if not listed:
            warnings.append(f"source[{index}]: lists no repositories")
        for repo in listed:
            if not is_plain_name(repo.name):
                warnings.append(f"source[{index}]: skipped {repo.name!r}: not a plain repository name")
            elif (repo.kind, repo.name) in found:
                warnings.append(f"source[{index}]: skipped {repo.kind}/{repo.name}: an earlier source has it")
            else:
                found[(repo.kind, repo.name)] = repo
    return [found[key] for key in sorted(found)]


def silent_kinds(settings: Settings, repos: list[Repo]) -> set[str]:
    """Configured kinds for which the sources listed no repository at all.

    A kind that suddenly lists nothing is far more often an unmounted folder or a
    Gerrit hiccup than a real mass removal: its repositories are not marked removed.
    """
    return {source.kind for source in settings.sources} - {repo.kind for repo in repos}


def _list_source(settings: Settings, index: int, source: Source, warnings: list[str]) -> list[Repo]:
    where = f"{settings.config_file}: source[{index}]"
    if source.type == "list":
        return [Repo(source.kind, name, url) for name, url in source.repos.items()]
    if source.type == "directory":
        assert source.path is not None
        if not source.path.is_dir():
            raise SettingsError(f"{where}: key 'path': expected a folder of git repositories, "
                                f"{source.path} is not a folder")
        return [Repo(source.kind, child.name.removesuffix(".git"), str(child))
                for child in sorted(source.path.iterdir())
                if (child / "HEAD").is_file() or (child / ".git").exists()]
    return _list_gerrit(settings, where, source)


def _list_gerrit(settings: Settings, where: str, source: Source) -> list[Repo]:
    query = urllib.parse.urlencode({"p": source.prefix})
    address = f"{source.url}/projects/?{query}"
    try:
        with urllib.request.urlopen(address, timeout=settings.git_timeout) as answer:
            body = answer.read().decode("utf-8")
        body = body.removeprefix(GERRIT_XSSI_PREFIX)
        projects = json.loads(body)
    except (urllib.error.URLError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise SettingsError(f"{where}: key 'url': cannot list Gerrit projects at {address}: {exc}") from None
    if not isinstance(projects, dict):
        raise SettingsError(f"{where}: key 'url': {address} did not answer with a Gerrit project listing")
    repos = []
    for project, facts in sorted(projects.items()):
        name = project[len(source.prefix):] if project.startswith(source.prefix) else ""
        state = facts.get("state", "ACTIVE") if isinstance(facts, dict) else "ACTIVE"
        if name and "/" not in name and state != "READ_ONLY":
            repos.append(Repo(source.kind, name, f"{source.url}/{project}"))
    return repos
