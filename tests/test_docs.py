"""The documentation says what the code does: every setting, every command, every example, every link."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import link_venv
from serving import fetch, free_port, wait_until_serving

from loopback.gitdaemon import stop
from tardist.settings import SETTINGS, load_settings
from worker.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", ROOT / "bench/README.md", *DOCS]
PAGE_NAMES = ["architecture", "configuration", "cli", "deploying", "freshness", "api", "composer",
              "pages-and-stats", "security"]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def blocks(text: str) -> tuple[list[tuple[str, str]], str]:
    """The fenced blocks of a Markdown text as (language, body), and the text outside them."""
    found: list[tuple[str, str]] = []
    outside: list[str] = []
    language, body = None, []
    for line in text.splitlines():
        fence = re.fullmatch(r" *```([a-z]*)", line)
        if fence and language is None:
            language, body = fence.group(1), []
        elif fence:
            found.append((language, "".join(f"{part}\n" for part in body)))
            language = None
        elif language is None:
            outside.append(line)
        else:
            body.append(line)
    assert language is None, "a fenced block is not closed"
    return found, "\n".join(outside)


def fenced(text: str, language: str) -> list[str]:
    """The bodies of the ```language blocks of a Markdown text."""
    return [body for lang, body in blocks(text)[0] if lang == language]


def code_lines(text: str) -> list[str]:
    """Every line of every fenced block but program output (```text), and every `code span` outside them."""
    found, prose = blocks(text)
    spans = re.findall(r"`([^`]+)`", prose.replace("\n", " "))
    return [line for language, body in found if language != "text" for line in body.splitlines()] + spans


def table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of the Markdown table that starts with the header line."""
    table = text[text.index(header):]
    table = table[:table.index("\n\n")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in table.splitlines()[2:]]


def configuration_table() -> dict[str, str]:
    """docs/configuration.md's table of settings: key -> the default column."""
    rows = table_rows((ROOT / "docs/configuration.md").read_text(), "| key | default | meaning |")
    documented = {}
    for key_cell, default, _meaning in rows:
        for key in re.findall(r"`([^`]+)`", key_cell):
            assert key not in documented, f"{key} is documented twice"
            documented[key] = default
    return documented


def test_every_setting_is_documented_and_every_documented_setting_exists():
    documented = configuration_table()
    assert sorted(set(SETTINGS) - set(documented)) == [], "in SETTINGS, missing from docs/configuration.md"
    assert sorted(set(documented) - set(SETTINGS)) == [], "in docs/configuration.md, not a setting"


def shown_default(default) -> str:
    """How docs/configuration.md spells a default value."""
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, list):
        return " ".join(default) if default else "[]"
    if isinstance(default, dict):
        return "{}"
    if default == "":
        return '""'
    return str(default)


def test_every_documented_default_is_the_real_one():
    documented = configuration_table()
    wrong = {key: (documented[key], default) for key, (default, _) in SETTINGS.items()
             if f"`{shown_default(default)}`" not in documented[key]
             and not (default == "" and documented[key] == "empty")}
    assert wrong == {}


def test_the_readme_is_short_and_links_every_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    linked = set(re.findall(r"\]\(docs/([a-z-]+)\.md\)", readme))
    assert linked == set(PAGE_NAMES) == {page.stem for page in DOCS}
    assert "(bench/README.md)" in readme


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_link_between_pages_leads_somewhere(page):
    text = page.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s): links leave the repository
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target}: no such file"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.M)
            assert anchor in {slug(heading) for heading in headings}, f"{page.name}: {target}: no such heading"


COMMAND_RE = re.compile(r"(?:^|[\s/`(])tardist((?: --config \S+)?(?: [a-z][a-z-]*)+)(.*?)(?=&&|\||;|#|>|$)")


def commands_in(line: str) -> list[tuple[str, list[str]]]:
    """(command words, options) of every `tardist <command>` in one line of shell."""
    found = []
    for match in COMMAND_RE.finditer(line):
        if re.search(r"-u\s+$", line[:match.start() + 1]):
            continue  # `crontab -u tardist crontab`: the user, not the command
        words = match.group(1).split()
        if words[:1] == ["--config"]:
            words = words[2:]
        words = words[:2] if words[:1] == ["stats"] else words[:1]
        found.append((" ".join(words), re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", match.group(2))))
    return found


def test_commands_are_found_where_a_shell_would_run_them():
    assert commands_in("tardist frobnicate --now") == [("frobnicate", ["--now"])]
    assert commands_in("cd /srv && .venv/bin/tardist stats ingest /x.log >> log 2>&1") == [("stats ingest", [])]
    assert commands_in("tardist --config /etc/t.toml sync --only Cite  # one") == [("sync", ["--only"])]
    assert commands_in("crontab -u tardist crontab") == []
    assert commands_in("sudo -u tardist .venv/bin/tardist init-db") == [("init-db", [])]


def commands_named() -> list[tuple[str, str, list[str]]]:
    """(page, command words, options) of every `tardist <command>` in the code of every page."""
    return [(page.name, command, options) for page in PAGES for line in code_lines(page.read_text())
            for command, options in commands_in(line)]


def test_every_tardist_command_in_the_docs_exists_with_its_options():
    parser = build_parser()
    commands = next(action for action in parser._actions if action.dest == "command").choices
    named = commands_named()
    assert {command for _, command, _ in named} >= {"sync", "status", "gc", "worker", "init-db", "publish",
                                                    "stats ingest", "stats export"}
    for page, command, options in named:
        words = command.split()
        assert words[0] in commands, f"{page}: tardist {command}: no such command"
        sub = commands[words[0]]
        if len(words) == 2:
            sub = next(action for action in sub._actions if action.dest == "stats_command").choices[words[1]]
        known = {flag for action in [*parser._actions, *sub._actions] for flag in action.option_strings}
        assert set(options) <= known, f"{page}: tardist {command}: unknown options {set(options) - known}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_toml_example_loads(page, tmp_path):
    for index, block in enumerate(fenced(page.read_text(), "toml")):
        config = tmp_path / f"example-{index}.toml"
        config.write_text(block)
        load_settings(config, environ={})


def test_the_shipped_example_configuration_loads():
    settings = load_settings(ROOT / "instance/tardist.toml.example", environ={})
    assert [source.type for source in settings.sources] == ["gerrit", "list"]


def test_every_inline_example_of_a_setting_loads(tmp_path):
    """Values shown inside the pages' prose: `git_config`'s table and the TARDIST_* variables."""
    text = "\n".join(page.read_text() for page in DOCS)
    tables = re.findall(r"`(\{ \"[^`]*\})`", text)
    assert tables, "docs/configuration.md shows a git_config table"
    for table in tables:
        config = tmp_path / "git_config.toml"
        config.write_text(f"git_config = {table}\n")
        assert load_settings(config, environ={}).git_config
    variables = dict(re.findall(r"`(TARDIST_[A-Z_]+)=([^`]+)`", text))
    assert variables, "docs/configuration.md shows an environment variable"
    settings = load_settings(environ=variables)
    for variable in variables:
        key = variable.removeprefix("TARDIST_").lower()
        assert getattr(settings, key) != SETTINGS[key][0], f"{variable} changed nothing"


def run(line: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    """Run one documented shell line with bash, in cwd."""
    return subprocess.run(["bash", "-c", line], cwd=cwd, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, **kwargs)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout as the README's operator has it: deploy/, wsgi.py and .venv/bin with tardist and gunicorn."""
    root = tmp_path / "checkout"
    link_venv(root)
    (root / "deploy").symlink_to(ROOT / "deploy")
    shutil.copy(ROOT / "wsgi.py", root / "wsgi.py")
    return root


@pytest.mark.nginx
def test_the_readme_minimal_configuration_and_commands_work_as_written(checkout, upstream, tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A minimal configuration\n", 1)[1].split("\n## ", 1)[0]
    [toml] = fenced(section, "toml")
    [shell] = fenced(section, "sh")
    head = upstream("Cite").head()
    assert '"/srv/git/extensions"' in toml
    (checkout / "instance").mkdir()
    (checkout / "instance/tardist.toml").write_text(toml.replace('"/srv/git/extensions"',
                                                                 f'"{tmp_path / "upstream/extensions"}"'))
    lines = [line for line in shell.splitlines() if line.strip()]
    assert [line.split()[0] for line in lines] == [".venv/bin/tardist"] * 3 + [".venv/bin/gunicorn"]
    for line in lines[:3]:
        result = run(line, checkout)
        assert result.returncode == 0, f"{line}\n{result.stderr}"
    assert json.loads(result.stdout)["runs"][0]["status"] == "ok"
    tarball = checkout / f"tarballs/extensions/Cite-master-{head[:7]}.tar.gz"
    assert tarball.is_file()
    assert (checkout / "published/info/extensions/Cite.json").is_file()
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        gunicorn = subprocess.Popen(["bash", "-c", f"exec {lines[3].split('#')[0]} --bind 127.0.0.1:{port} "
                                     "--workers 1"], cwd=checkout, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(gunicorn, port, log)
        info = fetch(port, "/info/extensions/Cite")
        assert info.status == 200
        assert info.json()["branches"]["master"]["commit"] == head
        download = fetch(port, f"/dist/extensions/{tarball.name}")
        assert download.status == 200 and download.body == tarball.read_bytes()
    finally:
        stop(gunicorn)


def test_the_cli_synopsis_runs_on_a_small_deployment(deployment, upstream, tmp_path):
    """Every line of docs/cli.md's synopsis but `worker` (a daemon), with its placeholders filled in."""
    cite = upstream("Cite")
    synopsis = fenced((ROOT / "docs/cli.md").read_text(), "sh")[0]
    log = tmp_path / "access.log"
    with gzip.open(tmp_path / "access.log.gz", "wt") as gz:
        gz.write(f'127.0.0.1 - - [27/Nov/2026:10:00:00 +0000] "GET /dist/extensions/Cite-master-{cite.head()[:7]}'
                 '.tar.gz HTTP/1.1" 200 1234 "-" "curl/8.0" 0.001 -\n')
    log.write_text("")
    fill = {"[--only NAME]...": "--only Cite", "[--kind KIND]": "--kind extensions", "[--force]": "--force",
            "[--retry]": "--retry", "[--jobs N]": "--jobs 2", "[--changed]": "--changed", "[--dry-run]": "--dry-run",
            "FILE...": f"{log} {tmp_path / 'access.log.gz'}", "YYYY-MM-DD": "2026-11-27", "DIR": str(tmp_path / "out")}
    ran = []
    for line in synopsis.splitlines():
        command = line.split("#")[0].strip()
        if not command or command == "tardist worker":
            continue
        for placeholder, value in fill.items():
            command = command.replace(placeholder, value)
        if "FILE-OR-URL" in command:  # the tarball the sync above built, checked against its own upstream
            built = next((deployment.root / "tarballs/extensions").glob("Cite-master-*.tar.gz"))
            command = command.replace("FILE-OR-URL", str(built)).replace("[--source URL]", f"--source {cite.path}")
        assert not re.search(r"\[|[A-Z]{3,}", command), f"a placeholder left in {command!r}"
        result = deployment.cli(*command.split()[1:])
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        ran.append(command.split()[1])
    assert ran == ["sync", "status", "gc", "init-db", "publish", "stats", "stats", "verify"]
    assert (tmp_path / "out/tardist-requests-2026-11-27.jsonl.gz").is_file()
    result = deployment.cli("--help")
    assert result.returncode == 0 and "init-db" in result.stdout


def documented_modules() -> dict[str, str]:
    """docs/architecture.md's code map: module path -> web, worker or both."""
    rows = table_rows((ROOT / "docs/architecture.md").read_text(), "| module | process | what it does |")
    return {module.strip("`"): process for module, process, _ in rows}


def imported_by(package_modules: list[str]) -> set[str]:
    """The tardist and worker modules a fresh interpreter holds after importing these."""
    code = ("import importlib, json, sys\n"
            f"for name in {package_modules!r}: importlib.import_module(name)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('tardist', 'worker', 'wsgi'))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin",
                                 "TARDIST_CONFIG": str(ROOT / "instance/tardist.toml.example")})
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def module_name(path: str) -> str:
    """tardist/web/app.py -> tardist.web.app; tardist/__init__.py -> tardist."""
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def test_the_code_map_lists_every_module_with_the_process_that_imports_it():
    documented = documented_modules()
    on_disk = sorted(str(path.relative_to(ROOT)) for folder in ("tardist", "worker")
                     for path in (ROOT / folder).rglob("*.py")) + ["wsgi.py"]
    assert sorted(documented) == on_disk
    web = imported_by(["wsgi", *[module_name(path) for path in on_disk if path.startswith("tardist/web/")]])
    worker = imported_by([module_name(path) for path in on_disk if path.startswith("worker/")])
    actual = {path: {(True, True): "both", (True, False): "web", (False, True): "worker"}.get(
        (module_name(path) in web, module_name(path) in worker), "neither") for path in on_disk}
    assert documented == actual


def test_every_benchmark_command_names_a_script_and_its_options():
    readme = (ROOT / "bench/README.md").read_text()
    [commands] = fenced(readme, "sh")
    scripts = set()
    for line in commands.splitlines():
        command = line.split("#")[0].split("&&")[-1].split()
        assert command[0] == ".venv/bin/python" and command[1].startswith("bench/"), line
        scripts.add(Path(command[1]).name)
        result = subprocess.run([sys.executable, command[1], "--help"], cwd=ROOT, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
        for option in (word for word in command[2:] if word.startswith("--")):
            assert re.search(rf"(?<![\w-]){option}(?![\w-])", result.stdout), f"{line}: {option} unknown"
    described = set(re.findall(r"^## ([a-z_]+\.py)$", readme, re.M))
    listed = {cell.strip("`") for row in table_rows(readme, "| file | what it is |")
              for cell in row[0].split(", ")}
    on_disk = {path.name for path in (ROOT / "bench").glob("*.py")}
    assert listed == on_disk, "the table of bench/README.md lists every file in bench/"
    benchmarks = {path.name for path in (ROOT / "bench").glob("*.py")
                  if path.name != "report.py" and "write_results(" in path.read_text()}
    assert described == scripts == benchmarks, "each benchmark has a command and a section"
