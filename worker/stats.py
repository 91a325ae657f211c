"""Download counts from nginx access logs: `tardist stats ingest` (`tardist stats export` is worker.stats_export).

Ingesting reads each log from where the last ingest stopped: a log is known by
its first line (a fingerprint that survives rotation and gzip), and what was
read of it is recorded in the same transaction as the counts it gave, so a
crash or a second run never loses or counts a line twice. No address or user
agent is stored: requests for tarballs are kept with a salted daily hash of the
client and a coarse user-agent family, for `stats export` to publish.
"""

from __future__ import annotations

import calendar
import hashlib
import re
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tardist.layout import BRANCH_PATTERN, KIND_PATTERN, NAME_PATTERN, TARBALL_PATH_RE
from tardist.schema import write_transaction
from tardist.settings import Settings
from worker.access_log import READ_ERRORS, batches, fingerprint, open_log

# nginx's combined format, and anything appended after it (deploy/nginx.conf's tardist format adds fields).
LINE_RE = re.compile(rb'(\S+) \S+ \S+ \[(\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "([^"]*)" '
                     rb'(\d{3}) (\d+|-) "[^"]*" "([^"]*)"(?: [^\n]*)?\r?')
DOWNLOAD_RE = re.compile(rf"/download/(?P<kind>{KIND_PATTERN})/(?P<name>{NAME_PATTERN})/(?P<branch>{BRANCH_PATTERN})")
MONTHS = {name.encode(): number for number, name in enumerate(calendar.month_abbr) if name}
SALT_DAYS = 7  # a day's salt is forgotten after this: its client hashes can no longer be linked to addresses
AGENTS = [("bot", re.compile(r"bot|crawl|spider|slurp", re.I)), ("composer", re.compile(r"^composer", re.I)),
          ("curl", re.compile(r"^curl/", re.I)), ("wget", re.compile(r"^wget", re.I)),
          ("python", re.compile(r"python|aiohttp|httpx", re.I)), ("git", re.compile(r"^git/", re.I)),
          ("edge", re.compile(r"Edg/")), ("chrome", re.compile(r"Chrome/|Chromium/")),
          ("firefox", re.compile(r"Firefox/")), ("safari", re.compile(r"Safari/")),
          ("browser", re.compile(r"^Mozilla/"))]




@dataclass
class Ingested:
    """What one ingest of one file did."""

    path: str
    lines: int = 0  # new lines read (skipped ones included)
    downloads: int = 0
    skipped: int = 0  # lines in no known format
    error: str | None = None


def agent_family(agent: str) -> str:
    """A coarse user-agent family (curl, chrome, bot, ...): enough to analyse, too coarse to identify."""
    if agent in ("", "-"):
        return "none"
    return next((family for family, pattern in AGENTS if pattern.search(agent)), "other")


class Counter:
    """Turns log lines into download counts and anonymised request rows."""

    def __init__(self, settings: Settings, salts: Callable[[str], bytes]) -> None:
        base = settings.tarball_url
        # Tarballs served elsewhere (a CDN) are never seen here: count the /download/ redirects to them.
        self.local = base.startswith("/")
        self.prefix = base if self.local else "/download/"
        self.salts = salts
        self._minutes: dict[bytes, str] = {}
        self._times: dict[bytes, tuple[str, str, dict[bytes, str]]] = {}  # stamp -> (UTC time, day, clients)
        self._clients: dict[str, dict[bytes, str]] = {}  # day -> address -> hash
        self._agents: dict[bytes, str] = {}
        self.counts: dict[tuple[str, str, str, str], int] = {}
        self.rows: list[tuple] = []
        self.downloads = 0
        self.skipped = 0

    def feed(self, lines: list[bytes]) -> None:
        """Count the complete lines given."""
        # One tight loop with everything local: this runs for every line of every log.
        match, times, utc_time, rows, counts = LINE_RE.fullmatch, self._times, self._utc_time, self.rows, self.counts
        local, wanted = self.local, (self.prefix + "/").encode() if self.local else b"/download/"
        named_re, skip = (TARBALL_PATH_RE, len(self.prefix)) if local else (DOWNLOAD_RE, 0)
        counted_status = 200 if local else 302
        agent_of, agents = self._agent, self._agents
        skipped = downloads = 0
        for line in lines:
            found = match(line)
            if found is None:
                skipped += 1
                continue
            address, stamp, request, status, size, agent = found.groups()
            when = times.get(stamp)
            if when is None:
                when = utc_time(stamp)
                if when is None:
                    skipped += 1
                    continue
            method, _, rest = request.partition(b" ")
            target = rest.rpartition(b" ")[0] or rest
            if not target.startswith(wanted):
                continue
            moment, day, clients = when
            client = clients.get(address) or self._client(day, address)
            if b"?" in target:
                target = target.split(b"?", 1)[0]
            path = target[:1000].decode("utf-8", "replace")
            code = int(status)
            rows.append((day, moment, path, code, 0 if size == b"-" else int(size), client,
                         agents.get(agent) or agent_of(agent)))
            if code == counted_status and method == b"GET":
                named = named_re.fullmatch(path, skip)
                if named is not None:
                    key = (*named.group("kind", "name", "branch"), day)
                    counts[key] = counts.get(key, 0) + 1
                    downloads += 1
        self.skipped += skipped
        self.downloads += downloads

    def _utc_time(self, stamp: bytes) -> tuple[str, str, dict[bytes, str]] | None:
        """'28/Nov/2026:20:01:02 +0100' -> ('2026-11-28T19:01:02Z', '2026-11-28', that day's client hashes);
        None when it is no time. Cached: most lines share their second with others."""
        minute_key = stamp[:17] + stamp[20:]
        minute = self._minutes.get(minute_key)
        if minute is None:
            try:
                local = datetime(int(stamp[7:11]), MONTHS[stamp[3:6]], int(stamp[0:2]), int(stamp[12:14]),
                                 int(stamp[15:17]))
            except (KeyError, ValueError):
                return None
            offset = timedelta(hours=int(stamp[22:24]), minutes=int(stamp[24:26]))
            utc = local - offset if stamp[21:22] == b"+" else local + offset
            if len(self._minutes) > 100_000:
                self._minutes.clear()
            minute = self._minutes[minute_key] = utc.strftime("%Y-%m-%dT%H:%M:")
        if int(stamp[18:20]) > 60:
            return None
        if len(self._times) > 200_000:
            self._times.clear()
        day = minute[:10]
        clients = self._clients.setdefault(day, {})
        when = self._times[stamp] = (f"{minute}{stamp[18:20].decode()}Z", day, clients)
        return when

    def _client(self, day: str, address: bytes) -> str:
        """The salted hash of a client address on a day."""
        clients = self._clients[day]
        if len(clients) > 100_000:
            clients.clear()
        clients[address] = hashlib.blake2b(address, key=self.salts(day), digest_size=8).hexdigest()
        return clients[address]

    def _agent(self, agent: bytes) -> str:
        cached = self._agents.get(agent)
        if cached is None:
            if len(self._agents) > 10_000:
                self._agents.clear()
            cached = self._agents[agent] = agent_family(agent.decode("utf-8", "replace"))
        return cached

    def take(self) -> tuple[dict, list[tuple]]:
        """The counts and rows gathered since the last take."""
        counts, rows = self.counts, self.rows
        self.counts, self.rows = {}, []
        return counts, rows


def ingest(settings: Settings, db: sqlite3.Connection, path: Path, batch_lines: int = 50_000) -> Ingested:
    """Count the lines of one log not counted before, committing every batch_lines with how far it got."""
    result = Ingested(str(path))
    salts = Salts(db)
    try:
        stream = open_log(path)
    except OSError as exc:
        result.error = f"{path}: {exc.strerror or exc}"
        return result
    counter = Counter(settings, salts)
    with stream:
        try:
            first = stream.readline()
            if not first.endswith(b"\n"):
                return result  # not even one complete line yet: nothing to count, nothing to remember
            key = fingerprint(first)
            row = db.execute("SELECT offset FROM log_files WHERE fingerprint = ?", [key]).fetchone()
            offset = row[0] if row else 0
            stream.seek(offset)
            for lines, size in batches(stream, batch_lines):
                skipped, downloads = counter.skipped, counter.downloads
                counter.feed(lines)
                if not _commit(db, key, str(path), offset, offset + size, len(lines), counter.skipped - skipped,
                               counter, salts):
                    result.error = f"{path}: another `tardist stats ingest` is reading it; left to that one"
                    break
                offset += size
                # Only what was stored is reported: a batch another ingest counted first is not ours.
                result.lines += len(lines)
                result.downloads += counter.downloads - downloads
                result.skipped += counter.skipped - skipped
        except READ_ERRORS as exc:
            result.error = f"{path}: unreadable after {result.lines} new lines: {exc}"
    return result


def _commit(db: sqlite3.Connection, key: str, path: str, expected: int, offset: int, lines: int, skipped: int,
            counter: Counter, salts: Salts) -> bool:
    """Record a batch's counts, rows and the new offset in one transaction; False if another ingest moved on."""
    counts, rows = counter.take()
    with write_transaction(db):
        row = db.execute("SELECT offset FROM log_files WHERE fingerprint = ?", [key]).fetchone()
        if (row[0] if row else 0) != expected:
            return False
        salts.save(db)
        db.executemany("INSERT INTO downloads (kind, name, branch, day, count) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT (kind, name, branch, day) DO UPDATE SET count = count + excluded.count",
                       [(*k, v) for k, v in counts.items()])
        db.executemany("INSERT INTO requests (day, time, path, status, bytes, client, agent) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        db.execute("INSERT INTO log_files (fingerprint, offset, lines, skipped, path, read_at) "
                   "VALUES (?, ?, ?, ?, ?, ?) "
                   "ON CONFLICT (fingerprint) DO UPDATE SET offset = excluded.offset, lines = lines + excluded.lines, "
                   "skipped = skipped + excluded.skipped, path = excluded.path, read_at = excluded.read_at",
                   [key, offset, lines, skipped, path, datetime.now(UTC).isoformat(timespec="seconds")])
    return True


class Salts:
    """One random salt per day, kept SALT_DAYS and then forgotten."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.known = dict(db.execute("SELECT day, salt FROM stats_salts").fetchall())
        self.new: dict[str, str] = {}

    def __call__(self, day: str) -> bytes:
        salt = self.known.get(day)
        if salt is None:
            salt = self.known[day] = self.new[day] = secrets.token_hex(16)
        return bytes.fromhex(salt)

    def save(self, db: sqlite3.Connection) -> None:
        """Store the salts made since the last save (inside the caller's transaction) and drop old ones."""
        db.executemany("INSERT OR IGNORE INTO stats_salts (day, salt) VALUES (?, ?)", list(self.new.items()))
        self.new.clear()
        cutoff = (datetime.now(UTC).date() - timedelta(days=SALT_DAYS)).isoformat()
        db.execute("DELETE FROM stats_salts WHERE day < ?", [cutoff])
