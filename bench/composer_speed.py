"""Issue 9 benchmark: what the composer build step costs a sync, cold and no-op.

    python bench/composer_speed.py --repos 60

A corpus of realistic repositories (bench/corpus.py) served by `git daemon`, where
every tenth one requires packages from a local path repository on each snapshot
branch. In one run, side by side, each in a fresh deployment: a cold sync and a
no-op sync with the step (bwrap, and without a sandbox) and without it
(`composer = ""`). A counting composer wrapper proves a no-op sync runs composer
zero times. Prints a table and writes bench/results/composer_speed-N.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import corpus
from report import write_results
from sync_speed import median_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: loopback/ is shared with tests/
from loopback.gitdaemon import git_daemon  # noqa: E402

BENCH = Path(__file__).resolve().parent
TARDIST = BENCH.parent / ".venv" / "bin" / "tardist"
PACKAGES = {"acme/log": 40, "acme/http": 120, "acme/util": 15}  # name -> PHP files


def make_packages(root: Path) -> Path:
    """A path repository of three libraries (acme/http requires acme/log) and a COMPOSER_HOME using it."""
    packages = root / "packages"
    shutil.rmtree(packages, ignore_errors=True)
    for name, files in PACKAGES.items():
        folder = packages / name
        (folder / "src").mkdir(parents=True)
        requires = {"acme/log": "^1.0"} if name == "acme/http" else {}
        (folder / "composer.json").write_text(json.dumps({
            "name": name, "version": "1.4.0", "require": requires,
            "autoload": {"psr-4": {f"Acme\\{name.split('/')[1].title()}\\": "src/"}}}))
        for index in range(files):
            body = "    public function run() { return 1; }\n" * 40
            code = f"<?php\nnamespace Acme;\nclass Class{index} {{\n{body}}}\n"
            (folder / "src" / f"Class{index}.php").write_text(code)
    home = root / "composer-home"
    home.mkdir(exist_ok=True)
    (home / "config.json").write_text(json.dumps({"repositories": [
        {"type": "path", "url": f"{packages}/*/*"}, {"packagist.org": False}]}))
    return home


def require_packages(repo: Path) -> int:
    """Commit a composer.json with `require` on every snapshot branch of a bare repository; return how many."""
    stream = corpus._Stream()
    count = 0
    for branch in corpus.SNAPSHOT_BRANCHES:
        ref = f"refs/heads/{branch}"
        if subprocess.run(["git", "--git-dir", str(repo), "rev-parse", "--verify", "--quiet", ref],
                          capture_output=True).returncode:
            continue
        document = {"name": f"mediawiki/{repo.stem.lower()}", "require": {"acme/http": "^1.0", "acme/util": "^1.0"},
                    "require-dev": {"mediawiki/mediawiki-codesniffer": "47.0.0"}}
        stream.commit(branch, "Bench Bot <bench@example.org>", 1_760_000_000, "Require libraries\n",
                      {"composer.json": ("100644", json.dumps(document, indent=4).encode())}, f"{ref}^0")
        count += 1
    stream.feed(repo)
    return count


def ensure_corpus(path: Path, repos: int, port: int) -> tuple[dict, int]:
    """The corpus with every tenth repository requiring packages (generated once)."""
    info = corpus.load(path)
    if not (info and info["repos"] == repos and info.get("composer_branches")):
        print(f"generating {repos} repositories under {path} ...", file=sys.stderr)
        info = corpus.generate(path, repos, seed=9, port=port)
        info["composer_repos"] = info["extensions"][::10]
        info["composer_branches"] = sum(require_packages(path / "extensions" / f"{name}.git")
                                        for name in info["composer_repos"])
        (path / "corpus.json").write_text(json.dumps(info, indent=1) + "\n")
    return info, info["composer_branches"]


def counting_composer(root: Path) -> Path:
    """A composer that appends its start and end times to $COMPOSER_CACHE_DIR/runs (writable in the sandbox)."""
    wrapper = root / "bin" / "composer"
    wrapper.parent.mkdir(exist_ok=True)
    wrapper.write_text(f'#!/bin/sh\nstart=$(date +%s.%N)\n{shutil.which("composer")} "$@"\ncode=$?\n'
                       'echo "$start $(date +%s.%N)" >> "$COMPOSER_CACHE_DIR/runs"\nexit $code\n')
    wrapper.chmod(0o755)
    return wrapper


def sync(state: Path, keys: dict, repos: dict[str, str], jobs: int) -> dict:
    """One `tardist sync` of the deployment in state; seconds, summary and composer runs it caused."""
    state.mkdir(parents=True, exist_ok=True)
    config = state / "tardist.toml"
    lines = [f"{key} = {json.dumps(value)}" for key, value in {
        "database": str(state / "tardist.sqlite3"), "mirrors": str(state / "mirrors"),
        "tarballs": str(state / "tarballs"), "branches": corpus.SNAPSHOT_BRANCHES, "jobs": jobs,
        "submodule_protocols": ["git"], **keys}.items()]
    lines += ["[[source]]", 'kind = "extensions"', 'type = "list"', "[source.repos]",
              *(f"{json.dumps(name)} = {json.dumps(url)}" for name, url in repos.items())]
    config.write_text("\n".join(lines) + "\n")
    runs = state / "mirrors" / "_composer" / "cache" / "runs"
    before = len(runs.read_text().splitlines()) if runs.exists() else 0
    started = time.monotonic()
    proc = subprocess.run([str(TARDIST), "sync"], cwd=state, env={**os.environ, "TARDIST_CONFIG": str(config)},
                          capture_output=True, text=True)
    seconds = round(time.monotonic() - started, 2)
    spans = [line.split() for line in runs.read_text().splitlines()[before:]] if runs.exists() else []
    summary = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {"error": proc.stderr[-500:]}
    return {"seconds": seconds, "exit": proc.returncode, "summary": summary, "composer_runs": len(spans),
            "composer_seconds": round(sum(float(end) - float(start) for start, end in spans), 2)}


def tarball_digest(state: Path) -> str:
    """One sha256 over the names and bytes of every tarball a deployment built."""
    digest = hashlib.sha256()
    for path in sorted((state / "tarballs").rglob("*.tar.gz")):
        digest.update(path.name.encode() + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repos", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each variant (the median is shown)")
    parser.add_argument("--port", type=int, default=21201, help="git daemon port (the corpus records it)")
    parser.add_argument("--corpus", type=Path, help="default /tmp/tardist-bench-composer-N")
    args = parser.parse_args(argv)
    root = args.corpus or Path(f"/tmp/tardist-bench-composer-{args.repos}")
    info, composer_branches = ensure_corpus(root, args.repos, args.port)
    home = make_packages(root)
    composer = counting_composer(root)
    variants = {
        "with composer (bwrap)": {"composer": str(composer), "composer_home": str(home), "build_sandbox": "bwrap"},
        "with composer (no sandbox)": {"composer": str(composer), "composer_home": str(home), "build_sandbox": "none"},
        "without the step": {"composer": ""},
    }
    results: dict = {"repos": args.repos, "composer_repos": len(info["composer_repos"]),
                     "composer_branches": composer_branches, "jobs": args.jobs, "machine": platform.node(),
                     "cpus": os.cpu_count(), "variants": {}}
    with git_daemon(root, args.port) as url:  # the corpus' submodule URLs name this port
        repos = {name: f"{url}/extensions/{name}.git" for name in info["extensions"]}
        states = {label: root / "state" / str(index) for index, label in enumerate(variants)}
        samples: dict = {label: {"cold": [], "no-op": []} for label in variants}
        for repetition in range(args.repeat):
            for state in states.values():
                shutil.rmtree(state, ignore_errors=True)
            # Side by side, the order turned around every time: the machine's noise hits every variant.
            order = list(variants) if repetition % 2 == 0 else list(reversed(variants))
            for phase in ("cold", "no-op"):
                for label in order:
                    samples[label][phase].append(sync(states[label], variants[label], repos, args.jobs))
        for label, phases in samples.items():
            results["variants"][label] = {phase: median_run(runs) for phase, runs in phases.items()}
    print(f"\n{args.repos} repositories, {len(info['composer_repos'])} requiring packages "
          f"({composer_branches} branches), jobs {args.jobs}, median of {args.repeat}\n")
    results["same_tarballs_bwrap_and_none"] = len({tarball_digest(states[label]) for label in list(variants)[:2]}) == 1
    print(f"{'variant':28} {'cold s':>7} {'built':>6} {'failed':>6} {'composer runs':>14} {'composer s':>11} "
          f"{'no-op s':>8} {'composer runs':>14}")
    for label, phases in results["variants"].items():
        cold, noop = phases["cold"], phases["no-op"]
        print(f"{label:28} {cold['seconds']:>7} {cold['summary'].get('built', '?'):>6} "
              f"{cold['summary'].get('failed', '?'):>6} {cold['composer_runs']:>14} {cold['composer_seconds']:>11} "
              f"{noop['seconds']:>8} {noop['composer_runs']:>14}")
    base = results["variants"]["without the step"]
    for label in list(variants)[:2]:
        phases = results["variants"][label]
        print(f"{label}: cold x{phases['cold']['seconds'] / base['cold']['seconds']:.2f}, "
              f"no-op x{phases['no-op']['seconds'] / base['no-op']['seconds']:.2f} of the run without the step")
    print(f"tarballs built with bwrap and without a sandbox byte-identical: {results['same_tarballs_bwrap_and_none']}")
    write_results(f"composer_speed-{args.repos}", results)


if __name__ == "__main__":
    main()
