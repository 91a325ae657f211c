"""`tardist worker`: syncs and gc on a schedule, and syncs of one repository on request.

A thin layer over run_sync (worker.run), collect_garbage and the request dispatcher; the sync
lock keeps full runs from overlapping with themselves or with a cron-started
sync, and each repository's lock keeps two syncs of it apart.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from datetime import UTC, datetime

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from tardist.queue import Queue, WorkerRunning
from tardist.settings import Settings, SettingsError
from worker.dispatcher import Dispatcher
from worker.gc import collect_garbage
from worker.lock import AlreadyRunning, sync_lock
from worker.run import run_sync

log = logging.getLogger("tardist.worker")


def _trigger(settings: Settings, key: str) -> CronTrigger:
    try:
        return CronTrigger.from_crontab(getattr(settings, key), timezone=UTC)
    except ValueError as exc:
        raise SettingsError(f"{settings.config_file}: key {key!r}: expected a cron expression "
                            f"such as '0 * * * *': {exc}") from None


def run_worker(settings: Settings) -> None:
    """Sync at start and on `schedule`, gc on `gc_schedule`, serve requests, until SIGTERM or SIGINT."""
    queue = Queue(settings.queue_file)
    try:
        with queue.worker_lock():
            _run(settings)
    except WorkerRunning as exc:
        raise SettingsError(str(exc)) from None


def _run(settings: Settings) -> None:
    stop = threading.Event()
    scheduler = BlockingScheduler(timezone=UTC)

    def sync_job() -> None:
        try:
            with sync_lock(settings.lock_file):
                summary = run_sync(settings, stop=stop)
            log.info("sync finished: %s", json.dumps(summary.as_json()))
        except AlreadyRunning as exc:
            log.info("sync skipped: %s", exc)
        except SettingsError as exc:
            log.error("sync not possible: %s", exc)

    def poll_job() -> None:
        try:
            with sync_lock(settings.lock_file):
                summary = run_sync(settings, stop=stop, changed=True)
        except AlreadyRunning:
            return  # the run in hand checks every repository anyway
        except SettingsError as exc:
            log.error("check not possible: %s", exc)
            return
        if summary.repositories or summary.unlisted_sources:
            log.info("check finished: %s", json.dumps(summary.as_json()))

    def gc_job() -> None:
        try:
            with sync_lock(settings.lock_file):
                report = collect_garbage(settings)
            log.info("gc removed %d tarballs, %d mirrors, %d bytes",
                     report["tarballs"], report["mirrors"], report["bytes"])
        except AlreadyRunning as exc:
            log.info("gc skipped: %s", exc)

    scheduler.add_job(sync_job, _trigger(settings, "schedule"), id="sync", max_instances=1, coalesce=True,
                      next_run_time=datetime.now(UTC))
    if settings.poll_seconds:
        scheduler.add_job(poll_job, IntervalTrigger(seconds=settings.poll_seconds, timezone=UTC), id="poll",
                          max_instances=1, coalesce=True)
    scheduler.add_job(gc_job, _trigger(settings, "gc_schedule"), id="gc", max_instances=1, coalesce=True)

    def shutdown(signum: int, frame: object) -> None:
        log.info("%s: finishing the repositories in hand, then exiting", signal.Signals(signum).name)
        stop.set()
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    log.info("worker started: sync on %r, gc on %r (UTC), moved heads checked every %d s",
             settings.schedule, settings.gc_schedule, settings.poll_seconds)
    dispatcher = Dispatcher(settings, stop)
    threading.Thread(target=dispatcher.run, name="dispatcher").start()
    log.info("worker ready: serving requests from %s", settings.queue_file)
    scheduler.start()
    # start() returns once shut down; wait for a sync in hand to finish its repositories.
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    log.info("worker stopped")
