"""What the pages show to check a download: the signing key, allowed_signers and the verify commands.

Read from the meta rows the worker records when it writes the signed checksum files
(worker/checksums.py): the web app never reads the signing key, nor published/.
"""

from __future__ import annotations

import shlex
import sqlite3

CHECKSUMS = "/checksums"
PRINCIPAL, NAMESPACE = "tardist", "file"  # as worker/checksums.py signs


def signers(conn: sqlite3.Connection | None) -> str:
    """The allowed_signers text the worker published; "" when it signs nothing."""
    if conn is None:
        return ""
    row = conn.execute("SELECT value FROM meta WHERE key = 'allowed_signers'").fetchone()
    return row[0] if row else ""


def checksums_version(conn: sqlite3.Connection | None, kind: str) -> str | None:
    """The version folder of the kind's checksum files that the worker wrote last."""
    if conn is None:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = ?", [f"checksums:{kind}"]).fetchone()
    return row[0] if row else None


def verify_commands(conn: sqlite3.Connection | None, site_url: str, kind: str, tarball: str,
                    tarball_url: str) -> dict[str, str] | None:
    """The shell commands that check one tarball against the signed checksum file; None without one.

    The URLs are the version folder's (which never changes), not current/: the list and its
    signature always belong together. Without site_url the commands name no host.
    """
    version = checksums_version(conn, kind)
    allowed = signers(conn)
    if version is None or not allowed or not site_url:
        return None
    base = f"{site_url}{CHECKSUMS}/{kind}/{version}"
    url = tarball_url if tarball_url.startswith(("https://", "http://")) else site_url + tarball_url
    download = ["curl", "-fsS", "-O", url, "-O", f"{base}/SHA256SUMS", "-O", f"{base}/SHA256SUMS.sig"]
    check = (f"ssh-keygen -Y verify -f allowed_signers -I {PRINCIPAL} -n {NAMESPACE} -s SHA256SUMS.sig "
             "< SHA256SUMS && sha256sum --ignore-missing -c SHA256SUMS")
    return {"download": shlex.join(download), "verify": check,
            "signers": "printf '%s' " + shlex.quote(allowed) + " > allowed_signers"}
