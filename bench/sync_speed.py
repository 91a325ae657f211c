"""Issue 4 benchmark: `tardist sync` against a git ls-remote floor and extdist's old method.

    python bench/sync_speed.py --repos 200
    python bench/sync_speed.py --repos 2000 --old-sample 200   # the old method timed on 200, scaled

Generates (or reuses) a corpus under /tmp/tardist-bench-N, serves it with a
real `git daemon`, times every phase in one run, prints a table and writes
bench/results/sync_speed-N.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import corpus
import extdist_baseline
from report import write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: loopback/ is shared with tests/
from loopback.gitdaemon import git_daemon  # noqa: E402

BENCH = Path(__file__).resolve().parent
TARDIST = BENCH.parent / ".venv" / "bin" / "tardist"
# Runs a command and writes the peak RSS (KiB) of its process tree's largest
# member to a file: RUSAGE_CHILDREN of a fresh process covers only that command.
_RSS_WRAPPER = """\
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


def timed(action: Callable[[], object]) -> tuple[float, object]:
    """Run `action`; return (seconds, its result)."""
    started = time.monotonic()
    result = action()
    return round(time.monotonic() - started, 2), result


def ensure_corpus(path: Path, repos: int, seed: int) -> tuple[dict, bool]:
    """Return the corpus under `path`, generating it unless a matching one exists."""
    info = corpus.load(path)
    if info and info["repos"] == repos and info["seed"] == seed:
        return info, False
    print(f"generating {repos} repositories under {path} ...", file=sys.stderr)
    return corpus.generate(path, repos, seed), True


def ls_remote_all(urls: list[str], jobs: int) -> None:
    """The floor: one `git ls-remote` per repository, `jobs` at a time."""
    def ls_remote(url: str) -> None:
        subprocess.run(["git", "ls-remote", url], check=True, stdout=subprocess.DEVNULL)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(ls_remote, urls))


def write_config(path: Path, state: Path, repos: dict[str, str], jobs: int) -> None:
    """Write the tardist TOML config for the corpus."""
    lines = [
        f"database = {json.dumps(str(state / 'tardist.sqlite3'))}",
        f"mirrors = {json.dumps(str(state / 'mirrors'))}",
        f"tarballs = {json.dumps(str(state / 'tarballs'))}",
        f"branches = {json.dumps(corpus.SNAPSHOT_BRANCHES)}",
        f"jobs = {jobs}",
        'submodule_protocols = ["git", "http", "https", "ssh"]',
        "", "[[source]]", 'kind = "extensions"', 'type = "list"', "", "[source.repos]",
        *(f"{json.dumps(name)} = {json.dumps(url)}" for name, url in repos.items()),
    ]
    path.write_text("\n".join(lines) + "\n")


def tardist_sync(config: Path, work: Path, label: str) -> dict:
    """Run `tardist sync` in a fresh process; return its summary, seconds and peak RSS."""
    rss_file = work / "logs" / f"rss-{label}.txt"
    with open(work / "logs" / f"tardist-{label}.log", "w") as log:
        seconds, proc = timed(lambda: subprocess.run(
            [sys.executable, "-c", _RSS_WRAPPER, str(rss_file), str(TARDIST), "sync"],
            cwd=work, env={**os.environ, "TARDIST_CONFIG": str(config)},
            stdout=subprocess.PIPE, stderr=log, text=True))
    lines = proc.stdout.strip().splitlines()
    try:
        summary = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        summary = {"error": f"exit {proc.returncode}, no JSON summary; see {log.name}"}
    return {"seconds": seconds, "exit": proc.returncode, "summary": summary,
            "peak_rss_mb": round(int(rss_file.read_text()) / 1024, 1)}


def baseline(repos: dict[str, str], work: Path, changed: list[str] = ()) -> dict:
    """Run the old method over `repos` with the persistent clones under `work`; with `changed`, also
    say what the run spent on just those repositories."""
    seconds, outcome = timed(lambda: extdist_baseline.run(
        repos, work / "extdist" / "clones", work / "extdist" / "dist", corpus.SNAPSHOT_BRANCHES))
    row = {"seconds": seconds, "built": len(outcome.built), "unchanged": outcome.unchanged,
           "failed": outcome.failed}
    if changed:
        row["changed_repos_seconds"] = round(sum(outcome.seconds[name] for name in changed), 2)
    return row


def scaled(row: dict, factor: float, sample: int) -> dict:
    """A baseline row measured on a sample, with its time and counts scaled to the whole corpus."""
    if factor == 1:
        return row
    return {**row, "seconds": round(row["seconds"] * factor, 2), "measured_seconds": row["seconds"],
            "sample_repos": sample, "scale": round(factor, 3),
            **{key: round(row[key] * factor) for key in ("built", "unchanged")}}


def median_run(runs: list[dict]) -> dict:
    """The run with the median time, with every run's seconds listed as samples."""
    middle = sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2]
    return {**middle, "samples": [run["seconds"] for run in runs]}


def drop_caches() -> bool:
    """Ask the kernel to drop its page cache; False where it does not let us (a container)."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def warm(folder: Path) -> None:
    """Read every file under folder once, so that it is in the page cache."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                while f.read(1 << 20):
                    pass


def tarball_names(folder: Path) -> set[str]:
    """Names of the tarballs in `folder`."""
    return {p.name for p in folder.glob("*.tar.gz")}


def measure(args: argparse.Namespace, work: Path, info: dict, url: str) -> dict:
    """Time every phase against the daemon at `url`; return the raw results."""
    repos = {name: f"{url}/extensions/{name}.git" for name in info["extensions"]}
    for stale in ("extdist", "tardist", "logs"):
        shutil.rmtree(work / stale, ignore_errors=True)
    (work / "logs").mkdir()
    results: dict = {}
    results["floor"] = median_run([
        {"seconds": timed(lambda: ls_remote_all(list(repos.values()), args.jobs))[0]}
        for _ in range(args.repeat)])
    # The old method is linear in repositories; at N = 2,000 it needs hours, so --old-sample
    # times it on a random sample and scales the times (marked as such in the results).
    # The sample holds changed repositories in the corpus' proportion, so the old method's
    # incremental run on them is measured warm, as it would run.
    changed = sorted(random.Random(args.seed).sample(sorted(repos), max(1, len(repos) // 10)))
    old_names = sorted(repos)
    if args.old_sample and args.old_sample < len(repos):
        old_changed = changed[:max(1, args.old_sample // 10)]
        others = sorted(set(repos) - set(changed))
        old_names = sorted(old_changed + random.Random(args.seed + 1).sample(
            others, args.old_sample - len(old_changed)))
    factor = len(repos) / len(old_names)
    old_repos = {name: repos[name] for name in old_names}
    config = work / "tardist.toml"
    # Both cold runs meet the same page cache: the corpus is read through just before each
    # (and the caches dropped too where the kernel lets us), whichever of them runs first.
    results["cold_conditions"] = {"first": args.first, "caches_dropped": drop_caches()}

    def old_cold() -> None:
        warm(work / "corpus")
        results["old_cold"] = scaled(baseline(old_repos, work), factor, len(old_names))

    def tardist_cold() -> None:
        if not args.skip_tardist:
            (work / "tardist").mkdir()
            write_config(config, work / "tardist", repos, args.jobs)
            drop_caches()
            warm(work / "corpus")
            results["tardist_cold"] = tardist_sync(config, work, "cold")

    for phase in ((tardist_cold, old_cold) if args.first == "tardist" else (old_cold, tardist_cold)):
        phase()
    results["old_noop"] = scaled(baseline(old_repos, work), factor, len(old_names))
    if not args.skip_tardist:
        results["tardist_noop"] = median_run([tardist_sync(config, work, f"noop{n}")
                                              for n in range(args.repeat)])
    heads = {name: corpus.add_commit(work / "corpus" / "extensions" / f"{name}.git", ["master"])
             for name in changed}
    try:
        # Both changed runs cover every repository (the old method its sample, scaled), as cron would.
        if not args.skip_tardist:
            results["tardist_changed"] = tardist_sync(config, work, "changed")
        in_sample = [name for name in changed if name in old_repos]
        results["old_changed"] = scaled(baseline(old_repos, work, in_sample), factor, len(old_names))
        results["old_changed"]["changed_repos_seconds"] = round(
            results["old_changed"]["changed_repos_seconds"] * len(changed) / len(in_sample), 2)
    finally:
        for name, old in heads.items():
            corpus.restore_heads(work / "corpus" / "extensions" / f"{name}.git", old)
    results["changed_repos"] = len(changed)
    if not args.skip_tardist:
        results["checks"] = checks(results, work)
    return results


def checks(results: dict, work: Path) -> list[str]:
    """Cross-check tardist against the old method; return the problems found."""
    problems = []
    cold, noop, changed = (results[f"tardist_{k}"]["summary"] for k in ("cold", "noop", "changed"))
    expected = {"cold": results["old_cold"]["built"], "noop": 0,
                "changed": results["changed_repos"]}
    for label, summary in (("cold", cold), ("noop", noop), ("changed", changed)):
        if summary.get("failed"):
            problems.append(f"tardist {label}: {summary['failed']} failed")
        if label == "cold" and "scale" in results["old_cold"]:
            continue  # the old method built only a sample: its tarball names are checked below
        if summary.get("built") != expected[label]:
            problems.append(f"tardist {label}: built {summary.get('built')}, "
                            f"the old method built {expected[label]}")
    old = tarball_names(work / "extdist" / "dist")
    new = tarball_names(work / "tardist" / "tarballs" / "extensions")
    if old - new:
        problems.append(f"{len(old - new)} tarballs the old method built are missing from "
                        f"tardist, e.g. {sorted(old - new)[:3]}")
    return problems


def goals(results: dict) -> dict:
    """The issue 4 goal ratios, each with its value, target and verdict."""
    seconds = {name: row["seconds"] for name, row in results.items()
               if isinstance(row, dict) and "seconds" in row}
    noop, cold, floor = seconds["tardist_noop"], seconds["tardist_cold"], seconds["floor"]
    peak = max(results[f"tardist_{k}"]["peak_rss_mb"] for k in ("cold", "noop", "changed"))
    # The goal names the old method's cost for just the changed repositories: the time its changed
    # run over every repository spent on them (timed repository by repository).
    changed_limit = noop + 1.5 * results["old_changed"]["changed_repos_seconds"]
    rows = {
        "noop_over_floor": (noop / floor, "<= 2", noop / floor <= 2),
        "old_noop_over_noop": (seconds["old_noop"] / noop, ">= 10",
                               seconds["old_noop"] / noop >= 10),
        "old_cold_over_cold": (seconds["old_cold"] / cold, ">= 2", seconds["old_cold"] / cold >= 2),
        "changed_seconds": (seconds["tardist_changed"], f"<= {changed_limit:.2f}",
                            seconds["tardist_changed"] <= changed_limit),
        "old_changed_over_changed": (seconds["old_changed"] / seconds["tardist_changed"], "(shown only)", True),
        "peak_rss_mb": (peak, "< 300", peak < 300),
    }
    return {name: {"value": round(value, 2), "goal": goal, "met": met}
            for name, (value, goal, met) in rows.items()}


def print_table(results: dict, ratios: dict | None) -> None:
    """Print the timings and goals as plain text tables."""
    print(f"{'phase':<16}{'seconds':>9}{'built':>7}{'unchanged':>11}{'failed':>8}{'peak MB':>9}")
    for name, row in results.items():
        if not isinstance(row, dict) or "seconds" not in row:
            continue
        counts = row.get("summary", row)
        failed = counts.get("failed", "")
        cells = [counts.get("built", ""), counts.get("unchanged", ""),
                 len(failed) if isinstance(failed, dict) else failed, row.get("peak_rss_mb", "")]
        print(f"{name:<16}{row['seconds']:>9.2f}" + "".join(
            f"{cell:>{width}}" for cell, width in zip(cells, (7, 11, 8, 9))))
    print(f"({results['changed_repos']} repositories got a new master commit "
          "before the *_changed runs, which both cover every repository)")
    print(f"(old_changed spent {results['old_changed']['changed_repos_seconds']:.2f} s on the changed "
          "repositories: the goal's 'old method's cost for just those repositories')")
    conditions = results["cold_conditions"]
    print(f"(cold runs: {conditions['first']} first; the corpus read into the page cache before each"
          + ("; page cache dropped first" if conditions["caches_dropped"] else
             "; the page cache could not be dropped here") + ")")
    for name, row in results.items():
        if isinstance(row, dict) and "scale" in row:
            print(f"({name}: measured {row['measured_seconds']:.2f} s on {row['sample_repos']} repositories, "
                  f"scaled x{row['scale']})")
    for problem in results.get("checks", []):
        print(f"CHECK FAILED: {problem}")
    if ratios:
        print(f"\n{'goal':<26}{'value':>10}  {'target':<14}met")
        for name, row in ratios.items():
            met = "yes" if row["met"] else "NO"
            print(f"{name:<26}{row['value']:>10.2f}  {row['goal']:<14}{met}")


def main(argv: list[str] | None = None) -> int:
    """Command line: run the benchmark and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=200, help="number of extensions")
    parser.add_argument("--jobs", type=int, default=4, help="tardist jobs and ls-remote threads")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed")
    parser.add_argument("--workdir", type=Path, help="default: /tmp/tardist-bench-N")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of the cheap phases (floor, tardist no-op); the median counts")
    parser.add_argument("--old-sample", type=int, metavar="K",
                        help="time the old method on K random repositories and scale to N (for N = 2,000)")
    parser.add_argument("--first", choices=("tardist", "old"), default="tardist",
                        help="which cold run comes first (the output says which did)")
    parser.add_argument("--skip-tardist", action="store_true",
                        help="only the floor and the old method")
    args = parser.parse_args(argv)
    if not args.skip_tardist and not TARDIST.exists():
        parser.error(f"{TARDIST} not found (install tardist, or pass --skip-tardist)")
    work = args.workdir or Path(f"/tmp/tardist-bench-{args.repos}")
    work.mkdir(parents=True, exist_ok=True)
    info, generated = ensure_corpus(work / "corpus", args.repos, args.seed)
    with git_daemon(work / "corpus", port=info["port"]) as url:
        results = measure(args, work, info, url)
    ratios = None if args.skip_tardist else goals(results)
    print_table(results, ratios)
    report = {
        "repos": args.repos, "jobs": args.jobs, "seed": args.seed, "old_sample": args.old_sample,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "git": subprocess.run(["git", "--version"], capture_output=True,
                                          text=True).stdout.strip()},
        "corpus_seconds": info["seconds"] if generated else None,
        "results": results, "goals": ratios,
    }
    suffix = "-old-only" if args.skip_tardist else ""
    write_results(f"sync_speed-{args.repos}{suffix}", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
