"""A real MediaWiki (Debian's 1.39) with ExtensionDistributor REL1_39, configured as docs/api.md says, in front of
tardist served by real gunicorn and nginx: its API and its special page link to tarballs that download."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

import pytest
from helpers import Deployment, git
from serving import (
    HOST,
    NGINX,
    Answer,
    fetch,
    free_port,
    render_site,
    running_nginx,
    site_values,
    start_gunicorn,
)

from loopback.gitdaemon import stop

ROOT = Path(__file__).resolve().parents[1]
MEDIAWIKI = Path("/usr/share/mediawiki")
PHP = shutil.which("php")
EXTDIST = Path(os.environ.get("TARDIST_EXTDIST_SOURCE") or "/srv/tardist-test/ExtensionDistributor")
BRANCHES = ["master", "REL1_45", "REL1_44", "REL1_43", "REL1_39"]  # tardist's default `branches`

pytestmark = [
    pytest.mark.skipif(not (MEDIAWIKI / "maintenance/install.php").is_file() or not PHP,
                       reason="MediaWiki is not installed (Debian: apt install mediawiki php-sqlite3; "
                              "./scripts/test installs it)"),
    pytest.mark.skipif(not os.access(NGINX, os.X_OK),
                       reason="nginx is not installed (Debian: apt install nginx-light)"),
    pytest.mark.skipif(not (EXTDIST / "extension.json").is_file(),
                       reason="ExtensionDistributor's source is not packaged in Debian and cannot be downloaded "
                              f"here: put a copy of its REL1_39 branch at {EXTDIST} or set TARDIST_EXTDIST_SOURCE"),
    pytest.mark.nginx,
]


def readme_localsettings() -> str:
    """The PHP block of docs/api.md's ExtensionDistributor section, as an operator pastes it into LocalSettings.php."""
    section = (ROOT / "docs/api.md").read_text().split("## ExtensionDistributor\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```php\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "one LocalSettings.php block"
    return blocks[0]


class Forms(HTMLParser):
    """The forms of a page, with their fields as a browser without JavaScript submits them."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self.select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Collect form, input, select and option tags."""
        attr = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attr.get("action") or "", "method": (attr.get("method") or "get").lower(),
                               "fields": {}, "options": {}})
        elif not self.forms:
            return
        elif tag == "input" and attr.get("name") and attr.get("type") not in ("submit", "button"):
            self.forms[-1]["fields"][attr["name"]] = attr.get("value") or ""
        elif tag == "select":
            self.select = attr.get("name")
            self.forms[-1]["options"][self.select] = []
        elif tag == "option" and self.select:
            self.forms[-1]["options"][self.select].append(attr.get("value") or "")
            if "selected" in attr:
                self.forms[-1]["fields"][self.select] = attr.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        """A select ends."""
        if tag == "select":
            self.select = None


def page_forms(html: bytes) -> list[dict]:
    """The forms of an HTML page."""
    parser = Forms()
    parser.feed(html.decode())
    return parser.forms


@dataclass
class Wiki:
    """The wiki on php -S, tardist behind nginx, and the deployment behind both."""

    port: int
    tardist_port: int
    deployment: Deployment

    def get(self, path: str) -> Answer:
        """GET a path of the wiki."""
        return fetch(self.port, path)

    def submit(self, page: str, form: dict, **choices: str) -> Answer:
        """Submit a form of page as a browser does: its fields, with choices picked among a select's options."""
        fields = dict(form["fields"])
        for name, value in choices.items():
            assert value in form["options"][name], (name, value, form["options"])
            fields[name] = value
        action = urljoin(page, form["action"])
        assert form["method"] == "get", form
        return self.get(urlsplit(action).path + "?" + urlencode(fields))  # a GET form replaces the query

    def tarball(self, url: str) -> Answer:
        """Download a link the wiki gave, which must point at tardist's nginx."""
        parts = urlsplit(url)
        assert (parts.scheme, parts.hostname, parts.port) == ("http", HOST, self.tardist_port), url
        return fetch(self.tardist_port, parts.path)


@contextlib.contextmanager
def tardist_behind_nginx(deployment: Deployment, tmp: Path) -> Iterator[int]:
    """gunicorn and nginx with deploy/nginx.conf serving the deployment; yield nginx's port."""
    api_port, web_port = free_port(), free_port()
    gunicorn = start_gunicorn(deployment, api_port, tmp / "gunicorn.log")
    try:
        nginx_dir = tmp / "nginx"
        site = render_site(site_values(deployment, nginx_dir, web_port, api_port))
        with running_nginx(nginx_dir, {"tardist.conf": site}, (web_port,)):
            yield web_port
    finally:
        stop(gunicorn)


def install_wiki(tmp: Path, port: int, tardist: str) -> dict[str, str]:
    """install.php into tmp (SQLite), ExtensionDistributor cloned from a local git copy and configured with
    docs/api.md's block; return the environment that makes /usr/share/mediawiki run this wiki."""
    origin = tmp / "ExtensionDistributor.git"
    shutil.copytree(EXTDIST, origin, ignore=shutil.ignore_patterns(".git"))
    git(origin, "init", "-q", "-b", "REL1_39")
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "ExtensionDistributor REL1_39")
    extension = tmp / "extensions/ExtensionDistributor"
    git(tmp, "clone", "-q", "--branch", "REL1_39", str(origin), str(extension))

    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}  # the wiki reaches tardist directly
    install = subprocess.run([PHP, MEDIAWIKI / "maintenance/install.php", "--dbtype=sqlite",
                              f"--dbpath={tmp / 'data'}", "--dbname=wiki", f"--server=http://{HOST}:{port}",
                              "--scriptpath=", f"--confpath={tmp}", "--pass=tardist-test-password", "Wiki", "Admin"],
                             capture_output=True, text=True, timeout=120, env=env, cwd=tmp)
    assert install.returncode == 0, install.stdout + install.stderr
    block = readme_localsettings()
    assert "wfLoadExtension( 'ExtensionDistributor' );" in block
    block = block.replace("wfLoadExtension( 'ExtensionDistributor' );",
                          f"wfLoadExtension( 'ExtensionDistributor', '{extension}/extension.json' );")
    with open(tmp / "LocalSettings.php", "a") as settings:
        settings.write(f"\n$wgCacheDirectory = '{tmp / 'cache'}';\n$wgShowExceptionDetails = true;\n"
                       + block.replace("https://tardist.example.org", tardist))
    return {**env, "MW_CONFIG_FILE": str(tmp / "LocalSettings.php")}


@pytest.fixture(scope="module")
def wiki(module_tmp, module_upstream, module_deployment) -> Iterator[Wiki]:
    """Sync Cite (master, REL1_45, REL1_39) and the Vector skin; serve tardist behind nginx, and a freshly
    installed wiki on php -S."""
    tmp, deployment = module_tmp, module_deployment
    cite = module_upstream("Cite")
    git(cite.path, "branch", "REL1_39")
    cite.commit({"README.md": "# Cite, newer\n"})
    git(cite.path, "branch", "REL1_45")
    module_upstream("Vector", kind="skins", files={"skin.json": json.dumps({"name": "Vector", "type": "skin"})})
    deployment.write_config(branches=BRANCHES)
    deployment.sync()
    with tardist_behind_nginx(deployment, tmp) as tardist_port:
        port = free_port()
        env = install_wiki(tmp / "wiki", port, f"http://{HOST}:{tardist_port}")
        log = tmp / "php.log"
        with open(log, "wb") as out:
            php = subprocess.Popen([PHP, "-S", f"{HOST}:{port}", "-t", str(MEDIAWIKI)], env=env, cwd=tmp,
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    fetch(port, "/api.php")
                    break
                except OSError:
                    assert php.poll() is None and time.monotonic() < deadline, log.read_text()
                    time.sleep(0.1)
            yield Wiki(port, tardist_port, deployment)
        finally:
            stop(php)


def expected_tarballs(wiki: Wiki, kind: str, name: str) -> dict[str, str]:
    """Branch -> tarball file name, as tardist's /info says."""
    info = fetch(wiki.tardist_port, f"/info/{kind}/{name}").json()
    return {branch: facts["tarball"] for branch, facts in info["branches"].items()}


def test_the_wiki_api_links_every_branch_to_a_tarball_that_downloads(wiki):
    answer = wiki.get("/api.php?" + urlencode({"action": "query", "list": "extdistbranches", "format": "json",
                                               "edbexts": "Cite", "edbskins": "Vector"}))
    assert answer.status == 200, answer.body
    assert "error" not in answer.json() and "warnings" not in answer.json(), answer.json()
    found = answer.json()["query"]["extdistbranches"]
    cite = expected_tarballs(wiki, "extensions", "Cite")
    assert sorted(cite) == ["REL1_39", "REL1_45", "master"] and cite["master"] != cite["REL1_39"]
    for kind, name, expected in (("extensions", "Cite", cite),
                                 ("skins", "Vector", expected_tarballs(wiki, "skins", "Vector"))):
        links = found[kind][name]
        assert sorted(links) == sorted(expected), links
        for branch, url in links.items():
            assert url.rsplit("/", 1)[1] == expected[branch]
            tarball = wiki.tarball(url)
            assert tarball.status == 200 and tarball.headers["content-type"] == "application/gzip", url
            assert tarball.body[:2] == b"\x1f\x8b"


def test_the_wiki_lists_tardists_repositories(wiki):
    answer = wiki.get("/api.php?action=query&list=extdistrepos&format=json").json()
    assert "error" not in answer, answer
    assert answer["query"]["extdistrepos"] == {"extensions": ["Cite"], "skins": ["Vector"]}


@pytest.mark.parametrize("branch", ["REL1_45", "REL1_39", "master"])
def test_the_special_page_form_downloads_each_branch(wiki, branch):
    start = "/index.php/Special:ExtensionDistributor"
    page = wiki.get(start)
    assert page.status == 200, page.body
    [chooser] = [form for form in page_forms(page.body) if "extdistname" in form["options"]]
    assert chooser["options"]["extdistname"] == ["", "Cite"]
    versions = wiki.submit(start, chooser, extdistname="Cite")
    assert versions.status == 200, versions.body
    [picker] = [form for form in page_forms(versions.body) if "extdistversion" in form["options"]]
    assert picker["options"]["extdistversion"] == ["master", "REL1_45", "REL1_39"], "in docs/api.md's order"
    assert picker["fields"]["extdistversion"] == "REL1_45", "docs/api.md's $wgExtDistDefaultSnapshot, preselected"
    done = wiki.submit(start, picker, **({} if branch == "REL1_45" else {"extdistversion": branch}))
    assert done.status == 200, done.body
    name = expected_tarballs(wiki, "extensions", "Cite")[branch]
    url = f"http://{HOST}:{wiki.tardist_port}/dist/extensions/{name}"
    assert done.headers["refresh"] == f"5;url={url}"
    assert f'href="{url}"' in done.body.decode() and f"tar -xzf {name} " in done.body.decode()
    tarball = wiki.tarball(url)
    assert tarball.status == 200 and tarball.body[:2] == b"\x1f\x8b"
