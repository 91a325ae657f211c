"""`tardist`: the command line. Translates outcomes into output and exit statuses.

Exit statuses: 0 all synced (or another sync was already running), 1 some
repositories failed, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sqlite3
import sys
import threading
import time
from contextlib import nullcontext
from datetime import date
from pathlib import Path

from tardist import queries, schema, store
from tardist.info import InfoView
from tardist.layout import is_kind
from tardist.settings import Settings, SettingsError, load_settings
from worker.checksums import SigningError
from worker.gc import collect_garbage
from worker.lock import AlreadyRunning, sync_lock
from worker.progress import Progress
from worker.publish import publish
from worker.run import run_sync

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="tardist", description="Mirror plugin repositories and build tarballs.")
    parser.add_argument("--config", metavar="FILE",
                        help="configuration file (default: $TARDIST_CONFIG or instance/tardist.toml)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sync = commands.add_parser("sync", help="fetch repositories and build what changed (what cron runs)")
    sync.add_argument("--only", action="append", default=[], metavar="NAME",
                      help="sync only this repository (repeatable)")
    sync.add_argument("--kind", metavar="KIND", help="sync only repositories of this kind")
    sync.add_argument("--force", action="store_true", help="rebuild tarballs even when they exist (implies --retry)")
    sync.add_argument("--retry", action="store_true",
                      help="try again now what failed before, without waiting for its retry time")
    sync.add_argument("--jobs", type=_positive, metavar="N", help="repositories synced in parallel")
    sync.add_argument("--changed", action="store_true",
                      help="sync only repositories whose listed heads moved (cheap; for frequent cron runs)")
    commands.add_parser("status", help="JSON: last runs, counts, what is in error")
    gc = commands.add_parser("gc", help="remove tarballs and mirrors past the retention period")
    gc.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    commands.add_parser("worker", help="run syncs (and gc) on a schedule, for hosts without cron")
    commands.add_parser("init-db", help="create or migrate the database (and publish its answers)")
    commands.add_parser("publish", help="write every API answer under published/ again (only what changed)")
    verify = commands.add_parser("verify", help="rebuild a tarball from git and compare (exit 0 identical, "
                                                "1 differs, 2 cannot verify)")
    verify.add_argument("tarball", metavar="FILE-OR-URL", help="a tardist tarball: a file or an http(s) URL")
    verify.add_argument("--source", metavar="URL", help="clone from here, not from gitinfo.json's remoteURL")
    stats = commands.add_parser("stats", help="download counts from nginx access logs")
    stats_commands = stats.add_subparsers(dest="stats_command", required=True, metavar="STATS_COMMAND")
    ingest = stats_commands.add_parser("ingest", help="count the downloads in access logs (plain or .gz) "
                                                      "not counted before")
    ingest.add_argument("files", nargs="+", metavar="FILE", help="nginx access log (combined or tardist format)")
    ingest.add_argument("--batch-lines", type=_positive, default=50_000, metavar="N",
                        help="lines counted per transaction (default 50000)")
    export = stats_commands.add_parser("export", help="write one day's anonymised requests as gzip'd JSON lines")
    export.add_argument("--day", required=True, type=_day, metavar="YYYY-MM-DD", help="the day (UTC)")
    export.add_argument("--out", required=True, metavar="DIR", help="folder to write the file into")
    return parser


def _day(text: str) -> date:
    try:
        if len(text) == 10 and text[4] == text[7] == "-":
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected a day as YYYY-MM-DD, got {text!r}")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tardist` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        settings = load_settings(args.config)
        return COMMANDS[args.command](settings, args)
    except (SettingsError, schema.SchemaError) as exc:
        print(f"tardist: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except sqlite3.OperationalError as exc:  # locked past database_timeout, a full disk: nothing half written
        print(f"tardist: the database: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except SigningError as exc:  # gc, publish, init-db: published/ is marked for a full check next time
        print(f"tardist: cannot sign the checksum files: {exc}", file=sys.stderr)
        return EXIT_FAILED


def cmd_sync(settings: Settings, args: argparse.Namespace) -> int:
    """`tardist sync`."""
    if args.kind is not None and not is_kind(args.kind):
        raise SettingsError(f"--kind: expected a lower-case word such as 'extensions', got {args.kind!r}")
    if not settings.sources:
        print(f"tardist: {settings.config_file}: no [[source]] configured; nothing to sync", file=sys.stderr)
    stop = threading.Event()
    progress = Progress()
    try:
        # A full run takes the sync lock; --only needs just the locks of its repositories, so it
        # works while a worker or cron syncs everything (it waits for a sync of the same repository).
        with (sync_lock(settings.lock_file) if not args.only else nullcontext()), StopOnSignals(stop):
            summary = run_sync(settings, only=tuple(args.only), kind=args.kind, force=args.force, jobs=args.jobs,
                               on_repo=progress.update, on_start=progress.start, stop=stop, retry=args.retry,
                               changed=args.changed)
            progress.finish()
    except AlreadyRunning as exc:
        print(f"tardist: {exc}; not starting another", file=sys.stderr)
        return EXIT_OK
    for warning in summary.warnings:
        print(f"tardist: warning: {warning}", file=sys.stderr)
    print(json.dumps(summary.as_json()))
    return EXIT_OK if summary.ok else EXIT_FAILED


class StopOnSignals:
    """SIGTERM/SIGINT ask the run to finish the repositories in hand and stop."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous: dict[int, object] = {}

    def __enter__(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        print(f"tardist: {signal.Signals(signum).name}: finishing the repositories in hand, then stopping",
              file=sys.stderr)
        self.stop.set()
        signal.signal(signum, self.previous[signum])  # a second signal acts at once

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    """`tardist status`."""
    conn = schema.open_reader(settings.database)
    if conn is None:
        print(json.dumps({"runs": [], "counts": {}, "repository_errors": [], "branch_errors": [],
                          "note": f"no database yet at {settings.database}: run `tardist sync`"}, indent=2))
        return EXIT_OK
    try:
        print(json.dumps(queries.status(conn), indent=2))
    finally:
        conn.close()
    return EXIT_OK


def cmd_gc(settings: Settings, args: argparse.Namespace) -> int:
    """`tardist gc`."""
    try:
        with sync_lock(settings.lock_file):
            report = collect_garbage(settings, dry_run=args.dry_run)
    except AlreadyRunning as exc:
        print(f"tardist: {exc}; gc not started", file=sys.stderr)
        return EXIT_OK
    for path in report["removed"]:
        print(f"{'would remove' if args.dry_run else 'removed'} {path}", file=sys.stderr)
    for warning in report["warnings"]:
        print(f"tardist: warning: {warning}", file=sys.stderr)
    print(json.dumps({key: value for key, value in report.items() if key != "removed"}))
    return EXIT_OK


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    """`tardist worker`."""
    from worker.daemon import run_worker  # APScheduler costs every other command 0.1 s of imports

    run_worker(settings)
    return EXIT_OK


def cmd_init_db(settings: Settings, args: argparse.Namespace) -> int:
    """`tardist init-db`."""
    try:
        with sync_lock(settings.lock_file):  # migrating under a running sync's feet could fail half way
            db = schema.open_writer(settings.database, settings.database_timeout)
            try:
                store.ensure_rendered(db, InfoView.of(settings))
                publish(settings, db, None)
            finally:
                db.close()
    except AlreadyRunning as exc:
        print(f"tardist: {exc}; run init-db again when it ends", file=sys.stderr)
        return EXIT_FAILED
    print(f"database ready at {settings.database}", file=sys.stderr)
    return EXIT_OK


def cmd_publish(settings: Settings, args: argparse.Namespace) -> int:
    """`tardist publish`."""
    if settings.published is None:
        print(f"tardist: {settings.config_file}: key 'published' is empty: nothing to publish", file=sys.stderr)
        return EXIT_OK
    if not settings.database.exists():
        print(f"tardist: no database yet at {settings.database}: run `tardist init-db` or `tardist sync`",
              file=sys.stderr)
        return EXIT_FAILED
    try:
        with sync_lock(settings.lock_file):  # a sync renders with its own settings: not under its feet
            db = schema.open_writer(settings.database, settings.database_timeout)
            try:
                store.ensure_rendered(db, InfoView.of(settings))
                report = publish(settings, db, None)
            finally:
                db.close()
    except AlreadyRunning as exc:
        print(f"tardist: {exc}; it publishes what it records", file=sys.stderr)
        return EXIT_OK
    print(json.dumps({"published": str(settings.published), **report}))
    return EXIT_OK




def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    from worker.verify import CannotVerify, verify
    try:
        verdict = verify(settings, args.tarball, args.source)
    except CannotVerify as exc:
        print(f"tardist verify: cannot verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not verdict.identical:
        print(f"differs: {verdict.difference}")
        return EXIT_FAILED
    print(f"identical{' outside vendor/' if verdict.notes else ''} (sha256 {verdict.sha256})")
    for note in verdict.notes:
        print(note)
    return EXIT_OK


def cmd_stats(settings: Settings, args: argparse.Namespace) -> int:
    """`tardist stats ingest|export`."""
    from worker import stats, stats_export  # only these commands need them

    if args.stats_command == "export":
        conn = schema.open_reader(settings.database)
        if conn is None:
            raise SettingsError(f"no database yet at {settings.database}: nothing to export")
        try:
            path, rows, left_out = stats_export.export_day(settings, conn, args.day, Path(args.out))
        except OSError as exc:
            print(f"tardist: cannot write into {args.out}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            conn.close()
        print(json.dumps({"file": str(path), "requests": rows, "left_out": left_out}))
        return EXIT_OK
    started = time.monotonic()
    db = schema.open_writer(settings.database, settings.database_timeout)
    db.conn.isolation_level = None  # stats.ingest runs its own transactions
    totals = {"files": 0, "lines": 0, "downloads": 0, "skipped": 0, "errors": []}
    try:
        for name in args.files:
            result = stats.ingest(settings, db.conn, Path(name), args.batch_lines)
            print(f"{name}: {result.lines} new lines, {result.downloads} downloads, {result.skipped} skipped",
                  file=sys.stderr)
            totals["files"] += 1
            totals["lines"] += result.lines
            totals["downloads"] += result.downloads
            totals["skipped"] += result.skipped
            if result.error:
                print(f"tardist: {result.error}", file=sys.stderr)
                totals["errors"].append(result.error)
    finally:
        db.close()
    totals["seconds"] = round(time.monotonic() - started, 3)
    print(json.dumps(totals))
    return EXIT_FAILED if totals["errors"] else EXIT_OK


COMMANDS = {"sync": cmd_sync, "status": cmd_status, "gc": cmd_gc, "worker": cmd_worker, "init-db": cmd_init_db,
            "publish": cmd_publish, "stats": cmd_stats, "verify": cmd_verify}

if __name__ == "__main__":
    sys.exit(main())
