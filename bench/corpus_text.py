"""What generated extension repositories contain: vocabularies and file contents.

Every function draws from the `random.Random` it is given, so a repository's
content depends only on its seed.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass

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
AUTHORS = [
    "Brion Vibber", "Tim Starling", "Kunal Mehta", "Bartosz Dziewoński",
    "Ed Sanders", "Timo Tijhof", "Umherirrender", "Reedy", "Thiemo Kreuz",
    "Amir Sarabadani", "James D. Forrester", "Daniel Kinzler", "Gergő Tisza",
    "Roan Kattouw", "Matthias Mullie", "Kosta Harlan", "David Lynch",
    "Jon Robson", "Stephen Niedzielski", "Erik Bernhardson", "Derick Alangi",
    "Aaron Schulz", "Chad Horohoe", "Sam Reed", "Alexandros Kosiaris",
    "Niklas Laxström", "Siebrand Mazeland", "Raimond Spekking", "Amire80",
    "Lucas Werkmeister", "Máté Szabó", "Fomafix", "Daimona Eaytoy",
]
L10N_BOT = "Translation updater bot <l10n-bot@translatewiki.net>"
LANGUAGES = (
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


POOLS = _make_pools()


def extension_names(count: int, seed: int) -> list[str]:
    """Return `count` distinct CamelCase extension names, deterministic for `seed`."""
    rng = random.Random(f"names:{seed}")
    pairs = sorted({p + s for p in _PREFIXES for s in _SUFFIXES if p != s})
    rng.shuffle(pairs)
    names = pairs[:count]
    while len(names) < count:
        names.append(f"{rng.choice(pairs)}{rng.choice(_SUFFIXES)}{len(names)}")
    return names


def plan_code_files(rng: random.Random, name: str) -> list[str]:
    """Return the paths of the PHP, JS and Less files an extension will grow."""
    lname = name.lower()
    folders = ["includes", "includes/Hooks", "includes/Special", "includes/Api",
               "maintenance", "tests/phpunit/integration", "tests/phpunit/unit",
               "modules", "modules/ui", "tests/qunit", "resources/styles"]
    paths = []
    for n in range(rng.randint(100, 320)):
        folder = rng.choice(folders)
        word = rng.choice(_WORDS).capitalize() + rng.choice(_WORDS).capitalize()
        if folder.startswith(("modules", "tests/qunit")):
            paths.append(f"{folder}/ext.{lname}.{word[0].lower()}{word[1:]}{n}.js")
        elif folder.startswith("resources"):
            paths.append(f"{folder}/ext.{lname}.{word.lower()}{n}.less")
        elif folder.startswith("tests/phpunit"):
            paths.append(f"{folder}/{word}{n}Test.php")
        else:
            paths.append(f"{folder}/{name}{word}{n}.php")
    return paths


def message_keys(rng: random.Random, name: str) -> list[str]:
    """Return an extension's i18n message keys, its description message first."""
    lname = name.lower()
    pairs = [rng.sample(_WORDS, 2) for _ in range(rng.randint(15, 60))]
    return list(dict.fromkeys([f"{lname}-desc"] + [f"{lname}-{a}-{b}" for a, b in pairs]))


def code_lines(rng: random.Random, name: str, path: str) -> list[str]:
    """Return the lines of a new PHP, JS or Less file at `path`."""
    if path.endswith(".php"):
        cls = path.rsplit("/", 1)[1][:-4]
        namespace = "\\".join(["MediaWiki", "Extension", name] + path.split("/")[1:-1])
        head = ["<?php", "", f"namespace {namespace};", "",
                "use MediaWiki\\MediaWikiServices;", "", "/**",
                f" * {rng.choice(POOLS.sentences)}", " */", f"class {cls} {{"]
        return head + rng.choices(POOLS.php, k=rng.randint(20, 160)) + ["}"]
    if path.endswith(".js"):
        return (["( function () {", "\t'use strict';", ""]
                + rng.choices(POOLS.js, k=rng.randint(20, 140)) + ["}() );"])
    return rng.choices(POOLS.less, k=rng.randint(20, 120))


def edit(rng: random.Random, lines: list[str]) -> list[str]:
    """Return a copy of PHP or JS `lines` with a few lines replaced or inserted."""
    lines = list(lines)
    for _ in range(rng.randint(1, 3)):
        at = rng.randint(min(10, len(lines) - 1), len(lines) - 1)
        pool = POOLS.php if lines[0] == "<?php" else POOLS.js
        lines[at:at + rng.randint(0, 4)] = rng.choices(pool, k=rng.randint(1, 6))
    return lines


def manifest(rng: random.Random, name: str, keys: list[str]) -> dict:
    """Return a realistic extension.json document."""
    lname = name.lower()
    authors = rng.sample(AUTHORS, rng.randint(1, 4))
    return {
        "name": name,
        "version": f"{rng.randint(0, 3)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}",
        "author": authors[0] if rng.random() < 0.05 else authors,
        "url": f"https://www.mediawiki.org/wiki/Extension:{name}",
        "descriptionmsg": f"{lname}-desc",
        "license-name": rng.choice(_LICENSES),
        "type": rng.choice(_TYPES),
        "requires": {"MediaWiki": f">= 1.{rng.randint(31, 38)}.0"},
        "AutoloadNamespaces": {f"MediaWiki\\Extension\\{name}\\": "includes/"},
        "MessagesDirs": {name: ["i18n"]},
        "Hooks": {"BeforePageDisplay": "main", "LoadExtensionSchemaUpdates": "schema"},
        "HookHandlers": {"main": {"class": f"MediaWiki\\Extension\\{name}\\Hooks"}},
        "ResourceModules": {f"ext.{lname}": {
            "localBasePath": "modules", "remoteExtPath": f"{name}/modules",
            "packageFiles": ["init.js"], "messages": keys[1:6]}},
        "manifest_version": 2,
    }


def i18n(rng: random.Random, name: str, keys: list[str], language: str) -> dict:
    """Return the i18n/<language>.json document (en and qqq have every key)."""
    if language not in ("en", "qqq"):
        keys = rng.sample(keys, rng.randint(1, len(keys)))
    messages: dict = {"@metadata": {"authors": rng.sample(AUTHORS, rng.randint(1, 3))}}
    for key in keys:
        messages[key] = rng.choice(POOLS.sentences)
    if language == "en":
        messages[f"{name.lower()}-desc"] = (
            f"Adds {rng.choice(_WORDS)} {rng.choice(_WORDS)} tools to {name}")
    return messages


def top_level_files(rng: random.Random, name: str) -> dict[str, list[str]]:
    """Return the lines of the files every extension starts with, besides i18n."""
    lname = name.lower()
    return {
        "README.md": [f"# {name}", "", *rng.choices(POOLS.sentences, k=12)],
        "CHANGELOG.md": [f"# {name} changelog", "", "## 0.1.0", "* Initial release."],
        "COPYING": rng.choices(POOLS.sentences, k=rng.randint(30, 90)),
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
                         *rng.choices(POOLS.js, k=30), "};"],
        f"{name}.alias.php": ["<?php", "$specialPageAliases = [];",
                              f"$specialPageAliases['en'] = [ '{name}' => [ '{name}' ] ];"],
        "modules/init.js": code_lines(rng, name, f"modules/ext.{lname}.init.js"),
        "includes/Hooks.php": code_lines(rng, name, "includes/Hooks.php"),
    }


def gitreview(name: str, branch: str) -> bytes:
    """Return the .gitreview file of `branch`."""
    return (f"[gerrit]\nhost=gerrit.wikimedia.org\nport=29418\n"
            f"project=mediawiki/extensions/{name}.git\ndefaultbranch={branch}\n").encode()


def commit_message(rng: random.Random) -> str:
    """Return a developer's commit message with a Gerrit Change-Id."""
    a, b, c = rng.sample(_WORDS, 3)
    subject = rng.choice(_MESSAGES).format(a=a, b=b, c=c, A=a.capitalize(), B=b.capitalize())
    return f"{subject}\n\nChange-Id: I{rng.getrandbits(160):040x}\n"
