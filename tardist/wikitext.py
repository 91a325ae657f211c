"""Extension descriptions (MediaWiki messages: wikitext with a little HTML) as a reader of a wiki sees them.

Not a parser: what a description needs. `[[Target|text]]` and `[[Target]]` become their
text, `[https://... text]` its text, bold and italic marks go, `<code>` stays code (as a
segment the page shows in <code>), other tags, comments and `{{templates}}` go, entities
are decoded once, last. The result is plain text: whoever shows it in HTML escapes it,
like any other text (Jinja does); no markup of ours is ever built from theirs.
"""

from __future__ import annotations

import html
import re

MAX_SOURCE = 10_000  # characters read of one description: a message is a line, not a page
MAX_ROUNDS = 20  # nested links and templates are taken apart from the inside, this many levels at most

CODE_OPEN, CODE_CLOSE = "\ue000", "\ue001"  # private-use characters: removed from the source first
_PRIVATE = re.compile("[\ue000\ue001]")
_COMMENT = re.compile(r"<!--.*?(-->|$)", re.S)
_HIDDEN = re.compile(r"<(script|style|ref|templatestyles)\b[^<>]*?(/>|>.*?</\1\s*>)", re.S | re.I)
_CODE = re.compile(r"<code(\s[^<>]*)?>(.*?)</code\s*>", re.S | re.I)
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(\s[^<>]*)?/?>")
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")
# MediaWiki makes a bracketed link only of the URL protocols it knows; anything else stays as typed.
_EXTERNAL = re.compile(r"\[((?:https?:|ftp:)?//[^\s\[\]<>]+|mailto:[^\s\[\]<>]+)(?:[ \t]+([^\[\]]*))?\]", re.I)
_QUOTES = re.compile(r"'{2,}")
_SPACE = re.compile(r"\s+")


def to_segments(source: str) -> list[tuple[str, bool]]:
    """The description as (text, is_code) pieces, in order, ready to be escaped and shown."""
    text = _PRIVATE.sub("", source[:MAX_SOURCE])
    text = _COMMENT.sub("", text)
    text = _HIDDEN.sub("", text)
    text = _CODE.sub(lambda m: f"{CODE_OPEN}{m.group(2)}{CODE_CLOSE}", text)
    for _ in range(MAX_ROUNDS):
        before = text
        text = _TEMPLATE.sub("", text)
        text = _LINK.sub(_link_text, text)
        if text == before:
            break
    text = _EXTERNAL.sub(lambda m: m.group(2) or "", text)
    text = _TAG.sub("", text)
    text = _QUOTES.sub(_quotes, text)
    text = _SPACE.sub(" ", html.unescape(text)).strip()
    segments: list[tuple[str, bool]] = []
    in_code = False
    for piece in re.split(f"([{CODE_OPEN}{CODE_CLOSE}])", text):
        if piece in (CODE_OPEN, CODE_CLOSE):  # a mark whose pair a template swallowed changes nothing
            in_code = piece == CODE_OPEN
        elif piece:
            segments.append((piece, in_code))
    if segments:  # the ends of what a swallowed mark left
        segments[0] = (segments[0][0].lstrip(), segments[0][1])
        segments[-1] = (segments[-1][0].rstrip(), segments[-1][1])
    return [segment for segment in segments if segment[0]]


def to_text(source: str | None) -> str | None:
    """The description as plain text (None stays None)."""
    if source is None:
        return None
    return "".join(text for text, _code in to_segments(source))


def _link_text(match: re.Match) -> str:
    target, bar, label = match.group(1).partition("|")
    if bar and label.strip():
        return label
    return target.strip().lstrip(":")


def _quotes(match: re.Match) -> str:
    run = len(match.group(0))
    if run == 4:
        return "'"  # an apostrophe, then bold
    return "'" * (run - 5) if run > 5 else ""
