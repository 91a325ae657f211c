"""The git settings an operator may give in `git_config`: an allow-list, checked once when settings load.

What passes reaches every git tardist runs as the `config` argument of `worker.git.run_git`.
"""

from __future__ import annotations

import re
from typing import Any

# section[.subsection].name, as git spells a configuration key (the subsection may hold anything but a newline)
GIT_KEY_RE = re.compile(r"^([A-Za-z0-9-]+)(?:\.([^\n\x00]*))?\.([A-Za-z][A-Za-z0-9-]*)$")
# The git settings an operator may give (an allow-list: anything else is refused). None runs a program,
# none sends or rewrites a file: URL rewriting, proxies, TLS trust (a CA file only decides which servers
# git believes; a client certificate, key or cookie file would be sent, and is refused), protocol and
# transfer tuning, memory limits. Section and name are matched ignoring case, as git does.
GIT_SETTINGS_ALLOWED = {
    "url": {"insteadof", "pushinsteadof"},  # url.<base>.insteadOf
    "http": {"proxy", "proxyauthmethod", "sslverify", "sslcainfo", "sslcapath", "sslversion", "sslcipherlist",
             "sslbackend", "version", "postbuffer", "lowspeedlimit", "lowspeedtime", "maxrequests", "useragent"},
    "protocol": {"version"},  # never protocol.allow or protocol.<name>.allow: submodule_protocols stays tardist's
    "core": {"compression", "packedgitlimit", "packedgitwindowsize", "deltabasecachelimit", "bigfilethreshold"},
    "pack": {"compression", "threads", "window", "depth", "windowmemory", "deltacachesize", "deltacachelimit",
             "packsizelimit"},
}
SUBSECTIONS_ALLOWED = {"url": True, "http": True}  # url.<base>.insteadOf; http.<url>.proxy: for one site
GIT_SETTINGS_SHOWN = ("url.<base>.insteadOf, url.<base>.pushInsteadOf, http[.<url>].proxy, proxyAuthMethod, "
                      "sslVerify, sslCAInfo, sslCAPath, sslVersion, sslCipherList, sslBackend, version, postBuffer, "
                      "lowSpeedLimit, lowSpeedTime, maxRequests, userAgent, protocol.version, core.compression, "
                      "core.packedGitLimit, core.packedGitWindowSize, core.deltaBaseCacheLimit, "
                      "core.bigFileThreshold, pack.compression, pack.threads, pack.window, pack.depth, "
                      "pack.windowMemory, pack.deltaCacheSize, pack.deltaCacheLimit, pack.packSizeLimit")


def git_setting_allowed(key: str) -> bool:
    """True when key (a git setting name) is one an operator may give in git_config."""
    match = GIT_KEY_RE.fullmatch(key)
    if not match:
        return False
    section, subsection, name = match.group(1).lower(), match.group(2), match.group(3).lower()
    if subsection is not None and not SUBSECTIONS_ALLOWED.get(section, False):
        return False
    if section == "url" and subsection is None:
        return False
    return name in GIT_SETTINGS_ALLOWED.get(section, set())


def git_config_pairs(table: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The git_config table as (name, value) pairs, accepting only the settings of GIT_SETTINGS_ALLOWED.

    ValueError says what is wrong with which key; tardist.settings adds where it was given.
    """
    pairs = []
    for key, value in table.items():
        if not GIT_KEY_RE.fullmatch(key):
            raise ValueError(f"{key!r} is not a git setting name "
                             "(section.name or section.subsection.name)")
        if not git_setting_allowed(key):
            raise ValueError(f"{key!r} is refused: git_config accepts only URL "
                             "rewriting, proxies, TLS trust and transfer tuning, none of which runs a program "
                             f"or reads a file it sends ({GIT_SETTINGS_SHOWN})")
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int):
            value = str(value)
        if not isinstance(value, str) or "\n" in value or "\x00" in value:
            raise ValueError(f"{key!r}: expected a one-line string, number or "
                             f"true/false, got {value!r}")
        pairs.append((key, value))
    return tuple(pairs)
