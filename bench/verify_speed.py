"""Issue 19 benchmark: the time `tardist verify` takes against the time a sync takes to build the tarball.

    python bench/verify_speed.py --files 6000 --kib 8

One generated repository of VisualEditor's size (about 6000 files and 50 MB of source in
nested folders, a few executables), served by `git daemon`. Measured: a cold `tardist sync`
(clone and build), then `tardist verify` of its tarball from the file (fetch into a
temporary mirror, rebuild, compare), and by URL through a tiny HTTP server. Each step runs
--runs times; the median is shown. Prints a table and writes bench/results/verify_speed.json.
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

from report import write_results

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))  # the repository root: loopback/ is shared with tests/
from loopback.gitdaemon import git_daemon  # noqa: E402

TARDIST = BENCH.parent / ".venv" / "bin" / "tardist"
WORDS = ("function", "return", "this", "var", "const", "ve", "dm", "ce", "ui", "model", "node", "surface",
         "document", "transaction", "selection", "range", "annotation", "inspector", "dialog", "widget")


def make_repo(path: Path, files: int, kib: int) -> None:
    """A git repository with files source-like text files of about kib KiB each, in nested folders."""
    rng = random.Random(19)
    path.mkdir(parents=True)
    for index in range(files):
        folder = path / f"modules/ve-{index % 40}/{'dm' if index % 3 else 'ce'}/{index % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        lines, size = [], 0
        while size < kib * 1024:
            line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) + ";\n"
            lines.append(line)
            size += len(line)
        target = folder / f"File{index}.js"
        target.write_text("".join(lines))
        if index % 500 == 0:
            target.chmod(0o755)
    (path / "extension.json").write_text(json.dumps({"name": "VisualEditor", "manifest_version": 2}))
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE": "2026-01-02T03:04:05Z"}
    for args in (["init", "-q", "-b", "master"], ["add", "-A"],
                 ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", "big"]):
        subprocess.run(["git", *args], cwd=path, check=True, env=env)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the tarball's folder without a line per request."""

    def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
        pass


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.monotonic()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {done.stdout}{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=6000)
    parser.add_argument("--kib", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARDIST_")}
    with tempfile.TemporaryDirectory(prefix="verify-speed-") as folder:
        root = Path(folder)
        make_repo(root / "served/extensions/VisualEditor", args.files, args.kib)
        with git_daemon(root / "served") as base:
            syncs, tarball = [], None
            for run in range(args.runs):
                deploy = root / f"deploy{run}"
                deploy.mkdir()
                (deploy / "tardist.toml").write_text("\n".join([
                    'branches = ["master"]', 'published = ""', 'composer = ""', "",
                    '[[source]]', 'kind = "extensions"', 'type = "list"',
                    f'repos = {{ VisualEditor = "{base}/extensions/VisualEditor" }}']) + "\n")
                syncs.append(timed([str(TARDIST), "--config", str(deploy / "tardist.toml"), "sync"], deploy, env))
                tarball = next((deploy / "tarballs/extensions").glob("VisualEditor-master-*.tar.gz"))
            assert tarball is not None
            files = [timed([str(TARDIST), "verify", str(tarball)], root, env) for _ in range(args.runs)]
            handler = partial(QuietHandler, directory=str(tarball.parent))
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                url = f"http://127.0.0.1:{server.server_address[1]}/{tarball.name}"
                urls = [timed([str(TARDIST), "verify", url], root, env) for _ in range(args.runs)]
            finally:
                server.shutdown()
                server.server_close()
            size = tarball.stat().st_size
    rows = [("cold sync (clone + build)", syncs), ("verify FILE (fetch + rebuild + compare)", files),
            ("verify URL (download too)", urls)]
    print(f"VisualEditor-sized: {args.files} files, ~{args.files * args.kib // 1024} MiB of source, "
          f"tarball {size / 1024 / 1024:.1f} MiB; median of {args.runs} runs")
    print(f"{'step':42} {'seconds':>8} {'x sync':>7}")
    for label, times in rows:
        print(f"{label:42} {statistics.median(times):8.2f} {statistics.median(times) / statistics.median(syncs):7.2f}")
    write_results("verify_speed", {
        "files": args.files, "kib_per_file": args.kib, "tarball_bytes": size, "runs": args.runs,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "seconds": {label: times for label, times in rows},
        "median": {label: statistics.median(times) for label, times in rows}})
    shutil.rmtree(BENCH / "__pycache__", ignore_errors=True)


if __name__ == "__main__":
    main()
