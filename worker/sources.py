"""Which repositories exist: the configured sources, listed."""

from __future__ import annotations

from dataclasses import dataclass, field

from tardist.layout import is_plain_name
from tardist.settings import Settings
from tardist.source_config import Source
from worker import gerrit_listing
from worker.heads import local_heads


@dataclass(frozen=True)
class Repo:
    """One repository to mirror: its kind, its name and where to clone it from."""

    kind: str
    name: str
    url: str
    public_url: str | None = None  # the clone URL shown to people; None: show none
    source: str = field(default="", compare=False)  # the key of the source that lists it
    heads: dict[str, str] | None = field(default=None, compare=False)  # as the source lists them; None: unknown


class SourceError(Exception):
    """A source could not be listed (a Gerrit that is down, a folder that is missing)."""


@dataclass
class Listing:
    """What the sources list now, which listed nothing at all and which could not be listed."""

    repos: list[Repo]
    silent: dict[int, Source]  # by index in the configuration
    unlisted: dict[int, Source]


def list_repos(settings: Settings, warnings: list[str]) -> Listing:
    """Every repository of every source, sorted by kind and name; the first source wins a name.

    A source that cannot be listed costs only its own repositories: it is reported
    in warnings and in ``unlisted``, and the other sources are listed.
    """
    found: dict[tuple[str, str], Repo] = {}
    silent, unlisted = {}, {}
    for index, source in enumerate(settings.sources):
        try:
            listed = _list_source(settings, index, source, warnings)
        except SourceError as exc:
            warnings.append(f"source[{index}] ({source.kind}) cannot be listed: {exc}; "
                            "its repositories were not synced and keep what they have")
            unlisted[index] = source
            continue
        if not listed:
            silent[index] = source
        for repo in listed:
            if not is_plain_name(repo.name):
                warnings.append(f"source[{index}]: skipped {repo.name!r}: not a plain repository name")
            elif (repo.kind, repo.name) in found:
                warnings.append(f"source[{index}]: skipped {repo.kind}/{repo.name}: an earlier source has it")
            else:
                found[(repo.kind, repo.name)] = repo
    return Listing([found[key] for key in sorted(found)], silent, unlisted)


def _list_source(settings: Settings, index: int, source: Source, warnings: list[str]) -> list[Repo]:
    if source.type == "list":
        return [Repo(source.kind, name, url, source.shown_url(name, url), source.key)
                for name, url in source.repos.items()]
    if source.type == "directory":
        assert source.path is not None
        if not source.path.is_dir():
            raise SourceError(f"{source.path} is not a folder")
        folders = [child for child in sorted(source.path.iterdir())
                   if (child / "HEAD").is_file() or (child / ".git").exists()]
        return [Repo(source.kind, folder.name.removesuffix(".git"), str(folder),
                     source.shown_url(folder.name.removesuffix(".git"), str(folder)), source.key,
                     local_heads(folder, settings.branches)) for folder in folders]
    return _list_gerrit(settings, source)


def _list_gerrit(settings: Settings, source: Source) -> list[Repo]:
    try:
        projects = gerrit_listing.list_projects(settings, source)
    except gerrit_listing.ListingError as exc:
        raise SourceError(str(exc)) from None
    repos = []
    for project, facts in sorted(projects.items()):
        name = project[len(source.prefix):] if project.startswith(source.prefix) else ""
        state = facts.get("state", "ACTIVE") if isinstance(facts, dict) else "ACTIVE"
        if name and "/" not in name and state != "READ_ONLY":
            url = f"{source.url}/{project}"
            repos.append(Repo(source.kind, name, url, source.shown_url(name, url), source.key,
                              gerrit_listing.listed_heads(facts, settings.branches)))
    return repos
