"""Download counts: `tardist stats ingest` over nginx logs (rotated, gzip'd, hostile, killed) and `stats export`."""

from __future__ import annotations

import gzip
import json
import os
import signal
import sqlite3
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import TARDIST, Deployment

NOW = datetime.now(UTC).replace(microsecond=0)
CITE = "/dist/extensions/Cite-master-0123abc.tar.gz"
VECTOR = "/dist/skins/Vector-REL1_45-fedcba9.tar.gz"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def line(path: str = CITE, status: int = 200, method: str = "GET", when: datetime = NOW, ip: str = "198.51.100.7",
         agent: str = "curl/8.5.0", size: int = 4242, tail: str = "") -> str:
    """One access log line in nginx's combined format (plus deploy/nginx.conf's extra fields in tail)."""
    stamp = when.strftime("%d/%b/%Y:%H:%M:%S %z")
    return f'{ip} - - [{stamp}] "{method} {path} HTTP/1.1" {status} {size} "-" "{agent}"{tail}\n'


def ingest(deployment: Deployment, *files: Path, check: bool = True, extra: tuple[str, ...] = ()) -> dict:
    result = deployment.cli("stats", "ingest", *extra, *map(str, files))
    if check:
        assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def counts(deployment: Deployment) -> dict[tuple[str, str, str], int]:
    """(kind, name, branch) -> downloads, straight from the database."""
    with sqlite3.connect(deployment.settings().database) as conn:
        return {(k, n, b): c for k, n, b, c in conn.execute(
            "SELECT kind, name, branch, sum(count) FROM downloads GROUP BY kind, name, branch")}


def test_counts_successful_gets_of_tarballs_once_however_often_the_log_is_read(deployment, tmp_path):
    log = tmp_path / "access.log"
    log.write_text(line() * 3 + line(VECTOR, tail=' 0.002 "-"') + line(status=304) + line(status=206)
                   + line(method="HEAD") + line("/info/extensions/Cite") + line("/dist/extensions/")
                   + line(CITE + "?x=1", when=NOW - timedelta(days=1)) + line("/dist/extensions/.tmp-x.tar.gz"))
    first = ingest(deployment, log)
    assert (first["lines"], first["downloads"], first["skipped"]) == (11, 5, 0)
    again = ingest(deployment, log, log)
    assert (again["lines"], again["downloads"]) == (0, 0)
    assert counts(deployment) == {("extensions", "Cite", "master"): 4, ("skins", "Vector", "REL1_45"): 1}


def test_an_unfinished_last_line_waits_for_its_end(deployment, tmp_path):
    log = tmp_path / "access.log"
    whole = line()
    log.write_text(whole + whole[:30])
    assert ingest(deployment, log)["downloads"] == 1
    with open(log, "a") as out:
        out.write(whole[30:] + whole)
    assert ingest(deployment, log)["downloads"] == 2
    assert counts(deployment) == {("extensions", "Cite", "master"): 3}


@pytest.mark.slow
def test_rotated_and_gzipped_log_continues_where_the_plain_one_stopped(deployment, tmp_path):
    log = tmp_path / "access.log"
    log.write_text(line(ip="192.0.2.1") * 5)
    assert ingest(deployment, log)["downloads"] == 5
    with open(log, "a") as out:  # nginx kept writing before logrotate moved the file
        out.write(line(ip="192.0.2.2") * 7)
    with open(log, "rb") as plain, gzip.open(tmp_path / "access.log.1.gz", "wb") as zipped:
        zipped.write(plain.read())
    log.unlink()
    log.write_text(line(ip="192.0.2.3") * 2)  # the new file nginx opened
    result = ingest(deployment, tmp_path / "access.log.1.gz", log)
    assert (result["lines"], result["downloads"]) == (9, 9)
    assert ingest(deployment, tmp_path / "access.log.1.gz", log)["downloads"] == 0
    assert counts(deployment) == {("extensions", "Cite", "master"): 14}


def test_garbage_lines_are_counted_as_skipped(deployment, tmp_path):
    junk = ["", "garbage", "\x00\x01\x02", "-" * 5000, line()[:-20], line().replace("[", "("),
            line().replace("Nov", "Foo").replace(NOW.strftime("%b"), "Foo"), line().replace(" 200 ", " 2000 "),
            '1.2.3.4 - - [99/Jan/2026:99:99:99 +0000] "GET / HTTP/1.1" 200 1 "-" "x"', "\udcff" * 3, "é" * 40,
            line().replace('"GET', 'GET')]
    lines = [junk[i % len(junk)].rstrip("\n") + "\n" for i in range(10_000)]
    good = [line(ip=f"203.0.113.{i % 250}") for i in range(321)]
    log = tmp_path / "access.log"
    log.write_bytes("".join(lines[:5000] + good + lines[5000:]).encode("utf-8", "surrogateescape"))
    result = ingest(deployment, log)
    assert (result["lines"], result["downloads"], result["skipped"]) == (10_321, 321, 10_000)
    with sqlite3.connect(deployment.settings().database) as conn:
        assert conn.execute("SELECT lines, skipped FROM log_files").fetchall() == [(10_321, 10_000)]


@pytest.mark.slow
def test_a_line_of_many_megabytes_is_one_skipped_line(deployment, tmp_path):
    log = tmp_path / "access.log"
    log.write_bytes(line().encode() + b"x" * 9_000_000 + b"\n" + line().encode() + b"y" * 3_000_000)
    result = ingest(deployment, log)
    assert (result["lines"], result["downloads"], result["skipped"]) == (3, 2, 1)
    with open(log, "ab") as out:  # the unfinished last "line" ends: it is skipped, then counting goes on
        out.write(b"\n" + line().encode())
    assert (ingest(deployment, log)["skipped"], counts(deployment)) == (1, {("extensions", "Cite", "master"): 3})


@pytest.mark.slow
def test_a_kill_mid_ingest_loses_and_duplicates_nothing(deployment, tmp_path):
    total = 300_000
    log = tmp_path / "access.log"
    one = line().encode()
    log.write_bytes(one * total)
    ingest(deployment, tmp_path / "empty.log", check=False)  # creates the database
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARDIST_")}
    process = subprocess.Popen([TARDIST, "stats", "ingest", "--batch-lines", "2000", str(log)], cwd=deployment.root,
                               env={**env, "TARDIST_CONFIG": str(deployment.config)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    database = deployment.settings().database
    deadline = time.monotonic() + 60
    offset = 0
    while offset == 0 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.005)
        with sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True) as conn:
            offset = (conn.execute("SELECT max(offset) FROM log_files").fetchone()[0] or 0)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "ingest ended before it could be killed"
    counted = counts(deployment).get(("extensions", "Cite", "master"), 0)
    assert 0 < counted < total and counted * len(one) == offset_of(database)
    result = ingest(deployment, log)
    assert result["downloads"] == total - counted
    assert counts(deployment) == {("extensions", "Cite", "master"): total}
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] == total


def offset_of(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        return conn.execute("SELECT offset FROM log_files").fetchone()[0]


def test_a_truncated_gzip_keeps_what_was_read_and_exits_1(deployment, tmp_path):
    data = gzip.compress((line() * 50_000).encode())
    broken = tmp_path / "access.log.2.gz"
    broken.write_bytes(data[: len(data) // 2])
    result = deployment.cli("stats", "ingest", str(broken), str(tmp_path / "missing.log"))
    assert result.returncode == 1
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(summary["errors"]) == 2 and "unreadable after" in summary["errors"][0]
    assert 0 < summary["downloads"] < 50_000
    assert counts(deployment)[("extensions", "Cite", "master")] == summary["downloads"]


def test_with_tarballs_on_a_cdn_the_download_redirects_are_counted(deployment, tmp_path):
    deployment.write_config(tarball_url="https://cdn.example.org/dist")
    log = tmp_path / "access.log"
    log.write_text(line("/download/extensions/Cite/master", status=302) * 2 + line(CITE)
                   + line("/download/extensions/Cite/REL1_45", status=404))
    assert ingest(deployment, log)["downloads"] == 2
    assert counts(deployment) == {("extensions", "Cite", "master"): 2}


@pytest.mark.slow
def test_export_writes_an_anonymised_day_and_stores_no_address_or_agent(deployment, tmp_path):
    yesterday = NOW - timedelta(days=1)
    log = tmp_path / "access.log"
    log.write_text(line(ip="198.51.100.77", agent=BROWSER, when=yesterday)
                   + line(ip="198.51.100.77", agent=BROWSER) + line(ip="198.51.100.77", agent="curl/8.5.0")
                   + line(ip="2001:db8::1", agent="Composer/2.7.1 (Linux)", status=404, size=0)
                   + line("/info/extensions/Cite", ip="198.51.100.99"))
    ingest(deployment, log)
    result = deployment.cli("stats", "export", "--day", NOW.date().isoformat(), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    exported = Path(json.loads(result.stdout)["file"])
    assert exported == tmp_path / "out" / f"tardist-requests-{NOW.date().isoformat()}.jsonl.gz"
    rows = [json.loads(text) for text in gzip.decompress(exported.read_bytes()).decode().splitlines()]
    assert [(r["path"], r["status"], r["bytes"], r["agent"]) for r in rows] == [
        (CITE, 200, 4242, "chrome"), (CITE, 200, 4242, "curl"), (CITE, 404, 0, "composer")]
    assert all(set(r) == {"time", "path", "status", "bytes", "client", "agent"} for r in rows)
    assert rows[0]["time"] == NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert rows[0]["client"] == rows[1]["client"] != rows[2]["client"]
    day_before = deployment.cli("stats", "export", "--day", yesterday.date().isoformat(),
                                "--out", str(tmp_path / "out"))
    [older] = [json.loads(t) for t in gzip.decompress(Path(json.loads(day_before.stdout)["file"]).read_bytes())
               .decode().splitlines()]
    assert older["client"] != rows[0]["client"]  # the hash is salted per day: days cannot be linked
    stored = b"".join(p.read_bytes() for p in deployment.settings().database.parent.iterdir() if p.is_file())
    for secret in (b"198.51.100.77", b"2001:db8::1", b"198.51.100.99", b"Mozilla", b"Composer/2.7.1", b"curl/8"):
        assert secret not in stored and secret not in exported.read_bytes()
    again = deployment.cli("stats", "export", "--day", NOW.date().isoformat(), "--out", str(tmp_path / "out"))
    assert again.returncode == 0 and Path(json.loads(again.stdout)["file"]).read_bytes() == exported.read_bytes()
    for bad in ("2026-13-01", "yesterday", "20261101"):
        assert deployment.cli("stats", "export", "--day", bad, "--out", str(tmp_path)).returncode == 2
    (tmp_path / "a-file").write_text("")
    unwritable = deployment.cli("stats", "export", "--day", NOW.date().isoformat(), "--out", str(tmp_path / "a-file"))
    assert unwritable.returncode == 1 and "cannot write into" in unwritable.stderr


@pytest.mark.slow
def test_stats_answers_per_kind_and_per_repository(deployment, upstream, tmp_path):
    upstream("Cite")
    upstream("Echo")
    deployment.sync()
    log = tmp_path / "access.log"
    log.write_text(line() * 2 + line(when=NOW - timedelta(days=40))
                   + line("/dist/extensions/Cite-REL1_45-0123abc.tar.gz")
                   + line("/dist/extensions/Echo-master-0000000.tar.gz") * 5)
    ingest(deployment, log)
    client = deployment.app().test_client()
    assert client.get("/stats/extensions").get_json() == {"extensions": {
        "Cite": {"last_30_days": 3, "all_time": 4}, "Echo": {"last_30_days": 5, "all_time": 5}}}
    cite = client.get("/stats/extensions/Cite").get_json()
    assert (cite["last_30_days"], cite["all_time"]) == (3, 4)
    assert cite["branches"]["master"]["days"] == {(NOW - timedelta(days=40)).date().isoformat(): 1,
                                                   NOW.date().isoformat(): 2}
    assert client.get("/list/extensions?sort=downloads").get_json() == {"extensions": ["Echo", "Cite"]}
    assert client.get("/stats/extensions/Nope").status_code == 404
    assert client.get("/stats/nope").status_code == 404


@pytest.mark.slow
def test_two_ingests_at_once_count_each_line_once_and_the_loser_says_it_stored_nothing(deployment, tmp_path):
    total = 5000
    log = tmp_path / "access.log"
    log.write_text(line() * total)
    ingest(deployment, tmp_path / "empty.log", check=False)  # creates the database
    database = deployment.settings().database
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARDIST_")}
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # both read the log and its offset, then wait for the write lock
    processes = [subprocess.Popen([TARDIST, "stats", "ingest", str(log)], cwd=deployment.root,
                                  env={**env, "TARDIST_CONFIG": str(deployment.config)},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 60
        while not all(has_read(p.pid, log) for p in processes):
            assert time.monotonic() < deadline and all(p.poll() is None for p in processes), "ingest never read it"
            time.sleep(0.01)
        time.sleep(0.3)  # from the read to the wait for the lock: counting 5,000 lines takes milliseconds
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    summaries = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        summaries.append((process.returncode, json.loads(out.strip().splitlines()[-1])))
    summaries.sort(key=lambda pair: pair[0])
    (won, winner), (lost, loser) = summaries
    assert (won, winner["downloads"], winner["lines"], winner["errors"]) == (0, total, total, [])
    assert (lost, loser["downloads"], loser["lines"], loser["skipped"]) == (1, 0, 0, 0)
    assert "another `tardist stats ingest` is reading it" in loser["errors"][0]
    assert counts(deployment) == {("extensions", "Cite", "master"): total}
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] == total


def has_read(pid: int, log: Path) -> bool:
    """True when the process has the log open and has read it to its end."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(log):
                pos = Path(f"/proc/{pid}/fdinfo/{fd}").read_text().split()[1]
                return int(pos) == log.stat().st_size
    except OSError:
        pass
    return False


def test_export_publishes_only_paths_that_name_a_tarball(deployment, tmp_path):
    hostile = ["/dist/extensions/Cite-master-0123abc.tar.gz.html", "/dist/extensions/BUY-CHEAP-PILLS-at-example.com",
               "/dist/extensions/../../etc/passwd", "/dist/" + "x" * 900,
               "/dist/extensions/Cite-master-0123abc.tar.gz/x",
               "/dist/extensions/Cite-master-XYZ.tar.gz", "/dist/a/b/extensions/Cite-master-0123abc.tar.gz",
               "/dist/extensions/"]
    log = tmp_path / "access.log"
    log.write_text("".join(line(path, status=404) for path in hostile) + line() + line(VECTOR, status=404))
    ingest(deployment, log)
    result = deployment.cli("stats", "export", "--day", NOW.date().isoformat(), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["requests"], summary["left_out"]) == (2, len(hostile))
    rows = [json.loads(t) for t in gzip.decompress(Path(summary["file"]).read_bytes()).decode().splitlines()]
    assert [r["path"] for r in rows] == [CITE, VECTOR]
