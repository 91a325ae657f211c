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

_WORDS = (
    "page user message edit revision title content link category template "
    "namespace notification filter block log query result cache config service "
    "hook special parser tag field form table index token session request "
    "response status value item list batch job queue store lookup factory "
    "handler formatter renderer preference option group right action target "
    "source widget dialog panel button translation language schema entity"
).split()
_PREFIXES = (
    "Abuse Mass Page Cirrus Global Flagged Semantic Visual Echo Wiki Central "
    "Content Math Score Timed Media Code Syntax Input Cite Parser Spam Title "
    "Confirm Nuke Replace Rename Interwiki Gadget Poem Category Template Graph "
    "Kartographer Thanks Discussion Growth Campaign Event Cargo Page Lingo "
    "Multimedia Upload Translate Babel Clean Secure Oath Login Ores Popup Quiz "
    "Random Short Slippy Tab Tree Video Widget Xml Youtube Zero"
).split()
_SUFFIXES = (
    "Filter Message Forms Search Editor Notifications Maps Data Blocks Tools "
    "Highlight Box Hooks Forms Links Tree Images Viewer Import Export Stats "
    "Feed Gallery Sidebar Toolbar Widgets Api Login Tags Tables Board Lookup "
    "Notes Pages Tabs Timeline Translate Votes Wizard Cache Sync Bridge Charts "
    "Chart Checker Counter Diff Embed Guard Helper Index Manager Parser Preview "
    "Protect Queue Rating Reports Review Schema Signup Status Store Switcher"
).split()
_AUTHORS = [
    "Brion Vibber", "Tim Starling", "Kunal Mehta", "Bartosz Dziewoński",
    "Ed Sanders", "Timo Tijhof", "Umherirrender", "Reedy", "Thiemo Kreuz",
    "Amir Sarabadani", "James D. Forrester", "Daniel Kinzler", "Gergő Tisza",
    "Roan Kattouw", "Matthias Mullie", "Kosta Harlan", "David Lynch",
    "Jon Robson", "Stephen Niedzielski", "Erik Bernhardson", "Derick Alangi",
    "Aaron Schulz", "Chad Horohoe", "Sam Reed", "Alexandros Kosiaris",
    "Niklas Laxström", "Siebrand Mazeland", "Raimond Spekking", "Amire80",
    "Lucas Werkmeister", "Máté Szabó", "Fomafix", "Daimona Eaytoy",
]
_L10N_BOT = "Translation updater bot <l10n-bot@translatewiki.net>"
_LANGUAGES = (
    "af ar ast az be be-tarask bg bn br bs ca ce cs cy da de de-formal diq dsb "
    "el eo es et eu fa fi fo fr fy ga gl gsw gu he hi hr hsb hu hy ia id ilo "
    "is it ja jv ka kk km kn ko ksh ku lb lt lv mk ml mr ms mt my nb nds ne nl "
    "nn oc or pa pl ps pt pt-br qu ro ru sa sco sh si sk sl sq sr-ec sr-el su "
    "sv sw ta te tg th tl tr tt uk ur uz vec vi wa yi yue zh-hans zh-hant"
).split()
_TYPES = ["specialpage", "parserhook", "other", "api", "variable", "media",
          "antispam", "editor"]
_LICENSES = ["GPL-2.0-or-later"] * 8 + ["MIT", "GPL-3.0-or-later", "Apache-2.0"]
_MESSAGES = [
    "Fix typo in {a} {b}", "Use dependency injection for {A}{B}",
    "Remove deprecated {a} {b} code", "Add {a} support to the {b} {c}",
    "build: Updating npm dev dependencies", "Replace wfGetDB() with {A}Factory",
    "Don't show the {a} {b} to anonymous users", "tests: Cover {A}{B}::{c}",
    "Migrate {a} hooks to the new HookContainer system",
    "Avoid a notice when the {a} is missing", "Convert {A}{B} to ES6",
    "Make {a} {b} cacheable", "Drop unused {a} module",
]
_PHP_TEMPLATES = [
    "\t\t${a} = $this->{b}->get{A}( ${c} );",
    "\t\tif ( ${a} === null ) {{",
    "\t\t\treturn {A}{B}::{C};",
    "\t\t}}",
    "\t}}",
    "",
    "\tpublic function {c}{A}( {A}{B} ${a}, int ${b}Id ): ?{C}{A} {{",
    "\tprivate function {c}{B}( array ${a}s ): bool {{",
    "\t/**",
    "\t * {s}",
    "\t * @param {A}{B} ${a}",
    "\t * @return {C}{B}|null",
    "\t */",
    "\t\t$this->{a}s[ '{b}' ] = wfMessage( '{c}-{a}' )->text();",
    "\t\tforeach ( ${a}s as ${b} => ${a} ) {{",
    "\t\t\t${c}[] = ${a}->get{A}()->get{B}();",
    "\t\t$dbr = $this->dbProvider->getReplicaDatabase();",
    "\t\t${a} = $dbr->newSelectQueryBuilder()->select( [ '{a}_id', '{a}_{b}' ] )"
    "->from( '{a}' )->where( [ '{a}_{c}' => ${c} ] )->caller( __METHOD__ )->fetchResultSet();",
    "\t\t// {s}",
    "\t\tthrow new InvalidArgumentException( \"Invalid {a}: ${b}\" );",
    "\t\t$this->logger->debug( __METHOD__ . ': {s}', [ '{a}' => ${a} ] );",
]
_JS_TEMPLATES = [
    "\tvar {a}{B} = mw.config.get( 'wg{A}{B}' );",
    "\t{a}.{b}( {c} );",
    "\tif ( !{a}{B} ) {{",
    "\t\treturn $.Deferred().reject( '{a}-{b}' ).promise();",
    "\t}}",
    "",
    "\t/**",
    "\t * {s}",
    "\t *",
    "\t * @param {{{A}}} {a}",
    "\t */",
    "\t{A}{B}.prototype.{c}{A} = function ( {a}, {b} ) {{",
    "\t\tthis.${a}.toggleClass( 'mw-{a}-{b}', !!{b} );",
    "\t\treturn new mw.Api().get( {{ action: 'query', list: '{a}{b}', {c}limit: 50 }} );",
    "\t}};",
    "\t// {s}",
    "\tmw.hook( '{a}.{b}' ).add( {c}{A} );",
]
_LESS_TEMPLATES = [
    ".mw-{a}-{b} {{", "\tpadding: 0.5em 1em;", "\tcolor: @color-{a};",
    "\tborder: 1px solid @border-color-{b};", "}}", "", "\t&__{c} {{",
    "\t\tdisplay: flex;", "\t}}", "@import 'mediawiki.skin.variables.less';",
]


@dataclass(frozen=True)
class _Pools:
    """Lines that generated files are sampled from (the same in every process)."""

    php: list[str]
    js: list[str]
    less: list[str]
    sentences: list[str]


def _make_pools() -> _Pools:
    """Fill the line pools from the templates with a fixed seed."""
    rng = random.Random(20251124)

    def sentence() -> str:
        words = rng.choices(_WORDS, k=rng.randint(4, 12))
        return " ".join(words).capitalize() + "."

    def fill(templates: list[str], count: int) -> list[str]:
        lines = []
        for _ in range(count):
            a, b, c = rng.sample(_WORDS, 3)
            lines.append(rng.choice(templates).format(
                a=a, b=b, c=c, A=a.capitalize(), B=b.capitalize(),
                C=c.capitalize(), s=sentence()))
        return lines

    return _Pools(php=fill(_PHP_TEMPLATES, 4000), js=fill(_JS_TEMPLATES, 3000),
                  less=fill(_LESS_TEMPLATES, 600),
                  sentences=[sentence() for _ in range(3000)])


_POOLS = _make_pools()


def extension_names(count: int, seed: int) -> list[str]:
    """Return `count` distinct CamelCase extension names, deterministic for `seed`."""
    rng = random.Random(f"names:{seed}")
    pairs = sorted({p + s for p in _PREFIXES for s in _SUFFIXES if p != s})
    rng.shuffle(pairs)
    names = pairs[:count]
    while len(names) < count:
        names.append(f"{rng.choice(pairs)}{rng.choice(_SUFFIXES)}{len(names)}")
    return names


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

    def run(self, repo: Path) -> None:
        """Create the bare repository `repo` and import the stream into it."""
        if repo.exists():
            shutil.rmtree(repo)
        subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=master", str(repo)],
                       check=True)
        self.parts.append(b"done\n")
        subprocess.run(["git", "--git-dir", str(repo), "fast-import", "--quiet", "--done"],
                       input=b"".join(self.parts), check=True)


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
        self.lname = name.lower()
        self.start = HISTORY_END - rng.randint(4 * 365, 12 * 365) * 86400
        self.authors = rng.sample(_AUTHORS, rng.randint(2, 8))
        self.code: dict[str, list[str]] = {}
        self.messages: dict[str, dict[str, str]] = {}
        self.pending_code = self._plan_code_files()
        self.pending_languages = rng.sample(_LANGUAGES, rng.randint(20, len(_LANGUAGES)))
        self.message_keys = [f"{self.lname}-desc"] + [
            f"{self.lname}-{a}-{b}" for a, b in (rng.sample(_WORDS, 2) for _ in range(rng.randint(15, 60)))]
        self.message_keys = list(dict.fromkeys(self.message_keys))
        self.manifest = self._manifest()
        self.symlink = symlink
        self.submodule_pin: str | None = None

    # -- file contents -----------------------------------------------------

    def _plan_code_files(self) -> list[str]:
        rng, name = self.rng, self.name
        count = rng.randint(100, 320)
        folders = ["includes", "includes/Hooks", "includes/Special", "includes/Api",
                   "maintenance", "tests/phpunit/integration", "tests/phpunit/unit",
                   "modules", "modules/ui", "tests/qunit", "resources/styles"]
        paths = []
        for n in range(count):
            folder = rng.choice(folders)
            word = rng.choice(_WORDS).capitalize() + rng.choice(_WORDS).capitalize()
            if folder.startswith(("modules", "tests/qunit")):
                paths.append(f"{folder}/ext.{self.lname}.{word[0].lower()}{word[1:]}{n}.js")
            elif folder.startswith("resources"):
                paths.append(f"{folder}/ext.{self.lname}.{word.lower()}{n}.less")
            elif folder.startswith("tests/phpunit"):
                paths.append(f"{folder}/{word}{n}Test.php")
            else:
                paths.append(f"{folder}/{name}{word}{n}.php")
        return paths

    def _code_lines(self, path: str) -> list[str]:
        rng = self.rng
        if path.endswith(".php"):
            cls = path.rsplit("/", 1)[1][:-4]
            namespace = "\\".join(["MediaWiki", "Extension", self.name]
                                  + [p for p in path.split("/")[1:-1]])
            head = ["<?php", "", f"namespace {namespace};", "",
                    "use MediaWiki\\MediaWikiServices;", "", "/**",
                    f" * {rng.choice(_POOLS.sentences)}", " */", f"class {cls} {{"]
            return head + rng.choices(_POOLS.php, k=rng.randint(20, 160)) + ["}"]
        if path.endswith(".js"):
            return (["( function () {", "\t'use strict';", ""]
                    + rng.choices(_POOLS.js, k=rng.randint(20, 140)) + ["}() );"])
        return rng.choices(_POOLS.less, k=rng.randint(20, 120))

    def _edit(self, lines: list[str]) -> list[str]:
        """Return `lines` with a few lines replaced or inserted, as a developer would."""
        rng = self.rng
        lines = list(lines)
        for _ in range(rng.randint(1, 3)):
            at = rng.randint(min(10, len(lines) - 1), len(lines) - 1)
            pool = _POOLS.php if lines[0] == "<?php" else _POOLS.js
            lines[at:at + rng.randint(0, 4)] = rng.choices(pool, k=rng.randint(1, 6))
        return lines

    def _manifest(self) -> dict:
        rng, name = self.rng, self.name
        authors = rng.sample(_AUTHORS, rng.randint(1, 4))
        manifest = {
            "name": name,
            "version": f"{rng.randint(0, 3)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}",
            "author": authors[0] if rng.random() < 0.05 else authors,
            "url": f"https://www.mediawiki.org/wiki/Extension:{name}",
            "descriptionmsg": f"{self.lname}-desc",
            "license-name": rng.choice(_LICENSES),
            "type": rng.choice(_TYPES),
            "requires": {"MediaWiki": f">= 1.{rng.randint(31, 38)}.0"},
            "AutoloadNamespaces": {f"MediaWiki\\Extension\\{name}\\": "includes/"},
            "MessagesDirs": {name: ["i18n"]},
            "Hooks": {"BeforePageDisplay": "main", "LoadExtensionSchemaUpdates": "schema"},
            "HookHandlers": {"main": {"class": f"MediaWiki\\Extension\\{name}\\Hooks"}},
            "ResourceModules": {f"ext.{self.lname}": {
                "localBasePath": "modules", "remoteExtPath": f"{name}/modules",
                "packageFiles": ["init.js"], "messages": self.message_keys[1:6]}},
            "manifest_version": 2,
        }
        return manifest

    def _i18n(self, language: str) -> dict[str, str]:
        rng = self.rng
        keys = self.message_keys if language in ("en", "qqq") else rng.sample(
            self.message_keys, rng.randint(1, len(self.message_keys)))
        messages = {"@metadata": {"authors": rng.sample(_AUTHORS, rng.randint(1, 3))}}
        for key in keys:
            messages[key] = rng.choice(_POOLS.sentences)
        if language == "en":
            messages[f"{self.lname}-desc"] = (
                f"Adds {rng.choice(_WORDS)} {rng.choice(_WORDS)} tools to {self.name}")
        return messages

    def _render(self, path: str) -> tuple[str, bytes]:
        if path in self.messages:
            text = json.dumps(self.messages[path], ensure_ascii=False, indent="\t") + "\n"
        else:
            text = "\n".join(self.code[path]) + "\n"
        return ("100644", text.encode())

    def _manifest_file(self) -> tuple[str, bytes]:
        return ("100644", (json.dumps(self.manifest, indent="\t") + "\n").encode())

    def _add_code(self, count: int) -> dict[str, tuple[str, bytes]]:
        added = {}
        for path in self.pending_code[:count]:
            self.code[path] = self._code_lines(path)
            added[path] = self._render(path)
        del self.pending_code[:count]
        return added

    def _add_languages(self, count: int) -> dict[str, tuple[str, bytes]]:
        added = {}
        for language in self.pending_languages[:count]:
            path = f"i18n/{language}.json"
            self.messages[path] = self._i18n(language)
            added[path] = self._render(path)
        del self.pending_languages[:count]
        return added

    # -- history -------------------------------------------------------------

    def _when(self, index: int) -> int:
        span = HISTORY_END - self.start
        return self.start + span * index // self.commits + self.rng.randint(0, 3600)

    def _author(self) -> str:
        name = self.rng.choice(self.authors)
        return f"{name} <{name.split()[0].lower()}@example.org>"

    def _subject(self) -> str:
        a, b, c = self.rng.sample(_WORDS, 3)
        subject = self.rng.choice(_MESSAGES).format(
            a=a, b=b, c=c, A=a.capitalize(), B=b.capitalize())
        return f"{subject}\n\nChange-Id: I{self.rng.getrandbits(160):040x}\n"

    def _initial(self) -> dict[str, tuple[str, bytes]]:
        name, lname = self.name, self.lname
        self.messages["i18n/en.json"] = self._i18n("en")
        self.messages["i18n/qqq.json"] = self._i18n("qqq")
        self.code.update({
            "README.md": [f"# {name}", "", *self.rng.choices(_POOLS.sentences, k=12)],
            "CHANGELOG.md": [f"# {name} changelog", "", "## 0.1.0", "* Initial release."],
            "COPYING": self.rng.choices(_POOLS.sentences, k=self.rng.randint(30, 90)),
            ".gitignore": ["/vendor/", "/node_modules/", "/composer.lock", ".eslintcache"],
            "composer.json": [json.dumps({"require-dev": {
                "mediawiki/mediawiki-codesniffer": "47.0.0",
                "php-parallel-lint/php-parallel-lint": "1.4.0"},
                "scripts": {"test": ["parallel-lint . --exclude vendor", "phpcs -sp"]}},
                indent="\t")],
            "package.json": [json.dumps({"private": True, "scripts": {"test": "grunt test"},
                                         "devDependencies": {"grunt": "1.6.1",
                                                             "eslint-config-wikimedia": "0.31.0"}},
                                        indent="\t")],
            "Gruntfile.js": ["module.exports = function ( grunt ) {",
                             *self.rng.choices(_POOLS.js, k=30), "};"],
            f"{name}.alias.php": ["<?php", "$specialPageAliases = [];",
                                  f"$specialPageAliases['en'] = [ '{name}' => [ '{name}' ] ];"],
            "modules/init.js": self._code_lines(f"modules/ext.{lname}.init.js"),
            "includes/Hooks.php": self._code_lines("includes/Hooks.php"),
        })
        files = {path: self._render(path) for path in [*self.messages, *self.code]}
        files[".gitreview"] = ("100644", self._gitreview("master"))
        files["extension.json"] = self._manifest_file()
        files.update(self._add_code(len(self.pending_code) * 2 // 3))
        files.update(self._add_languages(len(self.pending_languages) * 2 // 3))
        if self.symlink:
            files["README"] = ("120000", b"README.md")
        return files

    def _gitreview(self, branch: str) -> bytes:
        return (f"[gerrit]\nhost=gerrit.wikimedia.org\nport=29418\n"
                f"project=mediawiki/extensions/{self.name}.git\n"
                f"defaultbranch={branch}\n").encode()

    def _master_change(self, index: int) -> tuple[str, str, dict[str, tuple[str, bytes | str]]]:
        """Pick and apply one ordinary change on master: (author, message, changes)."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.3:
            changes = self._add_languages(1) if rng.random() < 0.2 else {}
            translated = [p for p in self.messages if p != "i18n/en.json"]
            for path in rng.sample(translated, min(len(translated), rng.randint(1, 5))):
                key = rng.choice([k for k in self.messages[path] if k != "@metadata"])
                self.messages[path][key] = rng.choice(_POOLS.sentences)
                changes[path] = self._render(path)
            return _L10N_BOT, "Localisation updates from https://translatewiki.net.\n", changes
        if self.library and self.submodule_pin is None and index >= self.commits * 0.3:
            return self._author(), "Add SharedLib as a submodule\n", self._pin_library(index)
        if self.library and self.submodule_pin and roll > 0.97:
            return self._author(), "Update SharedLib submodule\n", self._pin_library(index)
        changes = self._add_code(1) if rng.random() < 0.15 else {}
        editable = [p for p in self.code if p.endswith((".php", ".js"))]
        for path in rng.sample(editable, rng.randint(1, 3)):
            self.code[path] = self._edit(self.code[path])
            changes[path] = self._render(path)
        if rng.random() < 0.05:
            major, minor, patch = self.manifest["version"].split(".")
            self.manifest["version"] = f"{major}.{minor}.{int(patch) + 1}"
            changes["extension.json"] = self._manifest_file()
        return self._author(), self._subject(), changes

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
        text = "\n".join(self._edit(self.code[path])) + "\n"
        return self.stream.commit(branch, self._author(), when, self._subject(),
                                  {path: ("100644", text.encode())}, parent)

    def _cut_release(self, branch: str, minor: int, point: str, when: int) -> None:
        head = self.stream.commit(branch, self._author(), when + 3600,
                                  f"Creating new {branch} branch\n",
                                  {".gitreview": ("100644", self._gitreview(branch))}, point)
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
                author, message, changes = (self._author(), f"Bump MediaWiki requirement to 1.{minor}\n",
                                            {"extension.json": self._manifest_file()})
            else:
                author, message, changes = self._master_change(index)
            head = self.stream.commit("master", author, when, message, changes)
        self.stream.run(repo)


def _branch_heads(repo: Path) -> list[str]:
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
    library = Library(f"git://127.0.0.1:{port}/{LIB_REPO}", _branch_heads(out / LIB_REPO))
    names = extension_names(repos, seed)
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
    stream.parts.append(b"done\n")
    subprocess.run([*git, "fast-import", "--quiet", "--done"], input=b"".join(stream.parts),
                   check=True)
    return previous


def restore_heads(repo_path: Path, heads: dict[str, str]) -> None:
    """Point branches back at the heads `add_commit` returned."""
    for branch, sha in heads.items():
        subprocess.run(["git", "--git-dir", str(repo_path), "update-ref", f"refs/heads/{branch}", sha],
                       check=True)


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
