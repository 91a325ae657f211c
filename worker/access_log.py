"""Reading nginx access logs: gzip'd or not, known by their first line, in batches of complete lines."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

BLOCK_BYTES = 4 * 1024 * 1024
MAX_LINE_BYTES = 1024 * 1024  # nginx's lines are a few KiB at most; longer is a broken file
READ_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError


def open_log(path: Path) -> BinaryIO:
    """A log file opened for reading its text, gzip'd or not (told by its first bytes, not its name)."""
    raw = open(path, "rb")
    if raw.read(2) == b"\x1f\x8b":
        raw.seek(0)
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    raw.seek(0)
    return raw


def fingerprint(first_line: bytes) -> str:
    """A log file's identity: the hash of its first line, the same after rotation and gzip."""
    return hashlib.sha256(first_line).hexdigest()


def batches(stream: BinaryIO, batch_lines: int) -> Iterator[tuple[list[bytes], int]]:
    """Complete lines in batches, with the bytes they span; an unfinished last line is left for next time.

    A "line" longer than MAX_LINE_BYTES is no log line: it is passed on as one empty
    (skipped) line without being held in memory. A read error (a truncated gzip) is
    raised after the complete lines read before it were yielded.
    """
    # read1 hands over what each decompression step gives: a truncated gzip loses nothing before the cut.
    read = stream.read1 if isinstance(stream, gzip.GzipFile) else stream.read
    pending = b""
    overlong = 0  # bytes of an overlong line read so far (and dropped)
    lines: list[bytes] = []
    failure: Exception | None = None
    while True:
        try:
            block = read(BLOCK_BYTES)
        except READ_ERRORS as exc:
            failure = exc
            break
        if not block:
            break
        if overlong:
            first = block.find(b"\n")
            if first < 0:
                overlong += len(block)
                continue
            yield [b""], overlong + first + 1
            overlong, block = 0, block[first + 1:]
        block = pending + block
        end = block.rfind(b"\n")
        if end < 0:
            pending = block
            if len(pending) > MAX_LINE_BYTES:
                if lines:
                    yield lines, sum(map(len, lines)) + len(lines)
                    lines = []
                overlong, pending = len(pending), b""
            continue
        pending = block[end + 1:]
        lines.extend(block[:end].split(b"\n"))
        while len(lines) >= batch_lines:
            take = lines[:batch_lines]
            del lines[:batch_lines]
            yield take, sum(map(len, take)) + len(take)
    if lines:
        yield lines, sum(map(len, lines)) + len(lines)
    if failure is not None:
        raise failure
