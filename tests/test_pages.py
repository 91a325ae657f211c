"""The /browse pages through the Flask test client: what a person sees, cached like the API."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from helpers import extension_files, git

from tardist import schema


class Page(HTMLParser):
    """The text, links, headings and form labels of an HTML page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.links: list[str] = []
        self.headings: list[tuple[str, str]] = []
        self.labels: set[str] = set()
        self.ids: set[str] = set()
        self.text_parts: list[str] = []
        self._heading: str | None = None
        self.feed(html)
        self.text = " ".join(" ".join(self.text_parts).split())
        self.headings = [(tag, text.strip()) for tag, text in self.headings]

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and "href" in attrs:
            self.links.append(attrs["href"])
        if tag in ("h1", "h2", "h3"):
            self._heading = tag
            self.headings.append((tag, ""))
        if tag == "label":
            self.labels.add(attrs.get("for", ""))
        if "id" in attrs:
            self.ids.add(attrs["id"])

    def handle_endtag(self, tag):
        if tag == self._heading:
            self._heading = None

    def handle_data(self, data):
        self.text_parts.append(data)
        if self._heading:
            tag, text = self.headings[-1]
            self.headings[-1] = (tag, " ".join((text + data).split()) + (" " if data.endswith(" ") else ""))


def days_ago(n: int) -> str:
    return (datetime.now(UTC).date() - timedelta(days=n)).isoformat()


@pytest.fixture
def site(deployment, upstream):
    """Cite (German too, two branches, downloads), Echo, Broken manifest, a skin."""
    cite = upstream("Cite", files={**extension_files("Cite"), "i18n/de.json": json.dumps({"cite-desc": "Fußnoten"})})
    git(cite.path, "branch", "REL1_45")
    upstream("Echo", files={**extension_files("Echo"),
                            "i18n/en.json": json.dumps({"echo-desc": "Notifications for wiki users"})})
    upstream("BadManifest", files={"extension.json": json.dumps({"name": 5, "description": "Odd one"})})
    upstream("Vector", kind="skins", files={"skin.json": json.dumps({"name": "Vector", "description": "A skin"})})
    deployment.sync()
    db = schema.open_writer(deployment.settings().database)
    with db.atomic():
        db["downloads"].insert_all([
            {"kind": "extensions", "name": "Echo", "branch": "master", "day": days_ago(1), "count": 5},
            {"kind": "extensions", "name": "Cite", "branch": "master", "day": days_ago(2), "count": 3},
            {"kind": "extensions", "name": "Cite", "branch": "REL1_45", "day": days_ago(10), "count": 1},
            {"kind": "extensions", "name": "Cite", "branch": "master", "day": days_ago(200), "count": 50}])
    db.close()
    return deployment


def html(client, url: str, status: int = 200, **headers) -> Page:
    response = client.get(url, headers=headers)
    assert response.status_code == status, response.data[:300]
    assert response.content_type == "text/html; charset=utf-8"
    return Page(response.get_data(as_text=True))


def test_browse_lists_every_kind_with_descriptions_and_a_labelled_search(site):
    page = html(site.app().test_client(), "/browse")
    assert ("h1", "Browse extensions and skins") in page.headings
    assert [h for tag, h in page.headings if tag == "h2"] == ["Extensions (3)", "Skins (1)"]
    assert "Notifications for wiki users" in page.text and "A skin" in page.text
    assert {"q", "sort"} <= page.labels and {"q", "sort"} <= page.ids
    assert "/browse/extensions/Cite" in page.links and "/browse/skins/Vector" in page.links


def test_search_matches_words_of_names_and_descriptions(site):
    client = site.app().test_client()
    found = html(client, "/browse?q=notifications+WIKI")
    assert [h for tag, h in found.headings if tag == "h3"] == ["Echo"] and "1 found" in found.text
    assert [h for tag, h in html(client, "/browse/extensions?q=cit").headings if tag == "h3"] == ["Cite"]
    assert "0 found" in html(client, "/browse?q=nothing-like-this").text


def test_sort_by_downloads_in_the_last_30_days(site):
    client = site.app().test_client()
    page = html(client, "/browse/extensions?sort=downloads")
    assert [h for tag, h in page.headings if tag == "h3"] == ["Echo", "Cite", "BadManifest"]
    assert "5 downloads in 30 days" in page.text and "4 downloads in 30 days" in page.text
    by_name = [h for tag, h in html(client, "/browse/extensions").headings if tag == "h3"]
    assert by_name == sorted(by_name, key=str.lower)
    assert client.get("/list/extensions?sort=downloads").get_json()["extensions"][:2] == ["Echo", "Cite"]
    for url in ("/browse?sort=size", "/list/extensions?sort=size"):
        response = client.get(url)
        assert response.status_code == 400 and response.get_json()["error"]["status"] == 400


def test_repository_page_shows_facts_branches_downloads_and_chart(site):
    client = site.app().test_client()
    info = client.get("/info/extensions/Cite").get_json()
    page = html(client, "/browse/extensions/Cite")
    for text in ("The Cite extension", "GPL-2.0-or-later", "Ada, Grace", "https://example.org/Cite",
                 info["branches"]["master"]["sha256"], info["branches"]["REL1_45"]["sha7"], "MediaWiki >= 1.45.0"):
        assert text in page.text, text
    assert "/download/extensions/Cite/master" in page.links and "/download/extensions/Cite/REL1_45" in page.links
    assert "git clone" not in page.text  # a directory source: no path of this server is shown
    body = client.get("/browse/extensions/Cite").get_data(as_text=True)
    svg = re.search(r"<svg .*?</svg>", body, re.S).group(0)
    assert 'role="img"' in svg and "<title" in svg and "<desc" in svg and svg.count("<polyline") == 2
    assert "4 downloads in all; master: 3; REL1_45: 1" in " ".join(svg.split())
    assert "Downloads per branch (the chart in numbers)" in page.text
    bad = html(client, "/browse/extensions/BadManifest")
    assert "Problems in its manifest" in bad.text and "extension.json: name: 5 is not of type 'string'" in bad.text
    assert "No downloads counted from" in bad.text
    assert "<svg" not in client.get("/browse/extensions/BadManifest").get_data(as_text=True)


def test_pages_in_the_readers_language(site):
    client = site.app().test_client()
    assert "Fußnoten" in html(client, "/browse/extensions/Cite?uselang=de-at").text
    assert "Fußnoten" in html(client, "/browse/extensions/Cite", **{"Accept-Language": "de-CH,de;q=0.9"}).text
    assert "The Cite extension" in html(client, "/browse/extensions/Cite", **{"Accept-Language": "fr"}).text
    assert "Fußnoten" in html(client, "/browse?uselang=de").text
    listing = client.get("/browse?q=fußnoten&uselang=de").get_data(as_text=True)
    assert 'lang="de"' in listing and "/browse/extensions/Cite?uselang=de" in listing
    assert client.get("/browse?uselang=qqq").status_code == 400


def test_pages_have_etags_and_answer_304(site):
    client = site.app().test_client()
    for url in ("/browse", "/browse/skins", "/browse/extensions/Cite?uselang=de"):
        first = client.get(url)
        assert first.headers["Vary"] == "Accept-Language" and first.headers["Cache-Control"].startswith("public")
        again = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
        assert again.status_code == 304 and again.data == b""


def test_unknown_pages_are_404(site):
    client = site.app().test_client()
    for url in ("/browse/nope", "/browse/extensions/Nope", "/browse/extensions/..", "/browse/NOPE/Cite"):
        assert client.get(url).status_code == 404, url


def test_browsers_are_sent_to_browse_and_clients_get_json(site):
    client = site.app().test_client()
    browser = client.get("/", headers={"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"})
    assert browser.status_code == 302 and browser.headers["Location"] == "/browse"
    assert browser.headers["Vary"] == "Accept"
    for accept in ("*/*", "application/json", "application/json, text/html;q=0.5", None):
        answer = client.get("/", headers={"Accept": accept} if accept else {})
        assert answer.status_code == 200 and answer.get_json()["service"] == "tardist", accept
        assert answer.headers["Vary"] == "Accept"


HOSTILE_HOMEPAGES = {"Js": "javascript:alert(document.domain)//", "Spaced": " JaVaScRiPt:alert(document.domain)//",
                     "Tabbed": "java\tscript:alert(document.domain)//",
                     "Data": "data:text/html,<script>alert(1)</script>",
                     "Slashless": "https:/\\evil.example/", "Vb": "vbscript:msgbox(1)"}


@pytest.mark.slow
def test_only_http_homepages_become_links_and_info_gives_null_with_a_warning(deployment, upstream):
    for name, url in {**HOSTILE_HOMEPAGES, "Good": "https://www.mediawiki.org/wiki/Extension:Good"}.items():
        upstream(name, files={"extension.json": json.dumps({"name": name, "url": url})})
    deployment.sync()
    client = deployment.app().test_client()
    for name in HOSTILE_HOMEPAGES:
        info = client.get(f"/info/extensions/{name}").get_json()
        assert info["url"] is None, name
        assert any("url: not an http: or https: URL" in e for e in info["branches"]["master"]["manifest_errors"])
        page = html(client, f"/browse/extensions/{name}")
        assert not [link for link in page.links if "script" in link.lower() or link.startswith(("data:", "https:/\\"))]
    good = html(client, "/browse/extensions/Good")
    assert "https://www.mediawiki.org/wiki/Extension:Good" in good.links
    assert client.get("/info/extensions/Good").get_json()["url"] == "https://www.mediawiki.org/wiki/Extension:Good"


def test_every_answer_carries_the_security_headers(site):
    client = site.app().test_client()
    for url, status in (("/browse", 200), ("/browse/extensions/Cite", 200), ("/list", 200), ("/info/extensions", 200),
                        ("/info/extensions/Nope", 404), ("/browse/nope", 404), ("/browse?sort=x", 400),
                        ("/openapi.json", 200), ("/download/extensions/Cite/master", 302)):
        response = client.get(url)
        assert response.status_code == status, url
        assert response.headers["X-Content-Type-Options"] == "nosniff", url
        assert response.headers["Referrer-Policy"] == "no-referrer", url
        policy = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy, url
        assert "script-src" not in policy and "unsafe" not in policy, url
        if url.startswith("/browse") and status == 200:
            body = response.get_data(as_text=True)
            assert "<script" not in body and " style=" not in body, url
            [style] = re.findall(r"<style>(.*?)</style>", body, re.S)
            digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
            assert f"style-src 'sha256-{digest}'" in policy, url
