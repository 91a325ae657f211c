"""Listing repositories: directory, list and Gerrit sources (Gerrit as a real local HTTP server)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from loopback.servers import closed_port
from tardist.settings import SettingsError, load_settings
from worker.sources import Repo, list_repos

GERRIT_PROJECTS = {
    "mediawiki/extensions/Cite": {"id": "mediawiki%2Fextensions%2FCite", "state": "ACTIVE"},
    "mediawiki/extensions/Echo": {"id": "mediawiki%2Fextensions%2FEcho"},
    "mediawiki/extensions/Archived": {"id": "x", "state": "READ_ONLY"},
    "mediawiki/extensions/Wikibase/lib": {"id": "nested"},
    "mediawiki/extensions/Bad Name": {"id": "spaces"},
}


@pytest.fixture
def gerrit():
    """A local HTTP server answering /r/projects/?p=... the way Gerrit does; yields its base URL."""
    asked = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            asked.append(url.path + "?" + url.query)
            if url.path != "/r/projects/":
                self.send_error(404)
                return
            prefix = parse_qs(url.query).get("p", [""])[0]
            body = {name: facts for name, facts in GERRIT_PROJECTS.items() if name.startswith(prefix)}
            data = (")]}'\n" + json.dumps(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/r", asked
    server.shutdown()
    server.server_close()


def settings_with(tmp_path, sources: str):
    config = tmp_path / "tardist.toml"
    config.write_text(sources)
    return load_settings(config, environ={})


def test_gerrit_source_takes_active_projects_one_level_below_the_prefix(tmp_path, gerrit):
    base, asked = gerrit
    settings = settings_with(tmp_path, f'[[source]]\nkind = "extensions"\ntype = "gerrit"\n'
                                       f'url = "{base}"\nprefix = "mediawiki/extensions/"\n')
    warnings: list[str] = []
    repos = list_repos(settings, warnings).repos
    cite, echo = f"{base}/mediawiki/extensions/Cite", f"{base}/mediawiki/extensions/Echo"
    assert repos == [Repo("extensions", "Cite", cite, cite), Repo("extensions", "Echo", echo, echo)]
    assert asked == ["/r/projects/?p=mediawiki%2Fextensions%2F&b=master&b=REL1_45&b=REL1_44&b=REL1_43&b=REL1_39"]
    assert warnings == ["source[0]: skipped 'Bad Name': not a plain repository name"]


def test_a_gerrit_that_cannot_be_listed_costs_only_its_own_source(tmp_path, gerrit, upstream):
    base, _ = gerrit
    upstream("Cite")
    settings = settings_with(tmp_path, f'[[source]]\nkind = "skins"\ntype = "gerrit"\n'
                                       f'url = "{base}/missing"\nprefix = "mediawiki/skins/"\n'
                                       f'[[source]]\nkind = "skins"\ntype = "gerrit"\n'
                                       f'url = "http://127.0.0.1:{closed_port()}/r"\nprefix = "mediawiki/skins/"\n'
                                       f'[[source]]\nkind = "extensions"\ntype = "directory"\n'
                                       f'path = "{tmp_path}/upstream/extensions"\n')
    warnings: list[str] = []
    listing = list_repos(settings, warnings)
    assert [repo.name for repo in listing.repos] == ["Cite"]
    assert list(listing.unlisted) == [0, 1]
    assert warnings[0].startswith(f"source[0] (skins) cannot be listed: cannot list Gerrit projects at {base}/missing")
    assert "HTTP Error 404" in warnings[0] and "Connection refused" in warnings[1]
    assert warnings[1].endswith("its repositories were not synced and keep what they have")


@pytest.mark.slow
def test_a_source_that_cannot_be_listed_keeps_its_repositories_and_the_run_goes_on(deployment, upstream, tmp_path):
    cite = upstream("Cite")
    upstream("Vector", kind="skins", files={"skin.json": json.dumps({"name": "Vector"})})
    deployment.sync()
    client = deployment.app().test_client()
    vector = client.get("/info/skins/Vector").get_json()
    (tmp_path / "upstream/skins").rename(tmp_path / "unmounted")  # the folder is gone
    new_head = cite.commit({"README.md": "news\n"})
    result = deployment.sync(check=False)
    assert result.returncode == 1
    summary = deployment.summary(result)
    assert (summary["built"], summary["failed"], summary["unlisted_sources"]) == (1, 0, 1)
    assert client.get("/info/extensions/Cite").get_json()["branches"]["master"]["commit"] == new_head
    assert client.get("/list/skins").get_json() == {"skins": ["Vector"]}, "nothing is marked removed"
    assert client.get("/info/skins/Vector").get_json() == vector
    assert (deployment.root / "tarballs/skins" / vector["branches"]["master"]["tarball"]).is_file()
    [run] = json.loads(deployment.cli("status").stdout)["runs"][:1]
    assert run["status"] == "failed"
    assert f"source[1] (skins) cannot be listed: {tmp_path}/upstream/skins is not a folder" in run["warnings"][0]
    assert "cannot be listed" in result.stderr


def test_directory_source_lists_bare_and_working_repositories(tmp_path, upstream):
    upstream("Cite")
    bare = tmp_path / "upstream/extensions/Echo.git"
    bare.mkdir()
    (bare / "HEAD").write_text("ref: refs/heads/master\n")
    (tmp_path / "upstream/extensions/not-a-repo").mkdir()
    (tmp_path / "upstream/extensions/-rf").mkdir()
    (tmp_path / "upstream/extensions/-rf/.git").mkdir()
    settings = settings_with(tmp_path, f'[[source]]\nkind = "extensions"\ntype = "directory"\n'
                                       f'path = "{tmp_path}/upstream/extensions"\n')
    warnings: list[str] = []
    names = [repo.name for repo in list_repos(settings, warnings).repos]
    assert names == ["Cite", "Echo"]
    assert warnings == ["source[0]: skipped '-rf': not a plain repository name"]


def test_first_source_wins_a_name(tmp_path, upstream):
    upstream("Cite")
    settings = settings_with(tmp_path, f'[[source]]\nkind = "extensions"\ntype = "list"\n'
                                       f'repos = {{ Cite = "https://example.org/Cite" }}\n'
                                       f'[[source]]\nkind = "extensions"\ntype = "directory"\n'
                                       f'path = "{tmp_path}/upstream/extensions"\n')
    warnings: list[str] = []
    assert list_repos(settings, warnings).repos == [Repo("extensions", "Cite", "https://example.org/Cite",
                                                         "https://example.org/Cite")]
    assert warnings == ["source[1]: skipped extensions/Cite: an earlier source has it"]


def test_public_url_is_the_template_else_the_clone_url_and_never_a_server_path(tmp_path, upstream):
    upstream("Cite")
    upstream("Vector", kind="skins")
    settings = settings_with(tmp_path, f'[[source]]\nkind = "extensions"\ntype = "directory"\n'
                                       f'path = "{tmp_path}/upstream/extensions"\n'
                                       f'[[source]]\nkind = "skins"\ntype = "directory"\n'
                                       f'path = "{tmp_path}/upstream/skins"\n'
                                       f'public_url = "https://git.example.org/skins/{{name}}.git"\n'
                                       f'[[source]]\nkind = "apps"\ntype = "list"\n'
                                       f'repos = {{ App = "https://example.org/App" }}\n')
    shown = {repo.name: repo.public_url for repo in list_repos(settings, []).repos}
    assert shown == {"App": "https://example.org/App", "Cite": None,
                     "Vector": "https://git.example.org/skins/Vector.git"}


def test_public_url_must_be_a_template_with_name(tmp_path):
    for bad in ('"https://example.org/fixed"', "5"):
        with pytest.raises(SettingsError, match=r"source\[0\]: key 'public_url': expected a URL template"):
            settings_with(tmp_path, f'[[source]]\nkind = "apps"\ntype = "list"\nrepos = {{}}\npublic_url = {bad}\n')
