"""The old method: extdist's sequential clone, checkout and tar loop, as a baseline.

It follows `nightly.py` of wikimedia/labs-tools-extdist: one persistent working
clone per repository, and for every snapshot branch a fetch, a hard reset and
clean, a checkout of `origin/<branch>`, a submodule update, and `tar -czh` of
the working tree unless the tarball of that commit already exists.
"""
from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Outcome:
    """What one baseline run did."""

    built: list[str] = field(default_factory=list)
    unchanged: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # per repository


def _git(work: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=work, check=True, capture_output=True,
                          text=True).stdout.strip()


def update_repo(name: str, url: str, clones: Path, out: Path, branches: list[str],
                outcome: Outcome) -> None:
    """Update the working clone of one repository and build its missing tarballs."""
    work = clones / name
    if not work.exists():
        _git(clones, "clone", "--quiet", url, name)
    for branch in branches:
        _git(work, "fetch", "--quiet")
        try:
            _git(work, "reset", "--quiet", "--hard", "origin/master")
            _git(work, "clean", "-ffdxq")
            _git(work, "checkout", "--quiet", f"origin/{branch}")
        except subprocess.CalledProcessError:
            continue  # extdist: expected when an extension lacks that branch
        _git(work, "clean", "-ffdq")
        _git(work, "submodule", "--quiet", "sync")
        _git(work, "submodule", "--quiet", "update", "--init")
        head = _git(work, "rev-parse", "HEAD")
        tarball = out / f"{name}-{branch}-{head[:7]}.tar.gz"
        if tarball.exists():
            outcome.unchanged += 1
            continue
        gitinfo = {"head": head, "headSHA1": head,
                   "headCommitDate": _git(work, "show", "-s", "--format=%ct", "HEAD"),
                   "branch": head, "remoteURL": url}
        (work / "gitinfo.json").write_text(json.dumps(gitinfo))
        (work / "version").write_text(f"{name}: {branch}\n{head[:7]}\n")
        for old in out.glob(f"{name}-{branch}-*.tar.gz"):
            old.unlink()
        subprocess.run(["tar", "--exclude", ".git", "-czhf", str(tarball), name],
                       cwd=clones, check=True, capture_output=True, text=True)
        outcome.built.append(tarball.name)


def run(repos: dict[str, str], clones: Path, out: Path, branches: list[str]) -> Outcome:
    """Update every repository (name -> clone URL) one after another, like extdist."""
    clones.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    outcome = Outcome()
    for name, url in repos.items():
        started = time.monotonic()
        try:
            update_repo(name, url, clones, out, branches, outcome)
        except subprocess.CalledProcessError as error:
            outcome.failed[name] = f"{' '.join(error.cmd)}: {error.stderr.strip()}"
        outcome.seconds[name] = time.monotonic() - started
    return outcome
