"""Manifests: the fields tardist reads, validated; descriptionmsg resolved through i18n/en.json."""

from __future__ import annotations

import json

from worker.manifest import read_manifest


def read(files: dict[str, str | bytes], kind: str = "extensions", max_bytes: int = 1024 * 1024):
    data = {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}
    return read_manifest(kind, lambda p: len(data[p]) if p in data else None, lambda p: data[p], max_bytes)


def test_valid_manifest_with_description_message():
    manifest = read({"extension.json": json.dumps({
        "name": "Cite", "version": "1.0", "author": "Ada", "license-name": "MIT", "descriptionmsg": "cite-desc",
        "type": "parserhook", "requires": {"MediaWiki": ">= 1.45", "extensions": {"Echo": "*"}}}),
        "i18n/en.json": json.dumps({"cite-desc": "Citations"})})
    assert manifest.errors == []
    assert manifest.fields == {"name": "Cite", "description": "Citations", "license": "MIT", "url": None,
                               "authors": ["Ada"], "type": "parserhook", "version": "1.0",
                               "requires": {"MediaWiki": ">= 1.45", "extensions": {"Echo": "*"}}}


def test_skins_prefer_skin_json():
    manifest = read({"skin.json": '{"name": "Vector"}', "extension.json": '{"name": "Other"}'}, kind="skins")
    assert manifest.fields["name"] == "Vector"


def test_wrong_types_drop_only_the_bad_fields():
    manifest = read({"extension.json": json.dumps({"name": "X", "version": 2, "author": [1], "url": "https://u.example",
                                                    "requires": {"MediaWiki": 1.45}})})
    assert manifest.fields["url"] == "https://u.example" and manifest.fields["version"] is None
    assert manifest.fields["authors"] == [] and manifest.fields["requires"] == {}
    assert [e.split(":")[1].strip() for e in manifest.errors] == ["author", "requires/MediaWiki", "version"]


def test_unreadable_manifests():
    assert read({}).errors == ["no extension.json or skin.json"] and read({}).fields is None
    assert read({"extension.json": b"\xff\xfe"}).errors == ["extension.json: not UTF-8"]
    assert read({"extension.json": "[" * 100_000 + "]" * 100_000}).errors == ["extension.json: nested too deeply"]
    assert read({"extension.json": "[]"}).errors == ["extension.json: expected a JSON object"]
    big = read({"extension.json": "{}" + " " * 2000}, max_bytes=1000)
    assert big.errors == ["extension.json: larger than 1000 bytes (max_manifest_bytes)"]


def test_description_message_problems_fall_back_to_description():
    base = {"name": "X", "descriptionmsg": "x-desc", "description": "fallback"}
    assert read({"extension.json": json.dumps(base)}).errors == ["descriptionmsg 'x-desc': no i18n/en.json"]
    missing = read({"extension.json": json.dumps(base), "i18n/en.json": "{}"})
    assert missing.fields["description"] == "fallback"
    assert missing.errors == ["descriptionmsg 'x-desc': not a string in i18n/en.json"]


def test_only_an_http_or_https_url_is_kept():
    for url in ("javascript:alert(document.domain)//", " JaVaScRiPt:alert(1)", "java\tscript:alert(1)",
                "https://ok.example/ x", "ftp://x.example/", "https:///x", "//evil.example/", "http:evil"):
        manifest = read({"extension.json": json.dumps({"name": "X", "url": url})})
        assert manifest.fields["url"] is None, url
        assert [e for e in manifest.errors if e.startswith("extension.json: url: not an http: or https: URL")], url
    for url in ("https://www.mediawiki.org/wiki/Extension:X", "HTTP://example.org"):
        manifest = read({"extension.json": json.dumps({"name": "X", "url": url})})
        assert (manifest.fields["url"], manifest.errors) == (url, [])
