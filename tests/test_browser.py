"""The /browse pages as a person uses them: headless Chromium (Selenium) against real gunicorn."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from browsing import needs_chromium, screenshot
from helpers import Deployment, extension_files, git
from serving import free_port, start_gunicorn

from loopback.gitdaemon import stop

HOST = "127.0.0.1"
pytestmark = [needs_chromium, pytest.mark.browser, pytest.mark.nginx]
pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402  (after the skip: selenium is a test extra)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# Homepages (extension.json's "url") that would run script if they became links, and authors that try to be links.
HOSTILE_HOMEPAGES = {"JsUrl": "javascript:alert(document.domain)//", "MixedCaseUrl": " JaVaScRiPt:alert(1)",
                     "TabUrl": "java\tscript:alert(1)", "DataUrl": "data:text/html,<script>alert(1)</script>"}
HOSTILE_AUTHORS = ["[javascript:alert(1) Mallory]", '<a href="javascript:alert(2)">Eve</a>']


@pytest.fixture(scope="module")
def site(module_tmp, module_upstream, module_deployment):
    """A synced deployment (Cite in English and German, Echo, a skin) with download counts, under gunicorn."""
    tmp, deployment = module_tmp, module_deployment
    cite = module_upstream("Cite", files={
        **extension_files("Cite"), "i18n/en.json": json.dumps({"cite-desc": "Adds footnotes and references"}),
        "i18n/de.json": json.dumps({"cite-desc": "Fügt Fußnoten und Einzelnachweise hinzu"})})
    git(cite.path, "branch", "REL1_45")
    module_upstream("Echo", files={**extension_files("Echo"),
                                   "i18n/en.json": json.dumps({"echo-desc": "Notifications for wiki users"})})
    module_upstream("Vector", kind="skins",
                    files={"skin.json": json.dumps({"name": "Vector", "description": "A skin"})})
    for name, url in HOSTILE_HOMEPAGES.items():
        module_upstream(name, files=extension_files(name, url=url, author=HOSTILE_AUTHORS))
    deployment.sync()
    count_downloads(deployment, tmp)

    port = free_port()
    server = start_gunicorn(deployment, port, tmp / "gunicorn.log")
    try:
        yield f"http://{HOST}:{port}"
    finally:
        stop(server)


def count_downloads(deployment: Deployment, tmp: Path) -> None:
    """Downloads of the last weeks, as nginx would log them, ingested by `tardist stats ingest`."""
    info = deployment.app().test_client().get("/info/extensions/Cite").get_json()
    now = datetime.now(UTC)
    lines = []
    for day in range(60):
        moment = (now - timedelta(days=day)).strftime("%d/%b/%Y:%H:%M:%S +0000")
        for branch, times in (("master", 3 + day % 7), ("REL1_45", 1 + day % 3)):
            url = info["branches"][branch]["url"]
            lines += [f'192.0.2.{day} - - [{moment}] "GET {url} HTTP/1.1" 200 4242 "-" "curl/8.5.0"'] * times
    log = tmp / "access.log"
    log.write_text("\n".join(lines) + "\n")
    result = deployment.cli("stats", "ingest", str(log))
    assert result.returncode == 0, result.stderr


def test_search_finds_a_repository_by_a_word_of_its_description(site, browser, tmp_path):
    browser.get(f"{site}/browse")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Browse extensions and skins"
    screenshot(browser, tmp_path, "browse")
    box = browser.find_element(By.ID, "q")
    assert browser.find_element(By.CSS_SELECTOR, "label[for=q]").text == "Search names and descriptions"
    box.send_keys("notifications")
    browser.find_element(By.CSS_SELECTOR, "form[role=search] button").click()
    WebDriverWait(browser, 10).until(lambda d: "q=notifications" in d.current_url)
    found = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "ul.repos h3")]
    assert found == ["Echo"]
    assert "1 found" in browser.find_element(By.CSS_SELECTOR, ".count").text
    browser.find_element(By.LINK_TEXT, "Echo").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "Echo"
    browser.get(f"{site}/browse/extensions?sort=downloads")
    assert [h.text for h in browser.find_elements(By.CSS_SELECTOR, "ul.repos h3")][0] == "Cite"
    screenshot(browser, tmp_path, "kind-by-downloads")
    screenshot(browser, tmp_path, "browse-phone", width=390)


def test_download_button_gives_the_tarball_whose_sha256_is_shown(site, browser, tmp_path):
    browser.get(f"{site}/browse/extensions/Cite")
    section = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=branch-master]")
    shown = section.find_element(By.CSS_SELECTOR, "code.sha256").text
    button = section.find_element(By.LINK_TEXT, "Download master (" + section.find_element(
        By.CSS_SELECTOR, ".button .muted-on-button").text.strip("()") + ")")
    name = button.get_attribute("download")
    button.click()
    target = tmp_path / "downloads" / name
    deadline = time.monotonic() + 20
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert target.exists(), list((tmp_path / "downloads").iterdir())
    assert hashlib.sha256(target.read_bytes()).hexdigest() == shown


def test_uselang_shows_the_german_description(site, browser, tmp_path):
    browser.get(f"{site}/browse/extensions/Cite?uselang=de")
    description = browser.find_element(By.CSS_SELECTOR, "p.description")
    assert description.text == "Fügt Fußnoten und Einzelnachweise hinzu"
    assert description.get_attribute("lang") == "de"
    browser.find_element(By.LINK_TEXT, "Extensions").click()  # the language stays while browsing
    assert "Fügt Fußnoten" in browser.find_element(By.TAG_NAME, "main").text


def test_chart_is_drawn_with_its_text_equivalent(site, browser, tmp_path):
    browser.get(f"{site}/browse/extensions/Cite")
    chart = browser.find_element(By.CSS_SELECTOR, "figure.chart svg[role=img]")
    assert chart.size["width"] > 500 and chart.size["height"] > 100
    assert len(chart.find_elements(By.TAG_NAME, "polyline")) == 2
    labelled = chart.get_attribute("aria-labelledby").split()
    texts = [browser.find_element(By.ID, ident).get_attribute("textContent") for ident in labelled]
    assert texts[0].startswith("Daily downloads of Cite per branch")
    assert "master:" in texts[1] and "REL1_45:" in texts[1]
    rows = browser.find_elements(By.CSS_SELECTOR, "table.numbers tbody tr")
    assert [row.find_element(By.TAG_NAME, "th").text for row in rows] == ["master", "REL1_45"]
    assert all(int(cell.text) > 0 for row in rows for cell in row.find_elements(By.TAG_NAME, "td")[:3])
    screenshot(browser, tmp_path, "repository")
    screenshot(browser, tmp_path, "repository-phone", width=390)


def homepage_links(driver) -> list:
    """The links shown as the repository's homepage."""
    return driver.find_elements(By.XPATH, "//dl[@class='facts']/dt[.='Homepage']/following-sibling::dd[1]//a")


def test_hostile_homepages_and_authors_run_nothing_when_clicked(site, browser):
    browser.get(f"{site}/browse/extensions/Cite")  # a good https homepage stays a link
    assert [a.get_attribute("href") for a in homepage_links(browser)] == ["https://example.org/Cite"]
    for name in HOSTILE_HOMEPAGES:
        browser.get(f"{site}/browse/extensions/{name}")
        before, page = browser.current_url, browser.find_element(By.TAG_NAME, "main").get_attribute("innerHTML")
        authors = browser.find_element(By.XPATH, "//dl[@class='facts']/dt[.='Authors']/following-sibling::dd[1]")
        assert authors.text == ", ".join(HOSTILE_AUTHORS) and not authors.find_elements(By.TAG_NAME, "a"), name
        for link in homepage_links(browser) + authors.find_elements(By.TAG_NAME, "a"):
            link.click()
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018  (reading it is what raises when no alert opened)
        assert browser.current_url == before, name
        assert browser.find_element(By.TAG_NAME, "main").get_attribute("innerHTML") == page, name
        hrefs = [a.get_property("href") for a in browser.find_elements(By.TAG_NAME, "a")]
        assert hrefs and all(urlsplit(href).scheme in ("http", "https") for href in hrefs), (name, hrefs)
