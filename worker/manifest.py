"""Reading extension.json / skin.json and validating the fields tardist uses."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from tardist.info import web_url
from tardist.languages import ENGLISH, is_language

MANIFEST_FILES = {"extensions": ("extension.json", "skin.json"), "skins": ("skin.json", "extension.json")}
DEFAULT_MANIFEST_FILES = ("extension.json", "skin.json")
I18N_FILE = "i18n/en.json"
I18N_PREFIX = "i18n/"
MAX_LANGUAGES = 1000  # translations read per branch; MediaWiki has about 500 languages
# Deeper documents are refused: kept fields are stored and served again, and a
# deep value would make the JSON encoder or decoder of the API recurse too far.
MAX_DEPTH = 32

STRING = {"type": "string", "maxLength": 10_000}
# Only the fields tardist reads; anything else in a manifest is MediaWiki's business.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": STRING,
        "version": STRING,
        "author": {"anyOf": [STRING, {"type": "array", "items": STRING, "maxItems": 1000}]},
        "url": STRING,
        "description": STRING,
        "descriptionmsg": STRING,
        "license-name": STRING,
        "type": STRING,
        "requires": {
            "type": "object",
            "properties": {
                "MediaWiki": STRING,
                "extensions": {"type": "object", "additionalProperties": STRING},
                "skins": {"type": "object", "additionalProperties": STRING},
                "platform": {"type": "object"},
            },
        },
    },
}
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


@dataclass
class Manifest:
    """The validated manifest fields of one commit, and what was wrong with it."""

    fields: dict[str, Any] | None  # None: no readable manifest
    errors: list[str] = field(default_factory=list)
    descriptions: dict[str, str] = field(default_factory=dict)  # language -> descriptionmsg text, English aside


def read_manifest(kind: str, size_of: Callable[[str], int | None], read: Callable[[str], bytes],
                  max_bytes: int, files: Iterable[str] = ()) -> Manifest:
    """Read and validate a commit's manifest, and the translations of its description.

    ``size_of(path)`` gives a file's size or None when it is absent; ``read(path)``
    its bytes, asked for only when the size is within ``max_bytes``; ``files`` are
    the commit's file paths, among which the ``i18n/<lang>.json`` files are read.
    """
    candidates = MANIFEST_FILES.get(kind, DEFAULT_MANIFEST_FILES)
    filename = next((name for name in candidates if size_of(name) is not None), None)
    if filename is None:
        return Manifest(None, [f"no {' or '.join(candidates)}"])
    document, error = load_json(filename, size_of, read, max_bytes)
    if error:
        return Manifest(None, [error])
    if not isinstance(document, dict):
        return Manifest(None, [f"{filename}: expected a JSON object"])
    errors = []
    bad_fields = set()
    for problem in sorted(VALIDATOR.iter_errors(document), key=lambda e: list(map(str, e.path))):
        where = "/".join(map(str, problem.absolute_path)) or "(top)"
        errors.append(f"{filename}: {where}: {_short(problem.message)}")
        if problem.absolute_path:
            bad_fields.add(problem.absolute_path[0])
    fields = {key: document[key] for key in SCHEMA["properties"] if key in document and key not in bad_fields}
    if "url" in fields and web_url(fields["url"]) is None:  # other consumers render it as a link too
        errors.append(f"{filename}: url: not an http: or https: URL, left out: {_short(repr(fields.pop('url')), 100)}")
    description, error = _description(fields, size_of, read, max_bytes)
    if error:
        errors.append(error)
    descriptions: dict[str, str] = {}
    if "descriptionmsg" in fields and not error:
        descriptions = _translations(fields["descriptionmsg"], files, size_of, read, max_bytes, errors)
    return Manifest(_summary(fields, description), errors, descriptions)


def load_json(filename: str, size_of: Callable[[str], int | None], read: Callable[[str], bytes],
              max_bytes: int) -> tuple[Any, str | None]:
    """A commit's JSON file as (document, None), or (None, why not) when absent, too big or invalid."""
    size = size_of(filename)
    if size is None:
        return None, f"no {filename}"
    if size > max_bytes:
        return None, f"{filename}: larger than {max_bytes} bytes (max_manifest_bytes)"
    return _parse_json(filename, read(filename))


def _parse_json(filename: str, data: bytes) -> tuple[Any, str | None]:
    try:
        document = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float)
    except UnicodeDecodeError:
        return None, f"{filename}: not UTF-8"
    except RecursionError:
        return None, f"{filename}: nested too deeply"
    except ValueError as exc:
        return None, f"{filename}: invalid JSON: {exc}"
    if _deeper_than(document, MAX_DEPTH):
        return None, f"{filename}: nested too deeply (more than {MAX_DEPTH} levels)"
    return document, None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")  # Python accepts NaN and Infinity; JSON does not


def _finite_float(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:50]} is out of range")
    return number


def _deeper_than(document: Any, limit: int) -> bool:
    """True when arrays and objects nest more than limit levels (checked without recursion)."""
    pending = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, (dict, list)):
            if depth > limit:
                return True
            pending.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
    return False


def _short(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[:limit] + "..."


def _description(fields: dict[str, Any], size_of: Callable[[str], int | None], read: Callable[[str], bytes],
                 max_bytes: int) -> tuple[str | None, str | None]:
    key = fields.get("descriptionmsg")
    if key is None:
        return fields.get("description"), None
    messages, error = load_json(I18N_FILE, size_of, read, max_bytes)
    if error:
        if size_of(I18N_FILE) is None:
            error = f"descriptionmsg {key!r}: no {I18N_FILE}"
        return fields.get("description"), error
    text = messages.get(key) if isinstance(messages, dict) else None
    if not isinstance(text, str):
        return fields.get("description"), f"descriptionmsg {key!r}: not a string in {I18N_FILE}"
    return text, None


def _translations(key: str, files: Iterable[str], size_of: Callable[[str], int | None],
                  read: Callable[[str], bytes], max_bytes: int, errors: list[str]) -> dict[str, str]:
    """The descriptionmsg text of every i18n/<lang>.json but English; a bad file is an error, never a failure."""
    languages = sorted(path[len(I18N_PREFIX):-len(".json")] for path in files
                       if path.startswith(I18N_PREFIX) and path.endswith(".json")
                       and "/" not in path[len(I18N_PREFIX):])
    languages = [lang for lang in languages if is_language(lang) and lang != ENGLISH]
    if len(languages) > MAX_LANGUAGES:
        errors.append(f"{I18N_PREFIX}: more than {MAX_LANGUAGES} languages; only the first {MAX_LANGUAGES} are read")
        languages = languages[:MAX_LANGUAGES]
    texts = {}
    for lang in languages:
        filename = f"{I18N_PREFIX}{lang}.json"
        messages, error = load_json(filename, size_of, read, max_bytes)
        if error:
            errors.append(f"descriptionmsg {key!r}: {error}")
            continue
        if not isinstance(messages, dict):
            errors.append(f"descriptionmsg {key!r}: {filename}: expected a JSON object")
            continue
        text = messages.get(key)
        if text is None:
            continue  # not translated into that language yet: normal
        if not isinstance(text, str) or len(text) > STRING["maxLength"]:
            errors.append(f"descriptionmsg {key!r}: not a string of at most {STRING['maxLength']} "
                          f"characters in {filename}")
            continue
        texts[lang] = text
    return texts


def _summary(fields: dict[str, Any], description: str | None) -> dict[str, Any]:
    """The manifest facts /info shows, under their API names."""
    author = fields.get("author")
    requires = fields.get("requires")
    return {
        "name": fields.get("name"),
        "description": description,
        "license": fields.get("license-name"),
        "url": fields.get("url"),
        "authors": [author] if isinstance(author, str) else list(author or []),
        "type": fields.get("type"),
        "version": fields.get("version"),
        "requires": requires if isinstance(requires, dict) else {},
    }
