"""Descriptions as a reader sees them: real extension messages, and hostile ones that stay text."""

from __future__ import annotations

import json

import pytest
from browsing import screenshot
from helpers import extension_files
from serving import start_gunicorn

from loopback.gitdaemon import free_port, stop
from tardist.wikitext import to_segments, to_text

REAL = {  # the English descriptionmsg texts of real extensions
    "Cite": ("Adds <code>&lt;ref></code> and <code>&lt;references></code> tags for citations",
             "Adds <ref> and <references> tags for citations",
             [("Adds ", False), ("<ref>", True), (" and ", False), ("<references>", True),
              (" tags for citations", False)]),
    "Gadgets": ("Lets users select custom [[Special:Gadgets|CSS and JavaScript gadgets]] in their "
                "[[Special:Preferences#mw-prefsection-gadgets|preferences]]",
                "Lets users select custom CSS and JavaScript gadgets in their preferences", None),
    "VisualEditor": ("Visual editor for MediaWiki", "Visual editor for MediaWiki", None),
    "SyntaxHighlight": ("Provides syntax highlighting <code>&lt;syntaxhighlight&gt;</code> using "
                        "[https://pygments.org/ Pygments]",
                        "Provides syntax highlighting <syntaxhighlight> using Pygments", None),
    "Math": ("Render mathematical formulas between <code>&lt;math&gt;</code> ... <code>&lt;/math&gt;</code> tags",
             "Render mathematical formulas between <math> ... </math> tags", None),
    "Bold": ("'''Very''' ''simple'' [[:Category:Tools]], [[Help:Links]], users' pages{{PLURAL:$1|x|y}}",
             "Very simple Category:Tools, Help:Links, users' pages", None),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_descriptions_read_as_a_wiki_shows_them(name):
    source, text, segments = REAL[name]
    assert to_text(source) == text
    if segments is not None:
        assert to_segments(source) == segments


HOSTILE = [
    ("<script>alert(1)</script>Safe", "Safe"),
    ("[javascript:alert(1) x]", "[javascript:alert(1) x]"),  # not a URL protocol a wiki links: left as typed
    ("[[a|[[b|c]]]] d", "c d"),
    ("[[[[[[x]]]]]]", "x"),
    ("<b unclosed", "<b unclosed"),
    ("<img src=x onerror=alert(1)>text", "text"),
    ("<span onclick='x'>hi</span>", "hi"),
    ("&amp;lt;script&amp;gt;", "&lt;script&gt;"),  # decoded once, not twice
    ("&lt;script&gt;alert(1)&lt;/script&gt;", "<script>alert(1)</script>"),  # text about a tag, not a tag
    ("{{ <code>x }} </code> y", "y"),
    ("<!-- hidden", ""),
    ("a<ref>note</ref>b", "ab"),
    ("{{a{{b}}c}}visible", "visible"),
    ("\ue000code?\ue001", "code?"),
    ("x" * 20_000, "x" * 10_000),
    ("[[Help:Links|]] and [[Help:Links| ]]", "Help:Links and Help:Links"),
]


@pytest.mark.parametrize("source, text", HOSTILE)
def test_hostile_descriptions_become_plain_text(source, text):
    assert to_text(source) == text


def test_a_code_mark_whose_pair_a_template_swallowed_makes_nothing_code():
    assert to_segments("{{ <code>x }} </code> y <code>z</code>") == [("y ", False), ("z", True)]
    assert to_segments("<code>a {{b</code>}} c") == [("a c", True)]  # code to the end: text all the same


def test_none_stays_none():
    assert to_text(None) is None


def test_info_gives_the_source_and_the_text_and_pages_show_only_text(deployment, upstream):
    cite = extension_files("Cite", descriptionmsg="cite-desc")
    cite["i18n/en.json"] = json.dumps({"cite-desc": REAL["Cite"][0]})
    cite["i18n/de.json"] = json.dumps({"cite-desc": "Ergänzt [[Special:Version|Tags]] <script>x()</script>für"})
    upstream("Cite", files=cite)
    evil = extension_files("Evil", descriptionmsg="evil-desc")
    evil["i18n/en.json"] = json.dumps({"evil-desc": "<script>alert(1)</script>[javascript:alert(1) x] "
                                                    "<img src=x onerror=alert(2)> &lt;b&gt;bold&lt;/b&gt; "
                                                    "<code>&lt;script>alert(3)&lt;/script></code>"})
    upstream("Evil", files=evil)
    deployment.sync()
    client = deployment.app().test_client()
    info = client.get("/info/extensions/Cite").get_json()
    assert info["description"] == REAL["Cite"][0] and info["description_text"] == REAL["Cite"][1]
    german = client.get("/info/extensions/Cite?uselang=de").get_json()
    assert (german["description"], german["description_text"], german["description_lang"]) == (
        "Ergänzt [[Special:Version|Tags]] <script>x()</script>für", "Ergänzt Tags für", "de")
    listed = client.get("/info/extensions?uselang=de").get_json()["extensions"]
    assert listed["Cite"]["description_text"] == "Ergänzt Tags für"
    assert listed["Evil"]["description_text"] == "[javascript:alert(1) x] <b>bold</b> <script>alert(3)</script>"
    published = json.loads((deployment.settings().published / "info/extensions/Cite.json").read_text())
    assert published["description_text"] == REAL["Cite"][1]
    page = client.get("/browse/extensions/Cite").get_data(as_text=True)
    assert "Adds <code>&lt;ref&gt;</code> and <code>&lt;references&gt;</code> tags for citations" in page
    evil_page = client.get("/browse/extensions/Evil").get_data(as_text=True)
    assert ("[javascript:alert(1) x] &lt;b&gt;bold&lt;/b&gt; <code>&lt;script&gt;alert(3)&lt;/script&gt;</code>"
            in evil_page)
    assert "<code>&lt;script&gt;alert(3)" in client.get("/browse/extensions").get_data(as_text=True)
    for markup in ("<script>alert", "<img", "onerror", "href=\"javascript"):
        assert markup not in evil_page
    assert "[[" not in client.get("/browse").get_data(as_text=True)
    found = client.get("/browse?q=references").get_data(as_text=True)
    assert "/browse/extensions/Cite" in found and "/browse/extensions/Evil" not in found
    assert "/browse/extensions/Cite" not in client.get("/browse?q=code").get_data(as_text=True)  # markup, not text


@pytest.mark.browser
@pytest.mark.nginx
def test_chromium_shows_real_and_hostile_descriptions_as_text(deployment, upstream, tmp_path, browser):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    messages = {name: source for name, (source, _text, _segments) in REAL.items()}
    messages["Evil"] = "<script>alert(1)</script>[javascript:alert(1) x] [[a|[[b]]]] <img src=x onerror=alert(2)>"
    for name, source in messages.items():
        files = extension_files(name, descriptionmsg=f"{name.lower()}-desc")
        files["i18n/en.json"] = json.dumps({f"{name.lower()}-desc": source})
        upstream(name, files=files)
    deployment.sync()
    port = free_port()
    server = start_gunicorn(deployment, port, tmp_path / "gunicorn.log")
    try:
        browser.get(f"http://127.0.0.1:{port}/browse/extensions")
        shown = {item.find_element(By.TAG_NAME, "h3").text: item.find_element(By.CSS_SELECTOR, "p").text
                 for item in browser.find_elements(By.CSS_SELECTOR, "ul.repos li")}
        assert shown == {name: to_text(source) for name, source in messages.items()}
        assert [code.text for code in browser.find_elements(By.CSS_SELECTOR, "ul.repos code")][:2] == [
            "<ref>", "<references>"]
        screenshot(browser, tmp_path, "descriptions")
        for name in ("Gadgets", "Evil"):
            browser.get(f"http://127.0.0.1:{port}/browse/extensions/{name}")
            assert browser.find_element(By.CSS_SELECTOR, "p.description").text == to_text(messages[name])
            assert browser.find_elements(By.CSS_SELECTOR, "main script, main img, main a[href^=javascript]") == []
            with pytest.raises(NoAlertPresentException):
                browser.switch_to.alert.accept()
        screenshot(browser, tmp_path, "evil")
    finally:
        stop(server)
