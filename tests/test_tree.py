"""Tree reading: submodule URLs resolved and checked before git ever sees them."""

from __future__ import annotations

import pytest

from worker.tree import refused_submodule_url, resolve_submodule_url

ALL = ("https", "http", "git", "ssh")


@pytest.mark.parametrize("parent, url, expected", [
    ("https://gerrit.example.org/r/mediawiki/extensions/VisualEditor", "../../lib/ooui",
     "https://gerrit.example.org/r/mediawiki/lib/ooui"),
    ("https://gerrit.example.org/r/mediawiki/extensions/VisualEditor/", "./lib",
     "https://gerrit.example.org/r/mediawiki/extensions/VisualEditor/lib"),
    ("/srv/git/extensions/VisualEditor", "../Lib", "/srv/git/extensions/Lib"),
    ("git@host:ext/VisualEditor", "../Lib", "git@host:ext/Lib"),
    ("https://example.org/a", "https://other.example.org/b", "https://other.example.org/b"),
])
def test_relative_submodule_urls_resolve_against_the_parent_remote(parent, url, expected):
    assert resolve_submodule_url(parent, url) == expected


@pytest.mark.parametrize("url, allowed", [
    ("https://example.org/lib.git", True),
    ("git://example.org/lib.git", True),
    ("git@example.org:lib.git", True),
    ("ssh://example.org/lib.git", True),
    ("git+ssh://example.org/lib.git", True),
    ("file:///srv/git/lib.git", False),
    ("/srv/git/lib.git", False),
    ("../lib.git", False),
    ("ext::sh -c touch% /tmp/pwned", False),
    ("fd::17", False),
    ("-u touch /tmp/pwned", False),
    ("--upload-pack=touch /tmp/pwned", False),
    ("https://example.org/\nlib", False),
])
def test_submodule_transports_are_limited_to_the_configured_ones(url, allowed):
    assert (refused_submodule_url(url, ALL) is None) is allowed


def test_file_transport_only_when_configured():
    assert refused_submodule_url("/srv/git/lib.git", ("file",)) is None
    assert "transport 'file'" in refused_submodule_url("/srv/git/lib.git", ALL)
    assert refused_submodule_url("-x", ("file",)) == "refusing URL '-x'"
