"""Generate bare git repositories shaped like MediaWiki extensions, for benchmarks.

Every repository is written by one `git fast-import` process from a stream
built in memory, so thousands of repositories take minutes, not hours.

Layout of the output folder (served as the root of a `git daemon`):
    corpus.json                 what was generated (names, seed, daemon port)
    lib/SharedLib.git           library that ~10% of the extensions pin as a submodule
    extensions/<Name>.git       one bare repository per extension
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import corpus_text as text

SNAPSHOT_BRANCHES = ["master", "REL1_45", "REL1_44", "REL1_43", "REL1_42", "REL1_39"]
# Release branches: name, MediaWiki minor version, where on master's history
# (as a fraction) they were cut.  Each also gets an annotated tag of that name.
RELEASES = [
    ("REL1_39", 39, 0.50),
    ("REL1_42", 42, 0.68),
    ("REL1_43", 43, 0.76),
    ("REL1_44", 44, 0.84),
    ("REL1_45", 45, 0.91),
]
WMF_BRANCHES = [f"wmf/1.46.0-wmf.{n}" for n in range(1, 25)]
LIB_NAME = "SharedLib"
LIB_REPO = f"lib/{LIB_NAME}.git"
SUBMODULE_PATH = f"lib/{LIB_NAME}"
DEFAULT_PORT = 19418
HISTORY_END = 1764000000  # late November 2025


class _Stream:
    """A `git fast-import` stream under construction."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.last_mark = 0

    def _data(self, payload: bytes) -> None:
        self.parts += [b"data %d\n" % len(payload), payload, b"\n"]

    def commit(self, ref: str, who: str, when: int, message: str,
               changes: dict[str, tuple[str, bytes | str]], parent: str | None = None) -> str:
        """Append a commit to branch `ref`; changes map path -> (mode, content or gitlink sha)."""
        self.last_mark += 1
        self.parts.append((f"commit refs/heads/{ref}\nmark :{self.last_mark}\n"
                           f"author {who} {when} +0000\ncommitter {who} {when} +0000\n").encode())
        self._data(message.encode())
        if parent:
            self.parts.append(f"from {parent}\n".encode())
        for path, (mode, content) in changes.items():
            if isinstance(content, str):
                self.parts.append(f"M {mode} {content} {path}\n".encode())
            else:
                self.parts.append(f"M {mode} inline {path}\n".encode())
                self._data(content)
        self.parts.append(b"\n")
        return f":{self.last_mark}"

    def branch(self, ref: str, start: str) -> None:
        """Create branch `ref` at commit `start` without a commit of its own."""
        self.parts.append(f"reset refs/heads/{ref}\nfrom {start}\n\n".encode())

    def tag(self, name: str, target: str, who: str, when: int, message: str) -> None:
        """Append an annotated tag."""
        self.parts.append(f"tag {name}\nfrom {target}\ntagger {who} {when} +0000\n".encode())
        self._data(message.encode())

    def feed(self, repo: Path) -> None:
        """Import the stream into the existing bare repository `repo`."""
        subprocess.run(["git", "--git-dir", str(repo), "fast-import", "--quiet", "--done"],
                       input=b"".join([*self.parts, b"done\n"]), check=True)

    def create(self, repo: Path) -> None:
        """Create the bare repository `repo` (replacing it) from the stream."""
        if repo.exists():
            shutil.rmtree(repo)
        subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=master", str(repo)],
                       check=True)
        self.feed(repo)


@dataclass(frozen=True)
class Library:
    """The shared library repository: its clone URL and commits, oldest first."""

    url: str
    commits: list[str]


class _History:
    """Writes the history of one repository: master, release and wmf branches, tags."""

    def __init__(self, name: str, rng: random.Random, commits: int,
                 library: Library | None = None, symlink: bool = False) -> None:
        self.name, self.rng, self.commits, self.library = name, rng, commits, library
        self.stream = _Stream()
        self.start = HISTORY_END - rng.randint(4 * 365, 12 * 365) * 86400
        self.authors = rng.sample(text.AUTHORS, rng.randint(2, 8))
        self.code: dict[str, list[str]] = {}
        self.messages: dict[str, dict[str, str]] = {}
        self.pending_code = text.plan_code_files(rng, name)
        self.pending_languages = rng.sample(text.LANGUAGES, rng.randint(20, len(text.LANGUAGES)))
        self.message_keys = text.message_keys(rng, name)
        self.manifest = text.manifest(rng, name, self.message_keys)
        self.symlink = symlink
        self.submodule_pin: str | None = None

    def _render(self, path: str) -> tuple[str, bytes]:
        if path in self.messages:
            content = json.dumps(self.messages[path], ensure_ascii=False, indent="\t") + "\n"
        else:
            content = "\n".join(self.code[path]) + "\n"
        return ("100644", content.encode())

    def _manifest_file(self) -> tuple[str, bytes]:
        return ("100644", (json.dumps(self.manifest, indent="\t") + "\n").encode())

    def _add_code(self, count: int) -> dict[str, tuple[str, bytes]]:
        added = {}
        for path in self.pending_code[:count]:
            self.code[path] = text.code_lines(self.rng, self.name, path)
            added[path] = self._render(path)
        del self.pending_code[:count]
        return added

    def _add_languages(self, count: int) -> dict[str, tuple[str, bytes]]:
        added = {}
        for language in self.pending_languages[:count]:
            path = f"i18n/{language}.json"
            self.messages[path] = text.i18n(self.rng, self.name, self.message_keys, language)
            added[path] = self._render(path)
        del self.pending_languages[:count]
        return added

    def _when(self, index: int) -> int:
        span = HISTORY_END - self.start
        return self.start + span * index // self.commits + self.rng.randint(0, 3600)

    def _author(self) -> str:
        name = self.rng.choice(self.authors)
        return f"{name} <{name.split()[0].lower()}@example.org>"

    def _initial(self) -> dict[str, tuple[str, bytes | str]]:
        for language in ("en", "qqq"):
            self.messages[f"i18n/{language}.json"] = text.i18n(
                self.rng, self.name, self.message_keys, language)
        self.code.update(text.top_level_files(self.rng, self.name))
        files: dict[str, tuple[str, bytes | str]] = {
            path: self._render(path) for path in [*self.messages, *self.code]}
        files[".gitreview"] = ("100644", text.gitreview(self.name, "master"))
        files["extension.json"] = self._manifest_file()
        files.update(self._add_code(len(self.pending_code) * 2 // 3))
        files.update(self._add_languages(len(self.pending_languages) * 2 // 3))
        if self.symlink:
            files["README"] = ("120000", b"README.md")
        return files

    def _master_change(self, index: int) -> tuple[str, str, dict[str, tuple[str, bytes | str]]]:
        """Pick and apply one ordinary change on master: (author, message, changes)."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.3:
            changes = self._add_languages(1) if rng.random() < 0.2 else {}
            translated = [p for p in self.messages if p != "i18n/en.json"]
            for path in rng.sample(translated, min(len(translated), rng.randint(1, 5))):
                key = rng.choice([k for k in self.messages[path] if k != "@metadata"])
                self.messages[path][key] = rng.choice(text.POOLS.sentences)
                changes[path] = self._render(path)
            return text.L10N_BOT, "Localisation updates from https://translatewiki.net.\n", changes
        if self.library and self.submodule_pin is None and index >= self.commits * 0.3:
            return self._author(), "Add SharedLib as a submodule\n", self._pin_library(index)
        if self.library and self.submodule_pin and roll > 0.97:
            return self._author(), "Update SharedLib submodule\n", self._pin_library(index)
        changes = self._add_code(1) if rng.random() < 0.15 else {}
        editable = [p for p in self.code if p.endswith((".php", ".js"))]
        for path in rng.sample(editable, rng.randint(1, 3)):
            self.code[path] = text.edit(rng, self.code[path])
            changes[path] = self._render(path)
        if rng.random() < 0.05:
            major, minor, patch = self.manifest["version"].split(".")
            self.manifest["version"] = f"{major}.{minor}.{int(patch) + 1}"
            changes["extension.json"] = self._manifest_file()
        return self._author(), text.commit_message(self.rng), changes

    def _pin_library(self, index: int) -> dict[str, tuple[str, bytes | str]]:
        assert self.library is not None
        commits = self.library.commits
        self.submodule_pin = commits[(len(commits) - 1) * index // self.commits]
        modules = (f'[submodule "{SUBMODULE_PATH}"]\n\tpath = {SUBMODULE_PATH}\n'
                   f"\turl = {self.library.url}\n").encode()
        return {".gitmodules": ("100644", modules), SUBMODULE_PATH: ("160000", self.submodule_pin)}

    def _backport(self, branch: str, parent: str, when: int) -> str:
        """Commit a small fix on `branch` (changing a copy of master's file)."""
        path = self.rng.choice([p for p in self.code if p.endswith((".php", ".js"))])
        content = "\n".join(text.edit(self.rng, self.code[path])) + "\n"
        return self.stream.commit(branch, self._author(), when, text.commit_message(self.rng),
                                  {path: ("100644", content.encode())}, parent)

    def _cut_release(self, branch: str, minor: int, point: str, when: int) -> None:
        gitreview = ("100644", text.gitreview(self.name, branch))
        head = self.stream.commit(branch, self._author(), when + 3600,
                                  f"Creating new {branch} branch\n", {".gitreview": gitreview},
                                  point)
        for n in range(self.rng.randint(0, 3)):
            head = self._backport(branch, head, when + 86400 * (n + 1))
        self.stream.tag(branch, point, "Release Bot <releng@example.org>", when + 7200,
                        f"MediaWiki 1.{minor} release branch point\n")

    def _cut_wmf(self, branch: str, point: str, when: int) -> None:
        if self.rng.random() < 0.3:
            self._backport(branch, point, when + 3600)
        else:
            self.stream.branch(branch, point)

    def write(self, repo: Path, releases: list[tuple[str, int, float]], wmf: bool) -> None:
        """Generate the whole history and import it into the bare repository `repo`."""
        # master commit index -> branches cut there, with their MediaWiki minor (0 for wmf).
        cuts: dict[int, list[tuple[str, int]]] = {}
        for branch, minor, fraction in releases:
            cuts.setdefault(int(self.commits * fraction), []).append((branch, minor))
        if wmf:
            for n, branch in enumerate(WMF_BRANCHES):
                at = int(self.commits * (0.92 + 0.075 * n / len(WMF_BRANCHES)))
                cuts.setdefault(at, []).append((branch, 0))
        head = self.stream.commit("master", self._author(), self._when(0),
                                  "Initial commit\n", self._initial())
        for index in range(1, self.commits):
            when = self._when(index)
            for branch, minor in cuts.get(index, []):
                if minor:
                    self._cut_release(branch, minor, head, when)
                else:
                    self._cut_wmf(branch, head, when)
            if any(minor for _, minor in cuts.get(index, [])) and self.rng.random() < 0.5:
                minor = max(m for _, m in cuts[index]) + 1
                self.manifest["requires"] = {"MediaWiki": f">= 1.{minor}.0"}
                author, message = self._author(), f"Bump MediaWiki requirement to 1.{minor}\n"
                changes = {"extension.json": self._manifest_file()}
            else:
                author, message, changes = self._master_change(index)
            head = self.stream.commit("master", author, when, message, changes)
        self.stream.create(repo)


def _master_commits(repo: Path) -> list[str]:
    out = subprocess.run(["git", "--git-dir", str(repo), "rev-list", "--reverse", "master"],
                         check=True, capture_output=True, text=True).stdout
    return out.split()


def _write_extension(out: Path, seed: int, library: Library, job: tuple[int, str]) -> None:
    index, name = job
    rng = random.Random(f"{seed}:{name}")
    history = _History(name, rng, rng.randint(150, 450),
                       library=library if index % 10 == 5 else None,
                       symlink=index % 25 == 3)
    # A few extensions are younger than the oldest release branch.
    releases = RELEASES[1:] if index % 20 == 7 else RELEASES
    history.write(out / "extensions" / f"{name}.git", releases, wmf=True)


def generate(out: Path, repos: int, seed: int = 0, port: int = DEFAULT_PORT,
             jobs: int | None = None) -> dict:
    """Generate the whole corpus under `out` (replacing it) and return its corpus.json."""
    started = time.monotonic()
    if out.exists():
        shutil.rmtree(out)
    (out / "extensions").mkdir(parents=True)
    lib_rng = random.Random(f"{seed}:{LIB_NAME}")
    _History(LIB_NAME, lib_rng, 60).write(out / LIB_REPO, [], wmf=False)
    library = Library(f"git://127.0.0.1:{port}/{LIB_REPO}", _master_commits(out / LIB_REPO))
    names = text.extension_names(repos, seed)
    with ProcessPoolExecutor(max_workers=jobs or os.cpu_count()) as pool:
        list(pool.map(partial(_write_extension, out, seed, library), enumerate(names),
                      chunksize=8))
    info = {"repos": repos, "seed": seed, "port": port, "extensions": names,
            "with_submodule": [n for i, n in enumerate(names) if i % 10 == 5],
            "seconds": round(time.monotonic() - started, 1)}
    (out / "corpus.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def load(out: Path) -> dict | None:
    """Return the corpus.json of a complete corpus under `out`, or None."""
    try:
        return json.loads((out / "corpus.json").read_text())
    except FileNotFoundError:
        return None


def add_commit(repo_path: Path, branches: list[str]) -> dict[str, str]:
    """Add one new commit on each of `branches`; return their previous heads."""
    git = ["git", "--git-dir", str(repo_path)]
    previous, stream = {}, _Stream()
    now = int(time.time())
    for branch in branches:
        ref = f"refs/heads/{branch}"
        previous[branch] = subprocess.run([*git, "rev-parse", ref], check=True,
                                          capture_output=True, text=True).stdout.strip()
        changelog = subprocess.run([*git, "cat-file", "blob", f"{ref}:CHANGELOG.md"],
                                   check=True, capture_output=True).stdout
        entry = f"\n* Fix a bug found at {now}.\n".encode()
        stream.commit(branch, "Bench Bot <bench@example.org>", now, "Fix a bug\n",
                      {"CHANGELOG.md": ("100644", changelog + entry)}, f"{ref}^0")
    stream.feed(repo_path)
    return previous


def restore_heads(repo_path: Path, heads: dict[str, str]) -> None:
    """Point branches back at the heads `add_commit` returned."""
    for branch, sha in heads.items():
        subprocess.run(["git", "--git-dir", str(repo_path), "update-ref",
                        f"refs/heads/{branch}", sha], check=True)


def main(argv: list[str] | None = None) -> None:
    """Command line: generate a corpus."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, required=True, help="number of extensions")
    parser.add_argument("--out", type=Path, required=True, help="output folder (replaced)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="git daemon port written into submodule URLs")
    parser.add_argument("--jobs", type=int, default=None, help="processes (default: CPUs)")
    args = parser.parse_args(argv)
    info = generate(args.out, args.repos, args.seed, args.port, args.jobs)
    print(f"{info['repos']} repositories in {info['seconds']} s under {args.out}")


if __name__ == "__main__":
    main()
