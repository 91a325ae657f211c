"""Which configured repository a name, a clone URL or a Gerrit project means: only the one meant."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import Repo

from tardist import catalog, schema
from tardist.settings import Settings, load_settings

GERRIT = "https://gerrit.example.org/r"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A directory source of extensions (Cite) beside skins (Vector) on disk, a list source and a Gerrit one."""
    Repo(tmp_path / "upstream/extensions/Cite").commit({"README": "cite\n"})
    Repo(tmp_path / "upstream/skins/Vector").commit({"README": "vector\n"})
    return load_settings(environ={}, overrides={"database": str(tmp_path / "tardist.sqlite3"), "source": [
        {"kind": "extensions", "type": "directory", "path": str(tmp_path / "upstream/extensions")},
        {"kind": "extensions", "type": "list", "repos": {"Echo": "https://git.example.org/r/Echo"}},
        {"kind": "skins", "type": "gerrit", "url": GERRIT, "prefix": "mediawiki/skins/"},
    ]})


def record(settings: Settings, kind: str, name: str, url: str, present: int, source: str | None) -> None:
    db = schema.open_writer(settings.database)
    try:
        with schema.write_transaction(db):
            db["repos"].insert({"kind": kind, "name": name, "repository": url, "present": present,
                                "source": source}, replace=True)
    finally:
        db.close()


def test_a_name_that_walks_out_of_the_source_folder_is_no_repository(settings, tmp_path):
    assert catalog.find(settings, None, "extensions", "Cite") == (str(tmp_path / "upstream/extensions/Cite"),
                                                                   settings.sources[0])
    # upstream/extensions/../skins/Vector is a real repository, but not one of this source.
    assert catalog.find(settings, None, "extensions", "../skins/Vector") is None
    assert catalog.by_project(settings, None, "mediawiki/extensions/../skins/Vector") is None


def test_a_url_ending_in_a_directory_sources_name_is_not_that_repository(settings, tmp_path):
    assert catalog.by_url(settings, None, [str(tmp_path / "upstream/extensions/Cite")]) == ("extensions", "Cite")
    for url in ("https://evil.example/extensions/Cite", str(tmp_path / "elsewhere/Cite"), "/Cite"):
        assert catalog.by_url(settings, None, [url]) is None, url


def test_credentials_and_the_hosts_case_do_not_tell_repositories_apart(settings):
    assert catalog.normalize_url("https://bot:s3cret@GIT.Example.org/r/Echo.git/") == "https://git.example.org/r/Echo"
    assert catalog.by_url(settings, None, ["https://bot:s3cret@GIT.Example.org/r/Echo.git/"]) == ("extensions", "Echo")
    assert catalog.by_url(settings, None, ["https://git.example.org/r/echo"]) is None  # a path's case counts


def test_a_removed_repository_is_matched_neither_by_url_nor_by_gerrit_name(settings):
    key = settings.sources[2].key
    record(settings, "skins", "Timeless", f"{GERRIT}/mediawiki/skins/Timeless", 1, key)
    record(settings, "skins", "Monobook", f"{GERRIT}/mediawiki/skins/Monobook", 0, key)
    db = schema.open_writer(settings.database)
    try:
        assert catalog.find(settings, db, "skins", "Timeless") == (f"{GERRIT}/mediawiki/skins/Timeless",
                                                                    settings.sources[2])
        assert catalog.by_url(settings, db, [f"{GERRIT}/mediawiki/skins/Timeless"]) == ("skins", "Timeless")
        assert catalog.find(settings, db, "skins", "Monobook") is None
        assert catalog.by_url(settings, db, [f"{GERRIT}/mediawiki/skins/Monobook"]) is None
    finally:
        db.close()
