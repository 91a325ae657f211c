"""Issue 8 benchmark: a no-op `tardist sync` when some repositories have a submodule that cannot be fetched.

    python bench/backoff_speed.py --repos 200 --broken 10

N healthy repositories and `--broken` copies of one whose master and REL1_45
pin a submodule nobody serves, all served by a real `git daemon` on --port. The
submodule's host (--port + 1) answers every request with a git error after
--delay seconds: a remote that is slow to say no, as a real one across a network is. After a first sync,
no-op runs are timed side by side, interleaved:
with backoff (what failed is left alone until its retry time) and without it
(`--retry`, what every run did before), against the floor of a run where no
repository is broken. Prints a table and writes bench/results/backoff_speed-N.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: loopback/ is shared with tests/
from loopback.gitdaemon import git_daemon  # noqa: E402
from loopback.servers import RefusingGitServer  # noqa: E402

BENCH = Path(__file__).resolve().parent
TARDIST = BENCH.parent / ".venv" / "bin" / "tardist"
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.org",
           "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.org",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def git(cwd: Path, *args: str) -> None:
    """Run git quietly in cwd."""
    subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True)


def template(path: Path, submodule_url: str | None) -> None:
    """A bare repository with master and REL1_45, optionally pinning a submodule at submodule_url."""
    work = path.with_suffix(".work")
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", "master")
    (work / "extension.json").write_text(json.dumps({"name": "Bench", "version": "1.0.0"}))
    (work / "README.md").write_text("# a benchmark extension\n" * 50)
    git(work, "add", "-A")
    if submodule_url:
        git(work, "config", "-f", ".gitmodules", "submodule.lib.path", "lib")
        git(work, "config", "-f", ".gitmodules", "submodule.lib.url", submodule_url)
        git(work, "update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},lib")
        git(work, "add", ".gitmodules")
    git(work, "commit", "-q", "-m", "initial")
    git(work, "branch", "REL1_45")
    git(work.parent, "clone", "-q", "--bare", str(work), str(path))
    shutil.rmtree(work)


def sync(config: Path, *args: str) -> tuple[float, dict]:
    """Run `tardist sync`; return its wall time and summary."""
    started = time.monotonic()
    result = subprocess.run([str(TARDIST), "sync", *args], env={**os.environ, "TARDIST_CONFIG": str(config)},
                            capture_output=True, text=True)
    seconds = time.monotonic() - started
    if result.returncode not in (0, 1):
        sys.exit(f"tardist sync failed: {result.stderr}")
    return seconds, json.loads(result.stdout.strip().splitlines()[-1])


def deployment(root: Path, name: str, base: str, names: list[str], jobs: int) -> Path:
    """A deployment folder whose list source has the given repositories on the daemon."""
    folder = root / name
    folder.mkdir()
    repos = ", ".join(f'{n} = "{base}/{n}.git"' for n in names)
    config = folder / "tardist.toml"
    config.write_text(f'database = "{folder}/db.sqlite3"\nmirrors = "{folder}/mirrors"\n'
                      f'tarballs = "{folder}/tarballs"\nbranches = ["master", "REL1_45"]\njobs = {jobs}\n'
                      f'[[source]]\nkind = "extensions"\ntype = "list"\nrepos = {{ {repos} }}\n')
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repos", type=int, default=200, help="healthy repositories")
    parser.add_argument("--broken", type=int, default=10, help="copies of the repository with a broken submodule")
    parser.add_argument("--rounds", type=int, default=3, help="no-op runs of each kind (median reported)")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--port", type=int, default=21100, help="git daemon port (the submodule host: port + 1)")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds the submodule host takes to refuse")
    args = parser.parse_args()
    refusal = RefusingGitServer(args.port + 1, args.delay)

    with tempfile.TemporaryDirectory(prefix="tardist-backoff-") as tmp:
        root = Path(tmp)
        served = root / "served"
        served.mkdir()
        with git_daemon(served, port=args.port) as base:
            template(served / "Healthy.git", None)
            template(served / "Broken.git", refusal.url("Lib"))
            healthy = [f"Ext{i:04d}" for i in range(args.repos)]
            broken = [f"Broken{i:02d}" for i in range(args.broken)]
            for name in healthy:
                shutil.copytree(served / "Healthy.git", served / f"{name}.git")
            for name in broken:
                shutil.copytree(served / "Broken.git", served / f"{name}.git")
            floor = deployment(root, "floor", base, healthy, args.jobs)
            mixed = deployment(root, "mixed", base, healthy + broken, args.jobs)
            sync(floor)
            _, first = sync(mixed)
            assert first["failed"] == args.broken, first
            times: dict[str, list[float]] = {"floor": [], "backoff": [], "no_backoff": []}
            waiting = []
            for _ in range(args.rounds):  # interleaved: the machine's noise hits every kind alike
                times["floor"].append(sync(floor)[0])
                seconds, summary = sync(mixed)
                times["backoff"].append(seconds)
                waiting.append(summary["waiting"])
                times["no_backoff"].append(sync(mixed, "--retry")[0])
    refusal.close()
    median = {kind: round(statistics.median(values), 2) for kind, values in times.items()}
    rows = [("floor: no-op run, no broken repository", args.repos, median["floor"]),
            ("no-op run with backoff", args.repos + args.broken, median["backoff"]),
            ("no-op run without backoff (--retry)", args.repos + args.broken, median["no_backoff"])]
    print(f"{'run':<42} {'repos':>6} {'seconds':>8} {'x floor':>8}")
    for label, repos, seconds in rows:
        print(f"{label:<42} {repos:>6} {seconds:>8.2f} {seconds / median['floor']:>8.2f}")
    print(f"({args.broken} broken repositories waiting in every backoff run: {waiting}; the submodule host "
          f"refuses after {args.delay:g} s; median of {args.rounds} interleaved rounds, jobs={args.jobs})")
    write_results(f"backoff_speed-{args.repos}-delay{args.delay:g}",
                  {"repos": args.repos, "broken": args.broken, "jobs": args.jobs, "delay": args.delay,
                   "times": times, "median": median, "waiting": waiting, "machine": platform.platform()})


if __name__ == "__main__":
    main()
