"""Descriptions in the reader's language: recorded by the worker from i18n/<lang>.json, chosen by ?uselang=."""

from __future__ import annotations

import json
import sqlite3

import pytest
from helpers import extension_files, git

from tardist.languages import accepted, fallbacks, is_language
from worker.manifest import read_manifest


def read(files: dict[str, str | bytes], max_bytes: int = 1024 * 1024):
    data = {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}
    return read_manifest("extensions", lambda p: len(data[p]) if p in data else None, lambda p: data[p],
                         max_bytes, files=data)


MANIFEST = json.dumps({"name": "Cite", "descriptionmsg": "cite-desc"})


def test_every_translation_of_descriptionmsg_is_read():
    manifest = read({"extension.json": MANIFEST, "i18n/en.json": '{"cite-desc": "Citations"}',
                     "i18n/de.json": '{"cite-desc": "Fu\\u00dfnoten", "other": "x"}',
                     "i18n/be-tarask.json": '{"cite-desc": "Зноскі"}', "i18n/fr.json": '{"other": "pas la"}',
                     "i18n/qqq.json": '{"cite-desc": "Documentation for translators"}',
                     "i18n/api/de.json": '{"cite-desc": "not this folder"}', "i18n/Not_A_Code.json": "{}"})
    assert manifest.errors == []
    assert manifest.fields["description"] == "Citations"
    assert manifest.descriptions == {"de": "Fußnoten", "be-tarask": "Зноскі"}


def test_hostile_translation_files_are_manifest_errors_and_the_rest_is_kept():
    manifest = read({"extension.json": MANIFEST, "i18n/en.json": '{"cite-desc": "Citations"}',
                     "i18n/de.json": b"\xff\xfe", "i18n/fr.json": "[1]", "i18n/es.json": "{" * 50 + "}" * 50,
                     "i18n/it.json": '{"cite-desc": ["not", "text"]}',
                     "i18n/nl.json": json.dumps({"cite-desc": "x" * 20_000}),
                     "i18n/pl.json": '{"cite-desc": NaN}', "i18n/pt.json": "{}" + " " * 3000,
                     "i18n/sv.json": '{"cite-desc": "Fotnoter"}'}, max_bytes=2000)
    assert manifest.descriptions == {"sv": "Fotnoter"}
    assert manifest.fields["description"] == "Citations"
    assert len(manifest.errors) == 7 and all(e.startswith("descriptionmsg 'cite-desc': ") for e in manifest.errors)
    assert "i18n/de.json: not UTF-8" in manifest.errors[0]


def test_language_codes_and_fallbacks():
    assert all(is_language(code) for code in ("de", "de-at", "be-tarask", "zh-hans-cn", "nds-nl"))
    assert not any(is_language(code) for code in ("", "qqq", "DE", "de_DE", "../en", "d", "de-", "x" * 40))
    assert fallbacks("zh-hans-cn") == ["zh-hans-cn", "zh-hans", "zh"]
    assert accepted("fr;q=0.5, de-AT, en;q=0.1, xx_YY, *") == ["de-at", "de", "fr", "en"]
    assert accepted("de;q=0, garbage;q=abc") == []


@pytest.fixture
def site(deployment, upstream):
    """Cite translated (German on master, other German on REL1_45), Plain with a literal description."""
    cite = upstream("Cite", files={**extension_files("Cite"), "i18n/de.json": '{"cite-desc": "REL-Fußnoten"}'})
    git(cite.path, "branch", "REL1_45")
    cite.commit({"i18n/de.json": json.dumps({"cite-desc": "Fußnoten"}),
                 "i18n/fr.json": json.dumps({"cite-desc": "Notes de bas de page"}),
                 "i18n/es.json": "not json"})
    upstream("Plain", files={"extension.json": json.dumps({"name": "Plain", "description": "Just text"})})
    deployment.sync()
    return deployment


def test_uselang_gives_the_description_in_that_language_with_fallbacks(site):
    client = site.app().test_client()
    expected = {"de": ("Fußnoten", "de"), "DE-at": ("Fußnoten", "de"), "fr-ca": ("Notes de bas de page", "fr"),
                "ja": ("The Cite extension", "en"), "en": ("The Cite extension", "en")}
    for lang, (text, used) in expected.items():
        answer = client.get(f"/info/extensions/Cite?uselang={lang}").get_json()
        assert (answer["description"], answer["description_lang"]) == (text, used), lang
        assert answer["branches"]["master"]["manifest_errors"] == [
            "descriptionmsg 'cite-desc': i18n/es.json: invalid JSON: Expecting value: line 1 column 1 (char 0)"]
    plain = client.get("/info/extensions/Plain?uselang=de").get_json()
    assert (plain["description"], plain["description_lang"]) == ("Just text", "en")
    batch = client.get("/info/extensions?names=Cite|Plain&uselang=de").get_json()["extensions"]
    assert batch["Cite"]["description"] == "Fußnoten" and batch["Plain"]["description_lang"] == "en"
    every = client.get("/info/extensions?uselang=fr").get_json()["extensions"]
    assert every["Cite"]["description"] == "Notes de bas de page"


def test_without_uselang_the_answer_is_the_stored_one_byte_for_byte(site):
    client = site.app().test_client()
    stored = sqlite3.connect(site.settings().database).execute(
        "SELECT info FROM repos WHERE name = 'Cite'").fetchone()[0]
    plain = client.get("/info/extensions/Cite")
    assert plain.data == stored.encode() and b"description_lang" not in plain.data
    german = client.get("/info/extensions/Cite?uselang=de")
    assert german.headers["ETag"] != plain.headers["ETag"]
    assert client.get("/info/extensions/Cite?uselang=de", headers={"If-None-Match": german.headers["ETag"]}
                      ).status_code == 304
    spliced = json.loads(german.data)
    assert {k: v for k, v in spliced.items() if k not in ("description", "description_text", "description_lang")} == \
        {k: v for k, v in json.loads(stored).items() if k not in ("description", "description_text")}
    assert spliced["description_text"] == spliced["description"]  # the translation is plain text already


def test_invalid_uselang_is_a_json_400(site):
    client = site.app().test_client()
    for query in ("uselang=", "uselang=qqq", "uselang=de_DE", "uselang=..%2Fen", "uselang=de&uselang=fr",
                  f"uselang={'a' * 50}", "uselang=%00"):
        for url in (f"/info/extensions/Cite?{query}", f"/info/extensions?{query}"):
            response = client.get(url)
            assert response.status_code == 400 and response.get_json()["error"]["status"] == 400, url


def test_translations_follow_the_facts_branch_and_new_commits(site, tmp_path):
    client = site.app().test_client()
    cite = tmp_path / "upstream/extensions/Cite"
    git(cite, "rm", "-q", "i18n/fr.json")
    git(cite, "commit", "-q", "-m", "drop French")
    site.sync()
    french = client.get("/info/extensions/Cite?uselang=fr").get_json()
    assert (french["description"], french["description_lang"]) == ("The Cite extension", "en")
    assert client.get("/info/extensions/Cite?uselang=de").get_json()["description"] == "Fußnoten"
