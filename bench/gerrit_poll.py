"""Issue 18 benchmark: a no-op check of N Gerrit-listed repositories, one listing request against N `ls-remote`s.

    .venv/bin/python bench/gerrit_poll.py --repos 2000

Serves N projects (symlinks to one real repository, so each is a full `git ls-remote`)
with a real `git daemon` and lists them with a Gerrit-shaped listing on loopback
(bench/fakegerrit.py, `b=` heads, pages of 500). A database records every repository
as built at its head, so both runs below find nothing to do:

- check: `run_sync(changed=True)`, what `tardist worker` does every `poll_seconds`
  (`tardist sync --changed`): one paged listing, heads compared, no git process;
- ls-remote floor: one `git ls-remote` per repository, `jobs` at a time, the least a
  full run (`tardist sync`) costs;
- full run: `run_sync()`, what the hourly sync costs when nothing moved.

Prints a table and writes bench/results/gerrit_poll-N.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

from fakegerrit import FakeGerrit  # noqa: E402
from gitdaemon import git_daemon  # noqa: E402
from report import write_results  # noqa: E402

from tardist import schema  # noqa: E402
from tardist.settings import load_settings  # noqa: E402
from worker.sync import run_sync  # noqa: E402

PREFIX = "mediawiki/extensions/"
BRANCH = "master"


def git(*args: str, cwd: Path) -> str:
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


def timed(action) -> tuple[float, object]:
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tardist-gerrit-poll-") as tmp:
        root = Path(tmp)
        names, head = make_projects(root, args.repos)
        gerrit = FakeGerrit(lambda: {PREFIX + name: {BRANCH: head} for name in names}, page_size=args.page)
        try:
            with git_daemon(root / "daemon") as daemon:
                config = root / "tardist.toml"
                config.write_text("\n".join([
                    f"database = {json.dumps(str(root / 'tardist.sqlite3'))}",
                    f"mirrors = {json.dumps(str(root / 'mirrors'))}", f"tarballs = {json.dumps(str(root / 'tarballs'))}",
                    'published = ""', f'branches = ["{BRANCH}"]', f"jobs = {args.jobs}",
                    'submodule_protocols = ["git"]', f'git_config = {{ "url.{daemon}/.insteadOf" = "{gerrit.base}/" }}',
                    "[[source]]", 'kind = "extensions"', 'type = "gerrit"', f'url = "{gerrit.base}"',
                    f'prefix = "{PREFIX}"', ""]))
                settings = load_settings(config, environ={})
                record_as_built(settings, names, head)
                checks = []
                for _ in range(args.checks):
                    asked = len(gerrit.asked)
                    seconds, summary = timed(lambda: run_sync(settings, changed=True))
                    assert summary["settled"] == args.repos and summary["repositories"] == 0, summary
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
                    full_seconds, summary = timed(lambda: run_sync(settings))
                    assert summary["unchanged"] == args.repos and summary["built"] == 0, summary
        finally:
            gerrit.close()
    rows = [("check (sync --changed, polling)", check_seconds, checks[0][1], 0),
            (f"ls-remote floor ({args.jobs} at a time)", floor_seconds, 0, args.repos)]
    if full_seconds is not None:
        rows.append(("full run (sync), nothing moved", full_seconds, 1 + (args.repos - 1) // args.page, args.repos))
    print(f"\nno-op check of {args.repos} Gerrit-listed repositories ({platform.machine()}, "
          f"median of {args.checks} checks)\n")
    print(f"| {'what':<34} | {'seconds':>8} | {'HTTP requests':>13} | {'git processes':>13} | {'x check':>8} |")
    print(f"|{'-' * 36}|{'-' * 10}|{'-' * 15}|{'-' * 15}|{'-' * 10}|")
    for what, seconds, requests, processes in rows:
        print(f"| {what:<34} | {seconds:>8.3f} | {requests:>13} | {processes:>13} | {seconds / check_seconds:>8.1f} |")
    write_results(f"gerrit_poll-{args.repos}", {
        "repos": args.repos, "jobs": args.jobs, "page": args.page, "checks": checks,
        "check_seconds": check_seconds, "ls_remote_floor_seconds": floor_seconds, "full_run_seconds": full_seconds,
        "speedup_over_floor": round(floor_seconds / check_seconds, 1)})


if __name__ == "__main__":
    main()
