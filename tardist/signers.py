"""What the signing settings accept: the site's public URL and retired signing keys (worker/checksums.py signs)."""

from __future__ import annotations

import re

SITE_URL_RE = re.compile(r"https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~/-]*)?")
# A retired key: when it stops being trusted (allowed_signers valid-before: YYYYMMDD[HHMM[SS]], Z for UTC)
# and the public key, of a type ssh-keygen signs with; any comment after it is dropped.
RETIRED_KEY_RE = re.compile(r"^(\d{8}(?:\d{4}(?:\d{2})?)?Z?) +(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)"
                            r"|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) +([A-Za-z0-9+/]+=*)"
                            r"(?: +[^\n\r]*)?$")


def is_site_url(url: str) -> bool:
    """True for a plain http(s) base URL (host, optional port and path; no query, no credentials)."""
    return SITE_URL_RE.fullmatch(url) is not None


def retired_key(entry: str) -> tuple[str, str] | None:
    """(valid-before, "type base64") of a retired_signing_keys entry, or None when it is not one."""
    match = RETIRED_KEY_RE.fullmatch(entry.strip())
    return None if match is None else (match.group(1), f"{match.group(2)} {match.group(3)}")
