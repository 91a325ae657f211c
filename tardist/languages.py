"""Language codes: which are valid, and the order in which to fall back (`de-at` -> `de` -> English).

Shared by the worker (which `i18n/<lang>.json` files to read) and the web app
(`?uselang=`, `Accept-Language`); no Flask here.
"""

from __future__ import annotations

import re

# MediaWiki's codes: lower-case, a 2-3 letter language and hyphenated parts (de-at, be-tarask, zh-hans).
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(?:-[a-z0-9]{1,8}){0,4}$")
ENGLISH = "en"
# i18n/qqq.json documents the messages for translators: it is not a language.
NOT_LANGUAGES = {"qqq", "qqx"}
MAX_ACCEPTED = 8  # languages taken from one Accept-Language header


def is_language(code: str) -> bool:
    """True when code is a plain language code such as de or de-at (lower-case)."""
    return bool(LANGUAGE_RE.fullmatch(code)) and code not in NOT_LANGUAGES


def fallbacks(code: str) -> list[str]:
    """The code and its parents, most specific first: de-at -> [de-at, de]."""
    parts = code.split("-")
    return ["-".join(parts[:end]) for end in range(len(parts), 0, -1)]


def accepted(header: str) -> list[str]:
    """The languages of an Accept-Language header, best first, each followed by its parents; [] when none."""
    weighted = []
    for position, item in enumerate(header.split(",")[:50]):
        code, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        code = code.strip().lower()
        if quality > 0 and is_language(code):
            weighted.append((-quality, position, code))
    chain: list[str] = []
    for _quality, _position, code in sorted(weighted)[:MAX_ACCEPTED]:
        chain += [parent for parent in fallbacks(code) if parent not in chain]
    return chain
