"""Issue 18 benchmark: a no-op check of N Gerrit-listed repositories, one listing request against N `ls-remote`s.

    .venv/bin/python bench/gerrit_poll.py --repos 2000

Serves N projects (symlinks to one real repository, so each is a full `git ls-remote`)
with a real `git daemon` and lists them with a Gerrit-shaped listing on loopback
(loopback/gerrit.py, `b=` heads, pages of 500). A database records every repository
as built at its head, so both runs below find nothing to do:

- check: `run_sync(changed=True)`, what `tardist worker` does every `poll_seconds`
  (`tardist sync --changed`): one paged listing, heads compared, no git process;
- ls-remote floor: one `git ls-remote` per repository, `jobs` at a time, the least a
  full run (`tardist sync`) costs;
- full run: `run_sync()`, what the hourly sync costs when nothing moved.

With `--pushes P`, P more projects are real repositories: `tardist worker` (polling
every `--poll-seconds`, no webhook, no scheduled sync in between) runs, P pushes come
at random times over `--window` seconds, and each is timed until the worker's
`/gerrit/.../branches` answer names the pushed commit (what ExtensionDistributor reads).

Prints a table and writes bench/results/gerrit_poll-N.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

from report import write_results  # noqa: E402

from loopback.gerrit import FakeGerrit  # noqa: E402
from loopback.gitdaemon import git_daemon  # noqa: E402
from tardist import answers, schema  # noqa: E402
from tardist.settings import load_settings  # noqa: E402
from worker.run import run_sync  # noqa: E402

PREFIX = "mediawiki/extensions/"
BRANCH = "master"


def git(*args: str, cwd: Path) -> str:
    """Run git in cwd; its stdout, stripped."""
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_projects(root: Path, repos: int) -> tuple[list[str], str]:
    """N project folders under root/mediawiki/extensions, all one real repository; their names and head."""
    origin = root / "origin"
    origin.mkdir()
    git("init", "--quiet", "-b", BRANCH, cwd=origin)
    (origin / "extension.json").write_text(json.dumps({"name": "Bench", "manifest_version": 2}))
    git("add", "-A", cwd=origin)
    git("-c", "user.name=b", "-c", "user.email=b@example.org", "commit", "--quiet", "-m", "one", cwd=origin)
    head = git("rev-parse", "HEAD", cwd=origin)
    folder = root / "daemon" / PREFIX
    folder.mkdir(parents=True)
    names = [f"Ext{index:05d}" for index in range(repos)]
    for name in names:
        (folder / name).symlink_to(origin)
    return names, head


def record_as_built(settings, names: list[str], head: str) -> None:
    """Rows (and empty tarball files) that say every repository is built at head: nothing to do."""
    db = schema.open_writer(settings.database)
    tarballs = settings.tarballs / "extensions"
    tarballs.mkdir(parents=True)
    now = "2026-01-01T00:00:00Z"
    with schema.write_transaction(db):
        for name in names:
            file = f"{name}-{BRANCH}-{head[:7]}.tar.gz"
            (tarballs / file).touch()
            db["repos"].insert({"kind": "extensions", "name": name, "repository": None, "present": 1,
                                "checked_at": now, "error": None, "source": ""})
            db["branches"].insert({"kind": "extensions", "name": name, "branch": BRANCH, "commit_sha": head,
                                   "tarball": file, "size": 0, "sha256": "0" * 64, "built_at": now,
                                   "manifest": "{}", "manifest_errors": "[]", "warnings": "[]", "vendor": "[]"})
    db.close()


def push_latency(root: Path, config: Path, names: dict[str, str], pushes: int, window: float,
                 poll_seconds: int) -> list[float]:
    """Seconds from each push to the worker's /gerrit/ answer naming it, with polling alone."""
    text = config.read_text().replace("[[source]]", f'poll_seconds = {poll_seconds}\nschedule = "0 0 1 1 *"\n'
                                                     "[[source]]")
    config.write_text(text)
    settings = load_settings(config, environ={})
    log = root / "worker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARDIST_")}
    worker = subprocess.Popen([str(BENCH.parent / ".venv/bin/tardist"), "worker"], cwd=root,
                              env={**env, "TARDIST_CONFIG": str(config)}, stdin=subprocess.DEVNULL,
                              stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while "sync finished" not in log.read_text():
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        rng = random.Random(18)
        plan = sorted((rng.uniform(0, window), name) for name in list(names)[:pushes])
        started, pending, latencies = time.monotonic(), {}, []
        give_up = started + window + 3 * poll_seconds + 300
        while (plan or pending) and time.monotonic() < give_up:
            now = time.monotonic() - started
            while plan and plan[0][0] <= now:
                _at, name = plan.pop(0)
                folder = root / "daemon" / PREFIX / name
                (folder / "pushed.txt").write_text(f"{time.time()}\n")
                git("add", "-A", cwd=folder)
                git("-c", "user.name=b", "-c", "user.email=b@example.org", "commit", "--quiet", "-m", "push",
                    cwd=folder)
                names[name] = git("rev-parse", "HEAD", cwd=folder)  # what the listing says from now on
                pending[name] = (names[name], time.monotonic())
            conn = schema.open_reader(settings.database)
            try:
                for name, (sha, pushed) in list(pending.items()):
                    body = answers.gerrit_branches(conn, settings.branches, "extensions", name)
                    if sha.encode() in body:
                        latencies.append(round(time.monotonic() - pushed, 2))
                        del pending[name]
            finally:
                conn.close()
            time.sleep(0.2)
        assert not plan and not pending, f"not built in time: {sorted(pending)}"
        return latencies
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=120)


def make_pushable(root: Path, pushes: int) -> dict[str, str]:
    """P real repositories beside the symlinked ones, to push to: their names and heads."""
    names = [f"Push{index:03d}" for index in range(pushes)]
    for name in names:
        folder = root / "daemon" / PREFIX / name
        folder.mkdir()
        git("init", "--quiet", "-b", BRANCH, cwd=folder)
        (folder / "extension.json").write_text(json.dumps({"name": name, "manifest_version": 2}))
        git("add", "-A", cwd=folder)
        git("-c", "user.name=b", "-c", "user.email=b@example.org", "commit", "--quiet", "-m", "one", cwd=folder)
    return {name: git("rev-parse", "HEAD", cwd=root / "daemon" / PREFIX / name) for name in names}


def timed(action) -> tuple[float, object]:
    """Run action; (seconds, its result)."""
    started = time.monotonic()
    result = action()
    return round(time.monotonic() - started, 3), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=4, help="ls-remotes at a time (the jobs setting)")
    parser.add_argument("--page", type=int, default=500, help="projects a listing page holds")
    parser.add_argument("--checks", type=int, default=5, help="check runs timed (the median is shown)")
    parser.add_argument("--skip-full", action="store_true", help="do not time the full run")
    parser.add_argument("--pushes", type=int, default=0, help="pushes timed until the worker's /gerrit/ answer")
    parser.add_argument("--window", type=float, default=120, help="seconds the pushes are spread over")
    parser.add_argument("--poll-seconds", type=int, default=60, help="the worker's poll_seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tardist-gerrit-poll-") as tmp:
        root = Path(tmp)
        names, head = make_projects(root, args.repos)
        pushable = make_pushable(root, args.pushes)  # {name: head}, updated by each push
        listed = {PREFIX + name: {BRANCH: head} for name in names}

        def projects() -> dict[str, dict[str, str]]:
            return {**listed, **{PREFIX + name: {BRANCH: sha} for name, sha in pushable.items()}}
        gerrit = FakeGerrit(projects, page_size=args.page)
        try:
            with git_daemon(root / "daemon") as daemon:
                config = root / "tardist.toml"
                config.write_text("\n".join([
                    f"database = {json.dumps(str(root / 'tardist.sqlite3'))}",
                    f"mirrors = {json.dumps(str(root / 'mirrors'))}",
                    f"tarballs = {json.dumps(str(root / 'tarballs'))}",
                    'published = ""', f'branches = ["{BRANCH}"]', f"jobs = {args.jobs}",
                    'submodule_protocols = ["git"]', f'git_config = {{ "url.{daemon}/.insteadOf" = "{gerrit.base}/" }}',
                    "[[source]]", 'kind = "extensions"', 'type = "gerrit"', f'url = "{gerrit.base}"',
                    f'prefix = "{PREFIX}"', ""]))
                settings = load_settings(config, environ={})
                record_as_built(settings, names, head)
                if pushable:
                    run_sync(settings, only=tuple(pushable))  # built once, as everything else is
                checks = []
                for _ in range(args.checks):
                    asked = len(gerrit.asked)
                    seconds, summary = timed(lambda: run_sync(settings, changed=True).as_json())
                    assert summary["settled"] == args.repos + args.pushes and summary["repositories"] == 0, summary
                    checks.append((seconds, len(gerrit.asked) - asked))
                check_seconds = sorted(seconds for seconds, _ in checks)[len(checks) // 2]
                urls = [f"{daemon}/{PREFIX}{name}" for name in names]

                def ls_remote(url: str) -> None:
                    subprocess.run(["git", "ls-remote", url, f"refs/heads/{BRANCH}"], check=True,
                                   stdout=subprocess.DEVNULL)

                with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                    floor_seconds, _ = timed(lambda: list(pool.map(ls_remote, urls)))
                full_seconds = None
                if not args.skip_full:
                    full_seconds, summary = timed(lambda: run_sync(settings).as_json())
                    assert summary["unchanged"] == args.repos + args.pushes and summary["built"] == 0, summary
                latencies = (push_latency(root, config, pushable, args.pushes, args.window, args.poll_seconds)
                             if args.pushes else [])
        finally:
            gerrit.close()
    rows = [("check (sync --changed, polling)", check_seconds, checks[0][1], 0),
            (f"ls-remote floor ({args.jobs} at a time)", floor_seconds, 0, args.repos)]
    if full_seconds is not None:
        rows.append(("full run (sync), nothing moved", full_seconds, 1 + (args.repos + args.pushes - 1) // args.page,
                     args.repos + args.pushes))
    print(f"\nno-op check of {args.repos} Gerrit-listed repositories ({platform.machine()}, "
          f"median of {args.checks} checks)\n")
    print(f"| {'what':<34} | {'seconds':>8} | {'HTTP requests':>13} | {'git processes':>13} | {'x check':>8} |")
    print(f"|{'-' * 36}|{'-' * 10}|{'-' * 15}|{'-' * 15}|{'-' * 10}|")
    for what, seconds, requests, processes in rows:
        print(f"| {what:<34} | {seconds:>8.3f} | {requests:>13} | {processes:>13} | {seconds / check_seconds:>8.1f} |")
    if latencies:
        ranked = sorted(latencies)
        p95 = ranked[min(len(ranked) - 1, int(0.95 * len(ranked)))]
        print(f"\npush -> /gerrit/ answer with polling alone (poll_seconds = {args.poll_seconds}, {len(ranked)} "
              f"pushes over {args.window:.0f} s): median {ranked[len(ranked) // 2]} s, p95 {p95} s, "
              f"max {ranked[-1]} s")
    write_results(f"gerrit_poll-{args.repos}", {"push_latencies": latencies, "poll_seconds": args.poll_seconds,
        "repos": args.repos, "jobs": args.jobs, "page": args.page, "checks": checks,
        "check_seconds": check_seconds, "ls_remote_floor_seconds": floor_seconds, "full_run_seconds": full_seconds,
        "speedup_over_floor": round(floor_seconds / check_seconds, 1)})


if __name__ == "__main__":
    main()
