"""Issue 10 benchmark: `tardist stats ingest` speed and memory on a generated nginx access log.

    python bench/stats_speed.py [--lines 1000000]

Generates a log in deploy/nginx.conf's format (60% tarball downloads, 30% API
calls, the rest pages, 404s and partial downloads; 5,000 clients, 40 user agents,
one day) once, then runs `tardist stats ingest` as cron would, in a fresh
process each time: the plain file, the same file again (nothing new), and the
gzip'd file into a fresh database. Peak memory is the ingest process's maximum
resident set size. Prints a table and writes bench/results/stats_speed.json.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from report import write_results

BENCH = Path(__file__).resolve().parent
TARDIST = str(Path(sys.executable).with_name("tardist"))
GOAL_LINES_PER_SECOND = 200_000
NAMES = [f"Ext{n}" for n in range(800)]
BRANCHES = ["master", "REL1_45", "REL1_44", "REL1_43", "REL1_39"]
AGENTS = ["curl/8.5.0", "Wget/1.21.4", "Composer/2.7.1 (Linux; PHP 8.3)", "python-requests/2.32.3",
          "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
          "Mozilla/5.0 (Windows NT 10.0; rv:128.0) Gecko/20100101 Firefox/128.0", "MediaWiki/1.45",
          "Googlebot/2.1 (+http://www.google.com/bot.html)", "-"] + [f"Agent/{n}" for n in range(31)]


def generate(path: Path, lines: int) -> None:
    """Write a realistic access log of `lines` lines."""
    rng = random.Random(1)
    start = datetime(2026, 11, 27, tzinfo=timezone(timedelta(hours=1)))
    clients = [f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
               for _ in range(5000)]
    with open(path, "w") as out:
        batch = []
        for index in range(lines):
            when = (start + timedelta(seconds=index * 86400 // lines)).strftime("%d/%b/%Y:%H:%M:%S %z")
            roll = rng.random()
            name = rng.choice(NAMES)
            status, size = 200, rng.randint(20_000, 5_000_000)
            if roll < 0.6:
                request = f"GET /dist/extensions/{name}-{rng.choice(BRANCHES)}-{rng.getrandbits(28):07x}.tar.gz"
            elif roll < 0.9:
                request, size = f"GET /info/extensions/{name}", rng.randint(500, 3000)
            elif roll < 0.95:
                request, size = f"GET /browse/extensions/{name}", 9000
            elif roll < 0.98:
                request, status, size = f"GET /dist/extensions/{name}-master-0000000.tar.gz", 404, 150
            else:
                request, status = f"GET /dist/extensions/{name}-master-{rng.getrandbits(28):07x}.tar.gz", 206
            batch.append(f'{rng.choice(clients)} - - [{when}] "{request} HTTP/1.1" {status} {size} "-" '
                         f'"{rng.choice(AGENTS)}" 0.{rng.randint(0, 999):03d} -\n')
            if len(batch) == 10_000:
                out.write("".join(batch))
                batch = []
        out.write("".join(batch))


def ingest(work: Path, config: Path, log: Path) -> dict:
    """One `tardist stats ingest` process: its summary, wall seconds and peak memory."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TARDIST_")}, "TARDIST_CONFIG": str(config)}
    started = time.perf_counter()
    with open(work / "ingest.out", "w+") as out:
        process = subprocess.Popen([TARDIST, "stats", "ingest", str(log)], cwd=work, env=env, stdout=out,
                                   stderr=subprocess.DEVNULL)
        _pid, status, usage = os.wait4(process.pid, 0)  # this process's own peak memory
        seconds = time.perf_counter() - started
        cpu = usage.ru_utime + usage.ru_stime
        process.returncode = os.waitstatus_to_exitcode(status)
        assert process.returncode == 0, f"ingest exited with {process.returncode}"
        out.seek(0)
        summary = json.loads(out.read().strip().splitlines()[-1])
    return {"lines": summary["lines"], "downloads": summary["downloads"], "skipped": summary["skipped"],
            "seconds": round(seconds, 3), "lines_per_second": round(summary["lines"] / seconds) if seconds else 0,
            # CPU time too: on a shared, loaded machine the wall clock mostly measures the other processes
            "cpu_seconds": round(cpu, 3), "lines_per_cpu_second": round(summary["lines"] / cpu) if cpu else 0,
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def main(argv: list[str] | None = None) -> int:
    """Generate the log, run the ingests, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tardist-stats-bench-") as name:
        work = Path(name)
        log = work / "access.log"
        started = time.monotonic()
        generate(log, args.lines)
        with open(log, "rb") as plain, gzip.open(work / "access.log.1.gz", "wb", compresslevel=6) as zipped:
            shutil.copyfileobj(plain, zipped)
        generated = round(time.monotonic() - started, 1)
        configs = {}
        for label in ("plain", "gzip"):
            configs[label] = work / f"{label}.toml"
            configs[label].write_text(f'database = "{work / label}.sqlite3"\n')
        results = {"plain": ingest(work, configs["plain"], log),
                   "again": ingest(work, configs["plain"], log),
                   "gzip": ingest(work, configs["gzip"], work / "access.log.1.gz")}
        sizes = {"log_mib": round(log.stat().st_size / 2**20, 1),
                 "gzip_mib": round((work / "access.log.1.gz").stat().st_size / 2**20, 1),
                 "database_mib": round((work / "plain.sqlite3").stat().st_size / 2**20, 1)}
    print(f"\n{args.lines:,} lines ({sizes['log_mib']} MiB, {sizes['gzip_mib']} MiB gzip'd) "
          f"generated in {generated} s; "
          f"database after one ingest: {sizes['database_mib']} MiB\n")
    print(f"{'run':<34}{'lines':>10}{'downloads':>11}{'seconds':>9}{'lines/s':>10}{'cpu s':>8}"
          f"{'lines/cpu s':>13}{'peak MiB':>10}")
    for label, key in (("ingest the plain log", "plain"), ("ingest it again (nothing new)", "again"),
                       ("ingest the gzip'd log (fresh db)", "gzip")):
        row = results[key]
        print(f"{label:<34}{row['lines']:>10}{row['downloads']:>11}{row['seconds']:>9.2f}"
              f"{row['lines_per_second']:>10}{row['cpu_seconds']:>8.2f}{row['lines_per_cpu_second']:>13}"
              f"{row['peak_rss_mib']:>10}")
    met = results["plain"]["lines_per_second"] >= GOAL_LINES_PER_SECOND
    print(f"\ngoal: >= {GOAL_LINES_PER_SECOND:,} lines/s on the plain log: "
          f"{results['plain']['lines_per_second']:,} -> {'yes' if met else 'NO'} "
          f"(per CPU second: {results['plain']['lines_per_cpu_second']:,}; load average now "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    report = {"lines": args.lines, "sizes": sizes, "results": results,
              "goal": {"lines_per_second": GOAL_LINES_PER_SECOND, "met": met},
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    write_results("stats_speed", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
