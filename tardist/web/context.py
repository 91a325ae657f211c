"""What every view needs, by name: the settings (and their kinds), the read-only reader, the queue and the
build waiters.

`create_app` installs one `Context` on the app; views ask for its parts through the functions below
instead of reaching into `current_app.extensions`.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from tardist import answers
from tardist.queue import Queue
from tardist.settings import Settings
from tardist.web.reader import Reader
from tardist.web.waiters import Waiters

KEY = "tardist"


@dataclass(frozen=True)
class Context:
    settings: Settings
    reader: Reader  # read-only database connections and the answer cache
    queue: Queue  # requests for `tardist worker`: syncs, head checks
    build_waiters: Waiters  # requests of this process waiting for an on-demand build

    @classmethod
    def of(cls, settings: Settings) -> Context:
        """A context for these settings; the queue opens on first use, one connection per thread."""
        return cls(settings, Reader(settings.database), Queue(settings.queue_file), Waiters(settings.build_waiters))


def install(app: Flask, context: Context) -> None:
    """Make context the one every view of app sees."""
    app.extensions[KEY] = context


def _current() -> Context:
    return current_app.extensions[KEY]


def settings() -> Settings:
    return _current().settings


def configured_kinds() -> tuple[str, ...]:
    """Kinds named by the configured sources, in configuration order: what tardist.answers calls `configured`."""
    return answers.configured_kinds(settings())


def reader() -> Reader:
    return _current().reader


def queue() -> Queue:
    return _current().queue


def build_waiters() -> Waiters:
    return _current().build_waiters
