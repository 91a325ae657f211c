"""Issue 8 benchmark: how soon a push is downloadable, on-demand builds, and what a flood of made-up links costs.

    python bench/freshness.py --repos 50 --pushes 20 --ondemand 20 --bogus 1000

A corpus of realistic repositories (bench/corpus.py) served by `git daemon`, a
running `tardist worker`, gunicorn and nginx with the shipped configs. Times
push -> webhook -> `/info` through nginx shows the commit and its tarball
downloads through nginx, half of the pushes while a forced full sync
(`tardist sync --force`, as cron would run it) is running; then requests
never-built current-head tarballs through nginx with no webhook; then sends
made-up sha7s and counts the worker's git commands. Prints a table and writes
bench/results/freshness-N.json.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import corpus
from api_speed import GUNICORN, HOST, ROOT, nginx, nginx_config, render, server
from report import write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: loopback/ is shared with tests/
from loopback.gitdaemon import git_daemon, stop  # noqa: E402

BENCH = Path(__file__).resolve().parent
TARDIST = ROOT / ".venv" / "bin" / "tardist"
SECRET = "bench-secret"


def request(port: int, path: str, method: str = "GET", body: bytes | None = None, **headers: str) -> tuple[int, bytes]:
    """One HTTP request through nginx; (status, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def write_config(path: Path, state: Path, repos: dict[str, str]) -> None:
    """The deployment's TOML: worker schedule never fires on its own, webhooks on."""
    lines = [
        f"database = {json.dumps(str(state / 'tardist.sqlite3'))}",
        f"mirrors = {json.dumps(str(state / 'mirrors'))}",
        f"tarballs = {json.dumps(str(state / 'tarballs'))}",
        f"published = {json.dumps(str(state / 'published'))}",
        f"branches = {json.dumps(corpus.SNAPSHOT_BRANCHES)}",
        "jobs = 2", 'schedule = "0 0 1 1 *"', f'hook_secret = "{SECRET}"', "build_wait = 60",
        'submodule_protocols = ["git"]',
        "", "[[source]]", 'kind = "extensions"', 'type = "list"', "", "[source.repos]",
        *(f"{json.dumps(name)} = {json.dumps(url)}" for name, url in repos.items()),
    ]
    path.write_text("\n".join(lines) + "\n")


def wait_for_line(log: Path, line: str, process: subprocess.Popen, seconds: float = 1800) -> None:
    """Wait until the worker logs line."""
    deadline = time.monotonic() + seconds
    while line not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not log {line!r}:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def push_to_downloadable(port: int, api_port: int, corpus_dir: Path, name: str) -> tuple[float, float]:
    """Commit to master and send the webhook; seconds until the app's /info shows it (recorded), and until
    /info through nginx (with its cache) shows it and the tarball downloads through nginx."""
    head = corpus.add_commit(corpus_dir / "extensions" / f"{name}.git", ["master"])
    new = subprocess.run(["git", "--git-dir", str(corpus_dir / "extensions" / f"{name}.git"), "rev-parse",
                          "refs/heads/master"], check=True, capture_output=True, text=True).stdout.strip()
    started = time.monotonic()
    status, _ = request(port, "/hooks/push", "POST", json.dumps({"kind": "extensions", "name": name}).encode(),
                        Authorization=f"Bearer {SECRET}")
    assert status == 202, status
    recorded = None
    while True:
        if recorded is None:
            status, body = request(api_port, f"/info/extensions/{name}")
            if status == 200 and json.loads(body)["branches"].get("master", {}).get("commit") == new:
                recorded = time.monotonic() - started
        status, body = request(port, f"/info/extensions/{name}")
        branch = json.loads(body)["branches"].get("master", {}) if status == 200 else {}
        if branch.get("commit") == new and request(port, branch["url"])[0] == 200:
            return recorded or time.monotonic() - started, time.monotonic() - started
        if time.monotonic() - started > 300:
            raise RuntimeError(f"{name}: push not downloadable after 300 s (was {head})")
        time.sleep(0.1)


def on_demand(port: int, corpus_dir: Path, name: str) -> float:
    """Commit to master (no webhook) and time a request for its tarball through nginx."""
    corpus.add_commit(corpus_dir / "extensions" / f"{name}.git", ["master"])
    new = subprocess.run(["git", "--git-dir", str(corpus_dir / "extensions" / f"{name}.git"), "rev-parse",
                          "refs/heads/master"], check=True, capture_output=True, text=True).stdout.strip()
    started = time.monotonic()
    status, body = request(port, f"/dist/extensions/{name}-master-{new[:7]}.tar.gz")
    if status != 200:
        raise RuntimeError(f"{name}: on-demand build answered {status}: {body[:200]!r}")
    return time.monotonic() - started


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))], 2)


def summary(values: list[float]) -> dict:
    """p50, p95, max and the samples."""
    return {"n": len(values), "p50": percentile(values, 0.5), "p95": percentile(values, 0.95),
            "max": round(max(values), 2), "samples": [round(v, 2) for v in values]}


def measure(args: argparse.Namespace, work: Path) -> dict:
    """Run every phase against one deployment; return the results."""
    corpus_dir = work / "corpus"
    info = corpus.load(corpus_dir)
    if not info or (info["repos"], info["seed"], info["port"]) != (args.repos, args.seed, args.port):
        print(f"generating {args.repos} repositories under {corpus_dir} ...", file=sys.stderr)
        info = corpus.generate(corpus_dir, args.repos, args.seed, args.port)
    names = info["extensions"]
    rng = random.Random(args.seed)
    originals = {}
    state = work / "state"
    if state.exists():
        subprocess.run(["rm", "-rf", str(state)], check=True)
    state.mkdir()
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    git_log = logs / "git-commands.log"
    git_log.unlink(missing_ok=True)
    shim = work / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "git").write_text(f'#!/bin/sh\necho "$*" >> {git_log}\nexec /usr/bin/git "$@"\n')
    (shim / "git").chmod(0o755)
    results: dict = {"repos": args.repos, "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    with ExitStack() as stack, git_daemon(corpus_dir, port=args.port) as url:
        config = work / "tardist.toml"
        write_config(config, state, {name: f"{url}/extensions/{name}.git" for name in names})
        env = {k: v for k, v in os.environ.items() if not k.startswith("TARDIST_")} | {"TARDIST_CONFIG": str(config)}
        worker_log = logs / "worker.log"
        with open(worker_log, "wb") as out:
            worker = subprocess.Popen([str(TARDIST), "worker"], cwd=work, stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=out, env={**env, "PATH": f"{shim}:/usr/bin:/bin"})
        stack.callback(stop, worker, 120)
        started = time.monotonic()
        wait_for_line(worker_log, "sync finished", worker)
        results["initial_full_sync_seconds"] = round(time.monotonic() - started, 1)
        api_port, web_port = args.port + 1, args.port + 2
        stack.enter_context(server([GUNICORN, "-c", str(ROOT / "deploy/gunicorn.conf.py"), "--bind",
                                    f"{HOST}:{api_port}", "wsgi:app"], api_port, logs / "gunicorn.log",
                                   cwd=ROOT, env=env))
        shutil.rmtree(work / "nginx", ignore_errors=True)
        main_config = nginx_config(work, "nginx", [render("nginx.conf", {
            "LISTEN": f"{HOST}:{web_port}", "SERVER_NAME": "localhost", "TARBALLS": str(state / "tarballs"),
            "PUBLISHED": str(state / "published"), "CACHE_SECONDS": "5", "GUNICORN": f"{HOST}:{api_port}",
            "CACHE": str(work / "nginx" / "cache"), "ACCESS_LOG": str(logs / "nginx-access.log")})])
        stack.enter_context(nginx(main_config, web_port))
        for name in names:
            originals[name] = subprocess.run(
                ["git", "--git-dir", str(corpus_dir / "extensions" / f"{name}.git"), "rev-parse", "refs/heads/master"],
                check=True, capture_output=True, text=True).stdout.strip()
        try:
            pushed = rng.sample(names, args.pushes)
            quiet, busy = pushed[: args.pushes // 2], pushed[args.pushes // 2:]
            times = [push_to_downloadable(web_port, api_port, corpus_dir, n) for n in quiet]
            results["push_recorded_quiet"] = summary([recorded for recorded, _ in times])
            results["push_quiet"] = summary([downloadable for _, downloadable in times])
            with open(logs / "forced-sync.log", "wb") as out:
                forced = subprocess.Popen([str(TARDIST), "sync", "--force"], cwd=work, env=env,
                                          stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
            during, overlapped = [], 0
            for name in busy:
                running = forced.poll() is None
                during.append(push_to_downloadable(web_port, api_port, corpus_dir, name))
                overlapped += running and forced.poll() is None
            forced.wait()
            results["push_recorded_during_forced_sync"] = summary([recorded for recorded, _ in during])
            results["push_during_forced_sync"] = {**summary([downloadable for _, downloadable in during]),
                                                  "pushes_fully_inside_the_sync": overlapped}
            fresh = rng.sample([n for n in names if n not in pushed] or names, args.ondemand)
            results["on_demand"] = summary([on_demand(web_port, corpus_dir, n) for n in fresh])
            before = len(git_log.read_text().splitlines())
            targets = [(rng.choice(names), f"{rng.getrandbits(28):07x}") for _ in range(args.bogus)]
            started = time.monotonic()
            with ThreadPoolExecutor(10) as pool:
                statuses = list(pool.map(
                    lambda t: request(web_port, f"/dist/extensions/{t[0]}-master-{t[1]}.tar.gz")[0],
                                         targets))
            seconds = time.monotonic() - started
            commands = git_log.read_text().splitlines()[before:]
            per_repo = {}
            for command in commands:
                if command.startswith("ls-remote"):
                    repo = command.split()[1]
                    per_repo[repo] = per_repo.get(repo, 0) + 1
            results["bogus_flood"] = {
                "requests": args.bogus, "seconds": round(seconds, 1),
                "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
                "git_commands": len(commands), "fetches": sum(c.startswith("fetch") for c in commands),
                "ls_remote": sum(per_repo.values()), "repos_asked": len({t[0] for t in targets}),
                "max_ls_remote_per_repo": max(per_repo.values(), default=0),
                "allowed_per_repo": int(seconds // 5) + 1}
        finally:
            for name, sha in originals.items():  # leave the corpus as generated, for the next run
                corpus.restore_heads(corpus_dir / "extensions" / f"{name}.git", {"master": sha})
    return results


def goals(results: dict) -> dict:
    """Which of the issue's goals were met."""
    flood = results["bogus_flood"]
    return {"push p95 < 10 s": results["push_quiet"]["p95"] < 10,
            "push p95 < 60 s during a forced full sync": results["push_during_forced_sync"]["p95"] < 60,
            "on-demand p95 < 15 s": results["on_demand"]["p95"] < 15,
            "bogus flood: 0 fetches": flood["fetches"] == 0,
            "bogus flood: <= 1 ls-remote per repository per 5 s":
                flood["max_ls_remote_per_repo"] <= flood["allowed_per_repo"]}


def print_table(results: dict, met: dict) -> None:
    """The results as a table."""
    print(f"\nfreshness, {results['repos']} repositories (initial full sync {results['initial_full_sync_seconds']} s)")
    print(f"{'measure':<46} {'n':>5} {'p50 s':>8} {'p95 s':>8} {'max s':>8}")
    for key, label in (("push_recorded_quiet", "push -> recorded (app's /info, no cache)"),
                       ("push_quiet", "push -> downloadable (webhook)"),
                       ("push_recorded_during_forced_sync", "push -> recorded, forced full sync on"),
                       ("push_during_forced_sync", "push -> downloadable, forced full sync on"),
                       ("on_demand", "on-demand build (no webhook)")):
        row = results[key]
        print(f"{label:<46} {row['n']:>5} {row['p50']:>8} {row['p95']:>8} {row['max']:>8}")
    flood = results["bogus_flood"]
    print(f"\nbogus flood: {flood['requests']} requests over {flood['repos_asked']} repositories in "
          f"{flood['seconds']} s, answers {flood['statuses']}")
    print(f"  git commands {flood['git_commands']}, fetches {flood['fetches']}, ls-remote {flood['ls_remote']} "
          f"(max {flood['max_ls_remote_per_repo']} per repository, allowed {flood['allowed_per_repo']})")
    inside = results['push_during_forced_sync']['pushes_fully_inside_the_sync']
    print(f"  pushes fully inside the forced sync: {inside}")
    print("\ngoals:")
    for goal, ok in met.items():
        print(f"  {'met ' if ok else 'MISSED'}  {goal}")


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=50)
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--ondemand", type=int, default=20)
    parser.add_argument("--bogus", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=21000,
                        help="git daemon port; gunicorn, nginx and a static nginx server take the next three")
    parser.add_argument("--workdir", type=Path, help="default: /tmp/tardist-freshness-N")
    args = parser.parse_args(argv)
    if args.pushes + args.ondemand > args.repos:
        parser.error("--pushes + --ondemand must not exceed --repos (each repository is pushed to once)")
    work = args.workdir or Path(f"/tmp/tardist-freshness-{args.repos}")
    work.mkdir(parents=True, exist_ok=True)
    results = measure(args, work)
    met = goals(results)
    results["goals"] = met
    print_table(results, met)
    write_results(f"freshness-{args.repos}", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
