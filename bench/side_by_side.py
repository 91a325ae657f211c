"""Issue 16 benchmark: every writer at once, as production runs them, and what they leave behind.

    python bench/side_by_side.py --repos 20 --hooks 300 --seconds 60

Small extension repositories in a directory source; gunicorn with deploy/gunicorn.conf.py
taking signed webhooks (each after a commit), `tardist worker` serving them, and beside it,
in loops for --seconds: `tardist sync --only`, full `tardist sync`, `tardist gc`
(retention_days = 0: it removes what the pushes superseded) and `tardist stats ingest`
of a growing access log. Then counts tracebacks, "database is locked", failed exits, and, once every writer is done,
runs left `running`, published/ files that differ from what the database answers and
repositories whose recorded master is not their last push; then (after one more full sync,
which should build nothing) runs by status and git processes still alive once the last
tardist process exited. Prints a table and writes bench/results/side-by-side-N.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from api_speed import GUNICORN, HOST, ROOT, server
from freshness import request
from report import write_results

sys.path.insert(0, str(ROOT))  # the repository root: loopback/ is shared with tests/
from loopback.gitdaemon import stop  # noqa: E402
from tardist import schema  # noqa: E402
from tardist.queue import Queue  # noqa: E402
from tardist.settings import load_settings  # noqa: E402
from worker.publish import published_files  # noqa: E402

TARDIST = ROOT / ".venv" / "bin" / "tardist"
SECRET = "bench-secret"
PUSHERS = 4  # threads committing and sending webhooks
GIT_ENV = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.org", "GIT_COMMITTER_NAME": "Bench",
           "GIT_COMMITTER_EMAIL": "bench@example.org", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def git(cwd: Path, *args: str) -> str:
    """git in cwd with a fixed identity; its stdout."""
    return subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, check=True,
                          capture_output=True, text=True).stdout.strip()


def make_repos(folder: Path, count: int) -> list[str]:
    """count extension repositories E000... with a manifest and a PHP file; their names."""
    names = [f"E{index:03d}" for index in range(count)]
    for name in names:
        repo = folder / name
        repo.mkdir(parents=True)
        git(repo, "init", "--quiet", "-b", "master")
        (repo / "extension.json").write_text(json.dumps({"name": name, "version": "1.0", "manifest_version": 2}))
        (repo / f"{name}.php").write_text(f"<?php\nclass {name} {{}}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "--quiet", "-m", "first")
    return names


def write_config(path: Path, state: Path, upstream: Path) -> None:
    """A deployment whose worker never syncs or collects on its own schedule: the loops do."""
    path.write_text("\n".join([
        f"database = {json.dumps(str(state / 'tardist.sqlite3'))}",
        f"mirrors = {json.dumps(str(state / 'mirrors'))}",
        f"tarballs = {json.dumps(str(state / 'tarballs'))}",
        f"published = {json.dumps(str(state / 'published'))}",
        'branches = ["master"]', "jobs = 2", "retention_days = 0", f'hook_secret = "{SECRET}"',
        'schedule = "0 0 1 1 *"', 'gc_schedule = "0 0 1 1 *"', 'composer = ""',
        "", "[[source]]", 'kind = "extensions"', 'type = "directory"', f"path = {json.dumps(str(upstream))}",
    ]) + "\n")


def log_lines(names: list[str], count: int, rng: random.Random) -> str:
    """count access log lines: downloads of the repositories' tarballs."""
    stamp = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S %z")
    return "".join(f'198.51.100.{rng.randrange(250)} - - [{stamp}] "GET /dist/extensions/{rng.choice(names)}'
                   f'-master-0123abc.tar.gz HTTP/1.1" 200 4242 "-" "curl/8.5.0"\n' for _ in range(count))


class Outcomes:
    """Exit statuses and stderr of every command the loops ran."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.guard = threading.Lock()
        self.runs: dict[str, list[int]] = {}
        self.texts: list[str] = []

    def run(self, label: str, args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
        result = subprocess.run([str(TARDIST), *args], cwd=cwd, env=env, capture_output=True, text=True,
                                stdin=subprocess.DEVNULL)
        with self.guard:
            self.runs.setdefault(label, []).append(result.returncode)
            self.texts.append(result.stderr)
            with open(self.logs / f"{label}.log", "a") as out:
                out.write(f"$ tardist {' '.join(args)} -> {result.returncode}\n{result.stderr}{result.stdout}\n")
        return result


def loop(until: float, pause: float, step) -> None:
    while time.monotonic() < until:
        step()
        time.sleep(pause)


def our_git_processes(work: Path) -> list[str]:
    """git processes whose command line or folder is inside work (other git on the machine is not ours)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            where = os.readlink(entry / "cwd")
        except OSError:
            continue
        if args and os.path.basename(args[0]) == b"git" and (
                str(work).encode() in b" ".join(args) or where.startswith(str(work))):
            found.append(f"{entry.name}: {b' '.join(args).decode(errors='replace')}")
    return found


def stale_published(config: Path) -> int:
    """published/ files that differ from what the database answers, are missing, or are extra."""
    settings = load_settings(config, environ={})
    conn = schema.open_reader(settings.database)
    assert conn is not None and settings.published is not None
    try:
        wanted = {path: body for path, (_url, body) in published_files(settings, conn).items()}
    finally:
        conn.close()
    present = {path.relative_to(settings.published).as_posix(): path.read_bytes()
               for path in settings.published.rglob("*") if path.is_file()}
    return sum(wanted.get(path) != present.get(path) for path in wanted.keys() | present.keys())


def measure(args: argparse.Namespace, work: Path) -> dict:
    """Flood, wait for the last process to end, count."""
    rng = random.Random(args.seed)
    subprocess.run(["rm", "-rf", str(work)], check=True)
    upstream, state, logs = work / "upstream", work / "state", work / "logs"
    for folder in (upstream, state, logs):
        folder.mkdir(parents=True)
    names = make_repos(upstream, args.repos)
    config = work / "tardist.toml"
    write_config(config, state, upstream)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARDIST_")} | {"TARDIST_CONFIG": str(config)}
    access_log = logs / "access.log"
    access_log.touch()
    outcomes = Outcomes(logs)
    pushed: dict[str, str] = {}
    statuses: dict[int, int] = {}
    counters = {"log_lines": 0}
    repo_locks = {name: threading.Lock() for name in names}
    results: dict = {"repos": args.repos, "seconds": args.seconds,
                     "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    started = time.monotonic()
    with ExitStack() as stack:
        worker_log = logs / "worker.log"
        with open(worker_log, "wb") as out:
            worker = subprocess.Popen([str(TARDIST), "worker"], cwd=work, stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=out, env=env)
        stack.callback(stop, worker, 300)
        api_port = args.port
        stack.enter_context(server([GUNICORN, "-c", str(ROOT / "deploy/gunicorn.conf.py"), "--bind",
                                    f"{HOST}:{api_port}", "wsgi:app"], api_port, logs / "gunicorn.log",
                                   cwd=ROOT, env=env))
        while "sync finished" not in worker_log.read_text():
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited:\n{worker_log.read_text()}")
            time.sleep(0.2)
        until = time.monotonic() + args.seconds
        hook_pause = args.seconds / max(args.hooks, 1)

        def push() -> None:
            name = rng.choice(names)
            with repo_locks[name]:
                (upstream / name / "NEWS").write_text(f"{time.time()}\n")
                git(upstream / name, "add", "NEWS")
                git(upstream / name, "commit", "--quiet", "-m", "push")
                pushed[name] = git(upstream / name, "rev-parse", "HEAD")
                status, _ = request(api_port, "/hooks/push", "POST",
                                    json.dumps({"kind": "extensions", "name": name}).encode(),
                                    Authorization=f"Bearer {SECRET}")
            statuses[status] = statuses.get(status, 0) + 1

        def ingest() -> None:
            with open(access_log, "a") as out:
                out.write(log_lines(names, 500, rng))
            counters["log_lines"] += 500
            outcomes.run("stats-ingest", ["stats", "ingest", "--batch-lines", "50", str(access_log)], env, work)

        def command(label: str, *argv: str):
            return lambda: outcomes.run(label, [a if a != "NAME" else rng.choice(names) for a in argv], env, work)

        steps = [*[(hook_pause * PUSHERS, push)] * PUSHERS, (0.5, ingest),
                 (0.2, command("sync-only", "sync", "--only", "NAME", "--only", "NAME")),
                 (0.2, command("sync-only", "sync", "--only", "NAME", "--force")),
                 (1.0, command("sync-full", "sync")), (1.0, command("gc", "gc"))]
        threads = [threading.Thread(target=loop, args=(until, pause, step)) for pause, step in steps]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        queue = Queue(state / "tardist.queue.sqlite3")
        while queue._conn().execute("SELECT count(*) FROM requests WHERE done_at IS NULL").fetchone()[0]:
            time.sleep(0.2)
        answers = [json.loads(row[0]) for row in queue._conn().execute(
            "SELECT result FROM requests WHERE action = 'sync'")]
        queue.close()
        # Every writer is done: what the database and published/ hold now is what the flood left.
        with sqlite3.connect(state / "tardist.sqlite3") as conn:
            recorded = dict(conn.execute("SELECT name, commit_sha FROM branches WHERE branch = 'master'"))
            results["runs_left_running"] = conn.execute(
                "SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0]
        results["pushes_not_recorded"] = sum(recorded.get(name) != head for name, head in pushed.items())
        results["published_stale"] = stale_published(config)
        # One more full sync: it builds what the flood failed to record (nothing, when nothing was lost).
        last = outcomes.run("sync-full", ["sync"], env, work)
        results["flood_seconds"] = round(time.monotonic() - started, 1)
    time.sleep(2)  # the worker and gunicorn have exited: their git children must be gone too
    texts = outcomes.texts + [worker_log.read_text(), (logs / "gunicorn.log").read_text()]
    with sqlite3.connect(state / "tardist.sqlite3") as conn:
        runs = dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status"))
        downloads = conn.execute("SELECT coalesce(sum(count), 0) FROM downloads").fetchone()[0]
    results.update({
        "webhooks": {str(status): count for status, count in sorted(statuses.items())},
        "requests_served": len(answers),
        "requests_failed": sum(bool(answer.get("error") or answer.get("failed")) for answer in answers),
        "commands": {label: {"runs": len(codes), "failed_exits": sum(code != 0 for code in codes)}
                     for label, codes in sorted(outcomes.runs.items())},
        "runs": runs,
        "last_full_sync_built": json.loads(last.stdout.splitlines()[-1])["built"] if last.stdout else None,
        "tracebacks": sum(text.count("Traceback") for text in texts),
        "database_is_locked": sum(text.count("database is locked") for text in texts),
        "downloads_counted": downloads, "log_lines": counters["log_lines"],
        "git_processes_left": our_git_processes(work),
    })
    return results


def goals(results: dict) -> dict:
    """What issue 16 asks of the flood."""
    failed_exits = sum(command["failed_exits"] for command in results["commands"].values())
    return {
        "no traceback anywhere": results["tracebacks"] == 0,
        "no 'database is locked'": results["database_is_locked"] == 0,
        "every command exits 0, every request is served": failed_exits == 0 and results["requests_failed"] == 0,
        "no run left running (none interrupted: no signal was sent)":
            results["runs_left_running"] == 0 and "interrupted" not in results["runs"],
        "published/ matches the database": results["published_stale"] == 0,
        "every push recorded when the flood ended (a full sync after it builds nothing)":
            results["pushes_not_recorded"] == 0 and results["last_full_sync_built"] == 0,
        "every downloaded line counted once": results["downloads_counted"] == results["log_lines"],
        "no git process left": not results["git_processes_left"],
    }


def print_table(results: dict, met: dict) -> None:
    """The numbers, then the goals."""
    print(f"\nside by side, {results['repos']} repositories, {results['seconds']} s of flood "
          f"({results['flood_seconds']} s in all)")
    print(f"{'what':<44} {'count':>8}")
    print(f"{'webhooks (status: count)':<44} {json.dumps(results['webhooks']):>8}")
    print(f"{'worker requests served / failed':<44} {results['requests_served']:>4} / {results['requests_failed']}")
    for label, command in results["commands"].items():
        print(f"{'tardist ' + label + ' runs / failed exits':<44} {command['runs']:>4} / {command['failed_exits']}")
    for key in ("tracebacks", "database_is_locked", "runs_left_running", "published_stale", "pushes_not_recorded",
                "last_full_sync_built", "log_lines", "downloads_counted"):
        print(f"{key:<44} {results[key]:>8}")
    print(f"{'git_processes_left':<44} {len(results['git_processes_left']):>8}")
    print(f"{'runs by status':<44} {json.dumps(results['runs'])}")
    print("\ngoals:")
    for goal, ok in met.items():
        print(f"  {'met ' if ok else 'MISSED'}  {goal}")


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=20)
    parser.add_argument("--hooks", type=int, default=300, help="webhooks sent over --seconds, each after a commit")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=21100, help="gunicorn's port")
    parser.add_argument("--workdir", type=Path, help="default: /tmp/tardist-side-by-side-N (emptied first)")
    args = parser.parse_args(argv)
    work = args.workdir or Path(f"/tmp/tardist-side-by-side-{args.repos}")
    results = measure(args, work)
    met = goals(results)
    results["goals"] = met
    print_table(results, met)
    write_results(f"side-by-side-{args.repos}", results)
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
